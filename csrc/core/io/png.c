/* png.c - PNG read/write through libpng.
 *
 * Read: any PNG (1-16 bit gray, gray+alpha, RGB, RGBA, palette, interlaced) becomes float32
 *   (H, W) gray (RGB weighted 0.299/0.587/0.114, alpha dropped) or (3, H, W) RGB on request.
 *   Values stay raw (0-255 or 0-65535; 1/2/4-bit gray expands to 0-255) unless normalize
 *   divides by the maximum of the bit depth.
 * Write: (H, W), (1, H, W) gray or (3, H, W) RGB, 8 or 16 bits. normalize maps [min, max] to
 *   the full range; otherwise values are rounded and clamped. Written to a temporary file in
 *   the same directory, then renamed.
 * libpng errors longjmp back here and become fs_error() messages naming the file.
 * fs_png_parse reads a whole file held in memory (png_set_read_fn); fs_png_read reads the
 * file and calls it.
 */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "io/png.h"

typedef struct { char msg[200]; } png_errctx;

static void on_error(png_structp png, png_const_charp msg)
{
    png_errctx *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

#define MAX_SIDE (1 << 16)
#define MAX_PIXELS ((int64_t)1 << 26)

/* The bytes libpng reads from: a whole file in memory. */
typedef struct { const unsigned char *buf; size_t len, pos; } png_source;

static void read_from_memory(png_structp png, png_bytep out, png_size_t n)
{
    png_source *src = png_get_io_ptr(png);
    if (n > src->len - src->pos)
        png_error(png, "unexpected end of data");
    memcpy(out, src->buf + src->pos, n);
    src->pos += n;
}

static uint32_t load_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Each chunk's length (up to IEND) against the bytes the file still holds: libpng allocates
 * a chunk's declared length before it reads the chunk (1.6.39 took 1.25 GB for an 80-byte
 * file whose sPLT said 0x50000017 bytes). A partial chunk header is left to libpng. */
static int check_chunk_lengths(const char *name, const unsigned char *data, size_t len)
{
    size_t p = 8;
    while (len - p >= 8) {
        uint32_t n = load_be32(data + p);
        char type[5];
        for (int i = 0; i < 4; i++) {
            unsigned char c = data[p + 4 + i];
            type[i] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ? (char)c : '?';
        }
        type[4] = 0;
        if ((uint64_t)n + 12 > len - p)
            return fs_set_error("image.read: %s: corrupt or truncated PNG (chunk '%s' at byte "
                                "%zu says %lu bytes of data, the file has %zu after its header)",
                                name, type, p, (unsigned long)n, len - p - 8);
        if (memcmp(type, "IEND", 4) == 0)
            break;
        p += (size_t)n + 12;
    }
    return 0;
}

/* Decoded rows (h rows of rowbytes, nch channels of d bits) -> float32 out. */
static void rows_to_float(float *o, const unsigned char *buf, size_t rowbytes, png_uint_32 w,
                          png_uint_32 h, int nch, int d, int channels, bool normalize)
{
    double maxv = d == 16 ? 65535.0 : 255.0, sc = normalize ? 1.0 / maxv : 1.0;
    size_t plane = (size_t)w * h;
    for (png_uint_32 y = 0; y < h; y++) {
        const unsigned char *r = buf + rowbytes * y;
        for (png_uint_32 x = 0; x < w; x++) {
            double v[4];
            for (int c = 0; c < nch; c++) {
                size_t k = (size_t)x * nch + c;
                v[c] = d == 16 ? (double)((r[2 * k] << 8) | r[2 * k + 1]) : (double)r[k];
            }
            size_t i = (size_t)y * w + x;
            if (nch <= 2) { /* gray (+ alpha) */
                for (int c = 0; c < channels; c++)
                    o[plane * c + i] = (float)(v[0] * sc);
            } else if (channels == 1) {
                o[i] = (float)((0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]) * sc);
            } else {
                for (int c = 0; c < 3; c++)
                    o[plane * c + i] = (float)(v[c] * sc);
            }
        }
    }
}

fs_tensor *fs_png_parse(const char *name, const unsigned char *data, size_t len, int channels,
                        bool normalize, int *bit_depth_out)
{
    if (channels != 1 && channels != 3) {
        fs_set_error("image.read: %s: channels must be 1 or 3 (got %d)", name, channels);
        return NULL;
    }
    if (len < 8 || png_sig_cmp(data, 0, 8)) {
        fs_set_error("image.read: %s: not a PNG file (bad signature)", name);
        return NULL;
    }
    /* IHDR comes first: check the size before libpng allocates anything for it */
    if (len >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        uint32_t w = load_be32(data + 16), h = load_be32(data + 20);
        if (w > MAX_SIDE || h > MAX_SIDE || (uint64_t)w * h > MAX_PIXELS) {
            fs_set_error("image.read: %s: %lu x %lu pixels is too large (at most %d a side "
                         "and %lld in all)", name, (unsigned long)w, (unsigned long)h, MAX_SIDE,
                         (long long)MAX_PIXELS);
            return NULL;
        }
    }
    if (check_chunk_lengths(name, data, len) < 0)
        return NULL;
    png_source src = {data, len, 8};
    png_errctx ectx = {{0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ectx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        fs_set_error("image.read: %s: out of memory", name);
        return NULL;
    }
    unsigned char *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    fs_tensor *volatile out = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(buf);
        free(rows);
        fs_tensor_release(out);
        fs_set_error("image.read: %s: corrupt or truncated PNG (%s)", name, ectx.msg);
        return NULL;
    }
    png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* the fuzz build (fuzz/fuzz_png.c): mutated chunks reach the decoder despite their CRCs */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#ifdef PNG_IGNORE_ADLER32
    png_set_option(png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
#endif
    png_set_read_fn(png, &src, read_from_memory);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    if ((int64_t)w * h > MAX_PIXELS)
        png_error(png, "image too large");
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int nch = png_get_channels(png, info), d = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    buf = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!buf || !rows)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = buf + rowbytes * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    int64_t size[3] = {channels, h, w};
    out = channels == 1 ? fs_tensor_new(2, size + 1) : fs_tensor_new(3, size);
    if (!out)
        png_error(png, "out of memory");
    rows_to_float(fs_data(out), buf, rowbytes, w, h, nch, d, channels, normalize);
    if (bit_depth_out)
        *bit_depth_out = depth;
    png_destroy_read_struct(&png, &info, NULL);
    free(buf);
    free(rows);
    return out;
}

fs_tensor *fs_png_read(const char *path, int channels, bool normalize, int *bit_depth_out)
{
    unsigned char *data;
    size_t len;
    if (fs_file_read_all("image.read", path, &data, &len) < 0)
        return NULL;
    fs_tensor *t = fs_png_parse(path, data, len, channels, normalize, bit_depth_out);
    free(data);
    return t;
}

int fs_png_write(const char *path, const fs_tensor *t, int bits, bool normalize)
{
    int nch;
    int64_t h, w;
    if (t->ndim == 2) {
        nch = 1; h = t->size[0]; w = t->size[1];
    } else if (t->ndim == 3 && (t->size[0] == 1 || t->size[0] == 3)) {
        nch = (int)t->size[0]; h = t->size[1]; w = t->size[2];
    } else {
        return fs_set_error("image.write: %s: need an (H, W), (1, H, W) or (3, H, W) tensor, got %s",
                            path, FS_SHAPE(t));
    }
    if (bits != 8 && bits != 16)
        return fs_set_error("image.write: %s: bits must be 8 or 16 (got %d)", path, bits);
    if (h < 1 || w < 1 || h > (1 << 16) || w > (1 << 16))
        return fs_set_error("image.write: %s: bad image size %s", path, FS_SHAPE(t));
    int64_t numel = fs_numel(t);
    float *vals = fs_alloc(sizeof(float) * (size_t)numel);
    if (!vals)
        return -1;
    fs_tensor_read(t, vals);
    double lo = 0, hi = 0, maxv = bits == 16 ? 65535.0 : 255.0;
    for (int64_t i = 0; i < numel; i++) {
        if (!isfinite(vals[i])) {
            fs_set_error("image.write: %s: value %g at %lld is not finite", path, vals[i],
                         (long long)i);
            fs_free(vals); /* after the message, which reads vals[i] */
            return -1;
        }
        if (i == 0 || vals[i] < lo) lo = vals[i];
        if (i == 0 || vals[i] > hi) hi = vals[i];
    }
    double a = 1.0, b = 0.0;
    if (normalize) {
        a = hi > lo ? maxv / (hi - lo) : 0.0;
        b = -lo * a;
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    int bpp = bits / 8 * nch;
    unsigned char *row = malloc((size_t)w * bpp);
    if (!tmp || !row) {
        fs_free(vals);
        free(tmp);
        free(row);
        return fs_set_error("image.write: %s: out of memory", path);
    }
    snprintf(tmp, plen + 32, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        fs_free(vals);
        free(tmp);
        free(row);
        return fs_set_error("image.write: %s: cannot create (%s)", path, strerror(e));
    }
    png_errctx ectx = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ectx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
        fclose(f);
        remove(tmp);
        fs_free(vals);
        free(tmp);
        free(row);
        return fs_set_error("image.write: %s: %s", path, ectx.msg[0] ? ectx.msg : "out of memory");
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bits,
                 nch == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t plane = (size_t)w * h;
    for (int64_t y = 0; y < h; y++) {
        for (int64_t x = 0; x < w; x++)
            for (int c = 0; c < nch; c++) {
                double v = floor(vals[plane * c + (size_t)y * w + x] * a + b + 0.5);
                v = v < 0 ? 0 : v > maxv ? maxv : v;
                unsigned iv = (unsigned)v;
                size_t k = (size_t)x * nch + c;
                if (bits == 16) {
                    row[2 * k] = (unsigned char)(iv >> 8);
                    row[2 * k + 1] = (unsigned char)(iv & 0xff);
                } else {
                    row[k] = (unsigned char)iv;
                }
            }
        png_write_row(png, row);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fs_free(vals);
    free(row);
    int bad = fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return fs_set_error("image.write: %s: cannot write (%s)", path, strerror(e));
    }
    free(tmp);
    return 0;
}
