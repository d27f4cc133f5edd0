--- fewshot.data: datasets from a user's own files, in the same item form as
-- fewshot.spect.dataset, so the same scripts run on a clinician's slices.
--
-- Folder layout (names match by file stem):
--
--     mydata/
--       images/patient01.png ...            16-bit (raw counts) or 8-bit gray PNG, or a
--                                           single-frame DICOM image (.dcm/.dicom/.ima, or no
--                                           extension and a DICM preamble: a clinic's export)
--       masks/ventricle/patient01.png ...   0 = outside, anything > 0 = inside
--       masks/myocardium/patient01.png ...
--       masks/liver/patient01.png ...
--       landmarks.csv                       optional: image,name,x,y  (pixels, 1-based)
--
-- @module fewshot.data.folder
local core = require "fewshot.core"
local args = require "fewshot.args"
local dicom = require "fewshot.dicom"

local M = {}

local DEFAULT_CLASSES = {"ventricle", "myocardium", "liver"}

local function stem(name)
  return name:match("^(.*)%.[pP][nN][gG]$")
end

-- The stem of a DICOM image name (its extension dropped), or nil.
local function dicom_stem(dir, name)
  if name:sub(1, 1) == "." or name:upper() == "DICOMDIR" or not dicom.is_dicom(dir .. "/" .. name) then
    return nil
  end
  return name:match("^(.*)%.[^.]+$") or name
end

local function fail(fmt, ...)
  error("data.folder: " .. fmt:format(...), 3)
end

local function read_png(path, what)
  local ok, t = pcall(core.image.read, path)
  if not ok then fail("%s: cannot read %s (%s)", path, what, tostring(t)) end
  if t:dim() ~= 2 then fail("%s: %s must be a 2D image", path, what) end
  return t
end

local function shape_str(t) return table.concat(t:shape(), "x") end

-- A DICOM image as a 2D slice (rescale applied) and its info.
local function read_dicom(path)
  local ok, t, info = pcall(core.io.load_dicom, path)
  if not ok then fail("%s: cannot read image (%s)", path, tostring(t)) end
  local shape = t:shape()
  if #shape ~= 3 then fail("%s: image must be gray (it has %d samples per pixel)", path, info.samples_per_pixel) end
  if shape[1] ~= 1 then
    fail("%s: image has %d frames; fs.data.folder takes one slice a file (fs.io.load_dicom reads volumes)", path, shape[1])
  end
  return t:view(shape[2], shape[3]), info
end

--- Loads a folder of images with tissue masks and optional landmarks.
-- @tparam string path the folder
-- @tparam table opts `classes` (default {"ventricle", "myocardium", "liver"}; labels are
--   their positions 1, 2, 3, ...), `pixel_mm` (default 6.4 for PNG; a DICOM image's own
--   column spacing unless given), `allow_missing=false` (true: a missing mask is all zero
--   instead of an error)
-- @treturn table a list of items `{name, path, image, labels, masks, landmarks, pixel_mm}`;
--   a DICOM image's item also has `patient_id` and `dicom` (fs.io.load_dicom's info)
-- @usage local data = fs.data.folder("mydata", {pixel_mm = 6.8})
function M.folder(path, opts)
  opts = args.options("data.folder", opts, {"classes", "pixel_mm", "allow_missing"})
  if type(path) ~= "string" then error(("data.folder: path must be a string, got %s"):format(type(path)), 2) end
  local classes = opts.classes or DEFAULT_CLASSES
  local default_mm = args.number("data.folder", "pixel_mm", opts.pixel_mm or 6.4, 0, nil, true)
  local known = {}
  for i, c in ipairs(classes) do known[c] = i end
  local ok, names = pcall(core.io.listdir, path .. "/images")
  if not ok then fail("%s/images: cannot list the images folder (%s)", path, tostring(names)) end
  local images, stems = {}, {}
  for _, n in ipairs(names) do
    local s = stem(n) or dicom_stem(path .. "/images", n)
    if s then
      if stems[s] then fail("%s/images: %s and %s have the same name stem '%s'", path, stems[s], n, s) end
      images[#images + 1] = n
      stems[s] = n
    end
  end
  if #images == 0 then fail("%s/images: no .png or DICOM images", path) end
  -- every masks/<class> folder must be a known class
  local ok2, mdirs = pcall(core.io.listdir, path .. "/masks")
  if not ok2 then fail("%s/masks: cannot list the masks folder (%s)", path, tostring(mdirs)) end
  for _, d in ipairs(mdirs) do
    if not known[d] then
      fail("%s/masks/%s: unknown class '%s' (classes: %s; pass classes= to use others)", path, d, d,
           table.concat(classes, ", "))
    end
  end
  local items, by_stem = {}, {}
  for _, n in ipairs(images) do
    local ipath = path .. "/images/" .. n
    local s = stem(n)
    local image, info
    local pixel_mm = default_mm
    if s then
      image = read_png(ipath, "image")
    else
      s = dicom_stem(path .. "/images", n)
      image, info = read_dicom(ipath)
      if not opts.pixel_mm and info.pixel_spacing_mm then pixel_mm = info.pixel_spacing_mm[2] end
    end
    local h, w = image:shape()[1], image:shape()[2]
    local labels = core.zeros(h, w)
    local masks = {}
    for i = #classes, 1, -1 do -- the first class listed wins where masks overlap
      local c = classes[i]
      local mpath = path .. "/masks/" .. c .. "/" .. s .. ".png"
      local f = io.open(mpath, "rb")
      local m
      if f then
        f:close()
        m = read_png(mpath, "mask")
        if m:shape()[1] ~= h or m:shape()[2] ~= w then
          fail("%s: mask is %s but its image %s is %s", mpath, shape_str(m), ipath, shape_str(image))
        end
        m = m:gt(0)
      elseif opts.allow_missing then
        m = core.zeros(h, w)
      else
        fail("%s: missing mask of class '%s' for image %s", mpath, c, ipath)
      end
      masks[c] = m
      labels = core.where(m, core.full({h, w}, i), labels)
    end
    local item = {name = s, path = ipath, image = image, labels = labels, masks = masks,
                  landmarks = {}, pixel_mm = pixel_mm}
    if info then
      item.dicom = info
      item.patient_id = info.patient_id
    end
    items[#items + 1] = item
    by_stem[s] = item
  end
  -- landmarks.csv: image,name,x,y
  local lpath = path .. "/landmarks.csv"
  local f = io.open(lpath, "r")
  if f then
    local lineno = 0
    for line in f:lines() do
      lineno = lineno + 1
      line = line:gsub("\r$", "")
      if line:match("%S") and not (lineno == 1 and line:lower():match("^%s*image%s*,")) then
        local img, name, x, y = line:match("^%s*([^,]-)%s*,%s*([^,]-)%s*,%s*([^,]-)%s*,%s*([^,]-)%s*$")
        x, y = tonumber(x), tonumber(y)
        if not img or not x or not y then
          f:close()
          fail("%s:%d: expected 'image,name,x,y' with numeric x and y, got '%s'", lpath, lineno, line)
        end
        local item = by_stem[stem(img) or img]
        if not item then
          f:close()
          fail("%s:%d: unknown image '%s' (not in %s/images)", lpath, lineno, img, path)
        end
        -- pixel centres are 1..w; a landmark may lie up to half a pixel beyond them
        local h, w = item.image:shape()[1], item.image:shape()[2]
        if not (x >= 0.5 and x <= w + 0.5 and y >= 0.5 and y <= h + 0.5) then
          f:close()
          fail("%s:%d: landmark '%s' at (%s, %s) lies outside image '%s' (%dx%d: x in [0.5, %g], "
               .. "y in [0.5, %g])", lpath, lineno, name, tostring(x), tostring(y), img, h, w,
               w + 0.5, h + 0.5)
        end
        item.landmarks[name] = {x = x, y = y, x_mm = (x - 1) * item.pixel_mm, y_mm = (y - 1) * item.pixel_mm}
      end
    end
    f:close()
  end
  return items
end

--- Writes items (from fewshot.spect.dataset or M.folder) in the folder layout above: images
-- as 16-bit PNG holding round(value * scale) (scale=1: counts), masks as 8-bit 0/255 PNG.
-- @tparam string path the folder (created with its subfolders)
-- @tparam table items the list
-- @tparam table opts `scale=1`, `classes` (default ventricle, myocardium, liver)
function M.save_folder(path, items, opts)
  opts = args.options("data.save_folder", opts, {"scale", "classes"})
  local classes = opts.classes or DEFAULT_CLASSES
  local scale = opts.scale or 1
  local function mkdir(p)
    local ok = os.execute(("mkdir -p '%s'"):format(p:gsub("'", "'\\''")))
    if not ok then error(("data.save_folder: cannot create %s"):format(p), 3) end
  end
  mkdir(path .. "/images")
  for _, c in ipairs(classes) do mkdir(path .. "/masks/" .. c) end
  local csv = assert(io.open(path .. "/landmarks.csv", "w"))
  csv:write("image,name,x,y\n")
  for i, item in ipairs(items) do
    local name = item.name or ("item%03d"):format(i)
    core.image.write(path .. "/images/" .. name .. ".png", item.image:mul(scale):clamp(0, 65535),
                     {bits = 16, normalize = false})
    for _, c in ipairs(classes) do
      core.image.write(path .. "/masks/" .. c .. "/" .. name .. ".png", item.masks[c]:mul(255),
                       {bits = 8, normalize = false})
    end
    local lnames = {}
    for k in pairs(item.landmarks or {}) do lnames[#lnames + 1] = k end
    table.sort(lnames)
    for _, k in ipairs(lnames) do
      local p = item.landmarks[k]
      csv:write(("%s,%s,%.4f,%.4f\n"):format(name, k, p.x, p.y))
    end
  end
  csv:close()
end

return M
