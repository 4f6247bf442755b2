"""Benchmark of the blocked near-duplicate search (``xanesdb.jobs.spectra.dedup``).

Spectra are made from the real OmniXAS Cu K-edge FEFF9 spectra in ``../shared/data`` (standardised
onto their 100-point grid): each synthetic spectrum mixes two real ones (weight of the second
uniform in [0, 0.5]), shifts the mixture by a uniform -2..+2 eV, rescales it to max 1, and one in
ten is instead a noisy copy (sigma 0.004) of an earlier synthetic spectrum, so the set holds
realistic near-duplicates as well as distinct spectra. The smallest size is also checked against
the sequential definition (``find_duplicates_bruteforce``).

Run::

    .venv/bin/python benchmarks/bench_dedup.py            # 10k, 30k, 100k
    .venv/bin/python benchmarks/bench_dedup.py --sizes 100000 --block 2048
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import time
from pathlib import Path

import numpy as np

from xanesdb.jobs.spectra.dedup import DedupStats, find_duplicates, find_duplicates_bruteforce
from xanesdb.jobs.spectra.grid import choose_grid, standardise

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "omnixas_cu" / "feff9_site_spectra.json.gz"


def real_spectra(path: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """The real Cu spectra on their grid: (energies, mu of shape (n, 100))."""
    records = json.load(gzip.open(path))
    grid = choose_grid("Cu", "K", "omnixas", [(r["energy"], r["mu"]) for r in records])
    rows = []
    for r in records:
        try:
            rows.append(standardise(r["energy"], r["mu"], grid)[0])
        except ValueError:
            continue
    return grid.energies, np.array(rows)


def synthetic(base: np.ndarray, energies: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` spectra mixed, shifted and copied from ``base`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(base), n)
    j = rng.integers(0, len(base), n)
    t = rng.uniform(0.0, 0.5, n)[:, None]
    mixed = (1 - t) * base[i] + t * base[j]
    shift = rng.uniform(-2.0, 2.0, n)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for k in range(n):
        out[k] = np.interp(energies - shift[k], energies, mixed[k])
    out /= out.max(axis=1, keepdims=True)
    copies = np.nonzero(rng.random(n) < 0.1)[0]
    copies = copies[copies > 0]
    src = (rng.random(len(copies)) * copies).astype(np.int64)  # an earlier spectrum
    out[copies] = out[src] + rng.normal(0, 0.004, (len(copies), base.shape[1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--threshold", type=float, default=0.015)
    parser.add_argument("--check", type=int, default=5_000, help="size checked by brute force (0: none)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    energies, base = real_spectra()
    print(f"{len(base)} real Cu spectra standardised in {time.perf_counter() - t0:.1f} s")

    if args.check:
        x = synthetic(base, energies, args.check, seed=1)
        t = time.perf_counter()
        ref = find_duplicates_bruteforce(x, args.threshold)
        tb = time.perf_counter() - t
        got = find_duplicates(x, args.threshold, block=args.block)
        print(f"check n={args.check}: blocked == brute force: {np.array_equal(ref, got)} "
              f"({int((ref >= 0).sum())} duplicates; brute force {tb:.1f} s)")

    header = (f"{'n':>8} {'block':>6} {'seconds':>8} {'duplicates':>10} {'proj. pairs':>13} "
              f"{'segment pairs':>14} {'close pairs':>12} {'all pairs':>14} {'max RSS MiB':>11}")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        x = synthetic(base, energies, n, seed=n)
        stats = DedupStats()
        t = time.perf_counter()
        find_duplicates(x, args.threshold, block=args.block, stats=stats)
        dt = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:>8} {args.block:>6} {dt:>8.1f} {stats.n_duplicates:>10} {stats.n_window_pairs:>13,} "
              f"{stats.n_segment_pairs:>14,} {stats.n_close_pairs:>12,} {n * (n - 1) // 2:>14,} {rss:>11.0f}")


if __name__ == "__main__":
    main()
