--- fewshot.image: PNG read/write (C, re-exported from fewshot.core) and 2D slices of volumes.
-- `fs.image.read(path, {normalize=false, channels=1})` -> tensor, bit depth:
--   (H, W) gray or (3, H, W) RGB, raw values (0-255, 0-65535) unless normalize asks for [0, 1].
-- `fs.image.write(path, t, {bits=8, normalize=true})`: t (H, W), (1, H, W) or (3, H, W).
-- @module fewshot.image
local core = require "fewshot.core"
local args = require "fewshot.args"

local M = {}
for k, v in pairs(core.image) do M[k] = v end

local AXES = {axial = 1, coronal = 2, sagittal = 3}

--- A 2D slice of a (z, y, x) volume, as load_nifti / load_interfile return it.
-- @tparam Tensor volume (z, y, x)
-- @tparam table opts `axis="axial"` (a z plane: (y, x)), "coronal" (a y plane: (z, x)) or
--   "sagittal" (an x plane: (z, y)); `index` (1-based, default the middle); `spacing_mm`
--   (the volume's {z, y, x} spacing, e.g. info.spacing_mm; default 1 mm)
-- @treturn Tensor the slice (contiguous copy)
-- @treturn table pixel size {row_mm, col_mm}
-- @usage local v, info = fs.io.load_nifti("spect.nii.gz")
--   local s, px = fs.image.slice(v, {axis = "coronal", spacing_mm = info.spacing_mm})
function M.slice(volume, opts)
  opts = args.options("image.slice", opts, {"axis", "index", "spacing_mm"})
  local shape = volume:shape()
  if #shape ~= 3 then
    error(("image.slice: need a (z, y, x) volume, got a tensor of shape (%s)"):format(table.concat(shape, ", ")), 2)
  end
  local axis = opts.axis or "axial"
  local dim = AXES[axis]
  if not dim then error(("image.slice: unknown axis '%s' (axial, coronal, sagittal)"):format(tostring(axis)), 2) end
  local index = opts.index or (shape[dim] + 1) // 2
  if index < 1 or index > shape[dim] then
    error(("image.slice: index %d outside 1..%d for the %s axis of a (%s) volume"):format(
      index, shape[dim], axis, table.concat(shape, ", ")), 2)
  end
  local sp = opts.spacing_mm or {1, 1, 1}
  local rest = {}
  for d = 1, 3 do if d ~= dim then rest[#rest + 1] = sp[d] end end
  return volume:select(dim, index):contiguous():clone(), rest
end

return M
