/* spect_lua.c - fs.spect: phantom, project, backproject, acquire, reconstruct, butterworth,
 * and the resampling helpers (bin, downsample, downsample_labels) the Lua front chains.
 *
 * Images are (n, n) tensors, sinograms (n_angles, n). Geometry options (all optional):
 *   pixel_mm=6.4, arc=180, start_deg=225, radius_mm=250,
 *   psf={sigma0_mm=1.9, slope=0.0177} (psf=false: no collimator blur),
 *   scatter=0 (scatter fraction of all counts, 0..0.9), scatter_sigma_mm=25
 * Landmarks come back in mm from the centre of pixel (1, 1).
 */
#include <math.h>
#include <string.h>

#include "lbind.h"
#include "spect/spect.h"

/* A contiguous version of t: t itself, or a copy left on the Lua stack (GC-owned). */
static fs_tensor *contig(lua_State *L, fs_tensor *t)
{
    if (fs_is_contiguous(t))
        return t;
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_contiguous_copy(t));
    return *box;
}

static fs_tensor *check_image(lua_State *L, int idx, const char *op, const char *what)
{
    fs_tensor *t = fs_lua_check_tensor(L, idx);
    if (t->ndim != 2 || t->size[0] != t->size[1] || t->size[0] < 2)
        luaL_error(L, "%s: %s must be a square (n, n) image, got %s", op, what, FS_SHAPE(t));
    return contig(L, t);
}

static fs_tensor *opt_image(lua_State *L, int idx, const char *op, const char *what, int64_t n)
{
    if (lua_isnoneornil(L, idx) || lua_type(L, idx) == LUA_TBOOLEAN)
        return NULL;
    fs_tensor *t = check_image(L, idx, op, what);
    if (t->size[0] != n)
        luaL_error(L, "%s: %s %s does not match the image size %d", op, what, FS_SHAPE(t), (int)n);
    return t;
}

/* project(img, opts) / backproject(sino, opts): the options may come second when there is
 * no attenuation map; move them to slot 3. */
static void shift_opts(lua_State *L)
{
    if (lua_istable(L, 2) && !fs_lua_test_tensor(L, 2) && lua_isnoneornil(L, 3)) {
        lua_settop(L, 2);
        lua_pushnil(L);
        lua_insert(L, 2);
    }
}

static fs_tensor *new_out(lua_State *L, int ndim, int64_t s0, int64_t s1)
{
    int64_t size[2] = {s0, s1};
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_zeros(ndim, size));
    return *box;
}

static void read_geometry(lua_State *L, int opts, fs_spect_geometry *g, int n, int n_angles)
{
    fs_spect_geometry_defaults(g, n, fs_lua_opt_number(L, opts, "pixel_mm", 6.4));
    g->n_angles = n_angles;
    g->arc_deg = fs_lua_opt_number(L, opts, "arc", 180.0);
    g->start_deg = fs_lua_opt_number(L, opts, "start_deg", 225.0);
    if (!lua_isnoneornil(L, opts) && (lua_getfield(L, opts, "radius_mm"), lua_istable(L, -1))) {
        /* per-view radii (a body-contour orbit): kept alive on the Lua stack as a userdata */
        int t = lua_gettop(L);
        if ((int)lua_rawlen(L, t) != n_angles)
            luaL_error(L, "spect: radius_mm lists %d radii for %d angles", (int)lua_rawlen(L, t),
                       n_angles);
        double *r = lua_newuserdatauv(L, sizeof(double) * (size_t)n_angles, 0);
        for (int a = 0; a < n_angles; a++) {
            lua_rawgeti(L, t, a + 1);
            r[a] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        g->radii_mm = r;
        g->radius_mm = r[0];
    } else {
        if (!lua_isnoneornil(L, opts))
            lua_pop(L, 1);
        g->radius_mm = fs_lua_opt_number(L, opts, "radius_mm", 250.0);
    }
    if (!lua_isnoneornil(L, opts)) {
        lua_getfield(L, opts, "psf");
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
            g->sigma0_mm = 0;
            g->slope = 0;
        } else if (lua_istable(L, -1)) {
            int t = lua_gettop(L);
            g->sigma0_mm = fs_lua_opt_number(L, t, "sigma0_mm", g->sigma0_mm);
            g->slope = fs_lua_opt_number(L, t, "slope", g->slope);
        } else if (!lua_isnil(L, -1)) {
            luaL_error(L, "spect: option 'psf' must be a table {sigma0_mm=, slope=} or false");
        }
        lua_pop(L, 1);
    }
    double f = fs_lua_opt_number(L, opts, "scatter", 0.0);
    if (f < 0 || f > 0.9)
        luaL_error(L, "spect: option 'scatter' (fraction of counts) must be in [0, 0.9], got %f",
                   (lua_Number)f);
    g->scatter_fraction = f / (1.0 - f);
    g->scatter_sigma_mm = fs_lua_opt_number(L, opts, "scatter_sigma_mm", 25.0);
    if (!(g->pixel_mm > 0) || !(g->arc_deg > 0) || g->radius_mm < 0)
        luaL_error(L, "spect: need pixel_mm > 0, arc > 0, radius_mm >= 0");
}

static fs_spect_plan *plan_or_raise(lua_State *L, const fs_spect_geometry *g, const float *mu)
{
    fs_spect_plan *p = fs_spect_plan_new(g, mu);
    if (!p)
        fs_lua_error(L);
    return p;
}

/* fs.spect.phantom{seed=, pixel_mm=6.4/3, size_mm=409.6 or n=, view=, level=, ...,
 * variation="none"|"realistic", heart_shift_mm=, heart_rotation_deg=, body_scale=,
 * table_offset_mm=} -> table; params report the variation drawn (heart_dx_mm, ...) */
static int l_phantom(lua_State *L)
{
    int o = 1;
    if (!lua_isnoneornil(L, o))
        luaL_checktype(L, o, LUA_TTABLE);
    fs_lua_check_options(L, o, "spect.phantom",
                         FS_OPTIONS("seed", "pixel_mm", "size_mm", "n", "view", "level",
                                    "defect_prob", "defect_severity", "hotspot_prob",
                                    "breast_prob", "liver_gap_mm", "liver_uptake", "blood_uptake",
                                    "variation", "heart_shift_mm", "heart_rotation_deg",
                                    "body_scale", "table_offset_mm"));
    fs_spect_phantom_opts po;
    fs_spect_phantom_defaults(&po);
    /* variation="none" (default) or "realistic" sets the four ranges; each key overrides */
    const char *variation = fs_lua_opt_string(L, o, "variation", "none");
    if (strcmp(variation, "realistic") == 0)
        fs_spect_phantom_realistic(&po);
    else if (strcmp(variation, "none") != 0)
        return luaL_error(L, "spect.phantom: unknown variation '%s' (none, realistic)", variation);
    po.heart_shift_mm = fs_lua_opt_number(L, o, "heart_shift_mm", po.heart_shift_mm);
    po.heart_rotation_deg = fs_lua_opt_number(L, o, "heart_rotation_deg", po.heart_rotation_deg);
    po.body_scale = fs_lua_opt_number(L, o, "body_scale", po.body_scale);
    po.table_offset_mm = fs_lua_opt_number(L, o, "table_offset_mm", po.table_offset_mm);
    po.pixel_mm = fs_lua_opt_number(L, o, "pixel_mm", po.pixel_mm);
    /* the field of view: n pixels, or size_mm (default 409.6 mm, the 64 x 6.4 mm clinical one) */
    double size_mm = fs_lua_opt_number(L, o, "size_mm", 409.6);
    if (!(size_mm > 0) || !(po.pixel_mm > 0))
        return luaL_error(L, "spect.phantom: size_mm and pixel_mm must be > 0");
    po.n = (int)fs_lua_opt_integer(L, o, "n", (lua_Integer)(size_mm / po.pixel_mm + 0.5));
    const char *view = fs_lua_opt_string(L, o, "view", "transaxial");
    if (strcmp(view, "transaxial") == 0)
        po.view = FS_SPECT_TRANSAXIAL;
    else if (strcmp(view, "short_axis") == 0)
        po.view = FS_SPECT_SHORT_AXIS;
    else if (strcmp(view, "long_axis") == 0)
        po.view = FS_SPECT_LONG_AXIS;
    else
        return luaL_error(L, "spect.phantom: unknown view '%s' (transaxial, short_axis, long_axis)",
                          view);
    po.level = fs_lua_opt_number(L, o, "level", po.level);
    po.defect_prob = fs_lua_opt_number(L, o, "defect_prob", po.defect_prob);
    po.defect_severity = fs_lua_opt_number(L, o, "defect_severity", po.defect_severity);
    po.hotspot_prob = fs_lua_opt_number(L, o, "hotspot_prob", po.hotspot_prob);
    po.breast_prob = fs_lua_opt_number(L, o, "breast_prob", po.breast_prob);
    po.liver_gap_mm = fs_lua_opt_number(L, o, "liver_gap_mm", po.liver_gap_mm);
    po.liver_uptake = fs_lua_opt_number(L, o, "liver_uptake", po.liver_uptake);
    po.blood_uptake = fs_lua_opt_number(L, o, "blood_uptake", po.blood_uptake);
    uint64_t seed = (uint64_t)fs_lua_opt_integer(L, o, "seed", 1);
    if (po.n < 16 || po.n > 4096)
        return luaL_error(L, "spect.phantom: n must be in [16, 4096], got %d", po.n);

    lua_newtable(L);
    int res = lua_gettop(L);
    fs_tensor *act = new_out(L, 2, po.n, po.n);
    lua_setfield(L, res, "activity");
    fs_tensor *mu = new_out(L, 2, po.n, po.n);
    lua_setfield(L, res, "attenuation");
    fs_tensor *lab = new_out(L, 2, po.n, po.n);
    lua_setfield(L, res, "labels");
    fs_spect_phantom ph;
    if (fs_spect_phantom_make(&po, seed, &ph))
        return fs_lua_error(L);
    size_t bytes = sizeof(float) * (size_t)po.n * po.n;
    memcpy(fs_data(act), ph.activity, bytes);
    memcpy(fs_data(mu), ph.attenuation, bytes);
    memcpy(fs_data(lab), ph.labels, bytes);
    lua_newtable(L);
    for (int i = 0; i < ph.n_landmarks; i++) {
        lua_createtable(L, 0, 2);
        lua_pushnumber(L, ph.landmarks[i].x_mm);
        lua_setfield(L, -2, "x_mm");
        lua_pushnumber(L, ph.landmarks[i].y_mm);
        lua_setfield(L, -2, "y_mm");
        lua_setfield(L, -2, ph.landmarks[i].name);
    }
    lua_setfield(L, res, "landmarks");
    lua_pushnumber(L, ph.pixel_mm);
    lua_setfield(L, res, "pixel_mm");
    lua_pushstring(L, view);
    lua_setfield(L, res, "view");
    lua_newtable(L);
    struct { const char *k; double v; } params[] = {
        {"lv_diameter_mm", ph.lv_diameter_mm}, {"wall_mm", ph.wall_mm},
        {"liver_gap_mm", ph.liver_gap_mm}, {"liver_uptake", ph.liver_uptake},
        {"blood_uptake", ph.blood_uptake}, {"defect_severity", ph.defect_severity},
        {"hotspot", ph.has_hotspot}, {"breast", ph.has_breast},
        {"heart_dx_mm", ph.heart_dx_mm}, {"heart_dy_mm", ph.heart_dy_mm},
        {"heart_rotation_deg", ph.heart_rotation_deg}, {"body_scale_x", ph.body_scale_x},
        {"body_scale_y", ph.body_scale_y}, {"table_dx_mm", ph.table_dx_mm},
        {"table_dy_mm", ph.table_dy_mm}};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        lua_pushnumber(L, params[i].v);
        lua_setfield(L, -2, params[i].k);
    }
    lua_setfield(L, res, "params");
    fs_spect_phantom_free(&ph);
    lua_settop(L, res);
    return 1;
}

/* fs.spect.project(activity, attenuation|nil, {angles=64, ...}) -> sinogram (angles, n) */
static int l_project(lua_State *L)
{
    shift_opts(L);
    fs_tensor *img = check_image(L, 1, "spect.project", "activity");
    int n = (int)img->size[0];
    fs_tensor *mu = opt_image(L, 2, "spect.project", "attenuation", n);
    int na = (int)fs_lua_opt_integer(L, 3, "angles", 64);
    if (na < 1 || na > 4096)
        return luaL_error(L, "spect.project: angles must be in [1, 4096], got %d", na);
    fs_spect_geometry g;
    read_geometry(L, 3, &g, n, na);
    fs_tensor *out = new_out(L, 2, na, n);
    fs_spect_plan *p = plan_or_raise(L, &g, mu ? fs_data(mu) : NULL);
    int rc = fs_spect_project(p, fs_data(img), fs_data(out), NULL, 0);
    fs_spect_plan_free(p);
    if (rc)
        return fs_lua_error(L);
    return 1;
}

/* fs.spect.backproject(sinogram, attenuation|nil, {...}) -> image (n, n), the adjoint */
static int l_backproject(lua_State *L)
{
    shift_opts(L);
    fs_tensor *s = contig(L, fs_lua_check_tensor(L, 1));
    if (s->ndim != 2)
        return luaL_error(L, "spect.backproject: sinogram must be (angles, n), got %s", FS_SHAPE(s));
    int na = (int)s->size[0], n = (int)s->size[1];
    fs_tensor *mu = opt_image(L, 2, "spect.backproject", "attenuation", n);
    fs_spect_geometry g;
    read_geometry(L, 3, &g, n, na);
    fs_tensor *out = new_out(L, 2, n, n);
    fs_spect_plan *p = plan_or_raise(L, &g, mu ? fs_data(mu) : NULL);
    int rc = fs_spect_backproject(p, fs_data(s), fs_data(out), NULL, 0);
    fs_spect_plan_free(p);
    if (rc)
        return fs_lua_error(L);
    return 1;
}

/* fs.spect.acquire(sinogram, {counts=2e5, seed=|generator=}) -> Poisson counts (new tensor) */
static int l_acquire(lua_State *L)
{
    fs_tensor *s = fs_lua_check_tensor(L, 1);
    double counts = fs_lua_opt_number(L, 2, "counts", 2e5);
    fs_generator local, *g;
    if (!lua_isnoneornil(L, 2) && (lua_getfield(L, 2, "seed"), !lua_isnil(L, -1))) {
        fs_generator_seed(&local, (uint64_t)luaL_checkinteger(L, -1));
        g = &local;
    } else {
        g = fs_lua_opt_generator(L, 2);
    }
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_contiguous_copy(s));
    if (fs_spect_acquire(fs_data(*box), fs_numel(*box), counts, g))
        return fs_lua_error(L);
    return 1;
}

/* fs.spect.reconstruct(sinogram, {method="osem", iterations=4, subsets=4, attenuation=,
 *   psf=, scatter=, pixel_mm=, postfilter={butterworth={order=5, cutoff=0.5}} | false}) */
static int l_reconstruct(lua_State *L)
{
    fs_tensor *s = contig(L, fs_lua_check_tensor(L, 1));
    if (s->ndim != 2)
        return luaL_error(L, "spect.reconstruct: sinogram must be (angles, n), got %s", FS_SHAPE(s));
    int na = (int)s->size[0], n = (int)s->size[1];
    int o = 2;
    if (!lua_isnoneornil(L, o))
        luaL_checktype(L, o, LUA_TTABLE);
    const char *method = fs_lua_opt_string(L, o, "method", "osem");
    int iters = (int)fs_lua_opt_integer(L, o, "iterations", 4);
    int subsets = (int)fs_lua_opt_integer(L, o, "subsets", 4);
    fs_spect_geometry g;
    read_geometry(L, o, &g, n, na);
    fs_tensor *mu = NULL;
    if (!lua_isnoneornil(L, o)) {
        lua_getfield(L, o, "attenuation");
        if (!lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
            mu = opt_image(L, lua_gettop(L), "spect.reconstruct", "attenuation", n);
    }
    int order = 5;
    double cutoff = 0.5;
    int filt = 1;
    if (!lua_isnoneornil(L, o)) {
        lua_getfield(L, o, "postfilter");
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
            filt = 0;
        } else if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "butterworth");
            if (!lua_istable(L, -1))
                return luaL_error(L, "spect.reconstruct: postfilter must be "
                                     "{butterworth={order=, cutoff=}} or false");
            int t = lua_gettop(L);
            order = (int)fs_lua_opt_integer(L, t, "order", order);
            cutoff = fs_lua_opt_number(L, t, "cutoff", cutoff);
        } else if (!lua_isnil(L, -1)) {
            return luaL_error(L, "spect.reconstruct: postfilter must be "
                                 "{butterworth={order=, cutoff=}} or false");
        }
    }
    fs_tensor *out = new_out(L, 2, n, n);
    float *x = fs_data(out);
    int rc;
    if (strcmp(method, "osem") == 0) {
        if (iters < 0 || subsets < 1 || subsets > na)
            return luaL_error(L, "spect.reconstruct: need iterations >= 0 and 1 <= subsets <= %d "
                                 "(got %d, %d)", na, iters, subsets);
        for (int64_t i = 0; i < (int64_t)n * n; i++)
            x[i] = 1.0f;
        fs_spect_plan *p = plan_or_raise(L, &g, mu ? fs_data(mu) : NULL);
        rc = fs_spect_osem(p, fs_data(s), iters, subsets, x);
        fs_spect_plan_free(p);
    } else if (strcmp(method, "fbp") == 0) {
        rc = fs_spect_fbp(&g, fs_data(s), x);
    } else {
        return luaL_error(L, "spect.reconstruct: unknown method '%s' (osem, fbp)", method);
    }
    if (rc == 0 && filt)
        rc = fs_spect_butterworth(x, n, g.pixel_mm, order, cutoff);
    if (rc)
        return fs_lua_error(L);
    return 1;
}

/* fs.spect.butterworth(image, {order=5, cutoff=0.5, pixel_mm=6.4}) -> filtered copy */
static int l_butterworth(lua_State *L)
{
    fs_tensor *img = check_image(L, 1, "spect.butterworth", "image");
    int n = (int)img->size[0];
    int order = (int)fs_lua_opt_integer(L, 2, "order", 5);
    double cutoff = fs_lua_opt_number(L, 2, "cutoff", 0.5), pix = fs_lua_opt_number(L, 2, "pixel_mm", 6.4);
    fs_tensor *out = new_out(L, 2, n, n);
    memcpy(fs_data(out), fs_data(img), sizeof(float) * (size_t)n * n);
    if (fs_spect_butterworth(fs_data(out), n, pix, order, cutoff))
        return fs_lua_error(L);
    return 1;
}

static int check_factor(lua_State *L, int idx, int64_t n, const char *op)
{
    lua_Integer k = luaL_checkinteger(L, idx);
    if (k < 1 || n % k != 0)
        luaL_error(L, "%s: factor %d must divide the size %d", op, (int)k, (int)n);
    return (int)k;
}

/* fs.spect.bin(sinogram (A, n*k), k) -> (A, n): sums k adjacent detector bins */
static int l_bin(lua_State *L)
{
    fs_tensor *s = contig(L, fs_lua_check_tensor(L, 1));
    if (s->ndim != 2)
        return luaL_error(L, "spect.bin: sinogram must be (angles, n), got %s", FS_SHAPE(s));
    int k = check_factor(L, 2, s->size[1], "spect.bin");
    fs_tensor *out = new_out(L, 2, s->size[0], s->size[1] / k);
    fs_spect_bin_sinogram(fs_data(s), (int)s->size[0], (int)s->size[1], k, fs_data(out));
    return 1;
}

/* fs.spect.downsample(image (n*k, n*k), k, {labels=false}) -> (n, n) block means or labels */
static int l_downsample(lua_State *L)
{
    fs_tensor *img = check_image(L, 1, "spect.downsample", "image");
    int k = check_factor(L, 2, img->size[0], "spect.downsample");
    bool labels = fs_lua_opt_bool(L, 3, "labels", false);
    int64_t m = img->size[0] / k;
    fs_tensor *out = new_out(L, 2, m, m);
    if (labels)
        fs_spect_downsample_labels(fs_data(img), (int)img->size[0], k, fs_data(out));
    else
        fs_spect_downsample(fs_data(img), (int)img->size[0], k, fs_data(out));
    return 1;
}

/* fs.spect.orbit(attenuation, {angles=64, arc=180, start_deg=225, pixel_mm=, clearance_mm=30})
 * -> list of per-view radii (mm) of a body-contour orbit */
static int l_orbit(lua_State *L)
{
    fs_tensor *mu = check_image(L, 1, "spect.orbit", "attenuation");
    int n = (int)mu->size[0];
    int na = (int)fs_lua_opt_integer(L, 2, "angles", 64);
    if (na < 1 || na > 4096)
        return luaL_error(L, "spect.orbit: angles must be in [1, 4096], got %d", na);
    fs_spect_geometry g;
    fs_spect_geometry_defaults(&g, n, fs_lua_opt_number(L, 2, "pixel_mm", 6.4));
    g.n_angles = na;
    g.arc_deg = fs_lua_opt_number(L, 2, "arc", 180.0);
    g.start_deg = fs_lua_opt_number(L, 2, "start_deg", 225.0);
    double clearance = fs_lua_opt_number(L, 2, "clearance_mm", 30.0);
    double *r = lua_newuserdatauv(L, sizeof(double) * (size_t)na, 0);
    fs_spect_contour_orbit(&g, fs_data(mu), clearance, r);
    lua_createtable(L, na, 0);
    for (int a = 0; a < na; a++) {
        lua_pushnumber(L, r[a]);
        lua_rawseti(L, -2, a + 1);
    }
    return 1;
}

static const luaL_Reg spect_funcs[] = {
    {"orbit", l_orbit},
    {"phantom", l_phantom}, {"project", l_project}, {"backproject", l_backproject},
    {"acquire", l_acquire}, {"reconstruct", l_reconstruct}, {"butterworth", l_butterworth},
    {"bin", l_bin}, {"downsample", l_downsample}, {NULL, NULL}};

void fs_lua_open_spect(lua_State *L)
{
    lua_getfield(L, -1, "spect");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "spect");
    }
    luaL_setfuncs(L, spect_funcs, 0);
    lua_pop(L, 1);
}
