/* conv_direct.h - convolutions without im2col (AVX-512 or AVX2 kernels; conv_direct.c).
 * Internal to conv.c: it asks whether a shape can run here, then calls the forward or the
 * data-gradient. Both return 0, or -1 with fs_error() set (out of memory). */
#ifndef FS_CONV_DIRECT_H
#define FS_CONV_DIRECT_H

#include <stdbool.h>

#include "nn/nn.h"

/* True when this build has the kernels (AVX-512 or AVX2 + FMA) and s is an undilated,
 * ungrouped convolution (stride <= 4) whose output images fill the vectors well enough to
 * beat im2col + GEMM. */
bool fs_conv_direct_forward_ok(const fs_conv2d_shape *s);
/* The same question for the data-gradient (a stride-1 convolution of dy by the flipped,
 * transposed weights with padding k-1-p, which also needs p <= k-1). */
bool fs_conv_direct_backward_data_ok(const fs_conv2d_shape *s);

/* The weight gradient of an undilated, ungrouped convolution whose output images have at least
 * 64 pixels (fewer make many short passes; OpenBLAS is faster there). */
bool fs_conv_direct_backward_weight_ok(const fs_conv2d_shape *s);

/* y (n, o, oh, ow) = conv(x (n, c, h, w), w (o, c, kh, kw)) + b, then the epilogue ep;
 * b and ep may be NULL. */
int fs_conv_direct_forward(float *y, const float *x, const float *w, const float *b,
                           const fs_conv_epilogue *ep, const fs_conv2d_shape *s);
/* dx (n, c, h, w), written (not accumulated), from dy (n, o, oh, ow) and w (o, c, kh, kw). */
int fs_conv_direct_backward_data(float *dx, const float *dy, const float *w,
                                 const fs_conv2d_shape *s);

/* dw (o, c, kh, kw) from dy (n, o, oh, ow) and x (n, c, h, w): written, or added to what dw
 * holds when add. */
int fs_conv_direct_backward_weight(float *dw, const float *dy, const float *x,
                                   const fs_conv2d_shape *s, bool add);

#endif
