-- Layers (fs.nn.functional = fs.F, fs.cdist2): forward and backward against PyTorch fixtures
-- (tools/make_fixtures.py; references computed in float64 from the same float32 inputs),
-- each case also run on a non-contiguous input; finite-difference checks of every backward;
-- batch-norm running statistics; shape error messages.
--
-- Tolerances (assert.tensor_near: |a - e| <= tol * (1 + |e|)): 1e-5 for every forward and
-- every gradient against PyTorch (measured worst: 1.1e-6 for conv2d 7x7, 1.3e-6 for
-- conv_transpose2d's bias gradient, <= 1e-6 elsewhere; running stats 1e-6).
-- Finite differences (helper.gradcheck, eps 1e-2 on float32): worst relative error <= 5e-4
-- (measured: <= 3.4e-5).
local fs = require "fewshot"
local helper = require "helper"
local F = fs.nn.functional

local DIR = "spec/fixtures/layers/"
local function fixture(name) return helper.load_fixture(DIR .. name .. ".txt") end

-- A non-contiguous view with t's values whose storage is a fresh leaf requiring grad:
-- returns the view and a function giving the leaf's gradient in the view's layout.
local function strided_leaf(t)
  local nd = t:dim()
  local base = t:transpose(nd - 1, nd):contiguous():detach():requires_grad(true)
  local v = base:transpose(nd - 1, nd)
  assert.is_false(v:is_contiguous())
  return v, function() return base.grad and base.grad:transpose(nd - 1, nd) end
end

local INPUTS = {"x", "w", "b"}

-- Runs fn(I, f) on the fixture's inputs (I.x, I.w, I.b as leaves requiring grad), compares
-- y and the gradients of sum(y * gy), first with contiguous inputs, then with x strided.
local function check_fixture(name, fn, tol)
  tol = tol or {}
  local f = fixture(name)
  for _, strided in ipairs({false, true}) do
    if not (strided and f.x:dim() < 2) then
      local I, grad = {}, {}
      for _, k in ipairs(INPUTS) do
        if f[k] then
          if strided and k == "x" then
            I[k], grad[k] = strided_leaf(f[k])
          else
            local leaf = f[k]:clone():requires_grad(true)
            I[k], grad[k] = leaf, function() return leaf.grad end
          end
        end
      end
      local y = fn(I, f)
      assert.tensor_near(y, f.y, tol.y or 1e-5)
      y:backward(f.gy)
      for _, k in ipairs(INPUTS) do
        if f["d" .. k] then
          local g = grad[k]()
          assert.is_not_nil(g, name .. ": no gradient for " .. k)
          assert.tensor_near(g, f["d" .. k], (tol.g and tol.g[k]) or tol.grad or 1e-5)
        end
      end
    end
  end
  return f
end

local function gradcheck_ok(fn, inputs, tol, eps)
  local worst = helper.gradcheck(fn, inputs, {eps = eps or 1e-2})
  assert.is_true(worst <= (tol or 5e-4), string.format("finite differences: worst %.3g", worst))
end

local function randn(shape, seed, scale)
  local t = fs.randn(shape, {generator = fs.generator(seed)})
  if scale then t = fs.no_grad(function() return t * scale end) end
  return t:requires_grad(true)
end

-- Distinct values (spacing 0.05, shuffled): no ties within eps for max-pool checks.
local function distinct(shape, seed)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local vals, g = {}, fs.generator(seed)
  for i = 1, n do vals[i] = (i - n / 2) * 0.05 end
  local r = fs.rand({n}, {generator = g}):totable()
  local idx = {}
  for i = 1, n do idx[i] = i end
  table.sort(idx, function(a, b) return r[a] < r[b] end)
  local out = {}
  for i = 1, n do out[i] = vals[idx[i]] end
  return fs.tensor(out):view(shape):requires_grad(true)
end

describe("conv2d", function()
  local cases = {
    conv_basic = {stride = 1, padding = 1},
    conv_stride_pad = {stride = 2, padding = {1, 2}},
    conv_dilation = {stride = {1, 2}, padding = 2, dilation = 2},
    conv_groups = {stride = 1, padding = 1, groups = 2},
    conv_1x1_single = {},
    conv_1x1_batched = {},
    conv_1x1_stride2 = {stride = 2},
    conv_7x7 = {stride = 2, padding = 3},
    conv_per_image = {padding = 1, groups = 2},
    conv_direct_wide = {padding = 1},
    conv_direct_small = {padding = 1},
    conv_direct_one = {padding = {2, 1}},
    conv_direct_rect = {padding = {0, 1}},
    conv_padded_k5 = {padding = {1, 2}}, conv_padded_wide = {padding = {2, 1}},
    conv_padded_pad0 = {padding = 0}, conv_padded_pad2 = {padding = 2},
  }
  for name, opts in pairs(cases) do
    it("matches PyTorch: " .. name, function()
      check_fixture(name, function(I) return F.conv2d(I.x, I.w, I.b, opts) end)
    end)
  end

  it("passes finite differences with stride, padding, dilation, groups and odd sizes", function()
    gradcheck_ok(function(x, w, b) return F.conv2d(x, w, b, {stride = 2, padding = 1}) end,
      {randn({2, 3, 5, 6}, 1), randn({4, 3, 3, 3}, 2, 0.3), randn({4}, 3)})
    gradcheck_ok(function(x, w) return F.conv2d(x, w, nil, {padding = {2, 1}, dilation = {2, 1}}) end,
      {randn({1, 2, 5, 4}, 4), randn({3, 2, 3, 2}, 5, 0.3)})
    gradcheck_ok(function(x, w, b) return F.conv2d(x, w, b, {groups = 2, stride = {1, 2}}) end,
      {randn({2, 4, 4, 5}, 6), randn({2, 2, 2, 2}, 7, 0.3), randn({2}, 8)})
    gradcheck_ok(function(x, w) return F.conv2d(x, w) end, -- 1x1 direct path
      {randn({1, 3, 4, 4}, 9), randn({2, 3, 1, 1}, 10, 0.3)})
  end)

  it("stride-1 'same' convolutions (one span copy per unfolded row) equal the explicitly padded ones, gradients too", function()
    local function zero_pad(x, ph, pw)
      local n, c, h, w = x:size(1), x:size(2), x:size(3), x:size(4)
      local z = fs.zeros({n, c, h, pw})
      x = fs.cat({z, x, z}, 4)
      z = fs.zeros({n, c, ph, w + 2 * pw})
      return fs.cat({z, x, z}, 3)
    end
    local cases = { -- x shape, w shape, padding, dilation, groups
      {{3, 4, 6, 7}, {5, 4, 3, 3}, {1, 1}, {1, 1}, 1},
      {{2, 3, 5, 9}, {4, 3, 3, 5}, {1, 2}, {1, 1}, 1},
      {{2, 4, 7, 6}, {4, 2, 3, 3}, {2, 2}, {2, 2}, 2},
      {{27, 2, 2, 2}, {3, 2, 3, 3}, {1, 1}, {1, 1}, 1},
      {{1, 2, 4, 3}, {2, 2, 5, 5}, {2, 2}, {1, 1}, 1},
    }
    for i, cs in ipairs(cases) do
      local x, w = randn(cs[1], 20 + i), randn(cs[2], 40 + i, 0.3)
      local y = F.conv2d(x, w, nil, {padding = cs[3], dilation = cs[4], groups = cs[5]})
      local r = fs.randn(y:shape(), {generator = fs.generator(60 + i)})
      ;(y * r):sum():backward()
      local gx, gw = x.grad, w.grad
      x.grad, w.grad = nil, nil
      local ref = F.conv2d(zero_pad(x, cs[3][1], cs[3][2]), w, nil, {dilation = cs[4], groups = cs[5]})
      ;(ref * r):sum():backward()
      assert.are.same(cs[1][3], y:size(3))
      assert.are.same(cs[1][4], y:size(4))
      assert.tensor_near(y, ref, 1e-5)
      assert.tensor_near(gx, x.grad, 1e-5) -- col2im's span path against the unpadded one
      assert.tensor_near(gw, w.grad, 1e-5)
    end
  end)

  it("accepts a non-contiguous weight and bias (gradients land in their storage)", function()
    local f = fixture("conv_basic")
    local w, gw = strided_leaf(f.w)
    local bb = fs.cat({f.b:view({4, 1}), f.b:view({4, 1})}, 2):detach():requires_grad(true)
    local b = bb:select(2, 1)
    assert.is_false(b:is_contiguous())
    local y = F.conv2d(f.x, w, b, {padding = 1})
    assert.tensor_near(y, f.y, 1e-5)
    y:backward(f.gy)
    assert.tensor_near(gw(), f.dw, 1e-5)
    assert.tensor_near(bb.grad:select(2, 1), f.db, 1e-5)
    assert.same({0, 0, 0, 0}, bb.grad:select(2, 2):totable())
  end)

  it("accepts an unbatched (C, H, W) input", function()
    local f = fixture("conv_1x1_single")
    local y = F.conv2d(f.x:select(1, 1), f.w, f.b)
    assert.same({6, 5, 5}, y:shape())
    assert.tensor_near(y, f.y:select(1, 1), 1e-5)
  end)

  -- The batch against its images one by one (a single image takes the batched path).
  local function same_as_image_by_image(xshape, wshape, opts, seed)
    local x = randn(xshape, seed)
    local w = randn(wshape, seed + 1, 0.1)
    local b = randn({wshape[1]}, seed + 2)
    local y = F.conv2d(x, w, b, opts)
    local gy = fs.randn(y:shape(), {generator = fs.generator(seed + 3)})
    y:backward(gy)
    local dx, dw, db = x.grad, w.grad, b.grad
    x.grad, w.grad, b.grad = nil, nil, nil
    for i = 1, xshape[1] do
      local yi = F.conv2d(x:narrow(1, i, 1), w, b, opts)
      assert.tensor_near(yi, y:narrow(1, i, 1), 1e-5)
      yi:backward(gy:narrow(1, i, 1))
    end
    assert.tensor_near(dx, x.grad, 1e-5)
    assert.tensor_near(dw, w.grad, 1e-4)
    assert.tensor_near(db, b.grad, 1e-4)
  end

  local function with_threads(n, fn)
    local saved = fs.get_num_threads()
    fs.set_num_threads(n)
    local ok, err = pcall(fn)
    fs.set_num_threads(saved)
    assert(ok, err)
  end

  it("batched path: large batches split into chunks, same result as image by image", function()
    -- 1 thread takes the batched form; 40 images x (2304 x 64) columns exceed one column
    -- buffer (2^23 floats): 2 chunks of 20
    with_threads(1, function()
      same_as_image_by_image({40, 256, 8, 8}, {16, 256, 3, 3}, {padding = 1}, 11)
    end)
  end)

  it("threads own images, in steps when their columns exceed the budget", function()
    -- 2 threads x 4 images of 576 x 4096 columns: each thread goes one image at a time
    with_threads(2, function()
      same_as_image_by_image({8, 64, 64, 64}, {8, 64, 3, 3}, {padding = 1}, 15)
    end)
  end)

  it("agrees with image by image at 1 and 2 threads, strided output", function()
    for _, t in ipairs({1, 2}) do
      with_threads(t, function()
        same_as_image_by_image({5, 16, 32, 32}, {8, 16, 3, 3}, {padding = 1, stride = {1, 2}}, 21)
      end)
    end
  end)

  it("a large weight gradient: threads split dw's columns (no per-thread copies)", function()
    with_threads(2, function()
      same_as_image_by_image({3, 64, 2, 2}, {128, 64, 3, 3}, {padding = 1}, 25)
    end)
  end)

  it("direct kernels and threaded splits match PyTorch at 1 and 2 threads", function()
    -- conv_direct.c: a partial block of output channels, masked last vectors, small images
    -- grouped, one image split over output channels, 5x5 and 1x3 kernels, strides of 2, and
    -- conv_transpose2d's forward (the same kernel as conv2d's data-gradient); the weight
    -- gradient over 70 channels (blocks of 64 and 16), 63 taps, two images per pass; data-
    -- gradients on full blocks of input channels (16; and one output channel); and weights
    -- large next to the columns (threads split the output channels, then the input channels);
    -- batches whose whole output fits one vector
    local cases = {
      conv_direct_wide = {padding = 1}, conv_direct_small = {padding = 1},
      conv_direct_one = {padding = {2, 1}}, conv_direct_rect = {padding = {0, 1}},
      conv_direct_s2 = {stride = 2, padding = 1}, conv_direct_stem = {stride = 2, padding = 3},
      conv_direct_ds = {stride = 2}, conv_direct_dw = {padding = 1},
      conv_direct_dx = {padding = 1}, conv_direct_dx1 = {padding = 1},
      conv_weight_heavy = {padding = 1}, conv_tiny_batch = {padding = 1},
      conv_tiny_packed = {padding = 1},
      conv_padded_k5 = {padding = {1, 2}}, conv_padded_wide = {padding = {2, 1}},
      conv_padded_pad0 = {padding = 0}, conv_padded_pad2 = {padding = 2},
    }
    for _, t in ipairs({1, 2}) do
      with_threads(t, function()
        for name, opts in pairs(cases) do
          check_fixture(name, function(I) return F.conv2d(I.x, I.w, I.b, opts) end)
        end
        check_fixture("convt_direct", function(I)
          return F.conv_transpose2d(I.x, I.w, I.b, {padding = 1})
        end)
      end)
    end
  end)

  it("adds the weight gradient into an existing .grad on every path (twice = double)", function()
    -- the first backward fills w.grad, the second adds into it in place: the direct weight
    -- gradient, the weight-heavy split, the per-thread images, a 1x1 over large images
    local cases = {
      {{3, 5, 8, 16}, {11, 5, 3, 3}, 1}, {{3, 64, 3, 3}, {100, 64, 3, 3}, 1},
      {{4, 8, 6, 6}, {16, 8, 3, 3}, 1}, {{2, 4, 16, 16}, {8, 4, 1, 1}, 0},
    }
    for _, t in ipairs({1, 2}) do
      with_threads(t, function()
        for i, c in ipairs(cases) do
          local x, w = randn(c[1], 40 + i), randn(c[2], 50 + i, 0.1):requires_grad(true)
          local y = F.conv2d(x, w, nil, {padding = c[3]})
          local gy = randn(y:shape(), 60 + i)
          y:backward(gy)
          local once = w.grad:clone()
          F.conv2d(x, w, nil, {padding = c[3]}):backward(gy)
          assert.tensor_near(once * 2, w.grad, 1e-6)
        end
      end)
    end
  end)

  it("one image at 2 threads (GEMMs split over the threads) equals 1 thread", function()
    local x = randn({1, 32, 24, 24}, 31)
    local w = randn({64, 32, 3, 3}, 32, 0.1)
    local res = {}
    for _, t in ipairs({1, 2}) do
      with_threads(t, function()
        x.grad, w.grad = nil, nil
        local y = F.conv2d(x, w, nil, {padding = 1})
        y:backward(fs.ones(y:shape()))
        res[t] = {y, x.grad, w.grad}
      end)
    end
    for i = 1, 3 do assert.tensor_near(res[2][i], res[1][i], 1e-6) end
  end)

  it("names both shapes in its errors", function()
    local x = fs.zeros({2, 3, 8, 8})
    local ok, err = pcall(F.conv2d, x, fs.zeros({4, 2, 3, 3}))
    assert.is_false(ok)
    assert.matches("conv2d: input (2, 3, 8, 8) has 3 channels but weight (4, 2, 3, 3) expects 2",
      err, 1, true)
    ok, err = pcall(F.conv2d, x, fs.zeros({4, 3, 3, 3}), fs.zeros({5}))
    assert.matches("conv2d: bias (5) must have shape (4) for weight (4, 3, 3, 3)", err, 1, true)
    ok, err = pcall(F.conv2d, fs.zeros({1, 3, 2, 2}), fs.zeros({4, 3, 3, 3}))
    assert.matches("smaller than the kernel", err, 1, true)
    ok, err = pcall(F.conv2d, x, fs.zeros({4, 3, 3, 3}), nil, {stride = 0})
    assert.matches("stride (0, 0)", err, 1, true)
    ok, err = pcall(F.conv2d, fs.zeros({3, 8}), fs.zeros({4, 3, 3, 3}))
    assert.matches("conv2d: input must be (N, C, H, W) or (C, H, W), got (3, 8)", err, 1, true)
    ok, err = pcall(F.conv2d, fs.zeros({2, 4, 8, 8}), fs.zeros({3, 2, 3, 3}), nil, {groups = 2})
    assert.matches("not divisible by groups=2", err, 1, true)
  end)

  -- im2col's unit-stride path left the rows of a tap with no valid column unwritten (inputs no
  -- wider than the padding: ResNet-18's layer4 at 32x32 inputs is 1x1), so the weight gradient
  -- of those taps read whatever the block cache held last.
  it("weight gradient with inputs no wider than the padding: the batch's is the sum of the samples'", function()
    local junk = {}
    for i = 1, 8 do junk[i] = fs.ones({9 * 64 * 9}) * 7 end -- stale non-zero blocks in the cache
    junk = nil
    collectgarbage()
    local function wgrad(x, w0)
      local w = w0:clone():requires_grad(true)
      F.conv2d(x, w, nil, {padding = 1}):sum():backward()
      return w.grad
    end
    for _, hw in ipairs({{1, 1}, {3, 1}, {1, 2}}) do
      for _, c in ipairs({4, 64}) do
        local x = fs.randn({9, c, hw[1], hw[2]}, {generator = fs.generator(1)})
        local w0 = fs.randn({c, c, 3, 3}, {generator = fs.generator(2)})
        local g = wgrad(x, w0)
        local ref = wgrad(x:narrow(1, 1, 1):contiguous(), w0)
        for i = 2, 9 do ref = ref + wgrad(x:narrow(1, i, 1):contiguous(), w0) end
        assert.tensor_near(g, ref, 1e-3 * ref:abs():max():item())
        if hw[2] == 1 then -- a 1-wide input: the left and right columns of taps see only padding
          assert.equal(0, g:narrow(4, 1, 1):abs():max():item())
          assert.equal(0, g:narrow(4, 3, 1):abs():max():item())
        end
      end
    end
  end)

  -- y (N, O, OH, OW) by the definition, in double: x (N, C, H, W), w (O, C, kh, kw), b (O) or nil
  local function naive_conv2d(x, w, b, stride, pad)
    local N, C, H, W = x:size(1), x:size(2), x:size(3), x:size(4)
    local O, kh, kw = w:size(1), w:size(3), w:size(4)
    local OH, OW = (H + 2 * pad[1] - kh) // stride[1] + 1, (W + 2 * pad[2] - kw) // stride[2] + 1
    local xv, wv = x:contiguous():view(-1):totable(), w:contiguous():view(-1):totable()
    local bv = b and b:totable()
    local out = {}
    for n = 0, N - 1 do
      for o = 0, O - 1 do
        for oy = 0, OH - 1 do
          for ox = 0, OW - 1 do
            local acc = bv and bv[o + 1] or 0
            for c = 0, C - 1 do
              for ky = 0, kh - 1 do
                local iy = oy * stride[1] + ky - pad[1]
                if iy >= 0 and iy < H then
                  for kx = 0, kw - 1 do
                    local ix = ox * stride[2] + kx - pad[2]
                    if ix >= 0 and ix < W then
                      acc = acc + wv[((o * C + c) * kh + ky) * kw + kx + 1] *
                                  xv[((n * C + c) * H + iy) * W + ix + 1]
                    end
                  end
                end
              end
            end
            out[#out + 1] = acc
          end
        end
      end
    end
    return fs.tensor(out):view({N, O, OH, OW})
  end

  it("tiny output images (conv_small.c: vectors along the batch, each pixel's taps inside the image) match the definition", function()
    -- x shape, w shape, stride, padding: 2x2 outputs (odd channel counts, a partial block of
    -- output channels), stride 2, 1x1 outputs (only the centre tap, or 2x2 of the 3x3 taps,
    -- see the image), a 1x1 stride-2 downsample, batch 1 (the other path), 8 images (half a
    -- vector), a 3x2 output of a 3x3 kernel with rectangular padding over 40 images (3
    -- vectors), 64 images (4 vectors: 2 calls of 2), and pixels that see only padding
    local cases = {
      {{27, 5, 2, 2}, {11, 5, 3, 3}, {1, 1}, {1, 1}},
      {{27, 7, 4, 4}, {9, 7, 3, 3}, {2, 2}, {1, 1}},
      {{27, 6, 1, 1}, {13, 6, 3, 3}, {1, 1}, {1, 1}},
      {{27, 5, 2, 2}, {10, 5, 3, 3}, {2, 2}, {1, 1}},
      {{27, 6, 4, 4}, {12, 6, 1, 1}, {2, 2}, {0, 0}},
      {{1, 5, 2, 2}, {11, 5, 3, 3}, {1, 1}, {1, 1}},
      {{8, 3, 3, 3}, {5, 3, 2, 2}, {1, 1}, {0, 0}},
      {{40, 3, 3, 5}, {9, 3, 3, 3}, {1, 2}, {1, 0}},
      {{64, 4, 2, 2}, {8, 4, 3, 3}, {1, 1}, {1, 1}},
      {{9, 2, 1, 1}, {3, 2, 1, 1}, {1, 1}, {1, 1}},
    }
    for _, t in ipairs({1, 2}) do
      with_threads(t, function()
        for i, cs in ipairs(cases) do
          local x = fs.randn(cs[1], {generator = fs.generator(70 + i)})
          local w = fs.randn(cs[2], {generator = fs.generator(80 + i)}) * 0.3
          local b = i % 2 == 1 and fs.randn({cs[2][1]}, {generator = fs.generator(90 + i)}) or nil
          local y = F.conv2d(x, w, b, {stride = cs[3], padding = cs[4]})
          local ref = naive_conv2d(x, w, b, cs[3], cs[4])
          assert.same(ref:shape(), y:shape())
          assert.tensor_near(y, ref, 1e-5)
        end
      end)
    end
    -- pixels whose every tap is padding hold the bias alone
    local y = F.conv2d(fs.ones({9, 2, 1, 1}), fs.ones({3, 2, 1, 1}), fs.tensor({1, 2, 3}),
                       {padding = 1})
    assert.same({1, 2, 3}, y:select(1, 9):select(2, 1):select(2, 1):totable())
    assert.same({3, 4, 5}, y:select(1, 9):select(2, 2):select(2, 2):totable())
  end)

  it("tiny output images over a batch larger than one buffer of gathered taps (chunks of images) equal the images one at a time", function()
    -- 240 images x 4 pixels x 4608 taps: X holds 224 images at a time (2^22 floats)
    local x = fs.randn({240, 512, 4, 4}, {generator = fs.generator(101)})
    local w = fs.randn({9, 512, 3, 3}, {generator = fs.generator(102)}) * 0.05
    local b = fs.randn({9}, {generator = fs.generator(103)})
    for _, t in ipairs({1, 2}) do
      with_threads(t, function()
        local y = F.conv2d(x, w, b)
        assert.same({240, 9, 2, 2}, y:shape())
        for _, i in ipairs({1, 2, 224, 225, 240}) do -- one image: the direct kernel
          assert.tensor_near(y:narrow(1, i, 1), F.conv2d(x:narrow(1, i, 1), w, b), 1e-5)
        end
      end)
    end
  end)

  it("fused eval conv+BN+ReLU on tiny output images (ResNet-18 at 32x32, 27 images) equals the separate ops", function()
    local m = fs.nn.resnet18{in_channels = 1, seed = 3}
    local x = fs.rand({27, 1, 32, 32}, {generator = fs.generator(104)})
    m:train()
    fs.no_grad(function() m(x) end) -- running statistics away from (0, 1)
    m:eval()
    local fused = fs.no_grad(function() return m(x) end)
    local plain = m(x)
    assert.is_true(plain:requires_grad())
    assert.tensor_near(fused, plain, 1e-5)
  end)
end)

describe("conv_transpose2d", function()
  local cases = {
    convt_stride2 = {stride = 2, padding = 1, output_padding = 1},
    convt_plain = {stride = 2},
    convt_groups_dil = {stride = 1, padding = 1, dilation = 2, groups = 2},
  }
  for name, opts in pairs(cases) do
    it("matches PyTorch: " .. name, function()
      check_fixture(name, function(I) return F.conv_transpose2d(I.x, I.w, I.b, opts) end)
    end)
  end

  it("passes finite differences", function()
    gradcheck_ok(function(x, w, b)
      return F.conv_transpose2d(x, w, b, {stride = 2, padding = 1, output_padding = 1})
    end, {randn({2, 3, 3, 4}, 21), randn({3, 2, 3, 3}, 22, 0.3), randn({2}, 23)})
  end)

  it("checks channels and output_padding", function()
    local ok, err = pcall(F.conv_transpose2d, fs.zeros({1, 3, 4, 4}), fs.zeros({2, 5, 3, 3}))
    assert.is_false(ok)
    assert.matches("conv_transpose2d: input (1, 3, 4, 4) has 3 channels but weight (2, 5, 3, 3) expects 2",
      err, 1, true)
    ok, err = pcall(F.conv_transpose2d, fs.zeros({1, 2, 4, 4}), fs.zeros({2, 5, 3, 3}), nil,
      {stride = 2, output_padding = 2})
    assert.matches("output_padding (2, 2) must be smaller than the stride", err, 1, true)
  end)
end)

describe("linear", function()
  for _, name in ipairs({"linear_2d", "linear_3d", "linear_1d_nobias"}) do
    it("matches PyTorch: " .. name, function()
      check_fixture(name, function(I) return F.linear(I.x, I.w, I.b) end)
    end)
  end

  it("passes finite differences", function()
    gradcheck_ok(function(x, w, b) return F.linear(x, w, b) end,
      {randn({3, 4}, 31), randn({2, 4}, 32), randn({2}, 33)})
  end)

  it("accepts a transposed weight view", function()
    local f = fixture("linear_2d")
    local w, gw = strided_leaf(f.w)
    local y = F.linear(f.x, w, f.b)
    assert.tensor_near(y, f.y, 1e-5)
    y:backward(f.gy)
    assert.tensor_near(gw(), f.dw, 1e-5)
  end)

  it("names both shapes in its errors", function()
    local ok, err = pcall(F.linear, fs.zeros({5, 6}), fs.zeros({3, 7}))
    assert.is_false(ok)
    assert.matches("linear: input (5, 6) has 6 features but weight (3, 7) expects 7", err, 1, true)
  end)
end)

describe("batch_norm", function()
  it("training: batch statistics, in-place running stats with the unbiased variance", function()
    local rm, rv
    local f = check_fixture("bn_train", function(I, f)
      rm, rv = f.rm0:clone(), f.rv0:clone()
      return F.batch_norm(I.x, rm, rv, I.w, I.b, {training = true, momentum = 0.1, eps = 1e-5})
    end)
    assert.tensor_near(rm, f.rm, 1e-6)
    assert.tensor_near(rv, f.rv, 1e-6)
  end)

  it("eval: the running statistics", function()
    local f = check_fixture("bn_eval", function(I, f)
      return F.batch_norm(I.x, f.rm, f.rv, I.w, I.b, {training = false})
    end)
    assert.is_nil(f.x.grad)
  end)

  it("(N, C) input without affine parameters, momentum 0.3", function()
    local rm, rv
    local f = check_fixture("bn_2d_noaffine", function(I, f)
      rm, rv = f.rm0:clone(), f.rv0:clone()
      return F.batch_norm(I.x, rm, rv, nil, nil, {training = true, momentum = 0.3, eps = 1e-3})
    end)
    assert.tensor_near(rm, f.rm, 1e-6)
    assert.tensor_near(rv, f.rv, 1e-6)
  end)

  it("stays exact for a batch with mean 50 and variance 1", function()
    local x = fs.no_grad(function()
      return fs.randn({8, 2, 6, 6}, {generator = fs.generator(41)}) + 50
    end)
    local rm, rv = fs.zeros({2}), fs.ones({2})
    local y = F.batch_norm(x, rm, rv, nil, nil, {training = true, momentum = 1.0})
    -- batch statistics from the values themselves, in double on the Lua side
    local v = helper.values(x:transpose(1, 2):contiguous())
    local per = #v // 2
    for c = 1, 2 do
      local s, ss = 0, 0
      for i = (c - 1) * per + 1, c * per do s = s + v[i] end
      local mean = s / per
      for i = (c - 1) * per + 1, c * per do ss = ss + (v[i] - mean) ^ 2 end
      assert.is_true(math.abs(rm:get(c) - mean) <= 1e-5 * mean)
      assert.is_true(math.abs(rv:get(c) - ss / (per - 1)) <= 1e-5)
      local yv = helper.values(y:select(2, c))
      local ys, yss = 0, 0
      for i = 1, #yv do ys = ys + yv[i] end
      for i = 1, #yv do yss = yss + (yv[i] - ys / #yv) ^ 2 end
      assert.is_true(math.abs(ys / #yv) < 1e-5)
      assert.is_true(math.abs(yss / #yv - ss / per / (ss / per + 1e-5)) < 1e-5)
    end
  end)

  it("passes finite differences in training and eval mode", function()
    gradcheck_ok(function(x, w, b)
      return F.batch_norm(x, nil, nil, w, b, {training = true})
    end, {randn({3, 2, 2, 3}, 42), randn({2}, 43), randn({2}, 44)})
    local rm, rv = fs.tensor({0.2, -0.3}), fs.tensor({1.5, 0.7})
    gradcheck_ok(function(x, w, b)
      return F.batch_norm(x, rm, rv, w, b)
    end, {randn({2, 2, 3}, 45), randn({2}, 46), randn({2}, 47)})
  end)

  it("checks its arguments", function()
    local x = fs.zeros({4, 3, 2, 2})
    local ok, err = pcall(F.batch_norm, x, nil, nil, fs.ones({4}), nil, {training = true})
    assert.is_false(ok)
    assert.matches("batch_norm: weight (4) must have shape (3) for input (4, 3, 2, 2)", err, 1, true)
    ok, err = pcall(F.batch_norm, x, nil, nil, nil, nil, {training = false})
    assert.matches("eval mode (training=false) needs running_mean and running_var", err, 1, true)
    ok, err = pcall(F.batch_norm, fs.zeros({1, 3}), nil, nil, nil, nil, {training = true})
    assert.matches("expected more than 1 value per channel when training", err, 1, true)
  end)
end)

describe("pooling", function()
  local cases = {
    maxpool_resnet = function(x) return F.max_pool2d(x, {kernel = 3, stride = 2, padding = 1}) end,
    maxpool_k2 = function(x) return F.max_pool2d(x, {kernel = 2}) end,
    maxpool_ceil = function(x) return F.max_pool2d(x, {kernel = 3, stride = 2, ceil_mode = true}) end,
    avgpool_pad = function(x) return F.avg_pool2d(x, {kernel = 3, stride = 2, padding = 1}) end,
    avgpool_nopadcount = function(x)
      return F.avg_pool2d(x, {kernel = 3, stride = 2, padding = 1, count_include_pad = false})
    end,
    avgpool_k2 = function(x) return F.avg_pool2d(x, {kernel = {2, 3}}) end,
    avgpool_ceil = function(x)
      return F.avg_pool2d(x, {kernel = 3, stride = 2, padding = 1, ceil_mode = true})
    end,
    adaptive_1x1 = function(x) return F.adaptive_avg_pool2d(x, {1, 1}) end,
    adaptive_3x2 = function(x) return F.adaptive_avg_pool2d(x, {3, 2}) end,
  }
  for name, fn in pairs(cases) do
    it("matches PyTorch: " .. name, function()
      check_fixture(name, function(I) return fn(I.x) end)
    end)
  end

  it("passes finite differences", function()
    gradcheck_ok(function(x) return F.max_pool2d(x, {kernel = 3, stride = 2, padding = 1}) end,
      {distinct({2, 2, 5, 6}, 51)})
    gradcheck_ok(function(x) return F.avg_pool2d(x, {kernel = 3, stride = 2, padding = 1}) end,
      {randn({1, 2, 5, 6}, 52)})
    gradcheck_ok(function(x) return F.adaptive_avg_pool2d(x, {2, 3}) end, {randn({1, 2, 5, 7}, 53)})
  end)

  it("max_pool2d propagates NaN and takes the first of tied maxima", function()
    local nan = 0 / 0
    local y = F.max_pool2d(fs.tensor({{{{1, nan, 7, 2}, {3, 2, 7, 7}}}}), {kernel = 2})
    local v = y:totable()[1][1][1]
    assert.is_true(v[1] ~= v[1])
    assert.equal(7, v[2])
    local x = fs.tensor({{{{7, 2}, {7, 7}}}}):requires_grad(true)
    F.max_pool2d(x, {kernel = 2}):sum():backward()
    assert.same({{{{1, 0}, {0, 0}}}}, x.grad:totable())
  end)

  it("max_pool2d without gradients equals the recorded form exactly, NaN and -inf too", function()
    local nan = 0 / 0
    local opts = {{kernel = 3, stride = 2, padding = 1}, {kernel = 2}, {kernel = {2, 3}},
      {kernel = 3, stride = 2, ceil_mode = true},
      {kernel = {3, 1}, stride = {1, 2}, padding = {1, 0}},
      {kernel = {1, 3}, stride = {2, 3}, padding = {0, 1}, ceil_mode = true}}
    -- without gradients the row-then-column form (pool.c's max_plane_rows) runs these
    for i, o in ipairs(opts) do
      local x = randn({2, 3, 7, 9}, 70 + i)
      local t = x:totable() -- a NaN and a -inf in the first plane
      t[1][1][2][3], t[1][1][5][5] = nan, -math.huge
      x = fs.tensor(t)
      local free
      fs.no_grad(function() free = F.max_pool2d(x, o) end)
      local recorded = F.max_pool2d(x:clone():requires_grad(true), o)
      local a, b = free:totable(), recorded:totable()
      assert.same(recorded:shape(), free:shape())
      for n = 1, #a do for c = 1, #a[n] do for h = 1, #a[n][c] do for w = 1, #a[n][c][h] do
        local u, v = a[n][c][h][w], b[n][c][h][w]
        assert.is_true(u == v or (u ~= u and v ~= v), string.format("%s: %s vs %s", i, u, v))
      end end end end
    end
  end)

  it("max_pool2d 2x2 stride 2 (its one-loop form) equals a reshape-and-max, values and gradients", function()
    -- planes from 2x2 to 40x34 (short rows take the scalar loop, long ones the vector loop);
    -- odd sides drop their last row or column, as floor mode does
    for i, hw in ipairs({{2, 2}, {4, 6}, {8, 8}, {5, 7}, {16, 16}, {40, 34}}) do
      local h, w = hw[1], hw[2]
      local x = randn({2, 3, h, w}, 90 + i):requires_grad(true)
      local y = F.max_pool2d(x, {kernel = 2})
      local oh, ow = h // 2, w // 2
      local even = x:narrow(3, 1, 2 * oh):narrow(4, 1, 2 * ow)
      local ref = even:reshape(2, 3, oh, 2, ow, 2):max(6):max(4)
      assert.same({2, 3, oh, ow}, y:shape())
      assert.tensor_near(y, ref, 0)
      y:sum():backward()
      local dx = x.grad
      x.grad = nil
      ref:sum():backward()
      assert.tensor_near(dx, x.grad, 0)
    end
  end)

  it("max_pool2d sends the gradient to the argmax only", function()
    local x = fs.tensor({{{{1, 5}, {3, 2}}}}):requires_grad(true)
    F.max_pool2d(x, {kernel = 2}):sum():backward()
    assert.same({{{{0, 1}, {0, 0}}}}, x.grad:totable())
  end)

  it("checks its arguments", function()
    local ok, err = pcall(F.max_pool2d, fs.zeros({1, 1, 4, 4}), {})
    assert.is_false(ok)
    assert.matches("max_pool2d: option 'kernel' is required", err, 1, true)
    ok, err = pcall(F.max_pool2d, fs.zeros({1, 1, 4, 4}), {kernel = 2, padding = 2})
    assert.matches("padding (2, 2) should be at most half of the kernel (2, 2)", err, 1, true)
    ok, err = pcall(F.avg_pool2d, fs.zeros({4, 4}), {kernel = 2})
    assert.matches("avg_pool2d: input must be (N, C, H, W) or (C, H, W), got (4, 4)", err, 1, true)
  end)
end)

describe("affine", function()
  -- PyTorch's affine_grid + grid_sample (align_corners=False, zeros); theta stored as I.t
  local cases = {affine_rot20 = "bilinear", affine_zoom_shift = "bilinear", affine_far = "bilinear",
                 affine_nearest = "nearest"}
  for name, mode in pairs(cases) do
    it("matches PyTorch: " .. name, function()
      check_fixture(name, function(I, f) return F.affine(I.x, f.t:totable(), {mode = mode}) end)
    end)
  end

  it("is the identity for the identity matrix, and takes 6 numbers or a 2x3 table", function()
    local x = randn({2, 5, 4}, 71)
    assert.tensor_near(F.affine(x, {{1, 0, 0}, {0, 1, 0}}), x, 1e-6)
    assert.tensor_near(F.affine(x, {1, 0, 0, 0, 1, 0}, {mode = "nearest"}), x, 0)
    assert.same({2, 5, 4}, F.affine(x, {{0, -1, 0}, {1, 0, 0}}):shape())
  end)

  it("passes finite differences (bilinear)", function()
    gradcheck_ok(function(x) return F.affine(x, {{0.9, -0.3, 0.1}, {0.3, 0.9, -0.2}}) end,
      {randn({1, 2, 5, 6}, 72)})
  end)

  it("rejects bad theta, modes, options and inputs", function()
    local x = fs.zeros({1, 1, 4, 4})
    assert.has_error(function() F.affine(x, {1, 0, 0}) end,
      "affine: theta must be {{a, b, c}, {d, e, f}} or 6 numbers, got a table of 3")
    assert.has_error(function() F.affine(x, {{1, 0, 0}, {0, 1, "a"}}) end,
      "affine: theta[2][3] must be a number")
    assert.has_error(function() F.affine(x, {1, 0, 0, 0, 1, 0 / 0}) end, "affine: theta[6] is not finite")
    assert.has_error(function() F.affine(x, {1, 0, 0, 0, 1, 0}, {mode = "bicubic"}) end,
      "affine: mode must be \"nearest\" or \"bilinear\", got \"bicubic\"")
    local ok, err = pcall(F.affine, x, {1, 0, 0, 0, 1, 0}, {mdoe = "nearest"})
    assert.is_false(ok)
    assert.matches("affine: unknown option 'mdoe'", err, 1, true)
    assert.has_error(function() F.affine(fs.zeros({4}), {1, 0, 0, 0, 1, 0}) end,
      "affine: need an image (..., H, W), got (4)")
  end)
end)

describe("interpolate", function()
  local cases = {
    interp_nearest2 = {scale = 2, mode = "nearest"},
    interp_bilinear2 = {scale = 2, mode = "bilinear"},
    interp_nearest3 = {scale = 3},
    interp_bilinear1_5 = {scale = 1.5, mode = "bilinear"},
    interp_size_nearest = {size = {7, 5}, mode = "nearest"},
    interp_size_nearest_up = {size = 10},
    interp_size_bilinear = {size = {9, 7}, mode = "bilinear"},
    interp_size_bilinear_down = {size = {3, 4}, mode = "bilinear"},
  }
  for name, opts in pairs(cases) do
    it("matches PyTorch: " .. name, function()
      check_fixture(name, function(I) return F.interpolate(I.x, opts) end)
    end)
  end

  it("doubles a 1x2 image bilinearly, its edges included, and sends the gradient back", function()
    local x = fs.tensor({{{{1, 5}}}}, {requires_grad = true})
    local y = F.interpolate(x, {scale = 2, mode = "bilinear"})
    assert.same({1, 1, 2, 4}, y:shape())
    assert.same({{{{1, 2, 4, 5}, {1, 2, 4, 5}}}}, y:totable())
    y:sum():backward()
    assert.same({{{{4, 4}}}}, x.grad:totable())
  end)

  it("passes finite differences", function()
    gradcheck_ok(function(x) return F.interpolate(x, {scale = 2, mode = "bilinear"}) end,
      {randn({1, 2, 3, 4}, 61)})
    gradcheck_ok(function(x) return F.interpolate(x, {scale = 2}) end, {randn({1, 1, 3, 3}, 62)})
  end)

  it("rejects what it does not support", function()
    local ok, err = pcall(F.interpolate, fs.zeros({1, 1, 2, 2}), {scale = 2, mode = "bicubic"})
    assert.is_false(ok)
    assert.matches("mode must be \"nearest\" or \"bilinear\"", err, 1, true)
    ok, err = pcall(F.interpolate, fs.zeros({1, 1, 2, 2}), {scale = 2, align_corners = true})
    assert.matches("align_corners=true is not supported", err, 1, true)
  end)

  it("gives the size asked for where a scale of size/H would floor one short", function()
    -- 64/49 * 49 is 63.99999999999999 in doubles: scale= gives 63 rows (as PyTorch does), size= 64
    local x = fs.zeros({1, 1, 49, 49})
    assert.same({1, 1, 63, 63}, F.interpolate(x, {scale = 64 / 49}):shape())
    assert.same({1, 1, 64, 64}, F.interpolate(x, {size = 64, mode = "bilinear"}):shape())
    assert.same({1, 1, 64, 32}, F.interpolate(x, {size = {64, 32}}):shape())
  end)

  it("takes exactly one of size and scale, and bounds both", function()
    local x = fs.zeros({1, 1, 4, 4})
    assert.has_error(function() F.interpolate(x, {}) end,
      "interpolate: give exactly one of 'size' (a number or {h, w}) and 'scale' (a number or {h, w})")
    assert.has_error(function() F.interpolate(x, {size = 2, scale = 2}) end,
      "interpolate: give exactly one of 'size' (a number or {h, w}) and 'scale' (a number or {h, w})")
    assert.has_error(function() F.interpolate(x, {size = 2.5}) end,
      "interpolate: size must be whole numbers in [1, 2^31], got (2.5, 2.5)")
    assert.has_error(function() F.interpolate(x, {size = {0, 3}}) end,
      "interpolate: size must be whole numbers in [1, 2^31], got (0.0, 3.0)")
    assert.has_error(function() F.interpolate(x, {scale = 1e9}) end,
      "interpolate: input (1, 1, 4, 4) scaled by (1e+09, 1e+09) would be (4e+09, 4e+09), over 2147483648 a side")
    assert.has_error(function() F.interpolate(x, {scale = 0.1}) end,
      "interpolate: input (1, 1, 4, 4) scaled by (0.1, 0.1) is empty")
    assert.has_error(function() F.interpolate(x, {sizes = 2}) end,
      "interpolate: unknown option 'sizes' (did you mean 'size'?)")
  end)
end)

describe("softmax and log_softmax", function()
  local cases = {
    softmax_last = function(x) return F.softmax(x, 2) end,
    softmax_mid = function(x) return F.softmax(x, 2) end,
    log_softmax_last = function(x) return F.log_softmax(x, -1) end,
    log_softmax_mid = function(x) return F.log_softmax(x, 2) end,
    log_softmax_big = function(x) return F.log_softmax(x, 2) end, -- logits around 80
  }
  for name, fn in pairs(cases) do
    it("matches PyTorch: " .. name, function()
      check_fixture(name, function(I) return fn(I.x) end)
    end)
  end

  it("passes finite differences", function()
    gradcheck_ok(function(x) return F.softmax(x, 1) end, {randn({3, 2, 2}, 71)})
    gradcheck_ok(function(x) return F.log_softmax(x, 3) end, {randn({2, 2, 4}, 72)})
  end)

  it("checks the dim", function()
    local ok, err = pcall(F.softmax, fs.zeros({2, 3}), 3)
    assert.is_false(ok)
    assert.matches("dim 3 out of range", err, 1, true)
  end)
end)

describe("losses", function()
  for _, red in ipairs({"mean", "sum", "none"}) do
    it("cross_entropy matches PyTorch, reduction " .. red, function()
      check_fixture("ce_" .. red, function(I, f)
        return F.cross_entropy(I.x, f.labels, {reduction = red})
      end)
    end)
    for _, op in ipairs({"mse", "l1", "smoothl1"}) do
      local fn = ({mse = F.mse_loss, l1 = F.l1_loss, smoothl1 = F.smooth_l1_loss})[op]
      it(op .. " matches PyTorch, reduction " .. red, function()
        check_fixture(op .. "_" .. red, function(I) return fn(I.x, I.w, {reduction = red}) end)
      end)
    end
  end

  it("cross_entropy over (N, C, H, W) logits and labels from a Lua table", function()
    check_fixture("ce_spatial", function(I, f) return F.cross_entropy(I.x, f.labels) end)
    local f = fixture("ce_mean")
    local labels = helper.values(f.labels)
    assert.tensor_near(F.cross_entropy(f.x, labels), f.y, 1e-5)
  end)

  it("nll_loss of log_softmax matches PyTorch", function()
    check_fixture("nll_mean", function(I, f)
      return F.nll_loss(F.log_softmax(I.x, 2), f.labels)
    end)
  end)

  it("smooth_l1_loss with beta", function()
    check_fixture("smoothl1_beta", function(I) return F.smooth_l1_loss(I.x, I.w, {beta = 0.5}) end)
  end)

  it("pass finite differences", function()
    gradcheck_ok(function(x) return F.cross_entropy(x, {2, 1, 3}) end, {randn({3, 3}, 81)})
    gradcheck_ok(function(x) return F.nll_loss(x, {2, 1}, {reduction = "sum"}) end,
      {randn({2, 3}, 82)})
    gradcheck_ok(function(a, b) return F.mse_loss(a, b) end, {randn({2, 3}, 83), randn({2, 3}, 84)})
    -- l1 / smooth_l1: differences kept away from the kinks at 0 and +-beta
    local a = fs.tensor({{0.5, -1.7, 2.2}, {-0.4, 1.1, -2.6}}):requires_grad(true)
    local b = fs.tensor({{0.1, 0.2, -0.3}, {0.4, -0.5, 0.3}}):requires_grad(true)
    gradcheck_ok(function(x, y) return F.l1_loss(x, y, {reduction = "none"}) end, {a, b})
    gradcheck_ok(function(x, y) return F.smooth_l1_loss(x, y) end, {a, b})
  end)

  it("checks labels and shapes", function()
    local x = fs.zeros({2, 3})
    local ok, err = pcall(F.cross_entropy, x, {1, 4})
    assert.is_false(ok)
    assert.matches("cross_entropy: label 4 at position 2 is not an integer in 1..3", err, 1, true)
    ok, err = pcall(F.cross_entropy, x, {0, 1})
    assert.matches("label 0 at position 1", err, 1, true)
    ok, err = pcall(F.cross_entropy, x, fs.tensor({1.5, 2}))
    assert.matches("label 1.5 at position 1", err, 1, true)
    ok, err = pcall(F.cross_entropy, x, {1, 2, 3})
    assert.matches("cross_entropy: input (2, 3) needs 2 labels, got 3", err, 1, true)
    ok, err = pcall(F.mse_loss, x, fs.zeros({3, 2}))
    assert.matches("mse_loss: input (2, 3) and target (3, 2) must have the same shape", err, 1, true)
    ok, err = pcall(F.l1_loss, x, x, {reduction = "avg"})
    assert.matches("reduction must be \"mean\", \"sum\" or \"none\"", err, 1, true)
  end)
end)

describe("cdist2", function()
  it("matches PyTorch", function()
    check_fixture("cdist2_basic", function(I) return fs.cdist2(I.x, I.w) end)
  end)

  it("is exact for a query on a prototype (far from the origin)", function()
    local f = check_fixture("cdist2_coincident", function(I) return fs.cdist2(I.x, I.w) end)
    assert.equal(0, fs.cdist2(f.x, f.w):get(2, 1))
  end)

  it("is the same as F.cdist2 and passes finite differences", function()
    assert.equal(fs.cdist2, F.cdist2)
    gradcheck_ok(function(a, b) return fs.cdist2(a, b) end, {randn({4, 3}, 91), randn({2, 3}, 92)})
  end)

  it("agrees between the direct and the GEMM paths", function()
    -- 300 x 300 x 200 elements take the GEMM path
    local a = fs.randn({300, 200}, {generator = fs.generator(93)}):requires_grad(true)
    local b = fs.randn({300, 200}, {generator = fs.generator(94)}):requires_grad(true)
    local g = fs.randn({300, 300}, {generator = fs.generator(95)})
    local d = fs.cdist2(a, b)
    d:backward(g)
    local small = fs.cdist2(a:narrow(1, 1, 50), b:narrow(1, 1, 40)) -- direct
    assert.tensor_near(d:narrow(1, 1, 50):narrow(2, 1, 40), small, 2e-5)
    -- analytic gradient of the GEMM path against the direct formula on a few rows
    local da = fs.no_grad(function()
      local rs = g:sum(2, {keepdim = true})
      return (a * rs - g:matmul(b)) * 2
    end)
    assert.tensor_near(a.grad, da, 1e-4)
  end)

  it("checks shapes", function()
    local ok, err = pcall(fs.cdist2, fs.zeros({3, 4}), fs.zeros({2, 5}))
    assert.is_false(ok)
    assert.matches("cdist2: expected a (n, d) and b (m, d) with the same d, got (3, 4) and (2, 5)",
      err, 1, true)
  end)
end)

describe("autograd bookkeeping", function()
  it("records nothing without requires_grad and under no_grad", function()
    local x, w = fs.randn({1, 2, 4, 4}), fs.randn({3, 2, 3, 3}):requires_grad(true)
    assert.is_nil(F.conv2d(x, w:detach()).grad_fn)
    assert.equal("conv2d", F.conv2d(x, w).grad_fn)
    fs.no_grad(function() assert.is_nil(F.conv2d(x, w).grad_fn) end)
    assert.equal("batch_norm", F.batch_norm(F.conv2d(x, w), nil, nil, nil, nil,
      {training = true}).grad_fn)
  end)

  it("reaches every function as fs.F", function()
    assert.equal(fs.nn.functional, fs.F)
    for _, name in ipairs({"conv2d", "conv_transpose2d", "linear", "batch_norm", "relu",
      "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "interpolate", "log_softmax",
      "softmax", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss"}) do
      assert.is_function(fs.F[name], name)
    end
    assert.same({{0, 2}}, F.relu(fs.tensor({{-1, 2}})):totable())
  end)
end)
