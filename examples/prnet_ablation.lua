-- examples/prnet_ablation.lua: the measurements behind README's "Landmark localisation (PRNet)"
-- table: trains a coarse (and optionally a fine) PRNet-2D on the 12 simulated training
-- patients (seed 1, whole 64 x 64 short-axis slices), then evaluates it on 40 held-out patients
-- (seed 2) against the three baselines, with every stage and refinement as its own row.
-- Usage: lua5.4 examples/prnet_ablation.lua COHORT(default|realistic) AUG(none|geo|all)
--        STEPS FINE_STEPS BASE SEED OUTDIR
local fs = require "fewshot"
fs.set_flush_denormal(true)
local cohort, aug = arg[1] or "realistic", arg[2] or "none"
local steps, fsteps = tonumber(arg[3] or 500), tonumber(arg[4] or 300)
local base, seed, out = tonumber(arg[5] or 8), tonumber(arg[6] or 1), arg[7] or "/tmp"
local variation = cohort == "realistic" and "realistic" or nil
local train = fs.spect.dataset{n = 12, seed = 1, crop = false, variation = variation}
local test = fs.spect.dataset{n = 40, seed = 2, crop = false, variation = variation}
local val = fs.spect.dataset{n = 5, seed = 3, crop = false, variation = variation}
local augments = {
  none = nil,
  geo = {rotate = 15, zoom = 0.1, translate = 4},
  int = {intensity = 0.2, boxes = 1},
  all = {rotate = 15, zoom = 0.1, translate = 4, intensity = 0.2, boxes = 1},
}
local t0 = fs.clock()
local coarse, hc = fs.prnet.train{images = train, patch = 32, r = 320, steps = steps, base = base,
  seed = seed, augment = augments[aug], val_images = val, val_every = 100, log_every = 100,
  progress = "lines"}
local tc = fs.clock() - t0
coarse:save(("%s/coarse-%s-%s-%d.safetensors"):format(out, cohort, aug, seed))
local fine, hf
if fsteps > 0 then
  t0 = fs.clock()
  fine, hf = fs.prnet.train{images = train, patch = 16, depth = 3, r = 48, fine = 4, steps = fsteps,
    base = base, seed = seed, augment = augments[aug], val_images = val, val_every = 100,
    log_every = 100, progress = "lines"}
  fine:save(("%s/fine-%s-%s-%d.safetensors"):format(out, cohort, aug, seed))
  print(("fine trained in %.0f s"):format(fs.clock() - t0))
end
print(("coarse trained in %.0f s; final loss %.4f = dis %.4f + rec %.4f (offsets in units of r)")
  :format(tc, hc.loss[#hc.loss], hc.dis[#hc.dis], hc.rec[#hc.rec]))
local variants = {["prnet+ncc3"] = {refine = {window = 3}}, ["prnet+ncc5"] = {refine = {window = 5}},
                  ["prnet-latents"] = {average = "latents"}}
if fine then
  variants["prnet+fine"] = {fine = fine, fine_r = 48}
  variants["prnet+fine2"] = {fine = fine, fine_r = 48, fine_steps = 2}
  variants["prnet+fine+ncc3"] = {fine = fine, fine_r = 48, refine = {window = 3}}
  variants["fine-only"] = {coarse = false, fine = fine, fine_r = 48}
end
for _, nsup in ipairs({1, 12}) do
  local support = {table.unpack(train, 1, nsup)}
  local r = fs.prnet.evaluate{coarse = coarse, r = 320, support = support, queries = test,
                              variants = variants}
  print(("== %s cohort, augment %s, seed %d, %d support(s)"):format(cohort, aug, seed, nsup))
  print(fs.prnet.format(r))
end
