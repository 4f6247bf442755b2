"""Search by spectrum: speed against 100,000 spectra, and how often the nearest computed spectra
share the geometry class (top-1 / top-5, and a kNN classifier on the same search).

Three measurements, for each method (``cosine``, ``elsie``):

1. **Speed.** The database's aligned spectra (the search index) tiled to ``--n-synthetic`` rows
   (100,000), each copy perturbed (amplitude x(1 +- 2 %), noise 0.005, a shift of -1..+1 eV), and
   the 48 measured development records searched against all of them: queries per second one at a
   time (as ``xanesdb search`` runs) and in one batch.
2. **Computed, held out.** Every labelled spectrum of the database searched among the spectra of its
   absorber from *other* materials (5 folds grouped by material, as the networks are scored):
   top-1 agreement (the nearest spectrum's class is the query's), top-5 (any of the five nearest
   shares it), the fraction of the five that do, and the kNN classifier (majority of the k = 5
   nearest labelled spectra) with its per-class recall and macro F1.
3. **Measured.** The labelled records of ``experimental_dev`` (read from their Athena projects as
   ``xanesdb predict`` reads them): the same numbers on the non-ambiguous records of class T4, S5
   or O6, among all labelled computed spectra of their absorber.

2 and 3 run three times: with the references as stored, (``--fidelity scf``) with the ``fast``
references corrected towards the ``scf`` preset (``xanesdb search --fidelity scf``), and then
mapped to what a measurement of them looks like (``--calibration k-edge``; here each absorber
with the calibration refitted without its own reference pairs).

    xanesdb db load-bundled && xanesdb spectra build
    python benchmarks/bench_search.py [--out benchmarks/results/search.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED = HERE.parents[1] / "shared" / "data" / "experimental_dev"
CLASSES = ("O6", "S5", "T4")


def synthetic_index(index, n: int, seed: int = 0):
    """``n`` perturbed copies of the index's rows."""
    from xanesdb.search import SearchIndex

    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(index), n)
    shift = rng.integers(-2, 3, n)  # grid points of 0.5 eV
    cols = np.clip(np.arange(index.X.shape[1])[None, :] + shift[:, None], 0, index.X.shape[1] - 1)
    X = index.X[src[:, None], cols] * (1 + rng.normal(0, 0.02, (n, 1))) + rng.normal(0, 0.005, (n, index.X.shape[1]))
    meta = {k: v[src] for k, v in index.meta.items()}
    meta["spectrum_id"] = np.array([f"syn-{i}" for i in range(n)])
    return SearchIndex.from_arrays(X.astype(np.float32), meta, index.e_half[src], key=f"synthetic-{n}")


def speed(index, queries, methods, n_synthetic: int) -> dict:
    from xanesdb.search.match import rank_references, windows_of

    big = synthetic_index(index, n_synthetic)
    big.unit_rows  # built once per index, like the cached index of a running process
    W = windows_of(np.stack([q.wide for q in queries]))
    out = {"n_references": len(big), "n_queries": len(queries), "n_shifts": int(W.shape[1])}
    for m in methods:
        rank_references(big, W[:1], slice(None), method=m, top=10)  # warm up
        t0 = time.perf_counter()
        for i in range(len(W)):
            rank_references(big, W[i : i + 1], slice(None), method=m, top=10)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        rank_references(big, W, slice(None), method=m, top=10)
        batch = time.perf_counter() - t0
        out[m] = {"queries_per_s_one_at_a_time": len(W) / one, "queries_per_s_batch": len(W) / batch,
                  "ms_per_query": 1000 * one / len(W)}  # fmt: skip
        print(f"  speed {m}: {len(W) / one:.1f} queries/s one at a time, {len(W) / batch:.1f} in a batch, "
              f"against {len(big):,} spectra", flush=True)  # fmt: skip
    if "elsie" in methods:  # the ensemble over every reference, no pre-selection
        t0 = time.perf_counter()
        n_full = min(len(W), 5)
        for i in range(n_full):
            rank_references(big, W[i : i + 1], slice(None), method="elsie", top=10, candidates=0)
        out["elsie_all_candidates"] = {"queries_per_s_one_at_a_time": n_full / (time.perf_counter() - t0)}
        print(f"  speed elsie, ensemble over all {len(big):,}: "
              f"{out['elsie_all_candidates']['queries_per_s_one_at_a_time']:.2f} queries/s", flush=True)  # fmt: skip
    return out


def agreement(truth: list[str], matches: list[list[dict]], k: int = 5) -> dict:
    """Top-1 / top-5 class agreement and the kNN classifier's scores."""
    from xanesdb.search import knn_vote

    top1 = [bool(m) and m[0]["lce_class"] == t for t, m in zip(truth, matches)]
    top5 = [any(x["lce_class"] == t for x in m[:5]) for t, m in zip(truth, matches)]
    frac5 = [np.mean([x["lce_class"] == t for x in m[:5]]) if m else 0.0 for t, m in zip(truth, matches)]
    knn = [knn_vote(m, k) for m in matches]
    recall = {c: (float(np.mean([p == c for t, p in zip(truth, knn) if t == c])) if c in truth else None)
              for c in CLASSES}  # fmt: skip
    f1 = []
    for c in CLASSES:
        tp = sum(t == c and p == c for t, p in zip(truth, knn))
        fp = sum(t != c and p == c for t, p in zip(truth, knn))
        fn = sum(t == c and p != c for t, p in zip(truth, knn))
        if tp + fn:
            f1.append(2 * tp / max(2 * tp + fp + fn, 1))
    return {"n": len(truth), "top1": float(np.mean(top1)), "top5_any": float(np.mean(top5)),
            "top5_fraction": float(np.mean(frac5)), "knn_accuracy": float(np.mean([p == t for t, p in zip(truth, knn)])),
            "knn_recall": recall, "knn_macro_f1": float(np.mean(f1)) if f1 else None,
            "knn_confusion": {c: dict(Counter(p or "none" for t, p in zip(truth, knn) if t == c)) for c in CLASSES if c in truth}}  # fmt: skip


def held_out(index, methods, folds: int = 5, k: int = 5) -> dict:
    """Labelled spectra searched among other materials' spectra of their absorber."""
    from sklearn.model_selection import GroupKFold

    from xanesdb.search import query_from_aligned, search_queries

    lab = index.rows(labelled_only=True)
    groups = index.meta["material_id"][lab]
    out = {}
    for m in methods:
        truth, matches = [], []
        t0 = time.perf_counter()
        for train, test in GroupKFold(n_splits=folds).split(lab, groups=groups):
            ref = index.subset(lab[train])
            qs = [query_from_aligned(index.X[r], name=str(r), absorber=str(index.meta["element"][r])) for r in lab[test]]
            res = search_queries(qs, ref, top=max(5, k), method=m, labelled_only=True)
            for r, row in zip(lab[test], res):
                truth.append(str(index.meta["lce_class"][r]))
                matches.append(row.get("matches", []))
        out[m] = agreement(truth, matches, k)
        out[m]["seconds"] = time.perf_counter() - t0
        print(f"  computed held out {m}: top-1 {out[m]['top1']:.3f}, top-5 {out[m]['top5_any']:.3f}, kNN-{k} "
              f"accuracy {out[m]['knn_accuracy']:.3f} macro F1 {out[m]['knn_macro_f1']:.3f} (n={len(truth)}, "
              f"{out[m]['seconds']:.0f} s)", flush=True)  # fmt: skip
    return out


def measured(index, records, methods, k: int = 5) -> dict:
    from xanesdb.search import search_spectra

    core = [(r, s) for r, s in records if not r["ambiguous"] and r["expected_class"] in CLASSES]
    out = {}
    for m in methods:
        res = search_spectra([s for _, s in core], top=max(5, k), method=m, labelled_only=True, index=index)
        truth = [r["expected_class"] for r, _ in core]
        matches = [x.get("matches", []) for x in res]
        out[m] = agreement(truth, matches, k)
        out[m]["errors"] = [x["error"] for x in res if "error" in x]
        out[m]["rows"] = [{"id": r["id"], "absorber": r["absorber"], "true": r["expected_class"],
                           "top5": [x["lce_class"] for x in mm[:5]], "nearest": mm[0]["material_id"] if mm else None,
                           "shift_ev": mm[0]["shift_ev"] if mm else None}
                          for (r, _), mm in zip(core, matches)]  # fmt: skip
        print(f"  measured {m}: top-1 {out[m]['top1']:.3f}, top-5 {out[m]['top5_any']:.3f}, kNN-{k} accuracy "
              f"{out[m]['knn_accuracy']:.3f}, recall {out[m]['knn_recall']} (n={len(truth)})", flush=True)  # fmt: skip
    return out


def calibrated_held_out(index, name: str):
    """The index with each absorber's rows mapped by the computed -> measured calibration refitted
    without that absorber's reference pairs (so no measured record calibrates its own search)."""
    from xanesdb.search.index import ALIGNED_GRID, SearchIndex
    from xanesdb.xas.calibration import load_calibration

    cal = load_calibration(name)
    X = index.X.copy()
    for el in index.elements():
        sel = index.meta["element"] == el
        X[sel] = cal.without(el).apply(X[sel], ALIGNED_GRID)
    return SearchIndex(X=X, meta=index.meta, e_half=index.e_half, key=f"{index.key}-cal-{name}-held-out",
                       criteria=index.criteria, timings=dict(index.timings))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="cosine,elsie")
    ap.add_argument("--n-synthetic", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the numbers.")
    ap.add_argument("--fidelity", default="none,scf,scf+k-edge", help="Reference variants: none (as stored), scf (fast "
                    "corrected towards scf), scf+k-edge (then calibrated to measurement, held out per absorber).")
    ap.add_argument("--skip", default="", help="Comma list of parts to skip: speed, held-out, measured.")
    args = ap.parse_args(argv)
    from bench_measured import load_records

    from xanesdb.search import load_search_index, prepare_query
    from xanesdb.search.index import index_criteria  # noqa: F401 - documents what the index holds

    methods = [m for m in args.methods.split(",") if m]
    skip = set(args.skip.split(","))
    from xanesdb.search import index as index_module

    t0 = time.perf_counter()
    index = load_search_index(use_cache=False)
    t_build = time.perf_counter() - t0
    load_search_index()  # writes the disk cache
    index_module._MEMO.clear()
    t0 = time.perf_counter()
    load_search_index()  # a new process: from the .npz
    t_disk = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_search_index()  # the same process: from memory (only the database-state check)
    t_memo = time.perf_counter() - t0
    print(f"index: {len(index):,} spectra of {', '.join(index.elements())}; from the database in {t_build:.2f} s, "
          f"from the disk cache in {t_disk:.2f} s, in-process {t_memo:.2f} s", flush=True)  # fmt: skip
    records = load_records(args.data)
    result: dict = {"index": {"n": len(index), "elements": index.elements(), "build_s": t_build, "disk_cache_s": t_disk, "memo_s": t_memo,
                              "labelled": int(len(index.rows(labelled_only=True)))}}  # fmt: skip
    if "speed" not in skip:
        queries = [prepare_query(s) for _, s in records]
        result["speed"] = speed(index, queries, methods, args.n_synthetic)
    variants = [f for f in args.fidelity.split(",") if f]
    for fid in variants:
        if "+" in fid:  # e.g. scf+k-edge: the fidelity correction, then the calibration held out per absorber
            fid_only, cal_name = fid.split("+", 1)
            ix = calibrated_held_out(load_search_index(fidelity=fid_only), cal_name)
        else:
            ix = index if fid == "none" else load_search_index(fidelity=fid)
        tag = "" if fid == "none" else f" +fidelity {fid}"
        if fid != "none":
            print(f"references: fast-preset rows corrected towards {fid} ({ix.timings.get('fidelity')})", flush=True)
        if "held-out" not in skip:
            for m, v in held_out(ix, methods, k=args.k).items():
                result.setdefault("held_out", {})[m + tag] = v
        if "measured" not in skip:
            for m, v in measured(ix, records, methods, k=args.k).items():
                result.setdefault("measured", {})[m + tag] = v
    print()
    print(f"| method | queries/s vs {args.n_synthetic:,} (one / batch) | computed held-out top-1 | top-5 | kNN-{args.k} acc. "
          f"| kNN macro F1 | measured top-1 | top-5 | kNN-{args.k} acc. | measured kNN right, O6 / T4 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for fid in variants:
        for m in methods:
            name = m if fid == "none" else f"{m} +fidelity {fid}"
            sp = result.get("speed", {}).get(m) if fid == "none" else None
            ho = result.get("held_out", {}).get(name)
            me = result.get("measured", {}).get(name)
            sp_s = f"{sp['queries_per_s_one_at_a_time']:.1f} / {sp['queries_per_s_batch']:.1f}" if sp else "-"
            ho_s = f"{ho['top1']:.3f} | {ho['top5_any']:.3f} | {ho['knn_accuracy']:.3f} | {ho['knn_macro_f1']:.3f}" if ho else "- | - | - | -"
            if me:
                rec = me["knn_recall"]
                n_c = {c: sum(r["true"] == c for r in me["rows"]) for c in CLASSES}
                rec_s = ", ".join(f"{round(rec[c] * n_c[c])}/{n_c[c]}" for c in ("O6", "T4", "S5") if rec[c] is not None)
                me_s = f"{me['top1']:.3f} | {me['top5_any']:.3f} | {me['knn_accuracy']:.3f} | {rec_s}"
            else:
                me_s = "- | - | - | -"
            print(f"| {name} | {sp_s} | {ho_s} | {me_s} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=float))
        print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
