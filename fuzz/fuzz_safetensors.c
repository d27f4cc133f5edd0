/* fuzz_safetensors.c - libFuzzer harness for fs_safetensors_parse: the input is a whole
 * .safetensors file (u64 header length | JSON header | data). Every tensor and metadata
 * string it returns is released, so LeakSanitizer sees what a failed parse leaves behind. */
#include <stdint.h>

#include "fuzz.h"
#include "io/safetensors.h"

#define NAME "fuzz-input.safetensors"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_tensor_dict d;
    if (fs_safetensors_parse(NAME, data, size, &d) < 0) {
        fuzz_check_error("fs_safetensors_parse", NAME);
        if (d.n || d.nmeta)
            FUZZ_FAIL("fs_safetensors_parse failed but left %lld tensors, %lld metadata",
                      (long long)d.n, (long long)d.nmeta);
        return 0;
    }
    for (int64_t i = 0; i < d.n; i++) {
        if (!d.names[i] || !d.tensors[i])
            FUZZ_FAIL("fs_safetensors_parse returned entry %lld without name or tensor",
                      (long long)i);
        fuzz_check_tensor("fs_safetensors_parse", d.tensors[i]);
    }
    for (int64_t i = 0; i < d.nmeta; i++)
        if (!d.meta_keys[i] || !d.meta_values[i])
            FUZZ_FAIL("fs_safetensors_parse returned metadata %lld without key or value",
                      (long long)i);
    fs_tensor_dict_free(&d);
    return 0;
}
