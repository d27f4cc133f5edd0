-- Packaging: the rockspec builds and installs from a clean copy of the sources, and the
-- installed module loads from another folder; a C program hosting Lua runs fewshot.
local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, out
end

describe("packaging", function()
  it("luarocks make installs a tree that `require 'fewshot'` loads from elsewhere", function()
    if os.getenv("FS_SANITIZE") then
      pending("skipped in the sanitizer run (it builds without sanitizers anyway)")
      return
    end
    local tmp = os.tmpname()
    os.remove(tmp)
    local src, tree = tmp .. "-src", tmp .. "-tree"
    -- A clean copy of the tracked and new source files (no build products).
    local rc, out = sh(string.format(
      "mkdir -p %s && (git ls-files -co --exclude-standard | grep -v '^spec/fixtures/' | " ..
      "tar -cf - -T - ) | tar -xf - -C %s", src, src))
    assert.equal(0, rc, out)
    -- A module in a subfolder of lua/fewshot/ (made in the copy only): the install keeps the tree.
    assert(os.execute("mkdir -p " .. src .. "/lua/fewshot/sub"))
    local probe = assert(io.open(src .. "/lua/fewshot/sub/probe.lua", "w"))
    probe:write('return { name = "fewshot.sub.probe", answer = 42 }\n')
    probe:close()
    rc, out = sh(string.format("cd %s && luarocks --lua-version=5.4 make " ..
      "rockspec/fewshot-scm-1.rockspec --tree=%s", src, tree))
    assert.equal(0, rc, out)
    rc, out = sh(string.format("cd / && LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;' " ..
      "LUA_CPATH='%s/lib/lua/5.4/?.so;;' lua5.4 -e " ..
      "'local fs = require \"fewshot\"; print(package.searchpath(\"fewshot.core\", package.cpath), " ..
      "fs.arange(4):sum():item()); local p = require \"fewshot.sub.probe\"; " ..
      "print(package.searchpath(\"fewshot.sub.probe\", package.path), p.answer)'", tree, tree, tree))
    assert.equal(0, rc, out)
    assert.truthy(out:find(tree .. "/lib/lua/5.4/fewshot/core.so", 1, true), out)
    assert.truthy(out:find("6.0", 1, true), out)
    assert.truthy(out:find(tree .. "/share/lua/5.4/fewshot/sub/probe.lua\t42", 1, true), out)
    sh("rm -rf " .. src .. " " .. tree)
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
