--- fewshot.protonet.evaluate: accuracy of a Prototypical Network over fixed seeded episodes
-- (with a 95% interval, per class and as a confusion matrix), a nearest-prototype baseline in
-- pixel space, and leave-one-patient-out cross-validation.
-- Reached as `fs.protonet.evaluate`, `fs.protonet.ci95`, `fs.protonet.embed`, `fs.protonet.loocv`.
-- @module fewshot.protonet.evaluate
local core = require "fewshot.core"
local args = require "fewshot.args"
local P = require "fewshot.protonet.loss"
local data = require "fewshot.data"

local M = {}

-- The mean of a non-empty list and its sum of squared deviations from it.
local function moments(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  local mean = s / #xs
  local ss = 0
  for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
  return mean, ss
end

--- Mean and 95% confidence half-width of per-episode accuracies: 1.96 * std / sqrt(n), std the
-- population standard deviation (divisor n, as numpy.std in the usual few-shot code).
-- @tparam table accs a list of numbers
-- @treturn number mean
-- @treturn number ci95
-- @treturn number std
-- @usage local mean, ci = fs.protonet.ci95({0.5, 1, 1, 0.5})  -- 0.75, 0.245
function M.ci95(accs)
  local n = #accs
  if n == 0 then error("protonet.ci95: no values", 2) end
  local mean, ss = moments(accs)
  local std = math.sqrt(ss / n)
  return mean, 1.96 * std / math.sqrt(n), std
end

--- Mean and sample standard deviation (divisor n - 1; 0 for one value) of a list of numbers:
-- the spread over training seeds, repeats or folds that a headline number carries.
-- @tparam table xs a non-empty list of numbers
-- @treturn number mean
-- @treturn number sample std
-- @usage local m, sd = fs.protonet.mean_std({0.97, 1.0, 0.96})
function M.mean_std(xs)
  local n = #xs
  if n == 0 then error("protonet.mean_std: no values", 2) end
  local m, ss = moments(xs)
  return m, n > 1 and math.sqrt(ss / (n - 1)) or 0
end

--- Embeddings of images (N, C, H, W) without the tape: the model's output in eval mode (its
-- training mode is restored afterwards), or with embed="pixels" the flattened images (N, C*H*W).
-- @tparam Module|nil model
-- @tparam Tensor x (N, C, H, W)
-- @tparam[opt] string embed "model" (default) or "pixels"
-- @treturn Tensor (N, D)
function M.embed(model, x, embed)
  local guard <close> = core.no_grad()
  if embed == "pixels" then return x:reshape(x:shape()[1], -1) end
  local was = model:is_training()
  model:eval()
  local ok, e = pcall(model.forward, model, x)
  if was then model:train() end
  if not ok then error(e, 0) end
  if e:dim() ~= 2 then e = e:reshape(e:shape()[1], -1) end
  return e
end

-- The global classes of a sample list: sorted labels and their names.
local function class_list(samples)
  local seen, labels, names = {}, {}, {}
  for _, s in ipairs(samples) do
    if not seen[s.label] then seen[s.label] = s.class or tostring(s.label); labels[#labels + 1] = s.label end
  end
  table.sort(labels)
  local pos = {}
  for i, l in ipairs(labels) do names[i] = seen[l]; pos[l] = i end
  return labels, names, pos
end

-- Counts one episode's correct queries from its logits; adds to the confusion counts (rows:
-- true class, columns: predicted, by global position). Returns the episode's accuracy.
local function tally(logits, classes, ep, gpos, confusion)
  local pred = logits:argmax(2):totable()
  local correct = 0
  for i, ql in ipairs(ep.query_labels) do
    local p = classes[math.tointeger(pred[i])]
    if p == ql then correct = correct + 1 end
    local t, q = gpos[ep.labels[ql]], gpos[ep.labels[p]]
    confusion[t][q] = confusion[t][q] + 1
  end
  return correct / #ep.query_labels
end

-- Scores one episode given its stacked support and query tensors.
local function score(model, embed, distance, ep, gpos, confusion)
  local ns = ep.support:shape()[1]
  local all = core.cat({ep.support, ep.query}, 1)
  local e = M.embed(model, all, embed)
  local se, qe = e:narrow(1, 1, ns), e:narrow(1, ns + 1, e:shape()[1] - ns)
  local guard <close> = core.no_grad()
  local logits, classes = P.logits(se, ep.support_labels, qe, {distance = distance})
  return tally(logits, classes, ep, gpos, confusion)
end

-- Every sample's embedding once (eval mode, no tape), in chunks of 256: E (N, D) and the row
-- of each sample table. BatchNorm in eval mode makes an embedding independent of the batch it
-- is computed in, so episodes scored on these rows give what embedding each episode would
-- (up to float rounding in the GEMM's blocking), at a fraction of the cost.
local function embed_all(model, samples)
  local parts, row = {}, {}
  for a = 1, #samples, 256 do
    local imgs = {}
    for i = a, math.min(a + 255, #samples) do imgs[#imgs + 1] = samples[i].image; row[samples[i]] = i end
    parts[#parts + 1] = M.embed(model, core.stack(imgs, 1))
  end
  return #parts == 1 and parts[1] or core.cat(parts, 1), row
end

local function rows_of(list, row)
  local idx = {}
  for i, s in ipairs(list) do idx[i] = row[s] end
  return idx
end

-- Scores one episode on cached embeddings (see embed_all).
local function score_cached(E, row, distance, ep, gpos, confusion)
  local guard <close> = core.no_grad()
  local se = E:index_select(1, rows_of(ep.support_samples, row))
  local qe = E:index_select(1, rows_of(ep.query_samples, row))
  local logits, classes = P.logits(se, ep.support_labels, qe, {distance = distance})
  return tally(logits, classes, ep, gpos, confusion)
end

local function summarize(accs, names, confusion)
  local mean, ci, std = M.ci95(accs)
  local per_class = {}
  for i, name in ipairs(names) do
    local row, n = confusion[i], 0
    for _, c in ipairs(row) do n = n + c end
    per_class[name] = n > 0 and row[i] / n or nil
  end
  return {accuracy = mean, ci95 = ci, std = std, per_class = per_class, confusion = confusion,
          classes = names, episodes = #accs, accuracies = accs}
end

local function new_confusion(n)
  local c = {}
  for i = 1, n do c[i] = {}; for j = 1, n do c[i][j] = 0 end end
  return c
end

local EVAL_KEYS = {"model", "samples", "way", "shot", "query", "episodes", "seed", "distance",
                   "embed", "patients", "cache"}

--- Accuracy of nearest-prototype classification over fixed seeded episodes, in eval mode and
-- without the tape (the model's training mode is restored afterwards).
-- @tparam table opts `model` (a module giving (N, D); not needed with embed="pixels"),
--   `samples` (fs.data.tissues), `way=3`, `shot=3`, `query=6`, `episodes=1000`, `seed=0`,
--   `distance="sqeuclidean"`, `embed="model"` ("pixels": the flattened images, a baseline),
--   `patients=` (only these patients' samples), `cache=true` (embed each sample once and
--   score the episodes on those embeddings; false: embed each episode's images afresh, the
--   per-episode protocol, same numbers up to float rounding, ~episodes x 27 / N times slower)
-- @treturn table `{accuracy, ci95, std, per_class = {[class] = accuracy},
--   confusion = rows true class, columns predicted, in the order of `classes`, classes,
--   episodes = count, accuracies = per-episode list}`
-- @usage local r = fs.protonet.evaluate{model = net, samples = test, episodes = 500, seed = 1}
function M.evaluate(opts)
  local op = "protonet.evaluate"
  opts = args.options(op, opts, EVAL_KEYS)
  local embed = args.choice(op, "embed", opts.embed or "model", {"model", "pixels"})
  if embed == "model" and opts.model == nil then error(op .. ": option 'model' is required", 2) end
  if type(opts.samples) ~= "table" then error(op .. ": option 'samples' is required", 2) end
  local distance = args.choice(op, "distance", opts.distance or "sqeuclidean", P.DISTANCES)
  local n = args.integer(op, "episodes", opts.episodes or 1000, 1)
  -- the same episodes as data.episodes' list, drawn one at a time: 1000 stacked episodes held
  -- at once were most of the peak memory (27 images of 1x32x32 each: 0.27 MB an episode)
  local next_episode = data.episode_iter(opts.samples, {way = opts.way, shot = opts.shot,
                                                        query = opts.query, episodes = n,
                                                        seed = opts.seed or 0,
                                                        patients = opts.patients})
  local _, names, gpos = class_list(opts.samples)
  local confusion = new_confusion(#names)
  local accs = {}
  if opts.cache ~= false and embed == "model" then
    -- every sample the episodes can draw, embedded once
    local pool, allowed = {}, nil
    if opts.patients then
      allowed = {}
      for _, p in ipairs(opts.patients) do allowed[p] = true end
    end
    for _, smp in ipairs(opts.samples) do
      if not allowed or allowed[smp.patient] then pool[#pool + 1] = smp end
    end
    local E, row = embed_all(opts.model, pool)
    for i = 1, n do accs[i] = score_cached(E, row, distance, next_episode(), gpos, confusion) end
  else
    for i = 1, n do accs[i] = score(opts.model, embed, distance, next_episode(), gpos, confusion) end
  end
  return summarize(accs, names, confusion)
end

--- Leave-one-patient-out: for each patient, a backbone from backbone_fn(fold seed) trained
-- (fs.protonet.train) on the other patients' samples, then the held-out patient's samples
-- classified against prototypes of `shot` support samples per class drawn from the training
-- patients, over `test_episodes` draws of the support. With embed="pixels" nothing is trained
-- (the pixel baseline, fold by fold).
-- @tparam table opts `backbone_fn=function(seed) return module end`, `samples`, `way=3`,
--   `shot=3`, `query=6`, `episodes=1000` (training episodes per fold), `test_episodes=100`,
--   `seed=0` (fold k trains with seed + k), `lr`, `weight_decay`, `step_lr`, `distance`,
--   `embed="model"`, `log_every`, `progress` (passed to train; default progress=false),
--   `on_fold=function(fold) end`
-- @treturn table `{mean, std (population, over folds), ci95, folds = {{patient, accuracy,
--   queries, ...}}}`
function M.loocv(opts)
  local op = "protonet.loocv"
  opts = args.options(op, opts, {"backbone_fn", "samples", "way", "shot", "query", "episodes",
                                 "test_episodes", "seed", "lr", "weight_decay", "step_lr",
                                 "distance", "embed", "log_every", "progress", "on_fold"})
  local embed = args.choice(op, "embed", opts.embed or "model", {"model", "pixels"})
  if embed == "model" and type(opts.backbone_fn) ~= "function" then
    error(op .. ": option 'backbone_fn' (a function of the fold seed) is required", 2)
  end
  local samples = opts.samples
  if type(samples) ~= "table" or #samples == 0 then error(op .. ": option 'samples' is required", 2) end
  local seed = args.integer(op, "seed", opts.seed or 0, 0)
  local shot = args.integer(op, "shot", opts.shot or 3, 1)
  local test_eps = args.integer(op, "test_episodes", opts.test_episodes or 100, 1)
  local distance = args.choice(op, "distance", opts.distance or "sqeuclidean", P.DISTANCES)
  local labels, names, gpos = class_list(samples)
  local patients, seen = {}, {}
  for _, s in ipairs(samples) do
    if not seen[s.patient] then seen[s.patient] = true; patients[#patients + 1] = s.patient end
  end
  if #patients < 2 then error(op .. ": needs samples of at least 2 patients", 2) end
  local train_mod = require "fewshot.protonet.train"
  local folds, accs = {}, {}
  for k, p in ipairs(patients) do
    local train, test, pool = {}, {}, {}
    for _, s in ipairs(samples) do
      if s.patient == p then test[#test + 1] = s
      else
        train[#train + 1] = s
        pool[s.label] = pool[s.label] or {}
        table.insert(pool[s.label], s)
      end
    end
    for _, l in ipairs(labels) do
      local have = pool[l] and #pool[l] or 0
      if have < shot then
        error(("%s: without patient %s, class '%s' has %d samples, fewer than shot = %d"):format(op,
          tostring(p), names[gpos[l]], have, shot), 2)
      end
    end
    local model
    if embed == "model" then
      model = opts.backbone_fn(seed + k)
      model = train_mod.train{backbone = model, samples = train, way = opts.way, shot = opts.shot,
                              query = opts.query, episodes = opts.episodes, lr = opts.lr,
                              weight_decay = opts.weight_decay, step_lr = opts.step_lr,
                              seed = seed + k, distance = distance, log_every = opts.log_every,
                              progress = opts.progress or false}
    end
    -- the queries: every held-out sample; the support: shot per class from the others
    -- (with a model, every sample of the fold is embedded once: see embed_all)
    local g = core.generator(seed + k)
    local qimgs, ql = {}, {}
    for i, s in ipairs(test) do qimgs[i] = s.image; ql[i] = gpos[s.label] end
    local query = core.stack(qimgs, 1)
    local E, row
    if embed == "model" then
      local all = {}
      for _, s in ipairs(train) do all[#all + 1] = s end
      for _, s in ipairs(test) do all[#all + 1] = s end
      E, row = embed_all(model, all)
    end
    local confusion = new_confusion(#names)
    local fold_accs = {}
    for e = 1, test_eps do
      local sup, sl = {}, {}
      for ci, l in ipairs(labels) do
        local perm = g:permutation(#pool[l])
        for j = 1, shot do sup[#sup + 1] = pool[l][perm[j]]; sl[#sl + 1] = ci end
      end
      local ep = {support_samples = sup, support_labels = sl, query_samples = test,
                  query_labels = ql, labels = labels}
      if E then
        fold_accs[e] = score_cached(E, row, distance, ep, gpos, confusion)
      else
        local simgs = {}
        for i, s in ipairs(sup) do simgs[i] = s.image end
        ep.support, ep.query = core.stack(simgs, 1), query
        fold_accs[e] = score(model, embed, distance, ep, gpos, confusion)
      end
    end
    local r = summarize(fold_accs, names, confusion)
    r.patient, r.queries = p, #test
    r.accuracies = nil
    folds[k] = r
    accs[k] = r.accuracy
    if opts.on_fold then opts.on_fold(r) end
  end
  local mean, ci, std = M.ci95(accs)
  return {mean = mean, std = std, ci95 = ci, folds = folds}
end

return M
