--- bench/layers.lua - conv2d forward and backward times for ResNet-18's layer shapes
-- (batch 27, 3x64x64 input: a ProtoNet episode of 3 ways x (3 support + 6 query)).
--
-- Run: LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./?.so;;" lua5.4 bench/layers.lua [threads] [reps] [dw|prnet32|prnet64]
-- ("dw": no input needs a gradient, so backward is the weight gradient alone; "prnet32" /
-- "prnet64": PRNet's conv shapes instead (base 16, depth 4, batch 64 = 32 pairs, 32x32 or
-- 64x64 patches; the decoder's inputs are the concatenations))
-- Prints per shape the median ms of forward, of backward (dx and dw), GFLOP/s, and the sum
-- weighted by how often ResNet-18 uses each shape. The same shapes in PyTorch:
-- /usr/bin/python3 bench/layers_torch.py [threads].
local fs = require "fewshot"
local F = fs.nn.functional

local threads = tonumber(arg and arg[1]) or 2
local reps = tonumber(arg and arg[2]) or 7
local dw_only = arg and arg[3] == "dw"
local prnet = arg and arg[3] and tonumber(arg[3]:match("^prnet(%d+)$"))
fs.set_num_threads(threads)
fs.set_flush_denormal(true)

local N = prnet and 64 or 27
-- name, count in ResNet-18, C, H(=W), O, k, stride, padding
local shapes = {
  {"conv1 7x7/2   3->64   64", 1, 3, 64, 64, 7, 2, 3},
  {"layer1 3x3   64->64   16", 4, 64, 16, 64, 3, 1, 1},
  {"layer2 3x3/2 64->128  16", 1, 64, 16, 128, 3, 2, 1},
  {"layer2 3x3  128->128   8", 3, 128, 8, 128, 3, 1, 1},
  {"layer2 ds1x1/2 64->128 16", 1, 64, 16, 128, 1, 2, 0},
  {"layer3 3x3/2 128->256  8", 1, 128, 8, 256, 3, 2, 1},
  {"layer3 3x3  256->256   4", 3, 256, 4, 256, 3, 1, 1},
  {"layer3 ds1x1/2 128->256 8", 1, 128, 8, 256, 1, 2, 0},
  {"layer4 3x3/2 256->512  4", 1, 256, 4, 512, 3, 2, 1},
  {"layer4 3x3  512->512   2", 3, 512, 2, 512, 3, 1, 1},
  {"layer4 ds1x1/2 256->512 4", 1, 256, 4, 512, 1, 2, 0},
}

if prnet then -- per level: encoder conv, decoder conv (input: upsampled + skip), 1x1 head
  local p = prnet
  shapes = {
    {"enc0 3x3   1->16   " .. p, 1, 1, p, 16, 3, 1, 1},
    {"enc1 3x3  16->32   " .. p // 2, 1, 16, p // 2, 32, 3, 1, 1},
    {"enc2 3x3  32->64   " .. p // 4, 1, 32, p // 4, 64, 3, 1, 1},
    {"enc3 3x3  64->128  " .. p // 8, 1, 64, p // 8, 128, 3, 1, 1},
    {"bott 3x3 128->256  " .. p // 16, 1, 128, p // 16, 256, 3, 1, 1},
    {"dec0 3x3 384->128  " .. p // 8, 1, 384, p // 8, 128, 3, 1, 1},
    {"dec1 3x3 192->64   " .. p // 4, 1, 192, p // 4, 64, 3, 1, 1},
    {"dec2 3x3  96->32   " .. p // 2, 1, 96, p // 2, 32, 3, 1, 1},
    {"dec3 3x3  48->16   " .. p, 1, 48, p, 16, 3, 1, 1},
    {"head 1x1  16->1    " .. p, 1, 16, p, 1, 1, 1, 0},
  }
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local g = fs.generator(1)
print(string.format("conv2d, batch %d, %d thread(s), median of %d runs%s", N, threads, reps,
  dw_only and ", backward = dw only" or ""))
print(string.format("%-27s %5s %9s %9s %9s %8s %8s", "shape", "count", "fwd ms", "bwd ms",
  "total ms", "fwd GF/s", "bwd GF/s"))
local sum_f, sum_b, flops_all = 0, 0, 0
for _, s in ipairs(shapes) do
  local name, count, C, H, O, k, stride, pad = table.unpack(s)
  local x = fs.randn({N, C, H, H}, {generator = g})
  -- conv1's input is the image (no gradient); every other input needs dx
  if C ~= 3 and C ~= 1 and not dw_only then x:requires_grad(true) end
  local w = fs.randn({O, C, k, k}, {generator = g}):requires_grad(true)
  local opts = {stride = stride, padding = pad}
  local oh = (H + 2 * pad - k) // stride + 1
  local flops = 2.0 * N * O * oh * oh * C * k * k -- one GEMM's worth
  local nbwd = (C ~= 3 and C ~= 1 and not dw_only) and 2 or 1 -- dx and dw GEMMs
  local tf, tb = {}, {}
  for r = 0, reps do
    local t0 = fs.clock()
    local y = F.conv2d(x, w, nil, opts)
    local t1 = fs.clock()
    local gy = fs.ones(y:shape())
    local t2 = fs.clock()
    y:backward(gy)
    local t3 = fs.clock()
    if r > 0 then -- the first run warms the workspace and the threads
      tf[#tf + 1] = (t1 - t0) * 1e3
      tb[#tb + 1] = (t3 - t2) * 1e3
    end
    x.grad, w.grad = nil, nil
  end
  local mf, mb = median(tf), median(tb)
  sum_f, sum_b = sum_f + count * mf, sum_b + count * mb
  flops_all = flops_all + count * flops * (1 + nbwd)
  print(string.format("%-27s %5d %9.2f %9.2f %9.2f %8.1f %8.1f", name, count, mf, mb, mf + mb,
    flops / mf / 1e6, nbwd * flops / mb / 1e6))
end
print(string.format("%-27s %5s %9.2f %9.2f %9.2f   (%.1f GFLOP, %.1f GFLOP/s overall)",
  prnet and "PRNet convs (one forward)" or "ResNet-18 convs (weighted)", "", sum_f, sum_b, sum_f + sum_b, flops_all / 1e9,
  flops_all / (sum_f + sum_b) / 1e6))
