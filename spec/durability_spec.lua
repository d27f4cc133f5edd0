-- Nothing lost, nothing left behind: errors raised in the middle of a forward or a backward
-- (1,000 times each) free every tensor they made and leave the state usable; checkpoints are
-- written to a temporary file beside the target and renamed, so a process killed with SIGKILL
-- mid-write leaves the previous file intact; a training run killed and resumed from its last
-- checkpoint ends bit-identical to an uninterrupted one; a long training loop keeps its
-- resident memory flat with no collectgarbage() (bench/rss_flat.lua prints the long curve).
local helper = require "helper"
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

local tmpdir = helper.tmpdir

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

describe("checkpoints", function()
  -- Saving over a file that has a second hard link: a write in place would change what the
  -- other name reads; a temporary file renamed over the target leaves the old inode alone.
  it("model:save, opt:save, fs.io.save and fs.io.save_npy write a temporary file and rename it", function()
    local dir = tmpdir()
    local model = tiny_net(1)
    local opt = fs.optim.adam(model, {lr = 1e-2})
    train(model, opt, 1, 1)
    local saves = {
      {"model.safetensors", function(p) model:save(p) end},
      {"opt.safetensors", function(p) opt:save(p) end},
      {"dict.safetensors", function(p) fs.io.save(p, {w = fs.ones({3})}) end},
      {"array.npy", function(p) fs.io.save_npy(p, fs.ones({3})) end},
    }
    for _, s in ipairs(saves) do
      local path, link = dir .. "/" .. s[1], dir .. "/" .. s[1] .. ".link"
      local f = assert(io.open(path, "w"))
      f:write("previous contents")
      f:close()
      assert(os.execute(string.format("ln %q %q", path, link)))
      s[2](path)
      local g = assert(io.open(link))
      assert.equal("previous contents", g:read("a"), s[1])
      g:close()
      local h = assert(io.open(path, "rb"))
      assert.is_true(#h:read("a") > 17, s[1])
      h:close()
    end
    local _, listing = sh("ls -a " .. dir)
    assert.is_nil(listing:find("tmp", 1, true), listing) -- no temporary file left behind
    -- a reload of each equals what was saved
    assert.are.same(model:flat_parameters():totable(),
                    fs.nn.load(dir .. "/model.safetensors"):flat_parameters():totable())
    local opt2 = fs.optim.adam(tiny_net(1), {lr = 1e-2})
    opt2:load(dir .. "/opt.safetensors")
    assert.are.same(opt:state_dict().exp_avg:totable(), opt2:state_dict().exp_avg:totable())
    os.execute("rm -rf " .. dir)
  end)

  it("a process killed with SIGKILL while writing leaves the previous checkpoint intact", function()
    local dir = tmpdir()
    local path, status = dir .. "/big.safetensors", dir .. "/status"
    local mid_write = 0
    for attempt = 1, 3 do
      os.remove(path)
      os.remove(status)
      assert(os.execute(string.format("%s lua5.4 spec/fixtures/durable_writer.lua %q %q >%q 2>&1 & echo $! >%q",
                                      LUA_ENV, path, status, dir .. "/log", dir .. "/pid")))
      local pid = assert(io.open(dir .. "/pid")):read("l")
      local done = 0
      for _ = 1, 3000 do -- at most ~60 s: two saves complete, then a third one is under way
        local f = io.open(status)
        done = f and tonumber(f:read("a")) or 0
        if f then f:close() end
        if done >= 2 then break end
        os.execute("sleep 0.02")
      end
      assert.is_true(done >= 2, "the writer did not complete two saves: " ..
                     (io.open(dir .. "/log") and io.open(dir .. "/log"):read("a") or ""))
      -- kill it as soon as its next temporary file exists (it is then being written)
      for _ = 1, 3000 do
        local _, ls = sh("ls " .. dir)
        if ls:find("big.safetensors.tmp-", 1, true) then break end
      end
      assert(os.execute("kill -9 " .. pid))
      os.execute(string.format("while kill -0 %s 2>/dev/null; do sleep 0.01; done", pid))
      local f = io.open(status)
      local last = tonumber(f:read("a"))
      f:close()
      local _, ls = sh("ls " .. dir)
      if ls:find("big.safetensors.tmp-", 1, true) then mid_write = mid_write + 1 end
      -- the checkpoint is the last complete one: loads, and every value is its iteration's
      local t, meta = fs.io.load(path)
      local v = tonumber(meta.iter)
      assert.is_true(v == last or v == last + 1, string.format("file holds %s, last done %d", v, last))
      assert.same({2048, 4096}, t.w:shape())
      assert.equal(v, t.w:min():item())
      assert.equal(v, t.w:max():item())
      os.execute("rm -f " .. dir .. "/big.safetensors.tmp-*")
      if mid_write > 0 then break end
    end
    assert.is_true(mid_write > 0, "no kill landed in the middle of a write in 3 attempts")
    os.execute("rm -rf " .. dir)
  end)

  it("a run killed by SIGKILL and resumed from its last checkpoint ends bit-identical", function()
    local dir, dir2 = tmpdir(), tmpdir()
    local run = function(d, extra)
      return sh(string.format("%s lua5.4 spec/fixtures/durable_train.lua %q 40 %s", LUA_ENV, d, extra or ""))
    end
    local rc, whole = run(dir2)
    assert.equal(0, rc, whole)
    local want = whole:match("state (%x+)")
    assert.truthy(want, whole)
    rc = run(dir, "23") -- killed after step 23: its last checkpoint is step 20's
    assert.equal(137, rc) -- 128 + SIGKILL, as the shell reports it
    local out
    rc, out = run(dir)
    assert.equal(0, rc, out)
    assert.truthy(out:find("resumed at 20", 1, true), out)
    assert.equal(want, out:match("state (%x+)"), out)
    -- and a run resumed without the kill's help, from step 40, changes nothing more
    rc, out = run(dir2)
    assert.truthy(out:find("resumed at 40", 1, true), out)
    assert.equal(want, out:match("state (%x+)"), out)
    os.execute("rm -rf " .. dir .. " " .. dir2)
  end)
end)

describe("long training loops", function()
  -- bench/rss_flat.lua in a child, 3,000 steps (its default is the 20,000-step curve the
  -- README describes). glibc's malloc moves its mmap threshold up the first time a large block is
  -- freed, after which such blocks stay in the heap: a one-time RSS step of up to ~10 MB at an
  -- unpredictable step (seen at step 14,000 in one 20,000-step run, before step 1,000 in
  -- others). The threshold is fixed here so that what is measured is fewshot's own growth.
  it("keep resident memory flat without collectgarbage()", function()
    local rc, out = sh(string.format("MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=1 %s lua5.4 bench/rss_flat.lua 3000 500",
                                     LUA_ENV))
    assert.equal(0, rc, out)
    local rows = {}
    for step, rss, live_mb, _, lua_mb in out:gmatch("\n%s*(%d+)%s+([%d.]+)%s+([%d.]+)%s+([%d.]+)%s+([%d.]+)") do
      rows[#rows + 1] = {step = tonumber(step), rss = tonumber(rss), live = tonumber(live_mb), lua = tonumber(lua_mb)}
    end
    assert.equal(6, #rows, out)
    local base = rows[2].rss -- after 1,000 steps of warm-up
    -- under ASan (make sanitize) resident memory holds its quarantine of freed blocks and
    -- moves by tens of MB: there only the live-tensor and Lua-heap figures are meaningful
    local rss_meaningful = not os.getenv("FS_SANITIZE")
    for i = 2, #rows do
      assert.is_true(not rss_meaningful or rows[i].rss - base < 2, out)   -- MB
      assert.is_true(rows[i].live < 4, out)         -- live tensors: a few steps' worth at most
      assert.is_true(rows[i].lua < 1, out)          -- the Lua heap
    end
  end)
end)
