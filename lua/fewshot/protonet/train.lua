--- fewshot.protonet.train: episodic training of a Prototypical Network with Adam, validation,
-- the best checkpoint by validation accuracy, and a resume that continues bit-identically.
-- Reached as `fs.protonet.train`.
--
-- Checkpoints: `checkpoint=DIR` keeps two, each a state file naming its weight files:
--
--     DIR/last.lua   (every checkpoint_every episodes and at the end)
--     DIR/best.lua   (whenever validation accuracy improves)
--     DIR/<tag>-<episode>.model.safetensors, DIR/<tag>-<episode>.optim.safetensors
--
-- A state file holds the episode counter, both generators' states (the episode sampler's and
-- fewshot's default one), the learning rate, the best validation accuracy and the history so
-- far. The weights are written first (each to a temporary file renamed into place), the state
-- file last, the same way: its rename is the commit, so a checkpoint is never half-written.
-- @module fewshot.protonet.train
local core = require "fewshot.core"
local args = require "fewshot.args"
local P = require "fewshot.protonet.loss"
local E = require "fewshot.protonet.evaluate"
local data = require "fewshot.data"
local Ckpt = require "fewshot.checkpoint"

local M = {}

-- ---- checkpoints (fewshot.checkpoint: the state file renamed into place last) ----

local CKPT = {op = "protonet.train", format = "fewshot.protonet.checkpoint/1", counter = "episode"}

local function read_state(path) return Ckpt.read(path, CKPT.op, CKPT.format) end

local function dirname_join(dir, name) return dir .. "/" .. name end

local function save_checkpoint(dir, tag, model, opt, state)
  Ckpt.save(dir, tag, model, opt, state, CKPT)
end

-- ---- progress ----

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
  if s >= 60 then return ("%dm%02ds"):format(s // 60, s % 60) end
  return ("%ds"):format(s)
end

local function make_progress(mode, total, log_every, start)
  if mode == "auto" then mode = os.execute("[ -t 1 ]") and "bar" or "lines" end
  if mode == false or mode == "none" then return function() end, function() end end
  local t0, n0 = core.clock(), start
  local sum_l, sum_a, cnt = 0, 0, 0
  local function line(e, loss, acc, val)
    local rate = (e - n0) / math.max(core.clock() - t0, 1e-9)
    local eta = (total - e) / rate
    return rate, eta
  end
  local update = function(e, loss, acc, val)
    sum_l, sum_a, cnt = sum_l + loss, sum_a + acc, cnt + 1
    local rate, eta = line(e, loss, acc, val)
    if mode == "bar" then
      local w = 24
      local fill = math.floor(w * e / total)
      io.stdout:write(("\r[%s%s] %d/%d loss %.4f acc %.3f %.2f ep/s ETA %s%s  "):format(
        ("="):rep(fill), (" "):rep(w - fill), e, total, loss, acc, rate, fmt_time(eta),
        val and (" val %.3f"):format(val) or ""))
      io.stdout:flush()
    elseif (log_every > 0 and e % log_every == 0) or e == total or val then
      io.stdout:write(("episode %d/%d loss %.4f acc %.3f (mean of %d: %.4f, %.3f) %.2f ep/s ETA %s%s\n")
        :format(e, total, loss, acc, cnt, sum_l / cnt, sum_a / cnt, rate, fmt_time(eta),
                val and (" val %.3f"):format(val) or ""))
      io.stdout:flush()
      sum_l, sum_a, cnt = 0, 0, 0
    end
  end
  local finish = function() if mode == "bar" then io.stdout:write("\n") end end
  return update, finish
end

local KEYS = {"backbone", "samples", "way", "shot", "query", "episodes", "lr", "weight_decay",
              "step_lr", "val", "val_every", "val_episodes", "val_seed", "seed", "checkpoint",
              "checkpoint_every", "resume", "on_episode", "log_every", "progress", "distance"}

--- Trains a backbone as a Prototypical Network on episodes of `samples`.
-- Each episode: BatchNorm in train mode, support and query embedded in one forward, the
-- ProtoNet loss, backward, an Adam step. Validation (when `val` is given) runs every
-- val_every episodes: fs.protonet.evaluate in eval mode on the same fixed episodes of `val`
-- each time (seed val_seed).
-- @tparam table opts `backbone` (a module giving (N, D)), `samples` (fs.data.tissues),
--   `way=3`, `shot=3`, `query=6`, `episodes=1000`, `lr=1e-3`, `weight_decay=0`,
--   `step_lr=nil` (`{step=, gamma=0.1}`: lr * gamma^floor((episode - 1) / step)),
--   `val=nil` (validation samples), `val_every=100`, `val_episodes=100`, `val_seed=seed + 1`,
--   `seed=0` (the episode sampler), `distance="sqeuclidean"`, `checkpoint=nil` (a directory,
--   created), `checkpoint_every=val_every`, `resume=nil` (a state file or a checkpoint
--   directory, whose last.lua is taken: the backbone, optimizer and generators are restored and
--   training continues from its episode to `episodes`, as if never stopped),
--   `on_episode=function(episode, loss, accuracy, info) end`, `log_every=50`,
--   `progress="auto"` ("bar" on a terminal, else "lines" every log_every episodes; false: none)
-- @treturn Module the backbone (trained in place)
-- @treturn table history `{loss = {...}, accuracy = {...}, val = {{episode, accuracy, ci95}},
--   best = {episode, accuracy}, seconds}`
-- @usage local net, hist = fs.protonet.train{backbone = fs.nn.resnet18{in_channels = 1},
--   samples = train, episodes = 500, val = val, checkpoint = "ckpt"}
function M.train(opts)
  local op = "protonet.train"
  opts = args.options(op, opts, KEYS)
  local model = opts.backbone
  if type(model) ~= "userdata" then error(op .. ": option 'backbone' (a module) is required", 2) end
  if type(opts.samples) ~= "table" then error(op .. ": option 'samples' is required", 2) end
  local way = args.integer(op, "way", opts.way or 3, 1)
  local shot = args.integer(op, "shot", opts.shot or 3, 1)
  local query = args.integer(op, "query", opts.query or 6, 1)
  local total = args.integer(op, "episodes", opts.episodes or 1000, 0)
  local lr = args.number(op, "lr", opts.lr or 1e-3, 0)
  local wd = args.number(op, "weight_decay", opts.weight_decay or 0, 0)
  local seed = args.integer(op, "seed", opts.seed or 0, 0)
  local val_every = args.integer(op, "val_every", opts.val_every or 100, 1)
  local val_episodes = args.integer(op, "val_episodes", opts.val_episodes or 100, 1)
  local val_seed = args.integer(op, "val_seed", opts.val_seed or seed + 1, 0)
  local ckpt_every = args.integer(op, "checkpoint_every", opts.checkpoint_every or val_every, 1)
  local log_every = args.integer(op, "log_every", opts.log_every or 50, 0)
  local distance = args.choice(op, "distance", opts.distance or "sqeuclidean", P.DISTANCES)
  local progress = opts.progress
  if progress == nil then progress = "auto" end
  if progress ~= false then args.choice(op, "progress", progress, {"auto", "bar", "lines", "none"}) end
  local step, gamma
  if opts.step_lr ~= nil then
    if type(opts.step_lr) ~= "table" then error(op .. ": option 'step_lr' must be {step=, gamma=}", 2) end
    args.options(op .. ": step_lr", opts.step_lr, {"step", "gamma"})
    step = args.integer(op, "step_lr.step", opts.step_lr.step, 1)
    gamma = args.number(op, "step_lr.gamma", opts.step_lr.gamma or 0.1, 0)
  end
  if opts.on_episode ~= nil and type(opts.on_episode) ~= "function" then
    error(op .. ": option 'on_episode' must be a function", 2)
  end
  local g = core.generator(seed)
  -- checks the episode options (and the samples) before anything is trained
  local next_episode = data.episode_iter(opts.samples, {way = way, shot = shot, query = query,
                                                        generator = g})
  if opts.val ~= nil then
    local ok, err = pcall(data.episode_iter, opts.val, {way = way, shot = shot, query = query})
    if not ok then
      error(("%s: val: %s"):format(op, tostring(err):gsub("^[^:]*:%d+: ", "")), 2)
    end
  end
  local opt = core.optim.adam(model, {lr = lr, weight_decay = wd})
  local history = {loss = {}, accuracy = {}, val = {}, best = nil}
  local start, best = 0, -math.huge
  if opts.resume then
    local state, dir = read_state(opts.resume)
    for _, k in ipairs({"seed", "way", "shot", "query", "distance"}) do
      local now = ({seed = seed, way = way, shot = shot, query = query, distance = distance})[k]
      if state.config[k] ~= now then
        error(("%s: resume: the checkpoint was trained with %s = %s, not %s"):format(op, k,
          tostring(state.config[k]), tostring(now)), 2)
      end
    end
    local weights = core.io.load(dirname_join(dir, state.model_file)) -- (its metadata: not options)
    local fits, why = pcall(model.load_state_dict, model, weights)
    if not fits then
      error(("%s: resume: the checkpoint %s does not fit this backbone (another architecture?): %s")
        :format(op, dirname_join(dir, state.model_file), tostring(why)), 2)
    end
    opt:load(dirname_join(dir, state.optim_file))
    g:set_state(state.generator)
    core.set_rng_state(state.default_generator)
    start, best = state.episode, state.best_accuracy
    history = state.history
    history.best = state.best
  end
  if opts.checkpoint then
    local ok = os.execute(("mkdir -p '%s'"):format(tostring(opts.checkpoint):gsub("'", "'\\''")))
    if not ok then error(("%s: cannot create the checkpoint directory %s"):format(op, opts.checkpoint), 2) end
  end
  local function state_of(e)
    return {format = "fewshot.protonet.checkpoint/1", episode = e, generator = g:get_state(),
            default_generator = core.get_rng_state(), lr = opt.lr, best_accuracy = best,
            best = history.best,
            config = {seed = seed, way = way, shot = shot, query = query, distance = distance},
            history = {loss = history.loss, accuracy = history.accuracy, val = history.val}}
  end
  local update, finish = make_progress(progress, total, log_every, start)
  local t0 = core.clock()
  local ns = way * shot
  for e = start + 1, total do
    opt.lr = step and lr * gamma ^ ((e - 1) // step) or lr
    model:train()
    local ep = next_episode()
    local x = core.cat({ep.support, ep.query}, 1)
    local emb = model(x)
    if emb:dim() ~= 2 then emb = emb:reshape(emb:shape()[1], -1) end
    local loss, acc = P.loss(emb:narrow(1, 1, ns), ep.support_labels,
                             emb:narrow(1, ns + 1, emb:shape()[1] - ns), ep.query_labels,
                             {distance = distance})
    opt:zero_grad()
    loss:backward()
    opt:step()
    local lv = loss:item()
    history.loss[e], history.accuracy[e] = lv, acc
    local val_acc
    if opts.val and e % val_every == 0 then
      local r = E.evaluate{model = model, samples = opts.val, way = way, shot = shot,
                           query = query, episodes = val_episodes, seed = val_seed,
                           distance = distance}
      val_acc = r.accuracy
      history.val[#history.val + 1] = {episode = e, accuracy = r.accuracy, ci95 = r.ci95}
      if r.accuracy > best then
        best = r.accuracy
        history.best = {episode = e, accuracy = r.accuracy}
        if opts.checkpoint then save_checkpoint(opts.checkpoint, "best", model, opt, state_of(e)) end
      end
    end
    if opts.checkpoint and (e % ckpt_every == 0 or e == total) then
      save_checkpoint(opts.checkpoint, "last", model, opt, state_of(e))
    end
    update(e, lv, acc, val_acc)
    if opts.on_episode then
      opts.on_episode(e, lv, acc, {lr = opt.lr, val_accuracy = val_acc, episode = ep})
    end
  end
  finish()
  history.seconds = core.clock() - t0
  return model, history
end

return M
