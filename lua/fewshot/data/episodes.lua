--- fewshot.data.episodes: N-way K-shot episodes drawn from tissue samples, seeded.
-- Reached as `fs.data.episodes` (a fixed list, for evaluation) and `fs.data.episode_iter`
-- (an iterator, for training).
-- @module fewshot.data.episodes
local core = require "fewshot.core"
local args = require "fewshot.args"

local M = {}

local KEYS = {"way", "shot", "query", "episodes", "seed", "generator", "patients", "iterator"}

-- Checks the options and groups the samples by class; returns the sampler's setup.
local function setup(op, samples, opts, level)
  level = level + 1
  if type(samples) ~= "table" then
    error(("%s: samples must be a list of samples, got %s"):format(op, type(samples)), level)
  end
  if #samples == 0 then error(op .. ": the sample list is empty", level) end
  local way = args.integer(op, "way", opts.way or 3, 1)
  local shot = args.integer(op, "shot", opts.shot or 3, 1)
  local query = args.integer(op, "query", opts.query or 6, 1)
  local episodes = opts.episodes ~= nil and args.integer(op, "episodes", opts.episodes, 0) or nil
  local g = opts.generator
  if g ~= nil then
    if type(g) ~= "userdata" or not pcall(g.get_state, g) then
      error(op .. ": option 'generator' must be a fs.generator", level)
    end
  else
    g = core.generator(args.integer(op, "seed", opts.seed or 0, 0))
  end
  local allowed
  if opts.patients ~= nil then
    if type(opts.patients) ~= "table" or #opts.patients == 0 then
      error(op .. ": option 'patients' must be a non-empty list of patient ids", level)
    end
    allowed = {}
    for _, p in ipairs(opts.patients) do allowed[p] = true end
  end
  local by_class, names = {}, {}
  for i, s in ipairs(samples) do
    if type(s) ~= "table" or s.image == nil or math.type(s.label) ~= "integer" then
      error(("%s: sample %d needs an image and an integer label"):format(op, i), level)
    end
    if not allowed or allowed[s.patient] then
      local list = by_class[s.label]
      if not list then
        list = {}
        by_class[s.label] = list
        names[#names + 1] = s.label
      end
      list[#list + 1] = s
    end
  end
  if #names == 0 then
    error(op .. ": no samples belong to the patients given in 'patients'", level)
  end
  table.sort(names)
  if way > #names then
    error(("%s: way %d is larger than the number of classes (%d)"):format(op, way, #names), level)
  end
  for _, l in ipairs(names) do
    local n = #by_class[l]
    if n < shot + query then
      local s = by_class[l][1]
      error(("%s: class '%s' has %d samples, fewer than shot + query = %d"):format(op,
        tostring(s.class or l), n, shot + query), level)
    end
  end
  return {way = way, shot = shot, query = query, episodes = episodes, g = g,
          by_class = by_class, labels = names}
end

local function stack_images(list)
  local imgs = {}
  for i, s in ipairs(list) do imgs[i] = s.image end
  return core.stack(imgs, 1)
end

-- One episode: classes chosen (all of them in label order when way equals their number, else
-- a random subset, kept in label order), then per class a random permutation of its samples
-- whose first `shot` are the support and the next `query` the queries.
local function draw(S)
  local g = S.g
  local chosen = {}
  if S.way == #S.labels then
    for i, l in ipairs(S.labels) do chosen[i] = l end
  else
    local perm = g:permutation(#S.labels)
    for i = 1, S.way do chosen[i] = S.labels[perm[i]] end
    table.sort(chosen)
  end
  local sup, qry, sl, ql, classes, picked = {}, {}, {}, {}, {}, {}
  for k, l in ipairs(chosen) do
    local pool = S.by_class[l]
    local perm = g:permutation(#pool)
    for j = 1, S.shot do
      sup[#sup + 1] = pool[perm[j]]
      sl[#sl + 1] = k
    end
    for j = S.shot + 1, S.shot + S.query do
      qry[#qry + 1] = pool[perm[j]]
      ql[#ql + 1] = k
    end
    classes[k] = pool[1].class or l
    picked[k] = l
  end
  local guard <close> = core.no_grad()
  return {support = stack_images(sup), support_labels = sl, query = stack_images(qry),
          query_labels = ql, classes = classes, labels = picked,
          support_samples = sup, query_samples = qry}
end

--- A fixed list of episodes (for evaluation), or an iterator with `iterator=true`.
-- @tparam table samples tissue samples (fs.data.tissues): `image` (C, H, W), `label`,
--   `class`, `patient`
-- @tparam table opts `way=3`, `shot=3`, `query=6`, `episodes` (required for the list; the
--   iterator is endless without it), `seed=0` or `generator=` (a fs.generator, advanced in
--   place, whose state a checkpoint can save), `patients=` (a list of patient ids: only their
--   samples are drawn), `iterator=false`
-- @treturn table a list of episodes `{support = (way*shot, C, H, W), support_labels,
--   query = (way*query, C, H, W), query_labels, classes, labels, support_samples,
--   query_samples}`: labels are 1..way inside the episode, support and query in class order,
--   `classes[k]` names episode label k and `labels[k]` is its sample label. Support and query
--   are drawn without replacement and never share a sample. With more classes than way the
--   episode's classes are a random subset.
-- @usage local eps = fs.data.episodes(samples, {way = 3, shot = 3, query = 6, episodes = 100, seed = 1})
function M.episodes(samples, opts)
  opts = args.options("data.episodes", opts, KEYS)
  if opts.iterator then return M.episode_iter(samples, opts) end
  local S = setup("data.episodes", samples, opts, 2)
  if not S.episodes then
    error("data.episodes: option 'episodes' is required for a list (or pass iterator=true)", 2)
  end
  local list = {}
  for i = 1, S.episodes do list[i] = draw(S) end
  return list
end

--- An iterator over episodes, for training: `for ep in fs.data.episode_iter(samples, opts) do`.
-- Endless unless `episodes` is given. Options as fs.data.episodes.
-- @tparam table samples tissue samples
-- @tparam table opts as fs.data.episodes
-- @treturn function the iterator (returns the next episode, or nil after `episodes`)
-- @usage local next_episode = fs.data.episode_iter(samples, {seed = 1}); local ep = next_episode()
function M.episode_iter(samples, opts)
  opts = args.options("data.episode_iter", opts, KEYS)
  local S = setup("data.episode_iter", samples, opts, 2)
  local n = 0
  return function()
    if S.episodes and n >= S.episodes then return nil end
    n = n + 1
    return draw(S)
  end
end

return M
