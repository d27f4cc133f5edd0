-- t:bbox() (a mask's bounding box, in C) and fs.data.tissues / fs.data.augment: tissue samples
-- cut from dataset items, each input mode, skipped empty masks, seeded augmentation.
local fs = require "fewshot"
local helper = require "helper"

local function fails_with(msg, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.matches(msg, err, 1, true)
end

describe("tensor:bbox", function()
  it("gives 1-based inclusive rows and columns of the nonzero elements", function()
    local m = fs.zeros({5, 6})
    m:set(2, 3, 1); m:set(4, 5, 0.5); m:set(3, 2, -1)
    assert.same({2, 2, 4, 5}, {m:bbox()})
  end)
  it("is nil for an all-zero mask and works on a transposed view", function()
    assert.is_nil(fs.zeros({3, 4}):bbox())
    local m = fs.zeros({5, 6})
    m:set(1, 6, 1); m:set(5, 1, 1)
    assert.same({1, 1, 5, 6}, {m:bbox()})
    m = fs.zeros({5, 6}); m:set(2, 3, 1); m:set(4, 5, 1)
    assert.same({3, 2, 5, 4}, {m:transpose(1, 2):bbox()})
    assert.same({1, 1, 1, 1}, {fs.ones({1, 1}):bbox()})
  end)
  it("agrees with a Lua scan on phantom masks", function()
    local items = fs.spect.dataset{n = 2, seed = 3}
    for _, it_ in ipairs(items) do
      for _, c in ipairs({"ventricle", "myocardium", "liver"}) do
        local t = it_.masks[c]:totable()
        local r0, c0, r1, c1 = math.huge, math.huge, -1, -1
        for i, row in ipairs(t) do
          for j, v in ipairs(row) do
            if v ~= 0 then
              r0, r1 = math.min(r0, i), math.max(r1, i)
              c0, c1 = math.min(c0, j), math.max(c1, j)
            end
          end
        end
        if r1 < 0 then assert.is_nil(it_.masks[c]:bbox())
        else assert.same({r0, c0, r1, c1}, {it_.masks[c]:bbox()}) end
      end
    end
  end)
  it("rejects a tensor that is not 2D", function()
    assert.has_error(function() fs.zeros({2, 3, 4}):bbox() end,
      "bbox: expected a 2D mask (H, W), got (2, 3, 4)")
  end)
end)

-- an 8 x 8 item whose image is 1..64 row-major; ventricle rows 3-6 x cols 2-5, myocardium one
-- pixel, liver empty
local function synthetic()
  local image = fs.arange(1, 65):view(8, 8):contiguous()
  local v = fs.zeros({8, 8})
  for r = 3, 6 do for c = 2, 5 do v:set(r, c, 1) end end
  local m = fs.zeros({8, 8}); m:set(8, 8, 1)
  return {image = image, masks = {ventricle = v, myocardium = m, liver = fs.zeros({8, 8})},
          pixel_mm = 6.4, patient = "p7"}
end

local function window(t, r0, c0, n) return t:narrow(1, r0, n):narrow(2, c0, n):contiguous() end

describe("data.tissues", function()
  local item = synthetic()

  it("masked, mask and crop cut the bounding box plus the margin (6.4 mm = 1 pixel)", function()
    local o = {size = 6, normalize = "none", classes = {"ventricle"}}
    o.input = "masked"
    local s = fs.data.tissues({item}, o)
    assert.equal(1, #s)
    assert.same({1, 6, 6}, s[1].image:shape())
    local masked = item.image * item.masks.ventricle
    assert.tensor_near(s[1].image:select(1, 1), window(masked, 2, 1, 6), 1e-6)
    o.input = "mask"
    assert.tensor_near(fs.data.tissues({item}, o)[1].image:select(1, 1),
      window(item.masks.ventricle, 2, 1, 6), 1e-6)
    o.input = "crop"
    assert.tensor_near(fs.data.tissues({item}, o)[1].image:select(1, 1),
      window(item.image, 2, 1, 6), 1e-6)
    o.input, o.margin_mm, o.size = "crop", 0, 4
    assert.tensor_near(fs.data.tissues({item}, o)[1].image:select(1, 1),
      window(item.image, 3, 2, 4), 1e-6)
  end)

  it("resizes with bilinear interpolation and clips the margin at the image border", function()
    local s = fs.data.tissues({item}, {input = "crop", size = 3, normalize = "none",
                                       classes = {"myocardium"}})
    -- the pixel (8, 8) widened by one pixel and clipped: rows 7-8, cols 7-8, resized 2 -> 3
    local expect = fs.F.interpolate(window(item.image, 7, 7, 2):view(1, 1, 2, 2),
                                    {size = {3, 3}, mode = "bilinear"}):view(3, 3)
    assert.tensor_near(s[1].image:select(1, 1), expect, 1e-6)
    assert.tensor_near(s[1].image:select(1, 1):select(1, 1), {55, 55.5, 56}, 1e-6)
  end)

  it("patch is a fixed window centred inside the tissue", function()
    local s = fs.data.tissues({item}, {input = "patch", patch = 4, size = 4, normalize = "none",
                                       classes = {"ventricle", "myocardium"}})
    assert.tensor_near(s[1].image:select(1, 1), window(item.image, 3, 2, 4), 1e-6)
    -- (8, 8) at the corner: the window is shifted inside the image
    assert.tensor_near(s[2].image:select(1, 1), window(item.image, 5, 5, 4), 1e-6)
  end)

  it("normalises by the maximum, repeats channels, labels and counts skipped masks", function()
    local s = fs.data.tissues({item, item}, {size = 5, channels = 3})
    assert.equal(4, #s)
    assert.same({ventricle = 0, myocardium = 0, liver = 2}, s.skipped)
    assert.same({3, 5, 5}, s[1].image:shape())
    assert.near(1, s[1].image:max():item(), 1e-6)
    assert.tensor_near(s[1].image:select(1, 1), s[1].image:select(1, 3), 0)
    assert.same({1, 2, 1, 2}, {s[1].label, s[2].label, s[3].label, s[4].label})
    assert.same({"ventricle", "myocardium"}, {s[1].class, s[2].class})
    assert.same({"p7", 1, 2}, {s[1].patient, s[1].index, s[3].index})
    local plain = fs.data.tissues({{image = item.image, masks = item.masks}}, {classes = {"ventricle"}})
    assert.equal(1, plain[1].patient) -- no patient field: the item's position
  end)

  it("makes one sample per tissue of phantom items, 64 x 64 by default", function()
    local items = fs.spect.dataset{n = 2, seed = 1}
    local s = fs.data.tissues(items)
    assert.equal(6, #s)
    assert.same({1, 64, 64}, s[1].image:shape())
    for _, x in ipairs(s) do assert.near(1, x.image:max():item(), 1e-6) end
  end)

  it("augments with a seed: the same seed gives the same samples", function()
    local a = fs.data.tissues({item}, {size = 6, augment = {seed = 3}})
    local b = fs.data.tissues({item}, {size = 6, augment = {seed = 3}})
    local c = fs.data.tissues({item}, {size = 6})
    assert.tensor_near(a[1].image, b[1].image, 0)
    assert.is_true((a[1].image - c[1].image):abs():max():item() > 1e-3)
  end)

  it("rejects unknown options, modes and bad items", function()
    fails_with("data.tissues: unknown option 'sise' (did you mean 'size'?)", fs.data.tissues, {item}, {sise = 3})
    assert.has_error(function() fs.data.tissues({item}, {input = "blob"}) end,
      "data.tissues: option 'input' must be one of masked, mask, crop, patch, got 'blob'")
    assert.has_error(function() fs.data.tissues({item}, {channels = 2}) end,
      "data.tissues: option 'channels' must be 1 or 3, got 2")
    assert.has_error(function() fs.data.tissues({item}, {classes = {"spleen"}}) end,
      "data.tissues: item 1 has no mask 'spleen'")
    fails_with("data.tissues: augment: unknown option 'flop'", fs.data.tissues, {item},
      {augment = {seed = 1, flop = true}})
  end)
end)

describe("data.augment", function()
  local x = fs.arange(1, 17):view(1, 4, 4):contiguous()

  it("flips and rotates by 90-degree multiples: the values are permuted, never changed", function()
    local seen = {}
    for seed = 1, 12 do
      local y = fs.data.augment(x, {seed = seed, scale = false, noise = 0})
      local vals = helper.values(y)
      table.sort(vals)
      assert.same(helper.values(x), vals)
      seen[table.concat(helper.values(y), ",")] = true
    end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.is_true(n >= 4, "only " .. n .. " distinct transforms in 12 seeds")
    -- the 8 symmetries of the square are all a flip/rotation combination can give
    assert.is_true(n <= 8)
  end)

  it("scales intensities within the range and adds signal-dependent noise", function()
    for seed = 1, 5 do
      local y = fs.data.augment(x, {seed = seed, flip = false, rotate = false, scale = {2, 3}, noise = 0})
      local k = y:get(1, 1, 1) / 1
      assert.is_true(k >= 2 and k <= 3)
      assert.tensor_near(y, x:mul(k), 1e-5)
    end
    local z = fs.zeros({1, 4, 4})
    assert.tensor_near(fs.data.augment(z, {seed = 1, noise = 0.5}), z, 0) -- no signal, no noise
    local y = fs.data.augment(x, {seed = 1, flip = false, rotate = false, scale = false, noise = 0.05})
    local d = (y - x):abs():max():item()
    assert.is_true(d > 0 and d < 16 * 0.05 * 6, "noise " .. d)
    assert.tensor_near(y, fs.data.augment(x, {seed = 1, flip = false, rotate = false, scale = false}), 0)
  end)

  it("rotates by a small seeded angle within [-angle, angle] when angle is given", function()
    local img = fs.zeros({1, 9, 9})
    img:set(1, 5, 8, 1) -- a dot 3 columns right of the centre
    local o = {flip = false, rotate = false, scale = false, noise = 0}
    local function with(extra) local t = {} for k, v in pairs(o) do t[k] = v end
      for k, v in pairs(extra) do t[k] = v end return t end
    assert.tensor_near(fs.data.augment(img, with{seed = 4}), img, 0) -- angle 0: untouched
    local a = fs.data.augment(img, with{seed = 4, angle = 15})
    assert.tensor_near(a, fs.data.augment(img, with{seed = 4, angle = 15}), 0)
    -- the dot stays within 15 degrees of its place: 3 px from the centre, under 1 px of arc
    local k = a:argmax() - 1
    local r, c = k // 9 + 1, k % 9 + 1
    assert.is_true(math.abs(r - 5) <= 1 and c >= 7, ("dot at %d, %d"):format(r, c))
    assert.is_true((a - img):abs():max():item() > 0.01)
    assert.has_error(function() fs.data.augment(img, with{angle = -1}) end,
      "data.augment: option 'angle' must be in [0, 180], got -1")
  end)

  it("rejects a non-square rotation and bad options", function()
    assert.has_error(function() fs.data.augment(fs.zeros({1, 2, 3}), {seed = 1}) end,
      "data.augment: rotate needs a square image, got 2x3 (pass rotate=false)")
    assert.has_error(function() fs.data.augment(x, {scale = {2, 1}}) end,
      "data.augment: option 'scale' must be {lo, hi} with 0 < lo <= hi, or false")
    fails_with("data.augment: unknown option 'nosie'", fs.data.augment, x, {nosie = 1})
    assert.has_error(function() fs.data.augment(7) end, "data.augment: image must be a tensor, got number")
  end)
end)
