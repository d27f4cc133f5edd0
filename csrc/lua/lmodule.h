/* lmodule.h - the fewshot.Module userdata and tensor dicts, shared by module_lua.c,
 * optim_lua.c and io_lua.c. */
#ifndef FS_LMODULE_H
#define FS_LMODULE_H

#include "lbind.h"
#include "module/module.h"
#include "io/safetensors.h"

#define FS_MODULE_MT "fewshot.Module"

fs_module *fs_lua_check_module(lua_State *L, int idx);
fs_module *fs_lua_test_module(lua_State *L, int idx);   /* NULL when not a Module */
/* Appends the {name = Tensor} table at idx to d (tensors retained); raises naming op on a
 * bad key or value, after freeing d. */
void fs_lua_check_tensor_dict(lua_State *L, int idx, const char *op, fs_tensor_dict *d);
/* When rc (the result of filling d) is 0, writes d to path as safetensors; then frees d and
 * raises on any error. Returns 0 (no Lua results). */
int fs_lua_save_dict(lua_State *L, const char *path, fs_tensor_dict *d, int rc);
/* opts.mode ("nearest" | "bilinear", def when absent) as an interpolation mode, or raises
 * naming op (nn_lua.c; also fs.nn.upsample). */
fs_interp_mode fs_lua_opt_interp_mode(lua_State *L, int opts, const char *op, const char *def);

#endif
