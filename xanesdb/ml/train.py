"""Training: a query -> dataset -> ``n_models`` networks trained side by side -> scores -> registry.

:func:`fit_group` trains ``n_models`` networks in one compiled Keras model (see
:mod:`xanesdb.ml.models`), each on its own (augmented) training set with its own shuffling and
batch-32 updates. :func:`train_from_query` is what ``xanesdb train`` runs.

Examples
--------
>>> cfg = TrainConfig(kind="cnn", augment=("shift",), seed=1)                # doctest: +SKIP
>>> result = train_from_query({"element": "Cu"}, cfg)                         # doctest: +SKIP
>>> result.doc.metrics["f1"]["macro"]                                         # doctest: +SKIP
[0.85, 0.03]
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from xanesdb.ml.augment import MeasurementModel
from xanesdb.ml.augment import augment as augment_data
from xanesdb.ml.evaluate import (
    DEFAULT_TEST_SHIFTS_EV,
    DEFAULT_TEST_SIGMAS,
    make_splits,
    robustness_curve,
    score_predictions,
)
from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    import keras

    from xanesdb.ml.dataset import XanesDataset
    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.schemas import TrainingRunDoc

logger = logging.getLogger(__name__)

__all__ = ["MEASURED_RECIPE", "MIN_CLASS_MATERIALS", "TrainConfig", "TrainResult", "fit_group", "predict_group",
           "pre_edge_indices", "train_on_dataset", "train_from_query", "runtime_info", "without_rare_classes"]  # fmt: skip

#: the :class:`TrainConfig` fields of the models that ship for measured spectra (``xanesdb train
#: --recipe measured``, ``scripts/train_shipped_models.py``): aligned spectra, ``fast`` ones
#: corrected towards ``scf``, the k-edge calibration to measurement, measured-like copies with
#: edge-step errors of 15 % and post-edge slopes of 0.2 per 100 eV, inputs from -1 to +44.5 eV,
#: 15 networks of at least 1500 updates, classes balanced (docs/measured.md, "The models that ship")
MEASURED_RECIPE: dict[str, Any] = {
    "representation": "aligned", "augment": ("measured",), "fidelity": "scf", "calibration": "k-edge",
    "window": (-1.0, 44.5), "measurement": {"scale": 0.15, "slope_per_100ev": 0.2}, "n_models": 15,
    "min_steps": 1500, "class_weight": "balanced",
}  # fmt: skip

#: the shipped models learn a class only from the spectra of at least this many materials
#: (``scripts/train_shipped_models.py --min-class-materials``). The Mn and Ni S5 sites are 5
#: materials each, four of them one substituted YBaCo2O5-type cell: with balanced class weights the
#: networks learned "unlike the usual octahedron" as S5, and measured Mn(III)/Mn(IV) oxides
#: (pyrolusite, ramsdellite, Mn2O3, manganite, Li2MnO3) read S5 0.5-0.7 before calibration and O6
#: only 0.52-0.66 after; held out, those S5 sites were never read S5 (docs/measured.md, "The development set, record by record").
#: The Co (8 materials) and Cr (7) S5 classes go too: held out by material, computed spectra made
#: measured-like read T4 and O6 as well or better without them and more firmly, with fewer
#: ``unsure``, the S5 sites (prototype cells) then read O6 or T4
#: (``benchmarks/results/heldout_min_class_co_cr.txt``); Ti (9) and V (10) keep theirs: a [5]Ti(IV)
#: or V(V) pyramid has the strong pre-edge that rules out O6, and S5 is then the answer left besides T4.
MIN_CLASS_MATERIALS = 9


def without_rare_classes(query: dict[str, Any], label_field: str, least: int,
                         settings: XanesdbSettings | None = None) -> tuple[dict[str, Any], dict[str, int]]:  # fmt: skip
    """``query`` with the classes of ``query[label_field]["$in"]`` whose unique spectra come from fewer
    than ``least`` materials taken out, and those classes with their number of materials. The
    returned query is what the model learns from, so its registry document says which classes it knows."""
    from xanesdb.platform.stores import get_database

    spectra = get_database(settings)["spectra"]
    classes = list(query[label_field]["$in"])
    counts = {c: len(spectra.distinct("material_id", {**query, label_field: c, "duplicate_of": None})) for c in classes}
    rare = {c: n for c, n in counts.items() if n < least}
    if not rare:
        return query, {}
    return {**query, label_field: {"$in": [c for c in classes if c not in rare]}}, rare


@dataclass
class TrainConfig:
    """Knobs of one training run (all stored in the run's ``hyperparameters``).

    Parameters
    ----------
    kind
        ``"mlp"`` or ``"cnn"``.
    epochs, batch_size, learning_rate
        Adam training (paper: 50 epochs, batch 32).
    augment
        Training-set augmentations: any of ``"shift"`` (+-1, +-2 eV), ``"noise"`` (sigma 0.03)
        and ``"measured"`` (broadening, shifts, normalisation errors and noise as a measurement
        makes them; :class:`xanesdb.ml.augment.MeasurementModel`).
    representation
        ``"grid"`` (the paper's: each absorber's absolute grid, max-scaled) or ``"aligned"``
        (edge-step normalised, relative to the half-step point; :mod:`xanesdb.ml.aligned`), the
        one that reads measured spectra. Aligned runs are also calibrated (temperature scaling)
        and carry an out-of-distribution test, both fitted on measured-like copies of their
        held-out spectra.
    fidelity
        ``"scf"``: correct ``fast`` spectra towards what the ``scf`` preset gives
        (:mod:`xanesdb.xas.fidelity`, fitted on the sites the database holds under both) before
        training; aligned representation only.
    calibration
        The computed -> measured calibration (:mod:`xanesdb.xas.calibration`) applied to every
        training spectrum after the fidelity correction: a shipped one by name (``"k-edge"``), a
        JSON file, or its four numbers as a dict (``shift``, ``stretch``, ``sigma``,
        ``damping``, optionally ``per_pair``); aligned representation only. With the
        ``"measured"`` augmentation only its energy scale is applied to every spectrum, and the
        measured-like copies draw broadening, damping and stretch from the spread of its per-pair
        fits (:meth:`xanesdb.xas.calibration.MeasurementCalibration.measurement_ranges`).
    measurement
        Changes to the :class:`xanesdb.ml.augment.MeasurementModel` of the ``"measured"``
        augmentation and of the calibration copies (None: its defaults).
    window
        Only the grid points in this energy range (eV) are fed to the networks (all when None);
        e.g. ``(-1, 44.5)`` on the aligned grid leaves out the pre-edge that ``fast`` FEFF spectra
        do not have.
    n_models
        Networks trained side by side, one per split (paper: 10).
    protocol
        ``"paper"`` (stratified 90/10) or ``"grouped"`` (no material in train and test).
    test_size
        Test fraction of each split.
    n_bootstrap
        Bootstrap resamples of each test set.
    class_weight
        None (paper) or ``"balanced"`` (inverse class frequency, helps S5).
    pre_edge
        Use only the grid points before the end of the pre-edge (see :func:`pre_edge_indices`).
    hidden, dropout, filters, kernel_size, pool_size
        Architecture (paper's defaults).
    min_steps
        At least this many Adam updates per network: epochs are raised to
        ``ceil(min_steps / steps per epoch)`` when ``epochs`` gives fewer (None: the paper's fixed
        epochs). 50 epochs of batch 32 on a few dozen spectra are a few hundred updates, far from
        converged; on the paper's thousands of spectra the floor changes nothing.
    ensemble
        Networks per split, trained on the same training set from different initialisations
        (and data order, augmentation noise, dropout); a split's test set is scored on their
        averaged class probabilities, and ``xanesdb predict`` averages all networks anyway.
        1: the paper's single network per split.
    curves
        Also compute robustness curves (test shift -3..3 eV, noise sigma 0..0.1).
    seed
        Seed of splits, initialisation, dropout, shuffling and noise.
    """

    kind: Literal["mlp", "cnn"] = "mlp"
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    augment: tuple[str, ...] = ()
    n_models: int = 10
    protocol: Literal["paper", "grouped"] = "paper"
    test_size: float = 0.1
    n_bootstrap: int = 10
    class_weight: Literal["balanced"] | None = None
    pre_edge: bool = False
    hidden: tuple[int, ...] = (90, 60, 20)
    dropout: float = 0.3
    filters: int = 8
    kernel_size: int = 10
    pool_size: int = 2
    min_steps: int | None = None
    ensemble: int = 1
    curves: bool = True
    representation: Literal["grid", "aligned"] = "grid"
    fidelity: str | None = None
    calibration: str | dict[str, float] | None = None
    measurement: dict[str, Any] | None = None
    window: tuple[float, float] | None = None
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = list(self.augment)
        d["hidden"] = list(self.hidden)
        if d["min_steps"] is None:  # absent when unused: run ids of earlier runs stay what they were
            del d["min_steps"]
        if d["ensemble"] == 1:
            del d["ensemble"]
        if d["representation"] == "grid":
            del d["representation"]
        if d["fidelity"] is None:
            del d["fidelity"]
        if d["calibration"] is None:
            del d["calibration"]
        if d["measurement"] is None:
            del d["measurement"]
        if d["window"] is None:
            del d["window"]
        else:
            d["window"] = list(d["window"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["augment"] = tuple(d.get("augment", ()))
        d["hidden"] = tuple(d.get("hidden", (90, 60, 20)))
        if d.get("window") is not None:
            d["window"] = tuple(d["window"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class TrainResult:
    """What a training run produced."""

    model: Any
    doc: TrainingRunDoc
    feature_indices: np.ndarray
    splits: list = field(default_factory=list)


def runtime_info() -> dict[str, Any]:
    """Keras backend, device and library versions: :func:`xanesdb.ml.registry.model_provenance`,
    what every registered run records (kept under this name for the benchmarks)."""
    from xanesdb.ml.registry import model_provenance

    return model_provenance()


def pre_edge_indices(X: np.ndarray, fraction: float = 0.3, min_points: int = 20) -> np.ndarray:
    """Grid points before the end of the pre-edge: where the mean spectrum is below ``fraction``.

    The pre-edge ends where the main edge rises; taken as the first point at which the mean
    max-scaled training spectrum reaches ``fraction`` of its maximum, and at least ``min_points``
    (10 eV on the 0.5 eV grids, enough for the CNN's kernel of 10 and pooling).
    """
    mean = X.mean(axis=0)
    above = np.nonzero(mean >= fraction * mean.max())[0]
    end = int(above[0]) if len(above) else X.shape[1]
    return np.arange(min(max(end, min_points), X.shape[1]))


def _class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)


def effective_epochs(config: TrainConfig, n_rows: int) -> int:
    """Epochs actually run on ``n_rows`` (augmented) training rows per network: ``config.epochs``,
    raised to reach ``config.min_steps`` updates when that is set.

    >>> effective_epochs(TrainConfig(min_steps=2000), n_rows=160)
    400
    >>> effective_epochs(TrainConfig(min_steps=2000), n_rows=15000)
    50
    """
    if not config.min_steps:
        return config.epochs
    steps_per_epoch = max(1, math.ceil(n_rows / config.batch_size))
    return max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))


def fit_group(
    X: np.ndarray,
    y: np.ndarray,
    train_sets: list[np.ndarray],
    energies: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    feature_indices: np.ndarray | None = None,
    on_epoch: Callable[[int, float, int], None] | None = None,
) -> keras.Model:
    """Train one network per training index set, side by side in one Keras model.

    Parameters
    ----------
    X
        (n, n_energies) max-scaled spectra; y: integer classes.
    train_sets
        Row indices of each network's training set.
    energies
        Grid energies (for the shift augmentation).
    n_classes
        Output classes.
    config
        Knobs.
    feature_indices
        Columns fed to the networks (all when None); augmentation uses the full grid first.
    on_epoch
        Called with (epoch, loss, epochs to run) after every epoch (progress bars).

    Returns
    -------
    keras.Model
        Input ``(batch, n_models, n_features)``; standardisation of each network inside.
    """
    import keras

    from xanesdb.ml.models import build_model

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    cols = np.arange(X.shape[1]) if feature_indices is None else np.asarray(feature_indices)
    k = len(train_sets)
    xs, ys, ws, means, stds = [], [], [], [], []
    for tr in train_sets:
        Xtr, ytr = X[tr], y[tr]
        # standardisation fitted on the (un-augmented) training set only
        means.append(Xtr[:, cols].mean(axis=0))
        stds.append(Xtr[:, cols].std(axis=0))
        if config.augment:
            Xtr, ytr = augment_data(Xtr, ytr, energies, tuple(config.augment), rng=rng,
                                    measurement=MeasurementModel.from_dict(config.measurement))  # fmt: skip
        cw = _class_weights(y[tr], n_classes) if config.class_weight == "balanced" else np.ones(n_classes)
        xs.append(Xtr[:, cols])
        ys.append(ytr)
        ws.append(cw[ytr])
    # equal lengths: each network's rows in its own random order, padded by resampling
    n_rows = max(len(a) for a in xs)
    Xg = np.empty((n_rows, k, len(cols)), dtype=np.float32)
    Yg = np.zeros((n_rows, k, n_classes), dtype=np.float32)
    Wg = np.empty((n_rows, k), dtype=np.float32)
    for j in range(k):
        order = rng.permutation(len(xs[j]))
        if len(order) < n_rows:
            order = np.concatenate([order, rng.integers(0, len(xs[j]), n_rows - len(order))])
        Xg[:, j] = xs[j][order]
        Yg[np.arange(n_rows), j, ys[j][order]] = 1.0
        Wg[:, j] = ws[j][order]
    model = build_model(
        config.kind, len(cols), n_classes, n_models=k, hidden=tuple(config.hidden),
        dropout=config.dropout, filters=config.filters, kernel_size=config.kernel_size,
        pool_size=config.pool_size, learning_rate=config.learning_rate, seed=config.seed,
    )  # fmt: skip
    model.get_layer("standardize").set_stats(np.array(means), np.array(stds))
    epochs = effective_epochs(config, n_rows)
    callbacks = []
    if on_epoch is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: on_epoch(e + 1, float(logs.get("loss", np.nan)), epochs))
        )
    model.fit(Xg, Yg, sample_weight=Wg, batch_size=config.batch_size, epochs=epochs,
              shuffle=True, verbose=0, callbacks=callbacks)  # fmt: skip
    return model


def predict_group(model: keras.Model, X_list: list[np.ndarray], batch_size: int = 1024) -> list[np.ndarray]:
    """Class probabilities of network ``j`` on ``X_list[j]`` (arrays of its input columns)."""
    k = model.input_shape[1]
    if len(X_list) != k:
        raise ValueError(f"the model holds {k} networks, got {len(X_list)} arrays")
    n = max(len(a) for a in X_list)
    Xg = np.zeros((n, k, X_list[0].shape[1]), dtype=np.float32)
    for j, a in enumerate(X_list):
        Xg[: len(a), j] = a
        Xg[len(a) :, j] = a[0] if len(a) else 0.0
    P = model.predict(Xg, batch_size=batch_size, verbose=0)
    return [P[: len(a), j] for j, a in enumerate(X_list)]


def train_on_dataset(
    ds: XanesDataset,
    config: TrainConfig,
    on_epoch: Callable[[int, float, int], None] | None = None,
    ood_residuals: np.ndarray | None = None,
    X_references: np.ndarray | None = None,
) -> tuple[Any, dict[str, Any], np.ndarray, list]:
    """Split, train ``config.n_models`` x ``config.ensemble`` networks side by side, score them.

    ``ood_residuals`` (rows on the dataset's grid): real measured-minus-calibrated-computed curves of
    reference compounds; the outlier test's thresholds are then set on held-out copies carrying them.
    ``X_references``: the dataset's rows as a measurement would look (the whole computed -> measured
    calibration applied) for the aligned run's reference vote; None: the rows themselves.

    Returns
    -------
    model, metrics, feature_indices, splits
    """
    classes = ds.classes
    y = ds.encode(classes)
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2:
        raise XanesdbUserError(f"the query selects a single class {classes}; a classifier needs two or more")
    if counts.min() < 2:
        raise XanesdbUserError(
            f"class {classes[int(counts.argmin())]} has {counts.min()} spectrum; every class needs "
            "at least 2 (widen the query)"
        )
    if config.protocol == "grouped" and len(set(ds.groups)) < 2:
        raise XanesdbUserError("the grouped protocol needs spectra of at least two materials")
    timings: dict[str, float] = {}
    splits = make_splits(y, ds.groups, config.protocol, config.n_models, config.test_size, config.seed)
    cols = pre_edge_indices(ds.X[splits[0][0]]) if config.pre_edge else np.arange(ds.X.shape[1])
    if config.window is not None:
        lo, hi = config.window
        cols = cols[(ds.energies[cols] >= lo) & (ds.energies[cols] <= hi)]
        if len(cols) < 20:
            raise XanesdbUserError(f"the window {lo:g}..{hi:g} eV holds {len(cols)} grid points; a model needs 20 or more")
    e = max(1, int(config.ensemble))
    t0 = time.perf_counter()
    model = fit_group(ds.X, y, [tr for tr, _ in splits for _ in range(e)], ds.energies, len(classes), config,
                      cols, on_epoch)  # fmt: skip
    timings["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    def predict_classes(X_tests: list[np.ndarray]) -> list[np.ndarray]:
        P = predict_group(model, [X[:, cols] for X in X_tests for _ in range(e)])
        return [np.mean(P[i * e : (i + 1) * e], axis=0).argmax(axis=1) for i in range(len(X_tests))]

    X_tests = [ds.X[te] for _, te in splits]
    y_tests = [y[te] for _, te in splits]
    metrics = score_predictions(y_tests, predict_classes(X_tests), classes, config.n_bootstrap, config.seed)
    metrics["n_test"] = [int(len(te)) for _, te in splits]
    metrics["n_train"] = [int(len(tr)) for tr, _ in splits]
    metrics["class_counts"] = {c: int(n) for c, n in zip(classes, counts)}
    # the mean edge of the training spectra, for `xanesdb predict --align edge`
    mean_train = ds.X[splits[0][0]].mean(axis=0)
    from xanesdb.xas.normalize import find_e0

    metrics["train_edge_ev"] = find_e0(ds.energies, mean_train)
    timings["evaluate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics["knn"] = knn_baseline(ds.X[:, cols], y, splits, classes, config.n_bootstrap, config.seed)
    timings["knn_s"] = time.perf_counter() - t0
    if config.curves:
        t0 = time.perf_counter()
        metrics["shift_curve"] = robustness_curve(
            predict_classes, X_tests, y_tests, ds.energies, len(classes), shifts_ev=DEFAULT_TEST_SHIFTS_EV
        )
        metrics["noise_curve"] = robustness_curve(
            predict_classes, X_tests, y_tests, ds.energies, len(classes), sigmas=DEFAULT_TEST_SIGMAS,
            seed=config.seed,
        )  # fmt: skip
        timings["curves_s"] = time.perf_counter() - t0
    if config.fidelity and config.representation != "aligned":
        raise XanesdbUserError("a fidelity correction needs --representation aligned")
    if config.representation == "aligned":
        t0 = time.perf_counter()
        metrics.update(_trust_metrics(model, ds.X, y, splits, cols, e, ds.energies, len(classes), config.seed,
                                      MeasurementModel.from_dict(config.measurement), ood_residuals, ds.groups,
                                      X_references))  # fmt: skip
        timings["trust_s"] = time.perf_counter() - t0
    metrics["timings"] = timings
    return model, metrics, cols, splits


#: neighbours of the k-nearest-neighbour baseline every classifier run is scored beside
KNN_K = 5


def knn_baseline(X: np.ndarray, y: np.ndarray, splits: list, classes: list[str], n_bootstrap: int = 0,
                 seed: int = 0, k: int = KNN_K) -> dict[str, Any]:  # fmt: skip
    """The label of the ``k`` nearest training spectra (cosine), on the networks' own splits.

    The same majority vote as ``xanesdb search`` (:func:`xanesdb.search.knn_vote`) on the model's
    input representation: the baseline a network must beat to be worth its training. Returns
    :func:`xanesdb.ml.evaluate.score_predictions`' ``f1``, its macro mean ``f1_macro``, ``k`` and ``metric``.
    """
    from sklearn.neighbors import KNeighborsClassifier

    preds, tests = [], []
    for tr, te in splits:
        knn = KNeighborsClassifier(n_neighbors=min(k, len(tr)), metric="cosine", algorithm="brute")
        knn.fit(X[tr], y[tr])
        preds.append(knn.predict(X[te]))
        tests.append(y[te])
    scores = score_predictions(tests, preds, classes, n_bootstrap, seed)
    macro = scores["f1"].get("macro", [float("nan"), 0.0])
    return {"k": k, "metric": "cosine", "f1": scores["f1"], "f1_macro": float(macro[0])}


def _trust_metrics(model, X, y, splits, cols, e, energies, n_classes, seed, mm, ood_residuals=None,
                   names=None, X_references=None) -> dict[str, Any]:  # fmt: skip
    """Calibration and outlier test of an aligned run, on measured-like copies of held-out spectra.

    Each split's test spectra get two measured-like copies (:func:`measurement_copies`); the
    networks of that split give their mean probabilities, on which the temperature and the
    per-class biases are fitted (pooled over splits; :func:`xanesdb.ml.trust.fit_temperature_bias`).
    The outlier test's components come from measured-like copies of the first split's training
    spectra, its thresholds from the held-out copies; with ``ood_residuals`` each held-out copy also
    carries one of those real measured-vs-computed differences, so a measurement that differs from
    its computed twin as much as a reference compound's does is not called an outlier.

    Every training spectrum (as ``X_references`` has it) becomes a reference of the run's
    :class:`~xanesdb.ml.trust.ReferenceVote`;
    the vote and its mean with the calibrated networks are scored on the same held-out copies (each
    split's copies against that split's training spectra only), and the vote gets no weight in the
    run's answers where that mean is right less often than the networks alone
    (:data:`~xanesdb.ml.trust.VOTE_TOLERANCE`).
    """
    from xanesdb.ml.augment import measurement_copies
    from xanesdb.ml.trust import (VOTE_TOLERANCE, VOTE_WEIGHT, OutlierTest, ReferenceVote, apply_temperature,
                                  combine_with_references, expected_calibration_error, fit_temperature_bias,
                                  reliability_table)

    rng = np.random.default_rng(seed + 7)
    X_tests = [np.concatenate([measurement_copies(X[te], energies, mm, rng) for _ in range(2)]) for _, te in splits]
    y_tests = [np.concatenate([y[te], y[te]]) for _, te in splits]
    P_list = predict_group(model, [Xt[:, cols] for Xt in X_tests for _ in range(e)])
    P = np.concatenate([np.mean(P_list[i * e : (i + 1) * e], axis=0) for i in range(len(X_tests))])
    yt = np.concatenate(y_tests)
    T, bias = fit_temperature_bias(P, yt)
    Pc = apply_temperature(P, T, bias)
    tr = splits[0][0]
    X_fit = np.concatenate([X[tr]] + [measurement_copies(X[tr], energies, mm, rng) for _ in range(3)])
    X_null = np.concatenate(X_tests)
    n_res = 0
    if ood_residuals is not None and len(ood_residuals) and np.shape(ood_residuals)[1] == X.shape[1]:
        R = np.asarray(ood_residuals, dtype=np.float64)
        n_res = len(R)
        X_null = (X_null + R[rng.integers(0, n_res, len(X_null))]).astype(np.float32)
    outlier = OutlierTest.fit(X_fit[:, cols], X_null[:, cols])
    outlier.null_residuals = n_res
    R = X if X_references is None else np.asarray(X_references, dtype=np.float32)
    names = None if names is None else np.asarray(names)
    S = np.concatenate([ReferenceVote.fit(R[tr_i][:, cols], y[tr_i], n_classes,
                                          names=None if names is None else names[tr_i]).shares(Xt[:, cols])
                        for (tr_i, _), Xt in zip(splits, X_tests)])  # fmt: skip
    Pe = combine_with_references(Pc, S)
    acc_networks, acc_with = float(np.mean(Pc.argmax(axis=1) == yt)), float(np.mean(Pe.argmax(axis=1) == yt))
    vote = ReferenceVote.fit(R[:, cols], y, n_classes, names=names)
    vote.weight = VOTE_WEIGHT if acc_with >= acc_networks - VOTE_TOLERANCE else 0.0
    return {
        "calibration": {
            "temperature": T,
            "bias": bias,
            "n": int(len(yt)),
            "ece_before": expected_calibration_error(P, yt),
            "ece_after": expected_calibration_error(Pc, yt),
            "accuracy": float(np.mean(P.argmax(axis=1) == yt)),
            "reliability_before": reliability_table(P, yt),
            "reliability_after": reliability_table(Pc, yt),
            "measurement_model": mm.as_dict(),
        },
        "reference_vote": {
            **vote.as_dict(),
            "accuracy": float(np.mean(S.argmax(axis=1) == yt)),
            "accuracy_networks": acc_networks,
            "accuracy_with_networks": acc_with,
            "ece_with_networks": expected_calibration_error(Pe, yt),
        },
        "outlier_test": outlier.as_dict(),
        "class_means": {str(i): X[y == i].mean(axis=0).tolist() for i in range(n_classes) if np.any(y == i)},
    }


def resolve_calibration(spec: str | dict[str, float]):
    """The :class:`xanesdb.xas.calibration.MeasurementCalibration` a :class:`TrainConfig` names.

    Raises
    ------
    XanesdbUserError
        When the name or file is unknown or the numbers are incomplete.
    """
    from xanesdb.xas.calibration import MeasurementCalibration, load_calibration

    if isinstance(spec, dict):
        missing = {"shift", "stretch", "sigma", "damping"} - set(spec)
        if missing:
            raise XanesdbUserError(f"a calibration needs shift, stretch, sigma and damping; missing {sorted(missing)}")
        return MeasurementCalibration(**{k: float(spec[k]) for k in ("shift", "stretch", "sigma", "damping")},
                                      per_pair=list(spec.get("per_pair") or []), provenance="given as numbers")  # fmt: skip
    try:
        return load_calibration(spec)
    except ValueError as err:
        raise XanesdbUserError(str(err)) from None


def train_from_query(
    query: dict[str, Any],
    config: TrainConfig,
    settings: XanesdbSettings | None = None,
    *,
    label_field: str = "lce_class",
    register: bool = True,
    on_epoch: Callable[[int, float, int], None] | None = None,
) -> TrainResult:
    """Run ``xanesdb train``: dataset from the query, training, scores, and the registry entry.

    Parameters
    ----------
    query
        Mongo filter on ``spectra``.
    config
        Training knobs.
    settings
        Database and ``HOME``.
    label_field
        Field learned (classification of its values).
    register
        Store the run and its weights in the ``models`` collection and GridFS.
    on_epoch
        Progress callback ``(epoch, loss, epochs to run)``.
    """
    from xanesdb.ml.dataset import load_dataset
    from xanesdb.ml.registry import make_run_doc, register_run
    from xanesdb.platform.settings import get_settings

    settings = settings or get_settings()
    t0 = time.perf_counter()
    fidelity = calibration = X_references = None
    if config.calibration is not None and config.representation != "aligned":
        raise XanesdbUserError("a measured calibration needs --representation aligned")
    if config.representation == "aligned":
        from xanesdb.ml.aligned import fit_fidelity_from_db, load_aligned_dataset

        if config.fidelity:
            fidelity = fit_fidelity_from_db(settings, target_preset=config.fidelity)
        ds = load_aligned_dataset(query, settings, label_field=label_field, fidelity=fidelity)
        if config.calibration is not None:
            calibration = resolve_calibration(config.calibration)
            # the reference vote's spectra: the whole calibration, as a measurement would look
            X_references = calibration.apply(ds.X, ds.energies).astype(np.float32)
            if "measured" in config.augment and calibration.per_pair:
                # the energy scale for every spectrum; broadening, damping and the stretch's spread
                # drawn per measured-like copy from the spread of the per-pair fits
                ds = dataclasses.replace(ds, X=calibration.energy_scale().apply(ds.X, ds.energies))
                config = dataclasses.replace(config, measurement={**calibration.measurement_ranges(),
                                                                  **(config.measurement or {})})  # fmt: skip
            else:
                ds = dataclasses.replace(ds, X=X_references)
    else:
        ds = load_dataset(query, settings, label_field=label_field)
    t_data = time.perf_counter() - t0
    ood_residuals = None
    if calibration is not None and calibration.per_pair:
        ood_residuals = calibration.measurement_ranges(residuals=True).get("residuals") or None
    model, metrics, cols, splits = train_on_dataset(ds, config, on_epoch, ood_residuals, X_references)
    if fidelity is not None:
        metrics["fidelity"] = fidelity.as_dict()
    if calibration is not None:
        metrics["measured_calibration"] = {**calibration.params(), "n_pairs": calibration.n_pairs,
                                           "rmse_before": calibration.rmse_before,
                                           "rmse_after": calibration.rmse_after, "provenance": calibration.provenance}  # fmt: skip
    timings = {"dataset_s": t_data, **metrics.pop("timings")}
    doc = make_run_doc(ds, config, metrics, cols, timings)
    if register:
        t0 = time.perf_counter()
        doc = register_run(doc, model, settings)
        doc.timings["register_s"] = time.perf_counter() - t0
    return TrainResult(model=model, doc=doc, feature_indices=cols, splits=splits)
