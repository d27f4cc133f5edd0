/* image_lua.c - fs.image.read / fs.image.write (PNG) and fs.io.load_nifti / save_nifti /
 * load_interfile / save_interfile. Data errors (missing, corrupt, truncated files) raise a Lua
 * error whose message names the file and the reason.
 *
 * info tables: spacing_mm lists the spacing in the tensor's dim order ((z, y, x) for a volume,
 * (y, x) for a slice); the file-order fields (pixdim, dim) are kept as stored.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/interfile.h"
#include "io/nifti.h"
#include "io/png.h"
#include "lbind.h"

/* fs.image.read(path, {normalize=false, channels=1}) -> tensor (H, W) or (3, H, W), bit depth */
static int l_image_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    bool normalize = fs_lua_opt_bool(L, 2, "normalize", false);
    int channels = (int)fs_lua_opt_integer(L, 2, "channels", 1);
    if (channels != 1 && channels != 3)
        return luaL_error(L, "image.read: option 'channels' must be 1 or 3, got %d", channels);
    fs_tensor **box = fs_lua_new_box(L);
    int depth = 0;
    fs_lua_return(L, box, fs_png_read(path, channels, normalize, &depth));
    lua_pushinteger(L, depth);
    return 2;
}

/* fs.image.write(path, t, {bits=8, normalize=true}) */
static int l_image_write(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_tensor *t = fs_lua_check_tensor(L, 2);
    int bits = (int)fs_lua_opt_integer(L, 3, "bits", 8);
    bool normalize = fs_lua_opt_bool(L, 3, "normalize", true);
    if (fs_png_write(path, t, bits, normalize))
        return fs_lua_error(L);
    return 0;
}

/* Reads up to n numbers from field k of the table at idx into v; returns how many. */
static int get_list(lua_State *L, int idx, const char *k, double *v, int n)
{
    if (lua_isnoneornil(L, idx))
        return 0;
    lua_getfield(L, idx, k);
    int got = 0;
    if (lua_istable(L, -1)) {
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (lua_isnumber(L, -1)) {
                v[i] = lua_tonumber(L, -1);
                got = i + 1;
            }
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "info.%s must be a list of numbers", k);
    }
    lua_pop(L, 1);
    return got;
}

/* fs.io.load_nifti(path) -> tensor, info */
static int l_load_nifti(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_nifti_info info;
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_nifti_read(path, &info));
    lua_newtable(L);
    double sp[7];
    for (int i = 0; i < info.ndim; i++)
        sp[i] = info.pixdim[info.ndim - i];
    fs_lua_set_numbers(L, "spacing_mm", sp, info.ndim);
    double dim[7], pd[7];
    for (int i = 0; i < info.ndim; i++) {
        dim[i] = (double)info.dim[i];
        pd[i] = info.pixdim[i + 1];
    }
    fs_lua_set_numbers(L, "dim", dim, info.ndim);
    fs_lua_set_numbers(L, "pixdim", pd, info.ndim);
    fs_lua_set_number(L, "qfac", info.pixdim[0]);
    fs_lua_set_number(L, "datatype", info.datatype);
    fs_lua_set_number(L, "scl_slope", info.scl_slope);
    fs_lua_set_number(L, "scl_inter", info.scl_inter);
    fs_lua_set_number(L, "qform_code", info.qform_code);
    fs_lua_set_number(L, "sform_code", info.sform_code);
    double q[3] = {info.quatern_b, info.quatern_c, info.quatern_d};
    double qo[3] = {info.qoffset_x, info.qoffset_y, info.qoffset_z};
    fs_lua_set_numbers(L, "quatern", q, 3);
    fs_lua_set_numbers(L, "qoffset", qo, 3);
    fs_lua_set_numbers(L, "srow_x", info.srow_x, 4);
    fs_lua_set_numbers(L, "srow_y", info.srow_y, 4);
    fs_lua_set_numbers(L, "srow_z", info.srow_z, 4);
    fs_lua_set_number(L, "xyzt_units", info.xyzt_units);
    lua_pushstring(L, info.descrip);
    lua_setfield(L, -2, "descrip");
    return 2;
}

/* fs.io.save_nifti(path, t, info) with info.spacing_mm in tensor order (or info.pixdim in file
 * order), and the qform/sform fields of load_nifti's info. */
static int l_save_nifti(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_tensor *t = fs_lua_check_tensor(L, 2);
    int o = 3;
    if (!lua_isnoneornil(L, o))
        luaL_checktype(L, o, LUA_TTABLE);
    fs_nifti_info info;
    fs_nifti_info_default(&info);
    double v[7];
    int n = get_list(L, o, "spacing_mm", v, 7);
    if (n > 0) {
        if (n != t->ndim)
            return luaL_error(L, "save_nifti: %s: info.spacing_mm has %d entries for a tensor of "
                                 "shape %s", path, n, FS_SHAPE(t));
        for (int i = 0; i < n; i++)
            info.pixdim[n - i] = v[i];
    } else {
        n = get_list(L, o, "pixdim", v, 7);
        for (int i = 0; i < n; i++)
            info.pixdim[i + 1] = v[i];
    }
    info.pixdim[0] = fs_lua_opt_number(L, o, "qfac", 1.0) < 0 ? -1.0 : 1.0;
    info.qform_code = (int)fs_lua_opt_integer(L, o, "qform_code", 0);
    info.sform_code = (int)fs_lua_opt_integer(L, o, "sform_code", 0);
    double q[3] = {0, 0, 0}, qo[3] = {0, 0, 0};
    get_list(L, o, "quatern", q, 3);
    get_list(L, o, "qoffset", qo, 3);
    info.quatern_b = q[0]; info.quatern_c = q[1]; info.quatern_d = q[2];
    info.qoffset_x = qo[0]; info.qoffset_y = qo[1]; info.qoffset_z = qo[2];
    get_list(L, o, "srow_x", info.srow_x, 4);
    get_list(L, o, "srow_y", info.srow_y, 4);
    get_list(L, o, "srow_z", info.srow_z, 4);
    const char *d = fs_lua_opt_string(L, o, "descrip", "");
    snprintf(info.descrip, sizeof info.descrip, "%s", d);
    if (fs_nifti_write(path, t, &info))
        return fs_lua_error(L);
    return 0;
}

/* fs.io.load_interfile(header_path) -> tensor, info */
static int l_load_interfile(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_interfile_info info;
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_interfile_read(path, &info));
    lua_newtable(L);
    double sp[3] = {info.spacing_mm[2], info.spacing_mm[1], info.spacing_mm[0]};
    fs_lua_set_numbers(L, "spacing_mm", info.ndim == 3 ? sp : sp + 1, info.ndim);
    double dim[3] = {(double)info.dim[0], (double)info.dim[1], (double)info.dim[2]};
    fs_lua_set_numbers(L, "matrix_size", dim, 3);
    lua_pushstring(L, info.number_format);
    lua_setfield(L, -2, "number_format");
    fs_lua_set_number(L, "bytes_per_pixel", info.bytes_per_pixel);
    lua_pushstring(L, info.big_endian ? "BIGENDIAN" : "LITTLEENDIAN");
    lua_setfield(L, -2, "byte_order");
    fs_lua_set_number(L, "data_offset", (double)info.data_offset);
    lua_pushstring(L, info.data_file);
    lua_setfield(L, -2, "data_file");
    fs_lua_set_number(L, "rescale_slope", info.rescale_slope);
    fs_lua_set_number(L, "rescale_offset", info.rescale_offset);
    return 2;
}

/* fs.io.save_interfile(header_path, t, {spacing_mm = {z, y, x} or {y, x}}) */
static int l_save_interfile(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    fs_tensor *t = fs_lua_check_tensor(L, 2);
    double v[3] = {0, 0, 0}, sp[3] = {1, 1, 1};
    int n = get_list(L, 3, "spacing_mm", v, 3);
    if (n > 0 && n != t->ndim)
        return luaL_error(L, "save_interfile: %s: info.spacing_mm has %d entries for a tensor of "
                             "shape %s", path, n, FS_SHAPE(t));
    for (int i = 0; i < n; i++)
        sp[n - 1 - i] = v[i];
    if (n == 2)
        sp[2] = sp[0];
    if (fs_interfile_write(path, t, sp))
        return fs_lua_error(L);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* fs.io.listdir(path) -> sorted list of entry names (without "." and ".."); raises when the
 * directory cannot be opened. */
static int l_listdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d)
        return luaL_error(L, "listdir: %s: cannot open (%s)", path, strerror(errno));
    lua_newtable(L);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(d);
    /* sort in place through a C array of the (table-anchored) strings */
    const char **names = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n > 0 ? n : 1), 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        names[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static void open_subtable(lua_State *L, const char *name, const luaL_Reg *funcs)
{
    lua_getfield(L, -1, name);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

static const luaL_Reg image_funcs[] = {
    {"read", l_image_read}, {"write", l_image_write}, {NULL, NULL}};
static const luaL_Reg io_funcs[] = {
    {"load_nifti", l_load_nifti}, {"save_nifti", l_save_nifti},
    {"load_interfile", l_load_interfile}, {"save_interfile", l_save_interfile},
    {"listdir", l_listdir}, {NULL, NULL}};

void fs_lua_open_image(lua_State *L)
{
    open_subtable(L, "image", image_funcs);
    open_subtable(L, "io", io_funcs);
}
