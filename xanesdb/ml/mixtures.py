"""Site fractions from a spectrum (issue 21 item 4): mixtures of site spectra and a network that unmixes them.

A measured spectrum averages every absorbing site of the sample (Marcella's site averaging,
``../shared/MISSION.md``). Training spectra for that are built from one absorber's site spectra
in the aligned representation (:func:`xanesdb.ml.aligned.load_aligned_dataset`, the one ``xanesdb
predict`` reads measured spectra in):

- *random mixtures*: fractions of the classes ``O6``, ``S5``, ``T4`` drawn from a flat Dirichlet
  over 1, 2 or 3 classes, each class's share carried by one or two random site spectra of that
  class;
- *exact averages of real materials*: every symmetry-unique absorbing site of a material, weighted
  by its multiplicity (magnetite: 1/3 T4 + 2/3 O6), for materials whose every site has a spectrum
  and one of the three classes.

A softmax MLP is trained on them with the Kullback-Leibler divergence of the fractions as its
loss. It is scored on the exact averages of *held-out* real materials (folds over materials, so
no site of a scored material is in any training mixture): MAE of the three fractions on the
materials with several classes of site, against two baselines, the training materials' mean
fractions and a non-negative least-squares fit of the training class means (linear
combination fitting). Part of the training rows get the measurement model of
:mod:`xanesdb.ml.augment` (broadening, shift, damping, noise) so measured spectra look familiar.
With ``MixtureConfig.calibration`` every site spectrum is first mapped to what a measurement of
it looks like (:mod:`xanesdb.xas.calibration`: stretch, shift, broadening, damping), after the
fidelity correction and before any mixing, so the averages are what a measured mixed sample gives.

The run is registered like the others (``task="fractions"``, kind ``frac-mlp``); ``xanesdb
predict -m <run>`` prints the fractions.

Examples
--------
>>> cfg = MixtureConfig(n_folds=5, epochs=40)                                              # doctest: +SKIP
>>> res = train_fractions_from_query({"element": "Fe", "source": "xanesdb", "preset": "fast"}, cfg)  # doctest: +SKIP
>>> res.doc.metrics["mae_mixed"]                                                          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.schemas import TrainingRunDoc

logger = logging.getLogger(__name__)

__all__ = ["CLASSES", "MixtureConfig", "SiteSpectra", "load_site_spectra", "material_averages", "random_mixtures",
           "make_fraction_net", "train_fractions_on", "train_fractions_from_query", "predict_fractions",
           "is_fractions_run", "FractionsResult"]  # fmt: skip

#: the fractions learned, in output order (the classifier's order)
CLASSES: tuple[str, ...] = ("O6", "S5", "T4")


@dataclass
class MixtureConfig:
    """Knobs of one fractions run (stored in the run's ``hyperparameters``).

    Parameters
    ----------
    n_random
        Random mixtures per fold (and for the final network).
    max_classes
        Most classes in one random mixture (1-3; default 2: a material rarely has sites of all three).
    per_class
        Most site spectra carrying one class's share of a random mixture.
    material_repeats
        Copies of each training material's exact average among the training rows. 30 copies fit
        the computed materials better (held-out MAE over all Fe materials 0.075 against 0.106 with
        3) but the measured records worse (Fe and Mn together 0.132 against 0.116; Mn3O4 T4 0.13
        for 1/3), so the default stays 3 (``benchmarks/results/mixtures_cal_prior_k2_rep30.txt``).
    measured_share
        Share of the training rows given a measured-like distortion (:class:`xanesdb.ml.augment.MeasurementModel`).
    n_folds
        Folds over the materials with several classes of site (each held out once); every fold
        also holds out ``test_size`` of the single-class materials.
    hidden, dropout, epochs, batch_size, learning_rate
        The softmax MLP and Adam.
    fidelity
        ``"scf"``: bring the ``fast`` site spectra towards the ``scf`` preset first
        (:func:`xanesdb.ml.aligned.fit_fidelity_from_db`, fitted on every site computed with both),
        as the classifiers for measured spectra do; None: as computed.
    calibration
        The computed -> measured calibration (:mod:`xanesdb.xas.calibration`) applied to every
        site spectrum after the fidelity correction and before any mixing or averaging: a shipped
        one by name (``"k-edge"``), a JSON file, or its four numbers as a dict (``shift``,
        ``stretch``, ``sigma``, ``damping``, optionally ``provenance``), resolved as
        :func:`xanesdb.ml.train.resolve_calibration` does; None: none (and absent from
        :meth:`as_dict`, so such runs keep their ids).
    class_prior
        How a random mixture picks its classes: ``"sites"`` with the frequency of each class among
        the training sites (what materials contain: for Fe 60 % O6, 29 % T4, 11 % S5), so that a
        rare class is not spread over every mixture; ``"uniform"``: each class alike.
    seed
        Seed of folds, mixtures, initialisation.
    """

    n_random: int = 6000
    max_classes: int = 2
    per_class: int = 2
    material_repeats: int = 3
    measured_share: float = 0.5
    n_folds: int = 5
    test_size: float = 0.2
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    fidelity: str | None = None
    calibration: str | dict[str, float] | None = None
    class_prior: str = "sites"
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        if d["calibration"] is None:  # absent when unused: run ids of uncalibrated runs stay what they were
            del d["calibration"]
        if d["class_prior"] == "uniform":  # the behaviour before the option: those runs keep their ids
            del d["class_prior"]
        return d

    def check(self) -> None:
        """Refuse bad knobs with one line."""
        for name in ("n_random", "max_classes", "per_class", "n_folds", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise XanesdbUserError(f"{name} must be at least 1")
        if self.max_classes > len(CLASSES):
            raise XanesdbUserError(f"max_classes is at most {len(CLASSES)}")
        if self.class_prior not in ("sites", "uniform"):
            raise XanesdbUserError(f"class_prior {self.class_prior!r}: use sites or uniform")
        for name in ("measured_share", "dropout", "test_size", "learning_rate"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or not 0.0 <= v < 1.0 or (name == "learning_rate" and v <= 0):
                raise XanesdbUserError(f"{name} {v:g} is outside [0, 1)")
        if self.material_repeats < 0 or not self.hidden or min(self.hidden) < 1:
            raise XanesdbUserError("material_repeats must be >= 0 and hidden layers >= 1 unit")
        if self.calibration is not None:
            resolve_mixture_calibration(self.calibration)


def resolve_mixture_calibration(spec: Any):
    """The :class:`xanesdb.xas.calibration.MeasurementCalibration` that ``spec`` names (one already
    made is returned as it is); a one-line :class:`XanesdbUserError` when unknown or incomplete."""
    from xanesdb.xas.calibration import MeasurementCalibration

    if isinstance(spec, MeasurementCalibration):
        return spec
    if not isinstance(spec, (str, dict)):
        raise XanesdbUserError(f"a calibration is a name, a .json file or its four numbers, not {type(spec).__name__}")
    from xanesdb.ml.train import resolve_calibration

    cal = resolve_calibration(spec)
    if isinstance(spec, dict) and spec.get("provenance"):  # e.g. "...; refitted without Mn"
        cal.provenance = str(spec["provenance"])
    return cal


@dataclass(frozen=True)
class SiteSpectra:
    """One aligned spectrum per site, with the site's class, material and multiplicity."""

    X: np.ndarray  # (n_sites, n_energies)
    site_ids: tuple[str, ...]
    material_ids: np.ndarray
    classes: np.ndarray  # lce_class, or '' when none
    multiplicity: np.ndarray
    complete: dict[str, bool]  # material -> every site of the absorber has a spectrum
    energies: np.ndarray
    grid_name: str
    query: dict[str, Any]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.site_ids)


def load_site_spectra(query: dict[str, Any], settings: XanesdbSettings | None = None, *, use_cache: bool = True,
                      fidelity: str | None = None, calibration: Any = None) -> SiteSpectra:  # fmt: skip
    """The aligned spectra of ``query`` (duplicates included: every site counts), one per site.

    A site with several spectra (several presets) keeps the first by spectrum id; a material is
    *complete* when every labelled site of its absorber(s) in ``sites`` has a spectrum here.
    ``calibration`` (a name, a .json file, four numbers or a
    :class:`xanesdb.xas.calibration.MeasurementCalibration`) maps each site spectrum, after the
    ``fidelity`` correction, to what a measurement of it looks like.
    """
    from xanesdb.ml.aligned import load_aligned_dataset
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    settings = settings or get_settings()
    cal = resolve_mixture_calibration(calibration) if calibration is not None else None
    warp = None
    if fidelity is not None:
        from xanesdb.ml.aligned import fit_fidelity_from_db

        warp = fit_fidelity_from_db(settings, "fast", fidelity)
    ds = load_aligned_dataset(query, settings, label_field="site_id", include_duplicates=True, use_cache=use_cache,
                              fidelity=warp)  # fmt: skip
    first: dict[str, int] = {}
    for i, s in enumerate(ds.labels):
        first.setdefault(str(s), i)
    rows = sorted(first.values(), key=lambda i: str(ds.labels[i]))
    site_ids = [str(ds.labels[i]) for i in rows]
    db = get_database(settings, ensure=False)
    materials = sorted({str(ds.groups[i]) for i in rows})
    elements = sorted({s.split(":")[-2] for s in site_ids})
    info: dict[str, dict] = {}
    for i in range(0, len(materials), 500):
        for d in db["sites"].find({"material_id": {"$in": materials[i : i + 500]}, "element": {"$in": elements}},
                                  {"_id": 0, "site_id": 1, "material_id": 1, "lce_class": 1, "multiplicity": 1,
                                   "state": 1}):  # fmt: skip
            info[d["site_id"]] = d
    have = set(site_ids)
    complete = {m: True for m in materials}
    for sid, d in info.items():
        if sid not in have:
            complete[d["material_id"]] = False
    X = ds.X[rows]
    h = hashlib.sha256(ds.fingerprint.encode())
    h.update("|".join(site_ids).encode())
    if cal is not None:  # every site spectrum as a measurement of it would look, before any mixing
        X = cal.apply(X, ds.energies).astype(ds.X.dtype)
        h.update(json.dumps(cal.params(), sort_keys=True).encode())
    return SiteSpectra(
        X=X, site_ids=tuple(site_ids), material_ids=np.array([str(ds.groups[i]) for i in rows]),
        classes=np.array([str(info.get(s, {}).get("lce_class") or "") for s in site_ids]),
        multiplicity=np.array([int(info.get(s, {}).get("multiplicity") or 1) for s in site_ids]),
        complete=complete, energies=ds.energies, grid_name=ds.grid_name, query=query, fingerprint=h.hexdigest()[:16],
    )  # fmt: skip


def fractions_of(classes, weights) -> np.ndarray:
    """The fractions of :data:`CLASSES` of sites with these classes and weights."""
    f = np.zeros(len(CLASSES))
    for c, w in zip(classes, weights):
        f[CLASSES.index(c)] += w
    return f / f.sum()


def material_averages(ss: SiteSpectra, materials=None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Exact multiplicity-weighted averages of the complete materials whose every site is O6, S5 or T4.

    Returns ``(material_ids, X (n, n_energies), F (n, 3))``.
    """
    keep = set(materials) if materials is not None else None
    ids, xs, fs = [], [], []
    for m in sorted(set(ss.material_ids.tolist())):
        if (keep is not None and m not in keep) or not ss.complete.get(m, False):
            continue
        idx = np.flatnonzero(ss.material_ids == m)
        if not all(c in CLASSES for c in ss.classes[idx]):
            continue
        w = ss.multiplicity[idx].astype(float)
        ids.append(m)
        xs.append((ss.X[idx] * w[:, None]).sum(axis=0) / w.sum())
        fs.append(fractions_of(ss.classes[idx], w))
    n_e = ss.X.shape[1]
    return ids, np.array(xs, dtype=np.float32).reshape(-1, n_e), np.array(fs, dtype=np.float32).reshape(-1, len(CLASSES))


def random_mixtures(X: np.ndarray, classes: np.ndarray, n: int, rng: np.random.Generator, *, max_classes: int = 3,
                    per_class: int = 2, class_prior: str = "uniform") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``n`` mixtures of the rows of ``X``: fractions flat-Dirichlet over 1..``max_classes`` classes present,
    the classes drawn alike (``class_prior="uniform"``) or as often as they occur among the rows (``"sites"``)."""
    by_class = [np.flatnonzero(classes == c) for c in CLASSES]
    present = [k for k, rows in enumerate(by_class) if len(rows)]
    if not present:
        raise XanesdbUserError(f"no site spectra of the classes {', '.join(CLASSES)}")
    prior = None
    if class_prior == "sites":
        prior = np.array([len(by_class[k]) for k in present], dtype=float)
        prior /= prior.sum()
    Xm = np.zeros((n, X.shape[1]), dtype=np.float32)
    F = np.zeros((n, len(CLASSES)), dtype=np.float32)
    for i in range(n):
        k = int(rng.integers(1, min(max_classes, len(present)) + 1))
        chosen = rng.choice(present, size=k, replace=False, p=prior)
        f = rng.dirichlet(np.ones(k))
        for c, fc in zip(chosen, f):
            rows = rng.choice(by_class[c], size=int(rng.integers(1, per_class + 1)))
            Xm[i] += fc * X[rows].mean(axis=0)
            F[i, c] += fc
    return Xm, F


def make_fraction_net(n_features: int, *, hidden=(128, 64), dropout: float = 0.1, learning_rate: float = 1e-3):
    """A softmax MLP over :data:`CLASSES`, trained with the KL divergence of the fractions."""
    import keras

    inp = keras.Input((n_features,), name="spectrum")
    h = inp
    for i, u in enumerate(hidden):
        h = keras.layers.Dense(u, activation="relu", name=f"dense_{i}")(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    out = keras.layers.Dense(len(CLASSES), activation="softmax", name="fractions")(h)
    model = keras.Model(inp, out, name="site_fractions")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.KLDivergence(), metrics=["mae"])
    return model


def _training_rows(ss: SiteSpectra, train_materials: set[str], cfg: MixtureConfig, rng: np.random.Generator):
    sel = np.array([m in train_materials for m in ss.material_ids]) & np.isin(ss.classes, CLASSES)
    Xr, Fr = random_mixtures(ss.X[sel], ss.classes[sel], cfg.n_random, rng, max_classes=cfg.max_classes,
                             per_class=cfg.per_class, class_prior=cfg.class_prior)  # fmt: skip
    _, Xa, Fa = material_averages(ss, train_materials)
    parts_x = [Xr] + [Xa] * cfg.material_repeats
    parts_f = [Fr] + [Fa] * cfg.material_repeats
    X, F = np.concatenate(parts_x), np.concatenate(parts_f)
    if cfg.measured_share > 0:
        from xanesdb.ml.augment import MeasurementModel, measurement_copies

        m = rng.random(len(X)) < cfg.measured_share
        if m.any():
            X[m] = measurement_copies(X[m], ss.energies, MeasurementModel(), rng, e_ref=0.0)
    return X.astype(np.float32), F.astype(np.float32)


def _fit(X: np.ndarray, F: np.ndarray, cfg: MixtureConfig, seed: int,
         on_epoch: Callable[[int, float, int], None] | None = None):  # fmt: skip
    import keras

    keras.utils.set_random_seed(seed)
    net = make_fraction_net(X.shape[1], hidden=cfg.hidden, dropout=cfg.dropout, learning_rate=cfg.learning_rate)
    cbs = []
    if on_epoch is not None:
        cbs.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: on_epoch(e + 1, float(logs.get("loss", np.nan)), cfg.epochs)))  # fmt: skip
    net.fit(X, F, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, verbose=0, callbacks=cbs)
    return net


def predict_fractions(net: Any, X: np.ndarray) -> np.ndarray:
    """``(n, 3)`` fractions of :data:`CLASSES` (rows sum to 1)."""
    return np.asarray(net.predict(np.asarray(X, dtype=np.float32), verbose=0), dtype=float)


def nnls_fractions(means: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Baseline: non-negative least squares of each row of ``X`` on the class mean spectra, normalised."""
    from scipy.optimize import nnls

    out = np.zeros((len(X), len(means)))
    for i, x in enumerate(X):
        w, _ = nnls(means.T.astype(float), x.astype(float))
        out[i] = w / w.sum() if w.sum() > 0 else np.full(len(means), 1.0 / len(means))
    return out


def _folds(ss: SiteSpectra, cfg: MixtureConfig) -> list[set[str]]:
    """Held-out material sets: the mixed-site materials in ``n_folds`` folds, plus a share of the others."""
    ids, _, F = material_averages(ss)
    mixed = [m for m, f in zip(ids, F) if (f > 1e-6).sum() > 1]
    pure = [m for m, f in zip(ids, F) if (f > 1e-6).sum() == 1]
    if not mixed:
        raise XanesdbUserError("no complete material with several classes of absorbing site in the query; "
                               "fractions cannot be scored (add materials such as Fe3O4)")  # fmt: skip
    rng = np.random.default_rng(cfg.seed)
    rng.shuffle(mixed)
    k = min(cfg.n_folds, len(mixed))
    folds = []
    for j in range(k):
        held = set(mixed[j::k])
        n_p = int(round(cfg.test_size * len(pure)))
        held |= set(rng.choice(pure, size=n_p, replace=False).tolist()) if n_p else set()
        folds.append(held)
    return folds


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b))) if len(a) else float("nan")


def train_fractions_on(ss: SiteSpectra, cfg: MixtureConfig, on_epoch: Callable[[int, float, int], None] | None = None):
    """Folds over materials (scores) then one network on every material (the registered one).

    Returns ``(net, metrics)``: ``mae_mixed`` / ``mae_all`` (network), ``mae_mixed_baseline_mean`` and
    ``mae_mixed_baseline_nnls`` (baselines), per class MAE on mixed materials, and every held-out
    material's true and predicted fractions (``heldout``).
    """
    cfg.check()
    t0 = time.perf_counter()
    ids, Xa, Fa = material_averages(ss)
    if len(ids) < 3:
        raise XanesdbUserError(f"only {len(ids)} complete materials with O6/S5/T4 sites; need 3 or more")
    folds = _folds(ss, cfg)
    rng = np.random.default_rng(cfg.seed)
    held_rows = []
    for j, held in enumerate(folds):
        train = set(ss.material_ids.tolist()) - held
        X, F = _training_rows(ss, train, cfg, rng)
        net = _fit(X, F, cfg, cfg.seed + j)
        te = [i for i, m in enumerate(ids) if m in held]
        P = predict_fractions(net, Xa[te])
        tr_idx = [i for i, m in enumerate(ids) if m in train]
        prior = Fa[tr_idx].mean(axis=0)
        sel = np.array([m in train for m in ss.material_ids]) & np.isin(ss.classes, CLASSES)
        means = np.stack([ss.X[sel & (ss.classes == c)].mean(axis=0) if (sel & (ss.classes == c)).any()
                          else np.zeros(ss.X.shape[1]) for c in CLASSES])  # fmt: skip
        N = nnls_fractions(means, Xa[te])
        for r, i in enumerate(te):
            held_rows.append({"fold": j, "material_id": ids[i], "true": Fa[i].tolist(), "pred": P[r].tolist(),
                              "baseline_mean": prior.tolist(), "baseline_nnls": N[r].tolist(),
                              "mixed": bool((Fa[i] > 1e-6).sum() > 1)})  # fmt: skip
        logger.info("fold %d/%d: %d held-out materials", j + 1, len(folds), len(te))
    t_cv = time.perf_counter() - t0

    def score(rows, key):
        return _mae(np.array([r[key] for r in rows]), np.array([r["true"] for r in rows])) if rows else float("nan")

    mixed = [r for r in held_rows if r["mixed"]]
    metrics: dict[str, Any] = {
        "n_materials": len(ids), "n_mixed_materials": len({r["material_id"] for r in mixed}), "n_folds": len(folds),
        "n_sites": len(ss), "classes": list(CLASSES),
        "mae_mixed": score(mixed, "pred"), "mae_all": score(held_rows, "pred"),
        "mae_mixed_baseline_mean": score(mixed, "baseline_mean"), "mae_mixed_baseline_nnls": score(mixed, "baseline_nnls"),
        "mae_all_baseline_mean": score(held_rows, "baseline_mean"), "mae_all_baseline_nnls": score(held_rows, "baseline_nnls"),
        "mae_mixed_per_class": {c: _mae(np.array([r["pred"][k] for r in mixed]), np.array([r["true"][k] for r in mixed]))
                                for k, c in enumerate(CLASSES)},
        "heldout": held_rows,
    }  # fmt: skip
    # the registered network: every material
    t0 = time.perf_counter()
    X, F = _training_rows(ss, set(ss.material_ids.tolist()), cfg, rng)
    net = _fit(X, F, cfg, cfg.seed + 1000, on_epoch)
    metrics["n_train_rows"] = int(len(X))
    metrics["timings"] = {"folds_s": t_cv, "final_s": time.perf_counter() - t0}
    return net, metrics


@dataclass
class FractionsResult:
    """What a fractions run produced."""

    model: Any
    doc: TrainingRunDoc
    sites: SiteSpectra
    extra: dict = field(default_factory=dict)


def make_fractions_doc(ss: SiteSpectra, cfg: MixtureConfig, metrics: dict[str, Any], timings: dict[str, float]) -> TrainingRunDoc:
    """The registry document of a fractions run (state 'training' until registered)."""
    from xanesdb.ml.registry import run_document

    hp = cfg.as_dict()
    hp["representation"] = "aligned"
    hp["feature_indices"] = list(range(ss.X.shape[1]))
    return run_document(ss, kind="frac-mlp", task="fractions", label_field="site_fractions", classes=list(CLASSES),
                        hyperparameters=hp, seed=cfg.seed, metrics=metrics, timings=timings)  # fmt: skip


def train_fractions_from_query(query: dict[str, Any], cfg: MixtureConfig, settings: XanesdbSettings | None = None, *,
                               register: bool = True, on_epoch: Callable[[int, float, int], None] | None = None,
                               use_cache: bool = True) -> FractionsResult:  # fmt: skip
    """``xanesdb train --task fractions``: site spectra, folds, final network, registry entry."""
    cfg.check()
    t0 = time.perf_counter()
    cal = resolve_mixture_calibration(cfg.calibration) if cfg.calibration is not None else None
    ss = load_site_spectra(query, settings, use_cache=use_cache, fidelity=cfg.fidelity, calibration=cal)
    t_data = time.perf_counter() - t0
    net, metrics = train_fractions_on(ss, cfg, on_epoch)
    if cal is not None:
        metrics["measured_calibration"] = {**cal.params(), "n_pairs": cal.n_pairs, "rmse_before": cal.rmse_before,
                                           "rmse_after": cal.rmse_after, "provenance": cal.provenance}  # fmt: skip
    timings = {"dataset_s": t_data, **metrics.pop("timings")}
    doc = make_fractions_doc(ss, cfg, metrics, timings)
    if register:
        from xanesdb.ml.registry import register_run

        doc = register_run(doc, net, settings)
    return FractionsResult(model=net, doc=doc, sites=ss)


def is_fractions_run(doc: TrainingRunDoc) -> bool:
    return doc.task == "fractions"


def fractions_of_measured(net: Any, spectra: list) -> list[dict[str, Any]]:
    """Rows ``{name, absorber, O6, S5, T4, e_half}`` (or ``error``) of measured spectra, aligned as ``xanesdb predict`` does."""
    from xanesdb.xas.align import align_measured

    rows, xs, where = [], [], []
    for s in spectra:
        row: dict[str, Any] = {"name": s.name, "file": getattr(s, "path", None), "absorber": s.absorber}
        try:
            a = align_measured(np.asarray(s.energy, dtype=float), np.asarray(s.mu, dtype=float))
        except ValueError as err:
            row["error"] = f"{s.name}: {err}"
        else:
            row["e_half"] = float(a["e_half"])
            xs.append(a["y"])
            where.append(len(rows))
        rows.append(row)
    if xs:
        P = predict_fractions(net, np.stack(xs))
        for r, i in enumerate(where):
            rows[i].update({c: float(P[r, k]) for k, c in enumerate(CLASSES)})
    return rows
