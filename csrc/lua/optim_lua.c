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

/* ---- state ---- */

typedef struct { const char *key; double *v; } hyper;

static int hypers(fs_optim *o, hyper *h)
{
    int n = 0;
    h[n++] = (hyper){"lr", &o->c.lr};
    h[n++] = (hyper){"weight_decay", &o->c.weight_decay};
    if (o->kind == FS_OPTIM_SGD) {
        h[n++] = (hyper){"momentum", &o->c.momentum};
        h[n++] = (hyper){"dampening", &o->c.dampening};
    } else {
        h[n++] = (hyper){"beta1", &o->c.beta1};
        h[n++] = (hyper){"beta2", &o->c.beta2};
        h[n++] = (hyper){"eps", &o->c.eps};
    }
    return n;
}

typedef struct { const char *key; float *data; int64_t n; } statevec;

static int statevecs(fs_optim *o, statevec *s)
{
    int n = 0;
    if (o->exp_avg)
        s[n++] = (statevec){"exp_avg", o->exp_avg, o->total};
    if (o->exp_avg_sq)
        s[n++] = (statevec){"exp_avg_sq", o->exp_avg_sq, o->total};
    if (o->max_exp_avg_sq)
        s[n++] = (statevec){"max_exp_avg_sq", o->max_exp_avg_sq, o->total};
    if (o->momentum_buffer)
        s[n++] = (statevec){"momentum_buffer", o->momentum_buffer, o->total};
    return n;
}

/* Tensors of the state (copies), in a dict. */
static int state_to_dict(fs_optim *o, fs_tensor_dict *d)
{
    statevec s[4];
    int ns = statevecs(o, s);
    int64_t n = o->n;
    fs_tensor *steps = fs_tensor_new(1, &n), *set = fs_tensor_new(1, &n);
    int rc = steps && set ? 0 : -1;
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        fs_data(steps)[i] = (float)o->steps[i];
        fs_data(set)[i] = o->buffer_set[i];
    }
    if (rc == 0)
        rc = fs_tensor_dict_add(d, "step", steps);
    if (rc == 0 && o->kind == FS_OPTIM_SGD)
        rc = fs_tensor_dict_add(d, "buffer_set", set);
    fs_tensor_release(steps);
    fs_tensor_release(set);
    for (int k = 0; rc == 0 && k < ns; k++) {
        fs_tensor *t = fs_tensor_from_data(1, &s[k].n, s[k].data);
        rc = t ? fs_tensor_dict_add(d, s[k].key, t) : -1;
        fs_tensor_release(t);
    }
    return rc;
}

/* Checks every tensor first, then copies: a failed load changes nothing. */
static int dict_to_state(fs_optim *o, const fs_tensor_dict *d)
{
    const char *name = fs_optim_name(o->kind);
    statevec s[4];
    int ns = statevecs(o, s);
    int64_t k = fs_tensor_dict_find(d, "step");
    if (k < 0 || fs_numel(d->tensors[k]) != o->n)
        return fs_set_error("%s load_state_dict: 'step' must hold %d counts (one per parameter)",
                            name, o->n);
    int64_t kb = fs_tensor_dict_find(d, "buffer_set");
    if (o->kind == FS_OPTIM_SGD && (kb < 0 || fs_numel(d->tensors[kb]) != o->n))
        return fs_set_error("sgd load_state_dict: 'buffer_set' must hold %d flags", o->n);
    for (int j = 0; j < ns; j++) {
        int64_t i = fs_tensor_dict_find(d, s[j].key);
        if (i < 0 || fs_numel(d->tensors[i]) != s[j].n)
            return fs_set_error("%s load_state_dict: '%s' must hold %lld values (got %s)", name,
                                s[j].key, (long long)s[j].n,
                                i < 0 ? "none" : FS_SHAPE(d->tensors[i]));
    }
    float *tmp = malloc((size_t)o->n * sizeof *tmp);
    if (!tmp)
        return fs_set_error("%s load_state_dict: out of memory", name);
    fs_tensor_read(d->tensors[k], tmp);
    for (int i = 0; i < o->n; i++)
        o->steps[i] = (int64_t)tmp[i];
    if (kb >= 0 && o->kind == FS_OPTIM_SGD) {
        fs_tensor_read(d->tensors[kb], tmp);
        for (int i = 0; i < o->n; i++)
            o->buffer_set[i] = tmp[i] != 0.0f;
    }
    free(tmp);
    for (int j = 0; j < ns; j++)
        fs_tensor_read(d->tensors[fs_tensor_dict_find(d, s[j].key)], s[j].data);
    return 0;
}

static int o_state_dict(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    lua_newtable(L);
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    if (state_to_dict(o, &d) < 0) {
        fs_tensor_dict_free(&d);
        return fs_lua_error(L);
    }
    for (int64_t i = 0; i < d.n; i++) {
        fs_lua_push_tensor(L, fs_tensor_retain(d.tensors[i]));
        lua_setfield(L, -2, d.names[i]);
    }
    fs_tensor_dict_free(&d);
    hyper h[8];
    int nh = hypers(o, h);
    for (int i = 0; i < nh; i++) {
        lua_pushnumber(L, *h[i].v);
        lua_setfield(L, -2, h[i].key);
    }
    lua_pushstring(L, fs_optim_name(o->kind));
    lua_setfield(L, -2, "kind");
    return 1;
}

static int o_load_state_dict(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "kind");
    if (!lua_isnil(L, -1) && strcmp(luaL_checkstring(L, -1), fs_optim_name(o->kind)) != 0)
        return luaL_error(L, "%s load_state_dict: the state is from a %s optimizer",
                          fs_optim_name(o->kind), lua_tostring(L, -1));
    lua_pop(L, 1);
    hyper h[8];
    int nh = hypers(o, h);
    double vals[8];
    for (int i = 0; i < nh; i++)
        vals[i] = fs_lua_opt_number(L, 2, h[i].key, *h[i].v);
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    lua_pushnil(L);
    while (lua_next(L, 2)) { /* the tensors only */
        fs_tensor *t = lua_type(L, -2) == LUA_TSTRING ? fs_lua_test_tensor(L, -1) : NULL;
        if (t && fs_tensor_dict_add(&d, lua_tostring(L, -2), t) < 0) {
            fs_tensor_dict_free(&d);
            return fs_lua_error(L);
        }
        lua_pop(L, 1);
    }
    int rc = dict_to_state(o, &d);
    fs_tensor_dict_free(&d);
    if (rc < 0)
        return fs_lua_error(L);
    for (int i = 0; i < nh; i++)
        *h[i].v = vals[i];
    return 0;
}

static int o_save(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    const char *path = luaL_checkstring(L, 2);
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    hyper h[8];
    int nh = hypers(o, h);
    int rc = state_to_dict(o, &d);
    if (rc == 0)
        rc = fs_tensor_dict_add_meta(&d, "fewshot.optimizer", fs_optim_name(o->kind));
    for (int i = 0; rc == 0 && i < nh; i++) {
        char num[40];
        snprintf(num, sizeof num, "%.17g", *h[i].v);
        rc = fs_tensor_dict_add_meta(&d, h[i].key, num);
    }
    return fs_lua_save_dict(L, path, &d, rc);
}

static int o_load(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    const char *path = luaL_checkstring(L, 2);
    fs_tensor_dict d;
    if (fs_safetensors_read(path, &d) < 0)
        return fs_lua_error(L);
    hyper h[8];
    int nh = hypers(o, h);
    double vals[8];
    const char *kind = NULL;
    for (int i = 0; i < nh; i++)
        vals[i] = *h[i].v;
    for (int64_t k = 0; k < d.nmeta; k++) {
        if (strcmp(d.meta_keys[k], "fewshot.optimizer") == 0)
            kind = d.meta_values[k];
        for (int i = 0; i < nh; i++)
            if (strcmp(d.meta_keys[k], h[i].key) == 0)
                vals[i] = strtod(d.meta_values[k], NULL);
    }
    if (!kind || strcmp(kind, fs_optim_name(o->kind)) != 0) {
        fs_tensor_dict_free(&d);
        return luaL_error(L, "%s load: '%s' is not a saved %s optimizer state",
                          fs_optim_name(o->kind), path, fs_optim_name(o->kind));
    }
    int rc = dict_to_state(o, &d);
    fs_tensor_dict_free(&d);
    if (rc < 0)
        return luaL_error(L, "'%s': %s", path, fs_error());
    for (int i = 0; i < nh; i++)
        *h[i].v = vals[i];
    return 0;
}

static int o_index(lua_State *L)
{
    fs_optim *o = check_opt(L, 1);
    const char *key = lua_tostring(L, 2);
    if (key) {
        hyper h[8];
        int nh = hypers(o, h);
        for (int i = 0; i < nh; i++)
            if (strcmp(key, h[i].key) == 0) {
                lua_pushnumber(L, *h[i].v);
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
