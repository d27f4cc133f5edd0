-- spec/fashion_spec.lua: examples/fashion_fewshot.lua and examples/pretrain_compare.lua in their
-- --quick forms (a few seconds each) when dataset-fashion-mnist is installed; in every case,
-- a run that cannot find the data set exits 1 with a message naming the package.
local helper = require "helper"

local DATA = "/usr/share/datasets/fashion-mnist"
local installed = helper.read_or_nil(DATA .. "/t10k-labels-idx1-ubyte.gz") ~= nil

local function run(script, args)
  -- the child finds the in-tree Lua front and the build under test (FS_CPATH: make sanitize's)
  local env = string.format('OMP_NUM_THREADS=1 LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH=%q',
                            (os.getenv("FS_CPATH") or "./?.so") .. ";;")
  local p = io.popen(env .. " lua5.4 " .. script .. " " .. args .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

describe("examples/fashion_fewshot.lua", function()
  local dir = helper.tmpdir()
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("without the data set exits 1 naming the Debian package and writes nothing", function()
    local args = installed and ("--quick --data '" .. dir .. "/none' --out '" .. dir .. "'")
                           or ("--quick --out '" .. dir .. "'")
    local out, status = run("examples/fashion_fewshot.lua", args)
    assert.equal(1, status, out)
    assert.truthy(out:find("Fashion-MNIST is not installed", 1, true), out)
    assert.truthy(out:find("dataset-fashion-mnist", 1, true), out)
    assert.truthy(out:find("make fashion", 1, true), out)
    assert.is_nil(helper.read_or_nil(dir .. "/fashion_fewshot.md"))
  end)

  it("rejects an unknown argument with its usage", function()
    local out, status = run("examples/fashion_fewshot.lua", "--seed 3")
    assert.equal(1, status, out)
    assert.truthy(out:find("unknown argument '--seed'", 1, true), out)
    assert.truthy(out:find("usage:", 1, true), out)
  end)

  if installed then
    it("--quick trains, evaluates 1-shot and 5-shot on the unseen classes and writes the table", function()
      local out, status = run("examples/fashion_fewshot.lua", "--quick --out '" .. dir .. "'")
      assert.equal(0, status, out)
      assert.truthy(out:find("episode 3/3 loss", 1, true), out)
      local md = helper.read_or_nil(dir .. "/fashion_fewshot.md")
      assert.truthy(md, "no fashion_fewshot.md\n" .. out)
      assert.truthy(md:find("Sandal, Shirt, Sneaker, Bag, Ankle boot", 1, true), md)
      -- a row per shot: ProtoNet mean ± std, episode CI, per seed, pixel baseline ± CI
      for _, k in ipairs({1, 5}) do
        assert.truthy(md:find(("| %d | %%d+%%.%%d+ ± %%d+%%.%%d+%%%% | ± %%d+%%.%%d+%%%% | %%d+%%.%%d+ | "
          .. "%%d+%%.%%d+ ± %%d+%%.%%d+%%%% |"):format(k)), md)
      end
      assert.is_nil(helper.read_or_nil(dir .. "/fashion_fewshot.md.tmp"))
    end)

    it("examples/pretrain_compare.lua --quick compares scratch, Fashion-MNIST and SPECT pre-training", function()
      local out, status = run("examples/pretrain_compare.lua", "--quick --out '" .. dir .. "'")
      assert.equal(0, status, out)
      local md = helper.read_or_nil(dir .. "/pretrain_compare.md")
      assert.truthy(md, "no pretrain_compare.md\n" .. out)
      for _, row in ipairs({"| from scratch | ", "| Fashion-MNIST (10 classes", "| simulated SPECT (",
                            "| pixel baseline | "}) do
        assert.truthy(md:find(row, 1, true), row .. "\n" .. md)
      end
      assert.truthy(md:find("| from scratch | %d+%.%d+ ± %d+%.%d+%% | %d+%.%d+ ± %d+%.%d+%% | %d+%.%d+ ± %d+%.%d+%% |"), md)
    end)
  end

  it("examples/pretrain_compare.lua without the data set exits 1 naming the package, before any work", function()
    local out, status = run("examples/pretrain_compare.lua",
                            "--quick --data '" .. dir .. "/none' --out '" .. dir .. "/failed'")
    assert.equal(1, status, out)
    assert.truthy(out:find("Fashion-MNIST is not installed", 1, true), out)
    assert.truthy(out:find("dataset-fashion-mnist", 1, true), out)
    assert.is_nil(out:find("pretrain_compare (--quick):", 1, true), out)
    assert.is_nil(helper.read_or_nil(dir .. "/failed/pretrain_compare.md"))
  end)
end)
