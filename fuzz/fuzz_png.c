/* fuzz_png.c - libFuzzer harness for fs_png_parse: the input is a whole PNG file, read as
 * (H, W) gray with raw values and as (3, H, W) RGB normalised (the two ways fs.image.read
 * converts). The build defines FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, under which png.c
 * lets libpng ignore chunk CRCs, so mutated chunks reach the decoder instead of all failing
 * the checksum. */
#include <stdint.h>

#include "fuzz.h"
#include "io/png.h"

#define NAME "fuzz-input.png"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_as(const uint8_t *data, size_t size, int channels, bool normalize)
{
    int depth = -1;
    fs_tensor *t = fs_png_parse(NAME, data, size, channels, normalize, &depth);
    if (!t) {
        fuzz_check_error("fs_png_parse", NAME);
        return;
    }
    fuzz_check_tensor("fs_png_parse", t);
    if (t->ndim != (channels == 1 ? 2 : 3) || (channels == 3 && t->size[0] != 3))
        FUZZ_FAIL("fs_png_parse(channels %d) returned shape %s", channels,
                  fs_shape_str(t->ndim, t->size));
    if (depth != 1 && depth != 2 && depth != 4 && depth != 8 && depth != 16)
        FUZZ_FAIL("fs_png_parse returned bit depth %d", depth);
    fs_tensor_release(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_as(data, size, 1, false);
    read_as(data, size, 3, true);
    return 0;
}
