-- examples/demo/protonet.lua: the main job's tissue-classification part (examples/demo.lua).
--
-- Repeats r = 1..S.repeats, each with its own training seed AND its own patient split: the
-- pool of S.pool_n simulated patients is permuted by the repeat's seed, the first S.train_n
-- train (the paper's 12) and the rest are held out for testing. So the spread over repeats
-- (mean ± sample std) holds both the training seed and the patient split, which the episode
-- 95% CI of one model (1.96 std / sqrt(episodes) over test episodes) does not. The validation
-- cohort (another seed) only draws the curves; no model is selected on it.
--
-- Configurations: an input mode ("masked", "crop", "mask", "patch") and an initialisation
-- ("scratch": PyTorch's default init; "pretrained": weights from S.pretrained, a function
-- returning a state dict). Each trained model is evaluated at once on its held-out split and
-- on the harder cohorts (then dropped, so memory stays that of one model); the pixel-space
-- nearest prototype runs on exactly the same episodes, and the paired difference
-- (learned - pixel, per repeat) is reported with its spread.
local fs = require "fewshot"

local M = {}

M.CLASSES = {"ventricle", "myocardium", "liver"}

local mean_std = fs.protonet.mean_std -- mean and sample std (n - 1)
M.mean_std = mean_std

-- The patient split of repeat r: a permutation of 1..pool_n by seed 500 + r.
function M.split(S, r)
  local perm = fs.generator(500 + r):permutation(S.pool_n)
  local train, test = {}, {}
  for i, p in ipairs(perm) do
    if i <= S.train_n then train[#train + 1] = p else test[#test + 1] = p end
  end
  table.sort(train)
  table.sort(test)
  return train, test
end

local function subset(samples, patients)
  local keep, out = {}, {}
  for _, p in ipairs(patients) do keep[p] = true end
  for _, s in ipairs(samples) do if keep[s.patient] then out[#out + 1] = s end end
  return out
end

local function eval_opts(S, samples, extra)
  local o = {samples = samples, way = S.way, shot = S.shot, query = S.query,
             episodes = S.test_episodes, seed = S.eval_seed}
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- A fresh ResNet-18 for a configuration and repeat: seeded init, then the pre-trained weights.
local function backbone(S, cfg, r)
  fs.manual_seed(1000 + r)
  local net = fs.nn.resnet18{in_channels = 1}
  if cfg.init == "pretrained" then net:load_state_dict(S.pretrained()) end
  return net
end

--- Samples of every cohort for one input mode (cached per mode).
function M.samples_for(S, cohorts, mode, cache)
  if not cache[mode] then
    local function t(items)
      return fs.data.tissues(items, {input = mode, size = S.size, classes = M.CLASSES})
    end
    local c = {pool = t(cohorts.pool), val = t(cohorts.val), robust = {}}
    for k, rc in ipairs(cohorts.robust) do c.robust[k] = t(rc.items) end
    cache[mode] = c
  end
  return cache[mode]
end

--- Trains and evaluates every configuration over the repeats.
-- @treturn table results: one entry per configuration {cfg, runs = {per repeat}, pixel = {...}}
function M.run(S, cohorts, stage)
  local cache, results = {}, {}
  for _, cfg in ipairs(S.configs) do
    local R = {cfg = cfg, runs = {}}
    results[#results + 1] = R
    local smp = M.samples_for(S, cohorts, cfg.mode, cache)
    for r = 1, S.repeats do
      stage(("train %s, repeat %d"):format(cfg.name, r), function()
        local train_p, test_p = M.split(S, r)
        local train, test = subset(smp.pool, train_p), subset(smp.pool, test_p)
        local net = backbone(S, cfg, r)
        local val_hist = {}
        local _, hist = fs.protonet.train{
          backbone = net, samples = train, way = S.way, shot = S.shot, query = S.query,
          episodes = S.episodes, lr = S.lr, seed = r, progress = "lines", log_every = S.log_every,
          on_episode = function(e)
            if e % S.val_every == 0 or e == S.episodes then
              local v = fs.protonet.evaluate{model = net, samples = smp.val, way = S.way,
                shot = S.shot, query = S.query, episodes = S.val_episodes, seed = 99}
              val_hist[#val_hist + 1] = {episode = e, accuracy = v.accuracy}
            end
          end}
        local res = fs.protonet.evaluate(eval_opts(S, test, {model = net}))
        local pix = fs.protonet.evaluate(eval_opts(S, test, {embed = "pixels"}))
        local n, acc = 0, 0 -- the last quarter of training episodes: "train accuracy"
        for e = math.max(1, S.episodes - S.episodes // 4 + 1), S.episodes do
          acc, n = acc + hist.accuracy[e], n + 1
        end
        local robust = {}
        for k, rs in ipairs(smp.robust) do
          local ok, v = pcall(fs.protonet.evaluate, eval_opts(S, rs, {model = net}))
          robust[k] = ok and v.accuracy or {error = tostring(v)}
        end
        local run = {repeat_ = r, train_patients = train_p, test_patients = test_p, hist = hist,
                     val = val_hist, test = res, pixel = pix, train_acc = acc / n, robust = robust,
                     diff = res.accuracy - pix.accuracy}
        if r == 1 then -- kept for the t-SNE: the held-out embeddings of repeat 1
          local imgs = {}
          run.emb_labels = {}
          for i, s in ipairs(test) do imgs[i], run.emb_labels[i] = s.image, s.label end
          run.emb = fs.protonet.embed(net, fs.stack(imgs, 1))
        end
        R.runs[r] = run
        net:close()
        print(("  %s repeat %d: held-out %.4f ± %.4f (episode CI), pixel %.4f, train patients %s")
          :format(cfg.name, r, res.accuracy, res.ci95, pix.accuracy, table.concat(train_p, ",")))
      end)
    end
    local accs, cis, tr, pix, diff = {}, {}, {}, {}, {}
    for k, run in ipairs(R.runs) do
      accs[k], cis[k], tr[k] = run.test.accuracy, run.test.ci95, run.train_acc
      pix[k], diff[k] = run.pixel.accuracy, run.diff
    end
    R.mean, R.std = mean_std(accs)
    R.ci = mean_std(cis)
    R.train_acc = mean_std(tr)
    R.pixel_mean, R.pixel_std = mean_std(pix)
    R.diff_mean, R.diff_std = mean_std(diff)
    R.robust = {}
    for k = 1, #cohorts.robust do
      local xs, err = {}, nil
      for _, run in ipairs(R.runs) do
        if type(run.robust[k]) == "number" then xs[#xs + 1] = run.robust[k] else err = run.robust[k].error end
      end
      local entry = {error = err}
      if #xs > 0 then entry.mean, entry.std = mean_std(xs) end
      local ok, p = pcall(fs.protonet.evaluate, eval_opts(S, smp.robust[k], {embed = "pixels"}))
      if ok then entry.pixel, entry.pixel_ci = p.accuracy, p.ci95 else entry.error = entry.error or tostring(p) end
      R.robust[k] = entry
    end
    print(("  %s: %.2f ± %.2f%% over %d repeats; pixel %.2f ± %.2f%%; learned - pixel %+.2f ± %.2f points")
      :format(cfg.name, 100 * R.mean, 100 * R.std, #R.runs, 100 * R.pixel_mean, 100 * R.pixel_std,
              100 * R.diff_mean, 100 * R.diff_std))
  end
  return results, cache
end

--- Leave one patient out on the first S.train_n patients of the pool (the paper's cohort
-- size), for one configuration, beside the pixel baseline fold by fold.
function M.loocv(S, cohorts, cfg, cache)
  local smp = M.samples_for(S, cohorts, cfg.mode, cache)
  local patients = {}
  for p = 1, S.train_n do patients[p] = p end
  local samples = subset(smp.pool, patients)
  local r = fs.protonet.loocv{
    backbone_fn = function(seed) return backbone(S, cfg, 2000 + seed) end,
    samples = samples, way = S.way, shot = S.shot, query = S.query, episodes = S.loocv_episodes,
    test_episodes = S.loocv_test_episodes, seed = 100, lr = S.lr,
    on_fold = function(f) print(("  fold patient %s: %.3f"):format(tostring(f.patient), f.accuracy)) end}
  local p = fs.protonet.loocv{samples = samples, embed = "pixels", way = S.way, shot = S.shot,
                              query = S.query, test_episodes = S.loocv_test_episodes, seed = 100}
  local function sample_std(res) -- the folds' sample std (loocv gives the population one)
    local xs = {}
    for i, f in ipairs(res.folds) do xs[i] = f.accuracy end
    local _, sd = mean_std(xs)
    return sd
  end
  return {cfg = cfg, model = r, pixel = p, model_std = sample_std(r), pixel_std = sample_std(p)}
end

return M
