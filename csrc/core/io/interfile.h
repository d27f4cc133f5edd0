/* interfile.h - Interfile 3.3 headers and their raw data files (interfile.c), as SIMIND,
 * STIR and GATE write them.
 *
 * The reader returns a new contiguous float32 tensor (z, y, x), or (y, x) for one image, or
 * NULL with fs_error() naming the file and the reason. The writer writes temporary files in
 * the same directory and renames them, returning 0 or -1.
 */
#ifndef FS_INTERFILE_H
#define FS_INTERFILE_H

#include "tensor/tensor.h"

typedef struct fs_interfile_info {
    int ndim;
    int64_t dim[3];           /* matrix size [1] (x), [2] (y), images (z) */
    double spacing_mm[3];     /* scaling factor (mm/pixel) [1], [2], [3] or slice thickness */
    char number_format[32];   /* lower case, as in the header */
    int bytes_per_pixel;
    int big_endian;
    int64_t data_offset;
    double rescale_slope, rescale_offset; /* applied to the values returned */
    char data_file[1024];     /* resolved path of the data file */
} fs_interfile_info;

/* info may be NULL. */
fs_tensor *fs_interfile_read(const char *path, fs_interfile_info *info);
/* In memory (name, the header's path, only for messages and to resolve the data file):
 * parse_header fills info from the header text; parse also decodes the data file's bytes. */
int fs_interfile_parse_header(const char *name, const char *text, size_t len,
                              fs_interfile_info *info);
fs_tensor *fs_interfile_parse(const char *name, const char *text, size_t len,
                              const unsigned char *data, size_t data_len,
                              fs_interfile_info *info);
/* Writes path (header) and the float32 little-endian data next to it (extension .img, or
 * .v for a .hv header, .i33 for .h33). spacing_mm: x, y, z (may be NULL: 1 mm). */
int fs_interfile_write(const char *path, const fs_tensor *t, const double *spacing_mm);

#endif
