--- fewshot.prnet.loss: PRNet-2D's training loss, L = L_dis + w * L_rec.
-- L_dis = MSE(tanh(z0 - z1), offset_mm / r): the latent difference of a pair, squashed by
-- tanh, against the offset between the two patch centres in units of r (mm), so that offsets
-- up to r map into (-1, 1) and both terms are of order 0.01-0.1 (a loss value is in those
-- units: say so next to it). L_rec = MSE(rec0, x0) + MSE(rec1, x1), the decoder's
-- reconstructions of the two patches (in [0, 1]: images are divided by their maximum).
-- MSE is the mean over all elements (PyTorch's reduction="mean"). Reached as `fs.prnet.loss`.
-- @module fewshot.prnet.loss
local core = require "fewshot.core"
local args = require "fewshot.args"
local F = core.nn.functional

local M = {}

--- The loss of one batch of pairs.
-- @tparam Tensor z0 (B, D) latents of the first patches
-- @tparam Tensor z1 (B, D) latents of the second patches
-- @tparam Tensor offset_mm (B, D) centre0 - centre1 in mm (fs.prnet.pairs' offset_mm)
-- @tparam table opts `r` (mm, > 0, required), `weight=1` (w), `rec0`, `rec1`, `x0`, `x1`
--   (needed when weight > 0)
-- @treturn Tensor L (0-d, on the tape)
-- @treturn Tensor L_dis (0-d)
-- @treturn Tensor|nil L_rec (0-d; nil when weight is 0)
function M.loss(z0, z1, offset_mm, opts)
  local op = "prnet.loss"
  opts = args.options(op, opts, {"r", "weight", "rec0", "rec1", "x0", "x1"})
  if opts.r == nil then error(op .. ": option 'r' (mm) is required", 2) end
  local r = args.number(op, "r", opts.r, 0, nil, true)
  local w = args.number(op, "weight", opts.weight or 1, 0)
  local s0, s1, so = z0:shape(), z1:shape(), offset_mm:shape()
  if #s0 ~= 2 or #s1 ~= 2 or #so ~= 2 or s0[1] ~= s1[1] or s0[2] ~= s1[2] or so[1] ~= s0[1]
      or so[2] ~= s0[2] then
    error(("%s: z0 (%s), z1 (%s) and offset_mm (%s) must all be (B, D)"):format(op,
      table.concat(s0, ", "), table.concat(s1, ", "), table.concat(so, ", ")), 2)
  end
  local target = core.no_grad(function() return offset_mm / r end)
  local dis = F.mse_loss((z0 - z1):tanh(), target)
  if w == 0 then return dis, dis, nil end
  for _, k in ipairs({"rec0", "rec1", "x0", "x1"}) do
    if opts[k] == nil then error(("%s: option '%s' is required when weight > 0"):format(op, k), 2) end
  end
  local rec = F.mse_loss(opts.rec0, opts.x0) + F.mse_loss(opts.rec1, opts.x1)
  return dis + rec * w, dis, rec
end

return M
