"""Training and inference timings: n networks side by side in one model vs one at a time.

Synthetic spectra of the real size (n spectra x 100 points, 3 classes); times per epoch and
inference throughput. Run on CPU here; on a GPU machine with KERAS_BACKEND=jax as well.

    nice -n 10 .venv/bin/python benchmarks/bench_train.py --n 2000 --epochs 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xanesdb.ml.train import TrainConfig, fit_group, runtime_info


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000, help="training spectra per network")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--models", type=int, default=10)
    p.add_argument("--kinds", default="mlp,cnn")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((a.n, 100)).astype("float32")
    y = rng.integers(0, 3, a.n)
    energies = 0.5 * np.arange(100)
    info = runtime_info()
    print(f"backend {info['backend']} on {info['device']}; {a.n} spectra/network, batch 32, {a.epochs} epochs")
    print("| model | networks | mode | s/epoch (all networks) | s/epoch per network | inference spectra/s |")
    print("|---|---|---|---|---|---|")
    for kind in a.kinds.split(","):
        cfg = TrainConfig(kind=kind, epochs=a.epochs)
        sets = [rng.permutation(a.n) for _ in range(a.models)]
        t0 = time.perf_counter()
        model = fit_group(X, y, sets, energies, 3, cfg)
        side = (time.perf_counter() - t0) / a.epochs
        Xin = np.repeat(X[:, None], a.models, axis=1)
        model.predict(Xin[:64], verbose=0)
        t0 = time.perf_counter()
        model.predict(Xin, batch_size=1024, verbose=0)
        thr = a.n * a.models / (time.perf_counter() - t0)
        print(f"| {kind} | {a.models} | side by side | {side:.2f} | {side / a.models:.3f} | {thr:,.0f} |", flush=True)
        t0 = time.perf_counter()
        m1 = fit_group(X, y, sets[:1], energies, 3, cfg)
        one = (time.perf_counter() - t0) / a.epochs
        m1.predict(X[:64, None], verbose=0)
        t0 = time.perf_counter()
        m1.predict(X[:, None], batch_size=1024, verbose=0)
        thr1 = a.n / (time.perf_counter() - t0)
        print(f"| {kind} | 1 (x{a.models} sequentially: {one * a.models:.2f} s/epoch) | one at a time | {one:.2f} | {one:.3f} | {thr1:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
