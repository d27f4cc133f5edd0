/* fuzz_npy.c - libFuzzer harness for fs_npy_parse: the input is a whole .npy file
 * (magic, version, header length, Python dict header, data). */
#include <stdint.h>

#include "fuzz.h"
#include "io/npy.h"

#define NAME "fuzz-input.npy"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_tensor *t = fs_npy_parse(NAME, data, size);
    if (!t) {
        fuzz_check_error("fs_npy_parse", NAME);
        return 0;
    }
    fuzz_check_tensor("fs_npy_parse", t);
    fs_tensor_release(t);
    return 0;
}
