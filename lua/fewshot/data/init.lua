--- fewshot.data: datasets and the few-shot inputs made from them.
-- * `fs.data.folder` / `fs.data.save_folder`: a user's own PNG slices with masks and landmarks,
--   in the item form of fewshot.spect.dataset (fewshot.data.folder);
-- * `fs.data.tissues` / `fs.data.augment`: one sample per tissue of each item, cropped,
--   resized and normalised (fewshot.data.tissues);
-- * `fs.data.episodes` / `fs.data.episode_iter`: N-way K-shot episodes (fewshot.data.episodes);
-- * `fs.data.mps(root, opts)`: PhysioNet's myocardial perfusion SPECT database (DICOM NM volumes,
--   NIfTI wall masks) as items, one per slice (fewshot.data.mps);
-- * `fs.data.idx(path)`: an IDX file (MNIST's format, .gz too) as a float32 tensor of its
--   stored values, header checked against the data (C: fs.io.load_idx).
-- @module fewshot.data
local core = require "fewshot.core"

local M = {}

--- An IDX file (plain or gzip) as a float32 tensor of the stored shape and values.
-- @tparam string path e.g. "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
-- @treturn Tensor (N, 28, 28) images 0..255, or (N) labels 0..9 for (Fashion-)MNIST
function M.idx(path)
  return core.io.load_idx(path)
end

for _, name in ipairs({"fewshot.data.folder", "fewshot.data.tissues", "fewshot.data.episodes",
                       "fewshot.data.mps"}) do
  for k, v in pairs(require(name)) do M[k] = v end
end

return M
