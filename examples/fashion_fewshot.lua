-- examples/fashion_fewshot.lua: few-shot learning on a real data set nobody here made
-- (Fashion-MNIST, Debian's dataset-fashion-mnist). A Prototypical Network with a ResNet-18
-- backbone (1 channel, the 28x28 images resized to 32x32 with bilinear interpolation, values
-- /255) is trained on episodes of 5 garment classes, then evaluated 5-way 1-shot and 5-way
-- 5-shot with 15 queries per class on the 5 classes it never saw, beside the nearest-prototype
-- baseline in pixel space on the same episodes, over several training seeds.
--
--   lua5.4 examples/fashion_fewshot.lua [--quick] [--seeds N] [--episodes N] [--out DIR]
--                                       [--test-episodes N] [--data DIR]
--   make fashion    (installs dataset-fashion-mnist, builds, runs this; ARGS= passes options)
--
-- Fixed settings, chosen before any test-class number was seen and never tuned on them:
-- training classes T-shirt/top, Trouser, Pullover, Dress, Coat (labels 0-4), test classes
-- Sandal, Shirt, Sneaker, Bag, Ankle boot (5-9). Training episodes are 5-way 5-shot 15-query
-- (Adam, lr 1e-3) drawn from the first 5000 training-file images of each training class; the
-- other 1000 of each are a validation split (5-way 5-shot, reported, not used to select).
-- The test pool is the t10k file's 1000 images of each test class. One trained model per seed
-- is evaluated at both shots. Test episodes are scored on embeddings computed once per image
-- (eval mode: the same numbers as episode by episode, see examples/demo.lua).
-- Writes DIR/fashion_fewshot.md (atomically); prints the table.
local fs = require "fewshot"

fs.set_flush_denormal(true) -- denormal gradients once the loss is near 0 (examples/demo.lua)

local PACKAGE = "dataset-fashion-mnist"
local NAMES = {[0] = "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"}
local TRAIN_CLASSES = {0, 1, 2, 3, 4}
local TEST_CLASSES = {5, 6, 7, 8, 9}

local function fail(msg)
  io.stderr:write("fashion_fewshot: ", msg, "\n")
  os.exit(1)
end

local function parse(argv)
  local o = {quick = false, out = "out", data = "/usr/share/datasets/fashion-mnist"}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--quick" then o.quick = true
    elseif a == "--seeds" or a == "--episodes" or a == "--test-episodes" then
      local v = math.tointeger(tonumber(argv[i + 1] or ""))
      if not v or v < 1 then fail(a .. " needs a positive integer") end
      o[a:sub(3):gsub("-", "_")] = v
      i = i + 1
    elseif a == "--out" or a == "--data" then
      if not argv[i + 1] then fail(a .. " needs a directory") end
      o[a:sub(3)] = argv[i + 1]
      i = i + 1
    else
      fail(("unknown argument '%s'\nusage: lua5.4 examples/fashion_fewshot.lua [--quick] "
        .. "[--seeds N] [--episodes N] [--test-episodes N] [--out DIR] [--data DIR]"):format(a))
    end
    i = i + 1
  end
  return o
end

local function settings(o)
  local s = {way = 5, train_shot = 5, train_query = 15, query = 15, lr = 1e-3,
             episodes = 500, seeds = 3, test_episodes = 1000, eval_seed = 7,
             train_per_class = 5000, val_per_class = 1000, test_per_class = 1000,
             val_every = 100, val_episodes = 200, log_every = 50}
  if o.quick then -- seconds, for specs: tiny pools, a few episodes, one seed
    s.train_shot, s.train_query, s.query = 1, 3, 3
    s.episodes, s.seeds, s.test_episodes = 3, 1, 10
    s.train_per_class, s.val_per_class, s.test_per_class = 20, 10, 20
    s.val_every, s.val_episodes, s.log_every = 3, 5, 1
  end
  s.episodes = o.episodes or s.episodes
  s.seeds = o.seeds or s.seeds
  s.test_episodes = o.test_episodes or s.test_episodes
  s.quick, s.out, s.data = o.quick, o.out, o.data
  return s
end

local mean_std = fs.protonet.mean_std -- mean and sample std (n - 1)

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The IDX pair of one split; a clear message naming the package when it is not installed.
local function load_split(dir, stem)
  local ip, lp = ("%s/%s-images-idx3-ubyte.gz"):format(dir, stem), ("%s/%s-labels-idx1-ubyte.gz"):format(dir, stem)
  for _, p in ipairs({ip, lp}) do
    if not exists(p) then
      fail(("Fashion-MNIST is not installed: %s is missing. Install the Debian package %s "
        .. "(make fashion does it, or: sudo apt-get install %s), or pass --data DIR"):format(p,
        PACKAGE, PACKAGE))
    end
  end
  return fs.data.idx(ip), fs.data.idx(lp)
end

-- Samples {image = (1, 32, 32), label = 1..5, class = name} of the given classes: per class
-- the images at positions first..first+count-1 (in file order) among that class's images.
local function samples_of(images, labels, classes, first, count)
  local want, pos = {}, {}
  for k, c in ipairs(classes) do want[c], pos[c] = k, 0 end
  local idx, lab = {}, {}
  local ys = labels:totable()
  for i, y in ipairs(ys) do
    y = math.tointeger(y)
    local k = want[y]
    if k then
      pos[y] = pos[y] + 1
      if pos[y] >= first and pos[y] < first + count then idx[#idx + 1], lab[#lab + 1] = i, k end
    end
  end
  for _, c in ipairs(classes) do
    if pos[c] < first + count - 1 then
      fail(("class %s has %d images, fewer than the %d asked for"):format(NAMES[c], pos[c], first + count - 1))
    end
  end
  local x = images:index_select(1, idx):reshape(#idx, 1, 28, 28) / 255
  x = fs.F.interpolate(x, {size = {32, 32}, mode = "bilinear"}):contiguous()
  local out = {}
  for j = 1, #idx do
    out[j] = {image = x:narrow(1, j, 1):view(1, 32, 32), label = lab[j],
              class = NAMES[classes[lab[j]]]}
  end
  return out
end

-- Proxy samples whose image is the embedding (D, 1, 1), scored with embed="pixels".
local function embedded(model, samples)
  local parts, chunk = {}, 500
  for i = 1, #samples, chunk do
    local imgs = {}
    for j = i, math.min(#samples, i + chunk - 1) do imgs[#imgs + 1] = samples[j].image end
    parts[#parts + 1] = fs.protonet.embed(model, fs.stack(imgs, 1))
  end
  local e = fs.cat(parts, 1)
  local d = e:shape()[2]
  local out = {}
  for i, s in ipairs(samples) do
    out[i] = {image = e:narrow(1, i, 1):contiguous():view(d, 1, 1), label = s.label, class = s.class}
  end
  return out
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then fail(("cannot write %s (%s)"):format(tmp, err)) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then fail(("cannot rename %s to %s (%s)"):format(tmp, path, rerr)) end
end

local function main(argv)
  local S = settings(parse(argv))
  local T0 = fs.clock()
  local train_x, train_y = load_split(S.data, "train")
  local test_x, test_y = load_split(S.data, "t10k")
  local train = samples_of(train_x, train_y, TRAIN_CLASSES, 1, S.train_per_class)
  local val = samples_of(train_x, train_y, TRAIN_CLASSES, S.train_per_class + 1, S.val_per_class)
  local test = samples_of(test_x, test_y, TEST_CLASSES, 1, S.test_per_class)
  train_x, test_x = nil, nil
  collectgarbage()
  local names = {}
  for _, c in ipairs(TEST_CLASSES) do names[#names + 1] = NAMES[c] end
  print(("fashion_fewshot%s: %d threads, 32x32 inputs; train %d images (%d classes), val %d, "
    .. "test %d (%s); %d seed(s) x %d episodes (%d-way %d-shot %d-query), %d test episodes")
    :format(S.quick and " (--quick)" or "", fs.get_num_threads(), #train, #TRAIN_CLASSES, #val,
            #test, table.concat(names, ", "), S.seeds, S.episodes, S.way, S.train_shot,
            S.train_query, S.test_episodes))
  io.stdout:flush()

  local shots = {1, 5}
  local runs = {}
  for seed = 1, S.seeds do
    fs.manual_seed(1000 + seed) -- the backbone's initialisation
    local net = fs.nn.resnet18{in_channels = 1}
    local val_acc
    local _, hist = fs.protonet.train{
      backbone = net, samples = train, way = S.way, shot = S.train_shot, query = S.train_query,
      episodes = S.episodes, lr = S.lr, seed = seed, progress = "lines", log_every = S.log_every,
      on_episode = function(e)
        if e % S.val_every == 0 or e == S.episodes then
          local r = fs.protonet.evaluate{samples = embedded(net, val), embed = "pixels", way = S.way,
                                         shot = 5,
                                         query = S.query, episodes = S.val_episodes, seed = 99}
          val_acc = r.accuracy
          print(("  validation (training classes, held-out images) at episode %d: %.4f"):format(e, r.accuracy))
        end
      end}
    local te = embedded(net, test)
    local run = {seed = seed, val = val_acc, seconds = hist.seconds}
    for _, k in ipairs(shots) do
      run[k] = fs.protonet.evaluate{samples = te, embed = "pixels", way = S.way, shot = k,
                                    query = S.query, episodes = S.test_episodes, seed = S.eval_seed + k}
      print(("  seed %d, %d-shot: %.4f ± %.4f (episode 95%% CI)"):format(seed, k, run[k].accuracy, run[k].ci95))
    end
    print(("  seed %d: %.1f s training"):format(seed, hist.seconds))
    io.stdout:flush()
    runs[seed] = run
  end
  local pixel = {}
  for _, k in ipairs(shots) do
    pixel[k] = fs.protonet.evaluate{samples = test, embed = "pixels", way = S.way, shot = k,
                                    query = S.query, episodes = S.test_episodes, seed = S.eval_seed + k}
  end

  local lines = {
    "# Fashion-MNIST few-shot (examples/fashion_fewshot.lua)", "",
    ("Train classes: %s. Test classes (never seen in training): %s."):format(
      "T-shirt/top, Trouser, Pullover, Dress, Coat", table.concat(names, ", ")),
    ("ResNet-18 (1 channel, 32x32 bilinear-resized inputs), %d-way %d-shot %d-query training "
      .. "episodes x %d, Adam lr %g; %d seed(s); %d test episodes (5-way, %d queries per class) "
      .. "from %d test images; %d threads.%s"):format(S.way, S.train_shot, S.train_query,
      S.episodes, S.lr, S.seeds, S.test_episodes, S.query, #test, fs.get_num_threads(),
      S.quick and " **--quick: not a result.**" or ""), "",
    "| shot | ProtoNet (mean ± std over seeds) | episode 95% CI (mean over seeds) | per seed | pixel baseline (± episode CI) |",
    "|---|---|---|---|---|"}
  local summary = {}
  for _, k in ipairs(shots) do
    local accs, cis, per = {}, {}, {}
    for i, run in ipairs(runs) do
      accs[i], cis[i] = run[k].accuracy, run[k].ci95
      per[i] = ("%.2f"):format(100 * run[k].accuracy)
    end
    local m, sd = mean_std(accs)
    local ci = mean_std(cis)
    summary[k] = {mean = m, std = sd, ci = ci}
    lines[#lines + 1] = ("| %d | %.2f ± %.2f%% | ± %.2f%% | %s | %.2f ± %.2f%% |"):format(k, 100 * m,
      100 * sd, 100 * ci, table.concat(per, ", "), 100 * pixel[k].accuracy, 100 * pixel[k].ci95)
  end
  local vals, secs = {}, {}
  for i, run in ipairs(runs) do vals[i], secs[i] = run.val or 0, run.seconds end
  local vm, vs = mean_std(vals)
  local sm = mean_std(secs)
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Validation (training classes, held-out images, 5-way): %.2f ± %.2f%%. "
    .. "Training %.1f s per seed; total %.1f s."):format(100 * vm, 100 * vs, sm, fs.clock() - T0)
  local text = table.concat(lines, "\n") .. "\n"
  if not os.execute(("mkdir -p '%s'"):format(S.out:gsub("'", "'\\''"))) then
    fail("cannot create " .. S.out)
  end
  local path = S.out .. "/fashion_fewshot.md"
  write_atomic(path, text)
  print(text)
  print("wrote " .. path)
end

main(arg)
