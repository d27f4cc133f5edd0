--- fewshot.prnet: PRNet-2D (Lei et al.'s RPR-Loc in 2D): self-supervised training on random
-- pairs of patches and one-shot landmark localisation, measured against baselines in mm.
-- * `pairs`, `sampler`: training pairs with their offsets (fewshot.prnet.pairs);
-- * `loss`: L = L_dis + w L_rec (fewshot.prnet.loss);
-- * `train`: Adam, validation in mm, atomic checkpoints, exact resume (fewshot.prnet.train);
-- * `localize`, `localizer`: coarse, fine and NCC-refined localisation (fewshot.prnet.localize);
-- * `evaluate`: PRNet and the baselines in one table (fewshot.prnet.evaluate);
-- * `baselines`, `format`: identity, NCC and windowed NCC, and the table printer
--   (fewshot.prnet.baselines). The model itself is fs.nn.prnet (C).
-- @module fewshot.prnet
local baselines = require "fewshot.prnet.baselines"
local pairs_ = require "fewshot.prnet.pairs"

local M = {}

M.baselines = baselines.evaluate
M.format = baselines.format
M.pairs = pairs_.pairs
M.sampler = pairs_.sampler
M.loss = require("fewshot.prnet.loss").loss
M.train = require("fewshot.prnet.train").train
M.localize = require("fewshot.prnet.localize").localize
M.localizer = require("fewshot.prnet.localize").localizer
M.evaluate = require("fewshot.prnet.evaluate").evaluate

return M
