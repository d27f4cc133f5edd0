-- Inter-patient variation of the phantom: heart shift and rotation, body scale, table offset.
local fs = require "fewshot"

local VIEWS = {"transaxial", "short_axis", "long_axis"}
local PIX = 6.4 -- the clinical pixel: "within half a pixel" means 3.2 mm

local function phantom(o)
  local t = {n = 192, pixel_mm = 6.4 / 3}
  for k, v in pairs(o) do t[k] = v end
  return fs.spect.phantom(t)
end

local function same_tensor(a, b) return (a - b):abs():max():item() == 0 end

describe("phantom variation", function()
  it("is off by default: zero ranges and variation='none' give the same phantom", function()
    for _, view in ipairs(VIEWS) do
      local a = phantom{seed = 3, view = view}
      local b = phantom{seed = 3, view = view, variation = "none", heart_shift_mm = 0,
                        heart_rotation_deg = 0, body_scale = 0, table_offset_mm = 0}
      assert.is_true(same_tensor(a.activity, b.activity))
      assert.is_true(same_tensor(a.labels, b.labels))
      assert.is_true(same_tensor(a.attenuation, b.attenuation))
      for name, p in pairs(a.landmarks) do
        assert.are.equal(p.x_mm, b.landmarks[name].x_mm)
        assert.are.equal(p.y_mm, b.landmarks[name].y_mm)
      end
      assert.are.equal(0, a.params.heart_dx_mm)
      assert.are.equal(0, a.params.heart_rotation_deg)
      assert.are.equal(1, a.params.body_scale_x)
      assert.are.equal(0, a.params.table_dy_mm)
    end
  end)

  it("draws each quantity within its range, independently of the others", function()
    local a = phantom{seed = 5, variation = "realistic"}
    local b = phantom{seed = 5, heart_shift_mm = 15}
    local p = a.params
    assert.is_true(math.abs(p.heart_dx_mm) <= 15 and math.abs(p.heart_dy_mm) <= 15)
    assert.is_true(math.abs(p.heart_rotation_deg) <= 15)
    assert.is_true(math.abs(p.body_scale_x - 1) <= 0.1 and math.abs(p.body_scale_y - 1) <= 0.1)
    assert.is_true(math.abs(p.table_dx_mm) <= 20 and math.abs(p.table_dy_mm) <= 20)
    -- the heart shift drawn does not depend on which other ranges are on
    assert.are.equal(p.heart_dx_mm, b.params.heart_dx_mm)
    assert.are.equal(p.heart_dy_mm, b.params.heart_dy_mm)
    -- and the scene's own draws are untouched
    assert.are.equal(a.params.lv_diameter_mm, b.params.lv_diameter_mm)
    assert.are.equal(a.params.liver_gap_mm, phantom{seed = 5}.params.liver_gap_mm)
  end)

  it("a table offset moves every landmark by the offset and the activity with it", function()
    for _, view in ipairs(VIEWS) do
      local a = phantom{seed = 7, view = view}
      local b = phantom{seed = 7, view = view, table_offset_mm = 30}
      local dx, dy = b.params.table_dx_mm, b.params.table_dy_mm
      assert.is_true(math.abs(dx) > 0 and math.abs(dy) > 0)
      -- exactly for the drawn points; lv_centre is the centroid of the sampled cavity
      for name, p in pairs(a.landmarks) do
        local tol = name == "lv_centre" and 0.5 * PIX or 1e-9
        assert.near(p.x_mm + dx, b.landmarks[name].x_mm, tol)
        assert.near(p.y_mm + dy, b.landmarks[name].y_mm, tol)
      end
      -- centre of mass of the LV myocardium label
      local function com(ph)
        local m = ph.labels:eq(2)
        local n = ph.labels:shape()[1]
        local xs = fs.arange(0, n):view(1, n):expand(n, n) * (ph.pixel_mm)
        local ys = fs.arange(0, n):view(n, 1):expand(n, n) * (ph.pixel_mm)
        local s = m:sum():item()
        return (xs * m):sum():item() / s, (ys * m):sum():item() / s
      end
      local ax, ay = com(a)
      local bx, by = com(b)
      assert.near(ax + dx, bx, 0.5 * PIX)
      assert.near(ay + dy, by, 0.5 * PIX)
    end
  end)

  it("a heart shift and rotation move the heart's landmarks rigidly (within half a pixel)", function()
    for _, view in ipairs(VIEWS) do
      for _, seed in ipairs{2, 11} do
        local a = phantom{seed = seed, view = view}
        local b = phantom{seed = seed, view = view, heart_shift_mm = 25, heart_rotation_deg = 20}
        local th = math.rad(b.params.heart_rotation_deg)
        local tx, ty = b.params.heart_dx_mm, b.params.heart_dy_mm
        assert.is_true(math.abs(b.params.heart_rotation_deg) > 1)
        local c, s = math.cos(th), math.sin(th)
        -- the pivot P from an analytic landmark: L' = P + t + R (L - P)  =>  (I - R) P = L' - t - R L
        local anchor = view == "short_axis" and "lv_inferior_wall" or "mitral_valve"
        local L, Lb = a.landmarks[anchor], b.landmarks[anchor]
        local rx, ry = Lb.x_mm - tx - (c * L.x_mm - s * L.y_mm), Lb.y_mm - ty - (s * L.x_mm + c * L.y_mm)
        local m11, m12, m21, m22 = 1 - c, s, -s, 1 - c
        local det = m11 * m22 - m12 * m21
        local px, py = (m22 * rx - m12 * ry) / det, (m11 * ry - m21 * rx) / det
        local checked = 0
        for name, p in pairs(a.landmarks) do
          local ex = px + tx + c * (p.x_mm - px) - s * (p.y_mm - py)
          local ey = py + ty + s * (p.x_mm - px) + c * (p.y_mm - py)
          local q = b.landmarks[name]
          assert(q, name .. " missing after the move")
          local err = math.sqrt((q.x_mm - ex) ^ 2 + (q.y_mm - ey) ^ 2)
          assert(err < 0.5 * PIX, ("%s %s seed %d: %s off by %.2f mm"):format(view, anchor, seed, name, err))
          checked = checked + 1
        end
        assert.is_true(checked >= 4)
        -- the shift is real: lv_centre moved by more than a pixel
        local d = math.sqrt((a.landmarks.lv_centre.x_mm - b.landmarks.lv_centre.x_mm) ^ 2 +
                            (a.landmarks.lv_centre.y_mm - b.landmarks.lv_centre.y_mm) ^ 2)
        assert.is_true(d > 3)
      end
    end
  end)

  it("body scale widens and deepens the body", function()
    local a = phantom{seed = 4, view = "transaxial"}
    local b = phantom{seed = 4, view = "transaxial", body_scale = 0.1}
    local function extent(ph, dim)
      local body = ph.attenuation:gt(0):sum(dim):gt(0):sum():item()
      return body
    end
    local sx, sy = b.params.body_scale_x, b.params.body_scale_y
    -- width in columns (sum over rows), depth in rows; within 2 fine pixels of the scaled extent
    assert.near(extent(a, 1) * sx, extent(b, 1), 3)
    assert.near(extent(a, 2) * sy, extent(b, 2), 3)
  end)

  it("the realistic preset spreads the LV centre over centimetres", function()
    local function spread(o)
      local xs, ys = {}, {}
      for seed = 1, 16 do
        o.seed = seed
        local ph = phantom(o)
        xs[#xs + 1], ys[#ys + 1] = ph.landmarks.lv_centre.x_mm, ph.landmarks.lv_centre.y_mm
      end
      local function sd(v)
        local m = 0 for _, x in ipairs(v) do m = m + x end m = m / #v
        local s = 0 for _, x in ipairs(v) do s = s + (x - m) ^ 2 end
        return math.sqrt(s / (#v - 1))
      end
      return math.sqrt(sd(xs) ^ 2 + sd(ys) ^ 2)
    end
    local off = spread{view = "short_axis"}
    local on = spread{view = "short_axis", variation = "realistic"}
    -- 16 seeds: 12.9 mm without, 23.8 mm with (heart shift and table offset add about 20 mm)
    assert.is_true(on > 1.5 * off and on > 18,
      ("spread %.1f mm with variation, %.1f mm without"):format(on, off))
  end)

  it("passes through simulate and dataset", function()
    local a = fs.spect.simulate{seed = 3, counts = false, iterations = 1, subsets = 4}
    local b = fs.spect.simulate{seed = 3, counts = false, iterations = 1, subsets = 4,
                                variation = "realistic"}
    assert.are.equal(a.params.table_dx_mm, 0)
    assert.are_not.equal(b.params.table_dx_mm, 0)
    local pa, pb = a.landmarks.lv_centre, b.landmarks.lv_centre
    assert.is_true(math.sqrt((pb.x - pa.x) ^ 2 + (pb.y - pa.y) ^ 2) > 1) -- pixels
    local ds = fs.spect.dataset{n = 1, crop = false, counts = false, iterations = 1, subsets = 4,
                                heart_rotation_deg = 10}
    assert.are_not.equal(0, ds[1].params.heart_rotation_deg)
  end)

  it("rejects bad ranges and names", function()
    assert.has_error(function() fs.spect.phantom{heart_shift_mm = -1} end,
      "spect.phantom: need heart_shift_mm in [0, 100], heart_rotation_deg in [0, 90], body_scale in [0, 0.5], table_offset_mm in [0, 200] (got -1, 0, 0, 0)")
    assert.has_error(function() fs.spect.phantom{body_scale = 0 / 0} end)
    assert.has_error(function() fs.spect.phantom{variation = "wild"} end,
      "spect.phantom: unknown variation 'wild' (none, realistic)")
    local ok, err = pcall(fs.spect.phantom, {heart_shift = 3})
    assert.is_false(ok)
    assert.matches("unknown option 'heart_shift'", err)
    ok, err = pcall(fs.spect.dataset, {n = 1, variaton = "realistic"})
    assert.is_false(ok)
    assert.matches("unknown option 'variaton'", err)
  end)
end)
