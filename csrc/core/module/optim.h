/* optim.h - SGD, Adam and AdamW over a list of parameter tensors, the same updates as
 * PyTorch 1.13's single-tensor implementations, in the same float32 operation order.
 *
 * State (momentum buffers, Adam moments) is one flat float array per kind, laid out as the
 * parameters are listed (param i at offsets[i], numel[i] floats). When the parameters are
 * consecutive views of one storage (a model's flat buffer, module.h) and their gradients
 * likewise, step() is one loop over the whole range; otherwise one loop per parameter.
 * A parameter whose .grad is NULL is skipped (as PyTorch skips grad None). */
#ifndef FS_OPTIM_H
#define FS_OPTIM_H

#include <stdbool.h>

#include "tensor/tensor.h"

typedef enum { FS_OPTIM_SGD, FS_OPTIM_ADAM, FS_OPTIM_ADAMW } fs_optim_kind;

typedef struct fs_optim_config {
    double lr;
    double beta1, beta2, eps;     /* Adam/AdamW */
    double weight_decay;
    bool amsgrad;
    double momentum, dampening;   /* SGD */
    bool nesterov;
} fs_optim_config;

typedef struct fs_optim {
    fs_optim_kind kind;
    fs_optim_config c;
    int n;                        /* parameters */
    fs_tensor **params;           /* retained */
    int64_t *offsets, total;      /* state layout */
    int64_t *steps;               /* per parameter */
    float *exp_avg, *exp_avg_sq, *max_exp_avg_sq;  /* Adam (max only with amsgrad) */
    float *momentum_buffer;       /* SGD with momentum */
    unsigned char *buffer_set;    /* SGD: momentum buffer initialised, per parameter */
} fs_optim;

const char *fs_optim_name(fs_optim_kind kind);
/* Checks the configuration (lr >= 0, 0 <= beta < 1, eps >= 0, ...) and the parameters
 * (contiguous, no grad_fn), naming the optimizer in errors. */
fs_optim *fs_optim_new(fs_optim_kind kind, int n, fs_tensor *const *params,
                       const fs_optim_config *c);
void fs_optim_free(fs_optim *o);
int fs_optim_step(fs_optim *o);
void fs_optim_zero_grad(fs_optim *o);
/* True when step() runs as one loop over a flat range. */
bool fs_optim_is_flat(const fs_optim *o);

#endif
