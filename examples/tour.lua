-- examples/tour.lua: a tour of fewshot's tensors and autograd. Fits y = 3x - 2 (plus noise)
-- by plain gradient descent written in Lua: C computes, Lua decides.
--   lua5.4 examples/tour.lua        (from a checkout after `make`; `make demo` runs it)
local fs = require "fewshot"

print("fewshot " .. fs._VERSION .. ", " .. fs.get_num_threads() .. " threads")

-- Tensors: nested tables in, views that share storage, broadcasting, 1-based indices.
local a = fs.tensor({{1, 2, 3}, {4, 5, 6}})
print(a)
print("a:sum(2) =", a:sum(2), "a:t() @ a ->", a:transpose(1, 2):matmul(a):shape()[1] .. "x3")
local row = a:select(1, 2)          -- a view: writing to it writes to a
fs.no_grad(function() row:set(1, 40) end)
print("after row:set(1, 40), a[2][1] =", a:get(2, 1))

-- Data: 200 points from y = 3x - 2 + noise, drawn from a seeded generator.
local g = fs.generator(2024)
local x = fs.rand({200, 1}, {generator = g, low = -1, high = 1})
local y = x * 3 - 2 + fs.randn({200, 1}, {generator = g, std = 0.1})

-- Parameters as leaves that require grad; the loss records a tape, backward walks it.
local w = fs.zeros({1, 1}, {requires_grad = true})
local b = fs.zeros({1}, {requires_grad = true})
local lr = 0.5
for step = 1, 200 do
  local pred = x:matmul(w) + b
  local loss = ((pred - y) ^ 2):mean()
  w:zero_grad(); b:zero_grad()
  loss:backward()
  fs.no_grad(function()             -- the update itself is not recorded
    w:copy(w - w.grad * lr)
    b:copy(b - b.grad * lr)
  end)
  if step == 1 or step % 50 == 0 then
    print(string.format("step %3d  loss %.5f  w %.4f  b %.4f", step, loss:item(), w:item(), b:item()))
  end
end
assert(math.abs(w:item() - 3) < 0.05 and math.abs(b:item() + 2) < 0.05, "the fit did not converge")
print("fitted y = " .. string.format("%.3f", w:item()) .. " x " .. string.format("%+.3f", b:item()))
