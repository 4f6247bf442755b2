"""How far to trust a prediction: calibrated probabilities and an out-of-distribution test.

- :func:`fit_temperature`: temperature scaling (Guo et al. 2017) of the networks' mean class
  probabilities, fitted by minimising the negative log-likelihood on held-out spectra;
  :func:`apply_temperature` applies it. :func:`fit_temperature_bias` adds one bias per class
  (bias-corrected temperature scaling, Alexandari, Kundaje, Shrikumar, ICML 2020): networks
  trained with balanced class weights act as if every class were equally common, while the
  held-out spectra have the classes' real frequencies (most oxide sites are octahedral); the biases
  put that prior back, so a spectrum the networks find half O6, half S5 is read with the odds
  the database's materials give.
- :func:`expected_calibration_error` and :func:`reliability_table`: how well the probabilities
  mean what they say (equal-width confidence bins).
- :class:`OutlierTest`: a spectrum unlike every training spectrum gets no class. Fitted on the
  (measurement-augmented) training spectra: principal components keeping 99 % of the variance,
  the score is the larger of two ratios, the Mahalanobis distance in that space and the
  residual outside it, each divided by its own threshold (a quantile of the same numbers on
  held-out spectra). A score above 1 means the spectrum lies farther from the training data than
  ``quantile`` of held-out computed spectra do.
- :class:`ReferenceVote`: the second opinion a spectroscopist would ask for, the classes of the
  ``k`` computed reference compounds closest to the spectrum (one vote per material, its nearest
  site spectrum; root-mean-square difference on the
  model's window, references on the same footing as the training spectra: fidelity-corrected and
  calibrated to measured). Its class shares are averaged with the networks' calibrated
  probabilities (an ensemble of two unlike models): the networks learn the features that tell
  the classes apart on computed spectra, the vote asks which known compounds the measurement
  resembles as a whole. Where, on a run's held-out measured-like copies, the average is right
  less often than the networks alone (classes with few materials cannot win a vote of 7), the run
  keeps the vote for its answers' "nearest references" but gives it no weight.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

__all__ = ["OutlierTest", "ReferenceVote", "apply_temperature", "combine_with_references", "expected_calibration_error",
           "fit_temperature", "fit_temperature_bias", "reliability_table"]


def apply_temperature(P: np.ndarray, T: float, bias=None) -> np.ndarray:
    """Probabilities ``P`` (rows sum to 1) sharpened (T < 1) or softened (T > 1), plus per-class ``bias``
    (log-odds added after the temperature; None: none)."""
    logp = np.log(np.clip(np.asarray(P, dtype=np.float64), 1e-12, 1.0)) / float(T)
    if bias is not None:
        logp = logp + np.asarray(bias, dtype=np.float64)[None, :]
    logp -= logp.max(axis=1, keepdims=True)
    Q = np.exp(logp)
    return Q / Q.sum(axis=1, keepdims=True)


def fit_temperature(P: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the negative log-likelihood of classes ``y`` under ``P``."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=int)

    def nll(log_t: float) -> float:
        Q = apply_temperature(P, np.exp(log_t))
        return -float(np.mean(np.log(np.clip(Q[np.arange(len(y)), y], 1e-12, 1.0))))

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(res.x))


def fit_temperature_bias(P: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> tuple[float, list[float]]:
    """Temperature and per-class biases (the first class's fixed at 0) minimising the negative
    log-likelihood of classes ``y`` under ``P`` (bias-corrected temperature scaling)."""
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=int)
    P = np.asarray(P, dtype=np.float64)
    k = P.shape[1]
    T0 = fit_temperature(P, y, bounds)
    log_bounds = (np.log(bounds[0]), np.log(bounds[1]))

    def nll(theta: np.ndarray) -> float:
        T = float(np.exp(np.clip(theta[0], *log_bounds)))  # clipped in log space: no overflow
        Q = apply_temperature(P, T, np.concatenate([[0.0], theta[1:]]))
        return -float(np.mean(np.log(np.clip(Q[np.arange(len(y)), y], 1e-12, 1.0))))

    res = minimize(nll, np.concatenate([[np.log(T0)], np.zeros(k - 1)]), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 2000})
    T = float(np.exp(np.clip(res.x[0], *log_bounds)))
    return T, [0.0, *(float(b) for b in res.x[1:])]


def reliability_table(P: np.ndarray, y: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Per confidence bin: count, mean confidence and accuracy of the most probable class."""
    conf = P.max(axis=1)
    correct = P.argmax(axis=1) == np.asarray(y)
    edges = np.linspace(0, 1, n_bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if sel.any():
            rows.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()),
                         "confidence": float(conf[sel].mean()), "accuracy": float(correct[sel].mean())})  # fmt: skip
    return rows


def expected_calibration_error(P: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of spectra."""
    rows = reliability_table(P, y, n_bins)
    n = sum(r["n"] for r in rows)
    return float(sum(r["n"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / max(n, 1))


@dataclass
class OutlierTest:
    """Principal-component distance of a spectrum from the training spectra.

    Attributes
    ----------
    mean, components, variances
        The fitted PCA (components as rows).
    d_threshold, r_threshold
        Mahalanobis distance and residual norm at ``quantile`` of the held-out spectra.
    quantile
        The quantile used.
    null_residuals
        How many real measured-vs-computed residual curves the held-out copies carried (0: none).
    """

    mean: list[float]
    components: list[list[float]]
    variances: list[float]
    d_threshold: float = 1.0
    r_threshold: float = 1.0
    quantile: float = 0.99
    null_residuals: int = 0

    @classmethod
    def fit(cls, X_train: np.ndarray, X_held_out: np.ndarray, variance: float = 0.99, quantile: float = 0.99) -> OutlierTest:
        """Fit the components on ``X_train`` and the thresholds on ``X_held_out``."""
        X = np.asarray(X_train, dtype=np.float64)
        mean = X.mean(axis=0)
        U, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
        var = S**2 / max(len(X) - 1, 1)
        k = int(np.searchsorted(np.cumsum(var) / var.sum(), variance) + 1)
        test = cls(mean=mean.tolist(), components=Vt[:k].tolist(), variances=var[:k].tolist(), quantile=quantile)
        d, r = test._parts(X_held_out)
        test.d_threshold = float(np.quantile(d, quantile))
        test.r_threshold = float(max(np.quantile(r, quantile), 1e-6))
        return test

    def _parts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Z = np.atleast_2d(np.asarray(X, dtype=np.float64)) - np.asarray(self.mean)
        C = np.asarray(self.components)
        scores = Z @ C.T
        d = np.sqrt(np.sum(scores**2 / np.asarray(self.variances), axis=1))
        r = np.linalg.norm(Z - scores @ C, axis=1)
        return d, r

    def score(self, X: np.ndarray) -> np.ndarray:
        """max(distance / its threshold, residual / its threshold) per row; > 1 is an outlier."""
        d, r = self._parts(X)
        return np.maximum(d / self.d_threshold, r / self.r_threshold)

    def _null(self) -> str:
        if self.null_residuals:
            return "held-out computed spectra made measured-like with reference compounds' residuals"
        return "held-out computed spectra"

    def explain(self, x: np.ndarray) -> str:
        """Why one spectrum is an outlier, in words."""
        d, r = self._parts(x)
        if d[0] / self.d_threshold >= r[0] / self.r_threshold:
            return (f"unlike the training spectra: principal-component distance {d[0]:.1f} > {self.d_threshold:.1f} "
                    f"({self.quantile:.0%} of {self._null()} are closer)")  # fmt: skip
        return (f"unlike the training spectra: shape outside their components (residual {r[0]:.2f} > "
                f"{self.r_threshold:.2f}, {self.quantile:.0%} of {self._null()})")  # fmt: skip

    def as_dict(self) -> dict:
        return asdict(self)


#: neighbours of :class:`ReferenceVote`
REFERENCE_K = 7
#: the vote's share in its average with the networks (equal weights: nothing is fitted to it)
VOTE_WEIGHT = 0.5
#: training keeps the vote out of the average (weight 0) when, on the held-out measured-like copies,
#: the average is right for fewer of them than the networks alone by more than this
VOTE_TOLERANCE = 0.02


@dataclass
class ReferenceVote:
    """The classes of the ``k`` nearest reference spectra (root-mean-square difference).

    Attributes
    ----------
    X
        Reference spectra (rows, on the model's input columns; rounded to 1e-3).
    labels
        Class index of each reference.
    n_classes
        Number of classes of the model.
    k
        Neighbours that vote.
    names
        The material of each reference (one vote per material; the answer's "nearest references").
    weight
        The vote's share when it is averaged with the networks (:func:`combine_with_references`);
        0: the vote is reported but does not change the probabilities.
    """

    X: list[list[float]]
    labels: list[int]
    n_classes: int
    k: int = REFERENCE_K
    names: list[str] | None = None
    weight: float = VOTE_WEIGHT

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, n_classes: int, k: int = REFERENCE_K, names=None) -> ReferenceVote:
        """References ``X`` with classes ``y``."""
        X = np.round(np.asarray(X, dtype=np.float64), 3)
        return cls(X=X.tolist(), labels=[int(v) for v in y], n_classes=int(n_classes), k=int(k),
                   names=None if names is None else [str(n) for n in names])  # fmt: skip

    @cached_property
    def _R(self) -> np.ndarray:
        """The references as an array (converted once; ``X`` stays a list for the card)."""
        return np.asarray(self.X, dtype=np.float32)

    def _distances(self, X: np.ndarray) -> np.ndarray:
        R = self._R
        Q = np.atleast_2d(np.asarray(X, dtype=np.float32))
        d2 = (Q**2).sum(axis=1)[:, None] + (R**2).sum(axis=1)[None, :] - 2.0 * Q @ R.T
        return np.sqrt(np.clip(d2, 0.0, None) / R.shape[1])

    def nearest(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances) of the ``k`` nearest references per row, nearest first; with
        ``names``, one reference per material (its nearest spectrum), so that a compound whose
        sites or presets the references hold several times votes once."""
        d = self._distances(X)
        order = np.argsort(d, axis=1, kind="stable")
        if self.names is None:
            idx = order[:, : min(self.k, d.shape[1])]
        else:
            _, material = np.unique(np.asarray(self.names), return_inverse=True)
            k = min(self.k, int(material.max()) + 1)
            idx = np.empty((len(d), k), dtype=int)
            for i, row in enumerate(order):
                _, first = np.unique(material[row], return_index=True)  # each material's nearest spectrum
                idx[i] = row[np.sort(first)[:k]]
        return idx, np.take_along_axis(d, idx, axis=1)

    def shares(self, X: np.ndarray) -> np.ndarray:
        """(n, n_classes): each class's share of the ``k`` nearest references."""
        idx, _ = self.nearest(X)
        lab = np.asarray(self.labels)[idx]
        return np.stack([(lab == c).mean(axis=1) for c in range(self.n_classes)], axis=1)

    def as_dict(self) -> dict:
        return asdict(self)


def combine_with_references(P: np.ndarray, shares: np.ndarray, weight: float = VOTE_WEIGHT) -> np.ndarray:
    """The ensemble's probabilities: the networks' calibrated ``P`` and the references' class
    ``shares`` averaged with ``weight`` on the vote (by default equal weights, nothing tuned on the
    measured set)."""
    w = float(weight)
    return (1.0 - w) * np.asarray(P, dtype=np.float64) + w * np.asarray(shares, dtype=np.float64)
