#!/usr/bin/python3
"""PRNet-2D and instance-norm reference values from PyTorch, for spec/prnet_spec.lua.
Run: /usr/bin/python3 tools/make_fixtures_prnet.py (Debian's python3-torch). Seeded: running it
twice writes the same files.

Files under spec/fixtures/prnet/, in spec/helper.lua's text format (load_fixture): blocks of
    name ndim d1 ... dn
    v1 v2 ...
Inputs and weights are float32 values; references are computed in float64 from those exact
values, so a spec's tolerance measures our float32 error only.

  inorm_<case>.txt   F.instance_norm: x, [w, b,] gy, y = instance_norm(x), dx, [dw, db] of
                     sum(y * gy). The script first checks that nn.InstanceNorm2d's default
                     (affine False, track_running_stats False, eps 1e-5) is the per-(n, c)
                     normalisation with the biased variance, so the spec pins that semantics.
  prnet_<case>.txt   a tiny PRNet (the same network as csrc/core/models/prnet.c, restated
                     below with the same module names): its state_dict as "p.<name>", input x,
                     loss weights gz, gr; z, r = model(x) in train mode; loss = sum(z * gz) +
                     sum(r * gr); dx and "g.<name>" = d loss / d param for two parameters.
                     The batch-norm case adds "rs.<name>" (running stats after that forward)
                     and ze, re = model(x) in eval mode after it.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "fixtures", "prnet")


def fmt(t):
    t = t.detach().to(torch.float64).contiguous()
    head = "%d %s" % (t.dim(), " ".join(str(s) for s in t.shape))
    vals = " ".join("%.9g" % v for v in t.reshape(-1).tolist())
    return head, vals


def write(case, tensors):
    path = os.path.join(OUT, case + ".txt")
    with open(path + ".tmp", "w") as f:
        for name, t in tensors.items():
            head, vals = fmt(t)
            f.write("%s %s\n%s\n" % (name, head, vals))
    os.replace(path + ".tmp", path)


def f32(t):
    """float32 values as float64."""
    return t.to(torch.float32).to(torch.float64)


# ---- instance norm ----
def check_instance_norm_default():
    m = nn.InstanceNorm2d(3)
    assert not m.affine and not m.track_running_stats and m.eps == 1e-5
    assert len(list(m.parameters())) == 0 and len(list(m.buffers())) == 0
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    ref = (x - mean) / torch.sqrt(var + 1e-5)
    assert torch.allclose(m(x), ref, atol=1e-12), "InstanceNorm2d is not per-plane, biased"
    assert torch.allclose(F.instance_norm(x), ref, atol=1e-12)


def inorm_case(name, x, w=None, b=None, eps=1e-5):
    x = f32(x).requires_grad_(True)
    ins = {"x": x}
    if w is not None:
        w, b = f32(w).requires_grad_(True), f32(b).requires_grad_(True)
        ins.update(w=w, b=b)
    y = F.instance_norm(x, weight=w, bias=b, eps=eps)
    gy = f32(torch.randn(y.shape))
    (y * gy).sum().backward()
    out = dict(ins)
    out["gy"] = gy
    out["y"] = y
    for k, t in ins.items():
        out["d" + k] = t.grad
    write("inorm_" + name, out)


def instance_norm_cases():
    check_instance_norm_default()
    inorm_case("plain", torch.randn(2, 3, 5, 4) * 2 + 1)
    x = torch.randn(3, 2, 6, 6)
    x[:, 1] += 50.0  # a plane with mean 50 and variance 1: the numerically hard case
    inorm_case("mean50", x)
    inorm_case("affine", torch.randn(2, 3, 3, 7), torch.randn(3), torch.randn(3), eps=1e-3)


# ---- PRNet, restated ----
def norm_layer(kind, c):
    return nn.InstanceNorm2d(c) if kind == "instance" else nn.BatchNorm2d(c)


def block_name(i, what):
    return what if i == 0 else "%s%d" % (what, i + 1)


class Block(nn.Module):
    """k x [conv 3x3 pad 1 -> norm -> ReLU]; an "up" layer first in the decoder."""

    def __init__(self, cin, cout, k, norm, up=None):
        super().__init__()
        if up is not None:
            self.up = up
        self.k = k
        for i in range(k):
            setattr(self, block_name(i, "conv"), nn.Conv2d(cin if i == 0 else cout, cout, 3,
                                                           padding=1))
            setattr(self, block_name(i, "norm"), norm_layer(norm, cout))

    def forward(self, x):
        for i in range(self.k):
            x = getattr(self, block_name(i, "conv"))(x)
            x = F.relu(getattr(self, block_name(i, "norm"))(x))
        return x


class PRNet(nn.Module):
    def __init__(self, in_channels=1, base=16, depth=4, latent=2, patch=32, norm="instance",
                 up="bilinear", convs_per_level=1):
        super().__init__()
        b, D, k = base, depth, convs_per_level
        self.enc = nn.ModuleList()
        cin = in_channels
        for l in range(D):
            self.enc.append(Block(cin, b << l, k, norm))
            cin = b << l
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = Block(cin, b << D, k, norm)
        side = patch >> D
        self.fc1 = nn.Linear((b << D) * side * side, 8 * b)
        self.fc2 = nn.Linear(8 * b, 4 * b)
        self.fc3 = nn.Linear(4 * b, latent)
        self.dec = nn.ModuleList()
        for i in range(D):
            l = D - 1 - i
            cin, cout = b << (l + 1), b << l
            if up == "transpose":
                u, ccat = nn.ConvTranspose2d(cin, cout, 2, stride=2), 2 * cout
            else:
                u, ccat = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), cin + cout
            self.dec.append(Block(ccat, cout, k, norm, up=u))
        self.head = nn.Conv2d(b, in_channels, 1)

    def forward(self, x):
        skips = []
        for blk in self.enc:
            x = blk(x)
            skips.append(x)
            x = self.pool(x)
        h = self.bottleneck(x)
        z = self.fc3(F.relu(self.fc2(F.relu(self.fc1(h.flatten(1))))))
        for i, blk in enumerate(self.dec):
            h = blk.up(h)
            h = blk(torch.cat([h, skips[len(skips) - 1 - i]], 1))
        return z, torch.sigmoid(self.head(h))


def prnet_case(name, opts, n, grads, bn_stats=()):
    model = PRNet(**opts)
    with torch.no_grad():
        for p in model.parameters():  # a spread of weights a default init would give, float32
            p.copy_(f32(p))
        for mod in model.modules():   # non-trivial running stats, so eval differs from train
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(f32(torch.randn(mod.num_features) * 0.1))
                mod.running_var.copy_(f32(1 + torch.rand(mod.num_features)))
    sd0 = {k: v.clone() for k, v in model.state_dict().items()}
    model = model.double().train()
    x = f32(torch.rand(n, opts.get("in_channels", 1), opts["patch"], opts["patch"]))
    x.requires_grad_(True)
    z, r = model(x)
    gz, gr = f32(torch.randn(z.shape)), f32(torch.randn(r.shape))
    loss = (z * gz).sum() + (r * gr).sum()
    loss.backward()
    out = {"p." + k: v for k, v in sd0.items()}
    out.update(x=x, gz=gz, gr=gr, z=z, r=r, loss=loss.reshape(1), dx=x.grad)
    params = dict(model.named_parameters())
    for g in grads:
        out["g." + g] = params[g].grad
    sd = model.state_dict()
    for s in bn_stats:
        out["rs." + s] = sd[s]
    if bn_stats:
        model.eval()
        with torch.no_grad():
            ze, re = model(x)
        out.update(ze=ze, re=re)
    write("prnet_" + name, out)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(2024)
    instance_norm_cases()
    prnet_case("instance_bilinear",
               dict(in_channels=1, base=2, depth=2, latent=2, patch=8), 2,
               ["enc.0.conv.weight", "dec.0.conv.weight"])
    prnet_case("batch_transpose",
               dict(in_channels=2, base=2, depth=2, latent=3, patch=8, norm="batch",
                    up="transpose", convs_per_level=2), 3,
               ["enc.1.conv2.weight", "dec.1.up.weight"],
               bn_stats=["enc.0.norm.running_mean", "bottleneck.norm2.running_var",
                         "dec.1.norm2.num_batches_tracked"])
    print("wrote", len(os.listdir(OUT)), "fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
