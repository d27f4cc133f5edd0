-- fs.plot: charts through gnuplot's pngcairo terminal, image grids written directly.
-- With gnuplot installed (make deps installs gnuplot-nox) the charts are checked as images:
-- size, the colours of the groups, no temporary file left. Without it (or with FS_GNUPLOT set
-- to a missing program: one spec does it in a child process, and the whole file passes under
-- FS_GNUPLOT=/nonexistent too) the chart functions return nil, "gnuplot not found".
local helper = require "helper"
local fs = require "fewshot"

local dir = helper.tmpdir()

local read_all = helper.read_or_nil

local write_all = helper.write_bytes

local function listing()
  local p = io.popen("ls -A '" .. dir .. "'")
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

-- Width and height from a PNG's IHDR.
local function png_size(path)
  local s = assert(read_all(path))
  assert.are.equal("\137PNG\r\n\26\n", s:sub(1, 8))
  return (string.unpack(">I4", s, 17)), (string.unpack(">I4", s, 21))
end

-- How many pixels of an RGB image are within 40 of the colour {r, g, b}.
local function count_colour(rgb, c)
  local t = rgb:totable()
  local n = 0
  for y = 1, #t[1] do
    for x = 1, #t[1][1] do
      if math.abs(t[1][y][x] - c[1]) < 40 and math.abs(t[2][y][x] - c[2]) < 40
          and math.abs(t[3][y][x] - c[3]) < 40 then
        n = n + 1
      end
    end
  end
  return n
end

-- Runs code in a child lua5.4 with the environment prefix env; returns its output.
local function child(env, code)
  local script = os.tmpname()
  write_all(script, 'local fs = require "fewshot"\n' .. code)
  local cmd = env .. ' LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="' ..
    (os.getenv("FS_CPATH") or "./?.so") .. ';;" lua5.4 ' .. script .. " 2>&1"
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  os.remove(script)
  return out
end

local have = fs.plot.available()

describe("fs.plot", function()
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("knows whether gnuplot with pngcairo runs", function()
    assert.is_boolean(have)
    local prog = os.getenv("FS_GNUPLOT") or "gnuplot"
    local probe = io.popen("'" .. prog .. "' -e 'set terminal' 2>&1 </dev/null")
    local out = probe:read("a")
    probe:close()
    assert.are.equal(out:find("pngcairo", 1, true) ~= nil, have)
  end)

  it("draws a line chart of the requested size (or says gnuplot is missing)", function()
    local path = dir .. "/loss.png"
    local y = {}
    for i = 1, 50 do y[i] = math.exp(-i / 10) end
    local ok, err = fs.plot.lines(path, {series = {{y = y, title = "train"},
      {x = fs.arange(1, 51), y = fs.tensor(y) * 2, title = "val's 100%"}},
      title = "loss", xlabel = "episode", ylabel = "loss", logy = true, width = 640, height = 400})
    if not have then
      assert.is_nil(ok)
      assert.are.equal("gnuplot not found", err)
      return
    end
    assert.are.equal(path, ok, err)
    local w, h = png_size(path)
    assert.are.same({640, 400}, {w, h})
    local img = fs.image.read(path, {channels = 3})
    -- gnuplot's first two line colours: purple (148, 0, 211) and green (0, 158, 115)
    assert.is_true(count_colour(img, {148, 0, 211}) > 100)
    assert.is_true(count_colour(img, {0, 158, 115}) > 100)
    assert.are.same({"loss.png"}, listing())
    os.remove(path)
  end)

  it("draws a scatter coloured by group with a legend, from an (N, 2) tensor and labels", function()
    local path = dir .. "/tsne.png"
    local rows, labels = {}, {}
    for c = 1, 3 do
      for k = 1, 20 do rows[#rows + 1] = {c * 10 + math.cos(k), c * 5 + math.sin(k)}; labels[#labels + 1] = c end
    end
    local ok, err = fs.plot.scatter(path, {xy = fs.tensor(rows), labels = labels,
      names = {"liver", "kidney", "spleen"}, title = "t-SNE", xlabel = "t-SNE 1", ylabel = "t-SNE 2"})
    if not have then
      assert.is_nil(ok)
      assert.are.equal("gnuplot not found", err)
      return
    end
    assert.are.equal(path, ok, err)
    assert.are.same({800, 500}, {png_size(path)})
    local img = fs.image.read(path, {channels = 3})
    for _, c in ipairs{{148, 0, 211}, {0, 158, 115}, {86, 180, 233}} do
      assert.is_true(count_colour(img, c) > 50, ("colour %d,%d,%d"):format(c[1], c[2], c[3]))
    end
    os.remove(path)
  end)

  it("takes points with groups and groups as lists", function()
    if not have then return end
    local pts = {}
    for i = 1, 30 do pts[i] = {x = i, y = i % 7, group = i % 2 == 0 and "even" or "odd"} end
    assert.are.equal(dir .. "/a.png", fs.plot.scatter(dir .. "/a.png", {points = pts, legend = false}))
    assert.are.equal(dir .. "/b.png", fs.plot.scatter(dir .. "/b.png",
      {groups = {{title = "a", x = {1, 2}, y = {3, 4}}, {title = "b", x = {0}, y = {0}}}}))
    os.remove(dir .. "/a.png")
    os.remove(dir .. "/b.png")
  end)

  it("returns nil, 'gnuplot not found' when FS_GNUPLOT names a missing program", function()
    local out = child("FS_GNUPLOT=/nonexistent/gnuplot", ([[
      print(fs.plot.available())
      print(fs.plot.lines(%q, {series = {{y = {1, 2, 3}}}}))
      print(fs.plot.scatter(%q, {points = {{x = 1, y = 2, group = 1}}}))
      print(io.open(%q) == nil)
    ]]):format(dir .. "/skip.png", dir .. "/skip.png", dir .. "/skip.png"))
    assert.are.equal("false\nnil\tgnuplot not found\nnil\tgnuplot not found\ntrue\n", out)
  end)

  it("leaves the old file and no temporary file when gnuplot fails midway", function()
    -- a fake gnuplot: has pngcairo, writes half a PNG to the output it is given, then fails
    local fake = dir .. "/fake-gnuplot"
    write_all(fake, [[#!/bin/sh
if [ "$1" = "-e" ]; then echo "pngcairo  png terminal based on cairo"; exit 0; fi
out=$(sed -n "s/^set output '\(.*\)'$/\1/p")
printf '\211PNG\r\n' > "$out"
echo "gnuplot: disk full" >&2
exit 1
]])
    os.execute("chmod +x '" .. fake .. "'")
    local target = dir .. "/keep.png"
    write_all(target, "old")
    local out = child("FS_GNUPLOT='" .. fake .. "'", ([[
      print(fs.plot.lines(%q, {series = {{y = {1, 2, 3}}}}))
    ]]):format(target))
    assert.matches("^nil\tplot: gnuplot failed for .*keep.png %(exit 1%): gnuplot: disk full\n$", out)
    assert.are.equal("old", read_all(target))
    assert.are.same({"fake-gnuplot", "keep.png"}, listing())
    os.remove(fake)
    os.remove(target)
  end)

  it("returns gnuplot's complaint, short, when the output cannot be written", function()
    if not have then return end
    local ok, err = fs.plot.lines(dir .. "/missing/x.png", {series = {{y = {1, 2}}}})
    assert.is_nil(ok)
    assert.matches("plot: gnuplot failed for .*/missing/x.png %(exit 1%): .*cannot open file", err)
    assert.is_nil(err:find("PNG", 1, true))
    assert.is_true(#err < 600)
  end)

  it("raises on bad arguments, gnuplot or not", function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return tostring(e) end
    assert.matches("plot.lines: option 'series' must be a non-empty list",
      err(function() fs.plot.lines(dir .. "/x.png", {}) end), 1, true)
    assert.matches("plot.lines: unknown option 'titel' (did you mean 'title'?)",
      err(function() fs.plot.lines(dir .. "/x.png", {series = {{y = {1}}}, titel = "x"}) end), 1, true)
    assert.matches("plot.lines: series[1] has 2 x values and 3 y values",
      err(function() fs.plot.lines(dir .. "/x.png", {series = {{x = {1, 2}, y = {1, 2, 3}}}}) end), 1, true)
    assert.matches("plot.lines: series[1].y[2] must be a number, got string",
      err(function() fs.plot.lines(dir .. "/x.png", {series = {{y = {1, "a"}}}}) end), 1, true)
    assert.matches("plot.scatter: option 'xy' must be an (N, 2) tensor",
      err(function() fs.plot.scatter(dir .. "/x.png", {xy = fs.zeros(4, 3)}) end), 1, true)
    assert.matches("plot.scatter: option 'labels' must list one label per point (4), got 3",
      err(function() fs.plot.scatter(dir .. "/x.png", {xy = fs.zeros(4, 2), labels = {1, 2, 3}}) end), 1, true)
    assert.matches("plot.lines: option 'width' must be in [64, 10000], got 10",
      err(function() fs.plot.lines(dir .. "/x.png", {series = {{y = {1}}}, width = 10}) end), 1, true)
    assert.matches("plot.image_grid: images[2] must be (H, W) or (1, H, W), got (2, 3, 4)",
      err(function() fs.plot.image_grid(dir .. "/g.png", {images = {fs.zeros(2, 2), fs.zeros(2, 3, 4)}}) end), 1, true)
    assert.is_nil(io.open(dir .. "/x.png"))
  end)

  describe("image_grid", function()
    it("normalises each image, upscales, pads with white and puts one label per row", function()
      local path = dir .. "/grid.png"
      local a = fs.tensor({{0, 1}, {2, 3}})          -- 0..3 -> 0, 85, 170, 255
      local b = fs.tensor({{{10, 10}, {10, 20}}})    -- (1, H, W)
      local c = fs.full({2, 2}, 7)                    -- constant -> mid-gray
      local got, layout = fs.plot.image_grid(path, {images = {a, b, c}, labels = {"x", "y", "x"},
        scale = 2, pad = 1})
      assert.are.equal(path, got)
      assert.are.same({"x", "y"}, layout.rows)
      assert.are.equal(2, layout.cols)
      assert.are.same({4, 4}, layout.cell)
      local img = fs.image.read(path) -- rows "x": a, c; row "y": b
      assert.are.same({2 * 4 + 3, 2 * 4 + 3}, img:shape())
      local t = img:totable()
      assert.are.same({255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255}, t[1])  -- pad row
      assert.are.same({255, 0, 0, 85, 85, 255, 128, 128, 128, 128, 255}, t[2])
      assert.are.same({255, 170, 170, 255, 255, 255, 128, 128, 128, 128, 255}, t[4])
      assert.are.same({255, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255}, t[7])   -- b, first row
      assert.are.same({255, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255}, t[9])
      os.remove(path)
    end)

    it("fills rows of cols images without labels", function()
      local path = dir .. "/grid2.png"
      local ims = {}
      for i = 1, 5 do ims[i] = fs.arange(0, 6):view(2, 3) * i end
      local _, layout = fs.plot.image_grid(path, {images = ims, cols = 2, pad = 0})
      assert.is_nil(layout.rows)
      assert.are.same({6, 6}, fs.image.read(path):shape())
      os.remove(path)
    end)
  end)
end)
