-- Autograd: every differentiable op's gradient against central finite differences (contiguous,
-- non-contiguous and broadcast inputs), accumulation, grad mode, and the errors.
local fs = require "fewshot"
local helper = require "helper"

-- Inputs in float32 with eps 1e-2: the finite difference itself carries ~1e-3 error, so
-- 2e-2 relative is the bar (a wrong gradient is off by O(1)).
local TOL = 2e-2

-- Ops with kinks (relu, abs, max, where, clamp) take "lattice" inputs: distinct values
-- (k - n/2)/10 + 0.05*seed-offset in shuffled order, so no value lies within the finite
-- difference step of a kink (0, +-0.5, a tie, another input's value).
local function values_for(shape, seed, lo, hi, lattice)
  local g = fs.generator(seed)
  if not lattice then return fs.rand(shape, {generator = g, low = lo or -1, high = hi or 1}) end
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local perm, vals = g:permutation(n), {}
  for i = 1, n do vals[i] = (perm[i] - n / 2) / 10 + 0.05 * (seed % 2) + 0.025 end
  return fs.tensor(vals):view(shape)
end

local function leaf(shape, seed, lo, hi, lattice)
  return values_for(shape, seed, lo, hi, lattice):requires_grad(true)
end

-- A leaf that is a non-contiguous view (a transposed base that itself needs no grad).
local function leaf_t(shape, seed, lo, hi, lattice)
  local base = values_for({shape[2], shape[1]}, seed, lo, hi, lattice)
  local t = base:transpose(1, 2)
  assert(not t:is_contiguous())
  return t:requires_grad(true)
end

local cases = {
  {"add broadcast", function(a, b) return a + b end, {{3, 4}, {4}}},
  {"sub broadcast", function(a, b) return a - b end, {{3, 1}, {1, 4}}},
  {"mul broadcast", function(a, b) return a * b end, {{3, 4}, {3, 1}}},
  {"div", function(a, b) return a / (b + 3) end, {{3, 4}, {3, 4}}},
  {"pow", function(a, b) return (a + 2) ^ b end, {{3, 4}, {4}}},
  {"scalar ops", function(a) return 2 - a * 3 + 1 / (a + 4) end, {{5}}},
  {"maximum", function(a, b) return a:maximum(b) end, {{3, 4}, {3, 4}}, "kink"},
  {"neg", function(a) return -a end, {{2, 3}}},
  {"exp", function(a) return a:exp() end, {{2, 3}}},
  {"log", function(a) return (a + 2):log() end, {{2, 3}}},
  {"sqrt", function(a) return (a + 2):sqrt() end, {{2, 3}}},
  {"abs", function(a) return a:abs() end, {{2, 3}}, "kink"},
  {"relu", function(a) return a:relu() end, {{2, 3}}, "kink"},
  {"sigmoid", function(a) return a:sigmoid() end, {{2, 3}}},
  {"tanh", function(a) return a:tanh() end, {{2, 3}}},
  {"clamp", function(a) return a:clamp(-0.5, 0.5) end, {{3, 3}}, "kink"},
  {"where", function(a, b) return fs.where(a:gt(0), a, b) end, {{3, 4}, {4}}, "kink"},
  {"sum all", function(a) return a:sum() end, {{3, 4}}},
  {"sum dim", function(a) return a:sum(2) end, {{3, 4}}},
  {"mean keepdim", function(a) return a:mean(1, true) end, {{3, 4}}},
  {"var", function(a) return a:var(2) end, {{3, 4}}},
  {"var biased all", function(a) return a:var(nil, false, false) end, {{3, 4}}},
  {"max dim", function(a) return (a:max(2)) end, {{3, 4}}, "kink"},
  {"min all", function(a) return a:min() end, {{3, 4}}, "kink"},
  {"matmul", function(a, b) return a:matmul(b) end, {{3, 4}, {4, 2}}},
  {"matmul vector", function(a, b) return a:matmul(b:select(2, 1)) end, {{3, 4}, {4, 2}}},
  {"matmul batched broadcast", function(a, b) return a:reshape({2, 2, 3}):matmul(b) end,
   {{4, 3}, {3, 2}}},
  {"view", function(a) return a:contiguous():view({6, 2}) * fs.arange(2) end, {{3, 4}}},
  {"permute", function(a) return a:reshape({3, 2, 2}):permute(3, 1, 2) * fs.arange(2) end, {{3, 4}}},
  {"transpose", function(a) return a:transpose(1, 2) * fs.arange(3) end, {{3, 4}}},
  {"narrow", function(a) return a:narrow(2, 2, 2) end, {{3, 4}}},
  {"select", function(a) return a:select(1, 2) end, {{3, 4}}},
  {"unsqueeze squeeze", function(a) return a:unsqueeze(1):squeeze() * 2 end, {{3, 4}}},
  {"expand", function(a) return a:expand({3, 5, 4}) end, {{5, 4}}},
  {"reshape", function(a) return a:transpose(1, 2):reshape({12}) * fs.arange(12) end, {{3, 4}}},
  {"clone contiguous", function(a) return a:transpose(1, 2):contiguous():clone() end, {{3, 4}}},
  {"cat", function(a, b) return fs.cat({a, b, a}, 2) end, {{3, 4}, {3, 2}}},
  {"stack", function(a, b) return fs.stack({a, b}, 2) end, {{3, 4}, {3, 4}}},
  {"index_select repeated", function(a) return a:index_select(1, {3, 1, 3}) end, {{3, 4}}},
}

describe("gradients match finite differences", function()
  for _, c in ipairs(cases) do
    local name, fn, shapes, kink = c[1], c[2], c[3], c[4] == "kink"
    it(name .. " (contiguous)", function()
      local inputs = {}
      for k, s in ipairs(shapes) do inputs[k] = leaf(s, 100 + k, nil, nil, kink) end
      local err = helper.gradcheck(fn, inputs)
      assert.is_true(err < TOL, name .. ": relative error " .. err)
    end)
    if #shapes[1] == 2 and shapes[1][1] > 1 and shapes[1][2] > 1 then
      it(name .. " (non-contiguous input)", function()
        local inputs = {leaf_t(shapes[1], 201, nil, nil, kink)}
        for k = 2, #shapes do inputs[k] = leaf(shapes[k], 200 + k, nil, nil, kink) end
        local err = helper.gradcheck(fn, inputs)
        assert.is_true(err < TOL, name .. ": relative error " .. err)
      end)
    end
  end

  it("the checker itself catches a wrong gradient", function()
    -- detach() hides part of the dependence from backward: the check must fail.
    local a = leaf({4}, 1, 2, 3)
    local err = helper.gradcheck(function(x) return x * x:detach() end, {a})
    assert.is_true(err > 0.1, "error " .. err)
  end)
end)

describe("backward", function()
  it("accumulates into .grad until zero_grad", function()
    local x = fs.tensor({1, 2, 3}, {requires_grad = true})
    local y = (x * x):sum()
    y:backward(nil, {retain_graph = true})
    assert.same({2, 4, 6}, x.grad:totable())
    y:backward()
    assert.same({4, 8, 12}, x.grad:totable())
    x:zero_grad()
    assert.same({0, 0, 0}, x.grad:totable())
    x.grad = nil
    assert.is_nil(x.grad)
  end)

  it("sums gradients over every path (diamond graph)", function()
    local x = fs.tensor({2}, {requires_grad = true})
    local a, b = x * 3, x:exp()
    ;(a * b + a):sum():backward()
    local e2 = math.exp(2)
    assert.tensor_near(x.grad, {3 * e2 + 2 * 3 * e2 + 3}, 1e-5)
  end)

  it("gives a clear error on a freed graph or a tensor without grad", function()
    local x = fs.tensor({1, 2}, {requires_grad = true})
    local y = (x * 2):sum()
    y:backward()
    assert.has_error(function() y:backward() end,
      "backward: the graph of 'sum' was already freed by an earlier backward (pass " ..
      "retain_graph=true to the first call)")
    assert.has_error(function() fs.ones({2}):sum():backward() end,
      "backward: tensor of shape () does not require grad and has no grad_fn")
    assert.has_error(function() (x * 2):backward() end,
      "backward: gradient can be implied only for a tensor with one element; this one has " ..
      "shape (2) (pass a gradient)")
    assert.has_error(function() (x * 2):backward(fs.ones({3})) end,
      "backward: gradient of shape (3) does not match the tensor's shape (2)")
  end)

  it("takes an explicit gradient for non-scalars", function()
    local x = fs.tensor({1, 2}, {requires_grad = true})
    ;(x * x):backward(fs.tensor({1, 10}))
    assert.same({2, 40}, x.grad:totable())
  end)

  it("only leaves keep .grad; intermediate results report their grad_fn", function()
    local x = fs.tensor({1}, {requires_grad = true})
    local y = x * 2
    assert.equal("mul", y.grad_fn)
    assert.is_false(y:is_leaf())
    assert.is_true(x:is_leaf())
    y:sum():backward()
    assert.is_nil(y.grad)
    assert.same({2}, x.grad:totable())
  end)

  it("refuses in-place changes to tensors that require grad", function()
    local x = fs.tensor({1}, {requires_grad = true})
    assert.has_error(function() x:set(1, 2) end,
      "set: in-place change of a tensor that requires grad (use fs.no_grad or detach)")
  end)

  it("keeps an intermediate result's data only where a backward reads it", function()
    local x = fs.tensor({1, 2, 3}, {requires_grad = true})
    local base = fs.memory().live_bytes
    local big = x:view(3, 1) + fs.zeros(3, 100000) -- 1.2 MB, read by nothing below
    local s = (big + 1):sum()                      -- add and sum need shapes only
    big:close()
    collectgarbage() -- the temporaries Lua held
    assert.is_true(fs.memory().live_bytes - base < 100000,
                   "held " .. (fs.memory().live_bytes - base))
    s:backward()
    assert.tensor_near(x.grad, fs.tensor({100000, 100000, 100000}), 0)
  end)

  it("mul and matmul keep the values they read after Lua drops their inputs", function()
    local x = fs.tensor({{1, 2}, {3, 4}}, {requires_grad = true})
    local a = x * 2
    local p = a * a      -- d/dx sum(4 x^2) = 8 x
    local q = a:matmul(a) -- d/dx sum((2x)(2x)) = 4 (1 1^T x^T + x^T 1 1^T)
    a:close()
    collectgarbage()
    local loss = p:sum() + q:sum()
    loss:backward()
    local xt = fs.tensor({{1, 3}, {2, 4}})
    local ones = fs.ones(2, 2)
    assert.tensor_near(x.grad, x:detach() * 8 + (ones:matmul(xt) + xt:matmul(ones)) * 4, 1e-5)
  end)

  it("handles a long chain without recursion limits", function()
    local x = fs.tensor({1}, {requires_grad = true})
    local y = x
    for _ = 1, 20000 do y = y * 1 end
    y:sum():backward()
    assert.same({1}, x.grad:totable())
  end)
end)

describe("grad mode", function()
  it("no_grad(fn) records nothing and returns fn's results", function()
    local x = fs.tensor({1}, {requires_grad = true})
    local y, extra = fs.no_grad(function() return x * 2, "extra" end)
    assert.is_false(y:requires_grad())
    assert.equal("extra", extra)
    assert.is_true(fs.is_grad_enabled())
  end)

  it("restores grad mode when fn raises", function()
    assert.has_error(function() fs.no_grad(function() error("boom") end) end)
    assert.is_true(fs.is_grad_enabled())
  end)

  it("a <close> guard switches recording off for a block", function()
    local x = fs.tensor({1}, {requires_grad = true})
    do
      local guard <close> = fs.no_grad()
      assert.is_false(fs.is_grad_enabled())
      assert.is_false((x * 2):requires_grad())
    end
    assert.is_true(fs.is_grad_enabled())
    assert.is_true((x * 2):requires_grad())
  end)

  it("a guard that is collected without being closed leaves grad mode alone", function()
    local function leak_a_guard()
      local guard = fs.no_grad() -- not <close>d: the mode stays off until set back by hand
      return guard ~= nil
    end
    assert.is_true(leak_a_guard())
    fs.set_grad_enabled(true)
    -- a later no-grad region: the collector finalising the lost guard must not switch it on
    local off_after_gc = fs.no_grad(function()
      collectgarbage()
      collectgarbage()
      return not fs.is_grad_enabled()
    end)
    assert.is_true(off_after_gc)
    assert.is_true(fs.is_grad_enabled())
  end)
end)

describe("set_flush_denormal", function()
  it("flushes denormal floats to zero while on, and leaves them alone when off", function()
    local tiny = 1e-39 -- a float32 denormal (the smallest normal float is 1.18e-38)
    assert.is_true(fs.set_flush_denormal(false))
    local kept = (fs.tensor({tiny}) * 1):item()
    assert.is_true(kept > 0 and kept < 1.2e-38, tostring(kept))
    assert.is_true(fs.set_flush_denormal(true))
    local flushed = (fs.tensor({tiny}) * 1):item()
    fs.set_flush_denormal(false)
    -- valgrind emulates SSE without FTZ/DAZ (it warns and computes the denormal)
    if not os.getenv("FS_VALGRIND") then assert.equal(0, flushed) end
    assert.is_true((fs.tensor({tiny}) * 1):item() > 0)
    assert.has_error(function() fs.set_flush_denormal(1) end)
  end)
end)
