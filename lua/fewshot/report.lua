--- fewshot.report: an experiment report as Markdown (report.md) and as one self-contained HTML
-- page (report.html, figures inline as base64 data URIs, a small inline style sheet), built
-- from a list of sections.
--
--     local r = fs.report.new{title = "ProtoNet on SPECT"}
--     r:heading("Accuracy")
--     r:paragraph("3-way 3-shot, 5 seeds.")
--     r:table{header = {"method", "accuracy"}, rows = {{"protonet", 0.91}}, align = {"l", "r"}}
--     r:figure(fs.plot.lines("out/loss.png", {...}) or "out/loss.png", "Training loss")
--     local md, html = r:write("out")
--
-- Text is taken literally: the Markdown keeps it as written (so Markdown in a paragraph works
-- there), the HTML escapes it. Table cells may be strings or numbers (integers as they are,
-- other numbers with 4 significant digits). A figure is read when the report is written; a
-- missing file becomes a note "figure skipped" in both files instead of an error, so a report
-- made without gnuplot still says what it lacks. Both files are written to temporary names
-- and renamed into place, the HTML only after the Markdown, and the old Markdown is put back
-- when the HTML cannot be: an error leaves neither a partial file nor a half-updated pair.
-- @module fewshot.report
local args = require "fewshot.args"

local M = {}

local Report = {}
Report.__index = Report

--- Base64 (RFC 4648, with padding) of a byte string.
-- @tparam string s
-- @treturn string
function M.base64(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local enc = {}
  for i = 0, 63 do enc[i] = alphabet:sub(i + 1, i + 1) end
  local out, n = {}, #s
  local full = n - n % 3
  for i = 1, full, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = (a << 16) | (b << 8) | c
    out[#out + 1] = enc[v >> 18] .. enc[(v >> 12) & 63] .. enc[(v >> 6) & 63] .. enc[v & 63]
  end
  local rest = n - full
  if rest == 1 then
    local v = s:byte(n) << 16
    out[#out + 1] = enc[v >> 18] .. enc[(v >> 12) & 63] .. "=="
  elseif rest == 2 then
    local a, b = s:byte(n - 1, n)
    local v = (a << 16) | (b << 8)
    out[#out + 1] = enc[v >> 18] .. enc[(v >> 12) & 63] .. enc[(v >> 6) & 63] .. "="
  end
  return table.concat(out)
end

local function text_arg(op, what, v)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then
    error(("%s: %s must be a string, got %s"):format(op, what, type(v)), 3)
  end
  return v
end

--- A new, empty report.
-- @tparam table opts `title` (default "Report")
-- @treturn Report
function M.new(opts)
  opts = args.options("report.new", opts, {"title"})
  local title = opts.title ~= nil and text_arg("report.new", "option 'title'", opts.title) or "Report"
  return setmetatable({title = title, sections = {}}, Report)
end

--- A heading; level 2 by default (the title is level 1).
-- @tparam string text
-- @tparam[opt=2] int level 1..6
function Report:heading(text, level)
  text = text_arg("report:heading", "text", text)
  level = level ~= nil and args.integer("report:heading", "level", level, 1, 6) or 2
  self.sections[#self.sections + 1] = {kind = "heading", text = text, level = level}
  return self
end

--- A paragraph (blank lines in text separate paragraphs).
-- @tparam string text
function Report:paragraph(text)
  text = text_arg("report:paragraph", "text", text)
  self.sections[#self.sections + 1] = {kind = "paragraph", text = text}
  return self
end

local ALIGN = {l = "left", left = "left", c = "center", center = "center", r = "right", right = "right"}

local function cell_text(v)
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return ("%.4g"):format(v)
  end
  return v
end

--- A table.
-- @tparam table t `header` = {column names}, `rows` = {{cells}, ...} (each as long as the
--   header; strings or numbers), `align` = {"l"|"c"|"r" per column} (default left),
--   `caption` (optional text under the table)
function Report:table(t)
  local op = "report:table"
  t = args.options(op, t, {"header", "rows", "align", "caption"})
  local header, rows = t.header, t.rows
  if type(header) ~= "table" or #header == 0 then
    error(op .. ": 'header' must be a non-empty list of column names", 2)
  end
  local ncol = #header
  local h = {}
  for j = 1, ncol do
    local v = header[j]
    if type(v) ~= "string" and type(v) ~= "number" then
      error(("%s: header[%d] must be a string or a number, got %s"):format(op, j, type(v)), 2)
    end
    h[j] = cell_text(v)
  end
  if type(rows) ~= "table" then
    error(op .. ": 'rows' must be a list of rows (lists of cells)", 2)
  end
  local r = {}
  for i, row in ipairs(rows) do
    if type(row) ~= "table" then
      error(("%s: rows[%d] must be a list of cells, got %s"):format(op, i, type(row)), 2)
    end
    if #row ~= ncol then
      error(("%s: rows[%d] has %d cells, the header %d"):format(op, i, #row, ncol), 2)
    end
    r[i] = {}
    for j = 1, ncol do
      local v = row[j]
      if type(v) ~= "string" and type(v) ~= "number" then
        error(("%s: rows[%d][%d] must be a string or a number, got %s"):format(op, i, j, type(v)), 2)
      end
      r[i][j] = cell_text(v)
    end
  end
  local align = {}
  if t.align ~= nil then
    if type(t.align) ~= "table" or #t.align > ncol then
      error(("%s: 'align' must be a list of at most %d of l, c, r"):format(op, ncol), 2)
    end
    for j, a in ipairs(t.align) do
      align[j] = ALIGN[a]
      if not align[j] then
        error(("%s: align[%d] must be one of l, c, r, got %s"):format(op, j, tostring(a)), 2)
      end
    end
  end
  for j = 1, ncol do align[j] = align[j] or "left" end
  local caption = t.caption ~= nil and text_arg(op, "'caption'", t.caption) or nil
  self.sections[#self.sections + 1] = {kind = "table", header = h, rows = r, align = align,
    caption = caption}
  return self
end

--- A figure: an image file (PNG, JPEG, SVG, GIF), read when the report is written. A missing
-- file (or a path of nil/false, as a failed fs.plot call gives) becomes a note saying the
-- figure was skipped, with `note` as the reason when given.
-- @tparam string|nil path
-- @tparam string caption
-- @tparam[opt] string note why it may be missing (e.g. the message fs.plot returned)
function Report:figure(path, caption, note)
  if path ~= nil and path ~= false and type(path) ~= "string" then
    error(("report:figure: path must be a string, got %s"):format(type(path)), 2)
  end
  caption = caption ~= nil and text_arg("report:figure", "caption", caption) or ""
  note = note ~= nil and text_arg("report:figure", "note", note) or nil
  self.sections[#self.sections + 1] = {kind = "figure", path = path or nil, caption = caption,
    note = note}
  return self
end

-- ---- rendering ----

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function mime(path, bytes)
  if bytes:sub(1, 8) == "\137PNG\r\n\26\n" then return "image/png" end
  if bytes:sub(1, 3) == "\255\216\255" then return "image/jpeg" end
  if bytes:sub(1, 4) == "GIF8" then return "image/gif" end
  if path:lower():match("%.svg$") then return "image/svg+xml" end
  return "application/octet-stream"
end

-- How the Markdown in dir refers to path: relative when path lies under dir, else absolute.
local function md_link(dir, path)
  local d = dir:gsub("/+$", "")
  if path:sub(1, #d + 1) == d .. "/" then return path:sub(#d + 2) end
  if path:sub(1, 1) == "/" then return path end
  local pwd = os.getenv("PWD")
  return pwd and (pwd .. "/" .. path) or path
end

local function md_cell(s)
  return (s:gsub("\\", "\\\\"):gsub("|", "\\|"):gsub("\r?\n", " "))
end

local function md_inline(s)
  return (s:gsub("\r?\n", " "))
end

local function html_escape(s)
  return (s:gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;"}))
end

local function skipped_text(sec)
  local why = sec.note or (sec.path and ("file " .. sec.path .. " not found") or "no file")
  return ("Figure skipped: %s (%s)"):format(sec.caption ~= "" and sec.caption or "untitled", why)
end

local function markdown(self, dir, figures)
  local out = {"# " .. md_inline(self.title), ""}
  for i, sec in ipairs(self.sections) do
    if sec.kind == "heading" then
      out[#out + 1] = ("#"):rep(sec.level) .. " " .. md_inline(sec.text)
    elseif sec.kind == "paragraph" then
      out[#out + 1] = sec.text
    elseif sec.kind == "table" then
      local sep = {}
      for j, a in ipairs(sec.align) do
        sep[j] = a == "right" and "---:" or a == "center" and ":---:" or "---"
      end
      local line = function(cells)
        local c = {}
        for j, v in ipairs(cells) do c[j] = md_cell(v) end
        return "| " .. table.concat(c, " | ") .. " |"
      end
      out[#out + 1] = line(sec.header)
      out[#out + 1] = "| " .. table.concat(sep, " | ") .. " |"
      for _, row in ipairs(sec.rows) do out[#out + 1] = line(row) end
      if sec.caption then out[#out + 1] = "\n*" .. md_inline(sec.caption) .. "*" end
    elseif sec.kind == "figure" then
      if figures[i] then
        local alt = md_inline(sec.caption):gsub("[%[%]]", "")
        out[#out + 1] = ("![%s](%s)"):format(alt, md_link(dir, sec.path):gsub(" ", "%%20"))
        if sec.caption ~= "" then out[#out + 1] = "\n*" .. md_inline(sec.caption) .. "*" end
      else
        out[#out + 1] = "> " .. md_inline(skipped_text(sec))
      end
    end
    out[#out + 1] = ""
  end
  return table.concat(out, "\n")
end

local CSS = [[
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  max-width: 60em; margin: 2em auto; padding: 0 1em; line-height: 1.45; color: #222; }
h1, h2, h3 { line-height: 1.2; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
th, td { padding: .3em .8em; border-bottom: 1px solid #ddd; }
th { border-bottom: 2px solid #999; }
caption { caption-side: bottom; color: #555; font-style: italic; padding-top: .4em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-style: italic; }
.skipped { color: #a33; font-style: italic; border-left: 3px solid #a33; padding-left: .6em; }
]]

local function html(self, figures)
  local out = {
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    "<title>" .. html_escape(self.title) .. "</title>",
    "<style>\n" .. CSS .. "</style>",
    "</head>",
    "<body>",
    "<h1>" .. html_escape(self.title) .. "</h1>",
  }
  for i, sec in ipairs(self.sections) do
    if sec.kind == "heading" then
      out[#out + 1] = ("<h%d>%s</h%d>"):format(sec.level, html_escape(sec.text), sec.level)
    elseif sec.kind == "paragraph" then
      for para in (sec.text .. "\n\n"):gmatch("(.-)\n%s*\n") do
        if para:match("%S") then out[#out + 1] = "<p>" .. html_escape(para) .. "</p>" end
      end
    elseif sec.kind == "table" then
      out[#out + 1] = "<table>"
      if sec.caption then out[#out + 1] = "<caption>" .. html_escape(sec.caption) .. "</caption>" end
      local function row(tag, cells)
        local c = {}
        for j, v in ipairs(cells) do
          c[j] = ('<%s style="text-align:%s">%s</%s>'):format(tag, sec.align[j], html_escape(v), tag)
        end
        return "<tr>" .. table.concat(c) .. "</tr>"
      end
      out[#out + 1] = "<thead>" .. row("th", sec.header) .. "</thead>"
      out[#out + 1] = "<tbody>"
      for _, r in ipairs(sec.rows) do out[#out + 1] = row("td", r) end
      out[#out + 1] = "</tbody>"
      out[#out + 1] = "</table>"
    elseif sec.kind == "figure" then
      local bytes = figures[i]
      if bytes then
        out[#out + 1] = "<figure>"
        out[#out + 1] = ('<img alt="%s" src="data:%s;base64,%s">'):format(html_escape(sec.caption),
          mime(sec.path, bytes), M.base64(bytes))
        if sec.caption ~= "" then
          out[#out + 1] = "<figcaption>" .. html_escape(sec.caption) .. "</figcaption>"
        end
        out[#out + 1] = "</figure>"
      else
        out[#out + 1] = '<p class="skipped">' .. html_escape(skipped_text(sec)) .. "</p>"
      end
    end
  end
  out[#out + 1] = "</body>"
  out[#out + 1] = "</html>"
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

--- The Markdown text of the report (figures linked relative to dir).
-- @tparam[opt="."] string dir where the Markdown will live
-- @treturn string
function Report:markdown(dir)
  local figures = {}
  for i, sec in ipairs(self.sections) do
    if sec.kind == "figure" and sec.path then figures[i] = read_file(sec.path) end
  end
  return markdown(self, dir or ".", figures)
end

--- The HTML text of the report (figures inline).
-- @treturn string
function Report:html()
  local figures = {}
  for i, sec in ipairs(self.sections) do
    if sec.kind == "figure" and sec.path then figures[i] = read_file(sec.path) end
  end
  return html(self, figures)
end

--- The figures that were skipped: a list of {caption=, path=, note=}.
-- @treturn table
function Report:skipped()
  local list = {}
  for _, sec in ipairs(self.sections) do
    if sec.kind == "figure" and not (sec.path and read_file(sec.path)) then
      list[#list + 1] = {caption = sec.caption, path = sec.path, note = sec.note}
    end
  end
  return list
end

local tmp_count = 0

local function write_tmp(path, text)
  tmp_count = tmp_count + 1
  local tmp = ("%s.tmp-%d-%s"):format(path, tmp_count, (tostring({}):gsub("%W", "")))
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, werr or cerr
  end
  return tmp
end

--- Writes dir/report.md and dir/report.html (dir must exist).
-- @tparam string dir
-- @treturn string the Markdown's path
-- @treturn string the HTML's path
function Report:write(dir)
  local op = "report:write"
  if type(dir) ~= "string" or dir == "" then
    error(("%s: dir must be a non-empty string, got %s"):format(op, type(dir)), 2)
  end
  local base = dir:gsub("/+$", "")
  if base == "" then base = "/" end
  local md_path = (base == "/" and "" or base) .. "/report.md"
  local html_path = (base == "/" and "" or base) .. "/report.html"
  local figures = {}
  for i, sec in ipairs(self.sections) do
    if sec.kind == "figure" and sec.path then figures[i] = read_file(sec.path) end
  end
  local md_text, html_text = markdown(self, base, figures), html(self, figures)

  local md_tmp, err = write_tmp(md_path, md_text)
  if not md_tmp then error(("%s: cannot write %s: %s"):format(op, md_path, tostring(err)), 2) end
  local html_tmp, herr = write_tmp(html_path, html_text)
  if not html_tmp then
    os.remove(md_tmp)
    error(("%s: cannot write %s: %s"):format(op, html_path, tostring(herr)), 2)
  end
  -- Markdown first, the old one kept aside until the HTML is in place too
  local old = md_tmp .. ".old"
  local had_old = os.rename(md_path, old)
  local ok, rerr = os.rename(md_tmp, md_path)
  if not ok then
    if had_old then os.rename(old, md_path) end
    os.remove(md_tmp)
    os.remove(html_tmp)
    error(("%s: cannot write %s: %s"):format(op, md_path, tostring(rerr)), 2)
  end
  ok, rerr = os.rename(html_tmp, html_path)
  if not ok then
    os.remove(md_path)
    if had_old then os.rename(old, md_path) end
    os.remove(html_tmp)
    error(("%s: cannot write %s: %s"):format(op, html_path, tostring(rerr)), 2)
  end
  if had_old then os.remove(old) end
  return md_path, html_path
end

return M
