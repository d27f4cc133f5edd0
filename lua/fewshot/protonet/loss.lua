--- fewshot.protonet.loss: the Prototypical Network loss (Snell et al. 2017) from existing
-- differentiable ops, so backward reaches the embeddings and the backbone.
-- Reached as `fs.protonet.loss` and `fs.protonet.logits`.
-- @module fewshot.protonet.loss
local core = require "fewshot.core"
local args = require "fewshot.args"

local M = {}

local F = core.F
M.DISTANCES = {"sqeuclidean", "euclidean", "cosine"}

local function shape_str(t) return "(" .. table.concat(t:shape(), ", ") .. ")" end

-- labels: a list of integers or a 1-D tensor of integer values -> a Lua list
local function label_list(op, what, labels, n)
  if type(labels) == "userdata" then labels = labels:contiguous():view(-1):totable() end
  if type(labels) ~= "table" then
    error(("%s: %s must be a list of integer labels, got %s"):format(op, what, type(labels)), 4)
  end
  if #labels ~= n then
    error(("%s: %s has %d labels for %d embeddings"):format(op, what, #labels, n), 4)
  end
  local out = {}
  for i = 1, n do
    local v = math.tointeger(labels[i])
    if not v then
      error(("%s: %s[%d] is not an integer (%s)"):format(op, what, i, tostring(labels[i])), 4)
    end
    out[i] = v
  end
  return out
end

local function check_emb(op, what, t)
  if type(t) ~= "userdata" then
    error(("%s: %s must be a tensor (N, D), got %s"):format(op, what, type(t)), 4)
  end
  if t:dim() ~= 2 then
    error(("%s: %s must be (N, D), got %s"):format(op, what, shape_str(t)), 4)
  end
end

-- The shared front of loss and logits: checks, prototypes, logits, targets.
local function forward(op, se, sl, qe, ql, opts)
  opts = args.options(op, opts, {"distance"})
  local distance = args.choice(op, "distance", opts.distance or "sqeuclidean", M.DISTANCES)
  check_emb(op, "support embeddings", se)
  check_emb(op, "query embeddings", qe)
  if se:shape()[2] ~= qe:shape()[2] then
    error(("%s: support embeddings %s and query embeddings %s differ in size"):format(op,
      shape_str(se), shape_str(qe)), 3)
  end
  local ns, nq = se:shape()[1], qe:shape()[1]
  if ns == 0 then error(op .. ": the support set is empty", 3) end
  sl = label_list(op, "support_labels", sl, ns)
  local classes, count = {}, {}
  for _, l in ipairs(sl) do
    if not count[l] then classes[#classes + 1] = l; count[l] = 0 end
    count[l] = count[l] + 1
  end
  table.sort(classes)
  local index = {}
  for k, l in ipairs(classes) do index[l] = k end
  local targets
  if ql ~= nil then
    ql = label_list(op, "query_labels", ql, nq)
    targets = {}
    for i, l in ipairs(ql) do
      if not index[l] then
        error(("%s: query %d has label %d, which no support embedding has (support labels: %s)")
          :format(op, i, l, table.concat(classes, ", ")), 3)
      end
      targets[i] = index[l]
    end
  end
  -- prototypes = A @ support, A (K, Ns) holding 1 / n_k where sample i is of class k
  local rows = {}
  for k = 1, #classes do
    local r = {}
    for i = 1, ns do r[i] = sl[i] == classes[k] and 1 / count[classes[k]] or 0 end
    rows[k] = r
  end
  local protos = core.tensor(rows):matmul(se)
  local d
  if distance == "sqeuclidean" then
    d = core.cdist2(qe, protos)
  elseif distance == "euclidean" then
    d = core.cdist2(qe, protos):clamp(1e-12):sqrt()
  else
    local function unit(x) return x / (x * x):sum(2, true):sqrt():clamp(1e-8) end
    d = 1 - unit(qe):matmul(unit(protos):transpose(1, 2))
  end
  return -d, targets, protos, classes
end

--- The Prototypical Network loss of one episode.
-- Prototypes are the class means of the support embeddings; logits = -distance(query,
-- prototype); loss = mean negative log-likelihood of log-softmax(logits) at the query labels.
-- Labels are integers that need not be sorted or contiguous: the distinct support labels,
-- sorted ascending, are the logits' columns 1..K (returned as `classes`).
-- Distances: "sqeuclidean" (squared Euclidean, Snell et al.'s choice), "euclidean" (its
-- square root, the squared distance clamped at 1e-12 first), "cosine" (1 - cosine similarity,
-- norms clamped at 1e-8).
-- @tparam Tensor support_emb (Ns, D)
-- @tparam table support_labels Ns integers (or a tensor of them)
-- @tparam Tensor query_emb (Nq, D)
-- @tparam table query_labels Nq integers, each a support label
-- @tparam[opt] table opts `distance="sqeuclidean"`
-- @treturn Tensor loss (0-d, on the tape)
-- @treturn number accuracy: the fraction of queries whose largest logit is their class
-- @treturn Tensor logits (Nq, K)
-- @treturn Tensor prototypes (K, D)
-- @treturn table classes: the support label of each column
-- @usage local loss, acc = fs.protonet.loss(emb_s, ep.support_labels, emb_q, ep.query_labels)
function M.loss(support_emb, support_labels, query_emb, query_labels, opts)
  local op = "protonet.loss"
  if query_labels == nil then error(op .. ": query_labels are required", 2) end
  local logits, targets, protos, classes = forward(op, support_emb, support_labels, query_emb,
                                                   query_labels, opts)
  local loss = F.nll_loss(F.log_softmax(logits, 2), targets)
  local correct = 0
  do
    local guard <close> = core.no_grad()
    local pred = logits:argmax(2):totable()
    for i, t in ipairs(targets) do if math.tointeger(pred[i]) == t then correct = correct + 1 end end
  end
  return loss, correct / #targets, logits, protos, classes
end

--- Logits of queries against the prototypes of a support set (no loss, no query labels).
-- @tparam Tensor support_emb (Ns, D)
-- @tparam table support_labels Ns integers
-- @tparam Tensor query_emb (Nq, D)
-- @tparam[opt] table opts `distance="sqeuclidean"`
-- @treturn Tensor logits (Nq, K)
-- @treturn table classes: the support label of each column (sorted)
-- @treturn Tensor prototypes (K, D)
function M.logits(support_emb, support_labels, query_emb, opts)
  local logits, _, protos, classes = forward("protonet.logits", support_emb, support_labels,
                                             query_emb, nil, opts)
  return logits, classes, protos
end

return M
