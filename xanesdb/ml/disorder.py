"""Disordered-site spectra from distortion series, labelled by their MSD (issue 21 items 2-3).

A site's distortion series (:mod:`xanesdb.jobs.disorder`: FEFF runs of its cluster with every
neighbour moved radially by ``d``) averaged with weights ``w(d)`` of a skew-normal distribution
(mean ``mu``, width ``sigma``, shape ``alpha``; ``alpha = 0`` is a Gaussian) is the spectrum of a
disordered site; its label is the mean squared displacement ``MSD = sum_d w(d) d^2``
(Thaller), which is the variance of the bond-length distribution plus the square of its mean shift:
``MSD = var + mean^2``. The mean shift moves every shell alike, as a site with other bond lengths
would, so it cannot be told from a spectrum of a site never seen; the variance (the
Debye-Waller-like spread that a temperature series changes) can, and is offered as the target
``variance`` beside ``msd`` (:data:`TARGETS`). The averages are made reproducibly at training time from the stored series: the
weightings come from a seed and are recorded (``mu, sigma, alpha`` per row).

Averaging happens on mu(E) (and FEFF's mu0) on the first run's energies, *before* the
normalisation and half-step alignment of :func:`xanesdb.xas.align.align_computed`, as a
measurement averages absorption, so the edge moves with the distortion as it does in a sample.

This module reads stores through the platform and arrays; it never imports jobs (the key format
is matched on the ``distortion`` field only).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

__all__ = ["TARGETS", "series_weights", "msd_of", "mean_of", "relative_dataset", "check_weighting", "sample_weightings", "DistortionSeries", "series_from_docs",
           "load_series", "disordered_spectra", "MsdDataset", "make_msd_dataset", "series_on_grid", "complete_series",
           "is_disorder_run", "train_disorder_model", "predict_disorder", "plot_held_out_sites"]  # fmt: skip


def check_weighting(mu: Any, sigma: Any, alpha: Any = 0.0) -> tuple[float, float, float]:
    """``(mu, sigma, alpha)`` as floats; one-line error when one is not finite or ``sigma <= 0``."""
    out = []
    for name, v in (("mu", mu), ("sigma", sigma), ("alpha", alpha)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise XanesdbUserError(f"weighting {name} {v!r:.30} is not a number") from None
        if not math.isfinite(f):
            raise XanesdbUserError(f"weighting {name} is {f}; give a finite number")
        out.append(f)
    if out[1] <= 0:
        raise XanesdbUserError(f"weighting sigma {out[1]:g} A must be > 0")
    return out[0], out[1], out[2]


def series_weights(distortions: Sequence[float], mu: float, sigma: float, alpha: float = 0.0) -> np.ndarray:
    """Skew-normal weights of the distortions (sum 1); one-line errors for bad parameters."""
    from scipy.stats import skewnorm

    mu, sigma, alpha = check_weighting(mu, sigma, alpha)
    d = np.asarray(distortions, dtype=float)
    w = skewnorm.pdf(d, alpha, loc=mu, scale=sigma)
    if not np.isfinite(w).all() or w.sum() <= 1e-12:
        raise XanesdbUserError(f"the weighting (mu {mu:g}, sigma {sigma:g}, alpha {alpha:g}) puts no weight on "
                               f"the series {d.min():+g}..{d.max():+g} A")  # fmt: skip
    return w / w.sum()


def msd_of(distortions: Sequence[float], weights: np.ndarray) -> float:
    """Mean squared displacement ``sum w d^2`` (A^2)."""
    d = np.asarray(distortions, dtype=float)
    return float(np.sum(np.asarray(weights) * d * d))


def mean_of(distortions: Sequence[float], weights: np.ndarray) -> float:
    """Mean distortion ``sum w d`` (A): the shift of the bond lengths; ``MSD - mean^2`` is their variance."""
    return float(np.sum(np.asarray(weights) * np.asarray(distortions, dtype=float)))


#: regression targets of a disordered spectrum: its MSD (Thaller's label) and the variance about the
#: mean distortion (``MSD - mean^2``), the part that does not need the site's own bond lengths
TARGETS = ("msd", "variance")


def sample_weightings(n: int, seed: int, *, mu_range=(-0.1, 0.1), sigma_range=(0.02, 0.15),
                      alpha_range=(-4.0, 4.0), gaussian_share: float = 0.5) -> np.ndarray:  # fmt: skip
    """``(n, 3)`` reproducible ``(mu, sigma, alpha)``: a share Gaussian (alpha 0), the rest skew-normal."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(*mu_range, n)
    sigma = np.exp(rng.uniform(np.log(sigma_range[0]), np.log(sigma_range[1]), n))
    alpha = np.where(rng.random(n) < gaussian_share, 0.0, rng.uniform(*alpha_range, n))
    return np.stack([mu, sigma, alpha], axis=1)


@dataclass(frozen=True)
class DistortionSeries:
    """One site's series on common energies: ``mu``/``mu0`` of shape ``(n_d, n_e)``."""

    site_id: str
    material_id: str
    element: str
    lce_class: str | None
    preset: str
    distortions: np.ndarray
    energies: np.ndarray
    mu: np.ndarray
    mu0: np.ndarray


def series_from_docs(docs: Sequence[dict], min_runs: int = 5) -> list[DistortionSeries]:
    """Group successful distortion tasks (dicts with site_id, distortion, energies, mu, mu0) into series.

    Each run is interpolated onto the energies of the run nearest ``d = 0``. Series with fewer than ``min_runs`` runs are left out.
    """
    by: dict[tuple[str, str], list[dict]] = {}
    for d in docs:
        if d.get("distortion") is None or not d.get("energies"):
            continue
        by.setdefault((d["site_id"], d.get("preset", "")), []).append(d)
    out = []
    for (sid, preset), runs in sorted(by.items()):
        if len(runs) < min_runs:
            continue
        runs = sorted(runs, key=lambda r: r["distortion"])
        ref = min(runs, key=lambda r: abs(r["distortion"]))
        # the reference run's energies; a run that starts or ends within them is held at its end
        # value there (FEFF's grids follow each run's own Fermi level, a few eV apart at most)
        e = np.asarray(ref["energies"], dtype=float)
        mu = np.stack([np.interp(e, r["energies"], r["mu"]) for r in runs])
        mu0 = np.stack([np.interp(e, r["energies"], r["mu0"] or r["mu"]) for r in runs])
        out.append(DistortionSeries(sid, runs[0].get("material_id", sid.split(":")[0]), runs[0].get("element", ""),
                                    runs[0].get("lce_class"), preset, np.array([r["distortion"] for r in runs]), e,
                                    mu, mu0))  # fmt: skip
    return out


def load_series(db: Any, criteria: dict | None = None, min_runs: int = 5) -> list[DistortionSeries]:
    """The stored distortion series (successful tasks with a ``distortion``) matching ``criteria``."""
    crit = {**(criteria or {}), "distortion": {"$ne": None}, "state": "successful"}
    docs = list(db["feff_tasks"].find(crit, {"_id": 0, "site_id": 1, "material_id": 1, "element": 1, "preset": 1,
                                             "distortion": 1, "energies": 1, "mu": 1, "mu0": 1}))  # fmt: skip
    classes = {s["site_id"]: s.get("lce_class") for s in db["sites"].find(
        {"site_id": {"$in": sorted({d["site_id"] for d in docs})}}, {"_id": 0, "site_id": 1, "lce_class": 1})}  # fmt: skip
    for d in docs:
        d["lce_class"] = classes.get(d["site_id"])
    return series_from_docs(docs, min_runs)


def disordered_spectra(series: DistortionSeries, weightings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aligned spectra of the weighted averages: ``(X (n, 100), msd (n,), ok (n,) bool)``."""
    X, msd, _, ok = _averages(series, weightings)
    return X, msd, ok


def _averages(series: DistortionSeries, weightings: np.ndarray):
    """:func:`disordered_spectra` with the mean distortion of each weighting: ``(X, msd, mean, ok)``."""
    from xanesdb.xas.align import ALIGNED_GRID, align_computed

    X = np.zeros((len(weightings), len(ALIGNED_GRID)), dtype=np.float32)
    msd = np.zeros(len(weightings))
    mean = np.zeros(len(weightings))
    ok = np.zeros(len(weightings), dtype=bool)
    for i, (mu, sigma, alpha) in enumerate(weightings):
        try:
            w = series_weights(series.distortions, mu, sigma, alpha)
        except XanesdbUserError:
            continue
        msd[i] = msd_of(series.distortions, w)
        mean[i] = mean_of(series.distortions, w)
        try:
            X[i] = align_computed(series.energies, w @ series.mu, w @ series.mu0)["y"]
        except ValueError:
            continue
        ok[i] = True
    return X, msd, mean, ok


@dataclass(frozen=True)
class MsdDataset:
    """Disordered spectra (aligned) with their MSD, the site (group) and the weighting of each row."""

    X: np.ndarray
    msd: np.ndarray
    groups: np.ndarray
    weightings: np.ndarray  # (n, 3): mu, sigma, alpha
    sites: tuple[str, ...]
    fingerprint: str
    mean: np.ndarray | None = None  # (n,): the mean distortion of each row's weighting (A)
    #: (n,) row of the same site each row is taken against (:func:`relative_dataset`): ``X`` holds the
    #: difference spectra and :meth:`target` the differences of the targets; None: absolute rows
    reference: np.ndarray | None = None

    def target(self, name: str = "msd") -> np.ndarray:
        """The values of one of :data:`TARGETS` per row; ``variance`` is ``msd - mean^2``; for a
        relative dataset, each row's value less its reference row's."""
        if name == "msd":
            v = self.msd
        elif name == "variance":
            if self.mean is None:
                raise XanesdbUserError("this MSD dataset has no mean distortions; rebuild it with make_msd_dataset")
            v = self.msd - self.mean**2
        else:
            raise XanesdbUserError(f"unknown disorder target {name!r}; choose one of {', '.join(TARGETS)}")
        return v if self.reference is None else v - v[self.reference]


def make_msd_dataset(series: Sequence[DistortionSeries], n_weightings: int = 1000, seed: int = 0) -> MsdDataset:
    """``n_weightings`` weightings (from ``seed``) applied to every series; rows that fail alignment dropped."""
    W = sample_weightings(n_weightings, seed)
    xs, ys, gs, ws, ms = [], [], [], [], []
    h = hashlib.sha256(f"{n_weightings}-{seed}".encode())
    for s in series:
        X, m, mean, ok = _averages(s, W)
        xs.append(X[ok])
        ys.append(m[ok])
        gs += [s.site_id] * int(ok.sum())
        ws.append(W[ok])
        ms.append(mean[ok])
        h.update(s.site_id.encode())
        h.update(np.ascontiguousarray(s.mu).tobytes())
    if not xs or not sum(len(x) for x in xs):
        raise XanesdbUserError("no distortion series to average; run `xanesdb disorder series <site>` first")
    return MsdDataset(X=np.concatenate(xs), msd=np.concatenate(ys), groups=np.array(gs), weightings=np.concatenate(ws),
                      sites=tuple(s.site_id for s in series), fingerprint=h.hexdigest()[:16],
                      mean=np.concatenate(ms))  # fmt: skip


def relative_dataset(ds: MsdDataset, seed: int = 0) -> MsdDataset:
    """Each row taken against a random row of the same site (seeded): the difference spectrum as input,
    the difference of the targets as label.

    This is the temperature-series question asked as EXAFS's ratio method asks it: how much more
    disordered is this spectrum than a reference spectrum of the same material (the lowest
    temperature of a measured series)? It needs neither the site's ordered spectrum nor its own
    bond lengths, which a network cannot know for a site it never saw.
    """
    if ds.reference is not None:
        raise XanesdbUserError("this MSD dataset is already relative")
    rng = np.random.default_rng(seed)
    J = np.empty(len(ds.X), dtype=int)
    for g in ds.sites:
        r = np.flatnonzero(ds.groups == g)
        if len(r):
            J[r] = rng.choice(r, len(r))
    h = hashlib.sha256(f"{ds.fingerprint}-relative-{seed}".encode()).hexdigest()[:16]
    return replace(ds, X=(ds.X - ds.X[J]).astype(np.float32), reference=J, fingerprint=h)


# ----------------------------------------------------------------------------- MSD regression
def msd_config(**kw: Any):
    """A :class:`xanesdb.ml.regression.RegressionConfig` for the MSD target (``msd`` is no stored field,
    so the label lookup of its ``check`` is skipped; every other check runs)."""
    from dataclasses import dataclass as _dc

    from xanesdb.ml.regression import RegressionConfig

    @_dc
    class MsdConfig(RegressionConfig):
        def check(self) -> None:
            labels = self.labels
            try:
                self.labels = ("mean_bond_length",)  # a stored numeric field: the other checks run unchanged
                super().check()
            finally:
                self.labels = labels

    return MsdConfig(**{"labels": ("msd",), "protocol": "paper", "n_models": 1, "ensemble": 3, "epochs": 60, **kw})


def regression_dataset(ds: MsdDataset, rows: np.ndarray | None = None, target: str = "msd"):
    """The :class:`xanesdb.ml.regression.RegressionDataset` of (a subset of) an :class:`MsdDataset`,
    labelled by one of :data:`TARGETS`."""
    from xanesdb.ml.regression import RegressionDataset
    from xanesdb.xas.align import ALIGNED_GRID, ALIGNED_GRID_NAME

    r = np.arange(len(ds.X)) if rows is None else np.asarray(rows)
    y = ds.target(target)
    return RegressionDataset(X=ds.X[r], Y=y[r, None], labels=(target,), groups=ds.groups[r],
                             spectrum_ids=tuple(f"{ds.groups[i]}#{i}" for i in r), energies=ALIGNED_GRID.copy(),
                             grid_name=ALIGNED_GRID_NAME, query={"distortion_series": list(ds.sites)},
                             fingerprint=ds.fingerprint)  # fmt: skip


def held_out_sites(ds: MsdDataset, cfg, sites=None, target: str = "msd") -> dict[str, Any]:
    """Leave one site out: train on the others' disordered spectra, predict the held-out site's.

    ``sites``: the sites held out in turn (default every site; the others always train).
    ``target``: one of :data:`TARGETS`.
    Returns per site the MAE of the network ensemble and of the baseline (training mean target), the
    Spearman rho on the site, and the held-out truth/prediction pairs.
    """
    from scipy.stats import spearmanr

    from xanesdb.ml.regression import all_networks, train_regression_on_dataset

    values = ds.target(target)
    out: dict[str, Any] = {"target": target, "sites": {}}
    for s in ds.sites if sites is None else sites:
        te = np.flatnonzero(ds.groups == s)
        tr = np.flatnonzero(ds.groups != s)
        if not len(te) or not len(tr):
            continue
        model, _, _ = train_regression_on_dataset(regression_dataset(ds, tr, target), cfg)
        p = all_networks(model, ds.X[te]).mean(axis=1)[:, 0]
        y = values[te]
        out["sites"][s] = {"mae": float(np.mean(np.abs(p - y))), "mae_baseline": float(np.mean(np.abs(values[tr].mean() - y))),
                           "spearman": float(spearmanr(y, p).statistic), "true": y.tolist(), "pred": p.tolist()}  # fmt: skip
    v = list(out["sites"].values())
    out["mae"] = float(np.mean([x["mae"] for x in v])) if v else float("nan")
    out["mae_baseline"] = float(np.mean([x["mae_baseline"] for x in v])) if v else float("nan")
    return out


# ----------------------------------------------------------------------------- a registered disorder model
def series_on_grid(series: DistortionSeries, step: float) -> DistortionSeries:
    """The runs of a series whose distortion is a multiple of ``step`` (A): the 0.05 A subset of a
    0.01 A series is the 0.05 A series (every run is on the energies of the run at d = 0)."""
    k = np.asarray(series.distortions, dtype=float) / step
    keep = np.abs(k - np.round(k)) < 1e-6
    return replace(series, distortions=series.distortions[keep], mu=series.mu[keep], mu0=series.mu0[keep])


def complete_series(series: Sequence[DistortionSeries], step: float = 0.05, limit: float = 0.45,
                    missing: int = 2) -> list[DistortionSeries]:  # fmt: skip
    """Each series on the ``step`` grid, kept when at most ``missing`` runs of -limit..+limit are absent."""
    n_full = round(2 * limit / step) + 1
    out = [series_on_grid(s, step) for s in series]
    return [s for s in out if len(s.distortions) >= n_full - missing]


def is_disorder_run(doc: Any) -> bool:
    """A regression run trained on disordered spectra (``xanesdb disorder train``)."""
    return doc.task == "regression" and "disorder" in (doc.hyperparameters or {})


def train_disorder_model(series: Sequence[DistortionSeries], *, target: str = "variance", relative: bool = True,
                         family: str = "gbt", n_weightings: int = 1000, seed: int = 0, epochs: int = 60,
                         held_out: Sequence[str] | None = None, on_site: Any = None):  # fmt: skip
    """Train a disorder regressor on the disordered spectra of ``series`` and score it on held-out sites.

    Each site in ``held_out`` (default: every site) is left out in turn and predicted by a model
    trained on the others (:func:`held_out_sites`); the model returned is then trained on every
    site. ``relative``: inputs are differences of two spectra of one site and targets the
    differences of their values (:func:`relative_dataset`), which is how a measured temperature
    series is read (each temperature against the lowest).

    Returns ``(model, doc)``: the network group (or tree ensemble) and its registry document
    (state 'training'; :func:`xanesdb.ml.registry.register_run` stores it), whose
    ``hyperparameters["disorder"]`` records the target, ``relative``, the weightings' seed and
    number, and the sites, and whose ``metrics["held_out_sites"]`` the leave-one-site-out scores.
    """
    import time

    from xanesdb.ml.regression import make_regression_doc, train_regression_on_dataset

    if target not in TARGETS:
        raise XanesdbUserError(f"unknown disorder target {target!r}; choose one of {', '.join(TARGETS)}")
    if len(series) < 2:
        raise XanesdbUserError(f"{len(series)} complete distortion series; a disorder model needs at least 2 sites "
                               "(run `xanesdb disorder series <site>` for more)")  # fmt: skip
    cfg = msd_config(family=family, epochs=epochs, seed=seed, labels=(target,))
    cfg.check()
    t0 = time.perf_counter()
    ds = make_msd_dataset(series, n_weightings, seed=seed)
    if relative:
        ds = relative_dataset(ds, seed=seed)
    t_data = time.perf_counter() - t0
    sites = list(ds.sites if held_out is None else held_out)
    unknown = [s for s in sites if s not in ds.sites]
    if unknown:
        raise XanesdbUserError(f"no complete distortion series of {unknown[0]!r}; choose among {', '.join(ds.sites)}")
    loso = {"sites": {}, "mae": float("nan"), "mae_baseline": float("nan")}
    t0 = time.perf_counter()
    if sites:
        loso = held_out_sites(ds, cfg, sites, target)
        if on_site is not None:
            on_site(loso)
    t_held = time.perf_counter() - t0
    rds = regression_dataset(ds, target=target)
    model, metrics, _ = train_regression_on_dataset(rds, cfg)
    metrics["held_out_sites"] = {"target": target, "mae": loso["mae"], "mae_baseline": loso["mae_baseline"],
                                 "sites": {s: _thinned(r) for s, r in loso["sites"].items()}}  # fmt: skip
    timings = {"dataset_s": t_data, "held_out_s": t_held, **metrics.pop("timings")}
    doc = make_regression_doc(rds, cfg, metrics, timings)
    doc.hyperparameters["disorder"] = {"target": target, "relative": bool(relative), "n_weightings": int(n_weightings),
                                       "weightings_seed": int(seed), "sites": list(ds.sites),
                                       "elements": sorted({s.element for s in series})}  # fmt: skip
    from xanesdb.ml.registry import run_id_of

    doc.run_id = run_id_of(doc.kind, doc.fingerprint, doc.label_field, doc.hyperparameters, seed)
    return model, doc


def _thinned(r: dict[str, Any], n: int = 200) -> dict[str, Any]:
    """A held-out site's scores with at most ``n`` of its truth/prediction pairs (for the parity plot)."""
    k = np.linspace(0, len(r["true"]) - 1, min(n, len(r["true"]))).round().astype(int) if r["true"] else []
    return {**{key: v for key, v in r.items() if key not in ("true", "pred")},
            "true": [round(float(r["true"][i]), 6) for i in k], "pred": [round(float(r["pred"][i]), 6) for i in k]}


def plot_held_out_sites(doc: Any, path: Any) -> Any:
    """Truth against prediction on each held-out site of a disorder run (one colour per site), as a PNG."""
    from pathlib import Path

    from matplotlib.figure import Figure

    h = doc.metrics["held_out_sites"]
    info = doc.hyperparameters["disorder"]
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.add_subplot()
    lo, hi = np.inf, -np.inf
    for sid, r in h["sites"].items():
        ax.scatter(r["true"], r["pred"], s=8, alpha=0.5, label=f"{sid} (MAE {r['mae']:.4f})")
        if r["true"]:
            lo, hi = min(lo, min(r["true"]), min(r["pred"])), max(hi, max(r["true"]), max(r["pred"]))
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    name = ("relative " if info["relative"] else "") + info["target"]
    ax.set_xlabel(f"true {name} (A$^2$)")
    ax.set_ylabel(f"predicted {name} (A$^2$)")
    ax.set_title(f"held-out sites: MAE {h['mae']:.4f} A$^2$ (training mean {h['mae_baseline']:.4f})\n{doc.run_id}",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def predict_disorder(doc: Any, model: Any, spectra: Sequence[Any], reference: Any = None) -> list[dict[str, Any]]:
    """The disorder target of each measured spectrum (``energy``/``mu``/``name``), ``value`` and ``sigma``.

    A relative run needs ``reference`` (the spectrum of lowest disorder, e.g. the lowest temperature of
    the series): each spectrum is read against it (the reference itself reads about 0). A spectrum of
    another absorber than the run's, or that cannot be aligned, becomes a row with ``error``.
    """
    from xanesdb.ml.regression import predict_regression
    from xanesdb.xas.align import align_measured

    info = doc.hyperparameters["disorder"]
    if info["relative"] and reference is None:
        raise XanesdbUserError(f"model {doc.run_id} reads each spectrum against a reference of the same sample; give "
                               "--reference (e.g. the lowest temperature of the series)")  # fmt: skip
    ref = None
    if info["relative"]:
        try:
            ref = align_measured(reference.energy, reference.mu)["y"]
        except ValueError as err:
            raise XanesdbUserError(f"reference {reference.name}: {str(err).splitlines()[0]}") from None
    rows, X, idx = [], [], []
    for s in spectra:
        absorber = getattr(s, "absorber", None)
        row: dict[str, Any] = {"name": s.name, "absorber": absorber, "model": doc.run_id, "target": info["target"],
                               "relative_to": reference.name if info["relative"] else None}  # fmt: skip
        if absorber and info.get("elements") and absorber not in info["elements"]:
            row["error"] = f"{s.name} is a {absorber} spectrum; the model was trained on {', '.join(info['elements'])}"
            rows.append(row)
            continue
        try:
            y = align_measured(s.energy, s.mu)["y"]
        except ValueError as err:
            row["error"] = f"{s.name}: {str(err).splitlines()[0]}"
            rows.append(row)
            continue
        X.append(y if ref is None else y - ref)
        idx.append(len(rows))
        rows.append(row)
    if X:
        out = predict_regression(doc, model, np.stack(X).astype(np.float32))[doc.classes[0]]
        for k, i in enumerate(idx):
            rows[i]["value"], rows[i]["sigma"] = float(out[0][k]), float(out[1][k])
    return rows
