/* interfile.c - Interfile 3.3 headers and their raw data files (SIMIND, STIR, GATE).
 *
 * Header lines are "key := value"; keys are matched after lower-casing and removing '!' and
 * all white space ("!Matrix Size [1]" == "matrix size[1]"); ';' starts a comment. Read keys:
 *   name of data file (relative to the header's directory), number format ("float",
 *   "short float" = 4-byte IEEE, "long float" = 8, "signed integer", "unsigned integer"),
 *   number of bytes per pixel, matrix size [1] [2] [3], total number of images /
 *   number of images/energy window / number of slices / number of projections,
 *   scaling factor (mm/pixel) [1] [2] [3], slice thickness (pixels), imagedata byte order
 *   (default BIGENDIAN as the 3.3 standard says), data offset in bytes (or bytes[1], as STIR
 *   writes it), data starting block (x 2048), data rescale slope / offset and image scaling
 *   factor[1] (applied). Every number that becomes an integer is range-checked first; an
 *   error names the key, the value and the file.
 * The volume comes back as (z, y, x), or (y, x) for one image.
 * fs_interfile_parse_header / fs_interfile_parse read a header (and its data) held in memory;
 * fs_interfile_read reads both files and calls them.
 * Write: float32 little-endian, header keys as STIR writes them.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "io/interfile.h"

#define MAX_HEADER (1 << 20)

static void canon(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '!' || isspace(c))
            continue;
        out[k++] = (char)tolower(c);
    }
    out[k] = 0;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i]))
        i++;
    memmove(s, s + i, strlen(s + i) + 1);
}

static int parse_num(const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || errno)
        return -1;
    while (*end && isspace((unsigned char)*end))
        end++;
    if (*end)
        return -1;
    *out = d;
    return 0;
}

/* ---- reading: scan the keys, check them, decode the data ---- */

/* The keys as found in the header, before any check. */
enum { SEEN_MSIZE = 1, SEEN_BPP = 8, SEEN_OFFSET = 16, SEEN_BLOCK = 32, SEEN_NIMAGES = 64 };
typedef struct {
    double msize[3], scale[3], nimages, thick;
    double bpp, offset, block, slope, inter, isf;
    char fmt[32], order[32], datafile[1024];
    char nimages_key[40];     /* which key gave nimages, for messages */
    int seen_interfile;
    unsigned seen;            /* SEEN_MSIZE << (index - 1), SEEN_BPP, ... */
} header_keys;

/* One "key := value" line (key canonical, value trimmed) into k; err on a bad value. */
static int scan_key(header_keys *k, const char *key, const char *val, int line, char *err,
                    size_t cap)
{
    double d = 0;
    int isnum = parse_num(val, &d) == 0;
    if (strcmp(key, "interfile") == 0) {
        k->seen_interfile = 1;
    } else if (strcmp(key, "nameofdatafile") == 0) {
        /* cut short, it could name another file that exists */
        size_t n = strlen(val);
        if (n >= sizeof k->datafile) {
            snprintf(err, cap, "'name of data file' is %zu bytes long, at most %zu are read "
                     "(line %d)", n, sizeof k->datafile - 1, line);
            return -1;
        }
        memcpy(k->datafile, val, n + 1);
    } else if (strcmp(key, "numberformat") == 0) {
        size_t i = 0;
        for (; val[i] && i + 1 < sizeof k->fmt; i++)
            k->fmt[i] = (char)tolower((unsigned char)val[i]);
        k->fmt[i] = 0;
    } else if (strcmp(key, "imagedatabyteorder") == 0) {
        canon(val, strlen(val), k->order, sizeof k->order);
    } else if (strncmp(key, "matrixsize[", 11) == 0 ||
               strncmp(key, "scalingfactor(mm/pixel)[", 24) == 0) {
        const char *b = strchr(key, '[');
        int idx = b ? atoi(b + 1) : 0;
        if (idx >= 1 && idx <= 3) {
            if (!isnum) {
                snprintf(err, cap, "bad number '%.60s' for key %.60s (line %d)", val, key, line);
                return -1;
            }
            if (key[0] == 'm') {
                k->msize[idx - 1] = d;
                k->seen |= SEEN_MSIZE << (idx - 1);
            } else {
                k->scale[idx - 1] = d;
            }
        }
    } else if (isnum) {
        static const struct { const char *key, *name; int fallback; } images[] = {
            {"totalnumberofimages", "total number of images", 0},
            {"numberofimages/energywindow", "number of images/energy window", 1},
            {"numberofslices", "number of slices", 1},
            {"numberofprojections", "number of projections", 1},
        };
        for (size_t i = 0; i < sizeof images / sizeof images[0]; i++)
            if (strcmp(key, images[i].key) == 0 && !(images[i].fallback && k->nimages != 0)) {
                k->nimages = d;
                k->seen |= SEEN_NIMAGES;
                snprintf(k->nimages_key, sizeof k->nimages_key, "%s", images[i].name);
            }
        /* STIR writes the offset of the first (only) dataset with an index */
        int is_offset = strcmp(key, "dataoffsetinbytes") == 0 ||
                        strcmp(key, "dataoffsetinbytes[1]") == 0;
        if (strcmp(key, "numberofbytesperpixel") == 0) { k->bpp = d; k->seen |= SEEN_BPP; }
        else if (strcmp(key, "slicethickness(pixels)") == 0) k->thick = d;
        else if (is_offset) { k->offset = d; k->seen |= SEEN_OFFSET; }
        else if (strcmp(key, "datastartingblock") == 0) { k->block = d; k->seen |= SEEN_BLOCK; }
        else if (strcmp(key, "datarescaleslope") == 0) k->slope = d;
        else if (strcmp(key, "datarescaleoffset") == 0) k->inter = d;
        else if (strcmp(key, "imagescalingfactor[1]") == 0) k->isf = d;
    }
    return 0;
}

/* Splits text (NUL-terminated, modified in place) into lines and scans their keys. */
static int scan_header(const char *name, char *text, header_keys *k)
{
    memset(k, 0, sizeof *k);
    k->slope = 1;
    k->isf = 1;
    int first = 1, nlines = 0;
    char err[400];
    for (char *line = text; line && *line;) {
        char *nl = strpbrk(line, "\r\n");
        if (nl)
            *nl = 0;
        char *next = nl ? nl + 1 : NULL;
        nlines++;
        char *semi = strchr(line, ';');
        if (semi)
            *semi = 0;
        char *sep = strstr(line, ":=");
        if (sep) {
            char key[128];
            canon(line, (size_t)(sep - line), key, sizeof key);
            char *val = sep + 2;
            trim(val);
            if (first && strcmp(key, "interfile") != 0)
                return fs_set_error("load_interfile: %s: not an Interfile header (the first key "
                                    "is not !INTERFILE)", name);
            first = 0;
            if (scan_key(k, key, val, nlines, err, sizeof err) < 0)
                return fs_set_error("load_interfile: %s: %s", name, err);
        }
        line = next;
    }
    return 0;
}

/* 0 float, 1 signed integer, 2 unsigned integer; -1 for an unsupported format. */
static int format_kind(const char *fmt)
{
    if (!fmt[0] || strcmp(fmt, "float") == 0 || strcmp(fmt, "short float") == 0 ||
        strcmp(fmt, "long float") == 0)
        return 0;
    if (strcmp(fmt, "signed integer") == 0)
        return 1;
    if (strcmp(fmt, "unsigned integer") == 0)
        return 2;
    return -1;
}

/* The data file, relative to the header's directory, into info->data_file. */
static int resolve_data_file(const char *name, const char *datafile, fs_interfile_info *info)
{
    if (datafile[0] == '/') {
        snprintf(info->data_file, sizeof info->data_file, "%s", datafile);
        return 0;
    }
    const char *slash = strrchr(name, '/');
    size_t dirlen = slash ? (size_t)(slash - name + 1) : 0;
    if (dirlen + strlen(datafile) >= sizeof info->data_file)
        return fs_set_error("load_interfile: %s: data file path too long", name);
    memcpy(info->data_file, name, dirlen);
    strcpy(info->data_file + dirlen, datafile);
    return 0;
}

/* A header number that becomes an integer: checked to be one, in lo..hi, before the
 * conversion (a double outside int64's range converts to anything). */
static int int_key(const char *name, const char *key, double v, double lo, double hi,
                   int64_t *out)
{
    if (!(v >= lo && v <= hi && v == floor(v)))
        return fs_set_error("load_interfile: %s: '%s' := %g is not an integer in %.0f..%.0f",
                            name, key, v, lo, hi);
    *out = (int64_t)v;
    return 0;
}

/* The largest data offset taken: 2^53, where doubles still hold every integer. */
#define MAX_OFFSET 9007199254740992.0

/* The sizes and the offset: every number range-checked before it becomes an integer. */
static int check_sizes(const char *name, header_keys *k, int64_t dim[3], int64_t *offset)
{
    static const char *msize_key[3] = {"matrix size [1]", "matrix size [2]", "matrix size [3]"};
    for (int i = 0; i < 3; i++) {
        dim[i] = 1;
        if (!(k->seen & (SEEN_MSIZE << i))) {
            if (i < 2)
                return fs_set_error("load_interfile: %s: missing key '%s'", name, msize_key[i]);
            continue;
        }
        if (int_key(name, msize_key[i], k->msize[i], 1, 65536, &dim[i]) < 0)
            return -1;
    }
    if (!(k->seen & (SEEN_MSIZE << 2)) && (k->seen & SEEN_NIMAGES)) {
        int64_t nimages = 0;
        if (int_key(name, k->nimages_key, k->nimages, 0, 65536, &nimages) < 0)
            return -1;
        dim[2] = nimages >= 1 ? nimages : 1;
    }
    *offset = 0;
    if (k->seen & SEEN_BLOCK) {
        int64_t block = 0;
        if (int_key(name, "data starting block", k->block, 0, MAX_OFFSET / 2048, &block) < 0)
            return -1;
        *offset = block * 2048;
    } else if (k->seen & SEEN_OFFSET) {
        if (int_key(name, "data offset in bytes", k->offset, 0, MAX_OFFSET, offset) < 0)
            return -1;
    }
    return 0;
}

/* Checks the scanned keys and fills info. */
static int check_keys(const char *name, header_keys *k, fs_interfile_info *info)
{
    if (!k->seen_interfile)
        return fs_set_error("load_interfile: %s: not an Interfile header (no !INTERFILE key)",
                            name);
    if (!k->datafile[0])
        return fs_set_error("load_interfile: %s: missing key 'name of data file'", name);
    int64_t dim[3], offset = 0;
    if (check_sizes(name, k, dim, &offset) < 0)
        return -1;
    int kind = format_kind(k->fmt);
    if (kind < 0)
        return fs_set_error("load_interfile: %s: unsupported number format '%s'", name, k->fmt);
    int64_t b = kind == 0 ? (strcmp(k->fmt, "long float") == 0 ? 8 : 4) : 2;
    if ((k->seen & SEEN_BPP) &&
        int_key(name, "number of bytes per pixel", k->bpp, 1, 8, &b) < 0)
        return -1;
    if (!k->fmt[0])
        snprintf(k->fmt, sizeof k->fmt, "float");
    if (!((kind == 0 && (b == 4 || b == 8)) || (kind > 0 && (b == 1 || b == 2 || b == 4))))
        return fs_set_error("load_interfile: %s: unsupported %d bytes per pixel for '%s'", name,
                            (int)b, k->fmt);
    int big;
    if (!k->order[0] || strcmp(k->order, "bigendian") == 0)
        big = 1;
    else if (strcmp(k->order, "littleendian") == 0)
        big = 0;
    else
        return fs_set_error("load_interfile: %s: unknown imagedata byte order '%s'", name,
                            k->order);
    if (resolve_data_file(name, k->datafile, info) < 0)
        return -1;
    memcpy(info->dim, dim, sizeof info->dim);
    info->ndim = dim[2] > 1 ? 3 : 2;
    const double *sc = k->scale;
    info->spacing_mm[0] = sc[0] > 0 ? sc[0] : 1.0;
    info->spacing_mm[1] = sc[1] > 0 ? sc[1] : info->spacing_mm[0];
    info->spacing_mm[2] = sc[2] > 0 ? sc[2] : k->thick > 0 ? k->thick * info->spacing_mm[0]
                                                          : info->spacing_mm[0];
    snprintf(info->number_format, sizeof info->number_format, "%s", k->fmt);
    info->bytes_per_pixel = (int)b;
    info->big_endian = big;
    info->data_offset = offset;
    info->rescale_slope = k->slope * k->isf;
    info->rescale_offset = k->inter;
    return 0;
}

int fs_interfile_parse_header(const char *name, const char *text, size_t len,
                              fs_interfile_info *info)
{
    memset(info, 0, sizeof *info);
    if (len > MAX_HEADER)
        len = MAX_HEADER;
    char *copy = malloc(len + 1);
    if (!copy)
        return fs_set_error("load_interfile: %s: out of memory", name);
    memcpy(copy, text, len);
    copy[len] = 0;
    header_keys k;
    int rc = scan_header(name, copy, &k);
    free(copy);
    return rc < 0 ? -1 : check_keys(name, &k, info);
}

/* The raw data (info's layout, from data[info->data_offset]) -> a (z, y, x) or (y, x) tensor
 * with the rescale applied. */
static fs_tensor *decode_data(const char *name, const fs_interfile_info *info,
                              const unsigned char *data, size_t len)
{
    int b = info->bytes_per_pixel, big = info->big_endian;
    int kind = format_kind(info->number_format);
    int64_t nvox = info->dim[0] * info->dim[1] * info->dim[2];
    int64_t nbytes = nvox * b;
    if (info->data_offset > (int64_t)len || nbytes > (int64_t)len - info->data_offset) {
        fs_set_error("load_interfile: %s: data file %s is truncated: %lld bytes expected from "
                     "offset %lld, file has %zu", name, info->data_file, (long long)nbytes,
                     (long long)info->data_offset, len);
        return NULL;
    }
    int64_t size[3] = {info->dim[2], info->dim[1], info->dim[0]};
    fs_tensor *out = info->ndim == 3 ? fs_tensor_new(3, size) : fs_tensor_new(2, size + 1);
    if (!out)
        return NULL;
    const unsigned char *raw = data + info->data_offset;
    float *o = fs_data(out);
    for (int64_t i = 0; i < nvox; i++) {
        const unsigned char *p = raw + i * b;
        uint64_t u = 0;
        for (int k = 0; k < b; k++)
            u |= (uint64_t)p[big ? k : b - 1 - k] << (8 * (b - 1 - k));
        double v;
        if (kind == 0) {
            if (b == 4) { uint32_t w = (uint32_t)u; float fl; memcpy(&fl, &w, 4); v = fl; }
            else { double dd; memcpy(&dd, &u, 8); v = dd; }
        } else if (kind == 1) {
            int shift = 64 - 8 * b;
            v = (double)((int64_t)(u << shift) >> shift);
        } else {
            v = (double)u;
        }
        o[i] = (float)(v * info->rescale_slope + info->rescale_offset);
    }
    return out;
}

fs_tensor *fs_interfile_parse(const char *name, const char *text, size_t len,
                              const unsigned char *data, size_t data_len,
                              fs_interfile_info *info)
{
    fs_interfile_info tmp;
    if (!info)
        info = &tmp;
    if (fs_interfile_parse_header(name, text, len, info) < 0)
        return NULL;
    return decode_data(name, info, data, data_len);
}

fs_tensor *fs_interfile_read(const char *path, fs_interfile_info *info)
{
    fs_interfile_info tmp;
    if (!info)
        info = &tmp;
    unsigned char *text, *data;
    size_t len, data_len;
    if (fs_file_read_all("load_interfile", path, &text, &len) < 0)
        return NULL;
    int rc = fs_interfile_parse_header(path, (const char *)text, len, info);
    free(text);
    if (rc < 0)
        return NULL;
    struct stat st;
    if (stat(info->data_file, &st) != 0) {
        fs_set_error("load_interfile: %s: cannot open data file %s (%s)", path, info->data_file,
                     strerror(errno));
        return NULL;
    }
    if (fs_file_read_all("load_interfile", info->data_file, &data, &data_len) < 0)
        return NULL;
    fs_tensor *t = decode_data(path, info, data, data_len);
    free(data);
    return t;
}

int fs_interfile_write(const char *path, const fs_tensor *t, const double *spacing_mm)
{
    if (t->ndim != 2 && t->ndim != 3)
        return fs_set_error("save_interfile: %s: need a (y, x) or (z, y, x) tensor, got %s", path,
                            FS_SHAPE(t));
    int64_t nx = t->size[t->ndim - 1], ny = t->size[t->ndim - 2], nz = t->ndim == 3 ? t->size[0] : 1;
    double sp[3] = {1, 1, 1};
    if (spacing_mm)
        for (int i = 0; i < 3; i++)
            sp[i] = spacing_mm[i] > 0 ? spacing_mm[i] : 1.0;
    /* data file name: header extension .h33 -> .i33, .hv -> .v, else -> .img */
    size_t plen = strlen(path);
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && slash && dot < slash)
        dot = NULL;
    size_t stem = dot ? (size_t)(dot - path) : plen;
    const char *ext = dot && strcmp(dot, ".h33") == 0 ? ".i33" : dot && strcmp(dot, ".hv") == 0 ? ".v" : ".img";
    if (dot && strcmp(dot, ext) == 0)
        return fs_set_error("save_interfile: %s: the header would overwrite its data file", path);
    char *data = malloc(stem + 8), *tmpd = malloc(stem + 40), *tmph = malloc(plen + 32);
    int64_t n = fs_numel(t);
    float *vals = fs_alloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    int rc = -1, e = 0;
    FILE *f = NULL;
    if (!data || !tmpd || !tmph || !vals) {
        fs_set_error("save_interfile: %s: out of memory", path);
        goto done;
    }
    snprintf(data, stem + 8, "%.*s%s", (int)stem, path, ext);
    snprintf(tmpd, stem + 40, "%s.tmp%ld", data, (long)getpid());
    snprintf(tmph, plen + 32, "%s.tmp%ld", path, (long)getpid());
    fs_tensor_read(t, vals);
    f = fopen(tmpd, "wb");
    if (!f)
        goto ioerr;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        unsigned char le[4] = {(unsigned char)(u & 0xff), (unsigned char)(u >> 8 & 0xff),
                               (unsigned char)(u >> 16 & 0xff), (unsigned char)(u >> 24)};
        if (fwrite(le, 1, 4, f) != 4)
            goto ioerr;
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto ioerr;
    }
    f = fopen(tmph, "w");
    if (!f)
        goto ioerr;
    const char *base = strrchr(data, '/');
    base = base ? base + 1 : data;
    fprintf(f, "!INTERFILE :=\n!imaging modality := nucmed\n!version of keys := 3.3\n"
               "!GENERAL DATA :=\n!name of data file := %s\n!GENERAL IMAGE DATA :=\n"
               "!type of data := Tomographic\nimagedata byte order := LITTLEENDIAN\n"
               "!number format := float\n!number of bytes per pixel := 4\n"
               "number of dimensions := 3\n!matrix size [1] := %lld\n!matrix size [2] := %lld\n"
               "!matrix size [3] := %lld\nscaling factor (mm/pixel) [1] := %.9g\n"
               "scaling factor (mm/pixel) [2] := %.9g\nscaling factor (mm/pixel) [3] := %.9g\n"
               "!total number of images := %lld\nslice thickness (pixels) := %.9g\n"
               "data offset in bytes := 0\n!END OF INTERFILE :=\n",
            base, (long long)nx, (long long)ny, (long long)nz, sp[0], sp[1], sp[2], (long long)nz,
            sp[2] / sp[0]);
    if (fclose(f) != 0) {
        f = NULL;
        goto ioerr;
    }
    f = NULL;
    if (rename(tmpd, data) != 0 || rename(tmph, path) != 0)
        goto ioerr;
    rc = 0;
    goto done;
ioerr:
    e = errno;
    if (f)
        fclose(f);
    remove(tmpd);
    remove(tmph);
    fs_set_error("save_interfile: %s: cannot write (%s)", path, strerror(e));
done:
    free(data);
    free(tmpd);
    free(tmph);
    fs_free(vals);
    return rc;
}
