/* nifti.c - NIfTI-1 single-file volumes (.nii, .nii.gz) read and written with zlib.
 *
 * Read: the 348-byte header is checked (sizeof_hdr 348 in either byte order, magic "n+1",
 * 1 <= dim[0] <= 7, positive sizes, a supported datatype with a matching bitpix, vox_offset
 * inside the file, enough voxel bytes present) before any voxel is touched. Data types:
 * uint8, int8, int16, uint16, int32, uint32, float32, float64, converted to float32 with
 * scl_slope/scl_inter applied when slope is nonzero. The tensor is (..., z, y, x): NIfTI's
 * x-fastest order read as C order, trailing sizes of 1 dropped. Spatial units are converted
 * to mm. fs_nifti_parse reads a whole file held in memory, gzip (inflated as far as the header
 * says is needed) or plain; fs_nifti_read reads the file and calls it.
 * Write: float32, vox_offset 352, no extensions, scl_slope 1; spacing and qform/sform from
 * the info when given (qform_code 0 and sform_code 0 otherwise).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/fileio.h"
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

/* ---- the bytes of the file: plain, or gzip inflated as far as needed ---- */

typedef struct {
    const unsigned char *in;   /* the file */
    size_t in_len;
    int gzip;
    z_stream zs;               /* gzip: the stream and its output so far */
    unsigned char *out;
    size_t out_len, out_cap;
    int ended;                 /* gzip: no more output (end of the last member or of input) */
    const char *zerr;          /* gzip: the zlib message when the data is corrupt */
} nifti_source;

static int source_open(nifti_source *s, const unsigned char *buf, size_t len)
{
    memset(s, 0, sizeof *s);
    s->in = buf;
    s->in_len = len;
    s->gzip = len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
    if (!s->gzip)
        return 0;
    if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
        return -1;
    s->zs.next_in = (unsigned char *)buf;
    s->zs.avail_in = len > UINT_MAX ? UINT_MAX : (unsigned)len;
    return 0;
}

static void source_close(nifti_source *s)
{
    if (s->gzip)
        inflateEnd(&s->zs);
    free(s->out);
}

/* Makes the first `need` bytes available (fewer when the file holds fewer); returns the count
 * available, or -1 (corrupt data: s->zerr; out of memory: s->zerr NULL). The output grows as
 * data arrives, so a lying header cannot make us allocate what the file does not hold. */
static int64_t source_fill(nifti_source *s, int64_t need)
{
    if (!s->gzip)
        return (uint64_t)need < s->in_len ? need : (int64_t)s->in_len;
    while ((int64_t)s->out_len < need && !s->ended) {
        if (s->out_len == s->out_cap) {
            size_t cap = s->out_cap ? s->out_cap * 2 : (1 << 16);
            if ((int64_t)cap > need)
                cap = (size_t)need;
            unsigned char *o = realloc(s->out, cap);
            if (!o)
                return -1;
            s->out = o;
            s->out_cap = cap;
        }
        s->zs.next_out = s->out + s->out_len;
        s->zs.avail_out = (unsigned)(s->out_cap - s->out_len);
        int r = inflate(&s->zs, Z_NO_FLUSH);
        s->out_len = s->out_cap - s->zs.avail_out;
        if (r == Z_STREAM_END) {
            /* gzip members may follow one another */
            size_t used = (size_t)(s->zs.next_in - s->in);
            if (s->in_len - used >= 2 && s->in[used] == 0x1f && s->in[used + 1] == 0x8b)
                inflateReset(&s->zs);
            else
                s->ended = 1;
        } else if (r == Z_BUF_ERROR && s->zs.avail_in == 0) {
            s->ended = 1; /* truncated: the caller reports how much is present */
        } else if (r != Z_OK) {
            s->zerr = s->zs.msg ? s->zs.msg : "zlib error";
            return -1;
        }
    }
    return (int64_t)s->out_len < need ? (int64_t)s->out_len : need;
}

static const unsigned char *source_bytes(const nifti_source *s)
{
    return s->gzip ? s->out : s->in;
}

/* ---- reading: header, validation, voxels ---- */

/* What the voxel decoding needs beyond the info. */
typedef struct { int swap, nd, bpp; int64_t nvox; double vox_offset; } nifti_layout;

/* Byte order, magic, dims, datatype and vox_offset of the header h; fills lay. */
static int check_header(const char *name, const unsigned char *h, fs_nifti_info *info,
                        nifti_layout *lay)
{
    int swap;
    if (rd32(h, 0) == HDR)
        swap = 0;
    else if (rd32(h, 1) == HDR)
        swap = 1;
    else if (rd32(h, 0) == 540 || rd32(h, 1) == 540)
        return fs_set_error("load_nifti: %s: NIfTI-2 files are not supported", name);
    else
        return fs_set_error("load_nifti: %s: not a NIfTI-1 file (sizeof_hdr is not 348)", name);
    if (memcmp(h + 344, "ni1\0", 4) == 0)
        return fs_set_error("load_nifti: %s: a two-file NIfTI (.hdr/.img) header; only "
                            "single-file .nii/.nii.gz are supported", name);
    if (memcmp(h + 344, "n+1\0", 4) != 0)
        return fs_set_error("load_nifti: %s: bad magic (expected \"n+1\")", name);
    int nd = s16(h, 40, swap);
    if (nd < 1 || nd > 7)
        return fs_set_error("load_nifti: %s: dim[0] = %d is outside 1..7", name, nd);
    for (int i = 0; i < nd; i++) {
        int d = s16(h, 42 + 2 * i, swap);
        if (d < 1)
            return fs_set_error("load_nifti: %s: dim[%d] = %d is not positive", name, i + 1, d);
        info->dim[i] = d;
    }
    int dt = s16(h, 70, swap), bitpix = s16(h, 72, swap);
    int bpp = type_bytes(dt);
    if (!bpp)
        return fs_set_error("load_nifti: %s: unsupported datatype %d", name, dt);
    if (bitpix != 8 * bpp)
        return fs_set_error("load_nifti: %s: bitpix %d does not match datatype %d", name,
                            bitpix, dt);
    info->datatype = dt;
    double vox_offset = f32(h, 108, swap);
    if (!(vox_offset >= HDR) || vox_offset > (double)MAX_BYTES)
        return fs_set_error("load_nifti: %s: bad vox_offset %g", name, vox_offset);
    uint64_t nvox = 0;
    if (fs_shape_fits(nd, info->dim, bpp, (uint64_t)MAX_BYTES, &nvox) < 0)
        return fs_set_error("load_nifti: %s: dims %s of %d-byte voxels are too large (more "
                            "than %lld bytes)", name, fs_shape_str(nd, info->dim), bpp,
                            (long long)MAX_BYTES);
    *lay = (nifti_layout){swap, nd, bpp, (int64_t)nvox, vox_offset};
    return 0;
}

/* Spacing (in mm), scaling, description and orientation of the header h. */
static void read_header_fields(const unsigned char *h, int swap, fs_nifti_info *info)
{
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
}

/* The voxels (lay->nvox of the datatype, from data) -> a (..., z, y, x) float32 tensor with
 * scl_slope/scl_inter applied; trailing sizes of 1 dropped. */
static fs_tensor *decode_voxels(const unsigned char *data, const nifti_layout *lay,
                                fs_nifti_info *info)
{
    int keep = lay->nd;
    while (keep > 1 && info->dim[keep - 1] == 1)
        keep--;
    info->ndim = keep;
    int64_t size[7];
    for (int i = 0; i < keep; i++)
        size[i] = info->dim[keep - 1 - i];
    fs_tensor *out = fs_tensor_new(keep, size);
    if (!out)
        return NULL;
    float *o = fs_data(out);
    double slope = info->scl_slope, inter = info->scl_inter;
    int scale = slope != 0.0 && isfinite(slope) && !(slope == 1.0 && inter == 0.0);
    if (!isfinite(inter))
        inter = 0.0;
    int swap = lay->swap, bpp = lay->bpp;
    for (int64_t i = 0; i < lay->nvox; i++) {
        const unsigned char *p = data + i * bpp;
        double v;
        switch (info->datatype) {
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
    return out;
}

static void source_error(const char *name, const nifti_source *s, int64_t nbytes)
{
    if (s->zerr)
        fs_set_error("load_nifti: %s: corrupt compressed data (%s)", name, s->zerr);
    else
        fs_set_error("load_nifti: %s: out of memory (%lld bytes)", name, (long long)nbytes);
}

fs_tensor *fs_nifti_parse(const char *name, const unsigned char *buf, size_t len,
                          fs_nifti_info *info)
{
    fs_nifti_info tmp;
    if (!info)
        info = &tmp;
    fs_nifti_info_default(info);
    nifti_source src;
    if (source_open(&src, buf, len) < 0) {
        fs_set_error("load_nifti: %s: out of memory", name);
        return NULL;
    }
    fs_tensor *out = NULL;
    nifti_layout lay = {0};
    int64_t got = source_fill(&src, HDR);
    if (got < 0) {
        source_error(name, &src, HDR);
        goto done;
    }
    if (got < HDR) {
        fs_set_error("load_nifti: %s: truncated header (%lld of 348 bytes)", name,
                     (long long)got);
        goto done;
    }
    if (check_header(name, source_bytes(&src), info, &lay) < 0)
        goto done;
    read_header_fields(source_bytes(&src), lay.swap, info);
    int64_t off = (int64_t)lay.vox_offset, nbytes = lay.nvox * lay.bpp;
    got = source_fill(&src, off + nbytes);
    if (got < 0) {
        source_error(name, &src, nbytes);
        goto done;
    }
    if (got < off) {
        fs_set_error("load_nifti: %s: truncated before vox_offset %g", name, lay.vox_offset);
        goto done;
    }
    if (got < off + nbytes) {
        fs_set_error("load_nifti: %s: truncated: %lld voxel bytes expected, %lld present", name,
                     (long long)nbytes, (long long)(got - off));
        goto done;
    }
    out = decode_voxels(source_bytes(&src) + off, &lay, info);
done:
    source_close(&src);
    return out;
}

fs_tensor *fs_nifti_read(const char *path, fs_nifti_info *info)
{
    unsigned char *buf;
    size_t len;
    if (fs_file_read_all("load_nifti", path, &buf, &len) < 0)
        return NULL;
    fs_tensor *t = fs_nifti_parse(path, buf, len, info);
    free(buf);
    return t;
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
