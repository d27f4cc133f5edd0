/* prnet.h - PRNet-2D (Lei et al., RPR-Loc / PRNet, adapted from 3D to 2D): a U-Net-style
 * encoder-decoder whose bottleneck also feeds a fully connected head giving a latent
 * coordinate vector; the decoder reconstructs the input patch through a sigmoid.
 *
 *   x (N, C, P, P) -> latent (N, latent), reconstruction (N, C, P, P)
 *
 * Layout and parameter names (b = base, D = depth, k = convs_per_level):
 *   enc.l (l = 0..D-1): k x [conv 3x3 pad 1 -> norm -> ReLU] at b * 2^l channels
 *                       ("conv", "norm", then "conv2", "norm2", ...), each followed by
 *                       max-pool 2x2 ("pool", shared, no parameters)
 *   bottleneck:         k x [conv 3x3 -> norm -> ReLU] at b * 2^D channels, P / 2^D pixels
 *   fc1, fc2, fc3:      flatten -> Linear 8b -> ReLU -> Linear 4b -> ReLU -> Linear latent
 *   dec.i (i = 0..D-1, deepest first, level l = D-1-i): "up" (bilinear x2, or ConvTranspose2d
 *                       2x2 stride 2 halving the channels), concatenated with enc.l's output
 *                       on channels, then k x [conv 3x3 -> norm -> ReLU] at b * 2^l channels
 *   head:               conv 1x1 b -> C, then sigmoid
 * norm: InstanceNorm2d (PyTorch's default: no parameters) or BatchNorm2d. Init: PyTorch's
 * defaults for every layer (kaiming_uniform a=sqrt(5)), drawn from the generator.
 */
#ifndef FS_PRNET_H
#define FS_PRNET_H

#include "module/module.h"

typedef enum { FS_PRNET_INSTANCE, FS_PRNET_BATCH } fs_prnet_norm;
typedef enum { FS_PRNET_BILINEAR, FS_PRNET_TRANSPOSE } fs_prnet_up;

typedef struct fs_prnet_settings { /* "PRNet" */
    int64_t in_channels, base, depth, latent, patch, convs_per_level;
    fs_prnet_norm norm;
    fs_prnet_up up;
} fs_prnet_settings;

/* in_channels 1, base 16, depth 4, latent 2, patch 32, instance norm, bilinear, 1 conv */
#define FS_PRNET_SETTINGS_DEFAULT \
    ((fs_prnet_settings){1, 16, 4, 2, 32, 1, FS_PRNET_INSTANCE, FS_PRNET_BILINEAR})

/* Name <-> value of the norm and up options ("instance", "batch"; "bilinear", "transpose");
 * the parsers return -1 with the error set (naming op and the choices) for another name. */
const char *fs_prnet_norm_name(fs_prnet_norm n);
const char *fs_prnet_up_name(fs_prnet_up u);
int fs_prnet_norm_parse(const char *op, const char *name, fs_prnet_norm *out);
int fs_prnet_up_parse(const char *op, const char *name, fs_prnet_up *out);

/* Builds the network; NULL with the error set for settings out of range (depth, base,
 * latent, in_channels, convs_per_level >= 1; patch divisible by 2^depth; each bounded). */
fs_module *fs_prnet(const fs_prnet_settings *s, fs_generator *g);
/* m's settings when m is a PRNet, else NULL. */
const fs_prnet_settings *fs_prnet_settings_of(const fs_module *m);
/* Both outputs (new references); -1 with the error set, and both NULL, on error. */
int fs_prnet_forward(fs_module *m, fs_tensor *x, fs_tensor **latent, fs_tensor **recon);
/* The latent alone: the encoder and the head, no decoder work. The module's generic forward
 * (fs_module_forward, and a PRNet inside a sequential) is this. */
fs_tensor *fs_prnet_encode(fs_module *m, fs_tensor *x);

#endif
