"""Regression of structural descriptors from spectra (issue 20 items 1, 2 and 5).

``xanesdb train --task regression --label mean_bond_length [--label ...]`` runs
:func:`train_regression_from_query`: any numeric field of a spectrum or of its site
(``coordination_number``, ``mean_bond_length``, ``csm``, ``oxidation_state``,
``bond_length_spread``, ``crystalnn_coordination_number``, ...) becomes a target; one of the
families of :mod:`xanesdb.ml.regression_models` is trained on ``n_models`` splits (the
classifier's protocols: ``paper`` random 90/10 stratified on target quantiles, ``grouped`` no
material in train and test) with ``ensemble`` members per split; the run is registered like a
classifier (``task="regression"``).

Scores per target: MAE and R^2 of every network (mean +- std over networks), of each split's
ensemble mean, and of a baseline predicting the training mean. Uncertainty: the spread of a
split's members, calibrated (:func:`fit_intervals`) as a scale ``s = sqrt(a * spread^2 + b^2)``
(Gaussian likelihood) times the multipliers that make ``+-sigma`` and the "2 sigma" interval cover
68.3 % and 95.4 % of held-out residuals (split-conformal quantiles: descriptor residuals are
heavy-tailed, so a Gaussian ``sigma`` covers too much at 1 sigma), fitted for each split on the
*other* splits' held-out predictions, and the coverage of both intervals on held-out spectra,
before and after calibration. ``xanesdb predict`` prints
``value +- sigma`` with the calibration fitted on all splits.

Examples
--------
>>> cfg = RegressionConfig(family="mlp-deep", labels=("mean_bond_length",), protocol="grouped")  # doctest: +SKIP
>>> res = train_regression_from_query({"element": "Fe", "source": "xanesdb"}, cfg)             # doctest: +SKIP
>>> res.doc.metrics["targets"]["mean_bond_length"]["mae_ensemble"]                               # doctest: +SKIP
[0.031, 0.004]
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from pathlib import Path

    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.schemas import TrainingRunDoc

logger = logging.getLogger(__name__)

__all__ = ["RegressionConfig", "RegressionDataset", "RegressionResult", "numeric_fields", "load_regression_dataset",
           "train_regression_on_dataset", "train_regression_from_query", "load_regression_model",
           "predict_regression", "plot_parity", "is_regression_run"]  # fmt: skip

#: the split protocols (the classifier's)
PROTOCOLS = ("paper", "grouped")


def numeric_fields() -> dict[str, str]:
    """Numeric top-level fields of spectra and sites -> the collection read (spectra first)."""
    import typing

    from xanesdb.schemas.site import SiteDoc
    from xanesdb.schemas.spectrum import SpectrumDoc

    def numeric(ann: Any) -> bool:
        args = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, getattr(__import__("types"), "UnionType", None)) else (ann,)
        return any(a in (int, float) for a in args) and all(a in (int, float, type(None)) for a in args)

    out: dict[str, str] = {}
    for coll, model in (("sites", SiteDoc), ("spectra", SpectrumDoc)):
        for name, f in model.model_fields.items():
            if name not in ("schema_version", "site_index", "labelling_seconds", "dedup_threshold") and numeric(f.annotation):
                out[name] = coll
    return out


@dataclass
class RegressionConfig:
    """Knobs of one regression run (stored in the run's ``hyperparameters``).

    Parameters
    ----------
    family
        One of :data:`xanesdb.ml.regression_models.FAMILIES`.
    labels
        Target fields (numeric fields of spectra or their sites).
    protocol
        ``"paper"`` (random 90/10, stratified on target quantiles) or ``"grouped"`` (no material in
        train and test).
    n_models
        Splits (a network group per split). ``test_size``: test fraction of each split.
    ensemble
        Members per split (different initialisation and data order; trees: seed and 0.8 row
        subsample); their spread is the uncertainty.
    epochs, batch_size, learning_rate
        Adam on standardised targets (networks).
    loss
        What training minimises (:data:`xanesdb.ml.regression_models.LOSSES`): ``mse`` (squared
        error), ``huber`` or ``mae`` (absolute error: the median, which suits discrete targets such
        as coordination numbers); the trees use scikit-learn's loss of the same name.
    train_fraction
        Fraction of each split's training rows used (1: all), in (0, 1].
    seed
        Seed of splits, initialisation and order.
    """

    family: str = "mlp"
    labels: tuple[str, ...] = ("mean_bond_length",)
    protocol: Literal["paper", "grouped"] = "paper"
    n_models: int = 10
    ensemble: int = 3
    test_size: float = 0.1
    epochs: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    train_fraction: float = 1.0
    seed: int = 0
    loss: str = "mse"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        if d["loss"] == "mse":  # absent when the default: run ids of earlier runs stay what they were
            del d["loss"]
        return d

    def check(self) -> None:
        """Refuse bad knobs with a one-line :class:`XanesdbUserError`."""
        from xanesdb.ml.regression_models import FAMILIES, LOSSES

        if self.family not in FAMILIES:
            raise XanesdbUserError(f"unknown regression model {self.family!r}; use one of {', '.join(FAMILIES)}")
        if self.loss not in LOSSES:
            raise XanesdbUserError(f"unknown --loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.protocol not in PROTOCOLS:
            raise XanesdbUserError(f"unknown --protocol {self.protocol!r}; use paper or grouped")
        if not self.labels:
            raise XanesdbUserError("give at least one --label (a numeric field such as mean_bond_length)")
        if not (0.0 < self.train_fraction <= 1.0) or math.isnan(self.train_fraction):
            raise XanesdbUserError(f"--train-fraction {self.train_fraction:g} is outside (0, 1]")
        if not (0.0 < self.test_size < 1.0):
            raise XanesdbUserError(f"test size {self.test_size:g} is outside (0, 1)")
        if min(self.n_models, self.ensemble, self.epochs) < 1:
            raise XanesdbUserError("--n-models, --ensemble and --epochs must be at least 1")
        fields = numeric_fields()
        for lab in self.labels:
            if lab not in fields:
                hint = "it is not numeric" if _known_field(lab) else "no spectrum or site has that field"
                raise XanesdbUserError(f"--label {lab[:60]!r} cannot be a regression target ({hint}); use one of "
                                       f"{', '.join(sorted(fields))}")  # fmt: skip
        if len(set(self.labels)) != len(self.labels):
            raise XanesdbUserError("a --label is given twice")


def _known_field(name: str) -> bool:
    from xanesdb.schemas.site import SiteDoc
    from xanesdb.schemas.spectrum import SpectrumDoc

    return name in SiteDoc.model_fields or name in SpectrumDoc.model_fields


@dataclass(frozen=True)
class RegressionDataset:
    """Spectra (max-scaled, one grid) and their numeric targets."""

    X: np.ndarray
    Y: np.ndarray  # (n, n_targets) float
    labels: tuple[str, ...]
    groups: np.ndarray
    spectrum_ids: tuple[str, ...]
    energies: np.ndarray
    grid_name: str
    query: dict[str, Any]
    fingerprint: str
    n_dropped: int = 0

    def __len__(self) -> int:
        return len(self.spectrum_ids)


def load_regression_dataset(
    query: dict[str, Any],
    labels: tuple[str, ...],
    settings: XanesdbSettings | None = None,
    *,
    db: Any = None,
    use_cache: bool = True,
) -> RegressionDataset:
    """Spectra of ``query`` with the values of ``labels`` (read from the spectrum, else from its site).

    Rows missing any target are left out (counted in ``n_dropped``); a target with a non-numeric
    value, or no value at all, is refused with one line.
    """
    from xanesdb.ml.dataset import load_dataset

    fields = numeric_fields()
    if db is None:
        from xanesdb.platform.settings import get_settings
        from xanesdb.platform.stores import get_database

        settings = settings or get_settings()
        db = get_database(settings, ensure=False)
    # the spectra as the classifier reads them; site_id (never null) as the label carries the join
    ds = load_dataset(query, settings, label_field="site_id", collection=db["spectra"], use_cache=use_cache)
    ids = list(ds.spectrum_ids)
    sites = [str(s) for s in ds.labels]
    values: dict[str, list[Any]] = {}
    for lab in labels:
        if fields.get(lab) == "spectra":
            got = {d["spectrum_id"]: d.get(lab) for d in db["spectra"].find({"spectrum_id": {"$in": ids}}, {"_id": 0, "spectrum_id": 1, lab: 1})}
            values[lab] = [got.get(i) for i in ids]
        else:
            got = {d["site_id"]: d.get(lab) for d in db["sites"].find({"site_id": {"$in": sorted(set(sites))}}, {"_id": 0, "site_id": 1, lab: 1})}
            values[lab] = [got.get(s) for s in sites]
    Y = np.full((len(ids), len(labels)), np.nan)
    for j, lab in enumerate(labels):
        for i, v in enumerate(values[lab]):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise XanesdbUserError(f"--label {lab}: spectrum {ids[i]} holds {v!r:.40}, not a number; choose a numeric field")
            Y[i, j] = float(v)
        if np.all(np.isnan(Y[:, j])):
            hint = " (run `xanesdb sites descriptors` to compute it for stored sites)" if lab in (
                "bond_length_spread", "crystalnn_coordination_number") else ""
            raise XanesdbUserError(f"--label {lab}: none of the {len(ids)} spectra of the query has a value{hint}")
    keep = ~np.isnan(Y).any(axis=1)
    if keep.sum() < 10:
        raise XanesdbUserError(f"only {int(keep.sum())} spectra have every target; a regression needs 10 or more")
    h = hashlib.sha256(ds.fingerprint.encode())
    h.update(np.ascontiguousarray(Y[keep]).tobytes())
    return RegressionDataset(
        X=ds.X[keep], Y=Y[keep], labels=tuple(labels), groups=ds.groups[keep],
        spectrum_ids=tuple(np.array(ids)[keep].tolist()), energies=ds.energies, grid_name=ds.grid_name,
        query=query, fingerprint=h.hexdigest()[:16], n_dropped=int((~keep).sum()),
    )  # fmt: skip


# ----------------------------------------------------------------------------- training
def _splits(ds: RegressionDataset, cfg: RegressionConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """The classifier's protocols, stratified on quintiles of the first target."""
    from xanesdb.ml.evaluate import make_splits

    y0 = ds.Y[:, 0]
    edges = np.unique(np.quantile(y0, [0.2, 0.4, 0.6, 0.8]))
    bins = np.digitize(y0, edges)
    counts = np.bincount(bins)
    if counts[counts > 0].min() < 2:  # a rare bin cannot be stratified: merge it into its neighbour
        bins = np.digitize(y0, edges[1:-1]) if len(edges) > 2 else np.zeros(len(y0), dtype=int)
    if cfg.protocol == "grouped" and len(set(ds.groups)) < 2:
        raise XanesdbUserError("the grouped protocol needs spectra of at least two materials")
    try:
        splits = make_splits(bins, ds.groups, cfg.protocol, cfg.n_models, cfg.test_size, cfg.seed)
    except ValueError:  # too few rows per bin for stratification
        splits = make_splits(np.zeros(len(y0), dtype=int), ds.groups, cfg.protocol, cfg.n_models, cfg.test_size, cfg.seed)
    if cfg.train_fraction < 1.0:
        rng = np.random.default_rng(cfg.seed + 17)
        splits = [(np.sort(rng.choice(tr, max(2, int(round(cfg.train_fraction * len(tr)))), replace=False)), te)
                  for tr, te in splits]  # fmt: skip
    return splits


def _fit(ds: RegressionDataset, cfg: RegressionConfig, train_sets: list[np.ndarray],
         on_epoch: Callable[[int, float, int], None] | None = None):  # fmt: skip
    """The trained model of ``len(train_sets)`` networks (or tree members), one per training set."""
    from xanesdb.ml.regression_models import TreeEnsemble

    if cfg.family == "gbt":
        return TreeEnsemble(seed=cfg.seed, loss=cfg.loss).fit(ds.X, ds.Y, train_sets)
    import keras

    from xanesdb.ml.regression_models import build_group_regressor

    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    k, n_t = len(train_sets), ds.Y.shape[1]
    trainable, answering = build_group_regressor(cfg.family, ds.X.shape[1], n_t, n_models=k,
                                                 learning_rate=cfg.learning_rate, seed=cfg.seed, loss=cfg.loss)  # fmt: skip
    n_rows = max(len(tr) for tr in train_sets)
    Xg = np.empty((n_rows, k, ds.X.shape[1]), dtype=np.float32)
    Zg = np.empty((n_rows, k, n_t), dtype=np.float32)
    xm, xs, ym, ys = [], [], [], []
    for j, tr in enumerate(train_sets):
        xm.append(ds.X[tr].mean(axis=0))
        xs.append(ds.X[tr].std(axis=0))
        ym.append(ds.Y[tr].mean(axis=0))
        ys.append(np.where(ds.Y[tr].std(axis=0) > 1e-8, ds.Y[tr].std(axis=0), 1.0))
        order = rng.permutation(len(tr))
        if len(order) < n_rows:  # equal lengths: pad by resampling the network's own rows
            order = np.concatenate([order, rng.integers(0, len(tr), n_rows - len(order))])
        Xg[:, j] = ds.X[tr][order]
        Zg[:, j] = (ds.Y[tr][order] - ym[j]) / ys[j]
    trainable.get_layer("standardize").set_stats(np.array(xm), np.array(xs))
    answering.get_layer("destandardize").set_stats(np.array(ym), np.array(ys))
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: on_epoch(e + 1, float(logs.get("loss", np.nan)), cfg.epochs)))  # fmt: skip
    trainable.fit(Xg, Zg, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, verbose=0, callbacks=callbacks)
    return answering


def _members(model: Any, X_list: list[np.ndarray]) -> list[np.ndarray]:
    """``(n_j, n_targets)`` predictions of network/member ``j`` on ``X_list[j]``."""
    from xanesdb.ml.regression_models import TreeEnsemble

    if isinstance(model, TreeEnsemble):
        return model.predict_members(X_list)
    from xanesdb.ml.train import predict_group

    return predict_group(model, X_list)


def all_networks(model: Any, X: np.ndarray) -> np.ndarray:
    """``(n, n_networks, n_targets)``: every network (or tree member) on every row of ``X``."""
    from xanesdb.ml.regression_models import TreeEnsemble

    if isinstance(model, TreeEnsemble):
        return model.predict_all(X)
    from xanesdb.ml.models import predict_networks

    return predict_networks(model, X)


def _nll_fit(spread: np.ndarray, resid: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigma^2 = a spread^2 + b^2`` maximising the Gaussian likelihood of ``resid``."""
    from scipy.optimize import minimize

    s2, r2 = spread**2, resid**2
    scale = max(float(np.mean(r2)), 1e-12)

    def nll(p: np.ndarray) -> float:
        var = np.maximum(np.exp(p[0]) * s2 + np.exp(p[1]) * scale, 1e-300)
        return float(np.mean(np.log(var) + r2 / var))

    best = min((minimize(nll, x0, method="Nelder-Mead") for x0 in ([0.0, -3.0], [2.0, -1.0], [-5.0, 0.0])),
               key=lambda r: r.fun)  # fmt: skip
    return float(np.exp(best.x[0])), float(math.sqrt(np.exp(best.x[1]) * scale))


#: nominal coverage of the +-1 sigma and +-2 sigma intervals of a normal distribution
NOMINAL_COVERAGE: dict[str, float] = {"1sigma": 0.6827, "2sigma": 0.9545}
CALIBRATION_FORM = ("s = sqrt(a * spread^2 + b^2); sigma = k1 * s covers 68.3 %, the '2 sigma' half-width k2 * s "
                    "covers 95.4 % of held-out residuals")  # fmt: skip


def fit_intervals(spread: np.ndarray, resid: np.ndarray) -> dict[str, Any]:
    """The calibration of a target's uncertainty from held-out ``resid`` and the ensemble ``spread``.

    A scale ``s = sqrt(a spread^2 + b^2)`` (Gaussian likelihood), then the multipliers ``k1`` and
    ``k2`` that make ``+-k1 s`` and ``+-k2 s`` cover 68.3 % and 95.4 % of the residuals (the
    empirical quantiles of ``|resid| / s``: split-conformal intervals, so the heavy tails of
    descriptor residuals do not make ``+-1 sigma`` too wide and ``+-2 sigma`` too narrow).
    """
    a, b = _nll_fit(spread, resid)
    s = np.sqrt(a * spread**2 + b**2)
    z = np.abs(resid) / np.maximum(s, 1e-12)
    n = len(z)
    # the conformal quantile: the ceil((n + 1) q)-th smallest score
    k = [float(np.sort(z)[min(n - 1, math.ceil((n + 1) * q) - 1)]) if n else m
         for q, m in ((NOMINAL_COVERAGE["1sigma"], 1.0), (NOMINAL_COVERAGE["2sigma"], 2.0))]  # fmt: skip
    return {"a": a, "b": b, "k1": k[0], "k2": k[1], "form": CALIBRATION_FORM}


def interval_halfwidths(cal: dict[str, Any], spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigma, 2-sigma half-width) of rows with ensemble ``spread`` under calibration ``cal``
    (:func:`fit_intervals`; cards without ``k1``/``k2`` are Gaussian: 1 and 2)."""
    s = np.sqrt(cal["a"] * np.asarray(spread, dtype=float) ** 2 + cal["b"] ** 2)
    return cal.get("k1", 1.0) * s, cal.get("k2", 2.0) * s


def held_out_intervals(spreads: list[np.ndarray], resids: list[np.ndarray]) -> dict[str, Any]:
    """Calibrate on all splits, and score each split's intervals with the calibration fitted on the
    *other* splits (all of them when there is one): ``calibration``, ``coverage``, ``coverage_raw``
    (the bare spread as sigma), ``mean_sigma``, and per row ``sigma`` and ``sigma2``."""
    n_s = len(spreads)
    sig1, sig2 = [], []
    for i in range(n_s):
        others = [o for o in range(n_s) if o != i] or [i]
        cal = fit_intervals(np.concatenate([spreads[o] for o in others]), np.concatenate([resids[o] for o in others]))
        s1, s2 = interval_halfwidths(cal, spreads[i])
        sig1.append(s1)
        sig2.append(s2)
    r, raw = np.abs(np.concatenate(resids)), np.concatenate(spreads)
    s1, s2 = np.concatenate(sig1), np.concatenate(sig2)
    return {"calibration": fit_intervals(raw, np.concatenate(resids)),
            "coverage": {"1sigma": float(np.mean(r <= s1)), "2sigma": float(np.mean(r <= s2))},
            "coverage_raw": {"1sigma": float(np.mean(r <= raw)), "2sigma": float(np.mean(r <= 2 * raw))},
            "mean_sigma": float(np.mean(s1)), "sigma": s1, "sigma2": s2}  # fmt: skip


def _ms(v: list[float] | np.ndarray) -> list[float]:
    v = np.asarray(v, dtype=float)
    return [float(np.mean(v)), float(np.std(v))]


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return float(1.0 - np.sum((y - p) ** 2) / ss) if ss > 0 else float("nan")


def train_regression_on_dataset(
    ds: RegressionDataset, cfg: RegressionConfig, on_epoch: Callable[[int, float, int], None] | None = None,
) -> tuple[Any, dict[str, Any], list]:
    """Split, train ``n_models`` x ``ensemble`` networks (or tree members), score them.

    Returns
    -------
    model, metrics, splits
        ``metrics["targets"][label]`` holds MAE/R^2 (networks, split ensembles, baseline, each
        ``[mean, std]``), coverage of +-1/2 sigma (raw spread and calibrated) and the calibration;
        ``metrics["parity"]`` the held-out truth, prediction and sigma of every split.
    """
    cfg.check()
    t0 = time.perf_counter()
    splits = _splits(ds, cfg)
    e = cfg.ensemble
    model = _fit(ds, cfg, [tr for tr, _ in splits for _ in range(e)], on_epoch)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    preds = _members(model, [ds.X[te] for _, te in splits for _ in range(e)])
    n_s = len(splits)
    means = [np.mean(preds[i * e : (i + 1) * e], axis=0) for i in range(n_s)]
    spreads = [np.std(preds[i * e : (i + 1) * e], axis=0) for i in range(n_s)]
    metrics: dict[str, Any] = {"targets": {}, "n_train": [int(len(tr)) for tr, _ in splits],
                               "n_test": [int(len(te)) for _, te in splits], "n_networks": n_s * e}  # fmt: skip
    parity: dict[str, Any] = {}
    for j, lab in enumerate(ds.labels):
        y_te = [ds.Y[te, j] for _, te in splits]
        mae_net = [float(np.mean(np.abs(preds[i * e + m][:, j] - y_te[i]))) for i in range(n_s) for m in range(e)]
        r2_net = [_r2(y_te[i], preds[i * e + m][:, j]) for i in range(n_s) for m in range(e)]
        mae_ens = [float(np.mean(np.abs(means[i][:, j] - y_te[i]))) for i in range(n_s)]
        r2_ens = [_r2(y_te[i], means[i][:, j]) for i in range(n_s)]
        base = [float(np.mean(np.abs(ds.Y[tr, j].mean() - ds.Y[te, j]))) for tr, te in splits]
        r2_base = [_r2(ds.Y[te, j], np.full(len(te), ds.Y[tr, j].mean())) for tr, te in splits]
        # calibration of each split on the other splits' held-out predictions (all of them when one split)
        iv = held_out_intervals([spreads[i][:, j] for i in range(n_s)], [means[i][:, j] - y_te[i] for i in range(n_s)])
        metrics["targets"][lab] = {
            "mae_networks": _ms(mae_net), "r2_networks": _ms(r2_net),
            "mae_ensemble": _ms(mae_ens), "r2_ensemble": _ms(r2_ens),
            "mae_baseline": _ms(base), "r2_baseline": _ms(r2_base),
            "coverage_raw": iv["coverage_raw"], "coverage": iv["coverage"], "mean_sigma": iv["mean_sigma"],
            "calibration": iv["calibration"],
            "train_mean": float(ds.Y[:, j].mean()), "std": float(ds.Y[:, j].std()),
        }  # fmt: skip
        parity[lab] = {"true": np.concatenate(y_te).tolist(), "pred": np.concatenate([m[:, j] for m in means]).tolist(),
                       "sigma": iv["sigma"].tolist()}  # fmt: skip
    metrics["parity"] = parity
    metrics["timings"] = {"fit_s": t_fit, "evaluate_s": time.perf_counter() - t0}
    return model, metrics, splits


@dataclass
class RegressionResult:
    """What a regression run produced."""

    model: Any
    doc: TrainingRunDoc
    dataset: RegressionDataset
    splits: list = field(default_factory=list)


def make_regression_doc(ds: RegressionDataset, cfg: RegressionConfig, metrics: dict[str, Any],
                        timings: dict[str, float]) -> TrainingRunDoc:  # fmt: skip
    """The registry document of a regression run (state 'training' until registered)."""
    from xanesdb.ml.registry import run_document

    hp = cfg.as_dict()
    hp["feature_indices"] = list(range(ds.X.shape[1]))
    return run_document(ds, kind=f"reg-{cfg.family}", task="regression", label_field=",".join(ds.labels),
                        classes=list(ds.labels), hyperparameters=hp, seed=cfg.seed, metrics=metrics,
                        timings=timings)  # fmt: skip


def train_regression_from_query(
    query: dict[str, Any],
    cfg: RegressionConfig,
    settings: XanesdbSettings | None = None,
    *,
    register: bool = True,
    db: Any = None,
    on_epoch: Callable[[int, float, int], None] | None = None,
) -> RegressionResult:
    """``xanesdb train --task regression``: dataset, training, scores, registry entry."""
    cfg.check()
    t0 = time.perf_counter()
    ds = load_regression_dataset(query, cfg.labels, settings, db=db)
    t_data = time.perf_counter() - t0
    model, metrics, splits = train_regression_on_dataset(ds, cfg, on_epoch)
    metrics["n_dropped_missing_target"] = ds.n_dropped
    timings = {"dataset_s": t_data, **metrics.pop("timings")}
    doc = make_regression_doc(ds, cfg, metrics, timings)
    if register:
        from xanesdb.ml.registry import register_run

        doc = register_run(doc, model, settings)
    return RegressionResult(model=model, doc=doc, dataset=ds, splits=splits)


# ----------------------------------------------------------------------------- using a registered model
def is_regression_run(doc: TrainingRunDoc) -> bool:
    return doc.task == "regression"


def load_regression_model(doc: TrainingRunDoc, settings: XanesdbSettings | None = None):
    """The model of a registered regression run (a Keras group, or a :class:`TreeEnsemble`)."""
    import xanesdb.ml.regression_models as rm  # registers the custom layers

    if doc.kind == "reg-gbt":
        import gridfs
        from bson import ObjectId

        from xanesdb.ml.registry import GRIDFS_BUCKET, _db

        if doc.state != "complete" or not doc.weights_file_id:
            raise XanesdbUserError(f"model {doc.run_id} is {doc.state!r}, not complete; train it again")
        data = gridfs.GridFS(_db(settings), GRIDFS_BUCKET).get(ObjectId(doc.weights_file_id)).read()
        return rm.TreeEnsemble.from_bytes(data)
    from xanesdb.ml.registry import load_model

    return load_model(doc, settings)


def predict_regression(doc: TrainingRunDoc, model: Any, X: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{label: (value, sigma)}`` for each row of ``X`` (max-scaled spectra on the run's grid).

    The value is the mean of every network; sigma is the calibration of the run applied to the
    members' spread within a split (root mean of the splits' variances).
    """
    P = all_networks(model, np.asarray(X, dtype=np.float32))  # (n, n_splits * ensemble, n_targets)
    e = int(doc.hyperparameters.get("ensemble", 1))
    n_s = P.shape[1] // e
    within = np.sqrt(P.reshape(len(P), n_s, e, -1).var(axis=2).mean(axis=1))  # (n, t)
    out = {}
    for j, lab in enumerate(doc.classes):
        sigma, _ = interval_halfwidths(doc.metrics["targets"][lab]["calibration"], within[:, j])
        out[lab] = (P[:, :, j].mean(axis=1), sigma)
    return out


# ----------------------------------------------------------------------------- figures
def plot_parity(doc: TrainingRunDoc, path: Path, title: str | None = None) -> Path:
    """Held-out truth against prediction (+-1 sigma bars) of every target, one panel each, as a PNG."""
    from matplotlib.figure import Figure

    labels = doc.classes
    fig = Figure(figsize=(4.2 * len(labels), 4.2), dpi=110)
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    for ax, lab in zip(axes, labels):
        p = doc.metrics["parity"][lab]
        t = doc.metrics["targets"][lab]
        y, yp, s = (np.asarray(p[k]) for k in ("true", "pred", "sigma"))
        ax.errorbar(y, yp, yerr=s, fmt="o", ms=2.5, alpha=0.35, elinewidth=0.5, color="tab:blue")
        lo, hi = float(min(y.min(), yp.min())), float(max(y.max(), yp.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.axhline(t["train_mean"], color="tab:gray", lw=0.8, ls=":", label="baseline (training mean)")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"true {lab}")
        ax.set_ylabel(f"predicted {lab}")
        ax.set_title(f"{lab}: MAE {t['mae_ensemble'][0]:.3g} (baseline {t['mae_baseline'][0]:.3g})\n"
                     f"R² {t['r2_ensemble'][0]:.2f}; ±1σ covers {100 * t['coverage']['1sigma']:.0f} %, "
                     f"±2σ {100 * t['coverage']['2sigma']:.0f} %", fontsize=9)  # fmt: skip
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or f"{doc.run_id} ({doc.hyperparameters.get('protocol')} protocol, held-out spectra)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path
