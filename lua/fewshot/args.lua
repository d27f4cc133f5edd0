--- fewshot.args: the argument checks of the Lua front, in one place and one wording.
-- Every function that takes an options table passes it through `args.options` first, so an
-- unknown key is an error naming it and the nearest valid one (the same checker as the C
-- binding's). Errors name the function: "spect.dataset: option 'n' must be ...".
-- @module fewshot.args
local core = require "fewshot.core"

local M = {}

--- Checks opts (nil or a table) against the valid keys; returns opts or an empty table.
function M.options(op, opts, keys)
  if opts ~= nil and type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(op, type(opts)), 3)
  end
  core.check_options(op, opts, keys)
  return opts or {}
end

local function describe(v)
  if type(v) == "number" then return ("%.17g"):format(v) end
  return type(v)
end

--- v must be an integer in [lo, hi] (hi may be nil: no upper bound); returns it.
function M.integer(op, name, v, lo, hi)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v) and v == v
      and math.abs(v) < 2^53) then
    error(("%s: option '%s' must be an integer, got %s"):format(op, name, describe(v)), 3)
  end
  v = math.tointeger(v)
  if v < lo or (hi and v > hi) then
    local range = hi and ("[%d, %d]"):format(lo, hi) or (">= %d"):format(lo)
    error(("%s: option '%s' must be %s, got %d"):format(op, name, hi and ("in " .. range) or range, v), 3)
  end
  return v
end

--- v must be a finite number in [lo, hi] (either bound may be nil); returns it.
-- open_lo: v must be > lo instead of >= lo.
function M.number(op, name, v, lo, hi, open_lo)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    error(("%s: option '%s' must be a finite number, got %s"):format(op, name, describe(v)), 3)
  end
  local low_bad = lo and (open_lo and v <= lo or v < lo)
  if low_bad or (hi and v > hi) then
    local want
    if lo and hi then want = ("in %s%g, %g]"):format(open_lo and "(" or "[", lo, hi)
    elseif lo then want = (open_lo and "> %g" or ">= %g"):format(lo)
    else want = ("<= %g"):format(hi) end
    error(("%s: option '%s' must be %s, got %s"):format(op, name, want, describe(v)), 3)
  end
  return v
end

--- v must be one of the strings in list; returns it.
function M.choice(op, name, v, list)
  for _, s in ipairs(list) do
    if v == s then return v end
  end
  error(("%s: option '%s' must be one of %s, got %s"):format(op, name, table.concat(list, ", "),
    type(v) == "string" and ("'" .. v .. "'") or describe(v)), 3)
end

return M
