-- spec/optim_spec.lua: SGD / Adam / AdamW trajectories against torch.optim (fixtures from
-- tools/make_fixtures_models.py), StepLR, the flat-buffer path, state_dict resume.
-- Each step sets grad = (p - target) * 2 for three parameters of shapes (4,3), (3,), (2,2,2).
local fs = require "fewshot"
local helper = require "helper"

local FIX = "spec/fixtures/models/"
local function fixture(name) return fs.io.load_npy(FIX .. name .. ".npy") end
local SHAPES = {{4, 3}, {3}, {2, 2, 2}}
local STEPS = 6
-- Bit-identical to PyTorch 1.13 on AVX2 (its vector kernels fuse a + alpha*b into an FMA; so
-- does optim.c, with fmaf, on any machine)
local TOL = 0

local function split(flat)
  local out, off = {}, 0
  for _, s in ipairs(SHAPES) do
    local n = 1
    for _, d in ipairs(s) do n = n * d end
    out[#out + 1] = flat:narrow(1, off + 1, n):contiguous():view(s)
    off = off + n
  end
  return out
end

local function params()
  local ps = split(fixture("optim_init"))
  for _, p in ipairs(ps) do p:requires_grad(true) end
  return ps
end

local function set_grads(ps, targets)
  for i, p in ipairs(ps) do p.grad = (p:detach() - targets[i]) * 2 end
end

local function flat_values(ps)
  local parts = {}
  for i, p in ipairs(ps) do parts[i] = p:detach():contiguous():view(-1) end
  return fs.cat(parts, 1)
end

local CASES = {
  adam = {"adam", {lr = 0.1}},
  adam_wd_amsgrad = {"adam", {lr = 0.05, betas = {0.8, 0.99}, eps = 1e-6, weight_decay = 0.1,
                              amsgrad = true}},
  adamw = {"adamw", {lr = 0.1}},
  adamw_wd = {"adamw", {lr = 0.05, weight_decay = 0.3, amsgrad = true}},
  sgd = {"sgd", {lr = 0.1}},
  sgd_momentum = {"sgd", {lr = 0.1, momentum = 0.9, dampening = 0.1, weight_decay = 0.01}},
  sgd_nesterov = {"sgd", {lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 0.05}},
  adam_steplr = {"adam", {lr = 0.1}, steplr = true},
}

describe("fs.optim trajectories match torch.optim (float32 rounding)", function()
  local targets = split(fixture("optim_target"))
  for name, case in pairs(CASES) do
    it(name, function()
      local ps = params()
      local opt = fs.optim[case[1]](ps, case[2])
      local sched = case.steplr and fs.optim.step_lr(opt, {step = 2, gamma = 0.5})
      local expected = fixture("optim_" .. name)
      for s = 1, STEPS do
        set_grads(ps, targets)
        opt:step()
        if sched then sched:step() end
        assert.tensor_near(flat_values(ps), expected:select(1, s), TOL)
      end
      if sched then assert.near(0.1 * 0.5 ^ 3, opt.lr, 1e-15) end
    end)
  end
end)

describe("fs.optim on a model's flat buffer", function()
  local function net(seed)
    return fs.nn.sequential{fs.nn.linear(3, 4, {seed = seed}), fs.nn.relu(),
                            fs.nn.linear(4, 2, {seed = seed + 1})}
  end

  local function train(model, opt, steps)
    local g = fs.generator(11)
    for _ = 1, steps do
      local x = fs.randn({5, 3}, {generator = g})
      opt:zero_grad()
      model(x):pow(2):mean():backward()
      opt:step()
    end
  end

  it("runs as one loop and gives bit-identical results to the per-tensor path", function()
    local a, b = net(1), net(1)
    local oa = fs.optim.adam(a, {lr = 0.01, weight_decay = 0.01})
    assert.is_true(oa:is_flat())
    -- the same parameters as a list, after their grads have left the flat buffer
    local pb = b:parameters()
    local ob = fs.optim.adam(pb, {lr = 0.01, weight_decay = 0.01})
    for _, p in ipairs(pb) do p.grad = fs.zeros(p:shape()) end
    assert.is_false(ob:is_flat())
    train(a, oa, 5)
    train(b, ob, 5)
    assert.tensor_near(a:flat_parameters(), b:flat_parameters(), 0)
  end)

  it("resumes exactly from state_dict and from save/load", function()
    local ref, m1, m2 = net(3), net(3), net(3)
    local oref = fs.optim.adam(ref, {lr = 0.02, amsgrad = true})
    train(ref, oref, 6)
    -- m1: 3 steps, state_dict into a fresh optimizer, 3 more steps
    local o1 = fs.optim.adam(m1, {lr = 0.02, amsgrad = true})
    train(m1, o1, 3)
    local state = o1:state_dict()
    local o1b = fs.optim.adam(m1, {lr = 0.5, amsgrad = true})
    o1b:load_state_dict(state)
    assert.equal(0.02, o1b.lr)
    -- the generator restarts in train(), so replay the first 3 batches separately
    local g = fs.generator(11)
    for _ = 1, 3 do fs.randn({5, 3}, {generator = g}) end
    for _ = 1, 3 do
      local x = fs.randn({5, 3}, {generator = g})
      o1b:zero_grad()
      m1(x):pow(2):mean():backward()
      o1b:step()
    end
    assert.tensor_near(m1:flat_parameters(), ref:flat_parameters(), 0)
    -- m2: the same through a file
    local o2 = fs.optim.adam(m2, {lr = 0.02, amsgrad = true})
    train(m2, o2, 3)
    local path = os.tmpname()
    o2:save(path)
    local o2b = fs.optim.adam(m2, {lr = 1, amsgrad = true})
    o2b:load(path)
    os.remove(path)
    assert.equal(0.02, o2b.lr)
    g = fs.generator(11)
    for _ = 1, 3 do fs.randn({5, 3}, {generator = g}) end
    for _ = 1, 3 do
      local x = fs.randn({5, 3}, {generator = g})
      o2b:zero_grad()
      m2(x):pow(2):mean():backward()
      o2b:step()
    end
    assert.tensor_near(m2:flat_parameters(), ref:flat_parameters(), 0)
  end)

  it("sgd state_dict keeps momentum buffers", function()
    local m = net(5)
    local o = fs.optim.sgd(m, {lr = 0.1, momentum = 0.9})
    train(m, o, 2)
    local sd = o:state_dict()
    assert.equal("sgd", sd.kind)
    assert.same({m:num_parameters()}, sd.momentum_buffer:shape())
    assert.is_true(sd.momentum_buffer:abs():sum():item() > 0)
    local ok, err = pcall(fs.optim.adam(m).load_state_dict, fs.optim.adam(m), sd)
    assert.is_false(ok)
    assert.truthy(err:find("from a sgd optimizer"), err)
  end)
end)

describe("fs.optim errors", function()
  it("rejects bad hyperparameters and parameters", function()
    local p = fs.zeros(2, {requires_grad = true})
    assert.has_error(function() fs.optim.adam({p}, {lr = -1}) end, "fs.optim.adam: lr must be >= 0, got -1")
    assert.has_error(function() fs.optim.adam({p}, {betas = {1.0, 0.9}}) end,
      "fs.optim.adam: betas must be in [0, 1), got (1, 0.9)")
    assert.has_error(function() fs.optim.sgd({p}, {}) end, "fs.optim.sgd: option 'lr' is required")
    assert.has_error(function() fs.optim.sgd({p}, {lr = 0.1, nesterov = true}) end,
      "fs.optim.sgd: nesterov needs momentum > 0 and dampening 0")
    assert.has_error(function() fs.optim.adam({p, 3}) end,
      "fs.optim.adam: item 2 of the parameter list is a number, not a Tensor")
    assert.has_error(function() fs.optim.adam({}) end, "fs.optim.adam: no parameters to optimize")
    assert.has_error(function() fs.optim.step_lr(fs.optim.adam({p}), {}) end,
      "fs.optim.step_lr: option 'step' (>= 1) is required")
  end)

  it("leaves frozen parameters (requires_grad false) of a model alone", function()
    local m = fs.nn.sequential{fs.nn.linear(3, 4, {seed = 1}), fs.nn.linear(4, 2, {seed = 2})}
    local w0 = m:named_parameters()["0.weight"]
    w0:requires_grad(false)
    local before = w0:clone()
    local w1 = m:named_parameters()["1.weight"]
    local before1 = w1:clone()
    local o = fs.optim.adam(m, {lr = 0.1, weight_decay = 0.1})
    assert.equal(3, #o:state_dict().step:totable())
    m(fs.ones(2, 3)):sum():backward()
    o:step()
    assert.tensor_near(w0, before, 0)
    assert.is_true((w1 - before1):abs():max():item() > 0.05) -- Adam's first step moves by ~lr
  end)

  it("skips parameters without a gradient, as PyTorch does", function()
    local a = fs.ones(2, {requires_grad = true})
    local b = fs.ones(2, {requires_grad = true})
    local o = fs.optim.sgd({a, b}, {lr = 0.5})
    a.grad = fs.ones(2)
    o:step()
    assert.tensor_near(a, {0.5, 0.5}, 0)
    assert.tensor_near(b, {1, 1}, 0)
    assert.same({1, 0}, helper.values(o:state_dict().step))
  end)
end)

describe("fs.optim state files and checks on load", function()
  local function net()
    return fs.nn.sequential{fs.nn.linear(3, 4, {seed = 7}), fs.nn.relu(),
                            fs.nn.linear(4, 2, {seed = 8})}
  end

  it("writes the tensor names and metadata that files written before hold", function()
    local m = net()
    local o = fs.optim.adam(m, {lr = 0.02, amsgrad = true})
    local path = os.tmpname()
    o:save(path)
    local t, meta = fs.io.load(path)
    os.remove(path)
    local names = {}
    for k, v in pairs(t) do names[#names + 1] = k .. ":" .. table.concat(v:shape(), ",") end
    table.sort(names)
    assert.same({"exp_avg:26", "exp_avg_sq:26", "max_exp_avg_sq:26", "step:4"}, names)
    assert.same({["fewshot.optimizer"] = "adam", lr = "0.02", weight_decay = "0",
                 beta1 = "0.90000000000000002", beta2 = "0.999", eps = "1e-08"}, meta)
    local s = fs.optim.sgd(m, {lr = 0.1, momentum = 0.9})
    local sd = s:state_dict()
    assert.same({4}, sd.buffer_set:shape())
    assert.equal(0.9, sd.momentum)
    assert.equal(0, sd.dampening)
  end)

  it("names every key that does not fit and changes nothing", function()
    local m = net()
    local o = fs.optim.adam(m, {lr = 0.1})
    m(fs.ones(2, 3)):sum():backward()
    o:step()
    local before = o:state_dict()
    local bad = o:state_dict()
    bad.step = fs.tensor({5, 5, 5, 5}) -- fits, but must not be taken either
    bad.lr = -1
    bad.beta1 = "x"
    bad.exp_avg = fs.ones(3)
    bad.exp_avg_sq = nil
    bad.extra = fs.ones(1)
    local ok, err = pcall(o.load_state_dict, o, bad)
    assert.is_false(ok)
    assert.truthy(err:find("adam load_state_dict: 'beta1' must be a number, got 'x'; " ..
      "lr must be >= 0, got -1; 'exp_avg' must have shape (26), got (3); " ..
      "'exp_avg_sq' is missing; unexpected 'extra'", 1, true), err)
    assert.equal(0.1, o.lr)
    local after = o:state_dict()
    for k, v in pairs(before) do
      if type(v) == "number" or type(v) == "string" then assert.equal(v, after[k], k)
      else assert.tensor_near(v, after[k], 0) end
    end
  end)

  it("checks step counts, flags and momentum buffers", function()
    local m = net()
    local o = fs.optim.adam(m, {lr = 0.1})
    local sd = o:state_dict()
    sd.step = fs.tensor({1, 2.5, 0, 0})
    assert.has_error(function() o:load_state_dict(sd) end,
      "adam load_state_dict: 'step' holds 2.5 for parameter 2 (a step count is a whole number >= 0)")
    sd.step = fs.zeros(3)
    assert.has_error(function() o:load_state_dict(sd) end,
      "adam load_state_dict: 'step' must have shape (4), one per parameter, got (3)")
    local amsgrad = fs.optim.adam(m, {lr = 0.1, amsgrad = true})
    assert.has_error(function() amsgrad:load_state_dict(o:state_dict()) end,
      "adam load_state_dict: 'max_exp_avg_sq' is missing (this optimizer has amsgrad on)")
    local s = fs.optim.sgd(m, {lr = 0.1, momentum = 0.9})
    local ssd = s:state_dict()
    ssd.buffer_set = fs.tensor({0, 2, 0, 0})
    assert.has_error(function() s:load_state_dict(ssd) end,
      "sgd load_state_dict: 'buffer_set' holds 2 for parameter 2 (a flag is 0 or 1)")
    -- a momentum state into an optimizer without a buffer would step without one
    ssd = s:state_dict()
    ssd.momentum_buffer = nil
    assert.has_error(function() fs.optim.sgd(m, {lr = 0.1}):load_state_dict(ssd) end,
      "sgd load_state_dict: 'momentum' 0.9 needs a momentum buffer, and this optimizer was " ..
      "made without momentum")
  end)

  it("names the file when it holds no state of this kind, or a bad one", function()
    local m = net()
    local path = os.tmpname()
    m:save(path)
    local o = fs.optim.adam(m, {lr = 0.1})
    assert.has_error(function() o:load(path) end,
      "adam load: '" .. path .. "' is not a saved adam optimizer state")
    fs.io.save(path, {step = fs.zeros(2)}, {metadata = {["fewshot.optimizer"] = "adam"}})
    local ok, err = pcall(o.load, o, path)
    os.remove(path)
    assert.is_false(ok)
    assert.truthy(err:find("'" .. path .. "': adam load_state_dict: 'step' must have shape (4)",
      1, true), err)
  end)
end)
