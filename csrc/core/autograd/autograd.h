/* autograd.h - the tape: nodes recorded by differentiable ops, walked in reverse by backward.
 *
 * A differentiable op that sees an input with requires_grad (and grad mode on) creates a node:
 *
 *     fs_node *n = fs_node_new("conv2d", conv2d_backward, 3, (fs_tensor *[]){x, w, b});
 *     n->saved[0] = fs_tensor_alias(x); ...              (what backward needs, no grad_fn)
 *     fs_node_attach(n, out);                            (out->grad_fn = n, requires_grad)
 *
 * fs_node_maybe_new returns NULL when no input needs a gradient, so ops write
 * `if ((n = fs_node_maybe_new(...))) {...}`.
 *
 * The op's parameters that backward needs (a dim, a reduction, a kind) go in a small typed
 * struct of the op's own, copied into the node: fs_node_new_ctx(..., &ctx, sizeof ctx) (or an
 * fs_alloc'ed ctx with its own free_ctx when it holds a variable-length array).
 *
 * Backward kernel contract: given dout (the gradient w.r.t. the node's output, contiguous,
 * of the output's shape), write into dinputs[i] a new tensor of inputs[i]'s shape for every
 * input with fs_node_wants(n, i); leave others NULL. Return 0, or -1 with fs_set_error.
 * The engine accumulates (+=) gradients into the leaves' .grad: gradients accumulate until
 * zero_grad.
 *
 * Saved tensors must never hold the node's own output with its grad_fn (that would be a
 * reference cycle): save fs_tensor_alias(out), which shares storage only.
 *
 * A node does not keep its inputs' data: an intermediate result or a constant is kept as a
 * header (shape and grad_fn, no storage; see fs_node.inputs), so a backward that reads an
 * input's values must save it (fs_tensor_alias(x)); n->inputs[i] gives shapes only.
 */
#ifndef FS_AUTOGRAD_H
#define FS_AUTOGRAD_H

#include "tensor/tensor.h"

#define FS_NODE_MAX_SAVED 8

typedef int (*fs_backward_fn)(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs);

struct fs_node {
    int refcount;
    const char *name;                       /* op name, for errors */
    fs_backward_fn backward;
    int ninputs;
    fs_tensor **inputs;                     /* ninputs; NULL where no tensor. A leaf that
                                               requires grad is retained itself (for .grad);
                                               anything else is a header with its shape,
                                               requires_grad and grad_fn (the edge to its
                                               producer) but no data, so a graph keeps alive
                                               only what its nodes saved */
    fs_tensor *saved[FS_NODE_MAX_SAVED];    /* retained; released when the graph is freed */
    void *ctx;                              /* the op's typed context (its parameters and
                                               extra state), freed with free_ctx */
    void (*free_ctx)(void *ctx);
    int out_ndim;                           /* shape of the output */
    int64_t out_size[FS_MAX_DIM];
    bool freed;                             /* saved state released after a backward */
    /* engine bookkeeping */
    fs_tensor *dout;
    uint64_t mark;
    int pending;
    fs_node *next_release;                  /* fs_node_release's list of dead nodes */
};

/* Grad mode (thread-local): ops record nodes only while it is on. */
bool fs_grad_enabled(void);
bool fs_set_grad_enabled(bool on); /* returns the previous mode */

/* True when grad mode is on and some input requires grad. */
bool fs_any_requires_grad(int n, fs_tensor *const *inputs);
fs_node *fs_node_new(const char *name, fs_backward_fn fn, int ninputs, fs_tensor *const *inputs);
fs_node *fs_node_maybe_new(const char *name, fs_backward_fn fn, int ninputs,
                           fs_tensor *const *inputs);
/* fs_node_new with a copy of ctx (size bytes) as the node's context, freed with the node.
 * NULL with the error set ("<name>: out of memory recording the graph"). */
fs_node *fs_node_new_ctx(const char *name, fs_backward_fn fn, int ninputs,
                         fs_tensor *const *inputs, const void *ctx, size_t size);
/* True when input i exists and requires grad (so backward should compute its gradient). */
bool fs_node_wants(const fs_node *n, int i);
/* The .grad that input i's gradient is added to when the input is a leaf that has one already
 * (contiguous, of the input's shape), else NULL. A backward may add its gradient for input i
 * straight into it and leave dinputs[i] NULL: the engine's add, without the temporary. */
fs_tensor *fs_node_leaf_grad(const fs_node *n, int i);
/* Makes n the grad_fn of out (takes over the caller's reference to n). */
void fs_node_attach(fs_node *n, fs_tensor *out);
void fs_node_release(fs_node *n);

/* Back-propagate from root. grad NULL means ones (root must then have one element).
 * retain_graph keeps saved tensors for a second backward. */
int fs_backward(fs_tensor *root, const fs_tensor *grad, bool retain_graph);

/* Reduce a gradient of a broadcast result back to the input's shape (sums over the
 * broadcast dims). Returns a new contiguous tensor of shape (ndim, size). */
fs_tensor *fs_sum_to_shape(const fs_tensor *g, int ndim, const int64_t *size);

#endif
