--- fewshot.data: datasets and the few-shot inputs made from them.
-- * `fs.data.folder` / `fs.data.save_folder`: a user's own PNG slices with masks and landmarks,
--   in the item form of fewshot.spect.dataset (fewshot.data.folder);
-- * `fs.data.tissues` / `fs.data.augment`: one sample per tissue of each item, cropped,
--   resized and normalised (fewshot.data.tissues);
-- * `fs.data.episodes` / `fs.data.episode_iter`: N-way K-shot episodes (fewshot.data.episodes).
-- @module fewshot.data
local M = {}

for _, name in ipairs({"fewshot.data.folder", "fewshot.data.tissues", "fewshot.data.episodes"}) do
  for k, v in pairs(require(name)) do M[k] = v end
end

return M
