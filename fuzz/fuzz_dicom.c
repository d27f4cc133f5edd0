/* fuzz_dicom.c - libFuzzer harness for fs_dicom_parse (GDCM behind io/dicom.h). The decoding
 * runs as in production: in a child process (io/dicom.c), so an assertion inside GDCM becomes
 * an error, and this harness checks what fewshot promises around it: any bytes give a tensor
 * or an error naming the file, never a crash, a leak or undefined behaviour in our code (ASan,
 * LSan and UBSan watch the parent: the reading of the child's pipe, the tensor). libFuzzer's
 * coverage does not see into the child, so mutations are guided by the parent's code only;
 * FS_DICOM_IN_PROCESS=1 in the environment fuzzes GDCM itself (its assertions then count as
 * findings). A read with frames= picks the last frame too, so the frame path is exercised. */
#include <stdint.h>

#include "fuzz.h"
#include "io/dicom.h"

#define NAME "fuzz-input.dcm"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_dicom_info info;
    fs_tensor *t = fs_dicom_parse(NAME, data, size, NULL, 0, &info);
    if (!t) {
        fuzz_check_error("fs_dicom_parse", NAME);
        return 0;
    }
    fuzz_check_tensor("fs_dicom_parse", t);
    if (t->size[0] != info.frames || t->size[t->ndim - 1] != info.columns ||
        t->size[t->ndim - 2] != info.rows)
        FUZZ_FAIL("tensor %s disagrees with the info (%lld frames of %lld x %lld)",
                  fs_shape_str(t->ndim, t->size), (long long)info.frames, (long long)info.rows,
                  (long long)info.columns);
    int64_t last = info.frames - 1;
    fs_tensor *u = fs_dicom_parse(NAME, data, size, &last, 1, NULL);
    if (!u)
        FUZZ_FAIL("a read of frame %lld failed after the whole read worked: %s",
                  (long long)info.frames, fs_error());
    int64_t plane = fs_numel(u);
    if (u->size[0] != 1 ||
        memcmp(fs_data(u), fs_data(t) + last * plane, (size_t)plane * sizeof(float)) != 0)
        FUZZ_FAIL("frame %lld read alone differs from the whole read", (long long)info.frames);
    fs_tensor_release(u);
    fs_tensor_release(t);
    return 0;
}
