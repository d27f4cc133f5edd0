--- fewshot.prnet.localize: one-shot (and few-shot) landmark localisation with trained PRNet-2D
-- models (Lei et al.'s RPR-Loc, in 2D). Reached as `fs.prnet.localize` and
-- `fs.prnet.localizer` (the support's latents computed once, then one call per query).
--
-- For each landmark:
-- 1. coarse: `samples` random patches of the query centred on its body give latents z_q; the
--    support patch centred on the landmark gives z_s; each query patch at centre c predicts
--    c + r * tanh(z_s - z_q) (mm, then pixels). `average = "predictions"` (default) averages
--    those predictions over query patches and supports; `"latents"` (the paper's form)
--    averages the latents first (query latents with their centres, support latents) and moves
--    once. Without a coarse model (nil or false) the start is the support's coordinates (their mean).
-- 2. fine (when `fine` is given): the query is re-cropped at the estimate (rounded to a pixel)
--    and moved by fine_r * tanh(z_s' - z_q') with the fine model, `fine_steps` times.
-- 3. refine (when `refine = {window=, patch=, prior=}` is given): normalised cross-correlation
--    of the support's template (patch x patch around its landmark, as fs.prnet.baselines cuts
--    it) searched within +/- window px of the estimate (fs.match.best); `prior` (px) subtracts
--    d^2 / (2 prior^2) from each position's NCC, d its distance from the estimate, so that a
--    template that matches almost as well all along an edge (the liver dome) stays near PRNet's
--    estimate while a distinctive one goes to its peak; with several supports the
--    best-scoring match wins. A combined method: PRNet's estimate seeds template matching.
--    `refine.by_landmark = {[name] = {window=, patch=, prior=}}` gives a landmark settings of
--    its own (each key it leaves out is the refine's; `prior = false` searches it flat), e.g.
--    chosen per landmark on validation images.
-- Images are divided by their maximum first (fewshot.prnet.pairs conventions). The patch side
-- is read from each model's weights; the latent must be 2-D (x, y).
-- @module fewshot.prnet.localize
local core = require "fewshot.core"
local args = require "fewshot.args"
local Pairs = require "fewshot.prnet.pairs"
local B = require "fewshot.prnet.baselines"

local M = {}

--- The patch side a PRNet module was built for, from its weight shapes.
function M.patch_of(model)
  local depth = 0
  for _, k in ipairs(model:state_dict_keys()) do
    local lvl = k:match("^enc%.(%d+)%.")
    if lvl then depth = math.max(depth, tonumber(lvl) + 1) end
  end
  local sd = model:state_dict()
  local fc1, bott = sd["fc1.weight"], sd["bottleneck.conv.weight"]
  if not fc1 or not bott or depth == 0 then
    error("prnet.localize: the model is not a PRNet (fs.nn.prnet): no enc.*, bottleneck, fc1", 3)
  end
  local side = math.floor(math.sqrt(fc1:shape()[2] / bott:shape()[1]) + 0.5)
  return side * 2 ^ depth // 1, sd["fc3.weight"]:shape()[1]
end

local KEYS = {"coarse", "fine", "r", "fine_r", "support", "query", "samples", "seed",
              "generator", "average", "fine_steps", "refine", "landmarks", "body_threshold",
              "pixel_mm"}

-- Encodes a list of (P, P) patches in one batch, in eval mode without the tape: (N, 2).
local function encode(model, patches)
  local x = core.stack(patches, 1):unsqueeze(2):contiguous()
  return core.no_grad(function() return model:encode(x) end):totable()
end

local function check_support(op, support)
  if type(support) ~= "table" or #support == 0 then
    error(op .. ": option 'support' must be a non-empty list of {image=, landmarks=}", 3)
  end
  for i, s in ipairs(support) do
    if type(s) ~= "table" or not Pairs.is_tensor(s.image) or type(s.landmarks) ~= "table" then
      error(("%s: support[%d] needs image (a tensor) and landmarks"):format(op, i), 3)
    end
    if s.image:dim() ~= 2 then
      error(("%s: support[%d].image must be 2-D (H, W), got %d dims"):format(op, i, s.image:dim()), 3)
    end
  end
end

local function model_spec(op, name, model, r, rname)
  if model == nil or model == false then return nil end
  if type(model) ~= "userdata" or not pcall(function() return model.encode end) then
    error(("%s: option '%s' must be a PRNet module (fs.nn.prnet)"):format(op, name), 3)
  end
  if r == nil then error(("%s: option '%s' (mm) is required with '%s'"):format(op, rname, name), 3) end
  r = args.number(op, rname, r, 0, nil, true)
  local patch, latent = M.patch_of(model)
  if latent ~= 2 then
    error(("%s: the %s model's latent has %d dims; localisation needs 2 (x, y)"):format(op, name, latent), 3)
  end
  return {model = model, r = r, patch = patch}
end

--- A localiser for one support set: function(query) -> result (see localize).
-- @tparam table opts the options of localize without `query`
function M.localizer(opts, op)
  op = op or "prnet.localizer"
  opts = args.options(op, opts, KEYS)
  check_support(op, opts.support)
  if not opts.coarse and not opts.fine and opts.refine == nil then
    error(op .. ": give at least one of 'coarse', 'fine' or 'refine'", 3)
  end
  local coarse = model_spec(op, "coarse", opts.coarse, opts.r, "r")
  local fine = model_spec(op, "fine", opts.fine, opts.fine_r, "fine_r")
  local samples = args.integer(op, "samples", opts.samples or 15, 1)
  local average = args.choice(op, "average", opts.average or "predictions", {"predictions", "latents"})
  local fine_steps = args.integer(op, "fine_steps", opts.fine_steps or 1, 0)
  local thr = args.number(op, "body_threshold", opts.body_threshold or 0.05, 0, 1)
  -- refine settings: where (the option's name), t (its table), base (what t leaves out)
  local function refine_settings(where, t, keys, base)
    if type(t) ~= "table" then error(("%s: option '%s' must be {window=, patch=}"):format(op, where), 4) end
    args.options(op .. ": " .. where, t, keys)
    local out = {window = t.window ~= nil and args.integer(op, where .. ".window", t.window, 0) or base.window,
                 patch = t.patch ~= nil and args.integer(op, where .. ".patch", t.patch, 1) or base.patch,
                 prior = base.prior}
    if t.prior == false then out.prior = nil
    elseif t.prior ~= nil then out.prior = args.number(op, where .. ".prior", t.prior, 0) end
    if out.patch % 2 == 0 then
      error(("%s: option '%s.patch' must be odd, got %d"):format(op, where, out.patch), 4)
    end
    return out
  end
  local refine, refine_of
  if opts.refine ~= nil then
    refine = refine_settings("refine", opts.refine, {"window", "patch", "prior", "by_landmark"},
                             {window = 3, patch = 21})
    local by = opts.refine.by_landmark
    if by ~= nil and type(by) ~= "table" then
      error(op .. ": option 'refine.by_landmark' must be a table {[name] = {window=, patch=, prior=}}", 3)
    end
    refine_of = {}
    for name, t in pairs(by or {}) do
      if type(name) ~= "string" then error(op .. ": refine.by_landmark's keys must be landmark names", 3) end
      refine_of[name] = refine_settings("refine.by_landmark." .. name, t, {"window", "patch", "prior"}, refine)
    end
  end
  local g = opts.generator or core.generator(args.integer(op, "seed", opts.seed or 0, 0))
  local support = opts.support
  -- the landmark names: given, or those of the first support (sorted)
  local names = opts.landmarks
  if names == nil then
    names = {}
    for name, p in pairs(support[1].landmarks) do
      if p.inside ~= false then names[#names + 1] = name end
    end
    table.sort(names)
  end
  if #names == 0 then error(op .. ": the support marks no landmark", 3) end
  if refine then -- each landmark's settings; by_landmark may name only landmarks localised
    local known = {}
    for _, name in ipairs(names) do
      known[name] = true
      refine_of[name] = refine_of[name] or refine
    end
    for name in pairs(refine_of) do
      if not known[name] then
        error(("%s: refine.by_landmark names '%s', which is not a landmark localised here"):format(op, name), 3)
      end
    end
  end
  -- supports: normalised, padded per patch side; landmarks checked inside their images
  local sup = {}
  for i, s in ipairs(support) do
    local sh = s.image:shape()
    local e = {image = s.image, norm = Pairs.normalize(s.image), H = sh[1], W = sh[2], lm = {},
               pixel_mm = s.pixel_mm}
    for _, name in ipairs(names) do
      local p = s.landmarks[name]
      if type(p) ~= "table" or type(p.x) ~= "number" or type(p.y) ~= "number" or p.inside == false then
        error(("%s: support[%d] has no landmark '%s'"):format(op, i, name), 3)
      end
      if p.x < 1 or p.x > sh[2] or p.y < 1 or p.y > sh[1] then
        error(("%s: support[%d] landmark '%s' at (%g, %g) is outside its image (%d, %d)"):format(op,
          i, name, p.x, p.y, sh[1], sh[2]), 3)
      end
      e.lm[name] = {x = p.x, y = p.y}
    end
    sup[i] = e
  end
  -- the support latents of each model, once: z[model][name][support] = {zx, zy}
  local function support_latents(spec)
    local patches, where = {}, {}
    for i, e in ipairs(sup) do
      local padded = Pairs.pad(e.norm, spec.patch // 2)
      for _, name in ipairs(names) do
        patches[#patches + 1] = Pairs.crop(padded, e.lm[name].x, e.lm[name].y, spec.patch, e.H, e.W)
        where[#where + 1] = {name, i}
      end
    end
    local z = encode(spec.model, patches)
    local out = {}
    for _, name in ipairs(names) do out[name] = {} end
    for k, w in ipairs(where) do out[w[1]][w[2]] = z[k] end
    return out
  end
  local function with_eval(model, f)
    local was = model:is_training()
    model:eval()
    local ok, a = pcall(f)
    if was then model:train() end
    if not ok then error(a, 0) end
    return a
  end
  local zc = coarse and with_eval(coarse.model, function() return support_latents(coarse) end)
  local zf = fine and with_eval(fine.model, function() return support_latents(fine) end)
  local templates
  if refine then
    templates = {}
    for _, name in ipairs(names) do
      templates[name] = {}
      local patch = refine_of[name].patch
      for i, e in ipairs(sup) do
        if patch > e.H or patch > e.W then
          error(("%s: refine.patch %d is larger than support[%d]'s image (%d, %d)"):format(op,
            patch, i, e.H, e.W), 3)
        end
        local t, dx, dy = B.template(e.image, e.lm[name].x, e.lm[name].y, patch)
        templates[name][i] = {t = t, dx = dx, dy = dy}
      end
    end
  end

  return function(query)
    local img, mm = query, opts.pixel_mm
    if not Pairs.is_tensor(query) then
      if type(query) ~= "table" or not Pairs.is_tensor(query.image) then
        error(op .. ": query must be an (H, W) tensor or an item with image", 2)
      end
      img, mm = query.image, query.pixel_mm or mm
    end
    if img:dim() ~= 2 then error(("%s: query must be 2-D (H, W), got %d dims"):format(op, img:dim()), 2) end
    mm = mm or sup[1].pixel_mm or 1
    local sh = img:shape()
    local H, W = sh[1], sh[2]
    local norm = Pairs.normalize(img)
    local est, stages = {}, {}
    for _, name in ipairs(names) do -- start: the support's coordinates (their mean)
      local x, y = 0, 0
      for _, e in ipairs(sup) do x, y = x + e.lm[name].x, y + e.lm[name].y end
      est[name] = {x / #sup, y / #sup}
    end
    local function snapshot(stage)
      local s = {}
      for name, p in pairs(est) do s[name] = {x = p[1], y = p[2]} end
      stages[stage] = s
    end
    local function clampx(x) return math.max(1, math.min(W, x)) end
    local function clampy(y) return math.max(1, math.min(H, y)) end
    if coarse then
      local padded = Pairs.pad(norm, coarse.patch // 2)
      local nv = norm:totable()
      local body = {}
      for y = 1, H do
        for x = 1, W do if nv[y][x] > thr then body[#body + 1] = {x, y} end end
      end
      if #body == 0 then body[1] = {(W + 1) // 2, (H + 1) // 2} end
      local centres, patches = {}, {}
      for j = 1, samples do
        local c = body[g:randint(#body)]
        centres[j] = c
        patches[j] = Pairs.crop(padded, c[1], c[2], coarse.patch, H, W)
      end
      local zq = with_eval(coarse.model, function() return encode(coarse.model, patches) end)
      local r_px = coarse.r / mm
      for _, name in ipairs(names) do
        local zs = zc[name]
        local x, y = 0, 0
        if average == "latents" then
          local sx, sy, qx, qy, cx, cy = 0, 0, 0, 0, 0, 0
          for _, z in ipairs(zs) do sx, sy = sx + z[1], sy + z[2] end
          for j = 1, samples do
            qx, qy = qx + zq[j][1], qy + zq[j][2]
            cx, cy = cx + centres[j][1], cy + centres[j][2]
          end
          sx, sy, qx, qy = sx / #zs, sy / #zs, qx / samples, qy / samples
          x = cx / samples + r_px * math.tanh(sx - qx)
          y = cy / samples + r_px * math.tanh(sy - qy)
        else
          for _, z in ipairs(zs) do
            for j = 1, samples do
              x = x + centres[j][1] + r_px * math.tanh(z[1] - zq[j][1])
              y = y + centres[j][2] + r_px * math.tanh(z[2] - zq[j][2])
            end
          end
          x, y = x / (#zs * samples), y / (#zs * samples)
        end
        est[name] = {x, y}
      end
      snapshot("coarse")
    end
    if fine then
      local padded = Pairs.pad(norm, fine.patch // 2)
      local r_px = fine.r / mm
      for _ = 1, fine_steps do
        local patches, at = {}, {}
        for k, name in ipairs(names) do
          local cx = math.floor(clampx(est[name][1]) + 0.5)
          local cy = math.floor(clampy(est[name][2]) + 0.5)
          at[k] = {cx, cy}
          patches[k] = Pairs.crop(padded, cx, cy, fine.patch, H, W)
        end
        local zq = with_eval(fine.model, function() return encode(fine.model, patches) end)
        for k, name in ipairs(names) do
          local x, y = 0, 0
          for _, z in ipairs(zf[name]) do
            x = x + at[k][1] + r_px * math.tanh(z[1] - zq[k][1])
            y = y + at[k][2] + r_px * math.tanh(z[2] - zq[k][2])
          end
          est[name] = {x / #zf[name], y / #zf[name]}
        end
      end
      snapshot("fine")
    end
    if refine then
      for _, name in ipairs(names) do
        local set = refine_of[name]
        local h = (set.patch - 1) // 2
        if set.patch > H or set.patch > W then
          error(("%s: refine.patch %d is larger than the query (%d, %d)"):format(op, set.patch, H, W), 2)
        end
        local bx, by, best = nil, nil, -math.huge
        for _, t in ipairs(templates[name]) do
          -- where the template's centre goes if the estimate is right (match.best rounds it
          -- for the window; the prior is measured from it as it is)
          local cx = math.max(h + 1, math.min(W - h, est[name][1] - t.dx))
          local cy = math.max(h + 1, math.min(H - h, est[name][2] - t.dy))
          local x, y, score = core.match.best(img, t.t, {window = set.window, centre = {cx, cy},
                                                          prior = set.prior})
          if score > best then bx, by, best = x + t.dx, y + t.dy, score end
        end
        est[name] = {bx, by}
      end
      snapshot("refine")
    end
    local out = {}
    for _, name in ipairs(names) do
      local x, y = est[name][1], est[name][2]
      out[name] = {x = x, y = y, x_mm = (x - 1) * mm, y_mm = (y - 1) * mm}
    end
    return {landmarks = out, stages = stages, names = names}
  end
end

--- Localises the support's landmarks on one query.
-- @tparam table opts `coarse` (a PRNet module trained on whole-image pairs), `r` (its range,
--   mm), `fine` (a PRNet module trained with fine_range), `fine_r` (mm), `support` (list of
--   `{image=, landmarks=, pixel_mm=}`, landmarks in 1-based pixels), `query` (an item or an
--   (H, W) tensor), `samples=15` (coarse query patches), `seed=0` (or `generator=`),
--   `average="predictions"`|`"latents"`, `fine_steps=1`, `refine=nil` (`{window=3, patch=21, prior=nil,
--   by_landmark=nil}`),
--   `landmarks` (names; default: all of support[1]'s), `body_threshold=0.05`, `pixel_mm`
--   (for a tensor query; default the support's)
-- @treturn table `{landmarks = {[name] = {x=, y=, x_mm=, y_mm=}}, stages = {coarse=, fine=,
--   refine=}, names = {...}}` (pixels 1-based; mm from pixel (1, 1); each stage the estimate
--   after it)
-- @usage local r = fs.prnet.localize{coarse = net, r = 320, support = {train[1]}, query = test[1]}
function M.localize(opts)
  local op = "prnet.localize"
  args.options(op, opts, KEYS)
  if opts == nil or opts.query == nil then error(op .. ": option 'query' is required", 2) end
  local o = {}
  for k, v in pairs(opts) do if k ~= "query" then o[k] = v end end
  return M.localizer(o, op)(opts.query)
end

return M
