/* module_lua.c - the fewshot.Module userdata and the fs.nn constructors:
 *
 *   fs.nn.conv2d{in_channels=, out_channels=, kernel=, stride=1, padding=0, dilation=1,
 *                bias=true, seed= | generator=}
 *   fs.nn.batchnorm2d(n [, {eps=1e-5, momentum=0.1}]) | fs.nn.batchnorm2d{num_features=, ...}
 *   fs.nn.linear(in, out [, {bias=true, seed=}]) | fs.nn.linear{in_features=, out_features=, ...}
 *   fs.nn.relu(), fs.nn.maxpool2d{kernel=, stride=kernel, padding=0}, fs.nn.flatten(),
 *   fs.nn.adaptive_avgpool2d{output_size={1, 1}}, fs.nn.sequential{m1, m2, ...}
 *   fs.nn.conv_transpose2d{in_channels=, out_channels=, kernel=, stride=1, padding=0,
 *                output_padding=0, dilation=1, bias=true, seed= | generator=}
 *   fs.nn.instancenorm2d(n [, {eps=1e-5}]) | fs.nn.instancenorm2d{num_features=, eps=}
 *   fs.nn.upsample{scale=2 | {sh, sw}, mode="nearest"|"bilinear"}
 *   fs.nn.resnet18{in_channels=3, num_classes=nil, seed= | generator=}
 *   fs.nn.prnet{in_channels=1, base=16, depth=4, latent=2, patch=32, norm="instance"|"batch",
 *               up="bilinear"|"transpose", convs_per_level=1, seed= | generator=}
 *               model(x) -> latent (N, latent), reconstruction (N, C, patch, patch);
 *               model:encode(x) -> the latent alone (no decoder work)
 *   fs.nn.load(path): a module saved with model:save(path) (its stored description is parsed
 *                     by the core, fs_module_from_spec; nothing is evaluated)
 *
 * Module methods: forward(x) (also model(x)), train([on]), eval(), is_training(),
 * parameters(), named_parameters(), state_dict(), state_dict_keys() (ordered),
 * load_state_dict(sd, {strict=true,
 * adapt_conv1="sum"}), save(path), zero_grad(), num_parameters(), child("layer1.0"),
 * flat_parameters() / flat_grad() (the flat buffers as 1-D tensors), tostring(model).
 * Every constructor and load_state_dict reject an unknown option key (fs_lua_check_options). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "lmodule.h"
#include "models/prnet.h"

/* ---- the userdata ---- */

static fs_module **new_box(lua_State *L)
{
    fs_module **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, FS_MODULE_MT);
    return box;
}

static int box_return(lua_State *L, fs_module **box, fs_module *m)
{
    if (!m)
        return fs_lua_error(L);
    *box = m;
    fs_lua_account(L);
    return 1;
}

fs_module *fs_lua_test_module(lua_State *L, int idx)
{
    fs_module **box = luaL_testudata(L, idx, FS_MODULE_MT);
    if (!box)
        return NULL;
    if (!*box)
        luaL_error(L, "attempt to use a closed module");
    return *box;
}

fs_module *fs_lua_check_module(lua_State *L, int idx)
{
    fs_module *m = fs_lua_test_module(L, idx);
    if (!m)
        luaL_typeerror(L, idx, FS_MODULE_MT);
    return m;
}

int fs_lua_save_dict(lua_State *L, const char *path, fs_tensor_dict *d, int rc)
{
    if (rc == 0)
        rc = fs_safetensors_write(path, d);
    fs_tensor_dict_free(d);
    if (rc < 0)
        return fs_lua_error(L);
    return 0;
}

void fs_lua_check_tensor_dict(lua_State *L, int idx, const char *op, fs_tensor_dict *d)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        fs_tensor_dict_free(d);
        luaL_error(L, "%s: expected a table of tensors, got a %s", op, luaL_typename(L, idx));
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            fs_tensor_dict_free(d);
            luaL_error(L, "%s: tensor table keys must be strings (got a %s)", op,
                       luaL_typename(L, -2));
        }
        fs_tensor *t = fs_lua_test_tensor(L, -1);
        if (!t) {
            const char *name = lua_tostring(L, -2);
            fs_tensor_dict_free(d);
            luaL_error(L, "%s: value of '%s' must be a Tensor (got a %s)", op, name,
                       luaL_typename(L, -1));
        }
        if (fs_tensor_dict_add(d, lua_tostring(L, -2), t) < 0) {
            fs_tensor_dict_free(d);
            fs_lua_error(L);
        }
        lua_pop(L, 1);
    }
}

#define CHECK(i) fs_lua_check_module(L, i)

/* The optional options table at idx: nil or a table, with only the given keys. */
static void check_opts(lua_State *L, int idx, const char *op, const char *const *keys)
{
    if (!lua_isnil(L, idx))
        luaL_checktype(L, idx, LUA_TTABLE);
    fs_lua_check_options(L, idx, op, keys);
}

static int m_gc(lua_State *L)
{
    fs_module **box = luaL_checkudata(L, 1, FS_MODULE_MT);
    fs_module_release(*box);
    *box = NULL;
    return 0;
}

/* A PRNet returns its two outputs (latent, reconstruction); every other module one tensor. */
static int m_forward(lua_State *L)
{
    fs_module *m = CHECK(1);
    fs_tensor *x = fs_lua_check_tensor(L, 2);
    fs_tensor **box = fs_lua_new_box(L);
    if (!fs_prnet_settings_of(m))
        return fs_lua_return(L, box, fs_module_forward(m, x));
    fs_tensor **box2 = fs_lua_new_box(L);
    fs_tensor *z, *r;
    if (fs_prnet_forward(m, x, &z, &r) < 0)
        return fs_lua_error(L);
    *box = z;
    *box2 = r;
    fs_lua_account(L);
    return 2;
}

static int m_encode(lua_State *L)
{
    fs_module *m = CHECK(1);
    fs_tensor *x = fs_lua_check_tensor(L, 2);
    if (!fs_prnet_settings_of(m))
        return luaL_error(L, "encode: a %s module has no encode (PRNet only)", m->kind);
    fs_tensor **box = fs_lua_new_box(L);
    if (m->flat && !m->flat_grad && fs_grad_enabled() && fs_module_ensure_grad(m) < 0)
        return fs_lua_error(L);
    return fs_lua_return(L, box, fs_prnet_encode(m, x));
}

static int m_train(lua_State *L)
{
    fs_module *m = CHECK(1);
    fs_module_set_training(m, lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int m_eval(lua_State *L)
{
    fs_module_set_training(CHECK(1), false);
    lua_settop(L, 1);
    return 1;
}

static int m_is_training(lua_State *L)
{
    lua_pushboolean(L, CHECK(1)->training);
    return 1;
}

typedef struct { lua_State *L; int table; int k; bool params_only; bool named; bool alias; } push_ud;

static int push_cb(void *ud, const char *name, fs_module_entry *e, fs_module *owner)
{
    (void)owner;
    push_ud *p = ud;
    if (p->params_only && e->buffer)
        return 0;
    if (p->alias)
        fs_lua_push_alias(p->L, e->t);
    else
        fs_lua_push_retain(p->L, e->t);
    if (p->named)
        lua_setfield(p->L, p->table, name);
    else
        lua_rawseti(p->L, p->table, ++p->k);
    return 0;
}

static int push_entries(lua_State *L, bool params_only, bool named, bool alias)
{
    fs_module *m = CHECK(1);
    lua_newtable(L);
    push_ud p = {L, lua_gettop(L), 0, params_only, named, alias};
    fs_module_visit(m, push_cb, &p);
    return 1;
}

static int m_parameters(lua_State *L) { return push_entries(L, true, false, false); }
static int m_named_parameters(lua_State *L) { return push_entries(L, true, true, false); }
static int m_state_dict(lua_State *L) { return push_entries(L, false, true, true); }

static int keys_cb(void *ud, const char *name, fs_module_entry *e, fs_module *owner)
{
    (void)e;
    (void)owner;
    push_ud *p = ud;
    lua_pushstring(p->L, name);
    lua_rawseti(p->L, p->table, ++p->k);
    return 0;
}

/* The state_dict keys in order (PyTorch's state_dict().keys()). */
static int m_state_dict_keys(lua_State *L)
{
    fs_module *m = CHECK(1);
    lua_newtable(L);
    push_ud p = {L, lua_gettop(L), 0, false, false, false};
    fs_module_visit(m, keys_cb, &p);
    return 1;
}

/* True when the value at idx is the metadata table fs.io.load returns second. */
static bool is_metadata(lua_State *L, int idx)
{
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
        return false;
    luaL_getmetatable(L, FS_METADATA_MT);
    bool same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

static int m_load_state_dict(lua_State *L)
{
    lua_settop(L, 3);
    fs_module *m = CHECK(1);
    if (is_metadata(L, 3)) { /* passed along by load_state_dict(fs.io.load(path)) */
        lua_pushnil(L);
        lua_replace(L, 3);
    }
    check_opts(L, 3, "load_state_dict", FS_OPTIONS("strict", "adapt_conv1"));
    bool strict = fs_lua_opt_bool(L, 3, "strict", true);
    const char *adapt = fs_lua_opt_string(L, 3, "adapt_conv1", NULL);
    if (adapt && strcmp(adapt, "sum") != 0)
        return luaL_error(L, "load_state_dict: adapt_conv1 must be \"sum\" (got \"%s\")", adapt);
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    fs_lua_check_tensor_dict(L, 2, "load_state_dict", &d);
    int rc = fs_module_load_state_dict(m, &d, strict, adapt != NULL);
    fs_tensor_dict_free(&d);
    if (rc < 0)
        return fs_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static int m_save(lua_State *L)
{
    fs_module *m = CHECK(1);
    const char *path = luaL_checkstring(L, 2);
    char *spec = fs_module_spec(m);
    if (!spec)
        return fs_lua_error(L);
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    int rc = fs_tensor_dict_add_meta(&d, "fewshot.module", spec);
    free(spec);
    if (rc == 0)
        rc = fs_tensor_dict_add_meta(&d, "format", "pt");
    if (rc == 0)
        rc = fs_module_state_dict(m, &d);
    return fs_lua_save_dict(L, path, &d, rc);
}

static int m_zero_grad(lua_State *L)
{
    fs_module_zero_grad(CHECK(1));
    return 0;
}

static int m_num_parameters(lua_State *L)
{
    lua_pushinteger(L, fs_module_num_parameters(CHECK(1)));
    return 1;
}

static int m_child(lua_State *L)
{
    fs_module *m = fs_module_find(CHECK(1), luaL_checkstring(L, 2));
    if (!m)
        return fs_lua_error(L);
    fs_module **box = new_box(L);
    *box = fs_module_retain(m);
    return 1;
}

static int m_flat(lua_State *L, bool grad)
{
    fs_module *m = CHECK(1);
    if (grad && fs_module_ensure_grad(m) < 0)
        return fs_lua_error(L);
    fs_tensor *t = grad ? m->flat_grad : m->flat;
    if (!t) {
        lua_pushnil(L);
        return 1;
    }
    fs_lua_push_alias(L, t);
    return 1;
}

static int m_flat_parameters(lua_State *L) { return m_flat(L, false); }
static int m_flat_grad(lua_State *L) { return m_flat(L, true); }

static int m_tostring(lua_State *L)
{
    fs_module **box = luaL_checkudata(L, 1, FS_MODULE_MT);
    if (!*box) {
        lua_pushliteral(L, "fewshot.Module (closed)");
        return 1;
    }
    char *s = fs_module_format(*box);
    if (!s)
        return fs_lua_error(L);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int m_call(lua_State *L)
{
    return m_forward(L);
}

static int m_index(lua_State *L)
{
    CHECK(1);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "kind") == 0) {
        lua_pushstring(L, CHECK(1)->kind);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* ---- constructors ---- */

/* Every constructor pins its argument slots first (lua_settop), so an absent options table
 * is a nil at a valid index, never index 0. */

/* A local generator from `seed`, else the `generator` option or the default. opts: a valid
 * stack index holding a table or nil. */
static fs_generator *opt_gen(lua_State *L, int opts, fs_generator *local)
{
    if (lua_istable(L, opts)) {
        lua_getfield(L, opts, "seed");
        if (!lua_isnil(L, -1)) {
            int ok;
            lua_Integer s = lua_tointegerx(L, -1, &ok);
            if (!ok)
                luaL_error(L, "option 'seed' must be an integer");
            lua_pop(L, 1);
            fs_generator_seed(local, (uint64_t)s);
            return local;
        }
        lua_pop(L, 1);
    }
    return fs_lua_opt_generator(L, opts);
}

/* An option that is an integer or a pair {h, w}; returns false when absent. */
static bool opt_pair(lua_State *L, int opts, const char *key, int64_t out[2], const char *op)
{
    if (!lua_istable(L, opts))
        return false;
    lua_getfield(L, opts, key);
    bool present = !lua_isnil(L, -1);
    if (lua_isinteger(L, -1)) {
        out[0] = out[1] = lua_tointeger(L, -1);
    } else if (lua_istable(L, -1) && lua_rawlen(L, -1) == 2) {
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (!lua_isinteger(L, -1))
                luaL_error(L, "%s: option '%s' must be an integer or a pair of integers", op, key);
            out[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    } else if (present) {
        luaL_error(L, "%s: option '%s' must be an integer or a pair of integers", op, key);
    }
    lua_pop(L, 1);
    return present;
}

static lua_Integer req_int(lua_State *L, int opts, const char *key, const char *op)
{
    lua_getfield(L, opts, key);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "%s: option '%s' (an integer) is required", op, key);
    lua_pop(L, 1);
    return v;
}

static int l_conv2d(lua_State *L)
{
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    fs_lua_check_options(L, 1, "fs.nn.conv2d",
                         FS_OPTIONS("in_channels", "out_channels", "kernel", "kernel_size",
                                    "stride", "padding", "dilation", "bias", "seed", "generator"));
    fs_generator local, *g = opt_gen(L, 1, &local);
    int64_t in = req_int(L, 1, "in_channels", "fs.nn.conv2d");
    int64_t out = req_int(L, 1, "out_channels", "fs.nn.conv2d");
    int64_t k[2];
    if (!opt_pair(L, 1, "kernel", k, "fs.nn.conv2d") &&
        !opt_pair(L, 1, "kernel_size", k, "fs.nn.conv2d"))
        return luaL_error(L, "fs.nn.conv2d: option 'kernel' is required");
    fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
    opt_pair(L, 1, "stride", a.stride, "fs.nn.conv2d");
    opt_pair(L, 1, "padding", a.padding, "fs.nn.conv2d");
    opt_pair(L, 1, "dilation", a.dilation, "fs.nn.conv2d");
    bool bias = fs_lua_opt_bool(L, 1, "bias", true);
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_conv2d(in, out, k[0], k[1], &a, bias, g));
}

static int l_conv_transpose2d(lua_State *L)
{
    const char *op = "fs.nn.conv_transpose2d";
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    fs_lua_check_options(L, 1, op,
                         FS_OPTIONS("in_channels", "out_channels", "kernel", "kernel_size",
                                    "stride", "padding", "output_padding", "dilation", "bias",
                                    "seed", "generator"));
    fs_generator local, *g = opt_gen(L, 1, &local);
    int64_t in = req_int(L, 1, "in_channels", op);
    int64_t out = req_int(L, 1, "out_channels", op);
    int64_t k[2];
    if (!opt_pair(L, 1, "kernel", k, op) && !opt_pair(L, 1, "kernel_size", k, op))
        return luaL_error(L, "%s: option 'kernel' is required", op);
    fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
    opt_pair(L, 1, "stride", a.stride, op);
    opt_pair(L, 1, "padding", a.padding, op);
    opt_pair(L, 1, "output_padding", a.output_padding, op);
    opt_pair(L, 1, "dilation", a.dilation, op);
    bool bias = fs_lua_opt_bool(L, 1, "bias", true);
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_conv_transpose2d(in, out, k[0], k[1], &a, bias, g));
}

/* fs.nn.instancenorm2d(n [, {eps=1e-5}]) | fs.nn.instancenorm2d{num_features=, eps=} */
static int l_instancenorm2d(lua_State *L)
{
    const char *op = "fs.nn.instancenorm2d";
    int64_t n;
    double eps = 1e-5;
    lua_settop(L, 2);
    if (lua_istable(L, 1)) {
        fs_lua_check_options(L, 1, op, FS_OPTIONS("num_features", "eps"));
        n = req_int(L, 1, "num_features", op);
        eps = fs_lua_opt_number(L, 1, "eps", eps);
    } else {
        n = luaL_checkinteger(L, 1);
        check_opts(L, 2, op, FS_OPTIONS("eps"));
        eps = fs_lua_opt_number(L, 2, "eps", eps);
    }
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_instancenorm2d(n, eps));
}

/* fs.nn.upsample{scale=2 | {sh, sw}, mode="nearest"|"bilinear"} */
static int l_upsample(lua_State *L)
{
    const char *op = "fs.nn.upsample";
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    fs_lua_check_options(L, 1, op, FS_OPTIONS("scale", "scale_factor", "mode"));
    double sc[2];
    lua_getfield(L, 1, "scale");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, 1, "scale_factor");
    }
    if (lua_type(L, -1) == LUA_TNUMBER) {
        sc[0] = sc[1] = lua_tonumber(L, -1);
    } else if (lua_istable(L, -1) && lua_rawlen(L, -1) == 2) {
        for (int i = 0; i < 2; i++) {
            if (lua_rawgeti(L, -1, i + 1) != LUA_TNUMBER)
                return luaL_error(L, "%s: option 'scale' must be a number or {h, w}", op);
            sc[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else {
        return luaL_error(L, "%s: option 'scale' (a number or {h, w}) is required", op);
    }
    lua_pop(L, 1);
    for (int i = 0; i < 2; i++)
        if (!(sc[i] > 0) || !isfinite(sc[i])) {
            char got[64];
            snprintf(got, sizeof got, "(%g, %g)", sc[0], sc[1]);
            return luaL_error(L, "%s: scale must be positive and finite, got %s", op, got);
        }
    fs_interp_mode m = fs_lua_opt_interp_mode(L, 1, op, "nearest");
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_upsample(sc[0], sc[1], m));
}

static int l_batchnorm2d(lua_State *L)
{
    int64_t n;
    double eps = 1e-5, momentum = 0.1;
    lua_settop(L, 2);
    if (lua_istable(L, 1)) {
        fs_lua_check_options(L, 1, "fs.nn.batchnorm2d",
                             FS_OPTIONS("num_features", "eps", "momentum"));
        n = req_int(L, 1, "num_features", "fs.nn.batchnorm2d");
        eps = fs_lua_opt_number(L, 1, "eps", eps);
        momentum = fs_lua_opt_number(L, 1, "momentum", momentum);
    } else {
        n = luaL_checkinteger(L, 1);
        check_opts(L, 2, "fs.nn.batchnorm2d", FS_OPTIONS("eps", "momentum"));
        eps = fs_lua_opt_number(L, 2, "eps", eps);
        momentum = fs_lua_opt_number(L, 2, "momentum", momentum);
    }
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_batchnorm2d(n, eps, momentum));
}

static int l_linear(lua_State *L)
{
    int64_t in, out;
    int opts;
    lua_settop(L, 3);
    if (lua_istable(L, 1)) {
        fs_lua_check_options(L, 1, "fs.nn.linear",
                             FS_OPTIONS("in_features", "out_features", "bias", "seed",
                                        "generator"));
        in = req_int(L, 1, "in_features", "fs.nn.linear");
        out = req_int(L, 1, "out_features", "fs.nn.linear");
        opts = 1;
    } else {
        in = luaL_checkinteger(L, 1);
        out = luaL_checkinteger(L, 2);
        opts = 3;
        check_opts(L, 3, "fs.nn.linear", FS_OPTIONS("bias", "seed", "generator"));
    }
    fs_generator local, *g = opt_gen(L, opts, &local);
    bool bias = fs_lua_opt_bool(L, opts, "bias", true);
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_linear(in, out, bias, g));
}

static int l_relu(lua_State *L)
{
    lua_settop(L, 1);
    check_opts(L, 1, "fs.nn.relu", FS_OPTIONS(NULL));
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_relu());
}

static int l_flatten(lua_State *L)
{
    lua_settop(L, 1);
    check_opts(L, 1, "fs.nn.flatten", FS_OPTIONS(NULL));
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_flatten());
}

static int l_maxpool2d(lua_State *L)
{
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    fs_lua_check_options(L, 1, "fs.nn.maxpool2d",
                         FS_OPTIONS("kernel", "kernel_size", "stride", "padding", "ceil_mode"));
    fs_pool2d_args a = {{0, 0}, {0, 0}, {0, 0}, false, true};
    if (!opt_pair(L, 1, "kernel", a.kernel, "fs.nn.maxpool2d") &&
        !opt_pair(L, 1, "kernel_size", a.kernel, "fs.nn.maxpool2d"))
        return luaL_error(L, "fs.nn.maxpool2d: option 'kernel' is required");
    opt_pair(L, 1, "stride", a.stride, "fs.nn.maxpool2d");
    opt_pair(L, 1, "padding", a.padding, "fs.nn.maxpool2d");
    a.ceil_mode = fs_lua_opt_bool(L, 1, "ceil_mode", false);
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_maxpool2d(&a));
}

static int l_adaptive_avgpool2d(lua_State *L)
{
    int64_t o[2] = {1, 1};
    lua_settop(L, 1);
    check_opts(L, 1, "fs.nn.adaptive_avgpool2d", FS_OPTIONS("output_size"));
    opt_pair(L, 1, "output_size", o, "fs.nn.adaptive_avgpool2d");
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_adaptive_avgpool2d(o[0], o[1]));
}

static int l_sequential(lua_State *L)
{
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_rawlen(L, 1);
    lua_pushnil(L); /* the table is the list of modules: any other key is a mistake */
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
        if (k < 1 || k > n)
            return luaL_error(L, "fs.nn.sequential: unknown key '%s' (it takes a list of modules "
                                 "and no options)", luaL_tolstring(L, -1, NULL));
    }
    fs_module *mods[256];
    if (n > 256)
        return luaL_error(L, "fs.nn.sequential: at most 256 modules (got %d)", n);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        mods[i] = fs_lua_test_module(L, -1);
        if (!mods[i])
            return luaL_error(L, "fs.nn.sequential: item %d is a %s, not a fewshot.Module", i + 1,
                              luaL_typename(L, -1));
        lua_pop(L, 1); /* the table keeps it alive */
    }
    fs_module **box = new_box(L);
    return box_return(L, box, fs_nn_sequential(n, mods));
}

static int l_resnet18(lua_State *L)
{
    lua_settop(L, 1);
    if (!lua_istable(L, 1) && !lua_isnil(L, 1))
        luaL_typeerror(L, 1, "options table");
    fs_lua_check_options(L, 1, "fs.nn.resnet18",
                         FS_OPTIONS("in_channels", "num_classes", "seed", "generator"));
    fs_generator local, *g = opt_gen(L, 1, &local);
    int64_t in = fs_lua_opt_integer(L, 1, "in_channels", 3);
    int64_t classes = fs_lua_opt_integer(L, 1, "num_classes", 0);
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "num_classes");
        bool given = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (given && classes < 1)
            return luaL_error(L, "fs.nn.resnet18: num_classes must be >= 1 (or nil for the "
                                 "512-d embedding), got %d", (int)classes);
    }
    fs_module **box = new_box(L);
    return box_return(L, box, fs_resnet18(in, classes, g));
}

static int l_prnet(lua_State *L)
{
    lua_settop(L, 1);
    if (!lua_istable(L, 1) && !lua_isnil(L, 1))
        luaL_typeerror(L, 1, "options table");
    fs_lua_check_options(L, 1, "fs.nn.prnet",
                         FS_OPTIONS("in_channels", "base", "depth", "latent", "patch", "norm",
                                    "up", "convs_per_level", "seed", "generator"));
    fs_generator local, *g = opt_gen(L, 1, &local);
    fs_prnet_settings s = FS_PRNET_SETTINGS_DEFAULT;
    s.in_channels = fs_lua_opt_integer(L, 1, "in_channels", s.in_channels);
    s.base = fs_lua_opt_integer(L, 1, "base", s.base);
    s.depth = fs_lua_opt_integer(L, 1, "depth", s.depth);
    s.latent = fs_lua_opt_integer(L, 1, "latent", s.latent);
    s.patch = fs_lua_opt_integer(L, 1, "patch", s.patch);
    s.convs_per_level = fs_lua_opt_integer(L, 1, "convs_per_level", s.convs_per_level);
    if (fs_prnet_norm_parse("fs.nn.prnet", fs_lua_opt_string(L, 1, "norm", "instance"),
                            &s.norm) < 0 ||
        fs_prnet_up_parse("fs.nn.prnet", fs_lua_opt_string(L, 1, "up", "bilinear"), &s.up) < 0)
        return fs_lua_error(L);
    fs_module **box = new_box(L);
    fs_module *m = fs_prnet(&s, g);
    if (!m)
        return luaL_error(L, "fs.nn.%s", fs_error());
    return box_return(L, box, m);
}

/* fs.nn.load(path): the architecture from the file's "fewshot.module" text, rebuilt by the core
 * (fs_module_from_spec: parsed, never evaluated), then its state dict loaded strictly. */
static int l_load(lua_State *L)
{
    lua_settop(L, 1);
    const char *path = luaL_checkstring(L, 1);
    fs_tensor_dict d;
    if (fs_safetensors_read(path, &d) < 0)
        return fs_lua_error(L);
    const char *spec = NULL;
    for (int64_t i = 0; i < d.nmeta; i++)
        if (strcmp(d.meta_keys[i], "fewshot.module") == 0)
            spec = d.meta_values[i];
    if (!spec || fs_module_spec_check(spec) < 0) {
        fs_tensor_dict_free(&d);
        return luaL_error(L, "fs.nn.load: '%s' has no fewshot module description (a file "
                             "written by model:save%s%s); for other weight files build the "
                             "model and call model:load_state_dict(fs.io.load(path))", path,
                          spec ? ": " : "", spec ? fs_error() : "");
    }
    fs_module **box = new_box(L);
    fs_module *m = fs_module_from_spec(spec, fs_lua_default_generator(L));
    int rc = m ? fs_module_load_state_dict(m, &d, true, false) : -1;
    fs_tensor_dict_free(&d);
    *box = m;
    if (rc < 0)
        return luaL_error(L, "fs.nn.load: '%s': %s", path, fs_error());
    fs_lua_account(L);
    return 1;
}

static const luaL_Reg methods[] = {
    {"forward", m_forward}, {"encode", m_encode}, {"train", m_train}, {"eval", m_eval},
    {"is_training", m_is_training}, {"parameters", m_parameters},
    {"named_parameters", m_named_parameters}, {"state_dict", m_state_dict},
    {"state_dict_keys", m_state_dict_keys},
    {"load_state_dict", m_load_state_dict}, {"save", m_save}, {"zero_grad", m_zero_grad},
    {"num_parameters", m_num_parameters}, {"child", m_child},
    {"flat_parameters", m_flat_parameters}, {"flat_grad", m_flat_grad}, {"close", m_gc},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__call", m_call}, {"__tostring", m_tostring}, {"__gc", m_gc}, {"__close", m_gc},
    {NULL, NULL}};

static const luaL_Reg constructors[] = {
    {"conv2d", l_conv2d}, {"batchnorm2d", l_batchnorm2d}, {"linear", l_linear},
    {"relu", l_relu}, {"maxpool2d", l_maxpool2d}, {"adaptive_avgpool2d", l_adaptive_avgpool2d},
    {"flatten", l_flatten}, {"sequential", l_sequential}, {"resnet18", l_resnet18},
    {"prnet", l_prnet}, {"conv_transpose2d", l_conv_transpose2d},
    {"instancenorm2d", l_instancenorm2d}, {"upsample", l_upsample},
    {NULL, NULL}};

void fs_lua_open_module(lua_State *L)
{
    luaL_newmetatable(L, FS_MODULE_MT);
    luaL_setfuncs(L, metamethods, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, m_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_getfield(L, -1, "nn"); /* shared with the layers area: create only when absent */
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "nn");
    }
    luaL_setfuncs(L, constructors, 0);
    lua_pushcfunction(L, l_load);
    lua_setfield(L, -2, "load");
    lua_pop(L, 1);
}
