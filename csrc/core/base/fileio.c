/* fileio.c - whole-file reads, atomic writes (temporary file + rename), scalar decoding. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/error.h"

int fs_file_read_all(const char *op, const char *path, unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fs_set_error("%s: cannot open '%s': %s", op, path, strerror(errno));
    /* a directory opens, and seeks to a size of 2^63 - 1: ask what the path is first */
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return fs_set_error("%s: cannot stat '%s': %s", op, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return fs_set_error("%s: '%s' is %s", op, path,
                            S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    }
    if (st.st_size < 0 || (uint64_t)st.st_size >= SIZE_MAX) {
        fclose(f);
        return fs_set_error("%s: cannot determine the size of '%s'", op, path);
    }
    long long size = (long long)st.st_size;
    unsigned char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return fs_set_error("%s: out of memory reading '%s' (%lld bytes)", op, path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != (size_t)size) {
        free(buf);
        return fs_set_error("%s: error reading '%s'", op, path);
    }
    buf[size] = 0;
    *data = buf;
    *len = (size_t)size;
    return 0;
}

int fs_shape_fits(int ndim, const int64_t *shape, int64_t elem_size, uint64_t max_bytes,
                  uint64_t *numel)
{
    uint64_t bytes = (uint64_t)elem_size, n = 1;
    if (bytes > max_bytes)
        return -1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return -1;
        uint64_t s = (uint64_t)shape[d];
        if (s > 1) {
            if (bytes > max_bytes / s)
                return -1;
            bytes *= s;
        }
        n *= s; /* n <= bytes: no overflow */
    }
    *numel = n;
    return 0;
}

int fs_atomic_open(fs_atomic_file *af, const char *op, const char *path)
{
    af->f = NULL;
    af->op = op;
    af->path = path;
    size_t n = strlen(path);
    af->tmp_path = malloc(n + 16);
    if (!af->tmp_path)
        return fs_set_error("%s: out of memory", op);
    memcpy(af->tmp_path, path, n);
    memcpy(af->tmp_path + n, ".tmp-XXXXXX", 12);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(af->tmp_path);
        af->tmp_path = NULL;
        return fs_set_error("%s: cannot create a temporary file next to '%s': %s", op, path,
                            strerror(e));
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        unlink(af->tmp_path);
        free(af->tmp_path);
        af->tmp_path = NULL;
        return fs_set_error("%s: cannot open a temporary file for '%s'", op, path);
    }
    return 0;
}

int fs_atomic_write(fs_atomic_file *af, const void *data, size_t len)
{
    if (len && fwrite(data, 1, len, af->f) != len)
        return fs_set_error("%s: error writing '%s': %s", af->op, af->path, strerror(errno));
    return 0;
}

void fs_atomic_abort(fs_atomic_file *af)
{
    if (af->f)
        fclose(af->f);
    if (af->tmp_path) {
        unlink(af->tmp_path);
        free(af->tmp_path);
    }
    af->f = NULL;
    af->tmp_path = NULL;
}

/* Flushes the directory entry of path (its folder) to disk, so that a rename survives a power
 * cut as well as the data does. Best effort: a file system that cannot fsync a directory
 * (EINVAL) still has the renamed file. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int fs_atomic_commit(fs_atomic_file *af)
{
    int rc = 0;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0)
        rc = fs_set_error("%s: error writing '%s': %s", af->op, af->path, strerror(errno));
    if (fclose(af->f) != 0 && rc == 0)
        rc = fs_set_error("%s: error closing '%s': %s", af->op, af->path, strerror(errno));
    af->f = NULL;
    if (rc == 0) {
        /* mkstemp creates 0600; give the file the usual permissions. */
        mode_t mask = umask(0);
        umask(mask);
        chmod(af->tmp_path, 0666 & ~mask);
        if (rename(af->tmp_path, af->path) != 0)
            rc = fs_set_error("%s: cannot rename the temporary file to '%s': %s", af->op,
                              af->path, strerror(errno));
        else
            sync_parent_dir(af->path);
    }
    if (rc != 0)
        unlink(af->tmp_path);
    free(af->tmp_path);
    af->tmp_path = NULL;
    return rc;
}

float fs_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | mant << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    union { uint32_t u; float f; } v = {bits};
    return v.f;
}

int fs_decode_to_float(float *out, const unsigned char *src, int64_t n, char kind, int size,
                       int big_endian)
{
    unsigned char tmp[8];
    for (int64_t k = 0; k < n; k++) {
        const unsigned char *p = src + k * size;
        if (big_endian && size > 1) {
            for (int b = 0; b < size; b++)
                tmp[b] = p[size - 1 - b];
            p = tmp;
        }
        float v;
        switch (kind) {
        case 'f':
            if (size == 4) {
                union { uint32_t u; float f; } c = {fs_load_le32(p)};
                v = c.f;
            } else if (size == 8) {
                union { uint64_t u; double d; } c = {fs_load_le64(p)};
                v = (float)c.d;
            } else if (size == 2) {
                v = fs_half_to_float(fs_load_le16(p));
            } else {
                return fs_set_error("decode: float of %d bytes", size);
            }
            break;
        case 'B':
            v = fs_bf16_to_float(fs_load_le16(p));
            break;
        case 'i':
            switch (size) {
            case 1: v = (float)(int8_t)p[0]; break;
            case 2: v = (float)(int16_t)fs_load_le16(p); break;
            case 4: v = (float)(int32_t)fs_load_le32(p); break;
            case 8: v = (float)(int64_t)fs_load_le64(p); break;
            default: return fs_set_error("decode: integer of %d bytes", size);
            }
            break;
        case 'u':
        case 'b':
            switch (size) {
            case 1: v = (float)p[0]; break;
            case 2: v = (float)fs_load_le16(p); break;
            case 4: v = (float)fs_load_le32(p); break;
            case 8: v = (float)fs_load_le64(p); break;
            default: return fs_set_error("decode: integer of %d bytes", size);
            }
            if (kind == 'b')
                v = v != 0.0f;
            break;
        default:
            return fs_set_error("decode: unknown kind '%c'", kind);
        }
        out[k] = v;
    }
    return 0;
}
