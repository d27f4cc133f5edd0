-- examples/prnet_seeds.lua: the README's localisation tables: PRNet-2D (coarse and fine, the
-- experiment's settings) trained with several seeds on the 12 simulated training patients
-- (seed 1), evaluated on held-out patients (`--queries test`: seed 2, the reported ones;
-- `validation`: seed 3, where the refinement's prior was chosen) against the three baselines,
-- and printed as mean +/- std over the training seeds, pooled and per landmark.
-- Usage: lua5.4 examples/prnet_seeds.lua [--cohort realistic|default] [--seeds 3]
--        [--queries test|validation] [--n 40] [--models DIR] [--grid]
--   --models DIR keeps the trained models there (coarse-COHORT-SEED.safetensors, fine-...) and
--   loads them when they exist, so one training serves both query sets; --grid adds the
--   validation grid of the prior (template 15/21, window 5/8, prior 4-10 px) as extra rows.
local fs = require "fewshot"
local experiment = require "fewshot.prnet.experiment"

local cohort, seeds, queries, n, models, grid = "realistic", 3, "test", 40, nil, false
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--cohort" then i = i + 1; cohort = arg[i]
  elseif a == "--seeds" then i = i + 1; seeds = math.tointeger(tonumber(arg[i]))
  elseif a == "--queries" then i = i + 1; queries = arg[i]
  elseif a == "--n" then i = i + 1; n = math.tointeger(tonumber(arg[i]))
  elseif a == "--models" then i = i + 1; models = arg[i]
  elseif a == "--grid" then grid = true
  else io.stderr:write("prnet_seeds: unknown argument " .. a .. "\n"); os.exit(2) end
  i = i + 1
end
if cohort ~= "realistic" and cohort ~= "default" then error("prnet_seeds: --cohort realistic|default") end
if queries ~= "test" and queries ~= "validation" then error("prnet_seeds: --queries test|validation") end
if not seeds or seeds < 1 or not n or n < 1 then error("prnet_seeds: --seeds and --n must be >= 1") end
fs.set_flush_denormal(true)
if models then assert(os.execute("mkdir -p '" .. models:gsub("'", "'\\''") .. "'")) end

local E = experiment.DEFAULT
local variation = cohort == "realistic" and "realistic" or nil
local train = fs.spect.dataset{n = E.train_n, seed = 1, crop = false, variation = variation}
local held = fs.spect.dataset{n = n, seed = queries == "test" and 2 or 3, crop = false,
                              variation = variation}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- the seed's coarse and fine models, trained as experiment.run trains them (or loaded)
local function models_of(seed)
  local cpath = models and ("%s/coarse-%s-%d.safetensors"):format(models, cohort, seed)
  local fpath = models and ("%s/fine-%s-%d.safetensors"):format(models, cohort, seed)
  if cpath and exists(cpath) and exists(fpath) then return fs.nn.load(cpath), fs.nn.load(fpath) end
  local t0 = fs.clock()
  local coarse, hc = fs.prnet.train{images = train, patch = 32, depth = 4, base = E.base, r = E.r,
    steps = E.steps, batch = E.batch, seed = seed, augment = E.augment, progress = false}
  local fine, hf = fs.prnet.train{images = train, patch = 16, depth = 3, base = E.base, r = E.fine_r,
    fine = E.fine_range, steps = E.fine_steps, batch = E.batch, seed = seed, augment = E.augment,
    progress = false}
  print(("seed %d trained in %.0f s; final coarse L_dis %.4f L_rec %.4f, fine L_dis %.4f L_rec %.4f"
    .. " (L_dis in units of r)"):format(seed, fs.clock() - t0, hc.dis[#hc.dis], hc.rec[#hc.rec],
    hf.dis[#hf.dis], hf.rec[#hf.rec]))
  if cpath then coarse:save(cpath); fine:save(fpath) end
  return coarse, fine
end

local variants = {["prnet+ncc"] = {fine = false, refine = E.refine},
                  ["flat search"] = {fine = false, refine = {window = 3, patch = 15}}}
if cohort == "realistic" then -- chosen on its validation patients (experiment.lua)
  variants["prnet+ncc per landmark"] = {fine = false, refine = experiment.REFINE_BY_LANDMARK}
end
if grid then
  for _, patch in ipairs({15, 21}) do
    for _, window in ipairs({5, 8}) do
      for _, prior in ipairs({4, 5, 6, 8, 10}) do
        variants[("t%d w%d prior %d"):format(patch, window, prior)] =
          {fine = false, refine = {window = window, patch = patch, prior = prior}}
      end
    end
  end
end

local acc, names = {}, nil -- acc[method][landmark or "(pooled)"][stat] = {per seed}
for seed = 1, seeds do
  local coarse, fine = models_of(seed)
  local r = fs.prnet.evaluate{coarse = coarse, r = E.r, fine = fine, fine_r = E.fine_r,
    support = {train[1]}, queries = held, samples = E.samples, stages = true, variants = variants}
  names = r.landmarks
  for m, M in pairs(r.methods) do
    if not m:match("/refine$") and not (m:match("/coarse$") and m ~= "prnet/coarse") then
      acc[m] = acc[m] or {}
      local function add(key, S)
        acc[m][key] = acc[m][key] or {mean = {}, median = {}, p95 = {}}
        for _, st in ipairs({"mean", "median", "p95"}) do table.insert(acc[m][key][st], S[st]) end
      end
      add("(pooled)", M.pooled)
      for name, S in pairs(M.by_landmark) do add(name, S) end
    end
  end
end

local function mean_std(v)
  local s, q = 0, 0
  for _, x in ipairs(v) do s = s + x end
  local m = s / #v
  for _, x in ipairs(v) do q = q + (x - m) ^ 2 end
  return m, #v > 1 and math.sqrt(q / (#v - 1)) or 0
end
local methods = {}
for m in pairs(acc) do methods[#methods + 1] = m end
table.sort(methods)
print(("%s cohort, %s patients (%d), one support, %d training seed(s); mm, mean ± std over seeds")
  :format(cohort, queries, n, seeds))
for _, m in ipairs(methods) do
  for k, key in ipairs({"(pooled)", table.unpack(names)}) do
    local A = acc[m][key]
    if A then
      local line = ("%-22s %-22s"):format(k == 1 and m or "", key)
      for _, st in ipairs({"mean", "median", "p95"}) do
        local mu, sd = mean_std(A[st])
        line = line .. ("  %s %5.1f ± %4.1f"):format(st, mu, sd)
      end
      if k == 1 then
        local per = {}
        for j, v in ipairs(A.p95) do per[j] = ("%.1f"):format(v) end
        line = line .. "  p95 per seed " .. table.concat(per, ", ")
      end
      print(line)
    end
  end
end
