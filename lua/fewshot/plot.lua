--- fewshot.plot: charts as PNG files, drawn by gnuplot's pngcairo terminal (axes, labels,
-- legends), and image panels written directly as PNG.
-- gnuplot runs as a child process (io.popen): the data goes to a temporary file, the script to
-- its standard input, and the image to a temporary file renamed onto `path` when gnuplot
-- succeeded, so a reader never sees a half-written chart.
-- When gnuplot (with pngcairo) is missing, the chart functions return `nil, "gnuplot not
-- found"` instead of raising, so a report can say which charts it skipped. Bad arguments raise.
-- The environment variable FS_GNUPLOT names the gnuplot program (default "gnuplot"); the specs
-- set it to a missing path to take the "skipped" road.
-- @module fewshot.plot
local args = require "fewshot.args"

local M = {}

local NOT_FOUND = "gnuplot not found"

local function program()
  local p = os.getenv("FS_GNUPLOT")
  if p == nil or p == "" then p = "gnuplot" end
  return p
end

-- A word for /bin/sh: single-quoted.
local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- A gnuplot string literal: single-quoted (no escapes inside but '' for '), one line.
local function gp_string(s)
  s = tostring(s):gsub("[\r\n]+", " ")
  return "'" .. s:gsub("'", "''") .. "'"
end

local available_cache = {}

--- True when the gnuplot program (FS_GNUPLOT or "gnuplot") runs and has the pngcairo terminal.
-- The answer is remembered per program name.
-- @treturn boolean
function M.available()
  local prog = program()
  if available_cache[prog] == nil then
    local p = io.popen(shell_quote(prog) .. " -e 'set terminal' 2>&1 </dev/null")
    local out = p and p:read("a") or ""
    if p then p:close() end
    available_cache[prog] = out:find("pngcairo", 1, true) ~= nil
  end
  return available_cache[prog]
end

-- A list of numbers from a Lua list or a 1-D tensor (op and what name the errors).
local function numbers(op, what, v)
  if type(v) == "userdata" and v.totable then
    local shape = v:shape()
    if #shape ~= 1 then
      error(("%s: %s must be a list or a 1-D tensor, got a tensor of shape (%s)"):format(
        op, what, table.concat(shape, ", ")), 4)
    end
    v = v:totable()
  end
  if type(v) ~= "table" then
    error(("%s: %s must be a list of numbers or a 1-D tensor, got %s"):format(op, what, type(v)), 4)
  end
  for i, x in ipairs(v) do
    if type(x) ~= "number" then
      error(("%s: %s[%d] must be a number, got %s"):format(op, what, i, type(x)), 4)
    end
  end
  return v
end

local function fmt_number(x)
  if x ~= x or x == math.huge or x == -math.huge then return "NaN" end
  return ("%.9g"):format(x)
end

-- The common options: size and labels.
local COMMON = {"title", "xlabel", "ylabel", "width", "height"}

local function keys(extra)
  local k = {}
  for _, v in ipairs(COMMON) do k[#k + 1] = v end
  for _, v in ipairs(extra) do k[#k + 1] = v end
  return k
end

local function check_common(op, path, opts)
  if type(path) ~= "string" or path == "" then
    error(("%s: path must be a non-empty string, got %s"):format(op, type(path)), 3)
  end
  local o = {}
  o.width = opts.width ~= nil and args.integer(op, "width", opts.width, 64, 10000) or 800
  o.height = opts.height ~= nil and args.integer(op, "height", opts.height, 64, 10000) or 500
  for _, k in ipairs{"title", "xlabel", "ylabel"} do
    local v = opts[k]
    if v ~= nil and type(v) ~= "string" and type(v) ~= "number" then
      error(("%s: option '%s' must be a string, got %s"):format(op, k, type(v)), 3)
    end
    o[k] = v
  end
  return o
end

-- The script's head: terminal, output, labels, grid.
local function head(o, out_lit)
  local s = {
    ("set terminal pngcairo noenhanced size %d,%d font 'Sans,10'"):format(o.width, o.height),
    "set output " .. out_lit,
    "set datafile missing 'NaN'",
    "set grid",
    "set border 3",
    "set tics nomirror",
  }
  if o.title then s[#s + 1] = "set title " .. gp_string(o.title) end
  if o.xlabel then s[#s + 1] = "set xlabel " .. gp_string(o.xlabel) end
  if o.ylabel then s[#s + 1] = "set ylabel " .. gp_string(o.ylabel) end
  return s
end

local tmp_count = 0
-- A temporary name in path's directory (so the rename stays on one file system); it leaves
-- math.random alone, whose sequence belongs to the user.
local function tmp_beside(path)
  tmp_count = tmp_count + 1
  local id = tostring({}):gsub("%W", "")
  return ("%s.tmp-%d-%s"):format(path, tmp_count, id)
end

-- Runs gnuplot on the script that build(data_lit, out_lit) returns (lines; the arguments are
-- gnuplot string literals of the data file and the temporary output) with the data text in a
-- temporary file. Writes path atomically. Returns path, or nil and a message.
local function run(path, build, data)
  if not M.available() then return nil, NOT_FOUND end
  local datafile = os.tmpname()
  local errfile = os.tmpname()
  local out = tmp_beside(path)
  local function cleanup()
    os.remove(datafile)
    os.remove(errfile)
    os.remove(out)
  end
  local f, err = io.open(datafile, "w")
  if not f then cleanup(); return nil, "plot: cannot write a temporary data file: " .. tostring(err) end
  f:write(data)
  f:close()
  local text = table.concat(build(gp_string(datafile), gp_string(out)), "\n")
  -- stdout to /dev/null: with its output file unusable gnuplot writes the image there
  local p = io.popen(shell_quote(program()) .. " >/dev/null 2>" .. shell_quote(errfile), "w")
  if not p then cleanup(); return nil, NOT_FOUND end
  p:write(text, "\nunset output\n")
  local ok, _, code = p:close()
  local ef = io.open(errfile, "r")
  local msg = ef and ef:read("a") or ""
  if ef then ef:close() end
  local img = io.open(out, "rb")
  local sig = img and img:read(8)
  if img then img:close() end
  if not ok or sig ~= "\137PNG\r\n\26\n" then
    cleanup()
    if code == 127 then return nil, NOT_FOUND end
    msg = msg:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
    if #msg > 400 then msg = msg:sub(1, 400) .. "..." end
    return nil, ("plot: gnuplot failed for %s (exit %s): %s"):format(path, tostring(code), msg)
  end
  local renamed, rerr = os.rename(out, path)
  if not renamed then
    cleanup()
    return nil, ("plot: cannot write %s: %s"):format(path, tostring(rerr))
  end
  os.remove(datafile)
  os.remove(errfile)
  return path
end

--- Line chart of one or more series.
-- @tparam string path the PNG to write
-- @tparam table opts `series` = {{y=, x=, title=}, ...} (y a list or 1-D tensor; x defaults to
--   1..#y; title defaults to "series i"), `title`, `xlabel`, `ylabel`, `width=800`,
--   `height=500`, `logy=false`, `legend=true`
-- @treturn string|nil path, or nil and "gnuplot not found" (or gnuplot's message)
-- @usage fs.plot.lines("out/loss.png", {series = {{y = losses, title = "train"}},
--   xlabel = "episode", ylabel = "loss", logy = true})
function M.lines(path, opts)
  local op = "plot.lines"
  opts = args.options(op, opts, keys{"series", "logy", "legend"})
  local o = check_common(op, path, opts)
  local series = opts.series
  if type(series) ~= "table" or #series == 0 then
    error(op .. ": option 'series' must be a non-empty list of {y=, x=, title=}", 2)
  end
  local blocks, plots = {}, {}
  for i, s in ipairs(series) do
    if type(s) ~= "table" then
      error(("%s: series[%d] must be a table {y=, x=, title=}, got %s"):format(op, i, type(s)), 2)
    end
    args.options(op .. " series[" .. i .. "]", s, {"x", "y", "title"})
    local y = numbers(op, ("series[%d].y"):format(i), s.y)
    local x = s.x ~= nil and numbers(op, ("series[%d].x"):format(i), s.x) or nil
    if x and #x ~= #y then
      error(("%s: series[%d] has %d x values and %d y values"):format(op, i, #x, #y), 2)
    end
    local rows = {}
    for k = 1, #y do
      rows[k] = fmt_number(x and x[k] or k) .. " " .. fmt_number(y[k])
    end
    if #rows == 0 then rows[1] = "NaN NaN" end
    blocks[i] = table.concat(rows, "\n")
    local title = s.title ~= nil and tostring(s.title) or ("series " .. i)
    plots[i] = ("index %d using 1:2 with lines lw 2 title "):format(i - 1) .. gp_string(title)
  end
  return run(path, function(data_lit, out_lit)
    local script = head(o, out_lit)
    if opts.logy then script[#script + 1] = "set logscale y" end
    if opts.legend == false then script[#script + 1] = "unset key"
    else script[#script + 1] = "set key outside right top box Left reverse" end
    local items = {}
    for i, pl in ipairs(plots) do items[i] = data_lit .. " " .. pl end
    script[#script + 1] = "plot " .. table.concat(items, ", \\\n  ")
    return script
  end, table.concat(blocks, "\n\n\n") .. "\n")
end

-- Points as groups in order: {{name=, x={}, y={}}, ...}.
local function scatter_groups(op, opts)
  local groups = {}
  if opts.points ~= nil then
    if type(opts.points) ~= "table" then
      error(op .. ": option 'points' must be a list of {x=, y=, group=}", 3)
    end
    local index = {}
    for i, p in ipairs(opts.points) do
      if type(p) ~= "table" or type(p.x) ~= "number" or type(p.y) ~= "number" then
        error(("%s: points[%d] must be {x = number, y = number, group = name}"):format(op, i), 3)
      end
      local name = p.group ~= nil and tostring(p.group) or ""
      local g = index[name]
      if not g then
        g = {name = name, x = {}, y = {}, order = p.group}
        index[name] = g
        groups[#groups + 1] = g
      end
      g.x[#g.x + 1], g.y[#g.y + 1] = p.x, p.y
    end
    -- numeric groups in numeric order, named ones as they first appear
    local all_numbers = true
    for _, g in ipairs(groups) do
      if type(g.order) ~= "number" then all_numbers = false end
    end
    if all_numbers then table.sort(groups, function(a, b) return a.order < b.order end) end
  elseif opts.groups ~= nil then
    if type(opts.groups) ~= "table" then
      error(op .. ": option 'groups' must be a list of {title=, x=, y=}", 3)
    end
    for i, g in ipairs(opts.groups) do
      if type(g) ~= "table" then
        error(("%s: groups[%d] must be {title=, x=, y=}, got %s"):format(op, i, type(g)), 3)
      end
      local x = numbers(op, ("groups[%d].x"):format(i), g.x)
      local y = numbers(op, ("groups[%d].y"):format(i), g.y)
      if #x ~= #y then
        error(("%s: groups[%d] has %d x values and %d y values"):format(op, i, #x, #y), 3)
      end
      groups[i] = {name = g.title ~= nil and tostring(g.title) or ("group " .. i), x = x, y = y}
    end
  elseif opts.xy ~= nil then
    -- an (N, 2) tensor (fs.tsne's output) and N labels
    local xy = opts.xy
    if type(xy) ~= "userdata" or not xy.shape or #xy:shape() ~= 2 or xy:shape()[2] ~= 2 then
      error(op .. ": option 'xy' must be an (N, 2) tensor", 3)
    end
    local n = xy:shape()[1]
    local labels = opts.labels
    if labels ~= nil and (type(labels) ~= "table" or #labels ~= n) then
      error(("%s: option 'labels' must list one label per point (%d), got %s"):format(
        op, n, type(labels) == "table" and tostring(#labels) or type(labels)), 3)
    end
    local t, pts = xy:totable(), {}
    for i = 1, n do pts[i] = {x = t[i][1], y = t[i][2], group = labels and labels[i]} end
    return scatter_groups(op, {points = pts})
  else
    error(op .. ": give the points as 'points' = {{x=, y=, group=}, ...}, 'groups' or 'xy' (+ 'labels')", 3)
  end
  if #groups == 0 then error(op .. ": no points to plot", 3) end
  return groups
end

--- Scatter plot, coloured by group with a legend (for a t-SNE of embeddings).
-- @tparam string path the PNG to write
-- @tparam table opts the points as one of: `points` = {{x=, y=, group=}, ...} (groups in order
--   of first appearance; numeric groups sorted), `groups` = {{title=, x=, y=}, ...}, or
--   `xy` = an (N, 2) tensor with `labels` = {N labels}; `names` maps a group to its legend
--   text (`names = {[1] = "liver"}`); `title`, `xlabel`, `ylabel`, `width=800`, `height=500`,
--   `legend=true`, `point_size=0.8`
-- @treturn string|nil path, or nil and "gnuplot not found" (or gnuplot's message)
-- @usage local y = fs.tsne(emb, {seed = 1})
--   fs.plot.scatter("out/tsne.png", {xy = y, labels = classes, title = "t-SNE of embeddings"})
function M.scatter(path, opts)
  local op = "plot.scatter"
  opts = args.options(op, opts, keys{"points", "groups", "xy", "labels", "names", "legend", "point_size"})
  local o = check_common(op, path, opts)
  local ps = opts.point_size ~= nil and args.number(op, "point_size", opts.point_size, 0, 20, true) or 0.8
  if opts.names ~= nil and type(opts.names) ~= "table" then
    error(op .. ": option 'names' must be a table from group to legend text", 2)
  end
  local groups = scatter_groups(op, opts)
  local blocks, plots = {}, {}
  for i, g in ipairs(groups) do
    local rows = {}
    for k = 1, #g.x do rows[k] = fmt_number(g.x[k]) .. " " .. fmt_number(g.y[k]) end
    if #rows == 0 then rows[1] = "NaN NaN" end
    blocks[i] = table.concat(rows, "\n")
    local name = g.name
    if opts.names then
      name = opts.names[g.order] or opts.names[name] or name
    end
    if name == "" then name = "points" end
    plots[i] = ("index %d using 1:2 with points pt 7 ps %g lc %d title "):format(i - 1, ps, i)
      .. gp_string(name)
  end
  return run(path, function(data_lit, out_lit)
    local script = head(o, out_lit)
    if opts.legend == false then script[#script + 1] = "unset key"
    else script[#script + 1] = "set key outside right top box Left reverse" end
    local items = {}
    for i, pl in ipairs(plots) do items[i] = data_lit .. " " .. pl end
    script[#script + 1] = "plot " .. table.concat(items, ", \\\n  ")
    return script
  end, table.concat(blocks, "\n\n\n") .. "\n")
end

--- A grid of gray images written directly as an 8-bit PNG (no gnuplot needed): each image is
-- normalised to 0..1 on its own (min -> black, max -> white; a constant image is mid-gray),
-- upscaled by `scale` (nearest), and placed in cells separated by `pad` white pixels.
-- With `labels` (one per image) each distinct label gets its own row, in order of first
-- appearance, so "sample tissues per class" come out one class per row.
-- @tparam string path the PNG to write (atomically, by fs.image.write)
-- @tparam table opts `images` = {tensor (H, W) or (1, H, W), ...}, `labels`, `cols` (default
--   ceil(sqrt(n)), or the longest row with labels), `scale=1`, `pad=2`
-- @treturn string path
-- @treturn table layout: `rows` (the label of each row, with labels), `cols`, `cell` {h, w}
function M.image_grid(path, opts)
  local op = "plot.image_grid"
  local fs = require "fewshot"
  opts = args.options(op, opts, {"images", "labels", "cols", "scale", "pad"})
  if type(path) ~= "string" or path == "" then
    error(("%s: path must be a non-empty string, got %s"):format(op, type(path)), 2)
  end
  local images = opts.images
  if type(images) ~= "table" or #images == 0 then
    error(op .. ": option 'images' must be a non-empty list of (H, W) tensors", 2)
  end
  local scale = opts.scale ~= nil and args.integer(op, "scale", opts.scale, 1, 64) or 1
  local pad = opts.pad ~= nil and args.integer(op, "pad", opts.pad, 0, 1000) or 2
  local labels = opts.labels
  if labels ~= nil and (type(labels) ~= "table" or #labels ~= #images) then
    error(("%s: option 'labels' must list one label per image (%d)"):format(op, #images), 2)
  end
  local hmax, wmax, planes = 0, 0, {}
  for i, im in ipairs(images) do
    if type(im) ~= "userdata" or not im.shape then
      error(("%s: images[%d] must be a tensor, got %s"):format(op, i, type(im)), 2)
    end
    local s = im:shape()
    if #s == 3 and s[1] == 1 then im = im:select(1, 1); s = im:shape() end
    if #s ~= 2 or s[1] < 1 or s[2] < 1 then
      error(("%s: images[%d] must be (H, W) or (1, H, W), got (%s)"):format(op, i, table.concat(s, ", ")), 2)
    end
    local lo, hi = im:min():item(), im:max():item()
    if lo ~= lo or hi ~= hi or lo == -math.huge or hi == math.huge then
      error(("%s: images[%d] has a non-finite value"):format(op, i), 2)
    end
    local n
    if hi > lo then n = (im - lo) / (hi - lo) else n = fs.full(s, 0.5) end
    if scale > 1 then
      n = n:contiguous():view(s[1], 1, s[2], 1):expand(s[1], scale, s[2], scale):reshape(s[1] * scale, s[2] * scale)
    end
    planes[i] = n
    hmax, wmax = math.max(hmax, s[1] * scale), math.max(wmax, s[2] * scale)
  end
  -- cells: (row, col) for each image
  local place, rows, ncols = {}, nil, 0
  if labels then
    rows = {}
    local row_of, count = {}, {}
    for i = 1, #images do
      local key = tostring(labels[i])
      if not row_of[key] then
        rows[#rows + 1] = labels[i]
        row_of[key] = #rows
        count[#rows] = 0
      end
      local r = row_of[key]
      count[r] = count[r] + 1
      place[i] = {r, count[r]}
      ncols = math.max(ncols, count[r])
    end
    if opts.cols ~= nil then
      local c = args.integer(op, "cols", opts.cols, 1, 10000)
      if c < ncols then
        error(("%s: option 'cols' (%d) is fewer than the images of one label (%d)"):format(op, c, ncols), 2)
      end
      ncols = c
    end
  else
    ncols = opts.cols ~= nil and args.integer(op, "cols", opts.cols, 1, 10000)
      or math.ceil(math.sqrt(#images))
    for i = 1, #images do place[i] = {(i - 1) // ncols + 1, (i - 1) % ncols + 1} end
  end
  local nrows = 0
  for _, p in ipairs(place) do nrows = math.max(nrows, p[1]) end
  local H = nrows * hmax + (nrows + 1) * pad
  local W = ncols * wmax + (ncols + 1) * pad
  local canvas = fs.ones(H, W)
  for i, n in ipairs(planes) do
    local r, c = place[i][1], place[i][2]
    local s = n:shape()
    local top = pad + (r - 1) * (hmax + pad) + 1
    local left = pad + (c - 1) * (wmax + pad) + 1
    canvas:narrow(1, top, s[1]):narrow(2, left, s[2]):copy(n)
  end
  fs.image.write(path, canvas * 255, {bits = 8, normalize = false})
  return path, {rows = rows, cols = ncols, cell = {hmax, wmax}}
end

return M
