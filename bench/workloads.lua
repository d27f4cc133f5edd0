--- bench/workloads.lua - the workloads of `make bench` on fewshot's side, one per process:
--
--   lua5.4 bench/workloads.lua NAME [REPS]   -> prints "RESULT NAME ms_per_unit peak_rss_kb"
--
-- The same work in PyTorch is bench/compare_torch.py NAME [REPS]; bench/run.lua runs both in
-- alternating fresh processes and prints the table. Every workload turns on flush-to-zero
-- (fs.set_flush_denormal, as examples/demo.lua does; PyTorch: torch.set_flush_denormal).
-- Inputs are seeded uniform [0, 1) values (tissue samples are max-normalised to [0, 1]).
--
--   resnet64_train2/1   ResNet-18 (3 channels) ProtoNet step at 64x64, batch 27, 2 / 1 threads
--   resnet64_infer27    eval-mode forward, batch 27 at 64x64, 2 threads
--   resnet64_lat1       eval-mode forward, batch 1 at 64x64, 1 thread
--   proto_episode       make demo's training episode: fs.nn.resnet18{in_channels=1}, 27 images
--                       1x32x32 (3-way: 3 support + 6 query per class), forward (train mode),
--                       fs.protonet.loss, backward, Adam; 2 threads; ms per episode
--   proto_episode1      the same at 1 thread
--   proto_eval1000      fs.protonet.evaluate over 1000 episodes (3-way 3-shot 6-query, eval
--                       mode, no tape) of 60 samples (20 per class); ms per episode; 2 threads
--   prnet32_t2/t1       PRNet training step, batch 32 pairs (two forwards of 32 patches),
--   prnet64_t2/t1       base 16, depth 4, latent 2, instance norm, bilinear up, 32x32 / 64x64
--                       patches: L_dis = MSE(tanh(z0 - z1), offset / r), L_rec = MSE(rec0, x0)
--                       + MSE(rec1, x1), L = L_dis + L_rec, backward, Adam; 2 / 1 threads
--   localize            one query, 6 landmarks, 1 thread: 15 random 32x32 patches of a 64x64
--                       image encoded through the coarse PRNet (eval, no tape), each landmark
--                       moved by r * tanh(z_s - z_q), then 15 patches near the 6 estimates
--                       (dealt in turn) through the fine PRNet, moved again: two encodes of 15
--   localize_per_landmark  the same with 15 fine patches per landmark (1 + 6 encodes of 15)
--                       (HOOK: `localize_api` is to time fs.prnet.localize once it lands)
local fs = require "fewshot"
local F = fs.nn.functional

local M = {}

local function vmhwm_kb()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local n = #c
  return n % 2 == 1 and c[(n + 1) // 2] or (c[n // 2] + c[n // 2 + 1]) / 2
end

-- BENCH_CLOCK=cpu times by the process's CPU time (os.clock) instead of the wall clock: a
-- diagnostic for a loaded machine, meaningful at 1 thread only (at 2, spinning counts too).
local clock = os.getenv("BENCH_CLOCK") == "cpu" and os.clock or fs.clock

-- median ms of fn over reps runs after one warm-up run
local function time_median(reps, fn)
  local times = {}
  for r = 0, reps do
    local t0 = clock()
    fn()
    local t1 = clock()
    if r > 0 then times[#times + 1] = (t1 - t0) * 1000 end
  end
  return median(times)
end

-- 3-way episode labels in class order: support 3 per class, query 6 per class
local SUPPORT_LABELS = {1, 1, 1, 2, 2, 2, 3, 3, 3}
local QUERY_LABELS = {}
for i = 1, 18 do QUERY_LABELS[i] = (i - 1) // 6 + 1 end

-- ---- ResNet-18 at 64x64, 3 channels (the figures the README had before issue 11) ----

local function resnet64_train(threads)
  return function(reps)
    fs.set_num_threads(threads)
    local g = fs.generator(1)
    local model = fs.nn.resnet18{in_channels = 3, seed = 1}
    local x = fs.rand({27, 3, 64, 64}, {generator = g})
    local opt = fs.optim.adam(model, {lr = 1e-3})
    model:train()
    return time_median(reps, function()
      opt:zero_grad()
      local emb = model(x)                                       -- (27, 512)
      local protos = emb:narrow(1, 1, 9):view(3, 3, 512):mean(2) -- (3, 512)
      local logits = -fs.cdist2(emb:narrow(1, 10, 18), protos)   -- (18, 3)
      F.cross_entropy(logits, QUERY_LABELS):backward()
      opt:step()
    end)
  end
end

local function resnet64_infer(threads, batch)
  return function(reps)
    fs.set_num_threads(threads)
    local g = fs.generator(1)
    local model = fs.nn.resnet18{in_channels = 3, seed = 1}
    local x = fs.rand({batch, 3, 64, 64}, {generator = g})
    model:eval()
    local guard <close> = fs.no_grad()
    return time_median(reps, function() model(x):close() end)
  end
end

M.resnet64_train2 = resnet64_train(2)
M.resnet64_train1 = resnet64_train(1)
M.resnet64_infer27 = resnet64_infer(2, 27)
M.resnet64_lat1 = resnet64_infer(1, 1)

-- ---- ProtoNet as make demo runs it (issue 11) ----

local function proto_episode(threads)
  return function(reps)
    fs.set_num_threads(threads)
    local g = fs.generator(1)
    local model = fs.nn.resnet18{in_channels = 1, seed = 1}
    local x = fs.rand({27, 1, 32, 32}, {generator = g}) -- support 9, then query 18
    local opt = fs.optim.adam(model, {lr = 1e-3})
    model:train()
    return time_median(reps, function()
      local emb = model(x)
      local loss = fs.protonet.loss(emb:narrow(1, 1, 9), SUPPORT_LABELS, emb:narrow(1, 10, 18),
                                    QUERY_LABELS)
      opt:zero_grad()
      loss:backward()
      opt:step()
      loss:item()
    end)
  end
end

M.proto_episode = proto_episode(2)
M.proto_episode1 = proto_episode(1)

--- 20 samples per class of random 1x32x32 images, as fs.data.tissues gives them
local function bench_samples()
  local g = fs.generator(2)
  local names = {"ventricle", "myocardium", "liver"}
  local samples = {}
  for c = 1, 3 do
    for i = 1, 20 do
      samples[#samples + 1] = {image = fs.rand({1, 32, 32}, {generator = g}), label = c,
                               class = names[c], patient = (i - 1) % 4 + 1, index = i}
    end
  end
  return samples
end

-- cache=false: each episode's 27 images embedded afresh (PyTorch's side does the same);
-- proto_eval1000_cached: fs.protonet.evaluate's default, every sample embedded once.
local function proto_eval(cache)
  return function(reps, episodes)
    fs.set_num_threads(2)
    episodes = episodes or 1000
    local model = fs.nn.resnet18{in_channels = 1, seed = 1}
    local samples = bench_samples()
    local times = {}
    fs.protonet.evaluate{model = model, samples = samples, episodes = 10, seed = 7, cache = cache} -- warm-up
    for _ = 1, math.max(1, reps // 10) do
      local t0 = clock()
      local r = fs.protonet.evaluate{model = model, samples = samples, episodes = episodes, seed = 7,
                                     cache = cache}
      times[#times + 1] = (clock() - t0) * 1000 / episodes
      assert(r.episodes == episodes)
    end
    return median(times)
  end
end
M.proto_eval1000 = proto_eval(false)
M.proto_eval1000_cached = proto_eval(true)

-- ---- PRNet (issue 12) ----

local function prnet_model(patch, seed)
  return fs.nn.prnet{in_channels = 1, base = 16, depth = 4, latent = 2, patch = patch,
                     norm = "instance", up = "bilinear", seed = seed or 1}
end

local function prnet_step(patch, threads)
  return function(reps)
    fs.set_num_threads(threads)
    local g = fs.generator(1)
    local model = prnet_model(patch)
    local x0 = fs.rand({32, 1, patch, patch}, {generator = g})
    local x1 = fs.rand({32, 1, patch, patch}, {generator = g})
    local offset = fs.randn({32, 2}, {generator = g}) * 0.3 -- offset_mm / r
    local opt = fs.optim.adam(model, {lr = 1e-3, weight_decay = 1e-4})
    model:train()
    return time_median(reps, function()
      local z0, rec0 = model(x0)
      local z1, rec1 = model(x1)
      local l_dis = F.mse_loss((z0 - z1):tanh(), offset)
      local l_rec = F.mse_loss(rec0, x0) + F.mse_loss(rec1, x1)
      local loss = l_dis + l_rec
      opt:zero_grad()
      loss:backward()
      opt:step()
      loss:item()
    end)
  end
end

M.prnet32_t2 = prnet_step(32, 2)
M.prnet32_t1 = prnet_step(32, 1)
M.prnet64_t2 = prnet_step(64, 2)
M.prnet64_t1 = prnet_step(64, 1)

-- The localisation path spelled out on the encoder (fs.prnet.localize is being written in
-- parallel). Coarse: SAMPLES patch centres drawn from the seeded generator, the patches cut from
-- the image padded by half a patch and encoded in one batch through `coarse`; each landmark's
-- estimate is the mean over the patches of centre + r * tanh(z_s - z_q) (in pixels). Fine:
-- `fine_per_landmark` patches within +/- 6 px of each estimate; with fine_per_landmark = nil,
-- SAMPLES patches in all, dealt to the landmarks in turn, so the query costs two encodes of
-- SAMPLES patches (the brief's "twice"); with a number, one encode of that many per landmark.
-- Returns the landmarks' (row, col) in pixels of the unpadded image.
local LANDMARKS = 6
local PATCH, SAMPLES, R_COARSE, R_FINE, PIXEL_MM = 32, 15, 320, 48, 6.4

local function cut(padded, centres) -- padded (1, 1, H + P, W + P); centres {{r, c}, ...} 0-based
  local list = {}
  for i, rc in ipairs(centres) do
    list[i] = padded:narrow(3, rc[1] + 1, PATCH):narrow(4, rc[2] + 1, PATCH)
  end
  return fs.cat(list, 1) -- (n, 1, P, P)
end

local function clamp(v, lo, hi) return math.max(lo, math.min(hi, v)) end

-- mean over patches i in `which` of centre_i + r * tanh(z_s - z_i) / pixel, both axes
local function estimate(centres, z, which, zs, r)
  local er, ec = 0, 0
  for _, i in ipairs(which) do
    er = er + centres[i][1] + r * math.tanh(zs[1] - z[i][1]) / PIXEL_MM
    ec = ec + centres[i][2] + r * math.tanh(zs[2] - z[i][2]) / PIXEL_MM
  end
  return er / #which, ec / #which
end

local function localize_spelled(coarse, fine, padded, z_support, g, side, fine_per_landmark)
  local centres, all = {}, {}
  for i = 1, SAMPLES do
    centres[i] = {math.floor(g:uniform() * side), math.floor(g:uniform() * side)}
    all[i] = i
  end
  local zq = coarse:encode(cut(padded, centres)):totable() -- (15, 2)
  local est = {}
  for l = 1, LANDMARKS do
    local r, c = estimate(centres, zq, all, z_support[l], R_COARSE)
    est[l] = {clamp(r, 0, side - 1), clamp(c, 0, side - 1)}
  end
  local function jitter(l)
    return {clamp(math.floor(est[l][1] + g:uniform() * 13 - 6), 0, side - 1),
            clamp(math.floor(est[l][2] + g:uniform() * 13 - 6), 0, side - 1)}
  end
  local out = {}
  if fine_per_landmark then
    for l = 1, LANDMARKS do
      local fc, idx = {}, {}
      for i = 1, fine_per_landmark do fc[i] = jitter(l); idx[i] = i end
      local zf = fine:encode(cut(padded, fc)):totable()
      out[l] = {estimate(fc, zf, idx, z_support[l], R_FINE)}
    end
  else
    local fc, owner = {}, {}
    for i = 1, SAMPLES do
      local l = (i - 1) % LANDMARKS + 1
      fc[i] = jitter(l)
      owner[l] = owner[l] or {}
      table.insert(owner[l], i)
    end
    local zf = fine:encode(cut(padded, fc)):totable()
    for l = 1, LANDMARKS do out[l] = {estimate(fc, zf, owner[l], z_support[l], R_FINE)} end
  end
  return out
end

local function localize(fine_per_landmark)
  return function(reps)
    fs.set_num_threads(1)
    local g = fs.generator(3)
    local coarse, fine = prnet_model(PATCH, 1), prnet_model(PATCH, 2)
    coarse:eval(); fine:eval()
    local side = 64
    local image = fs.rand({1, 1, side, side}, {generator = g})
    local padded = fs.zeros({1, 1, side + PATCH, side + PATCH}) -- the image inside a zero border
    padded:narrow(3, PATCH // 2 + 1, side):narrow(4, PATCH // 2 + 1, side):copy(image)
    local z_support = {}
    for l = 1, LANDMARKS do z_support[l] = {g:uniform() - 0.5, g:uniform() - 0.5} end
    local guard <close> = fs.no_grad()
    return time_median(reps * 5, function()
      local out = localize_spelled(coarse, fine, padded, z_support, g, side, fine_per_landmark)
      assert(#out == LANDMARKS)
    end)
  end
end

M.localize = localize(nil)
M.localize_per_landmark = localize(SAMPLES)

-- fs.prnet.localize itself on a 64x64 query with 6 landmarks: samples = 15, coarse + one fine
-- step (models of the spelled-out form's size), through fs.prnet.localizer (the support's
-- latents computed once, as a user localising many queries would).
function M.localize_api(reps)
  fs.set_num_threads(1)
  local g = fs.generator(3)
  local coarse, fine = prnet_model(PATCH, 1), prnet_model(PATCH, 2)
  coarse:eval(); fine:eval()
  local side = 64
  local function item()
    local landmarks = {}
    for l = 1, LANDMARKS do
      local x, y = 16 + g:uniform() * 32, 16 + g:uniform() * 32
      landmarks["l" .. l] = {x = x, y = y}
    end
    return {image = fs.rand({side, side}, {generator = g}):add(0.1), landmarks = landmarks, pixel_mm = 6.4}
  end
  local support, query = item(), item()
  local loc = fs.prnet.localizer{coarse = coarse, r = R_COARSE, fine = fine, fine_r = R_FINE,
                                 support = {support}, samples = SAMPLES, seed = 1}
  return time_median(reps * 5, function()
    local out = loc(query)
    assert(out.landmarks.l1)
  end)
end

-- ---- entry ----

if arg and arg[0] and arg[0]:match("workloads%.lua$") then
  local name, reps = arg[1], tonumber(arg[2]) or 10
  local fn = M[name]
  if not fn then error("bench/workloads.lua: unknown workload " .. tostring(name), 0) end
  fs.set_flush_denormal(true)
  local ms, err = fn(reps)
  if not ms then print("MISSING " .. name .. " " .. tostring(err)); return end
  print(string.format("RESULT %s %.3f %d", name, ms, vmhwm_kb()))
end

return M
