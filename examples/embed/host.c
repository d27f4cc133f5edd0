/* host.c - how a C application embeds fewshot: create a Lua 5.4 state, point package.path and
 * package.cpath at fewshot, run a script, report errors. The script gets the arguments after
 * its name in the global `arg`.
 *
 *     build/embed-host [--root DIR] script.lua [args...]
 *
 * DIR (default ".") is where fewshot's lua/ and fewshot/core.so live: a source checkout after
 * `make`. An installed rock needs no --root: the default paths find it. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int main(int argc, char **argv)
{
    const char *root = NULL;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--root") == 0) {
        root = argv[2];
        first = 3;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [--root DIR] script.lua [args...]\n", argv[0]);
        return 2;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "embed-host: cannot create a Lua state\n");
        return 1;
    }
    luaL_openlibs(L);
    if (root) {
        lua_getglobal(L, "package");
        lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", root, root);
        lua_getfield(L, -2, "path");
        lua_concat(L, 2);
        lua_setfield(L, -2, "path");
        lua_pushfstring(L, "%s/?.so;", root);
        lua_getfield(L, -2, "cpath");
        lua_concat(L, 2);
        lua_setfield(L, -2, "cpath");
        lua_pop(L, 1);
    }
    lua_createtable(L, argc - first, 1);
    for (int i = first; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - first);
    }
    lua_setglobal(L, "arg");

    lua_pushcfunction(L, traceback);
    int status = luaL_loadfile(L, argv[first]);
    if (status == LUA_OK)
        status = lua_pcall(L, 0, 0, -2);
    if (status != LUA_OK)
        fprintf(stderr, "embed-host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return status == LUA_OK ? 0 : 1;
}
