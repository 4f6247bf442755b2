"""Transfer learning (issue 20 item 3): fine-tune a registered network on another domain.

``xanesdb train --from MODEL_ID --freeze 2 --fraction 0.2 --query ...`` runs
:func:`transfer_from_query`: the registered run (a classifier, or a Keras regression run) gives the
architecture and the starting weights; a new group of networks of that architecture is built for
the target query's splits, each network starting from one of the source's networks (network ``j``
from source network ``j mod k``), the first ``freeze`` weight layers (convolutions and dense layers,
in order; the output layer counts) are frozen, and the rest is trained on ``fraction`` of each
split's training rows. The test rows of every split are all kept, so scores at different fractions
compare. With no source (:func:`fine_tune` with ``source=None``) the same code trains the same
architecture from a random start: the "no transfer" column of the tables.

What carries over, and what does not:

- the input standardisation of each source network (part of what the frozen layers expect);
- the output layer, when the target has the source's classes (a subset, same order) or the same
  regression targets; otherwise a new output layer is initialised and trained (``new_head``);
- regression: the source's target scale (``Destandardize``) when the head carries over, else the
  target training rows' mean and spread.

Grids: a model reads ``n`` grid points ``step`` eV apart, each grid starting ``PRE_EDGE_EV`` below the
median edge of its own source (:mod:`xanesdb.jobs.spectra.grid`). Spectra of another source or
absorber on a grid of the same edge, length and spacing are therefore read point for point, edge
on edge (the offset between the two grids' starts is recorded); another edge, length or spacing is
refused with one line, as are tree models (no layers to freeze). Runs of the aligned representation
(``--representation aligned``: energies from the half step, Athena-style normalisation) read every
absorber on one grid, so their target may be another absorber (Fe -> Co); those trained on spectra
changed by ``--fidelity``, ``--calibration`` or ``--measurement`` are refused (the target would not
be changed alike).

Examples
--------
>>> cfg = TransferConfig(freeze=2, fraction=0.2, n_models=3, epochs=60)                       # doctest: +SKIP
>>> res = transfer_from_query("mlp-1a2b", {"element": "Cu", "source": "xanesdb"}, cfg)        # doctest: +SKIP
>>> res.doc.metrics["f1"]["macro"], res.doc.hyperparameters["transfer"]["offset_ev"]         # doctest: +SKIP
([0.81, 0.04], 6.5)
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    import keras

    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.schemas import TrainingRunDoc

logger = logging.getLogger(__name__)

__all__ = ["TransferConfig", "Architecture", "TransferResult", "grid_compatibility", "weight_layers",
           "check_freeze", "build_network", "fine_tune", "predict_networks_on", "subsample",
           "score_classifier", "score_regressor", "transfer_from_query"]  # fmt: skip

_GRID_NAME = re.compile(r"^(?P<element>[A-Z][a-z]?)-(?P<edge>[A-Za-z0-9]+)-(?P<source>.+)-v(?P<version>\d+)$")


@dataclass
class TransferConfig:
    """Knobs of a fine-tuning run (stored under ``hyperparameters["transfer"]`` with the source id).

    Parameters
    ----------
    freeze
        Weight layers (convolutions, dense layers, the output layer, in order) kept as the source
        trained them (Lin et al.: 2).
    fraction
        Fraction of each split's training rows used, in (0, 1] (Lin et al.: 0.2-0.5).
    n_models, ensemble
        Splits of the target data, and networks per split (their mean is the split's answer).
    protocol, test_size
        The classifier's split protocols (``paper`` stratified 90/10, ``grouped`` by material).
    epochs, batch_size, learning_rate
        Adam fine-tuning.
    n_bootstrap
        Bootstrap resamples of each test set (classifier F1).
    standardize
        ``"source"``: keep the source networks' input standardisation (what their frozen layers were
        trained on); ``"target"``: refit it on each target training set (the inputs' mean and spread
        of the new domain, as re-estimating normalisation statistics does in domain adaptation).
    seed
        Splits, subsampling, initialisation of a new head, data order.
    """

    freeze: int = 2
    fraction: float = 1.0
    n_models: int = 5
    ensemble: int = 1
    protocol: Literal["paper", "grouped"] = "paper"
    test_size: float = 0.1
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    n_bootstrap: int = 10
    standardize: Literal["source", "target"] = "source"
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Refuse bad knobs with a one-line :class:`XanesdbUserError` (before any data is read)."""
        f = self.fraction
        if not isinstance(f, (int, float)) or math.isnan(f) or not (0.0 < f <= 1.0):
            raise XanesdbUserError(f"--fraction {f:g} is outside (0, 1]; give the share of the target's training rows, e.g. 0.2")
        if self.freeze < 0:
            raise XanesdbUserError(f"--freeze {self.freeze} is negative; give the number of first layers to keep, e.g. 2")
        if self.protocol not in ("paper", "grouped"):
            raise XanesdbUserError(f"unknown --protocol {self.protocol!r}; use paper or grouped")
        if self.standardize not in ("source", "target"):
            raise XanesdbUserError(f"unknown --standardize {self.standardize!r}; use source or target")
        if min(self.n_models, self.ensemble, self.epochs) < 1:
            raise XanesdbUserError("--n-models, --ensemble and --epochs must be at least 1")


@dataclass(frozen=True)
class Architecture:
    """What is needed to build a network group like a registered run's.

    ``task`` classification (``kind`` ``mlp``/``cnn`` with ``hidden``, ``dropout``, ``filters``,
    ``kernel_size``, ``pool_size``) or regression (``kind`` ``reg-<family>``, trained with ``loss``).
    """

    task: str
    kind: str
    n_features: int
    hidden: tuple[int, ...] = (90, 60, 20)
    dropout: float = 0.3
    filters: int = 8
    kernel_size: int = 10
    pool_size: int = 2
    loss: str = "mse"

    @classmethod
    def of_run(cls, doc: TrainingRunDoc) -> Architecture:
        hp = doc.hyperparameters
        n = len(hp.get("feature_indices") or doc.energies)
        if doc.task == "regression":
            return cls(task="regression", kind=doc.kind, n_features=n, loss=str(hp.get("loss", "mse")))
        return cls(task="classification", kind=doc.kind, n_features=n, hidden=tuple(hp.get("hidden", (90, 60, 20))),
                   dropout=float(hp.get("dropout", 0.3)), filters=int(hp.get("filters", 8)),
                   kernel_size=int(hp.get("kernel_size", 10)), pool_size=int(hp.get("pool_size", 2)))  # fmt: skip


# ----------------------------------------------------------------------------- checks
def _parse_grid(name: str | None) -> dict[str, str]:
    m = _GRID_NAME.match(name or "")
    return m.groupdict() if m else {"element": "?", "edge": "?", "source": name or "?", "version": "?"}


def grid_compatibility(src_grid: str | None, src_energies, tgt_grid: str | None, tgt_energies) -> dict[str, Any]:
    """Whether a model of grid ``src_grid`` reads spectra on ``tgt_grid`` point for point.

    Same edge, same number of points, same spacing; the starts may differ (each grid starts below
    its own source's median edge). Returns the description stored with the run; raises a one-line
    :class:`XanesdbUserError` otherwise.

    >>> e = 8970 + 0.5 * np.arange(100)
    >>> grid_compatibility("Cu-K-omnixas-v1", e, "Cu-K-xanesdb-v1", e + 6.5)["offset_ev"]
    6.5
    """
    s, t = _parse_grid(src_grid), _parse_grid(tgt_grid)
    es, et = np.asarray(src_energies, dtype=float), np.asarray(tgt_energies, dtype=float)
    if s["edge"] != t["edge"]:
        raise XanesdbUserError(f"the model reads {s['edge']}-edge spectra (grid {src_grid}), the query selects "
                               f"{t['edge']}-edge ones (grid {tgt_grid}); transfer needs the same edge")  # fmt: skip
    step_s = float(np.median(np.diff(es))) if len(es) > 1 else float("nan")
    step_t = float(np.median(np.diff(et))) if len(et) > 1 else float("nan")
    if len(es) != len(et) or not np.isclose(step_s, step_t, atol=1e-6):
        raise XanesdbUserError(f"the model reads {len(es)} points every {step_s:g} eV (grid {src_grid}), the query's "
                               f"grid {tgt_grid} has {len(et)} every {step_t:g} eV; transfer needs the same grid")  # fmt: skip
    return {"source_grid": src_grid, "target_grid": tgt_grid, "offset_ev": round(float(et[0] - es[0]), 4),
            "source_element": s["element"], "target_element": t["element"], "edge": t["edge"]}  # fmt: skip


def weight_layers(model: keras.Model) -> list[str]:
    """Names of the layers with weights, input to output, standardisations left out (what ``--freeze`` counts)."""
    from xanesdb.ml.models import Standardize
    from xanesdb.ml.regression_models import Destandardize

    return [layer.name for layer in model.layers if layer.weights and not isinstance(layer, (Standardize, Destandardize))]


def check_freeze(freeze: int, layers: list[str], run_id: str = "the model") -> None:
    """``freeze`` must leave at least one layer to train."""
    if freeze < 0 or freeze >= len(layers):
        raise XanesdbUserError(f"--freeze {freeze}: {run_id} has {len(layers)} weight layers ({', '.join(layers)}); "
                               f"freeze 0 to {len(layers) - 1} so that at least the output layer trains")  # fmt: skip


# ----------------------------------------------------------------------------- building and training
def build_network(arch: Architecture, n_outputs: int, k: int, *, seed: int = 0, learning_rate: float = 1e-3):
    """``(trainable, answering)`` groups of ``k`` networks of ``arch`` (the same model for classifiers)."""
    if arch.task == "classification":
        from xanesdb.ml.models import build_model

        m = build_model(arch.kind, arch.n_features, n_outputs, n_models=k, hidden=arch.hidden, dropout=arch.dropout,
                        filters=arch.filters, kernel_size=arch.kernel_size, pool_size=arch.pool_size,
                        learning_rate=learning_rate, seed=seed)  # fmt: skip
        return m, m
    from xanesdb.ml.regression_models import KERAS_FAMILIES, build_group_regressor

    family = arch.kind.removeprefix("reg-")
    if family not in KERAS_FAMILIES:
        raise XanesdbUserError(f"a {arch.kind} run has no layers to freeze or fine-tune; transfer needs a network "
                               f"({', '.join('reg-' + f for f in KERAS_FAMILIES)}, mlp or cnn)")  # fmt: skip
    return build_group_regressor(family, arch.n_features, n_outputs, n_models=k, learning_rate=learning_rate, seed=seed)


def _copy_weights(new: keras.Model, src: keras.Model, copy_head: bool) -> list[str]:
    """Copy every source layer's weights into the same-named new layer, network ``j`` <- ``j mod k_src``."""
    src_layers = {layer.name: layer for layer in src.layers}
    copied = []
    for layer in new.layers:
        if not layer.weights or layer.name not in src_layers:
            continue
        if layer.name in ("output", "destandardize") and not copy_head:
            continue
        sw = src_layers[layer.name].get_weights()
        nw = layer.get_weights()
        if len(sw) != len(nw) or any(a.shape[1:] != b.shape[1:] for a, b in zip(sw, nw)):
            continue
        k = nw[0].shape[0]
        layer.set_weights([a[np.arange(k) % a.shape[0]] for a in sw])
        copied.append(layer.name)
    return copied


def subsample(train_sets: list[np.ndarray], fraction: float, seed: int) -> list[np.ndarray]:
    """``fraction`` of each training set (at least 2 rows), drawn without replacement, sorted."""
    if fraction >= 1.0:
        return [np.asarray(tr) for tr in train_sets]
    rng = np.random.default_rng(seed + 17)
    return [np.sort(rng.choice(tr, max(2, int(round(fraction * len(tr)))), replace=False)) for tr in train_sets]


def fine_tune(
    X: np.ndarray,
    Y: np.ndarray,
    train_sets: list[np.ndarray],
    arch: Architecture,
    n_outputs: int,
    *,
    source: keras.Model | None = None,
    copy_head: bool = True,
    freeze: int = 0,
    standardize: str = "source",
    epochs: int = 50,
    min_rows: int = 0,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    on_epoch: Callable[[int, float, int], None] | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Train one network per training set, side by side, from ``source``'s weights (or from scratch).

    Parameters
    ----------
    X
        ``(n, n_features)`` inputs (the columns the architecture reads).
    Y
        Classification: integer classes ``(n,)``; regression: ``(n, n_targets)`` values.
    train_sets
        Row indices of each network's training set.
    arch, n_outputs
        Architecture and outputs (classes or targets).
    source
        The registered group model to start from (None: a random start, nothing frozen).
    copy_head
        Also start from the source's output layer (and, for regression, its target scale).
    freeze
        First weight layers not trained (with a source only).
    standardize
        ``"source"`` (keep the source's input standardisation) or ``"target"`` (refit it on each
        training set); without a source, always each training set's own.
    min_rows
        Rows fed to each network per epoch at least (its own rows resampled): more updates per
        epoch for a few dozen rows, without Keras' per-epoch overhead of many short epochs.

    Returns
    -------
    model, info
        The answering group model (input ``(batch, k, n_features)``); ``info`` names the copied and
        frozen layers and the epochs run.
    """
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    k = len(train_sets)
    trainable, answering = build_network(arch, n_outputs, k, seed=seed, learning_rate=learning_rate)
    layers = weight_layers(trainable)
    copied: list[str] = []
    if source is not None:
        check_freeze(freeze, layers)
        copied = _copy_weights(answering, source, copy_head)
    frozen = layers[:freeze] if source is not None else []
    for name in frozen:
        trainable.get_layer(name).trainable = False
    classify = arch.task == "classification"
    # standardisation: the source's (the frozen layers expect it), else each training set's own
    std_layer = trainable.get_layer("standardize")
    if "standardize" not in copied or standardize == "target":
        std_layer.set_stats(np.array([X[tr].mean(axis=0) for tr in train_sets]), np.array([X[tr].std(axis=0) for tr in train_sets]))
    if not classify:
        de = answering.get_layer("destandardize")
        if "destandardize" not in copied:
            de.set_stats(np.array([Y[tr].mean(axis=0) for tr in train_sets]),
                         np.array([np.where(Y[tr].std(axis=0) > 1e-8, Y[tr].std(axis=0), 1.0) for tr in train_sets]))  # fmt: skip
        from keras import ops

        y_mean, y_std = ops.convert_to_numpy(de.mean), ops.convert_to_numpy(de.std)
    if classify:
        loss = keras.losses.CategoricalCrossentropy()
    else:
        from xanesdb.ml.regression_models import keras_loss

        loss = keras_loss(arch.loss)  # the source's regression loss
    trainable.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)
    n_rows = max(max(len(tr) for tr in train_sets), int(min_rows))
    Xg = np.empty((n_rows, k, X.shape[1]), dtype=np.float32)
    Zg = np.zeros((n_rows, k, n_outputs), dtype=np.float32)
    for j, tr in enumerate(train_sets):
        order = rng.permutation(len(tr))
        if len(order) < n_rows:  # equal lengths: pad by resampling the network's own rows
            order = np.concatenate([order, rng.integers(0, len(tr), n_rows - len(order))])
        rows = np.asarray(tr)[order]
        Xg[:, j] = X[rows]
        if classify:
            Zg[np.arange(n_rows), j, Y[rows]] = 1.0
        else:
            Zg[:, j] = (Y[rows] - y_mean[j]) / y_std[j]
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: on_epoch(e + 1, float(logs.get("loss", np.nan)), epochs)))  # fmt: skip
    t0 = time.perf_counter()
    trainable.fit(Xg, Zg, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=callbacks)
    info = {"weight_layers": layers, "frozen": frozen, "copied": copied, "epochs": epochs, "fit_s": time.perf_counter() - t0,
            "n_rows_per_network": n_rows}  # fmt: skip
    return answering, info


def predict_networks_on(model: keras.Model, X_list: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of network ``j`` on ``X_list[j]``."""
    from xanesdb.ml.train import predict_group

    return predict_group(model, [np.asarray(a, dtype=np.float32) for a in X_list])


def score_classifier(model, X: np.ndarray, y: np.ndarray, splits, e: int, classes, n_bootstrap: int = 10,
                     seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The classifier's scores (:func:`xanesdb.ml.evaluate.score_predictions`) of ``len(splits)`` x ``e`` networks."""
    from xanesdb.ml.evaluate import score_predictions

    P = predict_networks_on(model, [X[te] for _, te in splits for _ in range(e)])
    preds = [np.mean(P[i * e : (i + 1) * e], axis=0).argmax(axis=1) for i in range(len(splits))]
    return score_predictions([y[te] for _, te in splits], preds, tuple(classes), n_bootstrap, seed)


def _ms(v) -> list[float]:
    v = np.asarray(v, dtype=float)
    return [float(np.mean(v)), float(np.std(v))]


def score_regressor(model, X: np.ndarray, Y: np.ndarray, splits, e: int, labels, train_sets=None) -> dict[str, Any]:
    """MAE / R^2 per target (split ensembles, networks, training-mean baseline) and the spread calibration."""
    from xanesdb.ml.regression import _r2, held_out_intervals

    P = predict_networks_on(model, [X[te] for _, te in splits for _ in range(e)])
    n_s = len(splits)
    train_sets = train_sets or [tr for tr, _ in splits]
    means = [np.mean(P[i * e : (i + 1) * e], axis=0) for i in range(n_s)]
    spreads = [np.std(P[i * e : (i + 1) * e], axis=0) for i in range(n_s)]
    out: dict[str, Any] = {"targets": {}, "n_networks": n_s * e}
    for j, lab in enumerate(labels):
        yt = [Y[te, j] for _, te in splits]
        iv = held_out_intervals([spreads[i][:, j] for i in range(n_s)], [means[i][:, j] - yt[i] for i in range(n_s)])
        out["targets"][lab] = {
            "mae_ensemble": _ms([np.mean(np.abs(means[i][:, j] - yt[i])) for i in range(n_s)]),
            "mae_networks": _ms([np.mean(np.abs(P[i * e + m][:, j] - yt[i])) for i in range(n_s) for m in range(e)]),
            "r2_ensemble": _ms([_r2(yt[i], means[i][:, j]) for i in range(n_s)]),
            "mae_baseline": _ms([np.mean(np.abs(Y[train_sets[i], j].mean() - yt[i])) for i in range(n_s)]),
            "coverage": iv["coverage"], "coverage_raw": iv["coverage_raw"], "mean_sigma": iv["mean_sigma"],
            "calibration": iv["calibration"],
            "train_mean": float(Y[:, j].mean()), "std": float(Y[:, j].std()),
        }  # fmt: skip
    return out


# ----------------------------------------------------------------------------- from the registry
@dataclass
class TransferResult:
    """What a fine-tuning run produced."""

    model: Any
    doc: TrainingRunDoc
    info: dict[str, Any] = field(default_factory=dict)


def _load_source(doc: TrainingRunDoc, settings):
    if doc.task == "regression":
        if doc.kind == "reg-gbt":
            raise XanesdbUserError(f"{doc.run_id} is a gradient boosted trees run: it has no layers to freeze or "
                                   "fine-tune; give a network run (reg-mlp*, reg-cnn*, mlp or cnn)")  # fmt: skip
        from xanesdb.ml.regression import load_regression_model

        return load_regression_model(doc, settings)
    from xanesdb.ml.registry import load_model

    return load_model(doc, settings)


def prepare_source(run_id: str, cfg: TransferConfig, settings: XanesdbSettings | None = None):
    """The source run, its model and architecture, with ``cfg`` and ``--freeze`` checked (no data read)."""
    from xanesdb.ml.registry import get_run

    cfg.check()
    doc = get_run(run_id, settings)
    rep = doc.hyperparameters.get("representation", "grid")
    if rep not in ("grid", "aligned"):
        raise XanesdbUserError(f"{doc.run_id} reads the {rep} representation; transfer fine-tunes runs on the "
                               "absolute grid or the aligned representation")  # fmt: skip
    if rep == "aligned":
        made = [k for k in ("fidelity", "calibration", "measurement") if doc.hyperparameters.get(k)]
        if made:
            raise XanesdbUserError(f"{doc.run_id} was trained on spectra changed by --{made[0]}; fine-tune an aligned run "
                                   "trained without --fidelity/--calibration/--measurement")  # fmt: skip
    model = _load_source(doc, settings)
    check_freeze(cfg.freeze, weight_layers(model), doc.run_id)
    return doc, model, Architecture.of_run(doc)


def transfer_from_query(
    run_id: str,
    query: dict[str, Any],
    cfg: TransferConfig,
    settings: XanesdbSettings | None = None,
    *,
    labels: tuple[str, ...] | None = None,
    register: bool = True,
    on_epoch: Callable[[int, float, int], None] | None = None,
) -> TransferResult:
    """``xanesdb train --from RUN``: fine-tune ``run_id`` on the spectra ``query`` selects and register it.

    Parameters
    ----------
    run_id
        Registered source run (or a unique prefix).
    query
        Mongo filter on ``spectra`` (the target domain).
    cfg
        Fine-tuning knobs.
    labels
        What to learn: a classifier's label field (one), or regression targets; the source's when None.
    register
        Store the run (same ``kind`` and ``task`` as the source, ``hyperparameters["transfer"]``
        naming it) so ``xanesdb predict`` and ``models show`` read it as any other run.
    """
    from xanesdb.ml.evaluate import make_splits
    from xanesdb.ml.registry import run_document

    t0 = time.perf_counter()
    src, src_model, arch = prepare_source(run_id, cfg, settings)
    regression = src.task == "regression"
    labels = tuple(labels) if labels else (tuple(src.classes) if regression else (src.label_field,))
    if not regression and len(labels) != 1:
        raise XanesdbUserError("a classifier learns one --label")
    # target data
    if regression:
        from xanesdb.ml.regression import RegressionConfig, _splits, load_regression_dataset

        RegressionConfig(family="mlp", labels=labels).check()  # numeric fields only, one line otherwise
        ds = load_regression_dataset(query, labels, settings)
        X_full, Y, groups = ds.X, ds.Y, ds.groups
    elif src.hyperparameters.get("representation", "grid") == "aligned":
        from xanesdb.ml.aligned import load_aligned_dataset

        ds = load_aligned_dataset(query, settings, label_field=labels[0])
        X_full, groups = ds.X, ds.groups
    else:
        from xanesdb.ml.dataset import load_dataset

        ds = load_dataset(query, settings, label_field=labels[0])
        X_full, groups = ds.X, ds.groups
    grid = grid_compatibility(src.grid_name, src.energies, ds.grid_name, ds.energies)
    cols = np.asarray(src.hyperparameters.get("feature_indices") or range(X_full.shape[1]), dtype=int)
    X = X_full[:, cols]
    if regression:
        copy_head = tuple(src.classes) == labels
        classes = list(labels)
        splits = _splits(ds, RegressionConfig(family="mlp", labels=labels, protocol=cfg.protocol, n_models=cfg.n_models,
                                              test_size=cfg.test_size, seed=cfg.seed))  # fmt: skip
        n_out = len(labels)
    else:
        tgt = ds.classes
        copy_head = set(tgt) <= set(src.classes) and src.label_field == labels[0]
        classes = list(src.classes) if copy_head else list(tgt)
        Y = ds.encode(tuple(classes))
        counts = np.bincount(Y, minlength=len(classes))
        present = counts[counts > 0]
        if len(present) < 2 or present.min() < 2:
            raise XanesdbUserError(f"the target needs two or more classes with at least 2 spectra each; it has "
                                   f"{dict(zip(classes, counts.tolist()))}")  # fmt: skip
        if cfg.protocol == "grouped" and len(set(groups)) < 2:
            raise XanesdbUserError("the grouped protocol needs spectra of at least two materials")
        splits = make_splits(Y, groups, cfg.protocol, cfg.n_models, cfg.test_size, cfg.seed)
        n_out = len(classes)
    t_data = time.perf_counter() - t0
    e = cfg.ensemble
    train_sets = subsample([tr for tr, _ in splits], cfg.fraction, cfg.seed)
    model, info = fine_tune(X, Y, [tr for tr in train_sets for _ in range(e)], arch, n_out, source=src_model,
                            copy_head=copy_head, freeze=cfg.freeze, standardize=cfg.standardize, epochs=cfg.epochs, batch_size=cfg.batch_size,
                            learning_rate=cfg.learning_rate, seed=cfg.seed, on_epoch=on_epoch)  # fmt: skip
    t1 = time.perf_counter()
    eval_splits = [(tr, te) for tr, (_, te) in zip(train_sets, splits)]
    if regression:
        metrics = score_regressor(model, X, Y, eval_splits, e, labels, train_sets)
    else:
        metrics = score_classifier(model, X, Y, eval_splits, e, classes, cfg.n_bootstrap, cfg.seed)
        from xanesdb.xas.normalize import find_e0

        metrics["class_counts"] = {c: int(n) for c, n in zip(classes, np.bincount(Y, minlength=len(classes)))}
        metrics["train_edge_ev"] = find_e0(ds.energies, X_full[train_sets[0]].mean(axis=0))
    metrics["n_train"] = [int(len(tr)) for tr in train_sets]
    metrics["n_test"] = [int(len(te)) for _, te in splits]
    transfer = {"from": src.run_id, "source_query": src.query, "freeze": cfg.freeze, "fraction": cfg.fraction,
                "standardize": cfg.standardize,
                "frozen_layers": info["frozen"], "copied_layers": info["copied"], "new_head": not copy_head, **grid}  # fmt: skip
    hp = {k: v for k, v in src.hyperparameters.items() if k not in ("transfer", "pretrain")}  # the source's own
    hp.update({"n_models": cfg.n_models, "ensemble": e, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
               "learning_rate": cfg.learning_rate, "protocol": cfg.protocol, "test_size": cfg.test_size,
               "seed": cfg.seed, "feature_indices": [int(i) for i in cols], "transfer": transfer})  # fmt: skip
    if regression:
        hp["labels"] = list(labels)
    else:
        hp["augment"] = []
    timings = {"dataset_s": t_data, "fit_s": info["fit_s"], "evaluate_s": time.perf_counter() - t1}
    doc = run_document(ds, kind=src.kind, task=src.task, label_field=",".join(labels), classes=classes,
                       hyperparameters=hp, seed=cfg.seed, metrics=metrics, timings=timings, query=query)  # fmt: skip
    if register:
        from xanesdb.ml.registry import register_run

        doc = register_run(doc, model, settings)
    return TransferResult(model=model, doc=doc, info=info)
