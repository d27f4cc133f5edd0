-- spec/module_spec.lua: layer modules (init, options, names), sequential, train/eval,
-- flat parameter/gradient buffers, state_dict / load_state_dict, save / fs.nn.load, printing.
local fs = require "fewshot"
local helper = require "helper"

local function minmax(t)
  return t:min():item(), t:max():item()
end

describe("layer modules", function()
  it("conv2d: PyTorch's default init bounds 1/sqrt(fan_in), shapes and names", function()
    local c = fs.nn.conv2d{in_channels = 4, out_channels = 8, kernel = 3, padding = 1, seed = 1}
    local p = c:named_parameters()
    assert.same({8, 4, 3, 3}, p.weight:shape())
    assert.same({8}, p.bias:shape())
    local bound = 1 / math.sqrt(4 * 9)
    local lo, hi = minmax(p.weight)
    assert.is_true(lo >= -bound and hi <= bound and hi - lo > 1.6 * bound)
    lo, hi = minmax(p.bias)
    assert.is_true(lo >= -bound and hi <= bound)
    -- std of U(-b, b) is b / sqrt(3)
    local std = p.weight:var():sqrt():item()
    assert.near(bound / math.sqrt(3), std, 0.1 * bound)
    local y = c(fs.randn({2, 4, 5, 7}, {generator = fs.generator(1)}))
    assert.same({2, 8, 5, 7}, y:shape())
  end)

  it("conv2d: same seed, same weights; no bias when bias=false; pairs for kernel/stride", function()
    local a = fs.nn.conv2d{in_channels = 2, out_channels = 3, kernel = {3, 5}, stride = {2, 1}, seed = 7}
    local b = fs.nn.conv2d{in_channels = 2, out_channels = 3, kernel = {3, 5}, stride = {2, 1}, seed = 7}
    assert.tensor_near(a:named_parameters().weight, b:named_parameters().weight, 0)
    local nb = fs.nn.conv2d{in_channels = 2, out_channels = 3, kernel = 1, bias = false, seed = 7}
    assert.same({"weight"}, nb:state_dict_keys())
    assert.same({1, 3, 3, 6}, a(fs.zeros(1, 2, 8, 10)):shape())
  end)

  it("linear: weight (out, in), init bound 1/sqrt(in), both call forms", function()
    local l = fs.nn.linear(10, 3, {seed = 2})
    local l2 = fs.nn.linear{in_features = 10, out_features = 3, bias = false, seed = 2}
    assert.same({3, 10}, l:named_parameters().weight:shape())
    assert.same({"weight"}, l2:state_dict_keys())
    local lo, hi = minmax(l:named_parameters().weight)
    assert.is_true(lo >= -1 / math.sqrt(10) and hi <= 1 / math.sqrt(10))
    assert.same({4, 3}, l(fs.zeros(4, 10)):shape())
  end)

  it("batchnorm2d: weight 1, bias 0, running stats 0/1, num_batches_tracked counts train steps", function()
    local bn = fs.nn.batchnorm2d(3)
    local sd = bn:state_dict()
    assert.same({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"},
                bn:state_dict_keys())
    assert.tensor_near(sd.weight, {1, 1, 1}, 0)
    assert.tensor_near(sd.bias, {0, 0, 0}, 0)
    assert.tensor_near(sd.running_var, {1, 1, 1}, 0)
    local x = fs.randn({4, 3, 5, 5}, {generator = fs.generator(3)}) * 2 + 5
    bn(x)
    bn(x)
    assert.equal(2, bn:state_dict().num_batches_tracked:item())
    -- running_mean after two steps with momentum 0.1: 0.19 * batch mean
    local mean = x:mean(1):mean(2):mean(2)
    assert.tensor_near(bn:state_dict().running_mean, mean * 0.19, 1e-5)
    bn:eval()
    assert.is_false(bn:is_training())
    bn(x)
    assert.equal(2, bn:state_dict().num_batches_tracked:item())
    -- eval uses running stats: y = (x - rm) / sqrt(rv + eps)
    local rm, rv = bn:state_dict().running_mean, bn:state_dict().running_var
    local y = bn(x)
    local ref = (x - rm:view(1, 3, 1, 1)) / (rv:view(1, 3, 1, 1) + 1e-5):sqrt()
    assert.tensor_near(y, ref, 1e-5)
  end)

  it("relu, maxpool2d, adaptive_avgpool2d, flatten", function()
    local x = fs.tensor{{{{1, -2, 3, 4}, {5, 6, -7, 8}, {9, 10, 11, 12}, {13, 14, 15, -16}}}}
    assert.tensor_near(fs.nn.relu()(x):sum(), 111, 0)
    local mp = fs.nn.maxpool2d{kernel = 2}
    assert.tensor_near(mp(x), {{{{6, 8}, {14, 15}}}}, 0)
    local ap = fs.nn.adaptive_avgpool2d{output_size = {1, 1}}
    assert.tensor_near(ap(x):view(-1), {(136 - 2 * (2 + 7 + 16)) / 16}, 1e-6)
    assert.same({1, 16}, fs.nn.flatten()(x):shape())
  end)

  it("raises clear errors for bad options", function()
    assert.has_error(function() fs.nn.conv2d{in_channels = 1, out_channels = 2} end,
      "fs.nn.conv2d: option 'kernel' is required")
    assert.has_error(function() fs.nn.conv2d{in_channels = 1, kernel = 3} end,
      "fs.nn.conv2d: option 'out_channels' (an integer) is required")
    assert.has_error(function() fs.nn.conv2d{in_channels = 0, out_channels = 2, kernel = 3} end)
    assert.has_error(function() fs.nn.sequential{fs.nn.relu(), 3} end,
      "fs.nn.sequential: item 2 is a number, not a fewshot.Module")
    assert.has_error(function() fs.nn.resnet18{num_classes = 0} end)
    local c = fs.nn.conv2d{in_channels = 3, out_channels = 2, kernel = 3}
    local ok, err = pcall(c.forward, c, fs.zeros(1, 2, 5, 5))
    assert.is_false(ok)
    assert.truthy(err:find("(1, 2, 5, 5)", 1, true), err)
  end)
end)

describe("fs.nn.sequential", function()
  local function net()
    return fs.nn.sequential{
      fs.nn.conv2d{in_channels = 1, out_channels = 4, kernel = 3, padding = 1, seed = 1},
      fs.nn.batchnorm2d(4), fs.nn.relu(), fs.nn.maxpool2d{kernel = 2},
      fs.nn.flatten(), fs.nn.linear(4 * 4 * 4, 3, {seed = 2})}
  end

  it("names children 0, 1, ... and orders parameters as PyTorch", function()
    local m = net()
    assert.same({"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                 "1.num_batches_tracked", "5.weight", "5.bias"}, m:state_dict_keys())
    assert.equal(36 + 4 + 4 + 4 + 192 + 3, m:num_parameters())
    assert.equal(6, #m:parameters())
    assert.same({2, 3}, m(fs.zeros(2, 1, 8, 8)):shape())
    assert.equal("Conv2d", m:child("0").kind)
  end)

  it("keeps the parameters of its children in one flat buffer, shared with the children", function()
    local conv = fs.nn.conv2d{in_channels = 1, out_channels = 2, kernel = 1, seed = 4}
    local w = conv:named_parameters().weight
    local before = w:clone()
    local m = fs.nn.sequential{conv, fs.nn.linear(2, 2, {seed = 5})}
    -- the old handle still is the parameter, now a view of the sequential's buffer
    assert.tensor_near(w, before, 0)
    assert.tensor_near(m:flat_parameters():narrow(1, 1, 2), before:view(-1), 0)
    fs.no_grad(function() m:flat_parameters():narrow(1, 1, 1):fill(42) end)
    assert.equal(42, w:get(1, 1, 1, 1))
    assert.equal(42, conv:named_parameters().weight:get(1, 1, 1, 1))
  end)

  it("accumulates gradients across backward calls until zero_grad", function()
    local m = net()
    local x = fs.randn({2, 1, 8, 8}, {generator = fs.generator(9)})
    m(x):sum():backward()
    local g1 = m:flat_grad():clone()
    m(x):sum():backward()
    assert.tensor_near(m:flat_grad(), g1 * 2, 1e-5)
    m:zero_grad()
    assert.equal(0, m:flat_grad():abs():max():item())
  end)

  it("frees a step's activations at backward while Lua still holds the loss", function()
    local m = fs.nn.sequential{
      fs.nn.conv2d{in_channels = 1, out_channels = 16, kernel = 3, padding = 1, seed = 1},
      fs.nn.batchnorm2d(16), fs.nn.relu(),
      fs.nn.conv2d{in_channels = 16, out_channels = 16, kernel = 3, padding = 1, seed = 2},
      fs.nn.relu(), fs.nn.flatten()}
    local x = fs.randn({8, 1, 32, 32}, {generator = fs.generator(1)})
    m(x):sum():backward() -- allocates the flat gradient buffer
    collectgarbage()
    local base = fs.memory().live_bytes
    local y = m(x)
    local loss = y:sum()
    y:close() -- only the loss stays in Lua's hands
    local held = fs.memory().live_bytes - base
    -- what backward needs and nothing more: batch norm's input, each ReLU's output (the second
    -- conv's input is the first ReLU's); batch norm's output and the second conv's output are
    -- freed at once (the tape keeps edges to them, not their data)
    local act = 8 * 16 * 32 * 32 * 4
    assert.is_true(held >= 3 * act and held < 3 * act + 4096, "activations held: " .. held)
    loss:backward()
    local after = fs.memory().live_bytes - base
    assert.is_true(after < 1024, ("after backward %d of %d bytes still held"):format(after, held))
    assert.has_error(function() loss:backward() end)
  end)

  it("gradient of a conv module matches finite differences", function()
    local c = fs.nn.conv2d{in_channels = 2, out_channels = 3, kernel = 3, stride = 2, padding = 1, seed = 3}
    local p = c:named_parameters()
    local x = fs.randn({1, 2, 5, 5}, {generator = fs.generator(2)})
    local err = helper.gradcheck(function(w, b)
      return fs.nn.functional and fs.nn.functional.conv2d(x, w, b, {stride = 2, padding = 1})
             or c(x)
    end, {p.weight, p.bias}, {eps = 1e-2})
    assert.is_true(err < 1e-2, "gradcheck error " .. err)
  end)

  it("saves and loads (fs.nn.load rebuilds the architecture)", function()
    local m = net()
    m:train()
    m(fs.randn({2, 1, 8, 8}, {generator = fs.generator(1)}))
    local path = os.tmpname()
    m:save(path)
    local m2 = fs.nn.load(path)
    local _, meta = fs.io.load(path)
    os.remove(path)
    assert.truthy(meta["fewshot.module"]:find("^sequential{conv2d{in_channels=1, out_channels=4"))
    assert.same(m:state_dict_keys(), m2:state_dict_keys())
    assert.equal(1, m2:state_dict()["1.num_batches_tracked"]:item())
    m:eval()
    m2:eval()
    local x = fs.randn({2, 1, 8, 8}, {generator = fs.generator(2)})
    assert.tensor_near(m2(x), m(x), 0)
  end)

  it("fs.nn.load refuses files without a module description", function()
    local path = os.tmpname()
    fs.io.save(path, {w = fs.zeros(2)}, {metadata = {["fewshot.module"] = "os.exit()"}})
    local ok, err = pcall(fs.nn.load, path)
    os.remove(path)
    assert.is_false(ok)
    assert.truthy(err:find("has no fewshot module description"), err)
  end)

  it("prints a tree with shapes and parameter counts", function()
    local s = tostring(net())
    assert.truthy(s:find("^Sequential  243 params\n"), s)
    assert.truthy(s:find("  0: Conv2d%(1, 4, kernel_size=%(3, 3%), stride=%(1, 1%), padding=%(1, 1%), bias=True%)  %[weight %(4, 1, 3, 3%), bias %(4%)%]  40 params"), s)
    assert.truthy(s:find("  3: MaxPool2d%(kernel_size=%(2, 2%)"), s)
  end)
end)

describe("fs.nn: PRNet's layers as modules", function()
  local F = fs.F
  local x = fs.randn({2, 3, 5, 6}, {generator = fs.generator(4)})

  it("conv_transpose2d is F.conv_transpose2d on its own weight and bias", function()
    local m = fs.nn.conv_transpose2d{in_channels = 3, out_channels = 2, kernel = 2, stride = 2, seed = 1}
    local sd = m:state_dict()
    assert.same({3, 2, 2, 2}, sd.weight:shape())
    local y = m(x)
    assert.same({2, 2, 10, 12}, y:shape())
    assert.tensor_near(y, F.conv_transpose2d(x, sd.weight, sd.bias, {stride = 2}), 0)
    local o = fs.nn.conv_transpose2d{in_channels = 3, out_channels = 2, kernel = 3, stride = 2,
                                     padding = 1, output_padding = 1, bias = false, seed = 1}
    assert.same({2, 2, 10, 12}, o(x):shape())
    assert.is_nil(o:state_dict().bias)
    assert.truthy(tostring(o):find("ConvTranspose2d(3, 2, kernel_size=(3, 3), stride=(2, 2)", 1, true))
  end)

  it("instancenorm2d is F.instance_norm, with and without options", function()
    assert.tensor_near(fs.nn.instancenorm2d(3)(x), F.instance_norm(x), 0)
    assert.tensor_near(fs.nn.instancenorm2d(3, {eps = 1e-3})(x), F.instance_norm(x, nil, nil, {eps = 1e-3}), 0)
    assert.tensor_near(fs.nn.instancenorm2d{num_features = 3}(x), F.instance_norm(x), 0)
    assert.equal(0, fs.nn.instancenorm2d(3):num_parameters())
  end)

  it("upsample is F.interpolate with a scale", function()
    assert.tensor_near(fs.nn.upsample{scale = 2}(x), F.interpolate(x, {scale = 2}), 0)
    assert.tensor_near(fs.nn.upsample{scale = {2, 3}, mode = "bilinear"}(x),
      F.interpolate(x, {scale = {2, 3}, mode = "bilinear"}), 0)
  end)

  it("save and load inside a sequential", function()
    local m = fs.nn.sequential{fs.nn.conv_transpose2d{in_channels = 3, out_channels = 2, kernel = 2, stride = 2, seed = 3},
      fs.nn.instancenorm2d(2), fs.nn.upsample{scale = 0.5, mode = "bilinear"}}
    local path = os.tmpname()
    m:save(path)
    local m2 = fs.nn.load(path)
    os.remove(path)
    assert.tensor_near(m2(x), m(x), 0)
  end)

  it("reject unknown options and bad values by name", function()
    local function fails(msg, fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok)
      assert.matches(msg, err, 1, true)
    end
    fails("fs.nn.conv_transpose2d: unknown option 'strid'", fs.nn.conv_transpose2d,
      {in_channels = 1, out_channels = 1, kernel = 2, strid = 2})
    fails("fs.nn.conv_transpose2d: option 'kernel' is required", fs.nn.conv_transpose2d,
      {in_channels = 1, out_channels = 1})
    fails("fs.nn.instancenorm2d: unknown option 'esp'", fs.nn.instancenorm2d, 3, {esp = 1})
    fails("instancenorm2d: num_features 0 must be >= 1", fs.nn.instancenorm2d, 0)
    fails("fs.nn.upsample: option 'scale' (a number or {h, w}) is required", fs.nn.upsample, {})
    fails("fs.nn.upsample: scale must be positive and finite, got (0, 0)", fs.nn.upsample, {scale = 0})
    fails("fs.nn.upsample: mode must be \"nearest\" or \"bilinear\", got \"cubic\"", fs.nn.upsample,
      {scale = 2, mode = "cubic"})
    fails("fs.nn.upsample: unknown option 'mod'", fs.nn.upsample, {scale = 2, mod = "x"})
  end)
end)
