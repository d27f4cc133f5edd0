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

fs_tensor *fs_npy_parse(const char *path, const unsigned char *buf, size_t len)
{
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        fs_set_error(OP ": '%s': not a .npy file (the magic string \\x93NUMPY is missing)", path);
        return NULL;
    }
    int major = buf[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = fs_load_le16(buf + 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            fs_set_error(OP ": '%s': truncated .npy file", path);
            return NULL;
        }
        hlen = fs_load_le32(buf + 8);
        hstart = 12;
    } else {
        fs_set_error(OP ": '%s': unsupported .npy format version %d.%d", path, major, buf[7]);
        return NULL;
    }
    if (hlen > len - hstart) {
        fs_set_error(OP ": '%s': header length %zu is larger than the file (%zu bytes): "
                     "truncated file", path, hlen, len);
        return NULL;
    }
    hparser p = {path, (const char *)buf + hstart, hlen, 0};
    char descr[32] = "", key[32];
    int fortran = -1, ndim = -1;
    int64_t shape[FS_MAX_DIM];
    if (!hchar(&p, '{')) {
        herr(&p, "expected '{'");
        return NULL;
    }
    while (!hchar(&p, '}')) {
        if (hstring(&p, key, sizeof key) < 0)
            return NULL;
        if (!hchar(&p, ':')) {
            herr(&p, "expected ':'");
            return NULL;
        }
        if (strcmp(key, "descr") == 0) {
            if (hstring(&p, descr, sizeof descr) < 0)
                return NULL;
        } else if (strcmp(key, "fortran_order") == 0) {
            hws(&p);
            if (p.pos + 4 <= p.n && memcmp(p.s + p.pos, "True", 4) == 0) {
                fortran = 1;
                p.pos += 4;
            } else if (p.pos + 5 <= p.n && memcmp(p.s + p.pos, "False", 5) == 0) {
                fortran = 0;
                p.pos += 5;
            } else {
                herr(&p, "fortran_order must be True or False");
                return NULL;
            }
        } else if (strcmp(key, "shape") == 0) {
            if (!hchar(&p, '(')) {
                herr(&p, "expected '(' for the shape");
                return NULL;
            }
            ndim = 0;
            while (!hchar(&p, ')')) {
                hws(&p);
                uint64_t v = 0;
                size_t start = p.pos;
                while (p.pos < p.n && p.s[p.pos] >= '0' && p.s[p.pos] <= '9') {
                    v = v * 10 + (uint64_t)(p.s[p.pos++] - '0');
                    if (v > ((uint64_t)1 << 48)) {
                        herr(&p, "dimension too large");
                        return NULL;
                    }
                }
                if (p.pos == start) {
                    herr(&p, "expected a dimension");
                    return NULL;
                }
                if (ndim >= FS_MAX_DIM) {
                    fs_set_error(OP ": '%s': more than %d dimensions", path, FS_MAX_DIM);
                    return NULL;
                }
                shape[ndim++] = (int64_t)v;
                if (!hchar(&p, ',') && (hws(&p), p.pos >= p.n || p.s[p.pos] != ')')) {
                    herr(&p, "expected ',' or ')'");
                    return NULL;
                }
            }
        } else {
            herr(&p, "unknown key");
            return NULL;
        }
        if (!hchar(&p, ',') && (hws(&p), p.pos >= p.n || p.s[p.pos] != '}')) {
            herr(&p, "expected ',' or '}'");
            return NULL;
        }
    }
    if (!descr[0] || fortran < 0 || ndim < 0) {
        fs_set_error(OP ": '%s': the header lacks %s", path,
                     !descr[0] ? "'descr'" : fortran < 0 ? "'fortran_order'" : "'shape'");
        return NULL;
    }
    /* descr: byte order char, kind char, size digits */
    char order = descr[0], kind = descr[1];
    int size = atoi(descr + 2);
    int known = (order == '<' || order == '>' || order == '|' || order == '=') &&
                ((kind == 'f' && (size == 2 || size == 4 || size == 8)) ||
                 ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 ||
                                                   size == 8)) ||
                 (kind == 'b' && size == 1)) &&
                strlen(descr) == (size_t)(2 + (size >= 10 ? 2 : 1));
    if (!known) {
        fs_set_error(OP ": '%s': unsupported dtype '%s' (float16/32/64, int8-64, uint8-64 "
                     "and bool are read)", path, descr);
        return NULL;
    }
    int big = order == '>' || (order == '=' && !fs_host_is_little_endian());
    size_t data_off = hstart + hlen;
    size_t avail = len - data_off;
    uint64_t numel = 1;
    int too_big = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] && numel > ((uint64_t)1 << 60) / (uint64_t)shape[d])
            too_big = 1;
        else
            numel *= (uint64_t)shape[d];
    }
    if (too_big || numel > avail / (size_t)size) {
        fs_set_error(OP ": '%s': shape %s of '%s' needs %llu bytes of data but the file has "
                     "%zu: truncated file", path, fs_shape_str(ndim, shape), descr,
                     (unsigned long long)(numel * (uint64_t)size), avail);
        return NULL;
    }
    int64_t cshape[FS_MAX_DIM];
    for (int d = 0; d < ndim; d++) /* a Fortran array is the C array of the reversed shape */
        cshape[d] = fortran ? shape[ndim - 1 - d] : shape[d];
    fs_tensor *t = fs_tensor_new(ndim, cshape);
    if (!t)
        return NULL;
    if (fs_decode_to_float(fs_data(t), buf + data_off, (int64_t)numel, kind, size, big) < 0) {
        fs_tensor_release(t);
        return NULL;
    }
    if (fortran && ndim > 1) {
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
