"""Small-dataset training: the F1 correction for tiny test folds, and ``--min-steps``.

On a dataset exported by ``bench_gpu_table.py export`` (one absorber's FEFF10 spectra), trains the
paper's MLP (10 networks x 50 epochs, shift augmentation) on both protocols and prints, in one run:

- macro F1 as scored now (a class that a bootstrapped test set neither holds nor predicts is left
  out of that set's macro mean) and as scored before (such a class counted as F1 0);
- the same with ``min_steps`` (at least N Adam updates per network).

    python benchmarks/bench_gpu_table.py export DATA.npz
    python benchmarks/bench_small_data.py DATA.npz --dataset Fe --min-steps 3000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu_table import _dataset  # noqa: E402


def _old_f1_per_class(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """The rule used before: every class scored, an absent one as 0."""
    from sklearn.metrics import f1_score

    per = f1_score(y_true, y_pred, labels=list(range(n_classes)), average=None, zero_division=0)
    return np.append(per, per.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--dataset", default="Fe")
    p.add_argument("--min-steps", type=int, default=3000)
    p.add_argument("--kind", default="mlp")
    a = p.parse_args()
    from xanesdb.ml import evaluate
    from xanesdb.ml.train import TrainConfig, train_on_dataset

    ds = _dataset(np.load(a.data), a.dataset)
    counts = {c: int((ds.labels == c).sum()) for c in ("T4", "S5", "O6")}
    print(f"{a.dataset}: {len(ds)} spectra {counts}; {a.kind.upper()}, 10 networks, shift augmentation")
    print("| protocol | min_steps | test fold | macro F1 now | S5 now | macro F1, absent class = 0 | fit s |")
    print("|---|---|---|---|---|---|---|")
    for protocol in ("paper", "grouped"):
        for ms in (None, a.min_steps):
            cfg = TrainConfig(kind=a.kind, protocol=protocol, augment=("shift",), min_steps=ms, curves=False)
            t0 = time.perf_counter()
            model, m, cols, splits = train_on_dataset(ds, cfg)
            fit = time.perf_counter() - t0
            # the same networks' predictions, scored with the old rule
            y = ds.encode(ds.classes)
            from xanesdb.ml.train import predict_group

            preds = [q.argmax(axis=1) for q in predict_group(model, [ds.X[te][:, cols] for _, te in splits])]
            with mock.patch.object(evaluate, "f1_per_class", _old_f1_per_class):
                old = evaluate.score_predictions([y[te] for _, te in splits], preds, ds.classes, cfg.n_bootstrap, cfg.seed)
            f1 = m["f1"]
            print(f"| {protocol} | {ms or '-'} | {int(np.mean(m['n_test']))} | {f1['macro'][0]:.3f} +- {f1['macro'][1]:.3f} | "
                  f"{f1['S5'][0]:.2f} | {old['f1']['macro'][0]:.3f} +- {old['f1']['macro'][1]:.3f} | {fit:.0f} |", flush=True)


if __name__ == "__main__":
    main()
