--- tools/export_phantom_volumes.lua - phantom volumes for DICOM writing (tools/phantom_to_dicom.py).
--
--   lua5.4 tools/export_phantom_volumes.lua OUT [--patients 3] [--slices 50] [--matrix 70]
--          [--pixel-mm 4] [--no-mask-for 3] [--seed 1]
--
-- Writes, in the layout of PhysioNet's myocardial perfusion scintigraphy database (README
-- "DICOM"): OUT/demographics.csv and per patient OUT/<id>/volume.npy (z, y, x counts, float32,
-- a stack of fs.spect.simulate short-axis slices from the base (level 0.05) to the apex (0.95)
-- of one seeded patient) and OUT/<id>/<id>_mask.nii.gz (the LV wall, label 1; its spacing the
-- volume's), plus OUT/<id>/volume.json with the spacing. tools/phantom_to_dicom.py --mps OUT
-- then turns each volume.npy into a multi-frame NM DICOM file and removes the .npy. Patient
-- number --no-mask-for gets no mask ("where available"). Run with LUA_PATH/LUA_CPATH set as
-- for the specs (README "Install").
local fs = require "fewshot"

local out = arg[1]
if not out or out:sub(1, 2) == "--" then
  io.stderr:write("usage: lua5.4 tools/export_phantom_volumes.lua OUT [--patients N] [--slices N] [--matrix N] [--pixel-mm MM] [--no-mask-for K] [--seed S]\n")
  os.exit(2)
end
local o = {patients = 3, slices = 50, matrix = 70, ["pixel-mm"] = 4, ["no-mask-for"] = 0, seed = 1}
local i = 2
while arg[i] do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or o[k] == nil or not tonumber(arg[i + 1]) then
    io.stderr:write("export_phantom_volumes: bad argument " .. tostring(arg[i]) .. "\n")
    os.exit(2)
  end
  o[k] = tonumber(arg[i + 1])
  i = i + 2
end

assert(os.execute(("mkdir -p '%s'"):format(out)))
local csv = assert(io.open(out .. "/demographics.csv", "w"))
csv:write("patient_id,sex,age,BMI\n")
for p = 1, o.patients do
  local id = ("MPS%03d"):format(p)
  local dir = out .. "/" .. id
  assert(os.execute(("mkdir -p '%s'"):format(dir)))
  local slices, walls = {}, {}
  for z = 1, o.slices do
    local level = o.slices == 1 and 0.5 or 0.05 + 0.9 * (z - 1) / (o.slices - 1)
    local item = fs.spect.simulate{seed = o.seed + p - 1, view = "short_axis", level = level,
                                   matrix = o.matrix, pixel_mm = o["pixel-mm"], noise_seed = 100 * p + z}
    slices[z] = item.image:view(1, o.matrix, o.matrix)
    walls[z] = item.labels:eq(2):view(1, o.matrix, o.matrix)
  end
  local vol = fs.cat(slices, 1)
  fs.io.save_npy(dir .. "/volume.npy", vol)
  local sp = o["pixel-mm"]
  local f = assert(io.open(dir .. "/volume.json", "w"))
  f:write(('{"spacing_mm": [%g, %g, %g]}\n'):format(sp, sp, sp))
  f:close()
  if p ~= o["no-mask-for"] then
    fs.io.save_nifti(dir .. "/" .. id .. "_mask.nii.gz", fs.cat(walls, 1), {spacing_mm = {sp, sp, sp}})
  end
  csv:write(("%s,%s,%d,%.1f\n"):format(id, p % 2 == 1 and "F" or "M", 40 + 7 * p, 22 + p * 1.5))
end
csv:close()
print(("wrote %d patients (%d slices of %dx%d at %g mm) to %s"):format(o.patients, o.slices, o.matrix, o.matrix, o["pixel-mm"], out))
