/* tensor_lua.c - the fewshot.Tensor userdata: creation, inspection, views, math, reductions.
 * Lua sees 1-based indices and dims (negative dims count from the end); C sees 0-based. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "lbind.h"
#include "ops/ops.h"

#define CHECK(i) fs_lua_check_tensor(L, i)

/* ---- creation ---- */

/* Walks a nested table once to find its shape, then again to copy values. */
static int nested_shape(lua_State *L, int idx, int depth, int64_t *size)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        return depth;
    if (!lua_istable(L, idx))
        return luaL_error(L, "tensor: expected numbers or nested tables of numbers");
    if (depth >= FS_MAX_DIM)
        return luaL_error(L, "tensor: nested more than %d levels", FS_MAX_DIM);
    size[depth] = (int64_t)lua_rawlen(L, idx);
    if (size[depth] == 0)
        return depth + 1;
    lua_rawgeti(L, idx, 1);
    int nd = nested_shape(L, lua_gettop(L), depth + 1, size);
    lua_pop(L, 1);
    return nd;
}

static void nested_fill(lua_State *L, int idx, int depth, int ndim, const int64_t *size,
                        float **out)
{
    if (depth == ndim) {
        if (lua_type(L, idx) != LUA_TNUMBER)
            luaL_error(L, "tensor: ragged nested table (expected a number at depth %d)", depth + 1);
        *(*out)++ = (float)lua_tonumber(L, idx);
        return;
    }
    if (!lua_istable(L, idx) || (int64_t)lua_rawlen(L, idx) != size[depth])
        luaL_error(L, "tensor: ragged nested table (expected %d entries at depth %d)",
                   (int)size[depth], depth + 1);
    for (int64_t k = 1; k <= size[depth]; k++) {
        lua_rawgeti(L, idx, k);
        nested_fill(L, lua_gettop(L), depth + 1, ndim, size, out);
        lua_pop(L, 1);
    }
}

static int l_tensor(lua_State *L)
{
    int64_t size[FS_MAX_DIM];
    lua_settop(L, 2); /* pin the options slot before pushing results */
    fs_lua_check_options(L, 2, "tensor", FS_OPTIONS("requires_grad"));
    if (fs_lua_test_tensor(L, 1)) { /* fs.tensor(t): a copy */
        fs_tensor **box = fs_lua_new_box(L);
        fs_lua_return(L, box, fs_tensor_contiguous_copy(CHECK(1)));
        fs_lua_apply_requires_grad(L, 2, *box);
        return 1;
    }
    int ndim = nested_shape(L, 1, 0, size);
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_new(ndim, size));
    float *p = fs_data(*box);
    nested_fill(L, 1, 0, ndim, size, &p);
    fs_lua_apply_requires_grad(L, 2, *box);
    return 1;
}

/* Index of the options table after a shape given as a table or as integers at 1, 2, ... */
static int shape_and_opts(lua_State *L, int64_t *size, int *ndim, int extra_numbers)
{
    *ndim = fs_lua_check_shape(L, 1, size);
    int next = lua_istable(L, 1) ? 2 : *ndim + 1;
    if (lua_isnoneornil(L, 1))
        next = 2;
    lua_settop(L, next + extra_numbers); /* pin the options slot before pushing results */
    return next + extra_numbers;
}

static int make_filled(lua_State *L, const char *op, float v, int opts, int ndim,
                       const int64_t *size)
{
    fs_lua_check_options(L, opts, op, FS_OPTIONS("requires_grad"));
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_full(ndim, size, v));
    fs_lua_apply_requires_grad(L, opts, *box);
    return 1;
}

static int l_zeros(lua_State *L)
{
    int64_t size[FS_MAX_DIM];
    int ndim, opts = shape_and_opts(L, size, &ndim, 0);
    return make_filled(L, "zeros", 0.0f, opts, ndim, size);
}

static int l_ones(lua_State *L)
{
    int64_t size[FS_MAX_DIM];
    int ndim, opts = shape_and_opts(L, size, &ndim, 0);
    return make_filled(L, "ones", 1.0f, opts, ndim, size);
}

static int l_full(lua_State *L)
{
    int64_t size[FS_MAX_DIM];
    luaL_checktype(L, 1, LUA_TTABLE);
    int ndim = fs_lua_check_shape(L, 1, size);
    float v = (float)luaL_checknumber(L, 2);
    lua_settop(L, 3);
    return make_filled(L, "full", v, 3, ndim, size);
}

static int l_arange(lua_State *L)
{
    int nnum = 0;
    while (nnum < 3 && lua_type(L, nnum + 1) == LUA_TNUMBER)
        nnum++;
    if (nnum == 0)
        return luaL_error(L, "arange: expected arange(n), arange(a, b) or arange(a, b, step)");
    double a = 0, b, step = 1;
    if (nnum == 1)
        b = lua_tonumber(L, 1);
    else {
        a = lua_tonumber(L, 1);
        b = lua_tonumber(L, 2);
        if (nnum == 3)
            step = lua_tonumber(L, 3);
    }
    lua_settop(L, nnum + 1);
    fs_lua_check_options(L, nnum + 1, "arange", FS_OPTIONS("requires_grad"));
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_arange(a, b, step));
    fs_lua_apply_requires_grad(L, nnum + 1, *box);
    return 1;
}

static int make_random(lua_State *L, int normal)
{
    int64_t size[FS_MAX_DIM];
    int ndim, opts = shape_and_opts(L, size, &ndim, 0);
    if (normal)
        fs_lua_check_options(L, opts, "randn", FS_OPTIONS("mean", "std", "generator", "requires_grad"));
    else
        fs_lua_check_options(L, opts, "rand", FS_OPTIONS("low", "high", "generator", "requires_grad"));
    fs_generator *g = fs_lua_opt_generator(L, opts);
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_new(ndim, size));
    if (normal)
        fs_tensor_normal_(*box, g, (float)fs_lua_opt_number(L, opts, "mean", 0.0),
                          (float)fs_lua_opt_number(L, opts, "std", 1.0));
    else
        fs_tensor_uniform_(*box, g, (float)fs_lua_opt_number(L, opts, "low", 0.0),
                           (float)fs_lua_opt_number(L, opts, "high", 1.0));
    fs_lua_apply_requires_grad(L, opts, *box);
    return 1;
}

static int l_rand(lua_State *L) { return make_random(L, 0); }
static int l_randn(lua_State *L) { return make_random(L, 1); }

/* ---- inspection ---- */

static void push_shape(lua_State *L, const fs_tensor *t)
{
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->size[d]);
        lua_rawseti(L, -2, d + 1);
    }
}

static int m_shape(lua_State *L)
{
    push_shape(L, CHECK(1));
    return 1;
}

static int m_size(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    if (lua_isnoneornil(L, 2)) {
        push_shape(L, t);
        return 1;
    }
    lua_pushinteger(L, t->size[fs_lua_check_dim(L, 2, t->ndim)]);
    return 1;
}

static int m_dim(lua_State *L)
{
    lua_pushinteger(L, CHECK(1)->ndim);
    return 1;
}

static int m_numel(lua_State *L)
{
    lua_pushinteger(L, fs_numel(CHECK(1)));
    return 1;
}

static int m_item(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    if (fs_numel(t) != 1)
        return luaL_error(L, "item: tensor of shape %s has %d elements, not one", FS_SHAPE(t),
                          (int)fs_numel(t));
    int64_t idx[FS_MAX_DIM] = {0};
    lua_pushnumber(L, *fs_at(t, idx));
    return 1;
}

static void push_nested(lua_State *L, const fs_tensor *t, int d, int64_t *idx)
{
    if (d == t->ndim) {
        lua_pushnumber(L, *fs_at(t, idx));
        return;
    }
    lua_createtable(L, (int)t->size[d], 0);
    for (int64_t i = 0; i < t->size[d]; i++) {
        idx[d] = i;
        push_nested(L, t, d + 1, idx);
        lua_rawseti(L, -2, i + 1);
    }
}

static int m_totable(lua_State *L)
{
    int64_t idx[FS_MAX_DIM] = {0};
    push_nested(L, CHECK(1), 0, idx);
    return 1;
}

static float *element(lua_State *L, fs_tensor *t, int first, const char *op)
{
    int64_t idx[FS_MAX_DIM];
    for (int d = 0; d < t->ndim; d++) {
        lua_Integer i = luaL_checkinteger(L, first + d);
        if (i < 1 || i > t->size[d])
            luaL_error(L, "%s: index %d out of range for dim %d of shape %s (indices are 1-based)",
                       op, (int)i, d + 1, FS_SHAPE(t));
        idx[d] = i - 1;
    }
    return fs_at(t, idx);
}

static int m_get(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int given = lua_gettop(L) - 1;
    if (given != t->ndim)
        return luaL_error(L, "get: %d indices given for a tensor of shape %s", given, FS_SHAPE(t));
    lua_pushnumber(L, *element(L, t, 2, "get"));
    return 1;
}

static int m_set(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int given = lua_gettop(L) - 2;
    if (given != t->ndim)
        return luaL_error(L, "set: %d indices and a value given for a tensor of shape %s",
                          given, FS_SHAPE(t));
    if (t->requires_grad && fs_grad_enabled())
        return luaL_error(L, "set: in-place change of a tensor that requires grad (use "
                             "fs.no_grad or detach)");
    float v = (float)luaL_checknumber(L, lua_gettop(L));
    *element(L, t, 2, "set") = v;
    lua_settop(L, 1);
    return 1;
}

static int m_fill(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    float v = (float)luaL_checknumber(L, 2);
    if (t->requires_grad && fs_grad_enabled())
        return luaL_error(L, "fill: in-place change of a tensor that requires grad (use "
                             "fs.no_grad or detach)");
    fs_tensor_fill_(t, v);
    lua_settop(L, 1);
    return 1;
}

static int m_copy(lua_State *L)
{
    fs_tensor *t = CHECK(1), *src = CHECK(2);
    if (t->requires_grad && fs_grad_enabled())
        return luaL_error(L, "copy: in-place change of a tensor that requires grad (use "
                             "fs.no_grad or detach)");
    if (fs_tensor_copy_(t, src) < 0)
        return fs_lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static int m_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, fs_is_contiguous(CHECK(1)));
    return 1;
}

static int m_tostring(lua_State *L)
{
    fs_tensor **box = luaL_checkudata(L, 1, FS_TENSOR_MT);
    if (!*box) {
        lua_pushliteral(L, "tensor(closed)");
        return 1;
    }
    char *s = fs_tensor_format(*box);
    if (!s)
        return fs_lua_error(L);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int m_len(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    if (t->ndim == 0)
        return luaL_error(L, "len: a 0-d tensor has no length");
    lua_pushinteger(L, t->size[0]);
    return 1;
}

static int m_gc(lua_State *L)
{
    fs_tensor **box = luaL_checkudata(L, 1, FS_TENSOR_MT);
    fs_tensor_release(*box);
    *box = NULL;
    return 0;
}

/* ---- views ---- */

/* view and reshape accept -1 in a shape: fs_lua_check_shape refuses negatives, so read here. */
static int shape_with_infer(lua_State *L, int idx, int64_t *size)
{
    int n = 0;
    if (lua_istable(L, idx)) {
        int len = (int)lua_rawlen(L, idx);
        if (len > FS_MAX_DIM)
            luaL_error(L, "shape has %d dims, at most %d", len, FS_MAX_DIM);
        for (int k = 1; k <= len; k++) {
            lua_rawgeti(L, idx, k);
            size[n++] = (int64_t)luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        }
    } else
        while (lua_type(L, idx + n) == LUA_TNUMBER && n < FS_MAX_DIM) {
            size[n] = luaL_checkinteger(L, idx + n);
            n++;
        }
    return n;
}

static int m_view_any(lua_State *L, int reshape)
{
    fs_tensor *t = CHECK(1);
    int64_t size[FS_MAX_DIM];
    int n = shape_with_infer(L, 2, size);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, reshape ? fs_reshape(t, n, size) : fs_view(t, n, size));
}

static int m_view(lua_State *L) { return m_view_any(L, 0); }
static int m_reshape(lua_State *L) { return m_view_any(L, 1); }

static int m_permute(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int perm[FS_MAX_DIM];
    int n = 0;
    if (lua_istable(L, 2)) {
        n = (int)lua_rawlen(L, 2);
        lua_settop(L, 2);
        for (int k = 0; k < n && k < FS_MAX_DIM; k++) {
            lua_rawgeti(L, 2, k + 1);
            perm[k] = fs_lua_check_dim(L, 3, t->ndim);
            lua_pop(L, 1);
        }
    } else
        for (; n < t->ndim && !lua_isnoneornil(L, 2 + n); n++)
            perm[n] = fs_lua_check_dim(L, 2 + n, t->ndim);
    if (n != t->ndim)
        return luaL_error(L, "permute: %d dims given for a tensor of shape %s", n, FS_SHAPE(t));
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_permute(t, perm));
}

static int m_transpose(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int d0 = fs_lua_opt_dim(L, 2, t->ndim, 0), d1 = fs_lua_opt_dim(L, 3, t->ndim, 1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_transpose(t, d0, d1));
}

static int m_narrow(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int dim = fs_lua_check_dim(L, 2, t->ndim);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_narrow(t, dim, start - 1, len));
}

static int m_select(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int dim = fs_lua_check_dim(L, 2, t->ndim);
    lua_Integer i = luaL_checkinteger(L, 3);
    if (i < 0)
        i += t->size[dim] + 1;
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_select(t, dim, i - 1));
}

static int m_unsqueeze(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int dim = fs_lua_check_dim(L, 2, t->ndim + 1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_unsqueeze(t, dim));
}

static int m_squeeze(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int dim = lua_isnoneornil(L, 2) ? -1 : fs_lua_check_dim(L, 2, t->ndim);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_squeeze(t, dim));
}

static int m_expand(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int64_t size[FS_MAX_DIM];
    int n = shape_with_infer(L, 2, size);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_expand(t, n, size));
}

static int m_contiguous(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_contiguous(t));
}

static int m_clone(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_clone(t));
}

static int m_detach(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_tensor_alias(t));
}

static int m_index_select(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    int dim = fs_lua_check_dim(L, 2, t->ndim);
    int64_t size = t->ndim ? t->size[dim] : 1;
    int n;
    fs_tensor *it = fs_lua_test_tensor(L, 3);
    if (it)
        n = (int)fs_numel(it);
    else {
        luaL_checktype(L, 3, LUA_TTABLE);
        n = (int)lua_rawlen(L, 3);
    }
    int64_t *index = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(int64_t), 0);
    if (it) {
        if (it->ndim > 1)
            return luaL_error(L, "index_select: index must be 1-D, got shape %s", FS_SHAPE(it));
        for (int k = 0; k < n; k++) {
            int64_t e = k;
            float v = *fs_at(it, &e);
            if (v != floorf(v))
                return luaL_error(L, "index_select: index %f is not an integer", (lua_Number)v);
            if (!(v >= 1 && v <= (float)size))
                return luaL_error(L, "index_select: index %f out of range for dim %d of shape %s",
                                  (lua_Number)v, dim + 1, FS_SHAPE(t));
            index[k] = (int64_t)v - 1;
        }
    } else
        for (int k = 0; k < n; k++) {
            lua_rawgeti(L, 3, k + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok)
                return luaL_error(L, "index_select: index entry %d is not an integer", k + 1);
            if (v < 1 || v > size)
                return luaL_error(L, "index_select: index %I out of range for dim %d of shape %s",
                                  v, dim + 1, FS_SHAPE(t));
            index[k] = v - 1;
        }
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_index_select(t, dim, n, index));
}

/* ---- math ---- */

static int binary(lua_State *L, fs_binary_op op)
{
    fs_tensor *a = fs_lua_to_tensor(L, 1), *b = fs_lua_to_tensor(L, 2);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_binary(op, a, b));
}

#define BINARY(name, op) \
    static int m_##name(lua_State *L) { return binary(L, op); }
BINARY(add, FS_ADD)
BINARY(sub, FS_SUB)
BINARY(mul, FS_MUL)
BINARY(div, FS_DIV)
BINARY(pow, FS_POW)
BINARY(eq, FS_EQ)
BINARY(ne, FS_NE)
BINARY(lt, FS_LT)
BINARY(le, FS_LE)
BINARY(gt, FS_GT)
BINARY(ge, FS_GE)
BINARY(maximum, FS_MAXIMUM)
BINARY(minimum, FS_MINIMUM)
#undef BINARY

static int unary(lua_State *L, fs_unary_op op)
{
    fs_tensor *a = CHECK(1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_unary(op, a));
}

#define UNARY(name, op) \
    static int m_##name(lua_State *L) { return unary(L, op); }
UNARY(neg, FS_NEG)
UNARY(exp, FS_EXP)
UNARY(log, FS_LOG)
UNARY(sqrt, FS_SQRT)
UNARY(abs, FS_ABS)
UNARY(relu, FS_RELU)
UNARY(sigmoid, FS_SIGMOID)
UNARY(tanh, FS_TANH)
#undef UNARY

static int m_clamp(lua_State *L)
{
    fs_tensor *a = CHECK(1);
    float lo = lua_isnoneornil(L, 2) ? -INFINITY : (float)luaL_checknumber(L, 2);
    float hi = lua_isnoneornil(L, 3) ? INFINITY : (float)luaL_checknumber(L, 3);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_clamp(a, lo, hi));
}

static int m_matmul(lua_State *L)
{
    fs_tensor *a = CHECK(1), *b = CHECK(2);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_matmul(a, b));
}

static int l_where(lua_State *L)
{
    fs_tensor *c = fs_lua_to_tensor(L, 1), *a = fs_lua_to_tensor(L, 2), *b = fs_lua_to_tensor(L, 3);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_where(c, a, b));
}

/* A list of tensors at idx into a userdata array kept on the stack. */
static fs_tensor **tensor_list(lua_State *L, int idx, const char *op, int *n)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int)lua_rawlen(L, idx);
    if (*n == 0)
        luaL_error(L, "%s: expected a non-empty list of tensors", op);
    fs_tensor **ts = lua_newuserdatauv(L, (size_t)*n * sizeof *ts, 0);
    for (int k = 0; k < *n; k++) {
        lua_rawgeti(L, idx, k + 1);
        ts[k] = fs_lua_test_tensor(L, -1);
        if (!ts[k])
            luaL_error(L, "%s: entry %d is not a tensor", op, k + 1);
        lua_pop(L, 1); /* the list keeps it alive */
    }
    return ts;
}

static int l_cat(lua_State *L)
{
    int n;
    lua_settop(L, 2);
    fs_tensor **ts = tensor_list(L, 1, "cat", &n);
    int dim = lua_isnoneornil(L, 2) ? 0 : fs_lua_check_dim(L, 2, ts[0]->ndim);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_cat(n, ts, dim));
}

static int l_stack(lua_State *L)
{
    int n;
    lua_settop(L, 2);
    fs_tensor **ts = tensor_list(L, 1, "stack", &n);
    int dim = lua_isnoneornil(L, 2) ? 0 : fs_lua_check_dim(L, 2, ts[0]->ndim + 1);
    fs_tensor **box = fs_lua_new_box(L);
    return fs_lua_return(L, box, fs_stack(n, ts, dim));
}

/* ---- reductions ---- */

static int reduction(lua_State *L, int which)
{
    fs_tensor *t = CHECK(1);
    int dim = lua_isnoneornil(L, 2) ? FS_ALL_DIMS : fs_lua_check_dim(L, 2, t->ndim);
    bool keepdim = lua_toboolean(L, 3);
    bool unbiased = lua_isnoneornil(L, 4) ? true : lua_toboolean(L, 4);
    fs_tensor **box = fs_lua_new_box(L);
    if (which == 0)
        return fs_lua_return(L, box, fs_sum(t, dim, keepdim));
    if (which == 1)
        return fs_lua_return(L, box, fs_mean(t, dim, keepdim));
    return fs_lua_return(L, box, fs_var(t, dim, keepdim, unbiased));
}

static int m_sum(lua_State *L) { return reduction(L, 0); }
static int m_mean(lua_State *L) { return reduction(L, 1); }
static int m_var(lua_State *L) { return reduction(L, 2); }

/* t:max() -> 0-d tensor; t:max(dim [, keepdim]) -> values, 1-based indices (a tensor). */
static int maxmin(lua_State *L, bool is_min, bool arg_only)
{
    fs_tensor *t = CHECK(1);
    if (lua_isnoneornil(L, 2)) {
        int64_t flat;
        fs_tensor **box = fs_lua_new_box(L);
        fs_lua_return(L, box, fs_max_all(t, is_min, &flat));
        if (arg_only) {
            lua_pushinteger(L, flat + 1);
            return 1;
        }
        return 1;
    }
    int dim = fs_lua_check_dim(L, 2, t->ndim);
    bool keepdim = lua_toboolean(L, 3);
    int64_t *idx = NULL;
    /* both boxes first: nothing may raise while the core's index array is held */
    fs_tensor **vbox = fs_lua_new_box(L), **ibox = fs_lua_new_box(L);
    *vbox = fs_max_dim(t, dim, keepdim, is_min, &idx);
    if (!*vbox)
        return fs_lua_error(L);
    fs_tensor *it = fs_tensor_new((*vbox)->ndim, (*vbox)->size);
    if (it)
        for (int64_t k = 0, n = fs_numel(it); k < n; k++)
            fs_data(it)[k] = (float)(idx[k] + 1);
    fs_free(idx);
    fs_lua_return(L, ibox, it);
    if (arg_only)
        return 1;
    lua_pushvalue(L, -2); /* values, indices */
    lua_pushvalue(L, -2);
    return 2;
}

static int m_max(lua_State *L) { return maxmin(L, false, false); }
static int m_min(lua_State *L) { return maxmin(L, true, false); }
static int m_argmax(lua_State *L) { return maxmin(L, false, true); }
static int m_argmin(lua_State *L) { return maxmin(L, true, true); }

/* t:bbox() -> row0, col0, row1, col1 (1-based, inclusive) of the nonzero elements of a 2D
 * tensor, or nil when every element is zero. */
static int m_bbox(lua_State *L)
{
    int64_t box[4];
    int found = fs_mask_bbox(CHECK(1), box);
    if (found < 0)
        return fs_lua_error(L);
    if (found == 0) {
        lua_pushnil(L);
        return 1;
    }
    for (int k = 0; k < 4; k++)
        lua_pushinteger(L, (lua_Integer)box[k] + 1);
    return 4;
}

/* ---- autograd on tensors ---- */

static int m_requires_grad(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    if (lua_isnone(L, 2)) {
        lua_pushboolean(L, t->requires_grad);
        return 1;
    }
    bool on = lua_toboolean(L, 2);
    if (!on && t->grad_fn)
        return luaL_error(L, "requires_grad: a tensor computed by '%s' cannot stop requiring "
                             "grad; use detach()", t->grad_fn->name);
    t->requires_grad = on;
    lua_settop(L, 1);
    return 1;
}

static int m_is_leaf(lua_State *L)
{
    lua_pushboolean(L, CHECK(1)->grad_fn == NULL);
    return 1;
}

static int m_backward(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    fs_tensor *g = fs_lua_test_tensor(L, 2);
    if (!g && !lua_isnoneornil(L, 2) && !lua_istable(L, 2))
        return luaL_typeerror(L, 2, "tensor or options table");
    int opts = (!g && lua_istable(L, 2)) ? 2 : 3; /* backward(opts) or backward(grad|nil, opts) */
    fs_lua_check_options(L, opts, "backward", FS_OPTIONS("retain_graph"));
    bool retain = fs_lua_opt_bool(L, opts, "retain_graph", false);
    if (fs_backward(t, g, retain) < 0)
        return fs_lua_error(L);
    fs_lua_account(L);
    return 0;
}

static int m_zero_grad(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    if (t->grad)
        fs_tensor_fill_(t->grad, 0.0f);
    return 0;
}

static const luaL_Reg methods[] = {
    {"shape", m_shape}, {"size", m_size}, {"dim", m_dim}, {"numel", m_numel},
    {"item", m_item}, {"totable", m_totable}, {"get", m_get}, {"set", m_set},
    {"fill", m_fill}, {"copy", m_copy}, {"is_contiguous", m_is_contiguous},
    {"view", m_view}, {"reshape", m_reshape}, {"permute", m_permute},
    {"transpose", m_transpose}, {"narrow", m_narrow}, {"select", m_select},
    {"unsqueeze", m_unsqueeze}, {"squeeze", m_squeeze}, {"expand", m_expand},
    {"contiguous", m_contiguous}, {"clone", m_clone}, {"detach", m_detach},
    {"index_select", m_index_select},
    {"add", m_add}, {"sub", m_sub}, {"mul", m_mul}, {"div", m_div}, {"pow", m_pow},
    {"eq", m_eq}, {"ne", m_ne}, {"lt", m_lt}, {"le", m_le}, {"gt", m_gt}, {"ge", m_ge},
    {"maximum", m_maximum}, {"minimum", m_minimum},
    {"neg", m_neg}, {"exp", m_exp}, {"log", m_log}, {"sqrt", m_sqrt}, {"abs", m_abs},
    {"relu", m_relu}, {"sigmoid", m_sigmoid}, {"tanh", m_tanh}, {"clamp", m_clamp},
    {"matmul", m_matmul},
    {"sum", m_sum}, {"mean", m_mean}, {"var", m_var}, {"max", m_max}, {"min", m_min},
    {"argmax", m_argmax}, {"argmin", m_argmin}, {"bbox", m_bbox},
    {"requires_grad", m_requires_grad}, {"is_leaf", m_is_leaf}, {"backward", m_backward},
    {"zero_grad", m_zero_grad}, {"close", m_gc},
    {NULL, NULL}};

/* t.grad, t.grad_fn, then methods. */
static int m_index(lua_State *L)
{
    fs_tensor **box = luaL_checkudata(L, 1, FS_TENSOR_MT);
    const char *key = lua_tostring(L, 2);
    bool field = key && (strcmp(key, "grad") == 0 || strcmp(key, "grad_fn") == 0);
    fs_tensor *t = field ? CHECK(1) : *box; /* methods check for themselves; close works twice */
    if (field && strcmp(key, "grad") == 0) {
        if (!t->grad)
            lua_pushnil(L);
        else
            fs_lua_push_retain(L, t->grad);
        return 1;
    }
    if (field) { /* grad_fn */
        if (t->grad_fn)
            lua_pushstring(L, t->grad_fn->name);
        else
            lua_pushnil(L);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int m_newindex(lua_State *L)
{
    fs_tensor *t = CHECK(1);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "grad") != 0)
        return luaL_error(L, "cannot set field '%s' of a tensor", key);
    if (lua_isnil(L, 3)) {
        fs_tensor_release(t->grad);
        t->grad = NULL;
        return 0;
    }
    fs_tensor *g = CHECK(3);
    if (!fs_same_shape(g, t))
        return luaL_error(L, "grad: shape %s does not match the tensor's shape %s", FS_SHAPE(g),
                          FS_SHAPE(t));
    fs_tensor *c = fs_tensor_contiguous_copy(g);
    if (!c)
        return fs_lua_error(L);
    fs_tensor_release(t->grad);
    t->grad = c;
    return 0;
}

static const luaL_Reg metamethods[] = {
    {"__newindex", m_newindex}, {"__tostring", m_tostring}, {"__len", m_len},
    {"__gc", m_gc}, {"__close", m_gc},
    {"__add", m_add}, {"__sub", m_sub}, {"__mul", m_mul}, {"__div", m_div},
    {"__pow", m_pow}, {"__unm", m_neg},
    {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
    {"arange", l_arange}, {"rand", l_rand}, {"randn", l_randn},
    {"where", l_where}, {"cat", l_cat}, {"stack", l_stack},
    {NULL, NULL}};

void fs_lua_open_tensor(lua_State *L)
{
    luaL_newmetatable(L, FS_TENSOR_MT);
    luaL_setfuncs(L, metamethods, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");  /* so the Lua front can add methods */
    lua_pushcclosure(L, m_index, 1); /* upvalue: the methods table */
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
    /* functional forms: fs.exp(t), fs.matmul(a, b), ... */
    for (const luaL_Reg *r = methods; r->name; r++) {
        lua_getfield(L, -1, r->name);
        if (lua_isnil(L, -1)) {
            lua_pushcfunction(L, r->func);
            lua_setfield(L, -3, r->name);
        }
        lua_pop(L, 1);
    }
    /* The metatable's methods are also reachable as fs.Tensor for extension from Lua. */
    luaL_getmetatable(L, FS_TENSOR_MT);
    lua_getfield(L, -1, "methods");
    lua_setfield(L, -3, "Tensor");
    lua_pop(L, 1);
}
