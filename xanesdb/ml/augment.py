"""Augmentation of training spectra: energy shifts on the grid and Gaussian noise.

Applied to training data only, on spectra scaled to max 1 (before standardisation), as in
Carbone et al. (2019): shifts of +-1 and +-2 eV (5x data) and Gaussian noise of sigma 0.03.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shift_spectra", "add_noise", "augment", "DEFAULT_SHIFTS_EV", "DEFAULT_NOISE_SIGMA"]

DEFAULT_SHIFTS_EV: tuple[float, ...] = (-2.0, -1.0, 1.0, 2.0)
DEFAULT_NOISE_SIGMA = 0.03


def shift_spectra(X: np.ndarray, energies: np.ndarray, shift_ev: float) -> np.ndarray:
    """Spectra shifted by ``shift_ev`` in energy and re-interpolated on the same grid.

    A positive shift moves features to higher energy: the new value at E is the old one at
    E - shift. Points that come from outside the grid take the nearest end value.
    """
    X = np.asarray(X, dtype=np.float32)
    if shift_ev == 0:
        return X.copy()
    src = np.asarray(energies, dtype=np.float64) - shift_ev
    # linear interpolation on the (uniform or not) grid, vectorised over rows
    pos = np.interp(src, energies, np.arange(len(energies)))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(energies) - 1)
    w = (pos - lo).astype(np.float32)
    return X[:, lo] * (1 - w) + X[:, hi] * w


def add_noise(X: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Spectra with independent Gaussian noise of standard deviation ``sigma`` per point."""
    X = np.asarray(X, dtype=np.float32)
    if sigma <= 0:
        return X.copy()
    return X + rng.normal(0.0, sigma, size=X.shape).astype(np.float32)


def augment(
    X: np.ndarray,
    y: np.ndarray,
    energies: np.ndarray,
    kinds: tuple[str, ...] = ("shift",),
    *,
    shifts_ev: tuple[float, ...] = DEFAULT_SHIFTS_EV,
    noise_sigma: float = DEFAULT_NOISE_SIGMA,
    n_noise: int = 4,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The training set with augmented copies appended.

    Parameters
    ----------
    X, y
        Training spectra (max-scaled) and their targets.
    energies
        Grid energies (eV) of the columns of ``X``.
    kinds
        Any of ``"shift"`` (one copy per shift in ``shifts_ev``) and ``"noise"`` (``n_noise``
        noisy copies of each original); the paper's 5x variants are ``("shift",)`` and
        ``("noise",)``.
    rng
        Random generator for the noise.

    Returns
    -------
    X_aug, y_aug
        Originals first, then the copies.
    """
    unknown = set(kinds) - {"shift", "noise"}
    if unknown:
        raise ValueError(f"unknown augmentation {sorted(unknown)}; use shift and/or noise")
    rng = rng or np.random.default_rng(0)
    xs, ys = [np.asarray(X, dtype=np.float32)], [y]
    if "shift" in kinds:
        for s in shifts_ev:
            xs.append(shift_spectra(X, energies, s))
            ys.append(y)
    if "noise" in kinds:
        for _ in range(n_noise):
            xs.append(add_noise(X, noise_sigma, rng))
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
