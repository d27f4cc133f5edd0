/* test_dicom.c - the DICOM reader through the static core library alone (no Lua): GDCM and the
 * C++ runtime come in on the link line, the decoding runs in its child process, and the
 * values and geometry match pydicom's (spec/fixtures/dicom/expected.lua, MR_small.dcm). */
#include "base/error.h"
#include "check.h"
#include "io/dicom.h"
#include "tensor/tensor.h"

int main(void)
{
    fs_dicom_info info;
    fs_tensor *t = fs_dicom_read("spec/fixtures/dicom/MR_small.dcm", NULL, 0, &info);
    if (CHECK(t != NULL, "MR_small.dcm reads")) {
        CHECK(t->ndim == 3 && t->size[0] == 1 && t->size[1] == 64 && t->size[2] == 64,
              "as (1, 64, 64)");
        const float *v = fs_data(t);
        double sum = 0;
        for (int64_t i = 0; i < fs_numel(t); i++)
            sum += v[i];
        CHECK_NEAR(sum, 2125338.0, 0.0, "its sum is pydicom's");
        CHECK_NEAR(v[0], 905.0, 0.0, "its first value is pydicom's");
        CHECK_NEAR(info.pixel_spacing[0], 0.3125, 1e-12, "row spacing 0.3125 mm");
        CHECK(strcmp(info.modality, "MR") == 0, "modality MR");
        CHECK(strcmp(info.transfer_syntax_uid, "1.2.840.10008.1.2.1") == 0, "explicit VR LE");
    }
    fs_tensor_release(t);
    int64_t frame = 4;
    t = fs_dicom_read("spec/fixtures/dicom/MR_small.dcm", &frame, 1, NULL);
    CHECK(t == NULL, "frame 5 of a single-frame file fails");
    CHECK_CONTAINS(fs_error(), "frame 5 out of range", "and says why");
    t = fs_dicom_read("spec/fixtures/dicom/MR_truncated.dcm", NULL, 0, NULL);
    CHECK(t == NULL, "a truncated file fails");
    CHECK_CONTAINS(fs_error(), "MR_truncated.dcm: truncated", "naming the file");
    return check_done();
}
