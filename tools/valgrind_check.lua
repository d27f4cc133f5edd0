-- tools/valgrind_check.lua: a spec-like script for `valgrind --leak-check=full lua5.4 tools/valgrind_check.lua`
-- (every op, backward, errors, <close>); fewshot must show no definite leaks and no invalid access.
local fs = require "fewshot"
local g = fs.generator(1)
local x = fs.randn({8, 5}, {generator = g, requires_grad = true})
local w = fs.randn({5, 3}, {generator = g, requires_grad = true})
for i = 1, 3 do
  local h = x:matmul(w):relu()
  local l = (h:transpose(1, 2):contiguous():view({-1}) ^ 2):mean() + h:var() + h:max() + fs.cat({h, h}, 1):sum()
  local v, idx = h:max(2)
  l = l + v:sum() + fs.stack({h, h}):sum() + fs.where(h:gt(0), h, 1):sum() + h:index_select(1, {1, 2}):sum()
  l:backward()
  x:zero_grad()
end
print(tostring(fs.rand({50, 50})):sub(1, 20))
local ok, err = pcall(function() return fs.zeros({2, 3}):matmul(fs.zeros({4, 5})) end)
local ok2 = pcall(function() local y = (x * 2):sum(); y:backward(); y:backward() end)
do local t <close> = fs.ones({3}) end
print(ok, err, ok2)
