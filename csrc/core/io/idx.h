/* idx.h - IDX files (LeCun's MNIST format, also Fashion-MNIST's), plain or gzip-compressed.
 *
 *   u8 0 | u8 0 | u8 type | u8 ndim | ndim x u32 big-endian sizes | data, big-endian
 *   type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
 *
 * Read into a float32 tensor of the stored shape, values as stored (0..255 for images). The
 * header is checked against the data: the file must hold exactly the elements its sizes
 * promise (a truncated or padded file is an error naming the file and both byte counts). */
#ifndef FS_IDX_H
#define FS_IDX_H

#include <stddef.h>

#include "tensor/tensor.h"

fs_tensor *fs_idx_read(const char *path);
/* Parses an in-memory file, gzip-compressed or not (name only for messages). */
fs_tensor *fs_idx_parse(const char *name, const unsigned char *buf, size_t len);

#endif
