/* fuzz_nifti.c - libFuzzer harness for fs_nifti_parse, .nii and .nii.gz in one: the input is
 * parsed as it is (gzip when it starts with 1f 8b, plain otherwise); a plain input is also
 * gzip-compressed here and parsed again, so mutations of the header reach the gzip path too
 * (mutating compressed bytes mostly breaks the stream). Both reads must agree: the same
 * tensor, bit for bit, or the same error message. */
#include <stdint.h>
#include <zlib.h>

#include "fuzz.h"
#include "io/nifti.h"

#define NAME "fuzz-input.nii"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* data -> a malloc'ed gzip stream in *out (NULL when zlib fails). */
static size_t gzip(const uint8_t *data, size_t size, unsigned char **out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    *out = NULL;
    if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    size_t cap = deflateBound(&zs, (uLong)size) + 32;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return 0;
    }
    zs.next_in = (unsigned char *)data;
    zs.avail_in = (uInt)size;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    int r = deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    if (r != Z_STREAM_END) {
        free(buf);
        return 0;
    }
    *out = buf;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_nifti_info info;
    fs_tensor *t = fs_nifti_parse(NAME, data, size, &info);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", t ? "" : fs_error());
    if (!t)
        fuzz_check_error("fs_nifti_parse", NAME);
    else
        fuzz_check_tensor("fs_nifti_parse", t);
    int plain = !(size >= 2 && data[0] == 0x1f && data[1] == 0x8b);
    unsigned char *gz = NULL;
    size_t gzlen = plain ? gzip(data, size, &gz) : 0;
    if (gz) {
        fs_tensor *u = fs_nifti_parse(NAME, gz, gzlen, NULL);
        if (!t != !u)
            FUZZ_FAIL("plain and gzip reads disagree: %s", t ? fs_error() : msg);
        if (!u && strcmp(msg, fs_error()) != 0)
            FUZZ_FAIL("plain and gzip reads fail differently:\n  %s\n  %s", msg, fs_error());
        if (u && (t->ndim != u->ndim || memcmp(t->size, u->size, sizeof t->size) != 0 ||
                  memcmp(fs_data(t), fs_data(u), (size_t)fs_numel(t) * sizeof(float)) != 0))
            FUZZ_FAIL("plain and gzip reads return different tensors %s and %s",
                      fs_shape_str(t->ndim, t->size), fs_shape_str(u->ndim, u->size));
        fs_tensor_release(u);
        free(gz);
    }
    fs_tensor_release(t);
    return 0;
}
