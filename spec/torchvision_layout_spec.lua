-- spec/torchvision_layout_spec.lua: the ImageNet weights path without the internet. A file in
-- exactly the layout tools/export_torchvision.py writes (torchvision's state_dict names, sorted,
-- F32 tensors and I64 num_batches_tracked, {"format": "pt", ...} metadata, the header padded
-- with spaces to 8 bytes), built here from a 3-channel, 1000-class fewshot ResNet-18 (whose
-- names are torchvision's: spec/resnet_spec.lua checks them against PyTorch), loads into
-- fs.nn.resnet18{in_channels = 1} with adapt_conv1 = "sum", and its --grayscale form strictly.
local fs = require "fewshot"
local helper = require "helper"

-- The raw little-endian float32 bytes of a tensor (through an .npy file: its header stripped).
local function f32_bytes(t)
  local p = helper.tmpname(".npy")
  fs.io.save_npy(p, t:contiguous())
  local s = helper.read_bytes(p)
  os.remove(p)
  local major = s:byte(7)
  local hlen, start
  if major == 1 then hlen, start = string.unpack("<I2", s, 9), 11
  else hlen, start = string.unpack("<I4", s, 9), 13 end
  assert(s:sub(start, start + hlen - 1):find("'<f4'", 1, true), "not a little-endian float32 .npy")
  return s:sub(start + hlen)
end

-- tools/export_torchvision.py's save_safetensors, restated.
local function save_torchvision_layout(path, sd, metadata)
  local names = {}
  for k in pairs(sd) do names[#names + 1] = k end
  table.sort(names)
  local meta = {}
  local mkeys = {}
  for k in pairs(metadata) do mkeys[#mkeys + 1] = k end
  table.sort(mkeys)
  for _, k in ipairs(mkeys) do meta[#meta + 1] = ("%q: %q"):format(k, metadata[k]) end
  local header = {'"__metadata__": {' .. table.concat(meta, ", ") .. "}"}
  local blobs, offset = {}, 0
  for _, name in ipairs(names) do
    local t = sd[name]
    local dtype, raw
    if name:find("num_batches_tracked$") then
      dtype, raw = "I64", string.pack("<i8", math.tointeger(t:item()))
    else
      dtype, raw = "F32", f32_bytes(t)
    end
    header[#header + 1] = ('%q: {"dtype": %q, "shape": [%s], "data_offsets": [%d, %d]}'):format(
      name, dtype, table.concat(t:shape(), ", "), offset, offset + #raw)
    blobs[#blobs + 1] = raw
    offset = offset + #raw
  end
  local h = "{" .. table.concat(header, ", ") .. "}"
  h = h .. (" "):rep(-#h % 8)
  helper.write_bytes(path, string.pack("<I8", #h) .. h .. table.concat(blobs))
end

describe("a torchvision-layout ResNet-18 file (tools/export_torchvision.py)", function()
  local dir = helper.tmpdir()
  local src, x1, x3
  setup(function()
    src = fs.nn.resnet18{in_channels = 3, num_classes = 1000, seed = 11}
    -- one train-mode forward: running statistics that are not the defaults, num_batches_tracked 1
    src(fs.randn({4, 3, 32, 32}, {generator = fs.generator(12)}))
    src:eval()
    x1 = fs.randn({2, 1, 32, 32}, {generator = fs.generator(13)})
    x3 = fs.cat({x1, x1, x1}, 2)
    local sd = src:state_dict()
    save_torchvision_layout(dir .. "/rgb.safetensors", sd,
                            {format = "pt", source = "torchvision resnet18 IMAGENET1K_V1"})
    local gray = {}
    for k, v in pairs(sd) do if not k:find("^fc%.") then gray[k] = v end end
    local w = sd["conv1.weight"]
    gray["conv1.weight"] = w:narrow(2, 1, 1) + w:narrow(2, 2, 1) + w:narrow(2, 3, 1)
    save_torchvision_layout(dir .. "/gray.safetensors", gray,
                            {format = "pt", source = "torchvision resnet18 IMAGENET1K_V1",
                             adapted = "conv1 summed over RGB, fc removed"})
  end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  -- The reference: the 3-channel backbone (fc dropped) on the gray image repeated 3 times,
  -- which is what conv1's weights summed over RGB compute on the gray image.
  local function reference()
    local m3 = fs.nn.resnet18{in_channels = 3, seed = 1}
    m3:load_state_dict(src:state_dict(), {strict = false})
    m3:eval()
    return fs.no_grad(function() return m3(x3) end)
  end

  it("reads back every tensor with torchvision's names, I64 counters and metadata", function()
    local sd, meta = fs.io.load(dir .. "/rgb.safetensors")
    local n = 0
    for _ in pairs(sd) do n = n + 1 end
    assert.equal(#src:state_dict_keys(), n)
    assert.equal("pt", meta.format)
    assert.same({1000, 512}, sd["fc.weight"]:shape())
    assert.same({64, 3, 7, 7}, sd["conv1.weight"]:shape())
    assert.equal(1, sd["layer3.1.bn2.num_batches_tracked"]:item())
  end)

  it("loads into fs.nn.resnet18{in_channels = 1} with adapt_conv1 = 'sum' (fc ignored)", function()
    local m1 = fs.nn.resnet18{in_channels = 1, seed = 2}
    m1:load_state_dict(fs.io.load(dir .. "/rgb.safetensors"), {strict = false, adapt_conv1 = "sum"})
    m1:eval()
    local emb = fs.no_grad(function() return m1(x1) end)
    assert.same({2, 512}, emb:shape())
    assert.tensor_near(emb, reference(), 1e-4)
  end)

  it("without strict = false it names the fc keys the 1-channel model does not have", function()
    local m1 = fs.nn.resnet18{in_channels = 1, seed = 2}
    local ok, err = pcall(m1.load_state_dict, m1, fs.io.load(dir .. "/rgb.safetensors"),
                          {adapt_conv1 = "sum"})
    assert.is_false(ok)
    -- (in the order the loaded dict yields them, which is not fixed)
    local keys = tostring(err):match("unexpected keys %(2%): %[([^%]]*)%]")
    assert.truthy(keys, err)
    assert.truthy(keys == "fc.bias, fc.weight" or keys == "fc.weight, fc.bias", err)
  end)

  it("the --grayscale file (conv1 summed, fc removed) loads strictly with the same output", function()
    local m1 = fs.nn.resnet18{in_channels = 1, seed = 3}
    m1:load_state_dict(fs.io.load(dir .. "/gray.safetensors"))
    m1:eval()
    assert.tensor_near(fs.no_grad(function() return m1(x1) end), reference(), 1e-4)
  end)
end)
