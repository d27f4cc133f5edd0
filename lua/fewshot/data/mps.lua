--- fewshot.data.mps: PhysioNet's "Myocardial perfusion scintigraphy image database" (v1.0.0,
-- Calixto et al. 2025, https://physionet.org/content/myocardial-perfusion-spect/1.0.0/) as
-- dataset items of the same form as fs.data.folder's, one per short-axis slice.
--
-- The layout, as the database's README and data description give it: `demographics.csv`
-- (patient_id, sex, age, BMI) beside one folder per patient named by its patient_id, holding
-- the DICOM NM volume (70 x 70 x 50 at 4 mm, GE Discovery NM 530c, 99mTc-MIBI rest) and, where
-- available, a NIfTI mask of the left ventricular wall (label 1, 0 background). Neither page
-- fixes the file names inside a patient folder, so they are found by content: every DICOM
-- file of the folder (and of its subfolders, one level down) is the volume (one multi-frame
-- file, or a series read with fs.io.load_dicom_series), and a NIfTI file whose name contains
-- `mask_pattern` (default "mask", "seg", "label" or "lv", any case) is the mask.
--
-- Items: masks.myocardium is the wall; masks.ventricle (cavity = true) the LV cavity, the
-- pixels of the slice that the wall encloses (not reachable from the border without crossing
-- it), so fs.data.tissues and fs.protonet run on it as on the phantom (way = 2).
-- @module fewshot.data.mps
local core = require "fewshot.core"
local args = require "fewshot.args"
local dicom = require "fewshot.dicom"

local M = {}

local function fail(fmt, ...)
  error("data.mps: " .. fmt:format(...), 3)
end

local function listdir(p)
  local ok, names = pcall(core.io.listdir, p)
  return ok and names or nil
end

local function is_dir(p) return listdir(p) ~= nil end

-- demographics.csv -> {id = {sex=, age=, bmi=}}, ids in file order
local function read_demographics(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local header, rows, ids = nil, {}, {}
  local lineno = 0
  for line in f:lines() do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if line:match("%S") then
      local cells = {}
      for c in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c:match("^%s*(.-)%s*$") end
      if not header then
        header = {}
        for i, c in ipairs(cells) do header[c:lower()] = i end
        if not header.patient_id then
          f:close()
          fail("%s:1: no 'patient_id' column (got '%s')", path, line)
        end
      else
        local id = cells[header.patient_id]
        if not id or id == "" then
          f:close()
          fail("%s:%d: empty patient_id", path, lineno)
        end
        local function col(name) return header[name] and cells[header[name]] or nil end
        rows[id] = {sex = col("sex"), age = tonumber(col("age") or ""), bmi = tonumber(col("bmi") or "")}
        ids[#ids + 1] = id
      end
    end
  end
  f:close()
  return rows, ids
end

local DEFAULT_MASK = {"mask", "seg", "label", "lv"}

local function is_nifti(name) return name:match("%.nii$") or name:match("%.nii%.gz$") end

-- The DICOM files and mask candidates of a patient folder (and its subfolders, one level).
local function scan(dir, patterns)
  local dicoms, masks = {}, {}
  local function visit(d, depth)
    for _, n in ipairs(listdir(d) or {}) do
      local p = d .. "/" .. n
      if n:sub(1, 1) ~= "." then
        if depth == 0 and is_dir(p) then
          visit(p, 1)
        elseif is_nifti(n) then
          local low = n:lower()
          for _, pat in ipairs(patterns) do
            if low:find(pat:lower(), 1, true) then masks[#masks + 1] = p; break end
          end
        elseif n:upper() ~= "DICOMDIR" and dicom.is_dicom(p) then
          dicoms[#dicoms + 1] = p
        end
      end
    end
  end
  visit(dir, 0)
  return dicoms, masks
end

-- The pixels of a 2D 0/1 table enclosed by the wall: not reachable from the border through
-- non-wall pixels (4-connected).
local function enclosed(wall, h, w)
  local seen = {}
  local stack = {}
  local function push(y, x)
    local k = (y - 1) * w + x
    if not seen[k] and wall[y][x] == 0 then seen[k] = true; stack[#stack + 1] = k end
  end
  for x = 1, w do push(1, x); push(h, x) end
  for y = 1, h do push(y, 1); push(y, w) end
  while #stack > 0 do
    local k = table.remove(stack)
    local y, x = (k - 1) // w + 1, (k - 1) % w + 1
    if y > 1 then push(y - 1, x) end
    if y < h then push(y + 1, x) end
    if x > 1 then push(y, x - 1) end
    if x < w then push(y, x + 1) end
  end
  local out, n = {}, 0
  for y = 1, h do
    out[y] = {}
    for x = 1, w do
      local inside = wall[y][x] == 0 and not seen[(y - 1) * w + x]
      out[y][x] = inside and 1 or 0
      if inside then n = n + 1 end
    end
  end
  return out, n
end

local flip = require("fewshot.image").flip

--- Reads the database (or a copy in its layout) as dataset items, one per slice.
-- @tparam string root the folder holding demographics.csv and the patient folders
-- @tparam table opts `patients` (a list of patient_ids; default: those of demographics.csv, or
--   every subfolder when there is none), `slices="mask"` ("mask": the slices where the wall
--   has at least `min_mask_pixels=1` pixels; "all": every slice, a patient without mask
--   included with empty masks), `cavity=true` (add masks.ventricle), `mask_pattern` (a string
--   or list of strings, matched in NIfTI file names), `mask_flip` (a list of "x", "y", "z":
--   axes along which the mask is mirrored to match the DICOM volume, for masks written in
--   another orientation; default none: the mask's (z, y, x) voxels are the volume's)
-- @treturn table items `{name, path, image, labels, masks, landmarks, pixel_mm, patient_id,
--   slice, spacing_mm, sex, age, bmi, dicom}` (labels: 1 ventricle, 2 myocardium, as the
--   phantom's), with `skipped` = the patient_ids without a mask (slices = "mask")
-- @usage local items = fs.data.mps("/data/myocardial-perfusion-spect/1.0.0")
function M.mps(root, opts)
  opts = args.options("data.mps", opts, {"patients", "slices", "min_mask_pixels", "cavity",
                                         "mask_pattern", "mask_flip"})
  if type(root) ~= "string" then fail("root must be a string, got %s", type(root)) end
  local slices = args.choice("data.mps", "slices", opts.slices or "mask", {"mask", "all"})
  local min_px = args.integer("data.mps", "min_mask_pixels", opts.min_mask_pixels or 1, 1)
  local cavity = opts.cavity ~= false
  local patterns = opts.mask_pattern or DEFAULT_MASK
  if type(patterns) == "string" then patterns = {patterns} end
  local flips = {}
  for _, a in ipairs(opts.mask_flip or {}) do
    local dim = ({z = 1, y = 2, x = 3})[a]
    if not dim then fail("option 'mask_flip' entries must be \"x\", \"y\" or \"z\", got %s", tostring(a)) end
    flips[#flips + 1] = dim
  end
  if not is_dir(root) then fail("%s: cannot list the folder", root) end
  local demo, ids = read_demographics(root .. "/demographics.csv")
  if opts.patients then
    ids = opts.patients
  elseif not ids then
    ids = {}
    for _, n in ipairs(listdir(root)) do
      if n:sub(1, 1) ~= "." and is_dir(root .. "/" .. n) then ids[#ids + 1] = n end
    end
  end
  demo = demo or {}
  if #ids == 0 then fail("%s: no patient folders", root) end
  local items, skipped = {}, {}
  for _, id in ipairs(ids) do
    local dir = root .. "/" .. id
    if not is_dir(dir) then fail("%s: patient folder of '%s' missing", dir, id) end
    local dicoms, masks = scan(dir, patterns)
    if #dicoms == 0 then fail("%s: no DICOM files for patient '%s'", dir, id) end
    if #masks > 1 then fail("%s: several mask files (%s); pass mask_pattern= to pick one", dir, table.concat(masks, ", ")) end
    local vol, info
    if #dicoms == 1 then
      vol, info = core.io.load_dicom(dicoms[1])
    else
      local folder = dicoms[1]:match("^(.*)/[^/]+$")
      for _, p in ipairs(dicoms) do
        if p:match("^(.*)/[^/]+$") ~= folder then fail("%s: DICOM files in several folders (%s and %s)", dir, dicoms[1], p) end
      end
      vol, info = core.io.load_dicom_series(folder)
    end
    if vol:dim() ~= 3 then fail("%s: the DICOM image of '%s' is not a gray volume (%s)", dicoms[1], id, table.concat(vol:shape(), "x")) end
    local nz, h, w = table.unpack(vol:shape())
    local mask
    if masks[1] then
      local ok, m = pcall(core.io.load_nifti, masks[1])
      if not ok then fail("%s: cannot read the mask (%s)", masks[1], tostring(m)) end
      if m:dim() == 2 then m = m:view(1, m:shape()[1], m:shape()[2]) end
      local ms = m:shape()
      if m:dim() ~= 3 or ms[1] ~= nz or ms[2] ~= h or ms[3] ~= w then
        fail("%s: mask is %s but the volume %s is %dx%dx%d (z, y, x)", masks[1], table.concat(ms, "x"), dicoms[1], nz, h, w)
      end
      for _, d in ipairs(flips) do m = flip(m, d) end
      mask = m:gt(0.5)
    elseif slices == "mask" then
      skipped[#skipped + 1] = id
    end
    if mask or slices == "all" then
      local d = demo[id] or {}
      local pixel_mm = info.pixel_spacing_mm and info.pixel_spacing_mm[2] or 1
      for z = 1, nz do
        local wall = mask and mask:select(1, z):contiguous() or core.zeros(h, w)
        local npx = wall:sum():item()
        if slices == "all" or npx >= min_px then
          local masks_t = {myocardium = wall}
          local labels = wall:mul(2)
          if cavity then
            local cav, n = enclosed(wall:totable(), h, w)
            local c = n > 0 and core.tensor(cav) or core.zeros(h, w)
            masks_t.ventricle = c
            labels = labels:add(c)
          end
          items[#items + 1] = {
            name = ("%s_z%02d"):format(id, z), path = dicoms[1], image = vol:select(1, z):contiguous(),
            labels = labels, masks = masks_t, landmarks = {}, pixel_mm = pixel_mm,
            patient_id = id, slice = z, spacing_mm = info.spacing_mm, has_mask = mask ~= nil,
            sex = d.sex, age = d.age, bmi = d.bmi, dicom = info, mask_path = masks[1],
          }
        end
      end
    end
  end
  items.skipped = skipped
  return items
end

return M
