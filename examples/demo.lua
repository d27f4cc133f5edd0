-- examples/demo.lua: the project's main job (`make demo`). A Prototypical Network with a
-- ResNet-18 backbone, trained from scratch on tissue samples of a simulated 12-patient SPECT
-- cohort (short-axis slices, as in arXiv 2502.06632), evaluated on held-out simulated patients
-- with honest error bars (episode 95% CI and the spread over training seeds), beside the
-- pixel-space nearest-prototype baseline; leave-one-patient-out; a robustness table on harder
-- cohorts never trained on; then out/report.md and out/report.html.
--
--   lua5.4 examples/demo.lua [--quick] [--out DIR] [--seeds N] [--episodes N] [--size 32|64]
--                            [--modes masked,crop,mask] [--no-loocv]
--   make demo            (the default run)       make demo ARGS=--quick   (the reduced one)
--
-- Test episodes are scored on embeddings computed once per sample (eval mode, no tape):
-- fs.protonet.evaluate with embed="pixels" on samples whose "image" is the embedding, which
-- gives the same numbers as evaluating the model episode by episode (BatchNorm in eval mode
-- makes each sample's embedding independent of its episode), at a fraction of the cost.
-- Nothing is written until everything has run: figures go to a temporary folder that replaces
-- DIR/figures just before the report is written (fs.report writes atomically), so a failed run
-- leaves the last good report as it was.
local fs = require "fewshot"

-- Once the training loss reaches 0 the gradients are denormal floats, on which x86 arithmetic
-- is 10-100x slower (an episode: 0.27 s -> 2.5 s); PyTorch users call torch.set_flush_denormal.
fs.set_flush_denormal(true)

local T0 = fs.clock()

-- ---- options -------------------------------------------------------------------------------

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
    elseif a == "--seeds" or a == "--episodes" or a == "--size" then
      local v = value(a)
      o[a:sub(3)] = math.tointeger(tonumber(v)) or v
    elseif a == "--modes" then
      o.modes = {}
      for m in value(a):gmatch("[^,]+") do o.modes[#o.modes + 1] = m end
    elseif a == "--no-loocv" then o.no_loocv = true
    elseif a == "--help" or a == "-h" then
      print("usage: lua5.4 examples/demo.lua [--quick] [--out DIR] [--seeds N] [--episodes N]"
            .. " [--size 32|64] [--modes masked,crop,mask] [--no-loocv]")
      os.exit(0)
    else error(("demo: unknown argument '%s' (try --help)"):format(a), 0) end
    i = i + 1
  end
  for _, k in ipairs({"seeds", "episodes", "size"}) do
    local v = o[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
      error(("demo: --%s needs a positive integer"):format(k), 0)
    end
  end
  if o.size and o.size < 8 then error("demo: --size must be at least 8", 0) end
  for _, m in ipairs(o.modes or {}) do
    if m ~= "masked" and m ~= "crop" and m ~= "mask" and m ~= "patch" then
      error(("demo: unknown input mode '%s' in --modes (masked, crop, mask, patch)"):format(m), 0)
    end
  end
  return o
end

-- The settings of the default run (budgeted for under 5 minutes on 2 unloaded cores, see
-- README "The main job") and of --quick (the spec's end-to-end run).
local function settings(o)
  local s = {
    size = 32, train_n = 12, test_n = 12, val_n = 9, robust_n = 12,
    train_seed = 1, test_seed = 2, val_seed = 3, robust_seed = 10,
    way = 3, shot = 3, query = 6, lr = 1e-3,
    episodes = 200, seeds = 3, test_episodes = 300, eval_seed = 7,
    val_every = 25, val_episodes = 50, log_every = 50,
    modes = {"masked", "crop"},
    loocv = true, loocv_episodes = 50, loocv_test_episodes = 20,
    tsne_iterations = 500,
  }
  if o.quick then
    -- 3-way 1-shot 2-query: 3 samples per class suffice, so 3-4 patients per cohort
    s.train_n, s.test_n, s.val_n, s.robust_n = 4, 4, 3, 3
    s.shot, s.query = 1, 2
    s.episodes, s.seeds, s.test_episodes = 4, 1, 20
    s.val_every, s.val_episodes, s.log_every = 2, 10, 2
    s.loocv_episodes, s.loocv_test_episodes = 1, 2
    s.tsne_iterations = 100
  end
  s.quick = o.quick
  s.size = o.size or s.size
  s.episodes = o.episodes or s.episodes
  s.seeds = o.seeds or s.seeds
  s.modes = o.modes or s.modes
  if o.no_loocv then s.loocv = false end
  s.out = o.out
  return s
end

-- ---- small helpers ---------------------------------------------------------------------------

local CLASSES = {"ventricle", "myocardium", "liver"}
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

local function mean_std(xs) -- mean and sample standard deviation (n - 1; 0 for one value)
  local n, s = #xs, 0
  for _, x in ipairs(xs) do s = s + x end
  local m = s / n
  local v = 0
  for _, x in ipairs(xs) do v = v + (x - m) ^ 2 end
  return m, n > 1 and math.sqrt(v / (n - 1)) or 0
end

local function pct(x) return ("%.2f%%"):format(100 * x) end
local function pm(m, sd) return ("%.2f ± %.2f%%"):format(100 * m, 100 * sd) end

-- Proxy samples whose image is the embedding (D, 1, 1): scored with embed="pixels".
local function embedded(model, samples)
  local imgs = {}
  for i, s in ipairs(samples) do imgs[i] = s.image end
  local e = fs.protonet.embed(model, fs.stack(imgs, 1))
  local d = e:shape()[2]
  local out = {}
  for i, s in ipairs(samples) do
    out[i] = {image = e:narrow(1, i, 1):contiguous():view(d, 1, 1), label = s.label,
              class = s.class, patient = s.patient}
  end
  return out, e
end

-- ---- the job ----------------------------------------------------------------------------------

local function main(argv)
  local o = parse(argv)
  local S = settings(o)
  print(("fewshot %s demo%s: %d threads, %dx%d inputs, modes %s, %d training seed(s) x %d episodes")
    :format(fs._VERSION, S.quick and " (--quick)" or "", fs.get_num_threads(), S.size, S.size,
            table.concat(S.modes, ","), S.seeds, S.episodes))
  mkdir(S.out)
  local tmpfig = S.out .. "/.figures-tmp"
  os.execute("rm -rf " .. sh(tmpfig))
  mkdir(tmpfig)
  local figdir = S.out .. "/figures"

  -- 1. the cohorts
  local cohorts = stage("simulate cohorts", function()
    local c = {}
    local function sim(name, n, seed, extra)
      local t = fs.clock()
      local opts = {n = n, seed = seed, view = "short_axis"}
      for k, v in pairs(extra or {}) do opts[k] = v end
      c[name] = fs.spect.dataset(opts)
      print(("  %-10s %2d patients, seed %d%s: %.1f s"):format(name, n, seed,
        extra and next(extra) and (" (" .. (extra.desc or "") .. ")") or "", fs.clock() - t))
      io.stdout:flush()
    end
    sim("train", S.train_n, S.train_seed)
    sim("test", S.test_n, S.test_seed)
    sim("val", S.val_n, S.val_seed)
    c.robust = {
      {name = "mixed views", opts = {view = "mixed"}},
      {name = "perfusion defects", opts = {defect_prob = 1}},
      {name = "low counts (5e4)", opts = {counts = 5e4}},
      {name = "hot spots", opts = {hotspot_prob = 1}},
    }
    for k, r in ipairs(c.robust) do
      local extra = {}
      for kk, v in pairs(r.opts) do extra[kk] = v end
      extra.desc = r.name
      local opts = {n = S.robust_n, seed = S.robust_seed + k, view = "short_axis"}
      for kk, v in pairs(r.opts) do opts[kk] = v end
      local t = fs.clock()
      r.items = fs.spect.dataset(opts)
      r.seed = opts.seed
      print(("  %-18s %2d patients, seed %d: %.1f s"):format(r.name, S.robust_n, opts.seed, fs.clock() - t))
      io.stdout:flush()
    end
    return c
  end)

  local function tissues(items, mode)
    return fs.data.tissues(items, {input = mode, size = S.size, classes = CLASSES})
  end

  -- 2-3. training over seeds and modes, evaluation on the held-out patients
  local results = {}
  for _, mode in ipairs(S.modes) do
    local R = {mode = mode, runs = {}}
    results[#results + 1] = R
    R.train = tissues(cohorts.train, mode)
    R.test = tissues(cohorts.test, mode)
    R.val = tissues(cohorts.val, mode)
    for k = 1, S.seeds do
      local seed = k
      stage(("train %s, seed %d"):format(mode, seed), function()
        fs.manual_seed(1000 + seed) -- the backbone's initialisation
        local net = fs.nn.resnet18{in_channels = 1}
        local val_hist = {}
        local _, hist = fs.protonet.train{
          backbone = net, samples = R.train, way = S.way, shot = S.shot, query = S.query,
          episodes = S.episodes, lr = S.lr, seed = seed, progress = "lines", log_every = S.log_every,
          on_episode = function(e)
            if e % S.val_every == 0 or e == S.episodes then
              local ve = embedded(net, R.val)
              local r = fs.protonet.evaluate{samples = ve, embed = "pixels", way = S.way,
                                             shot = S.shot, query = S.query,
                                             episodes = S.val_episodes, seed = 99}
              val_hist[#val_hist + 1] = {episode = e, accuracy = r.accuracy}
              print(("  validation at episode %d: %.3f"):format(e, r.accuracy))
            end
          end}
        local te, emb = embedded(net, R.test)
        local r = fs.protonet.evaluate{samples = te, embed = "pixels", way = S.way, shot = S.shot,
                                       query = S.query, episodes = S.test_episodes,
                                       seed = S.eval_seed}
        -- the last quarter of training episodes: the "train accuracy" beside the paper's
        local n, acc = 0, 0
        for e = math.max(1, S.episodes - S.episodes // 4 + 1), S.episodes do
          acc, n = acc + hist.accuracy[e], n + 1
        end
        R.runs[k] = {seed = seed, net = net, hist = hist, val = val_hist, test = r, emb = emb,
                     train_acc = acc / n}
        print(("  %s seed %d: held-out accuracy %.4f ± %.4f (episode 95%% CI), %.1f s training")
          :format(mode, seed, r.accuracy, r.ci95, hist.seconds))
      end)
    end
    R.pixel = fs.protonet.evaluate{samples = R.test, embed = "pixels", way = S.way, shot = S.shot,
                                   query = S.query, episodes = S.test_episodes, seed = S.eval_seed}
    local accs, cis, tr = {}, {}, {}
    for k, run in ipairs(R.runs) do accs[k], cis[k], tr[k] = run.test.accuracy, run.test.ci95, run.train_acc end
    R.mean, R.std = mean_std(accs)
    R.ci = mean_std(cis)
    R.train_acc = mean_std(tr)
    print(("  %s: %s over %d seed(s) (mean ± std), episode CI ± %.2f%%; pixel baseline %.2f ± %.2f%%")
      :format(mode, pm(R.mean, R.std), #R.runs, 100 * R.ci, 100 * R.pixel.accuracy, 100 * R.pixel.ci95))
  end

  -- leave-one-patient-out on the training cohort (first mode), reduced: one seed, few episodes
  local loocv
  if S.loocv then
    loocv = stage(("leave-one-patient-out (%s, %d folds x %d episodes)"):format(S.modes[1],
                  S.train_n, S.loocv_episodes), function()
      local samples = results[1].train
      local r = fs.protonet.loocv{
        backbone_fn = function(seed) fs.manual_seed(2000 + seed); return fs.nn.resnet18{in_channels = 1} end,
        samples = samples, way = S.way, shot = S.shot, query = S.query, episodes = S.loocv_episodes,
        test_episodes = S.loocv_test_episodes, seed = 100, lr = S.lr,
        on_fold = function(f) print(("  fold patient %s: %.3f"):format(tostring(f.patient), f.accuracy)) end}
      local p = fs.protonet.loocv{samples = samples, embed = "pixels", way = S.way, shot = S.shot,
                                  query = S.query, test_episodes = S.loocv_test_episodes, seed = 100}
      return {model = r, pixel = p}
    end)
  end

  -- 4. robustness: the trained models on harder cohorts, no retraining
  local robust = stage("robustness cohorts", function()
    local rows = {}
    for _, c in ipairs(cohorts.robust) do
      for _, R in ipairs(results) do
        local row = {cohort = c.name, mode = R.mode, seed = c.seed}
        local ok, err = pcall(function()
          local smp = tissues(c.items, R.mode)
          local accs = {}
          for k, run in ipairs(R.runs) do
            local e = embedded(run.net, smp)
            accs[k] = fs.protonet.evaluate{samples = e, embed = "pixels", way = S.way, shot = S.shot,
                                           query = S.query, episodes = S.test_episodes,
                                           seed = S.eval_seed}.accuracy
          end
          row.mean, row.std = mean_std(accs)
          local p = fs.protonet.evaluate{samples = smp, embed = "pixels", way = S.way, shot = S.shot,
                                         query = S.query, episodes = S.test_episodes, seed = S.eval_seed}
          row.pixel, row.pixel_ci = p.accuracy, p.ci95
        end)
        if not ok then row.error = tostring(err) end
        rows[#rows + 1] = row
        print(("  %-18s %-7s learned %s  pixel %s"):format(c.name, R.mode,
          row.mean and pm(row.mean, row.std) or ("n/a: " .. row.error),
          row.pixel and pct(row.pixel) or "n/a"))
      end
    end
    return rows
  end)

  -- 5. figures (into the temporary folder; moved into place just before the report is written)
  local figs = stage("figures", function()
    local F = {}
    local R1 = results[1]
    local loss_series, acc_series = {}, {}
    local function smooth(ys, w)
      local out = {}
      for i = 1, #ys do
        local s, n = 0, 0
        for j = math.max(1, i - w + 1), i do s, n = s + ys[j], n + 1 end
        out[i] = s / n
      end
      return out
    end
    local w = math.max(1, S.episodes // 20)
    for _, R in ipairs(results) do
      for _, run in ipairs(R.runs) do
        local ls = smooth(run.hist.loss, w)
        for i, v in ipairs(ls) do ls[i] = math.max(v, 1e-7) end -- float32 losses reach exact 0
        loss_series[#loss_series + 1] = {y = ls, title = ("%s seed %d"):format(R.mode, run.seed)}
        acc_series[#acc_series + 1] = {y = smooth(run.hist.accuracy, w), title = ("%s seed %d train"):format(R.mode, run.seed)}
      end
    end
    for _, run in ipairs(R1.runs) do
      local vx, vy = {}, {}
      for i, v in ipairs(run.val) do vx[i], vy[i] = v.episode, v.accuracy end
      acc_series[#acc_series + 1] = {x = vx, y = vy, title = ("%s seed %d validation"):format(R1.mode, run.seed)}
    end
    local function plot(kind, name, opts)
      local path, err = fs.plot[kind](tmpfig .. "/" .. name, opts)
      F[name] = {ok = path ~= nil, note = err}
      if not path then print(("  %s skipped: %s"):format(name, tostring(err))) end
    end
    plot("lines", "loss.png", {series = loss_series, xlabel = "episode", logy = true,
      ylabel = ("loss (moving mean of %d, floor 1e-7)"):format(w), title = "ProtoNet training loss"})
    plot("lines", "accuracy.png", {series = acc_series, xlabel = "episode", ylabel = "accuracy",
      title = ("train accuracy (moving mean of %d) and validation"):format(w)})
    -- t-SNE of the held-out embeddings of the first model
    local emb = R1.runs[1].emb
    local n = emb:shape()[1]
    local y = fs.tsne(emb, {seed = 1, perplexity = math.max(2, math.min(10, (n - 1) / 3)),
                            iterations = S.tsne_iterations})
    local labels = {}
    for i, s in ipairs(R1.test) do labels[i] = s.label end
    local names = {}
    for i, c in ipairs(CLASSES) do names[i] = c end
    plot("scatter", "tsne.png", {xy = y, labels = labels, names = names, point_size = 1.5,
      title = ("t-SNE of held-out embeddings (%s, seed %d)"):format(R1.mode, R1.runs[1].seed)})
    -- sample tissues per class: the first 6 training samples of each class, each mode
    local imgs, lab = {}, {}
    for _, R in ipairs(results) do
      for _, c in ipairs(CLASSES) do
        local k = 0
        for _, s in ipairs(R.train) do
          if s.class == c and k < 6 then imgs[#imgs + 1] = s.image; lab[#lab + 1] = R.mode .. " " .. c; k = k + 1 end
        end
      end
    end
    local _, layout = fs.plot.image_grid(tmpfig .. "/tissues.png",
                                         {images = imgs, labels = lab, scale = math.max(1, 128 // S.size)})
    F["tissues.png"] = {ok = true, rows = layout.rows}
    return F
  end)

  -- the report
  local md, html = stage("report", function()
    local r = fs.report.new{title = "fewshot: Prototypical Networks on simulated SPECT tissues"}
    r:paragraph(("A ResNet-18 Prototypical Network trained from scratch (%d-way %d-shot %d-query "
      .. "episodes, Adam lr %g, %d episodes) on tissue samples (%s) of %d simulated short-axis "
      .. "SPECT patients, and evaluated on %d held-out simulated patients of another seed. "
      .. "Inputs %dx%d.%s"):format(S.way, S.shot, S.query, S.lr, S.episodes,
      table.concat(CLASSES, ", "), S.train_n, S.test_n, S.size, S.size,
      S.quick and " **This is the --quick run: tiny episode counts, numbers not meaningful.**" or ""))
    r:heading("Main result: held-out patients")
    local rows = {{"paper (arXiv 2502.06632)", "96.67%", "93.33% (validation)", "-", "-", "-"}}
    for _, R in ipairs(results) do
      rows[#rows + 1] = {("ProtoNet, %s input"):format(R.mode), pct(R.train_acc),
        pm(R.mean, R.std), ("± %.2f%%"):format(100 * R.ci), tostring(#R.runs),
        ("%s ± %.2f%%"):format(pct(R.pixel.accuracy), 100 * R.pixel.ci95)}
    end
    r:table{header = {"method", "train acc.", "held-out acc. (mean ± std over seeds)",
                      "episode 95% CI", "seeds", "pixel baseline (± episode CI)"},
            rows = rows, align = {"l", "r", "r", "r", "r", "r"},
            caption = ("Held-out: %d test episodes per model on %d unseen patients (seed %d). "
              .. "'mean ± std over seeds' is the spread over independently trained models (training "
              .. "seeds 1..%d, sample std); 'episode 95%% CI' is 1.96 std/sqrt(episodes) over "
              .. "test episodes of one model (mean over seeds), which says nothing about training "
              .. "variance. Train acc.: mean over the last quarter of training episodes. The paper "
              .. "reports 96.67%% train and 93.33%% validation with no confidence interval, no "
              .. "per-patient split and no baseline."):format(S.test_episodes, S.test_n, S.test_seed, S.seeds)}
    r:heading("Per-class accuracy and confusion")
    for _, R in ipairs(results) do
      local prow = {R.mode}
      for i, c in ipairs(CLASSES) do
        local xs = {}
        for k, run in ipairs(R.runs) do xs[k] = run.test.per_class[c] or 0 end
        prow[i + 1] = pm(mean_std(xs))
      end
      r:table{header = {"input", "ventricle", "myocardium", "liver"}, rows = {prow},
              align = {"l", "r", "r", "r"}, caption = "per-class accuracy, mean ± std over seeds"}
      local conf = {}
      for i = 1, #CLASSES do conf[i] = {0, 0, 0} end
      for _, run in ipairs(R.runs) do
        for i = 1, #CLASSES do for j = 1, #CLASSES do conf[i][j] = conf[i][j] + run.test.confusion[i][j] end end
      end
      local crow = {}
      for i, c in ipairs(CLASSES) do crow[i] = {c, conf[i][1], conf[i][2], conf[i][3]} end
      r:table{header = {"true \\ predicted", "ventricle", "myocardium", "liver"}, rows = crow,
              align = {"l", "r", "r", "r"},
              caption = ("confusion matrix, %s input, query counts summed over seeds"):format(R.mode)}
    end
    r:heading("Leave-one-patient-out")
    if loocv then
      r:table{header = {"method", "mean ± std over folds", "folds"},
              rows = {{"ProtoNet (" .. S.modes[1] .. ")", pm(loocv.model.mean, loocv.model.std), #loocv.model.folds},
                      {"pixel baseline", pm(loocv.pixel.mean, loocv.pixel.std), #loocv.pixel.folds}},
              align = {"l", "r", "r"},
              caption = ("REDUCED: each fold trains a fresh model for only %d episodes (the main "
                .. "models train %d), one seed, %d support draws per held-out patient; the %d "
                .. "training patients only."):format(S.loocv_episodes, S.episodes,
                S.loocv_test_episodes, S.train_n)}
    else
      r:paragraph("Skipped (--no-loocv).")
    end
    r:heading("Robustness: harder cohorts, never used for training")
    local rrows = {}
    for _, row in ipairs(robust) do
      rrows[#rrows + 1] = {row.cohort, row.mode, row.mean and pm(row.mean, row.std) or ("n/a: " .. row.error),
                           row.pixel and ("%s ± %.2f%%"):format(pct(row.pixel), 100 * row.pixel_ci) or "n/a"}
    end
    r:table{header = {"cohort", "input", "ProtoNet (mean ± std over seeds)", "pixel baseline (± episode CI)"},
            rows = rrows, align = {"l", "l", "r", "r"},
            caption = ("%d patients per cohort (seeds %d..%d), the models trained above reused "
              .. "as they are; %d test episodes."):format(S.robust_n, S.robust_seed + 1,
              S.robust_seed + #cohorts.robust, S.test_episodes)}
    r:heading("Figures")
    local function fig(name, caption)
      r:figure(figdir .. "/" .. name, caption, figs[name] and figs[name].note)
    end
    fig("loss.png", "Training loss per episode (moving mean), every mode and seed")
    fig("accuracy.png", "Training accuracy per episode (moving mean) and validation points "
      .. ("(%d validation patients, seed %d)"):format(S.val_n, S.val_seed))
    fig("tsne.png", "t-SNE of the held-out patients' embeddings, coloured by class")
    fig("tissues.png", "Sample training tissues (first 6 per class), rows from the top: "
      .. table.concat(figs["tissues.png"].rows or {}, "; "))
    r:heading("Settings and seeds")
    local srows = {}
    local function set(k, v) srows[#srows + 1] = {k, tostring(v)} end
    set("image size", S.size .. "x" .. S.size)
    set("episodes", ("%d-way %d-shot %d-query"):format(S.way, S.shot, S.query))
    set("training episodes per model", S.episodes)
    set("training seeds (episode sampler; init seed 1000 + seed)", S.seeds)
    set("optimizer", ("Adam, lr %g"):format(S.lr))
    set("cohorts", ("train %d (seed %d), test %d (seed %d), validation %d (seed %d)"):format(
      S.train_n, S.train_seed, S.test_n, S.test_seed, S.val_n, S.val_seed))
    set("test episodes (seed)", ("%d (%d)"):format(S.test_episodes, S.eval_seed))
    set("threads", fs.get_num_threads())
    for _, t in ipairs(timings) do set("time: " .. t[1], ("%.1f s"):format(t[2])) end
    set("total time before writing", ("%.1f s"):format(fs.clock() - T0))
    r:table{header = {"setting", "value"}, rows = srows, align = {"l", "l"}}
    -- figures into place, then the report (both files atomically)
    os.execute("rm -rf " .. sh(figdir))
    if not os.rename(tmpfig, figdir) then error("demo: cannot move the figures to " .. figdir, 0) end
    local md_path, html_path = r:write(S.out)
    return md_path, html_path, r:skipped()
  end)

  print("")
  print("summary (held-out patients; mean ± std over training seeds, then the episode 95% CI):")
  print("  paper: 96.67% train, 93.33% validation (no CI, no per-patient split, no baseline)")
  for _, R in ipairs(results) do
    print(("  %-7s ProtoNet %s (CI ± %.2f%%, %d seeds)   pixel baseline %s ± %.2f%%"):format(R.mode,
      pm(R.mean, R.std), 100 * R.ci, #R.runs, pct(R.pixel.accuracy), 100 * R.pixel.ci95))
  end
  if loocv then
    print(("  LOOCV (reduced) %s: ProtoNet %s, pixel %s"):format(S.modes[1],
      pm(loocv.model.mean, loocv.model.std), pm(loocv.pixel.mean, loocv.pixel.std)))
  end
  print(("total %.1f s; report: %s and %s"):format(fs.clock() - T0, md, html))
end

local ok, err = xpcall(main, debug.traceback, arg)
if not ok then
  io.stderr:write("demo: FAILED: " .. tostring(err) .. "\n")
  io.stderr:write("demo: the last good report (if any) was left as it was\n")
  os.exit(1)
end
