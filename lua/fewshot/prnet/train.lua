--- fewshot.prnet.train: self-supervised training of PRNet-2D on random pairs of patches
-- (fewshot.prnet.pairs) with Adam, the loss of fewshot.prnet.loss, validation error in mm on
-- held-out images with landmarks, atomic checkpoints (fewshot.checkpoint) and a resume
-- that continues bit-identically. Reached as `fs.prnet.train`.
--
-- A coarse model trains on pairs anywhere on the body (r should exceed the largest offset, or
-- tanh saturates); a fine model (`fine = range px`) on pairs within +/- range px of each other,
-- with a small r (say 8 * range px in mm).
-- @module fewshot.prnet.train
local core = require "fewshot.core"
local args = require "fewshot.args"
local Pairs = require "fewshot.prnet.pairs"
local Loss = require "fewshot.prnet.loss"
local Loc = require "fewshot.prnet.localize"
local Ckpt = require "fewshot.checkpoint"
local CKPT = {op = "prnet.train", format = "fewshot.prnet.checkpoint/1", counter = "step"}

local M = {}

local KEYS = {"images", "patch", "steps", "batch", "lr", "weight_decay", "r", "fine", "seed",
              "base", "depth", "latent", "norm", "up", "convs_per_level", "weight", "augment",
              "body_threshold", "pixel_mm", "checkpoint", "checkpoint_every", "resume",
              "val_images", "val_every", "val_samples", "log_every", "progress", "on_step"}

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 60 then return ("%dm%02ds"):format(s // 60, s % 60) end
  return ("%ds"):format(s)
end

-- Mean localisation error (mm) of the model on val items: the first is the support.
local function validate(model, fine, r, items, samples)
  local loc = Loc.localizer({[fine and "fine" or "coarse"] = model, [fine and "fine_r" or "r"] = r,
                             support = {items[1]}, samples = samples, seed = 0}, "prnet.train: val")
  local sum, n = 0, 0
  for i = 2, #items do
    local q = items[i]
    local found = loc(q).landmarks
    for name, p in pairs(found) do
      local t = q.landmarks[name]
      if t and t.inside ~= false then
        sum = sum + math.sqrt((p.x - t.x) ^ 2 + (p.y - t.y) ^ 2) * (q.pixel_mm or 1)
        n = n + 1
      end
    end
  end
  return n > 0 and sum / n or 0 / 0
end

--- Trains a PRNet-2D model.
-- @tparam table opts `images` (items or (H, W) tensors; required), `patch=32`, `steps=1000`,
--   `batch=32`, `lr=1e-3`, `weight_decay=1e-4` (Adam's L2 term), `r` (mm, required),
--   `fine=nil` (px: train a fine model on pairs within +/- fine), `seed=0` (the pair sampler;
--   the weights' initialisation seed is 1000 + seed), `base=16`, `depth=4`, `latent=2`,
--   `norm="instance"`, `up="bilinear"`, `convs_per_level=1`, `weight=1` (w of L_rec; 0 skips
--   the decoder), `augment` (fs.prnet.pairs), `body_threshold=0.05`, `pixel_mm` (plain
--   tensors), `checkpoint=nil` (a directory: DIR/last.lua every checkpoint_every steps and at
--   the end), `checkpoint_every=100`, `resume=nil` (a state file or checkpoint directory:
--   model, optimizer, generators and history restored; training continues to `steps`),
--   `val_images=nil` (items with landmarks: the first is the support, the rest queries; the
--   mean error in mm of coarse-only, or fine-only from the support's coordinates),
--   `val_every=100`, `val_samples=15`, `log_every=50`, `progress="auto"` ("bar" on a
--   terminal, "lines", false), `on_step=function(step, loss, dis, rec) end`
-- @treturn Module the trained model
-- @treturn table history `{loss = {}, dis = {}, rec = {}, val = {{step=, mean_mm=}},
--   seconds=, config = {...}}` (losses per step, offsets in units of r)
-- @usage local net, h = fs.prnet.train{images = train, patch = 32, r = 320, steps = 500}
function M.train(opts)
  local op = "prnet.train"
  opts = args.options(op, opts, KEYS)
  if opts.images == nil then error(op .. ": option 'images' is required", 2) end
  if opts.r == nil then error(op .. ": option 'r' (mm) is required", 2) end
  local r = args.number(op, "r", opts.r, 0, nil, true)
  local patch = args.integer(op, "patch", opts.patch or 32, 2)
  local depth = args.integer(op, "depth", opts.depth or 4, 1)
  if patch % (2 ^ depth) ~= 0 or patch < 2 ^ depth then
    error(("%s: option 'patch' (%d) must be a multiple of 2^depth = %d"):format(op, patch, 2 ^ depth // 1), 2)
  end
  local steps = args.integer(op, "steps", opts.steps or 1000, 0)
  local batch = args.integer(op, "batch", opts.batch or 32, 1)
  local lr = args.number(op, "lr", opts.lr or 1e-3, 0)
  local wd = args.number(op, "weight_decay", opts.weight_decay or 1e-4, 0)
  local fine = opts.fine and args.integer(op, "fine", opts.fine, 1)
  local seed = args.integer(op, "seed", opts.seed or 0, 0)
  local weight = args.number(op, "weight", opts.weight or 1, 0)
  local ckpt_every = args.integer(op, "checkpoint_every", opts.checkpoint_every or 100, 1)
  local val_every = args.integer(op, "val_every", opts.val_every or 100, 1)
  local val_samples = args.integer(op, "val_samples", opts.val_samples or 15, 1)
  local log_every = args.integer(op, "log_every", opts.log_every or 50, 0)
  local progress = opts.progress
  if progress == nil then progress = "auto" end
  if progress ~= false then progress = args.choice(op, "progress", progress, {"auto", "bar", "lines", "none"}) end
  if progress == "auto" then progress = os.execute("[ -t 1 ]") and "bar" or "lines" end
  if opts.on_step ~= nil and type(opts.on_step) ~= "function" then
    error(op .. ": option 'on_step' must be a function", 2)
  end
  if opts.val_images ~= nil and (type(opts.val_images) ~= "table" or #opts.val_images < 2) then
    error(op .. ": option 'val_images' must list at least 2 items (a support and a query)", 2)
  end
  local net_opts = {in_channels = 1, base = opts.base or 16, depth = depth, latent = opts.latent or 2,
                    patch = patch, norm = opts.norm or "instance", up = opts.up or "bilinear",
                    convs_per_level = opts.convs_per_level or 1, seed = 1000 + seed}
  local sample = Pairs.sampler(opts.images, {patch = patch, batch = batch, fine_range = fine,
                                             body_threshold = opts.body_threshold,
                                             pixel_mm = opts.pixel_mm, augment = opts.augment}, op)
  local model = core.nn.prnet(net_opts)
  if net_opts.latent ~= 2 and opts.val_images then
    error(op .. ": validation localises in 2-D: latent must be 2 with val_images", 2)
  end
  local opt = core.optim.adam(model, {lr = lr, weight_decay = wd})
  local g = core.generator(seed)
  local config = {seed = seed, patch = patch, batch = batch, r = r, fine = fine or false,
                  base = net_opts.base, depth = depth, latent = net_opts.latent, norm = net_opts.norm,
                  up = net_opts.up, convs_per_level = net_opts.convs_per_level, weight = weight,
                  lr = lr, weight_decay = wd}
  local history = {loss = {}, dis = {}, rec = {}, val = {}}
  local start = 0
  if opts.resume then
    local ok, state, dir = pcall(Ckpt.read, opts.resume, CKPT.op, CKPT.format)
    if not ok then error(state, 2) end
    for k, now in pairs(config) do
      if state.config[k] ~= now then
        error(("%s: resume: the checkpoint was trained with %s = %s, not %s"):format(op, k,
          tostring(state.config[k]), tostring(now)), 2)
      end
    end
    model:load_state_dict(core.io.load(dir .. "/" .. state.model_file))
    opt:load(dir .. "/" .. state.optim_file)
    g:set_state(state.generator)
    core.set_rng_state(state.default_generator)
    start, history = state.step, state.history
  end
  if opts.checkpoint then
    local ok = os.execute(("mkdir -p '%s'"):format(tostring(opts.checkpoint):gsub("'", "'\\''")))
    if not ok then error(("%s: cannot create the checkpoint directory %s"):format(op, opts.checkpoint), 2) end
  end
  local t0 = core.clock()
  for step = start + 1, steps do
    model:train()
    local b = sample(g)
    local x = core.cat({b.x0, b.x1}, 1)
    local loss, dis, rec
    if weight > 0 then
      local z, recon = model(x)
      loss, dis, rec = Loss.loss(z:narrow(1, 1, batch), z:narrow(1, batch + 1, batch), b.offset_mm,
        {r = r, weight = weight, rec0 = recon:narrow(1, 1, batch), x0 = b.x0,
         rec1 = recon:narrow(1, batch + 1, batch), x1 = b.x1})
    else
      local z = model:encode(x)
      loss, dis = Loss.loss(z:narrow(1, 1, batch), z:narrow(1, batch + 1, batch), b.offset_mm,
                            {r = r, weight = 0})
    end
    opt:zero_grad()
    loss:backward()
    opt:step()
    local lv, dv, rv = loss:item(), dis:item(), rec and rec:item() or 0
    history.loss[step], history.dis[step], history.rec[step] = lv, dv, rv
    local val
    if opts.val_images and (step % val_every == 0 or step == steps) then
      val = validate(model, fine, r, opts.val_images, val_samples)
      history.val[#history.val + 1] = {step = step, mean_mm = val}
    end
    if opts.checkpoint and (step % ckpt_every == 0 or step == steps) then
      Ckpt.save(opts.checkpoint, "last", model, opt,
        {step = step, generator = g:get_state(), default_generator = core.get_rng_state(),
         config = config, history = history}, CKPT)
    end
    if progress == "bar" then
      local w, rate = 24, (step - start) / math.max(core.clock() - t0, 1e-9)
      local fill = math.floor(w * step / steps)
      io.stdout:write(("\r[%s%s] %d/%d loss %.4f (dis %.4f rec %.4f, offsets in r) %.1f step/s ETA %s%s  ")
        :format(("="):rep(fill), (" "):rep(w - fill), step, steps, lv, dv, rv, rate,
                fmt_time((steps - step) / rate), val and (" val %.1f mm"):format(val) or ""))
      io.stdout:flush()
    elseif progress == "lines" and ((log_every > 0 and step % log_every == 0) or step == steps or val) then
      local rate = (step - start) / math.max(core.clock() - t0, 1e-9)
      io.stdout:write(("step %d/%d loss %.4f (dis %.4f rec %.4f, offsets in units of r) %.1f step/s ETA %s%s\n")
        :format(step, steps, lv, dv, rv, rate, fmt_time((steps - step) / rate),
                val and (" val %.1f mm"):format(val) or ""))
      io.stdout:flush()
    end
    if opts.on_step then opts.on_step(step, lv, dv, rv) end
  end
  if progress == "bar" and steps > start then io.stdout:write("\n") end
  history.seconds = core.clock() - t0
  history.config = config
  return model, history
end

return M
