--- fewshot.protonet: Prototypical Networks (Snell et al. 2017) as in arXiv 2502.06632: a
-- backbone (fs.nn.resnet18{in_channels = 1} or any module giving (N, D)) trained on N-way
-- K-shot episodes of tissue samples (fs.data.tissues, fs.data.episodes).
-- * `loss`, `logits`: the episode loss and its logits (fewshot.protonet.loss);
-- * `train`: episodic Adam training with validation, best checkpoints and exact resume;
-- * `evaluate`, `loocv`, `ci95`: accuracy over fixed episodes with a 95% interval, per class
--   and as a confusion matrix; leave-one-patient-out; a pixel-space baseline;
-- * `pretrain`: supervised pre-training of the backbone with a linear head (the head discarded).
-- @module fewshot.protonet
local M = {}

for _, name in ipairs({"fewshot.protonet.loss", "fewshot.protonet.evaluate",
                       "fewshot.protonet.train", "fewshot.protonet.pretrain"}) do
  for k, v in pairs(require(name)) do M[k] = v end
end

return M
