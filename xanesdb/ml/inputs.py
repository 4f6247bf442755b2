"""A measured spectrum as a model reads it: onto the model's grid or aligned, with what was done to it.

Shared by :mod:`xanesdb.ml.predict` (which re-exports these names) and :mod:`xanesdb.ml.plots`, so
neither imports the other for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.xas.normalize import find_e0

if TYPE_CHECKING:
    from xanesdb.schemas import TrainingRunDoc
    from xanesdb.xas.readers import MeasuredSpectrum

__all__ = ["prepare", "representation_of", "to_grid", "where", "window_end"]


#: --align values an aligned model takes: its rule is the edge at half step, which "edge" also names
ALIGNED_RULES = ("auto", "halfstep", "edge")


def to_grid(e: np.ndarray, mu: np.ndarray, grid: np.ndarray, name: str = "spectrum") -> np.ndarray:
    """mu interpolated (cubic spline) onto ``grid``; refuses to extrapolate."""
    from scipy.interpolate import CubicSpline

    tol = 1e-6
    if e[0] > grid[0] + tol or e[-1] < grid[-1] - tol:
        raise XanesdbUserError(
            f"{name} covers {e[0]:.1f}-{e[-1]:.1f} eV but the model's grid needs "
            f"{grid[0]:.1f}-{grid[-1]:.1f} eV; give a spectrum spanning the grid (or use --align edge)"
        )
    return CubicSpline(e, mu)(grid)


def representation_of(doc: TrainingRunDoc) -> str:
    """``"aligned"`` or ``"grid"``."""
    return doc.hyperparameters.get("representation", "grid")


def prepare(doc: TrainingRunDoc, spectrum: MeasuredSpectrum, align: str = "auto") -> dict[str, Any]:
    """The model's input row for one spectrum, with what was done to it.

    Raises
    ------
    XanesdbUserError
        When the spectrum cannot be normalised, has no edge in range, or misses the grid.
    """
    name = where(spectrum)
    e, mu = np.asarray(spectrum.energy, dtype=float), np.asarray(spectrum.mu, dtype=float)
    if representation_of(doc) == "aligned":
        from xanesdb.ml.aligned import align_measured

        if align not in ALIGNED_RULES:  # "edge": the edge at half step is this model's alignment
            raise XanesdbUserError(f"model {doc.run_id} reads spectra aligned on the edge's half step; use --align auto "
                                   f"or edge (not {align!r})")
        try:
            a = align_measured(e, mu, upto=window_end(doc.hyperparameters), expected=expected_spectrum(doc))
        except ValueError as err:
            raise XanesdbUserError(f"{name}: {err}") from None
        out = {"x": a["y"], "e0": a["e0"], "e_half": a["e_half"], "edge_step": a["edge_step"],
               "shift_ev": -a["e_half"], "extrapolated_ev": a["extrapolated_ev"], "preedge_height": a["preedge_height"],
               "normalised_as_given": bool(a["normalised_as_given"])}  # fmt: skip
        if a.get("other_edges"):  # another element's edges in the scan, kept out of the normalisation
            out["other_edges"] = [float(x) for x in a["other_edges"]]
        if a["preedge_height"] > 0:  # no peak, no energy
            out["preedge_ev"] = a["preedge_ev"]
        if a.get("preedge_max") is not None:  # None: the pre-edge was not measured
            out["preedge_max"] = a["preedge_max"]
        if a.get("level_step"):  # a XANES-only scan's edge step, matched to the training mean
            out["level_step"] = True
        if a.get("start_fall", 0.0) > 0:  # a scan that starts on a pre-edge peak falls from its start
            out["start_fall"] = a["start_fall"]
        return out
    grid = np.asarray(doc.energies, dtype=float)
    shift = 0.0
    e0 = find_e0(e, mu)
    if align == "edge":
        target = doc.metrics.get("train_edge_ev")
        if target is None:
            raise XanesdbUserError(f"model {doc.run_id} has no stored training edge; use --align none")
        shift = float(target) - e0
        e = e + shift
    elif align not in ("none", "auto"):
        raise XanesdbUserError(f"unknown --align {align!r}; use auto, none or edge")
    y = to_grid(e, mu, grid, name=name)
    if y.max() <= 0:
        raise XanesdbUserError(f"{name} has no positive absorption on the model's grid")
    return {"x": (y / y.max()).astype(np.float32), "e0": e0, "shift_ev": shift}


def expected_spectrum(doc: TrainingRunDoc) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean of an aligned model's training class means on its grid (eV from the half step): what a
    normalised spectrum of its absorber looks like above the edge, whatever its class, against which
    a XANES-only scan's edge step is matched (:func:`xanesdb.xas.normalize.refine_level_step`); None
    for a model that stored no class means."""
    means = [np.asarray(m, dtype=float) for m in (doc.metrics.get("class_means") or {}).values()]
    x = np.asarray(doc.energies, dtype=float)
    if not means or any(m.shape != x.shape for m in means):
        return None
    return x, np.mean(means, axis=0)


def window_end(hyperparameters: dict[str, Any]) -> float | None:
    """The highest energy (eV from the half step) an aligned model reads: the end of its input window
    (``--window``, in the run's hyper-parameters), or None (the whole grid)."""
    window = hyperparameters.get("window")
    return float(window[1]) if window else None


def where(spectrum: MeasuredSpectrum) -> str:
    """The file (and Athena group) of a spectrum, for messages."""
    return f"{spectrum.path} group {spectrum.group!r}" if spectrum.group else str(spectrum.path)
