-- examples/demo.lua: the project's main job (`make demo`). The paper's two results (arXiv
-- 2502.06632) on a simulated SPECT cohort, with the controls the paper lacks:
--   tissue classification (examples/demo/protonet.lua): a ResNet-18 Prototypical Network on
--   tissue samples of 12 training patients, tested on held-out patients, over repeats that each
--   change the training seed and the patient split; from scratch and pre-trained; beside the
--   pixel-space nearest prototype on the same episodes; leave-one-patient-out; harder cohorts
--   never trained on;
--   landmark localisation (fewshot.prnet.experiment): PRNet-2D trained without labels on 12
--   simulated patients' whole slices (the realistic-variation cohort), one marked support,
--   tested on 40 held-out patients in mm against identity, NCC and windowed NCC;
-- then out/report.md and out/report.html.
--
--   lua5.4 examples/demo.lua [--quick] [--out DIR] [--repeats N] [--episodes N] [--size 32|64]
--                            [--modes masked,crop,mask,patch] [--no-loocv] [--no-pretrain]
--   make demo            (the default run)       make demo ARGS=--quick   (the reduced one)
--
-- Nothing is written until everything has run: figures go to a temporary folder that replaces
-- DIR/figures just before the report is written (fs.report writes atomically), so a failed run
-- leaves the last good report as it was.
local fs = require "fewshot"

-- the sections live beside this file (examples/demo/*.lua)
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local protonet = require "demo.protonet"

-- Once the training loss reaches 0 the gradients are denormal floats, on which x86 arithmetic
-- is 10-100x slower (an episode: 0.27 s -> 2.5 s); PyTorch users call torch.set_flush_denormal.
fs.set_flush_denormal(true)

local T0 = fs.clock()
local CLASSES = protonet.CLASSES
local MODES = {masked = true, crop = true, mask = true, patch = true}

-- ---- options -------------------------------------------------------------------------------

local USAGE = "usage: lua5.4 examples/demo.lua [--quick] [--out DIR] [--repeats N] [--episodes N]"
  .. " [--size 32|64] [--modes masked,crop,mask,patch] [--no-loocv] [--no-pretrain] [--no-prnet]"

local function parse(argv)
  local o = {quick = false, out = "out"}
  local i = 1
  local function value(name)
    i = i + 1
    if argv[i] == nil then error(("demo: %s needs a value"):format(name), 0) end
    return argv[i]
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--quick" then o.quick = true
    elseif a == "--out" then o.out = value(a)
    elseif a == "--repeats" or a == "--episodes" or a == "--size" then
      local v = value(a)
      o[a:sub(3)] = math.tointeger(tonumber(v)) or v
    elseif a == "--modes" then
      o.modes = {}
      for m in value(a):gmatch("[^,]+") do o.modes[#o.modes + 1] = m end
    elseif a == "--no-loocv" then o.no_loocv = true
    elseif a == "--no-pretrain" then o.no_pretrain = true
    elseif a == "--no-prnet" then o.no_prnet = true
    elseif a == "--help" or a == "-h" then print(USAGE); os.exit(0)
    else error(("demo: unknown argument '%s' (try --help)"):format(a), 0) end
    i = i + 1
  end
  for _, k in ipairs({"repeats", "episodes", "size"}) do
    local v = o[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
      error(("demo: --%s needs a positive integer"):format(k), 0)
    end
  end
  if o.size and o.size < 8 then error("demo: --size must be at least 8", 0) end
  for _, m in ipairs(o.modes or {}) do
    if not MODES[m] then
      error(("demo: unknown input mode '%s' in --modes (masked, crop, mask, patch)"):format(m), 0)
    end
  end
  return o
end

-- The settings of the default run (budgeted for under 5 minutes on 2 cores, see README "The
-- main job") and of --quick (the spec's end-to-end run).
local function settings(o)
  local s = {
    size = 32, pool_n = 24, train_n = 12, val_n = 9, robust_n = 12,
    pool_seed = 1, val_seed = 3, robust_seed = 10,
    way = 3, shot = 3, query = 6, lr = 1e-3,
    episodes = 100, repeats = 5, test_episodes = 300, eval_seed = 7,
    val_every = 20, val_episodes = 30, log_every = 50,
    modes = {"masked", "crop", "mask"}, pretrain = true, prnet = true,
    loocv = true, loocv_episodes = nil, loocv_test_episodes = 20,
    pretrain_patients = 36, pretrain_steps = 100,
    tsne_iterations = 500,
  }
  if o.quick then
    -- 3-way 1-shot 2-query: 3 samples per class suffice, so 3 held-out patients per split
    s.pool_n, s.train_n, s.val_n, s.robust_n = 7, 4, 3, 3
    s.shot, s.query = 1, 2
    s.episodes, s.repeats, s.test_episodes = 4, 2, 20
    s.val_every, s.val_episodes, s.log_every = 2, 10, 2
    s.loocv_episodes, s.loocv_test_episodes = 1, 2
    s.pretrain_patients, s.pretrain_steps = 3, 4
    s.tsne_iterations = 100
  end
  s.quick = o.quick
  s.size = o.size or s.size
  s.episodes = o.episodes or s.episodes
  s.repeats = o.repeats or s.repeats
  s.loocv_episodes = s.loocv_episodes or s.episodes -- a full LOOCV: each fold trains as a repeat does
  s.modes = o.modes or s.modes
  if o.no_loocv then s.loocv = false end
  if o.no_pretrain then s.pretrain = false end
  if o.no_prnet then s.prnet = false end
  s.configs = {}
  for _, m in ipairs(s.modes) do
    s.configs[#s.configs + 1] = {name = m .. " scratch", mode = m, init = "scratch"}
  end
  s.out = o.out
  return s
end

-- ---- small helpers ---------------------------------------------------------------------------

local timings = {}

local function stage(name, fn)
  print(("== %s ..."):format(name))
  io.stdout:flush()
  local t = fs.clock()
  local r = table.pack(fn())
  local dt = fs.clock() - t
  timings[#timings + 1] = {name, dt}
  print(("== %s: %.1f s (total %.1f s)"):format(name, dt, fs.clock() - T0))
  io.stdout:flush()
  return table.unpack(r, 1, r.n)
end

local function sh(word) return "'" .. tostring(word):gsub("'", "'\\''") .. "'" end

local function mkdir(dir)
  if not os.execute("mkdir -p " .. sh(dir)) then error("demo: cannot create " .. dir, 0) end
end

local mean_std = protonet.mean_std
local function pct(x) return ("%.2f%%"):format(100 * x) end
local function pm(m, sd) return ("%.2f ± %.2f%%"):format(100 * m, 100 * sd) end
local function pts(m, sd) return ("%+.2f ± %.2f"):format(100 * m, 100 * sd) end

-- ---- the job ----------------------------------------------------------------------------------

local function simulate(S)
  local c = {}
  local function sim(name, n, seed, extra, desc)
    local t = fs.clock()
    local opts = {n = n, seed = seed, view = "short_axis"}
    for k, v in pairs(extra or {}) do opts[k] = v end
    local items = fs.spect.dataset(opts)
    print(("  %-18s %2d patients, seed %d%s: %.1f s"):format(name, n, seed,
      desc and (" (" .. desc .. ")") or "", fs.clock() - t))
    io.stdout:flush()
    return items
  end
  c.pool = sim("pool", S.pool_n, S.pool_seed)
  c.val = sim("validation", S.val_n, S.val_seed)
  c.robust = {
    {name = "mixed views", opts = {view = "mixed"}},
    {name = "perfusion defects", opts = {defect_prob = 1}},
    {name = "low counts (5e4)", opts = {counts = 5e4}},
    {name = "hot spots", opts = {hotspot_prob = 1}},
  }
  for k, r in ipairs(c.robust) do
    r.seed = S.robust_seed + k
    r.items = sim(r.name, S.robust_n, r.seed, r.opts)
  end
  return c
end

-- Figures into the temporary folder (moved into place just before the report is written).
local function figures(S, tmpfig, results, cache)
  local F = {}
  local function smooth(ys, w)
    local out = {}
    for i = 1, #ys do
      local sum, n = 0, 0
      for j = math.max(1, i - w + 1), i do sum, n = sum + ys[j], n + 1 end
      out[i] = sum / n
    end
    return out
  end
  -- per configuration, the mean over repeats of the per-episode training loss and accuracy
  -- (then a moving mean), and the mean validation accuracy at each validation point
  local w = math.max(1, S.episodes // 20)
  local loss_series, acc_series = {}, {}
  local function mean_over_runs(R, get)
    local out = {}
    for i = 1, #get(R.runs[1]) do
      local sum = 0
      for _, run in ipairs(R.runs) do sum = sum + get(run)[i] end
      out[i] = sum / #R.runs
    end
    return out
  end
  for _, R in ipairs(results) do
    local ls = smooth(mean_over_runs(R, function(run) return run.hist.loss end), w)
    for i, v in ipairs(ls) do ls[i] = math.max(v, 1e-7) end -- float32 losses reach exact 0
    loss_series[#loss_series + 1] = {y = ls, title = R.cfg.name}
    acc_series[#acc_series + 1] = {y = smooth(mean_over_runs(R, function(run) return run.hist.accuracy end), w),
                                   title = R.cfg.name .. " train"}
  end
  for _, R in ipairs(results) do
    local vx, vy = {}, {}
    for i, v in ipairs(R.runs[1].val) do vx[i] = v.episode end
    local acc = mean_over_runs(R, function(run)
      local a = {}
      for i, v in ipairs(run.val) do a[i] = v.accuracy end
      return a
    end)
    for i = 1, #vx do vy[i] = acc[i] end
    acc_series[#acc_series + 1] = {x = vx, y = vy, title = R.cfg.name .. " validation"}
  end
  local function plot(kind, name, opts)
    local path, err = fs.plot[kind](tmpfig .. "/" .. name, opts)
    F[name] = {ok = path ~= nil, note = err}
    if not path then print(("  %s skipped: %s"):format(name, tostring(err))) end
  end
  plot("lines", "loss.png", {series = loss_series, xlabel = "episode", logy = true,
    ylabel = ("loss (moving mean of %d, floor 1e-7)"):format(w),
    title = ("ProtoNet training loss, mean over %d repeats"):format(S.repeats)})
  plot("lines", "accuracy.png", {series = acc_series, xlabel = "episode", ylabel = "accuracy",
    title = ("train accuracy (moving mean of %d) and validation, mean over %d repeats"):format(w, S.repeats)})
  local R1 = results[1]
  local run1 = R1.runs[1]
  local n = run1.emb:shape()[1]
  local y = fs.tsne(run1.emb, {seed = 1, perplexity = math.max(2, math.min(10, (n - 1) / 3)),
                               iterations = S.tsne_iterations})
  plot("scatter", "tsne.png", {xy = y, labels = run1.emb_labels, names = CLASSES, point_size = 1.5,
    title = ("t-SNE of held-out embeddings (%s, repeat 1)"):format(R1.cfg.name)})
  -- sample tissues per class: the first 6 pool samples of each class, each input mode
  local imgs, lab, done = {}, {}, {}
  for _, R in ipairs(results) do
    local mode = R.cfg.mode
    if not done[mode] then
      done[mode] = true
      for _, c in ipairs(CLASSES) do
        local k = 0
        for _, smp in ipairs(cache[mode].pool) do
          if smp.class == c and k < 6 then
            imgs[#imgs + 1] = smp.image; lab[#lab + 1] = mode .. " " .. c; k = k + 1
          end
        end
      end
    end
  end
  local _, layout = fs.plot.image_grid(tmpfig .. "/tissues.png",
                                       {images = imgs, labels = lab, scale = math.max(1, 128 // S.size)})
  F["tissues.png"] = {ok = true, rows = layout.rows}
  return F
end

-- The localisation section of the report: the pooled and per-landmark tables (PRNet beside
-- the three baselines, all from one run), the loss terms and the four figures.
local LOC_METHODS = {
  {"identity", "identity (the support's coordinates)"},
  {"ncc", "NCC over the whole query"},
  {"ncc_window", "NCC within a window around the support's position"},
  {"prnet/coarse", "PRNet coarse"},
  {"prnet", "PRNet coarse + fine"},
  {"prnet+ncc", "PRNet coarse, then NCC within +/- 5 px of its estimate, with a 6 px prior"},
  {"prnet+ncc per landmark", "the same with window, template and prior per landmark, chosen on validation patients"},
}

local function localisation_report(r, loc, fig)
  local S, methods = loc.settings, loc.result.methods
  r:heading("Landmark localisation (PRNet-2D, one marked support)")
  r:paragraph(("PRNet-2D trained without labels (random double crops: the offset between two "
    .. "patches from the difference of their latents, and both reconstructed) on %d simulated "
    .. "patients' whole slices (%s cohort, seed 1), then one marked support (training patient 1) "
    .. "localises six landmarks on each of %d held-out patients (seed 2). Coarse model: %dx%d "
    .. "patches, base %d, depth 4, %d steps of batch %d, r = %g mm; fine model: 16x16 patches, "
    .. "depth 3, +/- %d px, r = %g mm, %d steps; %d query patches averaged. Errors in mm "
    .. "(pixels are 6.4 mm). Training %.1f s, evaluation %.1f s."):format(S.train_n, S.cohort,
    S.test_n, 32, 32, S.base, S.steps, S.batch, S.r, S.fine_range, S.fine_r, S.fine_steps,
    S.samples, loc.seconds.train, loc.seconds.evaluate))
  local rows = {}
  for _, m in ipairs(LOC_METHODS) do
    local p = methods[m[1]] and methods[m[1]].pooled
    if p then
      rows[#rows + 1] = {m[2], ("%.1f"):format(p.mean), ("%.1f"):format(p.median), ("%.1f"):format(p.p95),
        ("%.0f%%"):format(100 * p.within_pixel), ("%.0f%%"):format(100 * p.within_10mm),
        p.ms_per_query and ("%.2f"):format(p.ms_per_query) or "(a stage of prnet)"}
    end
  end
  r:table{header = {"method", "mean (mm)", "median", "p95", "<= 1 px", "<= 10 mm", "ms / query"},
          rows = rows, align = {"l", "r", "r", "r", "r", "r", "r"},
          caption = ("Pooled over %d queries x 6 landmarks, one training seed (the README gives "
            .. "the spread over 3 seeds). The issue's aim: mean < 6.4 mm and p95 < 15 mm on this "
            .. "cohort, beating every baseline."):format(S.test_n)}
  local names = {}
  for name in pairs(methods.identity.by_landmark) do names[#names + 1] = name end
  table.sort(names)
  local lrows = {}
  for _, name in ipairs(names) do
    local row = {name}
    for _, m in ipairs(LOC_METHODS) do
      local b = methods[m[1]] and methods[m[1]].by_landmark[name]
      row[#row + 1] = b and ("%.1f / %.1f"):format(b.mean, b.p95) or "-"
    end
    lrows[#lrows + 1] = row
  end
  local header = {"landmark"}
  for _, m in ipairs(LOC_METHODS) do header[#header + 1] = m[1] end
  r:table{header = header, rows = lrows, align = {"l", "r", "r", "r", "r", "r", "r"},
          caption = "Per landmark: mean / p95 error in mm"}
  local function last(h) return h.dis[#h.dis], h.rec[#h.rec] end
  local cd, cr = last(loc.history)
  local fd, fr = last(loc.fine_history)
  r:paragraph(("Final training losses (last step): coarse L_dis %.4f, L_rec %.4f; fine L_dis "
    .. "%.4f, L_rec %.4f. L_dis is the MSE of tanh(z0 - z1) against the offset divided by r (so "
    .. "0.001 at r = 320 mm is an RMS error of about 10 mm per axis); L_rec is in (intensity / "
    .. "image maximum)^2. The paper's 'training loss of 1.395' gives no units."):format(cd, cr, fd, fr))
  fig("prnet_loss.png", "PRNet coarse model: both loss terms per step")
  fig("prnet_reconstructions.png", "Training patches (top row) and their reconstructions (bottom row)")
  fig("prnet_landmarks.png", "Four held-out query slices: true landmarks (red +) and those found by "
    .. "PRNet + windowed NCC (green x)")
  fig("prnet_latent.png", "The coarse latent of the patch centred on each pixel of a query slice "
    .. "(red: z_x, green: z_y; dimmed off the body)")
end

local function report(S, results, loocv, cohorts, figs, figdir, loc)
  local r = fs.report.new{title = "fewshot: few-shot tissue classification on simulated SPECT"}
  r:paragraph(("A ResNet-18 Prototypical Network (%d-way %d-shot %d-query episodes, Adam lr %g, "
    .. "%d training episodes) on tissue samples (%s) of %d simulated short-axis SPECT patients, "
    .. "tested on the %d other patients of a %d-patient pool. Each of %d repeats draws its own "
    .. "patient split and its own training seed. Inputs %dx%d.%s"):format(S.way, S.shot, S.query,
    S.lr, S.episodes, table.concat(CLASSES, ", "), S.train_n, S.pool_n - S.train_n, S.pool_n,
    S.repeats, S.size, S.size,
    S.quick and " **This is the --quick run: tiny episode counts, numbers not meaningful.**" or ""))
  r:heading("Main result: held-out patients")
  local rows = {{"paper (arXiv 2502.06632)", "96.67%", "93.33% (validation)", "-", "-", "-", "-"}}
  for _, R in ipairs(results) do
    rows[#rows + 1] = {("ProtoNet, %s input, %s"):format(R.cfg.mode, R.cfg.init), pct(R.train_acc),
      pm(R.mean, R.std), ("± %.2f%%"):format(100 * R.ci), pm(R.pixel_mean, R.pixel_std),
      pts(R.diff_mean, R.diff_std), tostring(#R.runs)}
  end
  r:table{header = {"method", "train acc.", "held-out acc. (mean ± std over repeats)",
                    "episode 95% CI", "pixel baseline (mean ± std)", "learned - pixel (points)",
                    "repeats"},
          rows = rows, align = {"l", "r", "r", "r", "r", "r", "r"},
          caption = ("Each repeat has its own training seed and its own split of the %d-patient "
            .. "pool into %d training and %d held-out patients; %d test episodes (seed %d) per "
            .. "model. 'mean ± std over repeats' is the spread over those repeats (sample std): "
            .. "training seed and patient split together. 'episode 95%% CI' is 1.96 std/sqrt(episodes) "
            .. "over the test episodes of one model (mean over repeats): how well the episodes pin "
            .. "down that model, not how much training or the split vary. The pixel baseline "
            .. "(nearest prototype on the flattened inputs) runs on the same episodes; "
            .. "'learned - pixel' is the paired difference per repeat. Train acc.: mean over the "
            .. "last quarter of training episodes. The paper reports 96.67%% train and 93.33%% "
            .. "validation with no confidence interval, no per-patient split and no baseline.")
            :format(S.pool_n, S.train_n, S.pool_n - S.train_n, S.test_episodes, S.eval_seed)}
  if S.pretrain_hist then
    r:paragraph(("'pretrained': the backbone first learns to classify the three tissues of %d "
      .. "other simulated patients (cohort seed 100, never used for evaluation; %d samples, %d "
      .. "steps of batch 36, a linear head and cross-entropy, the head then dropped: "
      .. "fs.protonet.pretrain_spect, %.1f s), then trains as the scratch models do. One "
      .. "pre-training serves every repeat, so that row's spread holds the split and the "
      .. "episode seed but not the pre-training seed. ImageNet weights cannot be fetched here "
      .. "(tools/export_torchvision.py writes them where they can; they load with "
      .. "adapt_conv1 = \"sum\"); Fashion-MNIST pre-training is measured in the README."):format(
      S.pretrain_patients, S.pretrain_hist.samples, S.pretrain_steps, S.pretrain_hist.seconds))
  end
  r:heading("Per-class accuracy and confusion")
  for _, R in ipairs(results) do
    local prow = {R.cfg.name}
    for i, c in ipairs(CLASSES) do
      local xs = {}
      for k, run in ipairs(R.runs) do xs[k] = run.test.per_class[c] or 0 end
      prow[i + 1] = pm(mean_std(xs))
    end
    r:table{header = {"configuration", "ventricle", "myocardium", "liver"}, rows = {prow},
            align = {"l", "r", "r", "r"}, caption = "per-class accuracy, mean ± std over repeats"}
    local conf = {}
    for i = 1, #CLASSES do conf[i] = {0, 0, 0} end
    for _, run in ipairs(R.runs) do
      for i = 1, #CLASSES do for j = 1, #CLASSES do conf[i][j] = conf[i][j] + run.test.confusion[i][j] end end
    end
    local crow = {}
    for i, c in ipairs(CLASSES) do crow[i] = {c, conf[i][1], conf[i][2], conf[i][3]} end
    r:table{header = {"true \\ predicted", "ventricle", "myocardium", "liver"}, rows = crow,
            align = {"l", "r", "r", "r"},
            caption = ("confusion matrix, %s, query counts summed over repeats"):format(R.cfg.name)}
  end
  r:heading("Leave-one-patient-out")
  if loocv then
    r:table{header = {"method", "mean ± std over folds", "folds"},
            rows = {{"ProtoNet (" .. loocv.cfg.name .. ")", pm(loocv.model.mean, loocv.model_std), #loocv.model.folds},
                    {"pixel baseline", pm(loocv.pixel.mean, loocv.pixel_std), #loocv.pixel.folds}},
            align = {"l", "r", "r"},
            caption = ("The first %d patients of the pool (the paper's cohort size): each fold "
              .. "trains a fresh model on the other %d for %d episodes (the repeats train %d), "
              .. "and classifies every tissue of the held-out patient against prototypes of "
              .. "%d support samples per class from the training patients, over %d support "
              .. "draws. Sample std over folds."):format(S.train_n, S.train_n - 1, S.loocv_episodes,
              S.episodes, S.shot, S.loocv_test_episodes)}
  else
    r:paragraph("Skipped (--no-loocv).")
  end
  r:heading("Robustness: harder cohorts, never used for training")
  local rrows = {}
  for k, c in ipairs(cohorts.robust) do
    for _, R in ipairs(results) do
      local e = R.robust[k]
      rrows[#rrows + 1] = {c.name, R.cfg.name, e.mean and pm(e.mean, e.std) or ("n/a: " .. tostring(e.error)),
        e.pixel and ("%s ± %.2f%%"):format(pct(e.pixel), 100 * e.pixel_ci) or "n/a",
        (e.mean and e.pixel) and pts(e.mean - e.pixel, e.std) or "n/a"}
    end
  end
  r:table{header = {"cohort", "configuration", "ProtoNet (mean ± std over repeats)",
                    "pixel baseline (± episode CI)", "learned - pixel (points)"},
          rows = rrows, align = {"l", "l", "r", "r", "r"},
          caption = ("%d patients per cohort (seeds %d..%d), the repeats' models reused as they "
            .. "are; %d test episodes. Where 'learned - pixel' is within its spread of 0 the "
            .. "embedding adds nothing over the raw pixels."):format(S.robust_n, S.robust_seed + 1,
            S.robust_seed + #cohorts.robust, S.test_episodes)}
  local function fig(name, caption)
    r:figure(figdir .. "/" .. name, caption, figs[name] and figs[name].note)
  end
  if loc then localisation_report(r, loc, fig) end
  r:heading("Figures")
  fig("loss.png", "Training loss per episode (moving mean), each configuration's mean over its repeats")
  fig("accuracy.png", "Training accuracy per episode (moving mean) and validation accuracy "
    .. ("(%d validation patients, seed %d), each configuration's mean over its repeats"):format(S.val_n, S.val_seed))
  fig("tsne.png", "t-SNE of the held-out patients' embeddings (first configuration, repeat 1), coloured by class")
  fig("tissues.png", "Sample tissues (first 6 per class), rows from the top: "
    .. table.concat(figs["tissues.png"].rows or {}, "; "))
  r:heading("Settings and seeds")
  local srows = {}
  local function set(k, v) srows[#srows + 1] = {k, tostring(v)} end
  set("image size", S.size .. "x" .. S.size)
  set("episodes", ("%d-way %d-shot %d-query"):format(S.way, S.shot, S.query))
  set("training episodes per model", S.episodes)
  set("repeats (training seed r, init seed 1000 + r, split seed 500 + r)", S.repeats)
  set("optimizer", ("Adam, lr %g"):format(S.lr))
  set("cohorts", ("pool %d (seed %d), validation %d (seed %d)"):format(S.pool_n, S.pool_seed,
    S.val_n, S.val_seed))
  set("test episodes (seed)", ("%d (%d)"):format(S.test_episodes, S.eval_seed))
  set("threads", fs.get_num_threads())
  for _, t in ipairs(timings) do set("time: " .. t[1], ("%.1f s"):format(t[2])) end
  set("total time before writing", ("%.1f s"):format(fs.clock() - T0))
  r:table{header = {"setting", "value"}, rows = srows, align = {"l", "l"}}
  return r
end

local function main(argv)
  local o = parse(argv)
  local S = settings(o)
  print(("fewshot %s demo%s: %d threads, %dx%d inputs, configurations %d, %d repeats x %d episodes")
    :format(fs._VERSION, S.quick and " (--quick)" or "", fs.get_num_threads(), S.size, S.size,
            #S.configs, S.repeats, S.episodes))
  mkdir(S.out)
  local tmpfig = S.out .. "/.figures-tmp"
  os.execute("rm -rf " .. sh(tmpfig))
  mkdir(tmpfig)
  local figdir = S.out .. "/figures"

  local cohorts = stage("simulate cohorts", function() return simulate(S) end)
  local pre
  if S.pretrain then
    -- one pre-training (supervised, a linear head then dropped) on simulated patients that no
    -- evaluation uses (cohort seed 100); every repeat of the pre-trained configuration starts
    -- from these weights, so its spread holds the fine-tuning seed and the split, not the
    -- pre-training seed (the README gives that)
    pre = stage("pre-train on simulated patients", function()
      fs.manual_seed(1000)
      local net = fs.nn.resnet18{in_channels = 1}
      local _, hist = fs.protonet.pretrain_spect{backbone = net, seed = 1, size = S.size,
        patients = S.pretrain_patients, steps = S.pretrain_steps, log_every = S.pretrain_steps // 4}
      print(("  %d samples of %d patients (cohort seed 100), %d steps: last batch accuracy %.3f, %.1f s")
        :format(hist.samples, S.pretrain_patients, S.pretrain_steps, hist.accuracy[#hist.accuracy], hist.seconds))
      return {net = net, hist = hist, state = net:state_dict()}
    end)
    S.pretrained = function() return pre.state end
    S.pretrain_hist = pre.hist
    S.configs[#S.configs + 1] = {name = S.modes[1] .. " pretrained", mode = S.modes[1], init = "pretrained"}
  end
  local results, cache = protonet.run(S, cohorts, stage)
  local loocv
  if S.loocv then
    local cfg = S.configs[1]
    loocv = stage(("leave-one-patient-out (%s, %d folds x %d episodes)"):format(cfg.name,
                  S.train_n, S.loocv_episodes), function() return protonet.loocv(S, cohorts, cfg, cache) end)
  end
  local loc
  if S.prnet then
    loc = stage("landmark localisation (PRNet)", function()
      return require("fewshot.prnet.experiment").run{quick = S.quick, figures = tmpfig, progress = true}
    end)
    print(loc.text)
  end
  local figs = stage("figures", function() return figures(S, tmpfig, results, cache) end)
  if loc then
    for _, name in ipairs({"loss", "reconstructions", "landmarks", "latent"}) do
      figs["prnet_" .. name .. ".png"] = {ok = loc.figures[name] ~= nil,
        note = loc.figures[name] == nil and "gnuplot not found" or nil}
    end
  end
  local md, html = stage("report", function()
    local r = report(S, results, loocv, cohorts, figs, figdir, loc)
    -- figures into place, then the report (both files atomically)
    os.execute("rm -rf " .. sh(figdir))
    if not os.rename(tmpfig, figdir) then error("demo: cannot move the figures to " .. figdir, 0) end
    return r:write(S.out)
  end)

  print("")
  print("summary (held-out patients; mean ± std over repeats of seed and split, then the episode 95% CI):")
  print("  paper: 96.67% train, 93.33% validation (no CI, no per-patient split, no baseline)")
  for _, R in ipairs(results) do
    print(("  %-18s ProtoNet %s (CI ± %.2f%%, %d repeats)  pixel %s  learned - pixel %s points")
      :format(R.cfg.name, pm(R.mean, R.std), 100 * R.ci, #R.runs, pm(R.pixel_mean, R.pixel_std),
              pts(R.diff_mean, R.diff_std)))
  end
  if loocv then
    print(("  LOOCV %s: ProtoNet %s, pixel %s"):format(loocv.cfg.name,
      pm(loocv.model.mean, loocv.model_std), pm(loocv.pixel.mean, loocv.pixel_std)))
  end
  if loc then
    local m = loc.result.methods
    local function one(name)
      local p = m[name] and m[name].pooled
      return p and ("%s %.1f / %.1f"):format(name, p.mean, p.p95) or (name .. " n/a")
    end
    local per = m["prnet+ncc per landmark"] and (one("prnet+ncc per landmark") .. ", ") or ""
    print(("  localisation (mean / p95 mm, %s cohort): %s, %s%s, %s, %s"):format(loc.settings.cohort,
      one("prnet+ncc"), per, one("prnet"), one("ncc_window"), one("identity")))
  end
  print(("total %.1f s; report: %s and %s"):format(fs.clock() - T0, md, html))
end

local ok, err = xpcall(main, debug.traceback, arg)
if not ok then
  io.stderr:write("demo: FAILED: " .. tostring(err) .. "\n")
  io.stderr:write("demo: the last good report (if any) was left as it was\n")
  os.exit(1)
end
