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

-- n samples per class, each image (1, 2, 2) filled with a unique id (class * 100 + i), patient i
local function make_samples(n, classes)
  classes = classes or {"ventricle", "myocardium", "liver"}
  local s = {}
  for label, c in ipairs(classes) do
    for i = 1, n do
      s[#s + 1] = {image = fs.full({1, 2, 2}, label * 100 + i), label = label, class = c, patient = i}
    end
  end
  return s
end

local function ids(t) -- the ids of a stacked (n, 1, 2, 2) tensor
  local out = {}
  for i = 1, t:shape()[1] do out[i] = t:get(i, 1, 1, 1) end
  return out
end

describe("data.episodes", function()
  local samples = make_samples(10)

  it("draws way*shot support and way*query queries with episode labels and class names", function()
    local eps = fs.data.episodes(samples, {way = 3, shot = 3, query = 6, episodes = 4, seed = 1})
    assert.equal(4, #eps)
    local e = eps[1]
    assert.same({9, 1, 2, 2}, e.support:shape())
    assert.same({18, 1, 2, 2}, e.query:shape())
    assert.same({1, 1, 1, 2, 2, 2, 3, 3, 3}, e.support_labels)
    assert.equal(18, #e.query_labels)
    assert.same({"ventricle", "myocardium", "liver"}, e.classes)
    -- every image belongs to its label's class
    for i, id in ipairs(ids(e.support)) do assert.equal(e.support_labels[i], id // 100) end
    for i, id in ipairs(ids(e.query)) do assert.equal(e.query_labels[i], id // 100) end
  end)

  it("never repeats a sample inside an episode (support and query disjoint)", function()
    for _, e in ipairs(fs.data.episodes(samples, {shot = 4, query = 6, episodes = 20, seed = 2})) do
      local seen = {}
      for _, t in ipairs({e.support, e.query}) do
        for _, id in ipairs(ids(t)) do
          assert.is_nil(seen[id], "sample " .. id .. " drawn twice")
          seen[id] = true
        end
      end
      assert.equal(30, #ids(e.support) + #ids(e.query))
    end
  end)

  it("is reproducible from the seed, and the iterator gives the same episodes", function()
    local a = fs.data.episodes(samples, {episodes = 3, seed = 7})
    local b = fs.data.episodes(samples, {episodes = 3, seed = 7})
    local c = fs.data.episodes(samples, {episodes = 3, seed = 8})
    assert.same(ids(a[3].query), ids(b[3].query))
    assert.are_not.same(ids(a[1].query), ids(c[1].query))
    local it_ = fs.data.episode_iter(samples, {seed = 7})
    for i = 1, 3 do assert.same(ids(a[i].support), ids(it_().support)) end
    local g = fs.generator(7)
    local it2 = fs.data.episodes(samples, {iterator = true, generator = g, episodes = 2})
    assert.same(ids(a[1].query), ids(it2().query))
    local state = g:get_state()
    local e2 = it2()
    assert.is_nil(it2()) -- 2 episodes long
    g:set_state(state)
    assert.same(ids(e2.query), ids(fs.data.episode_iter(samples, {generator = g})().query))
  end)

  it("restricts the pool to the given patients", function()
    for _, e in ipairs(fs.data.episodes(samples, {shot = 1, query = 2, episodes = 10, seed = 3,
                                                  patients = {2, 5, 9}})) do
      for _, id in ipairs(ids(e.support)) do assert.truthy(({[2] = 1, [5] = 1, [9] = 1})[id % 100]) end
      for _, id in ipairs(ids(e.query)) do assert.truthy(({[2] = 1, [5] = 1, [9] = 1})[id % 100]) end
    end
  end)

  it("chooses a random subset of the classes when there are more than way", function()
    local five = make_samples(4, {"a", "b", "c", "d", "e"})
    local count = {}
    for _, e in ipairs(fs.data.episodes(five, {way = 2, shot = 1, query = 1, episodes = 40, seed = 4})) do
      assert.equal(2, #e.classes)
      assert.are_not.equal(e.classes[1], e.classes[2])
      assert.is_true(e.labels[1] < e.labels[2]) -- kept in label order
      for _, c in ipairs(e.classes) do count[c] = (count[c] or 0) + 1 end
      assert.same({e.labels[1], e.labels[2]}, {ids(e.support)[1] // 100, ids(e.support)[2] // 100})
    end
    for _, c in ipairs({"a", "b", "c", "d", "e"}) do assert.is_true((count[c] or 0) >= 5, c) end
  end)

  it("raises clear errors", function()
    local few = make_samples(10)
    for i = #few, 1, -1 do if few[i].class == "liver" and few[i].patient > 5 then table.remove(few, i) end end
    assert.has_error(function() fs.data.episodes(few, {episodes = 1}) end,
      "data.episodes: class 'liver' has 5 samples, fewer than shot + query = 9")
    assert.has_error(function() fs.data.episodes(samples, {way = 4, episodes = 1}) end,
      "data.episodes: way 4 is larger than the number of classes (3)")
    assert.has_error(function() fs.data.episodes(samples, {shot = 0, episodes = 1}) end,
      "data.episodes: option 'shot' must be >= 1, got 0")
    assert.has_error(function() fs.data.episode_iter(samples, {query = 0}) end,
      "data.episode_iter: option 'query' must be >= 1, got 0")
    assert.has_error(function() fs.data.episodes({}, {episodes = 1}) end,
      "data.episodes: the sample list is empty")
    assert.has_error(function() fs.data.episodes(samples) end,
      "data.episodes: option 'episodes' is required for a list (or pass iterator=true)")
    assert.has_error(function() fs.data.episodes(samples, {episodes = 1, patients = {99}}) end,
      "data.episodes: no samples belong to the patients given in 'patients'")
    local ok, err = pcall(fs.data.episodes, samples, {episodes = 1, wey = 3})
    assert.is_false(ok)
    assert.matches("data.episodes: unknown option 'wey' (did you mean 'way'?)", err, 1, true)
  end)
end)
