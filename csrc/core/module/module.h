/* module.h - a module tree with named parameters and buffers, PyTorch-style.
 *
 * A module has local entries (parameters, then buffers, in registration order) and named
 * children. Names in state_dict are the dotted paths (torchvision's: "layer1.0.conv1.weight").
 * Order everywhere (parameters, state_dict) is PyTorch's: a module's own parameters, its own
 * buffers, then each child's in order.
 *
 * Flat buffers: fs_module_flatten(root) moves every parameter of the tree into ONE contiguous
 * float storage, depth-first in parameter order; fs_module_ensure_grad (called by the first
 * forward in grad mode, by the optimizers and by zero_grad) gives every parameter a .grad that
 * is a view of ONE flat gradient storage of the same layout (an inference-only model never
 * allocates it). Parameter tensors keep their identity
 * (their headers are re-pointed), so tensors already handed out stay valid. The tape's leaf
 * accumulation adds in place into .grad, so gradients land in the flat buffer; an optimizer
 * sees a contiguous range of parameters (and of gradients) and runs one loop over it.
 * Every constructor here flattens the module it returns; adding a module to a container
 * re-flattens the container (its parameters move to the container's buffer).
 *
 * Saved activations live on the tape (autograd.h), never in the module.
 */
#ifndef FS_MODULE_H
#define FS_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/nn.h"
#include "tensor/tensor.h"

typedef struct fs_module fs_module;
typedef fs_tensor *(*fs_module_forward_fn)(fs_module *m, fs_tensor *x);
/* Appends this module's one-line description ("Conv2d(3, 64, ...)") or its constructor
 * expression (spec: true) to buf[cap] at *len; kinds defined elsewhere (PRNet) set their own. */
typedef void (*fs_module_describe_fn)(fs_module *m, bool spec, char *buf, size_t cap,
                                      size_t *len);

typedef struct fs_module_entry {
    char *name;           /* local name: "weight", "running_mean", ... */
    fs_tensor *t;
    bool buffer;          /* false: a parameter (requires_grad) */
} fs_module_entry;

#define FS_MODULE_MAX_ENTRIES 8

struct fs_module {
    int refcount;
    const char *kind;                 /* "Conv2d", "BatchNorm2d", "ResNet", ... */
    fs_module_forward_fn forward;
    fs_module_describe_fn describe;   /* NULL: the kind name only, and no spec (no save) */
    bool training;
    int nentries;
    fs_module_entry entries[FS_MODULE_MAX_ENTRIES];
    int nchildren, capchildren;
    fs_module **children;
    char **child_names;
    /* the kind's settings (fs_conv2d_settings for "Conv2d", ...; NULL for kinds that have
     * none), owned by the module: released with free_settings (NULL: free) */
    void *settings;
    void (*free_settings)(void *settings);
    /* flat storage (set on the module flatten was called on) */
    fs_tensor *flat;                     /* (P) all parameters */
    fs_tensor *flat_grad;                /* (P) all gradients */
};

/* ---- building ---- */
fs_module *fs_module_new(const char *kind, fs_module_forward_fn forward);
/* Gives m a copy of settings (size bytes, freed with the module) and returns the copy; NULL
 * with the error set when out of memory. A new kind of layer adds its settings struct. */
void *fs_module_set_settings(fs_module *m, const void *settings, size_t size);
/* m's settings when m is of the given kind, else NULL. */
const void *fs_module_settings(const fs_module *m, const char *kind);
/* The parameter or buffer of m with the given local name ("weight"), or NULL. */
fs_tensor *fs_module_tensor(const fs_module *m, const char *name);
fs_module *fs_module_retain(fs_module *m);
void fs_module_release(fs_module *m);
/* Registers a parameter (requires_grad set) or buffer; takes over the reference to t. */
int fs_module_add_param(fs_module *m, const char *name, fs_tensor *t);
int fs_module_add_buffer(fs_module *m, const char *name, fs_tensor *t);
/* Appends a child (retained). */
int fs_module_add_child(fs_module *m, const char *name, fs_module *child);
fs_module *fs_module_child(const fs_module *m, const char *name);
/* The submodule at a dotted path of child names ("layer1.0.conv1"; "" is root itself), not
 * retained; NULL with the error set ("child: no submodule '...'") when there is none. */
fs_module *fs_module_find(fs_module *root, const char *path);
int fs_module_flatten(fs_module *m);
int fs_module_ensure_grad(fs_module *m);
/* While on (nestable), constructors skip flattening: a model built from many modules is
 * flattened once at the end, without a copy per nesting level. */
void fs_module_defer_flatten(bool on);

/* ---- use ---- */
fs_tensor *fs_module_forward(fs_module *m, fs_tensor *x);
void fs_module_set_training(fs_module *m, bool on);   /* recursive */
int64_t fs_module_num_parameters(const fs_module *m);
void fs_module_zero_grad(fs_module *m);

/* Visits every entry depth-first in PyTorch's order with its dotted name. Stops and returns
 * the callback's value when it is non-zero. */
typedef int (*fs_module_visit_fn)(void *ud, const char *name, fs_module_entry *e,
                                  fs_module *owner);
int fs_module_visit(fs_module *m, fs_module_visit_fn fn, void *ud);
/* The distinct parameters in visit order (trainable_only: those with requires_grad) as a
 * malloc'ed array the caller frees; -1 on error. */
int fs_module_parameter_list(fs_module *m, bool trainable_only, fs_tensor ***out, int *n);

/* ---- state dict ---- */
typedef struct fs_tensor_dict fs_tensor_dict;  /* safetensors.h */
/* Appends every parameter and buffer (aliases: no grad) under prefix-less dotted names. */
int fs_module_state_dict(fs_module *m, fs_tensor_dict *out);
/* Copies values from sd. strict: missing and unexpected keys are errors. Shape mismatches
 * are always errors. adapt_conv1_sum: a (O, 3, kh, kw) "conv1.weight" loading into a
 * (O, 1, kh, kw) parameter is summed over its input channels. On error nothing is changed
 * and the message lists every missing / unexpected / mis-shaped key. */
int fs_module_load_state_dict(fs_module *m, const fs_tensor_dict *sd, bool strict,
                              bool adapt_conv1_sum);

/* A malloc'ed description: the layer tree with shapes and parameter counts. */
char *fs_module_format(fs_module *m);
/* A malloc'ed constructor expression that rebuilds the architecture, e.g.
 * "resnet18{in_channels=1, num_classes=10}" or "sequential{conv2d{...}, relu{}}". */
char *fs_module_spec(fs_module *m);
/* Appends printf-style text to buf[cap] at *len (clipped at cap - 1): for describe functions. */
void fs_module_appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ---- layers.c: layer modules (PyTorch's default initialisation, drawn from g) ---- */
/* Bound of every size, stride, padding and dilation a constructor takes, and of a parameter's
 * element count: a checkpoint's stored description (fs.nn.load) can name any number. */
#define FS_MODULE_MAX_SIZE ((int64_t)INT32_MAX)
/* Their settings (m->settings of the kind in the comment). */
typedef struct fs_conv2d_settings {       /* "Conv2d" */
    int64_t in_channels, out_channels, kernel[2];
    fs_conv2d_args args;                  /* stride, padding, dilation (groups 1) */
} fs_conv2d_settings;
typedef struct fs_linear_settings {       /* "Linear" */
    int64_t in_features, out_features;
} fs_linear_settings;
typedef struct fs_batchnorm_settings {    /* "BatchNorm2d" */
    int64_t num_features;
    double eps, momentum;
} fs_batchnorm_settings;
typedef struct fs_pool_settings {         /* "MaxPool2d" (stride 0 resolved to the kernel) */
    fs_pool2d_args args;
} fs_pool_settings;
typedef struct fs_adaptive_pool_settings { /* "AdaptiveAvgPool2d" */
    int64_t output_size[2];
} fs_adaptive_pool_settings;
typedef struct fs_instancenorm_settings { /* "InstanceNorm2d" (affine false, no running stats) */
    int64_t num_features;
    double eps;
} fs_instancenorm_settings;
typedef struct fs_upsample_settings {     /* "Upsample" */
    double scale[2];
    fs_interp_mode mode;
} fs_upsample_settings;
typedef struct fs_resnet_settings {       /* "ResNet" */
    int64_t in_channels, num_classes;     /* num_classes 0: no fc */
} fs_resnet_settings;
/* kaiming_uniform(a=sqrt(5)) weight = U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias likewise. */
fs_module *fs_nn_conv2d(int64_t in_ch, int64_t out_ch, int64_t kh, int64_t kw,
                        const fs_conv2d_args *a, bool bias, fs_generator *g);
/* ConvTranspose2d: weight (in_ch, out_ch, kh, kw), PyTorch's fan_in out_ch * kh * kw;
 * settings fs_conv2d_settings (kind "ConvTranspose2d"; groups 1, output_padding allowed). */
fs_module *fs_nn_conv_transpose2d(int64_t in_ch, int64_t out_ch, int64_t kh, int64_t kw,
                                  const fs_conv2d_args *a, bool bias, fs_generator *g);
fs_module *fs_nn_linear(int64_t in_f, int64_t out_f, bool bias, fs_generator *g);
/* weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0 */
fs_module *fs_nn_batchnorm2d(int64_t features, double eps, double momentum);
/* nn.InstanceNorm2d(features, eps) with PyTorch's defaults: no parameters, no buffers. */
fs_module *fs_nn_instancenorm2d(int64_t features, double eps);
/* nn.Upsample(scale_factor=(sh, sw), mode), align_corners false; no parameters. */
fs_module *fs_nn_upsample(double scale_h, double scale_w, fs_interp_mode mode);
fs_module *fs_nn_relu(void);
fs_module *fs_nn_maxpool2d(const fs_pool2d_args *a);
fs_module *fs_nn_adaptive_avgpool2d(int64_t oh, int64_t ow);
fs_module *fs_nn_flatten(void);                      /* (N, ...) -> (N, prod) */
fs_module *fs_nn_sequential(int n, fs_module *const *mods); /* children "0", "1", ... */

/* ---- resnet.c ---- */
/* torchvision's resnet18: in_channels 1 or 3 (any >= 1), num_classes <= 0 for no fc
 * (the output is then the (N, 512) embedding). torchvision's initialisation. */
fs_module *fs_resnet18(int64_t in_channels, int64_t num_classes, fs_generator *g);

/* ---- models/from_spec.c ---- */
/* 0 when spec is a constructor expression as fs_module_spec writes it (names, options and
 * value types known), else -1 with the error set ("module description: ... at offset N").
 * Nothing is built. */
int fs_module_spec_check(const char *spec);
/* Builds the module spec describes, parameters initialised from g (NULL: the default
 * generator; a checkpoint's state dict then overwrites them); NULL with the error set (the check's, or a constructor's for numbers
 * it refuses). Safe on any text: nothing is evaluated, every number is bounded. */
fs_module *fs_module_from_spec(const char *spec, fs_generator *g);

#endif
