--- fewshot.prnet.evaluate: localisation errors in mm of PRNet and the three baselines
-- (fewshot.prnet.baselines: identity, ncc, ncc_window) on the same supports and queries, in
-- the table fs.prnet.format prints. Reached as `fs.prnet.evaluate`.
--
-- Method "prnet" is fs.prnet.localize with the given options; `variants = {name = {opts}}`
-- adds one method per entry (the same options with those overridden: e.g.
-- `{["prnet+ncc"] = {refine = {window = 3}}}`), and `stages = true` adds each stage of every
-- PRNet method as its own method ("prnet/coarse", "prnet/fine", "prnet/refine"), all measured
-- in the same run on the same query patches (each method's generator starts from `seed`).
-- @module fewshot.prnet.evaluate
local core = require "fewshot.core"
local args = require "fewshot.args"
local B = require "fewshot.prnet.baselines"
local Loc = require "fewshot.prnet.localize"

local M = {}

local LOC_KEYS = {"coarse", "fine", "r", "fine_r", "samples", "average", "fine_steps", "refine",
                  "body_threshold"}
local KEYS = {"support", "queries", "seed", "patch", "window", "variants", "stages", "baselines"}
for _, k in ipairs(LOC_KEYS) do KEYS[#KEYS + 1] = k end

--- Errors of PRNet (and variants) and the baselines.
-- @tparam table opts the localiser's (`coarse`, `r`, `fine`, `fine_r`, `samples=15`,
--   `average`, `fine_steps`, `refine`, `body_threshold`: fs.prnet.localize), `support` (items
--   with landmarks), `queries` (items with the true landmarks), `seed=0`, `patch=21` and
--   `window=5` (the NCC baselines'), `variants=nil`, `stages=false`, `baselines=true`
-- @treturn table `{methods = {prnet = M, identity = M, ncc = M, ncc_window = M, ...},
--   landmarks = {names}, n_support=, n_query=}` with `M = {pooled = S, by_landmark = {[name] =
--   S}}`, `S = {n=, mean=, median=, p95=, within_pixel=, within_10mm=, ms_per_query=}` (mm)
-- @usage print(fs.prnet.format(fs.prnet.evaluate{coarse = net, r = 320, support = {train[1]},
--   queries = test}))
function M.evaluate(opts)
  local op = "prnet.evaluate"
  opts = args.options(op, opts, KEYS)
  local support, queries = opts.support, opts.queries
  for _, k in ipairs({"support", "queries"}) do
    if type(opts[k]) ~= "table" or #opts[k] == 0 then
      error(("%s: option '%s' must be a non-empty list of items"):format(op, k), 2)
    end
  end
  local seed = args.integer(op, "seed", opts.seed or 0, 0)
  local result
  if opts.baselines ~= false then
    local ok, r = pcall(B.evaluate, support, queries, {patch = opts.patch, window = opts.window})
    if not ok then error((tostring(r):gsub("^prnet%.baselines", op)), 2) end
    result = r
  else
    result = {methods = {}, landmarks = B.common_names(support, queries), n_support = #support,
              n_query = #queries}
  end
  local names = result.landmarks
  local variants = {prnet = {}}
  if opts.variants ~= nil then
    if type(opts.variants) ~= "table" then error(op .. ": option 'variants' must be a table", 2) end
    for name, v in pairs(opts.variants) do
      if type(v) ~= "table" then error(("%s: variants.%s must be a table of options"):format(op, tostring(name)), 2) end
      args.options(op .. ": variants." .. tostring(name), v, LOC_KEYS)
      variants[name] = v
    end
  end
  for vname, over in pairs(variants) do
    local lo = {support = support, landmarks = names, seed = seed}
    for _, k in ipairs(LOC_KEYS) do lo[k] = opts[k] end
    for k, v in pairs(over) do lo[k] = v end
    local ok, loc = pcall(Loc.localizer, lo, op)
    if not ok then error(loc, 2) end
    local errs = {} -- errs[method][name] = {...}
    local seconds = 0
    for _, q in ipairs(queries) do
      local t0 = core.clock()
      local found = loc(q)
      seconds = seconds + (core.clock() - t0)
      local sets = {[vname] = found.landmarks}
      if opts.stages then
        for stage, s in pairs(found.stages) do sets[vname .. "/" .. stage] = s end
      end
      for method, lm in pairs(sets) do
        errs[method] = errs[method] or {}
        for _, name in ipairs(names) do
          local t = q.landmarks[name]
          if t and t.inside ~= false then
            local e = math.sqrt((lm[name].x - t.x) ^ 2 + (lm[name].y - t.y) ^ 2) * q.pixel_mm
            errs[method][name] = errs[method][name] or {}
            table.insert(errs[method][name], e)
          end
        end
      end
    end
    local pixel_mm = queries[1].pixel_mm
    for method, by in pairs(errs) do
      local pooled = {}
      for _, name in ipairs(names) do
        for _, e in ipairs(by[name] or {}) do pooled[#pooled + 1] = e end
      end
      local m = {pooled = B.stats(pooled, pixel_mm, method == vname and 1000 * seconds / #queries or nil),
                 by_landmark = {}}
      for _, name in ipairs(names) do m.by_landmark[name] = B.stats(by[name] or {}, pixel_mm, nil) end
      result.methods[method] = m
    end
  end
  return result
end

return M
