/* conv_small.h - the forward of convolutions with tiny output images (conv_small.c).
 * Internal to conv.c: it asks whether a shape runs here, then calls the forward, which returns
 * 0, or -1 with fs_error() set (out of memory). */
#ifndef FS_CONV_SMALL_H
#define FS_CONV_SMALL_H

#include <stdbool.h>

#include "nn/nn.h"

/* True when this build has the kernels (AVX-512 or AVX2 + FMA) and s is an undilated,
 * ungrouped convolution whose output images have fewer pixels than a vector has lanes
 * (ResNet-18's layer3 and layer4 at 32x32 inputs: 2x2 and 1x1) over a batch that fills at
 * least half a vector. */
bool fs_conv_small_forward_ok(const fs_conv2d_shape *s);

/* y (n, o, oh, ow) = conv(x (n, c, h, w), w (o, c, kh, kw)) + b, then the epilogue ep;
 * b and ep may be NULL. */
int fs_conv_small_forward(float *y, const float *x, const float *w, const float *b,
                          const fs_conv_epilogue *ep, const fs_conv2d_shape *s);

#endif
