/* npy.h - NumPy .npy files (format versions 1.0, 2.0, 3.0).
 *
 * Read: float16/32/64, int8/16/32/64, uint8/16/32/64, bool, either byte order, C or Fortran
 * order (Fortran arrays are transposed into C order), all converted to float32.
 * Write: '<f4' in C order, format 1.0 (2.0 when the header needs it), via a temporary file
 * renamed over the target. Errors name the file and the reason. */
#ifndef FS_NPY_H
#define FS_NPY_H

#include "tensor/tensor.h"

fs_tensor *fs_npy_read(const char *path);
/* Parses an in-memory file (path only for messages). */
fs_tensor *fs_npy_parse(const char *path, const unsigned char *buf, size_t len);
int fs_npy_write(const char *path, const fs_tensor *t);

#endif
