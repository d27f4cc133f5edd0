/* nifti.c - NIfTI-1 single-file volumes (.nii, .nii.gz) read and written with zlib.
 *
 * Read: the 348-byte header is checked (sizeof_hdr 348 in either byte order, magic "n+1",
 * 1 <= dim[0] <= 7, positive sizes, a supported datatype with a matching bitpix, vox_offset
 * inside the file, enough voxel bytes present) before any voxel is touched. Data types:
 * uint8, int8, int16, uint16, int32, uint32, float32, float64, converted to float32 with
 * scl_slope/scl_inter applied when slope is nonzero. The tensor is (..., z, y, x): NIfTI's
 * x-fastest order read as C order, trailing sizes of 1 dropped. Spatial units are converted
 * to mm. gzread reads plain and gzip files alike.
 * Write: float32, vox_offset 352, no extensions, scl_slope 1; spacing and qform/sform from
 * the info when given (qform_code 0 and sform_code 0 otherwise).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "io/nifti.h"

#define HDR 348
#define MAX_BYTES ((int64_t)1 << 31)

static uint16_t rd16(const unsigned char *p, int swap)
{
    return swap ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}
static uint32_t rd32(const unsigned char *p, int swap)
{
    return swap ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static uint64_t rd64(const unsigned char *p, int swap)
{
    uint64_t lo = rd32(p, swap), hi = rd32(p + 4, swap);
    return swap ? (lo << 32 | hi) : (hi << 32 | lo);
}
static int16_t s16(const unsigned char *h, int off, int swap) { return (int16_t)rd16(h + off, swap); }
static float f32(const unsigned char *h, int off, int swap)
{
    uint32_t u = rd32(h + off, swap);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void fs_nifti_info_default(fs_nifti_info *info)
{
    memset(info, 0, sizeof *info);
    for (int i = 0; i < 8; i++)
        info->pixdim[i] = 1.0;
    info->scl_slope = 1.0;
    info->datatype = 16;
    info->xyzt_units = 2 | 8;
}

static int type_bytes(int datatype)
{
    switch (datatype) {
    case 2: case 256: return 1;
    case 4: case 512: return 2;
    case 8: case 768: case 16: return 4;
    case 64: return 8;
    default: return 0;
    }
}

/* Reads up to n bytes; returns the count read or -1 with the zlib message in err. */
static int64_t gz_read_all(gzFile gz, unsigned char *dst, int64_t n, const char **err)
{
    int64_t got = 0;
    while (got < n) {
        unsigned chunk = (unsigned)((n - got) > (1 << 30) ? (1 << 30) : (n - got));
        int r = gzread(gz, dst + got, chunk);
        if (r < 0) {
            int code;
            *err = gzerror(gz, &code);
            return -1;
        }
        if (r == 0)
            break;
        got += r;
    }
    return got;
}

fs_tensor *fs_nifti_read(const char *path, fs_nifti_info *info)
{
    fs_nifti_info tmp;
    if (!info)
        info = &tmp;
    fs_nifti_info_default(info);
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        fs_set_error("load_nifti: %s: cannot open (%s)", path, errno ? strerror(errno) : "zlib");
        return NULL;
    }
    unsigned char h[HDR];
    const char *zerr = NULL;
    unsigned char *data = NULL;
    fs_tensor *out = NULL;
    int64_t got = gz_read_all(gz, h, HDR, &zerr);
    if (got < 0) {
        fs_set_error("load_nifti: %s: corrupt compressed data (%s)", path, zerr);
        goto fail;
    }
    if (got < HDR) {
        fs_set_error("load_nifti: %s: truncated header (%lld of 348 bytes)", path, (long long)got);
        goto fail;
    }
    int swap;
    if (rd32(h, 0) == HDR)
        swap = 0;
    else if (rd32(h, 1) == HDR)
        swap = 1;
    else if (rd32(h, 0) == 540 || rd32(h, 1) == 540) {
        fs_set_error("load_nifti: %s: NIfTI-2 files are not supported", path);
        goto fail;
    } else {
        fs_set_error("load_nifti: %s: not a NIfTI-1 file (sizeof_hdr is not 348)", path);
        goto fail;
    }
    if (memcmp(h + 344, "ni1\0", 4) == 0) {
        fs_set_error("load_nifti: %s: a two-file NIfTI (.hdr/.img) header; only single-file "
                     ".nii/.nii.gz are supported", path);
        goto fail;
    }
    if (memcmp(h + 344, "n+1\0", 4) != 0) {
        fs_set_error("load_nifti: %s: bad magic (expected \"n+1\")", path);
        goto fail;
    }
    int nd = s16(h, 40, swap);
    if (nd < 1 || nd > 7) {
        fs_set_error("load_nifti: %s: dim[0] = %d is outside 1..7", path, nd);
        goto fail;
    }
    int64_t nvox = 1;
    for (int i = 0; i < nd; i++) {
        int d = s16(h, 42 + 2 * i, swap);
        if (d < 1) {
            fs_set_error("load_nifti: %s: dim[%d] = %d is not positive", path, i + 1, d);
            goto fail;
        }
        info->dim[i] = d;
        nvox *= d;
        if (nvox > MAX_BYTES) {
            fs_set_error("load_nifti: %s: volume too large", path);
            goto fail;
        }
    }
    int dt = s16(h, 70, swap), bitpix = s16(h, 72, swap);
    int bpp = type_bytes(dt);
    if (!bpp) {
        fs_set_error("load_nifti: %s: unsupported datatype %d", path, dt);
        goto fail;
    }
    if (bitpix != 8 * bpp) {
        fs_set_error("load_nifti: %s: bitpix %d does not match datatype %d", path, bitpix, dt);
        goto fail;
    }
    info->datatype = dt;
    double vox_offset = f32(h, 108, swap);
    if (!(vox_offset >= HDR) || vox_offset > (double)MAX_BYTES) {
        fs_set_error("load_nifti: %s: bad vox_offset %g", path, vox_offset);
        goto fail;
    }
    int units = h[123] & 7;
    double to_mm = units == 1 ? 1000.0 : units == 3 ? 0.001 : 1.0;
    info->xyzt_units = h[123];
    for (int i = 0; i < 8; i++) {
        double v = f32(h, 76 + 4 * i, swap);
        info->pixdim[i] = (i >= 1 && i <= 3) ? fabs(v) * to_mm : v;
    }
    if (info->pixdim[0] != -1.0)
        info->pixdim[0] = 1.0;
    info->scl_slope = f32(h, 112, swap);
    info->scl_inter = f32(h, 116, swap);
    memcpy(info->descrip, h + 148, 80);
    info->descrip[80] = 0;
    info->qform_code = s16(h, 252, swap);
    info->sform_code = s16(h, 254, swap);
    info->quatern_b = f32(h, 256, swap);
    info->quatern_c = f32(h, 260, swap);
    info->quatern_d = f32(h, 264, swap);
    info->qoffset_x = f32(h, 268, swap);
    info->qoffset_y = f32(h, 272, swap);
    info->qoffset_z = f32(h, 276, swap);
    for (int i = 0; i < 4; i++) {
        info->srow_x[i] = f32(h, 280 + 4 * i, swap);
        info->srow_y[i] = f32(h, 296 + 4 * i, swap);
        info->srow_z[i] = f32(h, 312 + 4 * i, swap);
    }

    /* skip to the voxels, then read them all */
    int64_t skip = (int64_t)vox_offset - HDR;
    unsigned char junk[512];
    while (skip > 0) {
        int64_t r = gz_read_all(gz, junk, skip > 512 ? 512 : skip, &zerr);
        if (r <= 0) {
            if (r < 0)
                fs_set_error("load_nifti: %s: corrupt compressed data (%s)", path, zerr);
            else
                fs_set_error("load_nifti: %s: truncated before vox_offset %g", path, vox_offset);
            goto fail;
        }
        skip -= r;
    }
    int64_t nbytes = nvox * bpp;
    if (nbytes > MAX_BYTES) {
        fs_set_error("load_nifti: %s: volume too large (%lld bytes)", path, (long long)nbytes);
        goto fail;
    }
    /* grow the buffer as data arrives, so a lying header cannot make us allocate what the
     * file does not hold */
    int64_t cap = nbytes < (1 << 20) ? nbytes : (1 << 20);
    got = 0;
    data = malloc((size_t)(cap > 0 ? cap : 1));
    while (data) {
        int64_t r = gz_read_all(gz, data + got, cap - got, &zerr);
        if (r < 0) {
            fs_set_error("load_nifti: %s: corrupt compressed data (%s)", path, zerr);
            goto fail;
        }
        got += r;
        if (got < cap || cap == nbytes)
            break;
        int64_t ncap = cap * 2 < nbytes ? cap * 2 : nbytes;
        unsigned char *nd2 = realloc(data, (size_t)ncap);
        if (!nd2)
            break;
        data = nd2;
        cap = ncap;
    }
    if (!data || (got == cap && cap < nbytes)) {
        fs_set_error("load_nifti: %s: out of memory (%lld bytes)", path, (long long)nbytes);
        goto fail;
    }
    if (got < nbytes) {
        fs_set_error("load_nifti: %s: truncated: %lld voxel bytes expected, %lld present", path,
                     (long long)nbytes, (long long)got);
        goto fail;
    }
    int keep = nd;
    while (keep > 1 && info->dim[keep - 1] == 1)
        keep--;
    info->ndim = keep;
    int64_t size[7];
    for (int i = 0; i < keep; i++)
        size[i] = info->dim[keep - 1 - i];
    out = fs_tensor_new(keep, size);
    if (!out)
        goto fail;
    float *o = fs_data(out);
    double slope = info->scl_slope, inter = info->scl_inter;
    int scale = slope != 0.0 && isfinite(slope) && !(slope == 1.0 && inter == 0.0);
    if (!isfinite(inter))
        inter = 0.0;
    for (int64_t i = 0; i < nvox; i++) {
        const unsigned char *p = data + i * bpp;
        double v;
        switch (dt) {
        case 2: v = p[0]; break;
        case 256: v = (int8_t)p[0]; break;
        case 4: v = (int16_t)rd16(p, swap); break;
        case 512: v = rd16(p, swap); break;
        case 8: v = (int32_t)rd32(p, swap); break;
        case 768: v = rd32(p, swap); break;
        case 16: { uint32_t u = rd32(p, swap); float f; memcpy(&f, &u, 4); v = f; break; }
        default: { uint64_t u = rd64(p, swap); double d; memcpy(&d, &u, 8); v = d; break; }
        }
        o[i] = (float)(scale ? v * slope + inter : v);
    }
    free(data);
    gzclose(gz);
    return out;
fail:
    free(data);
    fs_tensor_release(out);
    gzclose(gz);
    return NULL;
}

static void wr16(unsigned char *h, int off, int v) { h[off] = (unsigned char)(v & 0xff); h[off + 1] = (unsigned char)((v >> 8) & 0xff); }
static void wr32(unsigned char *h, int off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        h[off + i] = (unsigned char)((v >> (8 * i)) & 0xff);
}
static void wrf(unsigned char *h, int off, double v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    wr32(h, off, u);
}

int fs_nifti_write(const char *path, const fs_tensor *t, const fs_nifti_info *info)
{
    if (t->ndim < 1 || t->ndim > 7)
        return fs_set_error("save_nifti: %s: need a tensor with 1 to 7 dims, got %s", path, FS_SHAPE(t));
    for (int i = 0; i < t->ndim; i++)
        if (t->size[i] < 1 || t->size[i] > 32767)
            return fs_set_error("save_nifti: %s: sizes must be in 1..32767, got %s", path, FS_SHAPE(t));
    fs_nifti_info def;
    if (!info) {
        fs_nifti_info_default(&def);
        info = &def;
    }
    unsigned char h[352];
    memset(h, 0, sizeof h);
    wr32(h, 0, HDR);
    h[38] = 'r';
    wr16(h, 40, t->ndim);
    for (int i = 0; i < t->ndim; i++)
        wr16(h, 42 + 2 * i, (int)t->size[t->ndim - 1 - i]);
    for (int i = t->ndim; i < 7; i++)
        wr16(h, 42 + 2 * i, 1);
    wr16(h, 70, 16);
    wr16(h, 72, 32);
    wrf(h, 76, info->pixdim[0] == -1.0 ? -1.0 : 1.0);
    for (int i = 1; i < 8; i++)
        wrf(h, 76 + 4 * i, info->pixdim[i] > 0 ? info->pixdim[i] : 1.0);
    wrf(h, 108, 352.0);
    wrf(h, 112, 1.0);
    wrf(h, 116, 0.0);
    h[123] = 2 | 8; /* mm, s */
    const char *desc = info->descrip[0] ? info->descrip : "fewshot";
    memcpy(h + 148, desc, strnlen(desc, 79));
    wr16(h, 252, info->qform_code);
    wr16(h, 254, info->sform_code);
    wrf(h, 256, info->quatern_b);
    wrf(h, 260, info->quatern_c);
    wrf(h, 264, info->quatern_d);
    wrf(h, 268, info->qoffset_x);
    wrf(h, 272, info->qoffset_y);
    wrf(h, 276, info->qoffset_z);
    for (int i = 0; i < 4; i++) {
        wrf(h, 280 + 4 * i, info->srow_x[i]);
        wrf(h, 296 + 4 * i, info->srow_y[i]);
        wrf(h, 312 + 4 * i, info->srow_z[i]);
    }
    memcpy(h + 344, "n+1\0", 4);

    int64_t n = fs_numel(t);
    float *vals = fs_alloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!vals)
        return -1;
    fs_tensor_read(t, vals);
    unsigned char *bytes = (unsigned char *)vals; /* little-endian on write */
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        unsigned char le[4] = {(unsigned char)(u & 0xff), (unsigned char)(u >> 8 & 0xff),
                               (unsigned char)(u >> 16 & 0xff), (unsigned char)(u >> 24)};
        memcpy(bytes + 4 * i, le, 4);
    }
    size_t plen = strlen(path);
    int gzip = plen > 3 && strcmp(path + plen - 3, ".gz") == 0;
    char *tmp = malloc(plen + 32);
    if (!tmp) {
        fs_free(vals);
        return fs_set_error("save_nifti: %s: out of memory", path);
    }
    snprintf(tmp, plen + 32, "%s.tmp%ld", path, (long)getpid());
    int ok = 0;
    if (gzip) {
        gzFile gz = gzopen(tmp, "wb6");
        if (gz) {
            ok = gzwrite(gz, h, sizeof h) == (int)sizeof h;
            int64_t done = 0, total = 4 * n;
            while (ok && done < total) {
                unsigned chunk = (unsigned)(total - done > (1 << 30) ? (1 << 30) : total - done);
                ok = gzwrite(gz, bytes + done, chunk) == (int)chunk;
                done += chunk;
            }
            ok = (gzclose(gz) == Z_OK) && ok;
        }
    } else {
        FILE *f = fopen(tmp, "wb");
        if (f) {
            ok = fwrite(h, 1, sizeof h, f) == sizeof h &&
                 fwrite(bytes, 4, (size_t)n, f) == (size_t)n;
            ok = (fclose(f) == 0) && ok;
        }
    }
    int e = errno;
    fs_free(vals);
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            e = errno;
        remove(tmp);
        free(tmp);
        return fs_set_error("save_nifti: %s: cannot write (%s)", path, e ? strerror(e) : "error");
    }
    free(tmp);
    return 0;
}
