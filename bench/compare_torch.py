#!/usr/bin/python3
"""The workloads of bench/workloads.lua in PyTorch (never a dependency of build or tests).

Usage: /usr/bin/python3 bench/compare_torch.py WORKLOAD [REPS]
Prints "RESULT name ms_per_unit peak_rss_kb" (or "MISSING name reason"). torchvision is not
needed: ResNet-18 comes from tools/make_fixtures_models.py (torchvision's architecture and names
restated) and PRNet from tools/make_fixtures_prnet.py (the network our specs are checked
against). Each workload is the same work as its namesake in bench/workloads.lua: same shapes,
same loss, same optimizer settings, flush-to-zero on."""
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from make_fixtures_models import ResNet18  # noqa: E402
from make_fixtures_prnet import PRNet  # noqa: E402

SUPPORT = torch.arange(3).repeat_interleave(3)  # class order, as bench/workloads.lua
QUERY = torch.arange(3).repeat_interleave(6)


def vmhwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# BENCH_CLOCK=cpu: process CPU time instead of the wall clock (as bench/workloads.lua)
clock = time.process_time if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter


def time_median(reps, fn):
    times = []
    for r in range(reps + 1):
        t0 = clock()
        fn()
        t1 = clock()
        if r > 0:
            times.append((t1 - t0) * 1000)
    return statistics.median(times)


def protonet_loss(emb):
    """fs.protonet.loss with distance="sqeuclidean": class means, -squared distance, NLL."""
    protos = emb[:9].view(3, 3, -1).mean(1)
    logits = -torch.cdist(emb[9:], protos).pow(2)
    return F.cross_entropy(logits, QUERY), logits


# ---- ResNet-18 at 64x64, 3 channels ----
def resnet64_train(threads):
    def run(reps):
        torch.set_num_threads(threads)
        model = ResNet18(3, None).train()
        x = torch.rand(27, 3, 64, 64)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            protonet_loss(model(x))[0].backward()
            opt.step()
        return time_median(reps, step)
    return run


def resnet64_infer(threads, batch):
    def run(reps):
        torch.set_num_threads(threads)
        model = ResNet18(3, None).eval()
        x = torch.rand(batch, 3, 64, 64)
        with torch.no_grad():
            return time_median(reps, lambda: model(x))
    return run


# ---- ProtoNet as make demo runs it ----
def proto_episode(threads):
    def run(reps):
        torch.set_num_threads(threads)
        model = ResNet18(1, None).train()
        x = torch.rand(27, 1, 32, 32)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            loss, _ = protonet_loss(model(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        return time_median(reps, step)
    return run


def proto_eval1000(reps, episodes=1000, cached=False):
    """fs.protonet.evaluate's work: per episode draw 3 + 6 of each class's 20 samples, stack,
    embed in eval mode without autograd, prototypes, -squared distances, argmax, accuracy.
    cached: every sample embedded once first, the episodes scored on those rows (what
    fs.protonet.evaluate does by default, cache=true)."""
    torch.set_num_threads(2)
    model = ResNet18(1, None).eval()
    g = torch.Generator().manual_seed(2)
    pools = [[torch.rand(1, 32, 32, generator=g) for _ in range(20)] for _ in range(3)]

    def evaluate(n, seed):
        gen = torch.Generator().manual_seed(seed)
        accs = []
        with torch.no_grad():
            if cached:
                rows = model(torch.stack([x for pool in pools for x in pool]))
            for _ in range(n):
                sup, qry = [], []
                for c, pool in enumerate(pools):
                    perm = torch.randperm(len(pool), generator=gen)[:9].tolist()
                    if cached:
                        sup += [c * len(pool) + i for i in perm[:3]]
                        qry += [c * len(pool) + i for i in perm[3:]]
                    else:
                        sup += [pool[i] for i in perm[:3]]
                        qry += [pool[i] for i in perm[3:]]
                if cached:
                    emb = rows[torch.tensor(sup + qry)]
                else:
                    emb = model(torch.stack(sup + qry))
                _, logits = protonet_loss(emb)
                accs.append((logits.argmax(1) == QUERY).float().mean().item())
        return sum(accs) / len(accs)

    evaluate(10, 7)  # warm-up
    times = []
    for _ in range(max(1, reps // 10)):
        t0 = clock()
        evaluate(episodes, 7)
        times.append((clock() - t0) * 1000 / episodes)
    return statistics.median(times)


# ---- PRNet ----
def prnet_model(patch):
    return PRNet(in_channels=1, base=16, depth=4, latent=2, patch=patch, norm="instance",
                 up="bilinear", convs_per_level=1)


def prnet_step(patch, threads):
    def run(reps):
        torch.set_num_threads(threads)
        model = prnet_model(patch).train()
        x0, x1 = torch.rand(32, 1, patch, patch), torch.rand(32, 1, patch, patch)
        offset = torch.randn(32, 2) * 0.3
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)

        def step():
            z0, rec0 = model(x0)
            z1, rec1 = model(x1)
            l_dis = F.mse_loss(torch.tanh(z0 - z1), offset)
            l_rec = F.mse_loss(rec0, x0) + F.mse_loss(rec1, x1)
            loss = l_dis + l_rec
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        return time_median(reps, step)
    return run


class Encoder(torch.nn.Module):
    """PRNet's encode path (the latent alone, no decoder work), as model:encode in fewshot."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        for blk in n.enc:
            x = n.pool(blk(x))
        h = n.bottleneck(x)
        return n.fc3(F.relu(n.fc2(F.relu(n.fc1(h.flatten(1))))))


PATCH, SAMPLES, LANDMARKS, R_COARSE, R_FINE, PIXEL_MM = 32, 15, 6, 320, 48, 6.4


def localize(fine_per_landmark):
    def run(reps):
        torch.set_num_threads(1)
        coarse, fine = Encoder(prnet_model(PATCH)).eval(), Encoder(prnet_model(PATCH)).eval()
        side = 64
        g = torch.Generator().manual_seed(3)
        padded = F.pad(torch.rand(1, 1, side, side, generator=g), [PATCH // 2] * 4)
        zs = (torch.rand(LANDMARKS, 2, generator=g) - 0.5).tolist()

        def uni():
            return torch.rand(1, generator=g).item()

        def cut(centres):
            return torch.cat([padded[:, :, r:r + PATCH, c:c + PATCH] for r, c in centres])

        def clamp(v):
            return max(0, min(side - 1, v))

        def estimate(centres, z, which, s, r):
            er = sum(centres[i][0] + r * math.tanh(s[0] - z[i][0]) / PIXEL_MM for i in which)
            ec = sum(centres[i][1] + r * math.tanh(s[1] - z[i][1]) / PIXEL_MM for i in which)
            return er / len(which), ec / len(which)

        def query():
            centres = [(int(uni() * side), int(uni() * side)) for _ in range(SAMPLES)]
            zq = coarse(cut(centres)).tolist()
            est = [tuple(clamp(v) for v in estimate(centres, zq, range(SAMPLES), zs[l], R_COARSE))
                   for l in range(LANDMARKS)]

            def jitter(l):
                return (clamp(int(est[l][0] + uni() * 13 - 6)), clamp(int(est[l][1] + uni() * 13 - 6)))
            out = []
            if fine_per_landmark:
                for l in range(LANDMARKS):
                    fc = [jitter(l) for _ in range(fine_per_landmark)]
                    zf = fine(cut(fc)).tolist()
                    out.append(estimate(fc, zf, range(len(fc)), zs[l], R_FINE))
            else:
                fc = [jitter(i % LANDMARKS) for i in range(SAMPLES)]
                zf = fine(cut(fc)).tolist()
                for l in range(LANDMARKS):
                    out.append(estimate(fc, zf, range(l, SAMPLES, LANDMARKS), zs[l], R_FINE))
            assert len(out) == LANDMARKS

        with torch.no_grad():
            return time_median(reps * 5, query)
    return run


WORKLOADS = {
    "resnet64_train2": resnet64_train(2),
    "resnet64_train1": resnet64_train(1),
    "resnet64_infer27": resnet64_infer(2, 27),
    "resnet64_lat1": resnet64_infer(1, 1),
    "proto_episode": proto_episode(2),
    "proto_episode1": proto_episode(1),
    "proto_eval1000": proto_eval1000,
    "proto_eval1000_cached": lambda reps: proto_eval1000(reps, cached=True),
    "prnet32_t2": prnet_step(32, 2),
    "prnet32_t1": prnet_step(32, 1),
    "prnet64_t2": prnet_step(64, 2),
    "prnet64_t1": prnet_step(64, 1),
    "localize": localize(None),
    "localize_per_landmark": localize(SAMPLES),
}


def main():
    name = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    if name not in WORKLOADS:
        print("MISSING %s no PyTorch form" % name)
        return
    torch.set_flush_denormal(True)
    torch.manual_seed(1)
    ms = WORKLOADS[name](reps)
    print("RESULT %s %.3f %d" % (name, ms, vmhwm_kb()))


if __name__ == "__main__":
    main()
