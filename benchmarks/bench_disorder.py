"""Distortion series (issue 21 items 1-3): cost per preset, the background series, their signal, MSD regression.

    XANESDB_HOME=/tmp/h21 xanesdb db load-bundled && xanesdb spectra build
    # 1. cost and agreement of the cheap preset against `fast` on one site (d = 0 and +0.2 A)
    nice -n 10 python benchmarks/bench_disorder.py cost --site 'proto:perovskite:A=Sr,B=Ti:Ti:1'
    # 2. series (0.05 A steps, 19 runs per site), one FEFF at a time, resumable; exported for shipping
    nice -n 10 python benchmarks/bench_disorder.py series --site ... --site ...
    # 3. MSD regression on held-out sites + the measured EuTiO3 / PbTiO3 temperature series
    python benchmarks/bench_disorder.py msd
    # 4. what 0.01 A steps change against their 0.05 A subset (same seeded weightings)
    nice -n 19 xanesdb disorder series 'proto:perovskite:A=Sr,B=Ti:Ti:1' --step 0.01
    python benchmarks/bench_disorder.py step --from-file
    # 5. series run with the CLI (`nice -n 19 xanesdb disorder series SITE`): add a finished one to the
    #    shipped file (the runs already there kept), then runs, s/run, failures and signal per series
    python benchmarks/bench_disorder.py export --site 'proto:rocksalt:B=Ni:Ni:0'
    python benchmarks/bench_disorder.py signal --shipped   # --from-file: printed, without a database (no failure counts)

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
        n, added = export_series(db)
        print(f"{SERIES_FILE.name}: {n} runs, {added} added", flush=True)


def export_series(db, sites=None) -> tuple[int, int]:
    """Add every successful distortion task (site, class, d, energies, mu, mu0) of the database to SERIES_FILE.

    The runs already in the file are kept as they are and where they are (also those the database
    no longer holds); the database's other runs are appended, sorted by site, preset and d. Each run
    carries ``series_step``: the finest step (A) of its site's series in the file (0.05 for 19 runs,
    0.01 for the 91 of ``--step 0.01``, whose every 5th run is the 0.05 A series); it is the only
    field of a kept run that can change (when finer runs of its site are added). Readers pick a
    step's runs with :func:`xanesdb.ml.disorder.series_on_grid`. ``sites``: add only these sites' runs (a series still running
    elsewhere stays out). Returns (runs in the file, runs added).
    """
    kept = []
    if SERIES_FILE.exists():
        with gzip.open(SERIES_FILE, "rt") as f:
            kept = json.load(f)
    have = {d["task_id"] for d in kept}
    docs = [d for d in db["feff_tasks"].find({"distortion": {"$ne": None}, "state": "successful"},
                                             {"_id": 0, "task_id": 1, "site_id": 1, "material_id": 1, "element": 1,
                                              "preset": 1, "distortion": 1, "energies": 1, "mu": 1, "mu0": 1,
                                              "wall_seconds": 1})
            if d["task_id"] not in have and (sites is None or d["site_id"] in sites)]  # fmt: skip
    classes = {s["site_id"]: s.get("lce_class") for s in db["sites"].find(
        {"site_id": {"$in": sorted({d["site_id"] for d in docs})}}, {"_id": 0, "site_id": 1, "lce_class": 1})}  # fmt: skip
    for d in docs:
        d["lce_class"] = classes.get(d["site_id"])
    docs.sort(key=lambda d: (d["site_id"], d["preset"], d["distortion"]))
    out = kept + docs
    by: dict = {}
    for d in out:
        by.setdefault((d["site_id"], d["preset"]), []).append(d["distortion"])
    steps = {k: series_step(v) for k, v in by.items()}
    for d in out:
        d["series_step"] = steps[(d["site_id"], d["preset"])]
    with gzip.open(SERIES_FILE, "wt") as f:
        json.dump(out, f)
    return len(out), len(docs)


def cmd_export(args) -> None:
    from xanesdb.platform.stores import get_database

    n, added = export_series(get_database(ensure=False), args.site)
    print(f"{SERIES_FILE.name}: {n} runs, {added} added")


def series_step(distortions) -> float:
    """The finest step (A) of a series: the smallest gap between its distortions, to 0.01 A."""
    d = np.unique(np.round(np.asarray(distortions, dtype=float), 4))
    return round(float(np.diff(d).min()), 2) if len(d) > 1 else 0.05


def _load(args, element: str | None):
    """The distortion series of ``element`` (None: of every absorber)."""
    from xanesdb.ml.disorder import load_series, series_from_docs

    if args.from_file:
        with gzip.open(SERIES_FILE, "rt") as f:
            return series_from_docs([d for d in json.load(f) if element is None or d["element"] == element])
    from xanesdb.platform.stores import get_database

    return load_series(get_database(ensure=False), {} if element is None else {"element": element})


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
    m.add_argument("--step", type=float, default=0.05, help="use each series' runs on this grid (A); 0.05: every series")
    m.add_argument("--target", default="msd", choices=["msd", "variance"], help="msd (sum w d^2, Thaller's label) or "
                   "variance (msd - mean^2: the spread about the mean distortion); results *_variance.* for variance")
    m.add_argument("--relative", action="store_true", help="each disordered spectrum against another of the same site "
                   "(difference spectra, difference of the targets); the measured series against their lowest "
                   "temperature; results *_relative.*")
    m.add_argument("--tag", default="", help="appended to the results file stem (e.g. _gbt)")
    m.add_argument("--pool", action="store_true", help="train on the series of every absorber (aligned spectra), hold "
                   "out the --element sites one at a time; results *_pooled.*")  # fmt: skip
    t = sub.add_parser("step", help="0.01 A series against its 0.05 A subset: disordered spectra and MSD labels")
    t.add_argument("--site", default="proto:perovskite:A=Sr,B=Ti:Ti:1")
    t.add_argument("--element", default="Ti")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-weightings", type=int, default=1000)
    t.add_argument("--fine", type=float, default=0.01)
    t.add_argument("--coarse", type=float, default=0.05)
    t.add_argument("--from-file", action="store_true", help=f"read the series from {SERIES_FILE.name} (no database)")
    g = sub.add_parser("signal", help="per series: runs, s/run, failures, mean |y(d) - y(0)| at d = -0.2, +0.2 A, runs that align")
    g.add_argument("--site", action="append", help="only these sites (repeat); default every series, results written")
    g.add_argument("--step", type=float, default=0.05)
    g.add_argument("--distortions", nargs="+", type=float, default=[-0.2, 0.2])
    g.add_argument("--from-file", action="store_true", help=f"read the series from {SERIES_FILE.name} (no database)")
    g.add_argument("--shipped", action="store_true", help=f"only the sites in {SERIES_FILE.name} (not a series still running)")
    x = sub.add_parser("export", help=f"add the database's distortion runs to {SERIES_FILE.name} (the runs there kept)")
    x.add_argument("--site", action="append", help="only these sites' runs (repeat); default every site")
    args = p.parse_args()
    {"cost": cmd_cost, "series": cmd_series, "signal": cmd_signal, "export": cmd_export, "msd": lambda a: cmd_msd(a), "step": lambda a: cmd_step(a)}[args.cmd](args)


def cmd_signal(args) -> None:
    """Per series: runs on the --step grid, seconds per run, failures, and the distortion signal.

    The signal at d is the mean |y(d) - y(0)| of the runs at d and 0, each aligned on its own
    energies (:func:`xanesdb.xas.align.align_computed`, as ``cost`` compares them): the quantity quoted
    for SrTiO3 (0.11-0.12 at d = +0.2 A). "Runs that align" counts the runs that reach the aligned
    grid on their own energies and in the series as the MSD dataset reads it (each run interpolated
    onto the energies of the d = 0 run, :func:`xanesdb.ml.disorder.series_from_docs`).
    """
    from xanesdb.ml.disorder import series_from_docs, series_on_grid
    from xanesdb.xas.align import ALIGNED_GRID, align_computed
    from xanesdb.xas.normalize import half_step_energy, normalize_computed

    if args.from_file:
        with gzip.open(SERIES_FILE, "rt") as f:
            docs = json.load(f)
        failed: dict = {}
    else:
        from xanesdb.platform.stores import get_database

        db = get_database(ensure=False)
        docs = list(db["feff_tasks"].find({"distortion": {"$ne": None}, "state": "successful"},
                                          {"_id": 0, "task_id": 1, "site_id": 1, "material_id": 1, "element": 1,
                                           "preset": 1, "distortion": 1, "energies": 1, "mu": 1, "mu0": 1,
                                           "wall_seconds": 1}))  # fmt: skip
        classes = {s["site_id"]: s.get("lce_class") for s in db["sites"].find(
            {"site_id": {"$in": sorted({d["site_id"] for d in docs})}}, {"_id": 0, "site_id": 1, "lce_class": 1})}  # fmt: skip
        for d in docs:
            d["lce_class"] = classes.get(d["site_id"])
        failed = {}
        for t in db["feff_tasks"].find({"distortion": {"$ne": None}, "state": "failed"}, {"_id": 0, "site_id": 1, "distortion": 1}):
            failed.setdefault(t["site_id"], []).append(t["distortion"])
    if args.site:
        docs = [d for d in docs if d["site_id"] in args.site]
    if args.shipped and not args.from_file:
        with gzip.open(SERIES_FILE, "rt") as f:
            shipped = {d["site_id"] for d in json.load(f)}
        docs = [d for d in docs if d["site_id"] in shipped]

    def on(dd) -> bool:
        return abs(dd / args.step - round(dd / args.step)) < 1e-6

    def aligned(e, mu, mu0):
        """The aligned run, or (run too close to its half step) NaN where it does not reach the grid; ok flag."""
        e = np.asarray(e, dtype=float)
        try:
            return align_computed(e, mu, mu0)["y"].astype(float), True
        except ValueError:
            n = normalize_computed(e, mu, mu0)
            t = ALIGNED_GRID + half_step_energy(e, n.norm, e0=n.e0)
            return np.where((t >= e[0]) & (t <= e[-1]), np.interp(t, e, n.norm), np.nan), False

    n_full = round(2 * 0.45 / args.step) + 1
    rows = []
    for s in series_from_docs(docs):
        g = series_on_grid(s, args.step)
        runs = {round(d["distortion"], 4): d for d in docs
                if d["site_id"] == s.site_id and d.get("preset", "") == s.preset and on(d["distortion"])}  # fmt: skip
        walls = [d["wall_seconds"] for d in runs.values() if d.get("wall_seconds") is not None]
        own = {dd: aligned(r["energies"], r["mu"], r["mu0"]) for dd, r in runs.items()}
        in_series = [float(dd) for i, dd in enumerate(g.distortions) if aligned(g.energies, g.mu[i], g.mu0[i])[1]]
        sig, part = {}, {}
        for dd in args.distortions:
            k = f"{dd:+.2f}"
            a, b = own.get(round(dd, 4)), own.get(0.0)
            if a is None or b is None:
                sig[k] = None
                continue
            diff = np.abs(a[0] - b[0])
            sig[k] = float(np.nanmean(diff))
            if np.isnan(diff).any():
                part[k] = float(ALIGNED_GRID[~np.isnan(diff)][0])  # the covered part starts here (eV)
        fl = failed.get(s.site_id, [])
        rows.append({"site_id": s.site_id, "element": s.element, "lce_class": s.lce_class, "preset": s.preset,
                     "runs": len(g.distortions), "of": n_full,
                     "failed": None if args.from_file else len([d for d in fl if on(d)]),
                     "wall_mean": float(np.mean(walls)) if walls else None,
                     "wall_min": float(np.min(walls)) if walls else None,
                     "wall_max": float(np.max(walls)) if walls else None, "signal": sig, "partial_from_ev": part,
                     "aligned_own_d": sorted(float(dd) for dd, (_, ok) in own.items() if ok),
                     "aligned_series_d": in_series})  # fmt: skip

    def rng(a):
        return f"{len(a)} ({min(a):+.2f}..{max(a):+.2f})" if a else "0"

    src = "--from-file" if args.from_file else "database"
    cols = " | ".join(f"d = {k} A" for k in rows[0]["signal"]) if rows else ""
    lines = [f"# Distortion series: runs, cost and signal ({args.step:g} A grid, {src})", "",
             f"| site | absorber, class | runs | failed now | s/run mean (range) | {cols} | runs that align: own energies | in the series |",
             "|---|---|---|---|---|" + "---|" * len(args.distortions) + "---|---|"]  # fmt: skip
    for r in rows:
        w = "-" if r["wall_mean"] is None else f"{r['wall_mean']:.1f} ({r['wall_min']:.0f}-{r['wall_max']:.0f})"
        f = "-" if r["failed"] is None else str(r["failed"])
        sg = " | ".join("n/a" if v is None else f"{v:.3f}" + ("*" if k in r["partial_from_ev"] else "")
                        for k, v in r["signal"].items())  # fmt: skip
        lines.append(f"| `{r['site_id']}` | {r['element']} {r['lce_class']} | {r['runs']}/{r['of']} | {f} | {w} | {sg} "
                     f"| {rng(r['aligned_own_d'])} | {rng(r['aligned_series_d'])} |")  # fmt: skip
    starts = sorted({f"{v:+.1f}" for r in rows for v in r["partial_from_ev"].values()})
    cmd = f"python benchmarks/bench_disorder.py signal{' --from-file' if args.from_file else ''}"
    cmd += " --shipped" if args.shipped and not args.from_file else ""
    lines += ["", ("signal: mean |y(d) - y(0)| over the aligned grid (100 points, -5..+44.5 eV around the half step), "
                   "each run aligned on its own energies (as `cost`). *: the run at d (or 0) does not reach 5 eV below "
                   "its half step (`align_computed` allows 3 eV of extrapolation and refuses it); the mean is over "
                   "the part of the grid both cover, from " + (", ".join(starts) or "-") + " eV. "
                   "s/run: FEFF wall seconds of the runs on the grid. failed now: runs stored `state=\"failed\"` "
                   "(database only; a run retried with --retry-failed counts as successful). Runs that align: how "
                   "many runs (and the range of their d) reach the aligned grid, on their own energies and in the "
                   "series as the MSD dataset reads it (every run on the energies of the d = 0 run)."),
              "", "```", cmd, "```", ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if not args.site and not args.from_file:  # the shipped table has the failure counts: from the database
        (RESULTS / "disorder_signal.md").write_text(text)
        (RESULTS / "disorder_signal.json").write_text(json.dumps(rows, indent=1))


def _kelvin(t: str) -> float:
    t = str(t).strip().lower()
    return 300.0 if t.startswith("room") else float(t.split()[0])


def cmd_msd(args) -> None:
    """MSD regression: held-out sites (leave one out) and the measured temperature series."""
    from scipy.stats import spearmanr

    from xanesdb.ml.disorder import (
        complete_series,
        held_out_sites,
        make_msd_dataset,
        msd_config,
        regression_dataset,
        relative_dataset,
    )
    from xanesdb.ml.regression import all_networks, train_regression_on_dataset
    from xanesdb.xas.align import align_measured

    # each series on the --step grid (the 0.01 A series of a site enters as its 0.05 A subset)
    series = complete_series(_load(args, None if args.pool else args.element), step=args.step)  # a run or two may have failed
    print(f"{len(series)} complete series: {[s.site_id for s in series]}", flush=True)
    ds = make_msd_dataset(series, args.n_weightings, seed=args.seed)
    y_all = ds.target("variance")
    if args.relative:
        ds = relative_dataset(ds, seed=args.seed)
    t0 = time.time()
    trained = (f"trained on all {len(series)} series of {', '.join(sorted({x.element for x in series}))}, the {args.element} "
               "sites held out one at a time; ") if args.pool else ""
    lines = [(f"MSD regression ({args.element} K edge, {trained}fastlite distortion series, {args.step:g} A steps; {args.n_weightings} "
             f"weightings per site from seed {args.seed}: mu U(-0.1, 0.1) A, sigma log-U(0.02, 0.15) A, half "
             f"Gaussian, half skew-normal alpha U(-4, 4)); aligned representation"),
             f"MSD range {ds.msd.min():.4f}..{ds.msd.max():.4f} A^2, mean {ds.msd.mean():.4f}; of it the squared mean "
             f"distortion {np.mean(ds.mean**2):.4f}, the variance {np.mean(y_all):.4f}",
             f"target: {args.target}" + (" (MSD - mean^2, the spread about the mean distortion)" if args.target == "variance" else
                                          " (sum w d^2)")
             + ("; relative: each disordered spectrum less another of the same site (seeded), labelled by the difference "
                "of the targets; measured series less their lowest temperature" if args.relative else "")]  # fmt: skip
    results: dict = {"sites": list(ds.sites), "n_rows": len(ds.X), "seed": args.seed, "n_weightings": args.n_weightings,
                     "weightings_first10": ds.weightings[:10].tolist(), "target": args.target, "relative": args.relative, "families": {}}  # fmt: skip
    held = [x.site_id for x in series if x.element == args.element]
    yt = ds.target(args.target)
    for fam in args.families:
        cfg = msd_config(family=fam, epochs=args.epochs, seed=args.seed, labels=(args.target,))
        loso = held_out_sites(ds, cfg, held, args.target) if len(ds.sites) > 1 else {"sites": {}, "mae": float("nan"), "mae_baseline": float("nan")}
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
    Xm = np.stack([align_measured(s.energy, s.mu)["y"] for _, s in recs]).astype("float32")
    if args.relative:  # each compound's spectra less its lowest temperature's
        for comp in {r["formula"] for r, _ in recs}:
            idx = [i for i, (r, _) in enumerate(recs) if r["formula"] == comp]
            ref = Xm[min(idx, key=lambda i: _kelvin(recs[i][0]["temperature"]))].copy()
            Xm[idx] -= ref
    for fam in args.families:
        model, _, _ = train_regression_on_dataset(regression_dataset(ds, target=args.target),
                                                  msd_config(family=fam, epochs=args.epochs, seed=args.seed, labels=(args.target,)))
        pred = all_networks(model, Xm).mean(axis=1)[:, 0]
        measured: dict = {}
        for (r, _), p in zip(recs, pred):
            measured.setdefault(r["formula"], []).append((_kelvin(r["temperature"]), float(p), r["id"]))
        lines.append(f"measured temperature series, predicted {args.target} ({fam} trained on all {len(ds.sites)} sites; "
                     f"training range {yt.min():.3f}..{yt.max():.3f}):")  # fmt: skip
        for comp, pts in measured.items():
            pts.sort()
            rho = float(spearmanr([t for t, _, _ in pts], [p for _, p, _ in pts]).statistic)
            results["families"][fam].setdefault("measured", {})[comp] = {"points": pts, "spearman": rho}
            lines.append(f"    {comp}: " + ", ".join(f"{t:g} K {p:.4f}" for t, p, _ in pts) + f"  Spearman rho {rho:+.2f}")
    lines.append(f"({time.time() - t0:.0f} s)")
    text = "\n".join(lines) + "\n"
    print(text)
    stem = f"disorder_msd_{args.element}" + ("_pooled" if args.pool else "") + ("_variance" if args.target == "variance" else "") + ("_relative" if args.relative else "") + args.tag
    (RESULTS / f"{stem}.txt").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1, default=float))
    _plot(results, args.families, RESULTS / f"{stem}.png")


SIGMA_BINS = ((0.02, 0.03), (0.03, 0.05), (0.05, 0.08), (0.08, 0.15), (0.02, 0.05), (0.02, 0.15))


def cmd_step(args) -> None:
    """The fine series (0.01 A) against its coarse subset (every 5th run, 0.05 A) for the same weightings."""
    from scipy.stats import skewnorm

    from xanesdb.ml.disorder import (
        disordered_spectra,
        msd_of,
        sample_weightings,
        series_on_grid,
        series_weights,
    )
    from xanesdb.xas.align import align_computed

    found = {s.site_id: s for s in _load(args, args.element)}
    if args.site not in found:
        sys.exit(f"no series of {args.site} (have {sorted(found)})")
    full = found[args.site]
    fine, coarse = series_on_grid(full, args.fine), series_on_grid(full, args.coarse)
    n_fine, n_coarse = round(0.9 / args.fine) + 1, round(0.9 / args.coarse) + 1
    print(f"{args.site}: {len(fine.distortions)} of {n_fine} runs at {args.fine:g} A, "
          f"{len(coarse.distortions)} of {n_coarse} at {args.coarse:g} A", flush=True)  # fmt: skip
    if len(coarse.distortions) < n_coarse:
        sys.exit(f"the {args.coarse:g} A subset is incomplete")

    def run_y(s, i, mu=None, mu0=None):  # None where the aligned window is not covered (large |d|)
        try:
            return align_computed(s.energies, s.mu[i] if mu is None else mu, s.mu0[i] if mu0 is None else mu0)["y"]
        except ValueError:
            return None

    i0, i2 = (int(np.argmin(np.abs(fine.distortions - d))) for d in (0.0, 0.2))
    signal = float(np.mean(np.abs(run_y(fine, i2) - run_y(fine, i0))))
    W = sample_weightings(args.n_weightings, args.seed)
    Xf, mf, okf = disordered_spectra(fine, W)
    Xc, mc, okc = disordered_spectra(coarse, W)
    ok = okf & okc
    spec = np.mean(np.abs(Xf - Xc), axis=1)  # per weighting, on the aligned grid
    dmsd = np.abs(mf - mc)
    mean_, var_ = skewnorm.stats(W[:, 2], loc=W[:, 0], scale=W[:, 1], moments="mv")
    m_cont = np.asarray(var_) + np.asarray(mean_) ** 2  # E[d^2] of the (untruncated) continuous weighting
    sig = W[:, 1]
    rows = []
    for lo, hi in SIGMA_BINS:
        r = ok & (sig >= lo) & (sig <= hi if hi >= 0.15 else sig < hi)
        rows.append({"sigma": [lo, hi], "n": int(r.sum()), "spec_mad": float(spec[r].mean()),
                     "spec_mad_rel": float(spec[r].mean() / signal), "spec_p95_rel": float(np.percentile(spec[r], 95) / signal),
                     "msd_mad": float(dmsd[r].mean()), "msd_rel": float(np.median(dmsd[r] / mf[r])),
                     "msd_fine": float(mf[r].mean()),
                     "cont_err_fine": float(np.mean(np.abs(mf[r] - m_cont[r]))),
                     "cont_err_coarse": float(np.mean(np.abs(mc[r] - m_cont[r])))})  # fmt: skip
    # the runs between the coarse grid points against linear interpolation of the coarse runs (mu, mu0)
    off = [i for i, d in enumerate(fine.distortions) if abs(d / args.coarse - round(d / args.coarse)) > 1e-6]
    interp = []
    for i in off:
        d = fine.distortions[i]
        mu = np.array([np.interp(d, coarse.distortions, coarse.mu[:, k]) for k in range(coarse.mu.shape[1])])
        mu0 = np.array([np.interp(d, coarse.distortions, coarse.mu0[:, k]) for k in range(coarse.mu0.shape[1])])
        ya, yb = run_y(fine, i, mu, mu0), run_y(fine, i)
        if ya is not None and yb is not None:
            interp.append((float(d), float(np.mean(np.abs(ya - yb)))))
    ys = [run_y(fine, i) for i in range(len(fine.distortions))]
    steps_ok = np.isclose(np.diff(fine.distortions), args.fine)
    step_mad = [(float(fine.distortions[i + 1]), float(np.mean(np.abs(b - a))))
                for i, (a, b, k) in enumerate(zip(ys, ys[1:], steps_ok)) if a is not None and b is not None and k]  # fmt: skip
    neighbour = float(np.mean([m for _, m in step_mad]))  # one fine step, aligned runs
    med = float(np.median([m for _, m in step_mad]))
    jumps = [(d, m) for d, m in step_mad if m > 2 * med]  # steps of the series well above the typical one
    y0 = ys[i0]
    curve = [(float(d), float(np.mean(np.abs(y - y0)))) for d, y in zip(fine.distortions, ys) if y is not None]
    # a Gaussian of width 0.02 A slid across d = -0.1..+0.1: the labels each grid gives
    mus = np.round(np.arange(-0.1, 0.1001, 0.002), 4)
    sweep = {"mu": mus.tolist(), "sigma": 0.02}
    for name, s in (("fine", fine), ("coarse", coarse)):
        sweep[name] = [msd_of(s.distortions, series_weights(s.distortions, m, 0.02)) for m in mus]
    sweep["continuous"] = (mus**2 + 0.02**2).tolist()

    cmd = f"python benchmarks/bench_disorder.py step{' --from-file' if args.from_file else ''}"
    cmd += f" --site '{args.site}' --seed {args.seed} --n-weightings {args.n_weightings}"
    lines = [f"# Distortion step: {args.fine:g} A series against its {args.coarse:g} A subset", "",
             (f"Site `{args.site}` (`fastlite`): {len(fine.distortions)} runs at {args.fine:g} A steps "
              f"(of {n_fine}), the {len(coarse.distortions)} at {args.coarse:g} A being every 5th of them. "
              f"{int(ok.sum())} weightings (`sample_weightings({args.n_weightings}, seed={args.seed})`: mu U(-0.1, 0.1) A, "
              f"sigma log-U(0.02, 0.15) A, half Gaussian, half skew-normal alpha U(-4, 4)) applied to both; "
              f"differences per weighting, averaged over the weightings of each sigma bin."), "",
             (f"Spectrum signal: mean |y(d=+0.2) - y(d=0)| of the aligned runs = {signal:.4f}. One {args.fine:g} A step "
              f"changes an aligned run by {neighbour:.4f} on average (median {med:.4f}; {len(step_mad)} steps between runs "
              f"that align, d <= {max(d for d, _ in curve):+.2f} A); {len(jumps)} steps are over twice the median: ")
             + ", ".join(f"{d - args.fine:+.2f} -> {d:+.2f} A {m:.4f}" for d, m in jumps) + ".", "",
             ("| sigma (A) | n | spectrum MAD | / signal | 95th pct / signal | MSD MAD (A^2) | median rel. MSD diff "
              "| mean MSD (A^2) | MSD err. vs continuous, 0.01 / 0.05 (A^2) |"),
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['sigma'][0]:.2f}-{r['sigma'][1]:.2f} | {r['n']} | {r['spec_mad']:.4f} | {100 * r['spec_mad_rel']:.1f}% "
                     f"| {100 * r['spec_p95_rel']:.1f}% | {r['msd_mad']:.5f} | {100 * r['msd_rel']:.1f}% | {r['msd_fine']:.5f} "
                     f"| {r['cont_err_fine']:.5f} / {r['cont_err_coarse']:.5f} |")  # fmt: skip
    im = np.array([m for _, m in interp])
    worst = max(interp, key=lambda t: t[1])
    lines += ["", (f"Runs between the {args.coarse:g} A grid points ({len(im)} of {len(off)} whose spectrum aligns) against "
              f"the linear interpolation (in d) of the two {args.coarse:g} A runs around them (mu and mu0, then aligned): "
              f"MAD {im.mean():.4f} ({100 * im.mean() / signal:.1f}% of the signal; |d| <= 0.2 A: "
              f"{100 * np.mean([m for d, m in interp if abs(d) <= 0.2]) / signal:.1f}%), worst {worst[1]:.4f} at "
              f"d = {worst[0]:+.2f} A."), "",
              ("spectrum MAD: mean over the aligned grid of |average over the 0.01 A series - average over the 0.05 A "
              "subset|; MSD MAD: mean |MSD(0.01) - MSD(0.05)|; MSD err. vs continuous: mean |sum w d^2 - E[d^2]| with "
              "E[d^2] = var + mean^2 of the untruncated skew-normal."), "", "```", cmd, "```", "",
              "![step](disorder_step.png)", ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    tag = "" if args.site == "proto:perovskite:A=Sr,B=Ti:Ti:1" else "_" + args.site.replace(":", "_").replace(",", "_").replace("=", "")
    (RESULTS / f"disorder_step{tag}.md").write_text(text)
    out = {"site": args.site, "n_fine": len(fine.distortions), "n_coarse": len(coarse.distortions), "seed": args.seed,
           "n_weightings": args.n_weightings, "signal": signal, "neighbour_step_mad": neighbour, "bins": rows,
           "interp": interp, "sweep": sweep, "step_mad": step_mad, "jumps": jumps, "curve": curve,
           "coarse_d": coarse.distortions.tolist(),
           "per_weighting": {"mu": W[:, 0].tolist(), "sigma": sig.tolist(), "alpha": W[:, 2].tolist(), "ok": ok.tolist(),
                             "spec_mad": spec.tolist(), "msd_fine": mf.tolist(), "msd_coarse": mc.tolist(),
                             "msd_continuous": m_cont.tolist()}}  # fmt: skip
    (RESULTS / f"disorder_step{tag}.json").write_text(json.dumps(out, default=float))
    _plot_step(out, RESULTS / f"disorder_step{tag}.png")


def _plot_step(o: dict, path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(18, 4.2), dpi=110)
    ax0, ax1, ax2, ax3 = fig.subplots(1, 4)
    cd, cm = zip(*o["curve"])
    coarse = {round(d, 4) for d in o["coarse_d"]}
    ax0.plot(cd, cm, ".-", ms=4, label="0.01 A series")
    ax0.plot([d for d, m in o["curve"] if round(d, 4) in coarse], [m for d, m in o["curve"] if round(d, 4) in coarse],
             "o-", mfc="none", label="0.05 A subset")  # fmt: skip
    ax0.set(xlabel="d (A)", ylabel="mean |y(d) - y(0)|", title="aligned runs (those that align)")
    ax0.legend(fontsize=8)
    sw = o["sweep"]
    for k, st in (("continuous", "k--"), ("fine", "-"), ("coarse", "-")):
        ax1.plot(sw["mu"], sw[k], st, label={"fine": "0.01 A series", "coarse": "0.05 A subset",
                                             "continuous": "mu^2 + sigma^2"}[k])  # fmt: skip
    ax1.set(xlabel="mu (A), Gaussian sigma 0.02 A", ylabel="MSD label (A^2)", title="label of a narrow weighting")
    ax1.legend(fontsize=8)
    pw = o["per_weighting"]
    ok = np.asarray(pw["ok"])
    sig = np.asarray(pw["sigma"])[ok]
    ax2.scatter(sig, 100 * np.asarray(pw["spec_mad"])[ok] / o["signal"], s=4, alpha=0.5)
    ax2.set(xscale="log", xlabel="sigma (A)", ylabel="% of the d=0 vs +0.2 A signal",
            title="disordered spectrum: 0.01 A vs 0.05 A steps")  # fmt: skip
    mf, mc = np.asarray(pw["msd_fine"])[ok], np.asarray(pw["msd_coarse"])[ok]
    ax3.scatter(sig, np.abs(mc - mf), s=4, alpha=0.5, label="|MSD(0.05) - MSD(0.01)|")
    ax3.set(xscale="log", xlabel="sigma (A)", ylabel="A^2", title="MSD label: 0.01 A vs 0.05 A steps")
    ax3.legend(fontsize=8)
    for ax in (ax2, ax3):
        ax.axvspan(0.02, 0.05, color="0.9", zorder=0)
        ax.set_xticks([0.02, 0.03, 0.05, 0.08, 0.15])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(f"{o['site']}: {o['n_fine']} runs at 0.01 A, {o['n_coarse']} at 0.05 A, {int(ok.sum())} weightings")
    fig.tight_layout()
    fig.savefig(path)


def _plot(results: dict, families, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    fam = min(families, key=lambda f: results["families"][f]["held_out"]["mae"])
    loso = results["families"][fam]["held_out"]
    for sid, r in loso["sites"].items():
        ax1.scatter(r["true"], r["pred"], s=4, alpha=0.4, label=f"{sid} (MAE {r['mae']:.4f})")
    hi = max([max(r["true"] + r["pred"]) for r in loso["sites"].values()] or [0.04])
    lo = min([min(r["true"] + r["pred"]) for r in loso["sites"].values()] + [0.0])
    ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    name = {"msd": "MSD", "variance": "variance (MSD - mean^2)"}[results.get("target", "msd")]
    if results.get("relative"):
        name = "change of " + name
    ax1.set(xlabel=f"true {name} (A^2)", ylabel=f"predicted {name} (A^2)",
            title=f"{fam}, each site held out (MAE {loso['mae']:.4f}, baseline {loso['mae_baseline']:.4f})")  # fmt: skip
    ax1.legend(fontsize=6, markerscale=3)
    for f, ls in zip(families, ("-", "--", ":")):
        for comp, m in results["families"][f].get("measured", {}).items():
            pts = m["points"]
            ax2.plot([t for t, _, _ in pts], [p for _, p, _ in pts], "o" + ls,
                     label=f"{comp}, {f} (Spearman {m['spearman']:+.2f})")  # fmt: skip
    ax2.set(xlabel="temperature (K)", ylabel=f"predicted {name} (A^2)", title="measured Ti K-edge temperature series")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
