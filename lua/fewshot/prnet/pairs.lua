--- fewshot.prnet.pairs: the self-supervised training pairs of PRNet-2D (Lei et al.): two
-- patches of one image whose centres lie on the body, labelled by the offset between their
-- centres in mm. Reached as `fs.prnet.pairs` (one batch) and `fs.prnet.sampler` (a sampler
-- drawing batch after batch from one generator, as fs.prnet.train uses it).
--
-- Conventions (shared with fewshot.prnet.localize):
-- * every image is divided by its maximum (fewshot.prnet.pairs.normalize) before cropping;
-- * a patch of side P centred on pixel (x, y) (1-based) covers columns x - P/2 .. x + P/2 - 1
--   and the same rows: its pixel (P/2 + 1, P/2 + 1) is the centre; the image is padded by
--   P/2 zeros on each side, so every centre inside the image gives a whole patch;
-- * `offset_mm = (centre0 - centre1) * pixel_mm` as (dx, dy): the first patch's centre seen
--   from the second's, so that centre0 = centre1 + r * tanh(z0 - z1) once trained.
--
-- Augmentations (`augment = {...}`, each off unless given; all drawn from the sampler's
-- generator): the geometric ones make a new image A(p) = I(c + M^-1 (p - c - t)) in the same
-- 64 x 64 frame (c the image centre, M = zoom * rotation, t a translation; zero where the
-- source leaves the frame), so the field of view stays where it was while the anatomy moves:
--   rotate = degrees (uniform in +/-), translate = pixels (per axis, uniform in +/-),
--   zoom = fraction (1 +/- it), intensity = fraction (both patches of a pair times one factor
--   1 +/- it), boxes = n (per patch, n rectangles of side 1 .. box * P set to 0), box = 0.5.
-- Centres are drawn on the body of the original image and mapped into the augmented one, where
-- they are fractional; each patch is cut from the augmented image resampled in C (F.affine:
-- bilinear, zeros outside) so that its centre falls on a whole pixel (the subpixel positions
-- matter: rounding the centres instead made the coarse model 2-4 mm worse).
-- @module fewshot.prnet.pairs
local core = require "fewshot.core"
local args = require "fewshot.args"

local M = {}

local AUGMENT_KEYS = {"rotate", "translate", "zoom", "intensity", "boxes", "box"}

local function is_tensor(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "fewshot.Tensor"
end
M.is_tensor = is_tensor

--- The image divided by its maximum (unchanged if its maximum is <= 0), as a new tensor.
function M.normalize(img)
  return core.no_grad(function()
    local mx = img:max():item()
    if mx > 0 then return img / mx end
    return img:clone()
  end)
end

--- The image padded by `pad` zeros on each side: (H + 2 pad, W + 2 pad).
function M.pad(img, pad)
  local s = img:shape()
  local out = core.zeros({s[1] + 2 * pad, s[2] + 2 * pad})
  core.no_grad(function() out:narrow(1, pad + 1, s[1]):narrow(2, pad + 1, s[2]):copy(img) end)
  return out
end

--- The patch (P, P) of a padded image (pad = P / 2) centred on integer pixel (x, y); centres
-- outside the image are moved to its nearest pixel.
function M.crop(padded, x, y, P, H, W)
  x = math.max(1, math.min(W, math.floor(x + 0.5)))
  y = math.max(1, math.min(H, math.floor(y + 0.5)))
  return padded:narrow(1, y, P):narrow(2, x, P)
end

--- Checks and unpacks the `images` list (items with image/pixel_mm or (H, W) tensors).
-- Returns a list of {image = normalized tensor, pixel_mm =, H =, W =}.
function M.prepare(op, images, pixel_mm)
  if type(images) ~= "table" or #images == 0 then
    error(("%s: images must be a non-empty list of items or (H, W) tensors, got %s"):format(op,
      type(images)), 3)
  end
  local out = {}
  for i, it in ipairs(images) do
    local img, mm = it, pixel_mm
    if not is_tensor(it) then
      if type(it) ~= "table" or not is_tensor(it.image) then
        error(("%s: images[%d] must be an (H, W) tensor or an item with image"):format(op, i), 3)
      end
      img, mm = it.image, it.pixel_mm or pixel_mm
    end
    if img:dim() ~= 2 then
      error(("%s: images[%d] must be 2-D (H, W), got %d dims"):format(op, i, img:dim()), 3)
    end
    local s = img:shape()
    out[i] = {image = M.normalize(img), pixel_mm = mm or 1, H = s[1], W = s[2]}
  end
  return out
end

--- The flat row-major values of a tensor (H, W) as a Lua list.
local function values(t)
  local rows, v = t:totable(), {}
  local W = #rows[1]
  for y, r in ipairs(rows) do
    for x = 1, W do v[(y - 1) * W + x] = r[x] end
  end
  return v
end

--- A sampler: function(generator) -> batch, drawing `batch` pairs each call.
-- @tparam table images items (`image`, `pixel_mm`) or (H, W) tensors
-- @tparam table opts `patch` (even, required), `batch=32`, `fine_range=nil` (px: the second
--   centre within +/- it of the first, per axis; nil: anywhere on the body),
--   `body_threshold=0.05` (a pixel is body when above it times the image's maximum),
--   `pixel_mm=1` (for plain tensors), `augment=nil` (see the module header)
-- @treturn function `sample(g)` -> `{x0 = (B, 1, P, P), x1 = (B, 1, P, P), offset_mm = (B, 2),
--   centres0 = {{x, y}, ...}, centres1 = ..., index = {image index, ...}}` (centres in the
--   augmented image's pixels)
function M.sampler(images, opts, op)
  op = op or "prnet.pairs"
  opts = args.options(op, opts, {"patch", "batch", "fine_range", "body_threshold", "pixel_mm",
                                 "augment"})
  if opts.patch == nil then error(op .. ": option 'patch' is required", 3) end
  local P = args.integer(op, "patch", opts.patch, 2)
  if P % 2 ~= 0 then error(("%s: option 'patch' must be even, got %d"):format(op, P), 3) end
  local B = args.integer(op, "batch", opts.batch or 32, 1)
  local range = opts.fine_range and args.integer(op, "fine_range", opts.fine_range, 1)
  local thr = args.number(op, "body_threshold", opts.body_threshold or 0.05, 0, 1)
  local mm = opts.pixel_mm and args.number(op, "pixel_mm", opts.pixel_mm, 0, nil, true)
  local aug = opts.augment or {}
  if type(aug) ~= "table" then error(op .. ": option 'augment' must be a table", 3) end
  args.options(op .. ": augment", aug, AUGMENT_KEYS)
  local rot = math.rad(args.number(op, "augment.rotate", aug.rotate or 0, 0, 180))
  local shift = args.integer(op, "augment.translate", aug.translate or 0, 0)
  local zoom = args.number(op, "augment.zoom", aug.zoom or 0, 0, 0.9)
  local inten = args.number(op, "augment.intensity", aug.intensity or 0, 0, 0.99)
  local boxes = args.integer(op, "augment.boxes", aug.boxes or 0, 0)
  local box = args.number(op, "augment.box", aug.box or 0.5, 0, 1, true)
  local geometric = rot > 0 or shift > 0 or zoom > 0
  local imgs = M.prepare(op, images, mm)
  for i, im in ipairs(imgs) do
    im.padded = M.pad(im.image, P // 2)
    local body, v = {}, values(im.image)
    for k = 1, im.H * im.W do
      if v[k] > thr then body[#body + 1] = k end
    end
    if #body == 0 then
      error(("%s: images[%d] has no body pixel above body_threshold %g of its maximum"):format(op,
        i, thr), 3)
    end
    im.body = body
  end
  local half = P // 2

  -- The augmented image seen from (fx, fy) px off the pixel grid, padded: F.affine (C) with
  -- the inverse map T in normalised coordinates (see F.affine: pixel x is xn = (2 (x - 1) + 1)
  -- / W - 1, so the centre c = (W + 1) / 2 is xn = 0 and one pixel is 2 / W). Its pixel p holds
  -- the augmented image at p + f, so a fractional centre becomes a whole pixel of it.
  local function warped_padded(im, T, fx, fy)
    local W, H = im.W, im.H
    local tx, ty = T.tx - fx, T.ty - fy
    local theta = {
      {T.a, T.b * H / W, -2 * (T.a * tx + T.b * ty) / W},
      {T.c * W / H, T.d, -2 * (T.c * tx + T.d * ty) / H},
    }
    local warped = core.no_grad(function() return core.F.affine(im.image, theta) end)
    return M.pad(warped, half)
  end

  -- the patch of the augmented image centred on (x, y), fractional or not
  local function geometric_patch(im, T, x, y)
    local rx, ry = math.floor(x + 0.5), math.floor(y + 0.5)
    return M.crop(warped_padded(im, T, x - rx, y - ry), rx, ry, P, im.H, im.W)
  end

  return function(g)
    local p0, p1, off, c0s, c1s, index, factors = {}, {}, {}, {}, {}, {}, {}
    for b = 1, B do
      local ii = g:randint(#imgs)
      local im = imgs[ii]
      local T
      if geometric then
        local th = (2 * g:uniform() - 1) * rot
        local s = 1 + (2 * g:uniform() - 1) * zoom
        local tx = shift > 0 and g:randint(2 * shift + 1) - shift - 1 or 0
        local ty = shift > 0 and g:randint(2 * shift + 1) - shift - 1 or 0
        local co, si = math.cos(th), math.sin(th)
        -- M = s R(th); Minv = R(-th) / s
        T = {a = co / s, b = si / s, c = -si / s, d = co / s, tx = tx, ty = ty,
             cx = (im.W + 1) / 2, cy = (im.H + 1) / 2, m = {s * co, -s * si, s * si, s * co}}
      end
      local function forward_map(k) -- a body pixel index -> its place in the augmented image
        local x, y = (k - 1) % im.W + 1, (k - 1) // im.W + 1
        if not T then return x, y end
        local ux, uy = x - T.cx, y - T.cy
        return T.cx + T.m[1] * ux + T.m[2] * uy + T.tx, T.cy + T.m[3] * ux + T.m[4] * uy + T.ty
      end
      local function body_centre()
        for _ = 1, 100 do
          local x, y = forward_map(im.body[g:randint(#im.body)])
          if x >= 1 and x <= im.W and y >= 1 and y <= im.H then return x, y end
        end
        return (im.W + 1) / 2, (im.H + 1) / 2
      end
      local x0, y0 = body_centre()
      local x1, y1
      if range then
        x1 = x0 + g:randint(2 * range + 1) - range - 1
        y1 = y0 + g:randint(2 * range + 1) - range - 1
      else
        x1, y1 = body_centre()
      end
      if T then -- the centres where the augmentation put them, fractional
        p0[b], p1[b] = geometric_patch(im, T, x0, y0), geometric_patch(im, T, x1, y1)
      else -- integer centres: views of the padded image (range keeps x1 integer too)
        x1 = math.max(1, math.min(im.W, x1))
        y1 = math.max(1, math.min(im.H, y1))
        p0[b] = M.crop(im.padded, x0, y0, P, im.H, im.W)
        p1[b] = M.crop(im.padded, x1, y1, P, im.H, im.W)
      end
      c0s[b], c1s[b], index[b] = {x0, y0}, {x1, y1}, ii
      off[b] = {(x0 - x1) * im.pixel_mm, (y0 - y1) * im.pixel_mm}
    end
    -- drawn after the centres, so that turning intensity on leaves the pairs where they were
    for b = 1, B do factors[b] = inten > 0 and 1 + (2 * g:uniform() - 1) * inten or 1 end
    local x0 = core.stack(p0, 1):unsqueeze(2):contiguous()
    local x1 = core.stack(p1, 1):unsqueeze(2):contiguous()
    core.no_grad(function()
      if inten > 0 then
        local f = core.tensor(factors):view({B, 1, 1, 1})
        x0, x1 = x0 * f, x1 * f
      end
      for _, x in ipairs(boxes > 0 and {x0, x1} or {}) do
        local maxside = math.max(1, math.floor(box * P))
        for b = 1, B do
          for _ = 1, boxes do
            local w, h = g:randint(maxside), g:randint(maxside)
            local bx, by = g:randint(P - w + 1), g:randint(P - h + 1)
            x:select(1, b):select(1, 1):narrow(1, by, h):narrow(2, bx, w):fill(0)
          end
        end
      end
    end)
    return {x0 = x0, x1 = x1, offset_mm = core.tensor(off), centres0 = c0s, centres1 = c1s,
            index = index}
  end
end

--- One batch of pairs: `fs.prnet.pairs(images, opts)` with `seed=0` (or `generator=`) and the
-- options of `sampler`.
-- @usage local b = fs.prnet.pairs(fs.spect.dataset{n = 4, crop = false}, {patch = 32, seed = 1})
function M.pairs(images, opts)
  local op = "prnet.pairs"
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if opts ~= nil and type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(op, type(opts)), 2)
  end
  local g = o.generator
  if g == nil then
    g = core.generator(args.integer(op, "seed", o.seed or 0, 0))
  end
  o.seed, o.generator = nil, nil
  args.options(op, opts, {"patch", "batch", "seed", "generator", "fine_range", "body_threshold",
                          "pixel_mm", "augment"})
  return M.sampler(images, o, op)(g)
end

return M
