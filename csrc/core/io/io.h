/* io.h - image and volume files: PNG (png_io.c), NIfTI-1 (nifti_io.c), Interfile 3.3
 * (interfile_io.c). Readers return a new contiguous float32 tensor or NULL with fs_error()
 * naming the file and the reason; writers write a temporary file in the same directory and
 * rename it, returning 0 or -1.
 *
 * Volume order: files store x fastest; tensors come back as (z, y, x) (or (t, z, y, x),
 * (y, x) for a single slice), the same bytes in C order. Trailing sizes of 1 are dropped.
 */
#ifndef FS_IO_H
#define FS_IO_H

#include <stdbool.h>

#include "tensor/tensor.h"

/* ---- PNG ---- */
/* channels 1: (H, W) gray; 3: (3, H, W) RGB. bit_depth_out (may be NULL) gets the file's depth. */
fs_tensor *fs_png_read(const char *path, int channels, bool normalize, int *bit_depth_out);
/* t: (H, W), (1, H, W) or (3, H, W); bits 8 or 16. */
int fs_png_write(const char *path, const fs_tensor *t, int bits, bool normalize);

/* ---- NIfTI-1 (.nii, .nii.gz) ---- */
typedef struct fs_nifti_info {
    int ndim;                 /* number of dims kept (after dropping trailing 1s) */
    int64_t dim[7];           /* file order: x, y, z, t, ... */
    double pixdim[8];         /* pixdim[0] = qfac; pixdim[1..3] in mm (units converted) */
    int datatype;             /* NIfTI code of the stored data */
    double scl_slope, scl_inter; /* as stored; the values returned have them applied */
    int qform_code, sform_code;
    double quatern_b, quatern_c, quatern_d, qoffset_x, qoffset_y, qoffset_z;
    double srow_x[4], srow_y[4], srow_z[4];
    int xyzt_units;
    char descrip[81];
} fs_nifti_info;

void fs_nifti_info_default(fs_nifti_info *info);
fs_tensor *fs_nifti_read(const char *path, fs_nifti_info *info);
/* Writes float32; info (may be NULL) supplies spacing and orientation. ".gz" compresses. */
int fs_nifti_write(const char *path, const fs_tensor *t, const fs_nifti_info *info);

/* ---- Interfile 3.3 ---- */
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

fs_tensor *fs_interfile_read(const char *path, fs_interfile_info *info);
/* Writes path (header) and the float32 little-endian data next to it (extension .img, or
 * .v for a .hv header, .i33 for .h33). spacing_mm: x, y, z (may be NULL: 1 mm). */
int fs_interfile_write(const char *path, const fs_tensor *t, const double *spacing_mm);

#endif
