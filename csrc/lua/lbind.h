/* lbind.h - helpers shared by the binding files: the Tensor userdata, argument checks,
 * option tables, and the one way results and errors go back to Lua.
 *
 * Pattern for a function returning a tensor (the userdata exists before the core allocates,
 * so an error leaves nothing half-built):
 *
 *     static int l_exp(lua_State *L) {
 *         fs_tensor *a = fs_lua_check_tensor(L, 1);
 *         fs_tensor **box = fs_lua_new_box(L);
 *         return fs_lua_return(L, box, fs_unary(FS_EXP, a));
 *     }
 *
 * fs_lua_return raises fs_error() when the core returned NULL, and reports the bytes the core
 * allocated since the last report to Lua's collector, so loops need no collectgarbage().
 *
 * The rule for memory the core allocates: nothing may raise (a luaL_error, a luaL_check*, a
 * lua_newuserdatauv or any other Lua allocation) while C holds a core allocation that no
 * userdata owns yet. So: check every argument first, create every userdata box the result
 * needs, then call the core and hand each result to its box at once (fs_lua_return). Where a
 * temporary must be gathered over a loop that can raise (a tensor dict from a Lua table), the
 * loop frees what it gathered before it raises (fs_lua_check_tensor_dict).
 *
 * Lua indices and dims are 1-based; fs_lua_check_dim converts to 0-based (negative counts
 * from the end).
 */
#ifndef FS_LBIND_H
#define FS_LBIND_H

#include <lauxlib.h>
#include <lua.h>

#include "tensor/tensor.h"

#define FS_TENSOR_MT "fewshot.Tensor"
#define FS_GENERATOR_MT "fewshot.Generator"
/* The metatable of the metadata table fs.io.load returns second: model:load_state_dict(
 * fs.io.load(path)) passes it along as a third argument, which is then not an options table. */
#define FS_METADATA_MT "fewshot.Metadata"

#if defined(__GNUC__)
#define FS_EXPORT __attribute__((visibility("default")))
#else
#define FS_EXPORT
#endif

/* Tensor userdata */
fs_tensor **fs_lua_new_box(lua_State *L);            /* pushes an empty Tensor userdata */
int fs_lua_return(lua_State *L, fs_tensor **box, fs_tensor *t); /* fills it; 1 or raises */
void fs_lua_push_tensor(lua_State *L, fs_tensor *t); /* takes the reference; raises on NULL */
/* Push a new reference to t / a new header on t's storage: the box is made first, so a Lua
 * out-of-memory raise cannot leave a reference nobody owns. */
void fs_lua_push_retain(lua_State *L, fs_tensor *t);
void fs_lua_push_alias(lua_State *L, const fs_tensor *t);
fs_tensor *fs_lua_check_tensor(lua_State *L, int idx);
fs_tensor *fs_lua_test_tensor(lua_State *L, int idx); /* NULL when not a Tensor */
/* A Tensor, or a number turned into a 0-d tensor (pushed in place of the number). */
fs_tensor *fs_lua_to_tensor(lua_State *L, int idx);
int fs_lua_error(lua_State *L);                      /* raises fs_error() */
/* t[k] = v and t[k] = {v[1], ..., v[n]} on the table at the top of the stack (info tables). */
void fs_lua_set_number(lua_State *L, const char *k, double v);
void fs_lua_set_numbers(lua_State *L, const char *k, const double *v, int n);
void fs_lua_account(lua_State *L);                   /* report new core bytes to the GC */

/* Arguments */
/* A shape from a table {2, 3} or from integers at idx, idx+1, ... up to the first non-number. */
int fs_lua_check_shape(lua_State *L, int idx, int64_t *size);
int fs_lua_check_dim(lua_State *L, int idx, int ndim);   /* 1-based/negative -> 0-based */
int fs_lua_opt_dim(lua_State *L, int idx, int ndim, int def);

/* Option tables (idx may be absent or nil) */
/* Raises "op: unknown option 'kye' (did you mean 'key'?)" when the table at idx has a key that
 * is not in keys (NULL-terminated), or a key that is not a string. Every function that takes
 * an options table calls it first, so a typo never goes unnoticed. No-op when idx is not a
 * table. Lua code calls the same checker as fewshot.core.check_options(op, opts, keys). */
void fs_lua_check_options(lua_State *L, int idx, const char *op, const char *const *keys);
#define FS_OPTIONS(...) ((const char *const[]){__VA_ARGS__, NULL})
bool fs_lua_opt_bool(lua_State *L, int idx, const char *key, bool def);
lua_Number fs_lua_opt_number(lua_State *L, int idx, const char *key, lua_Number def);
lua_Integer fs_lua_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def);
const char *fs_lua_opt_string(lua_State *L, int idx, const char *key, const char *def);
/* The state's own record (made at luaopen): its default generator (fs.manual_seed) and its GC
 * pacing, so Lua states in threads of one process share neither. */
void fs_lua_open_state(lua_State *L);
fs_generator *fs_lua_default_generator(lua_State *L);
/* The `generator` option, or the state's default generator. */
fs_generator *fs_lua_opt_generator(lua_State *L, int idx);
/* After creating a tensor: apply the `requires_grad` option. */
void fs_lua_apply_requires_grad(lua_State *L, int opts, fs_tensor *t);

/* Each area registers its functions into the module table at the top of the stack. */
void fs_lua_open_tensor(lua_State *L);
void fs_lua_open_autograd(lua_State *L);
void fs_lua_open_random(lua_State *L);
void fs_lua_open_io(lua_State *L);
void fs_lua_open_module(lua_State *L);
void fs_lua_open_optim(lua_State *L);
void fs_lua_open_spect(lua_State *L);
void fs_lua_open_match(lua_State *L);
void fs_lua_open_image(lua_State *L);
void fs_lua_open_dicom(lua_State *L);   /* after fs_lua_open_image (adds to fs.io) */
void fs_lua_open_nn(lua_State *L);
void fs_lua_open_options(lua_State *L);
void fs_lua_open_stats(lua_State *L);

#endif
