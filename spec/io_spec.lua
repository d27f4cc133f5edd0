-- spec/io_spec.lua: safetensors and .npy reading/writing (fs.io), bad-file errors.
-- Fixtures: spec/fixtures/io/ from tools/make_fixtures_arrays_weights.py (numpy, and a
-- safetensors writer made of json + struct). Every fixture array holds v[k] = k*0.25 - 1
-- (floats), k - 2 (signed ints) or k (unsigned), k = 0, 1, ... in C order.
local fs = require "fewshot"
local helper = require "helper"

local FIX = "spec/fixtures/io/"

local function expected(kind, shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for k = 0, n - 1 do
    v[#v + 1] = kind == "f" and k * 0.25 - 1 or kind == "i" and k - 2 or k
  end
  return fs.tensor(v):view(table.unpack(shape))
end

local tmpdir = os.tmpname()
os.remove(tmpdir)
os.execute("mkdir -p " .. tmpdir)
local function tmp(name) return tmpdir .. "/" .. name end

local function write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- A safetensors file from a header string and raw data.
local function safetensors_bytes(header, data)
  return string.pack("<I8", #header) .. header .. (data or "")
end

local function floats_le(t)
  local parts = {}
  for i, x in ipairs(t) do parts[i] = string.pack("<f", x) end
  return table.concat(parts)
end

teardown(function() os.execute("rm -rf " .. tmpdir) end)

describe("fs.io.load (safetensors)", function()
  it("reads F32, F16, BF16, F64, I64, I32 and U8 into float32 tensors, with metadata", function()
    local t, meta = fs.io.load(FIX .. "dtypes.safetensors")
    for _, name in ipairs{"f32", "f16", "bf16", "f64"} do
      assert.tensor_near(t[name], expected("f", {2, 3}), 0)
    end
    assert.tensor_near(t.i64, expected("i", {2, 3}), 0)
    assert.tensor_near(t.i32, expected("i", {2, 3}), 0)
    assert.tensor_near(t.u8, expected("u", {2, 3}), 0)
    assert.same("pt", meta.format)
    assert.same("fewshot fixture \u{e9}", meta.note)
  end)

  it("round-trips tensors and metadata through fs.io.save, including non-contiguous views", function()
    local a = fs.randn({3, 4}, {generator = fs.generator(1)})
    local b = fs.tensor{1, 2, 3}
    local s = fs.tensor(5.5)
    local at = a:transpose(1, 2)
    fs.io.save(tmp("rt.safetensors"), {a = a, ["b.weight"] = b, at = at, s = s},
               {metadata = {epoch = "3", who = "spec"}})
    local t, meta = fs.io.load(tmp("rt.safetensors"))
    assert.tensor_near(t.a, a, 0)
    assert.tensor_near(t["b.weight"], b, 0)
    assert.tensor_near(t.at, at, 0)
    assert.same({}, t.s:shape())
    assert.equal(5.5, t.s:item())
    assert.same({epoch = "3", who = "spec"}, meta)
  end)

  it("writes the header length, an 8-byte aligned JSON header and F32 data", function()
    fs.io.save(tmp("fmt.safetensors"), {x = fs.tensor{1, 2}})
    local bytes = read_file(tmp("fmt.safetensors"))
    local n = string.unpack("<I8", bytes)
    assert.equal(0, (8 + n) % 8)
    local header = bytes:sub(9, 8 + n)
    assert.truthy(header:find('"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}', 1, true))
    assert.equal(floats_le{1, 2}, bytes:sub(9 + n))
  end)

  it("leaves no temporary file behind and replaces an existing file", function()
    fs.io.save(tmp("rep.safetensors"), {x = fs.tensor{1}})
    fs.io.save(tmp("rep.safetensors"), {x = fs.tensor{2}})
    assert.equal(2, fs.io.load(tmp("rep.safetensors")).x:get(1))
    local p = io.popen("ls " .. tmpdir)
    local listing = p:read("a")
    p:close()
    assert.falsy(listing:find("tmp%-"))
  end)

  it("raises naming the file for a missing file", function()
    assert.has_error(function() fs.io.load(tmp("nope.safetensors")) end)
    local ok, err = pcall(fs.io.load, tmp("nope.safetensors"))
    assert.is_false(ok)
    assert.truthy(err:find("nope.safetensors", 1, true))
  end)

  local good_header = '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
  local bad = {
    {"a file shorter than 8 bytes", "abc", "only 3 bytes"},
    {"a header larger than the file", string.pack("<I8", 1000) .. "{}", "larger than the file"},
    {"a huge header length", string.pack("<I8", 0xffffffffffff) .. "{}", "larger than the file"},
    {"truncated data", safetensors_bytes(good_header, floats_le{1}), "outside the"},
    {"offsets that lie", safetensors_bytes('{"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
                                           floats_le{1, 2}), "outside the"},
    {"offsets not matching the shape",
     safetensors_bytes('{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', floats_le{1, 2}),
     "needs 12 bytes"},
    {"reversed offsets",
     safetensors_bytes('{"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', floats_le{1, 2}),
     "outside the"},
    {"bad JSON", safetensors_bytes('{"x":{"dtype":"F32",', ""), "bad safetensors header"},
    {"an unknown dtype",
     safetensors_bytes('{"x":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', floats_le{1, 2}),
     "unsupported dtype C64"},
    {"a missing shape", safetensors_bytes('{"x":{"dtype":"F32","data_offsets":[0,8]}}',
                                          floats_le{1, 2}), "lacks \"shape\""},
    {"a negative dimension",
     safetensors_bytes('{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', floats_le{1, 2}),
     "non%-negative integer"},
    {"an overflowing shape",
     safetensors_bytes('{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}',
                       floats_le{1, 2}), "impossible shape"},
  }
  for _, case in ipairs(bad) do
    it("raises a clear error for " .. case[1], function()
      local path = tmp("bad.safetensors")
      write_file(path, case[2])
      local ok, err = pcall(fs.io.load, path)
      assert.is_false(ok)
      assert.truthy(err:find("bad.safetensors", 1, true), err)
      assert.truthy(err:find(case[3]), err)
    end)
  end

  it("survives every truncation of a valid file with an error, never a crash", function()
    fs.io.save(tmp("full.safetensors"), {a = fs.tensor{1, 2, 3}, b = fs.tensor{{4, 5}}})
    local bytes = read_file(tmp("full.safetensors"))
    for cut = 0, #bytes - 1 do
      write_file(tmp("cut.safetensors"), bytes:sub(1, cut))
      local ok, err = pcall(fs.io.load, tmp("cut.safetensors"))
      assert.is_false(ok, "cut at " .. cut)
      assert.truthy(err:find("cut.safetensors", 1, true))
    end
  end)

  it("rejects non-tensor values and bad metadata in save", function()
    assert.has_error(function() fs.io.save(tmp("x.safetensors"), {a = 1}) end,
      "fs.io.save: value of 'a' must be a Tensor (got a number)")
    assert.has_error(function()
      fs.io.save(tmp("x.safetensors"), {a = fs.tensor{1}}, {metadata = {k = {}}})
    end, "fs.io.save: metadata keys and values must be strings")
  end)

  it("raises when the directory does not exist", function()
    local ok, err = pcall(fs.io.save, tmpdir .. "/no/such/dir/x.safetensors", {a = fs.tensor{1}})
    assert.is_false(ok)
    assert.truthy(err:find("x.safetensors", 1, true))
  end)
end)

describe("fs.io.load_npy / save_npy", function()
  it("reads float32/float64/float16 and big-endian float32", function()
    for _, f in ipairs{"f32", "f64", "f16", "f32_be"} do
      assert.tensor_near(fs.io.load_npy(FIX .. f .. ".npy"), expected("f", {2, 3}), 0)
    end
  end)

  it("reads int32, int64 and uint8 as float32", function()
    assert.tensor_near(fs.io.load_npy(FIX .. "i32.npy"), expected("i", {2, 3}), 0)
    assert.tensor_near(fs.io.load_npy(FIX .. "i64.npy"), expected("i", {2, 3}), 0)
    assert.tensor_near(fs.io.load_npy(FIX .. "u8.npy"), expected("u", {2, 3}), 0)
  end)

  it("reads Fortran-order arrays into C order", function()
    assert.tensor_near(fs.io.load_npy(FIX .. "f32_fortran.npy"), expected("f", {3, 4}), 0)
    assert.tensor_near(fs.io.load_npy(FIX .. "f32_3d.npy"), expected("f", {2, 3, 4}), 0)
  end)

  it("reads 0-d and 1-d arrays", function()
    local s = fs.io.load_npy(FIX .. "scalar.npy")
    assert.same({}, s:shape())
    assert.equal(3.5, s:item())
    assert.tensor_near(fs.io.load_npy(FIX .. "vec.npy"), expected("f", {5}), 0)
  end)

  it("writes what numpy writes for a float32 C-order array", function()
    fs.io.save_npy(tmp("f32.npy"), expected("f", {2, 3}))
    assert.equal(read_file(FIX .. "f32.npy"), read_file(tmp("f32.npy")))
    fs.io.save_npy(tmp("vec.npy"), expected("f", {5}))
    assert.equal(read_file(FIX .. "vec.npy"), read_file(tmp("vec.npy")))
    fs.io.save_npy(tmp("scalar.npy"), fs.tensor(3.5))
    assert.equal(read_file(FIX .. "scalar.npy"), read_file(tmp("scalar.npy")))
  end)

  it("round-trips a non-contiguous view", function()
    local a = fs.randn({4, 5}, {generator = fs.generator(2)}):transpose(1, 2)
    fs.io.save_npy(tmp("v.npy"), a)
    assert.tensor_near(fs.io.load_npy(tmp("v.npy")), a, 0)
  end)

  local good = read_file(FIX .. "f32.npy")
  local bad = {
    {"a missing magic string", "hello world, not numpy", "not a .npy file"},
    {"truncated data", good:sub(1, #good - 4), "truncated file"},
    {"a truncated header", good:sub(1, 40), "larger than the file"},
    {"an unsupported dtype", (good:gsub("<f4", "<c8")), "unsupported dtype '<c8'"},
    {"a header without a shape", (good:gsub("'shape': %(2, 3%)", "'shxpe': (2, 3)")), "unknown key"},
  }
  for _, case in ipairs(bad) do
    it("raises a clear error for " .. case[1], function()
      write_file(tmp("bad.npy"), case[2])
      local ok, err = pcall(fs.io.load_npy, tmp("bad.npy"))
      assert.is_false(ok)
      assert.truthy(err:find("bad.npy", 1, true), err)
      assert.truthy(err:find(case[3]), err)
    end)
  end

  it("survives every truncation of a valid file", function()
    for cut = 0, #good - 1 do
      write_file(tmp("cut.npy"), good:sub(1, cut))
      assert.is_false(pcall(fs.io.load_npy, tmp("cut.npy")), "cut at " .. cut)
    end
  end)
end)

-- A directory used to pass as a file of 2^63 - 1 bytes ("out of memory reading 'DIR'").
describe("every reader on a directory and on a missing path", function()
  local readers = {
    {"fs.image.read", fs.image.read}, {"fs.io.load_nifti", fs.io.load_nifti},
    {"fs.io.load_interfile", fs.io.load_interfile}, {"fs.io.load", fs.io.load},
    {"fs.io.load_npy", fs.io.load_npy},
  }
  for _, r in ipairs(readers) do
    it(r[1] .. " says the path is a directory", function()
      local ok, err = pcall(r[2], tmpdir)
      assert.is_false(ok)
      assert.truthy(err:find(("'%s' is a directory"):format(tmpdir), 1, true), err)
    end)
    it(r[1] .. " says the path does not exist", function()
      local ok, err = pcall(r[2], tmp("missing.file"))
      assert.is_false(ok)
      assert.truthy(err:find(("cannot open '%s': No such file or directory"):format(
        tmp("missing.file")), 1, true), err)
    end)
  end

  it("fs.io.load_interfile says its data file is a directory", function()
    write_file(tmp("dirdata.hv"), "!INTERFILE :=\n!name of data file := .\n"
      .. "!matrix size [1] := 2\n!matrix size [2] := 2\n!END OF INTERFILE :=\n")
    local ok, err = pcall(fs.io.load_interfile, tmp("dirdata.hv"))
    assert.is_false(ok)
    assert.truthy(err:find(("'%s/.' is a directory"):format(tmpdir), 1, true), err)
  end)
end)

-- A size from a file header is checked for int64 and byte-size overflow before anything is
-- allocated; a zero-sized dim used to let the others overflow the strides unseen.
describe("sizes from file headers that overflow", function()
  local big = "281474976710656" -- 2^48, the largest dim npy accepts
  local function npy(shape)
    local dict = ("{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"):format(shape)
    dict = dict .. string.rep(" ", 63 - (10 + #dict) % 64) .. "\n"
    return "\x93NUMPY\1\0" .. string.pack("<I2", #dict) .. dict
  end
  for _, shape in ipairs{("(%s, %s)"):format(big, big), ("(0, %s, %s)"):format(big, big)} do
    it("npy shape " .. shape, function()
      write_file(tmp("big.npy"), npy(shape))
      local ok, err = pcall(fs.io.load_npy, tmp("big.npy"))
      assert.is_false(ok)
      assert.truthy(err:find(("fs.io.load_npy: '%s': shape %s of 4-byte elements is too "
        .. "large (more than 2^62 bytes)"):format(tmp("big.npy"), shape), 1, true), err)
    end)
  end

  it("safetensors shape with a zero dim beside two of 2^62", function()
    local h = '{"x":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],'
      .. '"data_offsets":[0,0]}}'
    write_file(tmp("big.safetensors"), safetensors_bytes(h))
    local ok, err = pcall(fs.io.load, tmp("big.safetensors"))
    assert.is_false(ok)
    assert.truthy(err:find(("fs.io.load: '%s': tensor 'x' has an impossible shape (0, "
      .. "4611686018427387904, 4611686018427387904) of dtype F32: more than 2^62 bytes")
      :format(tmp("big.safetensors")), 1, true), err)
  end)

  it("NIfTI dims whose voxels exceed 2 GiB name the dims", function()
    local good = read_file(FIX .. "int16_scaled.nii")
    -- dim[0] = 3, dims 32767 x 32767 x 2 of int16: 4.3e9 bytes
    local patched = good:sub(1, 40) .. string.pack("<i2i2i2i2", 3, 32767, 32767, 2)
      .. good:sub(49)
    write_file(tmp("big.nii"), patched)
    local ok, err = pcall(fs.io.load_nifti, tmp("big.nii"))
    assert.is_false(ok)
    assert.truthy(err:find(("load_nifti: %s: dims (32767, 32767, 2) of 2-byte voxels are too "
      .. "large (more than 2147483648 bytes)"):format(tmp("big.nii")), 1, true), err)
  end)

  -- A PNG whose IHDR (with a valid CRC) claims width x height pixels.
  local function crc32(s)
    local c = 0xffffffff
    for i = 1, #s do
      c = c ~ s:byte(i)
      for _ = 1, 8 do c = (c & 1 == 1) and (0xedb88320 ~ (c >> 1)) or (c >> 1) end
    end
    return c ~ 0xffffffff
  end
  local function png_header(w, h)
    local ihdr = "IHDR" .. string.pack(">I4I4BBBBB", w, h, 8, 0, 0, 0, 0)
    return "\137PNG\r\n\26\n" .. string.pack(">I4", 13) .. ihdr .. string.pack(">I4", crc32(ihdr))
  end
  for _, wh in ipairs{{20000, 20000}, {100000, 3}} do
    it(("PNG of %d x %d pixels"):format(wh[1], wh[2]), function()
      write_file(tmp("big.png"), png_header(wh[1], wh[2]))
      local ok, err = pcall(fs.image.read, tmp("big.png"))
      assert.is_false(ok)
      assert.truthy(err:find(("image.read: %s: %d x %d pixels is too large (at most 65536 a "
        .. "side and 67108864 in all)")
        :format(tmp("big.png"), wh[1], wh[2]), 1, true), err)
    end)
  end
end)
