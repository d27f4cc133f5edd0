/* npy.c - NumPy .npy read/write (see npy.h). The header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * parsed here by a small scanner that accepts the keys in any order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "io/npy.h"

#define OP "fs.io.load_npy"

typedef struct {
    const char *path;
    const char *s;
    size_t n, pos;
} hparser;

static int herr(hparser *p, const char *what)
{
    return fs_set_error(OP ": '%s': bad .npy header: %s at byte %zu of the header", p->path,
                        what, p->pos);
}

static void hws(hparser *p)
{
    while (p->pos < p->n && strchr(" \t\n\r", p->s[p->pos]) && p->s[p->pos])
        p->pos++;
}

/* A quoted Python string (no escapes needed for npy keys/descr) into out[cap]. */
static int hstring(hparser *p, char *out, size_t cap)
{
    hws(p);
    if (p->pos >= p->n || (p->s[p->pos] != '\'' && p->s[p->pos] != '"'))
        return herr(p, "expected a quoted string");
    char q = p->s[p->pos++];
    size_t k = 0;
    while (p->pos < p->n && p->s[p->pos] != q) {
        if (k + 1 >= cap)
            return herr(p, "string too long");
        out[k++] = p->s[p->pos++];
    }
    if (p->pos >= p->n)
        return herr(p, "unterminated string");
    p->pos++;
    out[k] = 0;
    return 0;
}

static int hchar(hparser *p, char c)
{
    hws(p);
    if (p->pos < p->n && p->s[p->pos] == c) {
        p->pos++;
        return 1;
    }
    return 0;
}

/* What the header says. */
typedef struct {
    char descr[32];
    int fortran, ndim;
    int64_t shape[FS_MAX_DIM];
} npy_header;

/* Magic, version and header length: the header is buf[*hstart, *hstart + *hlen). */
static int parse_preamble(const char *path, const unsigned char *buf, size_t len,
                          size_t *hstart, size_t *hlen)
{
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return fs_set_error(OP ": '%s': not a .npy file (the magic string \\x93NUMPY is "
                            "missing)", path);
    int major = buf[6];
    if (major == 1) {
        *hlen = fs_load_le16(buf + 8);
        *hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return fs_set_error(OP ": '%s': truncated .npy file", path);
        *hlen = fs_load_le32(buf + 8);
        *hstart = 12;
    } else {
        return fs_set_error(OP ": '%s': unsupported .npy format version %d.%d", path, major,
                            buf[7]);
    }
    if (*hlen > len - *hstart)
        return fs_set_error(OP ": '%s': header length %zu is larger than the file (%zu bytes): "
                            "truncated file", path, *hlen, len);
    return 0;
}

/* 'shape': (d1, d2, ...) into h. */
static int parse_shape(hparser *p, npy_header *h)
{
    if (!hchar(p, '('))
        return herr(p, "expected '(' for the shape");
    h->ndim = 0;
    while (!hchar(p, ')')) {
        hws(p);
        uint64_t v = 0;
        size_t start = p->pos;
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            v = v * 10 + (uint64_t)(p->s[p->pos++] - '0');
            if (v > ((uint64_t)1 << 48))
                return herr(p, "dimension too large");
        }
        if (p->pos == start)
            return herr(p, "expected a dimension");
        if (h->ndim >= FS_MAX_DIM)
            return fs_set_error(OP ": '%s': more than %d dimensions", p->path, FS_MAX_DIM);
        h->shape[h->ndim++] = (int64_t)v;
        if (!hchar(p, ',') && (hws(p), p->pos >= p->n || p->s[p->pos] != ')'))
            return herr(p, "expected ',' or ')'");
    }
    return 0;
}

/* The header dict {'descr': ..., 'fortran_order': ..., 'shape': (...)} into h. */
static int parse_dict(hparser *p, npy_header *h)
{
    char key[32];
    h->descr[0] = 0;
    h->fortran = h->ndim = -1;
    if (!hchar(p, '{'))
        return herr(p, "expected '{'");
    while (!hchar(p, '}')) {
        if (hstring(p, key, sizeof key) < 0)
            return -1;
        if (!hchar(p, ':'))
            return herr(p, "expected ':'");
        if (strcmp(key, "descr") == 0) {
            if (hstring(p, h->descr, sizeof h->descr) < 0)
                return -1;
        } else if (strcmp(key, "fortran_order") == 0) {
            hws(p);
            if (p->pos + 4 <= p->n && memcmp(p->s + p->pos, "True", 4) == 0) {
                h->fortran = 1;
                p->pos += 4;
            } else if (p->pos + 5 <= p->n && memcmp(p->s + p->pos, "False", 5) == 0) {
                h->fortran = 0;
                p->pos += 5;
            } else {
                return herr(p, "fortran_order must be True or False");
            }
        } else if (strcmp(key, "shape") == 0) {
            if (parse_shape(p, h) < 0)
                return -1;
        } else {
            return herr(p, "unknown key");
        }
        if (!hchar(p, ',') && (hws(p), p->pos >= p->n || p->s[p->pos] != '}'))
            return herr(p, "expected ',' or '}'");
    }
    if (!h->descr[0] || h->fortran < 0 || h->ndim < 0)
        return fs_set_error(OP ": '%s': the header lacks %s", p->path,
                            !h->descr[0] ? "'descr'" : h->fortran < 0 ? "'fortran_order'"
                                                                       : "'shape'");
    return 0;
}

/* descr (byte order char, kind char, size digits) -> kind, size, big; -1 when unsupported. */
static int check_descr(const char *path, const char *descr, char *kind, int *size, int *big)
{
    char order = descr[0];
    *kind = descr[1];
    /* a one-character descr ends at descr[1]: what follows was never written */
    *size = *kind ? atoi(descr + 2) : 0;
    char k = *kind;
    int sz = *size;
    int known = (order == '<' || order == '>' || order == '|' || order == '=') &&
                ((k == 'f' && (sz == 2 || sz == 4 || sz == 8)) ||
                 ((k == 'i' || k == 'u') && (sz == 1 || sz == 2 || sz == 4 || sz == 8)) ||
                 (k == 'b' && sz == 1)) &&
                strlen(descr) == (size_t)(2 + (sz >= 10 ? 2 : 1));
    if (!known)
        return fs_set_error(OP ": '%s': unsupported dtype '%s' (float16/32/64, int8-64, uint8-64 "
                            "and bool are read)", path, descr);
    *big = order == '>' || (order == '=' && !fs_host_is_little_endian());
    return 0;
}

/* The data (numel elements from src) -> a C-order tensor; a Fortran array is the C array of
 * the reversed shape, transposed back. */
static fs_tensor *decode_array(const npy_header *h, const unsigned char *src, int64_t numel,
                               char kind, int size, int big)
{
    int ndim = h->ndim;
    int64_t cshape[FS_MAX_DIM];
    for (int d = 0; d < ndim; d++)
        cshape[d] = h->fortran ? h->shape[ndim - 1 - d] : h->shape[d];
    fs_tensor *t = fs_tensor_new(ndim, cshape);
    if (!t)
        return NULL;
    if (fs_decode_to_float(fs_data(t), src, numel, kind, size, big) < 0) {
        fs_tensor_release(t);
        return NULL;
    }
    if (h->fortran && ndim > 1) {
        int perm[FS_MAX_DIM];
        for (int d = 0; d < ndim; d++)
            perm[d] = ndim - 1 - d;
        fs_tensor *v = fs_permute_raw(t, perm);
        fs_tensor_release(t);
        if (!v)
            return NULL;
        t = fs_tensor_contiguous_copy(v);
        fs_tensor_release(v);
    }
    return t;
}

fs_tensor *fs_npy_parse(const char *path, const unsigned char *buf, size_t len)
{
    size_t hstart = 0, hlen = 0;
    if (parse_preamble(path, buf, len, &hstart, &hlen) < 0)
        return NULL;
    hparser p = {path, (const char *)buf + hstart, hlen, 0};
    npy_header h;
    char kind = 0;
    int size = 1, big = 0;
    if (parse_dict(&p, &h) < 0 || check_descr(path, h.descr, &kind, &size, &big) < 0)
        return NULL;
    size_t data_off = hstart + hlen;
    size_t avail = len - data_off;
    uint64_t numel = 0;
    if (fs_shape_fits(h.ndim, h.shape, size, (uint64_t)1 << 62, &numel) < 0) {
        fs_set_error(OP ": '%s': shape %s of %d-byte elements is too large (more than 2^62 "
                     "bytes)", path, fs_shape_str(h.ndim, h.shape), size);
        return NULL;
    }
    if (numel > avail / (size_t)size) {
        fs_set_error(OP ": '%s': shape %s of '%s' needs %llu bytes of data but the file has "
                     "%zu: truncated file", path, fs_shape_str(h.ndim, h.shape), h.descr,
                     (unsigned long long)(numel * (uint64_t)size), avail);
        return NULL;
    }
    return decode_array(&h, buf + data_off, (int64_t)numel, kind, size, big);
}

fs_tensor *fs_npy_read(const char *path)
{
    unsigned char *buf;
    size_t len;
    if (fs_file_read_all(OP, path, &buf, &len) < 0)
        return NULL;
    fs_tensor *t = fs_npy_parse(path, buf, len);
    free(buf);
    return t;
}

int fs_npy_write(const char *path, const fs_tensor *t)
{
    char dict[512];
    int k = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int d = 0; d < t->ndim; d++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%lld,%s", (long long)t->size[d],
                      t->ndim > 1 && d < t->ndim - 1 ? " " : "");
    if (t->ndim > 1)
        k--; /* numpy writes (2, 3) but (4,) */
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    /* magic(6) + version(2) + len(2) + dict + padding + '\n', total a multiple of 64 */
    size_t total = 10 + (size_t)k + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t hlen = padded - 10;
    unsigned char head[600];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)k);
    memset(head + 10 + k, ' ', hlen - (size_t)k - 1);
    head[padded - 1] = '\n';
    int64_t n = fs_numel(t);
    float *tmp = NULL;
    const float *src = fs_data(t);
    if (!fs_is_contiguous(t) || !fs_host_is_little_endian()) {
        tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
        if (!tmp)
            return fs_set_error("fs.io.save_npy: out of memory");
        fs_tensor_read(t, tmp);
        if (!fs_host_is_little_endian())
            for (int64_t i = 0; i < n; i++) {
                union { float f; uint32_t u; } c = {tmp[i]};
                c.u = __builtin_bswap32(c.u);
                tmp[i] = c.f;
            }
        src = tmp;
    }
    fs_atomic_file af;
    int rc = fs_atomic_open(&af, "fs.io.save_npy", path);
    if (rc == 0) {
        if (fs_atomic_write(&af, head, padded) < 0 ||
            fs_atomic_write(&af, src, (size_t)n * sizeof(float)) < 0) {
            fs_atomic_abort(&af);
            rc = -1;
        } else {
            rc = fs_atomic_commit(&af);
        }
    }
    free(tmp);
    return rc;
}
