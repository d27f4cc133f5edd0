#!/usr/bin/python3
"""Writes the Prototypical Network fixtures under spec/fixtures/protonet/ (run with Debian's
/usr/bin/python3, which has torch). Seeded: running it twice writes the same files.

Same text format as tools/make_fixtures.py (blocks "name ndim d1 ... dn" then the values, read
by spec/helper.lua's load_fixture). Embeddings are float32 values; the references are computed
in float64 from them. Labels are stored 1-based as floats; they need not be sorted or
contiguous: the distinct support labels, sorted, are the columns of the logits.
Stored: prototypes (K, D), dist (Nq, K), logp (Nq, K), loss, accuracy and the gradients of the
loss w.r.t. both embeddings.

Usage: /usr/bin/python3 tools/make_fixtures_protonet.py
"""
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "fixtures", "protonet")


def fmt(t):
    t = torch.as_tensor(t).detach().to(torch.float64).contiguous()
    head = "%d %s" % (t.dim(), " ".join(str(s) for s in t.shape))
    vals = " ".join("%.17g" % v for v in t.reshape(-1).tolist())
    return head, vals


def write(case, tensors):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, case + ".txt")
    with open(path + ".tmp", "w") as f:
        for name, t in tensors.items():
            head, vals = fmt(t)
            f.write("%s %s\n%s\n" % (name, head, vals))
    os.replace(path + ".tmp", path)


def distances(q, p, kind):
    if kind == "sqeuclidean":
        return ((q[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    if kind == "euclidean":
        return ((q[:, None, :] - p[None, :, :]) ** 2).sum(-1).clamp_min(1e-12).sqrt()
    qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-8)
    pn = p / p.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return 1 - qn @ pn.t()


def case(name, support_labels, query_labels, dim, kind, seed):
    g = torch.Generator().manual_seed(seed)
    ns, nq = len(support_labels), len(query_labels)
    s = torch.randn(ns, dim, generator=g).to(torch.float32).to(torch.float64).requires_grad_(True)
    q = torch.randn(nq, dim, generator=g).to(torch.float32).to(torch.float64).requires_grad_(True)
    classes = sorted(set(support_labels))
    sl = torch.tensor(support_labels)
    protos = torch.stack([s[sl == c].mean(0) for c in classes])
    dist = distances(q, protos, kind)
    logp = F.log_softmax(-dist, dim=1)
    target = torch.tensor([classes.index(l) for l in query_labels])
    loss = F.nll_loss(logp, target)
    acc = (logp.argmax(1) == target).double().mean()
    loss.backward()
    write(name, {
        "support": s, "query": q,
        "support_labels": torch.tensor(support_labels, dtype=torch.float64),
        "query_labels": torch.tensor(query_labels, dtype=torch.float64),
        "prototypes": protos, "dist": dist, "logp": logp, "loss": loss, "accuracy": acc,
        "dsupport": s.grad, "dquery": q.grad,
    })


if __name__ == "__main__":
    # a 3-way 3-shot 2-query episode in class order, the three distances
    sl, ql = [1, 1, 1, 2, 2, 2, 3, 3, 3], [1, 1, 2, 2, 3, 3]
    for k, kind in enumerate(["sqeuclidean", "euclidean", "cosine"]):
        case("episode_" + kind, sl, ql, 8, kind, 10 + k)
    # shuffled, non-contiguous labels (7, 2, 5) with unequal shots: columns are 2, 5, 7
    case("shuffled", [7, 2, 5, 2, 7, 5, 5, 2], [5, 7, 2, 2, 7], 6, "sqeuclidean", 20)
    # a larger episode like the paper's (3-way, 3-shot, 6 queries, 16-d)
    case("paper", sl, [1] * 6 + [2] * 6 + [3] * 6, 16, "sqeuclidean", 30)
