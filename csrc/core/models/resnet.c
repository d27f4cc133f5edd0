/* resnet.c - torchvision's ResNet-18 as a module tree, with torchvision's layout, names and
 * initialisation:
 *
 *   conv1 7x7/2 (C -> 64, no bias), bn1, relu, maxpool 3x3/2 pad 1,
 *   layer1..layer4: 2 BasicBlocks each, 64/128/256/512 channels, stride 2 in the first block
 *   of layer2..4 with downsample = (1x1/2 conv, bn), avgpool (adaptive 1x1), flatten, fc.
 *   BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + identity).
 *
 * Init: conv weights N(0, 2 / fan_out) (kaiming_normal_, mode fan_out, relu), BN weight 1,
 * bias 0, fc PyTorch's Linear default. x: (N, C, H, W) -> (N, 512) or (N, num_classes). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/autograd.h"
#include "base/parallel.h"
#include "module/module.h"
#include "ops/ops.h"

static fs_tensor *child_forward(fs_module *m, const char *name, fs_tensor *x)
{
    fs_module *c = fs_module_child(m, name);
    return c ? fs_module_forward(c, x) : fs_tensor_retain(x);
}

/* Runs children by name in order; releases intermediates. */
static fs_tensor *chain(fs_module *m, fs_tensor *x, int n, const char *const *names)
{
    fs_tensor *cur = fs_tensor_retain(x);
    for (int i = 0; i < n && cur; i++) {
        fs_tensor *next = child_forward(m, names[i], cur);
        fs_tensor_release(cur);
        cur = next;
    }
    return cur;
}

/* dout where y > 0, else 0 (a new tensor): the gradient through a ReLU whose output is y.
 * y, dout: contiguous, of one shape. */
static fs_tensor *relu_grad(const fs_tensor *y, const fs_tensor *dout)
{
    fs_tensor *g = fs_tensor_new(dout->ndim, dout->size);
    if (!g)
        return NULL;
    const float *yd = fs_data(y), *dd = fs_data(dout);
    float *gd = fs_data(g);
    int64_t count = fs_numel(g);
#pragma omp parallel for schedule(static) if (count > FS_PARALLEL_MIN)
    for (int64_t i = 0; i < count; i++)
        gd[i] = yd[i] > 0.0f ? dd[i] : 0.0f;
    return g;
}

/* y = relu(a + b), the residual join, as one op: one pass and one tensor instead of two.
 * Backward: da = db = dy * (y > 0). a, b, y: (N, C, H, W), contiguous (else the two-op path). */
static int add_relu_backward(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    fs_tensor *g = relu_grad(n->saved[0], dout);
    if (!g)
        return -1;
    if (fs_node_wants(n, 0))
        dinputs[0] = fs_tensor_retain(g);
    if (fs_node_wants(n, 1))
        dinputs[1] = fs_tensor_retain(g);
    fs_tensor_release(g);
    return 0;
}

static fs_tensor *add_relu(fs_tensor *a, fs_tensor *b)
{
    if (!fs_same_shape(a, b) || !fs_is_contiguous(a) || !fs_is_contiguous(b)) {
        fs_tensor *sum = fs_binary(FS_ADD, a, b);
        fs_tensor *y = sum ? fs_relu(sum) : NULL;
        fs_tensor_release(sum);
        return y;
    }
    fs_tensor *y = fs_tensor_new(a->ndim, a->size);
    if (!y)
        return NULL;
    const float *ad = fs_data(a), *bd = fs_data(b);
    float *yd = fs_data(y);
    int64_t count = fs_numel(y);
#pragma omp parallel for schedule(static) if (count > FS_PARALLEL_MIN)
    for (int64_t i = 0; i < count; i++) {
        float v = ad[i] + bd[i];
        yd[i] = v > 0.0f ? v : 0.0f;
    }
    fs_node *n = fs_node_maybe_new("add_relu", add_relu_backward, 2, (fs_tensor *[]){a, b});
    if (n) {
        n->saved[0] = fs_tensor_alias(y);
        if (!n->saved[0]) {
            fs_node_release(n);
            fs_tensor_release(y);
            return NULL;
        }
        fs_node_attach(n, y);
    }
    return y;
}

/* relu on a BatchNorm output that nothing else holds, in place: the BN node keeps its input,
 * not its output, so overwriting the output loses nothing and saves one activation tensor.
 * x: a new contiguous tensor with refcount 1 (else the ordinary fs_relu). */
static int relu_inplace_backward(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    dinputs[0] = relu_grad(n->saved[0], dout);
    return dinputs[0] ? 0 : -1;
}

static fs_tensor *relu_consuming(fs_tensor *x)
{
    if (x->refcount != 1 || x->storage->refcount != 1 || !fs_is_contiguous(x)) {
        fs_tensor *y = fs_relu(x);
        fs_tensor_release(x);
        return y;
    }
    fs_tensor *y = fs_tensor_alias(x);
    if (!y) {
        fs_tensor_release(x);
        return NULL;
    }
    y->requires_grad = false;
    float *d = fs_data(y);
    int64_t count = fs_numel(y);
#pragma omp parallel for schedule(static) if (count > FS_PARALLEL_MIN)
    for (int64_t i = 0; i < count; i++)
        d[i] = d[i] > 0.0f ? d[i] : 0.0f;
    fs_node *n = fs_node_maybe_new("relu", relu_inplace_backward, 1, &x);
    if (n) {
        if (!(n->saved[0] = fs_tensor_alias(y))) {
            fs_node_release(n);
            fs_tensor_release(y);
            fs_tensor_release(x);
            return NULL;
        }
        fs_node_attach(n, y);
    }
    fs_tensor_release(x); /* the node (if any) keeps the input header for its shape */
    return y;
}

/* Conv2d module c -> BatchNorm2d module b (-> relu) as one fused pass (fs_conv2d_bn_eval)
 * when b is in eval mode and no gradient is wanted (grad mode off, or nothing involved
 * requires one): BN's affine map and the ReLU are applied to each block of the conv's output
 * while it is in cache, with no intermediate tensor. The values are those of the separate
 * ops, computed from the current parameters and running stats at every call (nothing is
 * cached, so optimizer steps, load_state_dict and train() need no invalidation).
 * *done is false when the fused form does not apply (then nothing was computed). */
static fs_tensor *conv_bn_eval(fs_module *c, fs_module *b, fs_tensor *x, bool relu, bool *done)
{
    *done = false;
    const fs_conv2d_settings *cs = fs_module_settings(c, "Conv2d");
    const fs_batchnorm_settings *bs = fs_module_settings(b, "BatchNorm2d");
    if (!cs || !bs || b->training)
        return NULL;
    fs_tensor *w = fs_module_tensor(c, "weight"), *cb = fs_module_tensor(c, "bias");
    fs_tensor *rm = fs_module_tensor(b, "running_mean"), *rv = fs_module_tensor(b, "running_var");
    fs_tensor *bw = fs_module_tensor(b, "weight"), *bb = fs_module_tensor(b, "bias");
    if (!w || !rm || !rv || x->ndim != 4 ||
        fs_any_requires_grad(5, (fs_tensor *[]){x, w, cb, bw, bb}))
        return NULL;
    *done = true;
    return fs_conv2d_bn_eval(x, w, cb, &cs->args, rm, rv, bw, bb, bs->eps, relu);
}

/* conv -> bn -> relu (in place) of module m's children cname, bname. */
static fs_tensor *conv_bn_relu(fs_module *m, fs_tensor *x, const char *cname, const char *bname)
{
    bool done;
    fs_tensor *y = conv_bn_eval(fs_module_child(m, cname), fs_module_child(m, bname), x, true,
                                &done);
    if (done)
        return y;
    const char *const names[] = {cname, bname};
    fs_tensor *h = chain(m, x, 2, names);
    return h ? relu_consuming(h) : NULL;
}

/* conv -> bn of m's children cname, bname (fused in eval mode without gradients). */
static fs_tensor *conv_bn(fs_module *m, fs_tensor *x, const char *cname, const char *bname)
{
    bool done;
    fs_tensor *y = conv_bn_eval(fs_module_child(m, cname), fs_module_child(m, bname), x, false,
                                &done);
    if (done)
        return y;
    const char *const names[] = {cname, bname};
    return chain(m, x, 2, names);
}

static fs_tensor *block_forward(fs_module *m, fs_tensor *x)
{
    fs_tensor *h = conv_bn_relu(m, x, "conv1", "bn1");
    fs_tensor *out = h ? conv_bn(m, h, "conv2", "bn2") : NULL;
    fs_tensor_release(h);
    if (!out)
        return NULL;
    fs_module *ds = fs_module_child(m, "downsample");
    bool done = false;
    fs_tensor *identity = NULL;
    if (ds && ds->nchildren == 2 && strcmp(ds->kind, "Sequential") == 0)
        identity = conv_bn_eval(ds->children[0], ds->children[1], x, false, &done);
    if (!done)
        identity = child_forward(m, "downsample", x);
    if (!identity) {
        fs_tensor_release(out);
        return NULL;
    }
    fs_tensor *y = add_relu(out, identity);
    fs_tensor_release(out);
    fs_tensor_release(identity);
    return y;
}

static fs_tensor *resnet_forward(fs_module *m, fs_tensor *x)
{
    const fs_resnet_settings *s = m->settings;
    if (x->ndim != 4 || x->size[1] != s->in_channels)
        return fs_set_error("resnet18: expected input (N, %lld, H, W), got %s",
                            (long long)s->in_channels, FS_SHAPE(x)), NULL;
    static const char *const names[] = {"maxpool", "layer1", "layer2", "layer3", "layer4",
                                        "avgpool"};
    fs_tensor *stem = conv_bn_relu(m, x, "conv1", "bn1");
    fs_tensor *h = stem ? chain(m, stem, 6, names) : NULL;
    fs_tensor_release(stem);
    if (!h)
        return NULL;
    fs_tensor *flat = fs_view(h, 2, (int64_t[]){h->size[0], h->size[1]});
    fs_tensor_release(h);
    if (!flat || !fs_module_child(m, "fc"))
        return flat;
    fs_tensor *y = child_forward(m, "fc", flat);
    fs_tensor_release(flat);
    return y;
}

static void resnet_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_resnet_settings *s = m->settings;
    if (spec && s->num_classes > 0)
        fs_module_appendf(b, cap, len, "resnet18{in_channels=%lld, num_classes=%lld}",
                          (long long)s->in_channels, (long long)s->num_classes);
    else if (spec)
        fs_module_appendf(b, cap, len, "resnet18{in_channels=%lld}", (long long)s->in_channels);
    else
        fs_module_appendf(b, cap, len, "ResNet-18(in_channels=%lld, %s%lld)",
                          (long long)s->in_channels,
                          s->num_classes > 0 ? "num_classes=" : "embedding=",
                          (long long)(s->num_classes > 0 ? s->num_classes : 512));
}

static fs_module *conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad,
                       fs_generator *g)
{
    fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
    a.stride[0] = a.stride[1] = stride;
    a.padding[0] = a.padding[1] = pad;
    fs_module *m = fs_nn_conv2d(in, out, k, k, &a, false, g);
    if (m && fs_tensor_normal_(m->entries[0].t, g, 0.0f,
                               (float)sqrt(2.0 / (double)(out * k * k))) < 0) {
        fs_module_release(m);
        return NULL;
    }
    return m;
}

/* Adds child (taking over the caller's reference); keeps going only while rc == 0. */
static int add(int rc, fs_module *parent, const char *name, fs_module *child)
{
    if (rc == 0)
        rc = child ? fs_module_add_child(parent, name, child) : -1;
    fs_module_release(child);
    return rc;
}

static fs_module *basic_block(int64_t in, int64_t out, int64_t stride, fs_generator *g)
{
    fs_module *m = fs_module_new("BasicBlock", block_forward);
    if (!m)
        return NULL;
    int rc = add(0, m, "conv1", conv(in, out, 3, stride, 1, g));
    rc = add(rc, m, "bn1", fs_nn_batchnorm2d(out, 1e-5, 0.1));
    rc = add(rc, m, "relu", fs_nn_relu());
    rc = add(rc, m, "conv2", conv(out, out, 3, 1, 1, g));
    rc = add(rc, m, "bn2", fs_nn_batchnorm2d(out, 1e-5, 0.1));
    if (rc == 0 && (stride != 1 || in != out)) {
        fs_module *ds[2] = {conv(in, out, 1, stride, 0, g), fs_nn_batchnorm2d(out, 1e-5, 0.1)};
        fs_module *seq = ds[0] && ds[1] ? fs_nn_sequential(2, ds) : NULL;
        fs_module_release(ds[0]);
        fs_module_release(ds[1]);
        rc = add(rc, m, "downsample", seq);
    }
    if (rc < 0) {
        fs_module_release(m);
        return NULL;
    }
    return m;
}

fs_module *fs_resnet18(int64_t in_channels, int64_t num_classes, fs_generator *g)
{
    if (in_channels < 1)
        return fs_set_error("resnet18: in_channels must be >= 1, got %lld",
                            (long long)in_channels), NULL;
    /* the numbers may come from a checkpoint's description: bounded before any allocation */
    if (in_channels > FS_MODULE_MAX_SIZE / (64 * 7 * 7) || num_classes > FS_MODULE_MAX_SIZE / 512)
        return fs_set_error("resnet18: in_channels %lld or num_classes %lld is too large (at "
                            "most %lld and %lld)", (long long)in_channels, (long long)num_classes,
                            (long long)(FS_MODULE_MAX_SIZE / (64 * 7 * 7)),
                            (long long)(FS_MODULE_MAX_SIZE / 512)), NULL;
    fs_module *m = fs_module_new("ResNet", resnet_forward);
    if (!m)
        return NULL;
    m->describe = resnet_describe;
    fs_resnet_settings s = {in_channels, num_classes > 0 ? num_classes : 0};
    if (!fs_module_set_settings(m, &s, sizeof s)) {
        fs_module_release(m);
        return NULL;
    }
    fs_module_defer_flatten(true);
    int rc = add(0, m, "conv1", conv(in_channels, 64, 7, 2, 3, g));
    rc = add(rc, m, "bn1", fs_nn_batchnorm2d(64, 1e-5, 0.1));
    rc = add(rc, m, "relu", fs_nn_relu());
    fs_pool2d_args pa = {{3, 3}, {2, 2}, {1, 1}, false, true};
    rc = add(rc, m, "maxpool", fs_nn_maxpool2d(&pa));
    int64_t in = 64;
    for (int l = 0; l < 4; l++) {
        int64_t out = 64 << l;
        fs_module *blocks[2] = {basic_block(in, out, l ? 2 : 1, g), NULL};
        if (blocks[0])
            blocks[1] = basic_block(out, out, 1, g);
        fs_module *seq = blocks[0] && blocks[1] ? fs_nn_sequential(2, blocks) : NULL;
        fs_module_release(blocks[0]);
        fs_module_release(blocks[1]);
        char name[24];
        snprintf(name, sizeof name, "layer%d", l + 1);
        rc = add(rc, m, name, seq);
        in = out;
    }
    rc = add(rc, m, "avgpool", fs_nn_adaptive_avgpool2d(1, 1));
    if (num_classes > 0)
        rc = add(rc, m, "fc", fs_nn_linear(512, num_classes, true, g));
    fs_module_defer_flatten(false);
    if (rc == 0)
        rc = fs_module_flatten(m);
    if (rc < 0) {
        fs_module_release(m);
        return NULL;
    }
    return m;
}
