/* interfile.c - Interfile 3.3 headers and their raw data files (SIMIND, STIR, GATE).
 *
 * Header lines are "key := value"; keys are matched after lower-casing and removing '!' and
 * all white space ("!Matrix Size [1]" == "matrix size[1]"); ';' starts a comment. Read keys:
 *   name of data file (relative to the header's directory), number format ("float",
 *   "short float" = 4-byte IEEE, "long float" = 8, "signed integer", "unsigned integer"),
 *   number of bytes per pixel, matrix size [1] [2] [3], total number of images /
 *   number of images/energy window / number of slices / number of projections,
 *   scaling factor (mm/pixel) [1] [2] [3], slice thickness (pixels), imagedata byte order
 *   (default BIGENDIAN as the 3.3 standard says), data offset in bytes, data starting block
 *   (x 2048), data rescale slope / offset and image scaling factor[1] (applied).
 * The volume comes back as (z, y, x), or (y, x) for one image.
 * Write: float32 little-endian, header keys as STIR writes them.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

fs_tensor *fs_interfile_read(const char *path, fs_interfile_info *info)
{
    fs_interfile_info tmp;
    if (!info)
        info = &tmp;
    memset(info, 0, sizeof *info);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fs_set_error("load_interfile: %s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(MAX_HEADER + 1);
    if (!text) {
        fclose(f);
        fs_set_error("load_interfile: %s: out of memory", path);
        return NULL;
    }
    size_t len = fread(text, 1, MAX_HEADER, f);
    fclose(f);
    text[len] = 0;

    double msize[3] = {0, 0, 0}, scale[3] = {0, 0, 0}, nimages = 0, thick = 0;
    double bpp = 0, offset = 0, block = -1, slope = 1, inter = 0, isf = 1;
    char fmt[32] = "", order[32] = "", datafile[1024] = "";
    int seen_interfile = 0, first = 1, nlines = 0;
    const char *err = NULL;
    char errbuf[400];
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
        char key[128];
        if (sep) {
            canon(line, (size_t)(sep - line), key, sizeof key);
            char *val = sep + 2;
            trim(val);
            if (first && strcmp(key, "interfile") != 0) {
                err = "not an Interfile header (the first key is not !INTERFILE)";
                break;
            }
            first = 0;
            double d = 0;
            int isnum = parse_num(val, &d) == 0;
            if (strcmp(key, "interfile") == 0)
                seen_interfile = 1;
            else if (strcmp(key, "nameofdatafile") == 0)
                snprintf(datafile, sizeof datafile, "%s", val);
            else if (strcmp(key, "numberformat") == 0) {
                size_t k = 0;
                for (; val[k] && k + 1 < sizeof fmt; k++)
                    fmt[k] = (char)tolower((unsigned char)val[k]);
                fmt[k] = 0;
            } else if (strcmp(key, "imagedatabyteorder") == 0) {
                canon(val, strlen(val), order, sizeof order);
            } else if (strncmp(key, "matrixsize[", 11) == 0 || strncmp(key, "scalingfactor(mm/pixel)[", 24) == 0) {
                int is_m = key[0] == 'm';
                const char *b = strchr(key, '[');
                int idx = b ? atoi(b + 1) : 0;
                if (idx >= 1 && idx <= 3) {
                    if (!isnum) {
                        snprintf(errbuf, sizeof errbuf, "bad number '%.60s' for key %.60s (line %d)", val, key, nlines);
                        err = errbuf;
                        break;
                    }
                    if (is_m)
                        msize[idx - 1] = d;
                    else
                        scale[idx - 1] = d;
                }
            } else if (isnum) {
                if (strcmp(key, "numberofbytesperpixel") == 0) bpp = d;
                else if (strcmp(key, "totalnumberofimages") == 0) nimages = d;
                else if (strcmp(key, "numberofimages/energywindow") == 0 && nimages == 0) nimages = d;
                else if (strcmp(key, "numberofslices") == 0 && nimages == 0) nimages = d;
                else if (strcmp(key, "numberofprojections") == 0 && nimages == 0) nimages = d;
                else if (strcmp(key, "slicethickness(pixels)") == 0) thick = d;
                else if (strcmp(key, "dataoffsetinbytes") == 0) offset = d;
                else if (strcmp(key, "datastartingblock") == 0) block = d;
                else if (strcmp(key, "datarescaleslope") == 0) slope = d;
                else if (strcmp(key, "datarescaleoffset") == 0) inter = d;
                else if (strcmp(key, "imagescalingfactor[1]") == 0) isf = d;
            }
        }
        line = next;
    }
    free(text);
    if (!err && !seen_interfile)
        err = "not an Interfile header (no !INTERFILE key)";
    if (!err && !datafile[0])
        err = "missing key 'name of data file'";
    if (!err && (msize[0] < 1 || msize[1] < 1 || msize[0] > 65536 || msize[1] > 65536 ||
                 msize[0] != floor(msize[0]) || msize[1] != floor(msize[1])))
        err = "missing or bad 'matrix size [1]' / 'matrix size [2]'";
    if (err) {
        fs_set_error("load_interfile: %s: %s", path, err);
        return NULL;
    }
    double nz = msize[2] >= 1 ? msize[2] : nimages >= 1 ? nimages : 1;
    if (nz > 65536 || nz != floor(nz)) {
        fs_set_error("load_interfile: %s: bad number of images %g", path, nz);
        return NULL;
    }
    /* number format */
    int kind; /* 0 float, 1 signed, 2 unsigned */
    if (!fmt[0] || strcmp(fmt, "float") == 0 || strcmp(fmt, "short float") == 0 ||
        strcmp(fmt, "long float") == 0) {
        kind = 0;
        if (bpp == 0)
            bpp = strcmp(fmt, "long float") == 0 ? 8 : 4;
        if (!fmt[0])
            snprintf(fmt, sizeof fmt, "float");
    } else if (strcmp(fmt, "signed integer") == 0) {
        kind = 1;
        if (bpp == 0) bpp = 2;
    } else if (strcmp(fmt, "unsigned integer") == 0) {
        kind = 2;
        if (bpp == 0) bpp = 2;
    } else {
        fs_set_error("load_interfile: %s: unsupported number format '%s'", path, fmt);
        return NULL;
    }
    int b = (int)bpp;
    if (!((kind == 0 && (b == 4 || b == 8)) || (kind > 0 && (b == 1 || b == 2 || b == 4)))) {
        fs_set_error("load_interfile: %s: unsupported %d bytes per pixel for '%s'", path, b, fmt);
        return NULL;
    }
    int big;
    if (!order[0] || strcmp(order, "bigendian") == 0)
        big = 1;
    else if (strcmp(order, "littleendian") == 0)
        big = 0;
    else {
        fs_set_error("load_interfile: %s: unknown imagedata byte order '%s'", path, order);
        return NULL;
    }
    if (block >= 0)
        offset = block * 2048;
    if (offset < 0 || offset != floor(offset)) {
        fs_set_error("load_interfile: %s: bad data offset %g", path, offset);
        return NULL;
    }
    /* the data file, relative to the header's directory */
    if (datafile[0] == '/') {
        snprintf(info->data_file, sizeof info->data_file, "%s", datafile);
    } else {
        const char *slash = strrchr(path, '/');
        int dirlen = slash ? (int)(slash - path + 1) : 0;
        if (dirlen + strlen(datafile) >= sizeof info->data_file) {
            fs_set_error("load_interfile: %s: data file path too long", path);
            return NULL;
        }
        memcpy(info->data_file, path, (size_t)dirlen);
        strcpy(info->data_file + dirlen, datafile);
    }
    info->dim[0] = (int64_t)msize[0];
    info->dim[1] = (int64_t)msize[1];
    info->dim[2] = (int64_t)nz;
    info->ndim = nz > 1 ? 3 : 2;
    info->spacing_mm[0] = scale[0] > 0 ? scale[0] : 1.0;
    info->spacing_mm[1] = scale[1] > 0 ? scale[1] : info->spacing_mm[0];
    info->spacing_mm[2] = scale[2] > 0 ? scale[2] : thick > 0 ? thick * info->spacing_mm[0]
                                                              : info->spacing_mm[0];
    snprintf(info->number_format, sizeof info->number_format, "%s", fmt);
    info->bytes_per_pixel = b;
    info->big_endian = big;
    info->data_offset = (int64_t)offset;
    info->rescale_slope = slope * isf;
    info->rescale_offset = inter;

    int64_t nvox = info->dim[0] * info->dim[1] * info->dim[2];
    int64_t nbytes = nvox * b;
    FILE *df = fopen(info->data_file, "rb");
    if (!df) {
        fs_set_error("load_interfile: %s: cannot open data file %s (%s)", path, info->data_file,
                     strerror(errno));
        return NULL;
    }
    fseek(df, 0, SEEK_END);
    long fsize = ftell(df);
    if (fsize < 0 || (int64_t)fsize < info->data_offset + nbytes) {
        fclose(df);
        fs_set_error("load_interfile: %s: data file %s is truncated: %lld bytes expected from "
                     "offset %lld, file has %ld", path, info->data_file, (long long)nbytes,
                     (long long)info->data_offset, fsize);
        return NULL;
    }
    unsigned char *raw = malloc((size_t)nbytes);
    if (!raw) {
        fclose(df);
        fs_set_error("load_interfile: %s: out of memory", path);
        return NULL;
    }
    fseek(df, (long)info->data_offset, SEEK_SET);
    size_t got = fread(raw, 1, (size_t)nbytes, df);
    fclose(df);
    if ((int64_t)got != nbytes) {
        free(raw);
        fs_set_error("load_interfile: %s: short read from %s", path, info->data_file);
        return NULL;
    }
    int64_t size[3] = {info->dim[2], info->dim[1], info->dim[0]};
    fs_tensor *out = info->ndim == 3 ? fs_tensor_new(3, size) : fs_tensor_new(2, size + 1);
    if (!out) {
        free(raw);
        return NULL;
    }
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
    free(raw);
    return out;
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
