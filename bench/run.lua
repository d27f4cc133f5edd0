--- bench/run.lua - `make bench`: ResNet-18 workloads, ours and (when /usr/bin/python3 has
-- torch) PyTorch's from bench/compare_torch.py, each workload in its own process so that the
-- peak RSS (VmHWM) belongs to that workload alone.
--
--   train2   ProtoNet training step, 2 threads: 27 images 3x64x64 (3-way, 3 support + 6 query),
--            forward (train mode), prototypes = class means of the support embeddings, squared
--            distances (fs.cdist2), log-softmax NLL (cross_entropy of -distances), backward,
--            Adam step
--   train1   the same at 1 thread
--   infer27  inference (eval mode, no grad), batch 27 at 64x64, 2 threads
--   lat1     batch-1 latency at 64x64, 1 thread
--
-- Each workload runs in ROUNDS fresh processes, ours and PyTorch's alternating, and the table
-- shows the lowest of the per-process medians: on a shared machine other jobs only ever add
-- time, and at 2 threads a busy core stalls every OpenMP barrier.
--
-- Usage: lua5.4 bench/run.lua [--reps N] [--rounds N] [--no-torch]
--        lua5.4 bench/run.lua --only train2 [--reps N]   (one workload; prints a RESULT line)
local fs = require "fewshot"

local args = {}
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--only" or a == "--reps" then args[a:sub(3)] = arg[i + 1]; i = i + 2
    else args[a:sub(3)] = true; i = i + 1 end
  end
end
local REPS = tonumber(args.reps) or 10
local ROUNDS = tonumber(args.rounds) or 3

local WORKLOADS = {
  {name = "train2", threads = 2, batch = 27, train = true, desc = "ProtoNet train step, batch 27, 2 thr"},
  {name = "train1", threads = 1, batch = 27, train = true, desc = "ProtoNet train step, batch 27, 1 thr"},
  {name = "infer27", threads = 2, batch = 27, train = false, desc = "inference batch 27, 2 thr"},
  {name = "lat1", threads = 1, batch = 1, train = false, desc = "latency batch 1, 1 thr"},
}
local BY_NAME = {}
for _, w in ipairs(WORKLOADS) do BY_NAME[w.name] = w end

--- Forward FLOPs of ResNet-18 (embedding) for one HxW image: 2 * MACs of every conv, plus the
-- small elementwise work ignored. Training counts 3x (forward, dx, dw) minus conv1's dx.
local function resnet18_flops(h, w, cin)
  local total = 0
  local function conv(c, o, k, s, p)
    local oh = (h + 2 * p - k) // s + 1
    local ow = (w + 2 * p - k) // s + 1
    total = total + 2.0 * c * o * k * k * oh * ow
    h, w = oh, ow
  end
  conv(cin, 64, 7, 2, 3)
  local conv1_flops = total
  h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1 -- maxpool
  local c = 64
  for l = 1, 4 do
    local o = 64 * 2 ^ (l - 1) // 1
    for b = 1, 2 do
      local s = (l > 1 and b == 1) and 2 or 1
      if s ~= 1 or c ~= o then -- downsample 1x1/2 on the block input
        local hh, ww = h, w
        conv(c, o, 1, s, 0)
        h, w = hh, ww
      end
      conv(c, o, 3, s, 1)
      conv(o, o, 3, 1, 1)
      c = o
    end
  end
  return total, conv1_flops
end

local function peak_gflops(threads)
  -- cores * FMA units (2) * lanes * 2 flops * GHz; lanes 16 with AVX-512, 8 with AVX2
  local f = io.open("/proc/cpuinfo")
  local info = f and f:read("a") or ""
  if f then f:close() end
  local mhz = tonumber(info:match("cpu MHz%s*:%s*([%d%.]+)")) or 2000
  local lanes = info:find(" avx512f") and 16 or (info:find(" avx2") and 8 or 4)
  return threads * 2 * lanes * 2 * mhz / 1000, mhz, lanes
end

local function vmhwm_kb()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local n = #c
  return n % 2 == 1 and c[(n + 1) // 2] or (c[n // 2] + c[n // 2 + 1]) / 2
end

local function run_one(w)
  fs.set_num_threads(w.threads)
  local g = fs.generator(1)
  local model = fs.nn.resnet18{in_channels = 3, seed = 1}
  local x = fs.randn({w.batch, 3, 64, 64}, {generator = g})
  local times = {}
  if w.train then
    local opt = fs.optim.adam(model, {lr = 1e-3})
    local labels = {}
    for i = 1, 18 do labels[i] = (i - 1) // 6 + 1 end -- query: 6 per class, class-major
    model:train()
    local function step()
      opt:zero_grad()
      local emb = model(x)                                       -- (27, 512)
      local protos = emb:narrow(1, 1, 9):view(3, 3, 512):mean(2) -- (3, 512)
      local query = emb:narrow(1, 10, 18)                        -- (18, 512)
      local logits = -fs.cdist2(query, protos)                   -- (18, 3)
      local loss = fs.nn.functional.cross_entropy(logits, labels)
      loss:backward()
      opt:step()
      return loss
    end
    for r = 0, REPS do
      local t0 = fs.clock()
      step()
      local t1 = fs.clock()
      if r > 0 then times[#times + 1] = (t1 - t0) * 1000 end
    end
  else
    model:eval()
    fs.no_grad(function()
      for r = 0, REPS do
        local t0 = fs.clock()
        local y = model(x)
        local t1 = fs.clock()
        y:close()
        if r > 0 then times[#times + 1] = (t1 - t0) * 1000 end
      end
    end)
  end
  return median(times), vmhwm_kb()
end

if args.only then
  local w = assert(BY_NAME[args.only], "unknown workload " .. tostring(args.only))
  local ms, rss = run_one(w)
  print(string.format("RESULT %s %.3f %d", w.name, ms, rss))
  return
end

-- ---- driver ----
local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local lua = arg[-1] or "lua5.4"
local script = arg[0]

local function run_child(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  p:close()
  local name, ms, rss = out:match("RESULT (%S+) ([%d%.]+) (%d+)")
  if not name then return nil, out end
  return tonumber(ms), tonumber(rss)
end

local has_torch = false
if not args["no-torch"] then
  local p = io.popen("/usr/bin/python3 -c 'import torch' 2>/dev/null && echo yes")
  has_torch = p and p:read("a"):find("yes") ~= nil
  if p then p:close() end
end

local flops_fwd, conv1 = resnet18_flops(64, 64, 3)
local mhz_peak, mhz, lanes = peak_gflops(1)
print(string.format("fewshot %s bench: ResNet-18 at 64x64; per process the median of %d runs after "
  .. "1 warm-up, best of %d processes", fs._VERSION, REPS, ROUNDS))
print(string.format("peak %.0f GFLOP/s per core (%.0f MHz, %d-lane FMA)", mhz_peak, mhz, lanes))
print(string.format("forward %.3f GFLOP/image; a training step of 27 images %.1f GFLOP", flops_fwd / 1e9,
  27 * (3 * flops_fwd - conv1) / 1e9))
do -- timings on a shared machine depend on what else runs: say so
  local f = io.open("/proc/loadavg")
  if f then
    print("load average before the run: " .. f:read("l"):match("^(%S+ %S+ %S+)"))
    f:close()
  end
end
print()
print(string.format("%-38s %9s %8s %7s %6s %8s | %9s %8s | %6s %6s",
  "workload", "ms", "img/s", "GFLOP/s", "%peak", "RSS MB", "torch ms", "torch MB", "ratio", "RSS"))
for _, w in ipairs(WORKLOADS) do
  local ms, rss, tms, trss, err
  for _ = 1, ROUNDS do
    local m, r = run_child(string.format("%s %s --only %s --reps %d", sh_quote(lua),
      sh_quote(script), w.name, REPS))
    if not m then err = r; break end
    if not ms or m < ms then ms = m end
    if not rss or r > rss then rss = r end
    if has_torch then
      local tm, tr = run_child(string.format("/usr/bin/python3 bench/compare_torch.py %s %d",
        w.name, REPS))
      if tm and (not tms or tm < tms) then tms = tm end
      if tr and (not trss or tr > trss) then trss = tr end
    end
  end
  if not ms then
    print(w.name .. " failed: " .. tostring(err))
  else
    local flops = w.batch * (w.train and (3 * flops_fwd - conv1) or flops_fwd)
    local gfs = flops / (ms / 1000) / 1e9
    print(string.format("%-38s %9.1f %8.1f %7.1f %5.0f%% %8.0f | %9s %8s | %6s %6s",
      w.desc, ms, w.batch / (ms / 1000), gfs, 100 * gfs / (mhz_peak * w.threads), rss / 1024,
      tms and string.format("%.1f", tms) or "-", trss and string.format("%.0f", trss / 1024) or "-",
      tms and string.format("%.2fx", ms / tms) or "-",
      trss and string.format("%.2fx", rss / trss) or "-"))
  end
end
print()
print("ratio = ours / PyTorch (lower is better); RSS = peak resident set (VmHWM) of the process")
