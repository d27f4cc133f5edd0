/* test_autograd.c - backward through the tape from C: the gradient of a small expression
 * against its hand-computed value, a linear + tanh chain against central finite differences,
 * and accumulation into .grad over two backward passes.
 *   y = sum(x * x * w + exp(x)),  x, w: (3)  ->  dy/dx = 2 x w + exp(x),  dy/dw = x^2
 *   z = sum(tanh(x W^T + b)^2),   x: (1, 3), W: (2, 3), b: (2) */
#include "autograd/autograd.h"
#include "check.h"
#include "nn/nn.h"
#include "ops/ops.h"

static fs_tensor *leaf(int ndim, const int64_t *size, const float *v)
{
    fs_tensor *t = fs_tensor_from_data(ndim, size, v);
    if (t)
        t->requires_grad = true;
    return t;
}

/* y = sum(x * x * w + exp(x)); the intermediates are released (the graph keeps them). */
static fs_tensor *expr_y(fs_tensor *x, fs_tensor *w)
{
    fs_tensor *xx = fs_binary(FS_MUL, x, x);
    fs_tensor *xxw = xx ? fs_binary(FS_MUL, xx, w) : NULL;
    fs_tensor *ex = fs_unary(FS_EXP, x);
    fs_tensor *sum = xxw && ex ? fs_binary(FS_ADD, xxw, ex) : NULL;
    fs_tensor *y = sum ? fs_sum(sum, FS_ALL_DIMS, false) : NULL;
    fs_tensor_release(xx);
    fs_tensor_release(xxw);
    fs_tensor_release(ex);
    fs_tensor_release(sum);
    return y;
}

/* z = sum(tanh(x W^T + b)^2) */
static fs_tensor *expr_z(fs_tensor *x, fs_tensor *W, fs_tensor *b)
{
    fs_tensor *h = fs_linear(x, W, b);
    fs_tensor *t = h ? fs_unary(FS_TANH, h) : NULL;
    fs_tensor *t2 = t ? fs_binary_scalar(FS_POW, t, 2.0f, false) : NULL;
    fs_tensor *z = t2 ? fs_sum(t2, FS_ALL_DIMS, false) : NULL;
    fs_tensor_release(h);
    fs_tensor_release(t);
    fs_tensor_release(t2);
    return z;
}

static double eval_z(fs_tensor *x, fs_tensor *W, fs_tensor *b)
{
    bool was = fs_set_grad_enabled(false);
    fs_tensor *z = expr_z(x, W, b);
    fs_set_grad_enabled(was);
    double v = z ? fs_data(z)[0] : NAN;
    fs_tensor_release(z);
    return v;
}

int main(void)
{
    const float xv[] = {0.5f, -1.0f, 2.0f}, wv[] = {1.5f, 2.0f, -0.5f};
    fs_tensor *x = leaf(1, (int64_t[]){3}, xv), *w = leaf(1, (int64_t[]){3}, wv);
    fs_tensor *y = expr_y(x, w);
    if (!CHECK(y && y->grad_fn, "y = sum(x*x*w + exp(x)) records a tape node"))
        return check_done();
    CHECK_INT(fs_backward(y, NULL, false), 0, "backward from y");
    if (CHECK(x->grad && w->grad, "backward fills x.grad and w.grad")) {
        for (int i = 0; i < 3; i++) {
            double dx = 2.0 * xv[i] * wv[i] + exp(xv[i]), dw = (double)xv[i] * xv[i];
            CHECK_NEAR(fs_data(x->grad)[i], dx, 1e-5 * fabs(dx), "dy/dx[%d] = 2 x w + exp(x)", i);
            CHECK_NEAR(fs_data(w->grad)[i], dw, 1e-6, "dy/dw[%d] = x^2", i);
        }
    }
    /* a second graph adds into the same .grad */
    fs_tensor *y2 = expr_y(x, w);
    CHECK_INT(y2 ? fs_backward(y2, NULL, false) : -1, 0, "second backward");
    double dx0 = 2.0 * xv[0] * wv[0] + exp(xv[0]);
    CHECK_NEAR(fs_data(x->grad)[0], 2 * dx0, 2e-5 * dx0, "gradients accumulate: x.grad[0] doubles");
    fs_tensor_release(y);
    fs_tensor_release(y2);

    /* linear + tanh against central differences (eps 1e-2, float32 forward) */
    const float x1v[] = {0.3f, -0.7f, 0.2f}, Wv[] = {0.4f, -0.2f, 0.9f, -0.6f, 0.1f, 0.5f},
                bv[] = {0.05f, -0.1f};
    fs_tensor *x1 = leaf(2, (int64_t[]){1, 3}, x1v), *W = leaf(2, (int64_t[]){2, 3}, Wv),
              *b = leaf(1, (int64_t[]){2}, bv);
    fs_tensor *z = expr_z(x1, W, b);
    CHECK_INT(z ? fs_backward(z, NULL, false) : -1, 0, "backward through linear, tanh, pow, sum");
    if (CHECK(x1->grad && W->grad && b->grad, "every leaf of z has a gradient")) {
        fs_tensor *leaves[] = {x1, W, b};
        const char *names[] = {"x", "W", "b"};
        for (int l = 0; l < 3; l++) {
            fs_tensor *p = leaves[l];
            double worst = 0;
            for (int64_t i = 0; i < fs_numel(p); i++) {
                float keep = fs_data(p)[i];
                const float eps = 1e-2f;
                fs_data(p)[i] = keep + eps;
                double up = eval_z(x1, W, b);
                fs_data(p)[i] = keep - eps;
                double down = eval_z(x1, W, b);
                fs_data(p)[i] = keep;
                double fd = (up - down) / (2.0 * eps), err = fabs(fd - fs_data(p->grad)[i]);
                worst = err > worst ? err : worst;
            }
            CHECK_NEAR(worst, 0.0, 2e-3, "dz/d%s matches central differences (worst error)",
                       names[l]);
        }
    }
    fs_tensor_release(z);
    fs_tensor *all[] = {x, w, x1, W, b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        fs_tensor_release(all[i]);
    return check_done();
}
