/* match_lua.c - fs.match: template matching by normalised cross-correlation (core: match/).
 *
 *   fs.match.ncc(image, template) -> (H, W) NCC map; 0 where the template (odd sizes, centred
 *     on the pixel) does not fit inside the image, and for constant windows or templates.
 *   fs.match.best(image, template, {window=, centre={x, y}, prior=}) -> x, y, score: the best
 *     match, 1-based pixel coordinates with a sub-pixel parabolic peak; window (pixels, >= 0)
 *     limits the search to +/- window around centre (1-based); no window: the whole image;
 *     prior (pixels, with a window) subtracts d^2 / (2 prior^2), d the distance from centre.
 * image: (H, W), template: (h, w) float tensors, any strides.
 */
#include "lbind.h"
#include "match/match.h"

static fs_tensor *check_2d(lua_State *L, int idx, const char *op, const char *what)
{
    fs_tensor *t = fs_lua_check_tensor(L, idx);
    if (t->ndim != 2)
        luaL_error(L, "%s: %s must be 2-D (H, W), got %s", op, what, FS_SHAPE(t));
    if (fs_is_contiguous(t))
        return t;
    fs_tensor **box = fs_lua_new_box(L); /* a contiguous copy, kept on the stack */
    fs_lua_return(L, box, fs_tensor_contiguous_copy(t));
    return *box;
}

static int l_ncc(lua_State *L)
{
    lua_settop(L, 2);
    fs_tensor *img = check_2d(L, 1, "match.ncc", "image");
    fs_tensor *tpl = check_2d(L, 2, "match.ncc", "template");
    fs_tensor **box = fs_lua_new_box(L);
    fs_lua_return(L, box, fs_tensor_zeros(2, img->size));
    if (fs_match_ncc(fs_data(img), (int)img->size[0], (int)img->size[1], fs_data(tpl),
                     (int)tpl->size[0], (int)tpl->size[1], fs_data(*box)))
        return fs_lua_error(L);
    return 1;
}

static int l_best(lua_State *L)
{
    lua_settop(L, 3); /* the options stay at 3 when check_2d pushes copies */
    fs_tensor *img = check_2d(L, 1, "match.best", "image");
    fs_tensor *tpl = check_2d(L, 2, "match.best", "template");
    int o = 3;
    if (!lua_isnoneornil(L, o))
        luaL_checktype(L, o, LUA_TTABLE);
    fs_lua_check_options(L, o, "match.best", FS_OPTIONS("window", "centre", "prior"));
    int window = -1;
    double cx = 0, cy = 0;
    if (!lua_isnoneornil(L, o) && (lua_getfield(L, o, "window"), !lua_isnil(L, -1))) {
        if (!lua_isinteger(L, -1))
            return luaL_error(L, "match.best: window must be an integer number of pixels");
        lua_Integer w = lua_tointeger(L, -1);
        if (w < 0 || w > 1 << 20)
            return luaL_error(L, "match.best: window must be >= 0 pixels, got %d", (int)w);
        window = (int)w;
        lua_getfield(L, o, "centre");
        if (!lua_istable(L, -1))
            return luaL_error(L, "match.best: a window needs centre={x, y} (1-based pixels)");
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1))
            return luaL_error(L, "match.best: centre must be {x, y} (1-based pixels)");
        cx = lua_tonumber(L, -2) - 1; /* to 0-based */
        cy = lua_tonumber(L, -1) - 1;
        lua_pop(L, 3);
    }
    double prior = 0;
    if (!lua_isnoneornil(L, o) && (lua_getfield(L, o, "prior"), !lua_isnil(L, -1))) {
        if (!lua_isnumber(L, -1))
            return luaL_error(L, "match.best: prior must be a number of pixels");
        prior = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    fs_match_result r;
    if (fs_match_best(fs_data(img), (int)img->size[0], (int)img->size[1], fs_data(tpl),
                      (int)tpl->size[0], (int)tpl->size[1], window, cx, cy, prior, &r))
        return fs_lua_error(L);
    lua_pushnumber(L, r.x + 1);
    lua_pushnumber(L, r.y + 1);
    lua_pushnumber(L, r.score);
    return 3;
}

void fs_lua_open_match(lua_State *L)
{
    static const luaL_Reg fns[] = {{"ncc", l_ncc}, {"best", l_best}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, "match");
}
