-- fs.prnet.baselines: identity and template-matching localisation errors in mm.
local fs = require "fewshot"

-- A smooth image with blobs, its content moved by (ox, oy) pixels.
local function scene(ox, oy, H)
  H = H or 48
  local rows = {}
  for y = 1, H do
    local r = {}
    for x = 1, H do
      local u, v = x - ox, y - oy
      r[x] = math.exp(-((u - 18) ^ 2 + (v - 20) ^ 2) / 12) + 0.7 * math.exp(-((u - 30) ^ 2 + (v - 26) ^ 2) / 30)
        + 0.5 * math.exp(-((u - 22) ^ 2 + (v - 33) ^ 2) / 8)
    end
    rows[y] = r
  end
  return fs.tensor(rows)
end

local function item(ox, oy, pixel_mm)
  pixel_mm = pixel_mm or 6.4
  local lm = {}
  for name, p in pairs{a = {18, 20}, b = {30, 26}, c = {22, 33}} do
    local x, y = p[1] + ox, p[2] + oy
    lm[name] = {x = x, y = y, x_mm = (x - 1) * pixel_mm, y_mm = (y - 1) * pixel_mm}
  end
  return {image = scene(ox, oy), landmarks = lm, pixel_mm = pixel_mm}
end

describe("fs.prnet.baselines", function()
  it("identity errs by the shift; ncc finds the shifted copy", function()
    local support = {item(0, 0)}
    local query = {item(3, -4), item(-2, 1)}
    local r = fs.prnet.baselines(support, query, {patch = 11, window = 6})
    local id = r.methods.identity.pooled
    assert.are.equal(6, id.n)
    -- errors: 5 px (x3) and sqrt(5) px (x3) at 6.4 mm
    assert.near((5 + math.sqrt(5)) / 2 * 6.4, id.mean, 1e-9)
    assert.near(0, id.within_pixel, 0)
    local ncc = r.methods.ncc.pooled
    assert.near(0, ncc.mean, 1e-6)
    assert.are.equal(1, ncc.within_pixel)
    assert.are.equal(1, ncc.within_10mm)
    assert.near(0, r.methods.ncc_window.pooled.mean, 1e-6)
    assert.are.same({"a", "b", "c"}, r.landmarks)
    local r5 = math.sqrt(5) -- landmark a: errors sqrt(5) and 5 px; p95 interpolates between them
    assert.near((r5 + 0.95 * (5 - r5)) * 6.4, r.methods.identity.by_landmark.a.p95, 1e-9)
    assert.is_true(r.methods.ncc.pooled.ms_per_query >= 0)
  end)

  it("ncc_window cannot reach a match outside its window", function()
    local r = fs.prnet.baselines({item(0, 0)}, {item(6, 0)}, {patch = 11, window = 2})
    -- the best it can do is the window's edge: at least 4 px off
    assert.is_true(r.methods.ncc_window.pooled.median >= 4 * 6.4 - 1e-6)
    assert.near(0, r.methods.ncc.pooled.median, 1e-6)
  end)

  it("averages several supports for identity and computes the statistics", function()
    local r = fs.prnet.baselines({item(2, 0), item(-2, 0)}, {item(0, 0), item(0, 1)}, {patch = 11})
    local id = r.methods.identity
    -- the mean support position is the query's (0, 0): errors 0 (x3) and 1 px (x3)
    assert.near(0.5 * 6.4, id.pooled.mean, 1e-9)
    assert.near(0.5 * 6.4, id.pooled.median, 1e-9)
    assert.near(6.4, id.pooled.p95, 1e-9)
    assert.are.equal(1, id.pooled.within_pixel)
    assert.are.equal(1, id.pooled.within_10mm)
    assert.are.equal(2, id.by_landmark.b.n)
    assert.are.equal(2, r.n_support)
  end)

  it("moves a template that would leave the image inside, and skips landmarks outside a crop", function()
    local s, q, q2 = item(0, 0), item(1, 1), item(0, 1)
    s.landmarks.edge = {x = 2, y = 3}
    q.landmarks.edge = {x = 3, y = 4}
    q.landmarks.c.inside = false
    local r = fs.prnet.baselines({s}, {q, q2}, {patch = 11})
    assert.near(0, r.methods.ncc.by_landmark.edge.mean, 1e-6)
    assert.are.equal(1, r.methods.ncc.by_landmark.c.n)
    assert.are.equal(6, r.methods.ncc.pooled.n) -- q: a, b, edge; q2: a, b, c
  end)

  it("runs on dataset items (pixels and mm) and formats a table", function()
    local data = fs.spect.dataset{n = 3, crop = false, counts = false, iterations = 1, subsets = 4,
                                  variation = "realistic"}
    local r = fs.prnet.baselines({data[1]}, {data[2], data[3]})
    assert.is_true(#r.landmarks >= 5)
    for _, m in ipairs{"identity", "ncc", "ncc_window"} do
      local p = r.methods[m].pooled
      assert.is_true(p.n >= 10 and p.mean >= 0 and p.median <= p.p95, m)
    end
    local text = fs.prnet.format(r)
    assert.matches("identity%s+%(pooled%)", text)
    assert.matches("ncc_window", text)
    assert.matches("lv_centre", text)
    assert.matches("ms/query", text)
  end)

  it("raises clear errors", function()
    local s, q = item(0, 0), item(1, 0)
    assert.has_error(function() fs.prnet.baselines({s}, {q}, {patch = 10}) end,
      "prnet.baselines: option 'patch' must be odd, got 10")
    assert.has_error(function() fs.prnet.baselines({}, {q}) end,
      "prnet.baselines: support must be a non-empty list of items, got table")
    assert.has_error(function() fs.prnet.baselines({s}, {q}, {window = -1}) end,
      "prnet.baselines: option 'window' must be >= 0, got -1")
    assert.has_error(function() fs.prnet.baselines({s}, {q}, {patch = 61}) end,
      "prnet.baselines: patch 61 is larger than support[1]'s image (48, 48)")
    assert.has_error(function() fs.prnet.baselines({s}, {q}, {landmarks = {"zz"}}) end,
      "prnet.baselines: support[1] has no landmark 'zz' inside its image")
    assert.has_error(function() fs.prnet.baselines({{image = 1}}, {q}) end,
      "prnet.baselines: support[1] needs image (a tensor), landmarks and pixel_mm")
    local ok, err = pcall(fs.prnet.baselines, {s}, {q}, {windw = 2})
    assert.is_false(ok)
    assert.matches("unknown option 'windw'", err)
    assert.has_error(function() fs.prnet.format(5) end,
      "prnet.format: expected the table prnet.baselines returns")
  end)
end)
