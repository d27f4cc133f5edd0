/* warp.c - an affine resampling of 2-D planes (rotations, shifts, zooms of whole images for
 * augmentation), PyTorch's affine_grid + grid_sample with align_corners=false and zero padding,
 * forward/backward pair (the gradient flows to the image, not to theta).
 *
 * x (..., H, W) -> y (..., H, W). Output pixel (i, j) has normalised coordinates
 *     xn = (2j + 1) / W - 1,  yn = (2i + 1) / H - 1
 * and samples the input at (gx, gy) = theta . (xn, yn, 1), i.e. at pixel
 *     col = ((gx + 1) W - 1) / 2,  row = ((gy + 1) H - 1) / 2.
 * Bilinear: the four neighbours, a neighbour outside the image counting as 0. Nearest: the
 * neighbour at rint(col), rint(row) (ties to even, as PyTorch's nearbyint), 0 outside.
 */
#include <math.h>

#include "nn/nn_internal.h"

typedef struct {
    int64_t planes, h, w;
    float theta[6];
    int mode;
} warp_shape;

/* The up-to-four source taps of output pixel (i, j): flat indices (-1 outside) and weights. */
static inline void taps(const warp_shape *s, int64_t i, int64_t j, int64_t idx[4], float wt[4])
{
    const float *t = s->theta;
    float xn = (2.0f * (float)j + 1.0f) / (float)s->w - 1.0f;
    float yn = (2.0f * (float)i + 1.0f) / (float)s->h - 1.0f;
    float gx = t[0] * xn + t[1] * yn + t[2];
    float gy = t[3] * xn + t[4] * yn + t[5];
    float col = ((gx + 1.0f) * (float)s->w - 1.0f) * 0.5f;
    float row = ((gy + 1.0f) * (float)s->h - 1.0f) * 0.5f;
    for (int k = 0; k < 4; k++) {
        idx[k] = -1;
        wt[k] = 0.0f;
    }
    if (!isfinite(col) || !isfinite(row))
        return;
    if (s->mode == FS_INTERP_NEAREST) {
        float c = nearbyintf(col), r = nearbyintf(row);
        if (c >= 0 && c < (float)s->w && r >= 0 && r < (float)s->h) {
            idx[0] = (int64_t)r * s->w + (int64_t)c;
            wt[0] = 1.0f;
        }
        return;
    }
    float c0f = floorf(col), r0f = floorf(row);
    float lc = col - c0f, lr = row - r0f;
    int64_t c0 = (int64_t)c0f, r0 = (int64_t)r0f;
    if (c0f < -2.0f || r0f < -2.0f || c0f > (float)s->w || r0f > (float)s->h)
        return; /* far outside: all four taps are zero (and the casts stay in range) */
    const int64_t rr[4] = {r0, r0, r0 + 1, r0 + 1}, cc[4] = {c0, c0 + 1, c0, c0 + 1};
    const float ww[4] = {(1 - lr) * (1 - lc), (1 - lr) * lc, lr * (1 - lc), lr * lc};
    for (int k = 0; k < 4; k++)
        if (rr[k] >= 0 && rr[k] < s->h && cc[k] >= 0 && cc[k] < s->w) {
            idx[k] = rr[k] * s->w + cc[k];
            wt[k] = ww[k];
        }
}

static int warp_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const warp_shape *s = n->ctx;
    fs_tensor *dx = fs_tensor_zeros(n->inputs[0]->ndim, n->inputs[0]->size);
    if (!dx)
        return -1;
    const int64_t HW = s->h * s->w;
    const float *dy = fs_data(dout);
    float *d = fs_data(dx);
#pragma omp parallel for schedule(static) if (s->planes * HW > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < s->planes; p++) {
        float *dp = d + p * HW;
        const float *g = dy + p * HW;
        for (int64_t i = 0; i < s->h; i++)
            for (int64_t j = 0; j < s->w; j++) {
                int64_t idx[4];
                float wt[4];
                taps(s, i, j, idx, wt);
                for (int k = 0; k < 4; k++)
                    if (idx[k] >= 0)
                        dp[idx[k]] += wt[k] * g[i * s->w + j];
            }
    }
    dinputs[0] = dx;
    return 0;
}

/* x (..., H, W), theta[6] the 2x3 matrix row-major in normalised coordinates -> y like x. */
fs_tensor *fs_affine_sample(fs_tensor *x, const double theta[6], fs_interp_mode mode)
{
    const char *op = "affine";
    if (x->ndim < 2) {
        fs_set_error("%s: need an image (..., H, W), got %s", op, FS_SHAPE(x));
        return NULL;
    }
    warp_shape s;
    s.h = x->size[x->ndim - 2];
    s.w = x->size[x->ndim - 1];
    s.planes = 1;
    for (int d = 0; d < x->ndim - 2; d++)
        s.planes *= x->size[d];
    for (int k = 0; k < 6; k++) {
        if (!isfinite(theta[k])) {
            fs_set_error("%s: theta[%d] is not finite", op, k + 1);
            return NULL;
        }
        s.theta[k] = (float)theta[k];
    }
    s.mode = mode;
    fs_tensor *xc = fs_nn_contig(x), *y = xc ? fs_tensor_new(x->ndim, x->size) : NULL;
    if (!y) {
        fs_tensor_release(xc);
        return NULL;
    }
    const int64_t HW = s.h * s.w;
    const float *xd = fs_data(xc);
    float *yd = fs_data(y);
#pragma omp parallel for schedule(static) if (s.planes * HW > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < s.planes; p++) {
        const float *xp = xd + p * HW;
        float *yp = yd + p * HW;
        for (int64_t i = 0; i < s.h; i++)
            for (int64_t j = 0; j < s.w; j++) {
                int64_t idx[4];
                float wt[4];
                taps(&s, i, j, idx, wt);
                float v = 0.0f;
                for (int k = 0; k < 4; k++)
                    if (idx[k] >= 0)
                        v += wt[k] * xp[idx[k]];
                yp[i * s.w + j] = v;
            }
    }
    fs_tensor_release(xc);
    if (!fs_any_requires_grad(1, &x))
        return y;
    fs_node *n = fs_node_new_ctx(op, warp_backward_node, 1, &x, &s, sizeof s);
    if (!n) {
        fs_tensor_release(y);
        return NULL;
    }
    fs_node_attach(n, y);
    return y;
}
