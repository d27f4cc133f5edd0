--- fewshot.prnet.checkpoint: atomic checkpoints for fs.prnet.train, in the layout of
-- fs.protonet.train's (its serializer restated here to keep the two modules apart; a shared
-- module would serve both):
--
--     DIR/last.lua                                  the state: step, generators, history, config
--     DIR/last-<step>.model.safetensors, DIR/last-<step>.optim.safetensors
--
-- The weights are written first (each to a temporary renamed into place), the state file last,
-- the same way: its rename is the commit, so a checkpoint is never half-written. The files the
-- replaced state named are removed after the commit.
-- @module fewshot.prnet.checkpoint
local M = {}

M.FORMAT = "fewshot.prnet.checkpoint/1"

-- numbers as hex floats, so a state reads back bit for bit
local function ser(v, out, indent)
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
    for i = 1, n do ser(v[i], out, indent); out[#out + 1] = "," end
    local keys = {}
    for k in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      out[#out + 1] = "\n" .. indent .. "  ["
      ser(k, out, indent)
      out[#out + 1] = "] = "
      ser(v[k], out, indent .. "  ")
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else
    error("prnet.train: cannot save a " .. t .. " in a checkpoint state", 0)
  end
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then error(("prnet.train: cannot write %s (%s)"):format(tmp, err), 0) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error(("prnet.train: cannot rename %s to %s (%s)"):format(tmp, path, rerr), 0) end
end

local function read_text(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a") -- nil for a directory
  f:close()
  return text
end

local function parse(text, path)
  local chunk = load(text, "=" .. path, "t", {})
  if not chunk then return nil end
  local ok, state = pcall(chunk)
  if ok and type(state) == "table" and state.format == M.FORMAT then return state end
  return nil
end

--- Reads a state file, or DIR/last.lua for a directory: returns the state and its directory.
function M.read(path)
  local text = read_text(path)
  if not text then
    text = read_text(path .. "/last.lua")
    if not text then error(("prnet.train: resume: no checkpoint state at %s"):format(path), 0) end
    path = path .. "/last.lua"
  end
  local state = parse(text, path)
  if not state then error(("prnet.train: resume: %s is not a checkpoint state"):format(path), 0) end
  return state, path:match("^(.*)/[^/]*$") or "."
end

--- Writes DIR/<tag>.lua and the weight files it names (state.step numbers them).
function M.save(dir, tag, model, opt, state)
  local stem = ("%s-%06d"):format(tag, state.step)
  state.format = M.FORMAT
  state.model_file, state.optim_file = stem .. ".model.safetensors", stem .. ".optim.safetensors"
  model:save(dir .. "/" .. state.model_file)
  opt:save(dir .. "/" .. state.optim_file)
  local out = {"-- fewshot.prnet checkpoint state (the weights are in the files it names)\nreturn "}
  ser(state, out, "")
  out[#out + 1] = "\n"
  local spath = dir .. "/" .. tag .. ".lua"
  local old = read_text(spath)
  local previous = old and parse(old, spath)
  write_atomic(spath, table.concat(out))
  if previous then
    for _, k in ipairs({"model_file", "optim_file"}) do
      if previous[k] and previous[k] ~= state[k] then os.remove(dir .. "/" .. previous[k]) end
    end
  end
end

return M
