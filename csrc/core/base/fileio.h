/* fileio.h - small file helpers shared by the readers/writers (the io/ area):
 * whole-file reads with size checks, atomic writes (a temporary file in the same directory,
 * then rename()), and little-endian scalar decoding. Errors name the file. */
#ifndef FS_FILEIO_H
#define FS_FILEIO_H

#include <stdint.h>
#include <stdio.h>

/* Reads the whole regular file into a malloc'ed buffer (freed with free), NUL-terminated
 * (not counted in len). -1 with a message naming op and the path on failure, among them
 * "<op>: '<path>' is a directory" and "... is not a regular file". */
int fs_file_read_all(const char *op, const char *path, unsigned char **data, size_t *len);

/* Whether a shape read from a file header fits: the product of its sizes times elem_size
 * stays within max_bytes, zero sizes counted as 1 (a tensor's strides still multiply the
 * others). 0 with *numel (0 when a size is 0), or -1 (no message set) when it does not. */
int fs_shape_fits(int ndim, const int64_t *shape, int64_t elem_size, uint64_t max_bytes,
                  uint64_t *numel);

/* An atomic writer: writes go to "<path>.tmp-XXXXXX"; commit flushes, fsyncs and renames
 * it over path; abort removes it. Both close the file. */
typedef struct fs_atomic_file {
    FILE *f;
    char *tmp_path;
    const char *path;
    const char *op;
} fs_atomic_file;

int fs_atomic_open(fs_atomic_file *af, const char *op, const char *path);
int fs_atomic_write(fs_atomic_file *af, const void *data, size_t len);
int fs_atomic_commit(fs_atomic_file *af);
void fs_atomic_abort(fs_atomic_file *af);

static inline int fs_host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Unaligned loads of little-endian values. */
static inline uint64_t fs_load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint32_t fs_load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t fs_load_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* IEEE half and bfloat16 bit patterns to float. */
float fs_half_to_float(uint16_t h);
static inline float fs_bf16_to_float(uint16_t b)
{
    union { uint32_t u; float f; } v = {(uint32_t)b << 16};
    return v.f;
}

/* Decodes n elements of a little- or big-endian scalar type into float.
 * kind: 'f' float, 'i' signed int, 'u' unsigned int, 'b' bool, 'B' bfloat16; size in bytes. */
int fs_decode_to_float(float *out, const unsigned char *src, int64_t n, char kind, int size,
                       int big_endian);

#endif
