"""A fidelity correction from ``fast`` FEFF spectra (no SCF) to ``scf`` ones, fitted on twin sites.

Without a self-consistent potential FEFF places the Fermi level too high: it cuts the rising
edge there, and in the aligned representation (energies from the half step) the white line and
every later feature sit 2-3 eV too close to the edge and too sharp. On sites computed with both
presets the correction is a warp of the first eV above the half step plus a Gaussian broadening:

    y_corrected(E) = broaden(y_fast(g(E)), sigma),  g(E) = E                    for E <= 0
                                                    g(E) = E - delta (E/e1)^2   for 0 < E < e1
                                                    g(E) = E - delta            for E >= e1

so the half step stays at 0, the onset is stretched over ``e1`` eV, and everything above it moves
up by ``delta``. :func:`fit_fidelity` picks ``(delta, e1, sigma)`` by least squares over the twins
(the part of the grid at and above the half step); it is fitted on computed spectra only, never
on measured ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from xanesdb.xas.broaden import broaden

__all__ = ["FidelityWarp", "fit_fidelity"]

#: the parameter grid :func:`fit_fidelity` searches
DELTAS = tuple(np.round(np.arange(0.0, 6.01, 0.25), 2))
E1S = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)


@dataclass
class FidelityWarp:
    """The fitted correction and how well it did.

    Attributes
    ----------
    delta, e1, sigma
        Shift (eV) of the features above the onset, width (eV) of the stretched onset, Gaussian
        broadening (eV, standard deviation).
    n_pairs
        Twin sites it was fitted on.
    rmse_before, rmse_after
        Mean over twins of the root-mean-square difference to the ``scf`` spectrum (edge-step
        units, grid points at and above the half step), without and with the correction.
    """

    delta: float
    e1: float
    sigma: float
    n_pairs: int = 0
    rmse_before: float | None = None
    rmse_after: float | None = None
    pairs: list[str] = field(default_factory=list)

    def apply(self, Y: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """The corrected rows of ``Y`` (spectra on the aligned ``grid``, half step at 0 eV)."""
        return _correct(np.atleast_2d(Y), np.asarray(grid, dtype=float), self.delta, self.e1, self.sigma)

    def as_dict(self) -> dict:
        return asdict(self)


def _warp(Y: np.ndarray, grid: np.ndarray, delta: float, e1: float) -> np.ndarray:
    E = grid
    g = np.where(E <= 0, E, np.where(E < e1, E - delta * (np.clip(E, 0, None) / e1) ** 2, E - delta))
    return np.stack([np.interp(g, grid, y) for y in Y])


def _correct(Y, grid, delta, e1, sigma):
    W = _warp(np.asarray(Y, dtype=np.float64), grid, delta, e1)
    return broaden(W, grid, sigma) if sigma > 0 else W.astype(np.float32)


def fit_fidelity(Y_fast: np.ndarray, Y_scf: np.ndarray, grid: np.ndarray, names=()) -> FidelityWarp:
    """The ``(delta, e1, sigma)`` that bring the ``fast`` twins closest to their ``scf`` spectra.

    Parameters
    ----------
    Y_fast, Y_scf
        (n_pairs, n_points) aligned spectra of the same sites under the two presets.
    grid
        Their energies relative to the half step.
    names
        Site ids of the pairs (recorded).
    """
    F = np.asarray(Y_fast, dtype=np.float64)
    S = np.asarray(Y_scf, dtype=np.float64)
    if F.shape != S.shape or len(F) == 0:
        raise ValueError(f"need matching, non-empty twin arrays, got {F.shape} and {S.shape}")
    grid = np.asarray(grid, dtype=float)
    above = grid >= 0

    def rmse(C):
        return float(np.mean(np.sqrt(np.mean((C[:, above] - S[:, above]) ** 2, axis=1))))

    best = None
    for delta in DELTAS:
        for e1 in E1S:
            W = _warp(F, grid, delta, e1)
            for sigma in SIGMAS:
                C = broaden(W, grid, sigma) if sigma > 0 else W
                r = rmse(C)
                if best is None or r < best[0]:
                    best = (r, delta, e1, sigma)
    r, delta, e1, sigma = best
    return FidelityWarp(delta=float(delta), e1=float(e1), sigma=float(sigma), n_pairs=len(F),
                        rmse_before=rmse(F), rmse_after=r, pairs=[str(n) for n in names])  # fmt: skip
