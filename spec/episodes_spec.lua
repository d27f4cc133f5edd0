-- Generator state (g:get_state / g:set_state, fs.get_rng_state / fs.set_rng_state) and
-- fs.data.episodes / fs.data.episode_iter: N-way K-shot episodes, seeded, disjoint.
local fs = require "fewshot"
local helper = require "helper"

describe("generator state", function()
  it("restores a generator exactly, including a spare normal", function()
    local g = fs.generator(11)
    g:normal() -- leaves a spare normal behind
    local s = g:get_state()
    assert.equal("string", type(s))
    assert.truthy(s:match("^xoshiro256%*%*:"))
    local a = {g:normal(), g:uniform(), g:randint(1000), g:normal()}
    local h = fs.generator(99)
    h:set_state(s)
    assert.same(a, {h:normal(), h:uniform(), h:randint(1000), h:normal()})
    assert.equal(g:get_state(), h:get_state())
  end)
  it("does the same for the default generator", function()
    fs.manual_seed(4)
    local s = fs.get_rng_state()
    local x = fs.randn({4, 3})
    fs.set_rng_state(s)
    assert.tensor_near(fs.randn({4, 3}), x, 0)
    fs.manual_seed(4)
    assert.equal(s, fs.get_rng_state())
  end)
  it("rejects a string that is not a state", function()
    local g = fs.generator(1)
    assert.has_error(function() g:set_state("junk") end,
      "set_state: not a generator state (expected the string get_state returns)")
    assert.has_error(function() fs.set_rng_state(g:get_state():sub(1, -2) .. "z") end,
      "set_rng_state: not a generator state (expected the string get_state returns)")
  end)
end)
