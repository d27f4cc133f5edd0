/* print.c - PyTorch-like text of a tensor, elided when large:
 *   tensor([[1.0000, 2.0000],
 *           [3.0000, 4.0000]], shape=(2, 2), grad_fn=<mul>) */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor.h"

#define EDGE 3          /* items shown at each end of an elided dim */
#define ELIDE_OVER 1000 /* elide when the tensor has more elements */

typedef struct { char *s; size_t n, cap; bool oom; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

typedef struct { bool ints, sci; int width; bool elide; } style;

static void fmt_value(char *out, size_t cap, float v, const style *st)
{
    if (isnan(v))
        snprintf(out, cap, "nan");
    else if (isinf(v))
        snprintf(out, cap, v > 0 ? "inf" : "-inf");
    else if (st->ints)
        snprintf(out, cap, "%.0f.", v);
    else if (st->sci)
        snprintf(out, cap, "%.4e", v);
    else
        snprintf(out, cap, "%.4f", v);
}

static void print_dim(sbuf *b, const fs_tensor *t, int d, int64_t *idx, const style *st, int indent)
{
    int64_t n = t->size[d];
    sb_printf(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (st->elide && n > 2 * EDGE && i == EDGE) {
            sb_printf(b, d == t->ndim - 1 ? "..., " : "...,\n%*s", d == t->ndim - 1 ? 0 : indent + 1, "");
            i = n - EDGE - 1;
            continue;
        }
        idx[d] = i;
        if (d == t->ndim - 1) {
            char v[64];
            fmt_value(v, sizeof v, *fs_at(t, idx), st);
            sb_printf(b, "%*s", st->width, v);
        } else
            print_dim(b, t, d + 1, idx, st, indent + 1);
        if (i + 1 < n) {
            if (d == t->ndim - 1)
                sb_printf(b, ", ");
            else {
                sb_printf(b, ",");
                for (int k = 0; k < t->ndim - 1 - d; k++)
                    sb_printf(b, "\n");
                sb_printf(b, "%*s", indent + 1, "");
            }
        }
    }
    sb_printf(b, "]");
}

char *fs_tensor_format(const fs_tensor *t)
{
    sbuf b = {0};
    int64_t n = fs_numel(t);
    style st = {.ints = true, .sci = false, .width = 0, .elide = n > ELIDE_OVER};
    float amax = 0.0f, amin = INFINITY;
    int64_t idx[FS_MAX_DIM] = {0};
    for (int64_t k = 0; k < n; k++) {
        float v = *fs_at(t, idx);
        if (isfinite(v)) {
            if (v != floorf(v))
                st.ints = false;
            if (fabsf(v) > amax)
                amax = fabsf(v);
            if (v != 0.0f && fabsf(v) < amin)
                amin = fabsf(v);
        }
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->size[d])
                break;
            idx[d] = 0;
        }
    }
    if (!st.ints && (amax >= 1e8f || (amin < 1e-4f && amin > 0.0f) || amax / amin > 1e6f))
        st.sci = true;
    if (st.ints && amax >= 1e8f) {
        st.ints = false;
        st.sci = true;
    }
    /* common width: longest formatted value */
    memset(idx, 0, sizeof idx);
    for (int64_t k = 0; k < n && k < 100000; k++) {
        char v[64];
        fmt_value(v, sizeof v, *fs_at(t, idx), &st);
        int w = (int)strlen(v);
        if (w > st.width)
            st.width = w;
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->size[d])
                break;
            idx[d] = 0;
        }
    }
    sb_printf(&b, "tensor(");
    if (t->ndim == 0) {
        char v[64];
        fmt_value(v, sizeof v, fs_data(t)[0], &st);
        sb_printf(&b, "%s", v);
    } else if (n == 0)
        sb_printf(&b, "[]");
    else {
        memset(idx, 0, sizeof idx);
        print_dim(&b, t, 0, idx, &st, 7);
    }
    sb_printf(&b, ", shape=%s", FS_SHAPE(t));
    if (t->grad_fn)
        sb_printf(&b, ", grad_fn=<%s>", fs_node_hooks_installed.name(t->grad_fn));
    else if (t->requires_grad)
        sb_printf(&b, ", requires_grad=true");
    sb_printf(&b, ")");
    if (b.oom) {
        free(b.s);
        fs_set_error("tostring: out of memory");
        return NULL;
    }
    return b.s;
}
