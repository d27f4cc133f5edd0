/* optim.h - SGD, Adam and AdamW over a list of parameter tensors, the same updates as
 * PyTorch 1.13's single-tensor implementations, in the same float32 operation order.
 *
 * State (momentum buffers, Adam moments) is one flat float array per kind, laid out as the
 * parameters are listed (param i at offsets[i], numel[i] floats). When the parameters are
 * consecutive views of one storage (a model's flat buffer, module.h) and their gradients
 * likewise, step() is one loop over the whole range; otherwise one loop per parameter.
 * A parameter whose .grad is NULL is skipped (as PyTorch skips grad None).
 *
 * State dict (what opt:save writes to a safetensors file; n parameters, P values in all):
 *   tensors  "step" (n) step count per parameter, "buffer_set" (n) SGD only, 1 where the
 *            momentum buffer is initialised; "exp_avg", "exp_avg_sq" (P) Adam/AdamW,
 *            "max_exp_avg_sq" (P) with amsgrad; "momentum_buffer" (P) SGD with momentum
 *   metadata "fewshot.optimizer" = "sgd" | "adam" | "adamw", then the hyper-parameters
 *            "lr", "weight_decay" and "momentum", "dampening" (SGD) or "beta1", "beta2",
 *            "eps" (Adam), printed with 17 significant digits so a resumed run is
 *            bit-identical. (amsgrad and nesterov are not stored: they decide which tensors
 *            there are, and the optimizer loading the state keeps its own.) */
#ifndef FS_OPTIM_H
#define FS_OPTIM_H

#include <stdbool.h>

#include "io/dict.h"
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

/* ---- state ---- */
/* Appends the state (copies of the tensors) and the metadata listed above to out. On error
 * out may hold part of it; the caller frees out either way. */
int fs_optim_state_dict(const fs_optim *o, fs_tensor_dict *out);
/* Loads a state in that layout. Checks everything before it changes anything: the kind
 * (when sd names one), every hyper-parameter present in the metadata (a number, in the range
 * fs_optim_new accepts; an absent one keeps its value), each tensor's shape ("step" and
 * "buffer_set" (n), the moments (P)), missing and unexpected tensors, step counts (whole
 * numbers >= 0) and flags (0 or 1). On error nothing is changed and the message names the
 * optimizer and every key that does not fit. Unknown metadata keys are ignored. */
int fs_optim_load_state_dict(fs_optim *o, const fs_tensor_dict *sd);
/* The state dict to / from a safetensors file. load also requires the file's
 * "fewshot.optimizer" tag to name this optimizer's kind; errors name the file. */
int fs_optim_save(const fs_optim *o, const char *path);
int fs_optim_load(fs_optim *o, const char *path);

#endif
