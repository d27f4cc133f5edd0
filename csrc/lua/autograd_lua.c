/* autograd_lua.c - grad mode from Lua: fs.no_grad(fn), `local g <close> = fs.no_grad()`,
 * fs.is_grad_enabled(), fs.set_grad_enabled(on); threads, memory figures and a wall clock. */
#include <time.h>

#include "autograd/autograd.h"
#include "base/blockcache.h"
#include "base/parallel.h"
#include "lbind.h"

#define GUARD_MT "fewshot.NoGradGuard"

typedef struct { bool previous; bool active; } grad_guard;

static int guard_close(lua_State *L)
{
    grad_guard *g = luaL_checkudata(L, 1, GUARD_MT);
    if (g->active) {
        fs_set_grad_enabled(g->previous);
        g->active = false;
    }
    return 0;
}

/* A guard the collector finds still open was never closed: restoring its mode now, at some
 * later point of the program (perhaps inside another no-grad region), would flip grad mode
 * under the code running then. So only __close restores; __gc leaves the mode and warns. */
static int guard_gc(lua_State *L)
{
    grad_guard *g = luaL_checkudata(L, 1, GUARD_MT);
    if (g->active) {
        g->active = false;
        lua_warning(L, "fewshot: a no_grad() guard was collected without being closed (declare "
                       "it `local g <close> = fs.no_grad()`); grad mode was left as it is", 0);
    }
    return 0;
}

/* fs.no_grad(fn, ...) runs fn with recording off and returns its results (the mode is restored
 * even when fn raises); fs.no_grad() returns a guard to close. */
static int l_no_grad(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        grad_guard *g = lua_newuserdatauv(L, sizeof *g, 0);
        g->previous = fs_set_grad_enabled(false);
        g->active = true;
        luaL_setmetatable(L, GUARD_MT);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    bool previous = fs_set_grad_enabled(false);
    int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
    fs_set_grad_enabled(previous);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

static int l_is_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, fs_grad_enabled());
    return 1;
}

static int l_set_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, fs_set_grad_enabled(lua_toboolean(L, 1)));
    return 1;
}

static int l_set_num_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1)
        return luaL_error(L, "set_num_threads: expected a positive count, got %d", (int)n);
    fs_set_num_threads((int)n);
    return 0;
}

/* fs.set_flush_denormal(on) -> true when supported (x86 SSE), as torch.set_flush_denormal. */
static int l_set_flush_denormal(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    lua_pushboolean(L, fs_set_flush_denormal(lua_toboolean(L, 1)));
    return 1;
}

static int l_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, fs_get_num_threads());
    return 1;
}

/* fs.memory() -> {live_bytes=, total_bytes=, cached_bytes=, mapped_bytes=}: tensor storage
 * now alive, ever allocated, freed blocks kept mapped for reuse, and the large blocks' mapped
 * total (those alive + those cached, blockcache.c). */
static int l_memory(lua_State *L)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)fs_block_mapped_bytes());
    lua_setfield(L, -2, "mapped_bytes");
    lua_pushinteger(L, (lua_Integer)fs_block_cached_bytes());
    lua_setfield(L, -2, "cached_bytes");
    lua_pushinteger(L, fs_bytes_live());
    lua_setfield(L, -2, "live_bytes");
    lua_pushinteger(L, fs_bytes_allocated_total());
    lua_setfield(L, -2, "total_bytes");
    return 1;
}

/* fs.clock() -> seconds from a monotonic clock (for timing; os.clock is CPU time). */
static int l_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static const luaL_Reg functions[] = {
    {"clock", l_clock},
    {"no_grad", l_no_grad}, {"is_grad_enabled", l_is_grad_enabled},
    {"set_grad_enabled", l_set_grad_enabled}, {"set_num_threads", l_set_num_threads},
    {"get_num_threads", l_get_num_threads}, {"set_flush_denormal", l_set_flush_denormal}, {"memory", l_memory}, {NULL, NULL}};

void fs_lua_open_autograd(lua_State *L)
{
    luaL_newmetatable(L, GUARD_MT);
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, guard_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
}
