/* layers.c - the layer modules (module.h): conv2d, linear, batchnorm2d, relu, maxpool2d,
 * adaptive average pool, flatten, sequential, and PRNet's conv_transpose2d, instancenorm2d and
 * upsample. Each has a forward (the nn/ kernel on its
 * entries), a describe (its one-line form and its constructor expression) and a constructor
 * with PyTorch's default initialisation.
 * Shapes: x (N, C, H, W); conv weight (O, C, kh, kw); linear weight (out, in). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "module/module.h"
#include "ops/ops.h"

/* ---- layer modules ---- */

static fs_tensor *entry(fs_module *m, const char *name) { return fs_module_tensor(m, name); }

static const char *tf(bool b) { return b ? "true" : "false"; }

static fs_tensor *conv_forward(fs_module *m, fs_tensor *x)
{
    const fs_conv2d_settings *s = m->settings;
    return fs_conv2d(x, entry(m, "weight"), entry(m, "bias"), &s->args);
}

static void conv_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_conv2d_settings *s = m->settings;
    const fs_conv2d_args *a = &s->args;
    if (spec)
        fs_module_appendf(b, cap, len,
                "conv2d{in_channels=%lld, out_channels=%lld, kernel={%lld, %lld}, "
                "stride={%lld, %lld}, padding={%lld, %lld}, dilation={%lld, %lld}, bias=%s}",
                (long long)s->in_channels, (long long)s->out_channels, (long long)s->kernel[0],
                (long long)s->kernel[1], (long long)a->stride[0], (long long)a->stride[1],
                (long long)a->padding[0], (long long)a->padding[1], (long long)a->dilation[0],
                (long long)a->dilation[1], tf(entry(m, "bias") != NULL));
    else
        fs_module_appendf(b, cap, len,
                "Conv2d(%lld, %lld, kernel_size=(%lld, %lld), stride=(%lld, %lld), "
                "padding=(%lld, %lld), bias=%s)", (long long)s->in_channels,
                (long long)s->out_channels, (long long)s->kernel[0], (long long)s->kernel[1],
                (long long)a->stride[0], (long long)a->stride[1], (long long)a->padding[0],
                (long long)a->padding[1], entry(m, "bias") ? "True" : "False");
}

/* U(-bound, bound) with bound = 1/sqrt(fan_in): PyTorch's kaiming_uniform_(a=sqrt(5)) and its
 * bias rule give the same bound. */
static fs_tensor *uniform_param(int ndim, const int64_t *size, double bound, fs_generator *g)
{
    fs_tensor *t = fs_tensor_new(ndim, size);
    if (t && fs_tensor_uniform_(t, g, (float)-bound, (float)bound) < 0) {
        fs_tensor_release(t);
        return NULL;
    }
    return t;
}

/* Every number a constructor takes may come from a checkpoint's stored description
 * (fs.nn.load), so each is bounded before anything is allocated: sizes, strides, paddings and
 * dilations at most FS_MODULE_MAX_SIZE, and a parameter at most FS_MODULE_MAX_SIZE elements
 * (the product checked without overflow). */
static int check_at_most(const char *op, const char *what, int n, const int64_t *v)
{
    for (int i = 0; i < n; i++)
        if (v[i] > FS_MODULE_MAX_SIZE)
            return fs_set_error("%s: %s %lld is too large (at most %lld)", op, what,
                                (long long)v[i], (long long)FS_MODULE_MAX_SIZE);
    return 0;
}

static int check_numel(const char *op, const char *name, int ndim, const int64_t *size)
{
    int64_t total = 1;
    for (int d = 0; d < ndim; d++) {
        if (size[d] > 0 && total > FS_MODULE_MAX_SIZE / size[d])
            return fs_set_error("%s: a %s of shape %s would have more than %lld elements", op,
                                name, fs_shape_str(ndim, size), (long long)FS_MODULE_MAX_SIZE);
        total *= size[d];
    }
    return 0;
}

static fs_module *finish(fs_module *m, int rc)
{
    if (rc == 0)
        rc = fs_module_flatten(m);
    if (rc < 0) {
        fs_module_release(m);
        return NULL;
    }
    return m;
}

fs_module *fs_nn_conv2d(int64_t in_ch, int64_t out_ch, int64_t kh, int64_t kw,
                        const fs_conv2d_args *a, bool bias, fs_generator *g)
{
    if (in_ch < 1 || out_ch < 1 || kh < 1 || kw < 1)
        return fs_set_error("conv2d: in_channels %lld, out_channels %lld and kernel (%lld, %lld) "
                            "must be >= 1", (long long)in_ch, (long long)out_ch, (long long)kh,
                            (long long)kw), NULL;
    if (a->groups != 1)
        return fs_set_error("conv2d module: groups other than 1 are not supported"), NULL;
    if (a->stride[0] < 1 || a->stride[1] < 1 || a->dilation[0] < 1 || a->dilation[1] < 1 ||
        a->padding[0] < 0 || a->padding[1] < 0)
        return fs_set_error("conv2d: stride and dilation must be >= 1 and padding >= 0"), NULL;
    const int64_t wsize[4] = {out_ch, in_ch, kh, kw};
    if (check_at_most("conv2d", "in_channels", 1, &in_ch) < 0 ||
        check_at_most("conv2d", "out_channels", 1, &out_ch) < 0 ||
        check_at_most("conv2d", "kernel", 2, wsize + 2) < 0 ||
        check_at_most("conv2d", "stride", 2, a->stride) < 0 ||
        check_at_most("conv2d", "padding", 2, a->padding) < 0 ||
        check_at_most("conv2d", "dilation", 2, a->dilation) < 0 ||
        check_numel("conv2d", "weight", 4, wsize) < 0)
        return NULL;
    fs_module *m = fs_module_new("Conv2d", conv_forward);
    if (!m)
        return NULL;
    m->describe = conv_describe;
    fs_conv2d_settings s = {in_ch, out_ch, {kh, kw}, *a};
    double bound = 1.0 / sqrt((double)(in_ch * kh * kw));
    int rc = fs_module_set_settings(m, &s, sizeof s) ? 0 : -1;
    if (rc == 0)
        rc = fs_module_add_param(m, "weight",
                                 uniform_param(4, (int64_t[]){out_ch, in_ch, kh, kw}, bound, g));
    if (rc == 0 && bias)
        rc = fs_module_add_param(m, "bias", uniform_param(1, &out_ch, bound, g));
    return finish(m, rc);
}

static fs_tensor *convt_forward(fs_module *m, fs_tensor *x)
{
    const fs_conv2d_settings *s = m->settings;
    return fs_conv_transpose2d(x, entry(m, "weight"), entry(m, "bias"), &s->args);
}

static void convt_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_conv2d_settings *s = m->settings;
    const fs_conv2d_args *a = &s->args;
    if (spec)
        fs_module_appendf(b, cap, len,
                "conv_transpose2d{in_channels=%lld, out_channels=%lld, kernel={%lld, %lld}, "
                "stride={%lld, %lld}, padding={%lld, %lld}, output_padding={%lld, %lld}, "
                "dilation={%lld, %lld}, bias=%s}",
                (long long)s->in_channels, (long long)s->out_channels, (long long)s->kernel[0],
                (long long)s->kernel[1], (long long)a->stride[0], (long long)a->stride[1],
                (long long)a->padding[0], (long long)a->padding[1],
                (long long)a->output_padding[0], (long long)a->output_padding[1],
                (long long)a->dilation[0], (long long)a->dilation[1],
                tf(entry(m, "bias") != NULL));
    else
        fs_module_appendf(b, cap, len,
                "ConvTranspose2d(%lld, %lld, kernel_size=(%lld, %lld), stride=(%lld, %lld), "
                "padding=(%lld, %lld), bias=%s)", (long long)s->in_channels,
                (long long)s->out_channels, (long long)s->kernel[0], (long long)s->kernel[1],
                (long long)a->stride[0], (long long)a->stride[1], (long long)a->padding[0],
                (long long)a->padding[1], entry(m, "bias") ? "True" : "False");
}

fs_module *fs_nn_conv_transpose2d(int64_t in_ch, int64_t out_ch, int64_t kh, int64_t kw,
                                  const fs_conv2d_args *a, bool bias, fs_generator *g)
{
    if (in_ch < 1 || out_ch < 1 || kh < 1 || kw < 1)
        return fs_set_error("conv_transpose2d: in_channels %lld, out_channels %lld and kernel "
                            "(%lld, %lld) must be >= 1", (long long)in_ch, (long long)out_ch,
                            (long long)kh, (long long)kw), NULL;
    if (a->groups != 1)
        return fs_set_error("conv_transpose2d module: groups other than 1 are not supported"),
               NULL;
    if (a->stride[0] < 1 || a->stride[1] < 1 || a->dilation[0] < 1 || a->dilation[1] < 1 ||
        a->padding[0] < 0 || a->padding[1] < 0 || a->output_padding[0] < 0 ||
        a->output_padding[1] < 0)
        return fs_set_error("conv_transpose2d: stride and dilation must be >= 1, padding and "
                            "output_padding >= 0"), NULL;
    const int64_t wsize[4] = {in_ch, out_ch, kh, kw};
    if (check_at_most("conv_transpose2d", "in_channels", 1, &in_ch) < 0 ||
        check_at_most("conv_transpose2d", "out_channels", 1, &out_ch) < 0 ||
        check_at_most("conv_transpose2d", "kernel", 2, wsize + 2) < 0 ||
        check_at_most("conv_transpose2d", "stride", 2, a->stride) < 0 ||
        check_at_most("conv_transpose2d", "padding", 2, a->padding) < 0 ||
        check_at_most("conv_transpose2d", "output_padding", 2, a->output_padding) < 0 ||
        check_at_most("conv_transpose2d", "dilation", 2, a->dilation) < 0 ||
        check_numel("conv_transpose2d", "weight", 4, wsize) < 0)
        return NULL;
    fs_module *m = fs_module_new("ConvTranspose2d", convt_forward);
    if (!m)
        return NULL;
    m->describe = convt_describe;
    fs_conv2d_settings s = {in_ch, out_ch, {kh, kw}, *a};
    double bound = 1.0 / sqrt((double)(out_ch * kh * kw)); /* PyTorch: fan_in = size(1) * k */
    int rc = fs_module_set_settings(m, &s, sizeof s) ? 0 : -1;
    if (rc == 0)
        rc = fs_module_add_param(m, "weight", uniform_param(4, wsize, bound, g));
    if (rc == 0 && bias)
        rc = fs_module_add_param(m, "bias", uniform_param(1, &out_ch, bound, g));
    return finish(m, rc);
}

static fs_tensor *linear_forward(fs_module *m, fs_tensor *x)
{
    return fs_linear(x, entry(m, "weight"), entry(m, "bias"));
}

static void linear_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_linear_settings *s = m->settings;
    if (spec)
        fs_module_appendf(b, cap, len, "linear{in_features=%lld, out_features=%lld, bias=%s}",
                (long long)s->in_features, (long long)s->out_features,
                tf(entry(m, "bias") != NULL));
    else
        fs_module_appendf(b, cap, len, "Linear(in_features=%lld, out_features=%lld, bias=%s)",
                (long long)s->in_features, (long long)s->out_features,
                entry(m, "bias") ? "True" : "False");
}

fs_module *fs_nn_linear(int64_t in_f, int64_t out_f, bool bias, fs_generator *g)
{
    if (in_f < 1 || out_f < 1)
        return fs_set_error("linear: in_features %lld and out_features %lld must be >= 1",
                            (long long)in_f, (long long)out_f), NULL;
    const int64_t wsize[2] = {out_f, in_f};
    if (check_numel("linear", "weight", 2, wsize) < 0)
        return NULL;
    fs_module *m = fs_module_new("Linear", linear_forward);
    if (!m)
        return NULL;
    m->describe = linear_describe;
    fs_linear_settings s = {in_f, out_f};
    double bound = 1.0 / sqrt((double)in_f);
    int rc = fs_module_set_settings(m, &s, sizeof s) ? 0 : -1;
    if (rc == 0)
        rc = fs_module_add_param(m, "weight", uniform_param(2, (int64_t[]){out_f, in_f}, bound, g));
    if (rc == 0 && bias)
        rc = fs_module_add_param(m, "bias", uniform_param(1, &out_f, bound, g));
    return finish(m, rc);
}

static fs_tensor *bn_forward(fs_module *m, fs_tensor *x)
{
    const fs_batchnorm_settings *s = m->settings;
    fs_tensor *y = fs_batch_norm(x, entry(m, "running_mean"), entry(m, "running_var"),
                                 entry(m, "weight"), entry(m, "bias"), m->training, s->momentum,
                                 s->eps);
    if (y && m->training) {
        fs_tensor *nbt = entry(m, "num_batches_tracked");
        if (nbt)
            *fs_data(nbt) += 1.0f;
    }
    return y;
}

static void bn_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_batchnorm_settings *s = m->settings;
    if (spec)
        fs_module_appendf(b, cap, len, "batchnorm2d{num_features=%lld, eps=%.17g, momentum=%.17g}",
                (long long)s->num_features, s->eps, s->momentum);
    else
        fs_module_appendf(b, cap, len, "BatchNorm2d(%lld, eps=%g, momentum=%g)",
                (long long)s->num_features, s->eps, s->momentum);
}

fs_module *fs_nn_batchnorm2d(int64_t features, double eps, double momentum)
{
    if (features < 1)
        return fs_set_error("batchnorm2d: num_features %lld must be >= 1", (long long)features),
               NULL;
    if (check_at_most("batchnorm2d", "num_features", 1, &features) < 0)
        return NULL;
    fs_module *m = fs_module_new("BatchNorm2d", bn_forward);
    if (!m)
        return NULL;
    m->describe = bn_describe;
    fs_batchnorm_settings s = {features, eps, momentum};
    int rc = fs_module_set_settings(m, &s, sizeof s) ? 0 : -1;
    if (rc == 0)
        rc = fs_module_add_param(m, "weight", fs_tensor_full(1, &features, 1.0f));
    if (rc == 0)
        rc = fs_module_add_param(m, "bias", fs_tensor_zeros(1, &features));
    if (rc == 0)
        rc = fs_module_add_buffer(m, "running_mean", fs_tensor_zeros(1, &features));
    if (rc == 0)
        rc = fs_module_add_buffer(m, "running_var", fs_tensor_full(1, &features, 1.0f));
    if (rc == 0)
        rc = fs_module_add_buffer(m, "num_batches_tracked", fs_tensor_scalar(0.0f));
    return finish(m, rc);
}

static fs_tensor *in_forward(fs_module *m, fs_tensor *x)
{
    const fs_instancenorm_settings *s = m->settings;
    if (x->ndim != 4 || x->size[1] != s->num_features)
        return fs_set_error("instancenorm2d: expected input (N, %lld, H, W), got %s",
                            (long long)s->num_features, FS_SHAPE(x)), NULL;
    return fs_instance_norm(x, NULL, NULL, s->eps);
}

static void in_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_instancenorm_settings *s = m->settings;
    if (spec)
        fs_module_appendf(b, cap, len, "instancenorm2d{num_features=%lld, eps=%.17g}",
                (long long)s->num_features, s->eps);
    else
        fs_module_appendf(b, cap, len, "InstanceNorm2d(%lld, eps=%g, affine=False, "
                "track_running_stats=False)", (long long)s->num_features, s->eps);
}

fs_module *fs_nn_instancenorm2d(int64_t features, double eps)
{
    if (features < 1)
        return fs_set_error("instancenorm2d: num_features %lld must be >= 1",
                            (long long)features), NULL;
    if (!(eps >= 0.0))
        return fs_set_error("instancenorm2d: eps must be >= 0, got %g", eps), NULL;
    if (check_at_most("instancenorm2d", "num_features", 1, &features) < 0)
        return NULL;
    fs_module *m = fs_module_new("InstanceNorm2d", in_forward);
    if (!m)
        return NULL;
    m->describe = in_describe;
    fs_instancenorm_settings s = {features, eps};
    return finish(m, fs_module_set_settings(m, &s, sizeof s) ? 0 : -1);
}

static fs_tensor *upsample_forward(fs_module *m, fs_tensor *x)
{
    const fs_upsample_settings *s = m->settings;
    return fs_interpolate(x, s->scale[0], s->scale[1], s->mode);
}

static const char *mode_name(fs_interp_mode mode)
{
    return mode == FS_INTERP_BILINEAR ? "bilinear" : "nearest";
}

static void upsample_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_upsample_settings *s = m->settings;
    if (spec)
        fs_module_appendf(b, cap, len, "upsample{scale_h=%.17g, scale_w=%.17g, mode=\"%s\"}",
                s->scale[0], s->scale[1], mode_name(s->mode));
    else
        fs_module_appendf(b, cap, len, "Upsample(scale_factor=(%g, %g), mode='%s')",
                s->scale[0], s->scale[1], mode_name(s->mode));
}

fs_module *fs_nn_upsample(double scale_h, double scale_w, fs_interp_mode mode)
{
    if (!(scale_h > 0.0 && scale_w > 0.0 && scale_h <= 1e6 && scale_w <= 1e6))
        return fs_set_error("upsample: scale must be in (0, 1e6], got (%g, %g)", scale_h,
                            scale_w), NULL;
    if (mode != FS_INTERP_NEAREST && mode != FS_INTERP_BILINEAR)
        return fs_set_error("upsample: unknown mode %d", (int)mode), NULL;
    fs_module *m = fs_module_new("Upsample", upsample_forward);
    if (!m)
        return NULL;
    m->describe = upsample_describe;
    fs_upsample_settings s = {{scale_h, scale_w}, mode};
    return finish(m, fs_module_set_settings(m, &s, sizeof s) ? 0 : -1);
}

static fs_tensor *relu_forward(fs_module *m, fs_tensor *x)
{
    (void)m;
    return fs_relu(x);
}

static void relu_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    (void)m;
    fs_module_appendf(b, cap, len, spec ? "relu{}" : "ReLU()");
}

fs_module *fs_nn_relu(void)
{
    fs_module *m = fs_module_new("ReLU", relu_forward);
    if (m)
        m->describe = relu_describe;
    return m;
}

static fs_tensor *maxpool_forward(fs_module *m, fs_tensor *x)
{
    const fs_pool_settings *s = m->settings;
    return fs_max_pool2d(x, &s->args);
}

static void maxpool_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_pool_settings *s = m->settings;
    const fs_pool2d_args *a = &s->args;
    fs_module_appendf(b, cap, len,
            spec ? "maxpool2d{kernel={%lld, %lld}, stride={%lld, %lld}, padding={%lld, %lld}}"
                 : "MaxPool2d(kernel_size=(%lld, %lld), stride=(%lld, %lld), padding=(%lld, %lld))",
            (long long)a->kernel[0], (long long)a->kernel[1], (long long)a->stride[0],
            (long long)a->stride[1], (long long)a->padding[0], (long long)a->padding[1]);
}

fs_module *fs_nn_maxpool2d(const fs_pool2d_args *a)
{
    if (a->kernel[0] < 1 || a->kernel[1] < 1)
        return fs_set_error("maxpool2d: kernel must be >= 1"), NULL;
    if (a->stride[0] < 0 || a->stride[1] < 0 || a->padding[0] < 0 || a->padding[1] < 0)
        return fs_set_error("maxpool2d: stride and padding must be >= 0"), NULL;
    if (check_at_most("maxpool2d", "kernel", 2, a->kernel) < 0 ||
        check_at_most("maxpool2d", "stride", 2, a->stride) < 0 ||
        check_at_most("maxpool2d", "padding", 2, a->padding) < 0)
        return NULL;
    fs_module *m = fs_module_new("MaxPool2d", maxpool_forward);
    if (!m)
        return NULL;
    m->describe = maxpool_describe;
    fs_pool_settings s = {*a};
    for (int d = 0; d < 2; d++)
        if (s.args.stride[d] == 0)
            s.args.stride[d] = s.args.kernel[d];
    return finish(m, fs_module_set_settings(m, &s, sizeof s) ? 0 : -1);
}

static fs_tensor *avgpool_forward(fs_module *m, fs_tensor *x)
{
    const fs_adaptive_pool_settings *s = m->settings;
    return fs_adaptive_avg_pool2d(x, s->output_size[0], s->output_size[1]);
}

static void avgpool_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    const fs_adaptive_pool_settings *s = m->settings;
    fs_module_appendf(b, cap, len,
            spec ? "adaptive_avgpool2d{output_size={%lld, %lld}}"
                 : "AdaptiveAvgPool2d(output_size=(%lld, %lld))",
            (long long)s->output_size[0], (long long)s->output_size[1]);
}

fs_module *fs_nn_adaptive_avgpool2d(int64_t oh, int64_t ow)
{
    if (oh < 1 || ow < 1)
        return fs_set_error("adaptive_avgpool2d: output size must be >= 1"), NULL;
    if (check_at_most("adaptive_avgpool2d", "output size", 2, (const int64_t[]){oh, ow}) < 0)
        return NULL;
    fs_module *m = fs_module_new("AdaptiveAvgPool2d", avgpool_forward);
    if (!m)
        return NULL;
    m->describe = avgpool_describe;
    fs_adaptive_pool_settings s = {{oh, ow}};
    return finish(m, fs_module_set_settings(m, &s, sizeof s) ? 0 : -1);
}

static fs_tensor *flatten_forward(fs_module *m, fs_tensor *x)
{
    (void)m;
    if (x->ndim < 1)
        return fs_set_error("flatten: input must have a batch dim, got %s", FS_SHAPE(x)), NULL;
    return fs_reshape(x, 2, (int64_t[]){x->size[0], -1});
}

static void flatten_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    (void)m;
    fs_module_appendf(b, cap, len, spec ? "flatten{}" : "Flatten()");
}

fs_module *fs_nn_flatten(void)
{
    fs_module *m = fs_module_new("Flatten", flatten_forward);
    if (m)
        m->describe = flatten_describe;
    return m;
}

static fs_tensor *sequential_forward(fs_module *m, fs_tensor *x)
{
    fs_tensor *cur = fs_tensor_retain(x);
    for (int i = 0; i < m->nchildren && cur; i++) {
        fs_tensor *next = fs_module_forward(m->children[i], cur);
        fs_tensor_release(cur);
        cur = next;
    }
    return cur;
}

static void sequential_describe(fs_module *m, bool spec, char *b, size_t cap, size_t *len)
{
    if (!spec) {
        fs_module_appendf(b, cap, len, "Sequential");
        return;
    }
    fs_module_appendf(b, cap, len, "sequential{");
    for (int i = 0; i < m->nchildren; i++) {
        fs_module *c = m->children[i];
        if (i)
            fs_module_appendf(b, cap, len, ", ");
        if (c->describe) /* fs_module_spec checked that all can be described */
            c->describe(c, true, b, cap, len);
    }
    fs_module_appendf(b, cap, len, "}");
}

fs_module *fs_nn_sequential(int n, fs_module *const *mods)
{
    fs_module *m = fs_module_new("Sequential", sequential_forward);
    if (!m)
        return NULL;
    m->describe = sequential_describe;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char name[24];
        snprintf(name, sizeof name, "%d", i);
        rc = fs_module_add_child(m, name, mods[i]);
    }
    return finish(m, rc);
}
