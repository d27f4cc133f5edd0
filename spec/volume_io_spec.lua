-- NIfTI-1 and Interfile 3.3: files written by nibabel / numpy with SIMIND-, STIR- and
-- GATE-style headers (tools/make_fixtures_images_volumes.py), round trips, and bad files.
-- Every fixture volume holds v[z][y][x] = x + 10 y + 100 z (0-based).
local fs = require "fewshot"
local helper = require "helper"
local tmpname, read_bytes, write_bytes = helper.tmpname, helper.read_bytes, helper.write_bytes

local FIX = "spec/fixtures/io/"

local function vol(nz, ny, nx, f)
  f = f or function(v) return v end
  local t = {}
  for z = 0, nz - 1 do
    t[z + 1] = {}
    for y = 0, ny - 1 do
      t[z + 1][y + 1] = {}
      for x = 0, nx - 1 do t[z + 1][y + 1][x + 1] = f(x + 10 * y + 100 * z) end
    end
  end
  return t
end

local function raises_naming(fn, path, reason)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.truthy(err:find(path, 1, true), err)
  assert.truthy(err:find(reason, 1, true), err)
end

describe("load_nifti (nibabel files)", function()
  for _, name in ipairs({"int16_scaled.nii", "int16_scaled.nii.gz"}) do
    it("reads " .. name .. " with scl_slope/inter applied and the orientation kept", function()
      local t, info = fs.io.load_nifti(FIX .. name)
      assert.same({2, 3, 4}, t:shape())
      assert.tensor_near(t, vol(2, 3, 4, function(v) return 2 * v - 6 end), 0)
      assert.same({3.5, 2.0, 1.5}, info.spacing_mm) -- (z, y, x)
      assert.same({4, 3, 2}, info.dim)             -- file order (x, y, z)
      assert.equal(4, info.datatype)
      assert.equal(2, info.scl_slope)
      assert.equal(-6, info.scl_inter)
      assert.equal(1, info.qform_code)
      assert.equal(2, info.sform_code)
      assert.same({1.5, 0, 0, -10}, info.srow_x)
      assert.same({0, 2, 0, 20}, info.srow_y)
      assert.same({0, 0, 3.5, 5}, info.srow_z)
      assert.same({-10, 20, 5}, info.qoffset)
    end)
  end

  it("reads a big-endian float32 file", function()
    local t, info = fs.io.load_nifti(FIX .. "float32_bigendian.nii")
    assert.tensor_near(t, vol(2, 3, 4), 0)
    assert.equal(16, info.datatype)
  end)

  it("reads a 2D uint8 image as (y, x)", function()
    local t, info = fs.io.load_nifti(FIX .. "uint8_2d.nii")
    assert.same({5, 6}, t:shape())
    assert.equal(23, t:get(3, 4)) -- x = 3, y = 2
    assert.near(0.8, info.spacing_mm[1], 1e-6)
  end)
end)

describe("save_nifti", function()
  for _, ext in ipairs({".nii", ".nii.gz"}) do
    it("round-trips values, spacing and orientation (" .. ext .. ")", function()
      local p = tmpname(ext)
      local t = fs.tensor(vol(3, 4, 5, function(v) return v * 0.25 - 3 end))
      local info = {spacing_mm = {4, 3.2, 3.2}, qform_code = 1, sform_code = 1, quatern = {0, 0, 1},
                    qoffset = {1, 2, 3}, srow_x = {-3.2, 0, 0, 1}, srow_y = {0, -3.2, 0, 2},
                    srow_z = {0, 0, 4, 3}, descrip = "fewshot spec"}
      fs.io.save_nifti(p, t, info)
      local back, bi = fs.io.load_nifti(p)
      assert.tensor_near(back, t, 0)
      assert.same({4, 3.2 + 0.0, 3.2 + 0.0}, {bi.spacing_mm[1], math.floor(bi.spacing_mm[2] * 1e5 + 0.5) / 1e5,
                                              math.floor(bi.spacing_mm[3] * 1e5 + 0.5) / 1e5})
      assert.equal(1, bi.qform_code)
      assert.same({0, 0, 1}, bi.quatern)
      assert.same({1, 2, 3}, bi.qoffset)
      assert.near(-3.2, bi.srow_x[1], 1e-6)
      assert.equal("fewshot spec", bi.descrip)
      os.remove(p)
    end)
  end

  it("raises on a spacing list of the wrong length", function()
    assert.has_error(function() fs.io.save_nifti("/tmp/x.nii", fs.zeros(2, 2), {spacing_mm = {1, 2, 3}}) end,
      "save_nifti: /tmp/x.nii: info.spacing_mm has 3 entries for a tensor of shape (2, 2)")
  end)
end)

describe("load_nifti of bad files", function()
  local good = read_bytes(FIX .. "int16_scaled.nii")
  local gz = read_bytes(FIX .. "int16_scaled.nii.gz")
  local function patched(off, bytes) return good:sub(1, off) .. bytes .. good:sub(off + #bytes + 1) end
  local cases = {
    {"missing", nil, "cannot open"},
    {"empty", "", "truncated header"},
    {"short header", good:sub(1, 200), "truncated header"},
    {"truncated voxels", good:sub(1, #good - 10), "truncated: 48 voxel bytes expected"},
    {"bad sizeof_hdr", patched(0, "\1\2\3\4"), "not a NIfTI-1 file"},
    {"bad magic", patched(344, "xyz\0"), "bad magic"},
    {"bad dim[0]", patched(40, "\9\0"), "dim[0] = 9 is outside 1..7"},
    {"zero dim", patched(42, "\0\0"), "dim[1] = 0 is not positive"},
    {"bad datatype", patched(70, "\33\0"), "unsupported datatype 33"},
    {"bitpix mismatch", patched(72, "\8\0"), "bitpix 8 does not match datatype 4"},
    {"corrupt gzip", gz:sub(1, 20) .. string.rep("\255", 40) .. gz:sub(61), "corrupt compressed data"},
    {"truncated gzip", gz:sub(1, #gz - 40), "truncated: 48 voxel bytes expected, 16 present"},
  }
  for _, case in ipairs(cases) do
    it("raises naming the file: " .. case[1], function()
      local p = tmpname(case[1]:find("gzip") and ".nii.gz" or ".nii")
      if case[2] then write_bytes(p, case[2]) end
      raises_naming(function() fs.io.load_nifti(p) end, p, case[3])
      os.remove(p)
    end)
  end
end)

describe("load_interfile (SIMIND, STIR, GATE style headers)", function()
  it("reads a SIMIND header: big-endian int16 after a 16-byte offset, slice thickness in pixels", function()
    local t, info = fs.io.load_interfile(FIX .. "simind.h00")
    assert.same({2, 3, 4}, t:shape())
    assert.tensor_near(t, vol(2, 3, 4), 0)
    assert.same({8.84, 4.42, 4.42}, info.spacing_mm)
    assert.equal("BIGENDIAN", info.byte_order)
    assert.equal("signed integer", info.number_format)
    assert.equal(16, info.data_offset)
    assert.equal(FIX .. "simind.a00", info.data_file)
  end)

  it("reads a STIR header: mixed case, no '!', CRLF lines, float little-endian", function()
    local t, info = fs.io.load_interfile(FIX .. "stir.hv")
    assert.tensor_near(t, vol(2, 3, 4), 0)
    assert.same({3.27, 2.5, 2.5}, info.spacing_mm)
    assert.equal("LITTLEENDIAN", info.byte_order)
    assert.equal(4, info.bytes_per_pixel)
  end)

  it("reads a lower-case header with uint8 data at data starting block 1", function()
    local t, info = fs.io.load_interfile(FIX .. "gate_u8.h33")
    assert.same({3, 4}, t:shape())
    assert.tensor_near(t, vol(1, 3, 4)[1], 0)
    assert.equal(2048, info.data_offset)
    assert.same({3, 3}, info.spacing_mm)
  end)
end)

describe("save_interfile", function()
  it("round-trips a volume and a slice with their spacing", function()
    local p = tmpname(".h33")
    local t = fs.tensor(vol(3, 2, 5, function(v) return v / 7 end))
    fs.io.save_interfile(p, t, {spacing_mm = {3.3, 4.4, 4.4}})
    local back, info = fs.io.load_interfile(p)
    assert.tensor_near(back, t, 0)
    assert.same({3.3, 4.4, 4.4}, info.spacing_mm)
    assert.equal(p:gsub("%.h33$", ".i33"), info.data_file)
    os.remove(info.data_file)
    local s = fs.tensor({{1, 2, 3}, {4, 5, 6}})
    fs.io.save_interfile(p, s, {spacing_mm = {6.4, 6.4}})
    local b2, i2 = fs.io.load_interfile(p)
    assert.tensor_near(b2, s, 0)
    assert.same({6.4, 6.4}, i2.spacing_mm)
    os.remove(i2.data_file)
    os.remove(p)
  end)
end)

describe("load_interfile of bad files", function()
  local header = read_bytes(FIX .. "simind.h00")
  local data = read_bytes(FIX .. "simind.a00")
  local function case(name, h, d, reason)
    it("raises naming the file: " .. name, function()
      local p = tmpname(".h00")
      local dp = p:gsub("%.h00$", ".a00")
      write_bytes(p, (h:gsub("simind%.a00", (dp:match("[^/]+$")))))
      if d then write_bytes(dp, d) end
      raises_naming(function() fs.io.load_interfile(p) end, p, reason)
      os.remove(p)
      os.remove(dp)
    end)
  end
  case("missing data file", header, nil, "cannot open data file")
  case("truncated data", header, data:sub(1, 40), "is truncated: 48 bytes expected from offset 16")
  case("not interfile", "hello := world\n", data, "not an Interfile header")
  case("unknown number format", header:gsub("signed integer", "complex"), data, "unsupported number format 'complex'")
  case("bad matrix size", header:gsub("%[1%] := 4", "[1] := four"), data, "bad number 'four'")
  case("no data file key", header:gsub("!name of data file := simind.a00\n", ""), data, "missing key 'name of data file'")
  case("bad byte order", header:gsub("BIGENDIAN", "MIDDLEENDIAN"), data, "unknown imagedata byte order")
  it("raises on a missing header", function()
    raises_naming(function() fs.io.load_interfile("/nonexistent/x.h33") end, "/nonexistent/x.h33", "cannot open")
  end)
  -- Header numbers used to be converted to integers unchecked (undefined behaviour) and to end
  -- in a misleading "short read" or "truncated"; each is now named with its value.
  local function set(key, value)
    local h = header:gsub("![^\n]*" .. key:gsub("[%[%]]", "%%%0") .. " := [^\n]*\n", "")
    return (h:gsub("!END OF INTERFILE", key .. " := " .. value .. "\n!END OF INTERFILE"))
  end
  case("bytes per pixel 9e19", set("number of bytes per pixel", "9e19"), data,
    "'number of bytes per pixel' := 9e+19 is not an integer in 1..8")
  case("negative bytes per pixel", set("number of bytes per pixel", "-2"), data,
    "'number of bytes per pixel' := -2 is not an integer in 1..8")
  case("offset 1e86", set("data offset in bytes", "1e86"), data,
    "'data offset in bytes' := 1e+86 is not an integer in 0..")
  case("negative offset", set("data offset in bytes", "-16"), data,
    "'data offset in bytes' := -16 is not an integer in 0..")
  case("negative starting block", set("data starting block", "-1"), data,
    "'data starting block' := -1 is not an integer in 0..")
  case("matrix size 1e30", set("matrix size [1]", "1e30"), data,
    "'matrix size [1]' := 1e+30 is not an integer in 1..65536")
  case("negative matrix size [3]", set("matrix size [3]", "-4"), data,
    "'matrix size [3]' := -4 is not an integer in 1..65536")
  case("negative number of images", set("total number of images", "-3"), data,
    "'total number of images' := -3 is not an integer in 0..65536")
  case("fractional matrix size", set("matrix size [2]", "2.5"), data,
    "'matrix size [2]' := 2.5 is not an integer in 1..65536")
  case("no matrix size [2]", header:gsub("!matrix size %[2%] := 3\n", ""), data,
    "missing key 'matrix size [2]'")
end)

-- STIR (and the STIR-style fixture) writes the offset with an index, "data offset in
-- bytes[1]"; it used to be ignored, so the data was read from byte 0.
describe("load_interfile data offset in bytes[1]", function()
  it("reads the data from the offset given with the [1] index", function()
    local header = read_bytes(FIX .. "simind.h00")
    local p = tmpname(".h00")
    local dp = p:gsub("%.h00$", ".a00")
    write_bytes(p, (header:gsub("!data offset in bytes := 16", "data offset in bytes[1] := 16")
      :gsub("simind%.a00", (dp:match("[^/]+$")))))
    write_bytes(dp, read_bytes(FIX .. "simind.a00"))
    local t, info = fs.io.load_interfile(p)
    os.remove(p)
    os.remove(dp)
    assert.equal(16, info.data_offset)
    assert.tensor_near(t, vol(2, 3, 4), 0)
  end)
end)

describe("mutated files (seeded fuzzing): an error naming the file or a tensor, never a crash", function()
  local function mutate(g, s)
    local kind = g:randint(3)
    if kind == 1 then return s:sub(1, g:randint(0, #s)) end
    local b = {s:byte(1, -1)}
    for _ = 1, g:randint(1, 4) do
      local i = g:randint(1, math.min(#b, 400))
      b[i] = kind == 2 and (b[i] ~ (1 << g:randint(0, 7))) or g:randint(0, 255)
    end
    return string.char(table.unpack(b))
  end
  for _, case in ipairs({
    {"int16_scaled.nii", fs.io.load_nifti, ".nii"},
    {"int16_scaled.nii.gz", fs.io.load_nifti, ".nii.gz"},
    {"float32_bigendian.nii", fs.io.load_nifti, ".nii"},
    {"gray16.png", fs.image.read, ".png"},
    {"gray8_adam7.png", fs.image.read, ".png"},
    {"palette.png", fs.image.read, ".png"},
  }) do
    it(case[1], function()
      local good = read_bytes(FIX .. case[1])
      local g = fs.generator(#good)
      local p = tmpname(case[3])
      local errors = 0
      for _ = 1, 150 do
        write_bytes(p, mutate(g, good))
        local ok, res = pcall(case[2], p)
        if not ok then
          errors = errors + 1
          assert.is_string(res)
          assert.truthy(res:find(p, 1, true), res)
        else
          assert.is_true(res:numel() > 0)
        end
      end
      os.remove(p)
      assert.is_true(errors > 20, "mutations rejected: " .. errors)
    end)
  end

  it("Interfile headers", function()
    local header = read_bytes(FIX .. "stir.hv")
    local g = fs.generator(77)
    local p = tmpname(".hv")
    local dp = p:gsub("%.hv$", ".v")
    write_bytes(dp, read_bytes(FIX .. "stir.v"))
    local errors = 0
    for _ = 1, 150 do
      write_bytes(p, (mutate(g, header:gsub("stir%.v", (dp:match("[^/]+$"))))))
      local ok, res = pcall(fs.io.load_interfile, p)
      if not ok then
        errors = errors + 1
        assert.truthy(res:find(p, 1, true), res)
      end
    end
    os.remove(p)
    os.remove(dp)
    assert.is_true(errors > 20, "mutations rejected: " .. errors)
  end)
end)

describe("Interfile number formats and NIfTI dims", function()
  local function write_pair(fmt, bytes, order, values, packfmt)
    local h = tmpname(".hdr")
    local d = h:gsub("%.hdr$", ".dat")
    local f = assert(io.open(d, "wb"))
    for _, v in ipairs(values) do f:write(string.pack(packfmt, v)) end
    f:close()
    write_bytes(h, ("!INTERFILE :=\n!name of data file := %s\n!number format := %s\n"
      .. "!number of bytes per pixel := %d\nimagedata byte order := %s\n!matrix size [1] := 3\n"
      .. "!matrix size [2] := 2\n!END OF INTERFILE :=\n"):format(d:match("[^/]+$"), fmt, bytes, order))
    return h, d
  end
  for _, c in ipairs({
    {"short float", 4, "BIGENDIAN", ">f", {1.5, -2.25, 3, 4, 5, 6.125}},
    {"long float", 8, "LITTLEENDIAN", "<d", {1.5, -2.25, 3, 4, 5, 6.125}},
    {"float", 8, "BIGENDIAN", ">d", {1, 2, 3, 4, 5, 6}},
    {"signed integer", 4, "LITTLEENDIAN", "<i4", {-70000, 2, 3, 4, 5, 70000}},
    {"unsigned integer", 2, "BIGENDIAN", ">I2", {0, 1, 2, 65535, 4, 5}},
    {"signed integer", 1, "LITTLEENDIAN", "<i1", {-128, -1, 0, 1, 2, 127}},
  }) do
    it(("reads %s, %d bytes, %s"):format(c[1], c[2], c[3]), function()
      local h, d = write_pair(c[1], c[2], c[3], c[5], c[4])
      local t, info = fs.io.load_interfile(h)
      os.remove(h)
      os.remove(d)
      assert.same({2, 3}, t:shape())
      assert.tensor_near(t, {{c[5][1], c[5][2], c[5][3]}, {c[5][4], c[5][5], c[5][6]}}, 0)
      assert.equal(c[2], info.bytes_per_pixel)
    end)
  end

  it("keeps a 4D NIfTI as (t, z, y, x) and drops trailing sizes of 1", function()
    local p = tmpname(".nii")
    local t4 = fs.arange(0, 48):view(2, 3, 2, 4)
    fs.io.save_nifti(p, t4, {spacing_mm = {1000, 4, 3, 2}})
    local back, info = fs.io.load_nifti(p)
    assert.same({2, 3, 2, 4}, back:shape())
    assert.tensor_near(back, t4, 0)
    assert.same({1000, 4, 3, 2}, info.spacing_mm)
    fs.io.save_nifti(p, fs.arange(0, 8):view(1, 2, 4))
    assert.same({2, 4}, (fs.io.load_nifti(p)):shape())
    os.remove(p)
  end)
end)
