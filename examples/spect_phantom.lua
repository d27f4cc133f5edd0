-- examples/spect_phantom.lua - a contact sheet of simulated cardiac SPECT slices.
--
-- Rows: transaxial, short-axis, long-axis views. Each patient is a pair of tiles: the
-- ground-truth activity on the clinical 64 x 64 grid (6.4 mm pixels), then the reconstruction
-- (64 views over 180 degrees, attenuation + collimator blur + 20% scatter, Poisson counts,
-- OSEM 4 x 4 with attenuation/PSF modelling, Butterworth 0.5 cycles/cm), both cropped around
-- the heart, with the label outlines (cyan ventricle, yellow myocardium, magenta liver) and
-- the landmarks (red dots).
--
--   lua5.4 examples/spect_phantom.lua [out.png] [seed]
local fs = require "fewshot.core"
local spect = require "fewshot.spect"

local out = arg and arg[1] or "spect_phantom.png"
local seed = tonumber(arg and arg[2]) or 1
local per_row, zoom, size = 4, 4, 32
local tile = size * zoom
local W, H = 2 * per_row * tile, #spect.VIEWS * tile
local rgb = {}
for i = 1, 3 * W * H do rgb[i] = 0 end
local function put(x, y, c)
  if x < 1 or y < 1 or x > W or y > H then return end
  local i = (y - 1) * W + x
  rgb[i], rgb[W * H + i], rgb[2 * W * H + i] = c[1], c[2], c[3]
end
local COLORS = {[1] = {0, 230, 230}, [2] = {255, 230, 0}, [3] = {230, 0, 230}}

local function draw(img, labels, landmarks, ox, oy)
  local t, l = img:totable(), labels:totable()
  local mx = 0
  for r = 1, size do for c = 1, size do mx = math.max(mx, t[r][c]) end end
  for Y = 1, tile do
    for X = 1, tile do
      local r, c = (Y - 1) // zoom + 1, (X - 1) // zoom + 1
      local g = math.floor(255 * math.max(0, t[r][c]) / mx + 0.5)
      put(ox + X, oy + Y, {g, g, g})
    end
  end
  if labels then -- outlines: an upscaled pixel whose right/down neighbour has another label
    for Y = 1, tile do
      for X = 1, tile do
        local r, c = (Y - 1) // zoom + 1, (X - 1) // zoom + 1
        local lab = l[r][c]
        local r2, c2 = Y // zoom + 1, X // zoom + 1
        local right = c2 <= size and l[r][c2] or lab
        local down = r2 <= size and l[r2][c] or lab
        if (right ~= lab or down ~= lab) then
          local cls = COLORS[lab] and lab or (COLORS[right] and right ~= lab and right) or
                      (COLORS[down] and down)
          if cls and COLORS[cls] then put(ox + X, oy + Y, COLORS[cls]) end
        end
      end
    end
  end
  for _, p in pairs(landmarks) do
    local X, Y = math.floor((p.x - 0.5) * zoom + 0.5), math.floor((p.y - 0.5) * zoom + 0.5)
    for dy = -1, 1 do for dx = -1, 1 do put(ox + X + dx, oy + Y + dy, {255, 30, 30}) end end
  end
end

local t0 = fs.clock()
for row, view in ipairs(spect.VIEWS) do
  local data = spect.dataset{n = per_row, seed = seed + row, view = view, crop_size = size}
  for i, item in ipairs(data) do
    local ox, oy = (i - 1) * 2 * tile, (row - 1) * tile
    draw(item.activity, item.labels, item.landmarks, ox, oy)
    draw(item.image, item.labels, item.landmarks, ox + tile, oy)
  end
end
fs.image.write(out, fs.tensor(rgb):view(3, H, W), {bits = 8, normalize = false})
print(("wrote %s (%d x %d) in %.1f s"):format(out, W, H, fs.clock() - t0))
