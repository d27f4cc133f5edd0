--- fewshot.dicom: a folder of DICOM files as one volume (fs.io.load_dicom_series), and the
-- test of whether a file is DICOM that fs.data.folder and fs.data.mps use. The files are read
-- by GDCM through fs.io.load_dicom / fs.io.dicom_info (csrc/core/io/dicom_gdcm.cpp).
--
-- A series is ordered by the position of each image along the slice normal (the cross product
-- of the two direction cosines of Image Orientation (Patient)), not by file name or Instance
-- Number, and the steps between neighbours must agree (within tolerance_mm): a missing slice
-- or a mixed stack is an error, not a silently wrong volume.
-- @module fewshot.dicom
local core = require "fewshot.core"
local args = require "fewshot.args"

local M = {}

local EXTENSIONS = {dcm = true, dicom = true, dic = true, ima = true}

--- Whether path looks like a DICOM file: a .dcm/.dicom/.dic/.ima name, or "DICM" at byte 128
-- (what scanners write, often without an extension).
function M.is_dicom(path)
  local ext = path:match("%.([^./]+)$")
  if ext and EXTENSIONS[ext:lower()] then return true end
  local f = io.open(path, "rb")
  if not f then return false end
  local head = f:read(132)
  f:close()
  return head ~= nil and #head == 132 and head:sub(129, 132) == "DICM"
end

local function fail(fmt, ...)
  error("load_dicom_series: " .. fmt:format(...), 3)
end

local function dot(a, b) return a[1] * b[1] + a[2] * b[2] + a[3] * b[3] end

--- Every DICOM file of one series in a folder, as one volume.
-- @tparam string folder the folder (files directly in it; subfolders are not searched)
-- @tparam table opts `series` (a Series Instance UID: read that one when the folder holds
--   several), `tolerance_mm=0.01` (how far a step between slices may differ from the first)
-- @treturn Tensor (z, y, x) float32, slices in order along the normal
-- @treturn table the first slice's info (fs.io.load_dicom) with `spacing_mm` = {step, row,
--   col}, `slice_spacing_mm` the measured step, `files` the paths in slice order and
--   `slice_positions_mm` their positions along the normal
-- @usage local vol, info = fs.io.load_dicom_series("export/SPECT_REST")
function M.load_series(folder, opts)
  opts = args.options("load_dicom_series", opts, {"series", "tolerance_mm"})
  if type(folder) ~= "string" then fail("folder must be a string, got %s", type(folder)) end
  local tol = args.number("load_dicom_series", "tolerance_mm", opts.tolerance_mm or 0.01, 0)
  local ok, names = pcall(core.io.listdir, folder)
  if not ok then fail("%s: cannot list the folder (%s)", folder, tostring(names)) end
  local series, order = {}, {}
  for _, n in ipairs(names) do
    local path = folder .. "/" .. n
    if n:upper() ~= "DICOMDIR" and M.is_dicom(path) then
      local info = core.io.dicom_info(path) -- raises naming the file when it is broken
      local uid = info.series_uid ~= "" and info.series_uid or "(no Series Instance UID)"
      local s = series[uid]
      if not s then
        s = {uid = uid, description = info.series_description, modality = info.modality,
             number = info.series_number, files = {}}
        series[uid] = s
        order[#order + 1] = uid
      end
      s.files[#s.files + 1] = {path = path, info = info}
    end
  end
  if #order == 0 then fail("%s: no DICOM files (.dcm or a DICM preamble)", folder) end
  local chosen
  if opts.series then
    chosen = series[opts.series]
    if not chosen then fail("%s: no series %s in the folder (it has %s)", folder, opts.series, table.concat(order, ", ")) end
  elseif #order > 1 then
    local lines = {}
    for _, uid in ipairs(order) do
      local s = series[uid]
      lines[#lines + 1] = ("  %s  %s #%d '%s' (%d files)"):format(uid, s.modality, s.number,
                                                                   s.description, #s.files)
    end
    fail("%s: the folder holds %d series; pass series=UID to read one:\n%s", folder, #order,
         table.concat(lines, "\n"))
  else
    chosen = series[order[1]]
  end
  local files = chosen.files
  local first = files[1].info
  if #files == 1 then
    local vol, info = core.io.load_dicom(files[1].path)
    if vol:dim() ~= 3 then fail("%s: a colour image is not a volume", files[1].path) end
    info.files = {files[1].path}
    return vol, info
  end
  -- one slice a file: order along the normal, check the geometry agrees
  local normal = first.slice_normal
  for _, f in ipairs(files) do
    local i = f.info
    if i.frames ~= 1 then fail("%s: %d frames in a series of %d files (read it with fs.io.load_dicom)", f.path, i.frames, #files) end
    if i.samples_per_pixel ~= 1 then fail("%s: a colour image in a series", f.path) end
    if not i.image_position or not i.image_orientation then
      fail("%s: no Image Position/Orientation (Patient), so the slice order is unknown", f.path)
    end
    if i.rows ~= first.rows or i.columns ~= first.columns then
      fail("%s: %dx%d where %s is %dx%d", f.path, i.rows, i.columns, files[1].path, first.rows, first.columns)
    end
    for k = 1, 6 do
      if math.abs(i.image_orientation[k] - first.image_orientation[k]) > 1e-4 then
        fail("%s: image orientation differs from %s", f.path, files[1].path)
      end
    end
    f.z = dot(i.image_position, normal)
  end
  table.sort(files, function(a, b) return a.z < b.z end)
  local step = files[2].z - files[1].z
  if step <= tol then
    fail("%s and %s: two slices at the same position (%.4g mm along the normal)", files[1].path, files[2].path, files[1].z)
  end
  for k = 2, #files do
    local d = files[k].z - files[k - 1].z
    if math.abs(d - step) > tol then
      fail("%s: unequal slice spacing: %.4g mm after %s where the first step is %.4g mm (a missing or extra slice?)",
           folder, d, files[k - 1].path, step)
    end
  end
  local slices, paths, zs = {}, {}, {}
  for k, f in ipairs(files) do
    slices[k] = core.io.load_dicom(f.path)
    paths[k] = f.path
    zs[k] = f.z
  end
  local vol = core.cat(slices, 1)
  local info = core.io.dicom_info(files[1].path)
  info.frames = #files
  info.slice_spacing_mm = step
  info.spacing_mm = {step, info.pixel_spacing_mm and info.pixel_spacing_mm[1] or 1,
                     info.pixel_spacing_mm and info.pixel_spacing_mm[2] or 1}
  info.slice_spacing_source = "positions"
  info.files = paths
  info.slice_positions_mm = zs
  return vol, info
end

return M
