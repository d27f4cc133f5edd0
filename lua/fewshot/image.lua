--- fewshot.image: PNG read/write (C, re-exported from fewshot.core) and 2D slices of volumes.
-- `fs.image.read(path, {normalize=false, channels=1})` -> tensor, bit depth:
--   (H, W) gray or (3, H, W) RGB, raw values (0-255, 0-65535) unless normalize asks for [0, 1].
-- `fs.image.write(path, t, {bits=8, normalize=true})`: t (H, W), (1, H, W) or (3, H, W).
-- `fs.image.affine(x, {angle=, scale=, shift=})`: rotate / zoom / shift images in pixel space.
-- `fs.image.flip(x, dim)`: x reversed along dim (a copy).
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

--- x reversed along dim (1-based; a new tensor).
-- @tparam Tensor x
-- @tparam integer dim
-- @treturn Tensor
function M.flip(x, dim)
  local n = x:shape()[dim]
  local idx = {}
  for i = 1, n do idx[i] = n + 1 - i end
  return x:index_select(dim, idx)
end

--- Rotates, zooms and shifts images about their centre (bilinear, zeros outside), in pixel
-- units: a source point q goes to c + scale * R(angle) * (q - c) + shift, c the centre
-- ((H + 1) / 2, (W + 1) / 2 in 1-based pixels), angle counter-clockwise as the image is shown
-- (rows down). Built on F.affine (PyTorch's affine_grid + grid_sample); the gradient flows to x.
-- @tparam Tensor x (..., H, W)
-- @tparam table opts `angle=0` (degrees), `scale=1` (> 0), `shift={0, 0}` ({rows, columns},
--   pixels: {0, 1} moves the picture one column right), `mode="bilinear"` or "nearest"
-- @treturn Tensor like x
-- @usage local y = fs.image.affine(slice, {angle = 10, shift = {2, -1}})
function M.affine(x, opts)
  local op = "image.affine"
  opts = args.options(op, opts, {"angle", "scale", "shift", "mode"})
  if type(x) ~= "userdata" or x:dim() < 2 then
    error(op .. ": x must be a tensor (..., H, W)", 2)
  end
  local angle = math.rad(args.number(op, "angle", opts.angle or 0))
  local s = args.number(op, "scale", opts.scale or 1, 0, nil, true)
  local shift = opts.shift or {0, 0}
  if type(shift) ~= "table" or type(shift[1]) ~= "number" or type(shift[2]) ~= "number" then
    error(op .. ": option 'shift' must be {rows, columns} in pixels", 2)
  end
  local sh = x:shape()
  local h, w = sh[#sh - 1], sh[#sh]
  local c, n = math.cos(angle), math.sin(angle)
  local sy, sx = shift[1], shift[2]
  -- the inverse map in normalised coordinates (see F.affine): output (xn, yn) -> source
  local theta = {
    {c / s, -n / s * h / w, (-c * sx + n * sy) * 2 / (s * w)},
    {n / s * w / h, c / s, (-n * sx - c * sy) * 2 / (s * h)},
  }
  return core.F.affine(x, theta, {mode = opts.mode})
end

return M
