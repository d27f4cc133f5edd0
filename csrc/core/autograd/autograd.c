/* autograd.c - grad mode, tape nodes, and the reverse walk that back-propagates.
 *
 * backward(root): order the nodes reachable from root.grad_fn so that every node comes after
 * all nodes that consume its output (reverse topological order of the recording), then visit
 * them once each, passing dout to the node's kernel and adding the input gradients into the
 * producing node's dout (non-leaf) or the leaf's .grad. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"

static _Thread_local bool grad_disabled;

bool fs_grad_enabled(void) { return !grad_disabled; }

bool fs_set_grad_enabled(bool on)
{
    bool was = !grad_disabled;
    grad_disabled = !on;
    return was;
}

bool fs_any_requires_grad(int n, fs_tensor *const *inputs)
{
    if (grad_disabled)
        return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad)
            return true;
    return false;
}

fs_node *fs_node_new(const char *name, fs_backward_fn fn, int ninputs, fs_tensor *const *inputs)
{
    fs_node *n = calloc(1, sizeof *n);
    if (!n) {
        fs_set_error("%s: out of memory recording the graph", name);
        return NULL;
    }
    n->inputs = calloc(ninputs > 0 ? (size_t)ninputs : 1, sizeof *n->inputs);
    if (!n->inputs) {
        free(n);
        fs_set_error("%s: out of memory recording the graph", name);
        return NULL;
    }
    n->refcount = 1;
    n->name = name;
    n->backward = fn;
    n->ninputs = ninputs;
    for (int i = 0; i < ninputs; i++) {
        fs_tensor *in = inputs[i];
        if (!in || (in->requires_grad && !in->grad_fn)) { /* a leaf, for its .grad */
            n->inputs[i] = fs_tensor_retain(in);
            continue;
        }
        /* An intermediate result (the edge to its producer) or a constant: without data. */
        fs_tensor *edge = fs_tensor_shape_only(in);
        if (!edge) {
            fs_set_error("%s: out of memory recording the graph", name);
            fs_node_release(n);
            return NULL;
        }
        edge->requires_grad = in->requires_grad;
        edge->grad_fn = in->grad_fn;
        if (in->grad_fn)
            in->grad_fn->refcount++;
        n->inputs[i] = edge;
    }
    return n;
}

fs_node *fs_node_maybe_new(const char *name, fs_backward_fn fn, int ninputs,
                           fs_tensor *const *inputs)
{
    if (!fs_any_requires_grad(ninputs, inputs))
        return NULL;
    return fs_node_new(name, fn, ninputs, inputs);
}

fs_node *fs_node_new_ctx(const char *name, fs_backward_fn fn, int ninputs,
                         fs_tensor *const *inputs, const void *ctx, size_t size)
{
    fs_node *n = fs_node_new(name, fn, ninputs, inputs);
    void *copy = n ? malloc(size) : NULL;
    if (!copy) {
        if (n)
            fs_set_error("%s: out of memory recording the graph", name);
        fs_node_release(n);
        return NULL;
    }
    memcpy(copy, ctx, size);
    n->ctx = copy;
    n->free_ctx = free;
    return n;
}

fs_tensor *fs_node_leaf_grad(const fs_node *n, int i)
{
    const fs_tensor *in = i < n->ninputs ? n->inputs[i] : NULL;
    if (!in || !in->requires_grad || in->grad_fn || !in->grad)
        return NULL;
    fs_tensor *g = in->grad;
    return fs_is_contiguous(g) && fs_same_shape(g, in) ? g : NULL;
}

bool fs_node_wants(const fs_node *n, int i)
{
    return i < n->ninputs && n->inputs[i] && n->inputs[i]->requires_grad;
}

void fs_node_attach(fs_node *n, fs_tensor *out)
{
    out->grad_fn = n;
    out->requires_grad = true;
    n->out_ndim = out->ndim;
    memcpy(n->out_size, out->size, sizeof n->out_size);
}

static void node_free_saved(fs_node *n)
{
    for (int i = 0; i < FS_NODE_MAX_SAVED; i++) {
        fs_tensor_release(n->saved[i]);
        n->saved[i] = NULL;
    }
    if (n->free_ctx && n->ctx)
        n->free_ctx(n->ctx);
    n->ctx = NULL;
    n->freed = true;
}

/* Releasing a long chain recursively could overflow the C stack, so nodes whose count drops
 * to zero go on a list threaded through the nodes themselves (next_release) and are freed in
 * a loop by the outermost call. The list needs no memory of its own: releasing cannot fail,
 * and nothing is left allocated per thread when a thread ends. */
void fs_node_release(fs_node *n)
{
    static _Thread_local fs_node *dead; /* nodes to free, most recent first */
    static _Thread_local bool draining;
    if (!n || --n->refcount > 0)
        return;
    n->next_release = dead;
    dead = n;
    if (draining)
        return;
    draining = true;
    while (dead) {
        fs_node *m = dead;
        dead = m->next_release;
        node_free_saved(m);
        fs_tensor_release(m->dout);
        for (int i = 0; i < m->ninputs; i++)
            fs_tensor_release(m->inputs[i]); /* may add more nodes to the list */
        free(m->inputs);
        free(m);
    }
    draining = false;
}

/* ---- the reverse walk ---- */

typedef struct { fs_node **v; size_t n, cap; } node_list;

static int list_push(node_list *l, fs_node *n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        fs_node **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return fs_set_error("backward: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
    return 0;
}

/* Iterative DFS post-order: a node is appended after all nodes it depends on (its inputs'
 * producers), so walking the list backwards visits consumers before producers. */
static int topo_order(fs_node *root, uint64_t mark, node_list *order)
{
    typedef struct { fs_node *n; int next; } frame;
    frame *frames = NULL;
    size_t nf = 0, cf = 0;
    int rc = 0;
    root->mark = mark;
#define PUSH_FRAME(node)                                                              \
    do {                                                                              \
        if (nf == cf) {                                                               \
            size_t c_ = cf ? cf * 2 : 64;                                             \
            frame *f_ = realloc(frames, c_ * sizeof *f_);                             \
            if (!f_) { rc = fs_set_error("backward: out of memory"); goto done; }     \
            frames = f_; cf = c_;                                                     \
        }                                                                             \
        frames[nf].n = (node); frames[nf].next = 0; nf++;                             \
    } while (0)
    PUSH_FRAME(root);
    while (nf) {
        frame *f = &frames[nf - 1];
        if (f->next < f->n->ninputs) {
            fs_tensor *in = f->n->inputs[f->next++];
            if (in && in->requires_grad && in->grad_fn && in->grad_fn->mark != mark) {
                in->grad_fn->mark = mark;
                PUSH_FRAME(in->grad_fn);
            }
        } else {
            if ((rc = list_push(order, f->n)) < 0)
                goto done;
            nf--;
        }
    }
#undef PUSH_FRAME
done:
    free(frames);
    return rc;
}

/* A leaf's .grad is its own tensor, added to in place (it may be a view into a model's flat
 * gradient buffer). A node's dout may start as a kernel's result shared with another input,
 * so it is copied before the first += when shared. */
static int accumulate(fs_tensor **slot, fs_tensor *g, bool leaf)
{
    if (!*slot) {
        /* A leaf may take g itself when nobody else holds it (the kernel's fresh result). */
        bool take = fs_is_contiguous(g) && (!leaf || (g->refcount == 1 && g->storage->refcount == 1));
        *slot = take ? fs_tensor_retain(g) : fs_tensor_contiguous_copy(g);
        return *slot ? 0 : -1;
    }
    if (!leaf && (*slot)->refcount > 1) {
        fs_tensor *c = fs_tensor_contiguous_copy(*slot);
        if (!c)
            return -1;
        fs_tensor_release(*slot);
        *slot = c;
    }
    return fs_tensor_add_(*slot, g);
}

int fs_backward(fs_tensor *root, const fs_tensor *grad, bool retain_graph)
{
    static _Atomic uint64_t next_mark = 1;
    if (!root->requires_grad)
        return fs_set_error("backward: tensor of shape %s does not require grad and has no "
                            "grad_fn", FS_SHAPE(root));
    fs_tensor *g0;
    if (grad) {
        if (!fs_same_shape(grad, root))
            return fs_set_error("backward: gradient of shape %s does not match the tensor's "
                                "shape %s", FS_SHAPE(grad), FS_SHAPE(root));
        g0 = fs_tensor_contiguous_copy(grad);
    } else {
        if (fs_numel(root) != 1)
            return fs_set_error("backward: gradient can be implied only for a tensor with one "
                                "element; this one has shape %s (pass a gradient)",
                                FS_SHAPE(root));
        g0 = fs_tensor_full(root->ndim, root->size, 1.0f);
    }
    if (!g0)
        return -1;
    if (!root->grad_fn) { /* a leaf */
        int rc = accumulate(&root->grad, g0, true);
        fs_tensor_release(g0);
        return rc;
    }
    fs_node *top = root->grad_fn;
    if (top->freed) {
        fs_tensor_release(g0);
        return fs_set_error("backward: the graph of '%s' was already freed by an earlier "
                            "backward (pass retain_graph=true to the first call)", top->name);
    }
    node_list order = {0};
    int rc = topo_order(top, atomic_fetch_add(&next_mark, 1), &order);
    if (rc == 0) {
        for (size_t k = 0; k < order.n; k++)
            if (order.v[k]->freed) {
                rc = fs_set_error("backward: the graph of '%s' was already freed by an earlier "
                                  "backward (pass retain_graph=true to the first call)",
                                  order.v[k]->name);
                break;
            }
    }
    bool was_enabled = fs_set_grad_enabled(false); /* kernels below must not record */
    /* Without retain_graph the graph is spent as it is walked: once a node's backward has run,
     * its links to intermediate results are cut, so activations are freed during backward
     * (not when the collector finds the last tensor Lua holds of this graph). The nodes are
     * retained for the walk, since a cut may drop the last other reference to one. */
    if (!retain_graph)
        for (size_t k = 0; k < order.n; k++)
            order.v[k]->refcount++;
    if (rc == 0)
        top->dout = g0;
    else
        fs_tensor_release(g0);
    for (size_t k = order.n; rc == 0 && k-- > 0;) {
        fs_node *n = order.v[k];
        if (!n->dout)
            continue; /* no gradient reached this node */
        fs_tensor **dinputs = calloc((size_t)n->ninputs + 1, sizeof *dinputs);
        if (!dinputs) {
            rc = fs_set_error("backward: out of memory");
            break;
        }
        if (n->backward(n, n->dout, dinputs) < 0) {
            char msg[1024];
            strncpy(msg, fs_error(), sizeof msg - 1);
            msg[sizeof msg - 1] = 0;
            rc = fs_set_error("backward of %s: %s", n->name, msg);
        }
        for (int i = 0; i < n->ninputs; i++) {
            fs_tensor *in = n->inputs[i], *d = dinputs[i];
            if (rc == 0 && d && fs_node_wants(n, i)) {
                if (!fs_same_shape(d, in))
                    rc = fs_set_error("backward of %s: gradient %s for input %d of shape %s",
                                      n->name, FS_SHAPE(d), i + 1, FS_SHAPE(in));
                else
                    rc = in->grad_fn ? accumulate(&in->grad_fn->dout, d, false)
                                     : accumulate(&in->grad, d, true);
            }
            fs_tensor_release(d);
        }
        free(dinputs);
        fs_tensor_release(n->dout);
        n->dout = NULL;
        if (!retain_graph) {
            node_free_saved(n);
            for (int i = 0; i < n->ninputs; i++)
                if (n->inputs[i] && n->inputs[i]->grad_fn) {
                    fs_tensor_release(n->inputs[i]);
                    n->inputs[i] = NULL;
                }
        }
    }
    for (size_t k = 0; k < order.n; k++) { /* after an error, drop partial gradients */
        fs_tensor_release(order.v[k]->dout);
        order.v[k]->dout = NULL;
    }
    if (!retain_graph)
        for (size_t k = 0; k < order.n; k++)
            fs_node_release(order.v[k]);
    free(order.v);
    fs_set_grad_enabled(was_enabled);
    return rc;
}

fs_tensor *fs_sum_to_shape(const fs_tensor *g, int ndim, const int64_t *size)
{
    if (g->ndim == ndim && memcmp(g->size, size, (size_t)ndim * sizeof(int64_t)) == 0)
        return fs_tensor_contiguous_copy(g);
    fs_tensor *out = fs_tensor_zeros(ndim, size);
    if (!out)
        return NULL;
    /* out viewed with g's shape (stride 0 where broadcast), then += walks g once. */
    fs_tensor *v = fs_tensor_alias(out);
    if (!v) {
        fs_tensor_release(out);
        return NULL;
    }
    int shift = g->ndim - ndim;
    v->ndim = g->ndim;
    for (int d = g->ndim - 1; d >= 0; d--) {
        int od = d - shift;
        v->size[d] = g->size[d];
        v->stride[d] = (od >= 0 && size[od] == g->size[d]) ? out->stride[od] : 0;
    }
    /* Accumulating into stride-0 dims must be sequential: walk element by element. */
    int64_t n = fs_numel(g), idx[FS_MAX_DIM] = {0};
    float *vb = v->storage->data;
    const float *gb = g->storage->data;
    for (int64_t k = 0; k < n; k++) {
        int64_t vo = v->offset, go = g->offset;
        for (int d = 0; d < g->ndim; d++) {
            vo += idx[d] * v->stride[d];
            go += idx[d] * g->stride[d];
        }
        vb[vo] += gb[go];
        for (int d = g->ndim - 1; d >= 0; d--) {
            if (++idx[d] < g->size[d])
                break;
            idx[d] = 0;
        }
    }
    fs_tensor_release(v);
    return out;
}

static const char *node_name(const fs_node *n) { return n->name; }

/* Tells the tensor area how to drop a grad_fn and print its name (tensor.h), before any
 * node can exist. */
__attribute__((constructor)) static void install_node_hooks(void)
{
    fs_node_hooks_installed.release = fs_node_release;
    fs_node_hooks_installed.name = node_name;
}
