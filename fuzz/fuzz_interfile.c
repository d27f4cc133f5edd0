/* fuzz_interfile.c - libFuzzer harness for fs_interfile_parse_header and fs_interfile_parse:
 * the input is the header text up to the first NUL byte, then the data file's bytes (none
 * when there is no NUL). The header alone is parsed first, then header and data; the two
 * must agree on the header's fields. */
#include <stdint.h>

#include "fuzz.h"
#include "io/interfile.h"

#define NAME "fuzz-dir/fuzz-input.hv"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t hlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *body = nul ? nul + 1 : data + size;
    size_t blen = size - (size_t)(body - data);

    fs_interfile_info hinfo, info;
    int hrc = fs_interfile_parse_header(NAME, (const char *)data, hlen, &hinfo);
    if (hrc < 0)
        fuzz_check_error("fs_interfile_parse_header", NAME);
    fs_tensor *t = fs_interfile_parse(NAME, (const char *)data, hlen, body, blen, &info);
    if (!t) {
        fuzz_check_error("fs_interfile_parse", NAME);
        return 0;
    }
    if (hrc < 0)
        FUZZ_FAIL("the header alone fails but header and data read");
    fuzz_check_tensor("fs_interfile_parse", t);
    if (memcmp(hinfo.dim, info.dim, sizeof info.dim) != 0 ||
        hinfo.data_offset != info.data_offset || hinfo.bytes_per_pixel != info.bytes_per_pixel)
        FUZZ_FAIL("parse_header and parse disagree on the header");
    int64_t n = info.dim[0] * info.dim[1] * info.dim[2];
    if (n != fs_numel(t) || info.data_offset + n * info.bytes_per_pixel > (int64_t)blen)
        FUZZ_FAIL("fs_interfile_parse returned %s from %zu data bytes",
                  fs_shape_str(t->ndim, t->size), blen);
    fs_tensor_release(t);
    return 0;
}
