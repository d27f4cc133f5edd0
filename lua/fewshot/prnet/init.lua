--- fewshot.prnet: one-shot landmark localisation (PRNet-2D, after Lei et al. 2021).
-- For now only the baselines a learned localiser must beat: fs.prnet.baselines(support,
-- query, opts) and fs.prnet.format(result) (see fewshot.prnet.baselines). The model (in C)
-- and its training and localisation in Lua come later.
-- @module fewshot.prnet
local baselines = require "fewshot.prnet.baselines"

local M = {}

M.baselines = baselines.evaluate
M.format = baselines.format

return M
