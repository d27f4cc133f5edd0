/* dicom_lua.c - fs.io.load_dicom(path, {frames=}) and fs.io.dicom_info(path): DICOM through
 * GDCM (csrc/core/io/dicom.h). The info table carries what a user needs to place and pair the
 * image (geometry in mm, modality, identifiers, NM energy windows and detectors) and no
 * personal data beyond the patient ID (no name, birth date, sex, address).
 *
 * spacing_mm is in the tensor's dim order (slice, row, column), as for NIfTI and Interfile;
 * image_position and image_orientation are in DICOM's patient coordinates (LPS, mm).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/dicom.h"
#include "lbind.h"

#define MAX_FRAMES_ASKED 65536

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}
static void set_int(lua_State *L, const char *k, int64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}
static void push_info(lua_State *L, const fs_dicom_info *in)
{
    lua_createtable(L, 0, 48);
    set_str(L, "modality", in->modality);
    set_str(L, "sop_class_uid", in->sop_class_uid);
    set_str(L, "image_type", in->image_type);
    set_str(L, "transfer_syntax_uid", in->transfer_syntax_uid);
    set_str(L, "transfer_syntax", in->transfer_syntax);
    set_str(L, "photometric", in->photometric);
    set_str(L, "patient_id", in->patient_id);
    set_str(L, "study_uid", in->study_uid);
    set_str(L, "series_uid", in->series_uid);
    set_str(L, "sop_instance_uid", in->sop_instance_uid);
    set_str(L, "frame_of_reference_uid", in->frame_of_reference_uid);
    set_str(L, "series_description", in->series_description);
    set_str(L, "units", in->units);
    set_int(L, "series_number", in->series_number);
    set_int(L, "instance_number", in->instance_number);
    set_int(L, "rows", in->rows);
    set_int(L, "columns", in->columns);
    set_int(L, "frames", in->frames);
    set_int(L, "samples_per_pixel", in->samples_per_pixel);
    set_int(L, "bits_allocated", in->bits_allocated);
    set_int(L, "bits_stored", in->bits_stored);
    set_int(L, "pixel_representation", in->pixel_representation);
    fs_lua_set_number(L, "rescale_slope", in->rescale_slope);
    fs_lua_set_number(L, "rescale_intercept", in->rescale_intercept);
    if (in->has_dose_grid_scaling)
        fs_lua_set_number(L, "dose_grid_scaling", in->dose_grid_scaling);
    if (in->has_pixel_spacing)
        fs_lua_set_numbers(L, "pixel_spacing_mm", in->pixel_spacing, 2);
    if (in->has_slice_spacing)
        fs_lua_set_number(L, "slice_spacing_mm", in->slice_spacing);
    if (in->has_slice_thickness)
        fs_lua_set_number(L, "slice_thickness_mm", in->slice_thickness);
    /* spacing_mm: the slice step is Spacing Between Slices (or the RT grid offsets), else the
     * slice thickness; slice_spacing_source says which ("none": 1 mm written, not known) */
    if (in->has_pixel_spacing) {
        double z = 1.0;
        const char *src = "none";
        if (in->has_slice_spacing && in->slice_spacing > 0) {
            z = in->slice_spacing;
            src = "slice_spacing";
        } else if (in->has_slice_thickness && in->slice_thickness > 0) {
            z = in->slice_thickness;
            src = "slice_thickness";
        }
        double sp[3] = {z, in->pixel_spacing[0], in->pixel_spacing[1]};
        fs_lua_set_numbers(L, "spacing_mm", sp, 3);
        set_str(L, "slice_spacing_source", src);
    }
    if (in->has_position)
        fs_lua_set_numbers(L, "image_position", in->position, 3);
    if (in->has_orientation) {
        const double *o = in->orientation;
        fs_lua_set_numbers(L, "image_orientation", o, 6);
        double nrm[3] = {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5],
                         o[0] * o[4] - o[1] * o[3]};
        fs_lua_set_numbers(L, "slice_normal", nrm, 3);
    }
    lua_createtable(L, in->n_energy_windows, 0);
    for (int i = 0; i < in->n_energy_windows; i++) {
        const fs_dicom_energy_window *w = &in->energy_windows[i];
        lua_createtable(L, 0, 3);
        set_str(L, "name", w->name);
        fs_lua_set_number(L, "lower_kev", w->lower_kev);
        fs_lua_set_number(L, "upper_kev", w->upper_kev);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "energy_windows");
    int nd = in->n_detectors < FS_DICOM_MAX_DETECTORS ? in->n_detectors : FS_DICOM_MAX_DETECTORS;
    lua_createtable(L, nd, 0);
    for (int i = 0; i < nd; i++) {
        const fs_dicom_detector *d = &in->detectors[i];
        lua_createtable(L, 0, 5);
        set_str(L, "collimator", d->collimator);
        set_str(L, "collimator_type", d->collimator_type);
        fs_lua_set_number(L, "radial_position_mm", d->radial_position_mm);
        if (d->has_position)
            fs_lua_set_numbers(L, "image_position", d->position, 3);
        if (d->has_orientation)
            fs_lua_set_numbers(L, "image_orientation", d->orientation, 6);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "detectors");
    set_int(L, "number_of_detectors", in->n_detectors);
    if (in->number_of_slices > 0)
        set_int(L, "number_of_slices", in->number_of_slices);
    set_str(L, "radiopharmaceutical", in->radiopharmaceutical);
}

/* fs.io.load_dicom(path, {frames = 3 or {1, 5, ...}}) -> tensor (frames, rows, cols) or
 * (frames, 3, rows, cols), info. Frames are 1-based and kept in the order given. */
static int l_load_dicom(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    fs_lua_check_options(L, 2, "load_dicom", FS_OPTIONS("frames"));
    int64_t *frames = NULL;
    int nframes = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "frames");
        int ft = lua_type(L, -1);
        if (ft == LUA_TNUMBER || ft == LUA_TTABLE) {
            lua_Integer n = ft == LUA_TNUMBER ? 1 : (lua_Integer)lua_rawlen(L, -1);
            if (n < 1 || n > MAX_FRAMES_ASKED)
                return luaL_error(L, "load_dicom: %s: option 'frames' must list 1 to %d frame "
                                     "numbers, got %d", path, MAX_FRAMES_ASKED, (int)n);
            frames = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)n, 0);
            for (lua_Integer i = 0; i < n; i++) {
                if (ft == LUA_TTABLE)
                    lua_rawgeti(L, -2, i + 1);
                else
                    lua_pushvalue(L, -2);
                int isint = 0;
                lua_Integer f = lua_tointegerx(L, -1, &isint);
                if (!isint || f < 1)
                    return luaL_error(L, "load_dicom: %s: option 'frames' entry %d must be a "
                                         "frame number >= 1", path, (int)i + 1);
                frames[i] = f - 1;
                lua_pop(L, 1);
            }
            nframes = (int)n;
        } else if (ft != LUA_TNIL) {
            return luaL_error(L, "load_dicom: option 'frames' must be a frame number or a list "
                                 "of them, got %s", lua_typename(L, ft));
        }
    }
    fs_tensor **box = fs_lua_new_box(L);
    fs_dicom_info info;
    fs_lua_return(L, box, fs_dicom_read(path, frames, nframes, &info));
    push_info(L, &info);
    return 2;
}

/* fs.io.dicom_info(path) -> info (the attributes, pixel data not decoded) */
static int l_dicom_info(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (lua_gettop(L) > 1)
        return luaL_error(L, "dicom_info: takes one argument (the path), got %d", lua_gettop(L));
    fs_dicom_info info;
    if (fs_dicom_read_info(path, &info))
        return fs_lua_error(L);
    push_info(L, &info);
    return 1;
}

void fs_lua_open_dicom(lua_State *L)
{
    lua_getfield(L, -1, "io");
    if (!lua_istable(L, -1))
        luaL_error(L, "fewshot.core: fs.io must exist before the DICOM functions are added");
    lua_pushcfunction(L, l_load_dicom);
    lua_setfield(L, -2, "load_dicom");
    lua_pushcfunction(L, l_dicom_info);
    lua_setfield(L, -2, "dicom_info");
    lua_pop(L, 1);
}
