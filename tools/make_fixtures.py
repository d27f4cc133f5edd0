#!/usr/bin/python3
"""Writes the layer fixtures under spec/fixtures/layers/ (run with Debian's /usr/bin/python3,
which has torch). Seeded: running it twice writes the same files.

Each case is one text file read by spec/helper.lua's load_fixture: blocks of
    name ndim d1 ... dn
    v1 v2 ...
Inputs are float32 values; the reference outputs and gradients are computed in float64 from
those exact values, so a spec's tolerance measures our float32 error only. `gy` is the
upstream gradient: the gradients stored are those of sum(y * gy). Labels are stored 1-based.

Usage: /usr/bin/python3 tools/make_fixtures.py
"""
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "fixtures", "layers")


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


def rnd(*shape, scale=1.0, shift=0.0):
    """float32 values, returned as float64 leaves requiring grad."""
    t = (torch.randn(*shape) * scale + shift).to(torch.float32)
    return t.to(torch.float64).requires_grad_(True)


def run(case, fn, inputs, extra=None):
    """y = fn(*inputs); grads of sum(y * gy) for every input that requires grad."""
    y = fn(*inputs)
    gy = torch.randn(y.shape).to(torch.float32).to(torch.float64)
    (y * gy).sum().backward()
    out = {}
    names = "xwbcdefg"
    for i, t in enumerate(inputs):
        if t is None:
            continue
        out[names[i]] = t
    out["gy"] = gy
    out["y"] = y
    for i, t in enumerate(inputs):
        if t is not None and t.requires_grad:
            out["d" + names[i]] = t.grad
    if extra:
        out.update(extra)
    write(case, out)


def conv_cases():
    cases = [
        # name, x shape, w shape, bias, kwargs
        ("conv_basic", (2, 3, 7, 9), (4, 3, 3, 3), True, dict(stride=1, padding=1)),
        ("conv_stride_pad", (2, 3, 9, 7), (5, 3, 3, 2), True, dict(stride=2, padding=(1, 2))),
        ("conv_dilation", (1, 2, 8, 8), (3, 2, 3, 3), False,
         dict(stride=(1, 2), padding=2, dilation=2)),
        ("conv_groups", (2, 4, 6, 5), (6, 2, 3, 3), True, dict(stride=1, padding=1, groups=2)),
        ("conv_1x1_single", (1, 8, 5, 5), (6, 8, 1, 1), True, {}),
        ("conv_1x1_batched", (2, 4, 16, 16), (3, 4, 1, 1), True, {}),
        ("conv_1x1_stride2", (2, 4, 7, 7), (6, 4, 1, 1), False, dict(stride=2)),
        ("conv_7x7", (2, 3, 13, 13), (4, 3, 7, 7), False, dict(stride=2, padding=3)),
        # 4 images, groups: each of 2 threads owns 2 images (conv.c thread path)
        ("conv_per_image", (4, 4, 14, 14), (4, 2, 3, 3), True, dict(padding=1, groups=2)),
    ]
    for name, xs, ws, bias, kw in cases:
        x, w = rnd(*xs), rnd(*ws, scale=0.3)
        b = rnd(ws[0]) if bias else None
        run(name, lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b])

    tcases = [
        ("convt_stride2", (2, 4, 5, 5), (4, 3, 3, 3), True,
         dict(stride=2, padding=1, output_padding=1)),
        ("convt_plain", (1, 2, 4, 6), (2, 3, 2, 2), False, dict(stride=2)),
        ("convt_groups_dil", (2, 4, 3, 4), (4, 2, 3, 3), True,
         dict(stride=1, padding=1, dilation=2, groups=2)),
    ]
    for name, xs, ws, bias, kw in tcases:
        x, w = rnd(*xs), rnd(*ws, scale=0.3)
        b = rnd(ws[1] * kw.get("groups", 1)) if bias else None
        run(name, lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), [x, w, b])


def conv_direct_cases():
    """Added after the others with their own seed, so that the earlier files stay the same."""
    torch.manual_seed(4321)
    cases = [
        # stride 1 without im2col (conv_direct.c): 11 channels (a partial block of 8), a
        # masked last vector (P = 72), 4x4 images grouped 3 at a time, one image whose output
        # channels the threads split, a 5x5 kernel with unequal padding, a 1x3 kernel
        ("conv_direct_wide", (3, 5, 8, 16), (11, 5, 3, 3), True, dict(padding=1)),
        ("conv_direct_small", (5, 6, 4, 4), (9, 6, 3, 3), True, dict(padding=1)),
        ("conv_direct_one", (1, 4, 12, 12), (20, 4, 5, 5), False, dict(padding=(2, 1))),
        ("conv_direct_rect", (2, 3, 9, 8), (10, 3, 1, 3), True, dict(padding=(0, 1))),
    ]
    for name, xs, ws, bias, kw in cases:
        x, w = rnd(*xs), rnd(*ws, scale=0.3)
        b = rnd(ws[0]) if bias else None
        run(name, lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b])
    # conv_transpose2d with stride 1: its forward is conv2d's data-gradient
    x, w, b = rnd(2, 6, 8, 8), rnd(6, 5, 3, 3, scale=0.3), rnd(5)
    run("convt_direct", lambda x, w, b: F.conv_transpose2d(x, w, b, padding=1), [x, w, b])
    # strided forwards through one shifted copy per row phase: 3x3/2, ResNet's 7x7/2 stem,
    # a 1x1/2 downsample (weight gradients by the tile kernel)
    strided = [
        ("conv_direct_s2", (2, 3, 20, 20), (10, 3, 3, 3), True, dict(stride=2, padding=1)),
        ("conv_direct_stem", (1, 3, 32, 32), (8, 3, 7, 7), False, dict(stride=2, padding=3)),
        ("conv_direct_ds", (2, 8, 16, 16), (6, 8, 1, 1), False, dict(stride=2)),
    ]
    for name, xs, ws, bias, kw in strided:
        x, w = rnd(*xs), rnd(*ws, scale=0.3)
        b = rnd(ws[0]) if bias else None
        run(name, lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b])


def conv_padded_cases():
    """conv_direct.c's padded layout (stride 1, output width a multiple of the vector: one
    zero-padded plane per channel): a 3x5 kernel, a 5x3 kernel over 32 columns, no padding,
    and a padding of 2 around a 3x3 kernel. Seeded on its own."""
    torch.manual_seed(8765)
    cases = [
        ("conv_padded_k5", (2, 3, 5, 16), (4, 3, 3, 5), False, dict(padding=(1, 2))),
        ("conv_padded_wide", (2, 3, 6, 32), (10, 3, 5, 3), True, dict(padding=(2, 1))),
        ("conv_padded_pad0", (1, 4, 6, 18), (3, 4, 3, 3), True, dict(padding=0)),
        ("conv_padded_pad2", (2, 2, 4, 14), (5, 2, 3, 3), False, dict(padding=2)),
    ]
    for name, xs, ws, bias, kw in cases:
        x, w = rnd(*xs), rnd(*ws, scale=0.3)
        b = rnd(ws[0]) if bias else None
        run(name, lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b])


def conv_dw_cases():
    """The weight gradient with vectors along the output channels (conv_direct.c), own seed:
    70 output channels (a block of 64 and one of 16, 10 of them padding), 63 taps (a partial
    tile of 3), 8x8 outputs (two images per pass of 128 pixels, then one); then two
    data-gradients."""
    torch.manual_seed(4322)
    x, w, b = rnd(5, 7, 8, 8), rnd(70, 7, 3, 3, scale=0.3), rnd(70)
    run("conv_direct_dw", lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b])
    # data-gradients on full blocks of 8 input channels, one with a single output channel
    # (the driver's taps are then the kernel's alone)
    x, w = rnd(3, 16, 10, 12), rnd(9, 16, 3, 3, scale=0.3)
    run("conv_direct_dx", lambda x, w: F.conv2d(x, w, padding=1), [x, w])
    x, w = rnd(2, 8, 9, 9), rnd(1, 8, 3, 3, scale=0.3)
    run("conv_direct_dx1", lambda x, w: F.conv2d(x, w, padding=1), [x, w])
    # weights large next to the columns (ResNet's layer4 at 64x64): at 2 threads the forward
    # splits the output channels (100: blocks of 16 and a partial one) over a shared unfolding,
    # the backward splits the input channels
    x, w, b = rnd(3, 64, 3, 3), rnd(100, 64, 3, 3, scale=0.1), rnd(100)
    run("conv_weight_heavy", lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b])
    # a batch whose whole output fits one vector (batch-1 latency at layer4): the direct
    # forward with mostly idle lanes, weights in place (24 channels) or packed (7)
    x, w, b = rnd(1, 16, 2, 2), rnd(24, 16, 3, 3, scale=0.2), rnd(24)
    run("conv_tiny_batch", lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b])
    x, w = rnd(2, 5, 2, 3), rnd(7, 5, 3, 3, scale=0.3)
    run("conv_tiny_packed", lambda x, w: F.conv2d(x, w, padding=1), [x, w])


def linear_cases():
    run("linear_2d", F.linear, [rnd(5, 7), rnd(3, 7), rnd(3)])
    run("linear_3d", F.linear, [rnd(2, 3, 7), rnd(4, 7), rnd(4)])
    run("linear_1d_nobias", lambda x, w: F.linear(x, w), [rnd(7), rnd(3, 7)])


def bn_cases():
    # training, one channel with mean 50 / variance 1: the numerically hard case
    x = torch.randn(4, 3, 5, 5)
    x[:, 1] = x[:, 1] + 50.0
    x[:, 2] = x[:, 2] * 3.0 - 2.0
    x = x.to(torch.float32).to(torch.float64).requires_grad_(True)
    w, b = rnd(3), rnd(3)
    rm0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    rv0 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    rm, rv = rm0.clone(), rv0.clone()
    run("bn_train", lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1,
                                                  eps=1e-5),
        [x, w, b], extra={"rm0": rm0, "rv0": rv0, "rm": rm, "rv": rv})
    # eval with given running stats
    rm = torch.tensor([0.3, 49.5, -1.0], dtype=torch.float64)
    rv = torch.tensor([0.8, 1.5, 9.0], dtype=torch.float64)
    x2 = torch.randn(2, 3, 4, 3)
    x2[:, 1] += 50.0
    x2 = x2.to(torch.float32).to(torch.float64).requires_grad_(True)
    run("bn_eval", lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5),
        [x2, rnd(3), rnd(3)], extra={"rm": rm, "rv": rv})
    # (N, C) input, no affine, momentum 0.3
    rm0 = torch.zeros(4, dtype=torch.float64)
    rv0 = torch.ones(4, dtype=torch.float64)
    rm, rv = rm0.clone(), rv0.clone()
    run("bn_2d_noaffine", lambda x: F.batch_norm(x, rm, rv, None, None, training=True,
                                                  momentum=0.3, eps=1e-3),
        [rnd(6, 4, scale=2.0, shift=1.0)], extra={"rm0": rm0, "rv0": rv0, "rm": rm, "rv": rv})


def pool_cases():
    run("maxpool_resnet", lambda x: F.max_pool2d(x, 3, 2, 1), [rnd(2, 3, 9, 9)])
    run("maxpool_k2", lambda x: F.max_pool2d(x, 2), [rnd(1, 2, 6, 7)])
    run("maxpool_ceil", lambda x: F.max_pool2d(x, 3, 2, 0, ceil_mode=True), [rnd(1, 2, 8, 8)])
    run("avgpool_pad", lambda x: F.avg_pool2d(x, 3, 2, 1), [rnd(2, 2, 7, 8)])
    run("avgpool_nopadcount", lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
        [rnd(2, 2, 7, 8)])
    run("avgpool_k2", lambda x: F.avg_pool2d(x, (2, 3)), [rnd(1, 3, 6, 7)])
    run("avgpool_ceil", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), [rnd(1, 2, 8, 8)])
    run("adaptive_1x1", lambda x: F.adaptive_avg_pool2d(x, (1, 1)), [rnd(2, 3, 7, 5)])
    run("adaptive_3x2", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), [rnd(2, 3, 7, 5)])


def interp_cases():
    run("interp_nearest2", lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
        [rnd(1, 2, 3, 5)])
    run("interp_bilinear2", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear",
                                                    align_corners=False), [rnd(2, 2, 4, 5)])
    run("interp_nearest3", lambda x: F.interpolate(x, scale_factor=3, mode="nearest"),
        [rnd(1, 1, 2, 3)])
    run("interp_bilinear1_5", lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear",
                                                      align_corners=False), [rnd(1, 2, 4, 6)])


def interp_size_cases():
    """F.interpolate(size=...): the source step is in/out (not 1/scale). Seeded on its own, so
    the files written before it stay byte-identical."""
    run("interp_size_nearest", lambda x: F.interpolate(x, size=(7, 5), mode="nearest"),
        [rnd(1, 2, 4, 6)])
    run("interp_size_nearest_up", lambda x: F.interpolate(x, size=(10, 10), mode="nearest"),
        [rnd(1, 1, 3, 7)])
    run("interp_size_bilinear", lambda x: F.interpolate(x, size=(9, 7), mode="bilinear",
                                                        align_corners=False), [rnd(2, 2, 5, 6)])
    run("interp_size_bilinear_down", lambda x: F.interpolate(x, size=(3, 4), mode="bilinear",
                                                             align_corners=False),
        [rnd(1, 1, 8, 9)])


def affine_cases():
    """F.affine: affine_grid + grid_sample (align_corners=False, zeros padding), the gradient
    to the image only. theta is stored as "t" (2, 3). Seeded on its own."""
    import math

    def rot(deg, scale=1.0, tx=0.0, ty=0.0):
        a = math.radians(deg)
        return torch.tensor([[math.cos(a) * scale, -math.sin(a) * scale, tx],
                             [math.sin(a) * scale, math.cos(a) * scale, ty]], dtype=torch.float64)

    cases = [
        ("affine_rot20", (2, 2, 7, 9), rot(20), "bilinear"),
        ("affine_zoom_shift", (1, 3, 8, 8), rot(-7, 0.8, 0.15, -0.3), "bilinear"),
        ("affine_far", (1, 1, 5, 6), rot(0, 1.0, 1.7, 0.4), "bilinear"),
        ("affine_nearest", (1, 2, 6, 7), rot(13, 1.1, 0.05, 0.02), "nearest"),
    ]
    for name, shape, theta, mode in cases:
        def fn(x, theta=theta, mode=mode):
            n = x.shape[0]
            grid = F.affine_grid(theta.unsqueeze(0).expand(n, 2, 3), list(x.shape),
                                 align_corners=False)
            return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
        run(name, fn, [rnd(*shape)], extra={"t": theta})


def softmax_cases():
    run("softmax_last", lambda x: F.softmax(x, dim=1), [rnd(3, 5, scale=3.0)])
    run("softmax_mid", lambda x: F.softmax(x, dim=1), [rnd(2, 4, 3, scale=3.0)])
    run("log_softmax_last", lambda x: F.log_softmax(x, dim=1), [rnd(3, 5, scale=3.0)])
    run("log_softmax_mid", lambda x: F.log_softmax(x, dim=1), [rnd(2, 4, 3, scale=3.0)])
    run("log_softmax_big", lambda x: F.log_softmax(x, dim=1), [rnd(2, 6, scale=1.0, shift=80.0)])


def loss_cases():
    for red in ("mean", "sum", "none"):
        labels = torch.randint(0, 4, (6,))
        run("ce_" + red, lambda x: F.cross_entropy(x, labels, reduction=red),
            [rnd(6, 4, scale=2.0)], extra={"labels": labels + 1})
    labels = torch.randint(0, 3, (2, 4, 4))
    run("ce_spatial", lambda x: F.cross_entropy(x, labels), [rnd(2, 3, 4, 4)],
        extra={"labels": labels + 1})
    labels = torch.randint(0, 5, (4,))
    run("nll_mean", lambda x: F.nll_loss(F.log_softmax(x, 1), labels), [rnd(4, 5)],
        extra={"labels": labels + 1})
    for red in ("mean", "sum", "none"):
        run("mse_" + red, lambda a, b: F.mse_loss(a, b, reduction=red), [rnd(4, 5), rnd(4, 5)])
        run("l1_" + red, lambda a, b: F.l1_loss(a, b, reduction=red), [rnd(4, 5), rnd(4, 5)])
        run("smoothl1_" + red, lambda a, b: F.smooth_l1_loss(a, b, reduction=red),
            [rnd(4, 5, scale=1.5), rnd(4, 5)])
    run("smoothl1_beta", lambda a, b: F.smooth_l1_loss(a, b, beta=0.5),
        [rnd(4, 5), rnd(4, 5)], extra={"beta": torch.tensor(0.5)})


def cdist_cases():
    a, b = rnd(6, 5), rnd(3, 5)
    run("cdist2_basic", lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), [a, b])
    a = rnd(4, 8, shift=10.0)
    b = torch.cat([a[1:2].detach(), rnd(2, 8, shift=10.0).detach()]).requires_grad_(True)
    run("cdist2_coincident", lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), [a, b])


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)
    for fn in (conv_cases, linear_cases, bn_cases, pool_cases, interp_cases, softmax_cases,
               loss_cases, cdist_cases, conv_direct_cases, conv_dw_cases):
        fn()
    torch.manual_seed(4321)
    interp_size_cases()
    torch.manual_seed(5678)
    affine_cases()
    conv_padded_cases()
    print("wrote", len(os.listdir(OUT)), "fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
