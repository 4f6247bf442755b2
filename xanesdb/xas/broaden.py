"""Broadening of spectra on a uniform energy grid: Gaussian times energy-dependent Lorentzian."""

from __future__ import annotations

import numpy as np

__all__ = ["broaden"]


def broaden(X: np.ndarray, energies: np.ndarray, gauss_ev, lorentz_ev=0.0, lorentz_slope=0.0, e_ref: float = 0.0) -> np.ndarray:
    """Each row convolved with a Voigt-like kernel: Gaussian ``gauss_ev`` (standard deviation)
    times Lorentzian of half width ``lorentz_ev + lorentz_slope * max(E - e_ref, 0)``.

    ``energies`` must be uniform. Per-row widths may be given as arrays; the ends are padded with
    the end values. Built as an explicit (rows, points, points) kernel, exact for an
    energy-dependent width; fine for 100-point grids.
    """
    X = np.asarray(X, dtype=np.float64)
    e = np.asarray(energies, dtype=np.float64)
    n, m = X.shape
    g = np.broadcast_to(np.asarray(gauss_ev, dtype=float), (n,))
    lw = np.broadcast_to(np.asarray(lorentz_ev, dtype=float), (n,))
    ls = np.broadcast_to(np.asarray(lorentz_slope, dtype=float), (n,))
    step = float(e[1] - e[0])
    pad = int(np.ceil(12.0 / step))
    ext = np.concatenate([e[0] - step * np.arange(pad, 0, -1), e, e[-1] + step * np.arange(1, pad + 1)])
    Xp = np.concatenate([np.repeat(X[:, :1], pad, 1), X, np.repeat(X[:, -1:], pad, 1)], axis=1)
    d = e[:, None] - ext[None, :]  # (m, m + 2 pad)
    gam = lw[:, None] + ls[:, None] * np.maximum(e[None, :] - e_ref, 0.0)  # (n, m)
    sig = np.maximum(g, 1e-6)[:, None, None]
    K = np.exp(-0.5 * (d[None] / sig) ** 2)
    has_l = gam > 1e-6
    if np.any(has_l):
        K = K * np.where(has_l[:, :, None], 1.0 / (1.0 + (d[None] / np.maximum(gam, 1e-6)[:, :, None]) ** 2), 1.0)
    K /= K.sum(axis=2, keepdims=True)
    return np.einsum("nij,nj->ni", K, Xp).astype(np.float32)
