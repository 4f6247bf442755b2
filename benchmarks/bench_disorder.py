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
                                  preset=args.preset, site_id=sid, workdir=work,
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
    m = sub.add_parser("msd")
    m.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    {"cost": cmd_cost, "series": cmd_series, "msd": lambda a: cmd_msd(a)}[args.cmd](args)


def cmd_msd(args) -> None:  # filled in below (item 3)
    raise SystemExit("msd: not yet")


if __name__ == "__main__":
    main()
