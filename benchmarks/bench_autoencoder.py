"""Autoencoder pretraining at few labels (issue 20 item 4, after Huang et al.): macro F1 at 5, 10, 25 % of the labels.

Every Cu spectrum of the OmniXAS set (FEFF9; 60-70 % of them in the "other" class or without a
site label) pretrains an autoencoder 128-64-32 (one per split, never seeing that split's test
materials); classifiers of T4/S5/O6 are trained on 5, 10 and 25 % of each split's labelled
training rows (grouped splits by material) as :data:`xanesdb.ml.autoencoder.VARIANTS` lists: the
paper's MLP on the labelled rows only, a head on the frozen code, the encoder fine-tuned, and the
encoder-shaped MLP from scratch. A 2-d code (128-64-32-2) of every spectrum is drawn coloured by
class. Nothing is registered. Writes ``benchmarks/results/autoencoder.{md,json}`` and
``autoencoder_code2d_Cu.png``::

    XANESDB_HOME=/tmp/h20b .venv/bin/python benchmarks/bench_autoencoder.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"
CLASSES = ("O6", "S5", "T4")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--query", default='{"element": "Cu", "source": "omnixas"}')
    p.add_argument("--fractions", default="0.05,0.1,0.25")
    p.add_argument("--splits", type=int, default=3)
    p.add_argument("--ae-epochs", type=int, default=60)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    from xanesdb.ml.autoencoder import VARIANTS, AutoencoderConfig, encode, few_label_comparison, fit_autoencoders, plot_code_map
    from xanesdb.ml.dataset import load_dataset
    from xanesdb.ml.train import runtime_info

    query = json.loads(a.query)
    t_all = time.perf_counter()
    # every spectrum (spectrum_id is never null: labelled or not), then each one's class where it has one
    ds_all = load_dataset(query, label_field="spectrum_id")
    ds_cls = load_dataset(query, label_field="lce_class")
    cls_of = dict(zip(ds_cls.spectrum_ids, ds_cls.labels.tolist()))
    ids = np.array(ds_all.spectrum_ids)
    lab = np.array([cls_of.get(i) for i in ids], dtype=object)
    labelled = np.nonzero(np.isin(lab.astype(str), CLASSES))[0]
    y = np.array([CLASSES.index(v) for v in lab[labelled]])
    fracs = tuple(float(x) for x in a.fractions.split(","))
    res = few_label_comparison(ds_all.X, ds_all.groups, labelled, y, CLASSES, label_fractions=fracs, n_splits=a.splits,
                               ae_cfg=AutoencoderConfig(epochs=a.ae_epochs, seed=a.seed), epochs=a.epochs, seed=a.seed,
                               n_bootstrap=0)  # fmt: skip
    # the picture: a 2-d code of every spectrum
    t0 = time.perf_counter()
    cfg2 = AutoencoderConfig(encoder=(128, 64, 32, 2), code_activation="linear", epochs=a.ae_epochs, seed=a.seed)
    _, enc2 = fit_autoencoders(ds_all.X, [np.arange(len(ds_all.X))], cfg2)
    Z = encode(enc2, ds_all.X)
    el = query.get("element", "")
    a.out.mkdir(parents=True, exist_ok=True)
    png = plot_code_map(Z, lab, a.out / f"autoencoder_code2d_{el}.png",
                        title=f"{el} {query.get('source', '')}: 2-d code (128-64-32-2) of all {len(Z)} spectra, "
                              f"{a.ae_epochs} epochs\nno label used in training; coloured afterwards by lce_class")  # fmt: skip
    res["timings"]["code2d_s"] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    counts = {str(c): int(n) for c, n in zip(*np.unique(lab.astype(str), return_counts=True))}
    lines = [f"Autoencoder pretraining, {el} {query.get('source', '')}: {res['n_all']} spectra pretrain "
             f"({counts}), {res['n_labelled']} carry T4/S5/O6; {res['splits']} grouped splits; macro F1 on held-out "
             f"materials, mean ± std over splits; AE {a.ae_epochs} epochs, classifiers {a.epochs}; held-out "
             f"reconstruction MSE (standardised) {res['reconstruction_mse'][0]:.3f}; {total:.0f} s in all on "
             f"{runtime_info()['device']}", "",
             "| labels used | labelled rows | " + " | ".join(res["f1"]) + " |",
             "|---|---|" + "---|" * len(res["f1"])]  # fmt: skip
    for f in fracs:
        k = f"{f:g}"
        lines.append(f"| {100 * f:g} % | {res['n_labels'][k]:.0f} | "
                     + " | ".join(f"{res['f1'][v][k][0]:.3f} ± {res['f1'][v][k][1]:.3f}" for v in res["f1"]) + " |")  # fmt: skip
    lines += ["", *[f"- `{v}`: {d}" for v, d in VARIANTS.items()], "", f"picture: {png.name}"]
    text = "\n".join(lines)
    print(text)
    (a.out / "autoencoder.md").write_text(text + "\n")
    (a.out / "autoencoder.json").write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k != "out"},
                                                        "result": res, "class_counts": counts, "total_s": total}, indent=1) + "\n")


if __name__ == "__main__":
    main()
