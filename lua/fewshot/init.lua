--- fewshot: few-shot learning on medical images (SPECT first), a Lua 5.4 module in C.
-- `local fs = require "fewshot"` gives tensors with autograd (`fs.tensor`, `fs.zeros`, ...),
-- and submodules by task: `fs.nn`, `fs.optim`, `fs.io`, `fs.image`, `fs.data`, `fs.spect`,
-- `fs.protonet`, `fs.prnet`. All numbers are computed in C (fewshot.core).
-- Conventions: indices, dims and labels are 1-based; every random choice takes a seed or
-- a generator (`fs.generator(seed)`); gradients accumulate until `zero_grad`.
-- @module fewshot
local core = require "fewshot.core"

local fs = {}
for k, v in pairs(core) do fs[k] = v end

--- Submodules written in Lua, loaded on first use (so `require "fewshot"` stays cheap).
local lazy = {}
lazy.spect = "fewshot.spect"; fs.spect = nil -- the Lua front re-exports core.spect
lazy.data = "fewshot.data"
lazy.protonet = "fewshot.protonet"
lazy.prnet = "fewshot.prnet"; fs.prnet = nil -- training, localisation, baselines (fs.nn.prnet is C)
lazy.image = "fewshot.image"; fs.image = nil -- the Lua front re-exports core.image
lazy.plot = "fewshot.plot"
lazy.report = "fewshot.report"

--- fs.io.load_dicom_series(folder, opts): written in Lua (fewshot.dicom), added to the C
-- module's io table so it sits beside fs.io.load_dicom; fewshot.dicom loads on first call.
core.io.load_dicom_series = core.io.load_dicom_series or function(...)
  return require("fewshot.dicom").load_series(...)
end

setmetatable(fs, {
  __index = function(t, k)
    local name = lazy[k]
    if name then
      local m = require(name)
      rawset(t, k, m)
      return m
    end
  end,
})

return fs
