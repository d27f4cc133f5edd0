/* optim_lua.c - fs.optim: SGD, Adam, AdamW over a model's flat buffer or a list of tensors,
 * and the StepLR schedule.
 *
 *   opt = fs.optim.adam(model_or_params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8,
 *                       weight_decay=0, amsgrad=false})
 *   fs.optim.adamw(..., {weight_decay=1e-2, ...}); fs.optim.sgd(..., {lr=, momentum=0,
 *                       dampening=0, weight_decay=0, nesterov=false})
 *   opt:step(); opt:zero_grad(); opt.lr (read/write); opt:is_flat()
 *   opt:state_dict() -> {step=Tensor(n), exp_avg=Tensor(P), ..., lr=, ...}
 *   opt:load_state_dict(sd); opt:save(path); opt:load(path)  (safetensors, hyperparameters
 *   in the metadata with 17 significant digits, so a resumed run is bit-identical)
 *   sched = fs.optim.step_lr(opt, {step=, gamma=0.1}); sched:step(); sched:get_last_lr() */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmodule.h"
#include "module/optim.h"

#define OPTIM_MT "fewshot.Optimizer"
#define STEPLR_MT "fewshot.StepLR"

typedef struct { fs_tensor **v; int n; } plist;

static fs_optim *check_opt(lua_State *L, int idx)
{
    fs_optim **box = luaL_checkudata(L, idx, OPTIM_MT);
    if (!*box)
        luaL_error(L, "attempt to use a closed optimizer");
    return *box;
}

static int make(lua_State *L, fs_optim_kind kind)
{
    const char *name = fs_optim_name(kind);
    lua_settop(L, 2);
    char op[32];
    snprintf(op, sizeof op, "fs.optim.%s", name);
    if (kind == FS_OPTIM_SGD)
        fs_lua_check_options(L, 2, op, FS_OPTIONS("lr", "momentum", "dampening", "nesterov",
                                                  "weight_decay"));
    else
        fs_lua_check_options(L, 2, op, FS_OPTIONS("lr", "betas", "eps", "weight_decay",
                                                  "amsgrad"));
    fs_optim_config c = {0};
    c.lr = fs_lua_opt_number(L, 2, "lr", kind == FS_OPTIM_SGD ? -1.0 : 1e-3);
    if (kind == FS_OPTIM_SGD && c.lr < 0 && fs_lua_opt_number(L, 2, "lr", -2.0) == -2.0)
        return luaL_error(L, "fs.optim.sgd: option 'lr' is required");
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "betas");
        if (lua_istable(L, -1)) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1))
                return luaL_error(L, "fs.optim.%s: betas must be two numbers", name);
            c.beta1 = lua_tonumber(L, -2);
            c.beta2 = lua_tonumber(L, -1);
            lua_pop(L, 2);
        } else if (!lua_isnil(L, -1)) {
            return luaL_error(L, "fs.optim.%s: betas must be a table {beta1, beta2}", name);
        }
        lua_pop(L, 1);
    }
    c.eps = fs_lua_opt_number(L, 2, "eps", 1e-8);
    c.weight_decay = fs_lua_opt_number(L, 2, "weight_decay", kind == FS_OPTIM_ADAMW ? 1e-2 : 0.0);
    c.amsgrad = fs_lua_opt_bool(L, 2, "amsgrad", false);
    c.momentum = fs_lua_opt_number(L, 2, "momentum", 0.0);
    c.dampening = fs_lua_opt_number(L, 2, "dampening", 0.0);
    c.nesterov = fs_lua_opt_bool(L, 2, "nesterov", false);

    fs_optim **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, OPTIM_MT);
    plist l = {0};
    fs_module *m = fs_lua_test_module(L, 1);
    if (m) {
        /* frozen parameters are not optimized */
        if (fs_module_ensure_grad(m) < 0 || fs_module_parameter_list(m, true, &l.v, &l.n) < 0) {
            return fs_lua_error(L);
        }
    } else {
        if (!lua_istable(L, 1))
            return luaL_error(L, "fs.optim.%s: expected a fewshot.Module or a list of tensors, "
                                 "got a %s", name, luaL_typename(L, 1));
        int n = (int)lua_rawlen(L, 1);
        l.v = malloc((size_t)(n ? n : 1) * sizeof *l.v);
        if (!l.v)
            return luaL_error(L, "fs.optim.%s: out of memory", name);
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, 1, i + 1);
            fs_tensor *t = fs_lua_test_tensor(L, -1);
            if (!t) {
                free(l.v);
                return luaL_error(L, "fs.optim.%s: item %d of the parameter list is a %s, not "
                                     "a Tensor", name, i + 1, luaL_typename(L, -1));
            }
            l.v[l.n++] = t; /* kept alive by the table while we build */
            lua_pop(L, 1);
        }
    }
    fs_optim *o = fs_optim_new(kind, l.n, l.v, &c);
    free(l.v);
    if (!o)
        return luaL_error(L, "fs.optim.%s", fs_error());
    *box = o;
    fs_lua_account(L);
    return 1;
}

static int l_adam(lua_State *L) { return make(L, FS_OPTIM_ADAM); }
static int l_adamw(lua_State *L) { return make(L, FS_OPTIM_ADAMW); }
static int l_sgd(lua_State *L) { return make(L, FS_OPTIM_SGD); }

static int o_gc(lua_State *L)
{
    fs_optim **box = luaL_checkudata(L, 1, OPTIM_MT);
    fs_optim_free(*box);
    *box = NULL;
    return 0;
}

static int o_step(lua_State *L)
{
    if (fs_optim_step(check_opt(L, 1)) < 0)
        return fs_lua_error(L);
    return 0;
}

static int o_zero_grad(lua_State *L)
{
    fs_optim_zero_grad(check_opt(L, 1));
    return 0;
}

static int o_is_flat(lua_State *L)
{
    lua_pushboolean(L, fs_optim_is_flat(check_opt(L, 1)));
    return 1;
}

/* ---- state (the layout and every check are fs_optim_state_dict's, optim.h) ---- */

/* The state dict as a table: its tensors, kind = the "fewshot.optimizer" tag and each
 * hyper-parameter as a number. */
static int o_state_dict(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    lua_newtable(L);
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    if (fs_optim_state_dict(o, &d) < 0) {
        fs_tensor_dict_free(&d);
        return fs_lua_error(L);
    }
    for (int64_t i = 0; i < d.n; i++) {
        fs_lua_push_retain(L, d.tensors[i]);
        lua_setfield(L, -2, d.names[i]);
    }
    for (int64_t i = 0; i < d.nmeta; i++) {
        if (strcmp(d.meta_keys[i], "fewshot.optimizer") == 0) {
            lua_pushstring(L, d.meta_values[i]);
            lua_setfield(L, -2, "kind");
        } else {
            lua_pushnumber(L, strtod(d.meta_values[i], NULL)); /* %.17g: exact */
            lua_setfield(L, -2, d.meta_keys[i]);
        }
    }
    fs_tensor_dict_free(&d);
    return 1;
}

/* The table back into a state dict: tensors by name, kind as the tag, numbers (17 significant
 * digits, exact), strings and booleans as metadata for the core to check. */
static int o_load_state_dict(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "kind");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "%s load_state_dict: 'kind' must be a string, got a %s",
                          fs_optim_name(o->kind), luaL_typename(L, -1));
    lua_pop(L, 1);
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    int rc = 0;
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, 2)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *key = lua_tostring(L, -2);
            fs_tensor *t = fs_lua_test_tensor(L, -1);
            char num[40];
            if (t) {
                rc = fs_tensor_dict_add(&d, key, t);
            } else if (strcmp(key, "kind") == 0) {
                rc = fs_tensor_dict_add_meta(&d, "fewshot.optimizer", lua_tostring(L, -1));
            } else if (lua_type(L, -1) == LUA_TNUMBER) {
                snprintf(num, sizeof num, "%.17g", (double)lua_tonumber(L, -1));
                rc = fs_tensor_dict_add_meta(&d, key, num);
            } else if (lua_type(L, -1) == LUA_TSTRING) {
                rc = fs_tensor_dict_add_meta(&d, key, lua_tostring(L, -1));
            } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
                rc = fs_tensor_dict_add_meta(&d, key, lua_toboolean(L, -1) ? "true" : "false");
            }
        }
        lua_pop(L, 1);
    }
    if (rc == 0)
        rc = fs_optim_load_state_dict(o, &d);
    fs_tensor_dict_free(&d);
    if (rc < 0)
        return fs_lua_error(L);
    return 0;
}

static int o_save(lua_State *L)
{
    if (fs_optim_save(check_opt(L, 1), luaL_checkstring(L, 2)) < 0)
        return fs_lua_error(L);
    return 0;
}

static int o_load(lua_State *L)
{
    if (fs_optim_load(check_opt(L, 1), luaL_checkstring(L, 2)) < 0)
        return fs_lua_error(L);
    return 0;
}

static int o_index(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    const char *key = lua_tostring(L, 2);
    if (key) {
        const fs_optim_config *c = &o->c;
        bool sgd = o->kind == FS_OPTIM_SGD;
        const struct { const char *key; double v; bool has; } h[] = {
            {"lr", c->lr, true}, {"weight_decay", c->weight_decay, true},
            {"momentum", c->momentum, sgd}, {"dampening", c->dampening, sgd},
            {"beta1", c->beta1, !sgd}, {"beta2", c->beta2, !sgd}, {"eps", c->eps, !sgd}};
        for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
            if (h[i].has && strcmp(key, h[i].key) == 0) {
                lua_pushnumber(L, h[i].v);
                return 1;
            }
        if (strcmp(key, "kind") == 0) {
            lua_pushstring(L, fs_optim_name(o->kind));
            return 1;
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int o_newindex(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "lr") != 0)
        return luaL_error(L, "optimizer: only 'lr' can be set (got '%s')", key);
    double v = luaL_checknumber(L, 3);
    if (!(v >= 0))
        return luaL_error(L, "optimizer: lr must be >= 0, got %f", v);
    o->c.lr = v;
    return 0;
}

static int o_tostring(lua_State *L)
{
    fs_optim **box = luaL_checkudata(L, 1, OPTIM_MT);
    if (!*box) {
        lua_pushliteral(L, "fewshot.Optimizer (closed)");
        return 1;
    }
    fs_optim *o = *box;
    lua_pushfstring(L, "%s(lr=%f, %d tensors, %I values%s)", fs_optim_name(o->kind), o->c.lr,
                    o->n, (lua_Integer)o->total, fs_optim_is_flat(o) ? ", flat" : "");
    return 1;
}

/* ---- StepLR: every `step` calls of sched:step(), lr = lr * gamma (PyTorch's StepLR) ---- */

typedef struct { lua_Integer step_size, last_epoch; double gamma; } steplr;

static int l_step_lr(lua_State *L)
{
    check_opt(L, 1);
    lua_settop(L, 2);
    fs_lua_check_options(L, 2, "fs.optim.step_lr", FS_OPTIONS("step", "step_size", "gamma"));
    lua_Integer step = fs_lua_opt_integer(L, 2, "step", 0);
    if (step < 1)
        step = fs_lua_opt_integer(L, 2, "step_size", 0);
    if (step < 1)
        return luaL_error(L, "fs.optim.step_lr: option 'step' (>= 1) is required");
    double gamma = fs_lua_opt_number(L, 2, "gamma", 0.1);
    steplr *s = lua_newuserdatauv(L, sizeof *s, 1);
    s->step_size = step;
    s->last_epoch = 0;
    s->gamma = gamma;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, STEPLR_MT);
    return 1;
}

static int s_step(lua_State *L)
{
    steplr *s = luaL_checkudata(L, 1, STEPLR_MT);
    lua_getiuservalue(L, 1, 1);
    fs_optim *o = check_opt(L, -1);
    s->last_epoch++;
    if (s->last_epoch % s->step_size == 0)
        o->c.lr *= s->gamma;
    return 0;
}

static int s_get_last_lr(lua_State *L)
{
    luaL_checkudata(L, 1, STEPLR_MT);
    lua_getiuservalue(L, 1, 1);
    lua_pushnumber(L, check_opt(L, -1)->c.lr);
    return 1;
}

static int s_last_epoch(lua_State *L)
{
    lua_pushinteger(L, ((steplr *)luaL_checkudata(L, 1, STEPLR_MT))->last_epoch);
    return 1;
}

void fs_lua_open_optim(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"step", o_step}, {"zero_grad", o_zero_grad}, {"is_flat", o_is_flat},
        {"state_dict", o_state_dict}, {"load_state_dict", o_load_state_dict},
        {"save", o_save}, {"load", o_load}, {"close", o_gc}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", o_gc}, {"__close", o_gc}, {"__newindex", o_newindex},
        {"__tostring", o_tostring}, {NULL, NULL}};
    luaL_newmetatable(L, OPTIM_MT);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, o_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    static const luaL_Reg smethods[] = {
        {"step", s_step}, {"get_last_lr", s_get_last_lr}, {"last_epoch", s_last_epoch},
        {NULL, NULL}};
    luaL_newmetatable(L, STEPLR_MT);
    lua_newtable(L);
    luaL_setfuncs(L, smethods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {
        {"adam", l_adam}, {"adamw", l_adamw}, {"sgd", l_sgd}, {"step_lr", l_step_lr},
        {NULL, NULL}};
    lua_getfield(L, -1, "optim");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "optim");
    }
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
}
