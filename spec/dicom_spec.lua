-- DICOM through GDCM: files nobody here wrote (pydicom's test set, MIT), compared value by value
-- with what pydicom reads (spec/fixtures/dicom/expected.lua, made by tools/make_fixtures_dicom.py),
-- a multi-frame NM volume written with pydicom, refused files, and the options.
local fs = require "fewshot"
local helper = require "helper"

local FIX = "spec/fixtures/dicom/"
local PYDICOM = "/usr/lib/python3/dist-packages/pydicom/data/test_files/"
local expected = dofile(FIX .. "expected.lua")

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local raises_with = helper.raises_with

local function near(a, b, tol)
  return math.abs(a - b) <= tol * (1 + math.abs(b))
end

-- every check of one file against pydicom's values
local function compare(path, e)
  local t, info = fs.io.load_dicom(path)
  assert.same(e.shape, t:shape())
  local tol = e.tolerance
  local values = helper.values(t)
  if tol then
    -- lossy JPEG: another decoder; the values agree to a few grey levels
    for i, v in pairs(e.at) do
      assert.truthy(math.abs(values[i] - v) <= tol, ("%s [%d]: %g vs pydicom %g"):format(path, i, values[i], v))
    end
    assert.truthy(math.abs(t:sum():item() / #values - e.sum / #values) <= tol / 4, path .. ": mean")
  else
    for i, v in pairs(e.at) do
      assert.truthy(near(values[i], v, 1e-6), ("%s [%d]: %g vs pydicom %g"):format(path, i, values[i], v))
    end
    local s = 0
    for _, v in ipairs(values) do s = s + v end
    assert.truthy(near(s, e.sum, 1e-9), ("%s: sum %.17g vs pydicom %.17g"):format(path, s, e.sum))
    assert.equal(e.min, t:min():item())
    assert.equal(e.max, t:max():item())
  end
  assert.equal(e.modality, info.modality)
  assert.equal(e.transfer_syntax_uid, info.transfer_syntax_uid)
  assert.equal(e.rescale_slope, info.rescale_slope)
  assert.equal(e.rescale_intercept, info.rescale_intercept)
  if e.pixel_spacing_mm then
    assert.same(e.pixel_spacing_mm, info.pixel_spacing_mm)
    assert.same({e.pixel_spacing_mm[1], e.pixel_spacing_mm[2]}, {info.spacing_mm[2], info.spacing_mm[3]})
  end
  if e.slice_spacing_mm then assert.equal(e.slice_spacing_mm, info.slice_spacing_mm) end
  if e.image_position then assert.same(e.image_position, info.image_position) end
  if e.image_orientation then assert.same(e.image_orientation, info.image_orientation) end
  local frames = e.shape[1]
  assert.equal(frames, info.frames)
  assert.equal(e.shape[#e.shape - 1], info.rows)
  assert.equal(e.shape[#e.shape], info.columns)
end

describe("load_dicom against pydicom (committed fixtures)", function()
  local names = {}
  for name, e in pairs(expected.files) do
    if e.committed then names[#names + 1] = name end
  end
  table.sort(names)
  it("covers the transfer syntaxes", function()
    local seen = {}
    for _, n in ipairs(names) do seen[expected.files[n].transfer_syntax_uid] = true end
    for _, uid in ipairs({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                          "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"}) do
      assert.truthy(seen[uid], uid)
    end
    assert.truthy(#names >= 8)
  end)
  for _, name in ipairs(names) do
    it(name, function() compare(FIX .. name, expected.files[name]) end)
  end
  for name, other in pairs(expected.same_as) do
    it(name .. " (not decoded by pydicom here) equals " .. other, function()
      local a, ia = fs.io.load_dicom(FIX .. name)
      local b = fs.io.load_dicom(FIX .. other)
      assert.tensor_near(a, b, 0)
      assert.equal("1.2.840.10008.1.2.4.80", ia.transfer_syntax_uid)
      assert.equal("JPEG-LS Lossless Image Compression", ia.transfer_syntax)
    end)
  end
end)

describe("load_dicom against pydicom (pydicom's own folder)", function()
  local have = exists(PYDICOM .. "MR_small.dcm")
  local names = {}
  for name, e in pairs(expected.files) do
    if not e.committed then names[#names + 1] = name end
  end
  table.sort(names)
  it("reads the larger set when python3-pydicom is installed", function()
    if not have then return pending("python3-pydicom is not installed") end
    local n = 0
    for _, name in ipairs(names) do
      compare(PYDICOM .. name, expected.files[name])
      n = n + 1
    end
    assert.truthy(n >= 20, n)
    for name, other in pairs(expected.same_as_larger) do
      local a, ia = fs.io.load_dicom(PYDICOM .. name)
      assert.tensor_near(a, fs.io.load_dicom(PYDICOM .. other), 0)
      assert.equal("1.2.840.10008.1.2.4.70", ia.transfer_syntax_uid)
    end
  end)
  it("refuses its broken and unsupported files with the reason", function()
    if not have then return pending("python3-pydicom is not installed") end
    for name, r in pairs(expected.refused) do
      if not r.committed then
        raises_with(function() fs.io.load_dicom(PYDICOM .. name) end, PYDICOM .. name, r.says)
      end
    end
  end)
end)

describe("load_dicom: NM multi-frame volume written by pydicom", function()
  local path = FIX .. "nm_tomo.dcm"
  it("reads values, spacing, orientation and the NM attributes", function()
    local v, info = fs.io.load_dicom(path)
    assert.same({8, 12, 10}, v:shape())
    assert.tensor_near(v, fs.io.load_npy(FIX .. "nm_tomo.npy"), 0)
    assert.same({3.5, 4.2, 4.2}, info.spacing_mm)
    assert.equal("slice_spacing", info.slice_spacing_source)
    assert.same({-21.0, -25.2, 30.0}, info.image_position)
    assert.same({1, 0, 0, 0, 1, 0}, info.image_orientation)
    assert.same({0, 0, 1}, info.slice_normal)
    assert.equal("NM", info.modality)
    assert.equal("ORIGINAL\\PRIMARY\\RECON TOMO\\EMISSION", info.image_type)
    assert.equal("CNTS", info.units)
    assert.equal(8, info.number_of_slices)
    assert.equal(1, #info.energy_windows)
    assert.equal("Tc99m", info.energy_windows[1].name)
    assert.equal(126.45, info.energy_windows[1].lower_kev)
    assert.equal(154.55, info.energy_windows[1].upper_kev)
    assert.equal(1, info.number_of_detectors)
    assert.equal("LEHR", info.detectors[1].collimator)
    assert.equal("PARA", info.detectors[1].collimator_type)
    assert.equal(250, info.detectors[1].radial_position_mm)
    assert.equal("Tc99m sestamibi", info.radiopharmaceutical)
    assert.equal("PHANTOM01", info.patient_id)
    assert.equal(3, info.series_number)
    assert.equal("SPECT phantom recon", info.series_description)
    assert.truthy(info.series_uid:match("^[%d.]+$"))
  end)
  it("copies no personal data beyond the patient ID", function()
    local _, info = fs.io.load_dicom(path)
    local function walk(t)
      for k, val in pairs(t) do
        assert.is_nil(tostring(k):lower():find("name", 1, true) == 1 and k ~= "name" or nil)
        if type(val) == "table" then walk(val)
        else assert.is_nil(tostring(val):find("Phantom^Synthetic", 1, true), k) end
      end
    end
    walk(info)
    assert.is_nil(info.patient_name)
  end)
  it("frames= picks frames (1-based, in the order given)", function()
    local all = fs.io.load_dicom(path)
    local some, info = fs.io.load_dicom(path, {frames = {3, 1}})
    assert.same({2, 12, 10}, some:shape())
    assert.tensor_near(some:select(1, 1), all:select(1, 3), 0)
    assert.tensor_near(some:select(1, 2), all:select(1, 1), 0)
    assert.equal(8, info.frames)
    local one = fs.io.load_dicom(path, {frames = 8})
    assert.tensor_near(one:select(1, 1), all:select(1, 8), 0)
    assert.same({8, 12, 10}, fs.io.load_dicom(path, {}):shape())
  end)
  it("rejects bad frames and unknown options", function()
    raises_with(function() fs.io.load_dicom(path, {frames = 9}) end, path, "frame 9 out of range: the file has 8 frame(s)")
    raises_with(function() fs.io.load_dicom(path, {frames = {0}}) end, "frame number >= 1")
    raises_with(function() fs.io.load_dicom(path, {frames = {}}) end, "must list 1 to")
    raises_with(function() fs.io.load_dicom(path, {frames = "all"}) end, "option 'frames' must be a frame number")
    raises_with(function() fs.io.load_dicom(path, {frame = 1}) end, "load_dicom: unknown option 'frame' (did you mean 'frames'?)")
  end)
  it("dicom_info reads the attributes without the pixels", function()
    local info = fs.io.dicom_info(path)
    assert.equal(8, info.frames)
    assert.same({3.5, 4.2, 4.2}, info.spacing_mm)
    raises_with(function() fs.io.dicom_info(path, {}) end, "dicom_info: takes one argument")
  end)
end)

describe("load_dicom refuses what it cannot read, naming the file", function()
  for name, r in pairs(expected.refused) do
    if r.committed then
      it(name, function()
        raises_with(function() fs.io.load_dicom(FIX .. name) end, "load_dicom: " .. FIX .. name, r.says)
      end)
    end
  end
  it("names the unsupported transfer syntax", function()
    raises_with(function() fs.io.load_dicom(FIX .. "mpeg2.dcm") end, "MPEG2 Main Profile")
  end)
  it("a missing file, a folder, a non-DICOM file, a truncated copy", function()
    raises_with(function() fs.io.load_dicom(FIX .. "nope.dcm") end, FIX .. "nope.dcm")
    raises_with(function() fs.io.load_dicom("spec/fixtures") end, "is a directory")
    raises_with(function() fs.io.load_dicom(FIX .. "expected.lua") end, FIX .. "expected.lua", "not a DICOM file")
    local dir = helper.tmpdir()
    local bytes = helper.read_bytes(FIX .. "nm_tomo.dcm")
    for _, keep in ipairs({100, 140, 600, #bytes - 1}) do
      local p = dir .. "/cut" .. keep .. ".dcm"
      helper.write_bytes(p, bytes:sub(1, keep))
      local ok, err = pcall(fs.io.load_dicom, p)
      assert.is_false(ok, keep)
      assert.truthy(tostring(err):find(p, 1, true), err)
    end
    helper.write_bytes(dir .. "/empty.dcm", "")
    raises_with(function() fs.io.load_dicom(dir .. "/empty.dcm") end, "not a DICOM file (0 bytes)")
  end)
end)

describe("load_dicom_series", function()
  local function expected_volume(zs)
    local t = {}
    for k, z in ipairs(zs) do
      t[k] = {}
      for y = 0, 5 do
        t[k][y + 1] = {}
        for x = 0, 4 do t[k][y + 1][x + 1] = 1000 + 100 * z + 10 * y + x - 1024 end
      end
    end
    return t
  end
  it("orders the slices by position along the normal, not by name or instance number", function()
    local vol, info = fs.io.load_dicom_series(FIX .. "series")
    assert.same({4, 6, 5}, vol:shape())
    assert.tensor_near(vol, expected_volume({0, 1, 2, 3}), 0)
    assert.same({2.5, 0.8, 0.7}, info.spacing_mm)
    assert.equal("positions", info.slice_spacing_source)
    assert.same({FIX .. "series/IM0009", FIX .. "series/IM0008", FIX .. "series/IM0007",
                 FIX .. "series/IM0006"}, info.files)
    assert.same({0, 2.5, 5, 7.5}, info.slice_positions_mm)
    assert.equal("CT", info.modality)
    assert.equal(-1024, info.rescale_intercept)
  end)
  it("follows an oblique normal", function()
    local vol, info = fs.io.load_dicom_series(FIX .. "tilted")
    assert.tensor_near(vol, expected_volume({0, 1, 2}), 0)
    assert.truthy(math.abs(info.spacing_mm[1] - 3) < 1e-4, info.spacing_mm[1])
    assert.truthy(math.abs(info.slice_normal[2] + math.sin(0.3)) < 1e-4)
  end)
  it("lists the series of a mixed folder; series= picks one", function()
    local err = raises_with(function() fs.io.load_dicom_series(FIX .. "mixed") end,
      "load_dicom_series: " .. FIX .. "mixed: the folder holds 2 series; pass series=UID",
      "CT #7 'CT 2.5 mm' (4 files)", "CT #8 'scout' (2 files)")
    local uid = err:match("\n  ([%d.]+)  CT #7")
    assert.truthy(uid, err)
    local vol = fs.io.load_dicom_series(FIX .. "mixed", {series = uid})
    assert.tensor_near(vol, expected_volume({0, 1, 2, 3}), 0)
    raises_with(function() fs.io.load_dicom_series(FIX .. "mixed", {series = "1.2.3"}) end, "no series 1.2.3")
  end)
  it("refuses a gap, an empty folder, bad options", function()
    raises_with(function() fs.io.load_dicom_series(FIX .. "gap") end, FIX .. "gap", "unequal slice spacing: 5 mm", "first step is 2.5 mm")
    local dir = helper.tmpdir()
    raises_with(function() fs.io.load_dicom_series(dir) end, "no DICOM files")
    raises_with(function() fs.io.load_dicom_series(dir .. "/nope") end, "cannot list the folder")
    raises_with(function() fs.io.load_dicom_series(FIX .. "series", {serie = "x"}) end, "unknown option 'serie' (did you mean 'series'?)")
    raises_with(function() fs.io.load_dicom_series(FIX .. "series", {tolerance_mm = -1}) end, "tolerance_mm")
    local v = fs.io.load_dicom_series(FIX .. "series", {tolerance_mm = 0.5})
    assert.same({4, 6, 5}, v:shape())
  end)
  it("reads a single multi-frame file as its volume", function()
    local dir = helper.tmpdir()
    helper.write_bytes(dir .. "/nm.dcm", helper.read_bytes(FIX .. "nm_tomo.dcm"))
    local v, info = fs.io.load_dicom_series(dir)
    assert.same({8, 12, 10}, v:shape())
    assert.same({dir .. "/nm.dcm"}, info.files)
  end)
end)
