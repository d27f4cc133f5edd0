-- Run by examples/embed/host.c (and by spec/embed_spec.lua): a host application's script.
local fs = require "fewshot"
local x = fs.tensor({{1, 2}, {3, 4}}, {requires_grad = true})
local y = (x:matmul(x) * 0.5):sum()
y:backward()
print(string.format("embedded fewshot: y = %g, dy/dx = %s", y:item(),
  table.concat(fs.tensor(x.grad):view({-1}):totable(), " ")))
