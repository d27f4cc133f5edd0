/* module.c - the module tree (module.h): entries, children, flat parameter/gradient buffers,
 * state_dict, printing and constructor descriptions. The layer modules are in layers.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "base/blockcache.h"
#include "module/module.h"
#include "ops/ops.h"
#include "io/safetensors.h"

/* ---- building ---- */

fs_module *fs_module_new(const char *kind, fs_module_forward_fn forward)
{
    fs_module *m = calloc(1, sizeof *m);
    if (!m) {
        fs_set_error("%s: out of memory", kind);
        return NULL;
    }
    m->refcount = 1;
    m->kind = kind;
    m->forward = forward;
    m->training = true;
    return m;
}

void *fs_module_set_settings(fs_module *m, const void *settings, size_t size)
{
    void *copy = malloc(size ? size : 1);
    if (!copy)
        return fs_set_error("%s: out of memory", m->kind), NULL;
    memcpy(copy, settings, size);
    if (m->settings)
        (m->free_settings ? m->free_settings : free)(m->settings);
    m->settings = copy;
    m->free_settings = NULL;
    return copy;
}

const void *fs_module_settings(const fs_module *m, const char *kind)
{
    return m && strcmp(m->kind, kind) == 0 ? m->settings : NULL;
}

fs_tensor *fs_module_tensor(const fs_module *m, const char *name)
{
    for (int i = 0; i < m->nentries; i++)
        if (strcmp(m->entries[i].name, name) == 0)
            return m->entries[i].t;
    return NULL;
}

fs_module *fs_module_retain(fs_module *m)
{
    if (m)
        m->refcount++;
    return m;
}

void fs_module_release(fs_module *m)
{
    if (!m || --m->refcount > 0)
        return;
    for (int i = 0; i < m->nentries; i++) {
        free(m->entries[i].name);
        fs_tensor_release(m->entries[i].t);
    }
    for (int i = 0; i < m->nchildren; i++) {
        free(m->child_names[i]);
        fs_module_release(m->children[i]);
    }
    free(m->children);
    free(m->child_names);
    fs_tensor_release(m->flat);
    fs_tensor_release(m->flat_grad);
    if (m->settings)
        (m->free_settings ? m->free_settings : free)(m->settings);
    free(m);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

static int add_entry(fs_module *m, const char *name, fs_tensor *t, bool buffer)
{
    if (!t)
        return -1;
    char *c = NULL;
    if (m->nentries == FS_MODULE_MAX_ENTRIES || !(c = dupstr(name))) {
        fs_tensor_release(t);
        return fs_set_error("%s: cannot register '%s' (too many entries or out of memory)",
                            m->kind, name);
    }
    t->requires_grad = !buffer;
    m->entries[m->nentries++] = (fs_module_entry){c, t, buffer};
    return 0;
}

int fs_module_add_param(fs_module *m, const char *name, fs_tensor *t)
{
    return add_entry(m, name, t, false);
}

int fs_module_add_buffer(fs_module *m, const char *name, fs_tensor *t)
{
    return add_entry(m, name, t, true);
}

int fs_module_add_child(fs_module *m, const char *name, fs_module *child)
{
    if (!child)
        return -1;
    if (m->nchildren == m->capchildren) {
        int cap = m->capchildren ? m->capchildren * 2 : 4;
        fs_module **c = realloc(m->children, (size_t)cap * sizeof *c);
        if (c)
            m->children = c;
        char **n = realloc(m->child_names, (size_t)cap * sizeof *n);
        if (n)
            m->child_names = n;
        if (!c || !n)
            return fs_set_error("%s: out of memory adding a child", m->kind);
        m->capchildren = cap;
    }
    char *nm = dupstr(name);
    if (!nm)
        return fs_set_error("%s: out of memory adding a child", m->kind);
    m->child_names[m->nchildren] = nm;
    m->children[m->nchildren++] = fs_module_retain(child);
    return 0;
}

fs_module *fs_module_child(const fs_module *m, const char *name)
{
    for (int i = 0; i < m->nchildren; i++)
        if (strcmp(m->child_names[i], name) == 0)
            return m->children[i];
    return NULL;
}

fs_module *fs_module_find(fs_module *root, const char *path)
{
    fs_module *m = root;
    const char *p = path;
    while (m && *p) {
        size_t n = strcspn(p, ".");
        fs_module *next = NULL;
        for (int i = 0; i < m->nchildren && !next; i++)
            if (strncmp(m->child_names[i], p, n) == 0 && m->child_names[i][n] == 0)
                next = m->children[i];
        m = next;
        p += n;
        if (*p == '.')
            p++;
    }
    if (!m)
        fs_set_error("child: no submodule '%s'", path);
    return m;
}

/* ---- visiting ---- */

static int visit_rec(fs_module *m, char *prefix, size_t plen, size_t cap, fs_module_visit_fn fn,
                     void *ud)
{
    for (int i = 0; i < m->nentries; i++) {
        snprintf(prefix + plen, cap - plen, "%s", m->entries[i].name);
        int r = fn(ud, prefix, &m->entries[i], m);
        if (r)
            return r;
    }
    for (int i = 0; i < m->nchildren; i++) {
        int n = snprintf(prefix + plen, cap - plen, "%s.", m->child_names[i]);
        if (n < 0 || plen + (size_t)n >= cap)
            return fs_set_error("%s: parameter names too long", m->kind);
        int r = visit_rec(m->children[i], prefix, plen + (size_t)n, cap, fn, ud);
        if (r)
            return r;
    }
    prefix[plen] = 0;
    return 0;
}

int fs_module_visit(fs_module *m, fs_module_visit_fn fn, void *ud)
{
    char prefix[512] = "";
    return visit_rec(m, prefix, 0, sizeof prefix, fn, ud);
}

/* Adds a parameter's element count to *(int64_t *)ud; buffers do not count. */
static int count_cb(void *ud, const char *name, fs_module_entry *e, fs_module *owner)
{
    (void)name;
    (void)owner;
    if (!e->buffer)
        *(int64_t *)ud += fs_numel(e->t);
    return 0;
}

int64_t fs_module_num_parameters(const fs_module *m)
{
    int64_t numel = 0;
    fs_module_visit((fs_module *)m, count_cb, &numel);
    return numel;
}

/* ---- flat buffers ---- */

typedef struct { fs_tensor **v; int n, cap; bool trainable_only; } tlist;

static int collect_params(void *ud, const char *name, fs_module_entry *e, fs_module *owner)
{
    (void)name;
    (void)owner;
    tlist *l = ud;
    if (e->buffer || (l->trainable_only && !e->t->requires_grad))
        return 0;
    for (int i = 0; i < l->n; i++) /* a module used twice: its parameters once */
        if (l->v[i] == e->t)
            return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        fs_tensor **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return fs_set_error("parameters: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = e->t;
    return 0;
}

int fs_module_parameter_list(fs_module *m, bool trainable_only, fs_tensor ***out, int *n)
{
    tlist l = {.trainable_only = trainable_only};
    if (fs_module_visit(m, collect_params, &l) != 0) {
        free(l.v);
        return -1;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

static void drop_flat(fs_module *m)
{
    fs_tensor_release(m->flat);
    fs_tensor_release(m->flat_grad);
    m->flat = m->flat_grad = NULL;
    for (int i = 0; i < m->nchildren; i++)
        drop_flat(m->children[i]);
}

/* Points t at (storage of base, offset off), contiguous, keeping t's shape. */
static int repoint(fs_tensor *t, const fs_tensor *base, int64_t off)
{
    fs_tensor *old = fs_tensor_alias(t); /* holds t's old storage reference... */
    if (!old)
        return -1;
    t->storage->refcount--;               /* ...which t gives up here */
    t->storage = base->storage;
    t->storage->refcount++;
    t->offset = off;
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = s;
        s *= t->size[d];
    }
    fs_tensor_release(old);
    return 0;
}

static _Thread_local int defer_depth;

void fs_module_defer_flatten(bool on) { defer_depth += on ? 1 : -1; }

/* Copies each parameter into one new storage and re-points it there. The gradient buffer
 * comes later (fs_module_ensure_grad), so a model used only for inference never has one. */
int fs_module_flatten(fs_module *m)
{
    if (defer_depth > 0)
        return 0;
    tlist l = {0};
    int rc = fs_module_parameter_list(m, false, &l.v, &l.n);
    if (rc)
        return -1;
    int64_t total = 0;
    for (int i = 0; i < l.n; i++)
        total += fs_numel(l.v[i]);
    drop_flat(m);
    if (l.n == 0) {
        free(l.v);
        return 0;
    }
    fs_tensor *flat = fs_tensor_new(1, &total);
    if (!flat) {
        free(l.v);
        return -1;
    }
    int64_t off = 0;
    bool any_grad = false;
    for (int i = 0; i < l.n && rc == 0; i++) {
        fs_tensor *t = l.v[i];
        fs_tensor_read(t, fs_data(flat) + off);
        rc = repoint(t, flat, off);
        any_grad = any_grad || t->grad;
        off += fs_numel(t);
    }
    free(l.v);
    m->flat = flat;
    /* the parameters' old storages (a whole model's worth, freed just now) would otherwise
     * wait in the block cache, resident, for requests of their sizes that may never come */
    fs_block_cache_trim(0);
    if (rc == 0 && any_grad) /* gradients accumulated so far move into the new buffer */
        rc = fs_module_ensure_grad(m);
    return rc;
}

/* Gives every parameter a .grad that is a view of one zeroed flat gradient buffer laid out
 * like m->flat (existing gradient values are kept). */
int fs_module_ensure_grad(fs_module *m)
{
    if (!m->flat || m->flat_grad)
        return 0;
    tlist l = {0};
    int rc = fs_module_parameter_list(m, false, &l.v, &l.n);
    fs_tensor *grad = rc ? NULL : fs_tensor_zeros(1, m->flat->size);
    if (!grad) {
        free(l.v);
        return -1;
    }
    for (int i = 0; i < l.n && rc == 0; i++) {
        fs_tensor *t = l.v[i];
        if (t->storage != m->flat->storage)
            continue; /* moved elsewhere since: its gradient stays its own */
        int64_t off = t->offset - m->flat->offset;
        if (t->grad && fs_same_shape(t->grad, t))
            fs_tensor_read(t->grad, fs_data(grad) + off);
        fs_tensor *g = fs_tensor_alias(t); /* a header of t's shape */
        if (!g || repoint(g, grad, off) < 0) {
            fs_tensor_release(g);
            rc = -1;
            break;
        }
        g->requires_grad = false;
        fs_tensor_release(t->grad);
        t->grad = g;
    }
    free(l.v);
    m->flat_grad = grad;
    return rc;
}

/* ---- use ---- */

fs_tensor *fs_module_forward(fs_module *m, fs_tensor *x)
{
    if (m->flat && !m->flat_grad && fs_grad_enabled() && fs_module_ensure_grad(m) < 0)
        return NULL;
    if (!m->forward)
        return fs_set_error("%s: this module has no forward", m->kind), NULL;
    return m->forward(m, x);
}

void fs_module_set_training(fs_module *m, bool on)
{
    m->training = on;
    for (int i = 0; i < m->nchildren; i++)
        fs_module_set_training(m->children[i], on);
}

static int zero_cb(void *ud, const char *name, fs_module_entry *e, fs_module *owner)
{
    (void)ud;
    (void)name;
    (void)owner;
    if (!e->buffer && e->t->grad)
        fs_tensor_fill_(e->t->grad, 0.0f);
    return 0;
}

void fs_module_zero_grad(fs_module *m)
{
    if (m->flat_grad) /* the common case: one memset */
        memset(fs_data(m->flat_grad), 0, (size_t)fs_numel(m->flat_grad) * sizeof(float));
    /* parameters whose grad left the flat buffer (replaced by the user) get zeroed here */
    fs_module_visit(m, zero_cb, NULL);
}

/* ---- state dict ---- */

static int sd_cb(void *ud, const char *name, fs_module_entry *e, fs_module *owner)
{
    (void)owner;
    fs_tensor *a = fs_tensor_alias(e->t);
    if (!a)
        return -1;
    int r = fs_tensor_dict_add(ud, name, a);
    fs_tensor_release(a);
    return r;
}

int fs_module_state_dict(fs_module *m, fs_tensor_dict *out)
{
    return fs_module_visit(m, sd_cb, out);
}

typedef struct {
    const fs_tensor_dict *sd;
    bool adapt;
    bool apply;
    char *used;              /* sd->n flags */
    char missing[640], mism[640];
    int nmissing, nmism;
} load_ud;

static void list_add(char *buf, size_t cap, int *count, const char *fmt, ...)
{
    if (++*count > 8) {
        return;
    }
    size_t n = strlen(buf);
    if (n + 2 >= cap)
        return;
    if (n)
        buf[n++] = ',', buf[n++] = ' ', buf[n] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

static bool is_conv1_adapt(const load_ud *u, const char *name, const fs_tensor *p,
                           const fs_tensor *s)
{
    size_t n = strlen(name);
    return u->adapt && n >= 12 && strcmp(name + n - 12, "conv1.weight") == 0 &&
           (n == 12 || name[n - 13] == '.') && p->ndim == 4 && s->ndim == 4 && p->size[1] == 1 &&
           s->size[0] == p->size[0] && s->size[2] == p->size[2] && s->size[3] == p->size[3];
}

static int load_cb(void *ud, const char *name, fs_module_entry *e, fs_module *owner)
{
    (void)owner;
    load_ud *u = ud;
    int64_t k = fs_tensor_dict_find(u->sd, name);
    if (k < 0) {
        if (!u->apply)
            list_add(u->missing, sizeof u->missing, &u->nmissing, "%s", name);
        return 0;
    }
    u->used[k] = 1;
    fs_tensor *s = u->sd->tensors[k], *p = e->t;
    bool same = fs_same_shape(s, p) || (fs_numel(s) == 1 && fs_numel(p) == 1 && e->buffer);
    bool adapt = !same && is_conv1_adapt(u, name, p, s);
    if (!same && !adapt) {
        if (!u->apply)
            list_add(u->mism, sizeof u->mism, &u->nmism, "%s: checkpoint %s, model %s", name,
                     FS_SHAPE(s), FS_SHAPE(p));
        return 0;
    }
    if (!u->apply)
        return 0;
    if (adapt) {
        fs_tensor *sum = fs_sum(s, 1, true); /* (O, C, kh, kw) -> (O, 1, kh, kw) */
        if (!sum)
            return -1;
        int r = fs_tensor_copy_(p, sum);
        fs_tensor_release(sum);
        return r;
    }
    if (fs_same_shape(s, p))
        return fs_tensor_copy_(p, s);
    float v;
    fs_tensor_read(s, &v);
    *fs_data(p) = v;
    return 0;
}

int fs_module_load_state_dict(fs_module *m, const fs_tensor_dict *sd, bool strict,
                              bool adapt_conv1_sum)
{
    load_ud u = {sd, adapt_conv1_sum, false, calloc((size_t)sd->n + 1, 1), "", "", 0, 0};
    if (!u.used)
        return fs_set_error("load_state_dict: out of memory");
    bool was = fs_set_grad_enabled(false);
    int rc = fs_module_visit(m, load_cb, &u);
    char unexpected[640] = "";
    int nunexpected = 0;
    for (int64_t k = 0; k < sd->n; k++)
        if (!u.used[k])
            list_add(unexpected, sizeof unexpected, &nunexpected, "%s", sd->names[k]);
    if (rc == 0 && (u.nmism || (strict && (u.nmissing || nunexpected)))) {
        char more[3][32] = {"", "", ""};
        if (u.nmissing > 8) snprintf(more[0], 32, " (and %d more)", u.nmissing - 8);
        if (nunexpected > 8) snprintf(more[1], 32, " (and %d more)", nunexpected - 8);
        if (u.nmism > 8) snprintf(more[2], 32, " (and %d more)", u.nmism - 8);
        rc = fs_set_error(
            "load_state_dict: %s: missing keys (%d): [%s]%s; unexpected keys (%d): [%s]%s; "
            "size mismatch (%d): [%s]%s", m->kind, strict ? u.nmissing : 0,
            strict ? u.missing : "", strict ? more[0] : "", strict ? nunexpected : 0,
            strict ? unexpected : "", strict ? more[1] : "", u.nmism, u.mism, more[2]);
    }
    if (rc == 0) {
        u.apply = true;
        rc = fs_module_visit(m, load_cb, &u);
    }
    fs_set_grad_enabled(was);
    free(u.used);
    return rc;
}

/* ---- printing ---- */

void fs_module_appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n;
    if (*len >= cap)
        *len = cap - 1;
}

static void fmt_count(char *out, size_t cap, int64_t n)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", (long long)n), k = 0;
    for (int i = 0; i < len && (size_t)k + 2 < cap; i++) {
        if (i && (len - i) % 3 == 0)
            out[k++] = ',';
        out[k++] = tmp[i];
    }
    out[k] = 0;
}

static void format_rec(fs_module *m, const char *name, int depth, char *buf, size_t cap,
                       size_t *len)
{
    char cnt[32];
    fmt_count(cnt, sizeof cnt, fs_module_num_parameters(m));
    fs_module_appendf(buf, cap, len, "%*s%s%s", depth * 2, "", name ? name : "", name ? ": " : "");
    if (m->describe)
        m->describe(m, false, buf, cap, len);
    else
        fs_module_appendf(buf, cap, len, "%s", m->kind);
    for (int i = 0; i < m->nentries; i++)
        fs_module_appendf(buf, cap, len, "%s%s %s", i ? ", " : "  [", m->entries[i].name,
                FS_SHAPE(m->entries[i].t));
    if (m->nentries)
        fs_module_appendf(buf, cap, len, "]");
    if (m->nentries || m->nchildren)
        fs_module_appendf(buf, cap, len, "  %s params", cnt);
    fs_module_appendf(buf, cap, len, "\n");
    for (int i = 0; i < m->nchildren; i++)
        format_rec(m->children[i], m->child_names[i], depth + 1, buf, cap, len);
}

char *fs_module_format(fs_module *m)
{
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return fs_set_error("tostring: out of memory"), NULL;
    buf[0] = 0;
    format_rec(m, NULL, 0, buf, cap, &len);
    if (len && buf[len - 1] == '\n')
        buf[--len] = 0;
    return buf;
}

/* The first module of the tree whose constructor cannot be described (containers describe
 * their children; other kinds describe themselves whole). */
static const fs_module *undescribable(const fs_module *m)
{
    if (!m->describe)
        return m;
    if (strcmp(m->kind, "Sequential") == 0)
        for (int i = 0; i < m->nchildren; i++) {
            const fs_module *u = undescribable(m->children[i]);
            if (u)
                return u;
        }
    return NULL;
}

char *fs_module_spec(fs_module *m)
{
    const fs_module *u = undescribable(m);
    if (u)
        return fs_set_error("save: a %s module has no constructor description; save the "
                            "state_dict with fs.io.save instead", u->kind), NULL;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return fs_set_error("save: out of memory"), NULL;
    buf[0] = 0;
    m->describe(m, true, buf, cap, &len);
    if (len >= cap - 1) {
        free(buf);
        return fs_set_error("save: the module description is too long"), NULL;
    }
    return buf;
}
