-- fs.data.folder: a user's own PNG slices with masks and landmarks, in the dataset item form;
-- clear errors naming the file for missing masks, size mismatches, unknown classes, bad CSV.
local fs = require "fewshot"
local helper = require "helper"

local tmpdir = helper.tmpdir

local function rmdir(d) os.execute("rm -rf '" .. d .. "'") end

local function write_text(p, s)
  local f = assert(io.open(p, "w"))
  f:write(s)
  f:close()
end

describe("data.folder", function()
  local items = fs.spect.dataset{n = 3, seed = 5}

  it("reads back what save_folder wrote: counts, masks, labels, landmarks", function()
    local d = tmpdir()
    fs.data.save_folder(d, items, {scale = 10})
    local back = fs.data.folder(d, {pixel_mm = 6.4})
    assert.equal(3, #back)
    for i, b in ipairs(back) do
      local a = items[i]
      assert.equal(("item%03d"):format(i), b.name)
      assert.same({32, 32}, b.image:shape())
      -- 16-bit PNG of round(10 * counts), negatives (filter ringing) clamped to 0
      local diff = (b.image - a.image:mul(10):clamp(0, 65535)):abs():max():item()
      assert.is_true(diff <= 0.5001, "max |difference| " .. diff)
      for _, c in ipairs({"ventricle", "myocardium", "liver"}) do
        assert.tensor_near(b.masks[c], a.masks[c], 0)
      end
      local expect = a.masks.ventricle + a.masks.myocardium:mul(2) + a.masks.liver:mul(3)
      assert.tensor_near(b.labels, expect, 0)
      for name, p in pairs(a.landmarks) do
        assert.near(p.x, b.landmarks[name].x, 1e-4)
        assert.near(p.y, b.landmarks[name].y, 1e-4)
        assert.near((b.landmarks[name].x - 1) * 6.4, b.landmarks[name].x_mm, 1e-9)
      end
    end
    rmdir(d)
  end)

  local function broken(setup, reason_of)
    local d = tmpdir()
    fs.data.save_folder(d, items)
    local reason = setup(d)
    local ok, err = pcall(fs.data.folder, d)
    rmdir(d)
    assert.is_false(ok)
    return err, reason
  end

  it("names a missing mask", function()
    local err = broken(function(d) os.remove(d .. "/masks/liver/item002.png") end)
    assert.truthy(err:find("masks/liver/item002.png: missing mask of class 'liver' for image", 1, true), err)
  end)

  it("names a mask of the wrong size", function()
    local err = broken(function(d) fs.image.write(d .. "/masks/myocardium/item001.png", fs.zeros(16, 32)) end)
    assert.truthy(err:find("masks/myocardium/item001.png: mask is 16x32 but its image", 1, true), err)
  end)

  it("names an unknown class folder", function()
    local err = broken(function(d) os.execute("mkdir '" .. d .. "/masks/spleen'") end)
    assert.truthy(err:find("masks/spleen: unknown class 'spleen'", 1, true), err)
  end)

  it("names a bad landmarks.csv line and an unknown image", function()
    local err = broken(function(d) write_text(d .. "/landmarks.csv", "image,name,x,y\nitem001,apex,3,x\n") end)
    assert.truthy(err:find("landmarks.csv:2: expected 'image,name,x,y'", 1, true), err)
    err = broken(function(d) write_text(d .. "/landmarks.csv", "item009,apex,3,4\n") end)
    assert.truthy(err:find("landmarks.csv:1: unknown image 'item009'", 1, true), err)
  end)

  it("names a landmark outside its image", function()
    local err = broken(function(d) write_text(d .. "/landmarks.csv", "item001,apex,-500,1e30\n") end)
    assert.truthy(err:find("landmarks.csv:1: landmark 'apex' at (-500, 1e+30) lies outside image "
      .. "'item001' (32x32: x in [0.5, 32.5], y in [0.5, 32.5])", 1, true), err)
    err = broken(function(d) write_text(d .. "/landmarks.csv", "item001,apex,10,1e400\n") end)
    assert.truthy(err:find("landmarks.csv:1: landmark 'apex' at (10, inf) lies outside", 1, true), err)
  end)

  it("names a corrupt image and a missing images folder", function()
    local err = broken(function(d) write_text(d .. "/images/item003.png", "not a png") end)
    assert.truthy(err:find("images/item003.png: cannot read image", 1, true), err)
    local ok, e2 = pcall(fs.data.folder, "/nonexistent/data")
    assert.is_false(ok)
    assert.truthy(e2:find("/nonexistent/data/images: cannot list the images folder", 1, true), e2)
  end)

  it("allows missing masks when asked", function()
    local d = tmpdir()
    fs.data.save_folder(d, items)
    os.remove(d .. "/masks/liver/item002.png")
    local back = fs.data.folder(d, {allow_missing = true})
    rmdir(d)
    assert.equal(0, back[2].masks.liver:sum():item())
  end)
end)
