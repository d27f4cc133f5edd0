-- Bad files through the public API: each case is a file that crashed, leaked or misbehaved
-- in a reader (found by the libFuzzer harnesses in fuzz/, or by reading the code beside them),
-- kept small under spec/fixtures/bad/ or built here, and the clear error it must now give.
local fs = require "fewshot"
local helper = require "helper"
local tmpname, read_bytes, write_bytes = helper.tmpname, helper.read_bytes, helper.write_bytes

local BAD = "spec/fixtures/bad/"

-- Copies the bad file to a temporary path (with the extension the reader expects), calls
-- read(path) and expects an error that names that path and holds each reason.
local function fails_with(read, fixture, ext, ...)
  local p = tmpname(ext)
  write_bytes(p, read_bytes(BAD .. fixture))
  local ok, err = pcall(read, p)
  os.remove(p)
  assert.is_false(ok, "the bad file was read")
  assert.truthy(tostring(err):find(p, 1, true), err)
  for _, reason in ipairs({...}) do
    assert.truthy(tostring(err):find(reason, 1, true), err)
  end
  return err
end

describe("bad Interfile headers", function()
  it("a 'name of data file' longer than the reader keeps is an error, not cut to another file",
    function()
      -- the first 1023 bytes of the name are a file that exists; the name itself is not
      local data = tmpname(".v")
      write_bytes(data, string.rep("\0", 4 * 6))
      local cut = string.rep("/", 1023 - #data) .. data
      local h = tmpname(".hv")
      write_bytes(h, "!INTERFILE :=\nname of data file := " .. cut .. "X\n" ..
        "!number format := float\n!number of bytes per pixel := 4\n" ..
        "imagedata byte order := LITTLEENDIAN\n!matrix size [1] := 3\n!matrix size [2] := 2\n")
      local ok, err = pcall(fs.io.load_interfile, h)
      os.remove(h)
      os.remove(data)
      assert.is_false(ok, "read " .. data .. " for a longer name")
      assert.truthy(err:find(h, 1, true), err)
      assert.truthy(err:find("'name of data file' is 1024 bytes long, at most 1023 are read (line 2)",
        1, true), err)
    end)
end)


describe("bad .npy files", function()
  -- the dtype check read descr[2..] past the string's end (stack bytes never written; only
  -- MemorySanitizer sees it, so this spec passed before the fix too)
  it("a one-character descr is an unsupported dtype", function()
    fails_with(fs.io.load_npy, "npy_descr_one_char.npy", ".npy", "unsupported dtype '<'")
  end)
end)

describe("bad PNG files", function()
  -- fuzz_png: an 80-byte file whose sPLT chunk says 0x50000017 bytes; libpng allocated the
  -- 1.25 GB before finding the file ends (out of memory under -malloc_limit_mb=1024)
  it("a chunk longer than the rest of the file is an error before libpng allocates it", function()
    fails_with(fs.image.read, "png_splt_length.png", ".png", "corrupt or truncated PNG (chunk "
      .. "'sPLT' at byte 33 says 1342177303 bytes of data, the file has 39 after its header)")
  end)
end)
