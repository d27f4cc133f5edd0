-- spec/prnet_train_spec.lua: PRNet-2D training and localisation in Lua: the pair sampler's
-- offsets and patches, the loss terms against a hand computation, a shifted synthetic copy
-- localised within one pixel after a short training, checkpoint round trip and bit-identical
-- resume, evaluate's table, and the errors for bad options.
local fs = require "fewshot"
local helper = require "helper"

-- A smooth synthetic image (H x H) whose content is moved by (ox, oy) pixels.
local function scene(ox, oy, H)
  local rows = {}
  for y = 1, H do
    local r = {}
    for x = 1, H do
      local u, v = x - ox, y - oy
      r[x] = 0.2 + math.exp(-((u - 12) ^ 2 + (v - 14) ^ 2) / 10)
        + 0.7 * math.exp(-((u - 22) ^ 2 + (v - 19) ^ 2) / 25)
        + 0.5 * math.exp(-((u - 15) ^ 2 + (v - 25) ^ 2) / 12) + 0.3 * (u / H)
    end
    rows[y] = r
  end
  return fs.tensor(rows)
end

local LANDMARKS = {a = {12, 14}, b = {22, 19}, c = {15, 25}}

local function item(ox, oy)
  local lm = {}
  for name, p in pairs(LANDMARKS) do
    local x, y = p[1] + ox, p[2] + oy
    lm[name] = {x = x, y = y, x_mm = (x - 1) * 2, y_mm = (y - 1) * 2}
  end
  return {image = scene(ox, oy, 32), landmarks = lm, pixel_mm = 2}
end

local function vals(t) return t:contiguous():view({-1}):totable() end

local TINY = {patch = 8, depth = 2, base = 2, batch = 4, r = 40, progress = false}
local function tiny(extra)
  local o = {images = {item(0, 0), item(1, 2)}}
  for k, v in pairs(TINY) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("fs.prnet.pairs", function()
  it("labels each pair by (centre0 - centre1) * pixel_mm and cuts the patches there", function()
    local im = item(0, 0)
    local b = fs.prnet.pairs({im}, {patch = 8, batch = 6, seed = 3})
    assert.are.same({6, 1, 8, 8}, b.x0:shape())
    assert.are.same({6, 1, 8, 8}, b.x1:shape())
    assert.are.same({6, 2}, b.offset_mm:shape())
    local off = b.offset_mm:totable()
    local img = im.image:totable()
    local mx = im.image:max():item()
    for i = 1, 6 do
      local c0, c1 = b.centres0[i], b.centres1[i]
      assert.near((c0[1] - c1[1]) * 2, off[i][1], 1e-5)
      assert.near((c0[2] - c1[2]) * 2, off[i][2], 1e-5)
      -- the patch's pixel (P/2 + 1, P/2 + 1) is the centre, the image divided by its maximum
      assert.near(img[c0[2]][c0[1]] / mx, b.x0:get(i, 1, 5, 5), 1e-6)
      assert.near(img[c1[2]][c1[1]] / mx, b.x1:get(i, 1, 5, 5), 1e-6)
      if c0[1] > 4 then assert.near(img[c0[2]][c0[1] - 4] / mx, b.x0:get(i, 1, 5, 1), 1e-6) end
      assert.are.equal(1, b.index[i])
    end
    -- same seed, same pairs; another seed, others
    local again = fs.prnet.pairs({im}, {patch = 8, batch = 6, seed = 3})
    assert.are.same(off, again.offset_mm:totable())
    assert.are.same(vals(b.x1), vals(again.x1))
    assert.are_not.same(off, fs.prnet.pairs({im}, {patch = 8, batch = 6, seed = 4}).offset_mm:totable())
    -- the sampler draws the same batch from a generator of that seed, then the next ones
    local sample = fs.prnet.sampler({im}, {patch = 8, batch = 6})
    local g = fs.generator(3)
    assert.are.same(off, sample(g).offset_mm:totable())
    assert.are_not.same(off, sample(g).offset_mm:totable())
    assert.are.same(off, fs.prnet.pairs({im}, {patch = 8, batch = 6, generator = fs.generator(3)}).offset_mm:totable())
  end)

  it("keeps centres on the body, pads by half a patch and honours fine_range", function()
    -- a body in the middle of a zero image: every centre must lie on it
    local rows = {}
    for y = 1, 20 do
      rows[y] = {}
      for x = 1, 20 do rows[y][x] = (x >= 3 and x <= 6 and y >= 14 and y <= 18) and 5 or 0 end
    end
    local img = fs.tensor(rows)
    local b = fs.prnet.pairs({img}, {patch = 10, batch = 20, seed = 1, pixel_mm = 3})
    for i = 1, 20 do
      for _, c in ipairs({b.centres0[i], b.centres1[i]}) do
        assert.is_true(c[1] >= 3 and c[1] <= 6 and c[2] >= 14 and c[2] <= 18)
      end
    end
    -- a centre at x = 3 sees 5 columns of padding (zeros) left of its patch's centre - 2
    local f = fs.prnet.pairs({img}, {patch = 10, batch = 30, seed = 2, fine_range = 2})
    for i = 1, 30 do
      local c0, c1 = f.centres0[i], f.centres1[i]
      assert.is_true(math.abs(c0[1] - c1[1]) <= 2 and math.abs(c0[2] - c1[2]) <= 2)
      assert.near(1, f.x0:get(i, 1, 6, 6), 1e-6) -- the body, normalised to 1
    end
    assert.near(0, b.x0:get(1, 1, 1, 1), 0) -- 5 px up-left of a body pixel: outside the body
  end)

  it("augments from the seed: geometry moves the anatomy, intensity scales a pair, boxes blank", function()
    local ims = {item(0, 0), item(2, 1)}
    local a = fs.prnet.pairs(ims, {patch = 8, batch = 8, seed = 5,
                                   augment = {rotate = 20, zoom = 0.1, translate = 2}})
    local a2 = fs.prnet.pairs(ims, {patch = 8, batch = 8, seed = 5,
                                    augment = {rotate = 20, zoom = 0.1, translate = 2}})
    assert.are.same(vals(a.x0), vals(a2.x0))
    local off = a.offset_mm:totable()
    local fractional = 0
    for i = 1, 8 do -- offsets are those of the (fractional) centres in the new image
      assert.near((a.centres0[i][1] - a.centres1[i][1]) * 2, off[i][1], 1e-4)
      local x, y = a.centres0[i][1], a.centres0[i][2]
      if x ~= math.floor(x) then fractional = fractional + 1 end
      assert.is_true(x >= 1 and x <= 32 and y >= 1 and y <= 32)
    end
    assert.is_true(fractional >= 6, "fractional centres " .. fractional)
    -- a translation alone moves the anatomy by whole pixels: each patch is the original image's
    -- patch at the centre moved back by some (tx, ty) within +/- 2, exactly, inside the frame
    local t = fs.prnet.pairs(ims, {patch = 8, batch = 8, seed = 5, augment = {translate = 2}})
    local moved = 0
    for i = 1, 8 do
      local P_ = require "fewshot.prnet.pairs"
      local src = P_.pad(P_.normalize(ims[t.index[i]].image), 4)
      local got, found = vals(t.x0:select(1, i):select(1, 1)), nil
      for ty = -2, 2 do
        for tx = -2, 2 do
          local cx, cy = t.centres0[i][1] - tx, t.centres0[i][2] - ty
          if cx >= 1 and cx <= 32 and cy >= 1 and cy <= 32 then
            local want = vals(src:narrow(1, cy, 8):narrow(2, cx, 8))
            local same = true
            for k = 1, 64 do -- the new image is 0 outside its own frame
              local px = t.centres0[i][1] + (k - 1) % 8 - 4
              local py = t.centres0[i][2] + (k - 1) // 8 - 4
              local inside = px >= 1 and px <= 32 and py >= 1 and py <= 32
              if math.abs((inside and want[k] or 0) - got[k]) > 1e-6 then same = false; break end
            end
            if same then found = {tx, ty} end
          end
        end
      end
      assert.is_truthy(found, "pair " .. i .. ": no whole-pixel translation gives its patch")
      if found[1] ~= 0 or found[2] ~= 0 then moved = moved + 1 end
    end
    assert.is_true(moved >= 4, "translated patches " .. moved)
    -- and the centres follow the anatomy: on an image whose only body is one bright pixel, every
    -- translated pair's patches are centred on it
    local dot = fs.zeros({32, 32})
    dot:narrow(1, 16, 1):narrow(2, 13, 1):fill(1)
    local d = fs.prnet.pairs({dot}, {patch = 8, batch = 8, seed = 3, augment = {translate = 3}})
    for i = 1, 8 do
      assert.near(1, d.x0:get(i, 1, 5, 5), 1e-6)
      assert.near(1, d.x1:get(i, 1, 5, 5), 1e-6)
    end
    -- turned and zoomed too: the patch centre is the dot's new (fractional) place, so it holds
    -- the dot whole and its neighbours at most the bilinear spill of a point
    d = fs.prnet.pairs({dot}, {patch = 8, batch = 8, seed = 3,
                               augment = {rotate = 20, zoom = 0.1, translate = 3}})
    for i = 1, 8 do
      assert.near(1, d.x0:get(i, 1, 5, 5), 1e-4)
      assert.is_true(d.x0:get(i, 1, 5, 6) < 1 - 1e-3, "pair " .. i)
    end
    -- intensity: both patches of a pair times one factor within 1 +/- 0.3
    local plain = fs.prnet.pairs(ims, {patch = 8, batch = 8, seed = 6})
    local scaled = fs.prnet.pairs(ims, {patch = 8, batch = 8, seed = 6, augment = {intensity = 0.3}})
    assert.are.same(plain.offset_mm:totable(), scaled.offset_mm:totable())
    for i = 1, 8 do
      local f0 = scaled.x0:get(i, 1, 5, 5) / plain.x0:get(i, 1, 5, 5)
      local f1 = scaled.x1:get(i, 1, 5, 5) / plain.x1:get(i, 1, 5, 5)
      assert.near(f0, f1, 1e-5)
      assert.is_true(f0 >= 0.7 - 1e-6 and f0 <= 1.3 + 1e-6)
    end
    -- boxes: some pixels set to 0 (the scene is > 0.2 everywhere)
    local boxed = fs.prnet.pairs(ims, {patch = 8, batch = 8, seed = 6, augment = {boxes = 2}})
    local zeros = 0
    for _, v in ipairs(vals(boxed.x0)) do if v == 0 then zeros = zeros + 1 end end
    assert.is_true(zeros >= 8, "zeros " .. zeros)
  end)

  it("rejects bad options", function()
    local ims = {item(0, 0)}
    assert.has_error(function() fs.prnet.pairs(ims, {batch = 2}) end, "prnet.pairs: option 'patch' is required")
    assert.has_error(function() fs.prnet.pairs(ims, {patch = 7}) end, "prnet.pairs: option 'patch' must be even, got 7")
    assert.has_error(function() fs.prnet.pairs({}, {patch = 8}) end,
      "prnet.pairs: images must be a non-empty list of items or (H, W) tensors, got table")
    assert.has_error(function() fs.prnet.pairs({fs.zeros({8, 8})}, {patch = 8}) end,
      "prnet.pairs: images[1] has no body pixel above body_threshold 0.05 of its maximum")
    local ok, err = pcall(fs.prnet.pairs, ims, {patch = 8, fine_rang = 2})
    assert.is_false(ok)
    assert.matches("unknown option 'fine_rang'", err)
    ok, err = pcall(fs.prnet.pairs, ims, {patch = 8, augment = {rotat = 2}})
    assert.is_false(ok)
    assert.matches("unknown option 'rotat'", err)
  end)
end)

describe("fs.prnet.loss", function()
  it("is MSE(tanh(z0 - z1), offset / r) + w (MSE(rec0, x0) + MSE(rec1, x1)), term by term", function()
    local z0 = fs.tensor({{0.1, -0.2}, {0.5, 0.3}})
    local z1 = fs.tensor({{-0.3, 0.1}, {0.2, 0.9}})
    local off = fs.tensor({{40, -20}, {-10, 30}})
    local x0, x1 = fs.tensor({{0.2, 0.4}}), fs.tensor({{0.9, 0.1}})
    local r0, r1 = fs.tensor({{0.1, 0.6}}), fs.tensor({{0.5, 0.3}})
    local total, dis, rec = fs.prnet.loss(z0, z1, off, {r = 100, weight = 0.5, rec0 = r0, rec1 = r1,
                                                        x0 = x0, x1 = x1})
    local zd = {{0.4, -0.3}, {0.3, -0.6}}
    local od = {{0.4, -0.2}, {-0.1, 0.3}}
    local want = 0
    for i = 1, 2 do for j = 1, 2 do want = want + (math.tanh(zd[i][j]) - od[i][j]) ^ 2 end end
    want = want / 4
    local want_rec = ((0.1 ^ 2 + 0.2 ^ 2) + (0.4 ^ 2 + 0.2 ^ 2)) / 2
    assert.near(want, dis:item(), 1e-6)
    assert.near(want_rec, rec:item(), 1e-6)
    assert.near(want + 0.5 * want_rec, total:item(), 1e-6)
    local t0, d0, r0n = fs.prnet.loss(z0, z1, off, {r = 100, weight = 0})
    assert.is_nil(r0n)
    assert.near(want, t0:item(), 1e-6)
    assert.near(want, d0:item(), 1e-6)
  end)

  it("checks r, shapes, and the reconstruction inputs", function()
    local z = fs.zeros({3, 2})
    assert.has_error(function() fs.prnet.loss(z, z, z, {r = 0}) end, "prnet.loss: option 'r' must be > 0, got 0")
    assert.has_error(function() fs.prnet.loss(z, z, z) end, "prnet.loss: option 'r' (mm) is required")
    assert.has_error(function() fs.prnet.loss(z, z, fs.zeros({3, 3}), {r = 1, weight = 0}) end,
      "prnet.loss: z0 (3, 2), z1 (3, 2) and offset_mm (3, 3) must all be (B, D)")
    assert.has_error(function() fs.prnet.loss(z, z, z, {r = 1}) end,
      "prnet.loss: option 'rec0' is required when weight > 0")
    local ok, err = pcall(fs.prnet.loss, z, z, z, {r = 1, wieght = 0})
    assert.is_false(ok)
    assert.matches("unknown option 'wieght'", err)
  end)
end)

describe("fs.prnet.train, localize and evaluate", function()
  local coarse, fine, history
  local train_images = {item(0, 0), item(2, -1), item(-2, 2), item(1, 3), item(-3, -1)}

  local threads
  setup(function()
    threads = fs.get_num_threads()
    fs.set_num_threads(1)
    coarse, history = fs.prnet.train{images = train_images, patch = 16, depth = 2, base = 4, r = 40,
      steps = 400, batch = 16, weight = 0, lr = 3e-3, seed = 1, progress = false}
    fine = fs.prnet.train{images = train_images, patch = 16, depth = 2, base = 4, r = 12, fine = 3,
      steps = 400, batch = 16, weight = 0, lr = 3e-3, seed = 2, progress = false}
  end)
  teardown(function() fs.set_num_threads(threads) end)

  -- Within one pixel on average: over the 3 shifts x 3 landmarks the mean error was 0.53-0.87
  -- px in every build and training setting tried (-O3, the sanitizer's -O1, 400-600 steps, lr
  -- 1e-3 to 3e-3), while the single worst landmark moved between 0.84 and 1.75 px with the
  -- float rounding of the build; so the mean is held to 1 px and each landmark to 2 px.
  it("finds the landmarks of shifted copies of the support within one pixel on average", function()
    assert.are.equal(400, #history.dis)
    assert.is_true(history.dis[400] < history.dis[1] / 4,
      ("dis %.4f -> %.4f"):format(history.dis[1], history.dis[400]))
    local sum, n = 0, 0
    for _, shift in ipairs({{3, -2}, {-1, 2}, {1, 1}}) do -- (3, -2) and (1, 1) not trained on
      local q = item(shift[1], shift[2])
      local r = fs.prnet.localize{coarse = coarse, r = 40, fine = fine, fine_r = 12, fine_steps = 1,
                                  support = {item(0, 0)}, query = q, samples = 15, seed = 0}
      assert.are.same({"a", "b", "c"}, r.names)
      for name, p in pairs(r.landmarks) do
        local t = q.landmarks[name]
        local e = math.sqrt((p.x - t.x) ^ 2 + (p.y - t.y) ^ 2)
        assert.is_true(e <= 2, ("%s at shift (%d, %d): %.2f px"):format(name, shift[1], shift[2], e))
        sum, n = sum + e, n + 1
        assert.near((p.x - 1) * 2, p.x_mm, 1e-9)
        assert.is_table(r.stages.coarse[name])
      end
    end
    assert.is_true(sum / n <= 1, ("mean error %.2f px"):format(sum / n))
    -- same seed, same answer; the query as a plain tensor gives the same
    local a = fs.prnet.localize{coarse = coarse, r = 40, support = {item(0, 0)}, query = item(3, -2), seed = 4}
    local b = fs.prnet.localize{coarse = coarse, r = 40, support = {item(0, 0)},
                                query = item(3, -2).image, seed = 4}
    assert.are.same(a.landmarks, b.landmarks)
    -- a localiser keeps the support's latents: the same answers query after query
    local loc = fs.prnet.localizer{coarse = coarse, r = 40, support = {item(0, 0)}, seed = 4}
    assert.are.same(a.landmarks, loc(item(3, -2)).landmarks)
  end)

  it("evaluates PRNet, its variants and stages beside the three baselines", function()
    local r = fs.prnet.evaluate{coarse = coarse, r = 40, fine = fine, fine_r = 12,
      support = {item(0, 0)}, queries = {item(3, -2), item(-1, 2)}, patch = 9, window = 4,
      stages = true, variants = {["prnet+ncc"] = {refine = {window = 2, patch = 9}}}}
    for _, m in ipairs({"prnet", "identity", "ncc", "ncc_window", "prnet/coarse", "prnet/fine",
                        "prnet+ncc", "prnet+ncc/refine"}) do
      assert.is_table(r.methods[m], m)
      assert.are.equal(6, r.methods[m].pooled.n, m)
      assert.is_number(r.methods[m].by_landmark.a.mean, m)
    end
    assert.is_true(r.methods.prnet.pooled.mean <= 2, "prnet mean " .. r.methods.prnet.pooled.mean)
    assert.is_true(r.methods.prnet.pooled.ms_per_query >= 0)
    local text = fs.prnet.format(r)
    assert.matches("prnet%s+%(pooled%)", text)
    assert.matches("prnet/coarse", text)
    -- identity errs by the shift: |(3, -2)| and |(-1, 2)| px at 2 mm
    assert.near((math.sqrt(13) + math.sqrt(5)) * 2 / 2, r.methods.identity.pooled.mean, 1e-9)
    -- without the baselines: PRNet's rows alone, the same numbers
    local only = fs.prnet.evaluate{coarse = coarse, r = 40, fine = fine, fine_r = 12,
      support = {item(0, 0)}, queries = {item(3, -2), item(-1, 2)}, baselines = false}
    assert.is_nil(only.methods.identity)
    assert.are.equal(r.methods.prnet.pooled.mean, only.methods.prnet.pooled.mean)
  end)

  it("refines by NCC, with a prior that holds an estimate in place as it tightens", function()
    -- refine alone starts from the support's coordinates, (3, -2) px from the truth: a flat
    -- search (or a weak prior) finds the shifted copy, a tight prior stays at the start
    local q = item(3, -2)
    local function err(opts)
      local r = fs.prnet.localize{support = {item(0, 0)}, query = q, refine = opts}
      local sum = 0
      for name, p in pairs(r.landmarks) do
        sum = sum + math.sqrt((p.x - q.landmarks[name].x) ^ 2 + (p.y - q.landmarks[name].y) ^ 2)
      end
      return sum / 3
    end
    assert.is_true(err{window = 4, patch = 9} < 0.3)
    assert.is_true(err{window = 4, patch = 9, prior = 50} < 0.3)
    assert.near(math.sqrt(13), err{window = 4, patch = 9, prior = 0.2}, 0.3)
    assert.has_error(function() fs.prnet.localize{support = {item(0, 0)}, query = q,
      refine = {window = 4, prior = -1}} end, "prnet.localize: option 'refine.prior' must be >= 0, got -1")
  end)

  it("takes refine settings per landmark (by_landmark), the rest from refine", function()
    -- a tight prior holds every landmark at the support's coordinates, (3, -2) px off, except
    -- the one whose own settings search flat; a template of its own size works as well
    local q = item(3, -2)
    local names = {}
    for name in pairs(q.landmarks) do names[#names + 1] = name end
    table.sort(names)
    local free = names[1]
    local function errs(refine)
      local r = fs.prnet.localize{support = {item(0, 0)}, query = q, refine = refine}
      local e = {}
      for name, p in pairs(r.landmarks) do
        e[name] = math.sqrt((p.x - q.landmarks[name].x) ^ 2 + (p.y - q.landmarks[name].y) ^ 2)
      end
      return e
    end
    for _, own in ipairs({{prior = false}, {prior = false, patch = 7, window = 5}}) do
      local e = errs{window = 4, patch = 9, prior = 0.2, by_landmark = {[free] = own}}
      assert.is_true(e[free] < 0.3, free .. " " .. e[free])
      for _, name in ipairs(names) do
        if name ~= free then assert.near(math.sqrt(13), e[name], 0.3) end
      end
    end
    local s = {item(0, 0)}
    assert.has_error(function() fs.prnet.localize{support = s, query = q,
      refine = {by_landmark = {nowhere = {prior = 2}}}} end,
      "prnet.localize: refine.by_landmark names 'nowhere', which is not a landmark localised here")
    assert.has_error(function() fs.prnet.localize{support = s, query = q,
      refine = {by_landmark = {[free] = {patch = 8}}}} end,
      "prnet.localize: option 'refine.by_landmark." .. free .. ".patch' must be odd, got 8")
    local ok, err = pcall(fs.prnet.localize, {support = s, query = q,
      refine = {by_landmark = {[free] = {priors = 2}}}})
    assert.is_false(ok)
    assert.matches("unknown option 'priors'", err)
    assert.has_error(function() fs.prnet.localize{support = s, query = q,
      refine = {by_landmark = {[free] = {prior = -1}}}} end,
      "prnet.localize: option 'refine.by_landmark." .. free .. ".prior' must be >= 0, got -1")
  end)

  it("rejects bad options", function()
    local s = {item(0, 0)}
    local bad = item(0, 0)
    bad.landmarks.a = {x = 40, y = 3}
    assert.has_error(function() fs.prnet.localize{coarse = coarse, r = 40, support = {bad}, query = s[1]} end,
      "prnet.localize: support[1] landmark 'a' at (40, 3) is outside its image (32, 32)")
    assert.has_error(function() fs.prnet.localize{coarse = coarse, r = 0, support = s, query = s[1]} end,
      "prnet.localize: option 'r' must be > 0, got 0")
    assert.has_error(function() fs.prnet.localize{coarse = coarse, support = s, query = s[1]} end,
      "prnet.localize: option 'r' (mm) is required with 'coarse'")
    assert.has_error(function() fs.prnet.localize{coarse = coarse, r = 40, support = s} end,
      "prnet.localize: option 'query' is required")
    assert.has_error(function() fs.prnet.localize{support = s, query = s[1]} end,
      "prnet.localize: give at least one of 'coarse', 'fine' or 'refine'")
    local ok, err = pcall(fs.prnet.localize, {coarse = coarse, r = 40, support = s, query = s[1], sample = 3})
    assert.is_false(ok)
    assert.matches("unknown option 'sample'", err)
    ok, err = pcall(fs.prnet.evaluate, {coarse = coarse, r = 40, support = s, queries = s, stage = true})
    assert.is_false(ok)
    assert.matches("unknown option 'stage'", err)
    ok, err = pcall(fs.prnet.evaluate, {coarse = coarse, r = 40, support = s, queries = s,
                                        variants = {v = {refin = {}}}})
    assert.is_false(ok)
    assert.matches("unknown option 'refin'", err)
  end)
end)

describe("fs.prnet.train options and checkpoints", function()
  it("rejects bad options", function()
    assert.has_error(function() fs.prnet.train(tiny{patch = 12, depth = 3}) end,
      "prnet.train: option 'patch' (12) must be a multiple of 2^depth = 8")
    assert.has_error(function() fs.prnet.train(tiny{patch = 4, depth = 3}) end,
      "prnet.train: option 'patch' (4) must be a multiple of 2^depth = 8")
    assert.has_error(function() fs.prnet.train(tiny{r = -1}) end, "prnet.train: option 'r' must be > 0, got -1")
    assert.has_error(function() fs.prnet.train(tiny{r = false}) end,
      "prnet.train: option 'r' must be a finite number, got boolean")
    local o = tiny(); o.r = nil
    assert.has_error(function() fs.prnet.train(o) end, "prnet.train: option 'r' (mm) is required")
    local ok, err = pcall(fs.prnet.train, tiny{step = 3})
    assert.is_false(ok)
    assert.matches("unknown option 'step'", err)
    ok, err = pcall(fs.prnet.train, tiny{augment = {zom = 1}})
    assert.is_false(ok)
    assert.matches("unknown option 'zom'", err)
    assert.has_error(function() fs.prnet.train(tiny{val_images = {item(0, 0)}}) end,
      "prnet.train: option 'val_images' must list at least 2 items (a support and a query)")
  end)

  it("round-trips a checkpoint and resumes bit-identically", function()
    local dir_a, dir_b = helper.tmpdir(), helper.tmpdir()
    local aug = {rotate = 10, intensity = 0.1, boxes = 1}
    local full, hfull = fs.prnet.train(tiny{steps = 6, checkpoint = dir_a, checkpoint_every = 3,
                                            augment = aug, seed = 2, val_images = {item(0, 0), item(1, 1)},
                                            val_every = 3, val_samples = 3})
    -- the checkpoint holds the final model
    local st = dofile(dir_a .. "/last.lua")
    assert.are.equal(6, st.step)
    local loaded = fs.nn.load(dir_a .. "/" .. st.model_file)
    assert.are.same(vals(full:flat_parameters()), vals(loaded:flat_parameters()))
    -- the superseded files were removed
    assert.is_nil(helper.read_or_nil(dir_a .. "/last-000003.model.safetensors"))
    -- stop at 3, resume to 6: the same weights and history, bit for bit
    fs.prnet.train(tiny{steps = 3, checkpoint = dir_b, augment = aug, seed = 2,
                        val_images = {item(0, 0), item(1, 1)}, val_every = 3, val_samples = 3})
    local resumed, hres = fs.prnet.train(tiny{steps = 6, resume = dir_b, checkpoint = dir_b,
                                              augment = aug, seed = 2, val_images = {item(0, 0), item(1, 1)},
                                              val_every = 3, val_samples = 3})
    assert.are.same(vals(full:flat_parameters()), vals(resumed:flat_parameters()))
    assert.are.same(hfull.loss, hres.loss)
    assert.are.same(hfull.rec, hres.rec)
    assert.are.same(hfull.val, hres.val)
    assert.are.equal(2, #hres.val)
    -- a different configuration does not resume
    assert.has_error(function() fs.prnet.train(tiny{steps = 6, resume = dir_b, seed = 3, augment = aug}) end,
      "prnet.train: resume: the checkpoint was trained with seed = 2, not 3")
    assert.has_error(function() fs.prnet.train(tiny{steps = 6, resume = dir_b .. "/nothing"}) end,
      "prnet.train: resume: no checkpoint state at " .. dir_b .. "/nothing")
    os.execute("rm -rf '" .. dir_a .. "' '" .. dir_b .. "'")
  end)
end)

describe("fewshot.prnet.experiment", function()
  it("runs the demo section end to end on a tiny configuration, figures included", function()
    local experiment = require "fewshot.prnet.experiment"
    local dir = helper.tmpdir()
    local r = experiment.run{quick = true, train_n = 2, test_n = 2, steps = 2, fine_steps = 2, batch = 4,
                             samples = 3, figures = dir}
    for _, m in ipairs({"prnet", "prnet/coarse", "prnet/fine", "prnet+ncc", "prnet+ncc per landmark",
                        "identity", "ncc", "ncc_window"}) do
      assert.is_table(r.result.methods[m], m)
      assert.are.equal(12, r.result.methods[m].pooled.n, m)
    end
    -- the stages of the combined methods repeat other rows: left out
    assert.is_nil(r.result.methods["prnet+ncc/coarse"])
    assert.is_nil(r.result.methods["prnet+ncc per landmark/refine"])
    -- its settings name the phantom's six landmarks
    local names = {}
    for name in pairs(experiment.REFINE_BY_LANDMARK.by_landmark) do names[#names + 1] = name end
    table.sort(names)
    assert.same(r.result.landmarks, names)
    assert.are.equal(2, #r.history.dis)
    assert.are.equal(2, #r.fine_history.rec)
    assert.matches("prnet%+ncc", r.text)
    for _, name in ipairs({"reconstructions", "landmarks", "latent"}) do
      assert.is_string(helper.read_or_nil(r.figures[name]), name)
    end
    local ok, err = pcall(experiment.run, {quick = true, cohrt = "default"})
    assert.is_false(ok)
    assert.matches("unknown option 'cohrt'", err)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
