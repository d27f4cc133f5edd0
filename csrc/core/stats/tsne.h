/* tsne.h - exact t-SNE (van der Maaten & Hinton 2008): points x (N, D) -> an embedding (N, dims).
 * O(N^2) time and memory per iteration; meant for a few thousand points. Deterministic for a
 * generator state at any thread count. */
#ifndef FS_TSNE_H
#define FS_TSNE_H

#include "base/random.h"
#include "tensor/tensor.h"

typedef struct fs_tsne_options {
    double perplexity;         /* effective neighbours per point, 0 < perplexity < N (30) */
    int iterations;            /* gradient steps (1000) */
    double learning_rate;      /* step size; 0: auto, max(N / early_exaggeration / 4, 50) (0) */
    double early_exaggeration; /* P is multiplied by this for the first 250 steps (12) */
    int dims;                  /* output dimensions (2) */
} fs_tsne_options;

/* The defaults above. */
fs_tsne_options fs_tsne_options_default(void);

/* x: (N, D), any strides, finite. Y starts as N(0, (1e-4)^2) draws from g (row by row).
 * Returns a new (N, dims) tensor, or NULL with fs_error() set ("tsne: ..."). When kl is not
 * NULL it receives KL(P || Q) of the result (with the un-exaggerated P). */
fs_tensor *fs_tsne_embed(const fs_tensor *x, const fs_tsne_options *opt, fs_generator *g,
                         double *kl);

#endif
