/* dicom.c - the C side of the DICOM reader (io/dicom.h): reads the file, calls GDCM through
 * fs_dicom_decode (dicom_gdcm.cpp), and hands back a tensor or an fs_error() that names the
 * file. The tensor is allocated here, so the C++ file never sees fewshot's types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "io/dicom.h"
#include "tensor/tensor.h"

typedef struct {
    fs_tensor *t;
} alloc_ctx;

/* (frames, rows, cols) for gray, (frames, 3, rows, cols) for RGB */
static float *alloc_tensor(void *ctx, int64_t frames, int64_t channels, int64_t rows, int64_t cols)
{
    alloc_ctx *c = ctx;
    int64_t gray[3] = {frames, rows, cols}, rgb[4] = {frames, channels, rows, cols};
    c->t = channels == 1 ? fs_tensor_new(3, gray) : fs_tensor_new(4, rgb);
    return c->t ? fs_data(c->t) : NULL;
}

static fs_tensor *parse(const char *name, const unsigned char *buf, size_t len,
                        const int64_t *frames, int nframes, fs_dicom_info *info, int pixels)
{
    fs_dicom_info local;
    if (!info)
        info = &local;
    char err[512];
    alloc_ctx ctx = {NULL};
    int rc = fs_dicom_decode(buf, len, frames, nframes, info, pixels ? alloc_tensor : NULL, &ctx,
                             err, sizeof err);
    if (rc != 0) {
        fs_tensor_release(ctx.t);
        fs_set_error("load_dicom: %s: %s", name, err);
        return NULL;
    }
    return ctx.t;
}

fs_tensor *fs_dicom_parse(const char *name, const unsigned char *buf, size_t len,
                          const int64_t *frames, int nframes, fs_dicom_info *info)
{
    return parse(name, buf, len, frames, nframes, info, 1);
}

fs_tensor *fs_dicom_read(const char *path, const int64_t *frames, int nframes,
                         fs_dicom_info *info)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    if (fs_file_read_all("load_dicom", path, &buf, &len))
        return NULL;
    fs_tensor *t = parse(path, buf, len, frames, nframes, info, 1);
    free(buf);
    return t;
}

int fs_dicom_read_info(const char *path, fs_dicom_info *info)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    if (fs_file_read_all("dicom_info", path, &buf, &len))
        return -1;
    char err[512];
    int rc = fs_dicom_decode(buf, len, NULL, 0, info, NULL, NULL, err, sizeof err);
    free(buf);
    if (rc != 0)
        return fs_set_error("dicom_info: %s: %s", path, err);
    return 0;
}
