/* spect_phantom.c - seeded 2D cardiac phantoms: activity, attenuation, labels, landmarks.
 *
 * Maps are (n, n) row-major; geometry is built in mm about the image centre (x right =
 * patient's left, y down = posterior / inferior) and point-sampled at pixel centres.
 * Anatomy and uptake ranges follow /work/shared/DOMAIN.md: body ellipse of soft tissue
 * (0.15/cm) with a vertebra (0.27/cm) and two lungs (0.04/cm); LV as a truncated prolate
 * ellipsoid section (long-axis and transaxial views: a U open at the valve plane; short axis:
 * a ring, a horseshoe at the base), cavity diameter 39-59 mm, wall 6-10 mm, length about 1.4 x
 * diameter; RV as a crescent on the septal side; left atrium beyond the valve plane; liver as
 * an ellipse whose dome lies 3-30 mm beyond the heart in its direction (inferior, patient's
 * right); optional coronary-territory perfusion defect (10-90%), gallbladder/bowel hot spot
 * and breast tissue over the anterior wall; apical thinning (0-15%); an ungated acquisition
 * (activity averaged over 5 phases of the cycle, labels drawn at mid-cycle).
 * Optional inter-patient variation (draw_variation, from a generator of its own so that the
 * default cohort is unchanged when it is off): heart shift and rotation within the body, body
 * width and depth scaling, and the patient's offset in the field of view (the table).
 *
 * Labels: 0 background, 1 ventricle (LV blood pool), 2 LV myocardium, 3 liver, 4 other
 * (RV wall and cavity, left atrium, hot spots).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "spect/spect.h"

typedef struct { double x, y; } vec2;

static double unif(fs_generator *g, double lo, double hi)
{
    return lo + (hi - lo) * fs_random_uniform(g);
}

static vec2 v2(double x, double y) { vec2 v = {x, y}; return v; }
static vec2 add(vec2 a, vec2 b) { return v2(a.x + b.x, a.y + b.y); }
static vec2 sub(vec2 a, vec2 b) { return v2(a.x - b.x, a.y - b.y); }
static vec2 scale(vec2 a, double s) { return v2(a.x * s, a.y * s); }
static double dot(vec2 a, vec2 b) { return a.x * b.x + a.y * b.y; }
static vec2 dir_deg(double deg) { return v2(cos(deg * M_PI / 180), sin(deg * M_PI / 180)); }
/* Rotation by (c, s) = (cos, sin) of an angle that turns x toward y (clockwise on screen). */
static vec2 rot(vec2 a, double c, double s) { return v2(c * a.x - s * a.y, s * a.x + c * a.y); }

/* An ellipse: centre, unit first axis e1, semi-axes r1 (along e1) and r2. */
typedef struct { vec2 c, e1; double r1, r2; } ellipse;

static double ell_val(const ellipse *e, vec2 p) /* < 1 inside */
{
    vec2 d = sub(p, e->c);
    double s = dot(d, e->e1), t = -d.x * e->e1.y + d.y * e->e1.x;
    return (s * s) / (e->r1 * e->r1) + (t * t) / (e->r2 * e->r2);
}
static int in_ell(const ellipse *e, vec2 p) { return ell_val(e, p) <= 1.0; }
static vec2 ell_point(const ellipse *e, double th)
{
    vec2 e2 = v2(-e->e1.y, e->e1.x);
    return add(e->c, add(scale(e->e1, e->r1 * cos(th)), scale(e2, e->r2 * sin(th))));
}

typedef struct {
    fs_spect_view view;
    /* long-axis frame (transaxial, long axis views) */
    vec2 O, ea, eb;
    double Bi, Ai, base_len, w, wa;
    /* short axis */
    vec2 H;
    double ri, gap_lo, gap_hi; /* horseshoe gap (radians, image angle), gap_hi < gap_lo: none */
    int has_rv, has_la;
    ellipse rv_out, rv_in, la;
} heart;

static int lv_endo(const heart *h, vec2 p)
{
    if (h->view == FS_SPECT_SHORT_AXIS) {
        vec2 d = sub(p, h->H);
        return dot(d, d) <= h->ri * h->ri;
    }
    vec2 d = sub(p, h->O);
    double a = dot(d, h->ea), b = dot(d, h->eb);
    if (a < 0)
        return 0;
    if (a <= h->base_len)
        return fabs(b) <= h->Bi;
    double s = (a - h->base_len) / h->Ai, t = b / h->Bi;
    return s * s + t * t <= 1.0;
}

static int lv_epi(const heart *h, vec2 p)
{
    if (h->view == FS_SPECT_SHORT_AXIS) {
        vec2 d = sub(p, h->H);
        double r = h->ri + h->w;
        return dot(d, d) <= r * r;
    }
    vec2 d = sub(p, h->O);
    double a = dot(d, h->ea), b = dot(d, h->eb);
    if (a < 0)
        return 0;
    if (a <= h->base_len)
        return fabs(b) <= h->Bi + h->w;
    double s = (a - h->base_len) / (h->Ai + h->wa), t = b / (h->Bi + h->w);
    return s * s + t * t <= 1.0;
}

static int in_gap(const heart *h, vec2 p)
{
    if (h->gap_hi <= h->gap_lo)
        return 0;
    vec2 d = sub(p, h->H);
    double ang = atan2(d.y, d.x);
    for (int k = -1; k <= 1; k++) {
        double a = ang + 2 * M_PI * k;
        if (a >= h->gap_lo && a <= h->gap_hi)
            return 1;
    }
    return 0;
}

/* Where the label maps are drawn in the cycle (0 end-diastole, 1 end-systole). */
#define LABEL_PHASE 0.4

/* The heart at phase f: cavity shrinks (radially by k_rad, lengthwise by k_long), the wall
 * thickens by 1 + f * thick, the epicardial apex stays put (the base descends). */
static heart heart_phase(const heart *ed, double f, double k_rad, double k_long, double thick)
{
    heart h = *ed;
    double sr = 1 - f * (1 - k_rad), sl = 1 - f * (1 - k_long), sw = 1 + f * thick;
    h.Bi *= sr;
    h.ri *= sr;
    h.Ai *= sl;
    h.base_len *= sl;
    h.w *= sw;
    h.wa *= sw;
    double apex_ed = ed->base_len + ed->Ai + ed->wa, apex = h.base_len + h.Ai + h.wa;
    h.O = add(ed->O, scale(ed->ea, apex_ed - apex));
    return h;
}

/* Smooth wedge weight in [0, 1]: 1 inside the half-width, tapering over 10 degrees. */
static double wedge(vec2 d, vec2 centre_dir, double half_deg)
{
    double c = dot(d, centre_dir) / (sqrt(dot(d, d)) + 1e-9);
    if (c > 1) c = 1;
    if (c < -1) c = -1;
    double ang = acos(c) * 180 / M_PI;
    if (ang <= half_deg)
        return 1.0;
    if (ang >= half_deg + 10)
        return 0.0;
    return 0.5 * (1 + cos(M_PI * (ang - half_deg) / 10));
}

/* pos: in the scene's frame (mm about the image centre before the table offset). */
static void add_landmark(fs_spect_phantom *p, const char *name, vec2 pos, vec2 offset)
{
    if (p->n_landmarks >= FS_SPECT_MAX_LANDMARKS)
        return;
    fs_spect_landmark *l = &p->landmarks[p->n_landmarks++];
    snprintf(l->name, sizeof l->name, "%s", name);
    double c = 0.5 * (p->n - 1) * p->pixel_mm;
    l->x_mm = pos.x + offset.x + c;
    l->y_mm = pos.y + offset.y + c;
}

void fs_spect_phantom_defaults(fs_spect_phantom_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n = 192;
    o->pixel_mm = 6.4 / 3.0;
    o->view = FS_SPECT_TRANSAXIAL;
    o->level = -1;
    o->defect_prob = 0.3;
    o->defect_severity = -1;
    o->hotspot_prob = 0.25;
    o->breast_prob = 0.4;
    o->liver_gap_mm = -1;
    o->liver_uptake = -1;
    o->blood_uptake = -1;
}

void fs_spect_phantom_realistic(fs_spect_phantom_opts *o)
{
    o->heart_shift_mm = 15;
    o->heart_rotation_deg = 15;
    o->body_scale = 0.1;
    o->table_offset_mm = 20;
}

void fs_spect_phantom_free(fs_spect_phantom *p)
{
    if (!p)
        return;
    fs_free(p->activity);
    fs_free(p->attenuation);
    fs_free(p->labels);
    p->activity = p->attenuation = p->labels = NULL;
}

/* Every drawn and derived parameter of one phantom: the draws happen in a fixed order
 * (draw_torso, draw_heart, draw_defect, draw_liver, draw_breast, draw_motion), which is
 * what makes a seed reproduce its phantom. */
enum { NPHASE = 5 };
typedef struct {
    fs_spect_view view;
    double body_sx, body_sy;                 /* body scale factors (1: no variation) */
    vec2 heart_shift, offset;                /* heart within the body; table offset (mm) */
    double heart_rot;                        /* degrees, x toward y */
    double bay;                              /* body half-height (mm) */
    ellipse body, body_in, spine, spine_zone, lung_r, lung_l;
    int has_spine;
    double up_body, up_lung, up_blood, up_liver, up_rv;
    heart h;                                 /* end-diastole */
    double D, level;                         /* LV cavity diameter; short-axis level */
    vec2 liver_dir;
    int has_defect;
    double sev, dhalf;
    vec2 ddir;
    double gap, lu, lv;                      /* liver gap and half-axes */
    int has_hot;
    double hot_r, hot_up, hot_side, hot_depth;
    vec2 dome;
    ellipse liver, hot;
    int has_breast;
    ellipse breast;
    double apical;
    heart ph_h[NPHASE];                      /* the cycle, averaged for activity */
    heart hl;                                /* the label phase: labels and landmarks */
} scene;

/* The inter-patient variation, from a generator of its own (the scene's draws are untouched):
 * always the same seven draws in the same order, each uniform in +/- its range. */
static void draw_variation(const fs_spect_phantom_opts *o, uint64_t seed, scene *s)
{
    fs_generator gen, *g = &gen;
    fs_generator_seed(g, seed ^ 0x9e3779b97f4a7c15ull);
    double hs = o->heart_shift_mm, hr = o->heart_rotation_deg;
    double bs = o->body_scale, to = o->table_offset_mm;
    s->heart_shift.x = unif(g, -hs, hs);
    s->heart_shift.y = unif(g, -hs, hs);
    s->heart_rot = unif(g, -hr, hr);
    s->body_sx = 1.0 + unif(g, -bs, bs);
    s->body_sy = 1.0 + unif(g, -bs, bs);
    s->offset.x = unif(g, -to, to);
    s->offset.y = unif(g, -to, to);
    if (hs == 0) /* off: exactly zero (not -0 * u) */
        s->heart_shift = v2(0, 0);
    if (hr == 0)
        s->heart_rot = 0;
    if (bs == 0)
        s->body_sx = s->body_sy = 1.0;
    if (to == 0)
        s->offset = v2(0, 0);
}

/* Body, spine, lungs and the background uptakes. */
static void draw_torso(fs_generator *g, const fs_spect_phantom_opts *o, double half_fov,
                       scene *s)
{
    double bax = unif(g, 150, 185) * s->body_sx, bay = unif(g, 100, 125) * s->body_sy;
    /* the oblique short- and long-axis planes run down through the abdomen below the heart */
    double stretch = o->view == FS_SPECT_TRANSAXIAL ? 1.0 : 1.3;
    double fit = fmin(1.0, 0.95 * half_fov / fmax(bax, bay * stretch)); /* inside the field */
    bax *= fit;
    bay *= fit;
    s->bay = bay;
    s->body = (ellipse){v2(0, bay * (stretch - 1.0)), v2(1, 0), bax, bay * stretch};
    s->spine = (ellipse){v2(0, bay - unif(g, 30, 40)), v2(1, 0), 0, 0};
    s->spine.r1 = s->spine.r2 = unif(g, 13, 18);
    /* the oblique short- and long-axis planes through the LV miss the vertebra */
    s->has_spine = o->view == FS_SPECT_TRANSAXIAL;
    s->lung_r = (ellipse){v2(-bax * unif(g, 0.42, 0.5), -bay * unif(g, 0.0, 0.15)), v2(0, 1),
                          bay * unif(g, 0.55, 0.68), bax * unif(g, 0.26, 0.32)};
    s->lung_l = (ellipse){v2(bax * unif(g, 0.45, 0.52), -bay * unif(g, 0.0, 0.15)), v2(0, 1),
                          bay * unif(g, 0.55, 0.68), bax * unif(g, 0.24, 0.3)};
    s->up_body = unif(g, 0.05, 0.15);
    s->up_lung = unif(g, 0.05, 0.15);
    s->up_blood = o->blood_uptake >= 0 ? o->blood_uptake : unif(g, 0.05, 0.2);
    s->up_liver = o->liver_uptake >= 0 ? o->liver_uptake : unif(g, 0.3, 1.0);
    s->up_rv = unif(g, 0.3, 0.6);
}

/* The LV (and RV, left atrium) at end-diastole, and the direction of the liver. */
static void draw_heart(fs_generator *g, const fs_spect_phantom_opts *o, scene *s)
{
    heart *h = &s->h;
    double bay = s->bay;
    memset(h, 0, sizeof *h);
    h->view = o->view;
    double D = unif(g, 39, 59);
    s->D = D;
    h->Bi = 0.5 * D;
    h->w = unif(g, 6, 10);
    h->wa = h->w * unif(g, 0.7, 0.9);
    h->Ai = h->Bi * unif(g, 0.9, 1.2);
    h->base_len = fmax(5.0, 1.4 * D * unif(g, 0.9, 1.1) - h->Ai);
    h->gap_lo = 0;
    h->gap_hi = -1;
    double level = o->level >= 0 ? o->level : unif(g, 0.1, 0.75);
    s->level = level;
    if (o->view == FS_SPECT_SHORT_AXIS) {
        /* the heart lies behind the anterior chest wall: LV centre 65-85 mm deep */
        h->H = v2(unif(g, 15, 35), -bay + unif(g, 65, 85));
        double taper = level <= 0.6 ? 1.0 : sqrt(fmax(0.04, 1 - pow((level - 0.6) / 0.45, 2)));
        h->ri = h->Bi * taper;
        if (level < 0.2) { /* basal slice: horseshoe open toward the outflow tract */
            double centre = unif(g, 215, 240) * M_PI / 180, half = unif(g, 25, 40) * M_PI / 180;
            h->gap_lo = centre - half;
            h->gap_hi = centre + half;
        }
        vec2 rdir = dir_deg(unif(g, 170, 195));
        double r1 = unif(g, 20, 28), r2 = unif(g, 35, 48);
        h->rv_out = (ellipse){add(h->H, scale(rdir, h->ri + h->w + 0.45 * r1)), rdir, r1, r2};
        h->has_rv = 1;
        s->liver_dir = dir_deg(unif(g, 100, 130));
    } else {
        double alpha = o->view == FS_SPECT_LONG_AXIS ? unif(g, -10, 10) : unif(g, -55, -35);
        h->ea = dir_deg(alpha);
        h->eb = v2(-h->ea.y, h->ea.x);
        double L = h->base_len + h->Ai;
        vec2 centroid = o->view == FS_SPECT_LONG_AXIS ? v2(unif(g, -15, 10), -bay + unif(g, 60, 80))
                                                      : v2(unif(g, 20, 40), -bay + unif(g, 70, 90));
        h->O = sub(centroid, scale(h->ea, 0.5 * L));
        h->H = centroid;
        double la_len = unif(g, 15, 22);
        h->la = (ellipse){sub(h->O, scale(h->ea, la_len)), h->ea, la_len,
                          h->Bi * unif(g, 0.8, 1.0)};
        h->has_la = 1;
        if (o->view == FS_SPECT_TRANSAXIAL) {
            double r1 = unif(g, 18, 26), r2 = L * unif(g, 0.45, 0.6);
            vec2 c = add(h->O, add(scale(h->ea, 0.45 * L),
                                   scale(h->eb, -(h->Bi + h->w + 0.45 * r1))));
            h->rv_out = (ellipse){c, scale(h->eb, -1), r1, r2};
            h->has_rv = 1;
            s->liver_dir = dir_deg(unif(g, 125, 155));
        } else {
            double tilt = unif(g, 0, 25) * M_PI / 180;
            s->liver_dir = add(scale(h->eb, cos(tilt)), scale(h->ea, sin(tilt)));
        }
    }
    if (h->has_rv) {
        double t = unif(g, 3, 5);
        h->rv_in = h->rv_out;
        h->rv_in.r1 -= t;
        h->rv_in.r2 -= t;
    }
}

/* A perfusion defect in a coronary territory (drawn always, used when present). */
static void draw_defect(fs_generator *g, const fs_spect_phantom_opts *o, scene *s)
{
    s->has_defect = fs_random_uniform(g) < o->defect_prob;
    s->sev = o->defect_severity >= 0 ? o->defect_severity : unif(g, 0.1, 0.9);
    double territory = fs_random_uniform(g);
    s->dhalf = unif(g, 20, 50);
    if (o->view == FS_SPECT_SHORT_AXIS)
        s->ddir = territory < 0.4 ? dir_deg(unif(g, 240, 300))      /* LAD: anterior */
                : territory < 0.7 ? dir_deg(unif(g, 70, 110))       /* RCA: inferior */
                                  : dir_deg(unif(g, -30, 30));      /* LCX: lateral */
    else if (o->view == FS_SPECT_LONG_AXIS)
        s->ddir = territory < 0.4 ? dir_deg(unif(g, -20, 20))       /* LAD: apex */
                : territory < 0.7 ? dir_deg(unif(g, 60, 100))       /* RCA: inferior */
                                  : dir_deg(unif(g, 260, 300));     /* LAD: anterior */
    else
        s->ddir = territory < 0.4 ? s->h.ea                          /* LAD: apex */
                : territory < 0.7 ? scale(s->h.eb, -1)               /* LAD: septum */
                                  : s->h.eb;                         /* LCX: lateral */
}

/* The heart (LV, RV, atrium), the defect's and the liver's directions turned by heart_rot about
 * the LV centre H, then moved by heart_shift: the anatomy and its landmarks move together. */
static void move_heart(scene *s)
{
    heart *h = &s->h;
    double c = cos(s->heart_rot * M_PI / 180), sn = sin(s->heart_rot * M_PI / 180);
    vec2 H = h->H, t = s->heart_shift;
#define MOVE(p) ((p) = add(add(H, rot(sub((p), H), c, sn)), t))
    MOVE(h->O);
    MOVE(h->la.c);
    MOVE(h->rv_out.c);
    MOVE(h->rv_in.c);
#undef MOVE
    h->H = add(H, t);
    h->ea = rot(h->ea, c, sn);
    h->eb = rot(h->eb, c, sn);
    h->la.e1 = rot(h->la.e1, c, sn);
    h->rv_out.e1 = rot(h->rv_out.e1, c, sn);
    h->rv_in.e1 = rot(h->rv_in.e1, c, sn);
    if (h->gap_hi > h->gap_lo) {
        h->gap_lo += s->heart_rot * M_PI / 180;
        h->gap_hi += s->heart_rot * M_PI / 180;
    }
    s->ddir = rot(s->ddir, c, sn);
    s->liver_dir = rot(s->liver_dir, c, sn);
}

/* The liver's gap and size, and the hot spot (drawn always, used when present). */
static void draw_liver(fs_generator *g, const fs_spect_phantom_opts *o, scene *s)
{
    s->gap = o->liver_gap_mm >= 0 ? o->liver_gap_mm : unif(g, 3, 30);
    s->lu = unif(g, 40, 60);
    s->lv = unif(g, 60, 85);
    s->has_hot = fs_random_uniform(g) < o->hotspot_prob;
    s->hot_r = unif(g, 8, 16);
    s->hot_up = unif(g, 1.0, 2.5);
    s->hot_side = unif(g, -50, 50);
    s->hot_depth = unif(g, 5, 25);
}

/* The liver's dome lies gap mm beyond the heart's support in liver_dir (the support: the
 * largest (q - H) . liver_dir over the heart's pixels); the hot spot sits below the dome. */
static void place_liver(int n, double pix, scene *s)
{
    const heart *h = &s->h;
    double support = 0.0;
    double c0 = 0.5 * (n - 1);
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            vec2 q = v2((x - c0) * pix, (y - c0) * pix);
            if (lv_epi(h, q) || (h->has_rv && in_ell(&h->rv_out, q))) {
                double d = dot(sub(q, h->H), s->liver_dir);
                if (d > support)
                    support = d;
            }
        }
    s->dome = add(h->H, scale(s->liver_dir, support + s->gap));
    s->liver = (ellipse){add(s->dome, scale(s->liver_dir, s->lu)), s->liver_dir, s->lu, s->lv};
    vec2 e2 = v2(-s->liver_dir.y, s->liver_dir.x);
    s->hot = (ellipse){add(s->dome, add(scale(e2, s->hot_side), scale(s->liver_dir, s->hot_depth))),
                       v2(1, 0), s->hot_r, s->hot_r * 0.8};
    s->spine_zone = s->spine; /* the liver keeps clear of the spine and the great vessels */
    s->spine_zone.r1 += 12;
    s->spine_zone.r2 += 12;
    s->body_in = s->body;
    s->body_in.r1 -= 8;
    s->body_in.r2 -= 8;
}

/* Breast tissue: soft tissue bulging over the anterior wall (the anterior artefact). */
static void draw_breast(fs_generator *g, const fs_spect_phantom_opts *o, double half_fov,
                        scene *s)
{
    s->has_breast = fs_random_uniform(g) < o->breast_prob;
    s->breast = (ellipse){v2(unif(g, 30, 70), -s->bay * unif(g, 0.8, 0.9)), v2(1, 0),
                          unif(g, 50, 70), unif(g, 30, 50)};
    if (s->breast.c.y - s->breast.r2 < -0.97 * half_fov) /* stay inside the field of view */
        s->breast.r2 = s->breast.c.y + 0.97 * half_fov;
}

/* Cardiac motion: an ungated acquisition averages the cycle; apical thinning. */
static void draw_motion(fs_generator *g, scene *s)
{
    double ef = unif(g, 0.5, 0.7), thick = unif(g, 0.3, 0.6);
    double k_rad = cbrt(1.0 - ef), k_long = sqrt(k_rad);
    /* normal variation: apical thinning (0-15% less uptake toward the apex) */
    s->apical = unif(g, 0.0, 0.15);
    for (int k = 0; k < NPHASE; k++)
        s->ph_h[k] = heart_phase(&s->h, (double)k / (NPHASE - 1), k_rad, k_long, thick);
    s->hl = heart_phase(&s->h, LABEL_PHASE, k_rad, k_long, thick); /* labels and landmarks */
}

/* The LV's activity at q, averaged over the phases (act where a phase's LV misses q);
 * *any tells whether some phase covers q. */
static double lv_activity(const scene *s, vec2 q, double act, int *any)
{
    const heart *h = &s->h;
    double defect = s->has_defect ? s->sev * wedge(sub(q, h->H), s->ddir, s->dhalf) : 0.0;
    double normal = 1.0;
    if (s->view == FS_SPECT_SHORT_AXIS) {
        if (s->level > 0.6)
            normal -= s->apical * (s->level - 0.6) / 0.4;
    } else {
        double a = dot(sub(q, h->O), h->ea) - h->base_len;
        if (a > 0) {
            double t = fmin(1.0, a / (h->Ai + h->wa));
            normal -= s->apical * t * t;
        }
    }
    double sum = 0.0;
    *any = 0;
    for (int k = 0; k < NPHASE; k++) {
        if (lv_epi(&s->ph_h[k], q)) {
            *any = 1;
            sum += (lv_endo(&s->ph_h[k], q) || in_gap(&s->ph_h[k], q)) ? s->up_blood
                                                                        : normal * (1.0 - defect);
        } else {
            sum += act;
        }
    }
    return sum;
}

/* One point q inside the body: activity, attenuation and label, the later organs drawn over
 * the earlier ones; *in_cavity tells whether q is in the labelled LV cavity. */
static void shade_point(const scene *s, vec2 q, float *act_out, float *mu_out, float *lab_out,
                        int *in_cavity)
{
    const heart *h = &s->h, *hl = &s->hl;
    float act = (float)s->up_body, mu = 0.15f, lab = FS_LABEL_BACKGROUND;
    if (in_ell(&s->lung_r, q) || in_ell(&s->lung_l, q)) {
        act = (float)s->up_lung;
        mu = 0.04f;
    }
    if (in_ell(&s->liver, q) && in_ell(&s->body_in, q) &&
        !(s->has_spine && in_ell(&s->spine_zone, q))) {
        act = (float)s->up_liver;
        mu = 0.15f;
        lab = FS_LABEL_LIVER;
    }
    if (s->has_hot && in_ell(&s->hot, q) && in_ell(&s->body_in, q)) {
        act = (float)s->hot_up;
        mu = 0.15f;
        lab = FS_LABEL_OTHER;
    }
    if (s->has_spine && in_ell(&s->spine, q)) { /* bone: never liver */
        act = (float)s->up_body;
        mu = 0.27f;
        lab = FS_LABEL_BACKGROUND;
    }
    if (h->has_la && in_ell(&h->la, q) && !lv_epi(hl, q)) {
        act = (float)s->up_blood;
        lab = FS_LABEL_OTHER;
        mu = 0.15f;
    }
    if (h->has_rv && in_ell(&h->rv_out, q) && !lv_epi(hl, q)) {
        act = in_ell(&h->rv_in, q) ? (float)s->up_blood : (float)s->up_rv;
        lab = FS_LABEL_OTHER;
        mu = 0.15f;
    }
    /* LV: activity averaged over the phases, labels from the label phase */
    int any;
    double sum = lv_activity(s, q, act, &any);
    if (any) {
        act = (float)(sum / NPHASE);
        mu = 0.15f;
    }
    *in_cavity = 0;
    if (lv_epi(hl, q)) {
        mu = 0.15f;
        if (lv_endo(hl, q) || in_gap(hl, q)) {
            lab = FS_LABEL_VENTRICLE;
            *in_cavity = 1;
        } else {
            lab = FS_LABEL_MYOCARDIUM;
        }
    }
    *act_out = act;
    *mu_out = mu;
    *lab_out = lab;
}

/* Point-samples the scene, moved by the table offset, at the pixel centres into p's maps;
 * returns the LV cavity's centroid in the scene's frame (the label phase's centre when the
 * cavity misses every pixel). */
static vec2 rasterise(const scene *s, fs_spect_phantom *p)
{
    int n = p->n;
    double pix = p->pixel_mm, c0 = 0.5 * (n - 1);
    double cx = 0, cy = 0, cn = 0;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            vec2 q = sub(v2((x - c0) * pix, (y - c0) * pix), s->offset); /* scene frame */
            size_t i = (size_t)y * n + x;
            float act = 0, mu = 0, lab = FS_LABEL_BACKGROUND;
            if (ell_val(&s->body, q) <= 1.0 || (s->has_breast && in_ell(&s->breast, q))) {
                int cavity;
                shade_point(s, q, &act, &mu, &lab, &cavity);
                if (cavity) {
                    cx += q.x;
                    cy += q.y;
                    cn += 1;
                }
            }
            p->activity[i] = act;
            p->attenuation[i] = mu;
            p->labels[i] = lab;
        }
    return cn > 0 ? v2(cx / cn, cy / cn) : s->hl.H;
}

/* The landmarks of the view, at the label phase. */
static void place_landmarks(const scene *s, vec2 centre, fs_spect_phantom *p)
{
    const heart *h = &s->h, *hl = &s->hl;
    fs_spect_view view = s->view;
    vec2 off = s->offset;
    /* the short axis' inferior and lateral directions turn with the heart */
    double c = cos(s->heart_rot * M_PI / 180), sn = sin(s->heart_rot * M_PI / 180);
    vec2 inferior = rot(v2(0, 1), c, sn), lateral = rot(v2(1, 0), c, sn);
    if (view != FS_SPECT_SHORT_AXIS)
        add_landmark(p, "lv_apex", add(hl->O, scale(hl->ea, hl->base_len + hl->Ai + hl->wa)), off);
    add_landmark(p, "lv_centre", centre, off);
    if (view != FS_SPECT_SHORT_AXIS)
        add_landmark(p, "mitral_valve", hl->O, off);
    if (h->has_rv) {
        /* where the RV outer wall meets the LV epicardium */
        vec2 pts[8];
        int np = 0;
        int prev = lv_epi(hl, ell_point(&h->rv_out, 0));
        for (int k = 1; k <= 720 && np < 8; k++) {
            vec2 q = ell_point(&h->rv_out, 2 * M_PI * k / 720);
            int cur = lv_epi(hl, q);
            if (cur != prev)
                pts[np++] = q;
            prev = cur;
        }
        if (np >= 2) {
            vec2 a = pts[0], b = pts[np - 1];
            if (a.y > b.y) { vec2 t = a; a = b; b = t; }
            add_landmark(p, "rv_insertion_anterior", a, off);
            add_landmark(p, view == FS_SPECT_SHORT_AXIS ? "rv_insertion_inferior"
                                                        : "rv_insertion_posterior", b, off);
        }
    }
    if (view == FS_SPECT_SHORT_AXIS) {
        add_landmark(p, "lv_inferior_wall", add(hl->H, scale(inferior, hl->ri + 0.5 * hl->w)), off);
        add_landmark(p, "lv_lateral_wall", add(hl->H, scale(lateral, hl->ri + 0.5 * hl->w)), off);
    }
    if (view == FS_SPECT_LONG_AXIS) {
        add_landmark(p, "lv_base_anterior", sub(hl->O, scale(hl->eb, hl->Bi + 0.5 * hl->w)), off);
        add_landmark(p, "lv_base_inferior", add(hl->O, scale(hl->eb, hl->Bi + 0.5 * hl->w)), off);
    }
    add_landmark(p, "liver_dome", s->dome, off);
}

int fs_spect_phantom_make(const fs_spect_phantom_opts *o, uint64_t seed, fs_spect_phantom *p)
{
    memset(p, 0, sizeof *p);
    if (o->n < 16 || o->n > 4096 || !(o->pixel_mm > 0))
        return fs_set_error("spect.phantom: need 16 <= n <= 4096 and pixel_mm > 0 (got %d, %g)",
                            o->n, o->pixel_mm);
    if (o->view < FS_SPECT_TRANSAXIAL || o->view > FS_SPECT_LONG_AXIS)
        return fs_set_error("spect.phantom: unknown view %d", (int)o->view);
    if (!(o->heart_shift_mm >= 0 && o->heart_shift_mm <= 100) ||
        !(o->heart_rotation_deg >= 0 && o->heart_rotation_deg <= 90) ||
        !(o->body_scale >= 0 && o->body_scale <= 0.5) ||
        !(o->table_offset_mm >= 0 && o->table_offset_mm <= 200))
        return fs_set_error("spect.phantom: need heart_shift_mm in [0, 100], heart_rotation_deg "
                            "in [0, 90], body_scale in [0, 0.5], table_offset_mm in [0, 200] (got "
                            "%g, %g, %g, %g)", o->heart_shift_mm, o->heart_rotation_deg,
                            o->body_scale, o->table_offset_mm);
    int n = o->n;
    double pix = o->pixel_mm, half_fov = 0.5 * n * pix;
    fs_generator gen, *g = &gen;
    fs_generator_seed(g, seed);
    p->n = n;
    p->pixel_mm = pix;
    size_t nn = (size_t)n * n;
    p->activity = fs_alloc(sizeof(float) * nn);
    p->attenuation = fs_alloc(sizeof(float) * nn);
    p->labels = fs_alloc(sizeof(float) * nn);
    if (!p->activity || !p->attenuation || !p->labels) {
        fs_spect_phantom_free(p);
        return -1;
    }
    scene s;
    memset(&s, 0, sizeof s);
    s.view = o->view;
    draw_variation(o, seed, &s);
    draw_torso(g, o, half_fov, &s);
    draw_heart(g, o, &s);
    draw_defect(g, o, &s);
    if (s.heart_rot != 0 || s.heart_shift.x != 0 || s.heart_shift.y != 0)
        move_heart(&s);
    draw_liver(g, o, &s);
    place_liver(n, pix, &s);
    draw_breast(g, o, half_fov, &s);
    draw_motion(g, &s);
    p->defect_severity = s.has_defect ? s.sev : 0.0;
    p->has_hotspot = s.has_hot;
    p->has_breast = s.has_breast;
    vec2 centre = rasterise(&s, p);
    p->lv_diameter_mm = s.D;
    p->wall_mm = s.h.w;
    p->liver_gap_mm = s.gap;
    p->liver_uptake = s.up_liver;
    p->blood_uptake = s.up_blood;
    p->heart_dx_mm = s.heart_shift.x;
    p->heart_dy_mm = s.heart_shift.y;
    p->heart_rotation_deg = s.heart_rot;
    p->body_scale_x = s.body_sx;
    p->body_scale_y = s.body_sy;
    p->table_dx_mm = s.offset.x;
    p->table_dy_mm = s.offset.y;
    place_landmarks(&s, centre, p);
    return 0;
}
