--- fewshot.prnet.baselines: the localisation baselines a learned one-shot localiser (PRNet)
-- must beat, measured in mm on items as fs.spect.dataset (or fs.data.folder) gives them.
--
-- For each query image and landmark, a method predicts a position from the support items:
--   identity   - the support's coordinates (with several supports, their mean);
--   ncc        - the patch (default 21 x 21) of the support image centred on its landmark,
--                matched by normalised cross-correlation over the whole query (fs.match.best);
--   ncc_window - the same, searched only within +/- window px of the support's position.
-- With several supports, ncc and ncc_window keep the prediction whose template scores highest.
-- A support patch that would leave the image is moved inside and the prediction moved back by
-- the same amount. A landmark marked `inside = false` (outside a crop) is skipped.
-- Errors are Euclidean distances in mm (pixel distance * the query's pixel_mm).
-- @module fewshot.prnet.baselines
local core = require "fewshot.core"
local args = require "fewshot.args"

local M = {}

M.METHODS = {"identity", "ncc", "ncc_window"}

local function is_tensor(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "fewshot.Tensor"
end

local function check_items(op, what, items)
  if type(items) ~= "table" or #items == 0 then
    error(("%s: %s must be a non-empty list of items, got %s"):format(op, what, type(items)), 3)
  end
  for i, it in ipairs(items) do
    if type(it) ~= "table" or type(it.landmarks) ~= "table" or type(it.pixel_mm) ~= "number"
        or not is_tensor(it.image) then
      error(("%s: %s[%d] needs image (a tensor), landmarks and pixel_mm"):format(op, what, i), 3)
    end
    if it.image:dim() ~= 2 then
      error(("%s: %s[%d].image must be 2-D (H, W), got %d dims"):format(op, what, i, it.image:dim()), 3)
    end
  end
end

local function usable(p) return p and p.inside ~= false end

-- Names present (and inside) in every support and at least one query, sorted.
function M.common_names(support, query)
  local names = {}
  for name, p in pairs(support[1].landmarks) do
    local ok = usable(p)
    for i = 2, #support do ok = ok and usable(support[i].landmarks[name]) end
    local any = false
    for _, q in ipairs(query) do any = any or usable(q.landmarks[name]) end
    if ok and any then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- The template around (x, y) (1-based pixels) of img, moved inside the image; returns the
-- template and the offset (landmark - template centre) in pixels.
function M.template(img, x, y, size)
  local shape = img:shape()
  local H, W, h = shape[1], shape[2], (size - 1) // 2
  local cx = math.max(h + 1, math.min(W - h, math.floor(x + 0.5)))
  local cy = math.max(h + 1, math.min(H - h, math.floor(y + 0.5)))
  return img:narrow(1, cy - h, size):narrow(2, cx - h, size):contiguous(), x - cx, y - cy
end

--- Error statistics of a list of errors (mm): {n, mean, median, p95, within_pixel,
-- within_10mm, ms_per_query}.
function M.stats(errors, pixel_mm, ms)
  local n = #errors
  local s = {n = n, ms_per_query = ms}
  if n == 0 then return s end
  local sorted = {}
  local sum, px, ten = 0, 0, 0
  for i, e in ipairs(errors) do
    sorted[i] = e
    sum = sum + e
    if e <= pixel_mm then px = px + 1 end
    if e <= 10 then ten = ten + 1 end
  end
  table.sort(sorted)
  local function quantile(q) -- linear between order statistics (numpy's default)
    local h = (n - 1) * q + 1
    local lo = math.floor(h)
    local hi = math.min(n, lo + 1)
    return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo])
  end
  s.mean = sum / n
  s.median = quantile(0.5)
  s.p95 = quantile(0.95)
  s.within_pixel = px / n
  s.within_10mm = ten / n
  return s
end

--- Localisation errors of the three baselines.
-- @tparam table support list of items with a landmark marked (`landmarks[name] = {x=, y=}` in
--   1-based pixels), `image`, `pixel_mm`
-- @tparam table query list of items with the true landmarks
-- @tparam[opt] table opts `patch=21` (odd template side, px), `window=5` (px, ncc_window's
--   search radius), `landmarks` (list of names; default: every name in all supports and some
--   query)
-- @treturn table `{methods = {identity = M, ncc = M, ncc_window = M}, landmarks = {names},
--   n_support=, n_query=}`, each `M = {pooled = S, by_landmark = {[name] = S}}` with
--   `S = {n=, mean=, median=, p95=, within_pixel=, within_10mm=, ms_per_query=}` (errors in mm;
--   within_pixel: error <= one pixel; ms_per_query: wall time of the method over all landmarks
--   of one query, mean over queries)
-- @usage local r = fs.prnet.baselines({data[1]}, {table.unpack(data, 2)}); print(fs.prnet.format(r))
function M.evaluate(support, query, opts)
  local op = "prnet.baselines"
  opts = args.options(op, opts, {"patch", "window", "landmarks"})
  check_items(op, "support", support)
  check_items(op, "query", query)
  local size = args.integer(op, "patch", opts.patch or 21, 1)
  if size % 2 == 0 then error(("%s: option 'patch' must be odd, got %d"):format(op, size), 2) end
  local window = args.integer(op, "window", opts.window or 5, 0)
  for i, it in ipairs(support) do
    local s = it.image:shape()
    if size > s[1] or size > s[2] then
      error(("%s: patch %d is larger than support[%d]'s image (%d, %d)"):format(op, size, i, s[1], s[2]), 2)
    end
  end
  local names = opts.landmarks or M.common_names(support, query)
  if #names == 0 then error(op .. ": no landmark is marked in every support and some query", 2) end
  for _, name in ipairs(names) do
    for i, it in ipairs(support) do
      if not usable(it.landmarks[name]) then
        error(("%s: support[%d] has no landmark '%s' inside its image"):format(op, i, name), 2)
      end
    end
  end
  -- the support templates, cut once
  local tpl = {}
  for _, name in ipairs(names) do
    tpl[name] = {}
    for i, it in ipairs(support) do
      local p = it.landmarks[name]
      local t, dx, dy = M.template(it.image, p.x, p.y, size)
      tpl[name][i] = {t = t, dx = dx, dy = dy, x = p.x, y = p.y}
    end
  end
  local predict = {
    identity = function(_, name)
      local x, y = 0, 0
      for _, s in ipairs(tpl[name]) do x, y = x + s.x, y + s.y end
      return x / #support, y / #support
    end,
    ncc = function(img, name)
      local bx, by, best = nil, nil, -math.huge
      for _, s in ipairs(tpl[name]) do
        local x, y, score = core.match.best(img, s.t)
        if score > best then bx, by, best = x + s.dx, y + s.dy, score end
      end
      return bx, by
    end,
    ncc_window = function(img, name)
      local bx, by, best = nil, nil, -math.huge
      local H, W = img:shape()[1], img:shape()[2]
      local h = (size - 1) // 2
      for _, s in ipairs(tpl[name]) do
        -- the window's centre is the template centre's position in the support, kept where
        -- the template fits in the query
        local cx = math.max(h + 1, math.min(W - h, s.x - s.dx))
        local cy = math.max(h + 1, math.min(H - h, s.y - s.dy))
        local x, y, score = core.match.best(img, s.t, {window = window, centre = {cx, cy}})
        if score > best then bx, by, best = x + s.dx, y + s.dy, score end
      end
      return bx, by
    end,
  }
  local result = {methods = {}, landmarks = names, n_support = #support, n_query = #query}
  for _, method in ipairs(M.METHODS) do
    local pooled, by = {}, {}
    for _, name in ipairs(names) do by[name] = {} end
    local seconds, pixel_mm = 0, query[1].pixel_mm
    for qi, q in ipairs(query) do
      local s = q.image:shape()
      if size > s[1] or size > s[2] then
        error(("%s: patch %d is larger than query[%d]'s image (%d, %d)"):format(op, size, qi, s[1], s[2]), 2)
      end
      local t0 = core.clock()
      local found = {}
      for _, name in ipairs(names) do
        if usable(q.landmarks[name]) then
          local x, y = predict[method](q.image, name)
          found[name] = {x, y}
        end
      end
      seconds = seconds + (core.clock() - t0)
      for name, p in pairs(found) do
        local t = q.landmarks[name]
        local e = math.sqrt((p[1] - t.x) ^ 2 + (p[2] - t.y) ^ 2) * q.pixel_mm
        pooled[#pooled + 1] = e
        table.insert(by[name], e)
      end
    end
    local ms = 1000 * seconds / #query
    local m = {pooled = M.stats(pooled, pixel_mm, ms), by_landmark = {}}
    for _, name in ipairs(names) do m.by_landmark[name] = M.stats(by[name], pixel_mm, nil) end
    result.methods[method] = m
  end
  return result
end

--- The result of evaluate as a text table: one block per method, the pooled row first.
function M.format(result)
  if type(result) ~= "table" or type(result.methods) ~= "table" then
    error("prnet.format: expected the table prnet.baselines returns", 2)
  end
  local lines = {("%d support(s) x %d queries; errors in mm"):format(result.n_support or 0,
    result.n_query or 0)}
  local head = ("%-18s %-24s %5s %7s %7s %7s %7s %7s %9s"):format("method", "landmark", "n",
    "mean", "median", "p95", "<=1px", "<=10mm", "ms/query")
  lines[#lines + 1] = head
  lines[#lines + 1] = string.rep("-", #head)
  local function row(method, name, s)
    if not s.mean then
      return ("%-18s %-24s %5d %7s"):format(method, name, s.n or 0, "-")
    end
    return ("%-18s %-24s %5d %7.1f %7.1f %7.1f %6.0f%% %6.0f%% %9s"):format(method, name, s.n,
      s.mean, s.median, s.p95, 100 * s.within_pixel, 100 * s.within_10mm,
      s.ms_per_query and ("%.2f"):format(s.ms_per_query) or "")
  end
  local order = {}
  for _, m in ipairs(M.METHODS) do if result.methods[m] then order[#order + 1] = m end end
  local extra = {}
  for name in pairs(result.methods) do
    local known = false
    for _, m in ipairs(M.METHODS) do known = known or m == name end
    if not known then extra[#extra + 1] = name end
  end
  table.sort(extra) -- other methods (PRNet and its variants) after the baselines, by name
  for _, name in ipairs(extra) do order[#order + 1] = name end
  for _, method in ipairs(order) do
    local m = result.methods[method]
    lines[#lines + 1] = row(method, "(pooled)", m.pooled)
    local names = {}
    for name in pairs(m.by_landmark or {}) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do lines[#lines + 1] = row("", name, m.by_landmark[name]) end
  end
  return table.concat(lines, "\n")
end

return M
