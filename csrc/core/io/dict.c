/* dict.c - an ordered list of named tensors plus string metadata (dict.h). */
#include <stdlib.h>
#include <string.h>

#include "io/dict.h"

void fs_tensor_dict_init(fs_tensor_dict *d) { memset(d, 0, sizeof *d); }

void fs_tensor_dict_free(fs_tensor_dict *d)
{
    for (int64_t i = 0; i < d->n; i++) {
        free(d->names[i]);
        fs_tensor_release(d->tensors[i]);
    }
    for (int64_t i = 0; i < d->nmeta; i++) {
        free(d->meta_keys[i]);
        free(d->meta_values[i]);
    }
    free(d->names);
    free(d->tensors);
    free(d->meta_keys);
    free(d->meta_values);
    memset(d, 0, sizeof *d);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

int fs_tensor_dict_add(fs_tensor_dict *d, const char *name, fs_tensor *t)
{
    if (d->n == d->cap) {
        int64_t cap = d->cap ? d->cap * 2 : 16;
        char **nn = realloc(d->names, (size_t)cap * sizeof *nn);
        if (nn)
            d->names = nn;
        fs_tensor **nt = realloc(d->tensors, (size_t)cap * sizeof *nt);
        if (nt)
            d->tensors = nt;
        if (!nn || !nt)
            return fs_set_error("out of memory");
        d->cap = cap;
    }
    char *c = dupstr(name);
    if (!c)
        return fs_set_error("out of memory");
    d->names[d->n] = c;
    d->tensors[d->n] = fs_tensor_retain(t);
    d->n++;
    return 0;
}

int fs_tensor_dict_add_meta(fs_tensor_dict *d, const char *key, const char *value)
{
    if (d->nmeta == d->metacap) {
        int64_t cap = d->metacap ? d->metacap * 2 : 8;
        char **k = realloc(d->meta_keys, (size_t)cap * sizeof *k);
        if (k)
            d->meta_keys = k;
        char **v = realloc(d->meta_values, (size_t)cap * sizeof *v);
        if (v)
            d->meta_values = v;
        if (!k || !v)
            return fs_set_error("out of memory");
        d->metacap = cap;
    }
    char *kc = dupstr(key), *vc = dupstr(value);
    if (!kc || !vc) {
        free(kc);
        free(vc);
        return fs_set_error("out of memory");
    }
    d->meta_keys[d->nmeta] = kc;
    d->meta_values[d->nmeta] = vc;
    d->nmeta++;
    return 0;
}

int64_t fs_tensor_dict_find(const fs_tensor_dict *d, const char *name)
{
    for (int64_t i = 0; i < d->n; i++)
        if (strcmp(d->names[i], name) == 0)
            return i;
    return -1;
}
