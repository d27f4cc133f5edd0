-- The misuse table: calls a careless or hostile user makes, each with the error it must raise.
-- Every case runs in a child lua5.4 process, so a crash (a signal, an abort) fails its case
-- instead of killing the runner. A case is {code, expected}: code is Lua run after
-- `local fs = require "fewshot"; local F = fs.nn.functional` (as `return code` when code is
-- an expression), and expected is a plain
-- substring of the error message. The totals are printed at the end (clear / unclear / crash).
local CASES = {
  -- sizes and shapes
  {"fs.zeros({2^62, 4})", "tensor: shape (4611686018427387904, 4) has too many elements"},
  {"fs.zeros({2^32, 2^32})", "has too many elements"},
  {"fs.zeros({-1, 2})", "shape entry 1 must be a non-negative integer"},
  {"fs.zeros({2, 1.5})", "shape entry 2 must be a non-negative integer"},
  {"fs.zeros({1, 2, 3, 4, 5, 6, 7, 8, 9})", "at most 8"},
  {"fs.zeros({1}):expand({2^40, 2^40})", "expand: shape (1099511627776, 1099511627776) has too many elements"},
  {"fs.zeros({4}):view({2^62, 2^62})", "view: shape (4611686018427387904, 4611686018427387904) is invalid"},
  {"fs.zeros({4}):view({3})", "view: shape (3) is invalid for a tensor of shape (4)"},
  {"fs.zeros({4}):view({-1, -1})", "only one dim can be -1"},
  {"fs.zeros({2, 3}) + fs.zeros({4, 3})", "(2, 3)"},
  {"fs.zeros({2, 3}):matmul(fs.zeros({2, 3}))", "matmul"},
  {"fs.zeros({2, 3}):sum(3)", "dim"},
  {"fs.zeros({2, 3}):sum(-3)", "dim"},
  {"fs.zeros({2, 3}):narrow(1, 2, 5)", "narrow"},
  {"fs.zeros({2, 3}):select(1, 3)", "select"},
  {"fs.zeros({2, 3}):permute({1, 1})", "permute"},
  {"fs.zeros({3}):index_select(1, fs.tensor({1.5}))", "index_select: index 1.5 is not an integer"},
  {"fs.zeros({3}):index_select(1, fs.tensor({1e30}))", "index_select: index 1.0000000150475e+30 out of range for dim 1 of shape (3)"},
  {"fs.zeros({3}):index_select(1, {0})", "index_select: index 0 out of range for dim 1 of shape (3)"},
  {"fs.zeros({3}):index_select(1, {2^62})", "index_select: index 4611686018427387904 out of range for dim 1"},
  {"fs.cat({fs.zeros({2, 3}), fs.zeros({2, 4})}, 1)", "cat"},
  {"fs.stack({}, 1)", "stack"},
  -- closed tensors
  {"local t = fs.zeros({2}); t:close(); return t + 1", "attempt to use a closed tensor"},
  {"local t = fs.zeros({2}); t:close(); return t:shape()", "attempt to use a closed tensor"},
  -- layers
  {"F.conv2d(fs.zeros({1, 1, 4, 4}), fs.zeros({1, 1, 3, 3}), nil, {padding = 2^40})", "conv2d: stride (1, 1), padding (1099511627776, 1099511627776)"},
  {"F.conv2d(fs.zeros({1, 1, 4, 4}), fs.zeros({1, 1, 3, 3}), nil, {stride = 0})", "must be >= 1"},
  {"F.conv2d(fs.zeros({1, 2, 4, 4}), fs.zeros({1, 1, 3, 3}))", "conv2d: input (1, 2, 4, 4) has 2 channels but weight (1, 1, 3, 3) expects 1"},
  {"F.conv2d(fs.zeros({1, 1, 2, 2}), fs.zeros({1, 1, 3, 3}))", "is smaller than the kernel"},
  {"F.conv2d(fs.zeros({1, 1, 4, 4}), fs.zeros({1, 1, 3, 3}), nil, {strid = 2})", "conv2d: unknown option 'strid' (did you mean 'stride'?)"},
  {"F.conv2d(fs.zeros({4, 4}), fs.zeros({1, 1, 3, 3}))", "conv2d: input must be (N, C, H, W) or (C, H, W), got (4, 4)"},
  {"F.conv_transpose2d(fs.zeros({1, 1, 4, 4}), fs.zeros({1, 1, 3, 3}), nil, {stride = 2^31})", "has too many elements"},
  {"F.max_pool2d(fs.zeros({1, 1, 4, 4}), {kernel = 2^62})", "must be at most 2^31"},
  {"F.max_pool2d(fs.zeros({1, 1, 4, 4}), {})", "max_pool2d: option 'kernel' is required"},
  {"F.max_pool2d(fs.zeros({1, 1, 4, 4}), {kernel = 2, padding = 2})", "should be at most half of the kernel"},
  {"F.max_pool2d(fs.zeros({1, 1, 4, 4}), {kernel = 2, ceil = true})", "max_pool2d: unknown option 'ceil'"},
  {"F.avg_pool2d(fs.zeros({4, 4}), {kernel = 2})", "avg_pool2d: input must be (N, C, H, W) or (C, H, W), got (4, 4)"},
  {"F.interpolate(fs.zeros({1, 1, 4, 4}), {scale = 1e9})", "over 2147483648 a side"},
  {"F.interpolate(fs.zeros({1, 1, 4, 4}), {scale = 0/0})", "must be > 0"},
  {"F.interpolate(fs.zeros({1, 1, 4, 4}), {scale = -1})", "must be > 0"},
  {"F.interpolate(fs.zeros({1, 1, 4, 4}), {size = 2.5})", "interpolate: size must be whole numbers in [1, 2^31], got (2.5, 2.5)"},
  {"F.interpolate(fs.zeros({1, 1, 4, 4}), {size = 0})", "interpolate: size must be whole numbers"},
  {"F.interpolate(fs.zeros({1, 1, 4, 4}), {})", "interpolate: give exactly one of 'size'"},
  {"F.interpolate(fs.zeros({1, 1, 4, 4}), {size = 2, mode = 'bicubic'})", "mode must be \"nearest\" or \"bilinear\""},
  {"F.cross_entropy(fs.zeros({2, 3}), {1, 4})", "cross_entropy: label 4 at position 2 is not an integer in 1..3"},
  {"F.cross_entropy(fs.zeros({2, 3}), {1, 1.5})", "label 1.5 at position 2"},
  {"F.cross_entropy(fs.zeros({2, 3}), {1, 2}, {reduction = 'avg'})", "reduction must be \"mean\", \"sum\" or \"none\""},
  {"F.cross_entropy(fs.zeros({2, 3}), {1, 2}, {reductio = 'sum'})", "cross_entropy: unknown option 'reductio' (did you mean 'reduction'?)"},
  {"F.mse_loss(fs.zeros({2, 3}), fs.zeros({3, 2}))", "mse_loss"},
  {"F.batch_norm(fs.zeros({2, 3}), nil, nil, nil, nil, {trainig = true})", "batch_norm: unknown option 'trainig' (did you mean 'training'?)"},
  {"F.instance_norm(fs.zeros({2, 3}))", "instance_norm: input must be (N, C, *) with at least one spatial dim, got (2, 3)"},
  {"F.instance_norm(fs.zeros({2, 3, 4, 4}), fs.zeros({2}))", "instance_norm: weight (2) must have shape (3)"},
  {"F.instance_norm(fs.zeros({2, 3, 4, 4}), nil, nil, {eps = -1})", "instance_norm: eps must be >= 0"},
  {"fs.nn.prnet{patch = 20}", "fs.nn.prnet: patch 20 must be divisible by 2^depth = 16 (depth 4)"},
  {"fs.nn.prnet{depth = 2^40}", "fs.nn.prnet: depth 1099511627776 is too large (at most 12)"},
  {"fs.nn.prnet{base = -3}", "fs.nn.prnet: base must be >= 1, got -3"},
  {"fs.nn.prnet{norm = 'layer'}", "fs.nn.prnet: norm must be \"instance\" or \"batch\""},
  {"fs.nn.prnet{upsample = 'bilinear'}", "fs.nn.prnet: unknown option 'upsample'"},
  {"fs.nn.prnet{base = 2, depth = 1, patch = 4}(fs.zeros({1, 1, 5, 5}))", "prnet: expected input (N, 1, 4, 4), got (1, 1, 5, 5)"},
  {"fs.nn.relu():encode(fs.zeros({1}))", "encode: a ReLU module has no encode (PRNet only)"},
  -- grad mode and options checker
  {"fs.no_grad(42)", "bad argument #1 to 'no_grad'"},
  {"fs.set_num_threads(0)", "set_num_threads: expected a positive count, got 0"},
  {"fs.core_check = require('fewshot.core').check_options('op', {1}, {'a'})", "op: options must be named"},
  -- SPECT simulator and dataset options
  {"fs.spect.dataset{n = -1}", "spect.dataset: option 'n' must be >= 1, got -1"},
  {"fs.spect.dataset{n = 1.5}", "spect.dataset: option 'n' must be an integer, got 1.5"},
  {"fs.spect.dataset{n = 1, matrix = 3}", "spect.dataset: option 'matrix' must be in [8, 1024], got 3"},
  {"fs.spect.dataset{n = 1, defects = 1}", "spect.dataset: unknown option 'defects'"},
  {"fs.spect.dataset{n = 1, view = 'sagital'}", "spect.dataset: unknown view 'sagital'"},
  {"fs.spect.dataset{n = 1, crop = 'liver'}", "spect.dataset: option 'crop' must be \"heart\" or false"},
  {"fs.spect.dataset(5)", "spect.dataset: options must be a table, got number"},
  {"fs.spect.simulate{scatter = 5}", "spect: option 'scatter' (fraction of counts) must be in [0, 0.9], got 5.0"},
  {"fs.spect.simulate{matrix = 4096}", "spect.simulate: option 'matrix' must be in [8, 1024], got 4096"},
  {"fs.spect.simulate{matrix = 16, oversample = 0}", "spect.simulate: option 'oversample' must be in [1, 8], got 0"},
  {"fs.spect.simulate{pixel_mm = 0}", "spect.simulate: option 'pixel_mm' must be > 0, got 0"},
  {"fs.spect.simulate{seed = 'x'}", "spect.simulate: option 'seed' must be an integer, got string"},
  {"fs.spect.simulate{pixelmm = 3}", "spect.simulate: unknown option 'pixelmm' (did you mean 'pixel_mm'?)"},
  -- data folders and image files
  {"fs.data.folder('/nonexistent/data')", "/nonexistent/data/images: cannot list the images folder"},
  {"fs.data.folder('/tmp', {pixelmm = 2})", "data.folder: unknown option 'pixelmm' (did you mean 'pixel_mm'?)"},
  {"fs.data.folder(42)", "data.folder: path must be a string, got number"},
  {"fs.image.slice(fs.zeros({4, 4}))", "image.slice: need a (z, y, x) volume"},
  {"fs.image.slice(fs.zeros({2, 4, 4}), {axis = 'axial', index = 3})", "image.slice: index 3 outside 1..2"},
  {"fs.image.slice(fs.zeros({2, 4, 4}), {axes = 'axial'})", "image.slice: unknown option 'axes' (did you mean 'axis'?)"},
  {"fs.image.read('/nonexistent.png')", "/nonexistent.png"},
}

local function run_case(code)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write('local fs = require "fewshot"; local F = fs.nn.functional\n',
    'local ok, err = pcall(function()\n', load("return " .. code) and "return " or "", code,
    '\nend)\n',
    'io.write(ok and "NOERROR" or ("ERROR " .. tostring(err)))\n')
  f:close()
  local env = 'LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="' ..
    (os.getenv("FS_CPATH") or "./?.so") .. ';;"'
  local p = io.popen(env .. " lua5.4 " .. script .. " 2>&1; echo \" EXIT $?\"")
  local out = p:read("a")
  p:close()
  os.remove(script)
  local body, status = out:match("^(.-) EXIT (%d+)%s*$")
  return body or out, tonumber(status or -1)
end

describe("misuse table", function()
  local totals = {clear = 0, unclear = 0, crash = 0}
  for i, case in ipairs(CASES) do
    local code, expected = case[1], case[2]
    it(("%d: %s"):format(i, code), function()
      local out, status = run_case(code)
      if status ~= 0 then
        totals.crash = totals.crash + 1
        error(("crashed (exit %d): %s"):format(status, out))
      end
      local ok = out:find(expected, 1, true) ~= nil and out:sub(1, 6) == "ERROR "
      totals[ok and "clear" or "unclear"] = totals[ok and "clear" or "unclear"] + 1
      assert(ok, ("expected an error containing %q, got: %s"):format(expected, out))
    end)
  end
  it("has at least 70 cases, and reports its totals", function()
    assert.is_true(#CASES >= 70, #CASES .. " cases")
    io.stderr:write(("\n# misuse table: %d cases, %d clear, %d unclear, %d crashed\n"):format(
      #CASES, totals.clear, totals.unclear, totals.crash))
  end)
end)
