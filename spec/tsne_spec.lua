-- fs.tsne: exact t-SNE in C. Separated clusters stay apart, a seed fixes the bytes at any
-- thread count, and bad input gets an error naming the problem.
local fs = require "fewshot"

-- k blobs of m points each in d dimensions: blob c centred at 10 * e_c, unit noise.
local function blobs(k, m, d, seed)
  local g = fs.generator(seed)
  local rows, labels = {}, {}
  for c = 1, k do
    for _ = 1, m do
      local r = {}
      for j = 1, d do r[j] = (j == c and 10 or 0) + g:normal() end
      rows[#rows + 1] = r
      labels[#labels + 1] = c
    end
  end
  return fs.tensor(rows), labels
end

-- Fraction of (point, neighbour) pairs, over each point's k nearest neighbours in y, whose
-- neighbour has the point's label.
local function knn_purity(y, labels, k)
  local t, n = y:totable(), #labels
  local same, total = 0, 0
  for i = 1, n do
    local d = {}
    for j = 1, n do
      if j ~= i then
        local s = 0
        for c = 1, #t[i] do s = s + (t[i][c] - t[j][c]) ^ 2 end
        d[#d + 1] = {s, j}
      end
    end
    table.sort(d, function(a, b) return a[1] < b[1] end)
    for r = 1, k do
      total = total + 1
      if labels[d[r][2]] == labels[i] then same = same + 1 end
    end
  end
  return same / total
end

local function bytes(t)
  local v = t:contiguous():view(-1):totable()
  local parts = {}
  for i, x in ipairs(v) do parts[i] = string.pack("<f", x) end
  return table.concat(parts)
end

describe("fs.tsne", function()
  local x, labels = blobs(3, 30, 10, 11)

  it("returns an (N, 2) embedding and the KL divergence it reached", function()
    local y, kl = fs.tsne(x, {seed = 1})
    assert.same({90, 2}, y:shape())
    assert.is_true(kl > 0 and kl < 1, "kl " .. kl)
    local mean = y:mean(1):totable()
    assert.is_true(math.abs(mean[1]) < 1e-3 and math.abs(mean[2]) < 1e-3, "centred")
  end)

  it("keeps three well-separated 10-D blobs apart (>= 95% of 5 nearest neighbours from the own blob)", function()
    local y = fs.tsne(x, {seed = 2})
    local p = knn_purity(y, labels, 5)
    assert.is_true(p >= 0.95, ("purity %.3f"):format(p))
    -- and the blobs are far apart: the smallest between-blob distance exceeds the largest
    -- within-blob distance to the blob's centre
    local t = y:totable()
    local centre = {}
    for c = 1, 3 do
      local sx, sy = 0, 0
      for i = (c - 1) * 30 + 1, c * 30 do sx, sy = sx + t[i][1], sy + t[i][2] end
      centre[c] = {sx / 30, sy / 30}
    end
    local radius = 0
    for i = 1, 90 do
      local c = centre[labels[i]]
      radius = math.max(radius, math.sqrt((t[i][1] - c[1]) ^ 2 + (t[i][2] - c[2]) ^ 2))
    end
    for a = 1, 3 do
      for b = a + 1, 3 do
        local d = math.sqrt((centre[a][1] - centre[b][1]) ^ 2 + (centre[a][2] - centre[b][2]) ^ 2)
        assert.is_true(d > 2 * radius, ("centres %d-%d %.2f apart, radius %.2f"):format(a, b, d, radius))
      end
    end
  end)

  it("mixes points that have no structure less than blobs (purity of random labels ~ 1/3)", function()
    local g = fs.generator(5)
    local rows, lab = {}, {}
    for i = 1, 60 do
      rows[i] = {}
      for j = 1, 5 do rows[i][j] = g:normal() end
      lab[i] = i % 3 + 1
    end
    local p = knn_purity(fs.tsne(fs.tensor(rows), {seed = 1, perplexity = 10, iterations = 400}), lab, 5)
    assert.is_true(p < 0.6, ("purity %.3f"):format(p))
  end)

  it("is deterministic for a seed: the same bytes, another seed other bytes", function()
    local a = fs.tsne(x, {seed = 7, iterations = 300})
    local b = fs.tsne(x, {seed = 7, iterations = 300})
    local c = fs.tsne(x, {seed = 8, iterations = 300})
    assert.are.equal(bytes(a), bytes(b))
    assert.are_not.equal(bytes(a), bytes(c))
  end)

  it("takes a generator instead of a seed (seed = s gives what fs.generator(s) gives)", function()
    local a = fs.tsne(x, {seed = 4, iterations = 260})
    local b = fs.tsne(x, {generator = fs.generator(4), iterations = 260})
    assert.are.equal(bytes(a), bytes(b))
  end)

  it("gives identical bytes on 1 and 2 threads (150 points: the row loops run in parallel)", function()
    local big, _ = blobs(3, 50, 10, 3)
    local before = fs.get_num_threads()
    fs.set_num_threads(1)
    local a, kla = fs.tsne(big, {seed = 9, iterations = 300})
    fs.set_num_threads(2)
    local b, klb = fs.tsne(big, {seed = 9, iterations = 300})
    fs.set_num_threads(before)
    assert.are.equal(bytes(a), bytes(b))
    assert.are.equal(kla, klb)
  end)

  it("reads a non-contiguous view as its values", function()
    local xt = x:transpose(1, 2):contiguous():transpose(1, 2) -- (90, 10), strides (1, 90)
    assert.is_false(xt:is_contiguous())
    assert.are.equal(bytes(fs.tsne(x, {seed = 3, iterations = 260})),
      bytes(fs.tsne(xt, {seed = 3, iterations = 260})))
  end)

  it("lowers the KL divergence as it iterates, and honours dims", function()
    local _, kl_short = fs.tsne(x, {seed = 1, iterations = 260})
    local _, kl_long = fs.tsne(x, {seed = 1, iterations = 1000})
    assert.is_true(kl_long < kl_short, ("%g !< %g"):format(kl_long, kl_short))
    local y3 = fs.tsne(x, {seed = 1, iterations = 300, dims = 3, perplexity = 5,
                           learning_rate = 100, early_exaggeration = 4})
    assert.same({90, 3}, y3:shape())
    assert.is_true(knn_purity(y3, labels, 5) >= 0.95)
  end)

  describe("errors", function()
    local function err(fn) local ok, e = pcall(fn); assert.is_false(ok); return tostring(e) end
    it("names the problem", function()
      assert.matches("tsne: need at least 2 points, got 1", err(function() fs.tsne(fs.zeros(1, 3), {perplexity = 0.5}) end), 1, true)
      assert.matches("tsne: perplexity must be in (0, N) = (0, 90), got 90", err(function() fs.tsne(x, {perplexity = 90}) end), 1, true)
      assert.matches("tsne: perplexity must be in (0, N) = (0, 90), got 0", err(function() fs.tsne(x, {perplexity = 0}) end), 1, true)
      assert.matches("tsne: need a 2-D (N, D) tensor of points, got shape (90)", err(function() fs.tsne(fs.zeros(90)) end), 1, true)
      assert.matches("tsne: need a 2-D (N, D) tensor of points, got shape (2, 3, 4)", err(function() fs.tsne(fs.zeros(2, 3, 4)) end), 1, true)
      local bad = x:clone()
      bad:set(5, 3, 0 / 0)
      assert.matches("tsne: the input has a non-finite value (nan) at point 5, coordinate 3",
        err(function() fs.tsne(bad, {perplexity = 5}) end):gsub("%-nan", "nan"), 1, true)
      assert.matches("tsne: unknown option 'perplexty' (did you mean 'perplexity'?)", err(function() fs.tsne(x, {perplexty = 5}) end), 1, true)
      assert.matches("tsne: option 'seed' must be an integer, got string", err(function() fs.tsne(x, {seed = "a"}) end), 1, true)
      assert.matches("tsne: iterations must be in 1..1000000, got 0", err(function() fs.tsne(x, {iterations = 0}) end), 1, true)
      assert.matches("tsne: dims must be 1, 2 or 3, got 4", err(function() fs.tsne(x, {dims = 4}) end), 1, true)
      assert.matches("tsne: learning_rate must be > 0 (or \"auto\"), got -1", err(function() fs.tsne(x, {learning_rate = -1}) end), 1, true)
      assert.matches('tsne: learning_rate must be a number or "auto", got "fast"', err(function() fs.tsne(x, {learning_rate = "fast"}) end), 1, true)
      assert.matches("fewshot.Tensor expected, got table", err(function() fs.tsne({1, 2, 3}) end), 1, true)
    end)
  end)
end)
