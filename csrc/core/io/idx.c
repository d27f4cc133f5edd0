/* idx.c - IDX reader (format in idx.h): gzip inflated in memory with zlib, the header parsed
 * and checked against the data length, the data decoded to float32. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/fileio.h"
#include "io/idx.h"

#define OP "read_idx"
/* An inflated file larger than this is refused (Fashion-MNIST's largest is 47 MB). */
#define IDX_MAX_BYTES ((size_t)1 << 32)

/* The whole gzip stream (members one after another) inflated into *out (malloc'ed). */
static int gunzip(const char *name, const unsigned char *buf, size_t len, unsigned char **out,
                  size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return fs_set_error(OP ": '%s': cannot start zlib", name);
    size_t cap = len * 4 + 1024, n = 0;
    unsigned char *o = malloc(cap);
    int rc = Z_OK;
    zs.next_in = (unsigned char *)buf;
    zs.avail_in = (uInt)(len < UINT32_MAX ? len : UINT32_MAX);
    while (o) {
        if (n == cap) {
            if (cap >= IDX_MAX_BYTES) {
                free(o);
                inflateEnd(&zs);
                return fs_set_error(OP ": '%s': inflates to more than %zu bytes", name,
                                    (size_t)IDX_MAX_BYTES);
            }
            size_t ncap = cap * 2 < IDX_MAX_BYTES ? cap * 2 : IDX_MAX_BYTES;
            unsigned char *g = realloc(o, ncap);
            if (!g) {
                free(o);
                o = NULL;
                break;
            }
            o = g;
            cap = ncap;
        }
        zs.next_out = o + n;
        zs.avail_out = (uInt)(cap - n < UINT32_MAX ? cap - n : UINT32_MAX);
        rc = inflate(&zs, Z_NO_FLUSH);
        n = (size_t)(zs.next_out - o);
        if (rc == Z_STREAM_END) {
            size_t used = (size_t)(zs.next_in - buf);
            if (used >= len || buf[used] != 0x1f)
                break;                       /* no further gzip member */
            inflateReset(&zs);
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            break;
        } else if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
            break;                           /* input ended inside the stream */
        }
    }
    const char *msg = zs.msg;
    inflateEnd(&zs);
    if (!o)
        return fs_set_error(OP ": '%s': out of memory inflating", name);
    if (rc != Z_STREAM_END) {
        free(o);
        return fs_set_error(OP ": '%s': corrupt or truncated gzip data (%s)", name,
                            msg ? msg : "unexpected end of input");
    }
    *out = o;
    *out_len = n;
    return 0;
}

typedef struct {
    int type_code;
    int elem_size;
    char kind; /* fs_decode_to_float's kinds: 'u', 'i', 'f' */
    int ndim;
    int64_t size[FS_MAX_DIM];
    size_t data_offset;
} idx_header;

static int parse_header(const char *name, const unsigned char *buf, size_t len, idx_header *h)
{
    if (len < 4)
        return fs_set_error(OP ": '%s': %zu bytes is too short for an IDX header", name, len);
    if (buf[0] != 0 || buf[1] != 0)
        return fs_set_error(OP ": '%s': not an IDX file (the first two bytes are %u %u, not 0 0)",
                            name, buf[0], buf[1]);
    h->type_code = buf[2];
    switch (h->type_code) {
    case 0x08: h->kind = 'u'; h->elem_size = 1; break;
    case 0x09: h->kind = 'i'; h->elem_size = 1; break;
    case 0x0B: h->kind = 'i'; h->elem_size = 2; break;
    case 0x0C: h->kind = 'i'; h->elem_size = 4; break;
    case 0x0D: h->kind = 'f'; h->elem_size = 4; break;
    case 0x0E: h->kind = 'f'; h->elem_size = 8; break;
    default:
        return fs_set_error(OP ": '%s': unknown IDX data type 0x%02X (0x08, 0x09, 0x0B, 0x0C, "
                            "0x0D, 0x0E)", name, (unsigned)h->type_code);
    }
    h->ndim = buf[3];
    if (h->ndim < 1 || h->ndim > FS_MAX_DIM)
        return fs_set_error(OP ": '%s': %d dimensions (1 to %d are supported)", name, h->ndim,
                            FS_MAX_DIM);
    h->data_offset = 4 + 4 * (size_t)h->ndim;
    if (len < h->data_offset)
        return fs_set_error(OP ": '%s': the header needs %zu bytes but the file has %zu", name,
                            h->data_offset, len);
    for (int d = 0; d < h->ndim; d++) {
        const unsigned char *p = buf + 4 + 4 * d;
        h->size[d] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
                               (uint32_t)p[3]);
    }
    return 0;
}

static int check_length(const char *name, const idx_header *h, size_t len, uint64_t *numel)
{
    if (fs_shape_fits(h->ndim, h->size, h->elem_size, (uint64_t)1 << 40, numel) < 0)
        return fs_set_error(OP ": '%s': shape %s of %d-byte elements is too large", name,
                            fs_shape_str(h->ndim, h->size), h->elem_size);
    uint64_t need = *numel * (uint64_t)h->elem_size, have = len - h->data_offset;
    if (need != have)
        return fs_set_error(OP ": '%s': the header's shape %s of %d-byte elements needs %llu "
                            "bytes of data but the file has %llu (%s)", name,
                            fs_shape_str(h->ndim, h->size), h->elem_size,
                            (unsigned long long)need, (unsigned long long)have,
                            need > have ? "truncated" : "trailing bytes");
    return 0;
}

fs_tensor *fs_idx_parse(const char *name, const unsigned char *buf, size_t len)
{
    unsigned char *inflated = NULL;
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        size_t n = 0;
        if (gunzip(name, buf, len, &inflated, &n) < 0)
            return NULL;
        buf = inflated;
        len = n;
    }
    idx_header h;
    uint64_t numel = 0;
    fs_tensor *t = NULL;
    if (parse_header(name, buf, len, &h) == 0 && check_length(name, &h, len, &numel) == 0) {
        t = fs_tensor_new(h.ndim, h.size);
        if (t && fs_decode_to_float(fs_data(t), buf + h.data_offset, (int64_t)numel, h.kind,
                                    h.elem_size, 1) < 0) {
            fs_tensor_release(t);
            t = NULL;
        }
    }
    free(inflated);
    return t;
}

fs_tensor *fs_idx_read(const char *path)
{
    unsigned char *buf;
    size_t len;
    if (fs_file_read_all(OP, path, &buf, &len) < 0)
        return NULL;
    fs_tensor *t = fs_idx_parse(path, buf, len);
    free(buf);
    return t;
}
