-- Run by examples/embed/host.c, alone or in N states at once (`--states N`), and by
-- spec/embed_spec.lua: a few Adam steps of a tiny conv + linear net on seeded data, then a
-- checksum of the final parameters. Everything random comes from the state's default
-- generator (fs.manual_seed), so every state returns the same checksum as a lone run.
--
--     build/embed-host --root . --states 4 examples/embed/train.lua [steps] [seed]
local fs = require "fewshot"
local F = fs.nn.functional

local steps = tonumber(arg and arg[1]) or 20
local seed = tonumber(arg and arg[2]) or 1
fs.manual_seed(seed)

-- the weights' initialisation and the data both draw from the default generator
local model = fs.nn.sequential{
  fs.nn.conv2d{in_channels = 1, out_channels = 4, kernel = 3, padding = 1},
  fs.nn.relu(),
  fs.nn.flatten(),
  fs.nn.linear(4 * 8 * 8, 3),
}
local x = fs.randn({6, 1, 8, 8})
local labels = {1, 2, 3, 1, 2, 3}
local opt = fs.optim.adam(model, {lr = 1e-2})
model:train()
local loss
for _ = 1, steps do
  opt:zero_grad()
  loss = F.cross_entropy(model(x), labels)
  loss:backward()
  opt:step()
end

-- FNV-1a (64-bit) over the parameters' float32 bytes: equal only when bit-identical
local h = -3750763034362895579 -- 0xcbf29ce484222325
for _, v in ipairs(model:flat_parameters():totable()) do
  for b in string.pack("<f", v):gmatch(".") do
    h = (h ~ b:byte()) * 1099511628211
  end
end
return string.format("params %016x loss %.9g", h, loss:item())
