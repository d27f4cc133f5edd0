-- Tensors: creation, inspection, views sharing storage, math with broadcasting, reductions,
-- matmul, cat/stack/where/index_select, printing, and every kernel on non-contiguous views.
local fs = require "fewshot"
require "helper"

describe("tensor creation", function()
  it("builds from nested tables with the inferred shape", function()
    local t = fs.tensor({{1, 2, 3}, {4, 5, 6}})
    assert.same({2, 3}, t:shape())
    assert.equal(2, t:dim())
    assert.equal(6, t:numel())
    assert.equal(3, t:size(2))
    assert.equal(3, t:size(-1))
    assert.equal(2, #t)
    assert.same({{1, 2, 3}, {4, 5, 6}}, t:totable())
    assert.equal(6, t:get(2, 3))
    assert.equal(7, fs.tensor(7):item())
    assert.same({}, fs.tensor(7):shape())
  end)

  it("refuses ragged tables and bad shapes with a message", function()
    assert.has_error(function() fs.tensor({{1, 2}, {3}}) end,
      "tensor: ragged nested table (expected 2 entries at depth 2)")
    assert.has_error(function() fs.zeros({2, -1}) end,
      "shape entry 2 must be a non-negative integer")
  end)

  it("fills zeros, ones, full and arange like NumPy", function()
    assert.same({{0, 0}, {0, 0}}, fs.zeros({2, 2}):totable())
    assert.same({1, 1, 1}, fs.ones({3}):totable())
    assert.same({{2.5, 2.5}}, fs.full({1, 2}, 2.5):totable())
    assert.same({0, 1, 2, 3, 4}, fs.arange(5):totable())
    assert.same({2, 4, 6}, fs.arange(2, 8, 2):totable())
    assert.same({1, 0.5}, fs.arange(1, 0, -0.5):totable())
    assert.equal(0, fs.arange(0):numel())
    assert.has_error(function() fs.arange(0, 1, 0) end)
  end)

  it("takes the options table everywhere", function()
    assert.is_true(fs.zeros({2}, {requires_grad = true}):requires_grad())
    assert.is_true(fs.ones({2}, {requires_grad = true}):requires_grad())
    assert.is_true(fs.full({2}, 1, {requires_grad = true}):requires_grad())
    assert.is_true(fs.arange(3, {requires_grad = true}):requires_grad())
    assert.is_true(fs.tensor({1}, {requires_grad = true}):requires_grad())
    assert.is_true(fs.randn({2}, {requires_grad = true}):requires_grad())
    assert.is_false(fs.zeros({2}):requires_grad())
  end)

  it("draws the same numbers for the same seed, and different for another", function()
    fs.manual_seed(42); local a = fs.randn({100})
    fs.manual_seed(42); local b = fs.randn({100})
    fs.manual_seed(43); local c = fs.randn({100})
    assert.same(a:totable(), b:totable())
    assert.is_true((a - c):abs():sum():item() > 1)
    local g1, g2 = fs.generator(5), fs.generator(5)
    assert.same(fs.rand({10}, {generator = g1}):totable(), fs.rand({10}, {generator = g2}):totable())
  end)

  it("has the right moments for rand and randn", function()
    local g = fs.generator(1)
    local u = fs.rand({100000}, {generator = g})
    local n = fs.randn({100000}, {generator = g})
    assert.is_true(math.abs(u:mean():item() - 0.5) < 0.01)
    assert.is_true(math.abs(u:var():item() - 1 / 12) < 0.002)
    assert.is_true(u:min():item() >= 0 and u:max():item() < 1)
    assert.is_true(math.abs(n:mean():item()) < 0.02)
    assert.is_true(math.abs(n:var():item() - 1) < 0.02)
  end)

  it("generators give seeded integers and permutations", function()
    local g = fs.generator(3)
    local p = g:permutation(10)
    table.sort(p)
    assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, p)
    local a, b = fs.generator(9), fs.generator(9)
    for _ = 1, 20 do
      local x = a:randint(6)
      assert.equal(x, b:randint(6))
      assert.is_true(x >= 1 and x <= 6)
    end
  end)
end)

describe("tensor access", function()
  it("get and set are 1-based and bounds-checked", function()
    local t = fs.zeros({2, 3})
    t:set(2, 3, 5)
    assert.equal(5, t:get(2, 3))
    assert.has_error(function() t:get(3, 1) end,
      "get: index 3 out of range for dim 1 of shape (2, 3) (indices are 1-based)")
    assert.has_error(function() t:get(1) end, "get: 1 indices given for a tensor of shape (2, 3)")
    assert.has_error(function() t:item() end, "item: tensor of shape (2, 3) has 6 elements, not one")
  end)

  it("prints values and shape, elided when large", function()
    local s = tostring(fs.tensor({{1, 2}, {3, 4}}))
    assert.equal("tensor([[1., 2.],\n        [3., 4.]], shape=(2, 2))", s)
    local big = tostring(fs.zeros({100, 100}))
    assert.truthy(big:find("...", 1, true))
    assert.truthy(big:find("shape=(100, 100)", 1, true))
    assert.is_true(#big < 2000)
    assert.truthy(tostring(fs.tensor({1.5}, {requires_grad = true})):find("requires_grad=true"))
  end)

  it("a closed tensor raises instead of crashing", function()
    local t = fs.ones({2})
    do local c <close> = t end
    assert.has_error(function() t:sum() end, "attempt to use a closed tensor")
    t:close() -- closing twice is safe
  end)
end)

describe("views", function()
  it("share storage with their base", function()
    local base = fs.zeros({3, 4})
    base:narrow(2, 2, 2):fill(1)
    assert.same({{0, 1, 1, 0}, {0, 1, 1, 0}, {0, 1, 1, 0}}, base:totable())
    base:select(1, 3):fill(7)
    assert.same({7, 7, 7, 7}, base:select(1, 3):totable())
    base:transpose(1, 2):set(1, 2, 9) -- element (2, 1) of base
    assert.equal(9, base:get(2, 1))
    local v = base:view({12})
    v:set(1, -1)
    assert.equal(-1, base:get(1, 1))
  end)

  it("reshape, permute, unsqueeze, squeeze and expand give the right shapes and values", function()
    local t = fs.arange(24):view({2, 3, 4})
    assert.same({4, 2, 3}, t:permute(3, 1, 2):shape())
    assert.equal(t:get(2, 3, 4), t:permute({3, 1, 2}):get(4, 2, 3))
    assert.same({2, 12}, t:view({2, -1}):shape())
    assert.same({2, 1, 3, 4}, t:unsqueeze(2):shape())
    assert.same({2, 3, 4, 1}, t:unsqueeze(-1):shape())
    assert.same({2, 3, 4}, t:unsqueeze(2):squeeze():shape())
    assert.same({3, 4}, fs.zeros({1, 3, 4}):squeeze(1):shape())
    local e = fs.tensor({{1}, {2}}):expand({2, 3})
    assert.same({{1, 1, 1}, {2, 2, 2}}, e:totable())
    assert.same({{1, 1, 1}, {2, 2, 2}}, fs.tensor({{1}, {2}}):expand({-1, 3}):totable())
    local tr = t:transpose(1, 3)
    assert.is_false(tr:is_contiguous())
    assert.has_error(function() tr:view({24}) end,
      "view: tensor of shape (4, 3, 2) is not contiguous; use reshape or contiguous()")
    assert.same(tr:contiguous():view({24}):totable(), tr:reshape({24}):totable())
    assert.has_error(function() t:view({5, 5}) end,
      "view: shape (5, 5) is invalid for a tensor of shape (2, 3, 4) (24 elements)")
  end)

  it("clone and contiguous copy; detach shares storage without grad", function()
    local a = fs.ones({2, 2}, {requires_grad = true})
    local c = a:clone()
    assert.equal("clone", c.grad_fn)
    local d = a:detach()
    assert.is_false(d:requires_grad())
    fs.no_grad(function() d:set(1, 1, 5) end)
    assert.equal(5, a:get(1, 1))
  end)
end)

describe("math", function()
  it("broadcasts NumPy-style with scalars on either side", function()
    local a = fs.tensor({{1, 2, 3}, {4, 5, 6}})
    local b = fs.tensor({10, 20, 30})
    assert.same({{11, 22, 33}, {14, 25, 36}}, (a + b):totable())
    assert.same({{-9, -18, -27}, {-6, -15, -24}}, (a - b):totable())
    assert.same({{2, 4, 6}, {8, 10, 12}}, (a * 2):totable())
    assert.same({{9, 8, 7}, {6, 5, 4}}, (10 - a):totable())
    assert.same({{1, 0.5}, {0.25, 0.125}}, (1 / fs.tensor({{1, 2}, {4, 8}})):totable())
    assert.same({{1, 4, 9}, {16, 25, 36}}, (a ^ 2):totable())
    assert.same({{-1, -2, -3}, {-4, -5, -6}}, (-a):totable())
    local col = fs.tensor({{1}, {2}})
    assert.same({{11, 21, 31}, {12, 22, 32}}, (col + b):totable())
    assert.has_error(function() return a + fs.ones({4}) end,
      "add: shapes (2, 3) and (4) cannot be broadcast together")
  end)

  it("computes the unary functions", function()
    local x = fs.tensor({-2, -0.5, 0.5, 2})
    assert.tensor_near(x:exp(), {math.exp(-2), math.exp(-0.5), math.exp(0.5), math.exp(2)}, 1e-6)
    assert.tensor_near(x:abs():log(), {math.log(2), math.log(0.5), math.log(0.5), math.log(2)}, 1e-6)
    assert.tensor_near(x:abs():sqrt(), {math.sqrt(2), math.sqrt(0.5), math.sqrt(0.5), math.sqrt(2)}, 1e-6)
    assert.same({0, 0, 0.5, 2}, x:relu():totable())
    assert.tensor_near(x:sigmoid(), {1 / (1 + math.exp(2)), 1 / (1 + math.exp(0.5)),
      1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-2))}, 1e-6)
    local function tanh(v) return (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v)) end
    assert.tensor_near(x:tanh(), {tanh(-2), tanh(-0.5), tanh(0.5), tanh(2)}, 1e-6)
    assert.same({-1, -0.5, 0.5, 1}, x:clamp(-1, 1):totable())
    assert.same({-2, -0.5, 0.5, 1}, x:clamp(nil, 1):totable())
    assert.same({2, 0.5, 0.5, 2}, x:abs():totable())
  end)

  it("compares into 0/1 tensors", function()
    local a, b = fs.tensor({1, 2, 3}), fs.tensor({3, 2, 1})
    assert.same({0, 1, 0}, a:eq(b):totable())
    assert.same({1, 0, 1}, a:ne(b):totable())
    assert.same({1, 0, 0}, a:lt(b):totable())
    assert.same({1, 1, 0}, a:le(b):totable())
    assert.same({0, 0, 1}, a:gt(b):totable())
    assert.same({0, 1, 1}, a:ge(2):totable())
  end)

  it("where picks by condition with broadcasting", function()
    local c = fs.tensor({1, 0, 1})
    assert.same({{1, 20, 3}}, fs.where(c, fs.tensor({{1, 2, 3}}), fs.tensor({10, 20, 30})):totable())
    assert.same({5, 0, 5}, fs.where(c, 5, 0):totable())
  end)
end)

describe("reductions", function()
  local t = fs.tensor({{1, 5, 3}, {4, 2, 6}})
  it("sum and mean over all or one dim, with keepdim", function()
    assert.equal(21, t:sum():item())
    assert.same({5, 7, 9}, t:sum(1):totable())
    assert.same({{9}, {12}}, t:sum(2, true):totable())
    assert.same({3, 4}, t:mean(2):totable())
    assert.equal(3.5, t:mean():item())
  end)

  it("var is unbiased by default and stable for offset data", function()
    assert.tensor_near(t:var(2), {4, 4}, 1e-6)
    assert.tensor_near(t:var(2, false, false), {8 / 3, 8 / 3}, 1e-6)
    local g = fs.generator(11)
    local x = fs.randn({10000}, {generator = g}) + 50
    local v = x:var():item()
    assert.is_true(math.abs(v - 1) < 0.05, "variance " .. v)
  end)

  it("max, min and argmax give values and 1-based indices", function()
    local values, idx = t:max(2)
    assert.same({5, 6}, values:totable())
    assert.same({2, 3}, idx:totable())
    local mv, mi = t:min(1, true)
    assert.same({{1, 2, 3}}, mv:totable())
    assert.same({{1, 2, 1}}, mi:totable())
    assert.equal(6, t:max():item())
    assert.equal(1, t:min():item())
    assert.equal(6, t:argmax())
    assert.equal(1, t:argmin())
    assert.same({2, 1, 2}, t:argmax(1):totable())
  end)
end)

describe("matmul", function()
  local function naive(a, b)
    local A, B = a:totable(), b:totable()
    local n, k, m = #A, #B, #B[1]
    local out = {}
    for i = 1, n do
      out[i] = {}
      for j = 1, m do
        local s = 0
        for p = 1, k do s = s + A[i][p] * B[p][j] end
        out[i][j] = s
      end
    end
    return out
  end

  it("matches a naive product, also on transposed views", function()
    local g = fs.generator(2)
    local a, b = fs.randn({5, 7}, {generator = g}), fs.randn({7, 3}, {generator = g})
    assert.tensor_near(a:matmul(b), naive(a, b), 1e-5)
    local at = fs.randn({7, 5}, {generator = g}):transpose(1, 2)
    local bt = fs.randn({3, 7}, {generator = g}):transpose(1, 2)
    assert.tensor_near(at:matmul(bt), naive(at, bt), 1e-5)
    local sliced = fs.randn({5, 14}, {generator = g}):narrow(2, 3, 7)
    assert.tensor_near(sliced:matmul(b), naive(sliced, b), 1e-5)
    local stepped = fs.randn({10, 7}, {generator = g}):view({5, 2, 7}):select(2, 2)
    assert.tensor_near(stepped:matmul(b), naive(stepped, b), 1e-5)
  end)

  it("handles vectors and broadcast batches like torch.matmul", function()
    local g = fs.generator(3)
    local v = fs.randn({4}, {generator = g})
    local m = fs.randn({4, 3}, {generator = g})
    assert.same({}, v:matmul(v):shape())
    assert.tensor_near(v:matmul(v), (v * v):sum(), 1e-5)
    assert.same({3}, v:matmul(m):shape())
    assert.same({3}, m:transpose(1, 2):matmul(v):shape())
    local batch = fs.randn({2, 5, 4}, {generator = g})
    local out = batch:matmul(m)
    assert.same({2, 5, 3}, out:shape())
    assert.tensor_near(out:select(1, 2), naive(batch:select(1, 2), m), 1e-5)
    local b2 = fs.randn({3, 1, 4, 2}, {generator = g})
    local o2 = batch:matmul(b2)
    assert.same({3, 2, 5, 2}, o2:shape())
    assert.tensor_near(o2:select(1, 3):select(1, 1),
      naive(batch:select(1, 1), b2:select(1, 3):select(1, 1)), 1e-5)
  end)

  it("names the shapes when they do not align", function()
    assert.has_error(function() fs.zeros({2, 3}):matmul(fs.zeros({4, 5})) end,
      "matmul: shapes (2, 3) and (4, 5) are not aligned")
  end)
end)

describe("cat, stack, index_select", function()
  it("concatenate and stack along a dim", function()
    local a, b = fs.tensor({{1, 2}}), fs.tensor({{3, 4}, {5, 6}})
    assert.same({{1, 2}, {3, 4}, {5, 6}}, fs.cat({a, b}, 1):totable())
    assert.same({{1, 2, 1, 2}}, fs.cat({a, a}, 2):totable())
    assert.same({2, 1, 2}, fs.stack({a, a}):shape())
    assert.same({1, 2, 2}, fs.stack({a, a}, 2):shape())
    assert.has_error(function() fs.cat({a, b}, 2) end,
      "cat: tensor 2 has shape (2, 2) but tensor 1 has (1, 2) (they must match except in dim 2)")
    assert.has_error(function() fs.stack({a, b}) end,
      "stack: tensor 2 has shape (2, 2) but tensor 1 has (1, 2)")
  end)

  it("index_select picks 1-based rows, from a table or a tensor", function()
    local t = fs.tensor({{1, 2}, {3, 4}, {5, 6}})
    assert.same({{5, 6}, {1, 2}, {5, 6}}, t:index_select(1, {3, 1, 3}):totable())
    assert.same({{2}, {4}, {6}}, t:index_select(2, fs.tensor({2})):totable())
    assert.has_error(function() t:index_select(1, {4}) end,
      "index_select: index 4 out of range for dim 1 of shape (3, 2)")
  end)
end)

describe("copies of views made of whole blocks", function()
  -- a narrow along dim 2 of (N, C, H, W) is N runs of C'HW floats: copied a run at a time
  local x = fs.arange(0, 2 * 5 * 4 * 6):view({2, 5, 4, 6})
  local function at(i, c, h, w) return ((i - 1) * 5 * 4 * 6) + (c - 1) * 24 + (h - 1) * 6 + (w - 1) end

  it("contiguous() of a channel narrow reads each image's run", function()
    local c = x:narrow(2, 2, 3):contiguous()
    assert.same({2, 3, 4, 6}, c:shape())
    assert.equal(at(1, 2, 1, 1), c:get(1, 1, 1, 1))
    assert.equal(at(2, 4, 4, 6), c:get(2, 3, 4, 6))
    assert.equal(at(2, 2, 3, 5), c:get(2, 1, 3, 5))
  end)

  it("cat along channels writes each input into its runs, and add_ into a narrow adds there", function()
    local a, b = x:narrow(2, 1, 2), x:narrow(2, 3, 3)
    local y = fs.cat({b, a}, 2)
    assert.equal(at(2, 3, 2, 2), y:get(2, 1, 2, 2))
    assert.equal(at(1, 2, 4, 6), y:get(1, 5, 4, 6))
    local z = fs.zeros({2, 5, 4, 6})
    fs.no_grad(function() z:narrow(2, 4, 2):copy(x:narrow(2, 1, 2)) end)
    assert.equal(0, z:get(2, 3, 4, 6))
    assert.equal(at(2, 2, 1, 3), z:get(2, 5, 1, 3))
    assert.equal(x:narrow(2, 1, 2):sum():item(), z:sum():item())
  end)
end)

describe("every kernel on non-contiguous views", function()
  -- Each op on a transposed / narrowed view must equal the op on its contiguous copy.
  local g = fs.generator(21)
  local base = fs.rand({6, 8}, {generator = g}) + 0.5
  local views = {
    transposed = base:transpose(1, 2),
    narrowed = base:narrow(2, 2, 5),
    stepped = base:view({6, 4, 2}):select(3, 1),
    expanded = fs.rand({1, 8}, {generator = g}):expand({6, 8}),
  }
  local ops = {
    exp = function(x) return x:exp() end, log = function(x) return x:log() end,
    sqrt = function(x) return x:sqrt() end, abs = function(x) return (x - 1):abs() end,
    relu = function(x) return (x - 1):relu() end, sigmoid = function(x) return x:sigmoid() end,
    tanh = function(x) return x:tanh() end, neg = function(x) return -x end,
    clamp = function(x) return x:clamp(0.7, 1.2) end,
    add = function(x) return x + x end, mul = function(x) return x * x end,
    div = function(x) return x / (x + 1) end, pow = function(x) return x ^ x end,
    sub_row = function(x) return x - x:select(1, 1) end,
    gt = function(x) return x:gt(1) end, where = function(x) return fs.where(x:gt(1), x, 0) end,
    sum0 = function(x) return x:sum(1) end, sum1 = function(x) return x:sum(2, true) end,
    mean = function(x) return x:mean(2) end, var = function(x) return x:var(1) end,
    max = function(x) return (x:max(2)) end, min = function(x) return (x:min(1)) end,
    matmul = function(x) return x:matmul(x:transpose(1, 2)) end,
    cat = function(x) return fs.cat({x, x}, 2) end,
    index_select = function(x) return x:index_select(2, {2, 1}) end,
    clone = function(x) return x:clone() end,
  }
  for vname, v in pairs(views) do
    for oname, op in pairs(ops) do
      it(oname .. " on a " .. vname .. " view", function()
        assert.tensor_near(op(v), op(v:contiguous()), 1e-6)
      end)
    end
  end
end)

describe("threads", function()
  it("set_num_threads changes the count and not the results", function()
    local n0 = fs.get_num_threads()
    assert.is_true(n0 >= 1)
    local g = fs.generator(4)
    local a = fs.randn({300, 400}, {generator = g})
    fs.set_num_threads(1)
    assert.equal(1, fs.get_num_threads())
    local r1 = (a:exp() * a):sum(2)
    fs.set_num_threads(2)
    local r2 = (a:exp() * a):sum(2)
    fs.set_num_threads(n0)
    assert.same(r1:totable(), r2:totable())
    assert.has_error(function() fs.set_num_threads(0) end,
      "set_num_threads: expected a positive count, got 0")
  end)
end)

describe("shape arithmetic never overflows", function()
  it("rejects element counts beyond 2^60 instead of wrapping", function()
    assert.has_error(function() fs.zeros({2^62, 4}) end,
      "tensor: shape (4611686018427387904, 4) has too many elements (over 2^63; at most 2^60)")
    assert.has_error(function() fs.zeros({2^32, 2^32}) end,
      "tensor: shape (4294967296, 4294967296) has too many elements (over 2^63; at most 2^60)")
    assert.has_error(function() fs.zeros({2^31, 2^30}) end,
      "tensor: shape (2147483648, 1073741824) has too many elements (over 2^60; at most 2^60)")
  end)

  it("checks expanded and viewed shapes too", function()
    assert.has_error(function() fs.zeros({1}):expand({2^40, 2^40}) end,
      "expand: shape (1099511627776, 1099511627776) has too many elements (over 2^63; at most 2^60)")
    assert.has_error(function() fs.zeros({4}):view({2^62, 2^62}) end,
      "view: shape (4611686018427387904, 4611686018427387904) is invalid for a tensor of shape (4) (4 elements)")
  end)

  it("bounds the layers' size arithmetic", function()
    local F = fs.nn.functional
    local x, w = fs.zeros({1, 1, 4, 4}), fs.zeros({1, 1, 3, 3})
    local ok, err = pcall(F.conv2d, x, w, nil, {padding = 2^40})
    assert.is_false(ok)
    assert.matches("conv2d: stride (1, 1), padding (1099511627776, 1099511627776), dilation (1, 1), "
      .. "output_padding and groups must be at most 2^31", err, 1, true)
    ok, err = pcall(F.conv_transpose2d, x, w, nil, {stride = 2^31})
    assert.matches("conv_transpose2d: shape (1, 1, 6442450947, 6442450947) has too many elements", err, 1, true)
    ok, err = pcall(F.max_pool2d, x, {kernel = 2^62})
    assert.matches("max_pool2d: kernel (4611686018427387904, 4611686018427387904) and stride "
      .. "(4611686018427387904, 4611686018427387904) must be at most 2^31", err, 1, true)
    ok, err = pcall(F.conv2d, fs.zeros({1, 1, 1, 1}):expand({1, 1, 2^30, 2^30}), w)
    assert.matches("conv2d: shape (1, 3, 3, 1073741822, 1073741822) has too many elements", err, 1, true)
  end)
end)
