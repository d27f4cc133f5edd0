/* prnet.c - PRNet-2D as a module tree (layout, names and initialisation in prnet.h).
 * x (N, C, P, P); level l of the encoder holds (N, b 2^l, P / 2^l, P / 2^l). */
#include <stdio.h>
#include <string.h>

#include "autograd/autograd.h"
#include "models/prnet.h"
#include "ops/ops.h"

#define MAX_DEPTH 12
#define MAX_CONVS 16
#define MAX_WIDTH 65536 /* base, in_channels, latent, patch */

static const char *const NORM_NAMES[] = {"instance", "batch"};
static const char *const UP_NAMES[] = {"bilinear", "transpose"};

const char *fs_prnet_norm_name(fs_prnet_norm n) { return NORM_NAMES[n == FS_PRNET_BATCH]; }
const char *fs_prnet_up_name(fs_prnet_up u) { return UP_NAMES[u == FS_PRNET_TRANSPOSE]; }

int fs_prnet_norm_parse(const char *op, const char *name, fs_prnet_norm *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(name, NORM_NAMES[i]) == 0)
            return *out = (fs_prnet_norm)i, 0;
    return fs_set_error("%s: norm must be \"instance\" or \"batch\", got \"%s\"", op, name);
}

int fs_prnet_up_parse(const char *op, const char *name, fs_prnet_up *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(name, UP_NAMES[i]) == 0)
            return *out = (fs_prnet_up)i, 0;
    return fs_set_error("%s: up must be \"bilinear\" or \"transpose\", got \"%s\"", op, name);
}

const fs_prnet_settings *fs_prnet_settings_of(const fs_module *m)
{
    return fs_module_settings(m, "PRNet");
}

/* ---- forward ---- */

/* The i-th (0-based) conv / norm names of a block: "conv", "norm", then "conv2", ... */
static void block_names(int i, char conv[16], char norm[16])
{
    if (i == 0) {
        snprintf(conv, 16, "conv");
        snprintf(norm, 16, "norm");
    } else {
        snprintf(conv, 16, "conv%d", i + 1);
        snprintf(norm, 16, "norm%d", i + 1);
    }
}

/* k x [conv -> norm -> relu] with blk's children; consumes x (the caller's reference). */
static fs_tensor *block(fs_module *blk, fs_tensor *x, int64_t k)
{
    fs_tensor *h = x;
    for (int i = 0; i < k && h; i++) {
        char cn[16], nn[16];
        block_names(i, cn, nn);
        fs_tensor *c = fs_module_forward(fs_module_child(blk, cn), h);
        fs_tensor_release(h);
        fs_module *norm = fs_module_child(blk, nn);
        const fs_instancenorm_settings *in = fs_module_settings(norm, "InstanceNorm2d");
        if (in && c) { /* norm and ReLU in one pass */
            h = fs_instance_norm_relu(c, NULL, NULL, in->eps);
            fs_tensor_release(c);
            continue;
        }
        fs_tensor *n = c ? fs_module_forward(norm, c) : NULL;
        fs_tensor_release(c);
        h = n ? fs_relu(n) : NULL;
        fs_tensor_release(n);
    }
    return h;
}

static int check_input(const fs_module *m, const fs_tensor *x)
{
    const fs_prnet_settings *s = m->settings;
    if (x->ndim != 4 || x->size[1] != s->in_channels || x->size[2] != s->patch ||
        x->size[3] != s->patch)
        return fs_set_error("prnet: expected input (N, %lld, %lld, %lld), got %s",
                            (long long)s->in_channels, (long long)s->patch, (long long)s->patch,
                            FS_SHAPE(x));
    return 0;
}

/* The encoder: skips[l] (D of them, new references, NULL when want_skips is false), the
 * bottleneck output *bottom and the latent. -1 on error (everything released). */
static int encode(fs_module *m, fs_tensor *x, fs_tensor **skips, fs_tensor **bottom,
                  fs_tensor **latent)
{
    const fs_prnet_settings *s = m->settings;
    const int64_t D = s->depth, k = s->convs_per_level;
    fs_module *enc = fs_module_child(m, "enc"), *pool = fs_module_child(m, "pool");
    *bottom = *latent = NULL;
    for (int64_t l = 0; l < D; l++)
        if (skips)
            skips[l] = NULL;
    if (check_input(m, x) < 0)
        return -1;
    fs_tensor *h = fs_tensor_retain(x);
    for (int64_t l = 0; l < D && h; l++) {
        fs_tensor *f = block(enc->children[l], h, k);
        h = f ? fs_module_forward(pool, f) : NULL;
        if (skips)
            skips[l] = f;
        else
            fs_tensor_release(f);
    }
    h = h ? block(fs_module_child(m, "bottleneck"), h, k) : NULL;
    fs_tensor *z = h ? fs_view(h, 2, (int64_t[]){h->size[0], -1}) : NULL;
    static const char *const fc[] = {"fc1", "fc2", "fc3"};
    for (int i = 0; i < 3 && z; i++) {
        fs_tensor *y = fs_module_forward(fs_module_child(m, fc[i]), z);
        fs_tensor_release(z);
        z = y;
        if (z && i < 2) {
            y = fs_relu(z);
            fs_tensor_release(z);
            z = y;
        }
    }
    if (!z) {
        fs_tensor_release(h);
        for (int64_t l = 0; l < D && skips; l++) {
            fs_tensor_release(skips[l]);
            skips[l] = NULL;
        }
        return -1;
    }
    *bottom = h;
    *latent = z;
    return 0;
}

fs_tensor *fs_prnet_encode(fs_module *m, fs_tensor *x)
{
    if (!fs_prnet_settings_of(m))
        return fs_set_error("encode: a %s module is not a PRNet", m->kind), NULL;
    fs_tensor *bottom, *z;
    if (encode(m, x, NULL, &bottom, &z) < 0)
        return NULL;
    fs_tensor_release(bottom);
    return z;
}

static fs_tensor *prnet_module_forward(fs_module *m, fs_tensor *x)
{
    return fs_prnet_encode(m, x);
}

int fs_prnet_forward(fs_module *m, fs_tensor *x, fs_tensor **latent, fs_tensor **recon)
{
    *latent = *recon = NULL;
    const fs_prnet_settings *s = fs_prnet_settings_of(m);
    if (!s)
        return fs_set_error("prnet forward: a %s module is not a PRNet", m->kind);
    if (m->flat && !m->flat_grad && fs_grad_enabled() && fs_module_ensure_grad(m) < 0)
        return -1;
    const int64_t D = s->depth, k = s->convs_per_level;
    fs_tensor *skips[MAX_DEPTH], *h, *z;
    if (encode(m, x, skips, &h, &z) < 0)
        return -1;
    fs_module *dec = fs_module_child(m, "dec");
    for (int64_t i = 0; i < D && h; i++) {
        fs_module *d = dec->children[i];
        fs_tensor *u = fs_module_forward(fs_module_child(d, "up"), h);
        fs_tensor_release(h);
        fs_tensor *cat = u ? fs_cat(2, (fs_tensor *[]){u, skips[D - 1 - i]}, 1) : NULL;
        fs_tensor_release(u);
        fs_tensor_release(skips[D - 1 - i]);
        skips[D - 1 - i] = NULL;
        h = cat ? block(d, cat, k) : NULL;
    }
    fs_tensor *r = h ? fs_module_forward(fs_module_child(m, "head"), h) : NULL;
    fs_tensor_release(h);
    fs_tensor *y = r ? fs_unary(FS_SIGMOID, r) : NULL;
    fs_tensor_release(r);
    for (int64_t l = 0; l < D; l++)
        fs_tensor_release(skips[l]);
    if (!y) {
        fs_tensor_release(z);
        return -1;
    }
    *latent = z;
    *recon = y;
    return 0;
}

/* ---- description ---- */

static void prnet_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_prnet_settings *s = m->settings;
    fs_module_appendf(b, cap, len,
            spec ? "prnet{in_channels=%lld, base=%lld, depth=%lld, latent=%lld, patch=%lld, "
                   "norm=\"%s\", up=\"%s\", convs_per_level=%lld}"
                 : "PRNet(in_channels=%lld, base=%lld, depth=%lld, latent=%lld, patch=%lld, "
                   "norm=%s, up=%s, convs_per_level=%lld)",
            (long long)s->in_channels, (long long)s->base, (long long)s->depth,
            (long long)s->latent, (long long)s->patch, fs_prnet_norm_name(s->norm),
            fs_prnet_up_name(s->up), (long long)s->convs_per_level);
}

/* ---- building ---- */

/* Adds child (taking over the caller's reference); keeps going only while rc == 0. */
static int add(int rc, fs_module *parent, const char *name, fs_module *child)
{
    if (rc == 0)
        rc = child ? fs_module_add_child(parent, name, child) : -1;
    fs_module_release(child);
    return rc;
}

static fs_module *conv(int64_t in, int64_t out, int64_t kernel, fs_generator *g)
{
    fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
    a.padding[0] = a.padding[1] = kernel / 2;
    return fs_nn_conv2d(in, out, kernel, kernel, &a, true, g);
}

/* Adds k x [conv, norm] (in -> out channels) to blk. */
static int add_convs(int rc, fs_module *blk, const fs_prnet_settings *s, int64_t in, int64_t out,
                     fs_generator *g)
{
    for (int i = 0; i < s->convs_per_level && rc == 0; i++) {
        char cn[16], nn[16];
        block_names(i, cn, nn);
        rc = add(rc, blk, cn, conv(i ? out : in, out, 3, g));
        rc = add(rc, blk, nn, s->norm == FS_PRNET_BATCH ? fs_nn_batchnorm2d(out, 1e-5, 0.1)
                                                        : fs_nn_instancenorm2d(out, 1e-5));
    }
    return rc;
}

static int check_settings(const fs_prnet_settings *s)
{
    const struct { const char *name; int64_t v, max; } opt[] = {
        {"in_channels", s->in_channels, MAX_WIDTH}, {"base", s->base, MAX_WIDTH},
        {"depth", s->depth, MAX_DEPTH}, {"latent", s->latent, MAX_WIDTH},
        {"patch", s->patch, MAX_WIDTH}, {"convs_per_level", s->convs_per_level, MAX_CONVS}};
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++) {
        if (opt[i].v < 1)
            return fs_set_error("prnet: %s must be >= 1, got %lld", opt[i].name,
                                (long long)opt[i].v);
        if (opt[i].v > opt[i].max)
            return fs_set_error("prnet: %s %lld is too large (at most %lld)", opt[i].name,
                                (long long)opt[i].v, (long long)opt[i].max);
    }
    if (s->patch % ((int64_t)1 << s->depth) != 0)
        return fs_set_error("prnet: patch %lld must be divisible by 2^depth = %lld (depth %lld)",
                            (long long)s->patch, (long long)1 << s->depth, (long long)s->depth);
    if (s->norm != FS_PRNET_INSTANCE && s->norm != FS_PRNET_BATCH)
        return fs_set_error("prnet: unknown norm %d", (int)s->norm);
    if (s->up != FS_PRNET_BILINEAR && s->up != FS_PRNET_TRANSPOSE)
        return fs_set_error("prnet: unknown up %d", (int)s->up);
    return 0;
}

static fs_module *container(const char *kind)
{
    return fs_module_new(kind, NULL);
}

static int build(fs_module *m, const fs_prnet_settings *s, fs_generator *g)
{
    const int64_t b = s->base, D = s->depth;
    fs_module *enc = container("ModuleList"), *dec = container("ModuleList");
    int rc = enc && dec ? 0 : -1;
    int64_t in = s->in_channels;
    for (int64_t l = 0; l < D && rc == 0; l++) {
        fs_module *blk = fs_module_new("PRNetDown", NULL);
        rc = blk ? add_convs(0, blk, s, in, b << l, g) : -1;
        char name[24];
        snprintf(name, sizeof name, "%lld", (long long)l);
        rc = add(rc, enc, name, blk);
        in = b << l;
    }
    rc = add(rc, m, "enc", enc);
    fs_pool2d_args pa = {{2, 2}, {2, 2}, {0, 0}, false, true};
    rc = add(rc, m, "pool", fs_nn_maxpool2d(&pa));
    fs_module *bot = rc == 0 ? fs_module_new("PRNetDown", NULL) : NULL;
    if (rc == 0)
        rc = bot ? add_convs(0, bot, s, in, b << D, g) : -1;
    rc = add(rc, m, "bottleneck", bot);
    const int64_t side = s->patch >> D, feat = (b << D) * side * side;
    rc = add(rc, m, "fc1", rc ? NULL : fs_nn_linear(feat, 8 * b, true, g));
    rc = add(rc, m, "fc2", rc ? NULL : fs_nn_linear(8 * b, 4 * b, true, g));
    rc = add(rc, m, "fc3", rc ? NULL : fs_nn_linear(4 * b, s->latent, true, g));
    for (int64_t i = 0; i < D && rc == 0; i++) {
        const int64_t l = D - 1 - i, cin = b << (l + 1), cout = b << l;
        fs_module *blk = fs_module_new("PRNetUp", NULL), *up;
        int64_t ccat;
        if (s->up == FS_PRNET_TRANSPOSE) {
            fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
            a.stride[0] = a.stride[1] = 2;
            up = fs_nn_conv_transpose2d(cin, cout, 2, 2, &a, true, g);
            ccat = 2 * cout;
        } else {
            up = fs_nn_upsample(2.0, 2.0, FS_INTERP_BILINEAR);
            ccat = cin + cout;
        }
        rc = blk ? add(0, blk, "up", up) : (fs_module_release(up), -1);
        if (rc == 0)
            rc = add_convs(rc, blk, s, ccat, cout, g);
        char name[24];
        snprintf(name, sizeof name, "%lld", (long long)i);
        rc = add(rc, dec, name, blk);
    }
    rc = add(rc, m, "dec", dec);
    rc = add(rc, m, "head", rc ? NULL : conv(b, s->in_channels, 1, g));
    return rc;
}

fs_module *fs_prnet(const fs_prnet_settings *s, fs_generator *g)
{
    if (check_settings(s) < 0)
        return NULL;
    fs_module *m = fs_module_new("PRNet", prnet_module_forward);
    if (!m)
        return NULL;
    m->describe = prnet_describe;
    if (!fs_module_set_settings(m, s, sizeof *s)) {
        fs_module_release(m);
        return NULL;
    }
    fs_module_defer_flatten(true);
    int rc = build(m, s, g);
    fs_module_defer_flatten(false);
    if (rc == 0)
        rc = fs_module_flatten(m);
    if (rc < 0) {
        fs_module_release(m);
        return NULL;
    }
    return m;
}
