/* safetensors.h - read and write the safetensors format (Hugging Face's weight files):
 *
 *   u64 little-endian N | N bytes of JSON header | data
 *   header: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *            "__metadata__": {"key": "value", ...}}   (offsets relative to the data start)
 *
 * Read: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, all converted to float32 tensors.
 * Write: F32, tensors in name order, header padded with spaces to a multiple of 8 bytes,
 * via a temporary file renamed over the target. Every validation failure (truncated file,
 * header larger than the file, offsets outside the data or not matching the shape, bad JSON)
 * returns -1 with a message that names the file. */
#ifndef FS_SAFETENSORS_H
#define FS_SAFETENSORS_H

#include "io/dict.h"

int fs_safetensors_read(const char *path, fs_tensor_dict *out);
int fs_safetensors_write(const char *path, const fs_tensor_dict *d);
/* Parses an in-memory file (path only for messages). */
int fs_safetensors_parse(const char *path, const unsigned char *buf, size_t len,
                         fs_tensor_dict *out);

#endif
