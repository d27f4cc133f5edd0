/* linear.c - fully connected layer y = x w^T + b, forward/backward pair.
 *
 * x (*, in) is seen as (M, in) with M the product of its leading dims (a 1-D x is one row),
 * w (out, in), b (out) or NULL, y (*, out). One GEMM (fs_gemm) each way:
 *     y = x @ w^T (+ b);   dx = dy @ w;   dw = dy^T @ x;   db = column sums of dy.
 */
#include "nn/nn_internal.h"

/* saved: x, w (contiguous) */
static int linear_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_tensor *x = n->saved[0], *w = n->saved[1];
    const int64_t out = w->size[0], in = w->size[1], M = in ? fs_numel(x) / in : 0;
    fs_tensor *dx = NULL, *dw = NULL, *db = NULL;
    const float *dy = fs_data(dout);
    if (fs_node_wants(n, 0)) {
        if (!(dx = fs_tensor_new(x->ndim, x->size)))
            goto fail;
        if (M && in)
            fs_gemm(false, false, M, in, out, 1.0f, dy, out, fs_data(w), in, 0.0f, fs_data(dx),
                    in);
        if (out == 0)
            fs_tensor_fill_(dx, 0.0f);
    }
    if (fs_node_wants(n, 1)) {
        if (!(dw = fs_tensor_zeros(2, w->size)))
            goto fail;
        if (M && in && out)
            fs_gemm(true, false, out, in, M, 1.0f, dy, out, fs_data(x), in, 0.0f, fs_data(dw),
                    in);
    }
    if (fs_node_wants(n, 2)) {
        if (!(db = fs_tensor_new(1, &out)))
            goto fail;
        float *d = fs_data(db);
        for (int64_t o = 0; o < out; o++) {
            double acc = 0.0;
            for (int64_t m = 0; m < M; m++)
                acc += dy[m * out + o];
            d[o] = (float)acc;
        }
    }
    dinputs[0] = dx;
    dinputs[1] = dw;
    dinputs[2] = db;
    return 0;
fail:
    fs_nn_release_all(3, (fs_tensor *[]){dx, dw, db});
    return -1;
}

fs_tensor *fs_linear(fs_tensor *x, fs_tensor *w, fs_tensor *b)
{
    if (w->ndim != 2)
        return fs_set_error("linear: weight must be (out, in), got %s", FS_SHAPE(w)), NULL;
    const int64_t out = w->size[0], in = w->size[1];
    if (x->ndim < 1 || x->size[x->ndim - 1] != in)
        return fs_set_error("linear: input %s has %lld features but weight %s expects %lld",
                            FS_SHAPE(x), (long long)(x->ndim ? x->size[x->ndim - 1] : 0),
                            FS_SHAPE(w), (long long)in), NULL;
    if (b && (b->ndim != 1 || b->size[0] != out))
        return fs_set_error("linear: bias %s must have shape (%lld) for weight %s", FS_SHAPE(b),
                            (long long)out, FS_SHAPE(w)), NULL;
    const int64_t M = in ? fs_numel(x) / in : 0;
    int64_t ysize[FS_MAX_DIM];
    for (int d = 0; d < x->ndim - 1; d++)
        ysize[d] = x->size[d];
    ysize[x->ndim - 1] = out;
    fs_tensor *xc = fs_nn_contig(x), *wc = fs_nn_contig(w);
    fs_tensor *y = (xc && wc) ? fs_tensor_new(x->ndim, ysize) : NULL;
    if (!y) {
        fs_nn_release_all(2, (fs_tensor *[]){xc, wc});
        return NULL;
    }
    float *yd = fs_data(y);
    if (b) { /* y = b broadcast over rows, then += x w^T */
        for (int64_t m = 0; m < M; m++)
            for (int64_t o = 0; o < out; o++)
                yd[m * out + o] = *(fs_data(b) + o * b->stride[0]);
    }
    if (M && out) {
        if (in)
            fs_gemm(false, true, M, out, in, 1.0f, fs_data(xc), in, fs_data(wc), in,
                    b ? 1.0f : 0.0f, yd, out);
        else if (!b)
            fs_tensor_fill_(y, 0.0f);
    }
    fs_tensor *ins[3] = {x, w, b};
    if (!fs_any_requires_grad(3, ins)) {
        fs_nn_release_all(2, (fs_tensor *[]){xc, wc});
        return y;
    }
    fs_node *n = fs_node_new("linear", linear_backward_node, 3, ins);
    if (!n) {
        fs_nn_release_all(3, (fs_tensor *[]){xc, wc, y});
        return NULL;
    }
    n->saved[0] = xc;
    n->saved[1] = wc;
    fs_node_attach(n, y);
    return y;
}
