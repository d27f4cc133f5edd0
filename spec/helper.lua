--- spec/helper.lua: what the specs share.
-- * assert.tensor_near(actual, expected, tol): same shape, and every |a - e| <= tol * (1 + |e|)
--   (expected may be a tensor, a nested table or a number).
-- * helper.gradcheck(fn, inputs, opts): compares the gradient that backward gives for
--   sum(fn(inputs) * w) (w a fixed random weight, so every output element matters) with central
--   finite differences, computed in double precision on the Lua side around float32 values.
-- * helper.load_fixture(path): reads a fixture written by tools/ (whitespace text: a line
--   "name ndim d1 d2 ..." then the values), returns {name = tensor}.
local fs = require "fewshot"
local say = require "say"
local luassert = require "luassert"

local helper = {}

local function flatten(t, out)
  out = out or {}
  if type(t) == "number" then out[#out + 1] = t; return out end
  for _, v in ipairs(t) do flatten(v, out) end
  return out
end

local function shape_of(x)
  if type(x) == "number" then return {} end
  if type(x) == "table" and getmetatable(x) == nil then
    local s, t = {}, x
    while type(t) == "table" do s[#s + 1] = #t; t = t[1] end
    return s
  end
  return x:shape()
end

local function values(x)
  if type(x) == "number" then return {x} end
  if type(x) == "table" and getmetatable(x) == nil then return flatten(x) end
  return flatten(x:contiguous():view(-1):totable())
end

helper.values = values

--- The largest scaled difference |a-e| / (1+|e|) and where it is (1-based flat index).
function helper.max_diff(actual, expected)
  local a, e = values(actual), values(expected)
  local worst, at = 0, 0
  for i = 1, math.max(#a, #e) do
    local x, y = a[i], e[i]
    if x == nil or y == nil then return math.huge, i end
    local d
    if x ~= x or y ~= y then d = (x ~= x and y ~= y) and 0 or math.huge
    else d = math.abs(x - y) / (1 + math.abs(y)) end
    if d > worst then worst, at = d, i end
  end
  return worst, at
end

local function tensor_near(state, arguments)
  local actual, expected, tol = arguments[1], arguments[2], arguments[3] or 1e-5
  local sa, se = shape_of(actual), shape_of(expected)
  if type(expected) ~= "number" and table.concat(sa, ",") ~= table.concat(se, ",") then
    state.failure_message = string.format("shapes differ: actual (%s), expected (%s)",
      table.concat(sa, ", "), table.concat(se, ", "))
    return false
  end
  if type(expected) == "number" then
    local n = #values(actual)
    local e = {}
    for i = 1, n do e[i] = expected end
    expected = e
  end
  local worst, at = helper.max_diff(actual, expected)
  if worst > tol then
    local a, e = values(actual), values(expected)
    state.failure_message = string.format(
      "tensors differ at element %d: actual %s, expected %s (scaled difference %.3g > tol %.3g)",
      at, tostring(a[at]), tostring(e[at]), worst, tol)
    return false
  end
  return true
end

say:set("assertion.tensor_near.positive", "Expected tensors to be near")
say:set("assertion.tensor_near.negative", "Expected tensors not to be near")
luassert:register("assertion", "tensor_near", tensor_near,
  "assertion.tensor_near.positive", "assertion.tensor_near.negative")

--- Finite-difference gradient check.
-- fn(...) takes the inputs (tensors) and returns a tensor. For each input that requires grad,
-- d/dx of L = sum(fn(x) * w) by backward is compared with (L(x+eps) - L(x-eps)) / (2 eps),
-- L evaluated in double on the Lua side. Returns the worst relative error seen:
-- |analytic - numeric| / max(1, |analytic|, |numeric|) over all elements.
-- opts: eps (default 1e-2), seed for w.
function helper.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps = opts.eps or 1e-2
  local g = fs.generator(opts.seed or 7)
  local out = fn(table.unpack(inputs))
  local w = fs.randn(out:shape(), {generator = g})
  local wv = values(w)
  local function loss_value()
    local o = fs.no_grad(fn, table.unpack(inputs))
    local ov, s = values(o), 0.0
    for i = 1, #ov do s = s + ov[i] * wv[i] end
    return s
  end
  for _, x in ipairs(inputs) do if x:requires_grad() then x.grad = nil end end
  ;(out * w):sum():backward()
  local worst = 0
  for k, x in ipairs(inputs) do
    if x:requires_grad() then
      local analytic = values(x.grad)
      local n = x:numel()
      local shape = x:shape()
      for flat = 1, n do
        -- 1-based multi-index of element `flat` in row-major order
        local idx, r = {}, flat - 1
        for d = #shape, 1, -1 do idx[d] = r % shape[d] + 1; r = r // shape[d] end
        local orig = x:get(table.unpack(idx))
        local function at(v)
          fs.no_grad(function()
            local args = {table.unpack(idx)}; args[#args + 1] = v
            x:set(table.unpack(args))
          end)
          return loss_value()
        end
        local numeric = (at(orig + eps) - at(orig - eps)) / (2 * eps)
        at(orig)
        local a = analytic[flat]
        local err = math.abs(a - numeric) / math.max(1, math.abs(a), math.abs(numeric))
        if err > worst then worst = err end
        if opts.verbose and err > (opts.tol or 1e-2) then
          print(string.format("input %d element %d: analytic %g numeric %g", k, flat, a, numeric))
        end
      end
    end
  end
  return worst
end

--- Reads a text fixture: blocks of "name ndim d1 ... dn" followed by the values.
function helper.load_fixture(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("a")
  f:close()
  local out, pos = {}, 1
  local words = {}
  for w in text:gmatch("%S+") do words[#words + 1] = w end
  while pos <= #words do
    local name = words[pos]; pos = pos + 1
    local nd = tonumber(words[pos]); pos = pos + 1
    local shape, n = {}, 1
    for d = 1, nd do shape[d] = tonumber(words[pos]); pos = pos + 1; n = n * shape[d] end
    local vals = {}
    for i = 1, n do vals[i] = tonumber(words[pos]); pos = pos + 1 end
    local t = fs.tensor(vals)
    out[name] = nd == 0 and t:view({}) or t:view(shape)
  end
  return out
end

--- Resident memory of this process in MB (Linux /proc).
function helper.rss_mb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  for line in f:lines() do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then f:close(); return tonumber(kb) / 1024 end
  end
  f:close()
end

--- A fresh temporary file name ending in ext (the file does not exist yet).
function helper.tmpname(ext)
  local n = os.tmpname()
  os.remove(n)
  return n .. (ext or "")
end

--- The whole content of a file as a string.
function helper.read_bytes(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- The whole content of a file, or nil when it cannot be opened.
function helper.read_or_nil(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- A new empty directory under /tmp (the caller removes it).
function helper.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

--- Writes s as the whole content of a file.
function helper.write_bytes(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

--- Calls fn, which must raise; each further argument must appear in the message (plain
-- text). Returns the message.
function helper.raises_with(fn, ...)
  local ok, err = pcall(fn)
  luassert.is_false(ok, "expected an error")
  err = tostring(err)
  for _, words in ipairs({...}) do
    luassert.truthy(err:find(words, 1, true), ("'%s' not in: %s"):format(words, err))
  end
  return err
end

return helper
