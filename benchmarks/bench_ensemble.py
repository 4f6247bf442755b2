"""Deep ensembles beside the paper's single networks, on every absorber of an exported dataset.

For each dataset x {MLP, CNN} x {paper's 90/10, grouped by material}: the paper's 10 networks (one
per split) and ``--ensemble K`` networks per split (same training set, own initialisation, data
order and dropout; the split's test set scored on their mean class probabilities). Same splits,
same seed, same shift augmentation, so the two columns differ only by the ensemble. Prints a
Markdown table, the means over datasets, and the fit time of each.

    python benchmarks/bench_gpu_table.py export DATA.npz
    python benchmarks/bench_ensemble.py DATA.npz --ensemble 5 --json benchmarks/results/ensemble.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu_table import ABSORBERS, _dataset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--ensemble", type=int, default=5)
    p.add_argument("--only", default=",".join(ABSORBERS), help="comma-separated dataset names")
    p.add_argument("--kinds", default="mlp,cnn")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    from xanesdb.ml.train import TrainConfig, train_on_dataset

    z = np.load(a.data)
    names = [n for n in a.only.split(",") if n in set(z["names"].tolist())]
    t_all = time.perf_counter()
    rows = []
    print(f"| dataset | n | model | protocol | paper: 1 network per split | S5 | ensemble of {a.ensemble} per split | S5 | fit s (1 / {a.ensemble}) |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for name in names:
        ds = _dataset(z, name)
        for kind in a.kinds.split(","):
            for protocol in ("paper", "grouped"):
                res = {}
                for e in (1, a.ensemble):
                    cfg = TrainConfig(kind=kind, protocol=protocol, augment=("shift",), ensemble=e, curves=False)
                    t0 = time.perf_counter()
                    _, m, _, _ = train_on_dataset(ds, cfg)
                    res[e] = (m["f1"], time.perf_counter() - t0)
                (f1, t1), (fe, te) = res[1], res[a.ensemble]
                rows.append({"dataset": name, "n": len(ds), "kind": kind, "protocol": protocol,
                             "single": f1, "ensemble": fe, "fit_s": [t1, te]})  # fmt: skip
                print(f"| {name} | {len(ds)} | {kind.upper()} | {protocol} | {f1['macro'][0]:.3f} ± {f1['macro'][1]:.3f} | "
                      f"{f1['S5'][0]:.2f} | {fe['macro'][0]:.3f} ± {fe['macro'][1]:.3f} | {fe['S5'][0]:.2f} | "
                      f"{t1:.0f} / {te:.0f} |", flush=True)
    print()
    for kind in a.kinds.split(","):
        for protocol in ("paper", "grouped"):
            sel = [r for r in rows if r["kind"] == kind and r["protocol"] == protocol]
            mean = lambda key, c: float(np.nanmean([r[key][c][0] for r in sel]))  # noqa: E731
            print(f"mean over {len(sel)} datasets, {kind.upper()} {protocol}: single {mean('single', 'macro'):.3f} "
                  f"(S5 {mean('single', 'S5'):.3f}), ensemble of {a.ensemble} {mean('ensemble', 'macro'):.3f} "
                  f"(S5 {mean('ensemble', 'S5'):.3f})")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"ensemble": a.ensemble, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
