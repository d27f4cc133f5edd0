-- fs.match: normalised cross-correlation map and best match (core: csrc/core/match/ncc.c).
local fs = require "fewshot"
require "helper"

local function at(m, y, x) return m:narrow(1, y, 1):narrow(2, x, 1):sum():item() end

-- A smooth test image: a few Gaussian blobs (H, W), values from a function of (x, y) 1-based.
local function image(H, W, f)
  local rows = {}
  for y = 1, H do
    local r = {}
    for x = 1, W do r[x] = f(x, y) end
    rows[y] = r
  end
  return fs.tensor(rows)
end

local function blobs(ox, oy)
  ox, oy = ox or 0, oy or 0
  return function(x, y)
    x, y = x - ox, y - oy
    return math.exp(-((x - 20) ^ 2 + (y - 24) ^ 2) / 18) + 0.6 * math.exp(-((x - 40) ^ 2 + (y - 30) ^ 2) / 40)
      + 0.8 * math.exp(-((x - 30) ^ 2 + (y - 45) ^ 2) / 10) + 0.01 * ((x * 7 + y * 13) % 5)
  end
end

local function patch(img, cx, cy, size) -- 1-based centre
  local h = (size - 1) // 2
  return img:narrow(1, cy - h, size):narrow(2, cx - h, size)
end

describe("fs.match.ncc", function()
  it("gives a map of the image's size, 1 where the template was cut and 0 on the border", function()
    local img = image(64, 64, blobs())
    local t = patch(img, 20, 24, 21)
    local m = fs.match.ncc(img, t)
    assert.are.same({64, 64}, m:shape())
    assert.near(1, at(m, 24, 20), 1e-5)
    assert.is_true(m:max():item() <= 1)
    -- the template (21 x 21) fits for centres 11..54: outside, 0
    assert.are.equal(0, m:narrow(1, 1, 10):abs():max():item())
    assert.are.equal(0, m:narrow(2, 55, 10):abs():max():item())
    assert.is_true(m:narrow(1, 11, 44):narrow(2, 11, 44):abs():min():item() >= 0)
    assert.is_true(at(m, 11, 11) ~= 0)
  end)

  it("matches the definition at a position", function()
    local img = fs.randn(16, 16, {generator = fs.generator(3)})
    local t = fs.randn(5, 3, {generator = fs.generator(4)})
    local m = fs.match.ncc(img, t)
    local w = img:narrow(1, 7 - 2, 5):narrow(2, 9 - 1, 3)
    local a, b = w - w:mean(), t - t:mean()
    local expect = (a * b):sum():item() / math.sqrt((a * a):sum():item() * (b * b):sum():item())
    assert.near(expect, at(m, 7, 9), 1e-5)
  end)

  it("is invariant to affine intensity changes a x + b (a > 0)", function()
    local img = image(40, 40, blobs(-5, -5))
    local t = patch(image(40, 40, blobs(-6, -4)), 20, 20, 9)
    local m1 = fs.match.ncc(img, t)
    local m2 = fs.match.ncc(img * 3.5 + 100, t * 0.2 - 7)
    assert.tensor_near(m2, m1, 1e-4)
    local m3 = fs.match.ncc(img * -2 + 1, t) -- a < 0 flips the sign
    assert.tensor_near(m3, -m1, 1e-4)
  end)

  it("gives 0 (no NaN) for a constant template or a constant region", function()
    local img = image(32, 32, function(x, y) return x < 16 and 5 or (x * y) % 7 end)
    local m = fs.match.ncc(img, fs.full({7, 7}, 2))
    assert.are.equal(0, m:abs():max():item())
    local m2 = fs.match.ncc(img, patch(img, 24, 16, 7))
    assert.are.equal(0, at(m2, 16, 8)) -- the window there is constant (all 5)
    assert.are.equal(m2:numel(), m2:eq(m2):sum():item()) -- no NaN
    local x, y, s = fs.match.best(fs.full({20, 20}, 1), fs.full({5, 5}, 1))
    assert.are.equal(0, s)
    assert.are.equal(3, x) -- ties: the first valid position in row-major order
    assert.are.equal(3, y)
  end)

  it("works on non-contiguous views", function()
    local img = image(40, 40, blobs(-5, -5))
    local t = patch(img, 15, 19, 9)
    local a = fs.match.ncc(img:transpose(1, 2):contiguous():transpose(1, 2), t)
    local b = fs.match.ncc(img, t:contiguous())
    assert.tensor_near(a, b, 0)
  end)
end)

describe("fs.match.best", function()
  it("finds a shifted copy at the exact shift", function()
    local a = image(64, 64, blobs())
    for _, s in ipairs{{3, -2}, {-5, 4}, {0, 7}} do
      local b = image(64, 64, blobs(s[1], s[2])) -- content moved by (+dx, +dy)
      local t = patch(a, 20, 24, 21)
      local x, y, score = fs.match.best(b, t)
      assert.near(20 + s[1], x, 1e-3)
      assert.near(24 + s[2], y, 1e-3)
      assert.near(1, score, 1e-5)
    end
  end)

  it("refines a sub-pixel shift by the parabola", function()
    local a = image(64, 64, blobs())
    local b = image(64, 64, blobs(2.3, -1.4))
    local x, y = fs.match.best(b, patch(a, 20, 24, 15))
    assert.near(22.3, x, 0.15)
    assert.near(22.6, y, 0.15)
  end)

  it("searches only within the window around the centre", function()
    -- two copies of a blob; the window picks the one near the centre
    local img = image(64, 64, function(x, y)
      return math.exp(-((x - 15) ^ 2 + (y - 15) ^ 2) / 8) + 0.9 * math.exp(-((x - 45) ^ 2 + (y - 40) ^ 2) / 8)
    end)
    local t = patch(img, 15, 15, 9)
    local x, y = fs.match.best(img, t)
    assert.near(15, x, 1e-3)
    assert.near(15, y, 1e-3)
    x, y = fs.match.best(img, t, {window = 4, centre = {43, 42}})
    assert.near(45, x, 0.05)
    assert.near(40, y, 0.05)
    -- window 0: the centre itself (rounded), no search
    local x0, y0 = fs.match.best(img, t, {window = 0, centre = {30.4, 29.6}})
    assert.is_true(math.abs(x0 - 30) <= 0.5 and math.abs(y0 - 30) <= 0.5)
  end)

  it("with a prior, weighs each position's score by its distance from the centre", function()
    -- two equal copies of a blob 12 px apart: a flat search takes the first in row-major order,
    -- a prior centred nearer the second takes the second
    local img = image(64, 64, function(x, y)
      return math.exp(-((x - 20) ^ 2 + (y - 30) ^ 2) / 8) + math.exp(-((x - 32) ^ 2 + (y - 30) ^ 2) / 8)
    end)
    local t = patch(img, 20, 30, 7)
    local x = fs.match.best(img, t, {window = 10, centre = {25, 30}})
    assert.near(20, x, 1e-3)
    local xp, yp, sp = fs.match.best(img, t, {window = 10, centre = {27, 30}, prior = 8})
    assert.near(32, xp, 0.3) -- the parabola through penalised scores leans towards the centre
    assert.is_true(xp <= 32)
    assert.near(30, yp, 1e-3)
    assert.near(1 - 25 / 128, sp, 1e-5) -- NCC 1 at x = 32 minus 5^2 / (2 * 8^2)
    -- a strong prior keeps the match near the centre even off a copy; prior 0 is no prior
    local xs = fs.match.best(img, t, {window = 10, centre = {26, 30}, prior = 0.5})
    assert.is_true(math.abs(xs - 26) <= 1.5, "x " .. xs)
    local a, b, c = fs.match.best(img, t, {window = 10, centre = {25, 30}, prior = 0})
    local a2, b2, c2 = fs.match.best(img, t, {window = 10, centre = {25, 30}})
    assert.same({a2, b2, c2}, {a, b, c})
    assert.has_error(function() fs.match.best(img, t, {prior = 2}) end,
      "match.best: a prior needs a window and its centre")
    assert.has_error(function() fs.match.best(img, t, {window = 2, centre = {25, 30}, prior = -1}) end,
      "match.best: prior must be a finite number of pixels >= 0, got -1")
    assert.has_error(function() fs.match.best(img, t, {window = 2, centre = {25, 30}, prior = "x"}) end,
      "match.best: prior must be a number of pixels")
  end)

  it("is deterministic", function()
    local img = fs.randn(64, 64, {generator = fs.generator(9)})
    local t = fs.randn(21, 21, {generator = fs.generator(10)})
    local x1, y1, s1 = fs.match.best(img, t)
    local x2, y2, s2 = fs.match.best(img, t)
    assert.are.equal(x1, x2); assert.are.equal(y1, y2); assert.are.equal(s1, s2)
    local m1, m2 = fs.match.ncc(img, t), fs.match.ncc(img, t)
    assert.are.equal(0, (m1 - m2):abs():max():item())
  end)

  it("raises clear errors", function()
    local img = fs.zeros(16, 16)
    assert.has_error(function() fs.match.ncc(img, fs.zeros(17, 3)) end,
      "match.ncc: template (17, 3) is larger than the image (16, 16)")
    assert.has_error(function() fs.match.ncc(img, fs.zeros(4, 3)) end,
      "match.ncc: template sizes must be odd (a centre pixel), got (4, 3)")
    assert.has_error(function() fs.match.best(img, fs.zeros(3, 3), {window = -1, centre = {5, 5}}) end,
      "match.best: window must be >= 0 pixels, got -1")
    assert.has_error(function() fs.match.best(img, fs.zeros(3, 3), {window = 2}) end,
      "match.best: a window needs centre={x, y} (1-based pixels)")
    assert.has_error(function() fs.match.ncc(fs.zeros(4, 4, 4), fs.zeros(3, 3)) end)
    local ok, err = pcall(fs.match.best, img, fs.zeros(3, 3), {windw = 2})
    assert.is_false(ok)
    assert.matches("unknown option 'windw'", err)
    assert.has_error(function() fs.match.best(img, fs.zeros(9, 9), {window = 1, centre = {1, 1}}) end,
      "match.best: the window +/- 1 around (0, 0) holds no position where the template (9, 9) fits (rows 4..11, columns 4..11, 0-based)")
  end)
end)
