/* match.h - template matching by normalised cross-correlation (NCC), the classical baseline
 * of landmark localisation.
 *
 * image: (H, W) row-major, template: (h, w) row-major with h and w odd, so that the template
 * has a centre pixel (h/2, w/2). Positions are 0-based (row y, column x) inside the core.
 *
 * ncc(y, x) = sum (I - mean I)(T - mean T) / sqrt(sum (I - mean I)^2 * sum (T - mean T)^2)
 * over the h x w window of the image centred on (y, x). Border: the map has the image's size
 * and holds 0 where the window does not fit inside the image (y < h/2, y >= H - h/2, and
 * likewise in x); the search (fs_match_best) never picks those positions. A constant window
 * or a constant template has no correlation: 0, never NaN. Values are clamped to [-1, 1].
 * NCC is invariant to I -> a I + b for a > 0 (and flips sign for a < 0).
 *
 * All functions return 0 on success, -1 with fs_error() set.
 */
#ifndef FS_MATCH_H
#define FS_MATCH_H

/* out: (H, W) the NCC map. Direct O(H W h w), OpenMP over rows, deterministic. */
int fs_match_ncc(const float *image, int H, int W, const float *tpl, int h, int w, float *out);

typedef struct fs_match_result {
    double x, y;   /* 0-based column and row of the peak, sub-pixel */
    double score;  /* NCC at the integer peak */
    int ix, iy;    /* the integer peak */
} fs_match_result;

/* The best match. window < 0: the whole image; window >= 0: only positions within +/- window
 * pixels (in x and in y) of (cx, cy) (0-based, rounded to the nearest pixel). Ties go to the
 * first position in row-major order. Sub-pixel: a parabola through the peak and its two
 * neighbours in x, and in y, when both neighbours are valid positions (the offset is bounded
 * to +/- 0.5 pixel); otherwise that coordinate stays integer, as does a perfect match (score
 * >= 1 - 1e-6: the template is the window, so a shifted copy is found at the exact shift).
 * prior > 0 (pixels, needs a window): each position's score is its NCC minus
 * d^2 / (2 prior^2), d its distance from (cx, cy) unrounded, a Gaussian prior on where the match
 * lies; the peak, its sub-pixel parabola and r->score are then of that penalised score. */
int fs_match_best(const float *image, int H, int W, const float *tpl, int h, int w,
                  int window, double cx, double cy, double prior, fs_match_result *r);

#endif
