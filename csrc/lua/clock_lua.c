/* clock_lua.c - fs.clock(): monotonic wall-clock seconds (a double), for benchmarks.
 * os.clock() is process CPU time, which counts every thread and so misleads at 2 threads. */
#include <time.h>

#include "lbind.h"

static int l_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

void fs_lua_open_clock(lua_State *L)
{
    lua_pushcfunction(L, l_clock);
    lua_setfield(L, -2, "clock");
}
