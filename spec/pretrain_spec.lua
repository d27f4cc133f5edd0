-- spec/pretrain_spec.lua: fs.protonet.pretrain (supervised pre-training with a linear head,
-- both call forms) and fs.protonet.pretrain_spect, on a tiny backbone: the loss falls on a
-- learnable two-class problem, the backbone is trained in place, the same seed gives the same
-- weights, and bad input is a clear error.
local fs = require "fewshot"
require "helper"

local function tiny_backbone(seed)
  return fs.nn.sequential{fs.nn.conv2d{in_channels = 1, out_channels = 4, kernel = 3, padding = 1,
                                       seed = seed},
                          fs.nn.relu(), fs.nn.adaptive_avgpool2d{output_size = {2, 2}},
                          fs.nn.flatten()}
end

-- 40 images (1, 8, 8): label 1 bright in the top half, label 2 in the bottom half, plus noise.
local function two_class_images()
  local g = fs.generator(5)
  local x = fs.randn({40, 1, 8, 8}, {generator = g}) * 0.3
  local labels = {}
  local top = fs.zeros({1, 1, 8, 8})
  top:narrow(3, 1, 4):fill(1)
  local bottom = fs.ones({1, 1, 8, 8}) - top
  local parts = {}
  for i = 1, 40 do
    labels[i] = i % 2 + 1
    parts[i] = x:narrow(1, i, 1) + (labels[i] == 1 and top or bottom)
  end
  return fs.cat(parts, 1), labels
end

describe("fs.protonet.pretrain", function()
  local x, y = two_class_images()

  it("learns a two-class problem from images and labels and trains the backbone in place", function()
    local net = tiny_backbone(1)
    local before = net:flat_parameters():clone()
    local out, hist = fs.protonet.pretrain{backbone = net, images = x, labels = y, steps = 60,
                                           batch = 16, lr = 1e-2, seed = 3}
    assert.equal(net, out)
    assert.equal(60, #hist.loss)
    assert.equal(60, #hist.accuracy)
    local last = 0
    for s = 51, 60 do last = last + hist.loss[s] / 10 end
    assert.is_true(last < 0.5 * hist.loss[1], ("loss %.3f -> %.3f"):format(hist.loss[1], last))
    assert.is_true(hist.accuracy[60] >= 0.9, "last batch accuracy " .. hist.accuracy[60])
    assert.is_true((net:flat_parameters() - before):abs():sum():item() > 0)
    assert.same({2, 16}, hist.head:parameters()[1]:shape()) -- the discarded head, (K, D)
    assert.is_true(hist.seconds >= 0)
  end)

  it("gives the same weights for the same seed and other weights for another", function()
    local function run(seed)
      local net = tiny_backbone(1)
      fs.protonet.pretrain{backbone = net, images = x, labels = y, steps = 5, batch = 8, seed = seed}
      return net:flat_parameters()
    end
    local a, b, c = run(7), run(7), run(8)
    assert.equal(0, (a - b):abs():max():item())
    assert.is_true((a - c):abs():max():item() > 0)
  end)

  it("takes samples {image=, label=} (fs.data.tissues' form), labels as a tensor, and classes=", function()
    local samples = {}
    for i = 1, 40 do samples[i] = {image = x:narrow(1, i, 1):view(1, 8, 8), label = y[i]} end
    local a = tiny_backbone(1)
    local _, h = fs.protonet.pretrain{backbone = a, samples = samples, steps = 4, batch = 8, seed = 2,
                                      classes = 3, weight_decay = 1e-4, log_every = 0}
    assert.same({3, 16}, h.head:parameters()[1]:shape())
    local b = tiny_backbone(1)
    local seen = 0
    fs.protonet.pretrain{backbone = b, images = x, labels = fs.tensor(y), steps = 4, batch = 8,
                         seed = 2, classes = 3, weight_decay = 1e-4,
                         on_step = function() seen = seen + 1 end}
    assert.equal(4, seen)
    assert.equal(0, (a:flat_parameters() - b:flat_parameters()):abs():max():item())
  end)

  it("rejects bad input with a message naming the problem", function()
    local net = tiny_backbone(1)
    local function err(opts)
      local ok, e = pcall(fs.protonet.pretrain, opts)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.truthy(err{backbone = net, images = x, labels = y, stpes = 3}
                  :find("protonet.pretrain: unknown option 'stpes' (did you mean 'steps'?)", 1, true))
    assert.truthy(err{images = x, labels = y}:find("protonet.pretrain: option 'backbone'", 1, true))
    assert.truthy(err{backbone = net, images = x}:find("option 'labels' is required", 1, true))
    assert.truthy(err{backbone = net}:find("option 'images' (N, C, H, W) or 'samples'", 1, true))
    assert.truthy(err{backbone = net, images = x, labels = {1, 2}}:find("2 labels for 40 images", 1, true))
    assert.truthy(err{backbone = net, images = x:view(40, 64), labels = y}:find("must be (N, C, H, W)", 1, true))
    local bad = {table.unpack(y)}
    bad[3] = 0
    assert.truthy(err{backbone = net, images = x, labels = bad}:find("label 3 is 0", 1, true))
    assert.truthy(err{backbone = net, images = x, labels = y, classes = 1}:find("a label is 2 but classes = 1", 1, true))
    assert.truthy(err{backbone = net, images = x, labels = y, samples = {}}:find("not both", 1, true))
    assert.truthy(err{backbone = net, images = fs.zeros({40, 3, 8, 8}), labels = y}
                  :find("the backbone rejects images of shape 40x3x8x8", 1, true))
  end)
end)

describe("fs.protonet.pretrain_spect", function()
  it("pre-trains on a simulated cohort's tissue samples, seeded", function()
    local function run()
      local net = tiny_backbone(1)
      local _, h = fs.protonet.pretrain_spect{backbone = net, patients = 2, cohort_seed = 100,
                                              size = 8, steps = 2, batch = 6, seed = 1}
      return net:flat_parameters(), h
    end
    local a, h = run()
    assert.equal(6, h.samples) -- 2 patients x 3 tissues
    assert.equal(2, #h.loss)
    assert.is_true(h.seconds >= h.simulate_seconds)
    local b = run()
    assert.equal(0, (a - b):abs():max():item())
    local ok, e = pcall(fs.protonet.pretrain_spect, {backbone = tiny_backbone(1), patinets = 2})
    assert.is_false(ok)
    assert.truthy(tostring(e):find("protonet.pretrain_spect: unknown option 'patinets'", 1, true), e)
  end)
end)
