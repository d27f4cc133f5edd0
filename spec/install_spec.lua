-- Packaging: the rockspec builds and installs from a clean copy of the sources (luarocks make),
-- `make rock` writes a source rock and a rocks-server manifest that luarocks installs offline,
-- the installed module loads from another folder, the version agrees everywhere; a C program
-- hosting Lua runs fewshot. Each luarocks build compiles the C core (about 11 s with -j2).
local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, out
end

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The version as the Makefile states it (its one place).
local VERSION = read("Makefile"):match("\nVERSION%s*=%s*(%S+)")
local ROCK_VERSION = VERSION and VERSION .. "-1"

-- A fresh temporary folder name (the caller creates it).
local function tmpdir()
  local tmp = os.tmpname()
  os.remove(tmp)
  return tmp
end

-- A clean copy of the tracked and new source files (no build products) in dir, with a module
-- in a subfolder of lua/fewshot/ (made in the copy only: the install must keep the tree).
local function clean_copy(dir)
  local rc, out = sh(string.format(
    "mkdir -p %s && (git ls-files -co --exclude-standard | grep -v '^spec/fixtures/' | " ..
    "tar -cf - -T - ) | tar -xf - -C %s && mkdir -p %s/lua/fewshot/sub", dir, dir, dir))
  assert.equal(0, rc, out)
  write(dir .. "/lua/fewshot/sub/probe.lua", 'return { name = "fewshot.sub.probe", answer = 42 }\n')
end

-- luarocks with no remote server (so it never tries the network) and the C core built with -j2.
local function luarocks(base, cwd, args)
  write(base .. "-luarocks.lua", "rocks_servers = {}\n")
  return sh(string.format("cd %s && LUAROCKS_CONFIG=%s-luarocks.lua MAKEFLAGS=-j2 " ..
    "luarocks --lua-version=5.4 %s", cwd, base, args))
end

-- Runs, from `/` with LUA_PATH / LUA_CPATH naming only the tree, a script that requires fewshot,
-- does a tensor op and a linear module's forward, and requires the subfolder module.
local PROBE = [[
local fs = require "fewshot"
local probe = require "fewshot.sub.probe"
local l = fs.nn.linear(3, 2, {seed = 1})
l:load_state_dict{weight = fs.tensor{{1, 2, 3}, {0, 1, 0}}, bias = fs.tensor{0.5, -1}}
local y = l(fs.tensor{{1, 1, 1}})
local m = fs.matmul(fs.tensor{{1, 2}, {3, 4}}, fs.tensor{{1}, {1}})
print(package.searchpath("fewshot.core", package.cpath))
print(package.searchpath("fewshot", package.path))
print(package.searchpath("fewshot.sub.probe", package.path))
print(string.format("y = %.4f %.4f; m = %g %g; sum = %g; probe = %d; version = %s", y:get(1, 1),
  y:get(1, 2), m:get(1, 1), m:get(2, 1), fs.arange(4):sum():item(), probe.answer, fs._VERSION))
]]

local function run_from_tree(base, tree)
  write(base .. "-probe.lua", PROBE)
  local rc, out = sh(string.format("cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 " ..
    "LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua' LUA_CPATH='%s/lib/lua/5.4/?.so' " ..
    "lua5.4 %s-probe.lua", tree, tree, tree, base))
  assert.equal(0, rc, out)
  assert.truthy(out:find(tree .. "/lib/lua/5.4/fewshot/core.so\n", 1, true), out)
  assert.truthy(out:find(tree .. "/share/lua/5.4/fewshot/init.lua\n", 1, true), out)
  assert.truthy(out:find(tree .. "/share/lua/5.4/fewshot/sub/probe.lua\n", 1, true), out)
  assert.truthy(out:find("y = 6.5000 0.0000; m = 3 7; sum = 6; probe = 42; version = " .. VERSION,
    1, true), out)
end

describe("packaging", function()
  it("the version agrees: the Makefile's VERSION, the rockspec and fewshot.core._VERSION", function()
    assert.equal("0.1.0", VERSION)
    assert.equal(VERSION, require("fewshot.core")._VERSION)
    local spec = read("rockspec/fewshot-" .. ROCK_VERSION .. ".rockspec")
    assert.equal(ROCK_VERSION, spec:match('\nversion = "([^"]+)"'))
    assert.equal("fewshot-" .. VERSION .. ".tar.gz", spec:match('\n%s*url = "([^"]+)"'))
    assert.equal("fewshot-" .. VERSION, spec:match('\n%s*dir = "([^"]+)"'))
  end)

  it("luarocks make installs a tree that `require 'fewshot'` loads from elsewhere", function()
    if os.getenv("FS_SANITIZE") then
      pending("skipped in the sanitizer run (it builds without sanitizers anyway)")
      return
    end
    local base = tmpdir()
    local src, tree = base .. "-src", base .. "-tree"
    finally(function() sh("rm -rf " .. base .. "-*") end)
    clean_copy(src)
    -- From the top of the copy, luarocks make finds the one rockspec in rockspec/ by itself.
    local rc, out = luarocks(base, src, "make --tree=" .. tree)
    assert.equal(0, rc, out)
    assert.truthy(out:find("fewshot " .. ROCK_VERSION .. " is now installed in " .. tree, 1, true), out)
    run_from_tree(base, tree)
  end)

  it("make rock writes a source rock and a manifest that luarocks installs from, offline", function()
    if os.getenv("FS_SANITIZE") then
      pending("skipped in the sanitizer run (it builds without sanitizers anyway)")
      return
    end
    local base = tmpdir()
    local src, tree1, tree2 = base .. "-src", base .. "-tree1", base .. "-tree2"
    finally(function() sh("rm -rf " .. base .. "-*") end)
    clean_copy(src)
    -- The copy becomes a repository whose HEAD holds it (make rock packs HEAD); then build
    -- products and an uncommitted file appear, which must stay out of the rock.
    local rc, out = sh(string.format("cd %s && git init -q && git add -A && " ..
      "git -c user.name=spec -c user.email=spec@localhost -c commit.gpgsign=false commit -qm copy && " ..
      "mkdir -p build fewshot && touch build/x.o fewshot/core.so lua/fewshot/uncommitted.lua && " ..
      "make rock", src))
    assert.equal(0, rc, out)
    local rock = string.format("%s/dist/fewshot-%s.src.rock", src, ROCK_VERSION)
    rc, out = sh(string.format("unzip -Z1 %s", rock))
    assert.equal(0, rc, out)
    assert.equal(string.format("fewshot-%s.rockspec\nfewshot-%s.tar.gz\n", ROCK_VERSION, VERSION),
      (out:gsub("rc=0%s*$", "")))
    rc, out = sh(string.format("unzip -p %s fewshot-%s.tar.gz | tar -tzf -", rock, VERSION))
    assert.equal(0, rc, out)
    local top = "fewshot-" .. VERSION .. "/"
    for _, f in ipairs{"Makefile", "rockspec/fewshot-" .. ROCK_VERSION .. ".rockspec",
                       "lua/fewshot/init.lua", "lua/fewshot/sub/probe.lua", "csrc/lua/fewshot_lua.c"} do
      assert.truthy(out:find("\n" .. top .. f .. "\n", 1, true), f .. " missing from the rock:\n" .. out)
    end
    for line in out:gmatch("[^\n]+") do
      if line ~= "rc=0" then
        assert.equal(top, line:sub(1, #top))
        assert.falsy(line:find("%.o$") or line:find("%.so$") or line:find("^" .. top .. "build/")
          or line:find("uncommitted"), line)
      end
    end
    local manifest = read(src .. "/dist/manifest")
    assert.truthy(manifest:find('fewshot = {%s*%["' .. ROCK_VERSION:gsub("%p", "%%%0") ..
      '"%] = {%s*{%s*arch = "src"'), manifest)

    -- The rock file itself, then the same rock found through the manifest (dist as the only server).
    rc, out = luarocks(base, "/", string.format("install --tree=%s %s", tree1, rock))
    assert.equal(0, rc, out)
    assert.truthy(out:find("fewshot " .. ROCK_VERSION .. " is now installed in " .. tree1, 1, true), out)
    run_from_tree(base, tree1)
    rc, out = luarocks(base, "/", string.format("install --tree=%s --only-server=%s/dist fewshot", tree2, src))
    assert.equal(0, rc, out)
    assert.truthy(out:find("Installing " .. src .. "/dist/fewshot-" .. ROCK_VERSION .. ".src.rock", 1, true), out)
    assert.truthy(out:find("fewshot " .. ROCK_VERSION .. " is now installed in " .. tree2, 1, true), out)
    run_from_tree(base, tree2)
  end)

  it("a C program that hosts Lua runs a fewshot script", function()
    local host = io.open("build/embed-host") and "build/embed-host" or "build-san/embed-host"
    local rc, out = sh(host .. " --root . examples/embed/script.lua")
    assert.equal(0, rc, out)
    assert.truthy(out:find("embedded fewshot: y = 27, dy/dx = 3.5 5.5 4.5 6.5", 1, true), out)
    rc, out = sh(host .. " --root . spec/fixtures/does-not-exist.lua")
    assert.equal(1, rc)
    assert.truthy(out:find("cannot open spec/fixtures/does-not-exist.lua", 1, true), out)
  end)
end)
