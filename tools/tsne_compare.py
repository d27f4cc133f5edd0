#!/usr/bin/python3
"""tsne_compare.py - the KL divergence fs.tsne reaches against scikit-learn's exact t-SNE on the
same input (Debian's python3-sklearn; run with the system python3 from the repo root after
`make`). Prints one line per data set: N, D, and each implementation's final KL(P || Q) over a
few seeds. Not run by `make test`: a check of the optimiser's quality, by hand.

    /usr/bin/python3 tools/tsne_compare.py
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.manifold import TSNE

LUA = """
local fs = require "fewshot"
local x = fs.io.load_npy(arg[1])
local out = {}
for s = 1, tonumber(arg[2]) do
  local _, kl = fs.tsne(x, {seed = s, perplexity = tonumber(arg[3]), learning_rate = tonumber(arg[4])})
  out[#out + 1] = ("%.5f"):format(kl)
end
print(table.concat(out, " "))
"""


def blobs(k, m, d, rng, spread=10.0):
    centres = np.eye(k, d) * spread
    return np.concatenate([c + rng.standard_normal((m, d)) for c in centres]).astype(np.float32)


def fewshot_kl(x, seeds, perplexity, lr):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        np.save(path, x)
        env = dict(os.environ, LUA_PATH="./lua/?.lua;./lua/?/init.lua;;", LUA_CPATH="./?.so;;")
        out = subprocess.run(["lua5.4", "-", path, str(seeds), str(perplexity), str(lr)],
                             input=LUA, capture_output=True, text=True, env=env, check=True)
        return [float(v) for v in out.stdout.split()]


def sklearn_kl(x, seeds, perplexity, lr):
    return [TSNE(method="exact", init="random", perplexity=perplexity, learning_rate=lr,
                 early_exaggeration=12.0, n_iter=1000, random_state=s).fit(x).kl_divergence_
            for s in range(seeds)]


def main():
    rng = np.random.default_rng(0)
    cases = [("3 blobs 90x10", blobs(3, 30, 10, rng), 30.0),
             ("5 blobs 300x20", blobs(5, 60, 20, rng, spread=4.0), 30.0),
             ("gaussian 200x8", rng.standard_normal((200, 8)).astype(np.float32), 20.0)]
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for name, x, perp in cases:
        lr = max(x.shape[0] / 12.0 / 4.0, 50.0)  # both sides: sklearn's "auto"
        a, b = fewshot_kl(x, seeds, perp, lr), sklearn_kl(x, seeds, perp, lr)
        print(f"{name:16s} perplexity {perp:4.0f} lr {lr:5.1f}  fewshot KL "
              f"{' '.join(f'{v:.4f}' for v in a)}  sklearn KL {' '.join(f'{v:.4f}' for v in b)}")


if __name__ == "__main__":
    main()
