"""Train the per-absorber models that ship with xanesdb and write them as portable model folders.

One aligned-representation classifier per absorber (or, with ``--pooled``, one for all absorbers:
``all-K-aligned``, what ships today), trained with the measurement-model augmentation on the
database's spectra of the given FEFF presets (``fast`` ones corrected towards ``scf``,
:mod:`xanesdb.xas.fidelity`, then all of them mapped to what a measurement of them looks like,
:mod:`xanesdb.xas.calibration`), calibrated and given an outlier test (see ``xanesdb/ml/train.py``),
written to ``xanesdb/data/models/<El>-K-aligned/``
(``model.keras``, ``card.json``, ``card.md``). ``xanesdb predict`` uses them when no ``--model``
is given. Fifteen networks a model by default: on the development records five gave O6 recall
0.81-0.87 across seeds and moved 17-25 answers under the stress changes, fifteen 0.87 every time
and 7-13 (``benchmarks/results/measured_ensemble_size.txt``).

    xanesdb db load-bundled && xanesdb spectra build
    python scripts/train_shipped_models.py --preset scf,scflite,scfwide,fast

Its defaults are :data:`xanesdb.ml.train.MEASURED_RECIPE`, what ``xanesdb train --recipe measured``
trains on a query of the user's own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xanesdb.ml.portable import POOLED, SHIPPED_DIR, export_portable
from xanesdb.ml.train import MEASURED_RECIPE, MIN_CLASS_MATERIALS, TrainConfig, train_from_query, without_rare_classes
from xanesdb.schemas.site import LCE_CLASSES, SITE_CLASSES

ELEMENTS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
#: an absorber's model learns the 'other' class only from at least this many computed 'other' spectra
MIN_OTHER = 30


def _n_other(query: dict) -> int:
    from xanesdb.platform.stores import get_database

    return get_database()["spectra"].count_documents({**query, "site_class": "other", "duplicate_of": None})



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", default=",".join(ELEMENTS))
    ap.add_argument("--preset", default="scf", help="FEFF preset of the training spectra (a list: scf,fast).")
    ap.add_argument("--kind", default="mlp")
    ap.add_argument("--n-models", type=int, default=MEASURED_RECIPE["n_models"])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--min-steps", type=int, default=MEASURED_RECIPE["min_steps"])
    ap.add_argument("--out", type=Path, default=SHIPPED_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fidelity", default=MEASURED_RECIPE["fidelity"], help="Correct fast spectra towards this preset ('' for none).")
    ap.add_argument("--calibration", default=MEASURED_RECIPE["calibration"],
                    help="Computed -> measured calibration applied to the training spectra ('' for none).")
    ap.add_argument("--window", default=",".join(f"{v:g}" for v in MEASURED_RECIPE["window"]), help="Input energy range (eV from the half step; '' for all).")
    ap.add_argument("--label", default="site_class", choices=("site_class", "lce_class"),
                    help="site_class: T4, S5, O6 and 'other' (every other ChemEnv geometry, e.g. linear Cu(I)), "
                         "for the absorbers with computed 'other' sites; lce_class: the paper's three classes only.")
    ap.add_argument("--measurement", default=json.dumps(MEASURED_RECIPE["measurement"]),
                    help="Changes to the measurement model, as JSON ('' for the calibration's ranges alone); default: the "
                         "recipe's edge-step errors and post-edge slopes.")
    ap.add_argument("--class-weight", default=MEASURED_RECIPE["class_weight"], choices=("balanced", "none"),
                    help="balanced: each class weighs as much in the loss whatever its number of spectra; none: each spectrum alike.")
    ap.add_argument("--min-class-materials", type=int, default=MIN_CLASS_MATERIALS,
                    help="Leave out of an absorber's model the classes whose unique spectra come from fewer materials (0: none).")
    ap.add_argument("--exclude-materials", type=Path, default=None,
                    help="A JSON list of material ids whose spectra are left out of training (e.g. the structures far "
                         "above the convex hull, benchmarks/bench_training_stability.py); the model card's query says so.")
    ap.add_argument("--pooled", action="store_true",
                    help="One model on the spectra of all --elements together (folder all-K-aligned).")
    args = ap.parse_args(argv)
    presets = [p for p in args.preset.split(",") if p]
    elements = [e for e in args.elements.split(",") if e]
    groups = [(POOLED, {"$in": elements})] if args.pooled else [(el, el) for el in elements]
    excluded = json.loads(args.exclude_materials.read_text()) if args.exclude_materials else []
    for el, element_filter in groups:
        query = {"element": element_filter, "edge": "K", "source": "xanesdb", "preset": {"$in": presets},
                 args.label: {"$in": list(SITE_CLASSES if args.label == "site_class" else LCE_CLASSES.values())}}
        if excluded:
            query["material_id"] = {"$nin": sorted(excluded)}
        label = args.label
        # the pooled model keeps the three classes: its 'other' spectra would be one absorber's (Cu) alone
        if label == "site_class" and (args.pooled or _n_other(query) < MIN_OTHER):  # too few 'other' spectra to learn the class from
            query, label = {**{k: v for k, v in query.items() if k != "site_class"},
                            "lce_class": {"$in": list(LCE_CLASSES.values())}}, "lce_class"  # fmt: skip
        rare = {}
        if args.min_class_materials and not args.pooled:  # the model's query says which classes it learned
            query, rare = without_rare_classes(query, label, args.min_class_materials)
            if rare:
                print(f"{el}: {', '.join(f'{c} ({n} materials)' for c, n in rare.items())} left out", flush=True)
        config = TrainConfig(kind=args.kind, representation="aligned", augment=("measured",), n_models=args.n_models,
                             epochs=args.epochs, min_steps=args.min_steps,
                             class_weight=None if args.class_weight == "none" else args.class_weight, curves=False,
                             seed=args.seed, fidelity=args.fidelity or None,
                             calibration=args.calibration or None,
                             measurement=json.loads(args.measurement) if args.measurement else None,
                             window=tuple(float(v) for v in args.window.split(",")) if args.window else None)  # fmt: skip
        t0 = time.time()
        try:
            res = train_from_query(query, config, register=False, label_field=label)
        except Exception as err:  # noqa: BLE001 - one absorber without data does not stop the others
            print(f"{el}: not trained ({err})", flush=True)
            continue
        doc = res.doc
        if rare:  # said on the model card
            doc.metrics["classes_left_out"] = {c: f"its unique spectra come from {n} materials, fewer than "
                                                  f"--min-class-materials {args.min_class_materials}" for c, n in rare.items()}  # fmt: skip
        out = export_portable(doc, res.model, args.out / f"{el}-K-aligned")
        cal = doc.metrics["calibration"]
        print(json.dumps({"element": el, "n": doc.n_spectra, "classes": doc.metrics["class_counts"],
                          "macro_f1": doc.metrics["f1"]["macro"], "temperature": cal["temperature"],
                          "ece": [cal["ece_before"], cal["ece_after"]], "seconds": round(time.time() - t0, 1),
                          "out": str(out)}), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
