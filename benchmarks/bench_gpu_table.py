"""The eight-absorber results table and its training time, on whatever accelerator Keras finds.

Three sub-commands:

``export OUT.npz``
    Here, against the database: one dataset per absorber (xanesdb FEFF10 spectra, T4/S5/O6,
    duplicates excluded) plus the OmniXAS FEFF9 Cu spectra, read through the same
    :func:`xanesdb.ml.dataset.load_dataset` as ``xanesdb train`` (query and fingerprint kept).
``table DATA.npz --json OUT.json``
    Anywhere with keras + numpy + scikit-learn (a GPU node: ``KERAS_BACKEND=jax``): every dataset x
    {MLP, CNN} x {full spectrum, pre-edge} x {paper's 90/10, grouped by material}, 10 networks side by
    side per configuration, shift augmentation, plus CNN with balanced class weights and the
    un-augmented MLP/CNN for the robustness curves. Prints a Markdown table and total time.
``timing [--scale 1.0]``
    Training time of the paper's full-size table: synthetic spectra with the class counts of the
    paper's Table I (18,184 spectra), 8 absorbers x 10 networks x 2 architectures x 50 epochs on
    5x shift-augmented data, each network with its own batch-32 updates; plus inference
    throughput. Only the sizes matter for the time, so random spectra suffice.

    KERAS_BACKEND=jax python benchmarks/bench_gpu_table.py timing [--together]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ABSORBERS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
CLASSES = ("O6", "S5", "T4")
#: Carbone et al. (2019) Table I class counts (T4, S5, O6)
PAPER_COUNTS = {"Ti": (271, 359, 1562), "V": (948, 412, 2006), "Cr": (396, 121, 902), "Mn": (502, 657, 2334),
                "Fe": (797, 319, 1874), "Co": (583, 227, 1428), "Ni": (246, 163, 1238), "Cu": (290, 183, 366)}


def export(out: Path, min_per_class: int = 2) -> None:
    from xanesdb.ml.dataset import load_dataset

    arrays: dict[str, np.ndarray] = {}
    names = []
    queries = {el: {"element": el, "source": "xanesdb", "lce_class": {"$in": list(CLASSES)}} for el in ABSORBERS}
    queries["Cu-FEFF9"] = {"element": "Cu", "source": "omnixas", "lce_class": {"$in": list(CLASSES)}}
    for name, q in queries.items():
        try:
            ds = load_dataset(q)
        except Exception as err:  # noqa: BLE001 - an absorber without data is reported, not fatal
            print(f"{name}: {err}")
            continue
        counts = {c: int((ds.labels == c).sum()) for c in CLASSES}
        print(f"{name}: {len(ds)} spectra {counts} fingerprint {ds.fingerprint}")
        names.append(name)
        arrays[f"{name}__X"] = ds.X
        arrays[f"{name}__labels"] = ds.labels.astype(str)
        arrays[f"{name}__groups"] = ds.groups.astype(str)
        arrays[f"{name}__energies"] = ds.energies
        arrays[f"{name}__query"] = np.array(json.dumps(q))
        arrays[f"{name}__fingerprint"] = np.array(ds.fingerprint)
    arrays["names"] = np.array(names)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}")


def _dataset(z, name: str):
    from xanesdb.ml.dataset import XanesDataset

    return XanesDataset(X=z[f"{name}__X"], labels=z[f"{name}__labels"], groups=z[f"{name}__groups"],
                        spectrum_ids=tuple(f"{name}-{i}" for i in range(len(z[f"{name}__X"]))),
                        energies=z[f"{name}__energies"], grid_name=name, query=json.loads(str(z[f"{name}__query"])),
                        criteria={}, label_field="lce_class", fingerprint=str(z[f"{name}__fingerprint"]))


#: (label, TrainConfig overrides) of the table's columns
CONFIGS = [
    ("MLP", dict(kind="mlp")), ("CNN", dict(kind="cnn")),
    ("pre-edge MLP", dict(kind="mlp", pre_edge=True)), ("pre-edge CNN", dict(kind="cnn", pre_edge=True)),
    ("CNN balanced", dict(kind="cnn", class_weight="balanced")),
]


def table(data: Path, out_json: Path | None, epochs: int, n_models: int, names: list[str] | None = None) -> None:
    from xanesdb.ml.train import TrainConfig, runtime_info, train_on_dataset

    info = runtime_info()
    print(f"backend {info['backend']} on {info['device']}; keras {info['versions'].get('keras')}", flush=True)
    z = np.load(data, allow_pickle=False)
    rows = []
    t_all = time.perf_counter()
    for name in [str(n) for n in z["names"] if not names or str(n) in names]:
        ds = _dataset(z, name)
        counts = {c: int((ds.labels == c).sum()) for c in CLASSES}
        runs = [(label, protocol, {**over, "augment": ("shift",)}) for label, over in CONFIGS for protocol in ("paper", "grouped")]
        runs += [(f"{k.upper()} no augmentation", "paper", {"kind": k, "augment": ()}) for k in ("mlp", "cnn")]
        for label, protocol, over in runs:
            cfg = TrainConfig(protocol=protocol, epochs=epochs, n_models=n_models, curves=not over.get("pre_edge"), **over)
            t0 = time.perf_counter()
            try:
                _, metrics, _, _ = train_on_dataset(ds, cfg)
            except Exception as err:  # noqa: BLE001 - e.g. a class with too few spectra for a split
                print(f"{name} {label} {protocol}: {err}", flush=True)
                continue
            f1 = metrics["f1"]
            row = {"dataset": name, "model": label, "protocol": protocol, "n": len(ds), "counts": counts,
                   "macro": f1["macro"], "per_class": {c: f1[c] for c in f1 if c != "macro"}, "seconds": round(time.perf_counter() - t0, 1),
                   "shift_curve": metrics.get("shift_curve"), "noise_curve": metrics.get("noise_curve"),
                   "confusion": metrics.get("confusion"), "config": cfg.as_dict()}
            rows.append(row)
            print(f"{name:9s} {label:18s} {protocol:8s} n={len(ds):5d} macro F1 {_fmt(f1['macro'])}  "
                  f"{_per_class(f1)}  {row['seconds']} s", flush=True)
    total = time.perf_counter() - t_all
    print(f"\nwhole table: {len(rows)} configurations x {n_models} networks, {epochs} epochs: {total:.0f} s", flush=True)
    if out_json:
        out_json.write_text(json.dumps({"runtime": info, "total_s": total, "rows": rows}, indent=1, default=float))


def _fmt(v) -> str:
    return f"{v[0]:.3f} +- {v[1]:.3f}"


def _per_class(f1: dict) -> str:
    return " ".join(f"{c} {v[0]:.2f}" for c, v in f1.items() if c != "macro")


def timing(scale: float, epochs: int, n_models: int, kinds: list[str], together: bool = False) -> None:
    """Train the paper-size table; ``together`` puts all 8 x n_models networks of an architecture in one model.

    Side by side, every network keeps its own batch-32 updates on its own (augmented) training rows;
    one compiled step updates all of them. A network whose training set is shorter than the
    largest one's gets its rows resampled up to that length (so Cu's networks see about 4x more
    updates than 50 of its own epochs) -- the price of one step for all absorbers.
    """
    from xanesdb.ml.train import TrainConfig, fit_group, runtime_info

    info = runtime_info()
    mode = "all absorbers side by side" if together else "one absorber at a time"
    print(f"backend {info['backend']} on {info['device']}; paper sizes x {scale}; {n_models} networks per absorber; "
          f"{epochs} epochs; batch 32; shift augmentation (5x); {mode}", flush=True)
    rng = np.random.default_rng(0)
    energies = 0.5 * np.arange(100)
    data = {}
    for el, counts in PAPER_COUNTS.items():
        n = int(sum(counts) * scale)
        X = rng.random((n, 100)).astype("float32")
        y = rng.integers(0, 3, n)
        data[el] = (X, y, [rng.permutation(n)[: int(0.9 * n)] for _ in range(n_models)])
    totals = {k: 0.0 for k in kinds}
    t_all = time.perf_counter()
    last = None
    if together:
        X = np.concatenate([d[0] for d in data.values()])
        y = np.concatenate([d[1] for d in data.values()])
        offsets = np.cumsum([0] + [len(d[0]) for d in data.values()])[:-1]
        sets = [tr + off for off, d in zip(offsets, data.values()) for tr in d[2]]
        print("| architecture | networks | spectra | training rows per network (max) | seconds |")
        print("|---|---|---|---|---|")
        for kind in kinds:
            t0 = time.perf_counter()
            model = fit_group(X, y, sets, energies, 3, TrainConfig(kind=kind, epochs=epochs, augment=("shift",)))
            totals[kind] = time.perf_counter() - t0
            last = (model, X)
            print(f"| {kind.upper()} | {len(sets)} | {len(X)} | {max(len(s) for s in sets) * 5} | {totals[kind]:.1f} |",
                  flush=True)
    else:
        print("| absorber | spectra | training rows per network | MLP s | CNN s |")
        print("|---|---|---|---|---|")
        for el, (X, y, sets) in data.items():
            secs = {}
            for kind in kinds:
                t0 = time.perf_counter()
                model = fit_group(X, y, sets, energies, 3, TrainConfig(kind=kind, epochs=epochs, augment=("shift",)))
                secs[kind] = time.perf_counter() - t0
                totals[kind] += secs[kind]
                last = (model, X)
            print(f"| {el} | {len(X)} | {len(sets[0]) * 5} | "
                  + " | ".join(f"{secs.get(k, 0):.1f}" for k in ("mlp", "cnn")) + " |", flush=True)
        print(f"| all | {sum(len(d[0]) for d in data.values())} | | {totals.get('mlp', 0):.1f} | {totals.get('cnn', 0):.1f} |")
    total = time.perf_counter() - t_all
    print(f"\nwhole table (8 absorbers x {n_models} networks x {len(kinds)} architectures x {epochs} epochs): {total:.0f} s "
          f"= {total / 60:.1f} min", flush=True)
    model, X = last
    k = model.input_shape[1]
    Xin = np.repeat(X[:, None], k, axis=1)
    model.predict(Xin[:256], verbose=0)
    t0 = time.perf_counter()
    model.predict(Xin, batch_size=4096, verbose=0)
    dt = time.perf_counter() - t0
    print(f"inference ({kinds[-1].upper()}, {k} networks side by side): {len(X) * k / dt:,.0f} spectra x networks per s, "
          f"{len(X) / dt:,.0f} spectra per s through all {k}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("out", type=Path)
    t = sub.add_parser("table")
    t.add_argument("data", type=Path)
    t.add_argument("--json", type=Path, default=None)
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--models", type=int, default=10)
    t.add_argument("--only", default="", help="comma-separated dataset names (default: all)")
    g = sub.add_parser("timing")
    g.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's dataset sizes")
    g.add_argument("--epochs", type=int, default=50)
    g.add_argument("--models", type=int, default=10)
    g.add_argument("--kinds", default="mlp,cnn")
    g.add_argument("--together", action="store_true", help="all absorbers' networks side by side in one model")
    g.add_argument("--compare", action="store_true", help="both ways in one run, and their ratio")
    a = p.parse_args(argv)
    if a.cmd == "export":
        export(a.out)
    elif a.cmd == "table":
        table(a.data, a.json, a.epochs, a.models, [n for n in a.only.split(",") if n])
    elif a.compare:
        t0 = time.perf_counter()
        timing(a.scale, a.epochs, a.models, a.kinds.split(","), False)
        t1 = time.perf_counter()
        timing(a.scale, a.epochs, a.models, a.kinds.split(","), True)
        t2 = time.perf_counter()
        print(f"\none absorber at a time {t1 - t0:.1f} s, all absorbers side by side {t2 - t1:.1f} s: "
              f"{(t1 - t0) / (t2 - t1):.2f}x faster side by side (inference included in both)")
    else:
        timing(a.scale, a.epochs, a.models, a.kinds.split(","), a.together)
    return 0


if __name__ == "__main__":
    sys.exit(main())
