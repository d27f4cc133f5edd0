/* lmodule.h - the fewshot.Module userdata, shared by module_lua.c and optim_lua.c. */
#ifndef FS_LMODULE_H
#define FS_LMODULE_H

#include "lbind.h"
#include "module.h"
#include "safetensors.h"

#define FS_MODULE_MT "fewshot.Module"

fs_module *fs_lua_check_module(lua_State *L, int idx);
fs_module *fs_lua_test_module(lua_State *L, int idx);   /* NULL when not a Module */
/* Appends the {name = Tensor} table at idx to d (tensors retained); raises naming op on a
 * bad key or value, after freeing d. */
void fs_lua_check_tensor_dict(lua_State *L, int idx, const char *op, fs_tensor_dict *d);

#endif
