-- fs.protonet: the episode loss against PyTorch fixtures (tools/make_fixtures_protonet.py) and
-- finite differences; training (Adam, validation, best checkpoint, bit-identical resume);
-- evaluation (accuracy, 95% CI, per class, confusion), leave-one-patient-out, pixel baseline.
local fs = require "fewshot"
local helper = require "helper"

local FIX = "spec/fixtures/protonet/"

local function fails_with(msg, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.matches(msg, err, 1, true)
end

local function ints(t)
  local out = {}
  for i, v in ipairs(helper.values(t)) do out[i] = math.tointeger(v) end
  return out
end

describe("protonet.loss", function()
  local function check(name, distance)
    local f = helper.load_fixture(FIX .. name .. ".txt")
    local s = f.support:clone():requires_grad(true)
    local q = f.query:clone():requires_grad(true)
    local loss, acc, logits, protos, classes = fs.protonet.loss(s, ints(f.support_labels), q,
      ints(f.query_labels), {distance = distance})
    assert.tensor_near(protos, f.prototypes, 1e-5)
    assert.tensor_near(logits, -f.dist, 1e-5)
    assert.tensor_near(fs.F.log_softmax(logits, 2), f.logp, 1e-5)
    assert.tensor_near(loss, f.loss, 1e-5)
    assert.near(f.accuracy:item(), acc, 1e-7)
    loss:backward()
    assert.tensor_near(s.grad, f.dsupport, 1e-5)
    assert.tensor_near(q.grad, f.dquery, 1e-5)
    return classes
  end

  it("matches PyTorch: squared Euclidean (prototypes, distances, log-softmax, loss, grads)", function()
    assert.same({1, 2, 3}, check("episode_sqeuclidean", "sqeuclidean"))
    check("paper")
  end)
  it("matches PyTorch: Euclidean and cosine", function()
    check("episode_euclidean", "euclidean")
    check("episode_cosine", "cosine")
  end)
  it("maps shuffled, non-contiguous labels to sorted classes", function()
    assert.same({2, 5, 7}, check("shuffled"))
  end)

  it("agrees with finite differences for each distance", function()
    local g = fs.generator(3)
    local s = fs.randn({6, 4}, {generator = g}):requires_grad(true)
    local q = fs.randn({4, 4}, {generator = g}):requires_grad(true)
    for _, d in ipairs({"sqeuclidean", "euclidean", "cosine"}) do
      local err = helper.gradcheck(function(a, b)
        return (fs.protonet.loss(a, {3, 1, 3, 1, 2, 2}, b, {1, 2, 3, 3}, {distance = d}))
      end, {s, q}, {eps = 1e-2})
      assert.is_true(err < 2e-2, d .. ": gradcheck error " .. err)
    end
  end)

  it("gives accuracy 1 and a small loss on well separated classes", function()
    local s = fs.tensor({{0, 0}, {0, 0.2}, {10, 0}, {10, 0.2}})
    local q = fs.tensor({{0.1, 0.1}, {9.9, 0}})
    local loss, acc, logits = fs.protonet.loss(s, {1, 1, 2, 2}, q, {1, 2})
    assert.equal(1, acc)
    assert.is_true(loss:item() < 1e-6)
    assert.tensor_near(logits, {{-0.01, -98.01}, {-98.02, -0.02}}, 1e-5)
    local _, acc2 = fs.protonet.loss(s, {1, 1, 2, 2}, q, {2, 1})
    assert.equal(0, acc2)
  end)

  it("raises clear errors", function()
    local s, q = fs.zeros({4, 3}), fs.zeros({2, 5})
    fails_with("protonet.loss: support embeddings (4, 3) and query embeddings (2, 5) differ in size",
      fs.protonet.loss, s, {1, 1, 2, 2}, q, {1, 2})
    fails_with("protonet.loss: query 2 has label 3, which no support embedding has (support labels: 1, 2)",
      fs.protonet.loss, s, {1, 1, 2, 2}, fs.zeros({2, 3}), {1, 3})
    fails_with("protonet.loss: support_labels has 3 labels for 4 embeddings",
      fs.protonet.loss, s, {1, 1, 2}, fs.zeros({2, 3}), {1, 2})
    fails_with("protonet.loss: query embeddings must be (N, D), got (2, 3, 1)",
      fs.protonet.loss, s, {1, 1, 2, 2}, fs.zeros({2, 3, 1}), {1, 2})
    fails_with("protonet.loss: option 'distance' must be one of sqeuclidean, euclidean, cosine, got 'l1'",
      fs.protonet.loss, s, {1, 1, 2, 2}, fs.zeros({2, 3}), {1, 2}, {distance = "l1"})
    fails_with("protonet.loss: unknown option 'distanse'",
      fs.protonet.loss, s, {1, 1, 2, 2}, fs.zeros({2, 3}), {1, 2}, {distanse = "cosine"})
  end)
end)

-- a small conv net: (N, 1, H, W) -> (N, 8)
local function tiny(seed)
  return fs.nn.sequential{
    fs.nn.conv2d{in_channels = 1, out_channels = 8, kernel = 3, padding = 1, seed = seed},
    fs.nn.batchnorm2d(8), fs.nn.relu(), fs.nn.maxpool2d{kernel = 2},
    fs.nn.conv2d{in_channels = 8, out_channels = 8, kernel = 3, padding = 1, seed = seed + 1},
    fs.nn.batchnorm2d(8), fs.nn.relu(), fs.nn.adaptive_avgpool2d{output_size = {1, 1}},
    fs.nn.flatten()}
end

local tmpdir = helper.tmpdir

local function state_values(model)
  local sd, keys, out = model:state_dict(), {}, {}
  for k in pairs(sd) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do out[k] = helper.values(sd[k]) end
  return out
end

describe("protonet.train", function()
  local items = fs.spect.dataset{n = 10, seed = 2}
  local samples = fs.data.tissues(items, {size = 16})
  local train, val = {}, {}
  for _, s in ipairs(samples) do
    if s.patient <= 5 then train[#train + 1] = s else val[#val + 1] = s end
  end
  local base = {samples = train, way = 3, shot = 2, query = 3, val = val, val_every = 3,
                val_episodes = 5, seed = 5, lr = 1e-2, progress = false}
  local function with(t)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(t) do o[k] = v end
    return o
  end

  it("lowers the loss, validates every val_every episodes, keeps the best checkpoint", function()
    local dir = tmpdir()
    local snapshots, modes = {}, {}
    local net = tiny(1)
    local model, h = fs.protonet.train(with{backbone = net, episodes = 12, checkpoint = dir,
      on_episode = function(e)
        snapshots[e] = state_values(net)
        modes[e] = net:is_training()
      end})
    assert.equal(net, model)
    for e = 1, 12 do assert.is_true(modes[e], "train mode at episode " .. e) end
    assert.equal(12, #h.loss)
    assert.equal(12, #h.accuracy)
    assert.same({3, 6, 9, 12}, {h.val[1].episode, h.val[2].episode, h.val[3].episode, h.val[4].episode})
    local first = (h.loss[1] + h.loss[2] + h.loss[3]) / 3
    local last = (h.loss[10] + h.loss[11] + h.loss[12]) / 3
    assert.is_true(last < first, ("loss %g -> %g"):format(first, last))
    local best = h.val[1]
    for _, v in ipairs(h.val) do if v.accuracy > best.accuracy then best = v end end
    assert.same({episode = best.episode, accuracy = best.accuracy}, h.best)
    local st = assert(loadfile(dir .. "/best.lua", "t", {}))()
    assert.equal(best.episode, st.episode)
    local saved = fs.io.load(dir .. "/" .. st.model_file)
    local m2 = tiny(1)
    m2:load_state_dict(saved)
    assert.same(state_values(m2), snapshots[best.episode] or error("no snapshot"))
    assert.is_true(model:is_training())
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("resumes bit-identically: 6 episodes, then resume to 10, equals 10 in one run", function()
    local dir = tmpdir()
    fs.protonet.train(with{backbone = tiny(1), episodes = 6, checkpoint = dir})
    local ma, ha = fs.protonet.train(with{backbone = tiny(1), episodes = 10})
    local ran = {}
    local mb, hb = fs.protonet.train(with{backbone = tiny(1), episodes = 10, resume = dir,
      on_episode = function(e) ran[#ran + 1] = e end})
    assert.same({7, 8, 9, 10}, ran) -- it did start from the checkpoint
    assert.same(ha.loss, hb.loss)
    assert.same(ha.accuracy, hb.accuracy)
    assert.same(ha.val, hb.val)
    assert.same(state_values(ma), state_values(mb)) -- weights and BatchNorm statistics, exactly
    -- a resume with another seed is refused
    local ok, err = pcall(fs.protonet.train, with{backbone = tiny(1), episodes = 10, seed = 6,
                                                  resume = dir .. "/last.lua"})
    assert.is_false(ok)
    assert.matches("protonet.train: resume: the checkpoint was trained with seed = 5, not 6", err, 1, true)
    -- a checkpoint from another architecture is refused by name, and left as it was
    local before = helper.read_bytes(dir .. "/last.lua")
    local other = fs.nn.sequential{fs.nn.conv2d{in_channels = 1, out_channels = 4, kernel = 3, seed = 1},
      fs.nn.adaptive_avgpool2d{output_size = {1, 1}}, fs.nn.flatten()}
    ok, err = pcall(fs.protonet.train, with{backbone = other, episodes = 10, resume = dir})
    assert.is_false(ok)
    assert.matches("protonet.train: resume: the checkpoint " .. dir .. "/last-000006.model.safetensors does "
      .. "not fit this backbone (another architecture?): load_state_dict: Sequential: missing keys (0)", err, 1, true)
    assert.matches("size mismatch (2): [0.weight: checkpoint (8, 1, 3, 3), model (4, 1, 3, 3)", err, 1, true)
    assert.equal(before, helper.read_bytes(dir .. "/last.lua"))
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("applies step_lr and rejects bad options", function()
    local lrs = {}
    fs.protonet.train(with{backbone = tiny(1), episodes = 5, val = nil, step_lr = {step = 2, gamma = 0.5},
      on_episode = function(e, _, _, info) lrs[e] = info.lr end})
    assert.same({1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3}, lrs)
    fails_with("protonet.train: unknown option 'episdes'", fs.protonet.train,
      with{backbone = tiny(1), episdes = 3})
    fails_with("protonet.train: option 'backbone' (a module) is required", fs.protonet.train,
      with{episodes = 3})
    fails_with("protonet.train: resume: no checkpoint state at /nonexistent", fs.protonet.train,
      with{backbone = tiny(1), resume = "/nonexistent"})
    fails_with("protonet.train: val: data.episode_iter: class 'ventricle' has 2 samples, fewer than "
      .. "shot + query = 5", fs.protonet.train, with{backbone = tiny(1), val = {val[1], val[2], val[3],
      val[4], val[5], val[6]}})
    fails_with("data.episode_iter: class 'ventricle' has 5 samples, fewer than shot + query = 9",
      fs.protonet.train, with{backbone = tiny(1), shot = 3, query = 6})
  end)
end)

describe("protonet.evaluate", function()
  it("mean_std gives the mean and the sample std (n - 1), 0 for one value", function()
    local m, sd = fs.protonet.mean_std({1, 2, 3, 4})
    assert.near(2.5, m, 1e-15)
    assert.near(math.sqrt(5 / 3), sd, 1e-15)
    assert.same({7, 0}, {fs.protonet.mean_std({7})})
    assert.has_error(function() fs.protonet.mean_std({}) end, "protonet.mean_std: no values")
  end)

  it("computes the 95% interval as 1.96 * std / sqrt(n), std over n", function()
    local mean, ci, std = fs.protonet.ci95({0.5, 1, 1, 0.5})
    assert.near(0.75, mean, 1e-15)
    assert.near(0.25, std, 1e-15)
    assert.near(0.245, ci, 1e-15)
    local _, ci1 = fs.protonet.ci95({1, 1, 1})
    assert.equal(0, ci1)
    mean, ci = fs.protonet.ci95({1 / 3, 2 / 3, 1})
    assert.near(2 / 3, mean, 1e-15)
    assert.near(1.96 * math.sqrt(2 / 27) / math.sqrt(3), ci, 1e-15)
  end)

  -- class k's images are all k (plus a little per-sample offset), 8 per class, patient i
  local function separable()
    local s = {}
    for label, c in ipairs({"ventricle", "myocardium", "liver"}) do
      for i = 1, 8 do
        s[#s + 1] = {image = fs.full({1, 4, 4}, label + 0.01 * i), label = label, class = c, patient = i}
      end
    end
    return s
  end

  it("the pixel baseline classifies separable samples perfectly; counts add up", function()
    local r = fs.protonet.evaluate{embed = "pixels", samples = separable(), shot = 2, query = 5,
                                   episodes = 7, seed = 1}
    assert.equal(1, r.accuracy)
    assert.equal(0, r.ci95)
    assert.equal(7, r.episodes)
    assert.same({"ventricle", "myocardium", "liver"}, r.classes)
    assert.same({{35, 0, 0}, {0, 35, 0}, {0, 0, 35}}, r.confusion)
    assert.same({ventricle = 1, myocardium = 1, liver = 1}, r.per_class)
  end)

  it("evaluates a model in eval mode without changing it, per class and confusion consistent", function()
    local samples = fs.data.tissues(fs.spect.dataset{n = 8, seed = 2}, {size = 16})
    local m = tiny(3)
    m:train()
    local before = state_values(m)
    local r = fs.protonet.evaluate{model = m, samples = samples, shot = 2, query = 3, episodes = 20, seed = 2}
    assert.same(before, state_values(m)) -- eval mode: BatchNorm statistics untouched
    assert.is_true(m:is_training())       -- and the mode restored
    local s, correct, total = 0, 0, 0
    for _, a in ipairs(r.accuracies) do s = s + a end
    assert.near(s / 20, r.accuracy, 1e-12)
    for i = 1, 3 do
      local row = 0
      for j = 1, 3 do row = row + r.confusion[i][j] end
      assert.equal(20 * 3, row)
      assert.near(r.confusion[i][i] / row, r.per_class[r.classes[i]], 1e-12)
      correct, total = correct + r.confusion[i][i], total + row
    end
    assert.near(correct / total, r.accuracy, 1e-12) -- equal query counts: the same mean
    local mean, ci = fs.protonet.ci95(r.accuracies)
    assert.near(mean, r.accuracy, 1e-15)
    assert.near(ci, r.ci95, 1e-15)
    -- cache=false embeds every episode's 27 images afresh: the same per-episode accuracies
    local fresh = fs.protonet.evaluate{model = m, samples = samples, shot = 2, query = 3, episodes = 20,
                                       seed = 2, cache = false}
    assert.same(r.accuracies, fresh.accuracies)
    assert.same(r.confusion, fresh.confusion)
    assert.same(before, state_values(m))
    fails_with("protonet.evaluate: option 'model' is required", fs.protonet.evaluate, {samples = samples})
    fails_with("protonet.evaluate: unknown option 'shots'", fs.protonet.evaluate,
      {model = m, samples = samples, shots = 2})
  end)

  it("leave-one-patient-out: one fold per patient, held-out queries, mean and std over folds", function()
    local r = fs.protonet.loocv{embed = "pixels", samples = separable(), shot = 2, test_episodes = 3}
    assert.equal(8, #r.folds)
    assert.equal(1, r.mean)
    assert.equal(0, r.std)
    for i, f in ipairs(r.folds) do
      assert.equal(i, f.patient)
      assert.equal(3, f.queries)
      assert.same({{3, 0, 0}, {0, 3, 0}, {0, 0, 3}}, f.confusion)
    end
    -- with training: a backbone per fold, seeded
    local samples = fs.data.tissues(fs.spect.dataset{n = 4, seed = 2}, {size = 16})
    local seeds = {}
    local r2 = fs.protonet.loocv{samples = samples, shot = 1, query = 1, episodes = 2, test_episodes = 2,
      seed = 10, backbone_fn = function(seed) seeds[#seeds + 1] = seed; return tiny(seed) end}
    assert.same({11, 12, 13, 14}, seeds)
    assert.equal(4, #r2.folds)
    local s, v = 0, 0
    for _, f in ipairs(r2.folds) do s = s + f.accuracy end
    for _, f in ipairs(r2.folds) do v = v + (f.accuracy - s / 4) ^ 2 end
    assert.near(s / 4, r2.mean, 1e-12)
    assert.near(math.sqrt(v / 4), r2.std, 1e-12)
    fails_with("protonet.loocv: option 'backbone_fn' (a function of the fold seed) is required",
      fs.protonet.loocv, {samples = samples})
  end)
end)
