-- examples/prnet_localize.lua: the PRNet-2D localisation section on its own: trains coarse and
-- fine PRNet-2D models on 12 simulated patients, localises six landmarks on 40 held-out ones
-- from one marked support, and prints the error table beside the three baselines, the final
-- loss terms and the figure files (fewshot.prnet.experiment does the work; the main job calls
-- the same function).
-- Usage: lua5.4 examples/prnet_localize.lua [--quick] [--cohort realistic|default] [--out DIR]
--        [--seed N] [--save FILE] (FILE: the errors per method and landmark as a Lua table)
local fs = require "fewshot"
local experiment = require "fewshot.prnet.experiment"

local opts, out, save = {}, "out/prnet", nil
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--quick" then opts.quick = true
  elseif a == "--cohort" then i = i + 1; opts.cohort = arg[i]
  elseif a == "--out" then i = i + 1; out = arg[i]
  elseif a == "--progress" then opts.progress = true
  elseif a == "--seed" then i = i + 1; opts.seed = math.tointeger(tonumber(arg[i]))
  elseif a == "--save" then i = i + 1; save = arg[i]
  else io.stderr:write("prnet_localize: unknown argument " .. a .. "\n"); os.exit(2) end
  i = i + 1
end
fs.set_flush_denormal(true)
assert(os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'"))
opts.figures = out
local t0 = fs.clock()
local r = experiment.run(opts)
print(r.text)
local h = r.history
print(("coarse: final loss %.4f = L_dis %.4f + L_rec %.4f (L_dis in offsets / r, r = %g mm)")
  :format(h.loss[#h.loss], h.dis[#h.dis], h.rec[#h.rec], r.settings.r))
local f = r.fine_history
print(("fine:   final loss %.4f = L_dis %.4f + L_rec %.4f (r = %g mm)")
  :format(f.loss[#f.loss], f.dis[#f.dis], f.rec[#f.rec], r.settings.fine_r))
print(("train %.1f s, evaluate %.1f s, total %.1f s"):format(r.seconds.train, r.seconds.evaluate,
  fs.clock() - t0))
for name, p in pairs(r.figures) do print("figure", name, p) end
if save then -- method -> {pooled = {mean, median, p95}, by_landmark = {...}}, and the final losses
  local lines = {"return {"}
  for m, v in pairs(r.result.methods) do
    lines[#lines + 1] = ("  [%q] = {pooled = {%.17g, %.17g, %.17g}, by = {"):format(m, v.pooled.mean,
      v.pooled.median, v.pooled.p95)
    for name, s in pairs(v.by_landmark) do
      lines[#lines + 1] = ("    [%q] = {%.17g, %.17g, %.17g},"):format(name, s.mean, s.median, s.p95)
    end
    lines[#lines + 1] = "  }},"
  end
  lines[#lines + 1] = ("  _loss = {dis = %.17g, rec = %.17g, fine_dis = %.17g, fine_rec = %.17g},"):format(
    h.dis[#h.dis], h.rec[#h.rec], f.dis[#f.dis], f.rec[#f.rec])
  lines[#lines + 1] = ("  _seconds = {train = %.17g, evaluate = %.17g},"):format(r.seconds.train, r.seconds.evaluate)
  lines[#lines + 1] = "}"
  local fh = assert(io.open(save .. ".tmp", "w"))
  fh:write(table.concat(lines, "\n"), "\n")
  fh:close()
  assert(os.rename(save .. ".tmp", save))
end
