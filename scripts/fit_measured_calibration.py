"""Fit the computed -> measured calibration (:mod:`xanesdb.xas.calibration`) on reference compounds.

A pair is one measured spectrum of a reference compound (a labelled Athena group) and the computed
spectrum of the *same phase* in the database: the material is named below, because a formula
alone does not say the phase (the bundled database holds Fe2O3 polymorphs with T4 and S5 sites
that hematite does not have). Computed spectra of the ``fast`` preset are first corrected towards
``scf`` (:mod:`xanesdb.xas.fidelity`), as training does, so the calibration maps SCF-quality
spectra to measured ones. The fit is refitted leaving each absorber out; those numbers say how
well the map carries to an absorber it never saw, and ``benchmarks/bench_measured.py`` scores each
absorber with the calibration fitted without it.

    xanesdb db load-bundled && xanesdb spectra build
    python scripts/fit_measured_calibration.py [--data ../shared/data/experimental_dev] [--png calibration.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xanesdb.xas.calibration import CALIBRATION_DIR, fit_calibration

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental_dev"

#: labelled record -> material of the same phase in the bundled database (and why)
REFERENCE_PHASES = {
    "lx_fe_hematite": "mp-19770",  # alpha-Fe2O3, corundum type, R-3c
    "lx_school_fe2o3": "mp-19770",  # the same hematite standard (school set)
    "lx_mn_pyrolusite": "proto:rutile:B=Mn",  # beta-MnO2 is rutile type
    "lx_school_mno2": "proto:rutile:B=Mn",  # commercial MnO2 standard (pyrolusite)
    "lx_school_mno": "proto:rocksalt:B=Mn",  # MnO, rock salt
    "lx_mn_mno": "proto:rocksalt:B=Mn",
    "lx_mnall_mno_good": "proto:rocksalt:B=Mn",
    "lx_mnbv_mno": "proto:rocksalt:B=Mn",
    "lx_v_v2o3": "proto:corundum:B=V",  # V2O3, corundum type above its 150 K transition
    "lx_v_vo2": "proto:rutile:B=V",  # VO2, rutile type (monoclinic M1 below 340 K: a distorted rutile)
    "lx_als_chromite": "lit:spinel:FeCr2O4",  # normal spinel, Fe2+ tetrahedral (natural: some Mg, Al, Fe3+)
}
# left out on purpose: Mn2O3 (bixbyite; the database's Mn2O3 is corundum type), ramsdellite
# (not rutile), every mixed or ambiguous record, and hercynite: against ideal normal FeAl2O4 its
# best per-pair map still leaves RMSE 0.12-0.14 (the worst of all pairs) and needs its features
# amplified 1.45-1.5x, the mark of a sample that is not that phase (natural hercynite carries
# inversion, Fe2+ on octahedral sites, and Fe3+); as a pair its residual also taught the outlier
# test to accept it, and the Fe model then answered it O6 at 0.99


def main(argv: list[str] | None = None) -> int:
    from xanesdb.ml.aligned import ALIGNED_GRID
    from xanesdb.ml.calibrate import Reference, calibration_pairs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--fidelity", default="scf", help="Correct fast spectra towards this preset first.")
    ap.add_argument("--out", type=Path, default=CALIBRATION_DIR / "k-edge.json")
    ap.add_argument("--png", type=Path, default=None, help="Draw every pair before and after.")
    args = ap.parse_args(argv)
    records = {r["id"]: r for r in json.loads((args.data / "labels.json").read_text())}
    refs = [Reference(file=str(args.data / records[rid]["athena_file"]), group=records[rid]["athena_group"],
                      material_id=material, lce_class=records[rid]["expected_class"], name=rid)
            for rid, material in REFERENCE_PHASES.items()]  # fmt: skip
    C, M, pairs = calibration_pairs(refs, fidelity=args.fidelity or None)
    note = (f"scripts/fit_measured_calibration.py on {len(pairs)} pairs of {len(refs)} measured records "
            f"({args.data.name}); fast spectra corrected towards {args.fidelity or 'nothing'} first")  # fmt: skip
    cal = fit_calibration(C, M, ALIGNED_GRID, pairs, provenance=note)
    cal.save(args.out)
    print(json.dumps({**cal.params(), "n_pairs": cal.n_pairs, "rmse_before": round(cal.rmse_before, 4),
                      "rmse_after": round(cal.rmse_after, 4)}))  # fmt: skip
    for el, h in cal.held_out.items():
        print(f"  without {el}: shift {h['shift']}, stretch {h['stretch']}, sigma {h['sigma']}, damping {h['damping']}; "
              f"{el}'s {h['n_own']} pairs RMSE {h['rmse_own_before']:.3f} -> {h['rmse_own_after']:.3f}")  # fmt: skip
    if args.png:
        _png(C, M, pairs, cal, ALIGNED_GRID, args.png)
    return 0


def _png(C, M, pairs, cal, grid, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen, idx = set(), []
    for i, p in enumerate(pairs):  # one panel per measured record and preset
        key = (p["measured"], p["preset"])
        if key not in seen:
            seen.add(key)
            idx.append(i)
    n = len(idx)
    cols = 4
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4 * cols, 3 * ((n + cols - 1) // cols)), squeeze=False)
    A = cal.apply(C, grid)
    for ax, i in zip(axes.flat, idx):
        p = pairs[i]
        ax.plot(grid, M[i], "k", lw=2, label="measured")
        ax.plot(grid, C[i], "C0", lw=1, alpha=0.7, label=f"computed ({p['preset']})")
        ax.plot(grid, A[i], "C3", lw=1.2, label="calibrated")
        ax.set_title(f"{p['measured']} ({p['absorber']} {p['lce_class']}; {p['preset']})", fontsize=8)
        ax.set_xlabel("E - E(half step) (eV)", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"computed -> measured calibration: stretch {cal.stretch:g}, shift {cal.shift:g} eV, "
                 f"Gaussian {cal.sigma:g} eV, damping {cal.damping:g}; RMSE {cal.rmse_before:.3f} -> {cal.rmse_after:.3f}")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
