"""Absorber-specific energy grids and the standardisation of one spectrum onto a grid.

A grid has 100 points 0.5 eV apart (49.5 eV) starting just below the absorption onset. It is
chosen per absorber, edge and source from the data (FEFF10 and FEFF9 energy scales differ by
several eV, so each source gets its own grid), then stored under a versioned name such as
``Cu-K-omnixas-v1`` and reused, so that spectra built later land on the same energies.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xanesdb.schemas.base import utcnow

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "GRID_POINTS",
    "GRID_STEP",
    "PRE_EDGE_EV",
    "EnergyGrid",
    "choose_grid",
    "edge_energy",
    "grid_name",
    "interpolate",
    "standardise",
]

#: number of grid points (the paper's 100)
GRID_POINTS = 100
#: grid spacing in eV (the paper's ~0.5 eV)
GRID_STEP = 0.5
#: the grid starts this far below the median edge energy, unless the data start later
PRE_EDGE_EV = 10.0
#: a spectrum may start at most this far above the grid's first energy (held flat below)
EXTRAPOLATE_EV = 1.0


def grid_name(element: str, edge: str, source: str, version: int) -> str:
    """Versioned grid name, e.g. ``'Cu-K-omnixas-v1'``."""
    return f"{element}-{edge}-{source}-v{version}"


class EnergyGrid(BaseModel):
    """An absorber's energy grid, stored in the ``spectrum_grids`` collection."""

    grid_name: str = Field(..., description="'<element>-<edge>-<source>-v<version>'.")
    element: str = Field(..., description="Absorbing element.")
    edge: str = Field("K", description="Absorption edge.")
    source: str = Field(..., description="Source (code) whose energy scale the grid follows.")
    version: int = Field(1, description="Version; a regridding makes the next one.")
    start: float = Field(..., description="First energy (eV).")
    step: float = Field(GRID_STEP, description="Spacing (eV).")
    n_points: int = Field(GRID_POINTS, description="Number of points.")
    method: str = Field(..., description="How the start was chosen from the data.")
    n_spectra: int = Field(..., description="Spectra the choice was made from.")
    e0_median: float | None = Field(None, description="Median edge energy of those spectra (eV).")
    created: datetime = Field(default_factory=utcnow, description="When the grid was chosen.")

    model_config = ConfigDict(extra="forbid")

    @property
    def energies(self) -> np.ndarray:
        """The grid energies (eV)."""
        return np.round(self.start + self.step * np.arange(self.n_points), 6)


def edge_energy(energies: Sequence[float], mu: Sequence[float]) -> float:
    """Edge energy e0 of the paper representation: the maximum of dmu/dE on a 0.05 eV cubic spline.

    It places the absolute grids (their start is the median e0 minus 10 eV) and is kept as it was
    so that grids and the README's tables rebuild identically; everything that reads measured
    spectra (the aligned representation, prediction, FEFF validation) uses
    :func:`xanesdb.xas.normalize.find_e0`, which ignores single noisy derivative points. On
    OmniXAS Cu spectra the two differ by up to ~8 eV where a shoulder precedes the main rise.

    Parameters
    ----------
    energies, mu
        The raw spectrum (strictly increasing energies).
    """
    from scipy.interpolate import make_interp_spline

    e = np.asarray(energies, dtype=float)
    spline = make_interp_spline(e, np.asarray(mu, dtype=float), k=3)
    fine = np.arange(e[0], e[-1], 0.05)
    return float(fine[np.argmax(spline.derivative()(fine))])


def choose_grid(
    element: str,
    edge: str,
    source: str,
    spectra: Sequence[tuple[Sequence[float], Sequence[float]]],
    version: int = 1,
) -> EnergyGrid:
    """Choose an absorber's grid from its raw spectra.

    The grid starts ``PRE_EDGE_EV`` below the median edge energy, or at the 99th percentile of
    the spectra's first energies when that is later (so that almost every spectrum covers the
    grid without extrapolation), rounded up to 0.1 eV.

    Parameters
    ----------
    element, edge, source
        What the grid is for.
    spectra
        ``(energies, mu)`` pairs of raw spectra.
    version
        Version number of the grid name.
    """
    e0s, firsts = [], []
    for e, m in spectra:
        try:
            e0s.append(edge_energy(e, m))
        except ValueError:  # unusable spectrum: it will fail standardisation too
            continue
        firsts.append(float(e[0]))
    if not e0s:
        raise ValueError(f"no usable spectra to choose a {element} {edge} grid for source {source!r} from")
    e0_median = float(np.median(e0s))
    start = max(e0_median - PRE_EDGE_EV, float(np.percentile(firsts, 99)))
    start = float(np.ceil(start * 10 - 1e-9) / 10)
    return EnergyGrid(
        grid_name=grid_name(element, edge, source, version),
        element=element,
        edge=edge,
        source=source,
        version=version,
        start=start,
        method=f"max(median e0 - {PRE_EDGE_EV:g} eV, 99th percentile of first energies)",
        n_spectra=len(e0s),
        e0_median=e0_median,
    )


def interpolate(energies: Sequence[float], mu: Sequence[float], grid: EnergyGrid) -> np.ndarray:
    """A raw spectrum on ``grid`` by cubic spline, unscaled.

    Raises
    ------
    ValueError
        When the spectrum does not cover the grid (beyond ``EXTRAPOLATE_EV`` at the start),
        or its energies are not increasing.
    """
    from scipy.interpolate import make_interp_spline

    e = np.asarray(energies, dtype=float)
    m = np.asarray(mu, dtype=float)
    if e.ndim != 1 or e.shape != m.shape or len(e) < 4:
        raise ValueError(f"need matching 1-d energies and mu with >= 4 points, got {e.shape}, {m.shape}")
    if not np.all(np.diff(e) > 0):
        raise ValueError("energies are not strictly increasing")
    if not np.all(np.isfinite(m)):
        raise ValueError("mu has NaN or infinite values")
    g = grid.energies
    if e[0] > g[0] + EXTRAPOLATE_EV:
        raise ValueError(f"spectrum starts at {e[0]:.2f} eV, above the grid start {g[0]:.2f} eV")
    if e[-1] < g[-1]:
        raise ValueError(f"spectrum ends at {e[-1]:.2f} eV, below the grid end {g[-1]:.2f} eV")
    spline = make_interp_spline(e, m, k=3)
    # below the first energy (at most EXTRAPOLATE_EV) the first value is held
    return np.where(g < e[0], m[0], spline(np.clip(g, e[0], e[-1])))


def standardise(
    energies: Sequence[float], mu: Sequence[float], grid: EnergyGrid
) -> tuple[np.ndarray, float]:
    """Interpolate a raw spectrum onto ``grid`` (cubic spline) and scale it to max 1.

    Returns
    -------
    tuple
        ``(mu_on_grid, e0)`` with ``e0`` the edge energy of the raw spectrum (eV).

    Raises
    ------
    ValueError
        When the spectrum does not cover the grid (beyond ``EXTRAPOLATE_EV`` at the start),
        its energies are not increasing, or it has no positive maximum on the grid.
    """
    y = interpolate(energies, mu, grid)
    top = float(y.max())
    if not top > 0:
        raise ValueError("no positive absorption on the grid")
    return y / top, edge_energy(energies, mu)
