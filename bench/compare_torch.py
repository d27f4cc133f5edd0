#!/usr/bin/python3
"""The workloads of bench/run.lua in PyTorch (never a dependency of build or tests).

Usage: /usr/bin/python3 bench/compare_torch.py WORKLOAD [REPS]
Prints "RESULT name median_ms peak_rss_kb". torchvision is not needed: ResNet-18 comes from
tools/make_fixtures_models.py (torchvision's architecture and names restated)."""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from make_fixtures_models import ResNet18  # noqa: E402

WORKLOADS = {  # threads, batch, train
    "train2": (2, 27, True),
    "train1": (1, 27, True),
    "infer27": (2, 27, False),
    "lat1": (1, 1, False),
}


def vmhwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    name = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    threads, batch, train = WORKLOADS[name]
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = ResNet18(3, None)
    x = torch.randn(batch, 3, 64, 64)
    times = []
    if train:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        labels = torch.arange(3).repeat_interleave(6)
        model.train()
        for r in range(reps + 1):
            t0 = time.perf_counter()
            opt.zero_grad()
            emb = model(x)
            protos = emb[:9].view(3, 3, 512).mean(1)
            query = emb[9:]
            logits = -torch.cdist(query, protos).pow(2)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            opt.step()
            t1 = time.perf_counter()
            if r > 0:
                times.append((t1 - t0) * 1000)
    else:
        model.eval()
        with torch.no_grad():
            for r in range(reps + 1):
                t0 = time.perf_counter()
                model(x)
                t1 = time.perf_counter()
                if r > 0:
                    times.append((t1 - t0) * 1000)
    print("RESULT %s %.3f %d" % (name, statistics.median(times), vmhwm_kb()))


if __name__ == "__main__":
    main()
