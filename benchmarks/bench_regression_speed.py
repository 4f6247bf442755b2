"""Every descriptor of every absorber, side by side: the whole regression table's cost against the classifier's.

Issue 20 asks that training all descriptors for all absorbers stays fast. For each of the eight
absorbers (the database's FEFF10 spectra, ``{"element": EL, "source": "xanesdb"}``), one regression
run learns all six numeric site descriptors at once (:data:`TARGETS`; one network group per family,
every target an output of the same networks; the trees fit one model per target and member) with
the grouped protocol, and one classifier run learns T4/S5/O6 (the learning table's MLP, 10 networks,
50 epochs, grouped). Times are wall seconds on this machine; MAE per target is the split ensembles'
mean over splits, against the training-mean baseline. Writes ``benchmarks/results/regression_speed.{md,json}``::

    XANESDB_HOME=/tmp/h20 .venv/bin/xanesdb sites descriptors      # once: spread and CrystalNN CN on every site
    XANESDB_HOME=/tmp/h20 .venv/bin/python benchmarks/bench_regression_speed.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"
ABSORBERS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
#: the numeric site descriptors learned together (docs/regression.md, "Targets")
TARGETS = ("coordination_number", "crystalnn_coordination_number", "mean_bond_length", "bond_length_spread", "csm",
           "oxidation_state")  # fmt: skip
SHORT = {"coordination_number": "CN", "crystalnn_coordination_number": "CN (CrystalNN)", "mean_bond_length": "bond (A)",
         "bond_length_spread": "spread (A)", "csm": "CSM", "oxidation_state": "oxidation"}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--elements", default=",".join(ABSORBERS))
    p.add_argument("--families", default="gbt,mlp-deep")
    p.add_argument("--loss", default="mae")
    p.add_argument("--n-models", type=int, default=5)
    p.add_argument("--ensemble", type=int, default=2)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    from xanesdb.ml.dataset import load_dataset
    from xanesdb.ml.regression import RegressionConfig, load_regression_dataset, train_regression_on_dataset
    from xanesdb.ml.train import TrainConfig, runtime_info, train_on_dataset

    rows, t_all = [], time.perf_counter()
    for el in a.elements.split(","):
        ds = load_regression_dataset({"element": el, "source": "xanesdb"}, TARGETS)
        row = {"element": el, "n": len(ds), "dropped": ds.n_dropped, "materials": len(set(ds.groups)), "families": {}}
        for fam in a.families.split(","):
            cfg = RegressionConfig(family=fam, labels=TARGETS, protocol="grouped", n_models=a.n_models,
                                   ensemble=a.ensemble, epochs=a.epochs, test_size=0.2, loss=a.loss)  # fmt: skip
            t0 = time.perf_counter()
            _, m, _ = train_regression_on_dataset(ds, cfg)
            row["families"][fam] = {"seconds": time.perf_counter() - t0, "mae": {t: m["targets"][t]["mae_ensemble"][0] for t in TARGETS},
                                    "baseline": {t: m["targets"][t]["mae_baseline"][0] for t in TARGETS}}  # fmt: skip
            print(el, fam, f"{row['families'][fam]['seconds']:.0f} s", flush=True)
        cds = load_dataset({"element": el, "source": "xanesdb", "lce_class": {"$in": ["T4", "S5", "O6"]}})
        ccfg = TrainConfig(kind="mlp", protocol="grouped", n_models=10, epochs=50, curves=False)
        t0 = time.perf_counter()
        _, cm, _, _ = train_on_dataset(cds, ccfg)
        row["classifier"] = {"seconds": time.perf_counter() - t0, "n": len(cds), "macro_f1": cm["f1"]["macro"][0]}
        print(el, "classifier", f"{row['classifier']['seconds']:.0f} s", flush=True)
        rows.append(row)
    total = time.perf_counter() - t_all
    info = runtime_info()
    fams = a.families.split(",")
    lines = [f"All {len(TARGETS)} descriptors of each absorber in one run per family ({a.loss} loss, grouped, "
             f"{a.n_models} splits x {a.ensemble} members, {a.epochs} epochs) against the T4/S5/O6 classifier (paper MLP, "
             f"10 networks, 50 epochs, grouped); {info['device']}, {total / 60:.1f} min in all", "",
             "| absorber | spectra (materials) | " + " | ".join(f"{f} s" for f in fams) + " | classifier s | "
             + " | ".join(f"{SHORT[t]} MAE ({fams[-1]} / baseline)" for t in TARGETS) + " |",
             "|---|---|" + "---|" * (len(fams) + 1 + len(TARGETS))]  # fmt: skip
    for r in rows:
        last = r["families"][fams[-1]]
        lines.append(f"| {r['element']} | {r['n']} ({r['materials']}) | "
                     + " | ".join(f"{r['families'][f]['seconds']:.0f}" for f in fams) + f" | {r['classifier']['seconds']:.0f} | "
                     + " | ".join(f"{last['mae'][t]:.3g} / {last['baseline'][t]:.3g}" for t in TARGETS) + " |")  # fmt: skip
    sums = {f: sum(r["families"][f]["seconds"] for r in rows) for f in fams}
    csum = sum(r["classifier"]["seconds"] for r in rows)
    lines += ["", "Whole table: " + ", ".join(f"{f} {s:.0f} s" for f, s in sums.items())
              + f"; classifiers {csum:.0f} s (" + ", ".join(f"{f} {s / csum:.1f}x" for f, s in sums.items())
              + " the classifiers' time)."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "regression_speed.md").write_text(text)
    (a.out / "regression_speed.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                            "rows": rows, "runtime": info, "seconds": total}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
