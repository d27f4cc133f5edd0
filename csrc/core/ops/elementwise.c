/* elementwise.c - unary, binary (NumPy broadcasting) and where, with their backward kernels.
 * Shapes: inputs broadcast to the output shape; output contiguous. Gradients of broadcast
 * inputs are summed back to the input's shape (fs_sum_to_shape). */
#include <math.h>
#include <string.h>

#include "autograd/autograd.h"
#include "base/parallel.h"
#include "ops/ops.h"

/* Up to three operands viewed with the output's shape (stride 0 where broadcast). */
typedef struct {
    int ndim, nops;
    int64_t size[FS_MAX_DIM];
    int64_t stride[3][FS_MAX_DIM];
    const float *base[3]; /* storage data + offset */
} bcast;

static int bcast_init(bcast *it, const char *op, int nops, fs_tensor *const *ts)
{
    int ndim = 0;
    int64_t shape[FS_MAX_DIM];
    for (int k = 0; k < nops; k++) {
        int64_t tmp[FS_MAX_DIM];
        int nt;
        if (k == 0) {
            ndim = ts[0]->ndim;
            memcpy(shape, ts[0]->size, sizeof shape);
            continue;
        }
        if (fs_broadcast_shape(op, ndim, shape, ts[k]->ndim, ts[k]->size, &nt, tmp) < 0) {
            if (nops == 3)
                fs_set_error("%s: shapes %s, %s and %s cannot be broadcast together", op,
                             FS_SHAPE(ts[0]), FS_SHAPE(ts[1]), FS_SHAPE(ts[2]));
            return -1;
        }
        ndim = nt;
        memcpy(shape, tmp, sizeof shape);
    }
    it->ndim = ndim;
    it->nops = nops;
    memcpy(it->size, shape, sizeof shape);
    for (int k = 0; k < nops; k++) {
        const fs_tensor *t = ts[k];
        int shift = ndim - t->ndim;
        for (int d = 0; d < ndim; d++) {
            int td = d - shift;
            it->stride[k][d] = (td >= 0 && t->size[td] == shape[d]) ? t->stride[td] : 0;
        }
        it->base[k] = fs_data(t);
    }
    return 0;
}

static bool bcast_flat(const bcast *it, fs_tensor *const *ts)
{
    for (int k = 0; k < it->nops; k++) {
        if (ts[k]->ndim != it->ndim || !fs_is_contiguous(ts[k]))
            return false;
        for (int d = 0; d < it->ndim; d++)
            if (ts[k]->size[d] != it->size[d])
                return false;
    }
    return true;
}

/* Offsets of operand k at the start of row r (a row = the innermost dim). */
static void row_offsets(const bcast *it, int64_t r, int64_t *off)
{
    for (int k = 0; k < it->nops; k++)
        off[k] = 0;
    for (int d = it->ndim - 2; d >= 0; d--) {
        int64_t i = r % it->size[d];
        r /= it->size[d];
        for (int k = 0; k < it->nops; k++)
            off[k] += i * it->stride[k][d];
    }
}

static inline float apply_binary(fs_binary_op op, float x, float y)
{
    switch (op) {
    case FS_ADD: return x + y;
    case FS_SUB: return x - y;
    case FS_MUL: return x * y;
    case FS_DIV: return x / y;
    case FS_POW: return powf(x, y);
    case FS_EQ: return x == y;
    case FS_NE: return x != y;
    case FS_LT: return x < y;
    case FS_LE: return x <= y;
    case FS_GT: return x > y;
    case FS_GE: return x >= y;
    case FS_MAXIMUM: return x >= y ? x : y;
    case FS_MINIMUM: return x <= y ? x : y;
    }
    return 0;
}

const char *fs_binary_name(fs_binary_op op)
{
    static const char *names[] = {"add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le",
                                  "gt", "ge", "maximum", "minimum"};
    return names[op];
}

const char *fs_unary_name(fs_unary_op op)
{
    static const char *names[] = {"neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh"};
    return names[op];
}

/* out (shape of the broadcast) = op(a, b), no recording. */
static fs_tensor *binary_forward(fs_binary_op op, fs_tensor *a, fs_tensor *b)
{
    bcast it;
    fs_tensor *ts[2] = {a, b};
    if (bcast_init(&it, fs_binary_name(op), 2, ts) < 0)
        return NULL;
    fs_tensor *out = fs_tensor_new(it.ndim, it.size);
    if (!out)
        return NULL;
    float *o = fs_data(out);
    int64_t n = fs_numel(out);
    const float *pa = it.base[0], *pb = it.base[1];
    if (bcast_flat(&it, ts)) {
#define FLAT(EXPR)                                                                 \
    _Pragma("omp parallel for if(n > FS_PARALLEL_MIN)") for (int64_t i = 0; i < n; i++) { \
        float x = pa[i], y = pb[i];                                                \
        o[i] = (EXPR);                                                             \
    }
        switch (op) {
        case FS_ADD: FLAT(x + y); break;
        case FS_SUB: FLAT(x - y); break;
        case FS_MUL: FLAT(x * y); break;
        case FS_DIV: FLAT(x / y); break;
        default: FLAT(apply_binary(op, x, y)); break;
        }
#undef FLAT
        return out;
    }
    if (n == 0)
        return out;
    int64_t inner = it.ndim ? it.size[it.ndim - 1] : 1, rows = n / inner;
    int64_t sa = it.ndim ? it.stride[0][it.ndim - 1] : 0, sb = it.ndim ? it.stride[1][it.ndim - 1] : 0;
#pragma omp parallel for if(n > FS_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t off[3];
        row_offsets(&it, r, off);
        const float *ra = pa + off[0], *rb = pb + off[1];
        float *ro = o + r * inner;
        if (op == FS_ADD)
            for (int64_t k = 0; k < inner; k++) ro[k] = ra[k * sa] + rb[k * sb];
        else if (op == FS_MUL)
            for (int64_t k = 0; k < inner; k++) ro[k] = ra[k * sa] * rb[k * sb];
        else
            for (int64_t k = 0; k < inner; k++) ro[k] = apply_binary(op, ra[k * sa], rb[k * sb]);
    }
    return out;
}

/* Elementwise product/quotient helpers for backward, then summed to a shape. */
static fs_tensor *grad_to(fs_tensor *g, const fs_tensor *like)
{
    if (!g)
        return NULL;
    fs_tensor *r = fs_sum_to_shape(g, like->ndim, like->size);
    fs_tensor_release(g);
    return r;
}

/* The node's context: which op. */
typedef struct { fs_binary_op op; } binary_ctx;

/* Whether op's backward reads its inputs' values (add and sub need their shapes only). */
static bool binary_reads_inputs(fs_binary_op op) { return op != FS_ADD && op != FS_SUB; }

/* saved (ops that read their inputs): a, b as given (aliases, with their strides). */
static int binary_backward(fs_node *n, const fs_tensor *dout_c, fs_tensor **din)
{
    fs_binary_op op = ((const binary_ctx *)n->ctx)->op;
    fs_tensor *a = n->saved[0] ? n->saved[0] : n->inputs[0];
    fs_tensor *b = n->saved[1] ? n->saved[1] : n->inputs[1];
    fs_tensor *dout = (fs_tensor *)dout_c;
    bool wa = fs_node_wants(n, 0), wb = fs_node_wants(n, 1);
    switch (op) {
    case FS_ADD:
    case FS_SUB:
        if (wa && !(din[0] = fs_sum_to_shape(dout, a->ndim, a->size)))
            return -1;
        if (wb) {
            if (op == FS_ADD)
                din[1] = fs_sum_to_shape(dout, b->ndim, b->size);
            else
                din[1] = grad_to(fs_unary(FS_NEG, dout), b);
            if (!din[1])
                return -1;
        }
        return 0;
    case FS_MUL:
        if (wa && !(din[0] = grad_to(binary_forward(FS_MUL, dout, b), a)))
            return -1;
        if (wb && !(din[1] = grad_to(binary_forward(FS_MUL, dout, a), b)))
            return -1;
        return 0;
    case FS_DIV:
        if (wa && !(din[0] = grad_to(binary_forward(FS_DIV, dout, b), a)))
            return -1;
        if (wb) { /* -dout * a / b^2 = -(dout * out) / b, with out = a / b */
            fs_tensor *q = binary_forward(FS_DIV, a, b), *t = NULL, *u = NULL;
            if (q && (t = binary_forward(FS_MUL, dout, q)))
                u = binary_forward(FS_DIV, t, b);
            fs_tensor_release(q);
            fs_tensor_release(t);
            if (!u)
                return -1;
            float *p = fs_data(u);
            for (int64_t i = 0, m = fs_numel(u); i < m; i++)
                p[i] = -p[i];
            if (!(din[1] = grad_to(u, b)))
                return -1;
        }
        return 0;
    case FS_POW:
    case FS_MAXIMUM:
    case FS_MINIMUM: {
        /* Per element on the broadcast grid: da = dout * dpow/da, db = dout * dpow/db. */
        bcast it;
        fs_tensor *ts[3] = {dout, a, b};
        if (bcast_init(&it, n->name, 3, ts) < 0)
            return -1;
        fs_tensor *ga = fs_tensor_new(it.ndim, it.size), *gb = fs_tensor_new(it.ndim, it.size);
        if (!ga || !gb) {
            fs_tensor_release(ga);
            fs_tensor_release(gb);
            return -1;
        }
        int64_t m = fs_numel(ga), idx[FS_MAX_DIM] = {0};
        float *pa = fs_data(ga), *pb = fs_data(gb);
        for (int64_t e = 0; e < m; e++) {
            int64_t o0 = 0, o1 = 0, o2 = 0;
            for (int d = 0; d < it.ndim; d++) {
                o0 += idx[d] * it.stride[0][d];
                o1 += idx[d] * it.stride[1][d];
                o2 += idx[d] * it.stride[2][d];
            }
            float g = it.base[0][o0], x = it.base[1][o1], y = it.base[2][o2];
            if (op == FS_POW) {
                pa[e] = y == 0.0f ? 0.0f : g * y * powf(x, y - 1.0f);
                pb[e] = x > 0.0f ? g * powf(x, y) * logf(x) : 0.0f;
            } else {
                bool first = op == FS_MAXIMUM ? x >= y : x <= y;
                pa[e] = first ? g : 0.0f;
                pb[e] = first ? 0.0f : g;
            }
            for (int d = it.ndim - 1; d >= 0; d--) {
                if (++idx[d] < it.size[d])
                    break;
                idx[d] = 0;
            }
        }
        if (wa)
            din[0] = fs_sum_to_shape(ga, a->ndim, a->size);
        if (wb)
            din[1] = fs_sum_to_shape(gb, b->ndim, b->size);
        fs_tensor_release(ga);
        fs_tensor_release(gb);
        return ((wa && !din[0]) || (wb && !din[1])) ? -1 : 0;
    }
    default:
        return 0; /* comparisons have no gradient */
    }
}

fs_tensor *fs_binary(fs_binary_op op, fs_tensor *a, fs_tensor *b)
{
    fs_tensor *out = binary_forward(op, a, b);
    if (!out || (op >= FS_EQ && op <= FS_GE))
        return out;
    fs_tensor *ins[2] = {a, b};
    if (!fs_any_requires_grad(2, ins))
        return out;
    binary_ctx c = {op};
    fs_node *n = fs_node_new_ctx(fs_binary_name(op), binary_backward, 2, ins, &c, sizeof c);
    if (n && binary_reads_inputs(op) &&
        (!(n->saved[0] = fs_tensor_alias(a)) || !(n->saved[1] = fs_tensor_alias(b)))) {
        fs_node_release(n);
        n = NULL;
    }
    if (!n) {
        fs_tensor_release(out);
        return NULL;
    }
    fs_node_attach(n, out);
    return out;
}

fs_tensor *fs_binary_scalar(fs_binary_op op, fs_tensor *a, float s, bool scalar_first)
{
    fs_tensor *st = fs_tensor_scalar(s);
    if (!st)
        return NULL;
    fs_tensor *out = scalar_first ? fs_binary(op, st, a) : fs_binary(op, a, st);
    fs_tensor_release(st);
    return out;
}

/* ---- unary ---- */

static inline float apply_unary(fs_unary_op op, float x)
{
    switch (op) {
    case FS_NEG: return -x;
    case FS_EXP: return expf(x);
    case FS_LOG: return logf(x);
    case FS_SQRT: return sqrtf(x);
    case FS_ABS: return fabsf(x);
    case FS_RELU: return x > 0.0f ? x : 0.0f;
    case FS_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case FS_TANH: return tanhf(x);
    }
    return 0;
}

/* out = f(a) elementwise over a contiguous copy of a's shape; f given as op or clamp. */
static fs_tensor *map_unary(fs_tensor *a, int op, float lo, float hi)
{
    fs_tensor *src = fs_is_contiguous(a) ? fs_tensor_retain(a) : fs_tensor_contiguous_copy(a);
    fs_tensor *out = src ? fs_tensor_new(a->ndim, a->size) : NULL;
    if (out) {
        const float *x = fs_data(src);
        float *o = fs_data(out);
        int64_t n = fs_numel(out);
        if (op < 0) {
#pragma omp parallel for if(n > FS_PARALLEL_MIN)
            for (int64_t i = 0; i < n; i++)
                o[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
        } else {
#pragma omp parallel for if(n > FS_PARALLEL_MIN)
            for (int64_t i = 0; i < n; i++)
                o[i] = apply_unary((fs_unary_op)op, x[i]);
        }
    }
    fs_tensor_release(src);
    return out;
}

/* The node's context: the op (an fs_unary_op, or -1 for clamp to [lo, hi]). */
typedef struct { int op; float lo, hi; } unary_ctx;

/* saved[0] = a (contiguous), saved[1] = out alias. din = dout * f'(a). */
static int unary_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    const unary_ctx *c = n->ctx;
    int op = c->op;
    const fs_tensor *a = n->saved[0], *y = n->saved[1];
    fs_tensor *g = fs_tensor_new(dout->ndim, dout->size);
    if (!g)
        return -1;
    const float *x = fs_data(a), *o = fs_data(y), *d = fs_data(dout);
    float *p = fs_data(g);
    float lo = c->lo, hi = c->hi;
    int64_t m = fs_numel(g);
    /* One loop per op, so each vectorises. */
#define GRAD_LOOP(EXPR)                                                      \
    _Pragma("omp parallel for if(m > FS_PARALLEL_MIN)")                      \
    for (int64_t i = 0; i < m; i++) p[i] = d[i] * (EXPR);
    switch (op) {
    case FS_NEG: GRAD_LOOP(-1.0f) break;
    case FS_EXP: GRAD_LOOP(o[i]) break;
    case FS_LOG: GRAD_LOOP(1.0f / x[i]) break;
    case FS_SQRT: GRAD_LOOP(0.5f / o[i]) break;
    case FS_ABS: GRAD_LOOP(x[i] > 0.0f ? 1.0f : (x[i] < 0.0f ? -1.0f : 0.0f)) break;
    case FS_RELU: GRAD_LOOP(x[i] > 0.0f ? 1.0f : 0.0f) break;
    case FS_SIGMOID: GRAD_LOOP(o[i] * (1.0f - o[i])) break;
    case FS_TANH: GRAD_LOOP(1.0f - o[i] * o[i]) break;
    default: GRAD_LOOP((x[i] >= lo && x[i] <= hi) ? 1.0f : 0.0f) break; /* clamp */
    }
#undef GRAD_LOOP
    din[0] = g;
    return 0;
}

static fs_tensor *unary_record(fs_tensor *a, fs_tensor *out, int op, const char *name, float lo,
                               float hi)
{
    if (!fs_any_requires_grad(1, &a))
        return out;
    unary_ctx c = {op, lo, hi};
    fs_node *n = fs_node_new_ctx(name, unary_backward, 1, &a, &c, sizeof c);
    if (!n) {
        fs_tensor_release(out);
        return NULL;
    }
    n->saved[0] = fs_is_contiguous(a) ? fs_tensor_alias(a) : fs_tensor_contiguous_copy(a);
    n->saved[1] = fs_tensor_alias(out);
    if (!n->saved[0] || !n->saved[1]) {
        fs_node_release(n);
        fs_tensor_release(out);
        return NULL;
    }
    fs_node_attach(n, out);
    return out;
}

fs_tensor *fs_unary(fs_unary_op op, fs_tensor *a)
{
    fs_tensor *out = map_unary(a, op, 0, 0);
    return out ? unary_record(a, out, op, fs_unary_name(op), 0, 0) : NULL;
}

fs_tensor *fs_clamp(fs_tensor *a, float lo, float hi)
{
    if (lo > hi) {
        fs_set_error("clamp: min %g is greater than max %g", lo, hi);
        return NULL;
    }
    fs_tensor *out = map_unary(a, -1, lo, hi);
    return out ? unary_record(a, out, -1, "clamp", lo, hi) : NULL;
}

/* ---- where ---- */

static fs_tensor *where_forward(fs_tensor *cond, fs_tensor *a, fs_tensor *b)
{
    bcast it;
    fs_tensor *ts[3] = {cond, a, b};
    if (bcast_init(&it, "where", 3, ts) < 0)
        return NULL;
    fs_tensor *out = fs_tensor_new(it.ndim, it.size);
    if (!out)
        return NULL;
    int64_t n = fs_numel(out);
    if (n == 0)
        return out;
    int64_t inner = it.ndim ? it.size[it.ndim - 1] : 1, rows = n / inner;
    int last = it.ndim - 1;
    float *o = fs_data(out);
#pragma omp parallel for if(n > FS_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t off[3];
        row_offsets(&it, r, off);
        for (int64_t k = 0; k < inner; k++) {
            float c = it.base[0][off[0] + (last >= 0 ? k * it.stride[0][last] : 0)];
            o[r * inner + k] = c != 0.0f ? it.base[1][off[1] + (last >= 0 ? k * it.stride[1][last] : 0)]
                                         : it.base[2][off[2] + (last >= 0 ? k * it.stride[2][last] : 0)];
        }
    }
    return out;
}

static int where_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    fs_tensor *cond = n->saved[0];
    fs_tensor *zero = fs_tensor_scalar(0.0f);
    if (!zero)
        return -1;
    for (int k = 1; k <= 2; k++) {
        if (!fs_node_wants(n, k))
            continue;
        fs_tensor *g = k == 1 ? where_forward(cond, (fs_tensor *)dout, zero)
                              : where_forward(cond, zero, (fs_tensor *)dout);
        if (!(din[k] = grad_to(g, n->inputs[k]))) {
            fs_tensor_release(zero);
            return -1;
        }
    }
    fs_tensor_release(zero);
    return 0;
}

fs_tensor *fs_where(fs_tensor *cond, fs_tensor *a, fs_tensor *b)
{
    fs_tensor *out = where_forward(cond, a, b);
    if (!out)
        return NULL;
    fs_node *n = fs_node_maybe_new("where", where_backward, 3, (fs_tensor *[]){NULL, a, b});
    if (n) {
        n->saved[0] = fs_tensor_alias(cond);
        fs_node_attach(n, out);
    }
    return out;
}
