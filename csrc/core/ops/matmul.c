/* matmul.c - torch.matmul: (n,k)@(k,m), 1-D operands promoted and squeezed back, and batched
 * (..., n, k) @ (..., k, m) with broadcast batch dims. GEMM by cblas_sgemm on strided views
 * (a transposed view is passed as CblasTrans, not copied). */
#include <cblas.h>
#include <string.h>

#include "autograd/autograd.h"
#include "ops/ops.h"

/* How to hand a 2-D strided matrix (rows, cols, strides rs, cs) to BLAS without a copy. */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, CBLAS_TRANSPOSE *tr,
                        int64_t *ld)
{
    if ((cs == 1 || cols == 1) && rs >= (cols > 1 ? cols : 1)) {
        *tr = CblasNoTrans;
        *ld = rs > 0 ? rs : 1;
        return true;
    }
    if ((rs == 1 || rows == 1) && cs >= (rows > 1 ? rows : 1)) {
        *tr = CblasTrans;
        *ld = cs > 0 ? cs : 1;
        return true;
    }
    return false;
}

/* a: (..., n, k), b: (..., k, m), both at least 2-D -> out (broadcast..., n, m). No recording. */
static fs_tensor *matmul_nd(fs_tensor *a_in, fs_tensor *b_in)
{
    int na = a_in->ndim, nb = b_in->ndim;
    int64_t n = a_in->size[na - 2], k = a_in->size[na - 1], m = b_in->size[nb - 1];
    if (b_in->size[nb - 2] != k) {
        fs_set_error("matmul: shapes %s and %s are not aligned", FS_SHAPE(a_in), FS_SHAPE(b_in));
        return NULL;
    }
    int nbatch;
    int64_t batch[FS_MAX_DIM];
    if (fs_broadcast_shape("matmul", na - 2, a_in->size, nb - 2, b_in->size, &nbatch, batch) < 0) {
        fs_set_error("matmul: batch dims of %s and %s cannot be broadcast together",
                     FS_SHAPE(a_in), FS_SHAPE(b_in));
        return NULL;
    }
    int64_t osize[FS_MAX_DIM];
    memcpy(osize, batch, (size_t)nbatch * sizeof(int64_t));
    osize[nbatch] = n;
    osize[nbatch + 1] = m;
    if (nbatch + 2 > FS_MAX_DIM) {
        fs_set_error("matmul: result would have more than %d dims", FS_MAX_DIM);
        return NULL;
    }
    fs_tensor *out = fs_tensor_new(nbatch + 2, osize);
    if (!out)
        return NULL;
    int64_t nmat = fs_shape_numel(nbatch, batch);
    if (n == 0 || m == 0 || nmat == 0)
        return out;
    if (k == 0) {
        memset(fs_data(out), 0, (size_t)fs_numel(out) * sizeof(float));
        return out;
    }
    /* Operands BLAS cannot take as they are become contiguous copies. */
    fs_tensor *a = fs_tensor_retain(a_in), *b = fs_tensor_retain(b_in);
    CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
    int64_t lda = 1, ldb = 1;
    if (!blas_layout(n, k, a->stride[na - 2], a->stride[na - 1], &ta, &lda)) {
        fs_tensor_release(a);
        a = fs_tensor_contiguous_copy(a_in);
    }
    if (!blas_layout(k, m, b->stride[nb - 2], b->stride[nb - 1], &tb, &ldb)) {
        fs_tensor_release(b);
        b = fs_tensor_contiguous_copy(b_in);
    }
    if (!a || !b) {
        fs_tensor_release(a);
        fs_tensor_release(b);
        fs_tensor_release(out);
        return NULL;
    }
    blas_layout(n, k, a->stride[na - 2], a->stride[na - 1], &ta, &lda);
    blas_layout(k, m, b->stride[nb - 2], b->stride[nb - 1], &tb, &ldb);

    /* One GEMM when b is a single matrix and a's batch rows are evenly spaced row-major. */
    bool b_single = fs_shape_numel(nb - 2, b->size) == 1;
    bool a_rows_flat = ta == CblasNoTrans && fs_is_contiguous(a) && lda == k;
    if (b_single && a_rows_flat && fs_shape_numel(na - 2, a->size) == nmat) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)(nmat * n), (int)m, (int)k, 1.0f, fs_data(a),
                    (int)lda, fs_data(b), (int)ldb, 0.0f, fs_data(out), (int)m);
    } else {
        int64_t idx[FS_MAX_DIM] = {0};
        for (int64_t t = 0; t < nmat; t++) {
            int64_t oa = 0, ob = 0;
            for (int d = 0; d < nbatch; d++) {
                int da = d - (nbatch - (na - 2)), db = d - (nbatch - (nb - 2));
                if (da >= 0 && a->size[da] != 1)
                    oa += idx[d] * a->stride[da];
                if (db >= 0 && b->size[db] != 1)
                    ob += idx[d] * b->stride[db];
            }
            cblas_sgemm(CblasRowMajor, ta, tb, (int)n, (int)m, (int)k, 1.0f, fs_data(a) + oa,
                        (int)lda, fs_data(b) + ob, (int)ldb, 0.0f, fs_data(out) + t * n * m,
                        (int)m);
            for (int d = nbatch - 1; d >= 0; d--) {
                if (++idx[d] < batch[d])
                    break;
                idx[d] = 0;
            }
        }
    }
    fs_tensor_release(a);
    fs_tensor_release(b);
    return out;
}

/* 1-D operands become (1, k) / (k, 1) matrices. */
static fs_tensor *promote(fs_tensor *t, int which)
{
    if (t->ndim >= 2)
        return fs_tensor_retain(t);
    return fs_unsqueeze_raw(t, which == 0 ? 0 : 1);
}

/* The raw product with 1-D promotion undone: shape as torch.matmul. */
static fs_tensor *matmul_raw(fs_tensor *a, fs_tensor *b)
{
    if (a->ndim == 0 || b->ndim == 0) {
        fs_set_error("matmul: both operands need at least 1 dim, got %s and %s", FS_SHAPE(a),
                     FS_SHAPE(b));
        return NULL;
    }
    fs_tensor *pa = promote(a, 0), *pb = promote(b, 1);
    fs_tensor *out = (pa && pb) ? matmul_nd(pa, pb) : NULL;
    if (out && (a->ndim == 1 || b->ndim == 1)) {
        fs_tensor *sq = out;
        if (b->ndim == 1) {
            sq = fs_squeeze_raw(out, out->ndim - 1);
            fs_tensor_release(out);
            out = sq;
        }
        if (out && a->ndim == 1) {
            sq = fs_squeeze_raw(out, out->ndim - (b->ndim == 1 ? 1 : 2));
            fs_tensor_release(out);
            out = sq;
        }
    }
    if (!out && pa && pb && strstr(fs_error(), "not aligned"))
        fs_set_error("matmul: shapes %s and %s are not aligned", FS_SHAPE(a), FS_SHAPE(b));
    fs_tensor_release(pa);
    fs_tensor_release(pb);
    return out;
}

static fs_tensor *transpose_last(fs_tensor *t)
{
    int perm[FS_MAX_DIM];
    for (int d = 0; d < t->ndim; d++)
        perm[d] = d;
    if (t->ndim >= 2) {
        perm[t->ndim - 2] = t->ndim - 1;
        perm[t->ndim - 1] = t->ndim - 2;
    }
    return fs_permute_raw(t, perm);
}

/* With A=(..,n,k), B=(..,k,m), G=(..,n,m): dA = G B^T, dB = A^T G, summed to each shape. */
/* saved: a, b (aliases). */
static int matmul_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    fs_tensor *a = n->saved[0], *b = n->saved[1];
    fs_tensor *pa = promote(a, 0), *pb = promote(b, 1);
    /* The output gradient with the promoted dims put back. */
    int64_t gsize[FS_MAX_DIM];
    int gnd = 0;
    for (int d = 0; d < dout->ndim; d++)
        gsize[gnd++] = dout->size[d];
    if (a->ndim == 1 && b->ndim == 1) {
        gnd = 0;
        gsize[gnd++] = 1;
        gsize[gnd++] = 1;
    } else if (a->ndim == 1) {
        gsize[gnd] = gsize[gnd - 1];
        gsize[gnd - 1] = 1;
        gnd++;
    } else if (b->ndim == 1)
        gsize[gnd++] = 1;
    fs_tensor *g = fs_view_raw(dout, gnd, gsize);
    int rc = (pa && pb && g) ? 0 : -1;
    if (rc == 0 && fs_node_wants(n, 0)) {
        fs_tensor *bt = transpose_last(pb), *full = bt ? matmul_nd(g, bt) : NULL;
        fs_tensor *s = full ? fs_sum_to_shape(full, pa->ndim, pa->size) : NULL;
        din[0] = s ? fs_view_raw(s, a->ndim, a->size) : NULL;
        fs_tensor_release(bt);
        fs_tensor_release(full);
        fs_tensor_release(s);
        if (!din[0])
            rc = -1;
    }
    if (rc == 0 && fs_node_wants(n, 1)) {
        fs_tensor *at = transpose_last(pa), *full = at ? matmul_nd(at, g) : NULL;
        fs_tensor *s = full ? fs_sum_to_shape(full, pb->ndim, pb->size) : NULL;
        din[1] = s ? fs_view_raw(s, b->ndim, b->size) : NULL;
        fs_tensor_release(at);
        fs_tensor_release(full);
        fs_tensor_release(s);
        if (!din[1])
            rc = -1;
    }
    fs_tensor_release(pa);
    fs_tensor_release(pb);
    fs_tensor_release(g);
    return rc;
}

fs_tensor *fs_matmul(fs_tensor *a, fs_tensor *b)
{
    fs_tensor *out = matmul_raw(a, b);
    if (!out)
        return NULL;
    fs_node *n = fs_node_maybe_new("matmul", matmul_backward, 2, (fs_tensor *[]){a, b});
    if (n && (!(n->saved[0] = fs_tensor_alias(a)) || !(n->saved[1] = fs_tensor_alias(b)))) {
        fs_node_release(n);
        fs_tensor_release(out);
        return NULL;
    }
    if (n)
        fs_node_attach(n, out);
    else if (fs_any_requires_grad(2, (fs_tensor *[]){a, b})) {
        fs_tensor_release(out);
        return NULL;
    }
    return out;
}
