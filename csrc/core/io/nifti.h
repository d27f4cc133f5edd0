/* nifti.h - NIfTI-1 single-file volumes, .nii and .nii.gz (nifti.c).
 *
 * Readers return a new contiguous float32 tensor or NULL with fs_error() naming the file and
 * the reason; the writer writes a temporary file in the same directory and renames it,
 * returning 0 or -1.
 *
 * Volume order: files store x fastest; tensors come back as (z, y, x) (or (t, z, y, x),
 * (y, x) for a single slice), the same bytes in C order. Trailing sizes of 1 are dropped.
 */
#ifndef FS_NIFTI_H
#define FS_NIFTI_H

#include "tensor/tensor.h"

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
/* info may be NULL. */
fs_tensor *fs_nifti_read(const char *path, fs_nifti_info *info);
/* The same from a whole .nii or .nii.gz file in memory (name only for messages). */
fs_tensor *fs_nifti_parse(const char *name, const unsigned char *buf, size_t len,
                          fs_nifti_info *info);
/* Writes float32; info (may be NULL) supplies spacing and orientation. ".gz" compresses. */
int fs_nifti_write(const char *path, const fs_tensor *t, const fs_nifti_info *info);

#endif
