"""Splits and scores: the paper's protocol, a grouped (by material) protocol, robustness curves.

- ``paper``: stratified 90/10 splits (one per network), each test set bootstrapped 10 times;
  mean +- std of per-class and macro F1 over networks x bootstraps.
- ``grouped``: StratifiedGroupKFold on ``material_id`` (10 folds, one per network), so no
  material is in both a network's training and test set; scored the same way.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from xanesdb.ml.augment import add_noise, shift_spectra

logger = logging.getLogger(__name__)

__all__ = [
    "make_splits",
    "f1_per_class",
    "nan_mean_std",
    "score_predictions",
    "robustness_curve",
    "DEFAULT_TEST_SHIFTS_EV",
    "DEFAULT_TEST_SIGMAS",
]

DEFAULT_TEST_SHIFTS_EV = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
DEFAULT_TEST_SIGMAS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)

Split = tuple[np.ndarray, np.ndarray]


def make_splits(
    y: np.ndarray,
    groups: np.ndarray,
    protocol: str = "paper",
    n_splits: int = 10,
    test_size: float = 0.1,
    seed: int = 0,
) -> list[Split]:
    """``n_splits`` (train, test) index pairs for the given protocol."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

    if protocol == "paper":
        sss = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
        return [(tr, te) for tr, te in sss.split(np.zeros(len(y)), y)]
    if protocol == "grouped":
        n_folds = max(2, int(round(1 / test_size)))
        splits: list[Split] = []
        rep = 0
        while len(splits) < n_splits:
            sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed + rep)
            splits.extend(sgkf.split(np.zeros(len(y)), y, groups))
            rep += 1
        return splits[:n_splits]
    raise ValueError(f"unknown protocol {protocol!r}; use paper or grouped")


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """One-vs-all F1 of each class, then their mean (macro) as the last entry.

    A class that is neither in ``y_true`` nor in ``y_pred`` has no F1 (NaN) and is left out of the
    macro mean, as scikit-learn's own ``average="macro"`` does with the labels it sees. Scoring it
    0 instead would punish a model for a class the test set does not hold: on a 3-spectrum test
    set (10 % of 30) most bootstrap resamples miss a class, and a perfect classifier would score
    a macro F1 of 0.70 (one spectrum per class, 3-spectrum bootstrap resamples).

    >>> f1_per_class(np.array([0, 0, 2]), np.array([0, 0, 2]), 3).tolist()
    [1.0, nan, 1.0, 1.0]
    >>> f1_per_class(np.array([0, 0, 2]), np.array([0, 1, 2]), 3).round(3).tolist()
    [0.667, 0.0, 1.0, 0.556]
    """
    from sklearn.metrics import f1_score

    labels = list(range(n_classes))
    per = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0).astype(float)
    present = np.isin(labels, np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    per[~present] = np.nan
    return np.append(per, np.nanmean(per) if present.any() else np.nan)


def nan_mean_std(rows: np.ndarray, classes: tuple[str, ...] | list[str]) -> dict[str, list[float]]:
    """{class: [mean, std], "macro": [mean, std]} of :func:`f1_per_class` rows, unscored entries left out."""
    out = {}
    for i, c in enumerate([*classes, "macro"]):
        col = rows[:, i][~np.isnan(rows[:, i])]
        out[c] = [float(col.mean()), float(col.std())] if len(col) else [float("nan"), float("nan")]
    return out


def score_predictions(
    y_true: list[np.ndarray],
    y_pred: list[np.ndarray],
    classes: tuple[str, ...],
    n_bootstrap: int = 10,
    seed: int = 0,
) -> dict:
    """Mean +- std of per-class and macro F1 over networks x bootstrapped test sets.

    Parameters
    ----------
    y_true, y_pred
        One array per network (its own test set).
    classes
        Class names in output order.
    n_bootstrap
        Bootstrap resamples of each test set (0: score each test set once).

    Returns
    -------
    dict
        ``f1`` {class: [mean, std], "macro": [mean, std]} (a class's mean over the test sets that
        hold it or predict it; see :func:`f1_per_class`), ``f1_per_model`` (macro F1 of each
        network on its full test set), ``confusion`` (summed over networks; rows true, columns
        predicted).
    """
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(seed)
    n = len(classes)
    rows, per_model = [], []
    confusion = np.zeros((n, n), dtype=int)
    for yt, yp in zip(y_true, y_pred):
        per_model.append(float(f1_per_class(yt, yp, n)[-1]))
        confusion += confusion_matrix(yt, yp, labels=list(range(n)))
        if n_bootstrap <= 0:
            rows.append(f1_per_class(yt, yp, n))
        for _ in range(n_bootstrap):
            idx = rng.integers(0, len(yt), len(yt))
            rows.append(f1_per_class(yt[idx], yp[idx], n))
    f1 = nan_mean_std(np.array(rows), classes)
    return {"f1": f1, "f1_per_model": per_model, "confusion": confusion.tolist()}


def robustness_curve(
    predict: Callable[[list[np.ndarray]], list[np.ndarray]],
    X_tests: list[np.ndarray],
    y_tests: list[np.ndarray],
    energies: np.ndarray,
    n_classes: int,
    *,
    shifts_ev: tuple[float, ...] | None = None,
    sigmas: tuple[float, ...] | None = None,
    seed: int = 0,
) -> dict:
    """Macro F1 (mean, std over networks) of the test sets shifted in energy or made noisy.

    ``predict`` maps one full-grid test array per network to predicted class indices per network.
    Give either ``shifts_ev`` or ``sigmas``.
    """
    rng = np.random.default_rng(seed)
    values = shifts_ev if shifts_ev is not None else sigmas
    out = {"x": [float(v) for v in values], "mean": [], "std": []}
    for v in values:
        if shifts_ev is not None:
            Xs = [shift_spectra(X, energies, v) for X in X_tests]
        else:
            Xs = [add_noise(X, v, rng) for X in X_tests]
        preds = predict(Xs)
        f1 = [f1_per_class(yt, yp, n_classes)[-1] for yt, yp in zip(y_tests, preds)]
        out["mean"].append(float(np.nanmean(f1)))
        out["std"].append(float(np.nanstd(f1)))
    return out
