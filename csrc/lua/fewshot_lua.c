/* fewshot_lua.c - luaopen_fewshot_core: the one symbol the .so exports. Each area of the
 * binding adds its functions to the module table. */
#include "lbind.h"

FS_EXPORT int luaopen_fewshot_core(lua_State *L);

int luaopen_fewshot_core(lua_State *L)
{
    lua_newtable(L);
    /* areas (one line each) */
    fs_lua_open_tensor(L);
    fs_lua_open_autograd(L);
    fs_lua_open_random(L);
    fs_lua_open_io(L);
    fs_lua_open_module(L);
    fs_lua_open_optim(L);
    fs_lua_open_spect(L);
    fs_lua_open_match(L);
    fs_lua_open_image(L);
    fs_lua_open_dicom(L);
    fs_lua_open_nn(L);
    fs_lua_open_options(L);
    fs_lua_open_stats(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
