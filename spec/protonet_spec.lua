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
