/* stats_lua.c - statistics on tensors of points: fs.tsne(x, opts) -> (N, dims) embedding, KL. */
#include <string.h>

#include "lbind.h"
#include "stats/tsne.h"

/* fs.tsne(x, {perplexity=30, iterations=1000, learning_rate="auto", early_exaggeration=12,
 * dims=2, seed=, generator=}) -> y (N, dims), kl (KL(P || Q) of the result).
 * learning_rate "auto" is max(N / early_exaggeration / 4, 50); a number is used as given.
 * seed makes a private generator; otherwise the generator option or the default one. */
static int l_tsne(lua_State *L)
{
    fs_tensor *x = fs_lua_check_tensor(L, 1);
    fs_lua_check_options(L, 2, "tsne", FS_OPTIONS("perplexity", "iterations", "learning_rate",
                                                  "early_exaggeration", "dims", "seed",
                                                  "generator"));
    fs_tsne_options o = fs_tsne_options_default();
    o.perplexity = fs_lua_opt_number(L, 2, "perplexity", o.perplexity);
    lua_Integer iterations = fs_lua_opt_integer(L, 2, "iterations", o.iterations);
    lua_Integer dims = fs_lua_opt_integer(L, 2, "dims", o.dims);
    if (iterations < 1 || iterations > 1000000)
        return luaL_error(L, "tsne: iterations must be in 1..1000000, got %I", iterations);
    if (dims < 1 || dims > 3)
        return luaL_error(L, "tsne: dims must be 1, 2 or 3, got %I", dims);
    o.iterations = (int)iterations;
    o.dims = (int)dims;
    int lr_type = lua_istable(L, 2) ? lua_getfield(L, 2, "learning_rate") : LUA_TNIL;
    if (lr_type == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") != 0)
        return luaL_error(L, "tsne: learning_rate must be a number or \"auto\", got \"%s\"",
                          lua_tostring(L, -1));
    if (lr_type != LUA_TNIL && lr_type != LUA_TSTRING) {
        if (lr_type != LUA_TNUMBER)
            return luaL_error(L, "tsne: learning_rate must be a number or \"auto\", got %s",
                              luaL_typename(L, -1));
        o.learning_rate = lua_tonumber(L, -1);
        if (!(o.learning_rate > 0))
            return luaL_error(L, "tsne: learning_rate must be > 0 (or \"auto\"), got %f",
                              o.learning_rate);
    }
    if (lua_istable(L, 2))
        lua_pop(L, 1);
    o.early_exaggeration = fs_lua_opt_number(L, 2, "early_exaggeration", o.early_exaggeration);
    fs_generator local, *g;
    if (lua_istable(L, 2) && lua_getfield(L, 2, "seed") != LUA_TNIL) {
        if (!lua_isinteger(L, -1))
            return luaL_error(L, "tsne: option 'seed' must be an integer, got %s",
                              luaL_typename(L, -1));
        fs_generator_seed(&local, (uint64_t)lua_tointeger(L, -1));
        lua_pop(L, 1);
        g = &local;
    } else {
        if (lua_istable(L, 2))
            lua_pop(L, 1);
        g = fs_lua_opt_generator(L, 2);
    }
    double kl = 0.0;
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tsne_embed(x, &o, g, &kl));
    lua_pushnumber(L, kl);
    return 2;
}

void fs_lua_open_stats(lua_State *L)
{
    lua_pushcfunction(L, l_tsne);
    lua_setfield(L, -2, "tsne");
}
