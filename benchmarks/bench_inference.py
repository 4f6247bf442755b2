"""Inference throughput: spectra per second through one 10-network group model, old way vs new.

- old, as predict.py did it: every spectrum copied once per network on the host
  (``(n, 10, 100)``), then ``model.predict`` with Keras' default batch of 32 (the old
  ``_networks_probs``) and, to separate the two effects, with a batch of 1,024;
- new: :func:`xanesdb.ml.models.predict_networks` on :func:`~xanesdb.ml.models.inference_model`:
  ``(n, 100)`` in, the row read by every network inside the graph (standardisation folded into
  the MLP's first layer, the CNN's convolution as one depthwise convolution), steps of
  ``INFERENCE_BATCH``.

Untrained weights (random, with non-trivial standardisation statistics) time the same as trained
ones. The outputs of old and new are compared on every run. Goal (issue 19): >= 50,000 spectra/s
on 2 CPU cores; >= 1,000,000/s on a GPU.

    .venv/bin/python benchmarks/bench_inference.py [--sizes 1000,10000,100000] [--kinds mlp,cnn]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _rate(fn, n: int, repeats: int) -> float:
    fn()  # warm-up: tracing / compilation
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated numbers of spectra")
    p.add_argument("--kinds", default="mlp,cnn")
    p.add_argument("--networks", type=int, default=10)
    p.add_argument("--features", type=int, default=100)
    p.add_argument("--skip-batch32-above", type=int, default=100000,
                   help="leave the old batch-32 way out above this many spectra (slow)")
    a = p.parse_args()

    from xanesdb.ml.models import INFERENCE_BATCH, build_model, inference_model, predict_networks
    from xanesdb.ml.train import runtime_info

    info = runtime_info()
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in a.sizes.split(",")]
    X_all = rng.random((max(sizes), a.features)).astype("float32")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Keras {info['versions'].get('keras')} ({info['backend']}) on {info['device']}; {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at start; {a.networks} networks x {a.features} points; "
          f"new way in steps of {INFERENCE_BATCH}")  # fmt: skip
    print("| model | spectra | old: host copy, batch 32 | old: host copy, batch 1024 | new: in-graph | new / old(32) | max |diff| |")
    print("|---|---|---|---|---|---|---|")
    for kind in a.kinds.split(","):
        model = build_model(kind, a.features, 3, n_models=a.networks)
        model.get_layer("standardize").set_stats(rng.random((a.networks, a.features)),
                                                 0.5 + rng.random((a.networks, a.features)))  # fmt: skip
        inf = inference_model(model)
        k = a.networks
        for n in sizes:
            X = X_all[:n]
            repeats = 3 if n <= 10000 else 1

            def old(bs: int):
                return model.predict(np.repeat(X[:, None, :], k, axis=1), batch_size=bs, verbose=0)

            r32 = _rate(lambda: old(32), n, repeats) if n <= a.skip_batch32_above else float("nan")
            r1k = _rate(lambda: old(1024), n, repeats)
            rnew = _rate(lambda: predict_networks(inf, X), n, repeats)
            diff = float(np.abs(old(1024) - predict_networks(inf, X)).max())
            print(f"| {kind} | {n:,} | {r32:,.0f} | {r1k:,.0f} | {rnew:,.0f} | {rnew / r32:.1f}x | {diff:.1e} |", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} at the end (other processes share these CPUs)")


if __name__ == "__main__":
    main()
