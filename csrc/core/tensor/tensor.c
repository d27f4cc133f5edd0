/* tensor.c - storage, tensor headers, creation, strided copies and raw (non-recording) views.
 * Shapes: size[d] elements along dim d, stride[d] elements between neighbours along d. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "tensor/tensor.h"

fs_node_hooks fs_node_hooks_installed;

/* a * b for sizes >= 0, saturating at INT64_MAX instead of overflowing. */
static int64_t mul_saturating(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

int64_t fs_shape_numel(int ndim, const int64_t *size)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n = mul_saturating(n, size[d]);
    return n;
}

int fs_shape_check(const char *op, int ndim, const int64_t *size)
{
    if (ndim < 0 || ndim > FS_MAX_DIM)
        return fs_set_error("%s: %d dims given, at most %d are supported", op, ndim, FS_MAX_DIM);
    for (int d = 0; d < ndim; d++)
        if (size[d] < 0)
            return fs_set_error("%s: negative size in shape %s", op, fs_shape_str(ndim, size));
    int64_t n = fs_shape_numel(ndim, size);
    if (n > FS_MAX_NUMEL)
        return fs_set_error("%s: shape %s has too many elements (%s; at most 2^60)", op,
                            fs_shape_str(ndim, size), n == INT64_MAX ? "over 2^63" : "over 2^60");
    return 0;
}

int64_t fs_numel(const fs_tensor *t) { return fs_shape_numel(t->ndim, t->size); }

static fs_tensor *header_new(void)
{
    fs_tensor *t = calloc(1, sizeof *t);
    if (!t)
        fs_set_error("out of memory");
    else
        t->refcount = 1;
    return t;
}

static void set_contiguous_strides(fs_tensor *t)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = s;
        s *= t->size[d];
    }
}

fs_tensor *fs_tensor_new(int ndim, const int64_t *size)
{
    if (fs_shape_check("tensor", ndim, size) < 0)
        return NULL;
    int64_t n = fs_shape_numel(ndim, size);
    fs_tensor *t = header_new();
    fs_storage *s = calloc(1, sizeof *s);
    float *data = fs_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!t || !s || !data) {
        free(t);
        free(s);
        fs_free(data);
        return NULL;
    }
    s->data = data;
    s->numel = n;
    s->refcount = 1;
    t->storage = s;
    t->ndim = ndim;
    if (ndim)
        memcpy(t->size, size, (size_t)ndim * sizeof(int64_t));
    set_contiguous_strides(t);
    return t;
}

fs_tensor *fs_tensor_full(int ndim, const int64_t *size, float value)
{
    fs_tensor *t = fs_tensor_new(ndim, size);
    if (t) {
        float *p = fs_data(t);
        int64_t n = fs_numel(t);
        for (int64_t i = 0; i < n; i++)
            p[i] = value;
    }
    return t;
}

fs_tensor *fs_tensor_zeros(int ndim, const int64_t *size)
{
    fs_tensor *t = fs_tensor_new(ndim, size);
    if (t)
        memset(fs_data(t), 0, (size_t)fs_numel(t) * sizeof(float));
    return t;
}


fs_tensor *fs_tensor_scalar(float value) { return fs_tensor_full(0, NULL, value); }

fs_tensor *fs_tensor_from_data(int ndim, const int64_t *size, const float *data)
{
    fs_tensor *t = fs_tensor_new(ndim, size);
    if (t)
        memcpy(fs_data(t), data, (size_t)fs_numel(t) * sizeof(float));
    return t;
}

fs_tensor *fs_tensor_arange(double start, double end, double step)
{
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
        fs_set_error("arange: step must be nonzero and bounds finite (start %g, end %g, step %g)",
                     start, end, step);
        return NULL;
    }
    double count = ceil((end - start) / step);
    if (count < 0)
        count = 0;
    if (count > 1e12) {
        fs_set_error("arange: %g elements is too many", count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    fs_tensor *t = fs_tensor_new(1, &n);
    if (t)
        for (int64_t i = 0; i < n; i++)
            fs_data(t)[i] = (float)(start + (double)i * step);
    return t;
}

fs_tensor *fs_tensor_retain(fs_tensor *t)
{
    if (t)
        t->refcount++;
    return t;
}

static void storage_release(fs_storage *s)
{
    if (s && --s->refcount == 0) {
        fs_free(s->data);
        free(s);
    }
}

void fs_tensor_release(fs_tensor *t)
{
    if (!t || --t->refcount > 0)
        return;
    fs_tensor_release(t->grad);
    if (t->grad_fn)
        fs_node_hooks_installed.release(t->grad_fn);
    storage_release(t->storage);
    free(t);
}

bool fs_is_contiguous(const fs_tensor *t)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->size[d] != 1 && t->stride[d] != s)
            return false;
        s *= t->size[d];
    }
    return true;
}

bool fs_same_shape(const fs_tensor *a, const fs_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->size[d] != b->size[d])
            return false;
    return true;
}

float *fs_at(const fs_tensor *t, const int64_t *index)
{
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++)
        off += index[d] * t->stride[d];
    return t->storage->data + off;
}

/* Calls body for each row: the innermost dim is walked by the caller with its stride. */
#define FOR_EACH_ROW(t, idx, off, BODY)                                                           \
    do {                                                                                          \
        int64_t idx[FS_MAX_DIM] = {0};                                                            \
        int64_t rows_ = (t)->ndim ? fs_numel(t) / ((t)->size[(t)->ndim - 1] ? (t)->size[(t)->ndim - 1] : 1) : 1; \
        if ((t)->ndim && (t)->size[(t)->ndim - 1] == 0)                                           \
            rows_ = 0;                                                                            \
        for (int64_t r_ = 0; r_ < rows_; r_++) {                                                  \
            int64_t off = (t)->offset;                                                            \
            for (int d_ = 0; d_ < (t)->ndim - 1; d_++)                                            \
                off += idx[d_] * (t)->stride[d_];                                                 \
            BODY;                                                                                 \
            for (int d_ = (t)->ndim - 2; d_ >= 0; d_--) {                                         \
                if (++idx[d_] < (t)->size[d_])                                                    \
                    break;                                                                        \
                idx[d_] = 0;                                                                      \
            }                                                                                     \
        }                                                                                         \
    } while (0)

/* Elements of t's largest trailing run of dims laid out as in a contiguous tensor (dims
 * *first .. ndim-1): a narrow along dim 1 of (N, C, H, W) is N such blocks of C'HW floats. */
static int64_t contiguous_block(const fs_tensor *t, int *first)
{
    int64_t s = 1;
    int d = t->ndim - 1;
    for (; d >= 0; d--) {
        if (t->size[d] != 1 && t->stride[d] != s)
            break;
        s *= t->size[d];
    }
    *first = d + 1;
    return s;
}

/* Offset of block r (row-major over dims 0 .. first-1) of t. */
static int64_t block_offset(const fs_tensor *t, int first, int64_t r)
{
    int64_t off = t->offset;
    for (int d = first - 1; d >= 0; d--) {
        off += (r % t->size[d]) * t->stride[d];
        r /= t->size[d];
    }
    return off;
}

/* Offset of the start of row r (a row = the innermost dim) of t. */
static int64_t row_offset(const fs_tensor *t, int64_t r) { return block_offset(t, t->ndim - 1, r); }

/* Blocks shorter than this go through the per-element loops. */
#define BLOCK_MIN 16

/* The last two dims hold a transposed matrix (rows R with stride 1, columns C with stride sc):
 * copy it in 32 x 32 tiles so both reads and writes stay in cache. */
#define TILE 32
static void read_transposed(const fs_tensor *t, float *out)
{
    int nd = t->ndim;
    int64_t R = t->size[nd - 2], C = t->size[nd - 1], sc = t->stride[nd - 1];
    int64_t mats = fs_shape_numel(nd - 2, t->size);
    int64_t tr = (R + TILE - 1) / TILE, tc = (C + TILE - 1) / TILE;
    const float *base = t->storage->data;
#pragma omp parallel for if(mats * R * C > FS_PARALLEL_MIN)
    for (int64_t job = 0; job < mats * tr * tc; job++) {
        int64_t m = job / (tr * tc), r0 = (job / tc) % tr * TILE, c0 = job % tc * TILE;
        int64_t off = t->offset, mm = m;
        for (int d = nd - 3; d >= 0; d--) {
            off += (mm % t->size[d]) * t->stride[d];
            mm /= t->size[d];
        }
        float *o = out + m * R * C;
        int64_t r1 = r0 + TILE < R ? r0 + TILE : R, c1 = c0 + TILE < C ? c0 + TILE : C;
        for (int64_t c = c0; c < c1; c++)
            for (int64_t r = r0; r < r1; r++)
                o[r * C + c] = base[off + r + c * sc];
    }
}

void fs_tensor_read(const fs_tensor *t, float *out)
{
    int64_t n = fs_numel(t);
    if (fs_is_contiguous(t)) {
        memcpy(out, fs_data(t), (size_t)n * sizeof(float));
        return;
    }
    int nd = t->ndim, first;
    if (n == 0)
        return;
    const int64_t blk = contiguous_block(t, &first);
    if (blk >= BLOCK_MIN) { /* whole blocks (cat's backward narrows): one memcpy each */
        const float *base = t->storage->data;
#pragma omp parallel for if (n > FS_PARALLEL_MIN)
        for (int64_t r = 0; r < n / blk; r++)
            memcpy(out + r * blk, base + block_offset(t, first, r), (size_t)blk * sizeof(float));
        return;
    }
    if (nd >= 2 && t->stride[nd - 2] == 1 && t->stride[nd - 1] != 1 && t->size[nd - 2] > 1) {
        read_transposed(t, out);
        return;
    }
    int64_t inner = t->size[nd - 1], st = t->stride[nd - 1], rows = n / inner;
    const float *base = t->storage->data;
#pragma omp parallel for if(n > FS_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *src = base + row_offset(t, r);
        float *dst = out + r * inner;
        for (int64_t k = 0; k < inner; k++)
            dst[k] = src[k * st];
    }
}

fs_tensor *fs_tensor_contiguous_copy(const fs_tensor *t)
{
    fs_tensor *c = fs_tensor_new(t->ndim, t->size);
    if (c)
        fs_tensor_read(t, fs_data(c));
    return c;
}

fs_tensor *fs_tensor_shape_only(const fs_tensor *t)
{
    fs_tensor *a = header_new();
    if (!a)
        return NULL;
    a->offset = t->offset;
    a->ndim = t->ndim;
    memcpy(a->size, t->size, sizeof a->size);
    memcpy(a->stride, t->stride, sizeof a->stride);
    return a;
}

fs_tensor *fs_tensor_alias(const fs_tensor *t)
{
    fs_tensor *a = fs_tensor_shape_only(t);
    if (!a)
        return NULL;
    a->storage = t->storage;
    a->storage->refcount++;
    return a;
}

/* src viewed with dst's shape (broadcast strides 0), or NULL with an error. */
static fs_tensor *broadcast_to(const char *op, const fs_tensor *src, const fs_tensor *dst)
{
    if (fs_shape_check(op, dst->ndim, dst->size) < 0)
        return NULL;
    if (src->ndim > dst->ndim) {
        fs_set_error("%s: shape %s cannot be broadcast to %s", op, FS_SHAPE(src), FS_SHAPE(dst));
        return NULL;
    }
    fs_tensor *b = fs_tensor_alias(src);
    if (!b)
        return NULL;
    int shift = dst->ndim - src->ndim;
    b->ndim = dst->ndim;
    for (int d = dst->ndim - 1; d >= 0; d--) {
        int sd = d - shift;
        int64_t size = sd >= 0 ? src->size[sd] : 1;
        int64_t stride = sd >= 0 ? src->stride[sd] : 0;
        if (size != dst->size[d]) {
            if (size != 1) {
                fs_set_error("%s: shape %s cannot be broadcast to %s", op, FS_SHAPE(src),
                             FS_SHAPE(dst));
                fs_tensor_release(b);
                return NULL;
            }
            stride = 0;
        }
        b->size[d] = dst->size[d];
        b->stride[d] = stride;
    }
    return b;
}

static int copy_or_add(fs_tensor *dst, const fs_tensor *src, int add, const char *op)
{
    if (fs_same_shape(dst, src) && fs_is_contiguous(dst) && fs_is_contiguous(src)) {
        /* the common case (gradient accumulation into a leaf's .grad): one flat loop */
        float *restrict o = fs_data(dst);
        const float *restrict i = fs_data(src);
        int64_t n = fs_numel(dst);
        if (!add) {
            if (o != i)
                memmove(o, i, (size_t)n * sizeof(float));
            return 0;
        }
#pragma omp parallel for schedule(static) if (n > FS_PARALLEL_MIN)
        for (int64_t k = 0; k < n; k++)
            o[k] += i[k];
        return 0;
    }
    fs_tensor *s = broadcast_to(op, src, dst);
    if (!s)
        return -1;
    if (dst->ndim == 0) {
        float v = fs_data(s)[0];
        fs_data(dst)[0] = add ? fs_data(dst)[0] + v : v;
        fs_tensor_release(s);
        return 0;
    }
    int fd, fsrc;
    const int64_t bd = contiguous_block(dst, &fd), bs = contiguous_block(s, &fsrc);
    if (bd >= BLOCK_MIN && bs >= BLOCK_MIN) { /* whole blocks both sides (cat's forward) */
        const int first = fd > fsrc ? fd : fsrc;
        int64_t blk = 1;
        for (int d = first; d < dst->ndim; d++)
            blk *= dst->size[d];
        const int64_t nb = blk ? fs_numel(dst) / blk : 0;
        float *dbase = dst->storage->data;
        const float *sbase = s->storage->data;
#pragma omp parallel for schedule(static) if (nb * blk > FS_PARALLEL_MIN)
        for (int64_t r = 0; r < nb; r++) {
            float *o = dbase + block_offset(dst, first, r);
            const float *i = sbase + block_offset(s, first, r);
            if (add)
                for (int64_t k = 0; k < blk; k++)
                    o[k] += i[k];
            else
                memmove(o, i, (size_t)blk * sizeof(float));
        }
        fs_tensor_release(s);
        return 0;
    }
    int last = dst->ndim - 1;
    int64_t inner = dst->size[last], ds = dst->stride[last], ss = s->stride[last];
    float *dbase = dst->storage->data;
    const float *sbase = s->storage->data;
    FOR_EACH_ROW(dst, idx, off, {
        int64_t soff = s->offset;
        for (int d = 0; d < last; d++)
            soff += idx[d] * s->stride[d];
        float *o = dbase + off;
        const float *i = sbase + soff;
        if (add)
            for (int64_t k = 0; k < inner; k++)
                o[k * ds] += i[k * ss];
        else
            for (int64_t k = 0; k < inner; k++)
                o[k * ds] = i[k * ss];
    });
    fs_tensor_release(s);
    return 0;
}

int fs_tensor_copy_(fs_tensor *dst, const fs_tensor *src) { return copy_or_add(dst, src, 0, "copy"); }
int fs_tensor_add_(fs_tensor *dst, const fs_tensor *src) { return copy_or_add(dst, src, 1, "add_"); }

int fs_tensor_fill_(fs_tensor *t, float value)
{
    fs_tensor *s = fs_tensor_scalar(value);
    if (!s)
        return -1;
    int rc = fs_tensor_copy_(t, s);
    fs_tensor_release(s);
    return rc;
}

/* ---- raw views ---- */

static int norm_dim(const char *op, const fs_tensor *t, int dim, int extra)
{
    int n = t->ndim + extra;
    if (dim < 0)
        dim += n;
    if (dim < 0 || dim >= (n ? n : 1) || (n == 0)) {
        fs_set_error("%s: dim out of range for a tensor of shape %s", op, FS_SHAPE(t));
        return -1;
    }
    return dim;
}

fs_tensor *fs_view_raw(const fs_tensor *t, int ndim, const int64_t *size_in)
{
    if (ndim > FS_MAX_DIM) {
        fs_set_error("view: at most %d dims", FS_MAX_DIM);
        return NULL;
    }
    int64_t size[FS_MAX_DIM], known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        size[d] = size_in[d];
        if (size[d] == -1) {
            if (infer >= 0) {
                fs_set_error("view: only one dim can be -1 in %s", fs_shape_str(ndim, size_in));
                return NULL;
            }
            infer = d;
        } else if (size[d] < 0) {
            fs_set_error("view: invalid shape %s", fs_shape_str(ndim, size_in));
            return NULL;
        } else
            known = mul_saturating(known, size[d]);
    }
    int64_t n = fs_numel(t);
    if (infer >= 0) {
        if (known == 0 || n % known != 0) {
            fs_set_error("view: shape %s is invalid for a tensor of shape %s",
                         fs_shape_str(ndim, size_in), FS_SHAPE(t));
            return NULL;
        }
        size[infer] = n / known;
        known = n;
    }
    if (known != n) {
        fs_set_error("view: shape %s is invalid for a tensor of shape %s (%lld elements)",
                     fs_shape_str(ndim, size_in), FS_SHAPE(t), (long long)n);
        return NULL;
    }
    if (!fs_is_contiguous(t)) {
        fs_set_error("view: tensor of shape %s is not contiguous; use reshape or contiguous()",
                     FS_SHAPE(t));
        return NULL;
    }
    fs_tensor *v = fs_tensor_alias(t);
    if (!v)
        return NULL;
    v->ndim = ndim;
    memcpy(v->size, size, (size_t)ndim * sizeof(int64_t));
    set_contiguous_strides(v);
    return v;
}

fs_tensor *fs_permute_raw(const fs_tensor *t, const int *perm)
{
    int seen[FS_MAX_DIM] = {0};
    for (int d = 0; d < t->ndim; d++) {
        int p = perm[d];
        if (p < 0 || p >= t->ndim || seen[p]++) {
            fs_set_error("permute: invalid permutation for a tensor of shape %s", FS_SHAPE(t));
            return NULL;
        }
    }
    fs_tensor *v = fs_tensor_alias(t);
    if (!v)
        return NULL;
    for (int d = 0; d < t->ndim; d++) {
        v->size[d] = t->size[perm[d]];
        v->stride[d] = t->stride[perm[d]];
    }
    return v;
}

fs_tensor *fs_narrow_raw(const fs_tensor *t, int dim, int64_t start, int64_t len)
{
    if ((dim = norm_dim("narrow", t, dim, 0)) < 0)
        return NULL;
    if (start < 0 || len < 0 || start + len > t->size[dim]) {
        fs_set_error("narrow: start %lld and length %lld out of range for dim %d of shape %s",
                     (long long)start + 1, (long long)len, dim + 1, FS_SHAPE(t));
        return NULL;
    }
    fs_tensor *v = fs_tensor_alias(t);
    if (v) {
        v->offset += start * t->stride[dim];
        v->size[dim] = len;
    }
    return v;
}

fs_tensor *fs_select_raw(const fs_tensor *t, int dim, int64_t index)
{
    if ((dim = norm_dim("select", t, dim, 0)) < 0)
        return NULL;
    if (index < 0 || index >= t->size[dim]) {
        fs_set_error("select: index %lld out of range for dim %d of shape %s",
                     (long long)index + 1, dim + 1, FS_SHAPE(t));
        return NULL;
    }
    fs_tensor *v = fs_tensor_alias(t);
    if (!v)
        return NULL;
    v->offset += index * t->stride[dim];
    for (int d = dim; d < t->ndim - 1; d++) {
        v->size[d] = t->size[d + 1];
        v->stride[d] = t->stride[d + 1];
    }
    v->ndim--;
    return v;
}

fs_tensor *fs_expand_raw(const fs_tensor *t, int ndim, const int64_t *size)
{
    if (ndim < t->ndim || ndim > FS_MAX_DIM) {
        fs_set_error("expand: cannot expand shape %s to %s", FS_SHAPE(t), fs_shape_str(ndim, size));
        return NULL;
    }
    fs_tensor target = {0};
    target.ndim = ndim;
    int shift = ndim - t->ndim;
    for (int d = 0; d < ndim; d++)
        target.size[d] = (size[d] == -1 && d >= shift) ? t->size[d - shift] : size[d];
    fs_tensor *v = broadcast_to("expand", t, &target);
    return v;
}

fs_tensor *fs_unsqueeze_raw(const fs_tensor *t, int dim)
{
    if (t->ndim >= FS_MAX_DIM) {
        fs_set_error("unsqueeze: tensor of shape %s already has %d dims", FS_SHAPE(t), FS_MAX_DIM);
        return NULL;
    }
    if (dim < 0)
        dim += t->ndim + 1;
    if (dim < 0 || dim > t->ndim) {
        fs_set_error("unsqueeze: dim out of range for a tensor of shape %s", FS_SHAPE(t));
        return NULL;
    }
    fs_tensor *v = fs_tensor_alias(t);
    if (!v)
        return NULL;
    for (int d = t->ndim; d > dim; d--) {
        v->size[d] = t->size[d - 1];
        v->stride[d] = t->stride[d - 1];
    }
    v->size[dim] = 1;
    v->stride[dim] = dim < t->ndim ? t->size[dim] * t->stride[dim] : 1;
    v->ndim++;
    return v;
}

fs_tensor *fs_squeeze_raw(const fs_tensor *t, int dim)
{
    if (dim != -1 && (dim = norm_dim("squeeze", t, dim, 0)) < 0)
        return NULL;
    fs_tensor *v = fs_tensor_alias(t);
    if (!v)
        return NULL;
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        bool drop = t->size[d] == 1 && (dim == -1 || d == dim);
        if (!drop) {
            v->size[n] = t->size[d];
            v->stride[n] = t->stride[d];
            n++;
        }
    }
    v->ndim = n;
    return v;
}

int fs_broadcast_shape(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                       int *nout, int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int d = 0; d < n; d++) {
        int da = d - (n - na), db = d - (n - nb);
        int64_t x = da >= 0 ? sa[da] : 1, y = db >= 0 ? sb[db] : 1;
        if (x != y && x != 1 && y != 1)
            return fs_set_error("%s: shapes %s and %s cannot be broadcast together", op,
                                fs_shape_str(na, sa), fs_shape_str(nb, sb));
        out[d] = x == 1 ? y : x;
    }
    *nout = n;
    return 0;
}
