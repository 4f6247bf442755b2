"""Transfer learning table (issue 20 item 3, after Lin et al.'s Table 1): target fraction x (scratch, transfer).

Domain pairs of the bundled database: FEFF9 Cu (the imported OmniXAS spectra, source
``omnixas``) -> FEFF10 Cu (source ``xanesdb``, preset ``fast``), and one absorber -> its neighbour
(Mn -> Fe, FEFF10), each on its absorber's own grid; and, in the aligned representation (energies
from the half step, Athena-style normalisation: one grid for every absorber), sources larger than
their targets as in Lin's setting: Fe -> Co, Fe -> Mn, and the seven other absorbers -> Fe
(``--pairs "Fe -> Co (aligned),Fe -> Mn (aligned),seven absorbers -> Fe (aligned)"``). Two targets each: ``lce_class`` (the paper's MLP 90-60-20, macro F1) and
``coordination_number`` (Lin's deep MLP 400-400-200-200-100, MAE). For each pair and target, the
source networks are trained on every source spectrum; the target is split by material (grouped
protocol, 80/20, ``--splits`` splits) and, for each fraction of each split's training rows, one
network is trained from a random start ("scratch") and one from the source's weights with the first
``--freeze`` layers frozen ("transfer"), with the same rows, epochs and seed
(:func:`xanesdb.ml.transfer.fine_tune`; all fractions x splits side by side in one group). "source
only" is the source network applied to the target's test materials unchanged. Nothing is
registered. Writes ``benchmarks/results/transfer.{md,json}``::

    XANESDB_HOME=/tmp/h20b .venv/bin/xanesdb db load-bundled
    XANESDB_HOME=/tmp/h20b .venv/bin/xanesdb spectra build
    XANESDB_HOME=/tmp/h20b .venv/bin/python benchmarks/bench_transfer.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"
CLASSES3 = {"lce_class": {"$in": ["T4", "S5", "O6"]}}
PAIRS = {
    "FEFF9 Cu -> FEFF10 Cu": ({"element": "Cu", "source": "omnixas"}, {"element": "Cu", "source": "xanesdb", "preset": "fast"}),
    "Mn -> Fe (FEFF10)": ({"element": "Mn", "source": "xanesdb"}, {"element": "Fe", "source": "xanesdb"}),
    # the aligned representation (energies from the half step, Athena-style normalisation) puts every
    # absorber on one grid, so a source can be larger than its target, as in Lin's setting
    "Fe -> Co (aligned)": ({"element": "Fe", "source": "xanesdb"}, {"element": "Co", "source": "xanesdb"}),
    "Fe -> Mn (aligned)": ({"element": "Fe", "source": "xanesdb"}, {"element": "Mn", "source": "xanesdb"}),
    "seven absorbers -> Fe (aligned)": ({"element": {"$in": ["Ti", "V", "Cr", "Mn", "Co", "Ni", "Cu"]}, "source": "xanesdb"},
                                        {"element": "Fe", "source": "xanesdb"}),
}
ALIGNED_PAIRS = {name for name in PAIRS if name.endswith("(aligned)")}
#: Lin et al. (benchmark chapter): average coordination-number MAE, no transfer -> transfer, at 20 % of the target
LIN = (0.224, 0.158)


def _target(task: str, query: dict, aligned: bool = False):
    """(X, Y, groups, grid, energies, names) of one task (``aligned``: the aligned representation)."""
    if aligned:
        from xanesdb.ml.aligned import load_aligned_dataset

        if task == "lce_class":
            ds = load_aligned_dataset({**query, **CLASSES3}, label_field="lce_class")
            classes = ("O6", "S5", "T4")
            return ds.X, ds.encode(classes), ds.groups, ds.grid_name, ds.energies, classes
        ds = load_aligned_dataset(query, label_field=task)  # a numeric field the spectra carry
        return ds.X, ds.labels.astype("float32")[:, None], ds.groups, ds.grid_name, ds.energies, (task,)
    if task == "lce_class":
        from xanesdb.ml.dataset import load_dataset

        ds = load_dataset({**query, **CLASSES3}, label_field="lce_class")
        classes = ("O6", "S5", "T4")
        return ds.X, ds.encode(classes), ds.groups, ds.grid_name, ds.energies, classes
    from xanesdb.ml.regression import load_regression_dataset

    ds = load_regression_dataset(query, (task,))
    return ds.X, ds.Y.astype("float32"), ds.groups, ds.grid_name, ds.energies, (task,)


def run_pair(name: str, src_q: dict, tgt_q: dict, task: str, a) -> dict:
    from xanesdb.ml.evaluate import make_splits
    from xanesdb.ml.transfer import Architecture, fine_tune, grid_compatibility, predict_networks_on, subsample

    classify = task == "lce_class"
    aligned = name in ALIGNED_PAIRS
    Xs, Ys, _, gs, es, names = _target(task, src_q, aligned)
    Xt, Yt, groups, gt, et, _ = _target(task, tgt_q, aligned)
    grid = grid_compatibility(gs, es, gt, et)
    arch = Architecture("classification", "mlp", 100) if classify else Architecture("regression", "reg-mlp-deep", 100)
    n_out = len(names)
    t0 = time.perf_counter()
    source, _ = fine_tune(Xs, Ys, [np.arange(len(Xs))] * a.source_networks, arch, n_out, epochs=a.source_epochs, seed=a.seed)
    t_src = time.perf_counter() - t0
    strat = Yt if classify else np.digitize(Yt[:, 0], np.unique(np.quantile(Yt[:, 0], [0.33, 0.67])))
    splits = make_splits(strat, groups, "grouped", a.splits, 0.2, a.seed)
    pairs = [(f, j) for f in a.fractions for j in range(len(splits))]
    train_sets = [subsample([splits[j][0]], f, a.seed + 31 * i)[0] for i, (f, j) in enumerate(pairs)]
    tests = [splits[j][1] for _, j in pairs]

    def score(model) -> list[float]:
        P = predict_networks_on(model, [Xt[te] for te in tests])
        if classify:
            from xanesdb.ml.evaluate import f1_per_class

            return [float(f1_per_class(Yt[te], p.argmax(axis=1), n_out)[-1]) for te, p in zip(tests, P)]
        return [float(np.mean(np.abs(p[:, 0] - Yt[te, 0]))) for te, p in zip(tests, P)]

    res = {"pair": name, "task": task, "metric": "macro F1" if classify else "MAE", "grid": grid,
           "n_source": int(len(Xs)), "n_target": int(len(Xt)), "source_fit_s": t_src, "rows": {}}  # fmt: skip
    # the source network (the first) unchanged on each split's test materials
    zero = []
    for _, te in splits:
        P0 = predict_networks_on(source, [Xt[te]] + [Xt[te[:1]]] * (a.source_networks - 1))[0]
        if classify:
            from xanesdb.ml.evaluate import f1_per_class

            zero.append(float(f1_per_class(Yt[te], P0.argmax(axis=1), n_out)[-1]))
        else:
            zero.append(float(np.mean(np.abs(P0[:, 0] - Yt[te, 0]))))
    res["source_only"] = float(np.mean(zero))
    for label, kw in (("scratch", {}), ("transfer", {"source": source, "freeze": a.freeze, "standardize": a.standardize,
                                                     "learning_rate": a.transfer_lr})):  # fmt: skip
        t0 = time.perf_counter()
        model, info = fine_tune(Xt, Yt, train_sets, arch, n_out, epochs=a.epochs, seed=a.seed + 1, **kw)
        s = score(model)
        res[f"{label}_s"] = time.perf_counter() - t0
        for f in a.fractions:
            v = [s[i] for i, p in enumerate(pairs) if p[0] == f]
            res["rows"].setdefault(f"{f:g}", {})[label] = [float(np.mean(v)), float(np.std(v))]
            res["rows"][f"{f:g}"]["n_train"] = float(np.mean([len(train_sets[i]) for i, p in enumerate(pairs) if p[0] == f]))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fractions", default="0.2,0.3,0.4,0.5")
    p.add_argument("--tasks", default="lce_class,coordination_number")
    p.add_argument("--pairs", default=",".join(PAIRS))
    p.add_argument("--splits", type=int, default=3)
    p.add_argument("--freeze", type=int, default=2)
    p.add_argument("--standardize", default="source", help="source or target (see xanesdb.ml.transfer.TransferConfig)")
    p.add_argument("--name", default="transfer", help="results file stem")
    p.add_argument("--transfer-lr", type=float, default=1e-3, help="Adam learning rate of the fine-tuning (scratch: 1e-3)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--source-epochs", type=int, default=60)
    p.add_argument("--source-networks", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    a.fractions = [float(x) for x in a.fractions.split(",")]
    from xanesdb.ml.train import runtime_info

    t_all = time.perf_counter()
    results = []
    for name in a.pairs.split(","):
        src_q, tgt_q = PAIRS[name]
        for task in a.tasks.split(","):
            r = run_pair(name, src_q, tgt_q, task, a)
            results.append(r)
            print(f"{name} {task}: source {r['n_source']}, target {r['n_target']}, source only {r['source_only']:.3f}, "
                  f"fit scratch {r['scratch_s']:.0f} s transfer {r['transfer_s']:.0f} s", flush=True)  # fmt: skip
    total = time.perf_counter() - t_all
    lines = [f"Transfer: {a.splits} grouped splits (80/20 by material), freeze {a.freeze}, {a.epochs} epochs "
             f"(source {a.source_epochs}); input standardisation of the transferred networks: {a.standardize}'s; fine-tuning learning rate {a.transfer_lr:g}; mean ± std over splits; {total:.0f} s in all on {runtime_info()['device']}", ""]  # fmt: skip
    for r in results:
        better = "higher" if r["metric"] == "macro F1" else "lower"
        lines += [f"**{r['pair']}, {r['task']}** ({r['metric']}, {better} is better; source {r['n_source']} spectra, "
                  f"target {r['n_target']}; grids {r['grid']['source_grid']} -> {r['grid']['target_grid']}, "
                  f"starts {r['grid']['offset_ev']:+g} eV apart; source network unchanged: {r['source_only']:.3f})", "",
                  "| target fraction | training rows | scratch | transfer |", "|---|---|---|---|"]  # fmt: skip
        for f, row in r["rows"].items():
            lines.append(f"| {f} | {row['n_train']:.0f} | {row['scratch'][0]:.3f} ± {row['scratch'][1]:.3f} | "
                         f"{row['transfer'][0]:.3f} ± {row['transfer'][1]:.3f} |")  # fmt: skip
        lines.append("")
    text = "\n".join(lines)
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.name}.md").write_text(text + "\n")
    (a.out / f"{a.name}.json").write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k != "out"},
                                                     "results": results, "total_s": total, "lin": LIN}, indent=1) + "\n")


if __name__ == "__main__":
    main()
