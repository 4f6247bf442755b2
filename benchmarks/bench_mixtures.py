"""Site fractions (issue 21 item 4): held-out real mixed-site materials and the measured records.

For each absorber one fractions run (:func:`xanesdb.ml.mixtures.train_fractions_from_query`, the
same as ``xanesdb train --task fractions``) on its ``fast`` aligned site spectra: folds over the
materials with several classes of site, each held out once (no site of a scored material in any
training mixture), scored by the MAE of the O6/S5/T4 fractions against two baselines. The
registered network then predicts the measured records of that absorber in
``../shared/data/experimental_dev`` (``labels.json`` site fractions; Mn3O4: T4 1/3, O6 2/3;
ferrihydrite: O6 0.8, T4 0.2), aligned as ``xanesdb predict`` aligns them.

With ``--calibration k-edge`` every site spectrum is mapped to what a measurement of it looks like
(:mod:`xanesdb.xas.calibration`) before mixing; each absorber's run uses the calibration refitted
without that absorber's own reference pairs (``.without(el)``), so its measured records are scored
by a map that never saw them.

    XANESDB_HOME=/tmp/h21 xanesdb db load-bundled && xanesdb spectra build
    python benchmarks/bench_mixtures.py [--elements Fe Mn Co] [--epochs 40]
    python benchmarks/bench_mixtures.py --fidelity scf --tag _scf --elements Fe Mn
    python benchmarks/bench_mixtures.py --fidelity scf --calibration k-edge --tag _cal --elements Fe Mn

Writes benchmarks/results/mixtures.{txt,json} and mixtures_parity_<el>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = HERE.parents[1] / "shared" / "data" / "experimental_dev"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--elements", nargs="+", default=["Fe", "Mn", "Co"])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", default=None, help="scf: fast spectra warped towards the scf preset before mixing")
    p.add_argument("--calibration", default=None,
                   help="k-edge or a .json file: computed -> measured calibration of the site spectra before mixing, "
                        "for each absorber refitted without its own reference pairs")  # fmt: skip
    p.add_argument("--class-prior", default="sites", choices=("sites", "uniform"),
                   help="random mixtures pick classes as often as they occur among the sites, or alike")
    p.add_argument("--max-classes", type=int, default=2, help="most classes in one random mixture (real materials rarely have three)")
    p.add_argument("--material-repeats", type=int, default=None,
                   help="copies of each training material's exact average (default: MixtureConfig's)")
    p.add_argument("--per-class", type=int, default=None, help="most site spectra per class in a random mixture")
    p.add_argument("--measured-share", type=float, default=None,
                   help="share of training rows given a measured-like distortion (default: MixtureConfig's)")
    p.add_argument("--tag", default="", help="suffix of the result files")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_measured import load_records

    from xanesdb.commands.fractions import plot_fraction_parity
    from xanesdb.ml.mixtures import CLASSES, MixtureConfig, fractions_of_measured, train_fractions_from_query

    records = load_records(SHARED)
    out: dict = {"config": {}, "absorbers": {}}
    full_cal = None
    if args.calibration is not None:
        from xanesdb.ml.mixtures import resolve_mixture_calibration

        full_cal = resolve_mixture_calibration(args.calibration)
    lines = ["site fractions O6/S5/T4: MAE on held-out real materials (exact multiplicity-weighted averages of "
             "their fast-preset site spectra, folds over materials) and on measured records",
             f"fidelity: {args.fidelity or 'none (as computed)'}; computed -> measured calibration: " +
             (f"{args.calibration}, for each absorber refitted without its own reference pairs (.without(el)), "
              "applied to every site spectrum before mixing; the measured records of an absorber are scored by "
              "its run with that calibration" if full_cal is not None else "none"),
             f"{'abs.':<4} {'sites':>5} {'mater.':>6} {'mixed':>5} | {'MAE mixed':>9} {'mean bl.':>8} {'NNLS bl.':>8} | "
             f"{'MAE all':>7} {'mean bl.':>8} {'NNLS bl.':>8} | {'measured MAE (n)':>16} | run"]  # fmt: skip
    measured_lines = []
    cal_lines = []
    for el in args.elements:
        cal = None
        if full_cal is not None:
            c = full_cal.without(el)
            cal = {**c.params(), "provenance": c.provenance}
            cal_lines.append(f"{el}: calibration {args.calibration} without {el}: " +
                             " ".join(f"{k} {v:g}" for k, v in c.params().items()) + f" ({c.n_pairs} pairs)")  # fmt: skip
        cfg = MixtureConfig(n_folds=args.folds, epochs=args.epochs, seed=args.seed, fidelity=args.fidelity,
                            calibration=cal, class_prior=args.class_prior, max_classes=args.max_classes,
                            **{k: v for k, v in (("material_repeats", args.material_repeats), ("per_class", args.per_class),
                                                 ("measured_share", args.measured_share)) if v is not None})  # fmt: skip
        out["config"] = cfg.as_dict() if cal is None else {**cfg.as_dict(), "calibration": args.calibration}
        t0 = time.time()
        q = {"element": el, "source": "xanesdb", "preset": "fast", "edge": "K"}
        res = train_fractions_from_query(q, cfg)
        m, doc = res.doc.metrics, res.doc
        plot_fraction_parity(doc, RESULTS / f"mixtures{args.tag}_parity_{el}.png")
        recs = [(r, s) for r, s in records if r["absorber"] == el]
        rows = fractions_of_measured(res.model, [s for _, s in recs])
        meas = []
        for (r, _), row in zip(recs, rows):
            true = [float(r["site_fractions"].get(c, 0.0)) for c in CLASSES]
            known = abs(sum(true) - 1.0) < 1e-6  # records with 'other' sites are left out of the MAE
            pred = [row.get(c) for c in CLASSES]
            meas.append({"id": r["id"], "formula": r["formula"], "true": true, "pred": pred, "scored": known,
                         "error": row.get("error")})  # fmt: skip
            if len(r["site_fractions"]) > 1 or r["formula"] in ("Mn3O4", "Fe3O4", "Co3O4"):
                measured_lines.append(f"{el} {r['id']:<22} {r['formula']:<24} true " +
                                      " ".join(f"{c} {t:.2f}" for c, t in zip(CLASSES, true)) + "  predicted " +
                                      (" ".join(f"{c} {v:.2f}" for c, v in zip(CLASSES, pred)) if pred[0] is not None
                                       else row.get("error", "")))  # fmt: skip
        scored = [x for x in meas if x["scored"] and x["pred"][0] is not None]
        mae_meas = float(np.mean([np.abs(np.array(x["pred"]) - np.array(x["true"])).mean() for x in scored])) if scored else float("nan")
        out["absorbers"][el] = {"run_id": doc.run_id, "metrics": {k: v for k, v in m.items() if k != "heldout"},
                                "heldout": m["heldout"], "measured": meas, "measured_mae": mae_meas,
                                "seconds": time.time() - t0}  # fmt: skip
        lines.append(f"{el:<4} {doc.n_spectra:>5} {m['n_materials']:>6} {m['n_mixed_materials']:>5} | "
                     f"{m['mae_mixed']:>9.3f} {m['mae_mixed_baseline_mean']:>8.3f} {m['mae_mixed_baseline_nnls']:>8.3f} | "
                     f"{m['mae_all']:>7.3f} {m['mae_all_baseline_mean']:>8.3f} {m['mae_all_baseline_nnls']:>8.3f} | "
                     f"{mae_meas:>11.3f} ({len(scored):>2}) | {doc.run_id}")  # fmt: skip
        print(lines[-1], flush=True)
    text = "\n".join(lines + ["", "measured mixed-site records (and spinels):"] + measured_lines +
                     (["", "calibrations used:"] + cal_lines if cal_lines else [])) + "\n"  # fmt: skip
    text += (f"\nconfig: {json.dumps(out['config'])}\n"
             "mean bl.: the training materials' mean fractions; NNLS bl.: non-negative least squares on the training "
             "class-mean spectra (linear combination fitting), normalised.\n")  # fmt: skip
    print(text)
    (RESULTS / f"mixtures{args.tag}.txt").write_text(text)
    (RESULTS / f"mixtures{args.tag}.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
