"""Distortion series (issue 21 items 1-3): cost per preset, the background series, MSD regression.

    XANESDB_HOME=/tmp/h21 xanesdb db load-bundled && xanesdb spectra build
    # 1. cost and agreement of the cheap preset against `fast` on one site (d = 0 and +0.2 A)
    nice -n 10 python benchmarks/bench_disorder.py cost --site 'proto:perovskite:A=Sr,B=Ti:Ti:1'
    # 2. series (0.05 A steps, 19 runs per site), one FEFF at a time, resumable; exported for shipping
    nice -n 10 python benchmarks/bench_disorder.py series --site ... --site ...
    # 3. MSD regression on held-out sites + the measured EuTiO3 / PbTiO3 temperature series
    python benchmarks/bench_disorder.py msd

Results in ``benchmarks/results/disorder*``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental_dev"
SERIES_FILE = RESULTS / "disorder_series.json.gz"


def _site(db, site_id: str):
    from pymatgen.core import Structure

    site = db["sites"].find_one({"site_id": site_id}, {"_id": 0})
    if site is None:
        sys.exit(f"no site {site_id}")
    st = db["structures"].find_one({"material_id": site["material_id"]}, {"_id": 0, "structure": 1})
    return site, Structure.from_dict(st["structure"])


def cmd_cost(args) -> None:
    from xanesdb.jobs.disorder.series import compute_distorted_task
    from xanesdb.platform.stores import get_database
    from xanesdb.xas.align import align_computed

    db = get_database()
    site, structure = _site(db, args.site)
    rows, spectra = [], {}
    for d in args.distortions:
        for preset in args.presets:
            with tempfile.TemporaryDirectory() as tmp:
                doc = compute_distorted_task(structure, site["site_index"], site["material_id"], d, preset=preset,
                                             workdir=tmp, site_id=site["site_id"])  # fmt: skip
            y = align_computed(doc.energies, doc.mu, doc.mu0)["y"] if doc.state == "successful" else None
            spectra[(preset, d)] = y
            rows.append({"preset": preset, "d": d, "state": doc.state, "error": doc.error, "wall_s": doc.wall_seconds,
                         "stage_s": doc.stage_seconds})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    ref = args.presets[0]
    lines = [f"distortion-series cost, site {args.site}, FEFF10 on 2 shared cores (nice 10, a campaign running)",
             f"{'preset':<10} {'d (A)':>6} {'wall s':>7} {'MAE vs ' + ref:>12} {'Pearson':>8}"]  # fmt: skip
    for r in rows:
        y, y0 = spectra[(r["preset"], r["d"])], spectra[(ref, r["d"])]
        if y is None or y0 is None:
            lines.append(f"{r['preset']:<10} {r['d']:>+6.2f} {r['wall_s'] or 0:>7.1f} {'failed':>12}")
            continue
        mae = float(np.mean(np.abs(y - y0)))
        pr = float(np.corrcoef(y, y0)[0, 1])
        lines.append(f"{r['preset']:<10} {r['d']:>+6.2f} {r['wall_s']:>7.1f} {mae:>12.4f} {pr:>8.4f}")
    for preset in args.presets:
        ys = [spectra[(preset, d)] for d in args.distortions]
        if len(ys) > 1 and all(y is not None for y in ys):
            lines.append(f"{preset}: spectrum change d={args.distortions[0]:+g} -> {args.distortions[-1]:+g} A: "
                         f"MAE {float(np.mean(np.abs(ys[-1] - ys[0]))):.4f} (the signal the series carries)")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS / "disorder_cost.txt").write_text(text)
    (RESULTS / "disorder_cost.json").write_text(json.dumps(rows, indent=1))


def cmd_series(args) -> None:
    from xanesdb.jobs.disorder.makers import run_distortion_series
    from xanesdb.jobs.disorder.series import distortion_grid
    from xanesdb.platform.stores import get_database

    db = get_database()
    grid = distortion_grid(args.step)
    for sid in args.site:
        site, structure = _site(db, sid)
        t0 = time.time()
        work = Path(args.workdir) / sid.replace(":", "_").replace(",", "_").replace("=", "")
        s = run_distortion_series(structure, site["site_index"], site["material_id"], db, distortions=grid,
                                  preset=args.preset, site_id=sid, workdir=work, retry_failed=args.retry_failed,
                                  on_task=lambda doc: print(f"  {doc.task_id} {doc.state} {doc.wall_seconds:.1f} s",
                                                            flush=True))  # fmt: skip
        print(f"{sid}: {len(s['task_ids'])} run, {s['n_already']} already stored, failed {s['failed']}, "
              f"{time.time() - t0:.0f} s", flush=True)  # fmt: skip
        export_series(db)


def export_series(db) -> int:
    """Every successful distortion task (site, class, d, energies, mu, mu0) to SERIES_FILE."""
    docs = list(db["feff_tasks"].find({"distortion": {"$ne": None}, "state": "successful"},
                                      {"_id": 0, "task_id": 1, "site_id": 1, "material_id": 1, "element": 1,
                                       "preset": 1, "distortion": 1, "energies": 1, "mu": 1, "mu0": 1,
                                       "wall_seconds": 1}))  # fmt: skip
    classes = {s["site_id"]: s.get("lce_class") for s in db["sites"].find(
        {"site_id": {"$in": sorted({d["site_id"] for d in docs})}}, {"_id": 0, "site_id": 1, "lce_class": 1})}  # fmt: skip
    for d in docs:
        d["lce_class"] = classes.get(d["site_id"])
    docs.sort(key=lambda d: (d["site_id"], d["preset"], d["distortion"]))
    with gzip.open(SERIES_FILE, "wt") as f:
        json.dump(docs, f)
    return len(docs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--site", required=True)
    c.add_argument("--presets", nargs="+", default=["fast", "fastlite"])
    c.add_argument("--distortions", nargs="+", type=float, default=[0.0, 0.2])
    s = sub.add_parser("series")
    s.add_argument("--site", action="append", required=True)
    s.add_argument("--step", type=float, default=0.05)
    s.add_argument("--preset", default="fastlite")
    s.add_argument("--workdir", default="/tmp/h21/disorder-runs")
    s.add_argument("--retry-failed", action="store_true")
    m = sub.add_parser("msd")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--element", default="Ti")
    m.add_argument("--n-weightings", type=int, default=1000)
    m.add_argument("--epochs", type=int, default=60)
    m.add_argument("--families", nargs="+", default=["mlp", "gbt"])
    m.add_argument("--from-file", action="store_true", help=f"read the series from {SERIES_FILE.name} (no database)")
    args = p.parse_args()
    {"cost": cmd_cost, "series": cmd_series, "msd": lambda a: cmd_msd(a)}[args.cmd](args)


def _kelvin(t: str) -> float:
    t = str(t).strip().lower()
    return 300.0 if t.startswith("room") else float(t.split()[0])


def cmd_msd(args) -> None:
    """MSD regression: held-out sites (leave one out) and the measured temperature series."""
    from scipy.stats import spearmanr

    from xanesdb.ml.disorder import held_out_sites, load_series, make_msd_dataset, msd_config, regression_dataset, series_from_docs
    from xanesdb.ml.regression import all_networks, train_regression_on_dataset
    from xanesdb.xas.align import align_measured

    if args.from_file:
        with gzip.open(SERIES_FILE, "rt") as f:
            series = series_from_docs([d for d in json.load(f) if d["element"] == args.element])
    else:
        from xanesdb.platform.stores import get_database

        series = load_series(get_database(ensure=False), {"element": args.element})
    series = [s for s in series if len(s.distortions) >= 17]  # a run or two of 19 may have failed
    print(f"{len(series)} complete series: {[s.site_id for s in series]}", flush=True)
    ds = make_msd_dataset(series, args.n_weightings, seed=args.seed)
    t0 = time.time()
    lines = [f"MSD regression ({args.element} K edge, fastlite distortion series, 0.05 A steps; {args.n_weightings} "
             f"weightings per site from seed {args.seed}: mu U(-0.1, 0.1) A, sigma log-U(0.02, 0.15) A, half "
             f"Gaussian, half skew-normal alpha U(-4, 4)); aligned representation",
             f"MSD range {ds.msd.min():.4f}..{ds.msd.max():.4f} A^2, mean {ds.msd.mean():.4f}"]  # fmt: skip
    results: dict = {"sites": list(ds.sites), "n_rows": len(ds.X), "seed": args.seed, "n_weightings": args.n_weightings,
                     "weightings_first10": ds.weightings[:10].tolist(), "families": {}}  # fmt: skip
    for fam in args.families:
        cfg = msd_config(family=fam, epochs=args.epochs, seed=args.seed)
        loso = held_out_sites(ds, cfg) if len(ds.sites) > 1 else {"sites": {}, "mae": float("nan"), "mae_baseline": float("nan")}
        results["families"][fam] = {"held_out": loso}
        lines.append(f"{fam}: held-out sites (leave one out) MAE {loso['mae']:.4f} A^2 against baseline (training mean) "
                     f"{loso['mae_baseline']:.4f}")  # fmt: skip
        for sid, r in loso["sites"].items():
            lines.append(f"    {sid:<36} MAE {r['mae']:.4f}  baseline {r['mae_baseline']:.4f}  Spearman {r['spearman']:+.2f}")
        print("\n".join(lines[-1 - len(loso['sites']):]), flush=True)
    # the measured temperature series, with a network on every site
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_measured import load_records

    recs = [(r, s) for r, s in load_records(SHARED) if r["formula"] in ("EuTiO3", "PbTiO3") and r.get("temperature")]
    Xm = np.stack([align_measured(s.energy, s.mu, name=s.name)["y"] for _, s in recs]).astype("float32")
    for fam in args.families:
        model, _, _ = train_regression_on_dataset(regression_dataset(ds), msd_config(family=fam, epochs=args.epochs, seed=args.seed))
        pred = all_networks(model, Xm).mean(axis=1)[:, 0]
        measured: dict = {}
        for (r, _), p in zip(recs, pred):
            measured.setdefault(r["formula"], []).append((_kelvin(r["temperature"]), float(p), r["id"]))
        lines.append(f"measured temperature series, predicted MSD ({fam} trained on all {len(ds.sites)} sites; "
                     f"training MSD range {ds.msd.min():.3f}..{ds.msd.max():.3f}):")  # fmt: skip
        for comp, pts in measured.items():
            pts.sort()
            rho = float(spearmanr([t for t, _, _ in pts], [p for _, p, _ in pts]).statistic)
            results["families"][fam].setdefault("measured", {})[comp] = {"points": pts, "spearman": rho}
            lines.append(f"    {comp}: " + ", ".join(f"{t:g} K {p:.4f}" for t, p, _ in pts) + f"  Spearman rho {rho:+.2f}")
    lines.append(f"({time.time() - t0:.0f} s)")
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS / f"disorder_msd_{args.element}.txt").write_text(text)
    (RESULTS / f"disorder_msd_{args.element}.json").write_text(json.dumps(results, indent=1, default=float))
    _plot(results, args.families, RESULTS / f"disorder_msd_{args.element}.png")


def _plot(results: dict, families, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    fam = min(families, key=lambda f: results["families"][f]["held_out"]["mae"])
    loso = results["families"][fam]["held_out"]
    for sid, r in loso["sites"].items():
        ax1.scatter(r["true"], r["pred"], s=4, alpha=0.4, label=f"{sid} (MAE {r['mae']:.4f})")
    hi = max([max(r["true"] + r["pred"]) for r in loso["sites"].values()] or [0.04])
    ax1.plot([0, hi], [0, hi], "k--", lw=0.8)
    ax1.set(xlabel="true MSD (A^2)", ylabel="predicted MSD (A^2)",
            title=f"{fam}, each site held out (MAE {loso['mae']:.4f}, baseline {loso['mae_baseline']:.4f})")  # fmt: skip
    ax1.legend(fontsize=6, markerscale=3)
    for f, ls in zip(families, ("-", "--", ":")):
        for comp, m in results["families"][f].get("measured", {}).items():
            pts = m["points"]
            ax2.plot([t for t, _, _ in pts], [p for _, p, _ in pts], "o" + ls,
                     label=f"{comp}, {f} (Spearman {m['spearman']:+.2f})")  # fmt: skip
    ax2.set(xlabel="temperature (K)", ylabel="predicted MSD (A^2)", title="measured Ti K-edge temperature series")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
