/* from_spec.c - rebuilds a module tree from its constructor expression, the text
 * fs_module_spec writes and a checkpoint stores ("fewshot.module"):
 *
 *   module := name '{' [item {',' item} [',']] '}'
 *   item   := key '=' value            (every kind but sequential)
 *           | module                   (sequential: its children, in order)
 *   value  := integer | number | 'true' | 'false' | '{' integer ',' integer '}'
 *           | '"' [A-Za-z0-9_]{0,23} '"'
 *
 * Names: conv2d, batchnorm2d, linear, relu, maxpool2d, adaptive_avgpool2d, flatten, sequential,
 * resnet18, prnet, conv_transpose2d, instancenorm2d, upsample, with the options and defaults
 * of their constructors. Nothing is evaluated;
 * every number is range-checked here or by the constructor (module.h: FS_MODULE_MAX_SIZE)
 * before anything is allocated, so a crafted checkpoint can only be refused. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/random.h"
#include "models/prnet.h"
#include "module/module.h"

#define MAX_DEPTH 32     /* nested sequential */
#define MAX_CHILDREN 256 /* per sequential, as fs.nn.sequential */
#define MAX_ITEMS 16     /* options per constructor */

typedef enum { V_INT, V_NUM, V_BOOL, V_PAIR, V_STR } value_kind;

typedef struct {
    char key[24];
    value_kind kind;
    int64_t i[2];        /* V_INT: i[0]; V_PAIR: both */
    double d;            /* V_NUM (and V_INT as a number) */
    bool b;
    char str[24];        /* V_STR */
} option;

typedef struct {
    const char *text, *s;
    bool build;          /* false: check the text only */
    fs_generator *g;
} parser;

static int fail(const parser *p, const char *fmt, const char *detail)
{
    char what[160];
    snprintf(what, sizeof what, fmt, detail);
    return fs_set_error("module description: %s at offset %lld", what,
                        (long long)(p->s - p->text));
}

static void skip_ws(parser *p)
{
    while (isspace((unsigned char)*p->s))
        p->s++;
}

static bool accept(parser *p, char c)
{
    skip_ws(p);
    if (*p->s != c)
        return false;
    p->s++;
    return true;
}

/* [A-Za-z_][A-Za-z0-9_]* into out[cap]; false when there is none or it is too long. */
static bool word(parser *p, char *out, size_t cap)
{
    skip_ws(p);
    const char *w = p->s;
    if (!isalpha((unsigned char)*w) && *w != '_')
        return false;
    while (isalnum((unsigned char)*p->s) || *p->s == '_')
        p->s++;
    size_t n = (size_t)(p->s - w);
    if (n >= cap) {
        p->s = w;
        return false;
    }
    memcpy(out, w, n);
    out[n] = 0;
    return true;
}

/* ['-'] digits ['.' digits] [('e'|'E') ['+'|'-'] digits]: an integer when it has neither a
 * point nor an exponent (out of int64 range is an error), else a double. */
static int number(parser *p, option *o)
{
    skip_ws(p);
    const char *t = p->s, *q = t;
    if (*q == '-')
        q++;
    if (!isdigit((unsigned char)*q))
        return fail(p, "expected a value%s", "");
    bool real = false;
    while (isdigit((unsigned char)*q))
        q++;
    if (*q == '.') {
        real = true;
        for (q++; isdigit((unsigned char)*q); q++) {}
    }
    if (*q == 'e' || *q == 'E') {
        real = true;
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!isdigit((unsigned char)*q))
            return fail(p, "bad number%s", "");
        while (isdigit((unsigned char)*q))
            q++;
    }
    if (isalnum((unsigned char)*q) || *q == '_' || *q == '.')
        return fail(p, "bad number%s", "");
    char buf[64];
    if ((size_t)(q - t) >= sizeof buf)
        return fail(p, "number too long%s", "");
    memcpy(buf, t, (size_t)(q - t));
    buf[q - t] = 0;
    errno = 0;
    if (real) {
        o->kind = V_NUM;
        o->d = strtod(buf, NULL);
    } else {
        o->kind = V_INT;
        o->i[0] = strtoll(buf, NULL, 10);
        o->d = (double)o->i[0];
    }
    if (errno == ERANGE)
        return fail(p, "number %s out of range", buf);
    p->s = q;
    return 0;
}

static int value(parser *p, option *o)
{
    skip_ws(p);
    char w[8];
    const char *at = p->s;
    if (word(p, w, sizeof w)) {
        if (strcmp(w, "true") != 0 && strcmp(w, "false") != 0) {
            p->s = at;
            return fail(p, "expected a value%s", "");
        }
        o->kind = V_BOOL;
        o->b = w[0] == 't';
        return 0;
    }
    if (*p->s == '"') {
        const char *q = p->s + 1;
        size_t n = 0;
        while ((isalnum((unsigned char)q[n]) || q[n] == '_') && n < sizeof o->str - 1)
            n++;
        if (q[n] != '"')
            return fail(p, "a string must be up to 23 letters, digits or '_' in quotes%s", "");
        memcpy(o->str, q, n);
        o->str[n] = 0;
        o->kind = V_STR;
        p->s = q + n + 1;
        return 0;
    }
    if (!accept(p, '{'))
        return number(p, o);
    option a, b;
    if (number(p, &a) < 0)
        return -1;
    if (!accept(p, ','))
        return fail(p, "expected ',' in a pair%s", "");
    if (number(p, &b) < 0)
        return -1;
    if (!accept(p, '}'))
        return fail(p, "expected '}' after a pair%s", "");
    if (a.kind != V_INT || b.kind != V_INT)
        return fail(p, "a pair must hold integers%s", "");
    o->kind = V_PAIR;
    o->i[0] = a.i[0];
    o->i[1] = b.i[0];
    return 0;
}

/* ---- options of one constructor ---- */

typedef struct {
    const char *name;
    option items[MAX_ITEMS];
    int n;
    bool used[MAX_ITEMS];
} options;

static const option *find(options *o, const char *key)
{
    for (int k = 0; k < o->n; k++)
        if (strcmp(o->items[k].key, key) == 0) {
            o->used[k] = true;
            return &o->items[k];
        }
    return NULL;
}

static int opt_int(parser *p, options *o, const char *key, bool required, int64_t def,
                   int64_t *out)
{
    const option *v = find(o, key);
    *out = def;
    if (!v)
        return required ? fs_set_error("module description: %s needs option '%s'", o->name,
                                       key) : 0;
    if (v->kind != V_INT)
        return fail(p, "option '%s' must be an integer", key);
    *out = v->i[0];
    return 0;
}

static int opt_pair(parser *p, options *o, const char *key, int64_t out[2], bool *given)
{
    const option *v = find(o, key);
    if (given)
        *given = v != NULL;
    if (!v)
        return 0;
    if (v->kind == V_INT)
        out[0] = out[1] = v->i[0];
    else if (v->kind == V_PAIR)
        out[0] = v->i[0], out[1] = v->i[1];
    else
        return fail(p, "option '%s' must be an integer or a pair of integers", key);
    return 0;
}

static int opt_num(parser *p, options *o, const char *key, double *out)
{
    const option *v = find(o, key);
    if (!v)
        return 0;
    if (v->kind != V_INT && v->kind != V_NUM)
        return fail(p, "option '%s' must be a number", key);
    *out = v->d;
    return 0;
}

static int opt_bool(parser *p, options *o, const char *key, bool *out)
{
    const option *v = find(o, key);
    if (!v)
        return 0;
    if (v->kind != V_BOOL)
        return fail(p, "option '%s' must be true or false", key);
    *out = v->b;
    return 0;
}

static int opt_str(parser *p, options *o, const char *key, const char **out)
{
    const option *v = find(o, key);
    if (!v)
        return 0;
    if (v->kind != V_STR)
        return fail(p, "option '%s' must be a string", key);
    *out = v->str;
    return 0;
}

/* A kernel given as kernel= or kernel_size= (one of them is required). */
static int opt_kernel(parser *p, options *o, int64_t k[2])
{
    bool a, b;
    if (opt_pair(p, o, "kernel", k, &a) < 0 || opt_pair(p, o, "kernel_size", k, &b) < 0)
        return -1;
    if (!a && !b)
        return fs_set_error("module description: %s needs option 'kernel'", o->name);
    return 0;
}

static int unused(options *o)
{
    for (int k = 0; k < o->n; k++)
        if (!o->used[k])
            return fs_set_error("module description: %s has no option '%s'", o->name,
                                o->items[k].key);
    return 0;
}

/* Builds (or, when checking, validates) one non-container module from its options. */
static int make_leaf(parser *p, options *o, fs_module **out)
{
    const char *nm = o->name;
    int rc = 0;
    *out = NULL;
    if (strcmp(nm, "conv2d") == 0) {
        int64_t in, outc, k[2];
        fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
        bool bias = true;
        rc = opt_int(p, o, "in_channels", true, 0, &in);
        if (rc == 0) rc = opt_int(p, o, "out_channels", true, 0, &outc);
        if (rc == 0) rc = opt_kernel(p, o, k);
        if (rc == 0) rc = opt_pair(p, o, "stride", a.stride, NULL);
        if (rc == 0) rc = opt_pair(p, o, "padding", a.padding, NULL);
        if (rc == 0) rc = opt_pair(p, o, "dilation", a.dilation, NULL);
        if (rc == 0) rc = opt_bool(p, o, "bias", &bias);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_conv2d(in, outc, k[0], k[1], &a, bias, p->g)) ? 0 : -1;
    } else if (strcmp(nm, "batchnorm2d") == 0) {
        int64_t n;
        double eps = 1e-5, momentum = 0.1;
        rc = opt_int(p, o, "num_features", true, 0, &n);
        if (rc == 0) rc = opt_num(p, o, "eps", &eps);
        if (rc == 0) rc = opt_num(p, o, "momentum", &momentum);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_batchnorm2d(n, eps, momentum)) ? 0 : -1;
    } else if (strcmp(nm, "linear") == 0) {
        int64_t in, outf;
        bool bias = true;
        rc = opt_int(p, o, "in_features", true, 0, &in);
        if (rc == 0) rc = opt_int(p, o, "out_features", true, 0, &outf);
        if (rc == 0) rc = opt_bool(p, o, "bias", &bias);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_linear(in, outf, bias, p->g)) ? 0 : -1;
    } else if (strcmp(nm, "relu") == 0 || strcmp(nm, "flatten") == 0) {
        rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = nm[0] == 'r' ? fs_nn_relu() : fs_nn_flatten()) ? 0 : -1;
    } else if (strcmp(nm, "maxpool2d") == 0) {
        fs_pool2d_args a = {{0, 0}, {0, 0}, {0, 0}, false, true};
        rc = opt_kernel(p, o, a.kernel);
        if (rc == 0) rc = opt_pair(p, o, "stride", a.stride, NULL);
        if (rc == 0) rc = opt_pair(p, o, "padding", a.padding, NULL);
        if (rc == 0) rc = opt_bool(p, o, "ceil_mode", &a.ceil_mode);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_maxpool2d(&a)) ? 0 : -1;
    } else if (strcmp(nm, "adaptive_avgpool2d") == 0) {
        int64_t s[2] = {1, 1};
        rc = opt_pair(p, o, "output_size", s, NULL);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_adaptive_avgpool2d(s[0], s[1])) ? 0 : -1;
    } else if (strcmp(nm, "conv_transpose2d") == 0) {
        int64_t in, outc, k[2];
        fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
        bool bias = true;
        rc = opt_int(p, o, "in_channels", true, 0, &in);
        if (rc == 0) rc = opt_int(p, o, "out_channels", true, 0, &outc);
        if (rc == 0) rc = opt_kernel(p, o, k);
        if (rc == 0) rc = opt_pair(p, o, "stride", a.stride, NULL);
        if (rc == 0) rc = opt_pair(p, o, "padding", a.padding, NULL);
        if (rc == 0) rc = opt_pair(p, o, "output_padding", a.output_padding, NULL);
        if (rc == 0) rc = opt_pair(p, o, "dilation", a.dilation, NULL);
        if (rc == 0) rc = opt_bool(p, o, "bias", &bias);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_conv_transpose2d(in, outc, k[0], k[1], &a, bias, p->g)) ? 0 : -1;
    } else if (strcmp(nm, "instancenorm2d") == 0) {
        int64_t n;
        double eps = 1e-5;
        rc = opt_int(p, o, "num_features", true, 0, &n);
        if (rc == 0) rc = opt_num(p, o, "eps", &eps);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_instancenorm2d(n, eps)) ? 0 : -1;
    } else if (strcmp(nm, "upsample") == 0) {
        double sh = 2.0, sw = 2.0;
        const char *mode = "nearest";
        rc = opt_num(p, o, "scale_h", &sh);
        if (rc == 0) rc = opt_num(p, o, "scale_w", &sw);
        if (rc == 0) rc = opt_str(p, o, "mode", &mode);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && strcmp(mode, "nearest") != 0 && strcmp(mode, "bilinear") != 0)
            rc = fs_set_error("module description: upsample mode must be \"nearest\" or "
                              "\"bilinear\", got \"%s\"", mode);
        if (rc == 0 && p->build)
            rc = (*out = fs_nn_upsample(sh, sw, mode[0] == 'b' ? FS_INTERP_BILINEAR
                                                               : FS_INTERP_NEAREST)) ? 0 : -1;
    } else if (strcmp(nm, "prnet") == 0) {
        fs_prnet_settings s = FS_PRNET_SETTINGS_DEFAULT;
        const char *norm = "instance", *up = "bilinear";
        rc = opt_int(p, o, "in_channels", false, s.in_channels, &s.in_channels);
        if (rc == 0) rc = opt_int(p, o, "base", false, s.base, &s.base);
        if (rc == 0) rc = opt_int(p, o, "depth", false, s.depth, &s.depth);
        if (rc == 0) rc = opt_int(p, o, "latent", false, s.latent, &s.latent);
        if (rc == 0) rc = opt_int(p, o, "patch", false, s.patch, &s.patch);
        if (rc == 0) rc = opt_int(p, o, "convs_per_level", false, s.convs_per_level,
                                  &s.convs_per_level);
        if (rc == 0) rc = opt_str(p, o, "norm", &norm);
        if (rc == 0) rc = opt_str(p, o, "up", &up);
        if (rc == 0) rc = unused(o);
        if (rc == 0) rc = fs_prnet_norm_parse("prnet", norm, &s.norm);
        if (rc == 0) rc = fs_prnet_up_parse("prnet", up, &s.up);
        if (rc == 0 && p->build)
            rc = (*out = fs_prnet(&s, p->g)) ? 0 : -1;
    } else if (strcmp(nm, "resnet18") == 0) {
        int64_t in, classes;
        bool given = find(o, "num_classes") != NULL;
        rc = opt_int(p, o, "in_channels", false, 3, &in);
        if (rc == 0) rc = opt_int(p, o, "num_classes", false, 0, &classes);
        if (rc == 0) rc = unused(o);
        if (rc == 0 && given && classes < 1)
            rc = fs_set_error("resnet18: num_classes must be >= 1 (or absent for the 512-d "
                              "embedding), got %lld", (long long)classes);
        if (rc == 0 && p->build)
            rc = (*out = fs_resnet18(in, classes, p->g)) ? 0 : -1;
    } else {
        rc = fs_set_error("module description: unknown module '%s'", nm);
    }
    return rc;
}

static int parse_module(parser *p, int depth, fs_module **out);

/* sequential{m, ...}: its children, built in order. */
static int parse_sequential(parser *p, int depth, fs_module **out)
{
    fs_module *mods[MAX_CHILDREN];
    int n = 0, rc = 0;
    while (rc == 0 && !accept(p, '}')) {
        if (n == MAX_CHILDREN) {
            rc = fail(p, "a sequential holds at most 256 modules%s", "");
            break;
        }
        fs_module *m = NULL;
        rc = parse_module(p, depth + 1, &m);
        if (rc == 0) {
            mods[n++] = m;
            skip_ws(p);
            if (*p->s != '}' && !accept(p, ','))
                rc = fail(p, "expected ',' or '}'%s", "");
        }
    }
    if (rc == 0 && p->build)
        rc = (*out = fs_nn_sequential(n, mods)) ? 0 : -1;
    for (int i = 0; i < n; i++)
        fs_module_release(mods[i]);
    return rc;
}

static int parse_module(parser *p, int depth, fs_module **out)
{
    *out = NULL;
    if (depth > MAX_DEPTH)
        return fail(p, "modules nested too deeply%s", "");
    options o = {0};
    char name[24];
    skip_ws(p);
    if (!word(p, name, sizeof name))
        return fail(p, "expected a module name%s", "");
    if (!accept(p, '{'))
        return fail(p, "expected '{' after '%s'", name);
    if (strcmp(name, "sequential") == 0)
        return parse_sequential(p, depth, out);
    o.name = name;
    while (!accept(p, '}')) {
        if (o.n == MAX_ITEMS)
            return fail(p, "too many options for %s", name);
        option *v = &o.items[o.n];
        if (!word(p, v->key, sizeof v->key))
            return fail(p, "expected an option name in %s", name);
        for (int k = 0; k < o.n; k++)
            if (strcmp(o.items[k].key, v->key) == 0)
                return fail(p, "option '%s' given twice", v->key);
        if (!accept(p, '='))
            return fail(p, "expected '=' after '%s'", v->key);
        if (value(p, v) < 0)
            return -1;
        o.n++;
        skip_ws(p);
        if (*p->s != '}' && !accept(p, ','))
            return fail(p, "expected ',' or '}'%s", "");
    }
    return make_leaf(p, &o, out);
}

static int run(const char *spec, bool build, fs_generator *g, fs_module **out)
{
    parser p = {spec, spec, build, g};
    fs_module *m = NULL;
    if (build)
        fs_module_defer_flatten(true); /* flattened once at the end, not once per level */
    int rc = parse_module(&p, 0, &m);
    if (build)
        fs_module_defer_flatten(false);
    skip_ws(&p);
    if (rc == 0 && *p.s)
        rc = fail(&p, "unexpected text after the description%s", "");
    if (rc == 0 && build)
        rc = fs_module_flatten(m);
    if (rc < 0) {
        fs_module_release(m);
        m = NULL;
    }
    *out = m;
    return rc;
}

int fs_module_spec_check(const char *spec)
{
    fs_module *m;
    return run(spec, false, NULL, &m);
}

fs_module *fs_module_from_spec(const char *spec, fs_generator *g)
{
    fs_module *m = NULL;
    if (run(spec, false, NULL, &m) < 0) /* the whole text first: nothing built for bad text */
        return NULL;
    run(spec, true, g ? g : fs_default_generator(), &m);
    return m;
}
