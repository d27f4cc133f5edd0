/* dicom.h - DICOM images (NM, CT, MR, RT dose, secondary capture) read through GDCM.
 *
 * The parsing and decoding is GDCM's (dicom_gdcm.cpp, the one C++ file of the core, which
 * implements fs_dicom_decode below behind extern "C"); dicom.c turns its result into a tensor
 * and an fs_error() message. Readers return a new contiguous float32 tensor or NULL with
 * fs_error() naming the file and the reason (not DICOM, truncated, no pixel data, an
 * unsupported transfer syntax named by UID and name, a pixel format we refuse).
 *
 * Tensor: (frames, rows, columns) for one sample per pixel; (frames, 3, rows, columns) for RGB
 * (YBR is converted to RGB by GDCM's decoders or here). A single-frame image is (1, rows, cols).
 * Values: the stored integers (masked to Bits Stored, sign-extended when Pixel Representation
 * is 1) times Rescale Slope plus Rescale Intercept. Other scalings (RT Dose Grid Scaling,
 * NM Real World Value Mapping) are reported in the info, not applied.
 */
#ifndef FS_DICOM_H
#define FS_DICOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FS_DICOM_STR 80      /* every string field: a DICOM value up to 64 chars (LO) + NUL */
#define FS_DICOM_MAX_WINDOWS 8
#define FS_DICOM_MAX_DETECTORS 4

typedef struct fs_dicom_energy_window {
    char name[FS_DICOM_STR];        /* (0054,0018) Energy Window Name, "" when absent */
    double lower_kev, upper_kev;    /* (0054,0012) > (0054,0013) > (0054,0014) / (0054,0015) */
} fs_dicom_energy_window;

typedef struct fs_dicom_detector {
    char collimator[FS_DICOM_STR];  /* (0018,1180) Collimator/Grid Name */
    char collimator_type[FS_DICOM_STR]; /* (0018,1181), e.g. "PARA" */
    double radial_position_mm;      /* (0018,1142), first value; 0 when absent */
    int has_position, has_orientation;
    double position[3];             /* (0020,0032) inside the Detector Information item */
    double orientation[6];          /* (0020,0037) */
} fs_dicom_detector;

typedef struct fs_dicom_info {
    /* what the file is */
    char modality[FS_DICOM_STR];            /* (0008,0060) */
    char sop_class_uid[FS_DICOM_STR];       /* (0008,0016) */
    char image_type[FS_DICOM_STR];          /* (0008,0008), values joined with '\' */
    char transfer_syntax_uid[FS_DICOM_STR]; /* (0002,0010) (implicit VR LE when no meta header) */
    char transfer_syntax[FS_DICOM_STR];     /* its name */
    char photometric[FS_DICOM_STR];         /* (0028,0004) as stored */
    /* identifiers a user needs to pair files (no name, birth date or other personal data) */
    char patient_id[FS_DICOM_STR];          /* (0010,0020) */
    char study_uid[FS_DICOM_STR];           /* (0020,000D) */
    char series_uid[FS_DICOM_STR];          /* (0020,000E) */
    char sop_instance_uid[FS_DICOM_STR];    /* (0008,0018) */
    char frame_of_reference_uid[FS_DICOM_STR]; /* (0020,0052) */
    char series_description[FS_DICOM_STR];  /* (0008,103E) */
    char units[FS_DICOM_STR];               /* (0054,1001) NM/PET units, e.g. "CNTS" */
    int series_number, instance_number;     /* (0020,0011), (0020,0013); 0 when absent */
    /* the pixel matrix */
    int64_t rows, columns, frames;
    int samples_per_pixel, bits_allocated, bits_stored, pixel_representation, planar_configuration;
    double rescale_slope, rescale_intercept;/* 1 and 0 when absent; applied to the values */
    int has_dose_grid_scaling;
    double dose_grid_scaling;               /* (3004,000E), RT Dose: reported, not applied */
    /* geometry, mm */
    int has_pixel_spacing;
    double pixel_spacing[2];                /* (0028,0030) row spacing (y), column spacing (x);
                                               else (0018,1164) Imager Pixel Spacing */
    int has_slice_spacing;
    double slice_spacing;                   /* (0018,0088) Spacing Between Slices, else the step
                                               of (3004,000C) Grid Frame Offset Vector */
    int has_slice_thickness;
    double slice_thickness;                 /* (0018,0050) */
    int has_position, has_orientation;
    double position[3];                     /* (0020,0032), else the first detector's */
    double orientation[6];                  /* (0020,0037), else the first detector's */
    /* NM */
    int n_energy_windows;                   /* items read (at most FS_DICOM_MAX_WINDOWS) */
    fs_dicom_energy_window energy_windows[FS_DICOM_MAX_WINDOWS];
    int n_detectors;                        /* (0054,0021) Number of Detectors, else items */
    fs_dicom_detector detectors[FS_DICOM_MAX_DETECTORS];
    int number_of_slices;                   /* (0054,0081); 0 when absent */
    char radiopharmaceutical[FS_DICOM_STR]; /* (0054,0016) > (0018,0031) */
} fs_dicom_info;

/* Reads path (the whole file). frames: 0-based frame indices to keep, in that order
 * (NULL/nframes 0: all). info may be NULL. */
struct fs_tensor *fs_dicom_read(const char *path, const int64_t *frames, int nframes,
                                fs_dicom_info *info);
/* The same from a whole file in memory (name only for messages). */
struct fs_tensor *fs_dicom_parse(const char *name, const unsigned char *buf, size_t len,
                                 const int64_t *frames, int nframes, fs_dicom_info *info);
/* The attributes alone, pixel data left undecoded (whether it is there is still checked);
 * 0, or -1 with fs_error(). */
int fs_dicom_read_info(const char *path, fs_dicom_info *info);

/* ---- what dicom_gdcm.cpp implements (called by dicom.c only) ---- */

/* Gets the output buffer: (frames, channels, rows, cols) floats, or NULL (out of memory). */
typedef float *(*fs_dicom_alloc_fn)(void *ctx, int64_t frames, int64_t channels, int64_t rows,
                                    int64_t cols);
/* Parses buf, fills info, and (alloc not NULL) decodes the selected frames into what alloc
 * returns. 0, or -1 with a message (without the file name) in err. Never throws. */
int fs_dicom_decode(const unsigned char *buf, size_t len, const int64_t *frames, int nframes,
                    fs_dicom_info *info, fs_dicom_alloc_fn alloc, void *ctx, char *err,
                    size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
