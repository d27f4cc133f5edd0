/* distance.c - squared Euclidean distance matrix (the Prototypical Network's logits),
 * forward/backward pair.
 *
 * a (n, d), b (m, d) -> D (n, m), D[i, j] = sum_k (a[i, k] - b[j, k])^2.
 * gradients (G = dD):  da[i] = 2 sum_j G[i, j] (a[i] - b[j]),  db[j] = -2 sum_i G[i, j] (a[i] - b[j]).
 *
 * Small problems (n*m*d up to DIRECT_MAX, every few-shot episode) use the differences
 * directly, accumulated in double: exact even when a query sits on a prototype. Larger ones
 * use GEMM: D = |a|^2 + |b|^2 - 2 a b^T clamped at 0, da = 2 (rowsum(G) a - G b),
 * db = 2 (colsum(G) b - G^T a) (relative error ~1e-7 |a|^2 / D near coincident points).
 */
#include "nn/nn_internal.h"

#define DIRECT_MAX ((int64_t)1 << 24)

/* d (n, m) from a (n, k), b (m, k) */
static int cdist2_forward(float *dst, const float *a, const float *b, int64_t n, int64_t m,
                           int64_t k)
{
    if (n * m * k <= DIRECT_MAX) {
#pragma omp parallel for schedule(static) if (n * m * k > FS_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < m; j++) {
                const float *ap = a + i * k, *bp = b + j * k;
                double acc = 0.0;
                for (int64_t t = 0; t < k; t++) {
                    double df = (double)ap[t] - bp[t];
                    acc += df * df;
                }
                dst[i * m + j] = (float)acc;
            }
        return 0;
    }
    double *nb = fs_alloc((size_t)m * sizeof(double));
    if (!nb)
        return -1;
    for (int64_t j = 0; j < m; j++) {
        double acc = 0.0;
        for (int64_t t = 0; t < k; t++)
            acc += (double)b[j * k + t] * b[j * k + t];
        nb[j] = acc;
    }
    fs_gemm(false, true, n, m, k, -2.0f, a, k, b, k, 0.0f, dst, m);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double na = 0.0;
        for (int64_t t = 0; t < k; t++)
            na += (double)a[i * k + t] * a[i * k + t];
        for (int64_t j = 0; j < m; j++) {
            double v = na + nb[j] + dst[i * m + j];
            dst[i * m + j] = v > 0.0 ? (float)v : 0.0f;
        }
    }
    fs_free(nb);
    return 0;
}

/* saved: a, b (contiguous) */
static int cdist2_backward_node(fs_node *nd, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_tensor *at = nd->saved[0], *bt = nd->saved[1];
    const int64_t n = at->size[0], m = bt->size[0], k = at->size[1];
    const float *a = fs_data(at), *b = fs_data(bt), *g = fs_data(dout);
    fs_tensor *da = NULL, *db = NULL;
    if (fs_node_wants(nd, 0) && !(da = fs_tensor_zeros(2, at->size)))
        goto fail;
    if (fs_node_wants(nd, 1) && !(db = fs_tensor_zeros(2, bt->size)))
        goto fail;
    float *pa = da ? fs_data(da) : NULL, *pb = db ? fs_data(db) : NULL;
    if (n * m * k <= DIRECT_MAX) {
        if (pa) {
#pragma omp parallel for schedule(static) if (n * m * k > FS_PARALLEL_MIN)
            for (int64_t i = 0; i < n; i++)
                for (int64_t t = 0; t < k; t++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < m; j++)
                        acc += (double)g[i * m + j] * ((double)a[i * k + t] - b[j * k + t]);
                    pa[i * k + t] = (float)(2.0 * acc);
                }
        }
        if (pb) {
#pragma omp parallel for schedule(static) if (n * m * k > FS_PARALLEL_MIN)
            for (int64_t j = 0; j < m; j++)
                for (int64_t t = 0; t < k; t++) {
                    double acc = 0.0;
                    for (int64_t i = 0; i < n; i++)
                        acc += (double)g[i * m + j] * ((double)a[i * k + t] - b[j * k + t]);
                    pb[j * k + t] = (float)(-2.0 * acc);
                }
        }
    } else {
        if (pa) { /* da = 2 rowsum(G) a - 2 G b */
            fs_gemm(false, false, n, k, m, -2.0f, g, m, b, k, 0.0f, pa, k);
            for (int64_t i = 0; i < n; i++) {
                double rs = 0.0;
                for (int64_t j = 0; j < m; j++)
                    rs += g[i * m + j];
                for (int64_t t = 0; t < k; t++)
                    pa[i * k + t] += (float)(2.0 * rs) * a[i * k + t];
            }
        }
        if (pb) { /* db = 2 colsum(G) b - 2 G^T a */
            fs_gemm(true, false, m, k, n, -2.0f, g, m, a, k, 0.0f, pb, k);
            for (int64_t j = 0; j < m; j++) {
                double cs = 0.0;
                for (int64_t i = 0; i < n; i++)
                    cs += g[i * m + j];
                for (int64_t t = 0; t < k; t++)
                    pb[j * k + t] += (float)(2.0 * cs) * b[j * k + t];
            }
        }
    }
    dinputs[0] = da;
    dinputs[1] = db;
    return 0;
fail:
    fs_nn_release_all(2, (fs_tensor *[]){da, db});
    return -1;
}

fs_tensor *fs_cdist2(fs_tensor *a, fs_tensor *b)
{
    if (a->ndim != 2 || b->ndim != 2 || a->size[1] != b->size[1])
        return fs_set_error("cdist2: expected a (n, d) and b (m, d) with the same d, got %s and "
                            "%s", FS_SHAPE(a), FS_SHAPE(b)), NULL;
    const int64_t n = a->size[0], m = b->size[0], k = a->size[1];
    int64_t osize[2] = {n, m};
    fs_tensor *ac = fs_nn_contig(a), *bc = fs_nn_contig(b);
    fs_tensor *y = (ac && bc) ? fs_tensor_new(2, osize) : NULL;
    if (!y) {
        fs_nn_release_all(2, (fs_tensor *[]){ac, bc});
        return NULL;
    }
    if (n && m) {
        if (k) {
            if (cdist2_forward(fs_data(y), fs_data(ac), fs_data(bc), n, m, k) < 0) {
                fs_nn_release_all(3, (fs_tensor *[]){ac, bc, y});
                return NULL;
            }
        } else
            fs_tensor_fill_(y, 0.0f);
    }
    fs_tensor *ins[2] = {a, b};
    if (!fs_any_requires_grad(2, ins)) {
        fs_nn_release_all(2, (fs_tensor *[]){ac, bc});
        return y;
    }
    fs_node *nd = fs_node_new("cdist2", cdist2_backward_node, 2, ins);
    if (!nd) {
        fs_nn_release_all(3, (fs_tensor *[]){ac, bc, y});
        return NULL;
    }
    nd->saved[0] = ac;
    nd->saved[1] = bc;
    fs_node_attach(nd, y);
    return y;
}
