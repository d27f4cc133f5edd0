/* safetensors.c - safetensors read/write (format in safetensors.h), with a small JSON parser
 * that accepts exactly what the header may hold and reports the byte where it stopped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "io/safetensors.h"

/* ---- JSON ---- */

typedef struct {
    const char *path;
    const char *s;
    size_t n, pos;
} jparser;

#define MAX_DEPTH 64

static int jerr(jparser *p, const char *what)
{
    return fs_set_error("fs.io.load: '%s': bad safetensors header: %s at byte %zu of the header",
                        p->path, what, p->pos);
}

static void jws(jparser *p)
{
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int jexpect(jparser *p, char c)
{
    jws(p);
    if (p->pos >= p->n || p->s[p->pos] != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return jerr(p, msg);
    }
    p->pos++;
    return 0;
}

static int jpeek(jparser *p)
{
    jws(p);
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); return 4;
}

/* A JSON string into a malloc'ed buffer (out may be NULL to skip). */
static int jstring(jparser *p, char **out)
{
    if (out)
        *out = NULL;
    if (jexpect(p, '"') < 0)
        return -1;
    size_t start = p->pos;
    size_t cap = 0;
    while (p->pos < p->n && p->s[p->pos] != '"') { /* bound: escapes never grow the text */
        if (p->s[p->pos] == '\\')
            p->pos++;
        p->pos++;
    }
    if (p->pos >= p->n)
        return jerr(p, "unterminated string");
    cap = p->pos - start;
    p->pos = start;
    char *o = out ? malloc(cap + 1) : NULL;
    if (out && !o)
        return fs_set_error("fs.io.load: out of memory");
    size_t k = 0;
    while (p->s[p->pos] != '"') {
        char c = p->s[p->pos++];
        if ((unsigned char)c < 0x20) {
            free(o);
            return jerr(p, "control character in string");
        }
        if (c != '\\') {
            if (o) o[k] = c;
            k++;
            continue;
        }
        c = p->s[p->pos++];
        char r;
        switch (c) {
        case '"': r = '"'; break;
        case '\\': r = '\\'; break;
        case '/': r = '/'; break;
        case 'b': r = '\b'; break;
        case 'f': r = '\f'; break;
        case 'n': r = '\n'; break;
        case 'r': r = '\r'; break;
        case 't': r = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int i = 0; i < 4; i++) {
                int h = p->pos < p->n ? hexval(p->s[p->pos]) : -1;
                if (h < 0) {
                    free(o);
                    return jerr(p, "bad \\u escape");
                }
                cp = cp * 16 + (uint32_t)h;
                p->pos++;
            }
            /* 6 input bytes give at most 3 output bytes; a surrogate pair's 12 give 4. */
            if (cp >= 0xd800 && cp < 0xdc00 && p->pos + 6 <= p->n && p->s[p->pos] == '\\' &&
                p->s[p->pos + 1] == 'u') {
                uint32_t lo = 0;
                int ok = 1;
                for (int i = 0; i < 4; i++) {
                    int h = hexval(p->s[p->pos + 2 + i]);
                    if (h < 0) ok = 0;
                    lo = lo * 16 + (uint32_t)(h < 0 ? 0 : h);
                }
                if (ok && lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p->pos += 6;
                }
            }
            char tmp[4];
            int m = utf8_put(tmp, cp);
            if (o) memcpy(o + k, tmp, (size_t)m);
            k += (size_t)m;
            continue;
        }
        default:
            free(o);
            return jerr(p, "bad escape in string");
        }
        if (o) o[k] = r;
        k++;
    }
    p->pos++; /* closing quote */
    if (o) {
        o[k] = 0;
        *out = o;
    }
    return 0;
}

/* A non-negative integer (no sign, no fraction, no exponent). */
static int juint(jparser *p, int64_t *v)
{
    jws(p);
    size_t start = p->pos;
    uint64_t x = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        if (x > (uint64_t)INT64_MAX / 10)
            return jerr(p, "integer too large");
        x = x * 10 + (uint64_t)(p->s[p->pos++] - '0');
        if (x > (uint64_t)INT64_MAX)
            return jerr(p, "integer too large");
    }
    if (p->pos == start)
        return jerr(p, "expected a non-negative integer");
    if (p->pos < p->n && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
        return jerr(p, "expected an integer");
    *v = (int64_t)x;
    return 0;
}

static int jskip(jparser *p, int depth)
{
    if (depth > MAX_DEPTH)
        return jerr(p, "nesting too deep");
    int c = jpeek(p);
    if (c == '"')
        return jstring(p, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        p->pos++;
        if (jpeek(p) == close) {
            p->pos++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                if (jstring(p, NULL) < 0 || jexpect(p, ':') < 0)
                    return -1;
            }
            if (jskip(p, depth + 1) < 0)
                return -1;
            int d = jpeek(p);
            p->pos++;
            if (d == close)
                return 0;
            if (d != ',')
                return jerr(p, "expected ',' or a closing bracket");
        }
    }
    /* number, true, false, null */
    size_t start = p->pos;
    while (p->pos < p->n && p->s[p->pos] && strchr("+-0123456789.eEtruefalsn", p->s[p->pos]))
        p->pos++;
    if (p->pos == start)
        return jerr(p, "unexpected character");
    return 0;
}

/* ---- dtypes ---- */

typedef struct { const char *name; char kind; int size; } dtype_info;
static const dtype_info DTYPES[] = {
    {"F32", 'f', 4}, {"F16", 'f', 2}, {"BF16", 'B', 2}, {"F64", 'f', 8},
    {"I64", 'i', 8}, {"I32", 'i', 4}, {"I16", 'i', 2}, {"I8", 'i', 1},
    {"U8", 'u', 1}, {"U16", 'u', 2}, {"U32", 'u', 4}, {"U64", 'u', 8}, {"BOOL", 'b', 1},
};

static const dtype_info *dtype_find(const char *name)
{
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(DTYPES[i].name, name) == 0)
            return &DTYPES[i];
    return NULL;
}

/* The keys of one tensor entry, as found. */
typedef struct {
    char *dtype;
    int64_t shape[FS_MAX_DIM], offs[2];
    int ndim, have_offs;
} entry_keys;

/* [v1, v2, ...] of at most cap non-negative integers into dst; *k gets the count. */
static int parse_int_list(jparser *p, int64_t *dst, int cap, int *k, const char *too_many)
{
    *k = 0;
    if (jexpect(p, '[') < 0)
        return -1;
    if (jpeek(p) == ']') {
        p->pos++;
        return 0;
    }
    for (;;) {
        int64_t v = 0;
        if (juint(p, &v) < 0)
            return -1;
        if (*k >= cap)
            return jerr(p, too_many);
        dst[(*k)++] = v;
        int d = jpeek(p);
        p->pos++;
        if (d == ']')
            return 0;
        if (d != ',')
            return jerr(p, "expected ',' or ']'");
    }
}

/* One key of an entry (after its ':') into e; other keys are skipped. */
static int parse_entry_key(jparser *p, const char *key, entry_keys *e)
{
    if (strcmp(key, "dtype") == 0) {
        free(e->dtype);
        return jstring(p, &e->dtype);
    }
    if (strcmp(key, "shape") == 0)
        return parse_int_list(p, e->shape, FS_MAX_DIM, &e->ndim, "too many dimensions");
    if (strcmp(key, "data_offsets") == 0) {
        int k = 0;
        if (parse_int_list(p, e->offs, 2, &k, "data_offsets must hold 2 integers") < 0)
            return -1;
        if (k != 2)
            return jerr(p, "data_offsets must hold 2 integers");
        e->have_offs = 1;
        return 0;
    }
    return jskip(p, 1);
}

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e], ...} into e. */
static int scan_entry(jparser *p, entry_keys *e)
{
    if (jexpect(p, '{') < 0)
        return -1;
    if (jpeek(p) == '}') {
        p->pos++;
        return 0;
    }
    for (;;) {
        char *key;
        if (jstring(p, &key) < 0)
            return -1;
        int r = jexpect(p, ':');
        if (r == 0)
            r = parse_entry_key(p, key, e);
        free(key);
        if (r < 0)
            return -1;
        int d = jpeek(p);
        p->pos++;
        if (d == '}')
            return 0;
        if (d != ',')
            return jerr(p, "expected ',' or '}'");
    }
}

/* Every key present, a known dtype, a shape whose byte size fits, and offsets inside the
 * data that span exactly that size. *di and *numel are set on success. */
static int check_entry(const char *path, const char *name, const entry_keys *e,
                       size_t data_len, const dtype_info **di, uint64_t *numel)
{
    if (!e->dtype || e->ndim < 0 || !e->have_offs)
        return fs_set_error("fs.io.load: '%s': tensor '%s' lacks %s", path, name,
                            !e->dtype ? "\"dtype\"" : e->ndim < 0 ? "\"shape\""
                                                                  : "\"data_offsets\"");
    *di = dtype_find(e->dtype);
    if (!*di)
        return fs_set_error("fs.io.load: '%s': tensor '%s' has unsupported dtype %s", path,
                            name, e->dtype);
    uint64_t n = 0;
    if (fs_shape_fits(e->ndim, e->shape, (*di)->size, (uint64_t)1 << 62, &n) < 0)
        return fs_set_error("fs.io.load: '%s': tensor '%s' has an impossible shape %s of dtype "
                            "%s: more than 2^62 bytes", path, name,
                            fs_shape_str(e->ndim, e->shape), e->dtype);
    uint64_t nbytes = n * (uint64_t)(*di)->size;
    const int64_t *o = e->offs;
    if (o[0] > o[1] || (uint64_t)o[1] > data_len)
        return fs_set_error("fs.io.load: '%s': tensor '%s' has data_offsets [%lld, %lld] "
                            "outside the %zu data bytes (truncated or corrupt file)", path,
                            name, (long long)o[0], (long long)o[1], data_len);
    if ((uint64_t)(o[1] - o[0]) != nbytes)
        return fs_set_error("fs.io.load: '%s': tensor '%s' of dtype %s and shape %s needs "
                            "%llu bytes but data_offsets [%lld, %lld] span %lld", path, name,
                            e->dtype, fs_shape_str(e->ndim, e->shape),
                            (unsigned long long)nbytes, (long long)o[0], (long long)o[1],
                            (long long)(o[1] - o[0]));
    *numel = n;
    return 0;
}

/* One tensor entry: scan its keys, check them, decode its data into out under name. */
static int parse_entry(jparser *p, const char *name, const unsigned char *data, size_t data_len,
                       fs_tensor_dict *out)
{
    entry_keys e = {.dtype = NULL, .offs = {-1, -1}, .ndim = -1, .have_offs = 0};
    const dtype_info *di = NULL;
    uint64_t numel = 0;
    int rc = -1;
    if (scan_entry(p, &e) < 0 || check_entry(p->path, name, &e, data_len, &di, &numel) < 0)
        goto done;
    if (fs_tensor_dict_find(out, name) >= 0) {
        fs_set_error("fs.io.load: '%s': tensor '%s' appears twice", p->path, name);
        goto done;
    }
    fs_tensor *t = fs_tensor_new(e.ndim, e.shape);
    if (!t)
        goto done;
    if (fs_decode_to_float(fs_data(t), data + e.offs[0], (int64_t)numel, di->kind, di->size,
                           0) < 0 ||
        fs_tensor_dict_add(out, name, t) < 0) {
        fs_tensor_release(t);
        goto done;
    }
    fs_tensor_release(t);
    rc = 0;
done:
    free(e.dtype);
    return rc;
}

static int parse_metadata(jparser *p, fs_tensor_dict *out)
{
    if (jexpect(p, '{') < 0)
        return -1;
    if (jpeek(p) == '}') {
        p->pos++;
        return 0;
    }
    for (;;) {
        char *k = NULL, *v = NULL;
        if (jstring(p, &k) < 0)
            return -1;
        if (jexpect(p, ':') < 0 || (jpeek(p) != '"' ? jerr(p, "metadata values must be strings")
                                                    : jstring(p, &v)) < 0) {
            free(k);
            return -1;
        }
        int r = fs_tensor_dict_add_meta(out, k, v);
        free(k);
        free(v);
        if (r < 0)
            return -1;
        int d = jpeek(p);
        p->pos++;
        if (d == '}')
            return 0;
        if (d != ',')
            return jerr(p, "expected ',' or '}'");
    }
}

int fs_safetensors_parse(const char *path, const unsigned char *buf, size_t len,
                         fs_tensor_dict *out)
{
    fs_tensor_dict_init(out);
    if (len < 8)
        return fs_set_error("fs.io.load: '%s': not a safetensors file (only %zu bytes; the "
                            "8-byte header length is missing)", path, len);
    uint64_t hlen = fs_load_le64(buf);
    if (hlen > len - 8)
        return fs_set_error("fs.io.load: '%s': header length %llu is larger than the file "
                            "(%zu bytes): truncated or not a safetensors file", path,
                            (unsigned long long)hlen, len);
    if (hlen < 2)
        return fs_set_error("fs.io.load: '%s': header length %llu is too small", path,
                            (unsigned long long)hlen);
    jparser p = {path, (const char *)buf + 8, (size_t)hlen, 0};
    const unsigned char *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    if (jexpect(&p, '{') < 0)
        goto fail;
    if (jpeek(&p) == '}')
        p.pos++;
    else
        for (;;) {
            char *name;
            if (jstring(&p, &name) < 0)
                goto fail;
            int r = jexpect(&p, ':');
            if (r == 0)
                r = strcmp(name, "__metadata__") == 0 ? parse_metadata(&p, out)
                                                      : parse_entry(&p, name, data, data_len, out);
            free(name);
            if (r < 0)
                goto fail;
            int d = jpeek(&p);
            p.pos++;
            if (d == '}')
                break;
            if (d != ',') {
                jerr(&p, "expected ',' or '}'");
                goto fail;
            }
        }
    jws(&p);
    while (p.pos < p.n && p.s[p.pos] == 0) /* tolerate NUL padding */
        p.pos++;
    if (p.pos != p.n) {
        jerr(&p, "trailing characters after the header object");
        goto fail;
    }
    return 0;
fail:
    fs_tensor_dict_free(out);
    return -1;
}

int fs_safetensors_read(const char *path, fs_tensor_dict *out)
{
    unsigned char *buf;
    size_t len;
    fs_tensor_dict_init(out);
    if (fs_file_read_all("fs.io.load", path, &buf, &len) < 0)
        return -1;
    int rc = fs_safetensors_parse(path, buf, len, out);
    free(buf);
    return rc;
}

/* ---- writing ---- */

typedef struct { char *s; size_t n, cap; } sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *c = realloc(b->s, cap);
        if (!c)
            return fs_set_error("fs.io.save: out of memory");
        b->s = c;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

static int sb_puts(sbuf *b, const char *s) { return sb_put(b, s, strlen(s)); }

static int sb_json_string(sbuf *b, const char *s)
{
    if (sb_puts(b, "\"") < 0)
        return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            esc[2] = 0;
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
        } else {
            esc[0] = (char)c;
            esc[1] = 0;
        }
        if (sb_puts(b, esc) < 0)
            return -1;
    }
    return sb_puts(b, "\"");
}

static int cmp_names(const void *a, const void *b, void *names)
{
    char **n = names;
    return strcmp(n[*(const int64_t *)a], n[*(const int64_t *)b]);
}

/* insertion-free sort of indices by name (qsort_r is not portable: a simple merge sort) */
static void sort_idx(int64_t *idx, int64_t *tmp, int64_t n, char **names)
{
    if (n < 2)
        return;
    int64_t h = n / 2;
    sort_idx(idx, tmp, h, names);
    sort_idx(idx + h, tmp, n - h, names);
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = cmp_names(&idx[j], &idx[i], names) < 0 ? idx[j++] : idx[i++];
    while (i < h)
        tmp[k++] = idx[i++];
    while (j < n)
        tmp[k++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

int fs_safetensors_write(const char *path, const fs_tensor_dict *d)
{
    sbuf h = {0};
    int64_t *idx = malloc((size_t)(d->n + 1) * sizeof *idx);
    int64_t *tmp = malloc((size_t)(d->n + 1) * sizeof *tmp);
    float *row = NULL;
    int rc = -1;
    fs_atomic_file af = {0};
    if (!idx || !tmp) {
        fs_set_error("fs.io.save: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < d->n; i++) {
        idx[i] = i;
        if (strcmp(d->names[i], "__metadata__") == 0) {
            fs_set_error("fs.io.save: '%s': '__metadata__' is reserved and cannot name a tensor",
                         path);
            goto done;
        }
    }
    sort_idx(idx, tmp, d->n, d->names);
    for (int64_t i = 1; i < d->n; i++)
        if (strcmp(d->names[idx[i]], d->names[idx[i - 1]]) == 0) {
            fs_set_error("fs.io.save: '%s': tensor name '%s' appears twice", path,
                         d->names[idx[i]]);
            goto done;
        }
    if (sb_puts(&h, "{") < 0)
        goto done;
    int first = 1;
    if (d->nmeta) {
        if (sb_puts(&h, "\"__metadata__\":{") < 0)
            goto done;
        for (int64_t i = 0; i < d->nmeta; i++)
            if ((i && sb_puts(&h, ",") < 0) || sb_json_string(&h, d->meta_keys[i]) < 0 ||
                sb_puts(&h, ":") < 0 || sb_json_string(&h, d->meta_values[i]) < 0)
                goto done;
        if (sb_puts(&h, "}") < 0)
            goto done;
        first = 0;
    }
    int64_t off = 0;
    for (int64_t k = 0; k < d->n; k++) {
        const fs_tensor *t = d->tensors[idx[k]];
        char num[64];
        if ((!first && sb_puts(&h, ",") < 0) || sb_json_string(&h, d->names[idx[k]]) < 0 ||
            sb_puts(&h, ":{\"dtype\":\"F32\",\"shape\":[") < 0)
            goto done;
        first = 0;
        for (int dd = 0; dd < t->ndim; dd++) {
            snprintf(num, sizeof num, dd ? ",%lld" : "%lld", (long long)t->size[dd]);
            if (sb_puts(&h, num) < 0)
                goto done;
        }
        int64_t nb = fs_numel(t) * 4;
        snprintf(num, sizeof num, "],\"data_offsets\":[%lld,%lld]}", (long long)off,
                 (long long)(off + nb));
        if (sb_puts(&h, num) < 0)
            goto done;
        off += nb;
    }
    if (sb_puts(&h, "}") < 0)
        goto done;
    while (h.n % 8)
        if (sb_puts(&h, " ") < 0)
            goto done;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    if (fs_atomic_open(&af, "fs.io.save", path) < 0)
        goto done;
    if (fs_atomic_write(&af, lenb, 8) < 0 || fs_atomic_write(&af, h.s, h.n) < 0)
        goto abort;
    for (int64_t k = 0; k < d->n; k++) {
        const fs_tensor *t = d->tensors[idx[k]];
        int64_t n = fs_numel(t);
        const float *src;
        if (fs_is_contiguous(t)) {
            src = fs_data(t);
        } else {
            free(row);
            row = malloc((size_t)(n ? n : 1) * sizeof *row);
            if (!row) {
                fs_set_error("fs.io.save: out of memory");
                goto abort;
            }
            fs_tensor_read(t, row);
            src = row;
        }
        if (fs_host_is_little_endian()) {
            if (fs_atomic_write(&af, src, (size_t)n * 4) < 0)
                goto abort;
        } else {
            for (int64_t i = 0; i < n; i++) {
                union { float f; uint32_t u; } c = {src[i]};
                unsigned char b[4] = {(unsigned char)c.u, (unsigned char)(c.u >> 8),
                                      (unsigned char)(c.u >> 16), (unsigned char)(c.u >> 24)};
                if (fs_atomic_write(&af, b, 4) < 0)
                    goto abort;
            }
        }
    }
    rc = fs_atomic_commit(&af);
    goto done;
abort:
    fs_atomic_abort(&af);
done:
    free(h.s);
    free(idx);
    free(tmp);
    free(row);
    return rc;
}
