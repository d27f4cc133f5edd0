--- fewshot.spect: the SPECT phantom chain (phantom -> projection -> Poisson counts ->
-- reconstruction -> clinical matrix -> crop around the heart), the labelled dataset built on
-- it, and the figures that show it is realistic.
--
-- The C kernels (fs.spect.phantom, project, backproject, acquire, reconstruct, butterworth,
-- bin, downsample) are re-exported unchanged. Images are (H, W) tensors; positions in mm are
-- measured from the centre of pixel (1, 1); pixel positions are 1-based (x = column, y = row).
-- @module fewshot.spect
local core = require "fewshot.core"
local args = require "fewshot.args"

local M = {}
for k, v in pairs(core.spect) do M[k] = v end

M.VIEWS = {"transaxial", "short_axis", "long_axis"}

--- fs.spect.project(activity, attenuation, opts), or project(phantom, opts) with a table from
-- fs.spect.phantom (its activity, attenuation and pixel size are used).
function M.project(a, b, c)
  if type(a) == "table" and a.activity then
    local o = {}
    for k, v in pairs(b or {}) do o[k] = v end
    o.pixel_mm = o.pixel_mm or a.pixel_mm
    return core.spect.project(a.activity, a.attenuation, o)
  end
  return core.spect.project(a, b, c)
end
M.LABELS = {background = 0, ventricle = 1, myocardium = 2, liver = 3, other = 4}

local PHANTOM_KEYS = {"level", "defect_prob", "defect_severity", "hotspot_prob", "breast_prob", "liver_gap_mm",
                      "liver_uptake", "blood_uptake", "variation", "heart_shift_mm",
                      "heart_rotation_deg", "body_scale", "table_offset_mm"}

-- every option of simulate (the phantom's pass through)
local SIMULATE_KEYS = {"seed", "view", "matrix", "pixel_mm", "oversample", "counts", "noise_seed",
                       "angles", "arc", "scatter", "psf", "method", "iterations", "subsets",
                       "attenuation_correction", "psf_model", "scatter_model", "postfilter",
                       "radius_mm", "clearance_mm", "activity"}
for _, k in ipairs(PHANTOM_KEYS) do SIMULATE_KEYS[#SIMULATE_KEYS + 1] = k end

local DATASET_KEYS = {"n", "crop", "crop_size", "jitter"}
for _, k in ipairs(SIMULATE_KEYS) do DATASET_KEYS[#DATASET_KEYS + 1] = k end

-- The matrix and oversampling checked where the user wrote them (the phantom only sees their
-- product, and its message would name neither).
local function check_grid(op, opts)
  local matrix = args.integer(op, "matrix", opts.matrix or 64, 8, 1024)
  local k = args.integer(op, "oversample", opts.oversample or 3, 1, 8)
  if matrix * k < 16 or matrix * k > 4096 then
    error(("%s: matrix * oversample must be in [16, 4096] (the phantom grid), got %d * %d = %d")
      :format(op, matrix, k, matrix * k), 3)
  end
  args.number(op, "pixel_mm", opts.pixel_mm or 6.4, 0, nil, true)
  return matrix, k
end

local function check_view(op, view, allow_mixed)
  if allow_mixed and view == "mixed" then return view end
  for _, v in ipairs(M.VIEWS) do
    if v == view then return view end
  end
  error(("%s: unknown view '%s' (transaxial, short_axis, long_axis%s)"):format(op, tostring(view),
    allow_mixed and ", mixed" or ""), 3)
end

--- Simulates one patient slice through the whole chain at the clinical matrix (no crop).
-- @tparam table opts `seed=1`, `view="short_axis"`, `matrix=64`, `pixel_mm=6.4`,
--   `oversample=3` (phantom grid = matrix * oversample), `counts=3e5` (sinogram total; false:
--   noiseless), `noise_seed` (default seed + 7919), `angles=64`, `arc=180`, `scatter=0.2` (fraction of counts), `psf` (projector
--   PSF, see fs.spect.project), `method="osem"`, `iterations=4`, `subsets=16` (64 updates, as
--   resolution-recovery OSEM such as Philips Astonish runs; 4 x 4 leaves the PSF-modelled
--   image unconverged),
--   `attenuation_correction=true`, `psf_model=true`, `scatter_model=true`,
--   `postfilter={butterworth={order=5, cutoff=0.5}}` (false: none); phantom options
--   (`level`, `defect_prob`, `defect_severity`, `hotspot_prob`, `breast_prob`, `liver_gap_mm`,
--   `liver_uptake`, `blood_uptake`) pass through, and so does the inter-patient variation
--   (`variation="none"` or `"realistic"`, `heart_shift_mm`, `heart_rotation_deg`, `body_scale`,
--   `table_offset_mm`: uniform +/- ranges, 0 = off; README "Phantom variation");
--   `activity=` a (n, n) fine-grid activity map
--   to use instead of the phantom's (with the phantom's attenuation).
-- @treturn table `{image, labels, activity, attenuation, sinogram, landmarks, pixel_mm, view,
--   seed, params}`; landmarks by name `{x=, y=, x_mm=, y_mm=}`. The image is in OSEM's natural
--   unit (counts per view): at counts=3e5 the myocardium is about 30 with about 7% pixel noise.
function M.simulate(opts)
  opts = args.options("spect.simulate", opts, SIMULATE_KEYS)
  local seed = args.integer("spect.simulate", "seed", opts.seed or 1, 0)
  local view = check_view("spect.simulate", opts.view or "short_axis", false)
  local matrix, k = check_grid("spect.simulate", opts)
  local pixel_mm = opts.pixel_mm or 6.4
  local fine_mm = pixel_mm / k
  local popts = {seed = seed, n = matrix * k, pixel_mm = fine_mm, view = view}
  for _, key in ipairs(PHANTOM_KEYS) do popts[key] = opts[key] end
  local ph = core.spect.phantom(popts)
  local scatter = opts.scatter == nil and 0.2 or opts.scatter
  local angles, arc = opts.angles or 64, opts.arc or 180
  local radius = opts.radius_mm or core.spect.orbit(ph.attenuation, {angles = angles, arc = arc,
    pixel_mm = fine_mm, clearance_mm = opts.clearance_mm or 30})
  local geo = {angles = angles, arc = arc, pixel_mm = fine_mm, scatter = scatter, psf = opts.psf,
               radius_mm = radius}
  local activity = opts.activity or ph.activity
  local sino = core.spect.bin(core.spect.project(activity, ph.attenuation, geo), k)
  local counts = opts.counts == nil and 3e5 or opts.counts
  if counts then
    sino = core.spect.acquire(sino, {counts = counts, seed = opts.noise_seed or seed + 7919})
  end
  local mu = core.spect.downsample(ph.attenuation, k)
  local psf_recon = opts.psf -- nil: the default clinical PSF
  if opts.psf_model == false then psf_recon = false end
  local recon = {
    method = opts.method or "osem", iterations = opts.iterations or 4, subsets = opts.subsets or 16,
    pixel_mm = pixel_mm, arc = arc, radius_mm = radius,
    attenuation = opts.attenuation_correction ~= false and mu or nil,
    psf = psf_recon,
    scatter = opts.scatter_model ~= false and scatter or 0,
    postfilter = opts.postfilter,
  }
  local image = core.spect.reconstruct(sino, recon)
  local landmarks = {}
  local shift = (k - 1) / 2 * fine_mm -- fine pixel (1,1) centre -> coarse pixel (1,1) centre
  for name, p in pairs(ph.landmarks) do
    local x_mm, y_mm = p.x_mm - shift, p.y_mm - shift
    landmarks[name] = {x_mm = x_mm, y_mm = y_mm, x = x_mm / pixel_mm + 1, y = y_mm / pixel_mm + 1}
  end
  return {
    image = image,
    labels = core.spect.downsample(ph.labels, k, {labels = true}),
    activity = core.spect.downsample(activity, k),
    attenuation = mu,
    sinogram = sino,
    landmarks = landmarks,
    pixel_mm = pixel_mm,
    view = view,
    seed = seed,
    params = ph.params,
  }
end

local function crop2d(t, r0, c0, size)
  return t:narrow(1, r0, size):narrow(2, c0, size):contiguous()
end

--- Crops a simulated item around (cx, cy) (1-based pixels) to size x size; shifts landmarks.
function M.crop(item, cx, cy, size)
  local n = item.image:shape()[1]
  args.integer("spect.crop", "size", size, 1)
  args.number("spect.crop", "cx", cx)
  args.number("spect.crop", "cy", cy)
  if size > n then error(("spect.crop: crop size %d exceeds the image size %d"):format(size, n), 2) end
  local c0 = math.floor(cx - size / 2 + 0.5)
  local r0 = math.floor(cy - size / 2 + 0.5)
  c0 = math.max(1, math.min(n - size + 1, c0))
  r0 = math.max(1, math.min(n - size + 1, r0))
  local out = {}
  for key, v in pairs(item) do out[key] = v end
  for _, key in ipairs({"image", "labels", "activity", "attenuation"}) do
    out[key] = crop2d(item[key], r0, c0, size)
  end
  out.landmarks = {}
  for name, p in pairs(item.landmarks) do
    local x, y = p.x - (c0 - 1), p.y - (r0 - 1)
    out.landmarks[name] = {x = x, y = y, x_mm = (x - 1) * item.pixel_mm, y_mm = (y - 1) * item.pixel_mm,
                           inside = x >= 0.5 and y >= 0.5 and x <= size + 0.5 and y <= size + 0.5}
  end
  out.crop_origin = {x = c0, y = r0}
  return out
end

local function add_masks(item)
  item.masks = {
    ventricle = item.labels:eq(M.LABELS.ventricle),
    myocardium = item.labels:eq(M.LABELS.myocardium),
    liver = item.labels:eq(M.LABELS.liver),
  }
  return item
end

--- A labelled dataset of simulated patients.
-- @tparam table opts `n=12`, `seed=1`, `view="short_axis"` (a view name, or "mixed" to cycle
--   through the three), `crop="heart"` (false: the whole matrix), `crop_size` (default 32 at
--   6.4 mm, i.e. 205 mm whatever the pixel size), `jitter=2`
--   (pixels, seeded shift of the crop centre), and every option of `simulate`.
-- @treturn table a list of items `{image, labels, masks={ventricle, myocardium, liver},
--   landmarks, pixel_mm, activity, view, seed, params}`; a landmark may lie outside the crop
--   (its `inside` field is false then, e.g. a liver dome far below the heart)
-- @usage local data = fs.spect.dataset{n = 12, seed = 7}
function M.dataset(opts)
  local op = "spect.dataset"
  opts = args.options(op, opts, DATASET_KEYS)
  local n = args.integer(op, "n", opts.n or 12, 1)
  local seed = args.integer(op, "seed", opts.seed or 1, 0)
  local view = check_view(op, opts.view or "short_axis", true)
  local matrix = check_grid(op, opts)
  local crop = opts.crop == nil and "heart" or opts.crop
  if crop ~= "heart" and crop ~= false then
    error(("%s: option 'crop' must be \"heart\" or false, got %s"):format(op, tostring(crop)), 2)
  end
  local size = opts.crop_size or math.floor(204.8 / (opts.pixel_mm or 6.4) + 0.5) -- 32 at 6.4 mm
  if crop then args.integer(op, "crop_size", size, 1, matrix) end
  local jitter = args.number(op, "jitter", opts.jitter or 2, 0)
  local gen = core.generator(seed)
  local items = {}
  for i = 1, n do
    local o = {}
    for _, key in ipairs(SIMULATE_KEYS) do o[key] = opts[key] end
    o.seed = seed * 100003 + i
    o.view = view == "mixed" and M.VIEWS[(i - 1) % 3 + 1] or view
    local item = M.simulate(o)
    item.sinogram = nil
    if crop then
      local c = item.landmarks.lv_centre
      local jx = jitter > 0 and gen:uniform(-jitter, jitter) or 0
      local jy = jitter > 0 and gen:uniform(-jitter, jitter) or 0
      item = M.crop(item, c.x + jx, c.y + jy, size)
    end
    items[i] = add_masks(item)
  end
  return items
end

-- ---------------------------------------------------------------------------------------
-- Realism figures

local function region_mean(img, mask)
  local m = mask:sum():item()
  if m == 0 then return 0 / 0 end
  return (img * mask):sum():item() / m
end

--- Full width at half maximum (mm) of a peaked image along its row and column through the
-- maximum, with linear interpolation of the half-maximum crossings.
function M.fwhm(img, pixel_mm)
  local t = img:totable()
  local h, w = #t, #t[1]
  local best, br, bc = -math.huge, 1, 1
  for r = 1, h do for c = 1, w do if t[r][c] > best then best, br, bc = t[r][c], r, c end end end
  local half = best / 2
  local function width(get, len, i0)
    local lo, hi = i0, i0
    while lo > 1 and get(lo - 1) > half do lo = lo - 1 end
    while hi < len and get(hi + 1) > half do hi = hi + 1 end
    local left = lo > 1 and (lo - 1) + (half - get(lo - 1)) / (get(lo) - get(lo - 1)) or lo
    local right = hi < len and hi + (get(hi) - half) / (get(hi) - get(hi + 1)) or hi
    return (right - left) * pixel_mm
  end
  local fx = width(function(c) return t[br][c] end, w, bc)
  local fy = width(function(r) return t[r][bc] end, h, br)
  return (fx + fy) / 2, fx, fy
end

--- Measures the figures that show the simulator is realistic (each is asserted in
-- spec/spect_spec.lua). Returns a table:
--   fwhm_mm: reconstructed FWHM of a point source at the LV centre of a phantom patient,
--     noiseless, through the chain of `simulate` (contour orbit, attenuation, PSF, scatter,
--     OSEM with attenuation/PSF/scatter modelling, Butterworth 0.5 cycles/cm order 5);
--   contrast: mean myocardium / mean LV blood pool in reconstructed short-axis slices;
--   inferior_ratio_nc / inferior_ratio_ac: inferior / anterior wall counts without and with
--     attenuation correction (short axis, homogeneous myocardium, no defect, no breast, noiseless;
--     mean of 8 patients), and inferior_drop = 1 - nc / ac, the loss that attenuation causes;
--   cov_low / cov_high: pixel noise (std over noise draws / mean) in the myocardium at
--     `counts` and 4 x `counts`; their ratio is ~2 for Poisson statistics.
function M.realism(opts)
  opts = args.options("spect.realism", opts, {"counts"})
  local counts = opts.counts or 3e5
  local out = {}
  -- point source at the LV centre of a patient (body, lungs, spine attenuate), noiseless
  local ph = core.spect.phantom({seed = 11, n = 192, pixel_mm = 6.4 / 3, view = "short_axis"})
  local c = ph.landmarks.lv_centre
  local point = core.zeros(192, 192)
  point:set(math.floor(c.y_mm / ph.pixel_mm + 0.5) + 1, math.floor(c.x_mm / ph.pixel_mm + 0.5) + 1, 1.0)
  local it = M.simulate({seed = 11, view = "short_axis", activity = point, counts = false})
  out.fwhm_mm = M.fwhm(it.image, 6.4)
  -- contrast over a few noisy short-axis slices
  local s = 0
  for i = 1, 4 do
    local it = M.simulate({seed = 100 + i, view = "short_axis", counts = counts, level = 0.45})
    s = s + region_mean(it.image, it.labels:eq(2)) / region_mean(it.image, it.labels:eq(1))
  end
  out.contrast = s / 4
  -- inferior-wall attenuation: sectors of the myocardium below / above the cavity centre
  local clean = {seed = 21, view = "short_axis", defect_prob = 0, hotspot_prob = 0, breast_prob = 0,
                 liver_uptake = 0.3, liver_gap_mm = 30, level = 0.45, counts = false}
  local function ratio(ac)
    local sum = 0
    for seed = 21, 28 do -- averaged over eight patients
      clean.seed, clean.attenuation_correction = seed, ac
      local it = M.simulate(clean)
      local myo = it.labels:eq(2)
      local cy = it.landmarks.lv_centre.y
      local n = myo:shape()[1]
      local rows = core.arange(1, n + 1):view(n, 1):expand(n, n)
      local below = rows:gt(cy + 1.5):mul(myo)
      local above = rows:lt(cy - 1.5):mul(myo)
      sum = sum + region_mean(it.image, below) / region_mean(it.image, above)
    end
    return sum / 8
  end
  clean.counts = false
  out.inferior_ratio_nc = ratio(false)
  out.inferior_ratio_ac = ratio(true)
  out.inferior_drop = 1 - out.inferior_ratio_nc / out.inferior_ratio_ac
  clean.seed = 21
  clean.attenuation_correction = nil
  -- noise against counts
  local function cov(c)
    local imgs, it = {}, nil
    for r = 1, 6 do
      local o = {}
      for key, v in pairs(clean) do o[key] = v end
      o.counts, o.noise_seed = c, 1000 + r
      it = M.simulate(o)
      imgs[r] = it.image
    end
    local stack = core.stack(imgs, 1)
    local myo = it.labels:eq(2)
    return region_mean(stack:var(1):sqrt(), myo) / region_mean(stack:mean(1), myo)
  end
  out.cov_low = cov(counts)
  out.cov_high = cov(4 * counts)
  return out
end

return M
