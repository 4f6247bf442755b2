"""``xanesdb train``, ``xanesdb models list|show|export|import|score|reproduce|report``.

Thin: parse arguments, call :mod:`xanesdb.ml`. Keras is imported only when a command runs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from xanesdb.commands._console import SafeConsole, epoch_bar
from rich.table import Table

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)

app = typer.Typer(help="Trained models: list, inspect, export and import the registry.", no_args_is_help=True)
models_app = app


#: a document field name as --label takes it: no operators ($), no empty parts
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z0-9_]{1,64}){0,4}$")


def _fmt_f1(v) -> str:
    return f"{v[0]:.3f} ± {v[1]:.3f}" if isinstance(v, (list, tuple)) and len(v) == 2 else "-"


def train(
    query: str = typer.Option(..., "--query", "-q", help="JSON filter on spectra, e.g. '{\"element\": \"Cu\"}'."),
    model: str = typer.Option("mlp", "--model", "-m", help="mlp or cnn."),
    epochs: int = typer.Option(50, help="Training epochs (paper: 50)."),
    min_steps: Optional[int] = typer.Option(
        None, "--min-steps", help="At least this many updates per network: more epochs on small datasets (paper: none)."
    ),
    augment: str = typer.Option("", help="Comma-separated augmentations: shift, noise, measured (training data only)."),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", help="measured: the recipe of the shipped models for measured spectra (--representation "
        "aligned --augment measured --fidelity scf --calibration k-edge --window=-1,44.5 --n-models 15 --min-steps 1500 "
        "--class-weight balanced, measured-like copies with 15 % edge-step errors); an option given with it at other "
        "than its default replaces that part."
    ),
    representation: str = typer.Option(
        "grid", help="grid (the paper's absolute grid, max-scaled) or aligned (edge-step normalised, half-step "
        "origin; calibrated, with an outlier test: for measured spectra)."
    ),
    fidelity: Optional[str] = typer.Option(
        None, "--fidelity", help="scf: correct fast-preset spectra towards the scf preset (fitted on sites computed "
        "with both) before training; aligned representation only."
    ),
    calibration: Optional[str] = typer.Option(
        None, "--calibration", help="k-edge (shipped) or a JSON file: map every training spectrum to what a "
        "measurement of it looks like (energy stretch, broadening, damping fitted on reference compounds); aligned "
        "representation only."
    ),
    window: Optional[str] = typer.Option(
        None, "--window", help="LO,HI: feed the networks only this energy range (eV from the half step on the aligned "
        "grid), e.g. -1,44.5."
    ),
    seed: int = typer.Option(0, help="Random seed (splits, initialisation, dropout, noise)."),
    protocol: str = typer.Option("paper", help="paper (stratified 90/10) or grouped (no material in train and test)."),
    n_models: int = typer.Option(10, "--n-models", help="Networks trained side by side, one per split."),
    ensemble: Optional[int] = typer.Option(
        None, "--ensemble", help="Networks per split, their probabilities averaged (paper: 1; regression: 3, their spread the uncertainty)."
    ),
    label: list[str] = typer.Option(["lce_class"], help="Spectrum field to learn (regression: repeat for several numeric fields)."),
    class_weight: Optional[str] = typer.Option(None, help="balanced: weight classes by inverse frequency."),
    pre_edge: bool = typer.Option(False, "--pre-edge", help="Use only the grid points before the main edge."),
    curves: bool = typer.Option(True, help="Compute robustness curves (test shift and noise)."),
    task: str = typer.Option("classification", "--task", help="classification, or regression of numeric spectrum/site "
                             "fields (--model gbt, mlp-shallow, mlp-deep, cnn-lin, mlp, cnn), or fractions of O6/S5/T4 sites (mixtures; "
                             "--n-models folds over materials, aligned spectra)."),
    train_fraction: float = typer.Option(1.0, "--train-fraction", help="Regression: fraction of each split's training rows used, in (0, 1]."),
    png: Optional[Path] = typer.Option(None, "--png", help="Regression: write the held-out parity plot here."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Regression: what training minimises, mse (default), "
                                       "huber or mae (absolute error: suits discrete targets such as coordination numbers)."),
    from_run: Optional[str] = typer.Option(None, "--from", help="Fine-tune this registered run (classifier or network "
                                           "regression) on the query's spectra: same edge and grid length; a --representation aligned "
                                           "classifier reads any absorber (transfer learning)."),
    pretrain: Optional[str] = typer.Option(
        None, "--pretrain", help="JSON filter on spectra, labelled or not (e.g. '{\"element\": \"Cu\", \"source\": "
        "\"omnixas\"}'): pretrain an autoencoder (encoder 128-64-32) per split on them, less that split's test "
        "materials, then train the classifier 128-64-32-<classes> from its encoder (same grid as --query)."
    ),
    freeze: Optional[int] = typer.Option(None, "--freeze", help="With --from: first weight layers kept as trained "
                                         "(default 2, Lin et al.); with --pretrain: first encoder layers kept as "
                                         "pretrained (default 0: all trained)."),
    fraction: float = typer.Option(1.0, "--fraction", help="With --from or --pretrain: share of each split's training "
                                   "rows used, in (0, 1]."),
    standardize: Optional[str] = typer.Option(None, "--standardize", help="With --from: source (keep the source "
                                              "networks' input standardisation, the default) or target (refit it on "
                                              "the target's training rows)."),
) -> None:
    """Train classifiers (or regressors: --task regression) on the spectra a query selects, score them, register the run."""
    from xanesdb.platform.queries import parse_filter

    criteria = parse_filter(query)
    measurement = None
    if recipe is not None:
        if recipe != "measured":
            raise XanesdbUserError(f"unknown --recipe {recipe!r}; use measured")
        if task != "classification" or from_run is not None or pretrain is not None:
            raise XanesdbUserError("--recipe measured trains a classifier from scratch; leave out --task, --from and --pretrain")
        from xanesdb.ml.train import MEASURED_RECIPE as r

        # the recipe fills what was left at its default; an option given otherwise takes precedence
        augment = augment or ",".join(r["augment"])
        representation = r["representation"] if representation == "grid" else representation
        fidelity = r["fidelity"] if fidelity is None else fidelity
        calibration = r["calibration"] if calibration is None else calibration
        window = ",".join(f"{v:g}" for v in r["window"]) if window is None else window
        n_models = r["n_models"] if n_models == 10 else n_models
        min_steps = r["min_steps"] if min_steps is None else min_steps
        class_weight = r["class_weight"] if class_weight is None else class_weight
        measurement = dict(r["measurement"])
    if standardize is not None and from_run is None:
        raise XanesdbUserError("--standardize is for fine-tuning with --from")
    if loss is not None and (task != "regression" or from_run is not None):
        raise XanesdbUserError("--loss is for --task regression (a fine-tuned run keeps its source's loss)")
    pre_criteria = None
    if pretrain is not None:
        if from_run is not None:
            raise XanesdbUserError("--pretrain and --from both give the network its starting weights; use one of them")
        try:
            pre_criteria = parse_filter(pretrain)
        except XanesdbUserError as err:
            raise XanesdbUserError(f"--pretrain: {str(err).splitlines()[0]}") from None
        if task != "classification":
            raise XanesdbUserError("--pretrain trains a classifier; leave out --task (regression and fractions do not "
                                   "take a pretrained encoder)")  # fmt: skip
    if from_run is not None:  # xanesdb.commands.transfer: issue 20 item 3 (architecture and task from the run)
        from xanesdb.commands.transfer import train_transfer

        return train_transfer(criteria, from_run, 2 if freeze is None else freeze, fraction,
                              None if label == ["lce_class"] else label, protocol, n_models,
                              1 if ensemble is None else ensemble, epochs, seed, standardize or "source")  # fmt: skip
    if task not in ("classification", "regression", "fractions"):
        raise XanesdbUserError(f"unknown --task {task!r}; use classification, regression or fractions")
    if task == "fractions":  # xanesdb.commands.fractions: issue 21 (site fractions of mixtures)
        from xanesdb.commands.fractions import train_fractions

        return train_fractions(criteria, n_models, epochs, seed, png, fidelity, calibration)
    if task == "regression":  # xanesdb.commands.regression: issue 20
        if label == ["lce_class"]:
            raise XanesdbUserError("--task regression needs --label, a numeric field such as mean_bond_length (repeat for several)")
        from xanesdb.commands.regression import train_regression

        return train_regression(criteria, label, model, protocol, n_models, 3 if ensemble is None else ensemble, epochs,
                                seed, train_fraction, png, loss or "mse")
    if len(label) > 1:
        raise XanesdbUserError("a classifier learns one --label; several are for --task regression")
    label, ensemble = label[0], 1 if ensemble is None else ensemble
    if not _FIELD_NAME.match(label):
        raise XanesdbUserError(f"--label {label[:60]!r} is not a field name; give a spectrum field such as "
                               "lce_class or element (letters, digits, _ and dots, no $)")
    if model not in ("mlp", "cnn"):
        raise XanesdbUserError(f"unknown --model {model!r}; use mlp or cnn")
    if protocol not in ("paper", "grouped"):
        raise XanesdbUserError(f"unknown --protocol {protocol!r}; use paper or grouped")
    kinds = tuple(a.strip() for a in augment.split(",") if a.strip())
    from xanesdb.ml.augment import AUGMENTATIONS

    bad = [a for a in kinds if a not in AUGMENTATIONS]
    if bad:
        raise XanesdbUserError(f"unknown augmentation {bad[0]!r}; use any of {', '.join(AUGMENTATIONS)} (comma-separated)")
    if representation not in ("grid", "aligned"):
        raise XanesdbUserError(f"unknown --representation {representation!r}; use grid or aligned")
    if fidelity not in (None, "scf", "scflite", "mp"):
        raise XanesdbUserError(f"unknown --fidelity {fidelity!r}; use scf (or mp)")
    if fidelity and representation != "aligned":
        raise XanesdbUserError("--fidelity needs --representation aligned")
    if calibration is not None and representation != "aligned":
        raise XanesdbUserError("--calibration needs --representation aligned")
    win = None
    if window is not None:
        try:
            lo, hi = (float(v) for v in window.split(","))
        except ValueError:
            raise XanesdbUserError(f"--window {window!r} is not LO,HI in eV, e.g. --window=-1,44.5") from None
        if not lo < hi:
            raise XanesdbUserError(f"--window {window!r}: LO must be below HI")
        win = (lo, hi)
    if class_weight not in (None, "balanced"):
        raise XanesdbUserError(f"unknown --class-weight {class_weight!r}; use balanced")
    if epochs < 1 or n_models < 1 or ensemble < 1:
        raise XanesdbUserError("--epochs, --n-models and --ensemble must be at least 1")
    if min_steps is not None and min_steps < 1:
        raise XanesdbUserError("--min-steps must be at least 1")
    if pre_criteria is not None:  # issue 20 item 4: autoencoder pretraining on every spectrum of the absorber
        other = [name for name, used in (("--model cnn", model != "mlp"), ("--augment", bool(kinds)),
                                         ("--representation aligned", representation != "grid"),
                                         ("--fidelity", fidelity is not None), ("--calibration", calibration is not None),
                                         ("--window", win is not None), ("--pre-edge", pre_edge),
                                         ("--class-weight", class_weight is not None)) if used]  # fmt: skip
        if other:
            raise XanesdbUserError(f"--pretrain trains an MLP 128-64-32 on the absolute grid's spectra as they are; "
                                   f"leave out {', '.join(other)}")  # fmt: skip
        return _train_pretrained(criteria, pre_criteria, label, 0 if freeze is None else freeze, fraction, protocol,
                                 n_models, ensemble, epochs, min_steps, seed)  # fmt: skip
    from xanesdb.ml.train import TrainConfig, train_from_query

    config = TrainConfig(kind=model, epochs=epochs, augment=kinds, seed=seed, protocol=protocol,
                         n_models=n_models, class_weight=class_weight, pre_edge=pre_edge, curves=curves,
                         min_steps=min_steps, ensemble=ensemble, representation=representation,
                         fidelity=fidelity, calibration=calibration, window=win, measurement=measurement)  # fmt: skip
    k = n_models * ensemble
    with epoch_bar(err_console, f"training {k} {model} side by side", epochs,
                   lambda loss: f"training {k} {model} (loss {loss:.3f})") as on_epoch:  # fmt: skip
        result = train_from_query(criteria, config, get_settings(), label_field=label, on_epoch=on_epoch)
    doc = result.doc
    console.print(f"model {doc.run_id}: {doc.n_spectra} spectra, classes {', '.join(doc.classes)}, "
                  f"fingerprint {doc.fingerprint}")  # fmt: skip
    _print_f1(doc)
    cal = doc.metrics.get("calibration")
    if cal:
        console.print(f"calibration on {cal['n']} measured-like held-out spectra: temperature {cal['temperature']:.2f}, "
                      f"expected calibration error {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}")  # fmt: skip
    fid = doc.metrics.get("fidelity")
    if fid:
        console.print(f"fidelity correction fast -> {fidelity}: shift {fid['delta']:g} eV over an onset of {fid['e1']:g} eV, "
                      f"broadening {fid['sigma']:g} eV; on {fid['n_pairs']} twin sites RMSE {fid['rmse_before']:.3f} -> "
                      f"{fid['rmse_after']:.3f}")  # fmt: skip
    mc = doc.metrics.get("measured_calibration")
    if mc:
        console.print(f"measured calibration {calibration}: energy scale x{mc['stretch']:g} above the edge, shift "
                      f"{mc['shift']:g} eV, broadening {mc['sigma']:g} eV, damping {mc['damping']:g}")  # fmt: skip
    console.print(f"trained with Keras ({doc.backend}) on {doc.device}")
    console.print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in doc.timings.items()))


def _train_pretrained(criteria: dict, pre_criteria: dict, label: str, freeze: int, fraction: float, protocol: str,
                      n_models: int, ensemble: int, epochs: int, min_steps: Optional[int], seed: int) -> None:  # fmt: skip
    """``xanesdb train --pretrain``: check the knobs (before any data is read), pretrain, train, register, print."""
    from xanesdb.ml.autoencoder import PretrainConfig, pretrain_from_query

    cfg = PretrainConfig(freeze=freeze, fraction=fraction, n_models=n_models, ensemble=ensemble, protocol=protocol,
                         epochs=epochs, min_steps=min_steps, seed=seed)  # fmt: skip
    cfg.check()
    phase = [f"pretraining {n_models} autoencoders"]  # one bar: the autoencoders' epochs, then the classifiers'
    ae_epochs = cfg.ae_epochs or epochs
    with epoch_bar(err_console, phase[0], ae_epochs + epochs, lambda loss: f"{phase[0]} (loss {loss:.3f})") as bar:
        def on_epoch(e: int, loss: float, total: int) -> None:
            phase[0] = f"training {n_models * ensemble} classifiers"
            bar(ae_epochs + e, loss, ae_epochs + total)

        res = pretrain_from_query(criteria, pre_criteria, cfg, get_settings(), label_field=label,
                                  on_pretrain_epoch=lambda e, loss, total: bar(e, loss, total + epochs),
                                  on_epoch=on_epoch)  # fmt: skip
    doc = res.doc
    pre = doc.hyperparameters["pretrain"]
    n_pre = pre["n_pretrain"]
    console.print(f"model {doc.run_id}: mlp {'-'.join(map(str, pre['encoder']))}-{len(doc.classes)} on {doc.n_spectra} "
                  f"spectra, classes {', '.join(doc.classes)}, fingerprint {doc.fingerprint}")  # fmt: skip
    console.print(f"pretrained on {pre['n_spectra']} spectra of {json.dumps(pre['query'])[:80]} ({min(n_pre)}-{max(n_pre)} "
                  f"per split, the test materials' left out), {pre['epochs']} epochs; held-out reconstruction MSE "
                  f"{_fmt_f1(pre['reconstruction_mse'])}; frozen {', '.join(pre['frozen_layers']) or 'nothing'}; trained "
                  f"on {100 * fraction:g} % of each split's training rows (mean "
                  f"{sum(doc.metrics['n_train']) / len(doc.metrics['n_train']):.0f})")  # fmt: skip
    _print_f1(doc)
    console.print(f"trained with Keras ({doc.backend}) on {doc.device}")
    console.print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in doc.timings.items()))


def _num(v) -> str:
    """A mean ± std pair as :func:`_fmt_f1` writes it, or a single number."""
    if isinstance(v, (list, tuple)):
        return _fmt_f1(v)
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def _headline(run: dict) -> str:
    """The one score of a run for `models list`: macro F1, a regression's MAE, or a fractions MAE."""
    m = run.get("metrics", {}) or {}
    task = run.get("task") or "classification"
    if task == "regression" and m.get("targets"):
        lab, t = next(iter(m["targets"].items()))
        more = f" (+{len(m['targets']) - 1})" if len(m["targets"]) > 1 else ""
        return f"MAE {lab} {_num(t.get('mae_ensemble'))} vs {_num(t.get('mae_baseline'))}{more}"
    if task == "fractions" and "mae_mixed" in m:
        return f"MAE fractions {_num(m['mae_mixed'])} vs {_num(m.get('mae_mixed_baseline_mean'))}"
    return "F1 " + _fmt_f1(m.get("f1", {}).get("macro"))


def _print_scores(doc) -> None:
    """A regression's per-target table or a fractions run's MAE; the F1 table otherwise."""
    m = doc.metrics
    if getattr(doc, "task", None) == "regression" and m.get("targets"):
        t = Table(title="held-out scores per target (mean ± std over splits; baseline: the training mean)")
        for col in ("target", "MAE ensemble", "R² ensemble", "MAE baseline", "±1σ coverage"):
            t.add_column(col)
        for lab, v in m["targets"].items():
            t.add_row(lab, _num(v.get("mae_ensemble")), _num(v.get("r2_ensemble")), _num(v.get("mae_baseline")),
                      _num((v.get("coverage") or {}).get("1sigma")))  # fmt: skip
        console.print(t)
        return
    if getattr(doc, "task", None) == "fractions" and "mae_mixed" in m:
        console.print(f"site fractions, held-out mixed-site materials: MAE {_num(m['mae_mixed'])} (all held out "
                      f"{_num(m.get('mae_all'))}); baselines: training mean {_num(m.get('mae_mixed_baseline_mean'))}, "
                      f"non-negative least squares {_num(m.get('mae_mixed_baseline_nnls'))}")  # fmt: skip
        return
    _print_f1(doc)


def _print_f1(doc) -> None:
    f1 = doc.metrics.get("f1", {})
    t = Table(title=f"F1 ({doc.hyperparameters.get('protocol')} protocol, mean ± std over networks x bootstraps)")
    for c in [*doc.classes, "macro"]:
        t.add_column(c)
    t.add_row(*[_fmt_f1(f1.get(c)) for c in [*doc.classes, "macro"]])
    console.print(t)


@app.command("list")
def models_list(
    query: Optional[str] = typer.Option(None, "--query", "-q", help="JSON filter on the models collection."),
) -> None:
    """List registered training runs, newest first."""
    from xanesdb.ml.registry import list_runs
    from xanesdb.platform.queries import parse_filter

    runs = list_runs(get_settings(), parse_filter(query) if query else None)
    if not runs:
        console.print("no models registered; train one with `xanesdb train --query ...`")
        return
    t = Table()
    t.add_column("run_id", no_wrap=True, min_width=max(len(r["run_id"]) for r in runs))
    for col in ("kind", "state", "protocol", "augment", "n", "score", "query", "created"):
        t.add_column(col)
    for r in runs:
        hp = r.get("hyperparameters", {})
        kind = r["kind"] + (" pre-edge" if hp.get("pre_edge") else "")
        t.add_row(r["run_id"], kind, r.get("state", ""), str(hp.get("protocol", "")), ",".join(hp.get("augment", [])) or "-",
                  str(r.get("n_spectra", "")), _headline(r),
                  json.dumps(r.get("query", {}))[:60], str(r.get("created", ""))[:19])  # fmt: skip
    console.print(t)


@app.command("show")
def models_show(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix) from `xanesdb models list`."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole document as JSON."),
) -> None:
    """Show one training run: query, fingerprint, knobs, scores, versions, timings."""
    from xanesdb.ml.registry import get_run

    doc = get_run(run_id, get_settings())
    if as_json:
        print(json.dumps(doc.model_dump(mode="json"), indent=2))
        return
    console.print(f"[bold]{escape(doc.run_id)}[/] ({escape(doc.kind)}, {escape(doc.state)}) created "
                  f"{doc.created:%Y-%m-%d %H:%M:%S}", markup=True)
    console.print(f"query: {json.dumps(doc.query)}  label: {doc.label_field}  classes: {', '.join(doc.classes)}")
    console.print(f"data: {doc.n_spectra} spectra, fingerprint {doc.fingerprint}, grid {doc.grid_name}")
    hp = {k: v for k, v in doc.hyperparameters.items() if k != "feature_indices"}
    console.print(f"hyper-parameters: {json.dumps(hp)}; {len(doc.hyperparameters.get('feature_indices', []))} input points")
    console.print(f"backend {doc.backend} on {doc.device}; seed {doc.seed}; weights {doc.weights_file_id}")
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in doc.versions.items()))
    console.print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in doc.timings.items()))
    _print_scores(doc)
    conf = doc.metrics.get("confusion")
    if conf:
        t = Table(title="confusion (rows true, columns predicted; summed over test sets)")
        t.add_column("")
        for c in doc.classes:
            t.add_column(c)
        for c, row in zip(doc.classes, conf):
            t.add_row(c, *map(str, row))
        console.print(t)
    for name in ("shift_curve", "noise_curve"):
        cur = doc.metrics.get(name)
        if cur:
            pts = ", ".join(f"{x:g}: {m:.2f}" for x, m in zip(cur["x"], cur["mean"]))
            console.print(f"{name} (macro F1): {pts}")


# ----------------------------------------------------------------------------- portable models
@app.command("export")
def models_export(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix) from `xanesdb models list`."),
    out: Path = typer.Argument(..., help="Folder for model.keras, card.json and card.md (created)."),
    force: bool = typer.Option(False, "--force", help="Overwrite a model already in the folder."),
) -> None:
    """Write a model as a folder that loads without a database (Keras file + model card)."""
    from xanesdb.ml.portable import export_portable
    from xanesdb.ml.registry import get_run, load_model
    from xanesdb.platform.export import check_output_file

    if out.exists() and not out.is_dir():
        raise XanesdbUserError(f"{out} is a file; give a folder for the model")
    names = ("model.keras", "card.json", "card.md")
    for name in names:
        check_output_file(out / name, "models export")
    there = [n for n in names if (out / n).exists()]
    if there and not force:
        raise XanesdbUserError(f"{out} already holds {', '.join(there)}; give an empty folder or add --force")
    settings = get_settings()
    doc = get_run(run_id, settings)
    model = load_model(doc, settings)
    try:
        export_portable(doc, model, out)
    except OSError as err:
        raise XanesdbUserError(f"cannot write the model in {out} ({err.strerror or err}); free space or "
                               "choose another folder") from None
    size = sum((out / n).stat().st_size for n in names)
    console.print(f"exported {doc.run_id} ({doc.kind}, classes {', '.join(doc.classes)}) to {out} "
                  f"({size / 1e6:.2f} MB: model.keras, card.json, card.md)")  # fmt: skip


@app.command("import")
def models_import(
    folder: Path = typer.Argument(..., help="Folder written by `xanesdb models export` (model.keras + card.json)."),
) -> None:
    """Register a model folder in the database under its own run id (replaces a run of that id)."""
    from xanesdb.ml.portable import load_portable
    from xanesdb.ml.registry import register_run
    from xanesdb.platform.stores import get_database

    if not folder.is_dir():
        raise XanesdbUserError(f"{folder} is not a folder; give the folder written by `xanesdb models export`")
    try:
        doc, model = load_portable(folder)
    except (XanesdbUserError, ModuleNotFoundError):  # the latter: Keras' backend missing (cli names the extra)
        raise
    except Exception as err:  # a damaged or foreign .keras file: keras raises many kinds
        raise XanesdbUserError(f"{folder / 'model.keras'} cannot be loaded as a xanesdb model "
                               f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})") from None
    shape = getattr(model, "input_shape", None)
    n_in = len(doc.hyperparameters.get("feature_indices", doc.energies))
    if not (isinstance(shape, tuple) and len(shape) == 3 and shape[-1] == n_in):
        raise XanesdbUserError(f"{folder / 'model.keras'} takes inputs {shape}, but its card describes "
                               f"(batch, networks, {n_in}); the folder mixes two models")
    settings = get_settings()
    replaced = get_database(settings)["models"].count_documents({"run_id": doc.run_id}, limit=1) > 0
    doc = register_run(doc, model, settings)
    console.print(f"{'replaced' if replaced else 'registered'} {doc.run_id} ({doc.kind}, {shape[1]} networks, "
                  f"classes {', '.join(doc.classes)}) from {folder}")  # fmt: skip


# ----------------------------------------------------------------------------- checks and reports
@app.command("score")
def models_score(
    model: str = typer.Option(..., "--model", "-m", help="Run id (or a unique prefix) from `xanesdb models list`."),
    query: str = typer.Option(..., "--query", "-q", help="JSON filter on spectra to score on, e.g. '{\"source\": \"omnixas\", \"element\": \"Cu\"}'."),
    align: str = typer.Option("edge", help="edge (move each spectrum's edge onto the training data's mean edge) or none."),
    shift: float = typer.Option(0.0, "--shift", help="Constant energy shift (eV) added to every spectrum before alignment."),
    exclude_training: bool = typer.Option(True, "--exclude-training-materials/--no-exclude-training-materials",
                                          help="Leave out materials that are in the model's training data."),
    max_extrapolate: float = typer.Option(2.0, "--max-extrapolate", help="eV of the model's grid a spectrum may miss at either end (held flat)."),
    png: Optional[Path] = typer.Option(None, "--png", help="Write the confusion matrix as a PNG here."),
    store: bool = typer.Option(True, "--store/--no-store", help="Keep the score on the run document (metrics.cross_scores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Score a registered model on the spectra another query selects (e.g. FEFF10 model on FEFF9 spectra)."""
    from xanesdb.ml.crosscheck import ALIGN_MODES, score_model_on_query, store_cross_score
    from xanesdb.ml.registry import get_run
    from xanesdb.platform.queries import parse_filter

    criteria = parse_filter(query)
    if png is not None:
        from xanesdb.platform.export import check_output_file

        check_output_file(png, "--png")
    if align not in ALIGN_MODES:
        raise XanesdbUserError(f"unknown --align {align!r}; use {' or '.join(ALIGN_MODES)}")
    if max_extrapolate < 0:
        raise XanesdbUserError("--max-extrapolate must be 0 or more (eV)")
    settings = get_settings()
    doc = get_run(model, settings)
    res = score_model_on_query(doc, criteria, settings, align=align, shift_ev=shift,
                               exclude_training_materials=exclude_training, max_extrapolate_ev=max_extrapolate)  # fmt: skip
    if store:
        from pymongo.errors import PyMongoError

        try:
            store_cross_score(res, settings)
        except PyMongoError as err:
            err_console.print(f"warning: score not stored on the run document ({type(err).__name__}: {err})")
    if png is not None:
        from xanesdb.ml.plots import plot_confusion

        plot_confusion(res["confusion"], res["classes"], png,
                       title=f"{doc.run_id} on {res['query_json'][:50]}\n(align {align}; {res['n_scored']} spectra, "
                             f"networks' mean probabilities)")  # fmt: skip
    if as_json:
        print(json.dumps(res))
        return
    for w in res["warnings"]:
        err_console.print(f"warning: {w}")
    console.print(f"model {doc.run_id} ({doc.kind}, trained on {json.dumps(doc.query)}) scored on {res['query_json']}")
    unknown = ", ".join(f"{k} {v}" for k, v in res["unknown_labels"].items()) or "none"
    console.print(f"spectra: {res['n_found']} found, {res['n_excluded_training']} of training materials left out, "
                  f"{sum(res['unknown_labels'].values())} with other labels ({unknown}), {res['n_off_grid']} off the "
                  f"model's grid; {res['n_scored']} scored ({res['n_materials']} materials: "
                  + ", ".join(f"{c} {n}" for c, n in res["class_counts"].items()) + ")")  # fmt: skip
    if align == "edge":
        console.print(f"aligned: edges moved onto {res['target_edge_ev']:.2f} eV, shift {res['mean_shift_ev']:+.2f} ± "
                      f"{res['std_shift_ev']:.2f} eV")  # fmt: skip
    t = Table(title=f"F1 on {res['n_scored']} spectra (mean ± std over {res['n_networks']} networks)")
    t.add_column("")
    for c in [*res["classes"], "macro"]:
        t.add_column(c)
    t.add_row("networks", *[_fmt_f1(res["f1"].get(c)) for c in [*res["classes"], "macro"]])
    t.add_row("ensemble", *[f"{res['f1_ensemble'][c]:.3f}" for c in [*res["classes"], "macro"]])
    console.print(t)
    t = Table(title="confusion (rows true, columns predicted; networks' mean probabilities)")
    t.add_column("")
    for c in res["classes"]:
        t.add_column(c)
    for c, row in zip(res["classes"], res["confusion"]):
        t.add_row(c, *map(str, row))
    console.print(t)
    if png is not None:
        console.print(f"confusion matrix written to {png}")


@app.command("reproduce")
def models_reproduce(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix) from `xanesdb models list`."),
    tol: float = typer.Option(0.05, "--tol", help="Largest accepted difference of the macro F1."),
    register: bool = typer.Option(False, "--register", help="Register the new run (same id: replaces the stored one)."),
) -> None:
    """Train again from the registry document alone; exit 0 if fingerprint and macro F1 (within --tol) match."""
    from xanesdb.ml.crosscheck import reproduce_run
    from xanesdb.ml.registry import get_run

    if tol < 0:
        raise XanesdbUserError("--tol must be 0 or more")
    settings = get_settings()
    doc = get_run(run_id, settings)
    hp = doc.hyperparameters
    console.print(f"reproducing {doc.run_id}: {doc.kind} on {json.dumps(doc.query)}, label {doc.label_field}, "
                  f"seed {doc.seed}, {hp.get('n_models')} x {hp.get('ensemble', 1)} networks x {hp.get('epochs')} epochs")  # fmt: skip
    with epoch_bar(err_console, "training", hp.get("epochs")) as on_epoch:
        res = reproduce_run(doc, settings, tol=tol, register=register, on_epoch=on_epoch)
    fp = res["fingerprint"]
    same = "equal" if fp["old"] == fp["new"] else "DIFFERENT"
    console.print(f"fingerprint: stored {fp['old']}, now {fp['new']} ({same}); "
                  f"run id {'unchanged' if res['run_id']['old'] == res['run_id']['new'] else res['run_id']['new']}")  # fmt: skip
    t = Table(title="F1 (mean ± std), stored run vs reproduction")
    for col in ("", "stored", "reproduced", "difference"):
        t.add_column(col)
    for c, v in res["f1"].items():
        t.add_row(c, _fmt_f1(v["old"]), _fmt_f1(v["new"]), "-" if v["diff"] is None else f"{v['diff']:+.3f}")
    console.print(t)
    for k, (a, b) in res["environment_differences"].items():
        console.print(f"environment differs: {k} {a} -> {b}")
    if register:
        console.print(f"registered the reproduction as {res['run_id']['new']}")
    if not res["ok"]:
        err_console.print("not reproduced: " + "; ".join(res["reasons"]), markup=False, highlight=False)
        # sys.exit, not typer.Exit: the app runs with standalone_mode=False, which returns Exit codes
        sys.exit(1)
    console.print(f"reproduced: same data, macro F1 within {tol:g}")


@app.command("report")
def models_report(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md and the PNGs."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="JSON filter on the models collection, e.g. '{\"query.element\": \"Cu\"}'."),
    title: str = typer.Option("xanesdb training report", help="Report title."),
) -> None:
    """Markdown report (F1 tables beside the paper's Table II, confusion matrices, robustness curves)."""
    from xanesdb.ml.report import select_runs, write_report
    from xanesdb.platform.queries import parse_filter

    criteria = parse_filter(query) if query else None
    if out.exists() and not out.is_dir():
        raise XanesdbUserError(f"--out {out} is a file; give a folder")
    from xanesdb.platform.export import check_output_file

    check_output_file(out / "report.md")
    docs = select_runs(criteria, get_settings())
    if not docs:
        raise XanesdbUserError("no complete training runs match; see `xanesdb models list` (and its --query)")
    path = write_report(docs, out, title=title, selection=f"`{query}`" if query else "")
    pngs = sorted(p.name for p in out.glob("*.png"))
    console.print(f"report of {len(docs)} runs: {path} ({len(pngs)} PNGs)")
