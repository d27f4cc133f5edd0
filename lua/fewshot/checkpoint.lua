--- fewshot.checkpoint: atomic training checkpoints, shared by fs.protonet.train and
-- fs.prnet.train:
--
--     DIR/<tag>.lua                                   the state: counter, generators, history, config
--     DIR/<tag>-<counter>.model.safetensors, DIR/<tag>-<counter>.optim.safetensors
--
-- The weights are written first (each to a temporary renamed into place), the state file last,
-- the same way: its rename is the commit, so a checkpoint is never half-written. The files the
-- replaced state named are removed after the commit. Numbers are written as hex floats, so a
-- state reads back bit for bit (what an exact resume needs).
-- @module fewshot.checkpoint
local M = {}

-- numbers as hex floats, so a state reads back bit for bit
local function ser(v, out, indent, op)
  local t = type(v)
  if t == "number" then
    if math.type(v) == "integer" then out[#out + 1] = tostring(v)
    elseif v ~= v then out[#out + 1] = "0/0"
    elseif v == math.huge then out[#out + 1] = "1/0"
    elseif v == -math.huge then out[#out + 1] = "-1/0"
    else out[#out + 1] = ("%a"):format(v) end
  elseif t == "string" then out[#out + 1] = ("%q"):format(v)
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "table" then
    out[#out + 1] = "{"
    local n = #v
    for i = 1, n do ser(v[i], out, indent, op); out[#out + 1] = "," end
    local keys = {}
    for k in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      out[#out + 1] = "\n" .. indent .. "  ["
      ser(k, out, indent, op)
      out[#out + 1] = "] = "
      ser(v[k], out, indent .. "  ", op)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else
    error(op .. ": cannot save a " .. t .. " in a checkpoint state", 0)
  end
end

local function write_atomic(op, path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then error(("%s: cannot write %s (%s)"):format(op, tmp, err), 0) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error(("%s: cannot rename %s to %s (%s)"):format(op, tmp, path, rerr), 0) end
end

local function read_text(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a") -- nil for a directory
  f:close()
  return text
end

local function parse(text, path, format)
  local chunk = load(text, "=" .. path, "t", {})
  if not chunk then return nil end
  local ok, state = pcall(chunk)
  if ok and type(state) == "table" and state.format == format then return state end
  return nil
end

--- Reads a state file, or DIR/last.lua for a directory: returns the state and its directory.
-- @tparam string path a state file or a checkpoint directory
-- @tparam string op the caller's name for errors ("protonet.train")
-- @tparam string format the state's `format` field, checked
function M.read(path, op, format)
  local text = read_text(path)
  if not text then
    text = read_text(path .. "/last.lua")
    if not text then error(("%s: resume: no checkpoint state at %s"):format(op, path), 0) end
    path = path .. "/last.lua"
  end
  local state = parse(text, path, format)
  if not state then error(("%s: resume: %s is not a checkpoint state"):format(op, path), 0) end
  return state, path:match("^(.*)/[^/]*$") or "."
end

--- Writes DIR/<tag>.lua and the weight files it names, numbered by state[counter].
-- @tparam table how `{op=, format=, counter="step" | "episode"}`
function M.save(dir, tag, model, opt, state, how)
  local stem = ("%s-%06d"):format(tag, state[how.counter])
  state.format = how.format
  state.model_file, state.optim_file = stem .. ".model.safetensors", stem .. ".optim.safetensors"
  model:save(dir .. "/" .. state.model_file)
  opt:save(dir .. "/" .. state.optim_file)
  local out = {("-- %s checkpoint state (the weights are in the files it names)\nreturn "):format(how.op)}
  ser(state, out, "", how.op)
  out[#out + 1] = "\n"
  local spath = dir .. "/" .. tag .. ".lua"
  local old = read_text(spath)
  local previous = old and parse(old, spath, how.format)
  write_atomic(how.op, spath, table.concat(out))
  if previous then -- the files the replaced state named, unless this one names them too
    for _, k in ipairs({"model_file", "optim_file"}) do
      if previous[k] and previous[k] ~= state[k] then os.remove(dir .. "/" .. previous[k]) end
    end
  end
end

return M
