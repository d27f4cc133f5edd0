-- The one options checker (fewshot.core.check_options, fs_lua_check_options in C): an unknown
-- key is an error naming it and the nearest valid key.
local core = require "fewshot.core"

describe("check_options", function()
  local keys = {"stride", "padding", "dilation"}

  it("accepts known keys, nil and an empty table", function()
    assert.has_no.errors(function() core.check_options("op", {stride = 2, padding = 1}, keys) end)
    assert.has_no.errors(function() core.check_options("op", nil, keys) end)
    assert.has_no.errors(function() core.check_options("op", {}, keys) end)
  end)

  it("names an unknown key and the nearest valid one", function()
    assert.has_error(function() core.check_options("fs.nn.conv2d", {strid = 2}, keys) end,
      "fs.nn.conv2d: unknown option 'strid' (did you mean 'stride'?)")
    assert.has_error(function() core.check_options("fs.nn.conv2d", {paddign = 2}, keys) end,
      "fs.nn.conv2d: unknown option 'paddign' (did you mean 'padding'?)")
  end)

  it("lists the valid keys when none is near", function()
    assert.has_error(function() core.check_options("op", {zzz = 1}, keys) end,
      "op: unknown option 'zzz' (options: stride, padding, dilation)")
  end)

  it("rejects positional entries in an options table", function()
    assert.has_error(function() core.check_options("op", {1}, keys) end,
      "op: options must be named (a key of type number was given)")
  end)
end)
