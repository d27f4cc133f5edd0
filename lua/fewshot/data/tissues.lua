--- fewshot.data.tissues: tissue samples cut from dataset items (fewshot.spect.dataset or
-- fewshot.data.folder), the inputs of a Prototypical Network, and seeded augmentation.
-- Reached as `fs.data.tissues` and `fs.data.augment`.
-- @module fewshot.data.tissues
local core = require "fewshot.core"
local args = require "fewshot.args"
local image_lib = require "fewshot.image"

local M = {}

local F = core.F
local DEFAULT_CLASSES = {"ventricle", "myocardium", "liver"}
local INPUTS = {"masked", "mask", "crop", "patch"}

local flip = image_lib.flip

--- Augments one image with seeded random flips, 90-degree rotations, a small rotation, an
-- intensity scale and Poisson-like noise (in that order). Runs without the tape.
-- @tparam Tensor image (C, H, W) or (H, W)
-- @tparam table opts `seed=0` or `generator=` (a fs.generator, advanced in place),
--   `flip=true` (left-right and up-down, each with probability 1/2), `rotate=true` (a multiple
--   of 90 degrees drawn uniformly; needs H == W), `angle=0` (a rotation by a uniform angle in
--   [-angle, angle] degrees about the centre, bilinear, zeros outside; off by default so that
--   flips and 90-degree turns keep pixel values exact), `scale={0.9, 1.1}` (a factor drawn uniformly;
--   false: none), `noise=0.05` (adds noise * sqrt(max(x, 0) * m) * N(0, 1), m the image's
--   maximum, so the noise grows like counting noise with the signal; 0: none)
-- @treturn Tensor a new tensor of the same shape
-- @usage local y = fs.data.augment(x, {seed = 3, rotate = false})
function M.augment(image, opts)
  local op = "data.augment"
  opts = args.options(op, opts, {"seed", "generator", "flip", "rotate", "angle", "scale", "noise"})
  if type(image) ~= "userdata" then
    error(("%s: image must be a tensor, got %s"):format(op, type(image)), 2)
  end
  local nd = image:dim()
  if nd ~= 2 and nd ~= 3 then
    error(("%s: image must be (C, H, W) or (H, W), got (%s)"):format(op,
      table.concat(image:shape(), ", ")), 2)
  end
  local g = opts.generator or core.generator(args.integer(op, "seed", opts.seed or 0, 0))
  local noise = args.number(op, "noise", opts.noise == nil and 0.05 or opts.noise, 0)
  local angle = args.number(op, "angle", opts.angle or 0, 0, 180)
  local scale = opts.scale == nil and {0.9, 1.1} or opts.scale
  if scale and (type(scale) ~= "table" or type(scale[1]) ~= "number" or type(scale[2]) ~= "number"
      or scale[1] > scale[2] or scale[1] <= 0) then
    error(op .. ": option 'scale' must be {lo, hi} with 0 < lo <= hi, or false", 2)
  end
  local guard <close> = core.no_grad()
  local x = image
  local hd, wd = nd - 1, nd
  if opts.flip ~= false then
    if g:uniform() < 0.5 then x = flip(x, wd) end
    if g:uniform() < 0.5 then x = flip(x, hd) end
  end
  if opts.rotate ~= false then
    local sh = x:shape()
    if sh[hd] ~= sh[wd] then
      error(("%s: rotate needs a square image, got %dx%d (pass rotate=false)"):format(op, sh[hd],
        sh[wd]), 2)
    end
    local k = g:randint(0, 3)
    for _ = 1, k do x = flip(x:transpose(hd, wd), wd) end -- 90 degrees clockwise
  end
  if angle > 0 then x = image_lib.affine(x, {angle = g:uniform(-angle, angle)}) end
  if scale then x = x:mul(g:uniform(scale[1], scale[2])) end
  if noise > 0 then
    local m = x:max():item()
    if m > 0 then
      local z = core.randn(x:shape(), {generator = g})
      x = x + (x:clamp(0):mul(m)):sqrt() * z:mul(noise)
    end
  end
  return x:contiguous():clone()
end

local function patient_of(item, i)
  return item.patient ~= nil and item.patient or i
end

-- The window [a, a + len - 1] of length len containing the centre c as well as it can while
-- staying inside 1..n.
local function window(c, len, n)
  local a = math.floor(c - (len - 1) / 2 + 0.5)
  if a < 1 then a = 1 end
  if a + len - 1 > n then a = n - len + 1 end
  return a
end

-- The mask pixel nearest the mask's centroid (so the patch centre lies inside the tissue,
-- also for the myocardium's ring, whose centroid lies in the cavity).
local function inner_centre(mask)
  local t = mask:totable()
  local sr, sc, n = 0, 0, 0
  for i, row in ipairs(t) do
    for j, v in ipairs(row) do
      if v ~= 0 then sr, sc, n = sr + i, sc + j, n + 1 end
    end
  end
  local cr, cc = sr / n, sc / n
  local best, br, bc = math.huge, nil, nil
  for i, row in ipairs(t) do
    for j, v in ipairs(row) do
      if v ~= 0 then
        local d = (i - cr) ^ 2 + (j - cc) ^ 2
        if d < best then best, br, bc = d, i, j end
      end
    end
  end
  return br, bc
end

--- Cuts one sample per (item, class) from dataset items.
-- Input modes: "masked" (the slice times the tissue mask, cropped to the mask's bounding box
-- widened by margin_mm on each side and clipped to the image), "mask" (the binary mask, same
-- crop), "crop" (the same crop of the slice, unmasked), "patch" (a patch x patch pixel window
-- of the slice centred on the mask pixel nearest the mask's centroid, shifted to stay inside
-- the image). Each is resized to size x size (bilinear, align_corners false), the gray
-- channel repeated to `channels`, then divided by its maximum (normalize="max", when that is
-- positive) and augmented when `augment` is given.
-- @tparam table items dataset items with `image` (H, W), `masks` by class name, `pixel_mm`;
--   optional `patient` (the sample's patient id; default the item's position in items)
-- @tparam table opts `input="masked"`, `size=64`, `margin_mm=6.4`, `patch=8` (pixels, for
--   input "patch"), `channels=1` (1 or 3), `normalize="max"` ("none": raw counts),
--   `classes={"ventricle", "myocardium", "liver"}` (label = position in this list),
--   `augment=nil` (options of fs.data.augment; its seed, default 0, seeds one generator that
--   runs through the samples in order)
-- @treturn table a list of samples `{image = (channels, size, size), label = 1..#classes,
--   class = name, patient = id, index = the item's position}`, with a field `skipped` =
--   {[class] = number of items whose mask of that class is empty (no sample made)}
-- @usage local samples = fs.data.tissues(fs.spect.dataset{n = 12}, {size = 32})
function M.tissues(items, opts)
  local op = "data.tissues"
  opts = args.options(op, opts, {"input", "size", "margin_mm", "patch", "channels", "normalize",
                                 "classes", "augment"})
  if type(items) ~= "table" then
    error(("%s: items must be a list of dataset items, got %s"):format(op, type(items)), 2)
  end
  local input = args.choice(op, "input", opts.input or "masked", INPUTS)
  local size = args.integer(op, "size", opts.size or 64, 1, 4096)
  local margin_mm = args.number(op, "margin_mm", opts.margin_mm or 6.4, 0)
  local patch = args.integer(op, "patch", opts.patch or 8, 1)
  local channels = args.integer(op, "channels", opts.channels or 1, 1)
  if channels ~= 1 and channels ~= 3 then
    error(("%s: option 'channels' must be 1 or 3, got %d"):format(op, channels), 2)
  end
  local normalize = args.choice(op, "normalize", opts.normalize or "max", {"max", "none"})
  local classes = opts.classes or DEFAULT_CLASSES
  if type(classes) ~= "table" or #classes == 0 then
    error(op .. ": option 'classes' must be a non-empty list of class names", 2)
  end
  local gen
  if opts.augment ~= nil then
    if type(opts.augment) ~= "table" then error(op .. ": option 'augment' must be a table", 2) end
    args.options("data.tissues: augment", opts.augment, {"seed", "flip", "rotate", "angle", "scale", "noise"})
    gen = core.generator(args.integer(op, "augment.seed", opts.augment.seed or 0, 0))
  end
  local guard <close> = core.no_grad()
  local samples, skipped = {}, {}
  for _, c in ipairs(classes) do skipped[c] = 0 end
  for i, item in ipairs(items) do
    if type(item) ~= "table" or not item.image or type(item.masks) ~= "table" then
      error(("%s: item %d has no image and masks"):format(op, i), 2)
    end
    local image = item.image
    local sh = image:shape()
    if #sh ~= 2 then
      error(("%s: item %d: image must be (H, W), got (%s)"):format(op, i, table.concat(sh, ", ")), 2)
    end
    local h, w = sh[1], sh[2]
    local pixel_mm = item.pixel_mm or 6.4
    for label, c in ipairs(classes) do
      local mask = item.masks[c]
      if mask == nil then
        error(("%s: item %d has no mask '%s'"):format(op, i, c), 2)
      end
      local ms = mask:shape()
      if #ms ~= 2 or ms[1] ~= h or ms[2] ~= w then
        error(("%s: item %d: mask '%s' is (%s) but the image is (%d, %d)"):format(op, i, c,
          table.concat(ms, ", "), h, w), 2)
      end
      local r0, c0, r1, c1 = mask:bbox()
      if not r0 then
        skipped[c] = skipped[c] + 1
      else
        local x
        if input == "patch" then
          local ph, pw = math.min(patch, h), math.min(patch, w)
          local cr, cc = inner_centre(mask)
          x = image:narrow(1, window(cr, ph, h), ph):narrow(2, window(cc, pw, w), pw)
        else
          local m = math.floor(margin_mm / pixel_mm + 0.5)
          r0, c0 = math.max(1, r0 - m), math.max(1, c0 - m)
          r1, c1 = math.min(h, r1 + m), math.min(w, c1 + m)
          local src = input == "mask" and mask or input == "crop" and image or image * mask
          x = src:narrow(1, r0, r1 - r0 + 1):narrow(2, c0, c1 - c0 + 1)
        end
        x = F.interpolate(x:contiguous():view(1, 1, x:shape()[1], x:shape()[2]),
                          {size = {size, size}, mode = "bilinear"}):view(1, size, size)
        if normalize == "max" then
          local mx = x:max():item()
          if mx > 0 then x = x:div(mx) end
        end
        if channels == 3 then x = x:expand(3, size, size) end
        x = x:contiguous()
        if gen then
          local a = opts.augment
          x = M.augment(x, {generator = gen, flip = a.flip, rotate = a.rotate, scale = a.scale,
                            noise = a.noise})
        end
        samples[#samples + 1] = {image = x, label = label, class = c,
                                 patient = patient_of(item, i), index = i}
      end
    end
  end
  samples.skipped = skipped
  return samples
end

return M
