-- t:bbox() (a mask's bounding box, in C) and fs.data.tissues / fs.data.augment: tissue samples
-- cut from dataset items, each input mode, skipped empty masks, seeded augmentation.
local fs = require "fewshot"
local helper = require "helper"

describe("tensor:bbox", function()
  it("gives 1-based inclusive rows and columns of the nonzero elements", function()
    local m = fs.zeros({5, 6})
    m:set(2, 3, 1); m:set(4, 5, 0.5); m:set(3, 2, -1)
    assert.same({2, 2, 4, 5}, {m:bbox()})
  end)
  it("is nil for an all-zero mask and works on a transposed view", function()
    assert.is_nil(fs.zeros({3, 4}):bbox())
    local m = fs.zeros({5, 6})
    m:set(1, 6, 1); m:set(5, 1, 1)
    assert.same({1, 1, 5, 6}, {m:bbox()})
    m = fs.zeros({5, 6}); m:set(2, 3, 1); m:set(4, 5, 1)
    assert.same({3, 2, 5, 4}, {m:transpose(1, 2):bbox()})
    assert.same({1, 1, 1, 1}, {fs.ones({1, 1}):bbox()})
  end)
  it("agrees with a Lua scan on phantom masks", function()
    local items = fs.spect.dataset{n = 2, seed = 3}
    for _, it_ in ipairs(items) do
      for _, c in ipairs({"ventricle", "myocardium", "liver"}) do
        local t = it_.masks[c]:totable()
        local r0, c0, r1, c1 = math.huge, math.huge, -1, -1
        for i, row in ipairs(t) do
          for j, v in ipairs(row) do
            if v ~= 0 then
              r0, r1 = math.min(r0, i), math.max(r1, i)
              c0, c1 = math.min(c0, j), math.max(c1, j)
            end
          end
        end
        if r1 < 0 then assert.is_nil(it_.masks[c]:bbox())
        else assert.same({r0, c0, r1, c1}, {it_.masks[c]:bbox()}) end
      end
    end
  end)
  it("rejects a tensor that is not 2D", function()
    assert.has_error(function() fs.zeros({2, 3, 4}):bbox() end,
      "bbox: expected a 2D mask (H, W), got (2, 3, 4)")
  end)
end)
