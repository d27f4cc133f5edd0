/* nn.h - neural-network layers as differentiable ops (conv, pooling, normalisation,
 * softmax family, losses, linear, interpolation, distances).
 *
 * Every op here accepts non-contiguous inputs, returns a new contiguous tensor (a new
 * reference) or NULL with fs_error() naming the op and the shapes, and records a tape node
 * when an input requires grad and grad mode is on (autograd.h). Semantics follow PyTorch's
 * torch.nn.functional. Dims and labels are 0-based in C; the Lua binding converts.
 *
 * Shape notation: x (N, C, H, W) images, w (O, C/groups, kh, kw) conv weights,
 * b (O) biases. Optional tensors (bias, BN weight/bias/running stats) may be NULL.
 *
 * The raw kernels at the end (fs_conv2d_forward/backward) work on
 * contiguous float arrays without the tape, for models that want to call them directly
 * (e.g. an inference path); the differentiable ops above are built on them.
 */
#ifndef FS_NN_H
#define FS_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

/* ---- convolution (conv.c) ---- */
typedef struct fs_conv2d_args {
    int64_t stride[2];         /* (h, w), >= 1 */
    int64_t padding[2];        /* (h, w), zero padding on both sides, >= 0 */
    int64_t dilation[2];       /* (h, w), >= 1 */
    int64_t output_padding[2]; /* conv_transpose2d only: extra rows/cols at the bottom/right */
    int64_t groups;            /* >= 1; C and O divisible by it */
} fs_conv2d_args;

/* stride 1, padding 0, dilation 1, output_padding 0, groups 1 */
#define FS_CONV2D_ARGS_DEFAULT ((fs_conv2d_args){{1, 1}, {0, 0}, {1, 1}, {0, 0}, 1})

/* x (N, C, H, W) or (C, H, W), w (O, C/groups, kh, kw), b (O) or NULL
 * -> (N, O, OH, OW), OH = (H + 2*ph - dh*(kh-1) - 1) / sh + 1. */
fs_tensor *fs_conv2d(fs_tensor *x, fs_tensor *w, fs_tensor *b, const fs_conv2d_args *a);

/* x (N, C, H, W), w (C, O/groups, kh, kw) (PyTorch's layout), b (O) or NULL
 * -> (N, O, OH, OW), OH = (H-1)*sh - 2*ph + dh*(kh-1) + oph + 1. */
fs_tensor *fs_conv_transpose2d(fs_tensor *x, fs_tensor *w, fs_tensor *b,
                               const fs_conv2d_args *a);

/* ---- linear (linear.c): x (*, in), w (out, in), b (out) or NULL -> (*, out) ---- */
fs_tensor *fs_linear(fs_tensor *x, fs_tensor *w, fs_tensor *b);

/* ---- batch normalisation (norm.c) ----
 * x (N, C, *) ; running_mean, running_var, weight, bias: (C) or NULL.
 * training: normalise with the batch statistics (biased variance) and, when the running
 * stats are given, update them in place: r = (1 - momentum) * r + momentum * batch_stat,
 * with the UNBIASED batch variance for running_var (as PyTorch). Statistics are computed in
 * double with two passes, so large means do not lose precision.
 * eval (training false): normalise with running_mean/running_var (both required). */
fs_tensor *fs_batch_norm(fs_tensor *x, fs_tensor *running_mean, fs_tensor *running_var,
                         fs_tensor *weight, fs_tensor *bias, bool training, double momentum,
                         double eps);

/* ---- instance normalisation (instance_norm.c) ----
 * x (N, C, *) with at least one trailing dim; weight, bias: (C) or NULL. Each (n, c) plane is
 * normalised by its own mean and biased variance (PyTorch's F.instance_norm with the input's
 * statistics; nn.InstanceNorm2d's default: no weight, no bias, eps 1e-5). */
fs_tensor *fs_instance_norm(fs_tensor *x, fs_tensor *weight, fs_tensor *bias, double eps);
/* relu(fs_instance_norm(x, ...)) as one op (the same values; one pass and one tensor less). */
fs_tensor *fs_instance_norm_relu(fs_tensor *x, fs_tensor *weight, fs_tensor *bias, double eps);

/* ---- activations (activation.c); dim may be negative ---- */
fs_tensor *fs_relu(fs_tensor *x);                 /* max(x, 0); backward from the saved output */
fs_tensor *fs_softmax(fs_tensor *x, int dim);
fs_tensor *fs_log_softmax(fs_tensor *x, int dim);

/* ---- pooling (pool.c) ---- */
typedef struct fs_pool2d_args {
    int64_t kernel[2];
    int64_t stride[2];         /* 0 means = kernel */
    int64_t padding[2];        /* <= kernel / 2 (as PyTorch) */
    bool ceil_mode;            /* default false */
    bool count_include_pad;    /* avg_pool2d only; PyTorch's default is true */
} fs_pool2d_args;

/* x (N, C, H, W) or (C, H, W). max_pool2d pads with -inf; backward routes to the argmax. */
fs_tensor *fs_max_pool2d(fs_tensor *x, const fs_pool2d_args *a);
fs_tensor *fs_avg_pool2d(fs_tensor *x, const fs_pool2d_args *a);
/* x (N, C, H, W) or (C, H, W) -> (N, C, oh, ow), PyTorch's start/end bins. */
fs_tensor *fs_adaptive_avg_pool2d(fs_tensor *x, int64_t oh, int64_t ow);

/* ---- interpolation (interpolate.c) ---- */
typedef enum { FS_INTERP_NEAREST, FS_INTERP_BILINEAR } fs_interp_mode;
/* x (N, C, H, W) -> (N, C, floor(H*scale_h), floor(W*scale_w)); bilinear uses
 * align_corners=false; source coordinates use 1/scale as PyTorch does with scale_factor. */
fs_tensor *fs_interpolate(fs_tensor *x, double scale_h, double scale_w, fs_interp_mode mode);
/* To an output size (oh, ow), source step H/oh (PyTorch's size=). */
fs_tensor *fs_interpolate_size(fs_tensor *x, int64_t oh, int64_t ow, fs_interp_mode mode);

/* ---- affine resampling (warp.c) ---- */
/* x (..., H, W) -> y (..., H, W): y samples x at theta . (xn, yn, 1) in normalised coordinates,
 * as PyTorch's affine_grid + grid_sample (align_corners=false, zero padding); theta is the
 * 2x3 matrix, row-major. The gradient flows to x. */
fs_tensor *fs_affine_sample(fs_tensor *x, const double theta[6], fs_interp_mode mode);

/* ---- losses (loss.c) ---- */
typedef enum { FS_REDUCTION_MEAN, FS_REDUCTION_SUM, FS_REDUCTION_NONE } fs_reduction;
/* logits (N, C) or (N, C, d1, ...), labels: N*d1*... 0-based class indices (int64)
 * -> scalar (mean/sum) or (N, d1, ...) (none). */
fs_tensor *fs_cross_entropy(fs_tensor *logits, const int64_t *labels, int64_t nlabels,
                            fs_reduction red);
/* Same with log-probabilities as input (no softmax). */
fs_tensor *fs_nll_loss(fs_tensor *logp, const int64_t *labels, int64_t nlabels,
                       fs_reduction red);
/* input and target of the same shape (gradients flow to both). */
fs_tensor *fs_mse_loss(fs_tensor *input, fs_tensor *target, fs_reduction red);
fs_tensor *fs_l1_loss(fs_tensor *input, fs_tensor *target, fs_reduction red);
fs_tensor *fs_smooth_l1_loss(fs_tensor *input, fs_tensor *target, fs_reduction red,
                             double beta /* PyTorch's default 1.0 */);

/* ---- distances (distance.c): a (n, d), b (m, d) -> (n, m), squared Euclidean ---- */
fs_tensor *fs_cdist2(fs_tensor *a, fs_tensor *b);

/* ---- raw kernels (contiguous arrays, no tape) ---- */
typedef struct fs_conv2d_shape {
    int64_t n, c, h, w;        /* input */
    int64_t o, kh, kw;         /* weight (o, c/groups, kh, kw) */
    int64_t oh, ow;            /* output */
    fs_conv2d_args a;
} fs_conv2d_shape;

/* Fills s from the sizes and args, checking them; -1 with an error naming op otherwise. */
int fs_conv2d_shape_init(fs_conv2d_shape *s, const char *op, const fs_tensor *x,
                         const fs_tensor *w, const fs_tensor *b, const fs_conv2d_args *a);
/* y (n, o, oh, ow) = conv(x (n, c, h, w), w) + b ; b may be NULL. */
int fs_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                      const fs_conv2d_shape *s);
/* Per output channel o, applied to the conv's output after the bias:
 * y = (y - mean[o]) * scale[o] + shift[o], then max(y, 0) when relu. With BatchNorm's
 * eval-mode mean, scale = weight / sqrt(var + eps) and shift = bias this is conv -> BN (-> ReLU)
 * in one pass over each block of y while it is in cache, rounding as BN's own kernel does. */
typedef struct fs_conv_epilogue {
    const float *mean, *scale, *shift; /* (o) each */
    bool relu;
} fs_conv_epilogue;
/* fs_conv2d_forward, then the epilogue (ep may be NULL: none). */
int fs_conv2d_forward_ep(float *y, const float *x, const float *w, const float *b,
                         const fs_conv_epilogue *ep, const fs_conv2d_shape *s);
/* Eval-mode conv2d -> batch_norm (-> relu) fused, with no tape: for callers that want no
 * gradient (grad mode off or no input requiring one). b, bn_weight, bn_bias may be NULL;
 * running_mean and running_var are (O). Same values as the three ops in turn. */
fs_tensor *fs_conv2d_bn_eval(fs_tensor *x, fs_tensor *w, fs_tensor *b, const fs_conv2d_args *a,
                             fs_tensor *running_mean, fs_tensor *running_var,
                             fs_tensor *bn_weight, fs_tensor *bn_bias, double eps, bool relu);
/* Given dy (n, o, oh, ow): dx (n, c, h, w), dw (o, c/g, kh, kw), db (o), each written when
 * non-NULL; dw is added to what it holds instead when dw_add (a parameter's .grad). */
int fs_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                       const float *w, const fs_conv2d_shape *s, bool dw_add);

/* Releases the cached im2col workspace (it is kept between calls to avoid page faults). */
void fs_conv_workspace_release(void);

#endif
