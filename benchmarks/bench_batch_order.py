"""How well the FEFF batch order avoids near-duplicate spectra (``xanesdb feff order-batch``).

Needs a database with built spectra: ``xanesdb db load-bundled && xanesdb spectra build``.
Uses the successful xanesdb FEFF10 spectra (standardised mu) and their tasks' ``feff.inp``.

1. Prediction: for each spectrum, the distance from its site's environment fingerprint
   (``xanesdb.jobs.feff.diversity``) to the nearest other site of the same absorber, against
   whether its spectrum has a near-duplicate (mean |difference| < 0.015 to another of the same
   absorber). ROC AUC, and precision / recall of "distance < tau" for a few tau.
2. Replay: per absorber and seed, a random third of the sites counts as already computed and the
   other two thirds as the batch to run. The batch is run in three orders, and after each 25 % of
   it the number of new spectra that are not near-duplicates of anything run before them is counted:

   - ``input``: the random order it came in;
   - ``buckets``: session 5's rule (scripts/rank_batch.py, now removed): duplicate rate per
     (Materials Project or prototype) x (unique absorber sites in the material: 1, 2-3, 4-8, 9+),
     measured on the computed third, lowest first;
   - ``farthest-first``: :func:`xanesdb.jobs.feff.diversity.farthest_first`, what ``order-batch`` does.

Run::

    XANESDB_HOME=... python benchmarks/bench_batch_order.py [--seeds 5] [--out benchmarks/results/batch_order.txt]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from xanesdb.jobs.feff.diversity import environment_fingerprint, farthest_first, fingerprint_distance
from xanesdb.platform.stores import get_database

THRESHOLD = 0.015


def bucket(material_id: str, n_sites: int) -> str:
    family = "proto" if material_id.startswith("proto") else "mp"
    size = "1" if n_sites <= 1 else "2-3" if n_sites <= 3 else "4-8" if n_sites <= 8 else "9+"
    return f"{family} {size}"


def load(db) -> dict[str, dict]:
    inputs = {t["task_id"]: t["feff_inp"] for t in db.feff_tasks.find(
        {"source": "xanesdb", "state": "successful"}, {"_id": 0, "task_id": 1, "feff_inp": 1})}
    n_sites = Counter((s["material_id"], s["element"]) for s in db.sites.find({}, {"material_id": 1, "element": 1}))
    per_el: dict[str, dict] = {}
    for s in db.spectra.find({"source": "xanesdb", "state": "successful"},
                             {"_id": 0, "task_id": 1, "element": 1, "mu": 1, "material_id": 1}):
        if s["task_id"] not in inputs:
            continue
        d = per_el.setdefault(s["element"], {"mu": [], "fp": [], "bucket": []})
        d["mu"].append(s["mu"])
        d["fp"].append(environment_fingerprint(inputs[s["task_id"]]))
        d["bucket"].append(bucket(s["material_id"], n_sites[(s["material_id"], s["element"])]))
    for d in per_el.values():
        mu = np.asarray(d["mu"])
        fp = np.asarray(d["fp"])
        d["mad"] = np.abs(mu[:, None, :] - mu[None, :, :]).mean(-1)
        d["dist"] = fingerprint_distance(fp[:, None, :], fp[None, :, :])
    return per_el


def replay(d: dict, computed: list[int], order: list[int]) -> np.ndarray:
    """1 where a batch site's spectrum is not within THRESHOLD of any site computed or run before it."""
    before = list(computed)
    new = []
    for c in order:
        new.append(bool(before) and d["mad"][c, before].min() >= THRESHOLD or not before)
        before.append(c)
    return np.asarray(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="also write the tables here")
    a = p.parse_args()
    t0 = time.perf_counter()
    per_el = load(get_database())
    buf = io.StringIO()
    with redirect_stdout(buf):
        n = sum(len(d["mu"]) for d in per_el.values())
        print(f"{n} xanesdb FEFF10 spectra, {len(per_el)} absorbers; near-duplicate: mean |diff| < {THRESHOLD}\n")
        ys, xs = [], []
        for d in per_el.values():
            mad, dist = d["mad"].copy(), d["dist"].copy()
            np.fill_diagonal(mad, np.inf)
            np.fill_diagonal(dist, np.inf)
            ys += list(mad.min(1) < THRESHOLD)
            xs += list(dist.min(1))
        ys, xs = np.asarray(ys), np.asarray(xs)
        print(f"fingerprint distance to the nearest site of the same absorber predicts a near-duplicate spectrum: "
              f"ROC AUC {roc_auc_score(ys, -xs):.3f} ({ys.sum()} of {len(ys)} spectra have one)\n")
        print("| tau | sites with distance < tau | of them with a near-duplicate (precision) | near-duplicates caught (recall) |")
        print("|---|---|---|---|")
        for tau in (0.05, 0.1, 0.15, 0.2, 0.3):
            sel = xs < tau
            print(f"| {tau} | {sel.sum()} | {ys[sel].mean():.3f} | {(sel & ys).sum() / ys.sum():.3f} |")
        fractions = (0.25, 0.5, 0.75, 1.0)
        totals: dict[tuple[str, float], list[int]] = {}
        rng = np.random.default_rng(0)
        for seed in range(a.seeds):
            for el, d in sorted(per_el.items()):
                perm = [int(i) for i in rng.permutation(len(d["mu"]))]
                computed, batch = perm[: len(perm) // 3], perm[len(perm) // 3:]
                seen, dup = Counter(), Counter()
                mad = d["mad"]
                for i, c in enumerate(computed):
                    seen[d["bucket"][c]] += 1
                    dup[d["bucket"][c]] += bool(computed[:i]) and mad[c, computed[:i]].min() < THRESHOLD
                overall = sum(dup.values()) / max(sum(seen.values()), 1)
                rate = {b: dup[b] / seen[b] for b in seen if seen[b] >= 5}
                orders = {
                    "input": batch,
                    "buckets": [c for _, _, c in sorted((rate.get(d["bucket"][c], overall), i, c) for i, c in enumerate(batch))],
                    "farthest-first": [int(r.key) for r in farthest_first(
                        [(c, el, d["fp"][c]) for c in batch], [(el, d["fp"][c]) for c in computed])],
                }
                for name, order in orders.items():
                    new = replay(d, computed, order)
                    for f in fractions:
                        k = int(round(len(new) * f))
                        tot = totals.setdefault((name, f), [0, 0])
                        tot[0] += int(new[:k].sum())
                        tot[1] += k
        print(f"\nreplay: {a.seeds} seeds x {len(per_el)} absorbers; a random third computed, the rest run in each order; "
              f"new spectra that are not near-duplicates of anything before them (share of the sites run)\n")
        print("| order | " + " | ".join(f"first {int(f * 100)} %" for f in fractions) + " |")
        print("|---|" + "---|" * len(fractions))
        for name in ("input", "buckets", "farthest-first"):
            cells = [f"{totals[(name, f)][0]} ({totals[(name, f)][0] / totals[(name, f)][1]:.3f})" for f in fractions]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"\n{time.perf_counter() - t0:.0f} s")
    sys.stdout.write(buf.getvalue())
    if a.out:
        a.out.write_text(buf.getvalue())


if __name__ == "__main__":
    main()
