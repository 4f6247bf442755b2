"""Which core hole brings FEFF closest to measured spectra: FSR (``scflite``) or RPA (``scfrpa``)?

Every preset xanesdb computes with puts an unscreened core hole on the absorber (FEFF's final
state rule, ``COREHOLE FSR``, as pymatgen's ``MPXANESSet``); OmniXAS's FEFF9 runs screen it in the
random-phase approximation (``COREHOLE RPA``). This benchmark computes both, with the same
self-consistent potential and FMS radius, for the sites of reference compounds measured in
``../shared/data/experimental_dev`` (the compound itself, or for EuTiO3 the SrTiO3 perovskite with
the same cell), and compares each with its measured twin on the aligned grid (from -1 eV, what
the models read):

- ``raw``: root-mean-square difference without any map;
- ``global``: with the computed-to-measured map (:mod:`xanesdb.xas.calibration`) fitted on all
  pairs of that preset, and ``held out``: with the map refitted without the pair's absorber;
- ``own``: with the map fitted to that pair alone (what no stretch, broadening or damping fixes).

FEFF runs go through ``populate_feff`` into the current database (resumable: a second run only
computes what is missing), so they are tasks like any other.

    XANESDB_HOME=<bundled database> python benchmarks/bench_core_hole.py [--presets scflite,scfrpa] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_measured import load_records  # noqa: E402

from xanesdb.jobs.feff.local import populate_feff  # noqa: E402
from xanesdb.platform.settings import get_settings  # noqa: E402
from xanesdb.platform.stores import get_database  # noqa: E402
from xanesdb.xas.align import ALIGNED_GRID, align_computed, align_measured  # noqa: E402
from xanesdb.xas.calibration import FIT_FROM_EV, fit_calibration  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental_dev"

#: (measured record ids, material id, absorber): the structure each record was measured on
PANEL = [
    (("lx_mn_rhodochrosite", "lx_school_mnco3"), "lit:calcite:MnCO3", "Mn"),
    (("lx_mn_mno", "lx_school_mno", "lx_mnall_mno_good", "lx_mnbv_mno"), "proto:rocksalt:B=Mn", "Mn"),
    (("lx_mn_pyrolusite", "lx_school_mno2"), "proto:rutile:B=Mn", "Mn"),
    (("lx_fe_hematite", "lx_school_fe2o3"), "mp-19770", "Fe"),
    (("lx_school_feo",), "lit:rocksalt:FeO", "Fe"),
    (("lx_als_chromite",), "lit:spinel:FeCr2O4", "Fe"),
    (("lx_als_hercynite",), "lit:spinel:FeAl2O4", "Fe"),
    (("lx_nio",), "lit:rocksalt:NiO", "Ni"),
    (("lx_v_v2o3",), "proto:corundum:B=V", "V"),
    (("lx_v_vo2",), "lit:vo2_m1:VO2", "V"),
    (("lx_eutio3_300K",), "proto:perovskite:A=Sr,B=Ti", "Ti"),
]


def compute(presets, workers: int) -> None:
    settings = get_settings()
    for preset in presets:
        for el in sorted({el for _, _, el in PANEL}):
            mats = sorted({m for _, m, e in PANEL if e == el})
            t0 = time.time()
            s = populate_feff(settings, elements=[el], preset=preset, workers=workers, material_ids=mats)
            if s.n_pending:
                print(f"  {preset} {el}: {s.n_pending} site(s) run, {s.n_failed} failed, {time.time() - t0:.0f} s",
                      flush=True)


def computed_spectra(db, preset: str) -> dict[str, np.ndarray]:
    out = {}
    for _, mat, el in PANEL:
        t = db["feff_tasks"].find_one({"material_id": mat, "element": el, "preset": preset, "state": "successful"},
                                      {"energies": 1, "mu": 1})
        if t is None:
            continue
        a = align_computed(t["energies"], t["mu"], off_grid_ok=True)
        if a["y"] is not None:
            out[mat] = np.asarray(a["y"], dtype=float)
    return out


def rmse(c, m) -> float:
    sel = ALIGNED_GRID >= FIT_FROM_EV
    return float(np.sqrt(np.mean((np.asarray(c)[sel] - np.asarray(m)[sel]) ** 2)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="scflite,scfrpa")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "core_hole"))
    ap.add_argument("--no-compute", action="store_true", help="only compare the tasks already in the database")
    args = ap.parse_args(argv)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if not args.no_compute:
        compute(presets, args.workers)
    db = get_database(get_settings())
    measured = {}
    for r, s in load_records(DATA):
        measured[r["id"]] = np.asarray(align_measured(s.energy, s.mu)["y"], dtype=float)
    comp = {p: computed_spectra(db, p) for p in presets}
    pairs = [(rid, mat, el) for rids, mat, el in PANEL for rid in rids if all(mat in comp[p] for p in presets)]
    missing = sorted({mat for _, mat, _ in PANEL} - {mat for _, mat, _ in pairs})
    rows, summary, fits = [], {}, {}
    for p in presets:
        C = np.stack([comp[p][mat] for _, mat, _ in pairs])
        M = np.stack([measured[rid] for rid, _, _ in pairs])
        cal = fit_calibration(C, M, ALIGNED_GRID, pairs=[{"measured": r, "absorber": el} for r, _, el in pairs],
                              provenance=f"bench_core_hole {p}")
        fits[p] = cal
        for i, (rid, mat, el) in enumerate(pairs):
            without = cal.without(el)  # the map refitted without this absorber's pairs
            rows.append({"preset": p, "record": rid, "material": mat, "absorber": el,
                         "raw": rmse(C[i], M[i]),
                         "global": rmse(cal.apply(C[i], ALIGNED_GRID)[0], M[i]),
                         "held_out": rmse(without.apply(C[i], ALIGNED_GRID)[0], M[i]),
                         "own": cal.per_pair[i]["rmse"]})  # fmt: skip
        mine = [r for r in rows if r["preset"] == p]
        summary[p] = {k: float(np.mean([r[k] for r in mine])) for k in ("raw", "global", "held_out", "own")}
        summary[p]["map"] = cal.params()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# XANESDB_HOME=<bundled database> python benchmarks/bench_core_hole.py --presets {args.presets}",
             f"# {len(pairs)} measured records of {len({m for _, m, _ in pairs})} compounds; RMSE in edge-step units "
             f"from {FIT_FROM_EV:g} to +44.5 eV of the half step" + (f"; no spectrum for {', '.join(missing)}" if missing else ""),
             "", "| preset | raw | global map | map without the absorber | own map | global map (shift, stretch, sigma, damping) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for p in presets:
        s = summary[p]
        m = s["map"]
        lines.append(f"| {p} | {s['raw']:.3f} | {s['global']:.3f} | {s['held_out']:.3f} | {s['own']:.3f} | "
                     f"{m['shift']:g}, {m['stretch']:g}, {m['sigma']:g}, {m['damping']:g} |")
    lines += ["", "per record (global map / map without the absorber / own map):", "",
              "| record | compound | " + " | ".join(presets) + " |", "|---|---|" + "---|" * len(presets)]
    for rid, mat, el in pairs:
        cells = []
        for p in presets:
            r = next(x for x in rows if x["preset"] == p and x["record"] == rid)
            cells.append(f"{r['global']:.3f} / {r['held_out']:.3f} / {r['own']:.3f}")
        lines.append(f"| {rid} | {mat} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".txt").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    print(text)
    _png(out.with_suffix(".png"), pairs, measured, comp, fits, presets)
    return 0


def _png(path: Path, pairs, measured, comp, fits, presets) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    firsts = {}
    for rid, mat, el in pairs:
        firsts.setdefault(mat, rid)
    n = len(firsts)
    cols = 4
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.2 * ((n + cols - 1) // cols)),
                             squeeze=False)  # fmt: skip
    for ax, (mat, rid) in zip(axes.flat, firsts.items()):
        ax.plot(ALIGNED_GRID, measured[rid], "k", lw=2, label=f"measured {rid}")
        for p in presets:
            ax.plot(ALIGNED_GRID, fits[p].apply(comp[p][mat], ALIGNED_GRID)[0], label=f"{p} (global map)")
        ax.set_title(mat, fontsize=9)
        ax.set_xlim(-5, 44.5)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.supxlabel("E - E(half step) / eV")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
