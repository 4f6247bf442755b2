"""The aligned representation of a spectrum: normalised, on energies relative to its half step.

Every spectrum, computed or measured, is

1. normalised Athena-style (:func:`xanesdb.xas.normalize.pre_edge`; computed spectra with a zero
   pre-edge and the post-edge fitted to FEFF's atomic background ``mu0``; a measured spectrum that
   is already normalised is taken as it is, :func:`xanesdb.xas.normalize.normalize_measured`), so
   it has a unit edge step;
2. placed on energies relative to its half-step point
   (:func:`xanesdb.xas.normalize.half_step_energy`), which neither pre-edge peaks nor noise
   move by more than a fraction of an eV;
3. interpolated onto :data:`ALIGNED_GRID`, 100 points 0.5 eV apart from 5 eV below that point.

Used by ``spectra build`` (stored as ``mu_aligned`` on each spectrum), by training
(``--representation aligned``) and by ``xanesdb predict``, so all three see the same numbers.
"""

from __future__ import annotations

import numpy as np

from xanesdb.xas.normalize import half_step_energy, normalize_computed, normalize_measured, refine_level_step

__all__ = ["ALIGNED_GRID", "ALIGNED_GRID_NAME", "MAX_EXTRAPOLATE_BELOW_EV", "MAX_EXTRAPOLATE_EV", "AlignedSpectrum", "align_computed",
           "align_measured", "needed_reach", "reach_above_half_step"]  # fmt: skip

#: energies relative to the half-step point (eV): 100 points, 0.5 eV apart
ALIGNED_GRID = np.round(np.arange(100) * 0.5 - 5.0, 6)
#: the name models record for this representation
ALIGNED_GRID_NAME = "halfstep-rel-v1"
#: a spectrum may miss the grid by this much at its high end (held at its end value)
MAX_EXTRAPOLATE_EV = 3.0
#: and by this much at its low end: down to -1 eV, where the input window of the aligned models that
#: ship begins (``--window=-1,44.5``), so they read nothing held. FEFF's ``fast`` preset starts 1.9-2.0 eV
#: below the half step for about one site in ten (Cu(II) and carbonate sites most), which a 3 eV
#: allowance at this end too left off the grid. The held values below it matter only to search and to models
#: trained without a window; ``extrapolated_ev`` reports them on every prediction.
MAX_EXTRAPOLATE_BELOW_EV = 4.0


class AlignedSpectrum(dict):
    """``{"y", "e_half", "e0", "edge_step", "extrapolated_ev"}`` of one spectrum on the grid."""


def needed_reach(upto: float | None = None) -> float:
    """How far above its half step (eV) a scan must reach for a model that reads up to ``upto``
    (its input window's end; None: the grid's end): that end less :data:`MAX_EXTRAPOLATE_EV`."""
    top = float(ALIGNED_GRID[-1]) if upto is None else min(float(upto), float(ALIGNED_GRID[-1]))
    return top - MAX_EXTRAPOLATE_EV


def _on_grid(e: np.ndarray, norm: np.ndarray, e_half: float, upto: float | None = None) -> tuple[np.ndarray, float]:
    """The curve on the grid and how far the grid reaches past it; ValueError when it misses by more than
    :data:`MAX_EXTRAPOLATE_BELOW_EV` below or :data:`MAX_EXTRAPOLATE_EV` above ``upto`` (eV from the
    half step; default the grid's end: a model whose input window ends earlier reads a shorter scan,
    the grid above its end held at the last value) (a message without the spectrum's name: callers
    say which spectrum)."""
    target = ALIGNED_GRID + e_half
    need = needed_reach(upto)
    miss = max(0.0, e[0] - target[0]) + max(0.0, target[-1] - e[-1])
    if e[0] - target[0] > MAX_EXTRAPOLATE_BELOW_EV or e[-1] - e_half < need:
        raise ValueError(
            f"covers {e[0] - e_half:+.1f}..{e[-1] - e_half:+.1f} eV around its half step, the models need "
            f"{ALIGNED_GRID[0] + MAX_EXTRAPOLATE_BELOW_EV:+.0f}..{need:+.1f} eV"
        )
    return np.interp(target, e, norm).astype(np.float32), float(miss)


def align_computed(energies, mu, mu0=None, *, off_grid_ok: bool = False) -> AlignedSpectrum:
    """A computed (FEFF) spectrum on the aligned grid; with ``off_grid_ok``, one that does not cover
    it comes back with ``y`` None (and its half step and edge step) instead of a ValueError."""
    e = np.asarray(energies, dtype=float)
    n = normalize_computed(e, mu, mu0)
    e_half = half_step_energy(e, n.norm, e0=n.e0)
    try:
        y, miss = _on_grid(e, n.norm, e_half)
    except ValueError:
        if not off_grid_ok:
            raise
        y, miss = None, float("nan")
    return AlignedSpectrum(y=y, e_half=e_half, e0=n.e0, edge_step=n.edge_step, extrapolated_ev=miss)


def align_measured(energies, mu, e0: float | None = None, *, upto: float | None = None,
                   expected=None) -> AlignedSpectrum:
    """A measured spectrum on the aligned grid (Athena-style normalisation first, or none when it is
    already normalised: :func:`xanesdb.xas.normalize.normalize_measured`; ``normalised_as_given``), with its
    pre-edge peak (:func:`xanesdb.xas.preedge.find_preedge_peak`: ``preedge_height``, ``preedge_ev``) and
    largest pre-edge absorption (:func:`xanesdb.xas.preedge.preedge_maximum`: ``preedge_max``) and
    how far a scan that starts on a pre-edge peak falls below its start (:func:`xanesdb.xas.preedge.start_fall`:
    ``start_fall``; 0 for a normalised spectrum taken as given);
    ``upto``: the highest energy above the half step a model reads (its window's end; default the
    grid's end), which the scan must reach to within :data:`MAX_EXTRAPOLATE_EV`; ``expected``: ``(x, y)``,
    the normalised spectrum expected above the half step (a model's mean training spectrum), to which
    the edge step of a XANES-only scan is matched (:func:`xanesdb.xas.normalize.refine_level_step`;
    ``level_step`` says it was)."""
    e = np.asarray(energies, dtype=float)
    from xanesdb.xas.preedge import find_preedge_peak, preedge_maximum, start_fall

    n = normalize_measured(e, mu, e0)
    first = n
    if expected is not None:
        n = refine_level_step(e, n, *expected)  # the same n where it does not apply
    e_half = half_step_energy(e, n.norm, e0=n.e0)
    y, miss = _on_grid(e, n.norm, e_half, upto)
    peak = find_preedge_peak(e, n.norm, e_half)
    return AlignedSpectrum(y=y, e_half=e_half, e0=n.e0, edge_step=n.edge_step, extrapolated_ev=miss,
                           pre_range=n.pre_range, norm_range=n.norm_range, nnorm=n.nnorm,
                           normalised_as_given=n.as_given, other_edges=n.other_edges,
                           level_step=n is not first, preedge_height=peak.height, preedge_ev=peak.energy_rel,
                           preedge_max=preedge_maximum(e, n.norm, e_half),
                           start_fall=0.0 if n.as_given else start_fall(e, n.norm, e_half))  # fmt: skip


def reach_above_half_step(energies, mu) -> float:
    """How far a measured scan reaches above its half step (eV), normalised as :func:`align_measured`
    does; ValueError when it cannot be normalised."""
    e = np.asarray(energies, dtype=float)
    n = normalize_measured(e, mu)
    return float(e[-1] - half_step_energy(e, n.norm, e0=n.e0))
