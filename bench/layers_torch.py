#!/usr/bin/python3
"""PyTorch's times for bench/layers.lua's shapes (conv2d forward / backward, batch 27).
Usage: /usr/bin/python3 bench/layers_torch.py [threads] [reps] [dw|prnet32|prnet64]
("dw": no input needs a gradient, so backward is the weight gradient alone; prnet32/64: PRNet's
shapes, as bench/layers.lua)"""
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
dw_only = len(sys.argv) > 3 and sys.argv[3] == "dw"
prnet = int(sys.argv[3][5:]) if len(sys.argv) > 3 and sys.argv[3].startswith("prnet") else None
torch.set_num_threads(threads)
N = 27
shapes = [
    ("conv1 7x7/2   3->64   64", 1, 3, 64, 64, 7, 2, 3),
    ("layer1 3x3   64->64   16", 4, 64, 16, 64, 3, 1, 1),
    ("layer2 3x3/2 64->128  16", 1, 64, 16, 128, 3, 2, 1),
    ("layer2 3x3  128->128   8", 3, 128, 8, 128, 3, 1, 1),
    ("layer2 ds1x1/2 64->128 16", 1, 64, 16, 128, 1, 2, 0),
    ("layer3 3x3/2 128->256  8", 1, 128, 8, 256, 3, 2, 1),
    ("layer3 3x3  256->256   4", 3, 256, 4, 256, 3, 1, 1),
    ("layer3 ds1x1/2 128->256 8", 1, 128, 8, 256, 1, 2, 0),
    ("layer4 3x3/2 256->512  4", 1, 256, 4, 512, 3, 2, 1),
    ("layer4 3x3  512->512   2", 3, 512, 2, 512, 3, 1, 1),
    ("layer4 ds1x1/2 256->512 4", 1, 256, 4, 512, 1, 2, 0),
]
if prnet:
    p = prnet
    N = 64
    shapes = [
        ("enc0 3x3   1->16   %d" % p, 1, 1, p, 16, 3, 1, 1),
        ("enc1 3x3  16->32   %d" % (p // 2), 1, 16, p // 2, 32, 3, 1, 1),
        ("enc2 3x3  32->64   %d" % (p // 4), 1, 32, p // 4, 64, 3, 1, 1),
        ("enc3 3x3  64->128  %d" % (p // 8), 1, 64, p // 8, 128, 3, 1, 1),
        ("bott 3x3 128->256  %d" % (p // 16), 1, 128, p // 16, 256, 3, 1, 1),
        ("dec0 3x3 384->128  %d" % (p // 8), 1, 384, p // 8, 128, 3, 1, 1),
        ("dec1 3x3 192->64   %d" % (p // 4), 1, 192, p // 4, 64, 3, 1, 1),
        ("dec2 3x3  96->32   %d" % (p // 2), 1, 96, p // 2, 32, 3, 1, 1),
        ("dec3 3x3  48->16   %d" % p, 1, 48, p, 16, 3, 1, 1),
        ("head 1x1  16->1    %d" % p, 1, 16, p, 1, 1, 1, 0),
    ]
torch.set_flush_denormal(True)
print("torch %s conv2d, batch %d, %d thread(s), median of %d runs" % (torch.__version__, N, threads, reps))
print("%-27s %5s %9s %9s %9s" % ("shape", "count", "fwd ms", "bwd ms", "total ms"))
sf = sb = 0.0
for name, count, C, H, O, k, s, p in shapes:
    x = torch.randn(N, C, H, H, requires_grad=(C not in (1, 3) and not dw_only))
    w = torch.randn(O, C, k, k, requires_grad=True)
    tf, tb = [], []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        y = F.conv2d(x, w, None, s, p)
        t1 = time.perf_counter()
        gy = torch.ones_like(y)
        t2 = time.perf_counter()
        y.backward(gy)
        t3 = time.perf_counter()
        if r:
            tf.append((t1 - t0) * 1e3)
            tb.append((t3 - t2) * 1e3)
        x.grad = None
        w.grad = None
    mf, mb = sorted(tf)[len(tf) // 2], sorted(tb)[len(tb) // 2]
    sf += count * mf
    sb += count * mb
    print("%-27s %5d %9.2f %9.2f %9.2f" % (name, count, mf, mb, mf + mb))
print("%-27s %5s %9.2f %9.2f %9.2f" % ("ResNet-18 convs (weighted)", "", sf, sb, sf + sb))
