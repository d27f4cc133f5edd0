/* fuzz_idx.c - libFuzzer harness for fs_idx_parse: the input is a whole IDX file, plain or
 * gzip-compressed (magic, type, ndim, big-endian sizes, data). */
#include <stdint.h>

#include "fuzz.h"
#include "io/idx.h"

#define NAME "fuzz-input.idx"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_tensor *t = fs_idx_parse(NAME, data, size);
    if (!t) {
        fuzz_check_error("fs_idx_parse", NAME);
        return 0;
    }
    fuzz_check_tensor("fs_idx_parse", t);
    fs_tensor_release(t);
    return 0;
}
