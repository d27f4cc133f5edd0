--- bench/run.lua - `make bench`: each workload of bench/workloads.lua in fresh processes, ours
-- and PyTorch's (bench/compare_torch.py, when /usr/bin/python3 has torch) alternating, and a
-- table of the best per-process figures with the ratio ours / PyTorch next to its target.
--
-- On a shared machine other jobs only ever add time, and at 2 threads a busy core stalls every
-- OpenMP barrier (ours and PyTorch's alike), so the table shows the lowest per-process median
-- over ROUNDS rounds, and the load average (/proc/loadavg) before each workload's rounds.
-- Peak RSS is VmHWM of the process (the lowest over the rounds: it varies little).
--
-- Usage: lua5.4 bench/run.lua [--group all|protonet|prnet|resnet] [--only name,name] [--rounds N]
--                             [--no-torch]
--        (make bench BENCH=protonet passes --group protonet; --only: those workloads alone)
local fs = require "fewshot"

local args = {}
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--group" or a == "--rounds" or a == "--only" then args[a:sub(3)] = arg[i + 1]; i = i + 2
    else args[a:sub(3)] = true; i = i + 1 end
  end
end
local GROUP = args.group or "all"
local ROUNDS = tonumber(args.rounds) or 3
local ONLY
if args.only then
  ONLY = {}
  for n in args.only:gmatch("[^,]+") do ONLY[n] = true end
end

-- unit: what one timed unit is; per: images (or patches) per unit, for the throughput column;
-- target = {time ratio, RSS ratio} against PyTorch, or ms = an absolute bound on our time
local WORKLOADS = {
  {group = "protonet", name = "proto_episode", reps = 10, per = 27, unit = "episode",
   desc = "ProtoNet episode 27x1x32x32, 2 thr", target = {0.8, 0.6}},
  {group = "protonet", name = "proto_episode1", reps = 10, per = 27, unit = "episode",
   desc = "ProtoNet episode 27x1x32x32, 1 thr", target = {0.8, 0.6}},
  {group = "protonet", name = "proto_eval1000", reps = 10, per = 27, unit = "episode", rounds = 2,
   desc = "ProtoNet eval 1000 ep., per episode, 2 thr", target = {0.8, 0.6}},
  {group = "protonet", name = "proto_eval1000_cached", reps = 10, per = 27, unit = "episode", rounds = 2,
   desc = "ProtoNet eval 1000 ep., embed once, 2 thr", target = {0.8, 0.6}},
  {group = "prnet", name = "prnet32_t2", reps = 6, per = 64, unit = "step",
   desc = "PRNet step 32 pairs 32x32, 2 thr", target = {0.8, 0.5}},
  {group = "prnet", name = "prnet32_t1", reps = 6, per = 64, unit = "step",
   desc = "PRNet step 32 pairs 32x32, 1 thr", target = {0.8, 0.5}},
  {group = "prnet", name = "prnet64_t2", reps = 4, per = 64, unit = "step",
   desc = "PRNet step 32 pairs 64x64, 2 thr", target = {0.8, 0.5}},
  {group = "prnet", name = "prnet64_t1", reps = 4, per = 64, unit = "step",
   desc = "PRNet step 32 pairs 64x64, 1 thr", target = {0.8, 0.5}},
  {group = "prnet", name = "localize", reps = 10, per = 30, unit = "query",
   desc = "localize 6 landmarks, 2x15 patches, 1 thr", ms = 5},
  {group = "prnet", name = "localize_per_landmark", reps = 4, per = 105, unit = "query",
   desc = "localize, 15 fine patches per landmark", ms = nil},
  {group = "prnet", name = "localize_api", reps = 10, per = 30, unit = "query",
   desc = "fs.prnet.localize, 6 landmarks, 1 thr", ms = 5},
  {group = "resnet", name = "resnet64_train2", reps = 6, per = 27, unit = "step",
   desc = "ResNet-18 3x64x64 step, batch 27, 2 thr"},
  {group = "resnet", name = "resnet64_infer27", reps = 10, per = 27, unit = "batch",
   desc = "ResNet-18 3x64x64 inference 27, 2 thr"},
  {group = "resnet", name = "resnet64_lat1", reps = 20, per = 1, unit = "image",
   desc = "ResNet-18 3x64x64 latency 1, 1 thr"},
}

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("l"):match("^(%S+ %S+ %S+)")
  f:close()
  return s
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local lua = arg[-1] or "lua5.4"
local dir = (arg[0]:match("^(.*)/[^/]*$") or ".")

-- runs one child; returns ms, rss_kb or nil, reason
local function run_child(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  p:close()
  local ms, rss = out:match("RESULT %S+ ([%d%.]+) (%d+)")
  if ms then return tonumber(ms), tonumber(rss) end
  local why = out:match("MISSING %S+ ([^\n]*)")
  return nil, why or ("failed: " .. out:sub(-400))
end

local has_torch = false
if not args["no-torch"] then
  local p = io.popen("/usr/bin/python3 -c 'import torch; print(torch.__version__)' 2>/dev/null")
  local v = p and p:read("a") or ""
  if p then p:close() end
  has_torch = v:match("%d") ~= nil
  if has_torch then has_torch = v:match("^%s*(.-)%s*$") end
end

local t_start = fs.clock()
print(string.format("fewshot %s bench, group %s: per process the median of its runs after a "
  .. "warm-up; best of %d processes (ours and PyTorch %s alternating)", fs._VERSION, GROUP, ROUNDS,
  has_torch or "(not installed)"))
print(string.format("%s, load average at start %s", os.date("!%Y-%m-%d %H:%M UTC"), loadavg()))
print()
local head = string.format("%-42s %9s %8s %7s | %9s %7s | %6s %6s %6s %6s | %-14s",
  "workload", "ms/unit", "img/s", "RSS MB", "torch ms", "RSS MB", "time", "target", "RSS", "target",
  "load before")
print(head)
print(("-"):rep(#head))
local rows = {}
for _, w in ipairs(WORKLOADS) do
  if (ONLY and ONLY[w.name]) or (not ONLY and (GROUP == "all" or GROUP == w.group)) then
    local la = loadavg()
    local ms, rss, tms, trss, why
    for _ = 1, math.min(w.rounds or ROUNDS, ROUNDS) do
      local m, r = run_child(string.format("%s %s %s %d", sh_quote(lua),
        sh_quote(dir .. "/workloads.lua"), w.name, w.reps))
      if not m then why = r; break end
      if not ms or m < ms then ms = m end
      if not rss or r < rss then rss = r end
      if has_torch then
        local tm, tr = run_child(string.format("/usr/bin/python3 %s %s %d",
          sh_quote(dir .. "/compare_torch.py"), w.name, w.reps))
        if tm and (not tms or tm < tms) then tms = tm end
        if tm and (not trss or tr < trss) then trss = tr end
      end
    end
    if not ms then
      print(string.format("%-42s %s", w.desc, why))
    else
      local tr = tms and ms / tms
      local rr = trss and rss / trss
      local tt, rt = "-", "-"
      local ok = true
      if w.target then
        tt, rt = string.format("<=%.1fx", w.target[1]), string.format("<=%.1fx", w.target[2])
        if tr and tr > w.target[1] then ok = false end
        if rr and rr > w.target[2] then ok = false end
      elseif w.ms then
        tt = string.format("<%gms", w.ms)
        ok = ms < w.ms
      end
      local verdict = (w.target or w.ms) and (ok and "" or "  MISSED") or ""
      print(string.format("%-42s %9.2f %8.0f %7.0f | %9s %7s | %6s %6s %6s %6s | %-14s%s",
        w.desc, ms, w.per / (ms / 1000), rss / 1024,
        tms and string.format("%.2f", tms) or "-", trss and string.format("%.0f", trss / 1024) or "-",
        tr and string.format("%.2fx", tr) or "-", tt, rr and string.format("%.2fx", rr) or "-", rt,
        la, verdict))
      rows[#rows + 1] = w
    end
    io.stdout:flush()
  end
end
print()
print("ms/unit: per episode, step or query; img/s: images (patches) through the network per second;")
print("time, RSS = ours / PyTorch (lower is better); RSS = peak resident set (VmHWM) of the process;")
print(string.format("load average at the end %s; the whole bench took %.0f s", loadavg(),
  fs.clock() - t_start))
