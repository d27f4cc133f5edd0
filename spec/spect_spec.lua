-- SPECT simulator: phantom anatomy and determinism, projector/back-projector adjointness and
-- physics, Poisson acquisition, OSEM convergence, FBP, the realism figures, the dataset.
local fs = require "fewshot"
local helper = require "helper"

local function dot(a, b) return (a * b):sum():item() end
local function rel_err(x, truth) return ((x - truth):pow(2):sum():item() / truth:pow(2):sum():item()) ^ 0.5 end

describe("spect.phantom", function()
  it("returns (n, n) activity, attenuation and labels with the view's landmarks", function()
    for view, names in pairs({
      transaxial = {"lv_apex", "lv_centre", "mitral_valve", "rv_insertion_anterior", "rv_insertion_posterior", "liver_dome"},
      short_axis = {"lv_centre", "rv_insertion_anterior", "rv_insertion_inferior", "lv_inferior_wall", "lv_lateral_wall", "liver_dome"},
      long_axis = {"lv_apex", "lv_centre", "mitral_valve", "lv_base_anterior", "lv_base_inferior", "liver_dome"},
    }) do
      local ph = fs.spect.phantom{seed = 4, n = 96, pixel_mm = 4, view = view}
      assert.same({96, 96}, ph.activity:shape())
      assert.same({96, 96}, ph.attenuation:shape())
      assert.same({96, 96}, ph.labels:shape())
      for _, name in ipairs(names) do
        local p = ph.landmarks[name]
        assert.is_table(p, view .. " lacks " .. name)
        assert.is_true(p.x_mm >= 0 and p.x_mm <= 95 * 4 and p.y_mm >= 0 and p.y_mm <= 95 * 4)
      end
      for lab = 1, 3 do assert.is_true(ph.labels:eq(lab):sum():item() > 10, view .. " label " .. lab) end
    end
  end)

  it("draws anatomy within the published ranges", function()
    for seed = 1, 8 do
      local ph = fs.spect.phantom{seed = seed, n = 96, pixel_mm = 4, defect_prob = 0, hotspot_prob = 0}
      local p = ph.params
      assert.is_true(p.lv_diameter_mm >= 39 and p.lv_diameter_mm <= 59)
      assert.is_true(p.wall_mm >= 6 and p.wall_mm <= 10)
      assert.is_true(p.liver_uptake >= 0.3 and p.liver_uptake <= 1.0)
      assert.is_true(p.blood_uptake >= 0.05 and p.blood_uptake <= 0.2)
      assert.near(1.0, ph.activity:max():item(), 1e-5) -- normal myocardium is the reference
      -- attenuation only takes the tissue values (1/cm)
      local mu = ph.attenuation
      local known = mu:eq(0) + mu:eq(0.04) + mu:eq(0.15) + mu:eq(0.27)
      assert.equal(96 * 96, known:sum():item())
      assert.is_true(mu:eq(0.27):sum():item() > 0 and mu:eq(0.04):sum():item() > 0) -- transaxial: spine
    end
  end)

  it("puts the liver dome the asked gap beyond the heart", function()
    local ph = fs.spect.phantom{seed = 3, n = 128, pixel_mm = 3, view = "short_axis", liver_gap_mm = 12}
    local lab = ph.labels:totable()
    local myo, liv = {}, {}
    for r = 1, 128 do for c = 1, 128 do
      if lab[r][c] == 2 then myo[#myo + 1] = {r, c} elseif lab[r][c] == 3 then liv[#liv + 1] = {r, c} end
    end end
    local best = math.huge
    for _, a in ipairs(myo) do for _, b in ipairs(liv) do
      local d = (a[1] - b[1]) ^ 2 + (a[2] - b[2]) ^ 2
      if d < best then best = d end
    end end
    local gap = best ^ 0.5 * 3
    assert.is_true(gap >= 12 - 3 and gap <= 12 + 25, "gap " .. gap) -- at mid-cycle the heart is smaller than at end-diastole
  end)

  it("is deterministic for a seed and varies between seeds", function()
    local a = fs.spect.phantom{seed = 9, n = 64, pixel_mm = 6}
    local b = fs.spect.phantom{seed = 9, n = 64, pixel_mm = 6}
    local c = fs.spect.phantom{seed = 10, n = 64, pixel_mm = 6}
    assert.equal(0, (a.activity - b.activity):abs():max():item())
    assert.equal(0, (a.labels - b.labels):abs():max():item())
    assert.same(a.landmarks, b.landmarks)
    assert.is_true((a.activity - c.activity):abs():max():item() > 0.1)
  end)

  it("applies a perfusion defect of the asked severity", function()
    local o = {seed = 2, n = 96, pixel_mm = 4, defect_prob = 1, defect_severity = 0.6, view = "short_axis"}
    local ph = fs.spect.phantom(o)
    o.defect_prob = 0
    local normal = fs.spect.phantom(o) -- the same draws without the defect
    assert.near(0.6, ph.params.defect_severity, 1e-9)
    local myo = normal.labels:eq(2)
    local ratio = ph.activity:add(1e-6):div(normal.activity:add(1e-6)):mul(myo):add(myo:eq(0))
    assert.near(0.4, ratio:min():item(), 0.01) -- the wedge core keeps 40% of normal uptake
    assert.equal(0, (ph.labels - normal.labels):abs():max():item())
  end)

  it("raises on bad options", function()
    assert.has_error(function() fs.spect.phantom{view = "coronal"} end,
      "spect.phantom: unknown view 'coronal' (transaxial, short_axis, long_axis)")
    assert.has_error(function() fs.spect.phantom{n = 4} end, "spect.phantom: n must be in [16, 4096], got 4")
  end)
end)

describe("spect.project / backproject", function()
  local g = fs.generator(5)
  local n = 32
  local x = fs.rand({n, n}, {generator = g})
  local mu = fs.rand({n, n}, {generator = g}):mul(0.2)
  for _, geo in ipairs({
    {pixel_mm = 6.4, angles = 20},
    {pixel_mm = 6.4, angles = 24, arc = 360, scatter = 0.25},
    {pixel_mm = 3, angles = 16, psf = false},
    {pixel_mm = 6.4, angles = 8, scatter = 0.2, radius_mm = {120, 130, 140, 150, 160, 170, 180, 190}},
  }) do
    it(("is the adjoint of the projector (<Ax, y> = <x, A'y>), angles=%d"):format(geo.angles), function()
      local y = fs.rand({geo.angles, n}, {generator = g})
      local ax = fs.spect.project(x, mu, geo)
      local aty = fs.spect.backproject(y, mu, geo)
      assert.same({geo.angles, n}, ax:shape())
      assert.same({n, n}, aty:shape())
      local l, r = dot(ax, y), dot(x, aty)
      assert.is_true(math.abs(l - r) / math.abs(l) < 1e-4, ("%g vs %g"):format(l, r))
    end)
  end

  local function blob(n, sigma_px)
    local t = fs.zeros(n, n)
    local c = (n + 1) / 2
    for r = 1, n do for col = 1, n do
      t:set(r, col, math.exp(-((r - c) ^ 2 + (col - c) ^ 2) / (2 * sigma_px ^ 2)))
    end end
    return t:div(t:sum():item())
  end

  it("conserves counts without attenuation and attenuates by exp(-mu d)", function()
    local img = blob(64, 2)
    local s = fs.spect.project(img, nil, {pixel_mm = 4, angles = 16})
    for a = 1, 16 do assert.near(1.0, s:select(1, a):sum():item(), 2e-3) end
    -- a uniform water disc of radius 100 mm around the source: every view loses exp(-1.5)
    local mu = fs.zeros(64, 64)
    for r = 1, 64 do for c = 1, 64 do
      if ((r - 32.5) ^ 2 + (c - 32.5) ^ 2) ^ 0.5 * 4 <= 100 then mu:set(r, c, 0.15) end
    end end
    local sa = fs.spect.project(img, mu, {pixel_mm = 4, angles = 16})
    for a = 1, 16 do assert.near(math.exp(-1.5), sa:select(1, a):sum():item(), 0.015) end
  end)

  it("blurs more far from the collimator (sigma = 1.9 mm + 0.0177 d)", function()
    local img = fs.zeros(64, 64)
    img:set(33, 33, 1.0)
    local function width(radius)
      local row = fs.spect.project(img, nil, {pixel_mm = 2, angles = 1, start_deg = 0,
                                               radius_mm = radius}):select(1, 1):totable()
      local s, m, v = 0, 0, 0
      for i, w in ipairs(row) do s = s + w; m = m + i * w end
      m = m / s
      for i, w in ipairs(row) do v = v + (i - m) ^ 2 * w / s end
      return (v - 2 ^ 2 / 12 / 4) ^ 0.5 * 2 -- minus the variance of one bin
    end
    assert.near(1.9 + 0.0177 * 100, width(100), 0.15)
    assert.near(1.9 + 0.0177 * 300, width(300), 0.15)
  end)

  it("takes the options second without an attenuation map, or a phantom table", function()
    local ph = fs.spect.phantom{seed = 1, n = 32, pixel_mm = 12}
    local a = fs.spect.project(ph.activity, {angles = 6, pixel_mm = 12})
    local b = fs.spect.project(ph.activity, nil, {angles = 6, pixel_mm = 12})
    assert.equal(0, (a - b):abs():max():item())
    local c = fs.spect.project(ph, {angles = 6})
    local d = fs.spect.project(ph.activity, ph.attenuation, {angles = 6, pixel_mm = 12})
    assert.equal(0, (c - d):abs():max():item())
    assert.same({32, 32}, fs.spect.backproject(a, {angles = 6, pixel_mm = 12}):shape())
  end)

  it("raises naming the op and the shapes", function()
    assert.has_error(function() fs.spect.project(fs.zeros(4, 5)) end,
      "spect.project: activity must be a square (n, n) image, got (4, 5)")
    assert.has_error(function() fs.spect.project(fs.zeros(4, 4), fs.zeros(5, 5)) end,
      "spect.project: attenuation (5, 5) does not match the image size 4")
  end)
end)

describe("spect.acquire", function()
  it("draws Poisson counts scaled to the total, seeded", function()
    local s = fs.full({50, 40}, 1.0)
    local a = fs.spect.acquire(s, {counts = 50 * 40 * 20, seed = 3})
    local b = fs.spect.acquire(s, {counts = 50 * 40 * 20, seed = 3})
    assert.equal(0, (a - b):abs():max():item())
    assert.near(20, a:mean():item(), 0.3)
    assert.near(20, a:var():item(), 2.0)           -- variance = mean
    assert.equal(0, (a - a:add(0.5):clamp(0, 1e9):sub(0.5)):abs():max():item())
    local big = fs.spect.acquire(s, {counts = 50 * 40 * 500, seed = 4}) -- the PTRS branch
    assert.near(500, big:mean():item(), 2.0)
    assert.near(500, big:var():item(), 50)
  end)
end)

describe("spect.reconstruct", function()
  local ph = fs.spect.phantom{seed = 6, n = 64, pixel_mm = 6.4, view = "short_axis"}
  local geo = {pixel_mm = 6.4, angles = 64}

  it("OSEM error falls with iterations on a noiseless phantom", function()
    local sino = fs.spect.project(ph.activity, ph.attenuation, geo)
    local errs = {}
    for i, it_ in ipairs({1, 2, 4, 8}) do
      local x = fs.spect.reconstruct(sino, {iterations = it_, subsets = 8, attenuation = ph.attenuation,
                                           pixel_mm = 6.4, postfilter = false})
      errs[i] = rel_err(x, ph.activity)
    end
    for i = 2, 4 do assert.is_true(errs[i] < errs[i - 1], table.concat(errs, " ")) end
    assert.is_true(errs[4] < 0.8 * errs[1], table.concat(errs, " "))
  end)

  it("FBP recovers a uniform disc without attenuation or blur", function()
    local img = fs.zeros(64, 64)
    for r = 1, 64 do for c = 1, 64 do
      if ((r - 32.5) ^ 2 + (c - 32.5) ^ 2) ^ 0.5 <= 20 then img:set(r, c, 1) end
    end end
    local sino = fs.spect.project(img, nil, {pixel_mm = 6.4, angles = 64, psf = false})
    local x = fs.spect.reconstruct(sino, {method = "fbp", pixel_mm = 6.4, postfilter = false})
    assert.near(1.0, x:narrow(1, 25, 16):narrow(2, 25, 16):mean():item(), 0.02)
    assert.near(0.0, x:narrow(1, 30, 6):narrow(2, 4, 6):mean():item(), 0.05) -- outside the disc
  end)

  it("Butterworth keeps the mean and removes high frequencies", function()
    local g = fs.generator(1)
    local noise = fs.rand({32, 32}, {generator = g})
    local f = fs.spect.butterworth(noise, {order = 5, cutoff = 0.3, pixel_mm = 6.4})
    assert.is_true(f:var():item() < 0.2 * noise:var():item())
    -- interior mean is kept (zero padding lowers the border)
    assert.near(noise:narrow(1, 9, 16):narrow(2, 9, 16):mean():item(),
                f:narrow(1, 9, 16):narrow(2, 9, 16):mean():item(), 0.05)
  end)

  it("raises on bad options", function()
    local s = fs.zeros(8, 16)
    assert.has_error(function() fs.spect.reconstruct(s, {method = "art"}) end,
      "spect.reconstruct: unknown method 'art' (osem, fbp)")
    assert.has_error(function() fs.spect.reconstruct(s, {subsets = 9}) end,
      "spect.reconstruct: need iterations >= 0 and 1 <= subsets <= 8 (got 4, 9)")
  end)
end)

describe("realism figures", function()
  local r = fs.spect.realism()
  it("reconstructed point-source FWHM is 12-16 mm", function()
    assert.is_true(r.fwhm_mm >= 12 and r.fwhm_mm <= 16, tostring(r.fwhm_mm))
  end)
  it("myocardium-to-blood-pool contrast is 1.4-3", function()
    assert.is_true(r.contrast >= 1.4 and r.contrast <= 3, tostring(r.contrast))
  end)
  it("the inferior wall loses 2-25% to attenuation without correction, and not with it", function()
    assert.is_true(r.inferior_ratio_nc >= 0.8 and r.inferior_ratio_nc <= 0.98, tostring(r.inferior_ratio_nc))
    assert.is_true(math.abs(r.inferior_ratio_ac - 1) <= 0.07, tostring(r.inferior_ratio_ac))
    assert.is_true(r.inferior_drop >= 0.02 and r.inferior_drop <= 0.25, tostring(r.inferior_drop))
  end)
  it("pixel noise is 4-15% at clinical counts and halves with 4x the counts", function()
    assert.is_true(r.cov_low >= 0.04 and r.cov_low <= 0.15, tostring(r.cov_low))
    local ratio = r.cov_low / r.cov_high
    assert.is_true(ratio >= 1.7 and ratio <= 2.4, tostring(ratio))
  end)
end)

describe("spect.dataset", function()
  local t0 = fs.clock()
  local data = fs.spect.dataset{n = 12, seed = 3}
  local seconds = fs.clock() - t0

  it("builds 12 items in a few seconds", function()
    assert.is_true(seconds < 20, ("%.1f s"):format(seconds)) -- ~1.5 s of CPU; the machine is shared
  end)
  it("returns 12 labelled items cropped around the heart", function()
    assert.equal(12, #data)
    local with_liver = 0
    for _, item in ipairs(data) do
      assert.same({32, 32}, item.image:shape())
      assert.same({32, 32}, item.labels:shape())
      assert.equal(6.4, item.pixel_mm)
      for _, cls in ipairs({"ventricle", "myocardium", "liver"}) do
        local m = item.masks[cls]
        assert.same({32, 32}, m:shape())
        assert.equal(m:sum():item(), (m:eq(0) + m:eq(1)):mul(m):sum():item()) -- 0/1 only
      end
      assert.is_true(item.masks.ventricle:sum():item() >= 4)
      assert.is_true(item.masks.myocardium:sum():item() >= 10)
      if item.masks.liver:sum():item() > 0 then with_liver = with_liver + 1 end
      local c = item.landmarks.lv_centre
      assert.is_true(math.abs(c.x - 16.5) <= 3.5 and math.abs(c.y - 16.5) <= 3.5)
      assert.near((c.x - 1) * 6.4, c.x_mm, 1e-9)
      -- the label at the cavity centre is the ventricle
      assert.equal(1, item.labels:get(math.floor(c.y + 0.5), math.floor(c.x + 0.5)))
      assert.is_true(item.image:min():item() > -5 and item.image:max():item() > 10)
    end
    assert.is_true(with_liver >= 10, "items with liver: " .. with_liver)
  end)

  it("is deterministic for a seed", function()
    local again = fs.spect.dataset{n = 2, seed = 3}
    local other = fs.spect.dataset{n = 2, seed = 4}
    assert.equal(0, (again[2].image - data[2].image):abs():max():item())
    assert.is_true((other[2].image - data[2].image):abs():max():item() > 1)
  end)

  it("raises on an unknown view", function()
    assert.has_error(function() fs.spect.dataset{view = "axial"} end,
      "spect.dataset: unknown view 'axial' (transaxial, short_axis, long_axis, mixed)")
  end)
end)

describe("spect.orbit", function()
  it("follows the body contour with the clearance, inside a circular orbit", function()
    local ph = fs.spect.phantom{seed = 2, n = 96, pixel_mm = 4, breast_prob = 0}
    local r = fs.spect.orbit(ph.attenuation, {pixel_mm = 4, angles = 8, clearance_mm = 30})
    assert.equal(8, #r)
    local bax = 0 -- the body's half-width along x, measured on the map's centre row
    local row = ph.attenuation:select(1, 48):totable()
    for c = 1, 96 do if row[c] > 0 then bax = math.max(bax, math.abs(c - 48.5) * 4 + 2) end end
    -- view 7 of 8 (225 + 6 * 22.5 = 360 deg) looks from the patient's left
    assert.near(bax + 30, r[7] + 0.0, 6)
    for _, v in ipairs(r) do assert.is_true(v > 30 and v < 250) end
  end)
end)

describe("spect threads", function()
  it("gives the same dataset on 1 and 2 threads", function()
    local before = fs.get_num_threads()
    fs.set_num_threads(1)
    local a = fs.spect.dataset{n = 2, seed = 8, view = "transaxial"}
    fs.set_num_threads(2)
    local b = fs.spect.dataset{n = 2, seed = 8, view = "transaxial"}
    fs.set_num_threads(before)
    for i = 1, 2 do assert.equal(0, (a[i].image - b[i].image):abs():max():item()) end
  end)
end)
