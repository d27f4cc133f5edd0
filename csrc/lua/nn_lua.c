/* nn_lua.c - the layer functions: fs.nn.functional (also fs.F) and fs.cdist2.
 *
 * PyTorch's names and defaults. Options are one table; stride/padding/dilation/kernel accept
 * a number or {h, w}. Dims are 1-based (negative from the end); cross_entropy/nll_loss labels
 * are 1-based integers, from a table or a tensor of integer values. Every function records
 * its backward when an input requires grad; inputs may be non-contiguous views.
 *
 *   F.conv2d(x, w [, b], {stride=1, padding=0, dilation=1, groups=1})
 *   F.conv_transpose2d(x, w [, b], {stride=1, padding=0, output_padding=0, dilation=1, groups=1})
 *   F.linear(x, w [, b])
 *   F.batch_norm(x, running_mean, running_var [, weight, bias],
 *                {training=false, momentum=0.1, eps=1e-5})     running stats updated in place
 *   F.instance_norm(x [, weight, bias], {eps=1e-5})  per-(n, c) statistics, no running stats
 *   F.relu(x)
 *   F.max_pool2d(x, {kernel=, stride=kernel, padding=0, ceil_mode=false})
 *   F.avg_pool2d(x, {kernel=, stride=kernel, padding=0, ceil_mode=false, count_include_pad=true})
 *   F.adaptive_avg_pool2d(x, {h, w} | n)
 *   F.interpolate(x, {size= | scale=, mode="nearest"|"bilinear"}) align_corners false
 *   F.affine(x, theta, {mode="bilinear"|"nearest"})  theta {{a, b, c}, {d, e, f}}: PyTorch's
 *                affine_grid + grid_sample (align_corners false, zeros outside), x (..., H, W)
 *   F.softmax(x [, dim=-1]), F.log_softmax(x [, dim=-1])
 *   F.cross_entropy(logits, labels, {reduction="mean"|"sum"|"none"}), F.nll_loss(logp, labels, ...)
 *   F.mse_loss(input, target, {reduction=}), F.l1_loss(...), F.smooth_l1_loss(..., {beta=1})
 *   fs.cdist2(a (n, d), b (m, d)) -> (n, m) squared Euclidean distances (also F.cdist2)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lmodule.h"
#include "nn/nn.h"

/* ---- option helpers ---- */

/* opts.mode as an interpolation mode ("nearest" or "bilinear"; def when absent); raises
 * naming op otherwise. Shared with module_lua.c (fs.nn.upsample). */
fs_interp_mode fs_lua_opt_interp_mode(lua_State *L, int opts, const char *op, const char *def)
{
    const char *mode = fs_lua_opt_string(L, opts, "mode", def);
    if (strcmp(mode, "nearest") == 0)
        return FS_INTERP_NEAREST;
    if (strcmp(mode, "bilinear") == 0)
        return FS_INTERP_BILINEAR;
    return (fs_interp_mode)luaL_error(L, "%s: mode must be \"nearest\" or \"bilinear\", got \"%s\"",
                                      op, mode);
}

/* opts[key] as a number or {h, w} into out[2]; def when absent. */
static void opt_pair(lua_State *L, int idx, const char *key, int64_t def, int64_t *out)
{
    out[0] = out[1] = def;
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, key);
    int t = lua_type(L, -1);
    if (t == LUA_TNUMBER) {
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "option '%s' must be an integer or {h, w}", key);
        out[0] = out[1] = v;
    } else if (t == LUA_TTABLE) {
        if (lua_rawlen(L, -1) != 2)
            luaL_error(L, "option '%s' must be an integer or {h, w}", key);
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, -1, k + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok)
                luaL_error(L, "option '%s' must be an integer or {h, w}", key);
            out[k] = v;
            lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL) {
        luaL_error(L, "option '%s' must be an integer or {h, w}", key);
    }
    lua_pop(L, 1);
}

static bool has_opt(lua_State *L, int idx, const char *key)
{
    if (!lua_istable(L, idx))
        return false;
    lua_getfield(L, idx, key);
    bool has = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return has;
}

static fs_tensor *opt_tensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : fs_lua_check_tensor(L, idx);
}

static fs_reduction opt_reduction(lua_State *L, int idx, const char *op)
{
    if (strcmp(op, "smooth_l1_loss") == 0)
        fs_lua_check_options(L, idx, op, FS_OPTIONS("reduction", "beta"));
    else
        fs_lua_check_options(L, idx, op, FS_OPTIONS("reduction"));
    const char *r = fs_lua_opt_string(L, idx, "reduction", "mean");
    if (strcmp(r, "mean") == 0)
        return FS_REDUCTION_MEAN;
    if (strcmp(r, "sum") == 0)
        return FS_REDUCTION_SUM;
    if (strcmp(r, "none") == 0)
        return FS_REDUCTION_NONE;
    return (fs_reduction)luaL_error(L, "%s: reduction must be \"mean\", \"sum\" or \"none\", got "
                                       "\"%s\"", op, r);
}

static fs_conv2d_args conv_args(lua_State *L, int idx)
{
    fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
    opt_pair(L, idx, "stride", 1, a.stride);
    opt_pair(L, idx, "padding", 0, a.padding);
    opt_pair(L, idx, "dilation", 1, a.dilation);
    opt_pair(L, idx, "output_padding", 0, a.output_padding);
    a.groups = fs_lua_opt_integer(L, idx, "groups", 1);
    return a;
}

/* ---- functions ---- */

static int l_conv2d(lua_State *L)
{
    lua_settop(L, 4);
    fs_lua_check_options(L, 4, "conv2d", FS_OPTIONS("stride", "padding", "dilation", "groups",
                                                     "output_padding"));
    fs_tensor *x = fs_lua_check_tensor(L, 1), *w = fs_lua_check_tensor(L, 2);
    fs_tensor *b = opt_tensor(L, 3);
    fs_conv2d_args a = conv_args(L, 4);
    if (has_opt(L, 4, "output_padding"))
        return luaL_error(L, "conv2d: output_padding is an option of conv_transpose2d");
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_conv2d(x, w, b, &a));
}

static int l_conv_transpose2d(lua_State *L)
{
    lua_settop(L, 4);
    fs_lua_check_options(L, 4, "conv_transpose2d",
                         FS_OPTIONS("stride", "padding", "dilation", "groups", "output_padding"));
    fs_tensor *x = fs_lua_check_tensor(L, 1), *w = fs_lua_check_tensor(L, 2);
    fs_tensor *b = opt_tensor(L, 3);
    fs_conv2d_args a = conv_args(L, 4);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_conv_transpose2d(x, w, b, &a));
}

static int l_linear(lua_State *L)
{
    lua_settop(L, 3);
    fs_tensor *x = fs_lua_check_tensor(L, 1), *w = fs_lua_check_tensor(L, 2);
    fs_tensor *b = opt_tensor(L, 3);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_linear(x, w, b));
}

/* batch_norm(x, running_mean, running_var, weight, bias, {training=false, momentum=0.1,
 * eps=1e-5}) */
static int l_batch_norm(lua_State *L)
{
    lua_settop(L, 6);
    fs_lua_check_options(L, 6, "batch_norm", FS_OPTIONS("training", "momentum", "eps"));
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    fs_tensor *rm = opt_tensor(L, 2), *rv = opt_tensor(L, 3);
    fs_tensor *w = opt_tensor(L, 4), *b = opt_tensor(L, 5);
    bool training = fs_lua_opt_bool(L, 6, "training", false);
    double momentum = fs_lua_opt_number(L, 6, "momentum", 0.1);
    double eps = fs_lua_opt_number(L, 6, "eps", 1e-5);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_batch_norm(x, rm, rv, w, b, training, momentum, eps));
}

/* instance_norm(x, weight, bias, {eps=1e-5}) */
static int l_instance_norm(lua_State *L)
{
    lua_settop(L, 4);
    fs_lua_check_options(L, 4, "instance_norm", FS_OPTIONS("eps"));
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    fs_tensor *w = opt_tensor(L, 2), *b = opt_tensor(L, 3);
    double eps = fs_lua_opt_number(L, 4, "eps", 1e-5);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_instance_norm(x, w, b, eps));
}

static int l_relu(lua_State *L)
{
    lua_settop(L, 1);
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_relu(x));
}

static fs_pool2d_args pool_args(lua_State *L, int idx, const char *op)
{
    fs_pool2d_args a;
    memset(&a, 0, sizeof a);
    luaL_checktype(L, idx, LUA_TTABLE);
    bool avg = strcmp(op, "avg_pool2d") == 0;
    if (avg)
        fs_lua_check_options(L, idx, op, FS_OPTIONS("kernel", "kernel_size", "stride", "padding",
                                                    "ceil_mode", "count_include_pad"));
    else
        fs_lua_check_options(L, idx, op, FS_OPTIONS("kernel", "kernel_size", "stride", "padding",
                                                    "ceil_mode"));
    if (!has_opt(L, idx, "kernel") && !has_opt(L, idx, "kernel_size"))
        luaL_error(L, "%s: option 'kernel' is required (a number or {h, w})", op);
    opt_pair(L, idx, has_opt(L, idx, "kernel") ? "kernel" : "kernel_size", 0, a.kernel);
    opt_pair(L, idx, "stride", 0, a.stride);
    opt_pair(L, idx, "padding", 0, a.padding);
    a.ceil_mode = fs_lua_opt_bool(L, idx, "ceil_mode", false);
    a.count_include_pad = fs_lua_opt_bool(L, idx, "count_include_pad", true);
    return a;
}

static int l_max_pool2d(lua_State *L)
{
    lua_settop(L, 2);
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    fs_pool2d_args a = pool_args(L, 2, "max_pool2d");
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_max_pool2d(x, &a));
}

static int l_avg_pool2d(lua_State *L)
{
    lua_settop(L, 2);
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    fs_pool2d_args a = pool_args(L, 2, "avg_pool2d");
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_avg_pool2d(x, &a));
}

/* adaptive_avg_pool2d(x, {h, w}) or (x, n) */
static int l_adaptive_avg_pool2d(lua_State *L)
{
    lua_settop(L, 2);
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    int64_t size[2];
    if (lua_type(L, 2) == LUA_TNUMBER) {
        size[0] = size[1] = luaL_checkinteger(L, 2);
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_rawlen(L, 2) != 2)
            return luaL_error(L, "adaptive_avg_pool2d: output size must be a number or {h, w}");
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, 2, k + 1);
            size[k] = luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        }
    }
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_adaptive_avg_pool2d(x, size[0], size[1]));
}

/* A number or a pair {h, w} at option key of the table at opts, into out[2]; false when absent. */
static bool opt_number_pair(lua_State *L, int opts, const char *key, double out[2])
{
    lua_getfield(L, opts, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return false;
    }
    if (lua_type(L, -1) == LUA_TNUMBER) {
        out[0] = out[1] = lua_tonumber(L, -1);
    } else if (lua_istable(L, -1) && lua_rawlen(L, -1) == 2) {
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, -1, k + 1);
            if (lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "interpolate: option '%s' must be a number or {h, w} of numbers", key);
            out[k] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else {
        luaL_error(L, "interpolate: option '%s' must be a number or {h, w}", key);
    }
    lua_pop(L, 1);
    return true;
}

/* interpolate(x, {size=64 | {h, w}} or {scale=2 | {sh, sw}}, mode="nearest"|"bilinear",
 * align_corners=false): size gives the output exactly (source step H/h, PyTorch's size=);
 * scale gives floor(H * scale) rows (source step 1/scale, PyTorch's scale_factor). */
static int l_interpolate(lua_State *L)
{
    lua_settop(L, 2);
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    fs_lua_check_options(L, 2, "interpolate",
                         FS_OPTIONS("size", "scale", "scale_factor", "mode", "align_corners"));
    double scale[2] = {0, 0}, size[2] = {0, 0};
    bool has_scale = opt_number_pair(L, 2, "scale", scale);
    if (opt_number_pair(L, 2, "scale_factor", scale)) {
        if (has_scale)
            return luaL_error(L, "interpolate: give 'scale' or 'scale_factor', not both");
        has_scale = true;
    }
    bool has_size = opt_number_pair(L, 2, "size", size);
    if (has_scale == has_size)
        return luaL_error(L, "interpolate: give exactly one of 'size' (a number or {h, w}) and "
                             "'scale' (a number or {h, w})");
    if (has_size)
        for (int k = 0; k < 2; k++)
            if (size[k] != floor(size[k]) || !(size[k] >= 1) || size[k] > 2147483648.0)
                return luaL_error(L, "interpolate: size must be whole numbers in [1, 2^31], got "
                                     "(%f, %f)", (lua_Number)size[0], (lua_Number)size[1]);
    if (fs_lua_opt_bool(L, 2, "align_corners", false))
        return luaL_error(L, "interpolate: align_corners=true is not supported");
    fs_interp_mode m = fs_lua_opt_interp_mode(L, 2, "interpolate", "nearest");
    fs_tensor **box = fs_lua_new_box(L);
    if (has_size)
        return fs_lua_return(L, box, fs_interpolate_size(x, (int64_t)size[0], (int64_t)size[1], m));
    return fs_lua_return(L, box, fs_interpolate(x, scale[0], scale[1], m));
}

/* affine(x, theta, {mode=}): theta a 2x3 table {{a, b, c}, {d, e, f}} (or 6 numbers). */
static int l_affine(lua_State *L)
{
    lua_settop(L, 3);
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    fs_lua_check_options(L, 3, "affine", FS_OPTIONS("mode"));
    double theta[6];
    lua_Integer len = (lua_Integer)lua_rawlen(L, 2);
    if (len == 2) {
        for (int r = 0; r < 2; r++) {
            if (lua_rawgeti(L, 2, r + 1) != LUA_TTABLE || lua_rawlen(L, -1) != 3)
                return luaL_error(L, "affine: theta must be {{a, b, c}, {d, e, f}} or 6 numbers");
            for (int c = 0; c < 3; c++) {
                if (lua_rawgeti(L, -1, c + 1) != LUA_TNUMBER)
                    return luaL_error(L, "affine: theta[%d][%d] must be a number", r + 1, c + 1);
                theta[r * 3 + c] = lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    } else if (len == 6) {
        for (int k = 0; k < 6; k++) {
            if (lua_rawgeti(L, 2, k + 1) != LUA_TNUMBER)
                return luaL_error(L, "affine: theta[%d] must be a number", k + 1);
            theta[k] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else {
        return luaL_error(L, "affine: theta must be {{a, b, c}, {d, e, f}} or 6 numbers, got a "
                             "table of %d", (int)len);
    }
    fs_interp_mode m = fs_lua_opt_interp_mode(L, 3, "affine", "bilinear");
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_affine_sample(x, theta, m));
}

static int softmax_common(lua_State *L, bool logs)
{
    lua_settop(L, 2);
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    int nd = x->ndim ? x->ndim : 1;
    int dim = fs_lua_opt_dim(L, 2, nd, nd - 1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, logs ? fs_log_softmax(x, dim) : fs_softmax(x, dim));
}

static int l_softmax(lua_State *L) { return softmax_common(L, false); }
static int l_log_softmax(lua_State *L) { return softmax_common(L, true); }

/* Labels at idx (a table or a tensor of 1-based integers) -> 0-based int64 array kept in a
 * userdata pushed on the stack (collected with it). */
static int64_t *check_labels(lua_State *L, int idx, const char *op, int64_t nclasses,
                             int64_t *count)
{
    fs_tensor *t = fs_lua_test_tensor(L, idx);
    int64_t n;
    if (t)
        n = fs_numel(t);
    else if (lua_istable(L, idx))
        n = (int64_t)lua_rawlen(L, idx);
    else
        return luaL_typeerror(L, idx, "table or tensor of labels"), NULL;
    int64_t *lab = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *lab, 0);
    float *vals = NULL;
    if (t) {
        vals = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *vals, 0);
        fs_tensor_read(t, vals);
    }
    for (int64_t k = 0; k < n; k++) {
        double v;
        if (t) {
            v = vals[k];
        } else {
            lua_rawgeti(L, idx, (lua_Integer)(k + 1));
            if (!lua_isnumber(L, -1))
                luaL_error(L, "%s: label %d is not a number", op, (int)(k + 1));
            v = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        if (v != floor(v) || v < 1 || v > (double)nclasses) {
            char num[32];
            snprintf(num, sizeof num, "%g", v);
            luaL_error(L, "%s: label %s at position %d is not an integer in 1..%d (labels are "
                          "1-based)", op, num, (int)(k + 1), (int)nclasses);
        }
        lab[k] = (int64_t)v - 1;
    }
    if (t)
        lua_pop(L, 1);
    *count = n;
    return lab;
}

static int class_loss(lua_State *L, bool nll)
{
    lua_settop(L, 3);
    const char *op = nll ? "nll_loss" : "cross_entropy";
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    if (x->ndim < 2)
        return luaL_error(L, "%s: input must be (N, C) or (N, C, d1, ...), got %s", op,
                          FS_SHAPE(x));
    fs_reduction red = opt_reduction(L, 3, op);
    int64_t n = 0;
    int64_t *lab = check_labels(L, 2, op, x->size[1], &n);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, nll ? fs_nll_loss(x, lab, n, red)
                                     : fs_cross_entropy(x, lab, n, red));
}

static int l_cross_entropy(lua_State *L) { return class_loss(L, false); }
static int l_nll_loss(lua_State *L) { return class_loss(L, true); }

static int l_mse_loss(lua_State *L)
{
    lua_settop(L, 3);
    fs_tensor *a = fs_lua_check_tensor(L, 1), *b = fs_lua_check_tensor(L, 2);
    fs_reduction red = opt_reduction(L, 3, "mse_loss");
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_mse_loss(a, b, red));
}

static int l_l1_loss(lua_State *L)
{
    lua_settop(L, 3);
    fs_tensor *a = fs_lua_check_tensor(L, 1), *b = fs_lua_check_tensor(L, 2);
    fs_reduction red = opt_reduction(L, 3, "l1_loss");
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_l1_loss(a, b, red));
}

static int l_smooth_l1_loss(lua_State *L)
{
    lua_settop(L, 3);
    fs_tensor *a = fs_lua_check_tensor(L, 1), *b = fs_lua_check_tensor(L, 2);
    fs_reduction red = opt_reduction(L, 3, "smooth_l1_loss");
    double beta = fs_lua_opt_number(L, 3, "beta", 1.0);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_smooth_l1_loss(a, b, red, beta));
}

static int l_cdist2(lua_State *L)
{
    lua_settop(L, 2);
    fs_tensor *a = fs_lua_check_tensor(L, 1), *b = fs_lua_check_tensor(L, 2);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_cdist2(a, b));
}

static const luaL_Reg functional[] = {
    {"conv2d", l_conv2d},
    {"conv_transpose2d", l_conv_transpose2d},
    {"linear", l_linear},
    {"batch_norm", l_batch_norm},
    {"instance_norm", l_instance_norm},
    {"relu", l_relu},
    {"max_pool2d", l_max_pool2d},
    {"avg_pool2d", l_avg_pool2d},
    {"adaptive_avg_pool2d", l_adaptive_avg_pool2d},
    {"interpolate", l_interpolate},
    {"affine", l_affine},
    {"softmax", l_softmax},
    {"log_softmax", l_log_softmax},
    {"cross_entropy", l_cross_entropy},
    {"nll_loss", l_nll_loss},
    {"mse_loss", l_mse_loss},
    {"l1_loss", l_l1_loss},
    {"smooth_l1_loss", l_smooth_l1_loss},
    {"cdist2", l_cdist2},
    {NULL, NULL},
};

/* module.nn.functional = module.F = {...}; module.cdist2. The nn table is shared with the
 * module system (created here if absent). */
void fs_lua_open_nn(lua_State *L)
{
    lua_getfield(L, -1, "nn");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "nn");
    }
    luaL_newlib(L, functional);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "functional"); /* nn.functional */
    lua_setfield(L, -3, "F");          /* module.F */
    lua_pop(L, 1);                     /* nn */
    lua_pushcfunction(L, l_cdist2);
    lua_setfield(L, -2, "cdist2");
}
