/* random_lua.c - seeded random numbers from Lua: fs.manual_seed(n) seeds the default generator
 * (one per Lua state, kept in its registry: bind_util.c);
 * fs.generator(seed) makes an independent one that creation functions take as {generator=g}
 * and that Lua code uses for its own choices (g:uniform(), g:normal(), g:randint(n),
 * g:permutation(n)). */
#include "lbind.h"

static fs_generator *check_gen(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, FS_GENERATOR_MT);
}

static uint64_t check_seed(lua_State *L, int idx)
{
    return (uint64_t)luaL_checkinteger(L, idx);
}

static int l_manual_seed(lua_State *L)
{
    fs_generator_seed(fs_lua_default_generator(L), check_seed(L, 1));
    return 0;
}

static int l_generator(lua_State *L)
{
    fs_generator *g = lua_newuserdatauv(L, sizeof *g, 0);
    fs_generator_seed(g, lua_isnoneornil(L, 1) ? 0 : check_seed(L, 1));
    luaL_setmetatable(L, FS_GENERATOR_MT);
    return 1;
}

static int g_seed(lua_State *L)
{
    fs_generator_seed(check_gen(L, 1), check_seed(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int g_uniform(lua_State *L)
{
    fs_generator *g = check_gen(L, 1);
    double lo = luaL_optnumber(L, 2, 0.0), hi = luaL_optnumber(L, 3, 1.0);
    lua_pushnumber(L, lo + (hi - lo) * fs_random_uniform(g));
    return 1;
}

static int g_normal(lua_State *L)
{
    fs_generator *g = check_gen(L, 1);
    double mean = luaL_optnumber(L, 2, 0.0), std = luaL_optnumber(L, 3, 1.0);
    lua_pushnumber(L, mean + std * fs_random_normal(g));
    return 1;
}

/* g:randint(n) -> 1..n; g:randint(a, b) -> a..b */
static int g_randint(lua_State *L)
{
    fs_generator *g = check_gen(L, 1);
    lua_Integer a = 1, b = luaL_checkinteger(L, 2);
    if (!lua_isnoneornil(L, 3)) {
        a = b;
        b = luaL_checkinteger(L, 3);
    }
    if (b < a)
        return luaL_error(L, "randint: empty range [%d, %d]", (int)a, (int)b);
    lua_pushinteger(L, a + fs_random_below(g, b - a + 1));
    return 1;
}

/* g:permutation(n) -> a shuffled list of 1..n (Fisher-Yates). */
static int g_permutation(lua_State *L)
{
    fs_generator *g = check_gen(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n < 0)
        return luaL_error(L, "permutation: negative length %d", (int)n);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_pushinteger(L, i);
        lua_rawseti(L, -2, i);
    }
    for (lua_Integer i = n; i > 1; i--) {
        lua_Integer j = 1 + fs_random_below(g, i);
        lua_rawgeti(L, -1, i);
        lua_rawgeti(L, -2, j);
        lua_rawseti(L, -3, i);
        lua_rawseti(L, -2, j);
    }
    return 1;
}

static int g_tostring(lua_State *L)
{
    lua_pushfstring(L, "fewshot.Generator (%p)", (void *)check_gen(L, 1));
    return 1;
}

static const luaL_Reg gen_methods[] = {
    {"manual_seed", g_seed}, {"uniform", g_uniform}, {"normal", g_normal},
    {"randint", g_randint}, {"permutation", g_permutation}, {NULL, NULL}};

void fs_lua_open_random(lua_State *L)
{
    luaL_newmetatable(L, FS_GENERATOR_MT);
    lua_newtable(L);
    luaL_setfuncs(L, gen_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_manual_seed);
    lua_setfield(L, -2, "manual_seed");
    lua_pushcfunction(L, l_generator);
    lua_setfield(L, -2, "generator");
}
