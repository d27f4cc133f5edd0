-- Memory: tensor bytes are reported to Lua's collector, so a long loop stays bounded without
-- collectgarbage(); dropping a graph frees it.
local fs = require "fewshot"
local helper = require "helper"

describe("memory", function()
  it("a 5,000-step loop of 1 MB tensors with autograd stays under 300 MB resident", function()
    if os.getenv("FS_SANITIZE") then
      -- ASan keeps freed blocks in a quarantine (256 MB by default): RSS means nothing there.
      pending("resident memory is not measured under AddressSanitizer")
      return
    end
    local start = helper.rss_mb()
    local peak = start
    local w = fs.full({512, 512}, 0.5, {requires_grad = true}) -- 1 MB
    for step = 1, 5000 do
      local x = fs.full({512, 512}, step % 7)                   -- 1 MB
      local h = (x * w + 1):relu()                               -- 2 MB more
      local loss = (h * h):mean()                                -- 1 MB more
      loss:backward()                                            -- grads: a few MB
      w:zero_grad()
      if step % 250 == 0 then
        local r = helper.rss_mb()
        if r > peak then peak = r end
      end
    end
    assert.is_true(peak < 300, string.format("peak resident %.0f MB (start %.0f MB)", peak, start))
    assert.is_true(peak - start < 200, string.format("grew by %.0f MB", peak - start))
  end)

  it("building a ResNet-18 keeps no construction-time storage resident", function()
    -- its parameters are made one by one, then copied into one flat buffer: the first copies
    -- (45 MB) must go back to the system, not wait in the block cache
    collectgarbage() -- no garbage of earlier tests freed (and cached) during the build
    local before = helper.rss_mb()
    local model = fs.nn.resnet18{in_channels = 3, seed = 1}
    assert.equals(0, fs.memory().cached_bytes)
    if not os.getenv("FS_SANITIZE") then
      local grown = helper.rss_mb() - before
      assert.is_true(grown < 60, string.format("grew by %.0f MB for 45 MB of parameters", grown))
    end
    assert.equals(11176512, model:num_parameters())
  end)

  it("frees a whole graph when its result is dropped", function()
    collectgarbage() -- a known starting point for this measurement only
    local before = fs.memory().live_bytes
    do
      local x = fs.ones({256, 256}, {requires_grad = true})
      local y = x
      for _ = 1, 10 do y = (y * 1.5):tanh() end
      y:sum():backward()
    end
    collectgarbage()
    collectgarbage()
    assert.equal(before, fs.memory().live_bytes)
  end)
end)
