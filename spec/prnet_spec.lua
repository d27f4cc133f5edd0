-- spec/prnet_spec.lua: F.instance_norm and fs.nn.prnet (PRNet-2D) against PyTorch
-- (tools/make_fixtures_prnet.py restates the network with the same module names; references in
-- float64 from the same float32 values), finite differences, shapes, names, save/load, encode,
-- train/eval, errors.
--
-- Tolerances (assert.tensor_near: |a - e| <= tol * (1 + |e|)): instance_norm 1e-5 against
-- PyTorch; PRNet outputs and gradients 1e-4; finite differences (eps 1e-3 on float32, one-sided
-- where a kink is crossed) worst relative error <= 5e-3 (measured 2.4e-3).
local fs = require "fewshot"
local helper = require "helper"
local F = fs.nn.functional

local DIR = "spec/fixtures/prnet/"
local function fixture(name) return helper.load_fixture(DIR .. name .. ".txt") end

local function randn(shape, seed, scale)
  local t = fs.randn(shape, {generator = fs.generator(seed)})
  if scale then t = fs.no_grad(function() return t * scale end) end
  return t:requires_grad(true)
end

local function shape(t) return table.concat(t:shape(), "x") end

describe("F.instance_norm", function()
  for _, case in ipairs({"plain", "mean50", "affine"}) do
    it("matches PyTorch (" .. case .. "), contiguous and on a transposed view", function()
      local f = fixture("inorm_" .. case)
      for _, strided in ipairs({false, true}) do
        local x, xgrad
        if strided then
          local base = f.x:transpose(3, 4):contiguous():detach():requires_grad(true)
          x = base:transpose(3, 4)
          assert.is_false(x:is_contiguous())
          xgrad = function() return base.grad:transpose(3, 4) end
        else
          x = f.x:clone():requires_grad(true)
          xgrad = function() return x.grad end
        end
        local w = f.w and f.w:clone():requires_grad(true)
        local b = f.b and f.b:clone():requires_grad(true)
        local y = F.instance_norm(x, w, b, {eps = case == "affine" and 1e-3 or 1e-5})
        assert.tensor_near(y, f.y, 1e-5)
        y:backward(f.gy)
        assert.tensor_near(xgrad(), f.dx, 1e-5)
        if w then
          assert.tensor_near(w.grad, f.dw, 1e-5)
          assert.tensor_near(b.grad, f.db, 1e-5)
        end
      end
    end)
  end

  it("normalises each (n, c) plane: mean 0, biased variance var / (var + eps)", function()
    local x = fs.no_grad(function()
      return fs.randn({2, 3, 4, 5}, {generator = fs.generator(3)}) * 3 + 7
    end)
    local y = F.instance_norm(x)
    assert.tensor_near(y:mean(4):mean(3), fs.zeros({2, 3}), 1e-5)
    local xv = helper.values(x:view({6, 20}))
    local yv = helper.values((y * y):mean(4):mean(3))
    for p = 1, 6 do -- the biased variance of plane p, in double
      local s, ss = 0, 0
      for i = 1, 20 do s = s + xv[(p - 1) * 20 + i] end
      for i = 1, 20 do ss = ss + (xv[(p - 1) * 20 + i] - s / 20) ^ 2 end
      local var = ss / 20
      assert.is_true(math.abs(yv[p] - var / (var + 1e-5)) < 1e-5)
    end
  end)

  it("passes finite differences, with and without affine parameters", function()
    local worst = helper.gradcheck(function(x) return F.instance_norm(x) end,
      {randn({2, 3, 3, 4}, 11)}, {eps = 1e-2})
    assert.is_true(worst <= 5e-4, string.format("worst %.3g", worst))
    worst = helper.gradcheck(function(x, w, b) return F.instance_norm(x, w, b, {eps = 1e-3}) end,
      {randn({2, 2, 5, 3}, 12), randn({2}, 13), randn({2}, 14)}, {eps = 1e-2})
    assert.is_true(worst <= 5e-4, string.format("worst %.3g", worst))
  end)

  it("checks its arguments", function()
    local ok, err = pcall(F.instance_norm, fs.zeros({4, 3}))
    assert.is_false(ok)
    assert.matches("instance_norm: input must be (N, C, *) with at least one spatial dim, got (4, 3)",
      err, 1, true)
    ok, err = pcall(F.instance_norm, fs.zeros({2, 3, 1, 1}))
    assert.matches("instance_norm: expected more than 1 spatial element per channel, got input (2, 3, 1, 1)",
      err, 1, true)
    ok, err = pcall(F.instance_norm, fs.zeros({2, 3, 2, 2}), fs.ones({4}))
    assert.matches("instance_norm: weight (4) must have shape (3) for input (2, 3, 2, 2)", err, 1, true)
    ok, err = pcall(F.instance_norm, fs.zeros({2, 3, 2, 2}), nil, nil, {epsilon = 1})
    assert.matches("instance_norm: unknown option 'epsilon'", err, 1, true)
  end)
end)

-- Loads the fixture's "p.<name>" entries as a state dict.
local function fixture_state(f)
  local sd = {}
  for k, v in pairs(f) do
    local name = k:match("^p%.(.+)$")
    if name then sd[name] = v end
  end
  return sd
end

local CASES = {
  instance_bilinear = {opts = {in_channels = 1, base = 2, depth = 2, latent = 2, patch = 8},
                       grads = {"enc.0.conv.weight", "dec.0.conv.weight"}},
  batch_transpose = {opts = {in_channels = 2, base = 2, depth = 2, latent = 3, patch = 8,
                             norm = "batch", up = "transpose", convs_per_level = 2},
                     grads = {"enc.1.conv2.weight", "dec.1.up.weight"},
                     stats = {"enc.0.norm.running_mean", "bottleneck.norm2.running_var",
                              "dec.1.norm2.num_batches_tracked"}},
}

describe("fs.nn.prnet against PyTorch", function()
  for name, case in pairs(CASES) do
    it(name .. ": latent, reconstruction, gradients of the input and two parameters", function()
      local f = fixture("prnet_" .. name)
      local model = fs.nn.prnet(case.opts)
      model:load_state_dict(fixture_state(f)) -- strict: every PyTorch name and shape matches
      model:train()
      local x = f.x:clone():requires_grad(true)
      local z, r = model(x)
      assert.tensor_near(z, f.z, 1e-4)
      assert.tensor_near(r, f.r, 1e-4)
      local loss = (z * f.gz):sum() + (r * f.gr):sum()
      assert.tensor_near(loss:view({1}), f.loss, 1e-4)
      loss:backward()
      assert.tensor_near(x.grad, f.dx, 1e-4)
      local params = model:named_parameters()
      for _, p in ipairs(case.grads) do
        assert.tensor_near(params[p].grad, f["g." .. p], 1e-4)
      end
      if case.stats then
        local sd = model:state_dict()
        for _, s in ipairs(case.stats) do
          assert.tensor_near(sd[s], f["rs." .. s], 1e-5)
        end
        model:eval()
        local ze, re = fs.no_grad(function() return model(f.x) end)
        assert.tensor_near(ze, f.ze, 1e-4)
        assert.tensor_near(re, f.re, 1e-4)
        assert.is_true(helper.max_diff(ze, f.z) > 1e-3) -- eval really differs from train
      end
    end)
  end
end)

describe("fs.nn.prnet", function()
  it("gives (N, latent) and (N, C, patch, patch) for norm x up x convs_per_level", function()
    for _, norm in ipairs({"instance", "batch"}) do
      for _, up in ipairs({"bilinear", "transpose"}) do
        for _, o in ipairs({{in_channels = 1, base = 4, depth = 3, latent = 2, patch = 16},
                            {in_channels = 3, base = 2, depth = 1, latent = 5, patch = 6,
                             convs_per_level = 2}}) do
          o.norm, o.up, o.seed = norm, up, 1
          local model = fs.nn.prnet(o)
          local x = fs.rand({3, o.in_channels, o.patch, o.patch}, {generator = fs.generator(2)})
          local z, r = model(x)
          assert.equal(string.format("3x%d", o.latent), shape(z))
          assert.equal(string.format("3x%dx%dx%d", o.in_channels, o.patch, o.patch), shape(r))
          local rv = helper.values(r)
          for i = 1, #rv do assert.is_true(rv[i] > 0 and rv[i] < 1) end -- sigmoid
          assert.equal(string.format("3x%d", o.latent), shape(model:encode(x)))
        end
      end
    end
  end)

  it("has PyTorch-like names and the default layout (base 16, depth 4)", function()
    local model = fs.nn.prnet{seed = 1}
    local keys = model:state_dict_keys()
    assert.equal("enc.0.conv.weight", keys[1])
    assert.equal("head.bias", keys[#keys])
    local p = model:named_parameters()
    assert.equal("16x1x3x3", shape(p["enc.0.conv.weight"]))
    assert.equal("128x64x3x3", shape(p["enc.3.conv.weight"]))
    assert.equal("256x128x3x3", shape(p["bottleneck.conv.weight"]))
    assert.equal("128x1024", shape(p["fc1.weight"])) -- 256 channels x 2 x 2
    assert.equal("64x128", shape(p["fc2.weight"]))
    assert.equal("2x64", shape(p["fc3.weight"]))
    assert.equal("128x384x3x3", shape(p["dec.0.conv.weight"])) -- 256 upsampled + 128 skip
    assert.equal("16x48x3x3", shape(p["dec.3.conv.weight"]))
    assert.equal("1x16x1x1", shape(p["head.weight"]))
    assert.is_nil(p["enc.0.norm.weight"]) -- InstanceNorm2d's default has no parameters
    -- the count, layer by layer: convs (w + b), fcs, head
    local function conv(i, o, k) return o * i * k * k + o end
    local n = conv(1, 16, 3) + conv(16, 32, 3) + conv(32, 64, 3) + conv(64, 128, 3)
      + conv(128, 256, 3) + 1024 * 128 + 128 + 128 * 64 + 64 + 64 * 2 + 2
      + conv(384, 128, 3) + conv(192, 64, 3) + conv(96, 32, 3) + conv(48, 16, 3) + conv(16, 1, 1)
    assert.equal(n, model:num_parameters())
    local t = fs.nn.prnet{seed = 1, up = "transpose", norm = "batch"}:named_parameters()
    assert.equal("256x128x2x2", shape(t["dec.0.up.weight"]))
    assert.equal("128x256x3x3", shape(t["dec.0.conv.weight"]))
    assert.equal("16", shape(t["dec.3.norm.weight"]))
  end)

  it("initialises like PyTorch (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) from the seed", function()
    local a = fs.nn.prnet{base = 4, depth = 2, patch = 8, seed = 5, up = "transpose"}
    local b = fs.nn.prnet{base = 4, depth = 2, patch = 8, seed = 5, up = "transpose"}
    local c = fs.nn.prnet{base = 4, depth = 2, patch = 8, seed = 6, up = "transpose"}
    assert.tensor_near(a:flat_parameters(), b:flat_parameters(), 0)
    assert.is_true(helper.max_diff(a:flat_parameters(), c:flat_parameters()) > 1e-3)
    local p = a:named_parameters()
    local bounds = {["enc.1.conv.weight"] = 1 / math.sqrt(4 * 9), ["fc1.weight"] = 1 / math.sqrt(16 * 4),
                    ["dec.0.up.weight"] = 1 / math.sqrt(8 * 4), -- ConvTranspose2d: fan_in = out * k * k
                    ["head.bias"] = 1 / math.sqrt(4)}
    for name, bound in pairs(bounds) do
      local v = helper.values(p[name])
      local lo, hi = math.huge, -math.huge
      for i = 1, #v do lo, hi = math.min(lo, v[i]), math.max(hi, v[i]) end
      assert.is_true(lo >= -bound and hi <= bound, name)
      if #v >= 64 then assert.is_true(hi - lo > bound, name) end -- spread over the interval
    end
  end)

  -- Central differences on float32 cross a ReLU kink or a max-pool switch for a few elements
  -- (thousands of activations, eps 1e-3); there the analytic value must equal one of the
  -- one-sided differences instead, and such elements must stay few (measured: 3 and 14 of 166).
  local function fd_check(fn, inputs, eps)
    local out = fn(table.unpack(inputs))
    local w = fs.randn(out:shape(), {generator = fs.generator(7)})
    local wv = helper.values(w)
    local function L()
      local ov, s = helper.values(fs.no_grad(fn, table.unpack(inputs))), 0.0
      for i = 1, #ov do s = s + ov[i] * wv[i] end
      return s
    end
    for _, x in ipairs(inputs) do x.grad = nil end
    ;(out * w):sum():backward()
    local worst, kinks, n = 0, 0, 0
    for _, x in ipairs(inputs) do
      local a, flat = helper.values(x.grad), x:view(-1)
      for i = 1, #a do
        local orig = flat:get(i)
        local function at(v) fs.no_grad(function() flat:set(i, v) end); return L() end
        local fp, f0, fm = at(orig + eps), at(orig), at(orig - eps)
        at(orig)
        local c = (fp - fm) / (2 * eps)
        local scale = math.max(1, math.abs(a[i]), math.abs(c))
        local err = math.abs(a[i] - c) / scale
        if err > 1e-3 then
          kinks = kinks + 1
          err = math.min(err, math.abs(a[i] - (fp - f0) / eps) / scale,
                         math.abs(a[i] - (f0 - fm) / eps) / scale)
        end
        worst, n = math.max(worst, err), n + 1
      end
    end
    return worst, kinks, n
  end

  it("passes finite differences on the input and a few weights (tiny configurations)", function()
    for _, o in ipairs({{base = 2, depth = 2, patch = 8, seed = 3},
                        {base = 2, depth = 2, patch = 8, seed = 4, norm = "batch", up = "transpose"}}) do
      local model = fs.nn.prnet(o)
      model:train()
      local p = model:named_parameters()
      local x = fs.rand({2, 1, 8, 8}, {generator = fs.generator(9)}):requires_grad(true)
      local worst, kinks, n = fd_check(function(xx)
        local z, r = model(xx)
        return fs.cat({z:view(-1), r:view(-1)}, 1)
      end, {x, p["enc.0.conv.weight"], p["fc3.weight"], p["dec.1.conv.bias"], p["head.weight"]},
      1e-3)
      assert.equal(128 + 18 + 16 + 2 + 2, n)
      assert.is_true(worst <= 5e-3, string.format("%s: worst %.3g", o.norm or "instance", worst))
      assert.is_true(kinks <= n // 6, string.format("%d of %d elements crossed a kink", kinks, n))
    end
  end)

  it("encode equals the latent of the full forward, and records a graph to the input", function()
    local model = fs.nn.prnet{base = 4, depth = 3, patch = 16, seed = 2}
    local x = fs.rand({4, 1, 16, 16}, {generator = fs.generator(1)}):requires_grad(true)
    local z = model(x)
    local e = model:encode(x)
    assert.tensor_near(e, z, 0)
    e:sum():backward()
    assert.equal("4x1x16x16", shape(x.grad))
    assert.tensor_near(model:forward(x), z, 0) -- the generic forward is the encoder too
    local ok, err = pcall(fs.nn.relu().encode, fs.nn.relu(), x)
    assert.is_false(ok)
    assert.matches("encode: a ReLU module has no encode (PRNet only)", err, 1, true)
  end)

  it("saves and loads (fs.nn.load) with equal outputs, both variants", function()
    for _, o in ipairs({{base = 2, depth = 2, patch = 8, seed = 7, latent = 3},
                        {base = 2, depth = 3, patch = 16, seed = 8, in_channels = 2, norm = "batch",
                         up = "transpose", convs_per_level = 2}}) do
      local model = fs.nn.prnet(o)
      local x = fs.rand({3, o.in_channels or 1, o.patch, o.patch}, {generator = fs.generator(4)})
      model:train()
      model(x) -- running stats move away from their initial values
      model:eval()
      local z, r = fs.no_grad(function() return model(x) end)
      local path = helper.tmpname(".safetensors")
      model:save(path)
      local again = fs.nn.load(path)
      os.remove(path)
      assert.equal(tostring(model), tostring(again))
      again:eval()
      local z2, r2 = fs.no_grad(function() return again(x) end)
      assert.tensor_near(z2, z, 0)
      assert.tensor_near(r2, r, 0)
    end
  end)

  it("batch norm: train mode uses batch statistics and moves the running stats, eval does not", function()
    local model = fs.nn.prnet{base = 2, depth = 2, patch = 8, seed = 3, norm = "batch"}
    local x = fs.rand({4, 1, 8, 8}, {generator = fs.generator(5)})
    assert.is_true(model:is_training())
    local sd = model:state_dict()
    local rm = sd["enc.0.norm.running_mean"]:clone()
    local zt = fs.no_grad(function() return model(x) end)
    assert.is_true(helper.max_diff(sd["enc.0.norm.running_mean"], rm) > 1e-4)
    assert.tensor_near(sd["enc.0.norm.num_batches_tracked"], 1, 0)
    model:eval()
    assert.is_false(model:child("enc.0.norm"):is_training())
    rm = sd["enc.0.norm.running_mean"]:clone()
    local ze1 = fs.no_grad(function() return model(x) end)
    local ze2 = fs.no_grad(function() return model(x:narrow(1, 1, 2)) end)
    assert.tensor_near(sd["enc.0.norm.running_mean"], rm, 0)
    assert.tensor_near(ze2, ze1:narrow(1, 1, 2), 1e-6) -- per-sample in eval mode
    assert.is_true(helper.max_diff(ze1, zt) > 1e-4)
    -- instance norm: train and eval give the same values
    local inst = fs.nn.prnet{base = 2, depth = 2, patch = 8, seed = 3}
    local a = fs.no_grad(function() return inst(x) end)
    inst:eval()
    assert.tensor_near(fs.no_grad(function() return inst(x) end), a, 0)
  end)

  it("refuses bad settings, unknown options and wrong inputs with clear errors", function()
    local cases = {
      {{patch = 30}, "fs.nn.prnet: patch 30 must be divisible by 2^depth = 16 (depth 4)"},
      {{depth = 0}, "fs.nn.prnet: depth must be >= 1, got 0"},
      {{base = 0}, "fs.nn.prnet: base must be >= 1, got 0"},
      {{latent = 0}, "fs.nn.prnet: latent must be >= 1, got 0"},
      {{in_channels = 0}, "fs.nn.prnet: in_channels must be >= 1, got 0"},
      {{convs_per_level = 0}, "fs.nn.prnet: convs_per_level must be >= 1, got 0"},
      {{depth = 13, patch = 8192}, "fs.nn.prnet: depth 13 is too large (at most 12)"},
      {{base = 2^40}, "fs.nn.prnet: base 1099511627776 is too large (at most 65536)"},
      {{norm = "group"}, "fs.nn.prnet: norm must be \"instance\" or \"batch\", got \"group\""},
      {{up = "nearest"}, "fs.nn.prnet: up must be \"bilinear\" or \"transpose\", got \"nearest\""},
      {{lattent = 2}, "fs.nn.prnet: unknown option 'lattent' (did you mean 'latent'?)"},
      {{base = 1.5}, "option 'base' must be an integer"},
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(fs.nn.prnet, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
    local model = fs.nn.prnet{base = 2, depth = 2, patch = 8}
    local ok, err = pcall(model, fs.zeros({2, 1, 16, 16}))
    assert.is_false(ok)
    assert.matches("prnet: expected input (N, 1, 8, 8), got (2, 1, 16, 16)", err, 1, true)
    ok, err = pcall(model.encode, model, fs.zeros({1, 8, 8}))
    assert.matches("prnet: expected input (N, 1, 8, 8), got (1, 8, 8)", err, 1, true)
  end)

  it("rebuilds only sound descriptions (fs.nn.load of a crafted file)", function()
    local model = fs.nn.prnet{base = 2, depth = 1, patch = 4}
    local path = helper.tmpname(".safetensors")
    model:save(path)
    local sd, meta = fs.io.load(path)
    for _, bad in ipairs({
        {'prnet{base=2, depth=1, patch=4, norm="layer"}', "norm must be \"instance\" or \"batch\""},
        {'prnet{base=2, depth=1, patch=5}', "patch 5 must be divisible by 2^depth = 2"},
        {'prnet{base=2, depth=1, patch=4, norm=instance}', "expected a value"},
        {'prnet{base=2, depth=1, patch=4, norm="in stance"}', "a string must be up to 23"},
        {'prnet{base="2"}', "option 'base' must be an integer"},
        {'prnet{base=2, depth=1, patch=4, norm=1}', "option 'norm' must be a string"}}) do
      meta["fewshot.module"] = bad[1]
      fs.io.save(path, sd, {metadata = meta})
      local ok, err = pcall(fs.nn.load, path)
      assert.is_false(ok, bad[1])
      assert.matches(bad[2], err, 1, true)
    end
    os.remove(path)
  end)
end)
