-- Resident memory over a long training loop with no collectgarbage(): a small conv net
-- (conv 1->8, batchnorm, relu, maxpool, linear) with Adam on fresh seeded data each step.
-- Prints "step  VmRSS MB  live tensor MB  cached MB  Lua heap MB" every `every` steps; the curve should
-- rise during the first steps (block cache, Lua heap, GC pacing) and then stay flat.
-- spec/durability_spec.lua runs a shorter form (3,000 steps) and bounds the growth.
--
--     lua5.4 bench/rss_flat.lua [steps=20000] [every=1000]
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("FS_CPATH") or "./?.so") .. ";" .. package.cpath
local fs = require "fewshot"
local F = fs.nn.functional

local steps = tonumber(arg[1]) or 20000
local every = tonumber(arg[2]) or 1000

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return kb
end

fs.manual_seed(1)
local model = fs.nn.sequential{
  fs.nn.conv2d{in_channels = 1, out_channels = 8, kernel = 3, padding = 1},
  fs.nn.batchnorm2d(8),
  fs.nn.relu(),
  fs.nn.maxpool2d{kernel = 2},
  fs.nn.flatten(),
  fs.nn.linear(8 * 8 * 8, 4),
}
local opt = fs.optim.adam(model, {lr = 1e-3})
model:train()
local labels = {}
for i = 1, 16 do labels[i] = (i - 1) % 4 + 1 end

print(string.format("%8s %10s %10s %10s %10s", "step", "rss_MB", "live_MB", "cached_MB", "lua_MB"))
local t0 = fs.clock()
for step = 1, steps do
  local x = fs.randn({16, 1, 16, 16})
  opt:zero_grad()
  local loss = F.cross_entropy(model(x), labels)
  loss:backward()
  opt:step()
  if step % every == 0 then
    local m = fs.memory()
    print(string.format("%8d %10.1f %10.2f %10.2f %10.2f", step, rss_kb() / 1024,
                        m.live_bytes / 2^20, m.cached_bytes / 2^20, collectgarbage("count") / 1024))
    io.stdout:flush()
  end
end
print(string.format("%d steps in %.1f s", steps, fs.clock() - t0))
