"""How models read *measured* spectra: the 48 labelled Athena groups of ``experimental_dev``.

For each configuration (representation x training data x augmentation; the ablation of what
moves measured accuracy) one model per absorber is trained from the database (as
``scripts/train_shipped_models.py`` does), and every labelled record is read from its Athena
project (:mod:`xanesdb.xas.readers`) and predicted (:func:`xanesdb.ml.predict.predict_spectra`).
Reported per configuration: recall of the non-ambiguous O6 and T4 records, answers that are
``unsure``, wrong answers with probability > 0.9, accuracy of the answered ones, the expected
calibration error on the records, and for ``--detail`` configurations the confusion table,
coverage against accuracy and a reliability diagram (PNG).

    xanesdb db load-bundled && xanesdb spectra build
    python benchmarks/bench_measured.py --out benchmarks/results/measured [--configs shipped,aligned-measured]

``shipped`` scores the models that ship in ``xanesdb/data/models`` (no training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental_dev"

#: name -> (representation, presets, augmentations, align, fidelity[, measurement-model changes[, window eV
#: [, measured calibration]]]);
#: "shipped" uses the packaged models
CONFIGS: dict[str, tuple] = {
    "grid-fast-shift+noise": ("grid", ("fast",), ("shift", "noise"), "edge", None),
    "aligned-fast-none": ("aligned", ("fast",), (), "auto", None),
    "aligned-fast-shift+noise": ("aligned", ("fast",), ("shift", "noise"), "auto", None),
    "aligned-fast-measured": ("aligned", ("fast",), ("measured",), "auto", None),
    "aligned-fast2scf-none": ("aligned", ("fast",), (), "auto", "scf"),
    "aligned-fast2scf-measured": ("aligned", ("fast",), ("measured",), "auto", "scf"),
    "aligned-scf-measured": ("aligned", ("scf",), ("measured",), "auto", None),
    "aligned-scf+fast2scf-measured": ("aligned", ("scf", "fast"), ("measured",), "auto", "scf"),
    "aligned-fast2scf-measured-nodamping": ("aligned", ("fast",), ("measured",), "auto", "scf", {"damping": (1.0, 1.0)}),
    "aligned-fast2scf-measured-edge": ("aligned", ("fast",), ("measured",), "auto", "scf", None, (-1.0, 44.5)),
    "aligned-scf+fast2scf-measured-edge": ("aligned", ("scf", "fast"), ("measured",), "auto", "scf", None, (-1.0, 44.5)),
    "aligned-scflite-measured-edge": ("aligned", ("scflite",), ("measured",), "auto", None, None, (-1.0, 44.5)),
    "aligned-scflite+fast2scflite-measured-edge": ("aligned", ("scflite", "fast"), ("measured",), "auto", "scflite", None, (-1.0, 44.5)),
    "aligned-scf+fast2scf-calibrated-measured-edge": ("aligned", ("scf", "scflite", "fast"), ("measured",), "auto", "scf", None, (-1.0, 44.5), "k-edge"),
    # the shipped recipe's measurement model: edge-step errors of 15 %, post-edge slopes of 0.2 per 100 eV
    "aligned-scf+fast2scf-calibrated-measured15-edge": ("aligned", ("scf", "scflite", "fast"), ("measured",), "auto", "scf",
                                                        {"scale": 0.15, "slope_per_100ev": 0.2}, (-1.0, 44.5), "k-edge"),
    # the same with the scfwide spectra (Ti, V, Cr), as the models that ship now are trained
    "aligned-scfwide+fast2scf-calibrated-measured15-edge": ("aligned", ("scf", "scflite", "scfwide", "fast"), ("measured",), "auto",
                                                            "scf", {"scale": 0.15, "slope_per_100ev": 0.2}, (-1.0, 44.5), "k-edge"),
    "aligned-scf+fast2scf-calibrated-measured+residuals-edge": ("aligned", ("scf", "scflite", "fast"), ("measured",), "auto", "scf", "residuals", (-1.0, 44.5), "k-edge"),
    "aligned-scf+fast2scf-calibrated-none-edge": ("aligned", ("scf", "scflite", "fast"), (), "auto", "scf", None, (-1.0, 44.5), "k-edge"),
}


def load_records(data: Path):
    """(record, MeasuredSpectrum) of every labelled group, HERFD ones broadened as ``xanesdb predict``
    does by default (``--herfd auto``)."""
    from xanesdb.xas.herfd import herfd_spectra
    from xanesdb.xas.readers import read_spectra

    out = []
    for r in json.loads((data / "labels.json").read_text()):
        (s,), failed = herfd_spectra(read_spectra(data / r["athena_file"], groups=[r["athena_group"]]), "auto")
        assert not failed, failed
        out.append((r, s))
    return out


def end_scan(s, after_ev: float):
    """The spectrum ``s`` cut ``after_ev`` above its half step (a shorter scan of the same sample)."""
    import dataclasses

    from xanesdb.xas.normalize import half_step_energy, pre_edge

    n = pre_edge(s.energy, s.mu)
    keep = s.energy <= half_step_energy(s.energy, n.norm, e0=n.e0) + after_ev
    return dataclasses.replace(s, energy=s.energy[keep], mu=s.mu[keep])


def train_models(config: str, elements, n_models: int, min_steps: int, pooled: bool = False,
                 held_out: bool = True, min_class_materials: int = 0, kind: str = "mlp") -> dict[str, tuple]:  # fmt: skip
    """One model per absorber, or with ``pooled`` one on all absorbers together (used for each); with
    ``min_class_materials``, each absorber's classes of fewer materials left out (as the shipped models);
    ``kind``: the networks, the paper's MLP or CNN."""
    from xanesdb.ml.train import TrainConfig, train_from_query, without_rare_classes

    rep, presets, aug, _, fidelity, *extra = CONFIGS[config]
    measurement = extra[0] if extra else None
    window = extra[1] if len(extra) > 1 else None
    calibration = extra[2] if len(extra) > 2 else None
    models = {}
    for el in [",".join(elements)] if pooled else elements:
        cal, mm = None, measurement
        if calibration is not None:
            from xanesdb.xas.calibration import load_calibration

            # each absorber is scored with the calibration refitted without its own reference pairs
            c = load_calibration(calibration)
            c = c if pooled or not held_out else c.without(el)
            cal = {**c.params(), "per_pair": c.per_pair}
            if measurement == "residuals":  # the residual bank of the (held-out) per-pair fits
                mm = {"residuals": c.measurement_ranges(residuals=True).get("residuals", [])}
        query = {"element": {"$in": el.split(",")} if pooled else el, "edge": "K", "source": "xanesdb",
                 "preset": {"$in": list(presets)}, "lce_class": {"$in": ["T4", "S5", "O6"]}}  # fmt: skip
        if min_class_materials and not pooled:
            query, _ = without_rare_classes(query, "lce_class", min_class_materials)
        cfg = TrainConfig(kind=kind, representation=rep, augment=aug, n_models=n_models, min_steps=min_steps,
                          class_weight="balanced", curves=False, n_bootstrap=3, fidelity=fidelity,
                          measurement=mm, window=window, calibration=cal)  # fmt: skip
        try:
            res = train_from_query(query, cfg, register=False)
        except Exception as err:  # noqa: BLE001 - an absorber without enough data has no model
            print(f"  {config} {el}: no model ({str(err).splitlines()[0][:100]})", flush=True)
            continue
        for name in el.split(","):
            models[name] = (res.doc, res.model)
        print(f"  {config} {el}: {res.doc.n_spectra} spectra {res.doc.metrics['class_counts']}, macro F1 "
              f"{res.doc.metrics['f1']['macro'][0]:.3f} on computed", flush=True)  # fmt: skip
    return models


def shipped_models(elements, models_dir: Path | None = None, short: bool = False) -> dict[str, tuple]:
    """The packaged models (``short``: those for scans that end early), or with ``models_dir`` those
    of that folder (``<El>-K-aligned``) where it has one."""
    from xanesdb.ml.portable import load_portable, shipped_model_dir

    out = {}
    for el in elements:
        d = shipped_model_dir(el, short=short)
        if models_dir is not None and (models_dir / f"{el}-K-aligned" / "card.json").is_file():
            d = models_dir / f"{el}-K-aligned"
        if d is not None:
            out[el] = load_portable(d)
    return out


def knn_votes(records, elements, calibrated: bool, k: int = 7, window=(-1.0, 44.5)) -> dict:
    """The majority class of the ``k`` nearest training spectra (Euclidean, aligned representation,
    ``scf``/``scflite`` and ``fast`` corrected to ``scf``), with or without the computed -> measured
    calibration (for each absorber the one refitted without its own reference pairs): how close
    measured spectra come to computed ones of their class, with no network in between."""
    from xanesdb.ml.aligned import ALIGNED_GRID, fit_fidelity_from_db, load_aligned_dataset
    from xanesdb.xas.align import align_measured
    from xanesdb.xas.calibration import load_calibration

    fid = fit_fidelity_from_db(target_preset="scf")
    cols = (ALIGNED_GRID >= window[0]) & (ALIGNED_GRID <= window[1])
    right = Counter()
    total = Counter()
    for el in elements:
        query = {"element": el, "edge": "K", "source": "xanesdb", "preset": {"$in": ["scf", "scflite", "fast"]},
                 "lce_class": {"$in": ["T4", "S5", "O6"]}}  # fmt: skip
        ds = load_aligned_dataset(query, fidelity=fid)
        X = load_calibration("k-edge").without(el).apply(ds.X, ALIGNED_GRID) if calibrated else ds.X
        for r, s in records:
            if r["absorber"] != el or r["ambiguous"] or r["expected_class"] not in ("O6", "T4"):
                continue
            y = align_measured(s.energy, s.mu)["y"]
            near = np.argsort(np.sqrt(np.mean((X[:, cols] - y[cols]) ** 2, axis=1)))[:k]
            vote = Counter(ds.labels[near].tolist()).most_common(1)[0][0]
            total[r["expected_class"]] += 1
            right[r["expected_class"]] += vote == r["expected_class"]
    return {c: (right[c], total[c]) for c in ("O6", "T4")}


def _reads_short(doc, s, absorber: str) -> bool:
    """Whether ``xanesdb predict`` would answer ``s`` with the short-scan model: the scan ends too
    early for ``doc`` (:func:`xanesdb.ml.predict.ends_early`, as predict decides)."""
    from xanesdb.ml.inputs import window_end
    from xanesdb.ml.predict import ends_early

    return ends_early(s, absorber, window_end(doc.hyperparameters)) is not None


def score(records, models, align: str, min_confidence: float, short_models: dict | None = None) -> dict:
    from xanesdb.ml.predict import predict_spectra
    from xanesdb.ml.trust import expected_calibration_error

    rows = []
    for r, s in records:
        if r["absorber"] not in models:
            rows.append({"id": r["id"], "true": r["expected_class"], "ambiguous": r["ambiguous"], "predicted": "unsure",
                         "best": None, "confidence": 0.0, "reason": "no model"})  # fmt: skip
            continue
        doc, model = models[r["absorber"]]
        short = bool(short_models and r["absorber"] in short_models and _reads_short(doc, s, r["absorber"]))
        if short:
            doc, model = short_models[r["absorber"]]
        (p,) = predict_spectra(doc, model, [s], align=align, min_confidence=min_confidence)
        if "error" in p:
            rows.append({"id": r["id"], "true": r["expected_class"], "ambiguous": r["ambiguous"], "predicted": "unsure",
                         "best": None, "confidence": 0.0, "reason": p["error"]})  # fmt: skip
            continue
        rows.append({"id": r["id"], "true": r["expected_class"], "ambiguous": r["ambiguous"],
                     "predicted": p["predicted"], "best": p["best_class"], "confidence": p["confidence"],
                     "outlier": p["outlier_score"], "reason": p["reason"], "probabilities": p["probabilities"],
                     "short_model": short})  # fmt: skip
    core = [x for x in rows if not x["ambiguous"] and x["true"] in ("O6", "T4")]
    # every non-ambiguous record of one geometry: a confident wrong answer counts against any of them
    single = [x for x in rows if not x["ambiguous"] and x["true"] in ("O6", "T4", "S5", "other")]
    others = [x for x in rows if not x["ambiguous"] and x["true"] == "other"]
    recall = {c: float(np.mean([x["predicted"] == c for x in core if x["true"] == c])) for c in ("O6", "T4")}
    best_recall = {c: float(np.mean([x["best"] == c for x in core if x["true"] == c])) for c in ("O6", "T4")}
    answered = [x for x in core if x["predicted"] != "unsure"]
    scored = [x for x in core if x["best"] is not None]
    classes = ("O6", "S5", "T4")
    P = np.array([[x["probabilities"].get(c, 0.0) for c in classes] for x in scored]) if scored else np.zeros((0, 3))
    y = np.array([classes.index(x["true"]) for x in scored], dtype=int)
    confusion = defaultdict(Counter)
    for x in rows:
        key = x["true"] + (" (ambiguous)" if x["ambiguous"] else "")
        confusion[key][x["predicted"]] += 1
    coverage = []
    for t in (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        sel = [x for x in scored if x["confidence"] >= t and not (x.get("outlier", 0) > 1)]
        coverage.append({"threshold": t, "coverage": len(sel) / max(len(core), 1),
                         "accuracy": float(np.mean([x["best"] == x["true"] for x in sel])) if sel else None})  # fmt: skip
    return {
        "n_core": len(core), "recall": recall, "recall_best_class": best_recall,
        "unsure": sum(x["predicted"] == "unsure" for x in core),
        "wrong_over_0.9": sum(x["predicted"] not in ("unsure", x["true"]) and x["confidence"] > 0.9 for x in single),
        "recall_other": (sum(x["predicted"] == "other" for x in others), len(others)),
        "answered_accuracy": float(np.mean([x["predicted"] == x["true"] for x in answered])) if answered else None,
        "ece": expected_calibration_error(P, y, n_bins=5) if len(y) else None,
        "confusion": {k: dict(v) for k, v in confusion.items()}, "coverage": coverage, "rows": rows,
        "read_short": sum(bool(x.get("short_model")) for x in rows),
        "not_read": sum(x["best"] is None for x in rows),
    }  # fmt: skip


def _without_vote(doc):
    """The run document without its reference vote: the networks alone answer."""
    bare = doc.model_copy(deep=True)
    bare.metrics.pop("reference_vote", None)
    return bare


def reliability_png(result: dict, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    scored = [x for x in result["rows"] if x["best"] is not None and not x["ambiguous"] and x["true"] in ("O6", "T4")]
    conf = np.array([x["confidence"] for x in scored])
    ok = np.array([x["best"] == x["true"] for x in scored])
    edges = np.linspace(0, 1, 6)
    fig = Figure(figsize=(4.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ax.bar((lo + hi) / 2, ok[sel].mean(), width=hi - lo, alpha=0.5, edgecolor="k", color="tab:blue")
            ax.text((lo + hi) / 2, ok[sel].mean() + 0.02, str(int(sel.sum())), ha="center", fontsize=8)
    ax.set_xlabel("calibrated probability of the answer")
    ax.set_ylabel("fraction right")
    ax.set_title(title, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--configs", default="shipped," + ",".join(CONFIGS))
    ap.add_argument("--elements", default="Ti,V,Mn,Fe,Ni,Cu")
    ap.add_argument("--pooled", action="store_true", help="One model per configuration on all --elements together.")
    ap.add_argument("--n-models", type=int, default=5)
    ap.add_argument("--min-steps", type=int, default=1500)
    ap.add_argument("--kind", choices=("mlp", "cnn"), default="mlp",
                    help="The trained configurations' networks: the paper's MLP (as shipped) or its CNN.")
    ap.add_argument("--min-confidence", type=float, default=0.5)
    ap.add_argument("--calibration-all", action="store_true",
                    help="Use the calibration fitted on every reference pair for every absorber (default: each "
                         "absorber gets the one refitted without its own pairs).")  # fmt: skip
    ap.add_argument("--min-class-materials", type=int, default=0,
                    help="Leave out of each absorber's model the classes of fewer materials (the shipped models: "
                         "xanesdb.ml.train.MIN_CLASS_MATERIALS; 0: none).")  # fmt: skip
    ap.add_argument("--knn", action="store_true", help="Also score a 7-nearest-neighbour vote, with and without the "
                    "computed -> measured calibration.")
    ap.add_argument("--ablate-vote", action="store_true",
                    help="Also score each configuration's models without their reference vote, and both at "
                         "--min-confidence 0.6 (same networks).")  # fmt: skip
    ap.add_argument("--end-after", type=float, default=None,
                    help="Cut every scan this many eV above its half step (as if the beamline had stopped there), to "
                         "measure what scan length does.")  # fmt: skip
    ap.add_argument("--detail", default="shipped", help="Configurations that get the confusion table and PNG.")
    ap.add_argument("--out", type=Path, default=None, help="Folder for results.json and the PNGs.")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="'shipped' takes each absorber's model from this folder (<El>-K-aligned) where it has one.")
    ap.add_argument("--short-models-dir", type=Path, default=None,
                    help="'shipped' answers a scan that ends too early for the full model with the short-scan model of this "
                         "folder (<El>-K-aligned), as predict does with those of xanesdb/data/models/short; 'none': never.")
    args = ap.parse_args(argv)
    records = load_records(args.data)
    if args.end_after is not None:
        records = [(r, end_scan(s, args.end_after)) for r, s in records]
    elements = [e for e in args.elements.split(",") if e]
    results = {}
    if args.knn:
        for cal in (False, True):
            v = knn_votes(records, elements, cal)
            results[f"knn7{'-calibrated' if cal else ''}"] = {"knn": v}
            print(f"7-nearest-neighbour vote{' (calibrated, held out per absorber)' if cal else ''}: O6 "
                  f"{v['O6'][0]}/{v['O6'][1]}, T4 {v['T4'][0]}/{v['T4'][1]}", flush=True)  # fmt: skip
    for name in [c for c in args.configs.split(",") if c]:
        t0 = time.time()
        short = None
        if name == "shipped":
            models, align = shipped_models(elements, args.models_dir), "auto"
            if str(args.short_models_dir) != "none":
                short = shipped_models(elements, args.short_models_dir, short=True)
        else:
            models = train_models(name, elements, args.n_models, args.min_steps, args.pooled,
                                  held_out=not args.calibration_all, min_class_materials=args.min_class_materials,
                                  kind=args.kind)  # fmt: skip
            align = CONFIGS[name][3]
        variants = [(name, models, args.min_confidence)]
        if args.ablate_vote:
            bare = {el: (_without_vote(doc), m) for el, (doc, m) in models.items()}
            variants += [(f"{name}, networks alone", bare, args.min_confidence),
                         (f"{name}, threshold 0.6", models, 0.6),
                         (f"{name}, networks alone, threshold 0.6", bare, 0.6)]  # fmt: skip
        for label, ms, threshold in variants:
            res = score(records, ms, align, threshold, short_models=short)
            res["seconds"] = round(time.time() - t0, 1)
            res["models"] = {el: doc.run_id for el, (doc, _) in ms.items()}
            results[label] = res
            print(f"{label}: O6 recall {res['recall']['O6']:.2f}, T4 {res['recall']['T4']:.2f}, unsure "
                  f"{res['unsure']}/{res['n_core']}, other {res['recall_other'][0]}/{res['recall_other'][1]}, "
                  f"wrong p>0.9 {res['wrong_over_0.9']}, not read {res['not_read']}, by the short-scan model "
                  f"{res['read_short']} ({res['seconds']} s)", flush=True)  # fmt: skip
    print()
    print("| configuration | O6 recall | T4 recall | unsure | other right | wrong with p > 0.9 (O6, T4, other) | answered right | best class O6 / T4 | ECE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "knn" in r:
            continue
        acc = "-" if r["answered_accuracy"] is None else f"{r['answered_accuracy']:.2f}"
        ece = "-" if r["ece"] is None else f"{r['ece']:.2f}"
        print(f"| {name} | {r['recall']['O6']:.2f} | {r['recall']['T4']:.2f} | {r['unsure']}/{r['n_core']} | "
              f"{r['recall_other'][0]}/{r['recall_other'][1]} | "
              f"{r['wrong_over_0.9']} | {acc} | {r['recall_best_class']['O6']:.2f} / {r['recall_best_class']['T4']:.2f} | {ece} |")  # fmt: skip
    for name in [c for c in args.detail.split(",") if c in results]:
        r = results[name]
        print(f"\nconfusion of {name} (rows: expected, columns: answer)")
        cols = ("O6", "S5", "T4", "other", "unsure")
        print("| expected | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for k in sorted(r["confusion"]):
            print(f"| {k} | " + " | ".join(str(r["confusion"][k].get(c, 0)) for c in cols) + " |")
        print(f"\nrecords of {name}: expected -> answer (best class, calibrated probability, outlier score)")
        for x in r["rows"]:
            if x["best"] is None:
                print(f"  {x['id']:24s} {x['true']:6s}{'*' if x['ambiguous'] else ' '} -> {x['predicted']} ({x['reason']})")
            else:
                print(f"  {x['id']:24s} {x['true']:6s}{'*' if x['ambiguous'] else ' '} -> {x['predicted']:6s} "
                      f"({x['best']} {x['confidence']:.2f}, outlier {x.get('outlier', 0):.2f})")  # fmt: skip
        print(f"\ncoverage vs accuracy of {name} (non-ambiguous O6/T4, outliers left out):")
        for c in r["coverage"]:
            acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.2f}"
            print(f"  probability >= {c['threshold']:.1f}: coverage {c['coverage']:.2f}, accuracy {acc}")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            reliability_png(r, args.out / f"reliability_{name}.png", f"{name}: measured records (numbers: count)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
