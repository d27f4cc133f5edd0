-- fs.report: Markdown + self-contained HTML from sections; figures inline as data URIs; both
-- files written atomically.
local helper = require "helper"
local fs = require "fewshot"

local dir = helper.tmpdir()

local read_all = helper.read_or_nil

local write_all = helper.write_bytes

local function listing(d)
  local p = io.popen("ls -A '" .. d .. "'")
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

-- An independent base64 decoder (the spec's, not the module's).
local function unbase64(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local val = {}
  for i = 1, 64 do val[alphabet:sub(i, i)] = i - 1 end
  local out, bits, nbits = {}, 0, 0
  for ch in s:gmatch("[^=]") do
    bits = (bits << 6) | assert(val[ch], "bad base64 character " .. ch)
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      out[#out + 1] = string.char((bits >> nbits) & 255)
    end
  end
  return table.concat(out)
end

describe("fs.report", function()
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("encodes base64 as RFC 4648's test vectors", function()
    local b = fs.report.base64
    assert.are.equal("", b(""))
    assert.are.equal("Zg==", b("f"))
    assert.are.equal("Zm8=", b("fo"))
    assert.are.equal("Zm9v", b("foo"))
    assert.are.equal("Zm9vYg==", b("foob"))
    assert.are.equal("Zm9vYmE=", b("fooba"))
    assert.are.equal("Zm9vYmFy", b("foobar"))
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all):rep(3)
    assert.are.equal(all, unbase64(b(all)))
    assert.are.equal(all .. "x", unbase64(b(all .. "x")))
  end)

  it("writes the headings, paragraphs, table cells and figures to both files", function()
    local png = dir .. "/fig.png"
    fs.image.write(png, fs.arange(0, 64):view(8, 8))
    local r = fs.report.new{title = "ProtoNet <SPECT>"}
    r:heading("Accuracy")
    r:paragraph("3-way 3-shot & 5 seeds.\n\nSecond paragraph.")
    r:table{header = {"method", "acc", "n"}, rows = {{"protonet", 0.91234, 5}, {"pix|el", 1 / 3, 12}},
      align = {"l", "r", "c"}, caption = "Mean over seeds"}
    r:heading("Figures", 3)
    r:figure(png, "Loss curve")
    r:figure(dir .. "/missing.png", "t-SNE")
    r:figure(nil, "Reconstructions", "gnuplot not found")
    local md_path, html_path = r:write(dir)
    assert.are.equal(dir .. "/report.md", md_path)
    assert.are.equal(dir .. "/report.html", html_path)

    local md = read_all(md_path)
    assert.are.equal("# ProtoNet <SPECT>\n\n## Accuracy\n\n", md:sub(1, 33))
    assert.truthy(md:find("3-way 3-shot & 5 seeds.\n\nSecond paragraph.", 1, true))
    assert.truthy(md:find("| method | acc | n |\n| --- | ---: | :---: |\n| protonet | 0.9123 | 5 |\n| pix\\|el | 0.3333 | 12 |\n\n*Mean over seeds*", 1, true))
    assert.truthy(md:find("### Figures", 1, true))
    assert.truthy(md:find("![Loss curve](fig.png)\n\n*Loss curve*", 1, true))
    assert.truthy(md:find("> Figure skipped: t-SNE (file " .. dir .. "/missing.png not found)", 1, true))
    assert.truthy(md:find("> Figure skipped: Reconstructions (gnuplot not found)", 1, true))

    local html = read_all(html_path)
    assert.are.equal("<!DOCTYPE html>", html:sub(1, 15))
    assert.truthy(html:find("<title>ProtoNet &lt;SPECT&gt;</title>", 1, true))
    assert.truthy(html:find("<style>", 1, true))
    assert.truthy(html:find("<h2>Accuracy</h2>", 1, true))
    assert.truthy(html:find("<h3>Figures</h3>", 1, true))
    assert.truthy(html:find("<p>3-way 3-shot &amp; 5 seeds.</p>\n<p>Second paragraph.</p>", 1, true))
    assert.truthy(html:find('<th style="text-align:right">acc</th>', 1, true))
    assert.truthy(html:find('<tr><td style="text-align:left">pix|el</td><td style="text-align:right">0.3333</td><td style="text-align:center">12</td></tr>', 1, true))
    assert.truthy(html:find("<caption>Mean over seeds</caption>", 1, true))
    assert.truthy(html:find('<p class="skipped">Figure skipped: t-SNE', 1, true))
    assert.truthy(html:find('<p class="skipped">Figure skipped: Reconstructions (gnuplot not found)</p>', 1, true))
    -- the figure is inline, and its bytes are the PNG's
    local b64 = html:match('<img alt="Loss curve" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
    assert.truthy(b64)
    assert.are.equal(read_all(png), unbase64(b64))
    assert.truthy(html:find("<figcaption>Loss curve</figcaption>", 1, true))
    -- nothing refers to a file outside the page
    assert.is_nil(html:find('src="[^d]'))
    assert.are.same({{caption = "t-SNE", path = dir .. "/missing.png"},
      {caption = "Reconstructions", note = "gnuplot not found"}}, r:skipped())
    assert.are.same({"fig.png", "report.html", "report.md"}, listing(dir))
  end)

  it("embeds a real chart from fs.plot when gnuplot is there", function()
    local sub = dir .. "/chart"
    os.execute("mkdir -p '" .. sub .. "'")
    local path, err = fs.plot.lines(sub .. "/loss.png", {series = {{y = {3, 2, 1.5, 1.2}}}, xlabel = "step"})
    local r = fs.report.new{title = "chart"}
    r:figure(path or (sub .. "/loss.png"), "loss", err)
    local _, html_path = r:write(sub)
    local html = read_all(html_path)
    if path then
      local b64 = html:match("data:image/png;base64,([A-Za-z0-9+/=]+)")
      assert.are.equal(read_all(path), unbase64(b64))
    else
      assert.truthy(html:find("Figure skipped: loss (gnuplot not found)", 1, true))
    end
  end)

  it("replaces both files atomically and leaves no partial file when the HTML cannot be placed", function()
    local d = dir .. "/atomic"
    os.execute("mkdir -p '" .. d .. "'")
    local r = fs.report.new{title = "first"}
    r:paragraph("one")
    r:write(d)
    local md1 = read_all(d .. "/report.md")
    assert.truthy(md1:find("# first", 1, true))
    -- second write: report.html is now a non-empty directory, so the HTML rename fails
    os.remove(d .. "/report.html")
    os.execute("mkdir -p '" .. d .. "/report.html/x'")
    local r2 = fs.report.new{title = "second"}
    r2:paragraph("two")
    local ok, err = pcall(r2.write, r2, d)
    assert.is_false(ok)
    assert.matches("report:write: cannot write .*/atomic/report.html", tostring(err))
    assert.are.equal(md1, read_all(d .. "/report.md")) -- the old Markdown is back
    assert.are.same({"report.html", "report.md"}, listing(d))   -- and no temporary file
    os.execute("rm -rf '" .. d .. "/report.html'")
    r2:write(d)
    assert.truthy(read_all(d .. "/report.md"):find("# second", 1, true))
    assert.truthy(read_all(d .. "/report.html"):find("<p>two</p>", 1, true))
    assert.are.same({"report.html", "report.md"}, listing(d))
  end)

  it("raises when the directory does not exist, writing nothing", function()
    local r = fs.report.new{}
    local ok, err = pcall(r.write, r, dir .. "/nope")
    assert.is_false(ok)
    assert.matches("report:write: cannot write .*/nope/report.md: .*No such file or directory", tostring(err))
    assert.is_nil(read_all(dir .. "/nope/report.md"))
  end)

  it("raises on bad sections", function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return tostring(e) end
    local r = fs.report.new{title = "x"}
    assert.matches("report.new: unknown option 'titel' (did you mean 'title'?)", err(function() fs.report.new{titel = "x"} end), 1, true)
    assert.matches("report:table: rows[2] has 1 cells, the header 2",
      err(function() r:table{header = {"a", "b"}, rows = {{1, 2}, {3}}} end), 1, true)
    assert.matches("report:table: rows[1][2] must be a string or a number, got table",
      err(function() r:table{header = {"a", "b"}, rows = {{1, {}}}} end), 1, true)
    assert.matches("report:table: align[1] must be one of l, c, r, got x",
      err(function() r:table{header = {"a"}, rows = {}, align = {"x"}} end), 1, true)
    assert.matches("report:table: 'header' must be a non-empty list",
      err(function() r:table{rows = {}} end), 1, true)
    assert.matches("report:heading: option 'level' must be in [1, 6], got 7",
      err(function() r:heading("h", 7) end), 1, true)
    assert.matches("report:paragraph: text must be a string, got table",
      err(function() r:paragraph({}) end), 1, true)
    assert.matches("report:figure: path must be a string, got number",
      err(function() r:figure(3, "c") end), 1, true)
    assert.are.equal(0, #r.sections)
  end)
end)
