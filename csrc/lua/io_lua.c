/* io_lua.c - fs.io.load/save (safetensors) and fs.io.load_npy/save_npy.
 *
 *   fs.io.load(path)                      -> {name = Tensor, ...}, {key = "value", ...}
 *   fs.io.save(path, {name = Tensor, ...}, {metadata = {key = "value"}})
 *   fs.io.load_npy(path)                  -> Tensor (float32)
 *   fs.io.save_npy(path, tensor)
 *   fs.io.load_idx(path)                  -> Tensor (float32, values as stored): IDX, .gz too
 *
 * Data errors (missing, truncated or corrupt files) raise an error naming the file. */
#include <stdlib.h>
#include <string.h>

#include "lbind.h"
#include "lmodule.h"
#include "io/idx.h"
#include "io/npy.h"
#include "io/safetensors.h"

static int l_load_idx(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_idx_read(path));
}

#define DICT_GUARD_MT "fewshot.DictGuard"

/* A tensor dict owned by a userdata while its entries are boxed: if a Lua allocation raises
 * half-way (out of memory), the collector frees what is left. */
static int dict_guard_gc(lua_State *L)
{
    fs_tensor_dict *d = luaL_checkudata(L, 1, DICT_GUARD_MT);
    fs_tensor_dict_free(d); /* a freed dict is empty: safe to run twice */
    return 0;
}

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_createtable(L, 0, 0); /* 2: tensors (allocate Lua-side first) */
    lua_createtable(L, 0, 0); /* 3: metadata */
    luaL_setmetatable(L, FS_METADATA_MT); /* so load_state_dict(fs.io.load(p)) skips it */
    fs_tensor_dict *d = lua_newuserdatauv(L, sizeof *d, 0); /* 4: owns the dict */
    fs_tensor_dict_init(d);
    luaL_setmetatable(L, DICT_GUARD_MT);
    if (fs_safetensors_read(path, d) < 0)
        return fs_lua_error(L);
    for (int64_t i = 0; i < d->nmeta; i++) {
        lua_pushstring(L, d->meta_values[i]);
        lua_setfield(L, 3, d->meta_keys[i]);
    }
    for (int64_t i = 0; i < d->n; i++) {
        fs_tensor **box = fs_lua_new_box(L); /* may raise: the guard still owns the tensor */
        *box = d->tensors[i];
        d->tensors[i] = NULL;
        lua_setfield(L, 2, d->names[i]);
    }
    fs_tensor_dict_free(d);
    lua_pop(L, 1);
    fs_lua_account(L);
    return 2;
}

static int l_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    fs_tensor_dict d;
    fs_lua_check_options(L, 3, "fs.io.save", FS_OPTIONS("metadata"));
    fs_tensor_dict_init(&d);
    /* metadata first (its checks may raise before the dict holds anything) */
    if (lua_type(L, 3) == LUA_TTABLE) {
        lua_getfield(L, 3, "metadata");
        if (!lua_isnil(L, -1)) {
            int m = lua_gettop(L);
            luaL_argexpected(L, lua_istable(L, m), 3, "metadata table");
            lua_pushnil(L);
            while (lua_next(L, m)) {
                if (lua_type(L, -2) != LUA_TSTRING ||
                    (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
                    fs_tensor_dict_free(&d);
                    return luaL_error(L, "fs.io.save: metadata keys and values must be strings");
                }
                const char *v = luaL_tolstring(L, -1, NULL);
                int rc = fs_tensor_dict_add_meta(&d, lua_tostring(L, -3), v);
                lua_pop(L, 2);
                if (rc < 0) {
                    fs_tensor_dict_free(&d);
                    return fs_lua_error(L);
                }
            }
        }
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
    }
    fs_lua_check_tensor_dict(L, 2, "fs.io.save", &d);
    return fs_lua_save_dict(L, path, &d, 0);
}

static int l_load_npy(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_npy_read(path));
}

static int l_save_npy(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_tensor *t = fs_lua_check_tensor(L, 2);
    if (fs_npy_write(path, t) < 0)
        return fs_lua_error(L);
    return 0;
}

void fs_lua_open_io(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"load", l_load}, {"save", l_save}, {"load_npy", l_load_npy}, {"save_npy", l_save_npy},
        {"load_idx", l_load_idx},
        {NULL, NULL}};
    luaL_newmetatable(L, FS_METADATA_MT); /* marks the metadata table fs.io.load returns */
    lua_pop(L, 1);
    luaL_newmetatable(L, DICT_GUARD_MT);
    lua_pushcfunction(L, dict_guard_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_getfield(L, -1, "io"); /* shared with other areas: create only when absent */
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "io");
    }
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
}
