/* bind_util.c - the helpers declared in lbind.h: Tensor userdata boxes, argument checks,
 * option tables, reporting core allocations to Lua's garbage collector, and the record each
 * Lua state keeps of its own (default generator, GC pacing). */
#include <string.h>

#include "autograd/autograd.h"
#include "lbind.h"

#define FS_GC_MIN_BYTES ((int64_t)64 << 20)

/* What one Lua state owns, so that states in threads of one process do not share it: the
 * default generator (fs.manual_seed) and the tensor-bytes threshold of the GC pacing below.
 * A userdata in the registry under the address of state_key, made by luaopen (fs_lua_open_
 * options) the first time the module is opened in the state. */
typedef struct {
    fs_generator generator;
    int64_t gc_threshold;
} lua_state_record;

static const char state_key = 's';

/* The state's record; made here if missing (the registry entry is made by luaopen, so only a
 * host that removed it gets a fresh one). The registry keeps the userdata alive. */
static lua_state_record *state_record(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
    lua_state_record *r = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (r)
        return r;
    r = lua_newuserdatauv(L, sizeof *r, 0);
    fs_generator_seed(&r->generator, FS_DEFAULT_SEED);
    r->gc_threshold = FS_GC_MIN_BYTES;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
    return r;
}

void fs_lua_open_state(lua_State *L) { (void)state_record(L); }

fs_generator *fs_lua_default_generator(lua_State *L) { return &state_record(L)->generator; }

fs_tensor **fs_lua_new_box(lua_State *L)
{
    fs_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, FS_TENSOR_MT);
    return box;
}

/* Lua's collector sees only the small userdata, not the core's tensor bytes. Incremental
 * steps sized by those bytes do not help under the generational mode that the standalone
 * lua5.4 uses (boxes age into the old generation within a step or two and only a major
 * collection, paced by Lua's own bytes, frees them). So tensor memory gets a pause rule of its
 * own: when live tensor bytes exceed twice what was live after the last full collection (and
 * at least 64 MB), run a full collection. Memory stays bounded near 2x the live set with no
 * collectgarbage() in user code; the cost is one full mark of the Lua heap per doubling. */
void fs_lua_account(lua_State *L)
{
    lua_state_record *r = state_record(L);
    if (fs_bytes_live() <= r->gc_threshold)
        return;
    lua_gc(L, LUA_GCCOLLECT);
    int64_t live = fs_bytes_live();
    r->gc_threshold = live * 2 > FS_GC_MIN_BYTES ? live * 2 : FS_GC_MIN_BYTES;
}

int fs_lua_error(lua_State *L) { return luaL_error(L, "%s", fs_error()); }

void fs_lua_set_number(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

void fs_lua_set_numbers(lua_State *L, const char *k, const double *v, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, k);
}

int fs_lua_return(lua_State *L, fs_tensor **box, fs_tensor *t)
{
    if (!t)
        return fs_lua_error(L);
    *box = t;
    fs_lua_account(L);
    return 1;
}

void fs_lua_push_tensor(lua_State *L, fs_tensor *t)
{
    if (!t)
        fs_lua_error(L);
    fs_tensor **box = fs_lua_new_box(L);
    *box = t;
    fs_lua_account(L);
}

void fs_lua_push_retain(lua_State *L, fs_tensor *t)
{
    fs_tensor **box = fs_lua_new_box(L);
    *box = fs_tensor_retain(t);
}

void fs_lua_push_alias(lua_State *L, const fs_tensor *t)
{
    fs_tensor **box = fs_lua_new_box(L);
    *box = fs_tensor_alias(t);
    if (!*box)
        fs_lua_error(L);
    fs_lua_account(L);
}

fs_tensor *fs_lua_test_tensor(lua_State *L, int idx)
{
    fs_tensor **box = luaL_testudata(L, idx, FS_TENSOR_MT);
    if (!box)
        return NULL;
    if (!*box)
        luaL_error(L, "attempt to use a closed tensor");
    return *box;
}

fs_tensor *fs_lua_check_tensor(lua_State *L, int idx)
{
    fs_tensor **box = luaL_testudata(L, idx, FS_TENSOR_MT);
    if (!box)
        luaL_typeerror(L, idx, "fewshot.Tensor");
    if (!*box)
        luaL_error(L, "attempt to use a closed tensor");
    return *box;
}

fs_tensor *fs_lua_to_tensor(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER) {
        float v = (float)lua_tonumber(L, idx);
        fs_tensor **box = fs_lua_new_box(L);
        fs_lua_return(L, box, fs_tensor_scalar(v));
        lua_replace(L, idx);
        return *box;
    }
    return fs_lua_check_tensor(L, idx);
}

int fs_lua_check_shape(lua_State *L, int idx, int64_t *size)
{
    int n = 0;
    if (lua_istable(L, idx)) {
        lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
        if (len > FS_MAX_DIM)
            luaL_error(L, "shape has %d dims, at most %d are supported", (int)len, FS_MAX_DIM);
        for (lua_Integer k = 1; k <= len; k++) {
            lua_rawgeti(L, idx, k);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok || v < 0)
                luaL_error(L, "shape entry %d must be a non-negative integer", (int)k);
            size[n++] = v;
        }
        return n;
    }
    while (lua_type(L, idx + n) == LUA_TNUMBER) {
        if (n == FS_MAX_DIM)
            luaL_error(L, "shape has more than %d dims", FS_MAX_DIM);
        lua_Integer v = luaL_checkinteger(L, idx + n);
        if (v < 0)
            luaL_error(L, "shape entry %d must be a non-negative integer", n + 1);
        size[n] = v;
        n++;
    }
    if (n == 0 && !lua_isnoneornil(L, idx))
        luaL_typeerror(L, idx, "shape table");
    return n;
}

int fs_lua_check_dim(lua_State *L, int idx, int ndim)
{
    lua_Integer d = luaL_checkinteger(L, idx);
    lua_Integer z = d > 0 ? d - 1 : d + ndim;
    if (d == 0 || z < 0 || z >= ndim)
        luaL_error(L, "dim %d out of range for a tensor with %d dims (dims are 1-based; "
                      "negative counts from the end)", (int)d, ndim);
    return (int)z;
}

int fs_lua_opt_dim(lua_State *L, int idx, int ndim, int def)
{
    return lua_isnoneornil(L, idx) ? def : fs_lua_check_dim(L, idx, ndim);
}

/* idx 0 means "no options table" (callers pass it when there is none; 0 is not a valid stack
 * index: lua_isnoneornil(L, 0) reads whatever lies at the top). */
static bool opt_field(lua_State *L, int idx, const char *key)
{
    if (idx == 0 || lua_isnoneornil(L, idx))
        return false;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return false;
    }
    return true;
}

bool fs_lua_opt_bool(lua_State *L, int idx, const char *key, bool def)
{
    if (!opt_field(L, idx, key))
        return def;
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

lua_Number fs_lua_opt_number(lua_State *L, int idx, const char *key, lua_Number def)
{
    if (!opt_field(L, idx, key))
        return def;
    if (!lua_isnumber(L, -1))
        luaL_error(L, "option '%s' must be a number", key);
    lua_Number v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

lua_Integer fs_lua_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def)
{
    if (!opt_field(L, idx, key))
        return def;
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "option '%s' must be an integer", key);
    lua_pop(L, 1);
    return v;
}

const char *fs_lua_opt_string(lua_State *L, int idx, const char *key, const char *def)
{
    if (!opt_field(L, idx, key))
        return def;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "option '%s' must be a string", key);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* the options table keeps the string alive */
    return s;
}

fs_generator *fs_lua_opt_generator(lua_State *L, int idx)
{
    if (!opt_field(L, idx, "generator"))
        return fs_lua_default_generator(L);
    fs_generator *g = luaL_testudata(L, -1, FS_GENERATOR_MT);
    if (!g)
        luaL_error(L, "option 'generator' must be a fewshot.Generator (fs.generator(seed))");
    lua_pop(L, 1);
    return g;
}

void fs_lua_apply_requires_grad(lua_State *L, int opts, fs_tensor *t)
{
    if (fs_lua_opt_bool(L, opts, "requires_grad", false))
        t->requires_grad = true;
}

/* Levenshtein distance of a and b, capped at 99 (for "did you mean"). */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *nearest_key(const char *key, const char *const *keys)
{
    size_t klen = strlen(key);
    for (int i = 0; keys[i]; i++) /* a shortened key: "retain" for "retain_graph" */
        if (klen >= 3 && strncmp(keys[i], key, klen) == 0)
            return keys[i];
    const char *best = NULL;
    int best_d = 99;
    for (int i = 0; keys[i]; i++) {
        int d = edit_distance(key, keys[i]);
        if (d < best_d) {
            best_d = d;
            best = keys[i];
        }
    }
    /* a suggestion only when it is close: at most a third of the key's letters differ */
    return best && best_d <= 1 + (int)strlen(key) / 3 ? best : NULL;
}

void fs_lua_check_options(lua_State *L, int idx, const char *op, const char *const *keys)
{
    if (!lua_istable(L, idx))
        return;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: options must be named (a key of type %s was given)", op,
                       luaL_typename(L, -1));
        const char *key = lua_tostring(L, -1);
        int known = 0;
        for (int i = 0; keys[i] && !known; i++)
            known = strcmp(key, keys[i]) == 0;
        if (!known) {
            if (!keys[0])
                luaL_error(L, "%s: unknown option '%s' (it takes no options)", op, key);
            const char *near = nearest_key(key, keys);
            if (near)
                luaL_error(L, "%s: unknown option '%s' (did you mean '%s'?)", op, key, near);
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; keys[i]; i++) {
                if (i)
                    luaL_addstring(&b, ", ");
                luaL_addstring(&b, keys[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown option '%s' (options: %s)", op, key, lua_tostring(L, -1));
        }
    }
}

/* fewshot.core.check_options(op, opts, {"key", ...}): the same checker for the Lua front. */
static int l_check_options(lua_State *L)
{
    const char *op = luaL_checkstring(L, 1);
    if (lua_isnoneornil(L, 2))
        return 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 3);
    if (n > 255)
        return luaL_error(L, "check_options: at most 255 keys");
    const char *keys[256];
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 3, i);
        keys[i - 1] = lua_tostring(L, -1); /* the strings stay referenced by the table */
        if (!keys[i - 1])
            return luaL_error(L, "check_options: key %d is not a string", (int)i);
        lua_pop(L, 1);
    }
    keys[n] = NULL;
    fs_lua_check_options(L, 2, op, keys);
    return 0;
}

void fs_lua_open_options(lua_State *L)
{
    fs_lua_open_state(L);
    lua_pushcfunction(L, l_check_options);
    lua_setfield(L, -2, "check_options");
}
