-- spec/module_calls_spec.lua: every documented call form of every fs.nn module constructor
-- (README and the registration list of csrc/lua/module_lua.c), with and without its options
-- table, alone and inside fs.nn.sequential; and an unknown option key rejected by each one.
local fs = require "fewshot"
require "helper" -- assert.tensor_near

local function keys(m) return m:state_dict_keys() end

describe("module constructors: every call form", function()
  it("conv2d{...} with only the required keys, with every option, kernel_size alias", function()
    local a = fs.nn.conv2d{in_channels = 2, out_channels = 3, kernel = 3}
    assert.same({"weight", "bias"}, keys(a))
    assert.same({1, 3, 3, 3}, a(fs.zeros(1, 2, 5, 5)):shape())
    local b = fs.nn.conv2d{in_channels = 2, out_channels = 3, kernel = {3, 1}, stride = 2,
                           padding = {1, 0}, dilation = 1, bias = false, seed = 3}
    assert.same({"weight"}, keys(b))
    assert.same({1, 3, 3, 3}, b(fs.zeros(1, 2, 5, 5)):shape())
    local c = fs.nn.conv2d{in_channels = 2, out_channels = 3, kernel_size = 1,
                           generator = fs.generator(3)}
    assert.same({3, 2, 1, 1}, c:named_parameters().weight:shape())
    assert.has_error(function() fs.nn.conv2d() end)
  end)

  it("batchnorm2d(n), batchnorm2d(n, {eps=, momentum=}), batchnorm2d{num_features=}", function()
    assert.equal("BatchNorm2d(4, eps=1e-05, momentum=0.1)",
                 tostring(fs.nn.batchnorm2d(4)):match("^[^ ]+ [^ ]+ [^ ]+"))
    local b = fs.nn.batchnorm2d(4, {eps = 1e-3, momentum = 0.2})
    assert.truthy(tostring(b):find("^BatchNorm2d%(4, eps=0.001, momentum=0.2%)"), tostring(b))
    local c = fs.nn.batchnorm2d{num_features = 5}
    assert.same({5}, c:named_parameters().weight:shape())
    local d = fs.nn.batchnorm2d{num_features = 5, eps = 1e-4, momentum = 0.3}
    assert.truthy(tostring(d):find("^BatchNorm2d%(5, eps=0.0001, momentum=0.3%)"), tostring(d))
  end)

  it("linear(in, out), linear(in, out, {...}), linear{...}", function()
    local a = fs.nn.linear(4, 2)
    assert.same({"weight", "bias"}, keys(a))
    assert.same({3, 2}, a(fs.zeros(3, 4)):shape())
    local b = fs.nn.linear(4, 2, {bias = false, seed = 1})
    assert.same({"weight"}, keys(b))
    local c = fs.nn.linear(4, 2, {generator = fs.generator(1), bias = false})
    assert.tensor_near(c:named_parameters().weight, b:named_parameters().weight, 0)
    local d = fs.nn.linear{in_features = 4, out_features = 2}
    assert.same({2, 4}, d:named_parameters().weight:shape())
    local e = fs.nn.linear{in_features = 4, out_features = 2, bias = false, seed = 1}
    assert.tensor_near(e:named_parameters().weight, b:named_parameters().weight, 0)
  end)

  it("relu(), relu{}, flatten(), flatten{}", function()
    local x = fs.tensor{{-1, 2}}
    assert.tensor_near(fs.nn.relu()(x), {{0, 2}}, 0)
    assert.tensor_near(fs.nn.relu{}(x), {{0, 2}}, 0)
    assert.same({2, 12}, fs.nn.flatten()(fs.zeros(2, 3, 4)):shape())
    assert.same({2, 12}, fs.nn.flatten{}(fs.zeros(2, 3, 4)):shape())
  end)

  it("maxpool2d{kernel=}, with every option, kernel_size alias", function()
    local x = fs.arange(16):view(1, 1, 4, 4)
    assert.tensor_near(fs.nn.maxpool2d{kernel = 2}(x), {{{{5, 7}, {13, 15}}}}, 0)
    local m = fs.nn.maxpool2d{kernel = 3, stride = 2, padding = 1, ceil_mode = false}
    assert.same({1, 1, 2, 2}, m(x):shape())
    assert.same({1, 1, 2, 2}, fs.nn.maxpool2d{kernel_size = {2, 2}}(x):shape())
    assert.has_error(function() fs.nn.maxpool2d() end)
  end)

  it("adaptive_avgpool2d(), adaptive_avgpool2d{output_size=}", function()
    local x = fs.arange(16):view(1, 1, 4, 4)
    assert.tensor_near(fs.nn.adaptive_avgpool2d()(x), {{{{7.5}}}}, 1e-6)
    assert.tensor_near(fs.nn.adaptive_avgpool2d{output_size = {1, 2}}(x), {{{{6.5, 8.5}}}}, 1e-6)
    assert.same({1, 1, 2, 2}, fs.nn.adaptive_avgpool2d{output_size = 2}(x):shape())
    assert.has_error(function() fs.nn.adaptive_avgpool2d(3) end)
  end)

  it("sequential{...} of every constructor's short form, and sequential{}", function()
    local m = fs.nn.sequential{
      fs.nn.conv2d{in_channels = 1, out_channels = 2, kernel = 3, padding = 1},
      fs.nn.batchnorm2d(2), fs.nn.relu(), fs.nn.maxpool2d{kernel = 2},
      fs.nn.adaptive_avgpool2d(), fs.nn.flatten(), fs.nn.linear(2, 3)}
    assert.same({4, 3}, m(fs.zeros(4, 1, 6, 6)):shape())
    assert.equal("Linear", m:child("6").kind)
    local id = fs.nn.sequential{}
    assert.tensor_near(id(fs.ones(2)), {1, 1}, 0)
    assert.has_error(function() fs.nn.sequential() end)
  end)

  it("resnet18(), resnet18{}, resnet18{in_channels=, num_classes=, seed=}", function()
    local a = fs.nn.resnet18()
    assert.equal(11176512, a:num_parameters())
    assert.same({2, 512}, a(fs.zeros(2, 3, 32, 32)):shape())
    local b = fs.nn.resnet18{}
    assert.equal(11176512, b:num_parameters())
    local c = fs.nn.resnet18{in_channels = 1, num_classes = 5, seed = 1}
    assert.same({2, 5}, c(fs.zeros(2, 1, 32, 32)):shape())
    local d = fs.nn.resnet18{in_channels = 1, num_classes = 5, generator = fs.generator(1)}
    assert.tensor_near(d:flat_parameters(), c:flat_parameters(), 0)
    assert.has_error(function() fs.nn.resnet18(3) end)
  end)

  it("load(path) of a model saved with every short form", function()
    local m = fs.nn.sequential{fs.nn.linear(4, 3), fs.nn.relu(), fs.nn.linear(3, 2)}
    local path = os.tmpname()
    m:save(path)
    local m2 = fs.nn.load(path)
    os.remove(path)
    local x = fs.randn({2, 4}, {generator = fs.generator(1)})
    assert.tensor_near(m2(x), m(x), 0)
  end)
end)

describe("module constructors: an unknown option key raises", function()
  local cases = {
    {"fs.nn.conv2d", function()
      fs.nn.conv2d{in_channels = 1, out_channels = 2, kernel = 3, strid = 2} end,
      "fs.nn.conv2d: unknown option 'strid' (did you mean 'stride'?)"},
    {"fs.nn.batchnorm2d (n, opts)", function() fs.nn.batchnorm2d(4, {mometum = 0.2}) end,
      "fs.nn.batchnorm2d: unknown option 'mometum' (did you mean 'momentum'?)"},
    {"fs.nn.batchnorm2d {...}", function() fs.nn.batchnorm2d{num_features = 4, epps = 1} end,
      "fs.nn.batchnorm2d: unknown option 'epps' (did you mean 'eps'?)"},
    {"fs.nn.linear (in, out, opts)", function() fs.nn.linear(4, 2, {biass = false}) end,
      "fs.nn.linear: unknown option 'biass' (did you mean 'bias'?)"},
    {"fs.nn.linear {...}", function()
      fs.nn.linear{in_features = 4, out_feature = 2} end,
      "fs.nn.linear: unknown option 'out_feature' (did you mean 'out_features'?)"},
    {"fs.nn.relu", function() fs.nn.relu{inplace = true} end,
      "fs.nn.relu: unknown option 'inplace' (it takes no options)"},
    {"fs.nn.flatten", function() fs.nn.flatten{start_dim = 2} end,
      "fs.nn.flatten: unknown option 'start_dim' (it takes no options)"},
    {"fs.nn.maxpool2d", function() fs.nn.maxpool2d{kernel = 2, paddin = 1} end,
      "fs.nn.maxpool2d: unknown option 'paddin' (did you mean 'padding'?)"},
    {"fs.nn.adaptive_avgpool2d", function() fs.nn.adaptive_avgpool2d{outputsize = 2} end,
      "fs.nn.adaptive_avgpool2d: unknown option 'outputsize' (did you mean 'output_size'?)"},
    {"fs.nn.sequential", function() fs.nn.sequential{fs.nn.relu(), name = "x"} end,
      "fs.nn.sequential: unknown key 'name' (it takes a list of modules and no options)"},
    {"fs.nn.resnet18", function() fs.nn.resnet18{num_clases = 10} end,
      "fs.nn.resnet18: unknown option 'num_clases' (did you mean 'num_classes'?)"},
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.has_error(c[2], c[3]) end)
  end
end)

describe("load_state_dict options", function()
  it("an unknown option key raises", function()
    local m = fs.nn.linear(2, 2)
    assert.has_error(function() m:load_state_dict(m:state_dict(), {strcit = false}) end,
      "load_state_dict: unknown option 'strcit' (did you mean 'strict'?)")
    assert.has_no.errors(function() m:load_state_dict(m:state_dict()) end)
  end)
end)

describe("constructor descriptions (what save stores and tostring prints)", function()
  local function saved_spec(m)
    local path = os.tmpname()
    m:save(path)
    local _, meta = fs.io.load(path)
    os.remove(path)
    return meta["fewshot.module"]
  end

  it("every layer kind, exactly", function()
    local m = fs.nn.sequential{
      fs.nn.conv2d{in_channels = 1, out_channels = 2, kernel = {3, 1}, stride = 2,
                   padding = {1, 0}, bias = false},
      fs.nn.batchnorm2d(2, {eps = 1e-3, momentum = 0.25}), fs.nn.relu(),
      fs.nn.maxpool2d{kernel = 2}, fs.nn.adaptive_avgpool2d{output_size = {1, 2}},
      fs.nn.flatten(), fs.nn.linear(4, 3)}
    assert.equal("sequential{conv2d{in_channels=1, out_channels=2, kernel={3, 1}, "
      .. "stride={2, 2}, padding={1, 0}, dilation={1, 1}, bias=false}, "
      .. "batchnorm2d{num_features=2, eps=0.001, momentum=0.25}, relu{}, "
      .. "maxpool2d{kernel={2, 2}, stride={2, 2}, padding={0, 0}}, "
      .. "adaptive_avgpool2d{output_size={1, 2}}, flatten{}, "
      .. "linear{in_features=4, out_features=3, bias=true}}", saved_spec(m))
    assert.equal(table.concat({
      "Sequential  25 params",
      "  0: Conv2d(1, 2, kernel_size=(3, 1), stride=(2, 2), padding=(1, 0), bias=False)  "
        .. "[weight (2, 1, 3, 1)]  6 params",
      "  1: BatchNorm2d(2, eps=0.001, momentum=0.25)  [weight (2), bias (2), running_mean (2), "
        .. "running_var (2), num_batches_tracked ()]  4 params",
      "  2: ReLU()",
      "  3: MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))",
      "  4: AdaptiveAvgPool2d(output_size=(1, 2))",
      "  5: Flatten()",
      "  6: Linear(in_features=4, out_features=3, bias=True)  [weight (3, 4), bias (3)]  15 params",
    }, "\n"), tostring(m))
  end)

  it("resnet18 with and without fc", function()
    local r = fs.nn.resnet18{in_channels = 1, num_classes = 3}
    assert.equal("resnet18{in_channels=1, num_classes=3}", saved_spec(r))
    assert.equal("ResNet-18(in_channels=1, num_classes=3)  11,171,779 params",
                 tostring(r):match("^[^\n]*"))
    r = fs.nn.resnet18()
    assert.equal("resnet18{in_channels=3}", saved_spec(r))
    assert.equal("ResNet-18(in_channels=3, embedding=512)  11,176,512 params",
                 tostring(r):match("^[^\n]*"))
  end)
end)

describe("child paths (fs_module_find in the core)", function()
  local r = fs.nn.resnet18{in_channels = 1, num_classes = 2, seed = 1}

  it("finds a submodule by its dotted path; the empty path is the model", function()
    assert.equal("Conv2d", r:child("layer1.0.conv1").kind)
    assert.equal("Sequential", r:child("layer2.0.downsample").kind)
    assert.equal("BatchNorm2d", r:child("layer2.0.downsample.1").kind)
    assert.same({64, 64, 3, 3}, r:child("layer1.0.conv1"):named_parameters().weight:shape())
    assert.equal("ResNet", r:child("").kind)
  end)

  it("raises naming the path when there is no such submodule", function()
    assert.has_error(function() r:child("layer9") end, "child: no submodule 'layer9'")
    assert.has_error(function() r:child("layer1..0") end, "child: no submodule 'layer1..0'")
    assert.has_error(function() r:child("layer1.0.conv1.weight") end,
      "child: no submodule 'layer1.0.conv1.weight'")
    local long = "layer1" .. ("x"):rep(300)
    assert.has_error(function() r:child(long) end, "child: no submodule '" .. long .. "'")
  end)
end)

describe("a checkpoint's stored description cannot overflow a constructor", function()
  local function load_spec(text)
    local path = os.tmpname()
    fs.io.save(path, {}, {metadata = {["fewshot.module"] = text}})
    local ok, err = pcall(fs.nn.load, path)
    os.remove(path)
    assert.is_false(ok)
    return err
  end
  local cases = {
    {"conv2d{in_channels=65536, out_channels=65536, kernel=3}",
     "conv2d: a weight of shape (65536, 65536, 3, 3) would have more than 2147483647 elements"},
    {"conv2d{in_channels=4294967296, out_channels=1, kernel=1}",
     "conv2d: in_channels 4294967296 is too large (at most 2147483647)"},
    {"conv2d{in_channels=1, out_channels=1, kernel={1, 4611686018427387904}}",
     "conv2d: kernel 4611686018427387904 is too large (at most 2147483647)"},
    {"conv2d{in_channels=1, out_channels=1, kernel=1, padding=4611686018427387904}",
     "conv2d: padding 4611686018427387904 is too large (at most 2147483647)"},
    {"conv2d{in_channels=1, out_channels=1, kernel=3, dilation=4611686018427387904}",
     "conv2d: dilation 4611686018427387904 is too large (at most 2147483647)"},
    {"conv2d{in_channels=1, out_channels=1, kernel=1, stride=4611686018427387904}",
     "conv2d: stride 4611686018427387904 is too large (at most 2147483647)"},
    {"linear{in_features=9223372036854775807, out_features=2}",
     "linear: a weight of shape (2, 9223372036854775807) would have more than 2147483647 elements"},
    {"sequential{relu{}, linear{in_features=4294967296, out_features=4294967296}}",
     "linear: a weight of shape (4294967296, 4294967296) would have more than 2147483647 elements"},
    {"batchnorm2d{num_features=4611686018427387904}",
     "batchnorm2d: num_features 4611686018427387904 is too large (at most 2147483647)"},
    {"maxpool2d{kernel=4611686018427387904}",
     "maxpool2d: kernel 4611686018427387904 is too large (at most 2147483647)"},
    {"maxpool2d{kernel=2, padding=-1}", "maxpool2d: stride and padding must be >= 0"},
    {"adaptive_avgpool2d{output_size={1, 4294967296}}",
     "adaptive_avgpool2d: output size 4294967296 is too large (at most 2147483647)"},
    {"resnet18{in_channels=4611686018427387904}",
     "resnet18: in_channels 4611686018427387904 or num_classes 0 is too large"},
    {"resnet18{in_channels=1, num_classes=4611686018427387904}",
     "resnet18: in_channels 1 or num_classes 4611686018427387904 is too large"},
    {"linear{in_features=99999999999999999999, out_features=2}",
     "module description: number 99999999999999999999 out of range at offset 19"},
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local err = load_spec(c[1])
      assert.truthy(err:find(c[2], 1, true), err)
    end)
  end

  it("an ordinary description still loads (its state dict then decides)", function()
    local err = load_spec("linear{in_features=2, out_features=3, bias=true}")
    assert.truthy(err:find("missing keys (2): [weight, bias]", 1, true), err)
  end)
end)

describe("fs.nn.load refuses text that is not a constructor expression", function()
  for _, text in ipairs{"relu{}.save{}", "sequential{relu{}.forward{}}", "relu{}..relu{}",
                        "linear{in_features=2.e, out_features=1}",
                        "linear{in_features=1x2, out_features=1}"} do
    it(text, function()
      local path = os.tmpname()
      fs.io.save(path, {}, {metadata = {["fewshot.module"] = text}})
      local ok, err = pcall(fs.nn.load, path)
      os.remove(path)
      assert.is_false(ok)
      assert.truthy(err:find("has no fewshot module description", 1, true), err)
    end)
  end

  it("numbers with a fraction and an exponent are accepted", function()
    local bn = fs.nn.batchnorm2d(2, {eps = 1.5e-5, momentum = 0.125})
    local path = os.tmpname()
    bn:save(path)
    local again = fs.nn.load(path)
    os.remove(path)
    assert.truthy(tostring(again):find("^BatchNorm2d%(2, eps=1.5e%-05, momentum=0.125%)"),
                  tostring(again))
  end)
end)

describe("fs.nn.load parses the description in the core (fs_module_from_spec)", function()
  local function try(text)
    local path = os.tmpname()
    fs.io.save(path, {}, {metadata = {["fewshot.module"] = text}})
    local ok, err = pcall(fs.nn.load, path)
    os.remove(path)
    return ok, err
  end

  it("builds what the text says, with spaces, trailing commas and the kernel_size alias", function()
    -- a state dict of zeros would not match: the strict load then names the expected keys
    local _, err = try(" sequential { conv2d{ in_channels = 1 , out_channels=2, kernel_size={3, 1},"
                       .. " bias=false, }, batchnorm2d{num_features=2, eps=1e-3,}, relu{},"
                       .. " maxpool2d{kernel=2, ceil_mode=true}, adaptive_avgpool2d{},"
                       .. " flatten{}, linear{in_features=2, out_features=1}, } ")
    assert.truthy(err:find("missing keys (8): [0.weight, 1.weight, 1.bias, 1.running_mean, "
                           .. "1.running_var, 1.num_batches_tracked, 6.weight, 6.bias]", 1, true),
                  err)
  end)

  local bad = {
    {"resnet18{in_channels=1} x", "unexpected text after the description at offset 24"},
    {"conv3d{}", "unknown module 'conv3d'"},
    {"linear{in_features=2, out_features=2, seed=1}", "linear has no option 'seed'"},
    {"linear{in_features=2, in_features=3, out_features=2}", "option 'in_features' given twice"},
    {"linear{out_features=2}", "linear needs option 'in_features'"},
    {"conv2d{in_channels=1, out_channels=1}", "conv2d needs option 'kernel'"},
    {"conv2d{in_channels=1, out_channels=1, kernel={1.5, 2}}", "a pair must hold integers"},
    {"linear{in_features=2.0, out_features=1}", "option 'in_features' must be an integer"},
    {"linear{in_features=2, out_features=1, bias=1}", "option 'bias' must be true or false"},
    {"batchnorm2d{num_features=2, eps=true}", "option 'eps' must be a number"},
    {"resnet18{num_classes=0}", "resnet18: num_classes must be >= 1"},
    {"relu{}, relu{}", "unexpected text after the description"},
    {("sequential{"):rep(40) .. ("}"):rep(40), "modules nested too deeply"},
    {"sequential{" .. ("relu{}, "):rep(257) .. "}", "a sequential holds at most 256 modules"},
    {"", "expected a module name at offset 0"},
  }
  for _, c in ipairs(bad) do
    it("refuses " .. (#c[1] > 60 and c[1]:sub(1, 60) .. "..." or c[1]), function()
      local ok, err = try(c[1])
      assert.is_false(ok)
      assert.truthy(err:find("has no fewshot module description", 1, true), err)
      assert.truthy(err:find(c[2], 1, true), err)
    end)
  end

  it("a model saved and loaded is the same model (resnet18 with fc)", function()
    local m = fs.nn.resnet18{in_channels = 1, num_classes = 3, seed = 4}
    local path = os.tmpname()
    m:save(path)
    local m2 = fs.nn.load(path)
    os.remove(path)
    assert.same(m:state_dict_keys(), m2:state_dict_keys())
    assert.tensor_near(m2:flat_parameters(), m:flat_parameters(), 0)
    assert.equal(tostring(m), tostring(m2))
  end)
end)

describe("load_state_dict(fs.io.load(path))", function()
  it("takes fs.io.load's two results: the metadata is not an options table", function()
    local fs = require "fewshot"
    local a, b = fs.nn.linear(3, 2, {seed = 1}), fs.nn.linear(3, 2, {seed = 2})
    local path = os.tmpname()
    fs.io.save(path, a:state_dict(), {metadata = {note = "x"}})
    b:load_state_dict(fs.io.load(path))
    os.remove(path)
    assert.same(a:state_dict().weight:totable(), b:state_dict().weight:totable())
    assert.has_error(function() b:load_state_dict(a:state_dict(), {format = "pt"}) end,
      "load_state_dict: unknown option 'format' (options: strict, adapt_conv1)")
  end)
end)
