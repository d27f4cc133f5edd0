/* fuzz_spec.c - libFuzzer harness for fs_module_spec_check: the input is a checkpoint's stored
 * constructor text ("resnet18{in_channels=1, num_classes=0}", "sequential{conv2d{...}, relu{}}"),
 * which fs.nn.load parses before building anything. The parser must accept or refuse any bytes
 * with a message; building is left out (a valid text may ask for gigabytes, which the
 * constructors refuse or allocate as asked, not a parser's concern). */
#include <stdint.h>

#include "fuzz.h"
#include "module/module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (fs_module_spec_check(text) < 0 && fs_error()[0] == '\0')
        FUZZ_FAIL("fs_module_spec_check refused a text without a message");
    free(text);
    return 0;
}
