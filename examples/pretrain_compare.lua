-- examples/pretrain_compare.lua: "pre-trained vs from scratch" measured, not assumed, on the
-- SPECT tissue task of examples/demo.lua (train on 12 simulated patients of seed 1, test on 12
-- held-out patients of seed 2; masked 32x32 inputs; 3-way 3-shot 6-query episodes, Adam lr 1e-3,
-- 200 training episodes, 300 test episodes of seed 7: the demo's settings).
-- Backbones, each over several seeds (the seed drives the initialisation, the pre-training
-- batches and the episodes):
--   scratch   fs.nn.resnet18{in_channels = 1}, as the demo trains it;
--   fashion   fs.protonet.pretrain on Fashion-MNIST (all 10 classes of its training file, the
--             first 2000 images of each, 32x32 bilinear, /255), then the ProtoNet training;
--   spect     fs.protonet.pretrain_spect: 36 simulated patients of cohort seed 100 (never
--             evaluated), their ventricle / myocardium / liver samples, then the ProtoNet training.
-- Each model is also scored on the demo's harder cohorts (12 patients each, never trained on:
-- mixed views seed 11, perfusion defects seed 12, low counts seed 13, hot spots seed 14), since
-- on the default short-axis cohort a ProtoNet from scratch already scores near 100%.
-- The pixel-space nearest-prototype baseline on the same test episodes beside them.
--
--   lua5.4 examples/pretrain_compare.lua [--quick] [--seeds N] [--sources scratch,fashion,spect]
--                                        [--out DIR] [--data DIR]
--   make pretrain-compare ARGS="--seeds 3"
-- Writes DIR/pretrain_compare.md (atomically) and prints it.
local fs = require "fewshot"

fs.set_flush_denormal(true)

local function fail(msg)
  io.stderr:write("pretrain_compare: ", msg, "\n")
  os.exit(1)
end

local o = {quick = false, seeds = 5, out = "out", data = "/usr/share/datasets/fashion-mnist",
           sources = {"scratch", "fashion", "spect"}}
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then o.quick = true
    elseif a == "--seeds" then
      o.seeds = math.tointeger(tonumber(arg[i + 1] or "")) or fail("--seeds needs an integer")
      i = i + 1
    elseif a == "--sources" then
      o.sources = {}
      for w in (arg[i + 1] or ""):gmatch("[^,]+") do o.sources[#o.sources + 1] = w end
      i = i + 1
    elseif a == "--out" or a == "--data" then
      o[a:sub(3)] = arg[i + 1] or fail(a .. " needs a directory")
      i = i + 1
    else
      fail("unknown argument '" .. a .. "'")
    end
    i = i + 1
  end
end

local S = {train_n = 12, test_n = 12, train_seed = 1, test_seed = 2, size = 32, input = "masked",
           way = 3, shot = 3, query = 6, lr = 1e-3, episodes = 200, test_episodes = 300,
           eval_seed = 7, fashion_per_class = 2000, fashion_steps = 200, fashion_batch = 64,
           spect_patients = 36, spect_steps = 100, spect_batch = 36, robust_n = 12, robust_seed = 10,
           early = {0, 20}} -- also scored after 0 (the backbone as it comes) and 20 ProtoNet episodes
if o.quick then
  S.train_n, S.test_n, S.shot, S.query, S.episodes, S.test_episodes = 4, 4, 1, 2, 3, 10
  S.fashion_per_class, S.fashion_steps, S.fashion_batch = 10, 3, 16
  S.spect_patients, S.spect_steps, S.spect_batch, S.robust_n = 3, 3, 9, 4
  S.early = {0, 1}
  o.seeds = math.min(o.seeds, 1)
end
local CLASSES = {"ventricle", "myocardium", "liver"}

local mean_std = fs.protonet.mean_std -- mean and sample std (n - 1)

-- Fashion-MNIST's training file, `per` images of each of the 10 classes, as (N, 1, 32, 32) and
-- 1-based labels.
local FASHION_FILES = {o.data .. "/train-images-idx3-ubyte.gz", o.data .. "/train-labels-idx1-ubyte.gz"}
local function fashion_images(per)
  local ip, lp = FASHION_FILES[1], FASHION_FILES[2]
  local x, y = fs.data.idx(ip), fs.data.idx(lp):totable()
  local count, idx, lab = {}, {}, {}
  for i, v in ipairs(y) do
    local c = math.tointeger(v)
    count[c] = (count[c] or 0) + 1
    if count[c] <= per then idx[#idx + 1], lab[#lab + 1] = i, c + 1 end
  end
  local imgs = x:index_select(1, idx):reshape(#idx, 1, 28, 28) / 255
  return fs.F.interpolate(imgs, {size = {32, 32}, mode = "bilinear"}):contiguous(), lab
end

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
  return out
end

local T0 = fs.clock()
for _, source in ipairs(o.sources) do -- before any work: the data set and the source names
  if source ~= "scratch" and source ~= "fashion" and source ~= "spect" then
    fail("unknown source '" .. source .. "' (scratch, fashion, spect)")
  end
  if source == "fashion" then
    for _, p in ipairs(FASHION_FILES) do
      local f = io.open(p, "rb")
      if not f then
        fail(("Fashion-MNIST is not installed: %s is missing. Install the Debian package "
          .. "dataset-fashion-mnist (make fashion does it), or run with --sources scratch,spect"):format(p))
      end
      f:close()
    end
  end
end
local topts = {input = S.input, size = S.size, classes = CLASSES}
local train = fs.data.tissues(fs.spect.dataset{n = S.train_n, seed = S.train_seed, view = "short_axis"}, topts)
local test = fs.data.tissues(fs.spect.dataset{n = S.test_n, seed = S.test_seed, view = "short_axis"}, topts)
-- the demo's robustness cohorts (examples/demo.lua: seeds robust_seed + k)
local ROBUST = {{name = "mixed views", opts = {view = "mixed"}},
                {name = "perfusion defects", opts = {defect_prob = 1}},
                {name = "low counts (5e4)", opts = {counts = 5e4}},
                {name = "hot spots", opts = {hotspot_prob = 1}}}
for k, r in ipairs(ROBUST) do
  local opts = {n = S.robust_n, seed = S.robust_seed + k, view = "short_axis"}
  for kk, v in pairs(r.opts) do opts[kk] = v end
  r.samples = fs.data.tissues(fs.spect.dataset(opts), topts)
end
print(("pretrain_compare%s: %d threads; %d train / %d test samples; sources %s; %d seed(s)")
  :format(o.quick and " (--quick)" or "", fs.get_num_threads(), #train, #test,
          table.concat(o.sources, ","), o.seeds))
io.stdout:flush()

local fashion_x, fashion_y
local results = {}
for _, source in ipairs(o.sources) do
  if source == "fashion" and not fashion_x then fashion_x, fashion_y = fashion_images(S.fashion_per_class) end
  local R = {source = source, accs = {}, cis = {}, pre = {}, train_s = {}, robust = {}, early = {}}
  for k = 1, #S.early do R.early[k] = {} end
  for k = 1, #ROBUST do R.robust[k] = {} end
  results[#results + 1] = R
  for seed = 1, o.seeds do
    fs.manual_seed(1000 + seed) -- the same initialisation for every source
    local net = fs.nn.resnet18{in_channels = 1}
    local pre_s, pre_acc = 0, nil
    if source == "fashion" then
      local _, h = fs.protonet.pretrain{backbone = net, images = fashion_x, labels = fashion_y,
                                        steps = S.fashion_steps, batch = S.fashion_batch,
                                        lr = S.lr, seed = seed}
      pre_s = h.seconds
      pre_acc = h.accuracy[#h.accuracy]
    elseif source == "spect" then
      local _, h = fs.protonet.pretrain_spect{backbone = net, patients = S.spect_patients,
                                              steps = S.spect_steps, batch = S.spect_batch,
                                              lr = S.lr, seed = seed, size = S.size, input = S.input}
      pre_s = h.seconds
      pre_acc = h.accuracy[#h.accuracy]
    end
    local function held_out() -- eval mode, no tape; the training mode is restored
      return fs.protonet.evaluate{samples = embedded(net, test), embed = "pixels", way = S.way,
                                  shot = S.shot, query = S.query, episodes = S.test_episodes,
                                  seed = S.eval_seed}.accuracy
    end
    for k, e in ipairs(S.early) do if e == 0 then R.early[k][seed] = held_out() end end
    local _, hist = fs.protonet.train{backbone = net, samples = train, way = S.way, shot = S.shot,
                                      query = S.query, episodes = S.episodes, lr = S.lr,
                                      seed = seed, progress = false,
                                      on_episode = function(e)
                                        for k, ek in ipairs(S.early) do
                                          if ek == e then R.early[k][seed] = held_out() end
                                        end
                                      end}
    local early = {}
    for k in ipairs(S.early) do early[k] = ("%.3f"):format(R.early[k][seed]) end
    local r = fs.protonet.evaluate{samples = embedded(net, test), embed = "pixels", way = S.way,
                                   shot = S.shot, query = S.query, episodes = S.test_episodes,
                                   seed = S.eval_seed}
    R.accs[seed], R.cis[seed], R.pre[seed], R.train_s[seed] = r.accuracy, r.ci95, pre_s, hist.seconds
    local rob = {}
    for k, c in ipairs(ROBUST) do
      R.robust[k][seed] = fs.protonet.evaluate{samples = embedded(net, c.samples), embed = "pixels",
                                               way = S.way, shot = S.shot, query = S.query,
                                               episodes = S.test_episodes, seed = S.eval_seed}.accuracy
      rob[k] = ("%.3f"):format(R.robust[k][seed])
    end
    print(("  %-7s seed %d: %.4f ± %.4f (episode CI); after %s episodes %s; harder cohorts %s; pre-training %.1f s%s, ProtoNet %.1f s")
      :format(source, seed, r.accuracy, r.ci95, table.concat(S.early, ","), table.concat(early, " "),
              table.concat(rob, " "), pre_s,
              pre_acc and (" (last batch acc %.2f)"):format(pre_acc) or "", hist.seconds))
    io.stdout:flush()
  end
end
local pixel = fs.protonet.evaluate{samples = test, embed = "pixels", way = S.way, shot = S.shot,
                                   query = S.query, episodes = S.test_episodes, seed = S.eval_seed}
for _, c in ipairs(ROBUST) do
  c.pixel = fs.protonet.evaluate{samples = c.samples, embed = "pixels", way = S.way, shot = S.shot,
                                 query = S.query, episodes = S.test_episodes, seed = S.eval_seed}.accuracy
end

local lines = {"# Pre-training vs from scratch (examples/pretrain_compare.lua)", "",
  ("SPECT tissues, %s %dx%d, train %d patients (seed %d), test %d held-out (seed %d); "
    .. "%d-way %d-shot %d-query, %d episodes, %d test episodes; %d threads.%s"):format(S.input,
    S.size, S.size, S.train_n, S.train_seed, S.test_n, S.test_seed, S.way, S.shot, S.query,
    S.episodes, S.test_episodes, fs.get_num_threads(), o.quick and " **--quick: not a result.**" or ""),
  "",
  ("| backbone | after %d ProtoNet episodes | after %d | held-out accuracy after %d (mean ± std "
    .. "over seeds) | episode 95%% CI (mean) | per seed | mixed views | perfusion defects | "
    .. "low counts | hot spots | pre-training cost per seed |"):format(S.early[1], S.early[2], S.episodes),
  "|---|---|---|---|---|---|---|---|---|---|---|"}
for _, R in ipairs(results) do
  local m, sd = mean_std(R.accs)
  local ci = mean_std(R.cis)
  local ps = mean_std(R.pre)
  local per = {}
  for i, a in ipairs(R.accs) do per[i] = ("%.2f"):format(100 * a) end
  local label = ({scratch = "from scratch",
                  fashion = ("Fashion-MNIST (10 classes, %d images, %d steps x %d)"):format(
                    10 * S.fashion_per_class, S.fashion_steps, S.fashion_batch),
                  spect = ("simulated SPECT (%d patients, seed 100; %d steps x %d)"):format(
                    S.spect_patients, S.spect_steps, S.spect_batch)})[R.source]
  local rob = {}
  for k = 1, #ROBUST do
    local rm, rs = mean_std(R.robust[k])
    rob[k] = ("%.2f ± %.2f%%"):format(100 * rm, 100 * rs)
  end
  local early = {}
  for k = 1, #S.early do
    local em, es = mean_std(R.early[k])
    early[k] = ("%.2f ± %.2f%%"):format(100 * em, 100 * es)
  end
  lines[#lines + 1] = ("| %s | %s | %.2f ± %.2f%% | ± %.2f%% | %s | %s | %s |"):format(label,
    table.concat(early, " | "), 100 * m,
    100 * sd, 100 * ci, table.concat(per, ", "), table.concat(rob, " | "),
    R.source == "scratch" and "-" or ("%.1f s"):format(ps))
end
local prob = {}
for k, c in ipairs(ROBUST) do prob[k] = ("%.2f%%"):format(100 * c.pixel) end
lines[#lines + 1] = ("| pixel baseline | - | - | %.2f%% | ± %.2f%% | - | %s | - |"):format(100 * pixel.accuracy,
  100 * pixel.ci95, table.concat(prob, " | "))
lines[#lines + 1] = ""
lines[#lines + 1] = ("Total %.1f s."):format(fs.clock() - T0)
local text = table.concat(lines, "\n") .. "\n"
os.execute(("mkdir -p '%s'"):format(o.out:gsub("'", "'\\''")))
local path = o.out .. "/pretrain_compare.md"
local f = io.open(path .. ".tmp", "w") or fail("cannot write " .. path .. ".tmp")
f:write(text)
f:close()
if not os.rename(path .. ".tmp", path) then fail("cannot rename " .. path .. ".tmp") end
print(text)
print("wrote " .. path)
