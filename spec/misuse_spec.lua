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
  -- documented calls that used to crash: they must succeed (expected = false)
  {"fs.nn.resnet18()", false},
  {"fs.nn.linear(4, 2)", false},
  {"fs.nn.sequential{fs.nn.linear(4, 2), fs.nn.relu()}", false},
  {"fs.nn.linear(4, 2)(fs.zeros({3, 4}))", false},
  -- module constructors and options
  {"fs.nn.linear(4, 2, {biass = false})", "unknown option 'biass' (did you mean 'bias'?)"},
  {"fs.nn.conv2d{in_channels = 65536, out_channels = 65536, kernel = 3}", "conv2d: a weight of shape (65536, 65536, 3, 3) would have more than 2147483647 elements"},
  {"fs.nn.resnet18{in_channels = 2^62}", "resnet18"},
  {"fs.nn.linear(4, 2)(nil)", "fewshot.Tensor expected"},
  {"fs.nn.linear(4, 2)(fs.zeros({3, 5}))", "(3, 5)"},
  {"fs.nn.linear(-4, 2)", "linear: in_features -4 and out_features 2 must be >= 1"},
  {"fs.nn.batchnorm2d(0)", "batchnorm2d: num_features 0 must be >= 1"},
  {"fs.nn.maxpool2d{}", "kernel"},
  {"fs.optim.adam(fs.nn.linear(4, 2), {lr = -1})", "lr"},
  {"fs.optim.adam(fs.nn.linear(4, 2), {betas = {1.5, 0.9}})", "beta"},
  {"fs.optim.adam(fs.nn.linear(4, 2), {learning_rate = 1})", "unknown option 'learning_rate'"},
  {"fs.optim.sgd(fs.nn.linear(4, 2), {lr = 0.1, momentun = 0.9})", "unknown option 'momentun' (did you mean 'momentum'?)"},
  {"fs.nn.load('/nonexistent.safetensors')", "/nonexistent.safetensors"},
  {"fs.nn.load('/tmp')", "is a directory"},
  {"fs.io.load('/tmp')", "is a directory"},
  {"fs.io.load_npy('/tmp')", "is a directory"},
  {"fs.io.load_idx('/nonexistent')", "read_idx: cannot open '/nonexistent'"},
  {"fs.io.save('/nonexistent/dir/x.safetensors', {a = fs.zeros({2})})", "/nonexistent/dir/x.safetensors"},
  {"local t = fs.zeros({2}); t:close(); fs.io.save('/tmp/fs_misuse.safetensors', {a = t})", "attempt to use a closed tensor"},
  {"fs.io.save_npy('/nonexistent/dir/x.npy', fs.zeros({2}))", "/nonexistent/dir/x.npy"},
  {"fs.image.write('/tmp/fs_misuse.png', fs.full({2, 2}, 0/0))", "image.write: /tmp/fs_misuse.png: value"},
  {"fs.image.write('/tmp/fs_misuse.png', fs.zeros({2, 2, 2, 2}))", "png"},
  -- autograd
  {"fs.zeros({2}):backward()", "backward: tensor of shape (2) does not require grad and has no grad_fn"},
  {"local x = fs.zeros({2}, {requires_grad = true}); (x * 2):backward()", "backward"},
  {"local x = fs.zeros({2}, {requires_grad = true}); (x * 2):sum():backward(fs.zeros({3}))", "backward"},
  {"local x = fs.zeros({2}, {requires_grad = true}); local y = (x * x):sum(); y:backward(); y:backward()", "backward"},
  {"fs.zeros({2}, {requires_grad = 'yes', extra = 1})", "unknown option 'extra'"},
  {"fs.optim.step_lr(fs.optim.adam(fs.nn.linear(2, 2)), {})", "fs.optim.step_lr: option 'step' (>= 1) is required"},
  {"fs.optim.step_lr(fs.optim.adam(fs.nn.linear(2, 2)), {step = 2, gama = 0.5})", "unknown option 'gama' (did you mean 'gamma'?)"},
  -- generators and seeds
  {"fs.generator('abc')", "bad argument #1 to 'generator' (number expected, got string)"},
  {"fs.rand({2}, {lo = 0})", "rand: unknown option 'lo'"},
  {"fs.randn({2}, {sdt = 1})", "randn: unknown option 'sdt' (did you mean 'std'?)"},
  {"fs.arange(3, {requires_grads = true})", "arange: unknown option 'requires_grads' (did you mean 'requires_grad'?)"},
  {"local x = fs.zeros({2}, {requires_grad = true}); (x * x):sum():backward({retain = true})", "backward: unknown option 'retain' (did you mean 'retain_graph'?)"},
  {"fs.generator(1):randint(0)", "randint"},
  {"fs.generator(1):permutation(-1)", "permutation"},
  {"fs.manual_seed('x')", "manual_seed"},
  -- tensors from Lua values
  {"fs.tensor({{1, 2}, {3}})", "tensor: ragged nested table (expected 2 entries at depth 2)"},
  {"fs.tensor({1, 'a'})", "tensor"},
  {"fs.tensor({}):item()", "item"},
  {"fs.zeros({2, 2}):get(3, 1)", "get"},
  {"fs.zeros({2, 2}):get(1e6, 1)", "get: index 1000000 out of range for dim 1 of shape (2, 2) (indices are 1-based)"},
  {"fs.zeros({2, 2}):set(1, 1)", "set"},
  -- few-shot pipeline, t-SNE, IDX
  {"fs.data.episodes({}, {way = 3, shot = 1, query = 1, episodes = 1, seed = 1})", "data.episodes: the sample list is empty"},
  {"fs.data.tissues({}, {input = 'masks'})", "data.tissues: option 'input' must be one of masked, mask, crop, patch, got 'masks'"},
  {"fs.data.tissues({}, {inputs = 'mask'})", "unknown option 'inputs' (did you mean 'input'?)"},
  {"fs.protonet.loss(fs.zeros({3, 4}), {1, 2, 3}, fs.zeros({3, 5}), {1, 2, 3})", "protonet.loss: support embeddings (3, 4) and query embeddings (3, 5) differ in size"},
  {"fs.protonet.loss(fs.zeros({3, 4}), {1, 2, 3}, fs.zeros({3, 4}), {1, 2, 4})", "protonet.loss: query 3 has label 4, which no support embedding has"},
  {"fs.protonet.loss(fs.zeros({3, 4}), {1, 2, 3}, fs.zeros({3, 4}), {1, 2, 3}, {distance = 'manhattan'})", "distance"},
  {"fs.protonet.evaluate{episodes = 10}", "protonet.evaluate: option 'model' is required"},
  {"fs.protonet.train{samples = {}, episodes = 1}", "protonet.train: option 'backbone' (a module) is required"},
  {"fs.tsne(fs.zeros({1, 3}))", "tsne: need at least 2 points, got 1 (shape (1, 3))"},
  {"fs.tsne(fs.randn({10, 3}, {generator = fs.generator(1)}), {perplexity = 30})", "perplexity"},
  {"fs.tsne(fs.zeros({10}))", "tsne: need a 2-D (N, D) tensor of points, got shape (10)"},
  {"fs.tsne(fs.randn({10, 3}, {generator = fs.generator(1)}), {perplexty = 3})", "unknown option 'perplexty' (did you mean 'perplexity'?)"},
  {"fs.data.idx('/tmp')", "is a directory"},
  {"local f = io.open('/tmp/fs_misuse.idx', 'wb'); f:write('\\0\\0\\8\\1\\0\\0\\0\\9x'); f:close(); fs.data.idx('/tmp/fs_misuse.idx')", "truncated"},
  {"fs.io.save('/tmp/fs_misuse.safetensors', {a = fs.zeros({2})}, {meta = {}})", "fs.io.save: unknown option 'meta' (did you mean 'metadata'?)"},
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
  {"fs.spect.phantom{n = 32, heart_rotation_deg = 1e300}", "spect.phantom: need heart_shift_mm in [0, 100], heart_rotation_deg in [0, 90]"},
  {"fs.spect.phantom{n = 32, table_offset_mm = 0/0}", "table_offset_mm in [0, 200]"},
  {"fs.spect.phantom{n = 32, variation = true}", "variation"},
  {"fs.spect.dataset{n = 1, variation = 'wild'}", "spect.phantom: unknown variation 'wild' (none, realistic)"},
  {"fs.match.ncc(fs.zeros(8, 8), fs.zeros(9, 9))", "match.ncc: template (9, 9) is larger than the image (8, 8)"},
  {"fs.match.ncc(fs.zeros(8, 8), fs.zeros(2, 3))", "match.ncc: template sizes must be odd"},
  {"fs.match.ncc(fs.zeros(8, 8), 3)", "Tensor"},
  {"fs.match.ncc(fs.zeros(8), fs.zeros(3, 3))", "match.ncc: image must be 2-D (H, W), got (8)"},
  {"fs.match.best(fs.zeros(8, 8), fs.zeros(3, 3), {window = -2, centre = {4, 4}})", "match.best: window must be >= 0 pixels, got -2"},
  {"fs.match.best(fs.zeros(8, 8), fs.zeros(3, 3), {window = 1.5, centre = {4, 4}})", "match.best: window must be an integer"},
  {"fs.match.best(fs.zeros(8, 8), fs.zeros(3, 3), {window = 1, centre = {0/0, 4}})", "match.best: the window centre must be finite"},
  {"fs.match.best(fs.zeros(8, 8), fs.zeros(3, 3), {window = 1, centre = {'a'}})", "match.best: centre must be {x, y}"},
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
  -- DICOM
  {"fs.io.load_dicom({})", "bad argument #1 to 'load_dicom' (string expected, got table)"},
  {"fs.io.load_dicom('/nonexistent.dcm')", "load_dicom: cannot open '/nonexistent.dcm'"},
  {"fs.io.load_dicom('spec/fixtures/dicom/MR_small.dcm', {frames = {1.5}})", "option 'frames' entry 1 must be a frame number >= 1"},
  {"fs.io.load_dicom_series(42)", "load_dicom_series: folder must be a string, got number"},
  {"fs.data.mps(42)", "data.mps: root must be a string, got number"},
  {"fs.data.mps('spec/fixtures/mps', {min_mask_pixels = 0})", "data.mps: option 'min_mask_pixels' must be >= 1, got 0"},
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
      local ok
      if expected == false then -- a documented call: it must run without an error
        ok = out == "NOERROR"
      else
        ok = out:find(expected, 1, true) ~= nil and out:sub(1, 6) == "ERROR "
      end
      totals[ok and "clear" or "unclear"] = totals[ok and "clear" or "unclear"] + 1
      assert(ok, expected and ("expected an error containing %q, got: %s"):format(expected, out)
        or ("expected no error, got: %s"):format(out))
    end)
  end
  it("has at least 100 cases, and reports its totals", function()
    assert.is_true(#CASES >= 100, #CASES .. " cases")
    io.stderr:write(("\n# misuse table: %d cases, %d clear, %d unclear, %d crashed\n"):format(
      #CASES, totals.clear, totals.unclear, totals.crash))
  end)
end)
