--- fewshot.protonet.pretrain: supervised pre-training of a backbone (a linear head and
-- cross-entropy on labelled images, the head discarded afterwards), so that "pre-trained vs from
-- scratch" can be measured here without ImageNet weights. Reached as `fs.protonet.pretrain`.
--
-- Mini-batches are drawn without replacement from a seeded permutation of the images (a new
-- permutation each pass); Adam on the backbone's and the head's parameters together; BatchNorm
-- in train mode. The backbone is trained in place and returned; the head is returned too, for a
-- caller who wants it, but nothing else keeps it.
-- @module fewshot.protonet.pretrain
local core = require "fewshot.core"
local args = require "fewshot.args"
local F = core.nn.functional

local M = {}

local KEYS = {"backbone", "images", "labels", "samples", "steps", "batch", "lr", "weight_decay",
              "seed", "head", "classes", "log_every", "on_step"}

-- images (N, C, H, W) and a Lua list of 1-based labels from either call form.
local function inputs(op, opts)
  if opts.samples ~= nil then
    if opts.images ~= nil or opts.labels ~= nil then
      error(op .. ": give either 'samples' or 'images' and 'labels', not both", 3)
    end
    if type(opts.samples) ~= "table" or #opts.samples == 0 then
      error(op .. ": option 'samples' must be a non-empty list of {image=, label=}", 3)
    end
    local imgs, labels = {}, {}
    for i, s in ipairs(opts.samples) do imgs[i], labels[i] = s.image, s.label end
    return core.stack(imgs, 1), labels
  end
  local x = opts.images
  if x == nil then error(op .. ": option 'images' (N, C, H, W) or 'samples' is required", 3) end
  if x:dim() ~= 4 then
    error(("%s: images must be (N, C, H, W), got %d dimensions"):format(op, x:dim()), 3)
  end
  local labels = opts.labels
  if labels == nil then error(op .. ": option 'labels' is required with 'images'", 3) end
  if type(labels) ~= "table" then labels = labels:totable() end
  if #labels ~= x:shape()[1] then
    error(("%s: %d labels for %d images"):format(op, #labels, x:shape()[1]), 3)
  end
  return x, labels
end

--- Pre-trains `backbone` as a classifier of `classes` labels and returns it without the head.
-- @tparam table opts `backbone` (a module giving (N, D): fs.nn.resnet18{in_channels = C}),
--   either `images` (N, C, H, W) and `labels` (N 1-based integers: a list or a tensor) or
--   `samples` (a list of {image = (C, H, W), label = 1..K}, as fs.data.tissues gives),
--   `steps=500` (mini-batches), `batch=64`, `lr=1e-3`, `weight_decay=0`, `seed=0` (the batch
--   order and the default head's initialisation), `classes=` (K; default the largest label),
--   `head=` (a module (N, D) -> (N, K); default fs.nn.linear(D, K)), `log_every=0` (a line every
--   N steps; 0: silent), `on_step=function(step, loss, accuracy) end`
-- @treturn Module the backbone (trained in place)
-- @treturn table history `{loss = {...}, accuracy = {...} (per batch), seconds, head = module}`
-- @usage local net = fs.protonet.pretrain{backbone = fs.nn.resnet18{in_channels = 1},
--   images = x, labels = y, steps = 300, seed = 1}
function M.pretrain(opts)
  local op = "protonet.pretrain"
  opts = args.options(op, opts, KEYS)
  local model = opts.backbone
  if type(model) ~= "userdata" then error(op .. ": option 'backbone' (a module) is required", 2) end
  local x, labels = inputs(op, opts)
  local n = x:shape()[1]
  local steps = args.integer(op, "steps", opts.steps or 500, 0)
  local batch = args.integer(op, "batch", opts.batch or 64, 1)
  local lr = args.number(op, "lr", opts.lr or 1e-3, 0)
  local wd = args.number(op, "weight_decay", opts.weight_decay or 0, 0)
  local seed = args.integer(op, "seed", opts.seed or 0, 0)
  local log_every = args.integer(op, "log_every", opts.log_every or 0, 0)
  if opts.on_step ~= nil and type(opts.on_step) ~= "function" then
    error(op .. ": option 'on_step' must be a function", 2)
  end
  local kmax, given = 0, labels
  labels = {} -- integers, in a copy (the caller's list is left as it was)
  for i = 1, n do
    local l = given[i]
    if type(l) ~= "number" or l ~= math.floor(l) or l < 1 then
      error(("%s: label %d is %s, not an integer >= 1"):format(op, i, tostring(l)), 2)
    end
    labels[i] = math.tointeger(l)
    if labels[i] > kmax then kmax = labels[i] end
  end
  local classes = args.integer(op, "classes", opts.classes or kmax, 1)
  if kmax > classes then
    error(("%s: a label is %d but classes = %d"):format(op, kmax, classes), 2)
  end
  batch = math.min(batch, n)
  -- the embedding size, from one image in eval mode (no running statistics touched)
  local was = model:is_training()
  model:eval()
  local probe
  do
    local guard <close> = core.no_grad()
    local ok, e = pcall(model.forward, model, x:narrow(1, 1, 1))
    if not ok then
      error(("%s: the backbone rejects images of shape %s: %s"):format(op,
        table.concat(x:shape(), "x"), tostring(e)), 2)
    end
    probe = e
  end
  if was then model:train() end
  local d = probe:numel()
  local g = core.generator(seed)
  local head = opts.head
  if head == nil then
    head = core.nn.linear(d, classes, {seed = g:randint(2^31 - 1)})
  elseif type(head) ~= "userdata" then
    error(op .. ": option 'head' must be a module", 2)
  end
  local params = {}
  for _, p in ipairs(model:parameters()) do params[#params + 1] = p end
  for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
  local opt = core.optim.adam(params, {lr = lr, weight_decay = wd})
  local history = {loss = {}, accuracy = {}}
  local perm, pos = nil, n + 1
  local t0 = core.clock()
  model:train()
  head:train()
  for step = 1, steps do
    if pos + batch - 1 > n then perm, pos = g:permutation(n), 1 end -- a new pass
    local idx, y = {}, {}
    for j = 1, batch do
      local i = math.tointeger(perm[pos + j - 1])
      idx[j], y[j] = i, labels[i]
    end
    pos = pos + batch
    local emb = model(x:index_select(1, idx))
    if emb:dim() ~= 2 then emb = emb:reshape(emb:shape()[1], -1) end
    local logits = head(emb)
    local loss = F.cross_entropy(logits, y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    local pred = logits:argmax(2):totable()
    local correct = 0
    for j = 1, batch do if math.tointeger(pred[j]) == y[j] then correct = correct + 1 end end
    local lv, acc = loss:item(), correct / batch
    history.loss[step], history.accuracy[step] = lv, acc
    if log_every > 0 and (step % log_every == 0 or step == steps) then
      io.stdout:write(("pretrain step %d/%d loss %.4f acc %.3f %.1f s\n"):format(step, steps, lv,
        acc, core.clock() - t0))
      io.stdout:flush()
    end
    if opts.on_step then opts.on_step(step, lv, acc) end
  end
  if not was then model:eval() end
  history.seconds = core.clock() - t0
  history.head = head
  return model, history
end

local SPECT_KEYS = {"backbone", "patients", "cohort_seed", "view", "input", "size", "classes",
                    "steps", "batch", "lr", "weight_decay", "seed", "log_every"}

--- Supervised pre-training on simulated SPECT patients that no evaluation uses: a cohort of
-- `patients` from fs.spect.dataset{seed = cohort_seed} (patient seeds cohort_seed * 100003 + i,
-- so seed 100 shares no patient with cohorts of seeds below 100), its tissue samples
-- (fs.data.tissues with `input`, `size`, `classes`), then fs.protonet.pretrain on them.
-- @tparam table opts `backbone`, `patients=36`, `cohort_seed=100`, `view="short_axis"`,
--   `input="masked"`, `size=32`, `classes={"ventricle", "myocardium", "liver"}`, `steps=100`,
--   `batch=36`, `lr=1e-3`, `weight_decay=0`, `seed=0`, `log_every=0`
-- @treturn Module the backbone (trained in place)
-- @treturn table history as pretrain's, plus `simulate_seconds`, `samples` (count), `seconds`
--   (simulation and training)
-- @usage local net = fs.protonet.pretrain_spect{backbone = fs.nn.resnet18{in_channels = 1}, seed = 1}
function M.pretrain_spect(opts)
  local op = "protonet.pretrain_spect"
  opts = args.options(op, opts, SPECT_KEYS)
  if type(opts.backbone) ~= "userdata" then error(op .. ": option 'backbone' (a module) is required", 2) end
  local n = args.integer(op, "patients", opts.patients or 36, 1)
  local cohort_seed = args.integer(op, "cohort_seed", opts.cohort_seed or 100, 0)
  local t0 = core.clock()
  local spect = require "fewshot.spect"
  local data = require "fewshot.data"
  local items = spect.dataset{n = n, seed = cohort_seed, view = opts.view or "short_axis"}
  local samples = data.tissues(items, {input = opts.input or "masked", size = opts.size or 32,
                                       classes = opts.classes or {"ventricle", "myocardium", "liver"}})
  local sim = core.clock() - t0
  local model, hist = M.pretrain{backbone = opts.backbone, samples = samples,
                                 steps = opts.steps or 100, batch = opts.batch or 36,
                                 lr = opts.lr, weight_decay = opts.weight_decay, seed = opts.seed,
                                 log_every = opts.log_every}
  hist.simulate_seconds, hist.samples, hist.seconds = sim, #samples, core.clock() - t0
  return model, hist
end

return M
