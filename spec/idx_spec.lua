-- fs.io.load_idx: IDX files (MNIST's format), plain and gzip, every data type, the header
-- checked against the data; and Debian's Fashion-MNIST read against values numpy reads.
local fs = require "fewshot"

local function idx_bytes(type_code, sizes, data)
  local parts = {string.char(0, 0, type_code, #sizes)}
  for _, s in ipairs(sizes) do parts[#parts + 1] = string.pack(">I4", s) end
  parts[#parts + 1] = data
  return table.concat(parts)
end

local function write(bytes, gz)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  if gz then
    assert(os.execute("gzip -c '" .. path .. "' > '" .. path .. ".gz'"))
    os.remove(path)
    path = path .. ".gz"
  end
  return path
end

local function load(bytes, gz)
  local path = write(bytes, gz)
  local ok, t = pcall(fs.io.load_idx, path)
  os.remove(path)
  if not ok then error(t, 0) end
  return t
end

describe("load_idx", function()
  it("reads every data type, big-endian, plain and gzip", function()
    for _, gz in ipairs({false, true}) do
      local u8 = load(idx_bytes(0x08, {2, 3}, string.char(0, 1, 2, 3, 254, 255)), gz)
      assert.same({2, 3}, u8:shape())
      assert.same({{0, 1, 2}, {3, 254, 255}}, u8:totable())
      assert.same({-1, 127, -128}, load(idx_bytes(0x09, {3}, string.char(255, 127, 128)), gz):totable())
      assert.same({-2, 300}, load(idx_bytes(0x0B, {2}, string.pack(">i2>i2", -2, 300)), gz):totable())
      assert.same({-70000, 5}, load(idx_bytes(0x0C, {2}, string.pack(">i4>i4", -70000, 5)), gz):totable())
      assert.same({1.5, -0.25}, load(idx_bytes(0x0D, {2}, string.pack(">f>f", 1.5, -0.25)), gz):totable())
      assert.same({2.5, 1e10}, load(idx_bytes(0x0E, {2}, string.pack(">d>d", 2.5, 1e10)), gz):totable())
    end
  end)

  it("checks the header against the data", function()
    assert.has_error(function() load(idx_bytes(0x08, {2, 3}, string.char(1, 2, 3, 4, 5))) end)
    local ok, err = pcall(load, idx_bytes(0x08, {2, 3}, string.char(1, 2, 3, 4, 5)))
    assert.is_false(ok)
    assert.matches("the header's shape (2, 3) of 1-byte elements needs 6 bytes of data but the "
      .. "file has 5 (truncated)", err, 1, true)
    ok, err = pcall(load, idx_bytes(0x08, {2}, string.char(1, 2, 3)))
    assert.matches("needs 2 bytes of data but the file has 3 (trailing bytes)", err, 1, true)
    ok, err = pcall(load, idx_bytes(0x0C, {4294967295, 4294967295, 4294967295}, ""))
    assert.matches("shape (4294967295, 4294967295, 4294967295) of 4-byte elements is too large", err, 1, true)
    ok, err = pcall(load, "\1\0\8\1" .. string.pack(">I4", 1) .. "x")
    assert.matches("not an IDX file (the first two bytes are 1 0, not 0 0)", err, 1, true)
    ok, err = pcall(load, idx_bytes(0x0A, {1}, "x"))
    assert.matches("unknown IDX data type 0x0A", err, 1, true)
    ok, err = pcall(load, string.char(0, 0, 8, 0))
    assert.matches("0 dimensions (1 to 8 are supported)", err, 1, true)
    ok, err = pcall(load, string.char(0, 0, 8, 3, 0, 0))
    assert.matches("the header needs 16 bytes but the file has 6", err, 1, true)
    ok, err = pcall(load, "\31\139\8\0garbage")
    assert.matches("corrupt or truncated gzip data", err, 1, true)
  end)

  it("names a missing file and a directory", function()
    local ok, err = pcall(fs.io.load_idx, "/nonexistent.idx")
    assert.is_false(ok)
    assert.matches("read_idx: cannot open '/nonexistent.idx'", err, 1, true)
    ok, err = pcall(fs.io.load_idx, "/tmp")
    assert.matches("'/tmp' is a directory", err, 1, true)
  end)

  local dir = "/usr/share/datasets/fashion-mnist/"
  local have = io.open(dir .. "t10k-labels-idx1-ubyte.gz", "rb")
  if have then have:close() end
  local test = have and it or pending
  test("reads Debian's Fashion-MNIST as numpy does", function()
    local labels = fs.io.load_idx(dir .. "t10k-labels-idx1-ubyte.gz")
    assert.same({10000}, labels:shape())
    assert.equal(45000, labels:sum():item()) -- numpy: np.frombuffer(data[8:], np.uint8).sum()
    assert.same({9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, labels:narrow(1, 1, 10):totable())
    local images = fs.io.load_idx(dir .. "t10k-images-idx3-ubyte.gz")
    assert.same({10000, 28, 28}, images:shape())
    assert.equal(255, images:max():item())
    -- numpy: a[0].sum(), a[9999].sum(), a[0, 14, 10:16]
    assert.equal(33456, images:select(1, 1):sum():item())
    assert.equal(24390, images:select(1, 10000):sum():item())
    assert.same({0, 0, 98, 136, 110, 109}, images:select(1, 1):select(1, 15):narrow(1, 11, 6):totable())
  end)
end)

describe("data.idx", function()
  it("is fs.io.load_idx from the data module", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(string.char(0, 0, 8, 1) .. string.pack(">I4", 3) .. string.char(7, 8, 9))
    f:close()
    assert.same({7, 8, 9}, fs.data.idx(path):totable())
    os.remove(path)
  end)
end)
