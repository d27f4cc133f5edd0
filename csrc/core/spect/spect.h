/* spect.h - a 2D cardiac SPECT simulator: phantom, projector/back-projector, noise, recon.
 *
 * Image coordinates: an image is (n, n) row-major, row index y grows downward (posterior in
 * a transaxial slice, inferior in short-axis and long-axis slices), column x grows to the
 * right (patient's left). Positions in mm are measured from the centre of pixel (0, 0):
 * x_mm = col * pixel_mm, y_mm = row * pixel_mm. Attenuation is in 1/cm.
 *
 * A sinogram is (n_angles, n_bins) with n_bins = n and bins the size of the image pixels.
 * Detector angle phi (degrees) is the direction from the image centre to the detector in
 * image coordinates (x right, y down): 270 = anterior, 0 = patient's left, 225 = 45 deg RAO.
 * The default 180-degree arc starts at 225 (RAO 45) and ends at LPO 45, as in cardiac SPECT.
 *
 * All functions return 0 (or a pointer) on success, -1 (or NULL) with fs_error() set.
 */
#ifndef FS_SPECT_H
#define FS_SPECT_H

#include <stdint.h>

#include "tensor/tensor.h"

/* ---- phantom (spect_phantom.c) ---- */
typedef enum { FS_SPECT_TRANSAXIAL = 0, FS_SPECT_SHORT_AXIS = 1, FS_SPECT_LONG_AXIS = 2 } fs_spect_view;

enum { FS_LABEL_BACKGROUND = 0, FS_LABEL_VENTRICLE = 1, FS_LABEL_MYOCARDIUM = 2,
       FS_LABEL_LIVER = 3, FS_LABEL_OTHER = 4 };

#define FS_SPECT_MAX_LANDMARKS 8

typedef struct fs_spect_phantom_opts {
    int n;                 /* grid (n, n); default 192 */
    double pixel_mm;       /* default 6.4 / 3 */
    fs_spect_view view;
    double level;          /* short axis: 0 base .. 1 apex; < 0 draws it */
    double defect_prob;    /* probability of a perfusion defect (default 0.3) */
    double defect_severity; /* fixed reduction 0..1, < 0 draws 0.1..0.9 */
    double hotspot_prob;   /* probability of a gallbladder/bowel hot spot (default 0.25) */
    double breast_prob;    /* probability of breast tissue over the anterior wall (default 0.4) */
    double liver_gap_mm;   /* < 0 draws 3..30 mm */
    double liver_uptake;   /* < 0 draws 0.3..1.0 */
    double blood_uptake;   /* < 0 draws 0.05..0.2 */
    /* Inter-patient variation of position and size (README "Phantom variation"); each is
     * drawn uniformly in +/- its range from a generator of its own, so 0 (the default: off)
     * leaves a seed's phantom bit-identical to one made without these fields. */
    double heart_shift_mm;     /* heart within the body, per axis (realistic: 15) */
    double heart_rotation_deg; /* heart (and liver direction) about the LV centre (realistic: 15) */
    double body_scale;         /* body width and depth each times 1 +/- this (realistic: 0.1) */
    double table_offset_mm;    /* the whole patient in the field of view, per axis (realistic: 20) */
} fs_spect_phantom_opts;

typedef struct fs_spect_landmark { char name[32]; double x_mm, y_mm; } fs_spect_landmark;

typedef struct fs_spect_phantom {
    int n;
    double pixel_mm;
    float *activity;       /* (n, n) relative uptake, normal myocardium = 1 */
    float *attenuation;    /* (n, n) 1/cm */
    float *labels;         /* (n, n) FS_LABEL_* as floats */
    int n_landmarks;
    fs_spect_landmark landmarks[FS_SPECT_MAX_LANDMARKS];
    /* drawn parameters, reported for the record */
    double lv_diameter_mm, wall_mm, liver_gap_mm, liver_uptake, blood_uptake;
    double defect_severity; /* 0 when no defect */
    int has_hotspot;
    int has_breast;
    /* the variation drawn (0 when off): heart shift (mm) and rotation (degrees, positive
     * turns x toward y), body scale factors, table offset (mm) */
    double heart_dx_mm, heart_dy_mm, heart_rotation_deg, body_scale_x, body_scale_y;
    double table_dx_mm, table_dy_mm;
} fs_spect_phantom;

void fs_spect_phantom_defaults(fs_spect_phantom_opts *o);
/* Sets the four variation ranges to their realistic values (the comments above). */
void fs_spect_phantom_realistic(fs_spect_phantom_opts *o);
/* Fills p (arrays fs_alloc'ed; free with fs_spect_phantom_free). */
int fs_spect_phantom_make(const fs_spect_phantom_opts *o, uint64_t seed, fs_spect_phantom *p);
void fs_spect_phantom_free(fs_spect_phantom *p);

/* ---- projector (spect_project.c) ---- */
typedef struct fs_spect_geometry {
    int n;                 /* image (n, n), detector n bins */
    double pixel_mm;
    int n_angles;
    double arc_deg;        /* 180 or 360 */
    double start_deg;      /* default 225 (RAO 45) */
    double radius_mm;      /* centre of rotation to collimator face; default 250 */
    const double *radii_mm; /* (n_angles) per-view radius (body-contour orbit) or NULL */
    double sigma0_mm;      /* PSF sigma(d) = sigma0 + slope * d; both 0: no blur */
    double slope;
    double scatter_fraction; /* scatter/primary ratio s: p = primary + s * G_broad primary */
    double scatter_sigma_mm; /* width of the broad scatter kernel (default 25) */
} fs_spect_geometry;

void fs_spect_geometry_defaults(fs_spect_geometry *g, int n, double pixel_mm);

/* Body-contour orbit: for each view the distance from the centre of rotation to the farthest
 * pixel with mu > 0 along the view direction, plus clearance_mm. radii: (n_angles). */
int fs_spect_contour_orbit(const fs_spect_geometry *g, const float *mu, double clearance_mm,
                           double *radii);

typedef struct fs_spect_plan fs_spect_plan;
/* mu: (n, n) 1/cm or NULL for no attenuation. The plan copies what it needs. */
fs_spect_plan *fs_spect_plan_new(const fs_spect_geometry *g, const float *mu);
void fs_spect_plan_free(fs_spect_plan *p);
const fs_spect_geometry *fs_spect_plan_geometry(const fs_spect_plan *p);
/* Forward projection of img (n, n) into sino (n_angles, n) for the listed angles (all when
 * angles == NULL); rows of other angles are left untouched. */
int fs_spect_project(const fs_spect_plan *p, const float *img, float *sino,
                     const int *angles, int n_sel);
/* The exact adjoint: img (n, n) = A^T sino over the listed angles (img overwritten). */
int fs_spect_backproject(const fs_spect_plan *p, const float *sino, float *img,
                         const int *angles, int n_sel);

/* ---- noise (spect_recon.c) ---- */
double fs_random_poisson(fs_generator *g, double lambda);
/* Scales sino so that its sum is total_counts, then replaces each bin by a Poisson draw. */
int fs_spect_acquire(float *sino, int64_t numel, double total_counts, fs_generator *g);
/* Sums groups of k adjacent bins: (n_angles, n*k) -> (n_angles, n). */
void fs_spect_bin_sinogram(const float *fine, int n_angles, int n_fine, int k, float *coarse);
/* Means over k x k blocks: (n*k, n*k) -> (n, n). */
void fs_spect_downsample(const float *fine, int n_fine, int k, float *coarse);

/* Plurality label of each k x k block (ties: myocardium > ventricle > liver > other > 0):
 * labels (n*k, n*k) -> (n, n). */
void fs_spect_downsample_labels(const float *fine, int n_fine, int k, float *coarse);

/* ---- reconstruction (spect_recon.c) ---- */
/* OSEM on the plan's system model; x (n, n) holds the start image (all ones if x0 == 0). */
int fs_spect_osem(const fs_spect_plan *p, const float *sino, int iterations, int subsets,
                  float *x);
/* FBP with a ramp filter (Ram-Lak), no attenuation or PSF model. */
int fs_spect_fbp(const fs_spect_geometry *g, const float *sino, float *x);
/* 2D Butterworth low-pass, H(f) = 1 / (1 + (f / cutoff)^(2 order)), f in cycles/cm. */
int fs_spect_butterworth(float *img, int n, double pixel_mm, int order, double cutoff_cycles_cm);

#endif
