-- spec/resnet_spec.lua: fs.nn.resnet18 against PyTorch (torchvision's architecture restated in
-- tools/make_fixtures_models.py): names, parameter count, outputs in eval and train mode,
-- gradients, BatchNorm running stats, adapt_conv1, state_dict round trips, strict errors.
-- The weights come from a formula both sides compute (documented in the tool).
local fs = require "fewshot"
require "helper"

local FIX = "spec/fixtures/models/"
local function fixture(name) return fs.io.load_npy(FIX .. name .. ".npy") end

-- The documented formula: j-th state_dict entry (0-based), i-th element (0-based, C order).
local function formula_state_dict(model)
  local sd = {}
  for j0, name in ipairs(model:state_dict_keys()) do
    local j = j0 - 1
    local shape = model:state_dict()[name]:shape()
    if not name:find("num_batches_tracked$") then
      local n = 1
      for _, s in ipairs(shape) do n = n * s end
      local scale, base = 0.2, 0.0
      if #shape >= 2 then scale = math.sqrt(24.0 / (n // shape[1]))
      elseif name:find("running_var$") then scale, base = 0.5, 1.0
      elseif name:find("weight$") then base = 1.0 end
      local v = {}
      for i = 0, n - 1 do
        local u = ((i * 2654435761 + j * 97) % 4294967296) / 4294967296 - 0.5
        v[i + 1] = base == 0.0 and u * scale or base + scale * u
      end
      sd[name] = fs.tensor(v):view(shape)
    end
  end
  return sd
end

describe("fs.nn.resnet18", function()
  local model, SD -- built once: (3 channels, 5 classes) with the formula weights
  local function copy(sd)
    local c = {}
    for k, v in pairs(sd) do c[k] = v end
    return c
  end
  setup(function()
    model = fs.nn.resnet18{in_channels = 3, num_classes = 5, seed = 1}
    SD = formula_state_dict(model)
    model:load_state_dict(SD, {strict = false}) -- SD has no num_batches_tracked
  end)

  it("has torchvision's parameter names, order and count", function()
    local keys = model:state_dict_keys()
    assert.equal(122, #keys)
    assert.same({"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                 "bn1.num_batches_tracked", "layer1.0.conv1.weight"}, {table.unpack(keys, 1, 7)})
    assert.equal("fc.bias", keys[#keys])
    local sd = model:state_dict()
    for _, k in ipairs{"layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                       "layer4.1.bn2.num_batches_tracked", "layer3.1.conv2.weight"} do
      assert.truthy(sd[k], k)
    end
    assert.is_nil(sd["layer1.0.downsample.0.weight"])
    assert.same({128, 64, 1, 1}, sd["layer2.0.downsample.0.weight"]:shape())
    assert.equal(11179077, model:num_parameters())
    assert.equal(62, #model:parameters())
    assert.equal(11176512, fs.nn.resnet18{seed = 1}:num_parameters())
  end)

  it("matches PyTorch in eval mode (scaled 1e-5)", function()
    model:eval()
    local y = fs.no_grad(function() return model(fixture("resnet_x")) end)
    assert.tensor_near(y, fixture("resnet_eval_out"), 1e-5)
  end)

  it("eval without gradients (conv+BN+ReLU fused) equals eval with them (separate ops), after optimizer steps and train() too", function()
    local m = fs.nn.resnet18{in_channels = 3, num_classes = 5}
    m:load_state_dict(SD, {strict = false})
    local x = fixture("resnet_x")
    local opt = fs.optim.adam(m, {lr = 1e-2})
    for step = 1, 2 do
      m:eval()
      local fused = fs.no_grad(function() return m(x) end)
      local plain = m(x) -- parameters require grad: the recorded, unfused ops
      assert.is_true(plain:requires_grad())
      assert.tensor_near(fused, plain, 1e-6)
      m:train() -- a train step: parameters and running stats change
      opt:zero_grad()
      local y = m(x)
      ;(y * fixture("resnet_r")):sum():backward()
      opt:step()
      if step == 1 then -- train mode under no_grad uses batch statistics, not the fused eval form
        local t = fs.no_grad(function() return m(x) end)
        local ref = m(x)
        assert.tensor_near(t, ref, 1e-5)
        m:eval()
        assert.is_true((fs.no_grad(function() return m(x) end) - t):abs():max():item() > 1e-3)
      end
    end
  end)

  it("matches PyTorch in train mode: output, gradients and running stats", function()
    local m = fs.nn.resnet18{in_channels = 3, num_classes = 5}
    m:load_state_dict(SD, {strict = false})
    m:train()
    local y = m(fixture("resnet_x"))
    assert.tensor_near(y, fixture("resnet_train_out"), 1e-4)
    ;(y * fixture("resnet_r")):sum():backward()
    local p = m:named_parameters()
    for _, name in ipairs{"conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                          "layer2.0.downsample.0.weight", "layer4.1.bn2.weight", "fc.weight",
                          "fc.bias"} do
      local expected = fixture("resnet_grad_" .. name)
      local scale = 0
      for _, v in ipairs(expected:contiguous():view(-1):totable()) do
        scale = math.max(scale, math.abs(v))
      end
      -- gradients: absolute error within 3e-4 of the tensor's largest gradient
      local diff = (p[name].grad - expected):abs():max():item()
      assert.is_true(diff <= 3e-4 * scale, name .. ": max |diff| " .. diff .. ", scale " .. scale)
    end
    local sd = m:state_dict()
    for _, name in ipairs{"bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_var",
                          "layer2.0.downsample.1.running_mean", "bn1.num_batches_tracked"} do
      assert.tensor_near(sd[name], fixture("resnet_after_" .. name), 1e-5)
    end
  end)

  it("gradients land in the model's one flat gradient buffer", function()
    local m = fs.nn.resnet18{in_channels = 1, seed = 3}
    local flat, gflat = m:flat_parameters(), m:flat_grad()
    assert.same({m:num_parameters()}, flat:shape())
    local x = fs.randn({2, 1, 32, 32}, {generator = fs.generator(4)})
    m(x):sum():backward()
    local total = 0
    for _, p in ipairs(m:parameters()) do total = total + p.grad:abs():sum():item() end
    assert.is_true(total > 0)
    assert.near(total, gflat:abs():sum():item(), 1e-3 * total)
    m:zero_grad()
    assert.equal(0, gflat:abs():sum():item())
  end)

  it("adapts 3-channel conv1 weights to 1 channel by summing (adapt_conv1='sum')", function()
    local m1 = fs.nn.resnet18{in_channels = 1, seed = 2}
    local sd = copy(SD)
    local err = select(2, pcall(m1.load_state_dict, m1, sd, {strict = false}))
    assert.truthy(err:find("conv1.weight: checkpoint %(64, 3, 7, 7%), model %(64, 1, 7, 7%)"), err)
    sd["fc.weight"], sd["fc.bias"] = nil, nil
    m1:load_state_dict(sd, {strict = false, adapt_conv1 = "sum"})
    m1:eval()
    local emb = fs.no_grad(function() return m1(fixture("resnet1_x")) end)
    assert.same({2, 512}, emb:shape())
    assert.tensor_near(emb, fixture("resnet1_emb"), 1e-4)
  end)

  it("lists missing, unexpected and mis-shaped keys in strict mode and changes nothing", function()
    local m = fs.nn.resnet18{num_classes = 5, seed = 5}
    local before = m:state_dict()["bn1.bias"]:clone()
    local sd = m:state_dict()
    sd["fc.bias"] = nil
    sd["bn1.weight"] = fs.zeros(63)
    sd["extra.weight"] = fs.zeros(1)
    sd["bn1.bias"] = fs.ones(64)
    local ok, err = pcall(m.load_state_dict, m, sd)
    assert.is_false(ok)
    assert.truthy(err:find("missing keys %(1%): %[fc.bias%]"), err)
    assert.truthy(err:find("unexpected keys %(1%): %[extra.weight%]"), err)
    assert.truthy(err:find("bn1.weight: checkpoint %(63%), model %(64%)"), err)
    assert.tensor_near(m:state_dict()["bn1.bias"], before, 0)
  end)

  it("round-trips through save / fs.nn.load with identical outputs", function()
    local path = os.tmpname()
    model:eval()
    model:save(path)
    local m2 = fs.nn.load(path)
    os.remove(path)
    assert.equal(model:num_parameters(), m2:num_parameters())
    m2:eval()
    local x = fixture("resnet_x")
    local a = fs.no_grad(function() return model(x) end)
    local b = fs.no_grad(function() return m2(x) end)
    assert.tensor_near(b, a, 0)
  end)

  it("refuses to save a part that cannot describe its constructor", function()
    local path = os.tmpname()
    local ok, err = pcall(model:child("layer1").save, model:child("layer1"), path)
    os.remove(path)
    assert.is_false(ok)
    assert.truthy(err:find("a BasicBlock module has no constructor description"), err)
  end)

  it("loads a state_dict written by fs.io.save (the torchvision export path)", function()
    local path = os.tmpname()
    fs.io.save(path, model:state_dict())
    local m2 = fs.nn.resnet18{in_channels = 3, num_classes = 5, seed = 9}
    m2:load_state_dict(fs.io.load(path))
    os.remove(path)
    assert.tensor_near(m2:state_dict()["layer3.0.conv1.weight"],
                       model:state_dict()["layer3.0.conv1.weight"], 0)
  end)

  it("prints the layer tree with shapes and parameter counts", function()
    local s = tostring(model)
    assert.truthy(s:find("^ResNet%-18%(in_channels=3, num_classes=5%)  11,179,077 params"))
    assert.truthy(s:find("conv1: Conv2d%(3, 64, kernel_size=%(7, 7%), stride=%(2, 2%)"))
    assert.truthy(s:find("downsample: Sequential  8,448 params", 1, false))
    assert.truthy(s:find("fc: Linear%(in_features=512, out_features=5, bias=True%)  %[weight %(5, 512%), bias %(5%)%]  2,565 params"))
  end)

  it("rejects a wrong input shape naming both shapes", function()
    local ok, err = pcall(model.forward, model, fs.zeros(2, 1, 32, 32))
    assert.is_false(ok)
    assert.truthy(err:find("resnet18: expected input %(N, 3, H, W%), got %(2, 1, 32, 32%)"), err)
  end)
end)
