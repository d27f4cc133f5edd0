/* png.h - PNG images through libpng (png.c).
 *
 * Read: any PNG (1-16 bit gray, gray+alpha, RGB, RGBA, palette, interlaced) becomes float32
 * (H, W) gray or (3, H, W) RGB. Returns a new contiguous tensor, or NULL with fs_error()
 * naming the file and the reason. Write: a temporary file in the same directory, renamed
 * over the target; 0 or -1.
 */
#ifndef FS_PNG_H
#define FS_PNG_H

#include <stdbool.h>

#include "tensor/tensor.h"

/* channels 1: (H, W) gray; 3: (3, H, W) RGB. bit_depth_out (may be NULL) gets the file's depth. */
fs_tensor *fs_png_read(const char *path, int channels, bool normalize, int *bit_depth_out);
/* The same from a whole file in memory (name only for messages). */
fs_tensor *fs_png_parse(const char *name, const unsigned char *data, size_t len, int channels,
                        bool normalize, int *bit_depth_out);
/* t: (H, W), (1, H, W) or (3, H, W); bits 8 or 16. */
int fs_png_write(const char *path, const fs_tensor *t, int bits, bool normalize);

#endif
