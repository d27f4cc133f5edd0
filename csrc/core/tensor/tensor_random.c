/* tensor_random.c - a tensor filled from a generator (uniform or normal), in row-major order. */
#include "tensor/tensor.h"

static int fill_random(fs_tensor *t, fs_generator *g, float a, float b, int normal)
{
    /* Sequential in row-major order so that a seed gives the same values at any thread count. */
    int64_t n = fs_numel(t), idx[FS_MAX_DIM] = {0};
    for (int64_t k = 0; k < n; k++) {
        double v = normal ? a + b * fs_random_normal(g) : a + (b - a) * fs_random_uniform(g);
        *fs_at(t, idx) = (float)v;
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->size[d])
                break;
            idx[d] = 0;
        }
    }
    return 0;
}

int fs_tensor_uniform_(fs_tensor *t, fs_generator *g, float lo, float hi)
{
    return fill_random(t, g ? g : fs_default_generator(), lo, hi, 0);
}

int fs_tensor_normal_(fs_tensor *t, fs_generator *g, float mean, float std)
{
    return fill_random(t, g ? g : fs_default_generator(), mean, std, 1);
}
