-- PNG: files written by Pillow / a hand-made Adam7 writer
-- (tools/make_fixtures_images_volumes.py), 8- and 16-bit round trips, RGB/palette/alpha
-- conversion, and corrupt or truncated files.
local fs = require "fewshot"
local helper = require "helper"
local tmpname, read_bytes, write_bytes = helper.tmpname, helper.read_bytes, helper.write_bytes

local FIX = "spec/fixtures/io/"

local function grid(h, w, f)
  local t = {}
  for r = 0, h - 1 do
    t[r + 1] = {}
    for c = 0, w - 1 do t[r + 1][c + 1] = f(r, c) end
  end
  return t
end

describe("image.read (files from outside tools)", function()
  it("reads 8-bit gray with raw values", function()
    local t, depth = fs.image.read(FIX .. "gray8.png")
    assert.equal(8, depth)
    assert.tensor_near(t, grid(5, 7, function(r, c) return (37 * r + 11 * c) % 256 end), 0)
  end)

  it("reads 16-bit gray with raw values (counts survive), or normalized", function()
    local expect = grid(5, 7, function(r, c) return (7919 * r + 1237 * c) % 65536 end)
    local t, depth = fs.image.read(FIX .. "gray16.png")
    assert.equal(16, depth)
    assert.tensor_near(t, expect, 0)
    local n = fs.image.read(FIX .. "gray16.png", {normalize = true})
    assert.tensor_near(n, fs.tensor(expect):div(65535), 1e-6)
  end)

  it("reads an interlaced (Adam7) file", function()
    local t = fs.image.read(FIX .. "gray8_adam7.png")
    assert.tensor_near(t, grid(9, 11, function(r, c) return (29 * r + 13 * c) % 256 end), 0)
  end)

  it("turns RGB, RGBA and palette files into gray, or keeps (3, H, W)", function()
    local gray = grid(4, 6, function(r, c) return 0.299 * 10 * r + 0.587 * 20 * c + 0.114 * 5 end)
    for _, name in ipairs({"rgb.png", "rgba.png", "palette.png"}) do
      local t = fs.image.read(FIX .. name)
      assert.same({4, 6}, t:shape())
      assert.tensor_near(t, gray, 1e-5)
      local c3 = fs.image.read(FIX .. name, {channels = 3})
      assert.same({3, 4, 6}, c3:shape())
      assert.tensor_near(c3:select(1, 1), grid(4, 6, function(r) return 10 * r end), 0)
      assert.tensor_near(c3:select(1, 2), grid(4, 6, function(_, c) return 20 * c end), 0)
      assert.tensor_near(c3:select(1, 3), grid(4, 6, function() return 5 end), 0)
    end
  end)
end)

describe("image.write", function()
  it("round-trips 8-bit and 16-bit values exactly", function()
    local p = tmpname(".png")
    local t8 = fs.tensor(grid(6, 9, function(r, c) return (r * 9 + c) * 4 % 256 end))
    fs.image.write(p, t8, {bits = 8, normalize = false})
    local back, d = fs.image.read(p)
    assert.equal(8, d)
    assert.tensor_near(back, t8, 0)
    local t16 = fs.tensor(grid(6, 9, function(r, c) return (r * 9 + c) * 1201 % 65536 end))
    fs.image.write(p, t16, {bits = 16, normalize = false})
    back, d = fs.image.read(p)
    assert.equal(16, d)
    assert.tensor_near(back, t16, 0)
    os.remove(p)
  end)

  it("normalizes [min, max] to the full range by default, clamps and rounds otherwise", function()
    local p = tmpname(".png")
    fs.image.write(p, fs.tensor({{-1, 0}, {1, 3}}))
    assert.tensor_near(fs.image.read(p), {{0, 64}, {128, 255}}, 0) -- 63.75 and 127.5 round
    fs.image.write(p, fs.tensor({{-7, 12.4}, {12.6, 300}}), {normalize = false})
    assert.tensor_near(fs.image.read(p), {{0, 12}, {13, 255}}, 0)
    os.remove(p)
  end)

  it("writes (3, H, W) as RGB", function()
    local p = tmpname(".png")
    local rgb = fs.tensor({grid(2, 3, function(r, c) return r * 100 + c end),
                           grid(2, 3, function() return 7 end),
                           grid(2, 3, function(_, c) return 250 - c end)})
    fs.image.write(p, rgb, {normalize = false})
    assert.tensor_near(fs.image.read(p, {channels = 3}), rgb, 0)
    os.remove(p)
  end)

  it("raises on bad tensors and options", function()
    local p = tmpname(".png")
    assert.has_error(function() fs.image.write(p, fs.zeros(2, 2, 2)) end,
      ("image.write: %s: need an (H, W), (1, H, W) or (3, H, W) tensor, got (2, 2, 2)"):format(p))
    assert.has_error(function() fs.image.write(p, fs.zeros(2, 2), {bits = 12}) end,
      ("image.write: %s: bits must be 8 or 16 (got 12)"):format(p))
    assert.has_error(function() fs.image.write("/nonexistent-dir/x.png", fs.zeros(2, 2)) end)
  end)

  -- The message used to read the value from the buffer it had just freed.
  it("names a value that is not finite, and where it is", function()
    local p = tmpname(".png")
    for _, case in ipairs{{math.huge, 0, "inf"}, {-math.huge, 1, "-inf"}, {0 / 0, 2, "nan"}} do
      local t = fs.zeros(2, 3)
      t:set(1, case[2] + 1, case[1])
      local ok, err = pcall(fs.image.write, p, t)
      assert.is_false(ok)
      assert.are.equal(("image.write: %s: value %s at %d is not finite"):format(p, case[3],
        case[2]), (tostring(err):gsub("%-nan", "nan")))
    end
    assert.is_nil(io.open(p, "rb"))
  end)
end)

describe("image.read of bad files", function()
  local good = read_bytes(FIX .. "gray16.png")
  local cases = {
    {"missing", nil, "cannot open"},
    {"empty", "", "not a PNG file"},
    {"text", "hello, not a png", "not a PNG file"},
    {"truncated header", good:sub(1, 20), "corrupt or truncated PNG"},
    {"truncated data", good:sub(1, #good - 30), "corrupt or truncated PNG"},
    -- flip one byte inside the IDAT payload: a CRC or zlib error
    {"corrupt data", good:sub(1, 60) .. string.char((good:byte(61) + 1) % 256) .. good:sub(62),
     "corrupt or truncated PNG"},
  }
  for _, case in ipairs(cases) do
    it("raises naming the file: " .. case[1], function()
      local p = tmpname(".png")
      if case[2] then write_bytes(p, case[2]) end
      local ok, err = pcall(fs.image.read, p)
      assert.is_false(ok)
      assert.truthy(err:find(p, 1, true), err)
      assert.truthy(err:find(case[3], 1, true), err)
      os.remove(p)
    end)
  end
end)

describe("image.slice", function()
  it("takes axial, coronal and sagittal planes with their pixel size", function()
    local v = fs.arange(0, 24):view(2, 3, 4) -- (z, y, x)
    local s, px = fs.image.slice(v, {axis = "axial", index = 2, spacing_mm = {3, 2, 1}})
    assert.tensor_near(s, {{12, 13, 14, 15}, {16, 17, 18, 19}, {20, 21, 22, 23}}, 0)
    assert.same({2, 1}, px)
    s, px = fs.image.slice(v, {axis = "coronal", index = 3, spacing_mm = {3, 2, 1}})
    assert.tensor_near(s, {{8, 9, 10, 11}, {20, 21, 22, 23}}, 0)
    assert.same({3, 1}, px)
    s, px = fs.image.slice(v, {axis = "sagittal", index = 1, spacing_mm = {3, 2, 1}})
    assert.tensor_near(s, {{0, 4, 8}, {12, 16, 20}}, 0)
    assert.same({3, 2}, px)
    assert.has_error(function() fs.image.slice(v, {axis = "sagittal", index = 5}) end,
      "image.slice: index 5 outside 1..4 for the sagittal axis of a (2, 3, 4) volume")
  end)
end)

describe("image.affine", function()
  local img = fs.zeros({7, 7})
  img:set(4, 6, 1) -- two columns right of the centre (4, 4)

  it("shifts by whole pixels exactly, {rows, columns}", function()
    local y = fs.image.affine(img, {shift = {1, -2}})
    assert.equal(1, y:get(5, 4))
    assert.near(1, y:sum():item(), 1e-6)
  end)

  it("rotates counter-clockwise as the image is shown, about the centre", function()
    local y = fs.image.affine(img, {angle = 90})
    assert.near(1, y:get(2, 4), 1e-5) -- right of the centre -> above it
    assert.near(1, fs.image.affine(img, {angle = -90}):get(6, 4), 1e-5)
    local z = fs.image.affine(img, {angle = 180, mode = "nearest"})
    assert.equal(1, z:get(4, 2))
  end)

  it("zooms about the centre and works on (N, C, H, W) alike", function()
    assert.near(1, fs.image.affine(img, {scale = 0.5}):get(4, 5), 1e-5)
    local b = fs.image.affine(img:view(1, 1, 7, 7), {angle = 90})
    assert.same({1, 1, 7, 7}, b:shape())
    assert.tensor_near(b:view(7, 7), fs.image.affine(img, {angle = 90}), 0)
  end)

  it("is fs.image.affine with and without options, and rejects bad ones", function()
    assert.tensor_near(fs.image.affine(img), img, 1e-6)
    assert.has_error(function() fs.image.affine(img, {scale = 0}) end,
      "image.affine: option 'scale' must be > 0, got 0")
    assert.has_error(function() fs.image.affine(img, {shift = 2}) end,
      "image.affine: option 'shift' must be {rows, columns} in pixels")
    local ok, err = pcall(fs.image.affine, img, {angel = 3})
    assert.is_false(ok)
    assert.matches("image.affine: unknown option 'angel'", err, 1, true)
    assert.has_error(function() fs.image.affine(fs.zeros({3}), {}) end,
      "image.affine: x must be a tensor (..., H, W)")
  end)
end)
