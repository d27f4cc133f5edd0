-- fs.data.mps on a synthetic copy of PhysioNet's myocardial perfusion database layout
-- (spec/fixtures/mps, tools/make_fixtures_mps.sh: phantom volumes written as NM DICOM by
-- pydicom, LV wall masks as NIfTI), and fs.data.folder with DICOM images beside PNG.
local fs = require "fewshot"
local helper = require "helper"

local ROOT = "spec/fixtures/mps"
local LEVELS = {0.05, 0.35, 0.65, 0.95} -- what tools/export_phantom_volumes.lua used (4 slices)

local raises_with = helper.raises_with

local function copy_tree(src, dst)
  assert(os.execute(("cp -r '%s' '%s'"):format(src, dst)))
end

describe("data.mps", function()
  local items = fs.data.mps(ROOT)
  it("reads every masked slice of the patients with a mask, in the folder item form", function()
    assert.equal(8, #items) -- 2 patients x 4 slices; MPS003 has no mask
    assert.same({"MPS003"}, items.skipped)
    local it1 = items[1]
    assert.equal("MPS001_z01", it1.name)
    assert.equal("MPS001", it1.patient_id)
    assert.equal(1, it1.slice)
    assert.same({32, 32}, it1.image:shape())
    assert.same({32, 32}, it1.labels:shape())
    assert.equal(6.4, it1.pixel_mm)
    assert.same({6.4, 6.4, 6.4}, it1.spacing_mm)
    assert.equal("slice_thickness", it1.dicom.slice_spacing_source)
    assert.equal("NM", it1.dicom.modality)
    assert.equal("MPH_27_45", it1.dicom.detectors[1].collimator)
    assert.equal(126.45, it1.dicom.energy_windows[1].lower_kev)
    assert.equal(1, it1.dicom.pixel_representation)
    assert.equal("F", it1.sex)
    assert.equal(47, it1.age)
    assert.equal(23.5, it1.bmi)
    assert.same({}, it1.landmarks)
    assert.equal(ROOT .. "/MPS001/MPS001_NM.dcm", it1.path)
  end)
  it("images, walls and cavities agree with the phantom they were made from", function()
    for _, item in ipairs(items) do
      local p = tonumber(item.patient_id:match("%d+"))
      local sim = fs.spect.simulate{seed = p, view = "short_axis", level = LEVELS[item.slice],
                                    matrix = 32, pixel_mm = 6.4, noise_seed = 100 * p + item.slice}
      -- stored as int16 with slope max / 32000: within half a step of the counts
      local step = item.dicom.rescale_slope
      assert.truthy(step > 0 and step < 0.01, step)
      local d = item.image:sub(sim.image):abs():max():item()
      assert.truthy(d <= step / 2 + 1e-4, ("%s: %g vs step %g"):format(item.name, d, step))
      assert.tensor_near(item.masks.myocardium, sim.labels:eq(2), 0)
      -- the cavity the wall encloses is the phantom's LV blood pool, except at the base,
      -- where the wall ring is open (the valve plane) and nothing is enclosed
      local truth = sim.labels:eq(1)
      if item.masks.ventricle:sum():item() > 0 then
        assert.tensor_near(item.masks.ventricle, truth, 0)
      else
        assert.equal(1, item.slice, item.name)
      end
      assert.tensor_near(item.labels, item.masks.myocardium:mul(2):add(item.masks.ventricle), 0)
    end
  end)
  it("feeds fs.data.tissues as the phantom's items do", function()
    local samples = fs.data.tissues(items, {classes = {"ventricle", "myocardium"}, input = "masked", size = 16})
    local per = {}
    for _, s in ipairs(samples) do per[s.class] = (per[s.class] or 0) + 1 end
    assert.equal(8, per.myocardium)
    assert.equal(6, per.ventricle) -- the two base slices have no cavity
    assert.same({1, 16, 16}, samples[1].image:shape())
  end)
  it("options: slices, patients, min_mask_pixels, cavity, mask_flip, mask_pattern", function()
    local all = fs.data.mps(ROOT, {slices = "all"})
    assert.equal(12, #all)
    assert.is_false(all[12].has_mask)
    assert.equal(0, all[12].masks.myocardium:sum():item())
    local one = fs.data.mps(ROOT, {patients = {"MPS002"}, cavity = false})
    assert.equal(4, #one)
    assert.is_nil(one[1].masks.ventricle)
    local big = fs.data.mps(ROOT, {patients = {"MPS001"}, min_mask_pixels = 25})
    for _, it in ipairs(big) do assert.truthy(it.masks.myocardium:sum():item() >= 25) end
    assert.truthy(#big < 4)
    local flipped = fs.data.mps(ROOT, {patients = {"MPS001"}, mask_flip = {"x"}})
    local plain = fs.data.mps(ROOT, {patients = {"MPS001"}})
    local m = plain[2].masks.myocardium
    local idx = {}
    for i = 1, 32 do idx[i] = 33 - i end
    assert.tensor_near(flipped[2].masks.myocardium, m:index_select(2, idx), 0)
    assert.equal(0, #fs.data.mps(ROOT, {patients = {"MPS001"}, mask_pattern = "nothing"}))
    raises_with(function() fs.data.mps(ROOT, {slice = "all"}) end, "data.mps: unknown option 'slice' (did you mean 'slices'?)")
    raises_with(function() fs.data.mps(ROOT, {slices = "some"}) end, "option 'slices' must be one of mask, all")
    raises_with(function() fs.data.mps(ROOT, {mask_flip = {"w"}}) end, "mask_flip")
  end)
  it("errors name the folder or file", function()
    raises_with(function() fs.data.mps(ROOT .. "/nope") end, ROOT .. "/nope", "cannot list the folder")
    raises_with(function() fs.data.mps(ROOT, {patients = {"MPS009"}}) end, ROOT .. "/MPS009", "missing")
    local dir = helper.tmpdir()
    copy_tree(ROOT, dir .. "/root")
    helper.write_bytes(dir .. "/root/MPS002/MPS002_mask.nii.gz", "broken")
    raises_with(function() fs.data.mps(dir .. "/root") end, dir .. "/root/MPS002/MPS002_mask.nii.gz", "cannot read the mask")
    helper.write_bytes(dir .. "/root/MPS002/MPS002_mask.nii.gz", helper.read_bytes(ROOT .. "/MPS001/MPS001_mask.nii.gz"))
    helper.write_bytes(dir .. "/root/MPS002/extra_seg.nii.gz", helper.read_bytes(ROOT .. "/MPS001/MPS001_mask.nii.gz"))
    raises_with(function() fs.data.mps(dir .. "/root") end, "several mask files")
    os.remove(dir .. "/root/MPS002/extra_seg.nii.gz")
    os.remove(dir .. "/root/MPS002/MPS002_NM.dcm")
    raises_with(function() fs.data.mps(dir .. "/root") end, dir .. "/root/MPS002", "no DICOM files")
    helper.write_bytes(dir .. "/root/demographics.csv", "id,sex\nx,F\n")
    raises_with(function() fs.data.mps(dir .. "/root") end, "demographics.csv:1: no 'patient_id' column")
  end)
  it("finds the patients by folder without demographics.csv, and a series in a subfolder", function()
    local dir = helper.tmpdir()
    copy_tree(ROOT, dir .. "/root")
    os.remove(dir .. "/root/demographics.csv")
    assert(os.execute(("mkdir -p '%s/root/MPS002/DICOM' && mv '%s/root/MPS002/MPS002_NM.dcm' '%s/root/MPS002/DICOM/'"):format(dir, dir, dir)))
    local got = fs.data.mps(dir .. "/root")
    assert.equal(8, #got)
    assert.is_nil(got[1].sex)
    assert.equal(dir .. "/root/MPS002/DICOM/MPS002_NM.dcm", got[5].path)
  end)
end)

describe("data.folder with DICOM images", function()
  local SERIES = "spec/fixtures/dicom/series/"
  local function make(dir)
    assert(os.execute(("mkdir -p '%s/images' '%s/masks/ventricle' '%s/masks/myocardium'"):format(dir, dir, dir)))
    helper.write_bytes(dir .. "/images/a.dcm", helper.read_bytes(SERIES .. "IM0009"))
    helper.write_bytes(dir .. "/images/b", helper.read_bytes(SERIES .. "IM0008")) -- no extension
    fs.image.write(dir .. "/images/c.png", fs.full({6, 5}, 7), {bits = 16, normalize = false})
    for _, n in ipairs({"a", "b", "c"}) do
      local m = fs.zeros(6, 5)
      m:set(2, 2, 1)
      fs.image.write(dir .. "/masks/ventricle/" .. n .. ".png", m:mul(255), {bits = 8, normalize = false})
      local w = fs.zeros(6, 5)
      w:set(3, 3, 1)
      fs.image.write(dir .. "/masks/myocardium/" .. n .. ".png", w:mul(255), {bits = 8, normalize = false})
    end
  end
  it("reads DICOM slices beside PNG, with the file's pixel spacing", function()
    local dir = helper.tmpdir()
    make(dir)
    local items = fs.data.folder(dir, {classes = {"ventricle", "myocardium"}})
    assert.equal(3, #items)
    local a, b, c = items[1], items[2], items[3]
    assert.equal("a", a.name)
    assert.equal("b", b.name)
    assert.equal("c", c.name)
    assert.same({6, 5}, a.image:shape())
    assert.equal(1000 - 1024, a.image:get(1, 1)) -- HU: stored 1000, intercept -1024
    assert.equal(1000 + 100 + 10 * 5 + 4 - 1024, b.image:get(6, 5))
    assert.equal(0.7, a.pixel_mm)
    assert.equal(6.4, c.pixel_mm)
    assert.equal("PHANTOM01", a.patient_id)
    assert.equal("CT", a.dicom.modality)
    assert.equal(1, a.labels:get(2, 2))
    assert.equal(2, a.labels:get(3, 3))
    local fixed = fs.data.folder(dir, {classes = {"ventricle", "myocardium"}, pixel_mm = 2})
    assert.equal(2, fixed[1].pixel_mm)
    local samples = fs.data.tissues(items, {classes = {"ventricle", "myocardium"}, input = "mask", size = 8})
    assert.equal(6, #samples)
  end)
  it("refuses a multi-frame file, a broken file and a repeated stem, naming them", function()
    local dir = helper.tmpdir()
    make(dir)
    helper.write_bytes(dir .. "/images/a.png", helper.read_bytes(dir .. "/images/c.png"))
    raises_with(function() fs.data.folder(dir, {classes = {"ventricle", "myocardium"}}) end, "same name stem 'a'")
    os.remove(dir .. "/images/a.png")
    helper.write_bytes(dir .. "/images/a.dcm", helper.read_bytes("spec/fixtures/dicom/nm_tomo.dcm"))
    raises_with(function() fs.data.folder(dir, {classes = {"ventricle", "myocardium"}}) end, dir .. "/images/a.dcm", "has 8 frames")
    helper.write_bytes(dir .. "/images/a.dcm", "not dicom at all")
    raises_with(function() fs.data.folder(dir, {classes = {"ventricle", "myocardium"}}) end, dir .. "/images/a.dcm", "cannot read image", "not a DICOM file")
  end)
end)
