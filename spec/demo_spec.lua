-- spec/demo_spec.lua: the main job (examples/demo.lua) end to end in its reduced form
-- (--quick, about 20 s) into a temporary folder: exit status 0, report.md and report.html with
-- the main table, every figure the Markdown links to present (or, without gnuplot, the charts
-- reported as skipped), no temporary figure folder left; then a failing run (a bad argument)
-- into the same folder exits 1 with a clear message and leaves that report as it was.
local helper = require "helper"
local dir = helper.tmpdir()

local function run(args)
  -- the child finds the in-tree Lua front and the build under test (FS_CPATH: make sanitize's)
  local env = string.format('LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH=%q',
                            (os.getenv("FS_CPATH") or "./?.so") .. ";;")
  local p = io.popen(env .. " lua5.4 examples/demo.lua " .. args .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

local read = helper.read_or_nil

local function gnuplot_ok()
  local prog = os.getenv("FS_GNUPLOT") or "gnuplot"
  local p = io.popen("'" .. prog .. "' -e 'set terminal' 2>&1 </dev/null")
  local s = p:read("a") or ""
  p:close()
  return s:find("pngcairo", 1, true) ~= nil
end

describe("examples/demo.lua --quick", function()
  local out, status
  setup(function() out, status = run("--quick --out '" .. dir .. "'") end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("runs every stage and exits 0 with a summary naming the report", function()
    assert.are.equal(0, status, out)
    for _, stage in ipairs({"simulate cohorts", "pre-train on simulated patients",
                            "train masked scratch, repeat 1", "train masked pretrained, repeat 2",
                            "train masked scratch, repeat 2", "train crop scratch, repeat 1",
                            "leave-one-patient-out", "landmark localisation (PRNet)", "figures",
                            "report"}) do
      assert.truthy(out:find("== " .. stage, 1, true), "no stage line for " .. stage .. "\n" .. out)
    end
    assert.truthy(out:find("episode 2/4 loss", 1, true), "the trainer's progress lines are missing")
    assert.truthy(out:find(dir .. "/report.md", 1, true))
  end)

  it("writes report.md and report.html with the main table beside the paper's numbers", function()
    local md, html = read(dir .. "/report.md"), read(dir .. "/report.html")
    assert.truthy(md, "no report.md")
    assert.truthy(html, "no report.html")
    for _, text in ipairs({md, html}) do
      assert.truthy(text:find("held-out acc. (mean ± std over repeats)", 1, true))
      assert.truthy(text:find("96.67%", 1, true))
      assert.truthy(text:find("93.33%", 1, true))
      assert.truthy(text:find("ProtoNet, masked input, scratch", 1, true))
      assert.truthy(text:find("ProtoNet, crop input, scratch", 1, true))
      assert.truthy(text:find("ProtoNet, masked input, pretrained", 1, true))
      assert.truthy(text:find("pixel baseline", 1, true))
      assert.truthy(text:find("Leave-one-patient-out", 1, true))
      assert.truthy(text:find("perfusion defects", 1, true))
      assert.truthy(text:find("Landmark localisation (PRNet-2D, one marked support)", 1, true))
      assert.truthy(text:find("PRNet coarse, then NCC within +/- 5 px of its estimate, with a 6 px prior", 1, true))
    end
    -- the main table's rows carry numbers: "NN.NN ± N.NN%"
    -- the main table's rows carry numbers: "NN.NN ± N.NN%", then the pixel baseline and the
    -- paired difference with their spreads
    assert.truthy(md:find("| ProtoNet, masked input, scratch | %d+%.%d+%% | %d+%.%d+ ± %d+%.%d+%% | ± %d+%.%d+%% | "
      .. "%d+%.%d+ ± %d+%.%d+%% | [-+]%d+%.%d+ ± %d+%.%d+ | 2 |"), md)
  end)

  it("links figures that exist, or reports the charts skipped without gnuplot", function()
    local md = read(dir .. "/report.md")
    local linked = {}
    for path in md:gmatch("!%[[^%]]*%]%(([^)]+)%)") do linked[#linked + 1] = path end
    local with_gnuplot = gnuplot_ok()
    if with_gnuplot then
      assert.are.equal(8, #linked, md)
    else
      -- the image panels (tissues, reconstructions, landmarks, latent) need no gnuplot; the
      -- four charts are reported skipped
      assert.are.equal(4, #linked, md)
      local n = 0
      for _ in md:gmatch("Figure skipped") do n = n + 1 end
      assert.are.equal(4, n, md)
    end
    for _, path in ipairs(linked) do
      local full = path:sub(1, 1) == "/" and path or dir .. "/" .. path
      local png = read(full)
      assert.truthy(png, "missing figure " .. full)
      assert.are.equal("\137PNG", png:sub(1, 4))
    end
    local p = io.popen("ls -A '" .. dir .. "'")
    local listing = p:read("a")
    p:close()
    assert.falsy(listing:find(".figures-tmp", 1, true), "the temporary figure folder was left")
  end)

  it("fails with exit status 1 and a clear message, and leaves the last good report", function()
    local before = read(dir .. "/report.md")
    local msg, st = run("--quick --modes masked,bogus --out '" .. dir .. "'")
    assert.are.equal(1, st, msg)
    assert.truthy(msg:find("demo: FAILED: demo: unknown input mode 'bogus'", 1, true), msg)
    assert.are.equal(before, read(dir .. "/report.md"))
    local msg2, st2 = run("--repeats x")
    assert.are.equal(1, st2, msg2)
    assert.truthy(msg2:find("demo: --repeats needs a positive integer", 1, true), msg2)
  end)
end)
