-- bench/tensor_bench.lua: the foundation's figures. matmul n x n through the binding vs
-- cblas_sgemm called directly from C (build/bench-cblas), and elementwise/reduction throughput
-- at 1 and 2 threads (2 must not be slower). Medians of repeated runs.
local fs = require "fewshot"

local now = function() return fs.clock() * 1e3 end -- monotonic wall clock, ms

local function time_ms(fn, inner, runs)
  local samples = {}
  fn()
  for r = 1, runs do
    local t0 = now()
    for _ = 1, inner do fn() end
    samples[r] = (now() - t0) / inner
  end
  table.sort(samples)
  return samples[(runs + 1) // 2]
end

local function cblas(n, threads)
  local f = io.popen(string.format("build/bench-cblas %d 21 %d", n, threads))
  local line = f:read("l"); f:close()
  local _, ms, gf = line:match("(%d+) (%S+) (%S+)")
  return tonumber(ms), tonumber(gf)
end

local n0 = fs.get_num_threads()
print("== tensors: matmul through the binding vs cblas_sgemm directly ==")
print(string.format("%-22s %8s %9s %9s %9s %7s", "workload", "threads", "ms", "GFLOP/s", "cblas GF", "ratio"))
for _, threads in ipairs({1, n0}) do
  fs.set_num_threads(threads)
  for _, n in ipairs({128, 512, 1024}) do
    local g = fs.generator(1)
    local a, b = fs.rand({n, n}, {generator = g}), fs.rand({n, n}, {generator = g})
    local inner = n <= 128 and 200 or (n <= 512 and 10 or 2)
    local ms = time_ms(function() local c = a:matmul(b); c:close() end, inner, 7)
    local gf = 2 * n ^ 3 / (ms * 1e6)
    local _, cgf = cblas(n, threads)
    print(string.format("%-22s %8d %9.3f %9.1f %9.1f %6.2fx", "matmul " .. n .. "x" .. n, threads, ms, gf, cgf, gf / cgf))
  end
end

print("\n== tensors: elementwise and reductions, 4M floats ==")
print(string.format("%-22s %9s %9s %9s", "workload", "1 thread", n0 .. " threads", "speed-up"))
local g = fs.generator(2)
local x, y = fs.rand({2048, 2048}, {generator = g}), fs.rand({2048, 2048}, {generator = g})
local work = {
  {"add", function() local z = x + y; z:close() end},
  {"exp", function() local z = x:exp(); z:close() end},
  {"broadcast mul (row)", function() local z = x * y:select(1, 1); z:close() end},
  {"sum dim 2", function() local z = x:sum(2); z:close() end},
  {"transpose+contiguous", function() local z = x:transpose(1, 2):contiguous(); z:close() end},
}
for _, w in ipairs(work) do
  fs.set_num_threads(1)
  local t1 = time_ms(w[2], 10, 5)
  fs.set_num_threads(n0)
  local t2 = time_ms(w[2], 10, 5)
  print(string.format("%-22s %8.2fms %8.2fms %8.2fx", w[1], t1, t2, t1 / t2))
end
fs.set_num_threads(n0)
