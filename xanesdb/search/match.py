"""Ranking reference spectra against query spectra: plain cosine, and an ELSIE-style ensemble.

Both compare spectra on the aligned grid (:data:`xanesdb.xas.align.ALIGNED_GRID`: Athena-style
normalised, energies relative to the half step) and fit an energy shift per reference: each
query is read on a grid ``max_shift_ev`` wider at both ends, and every window of it that is an
integer number of grid steps (0.5 eV) away from the half-step alignment is compared. A shift
``s`` means the reference matches the query with its energies moved by ``+s`` eV after both were
aligned at their half steps.

``cosine``
    The cosine of the normalised spectra, maximised over the shifts: one matrix product per batch
    of queries against the whole index.
``elsie``
    After the Materials Project's XAS matcher (ELSIE; Zheng et al., npj Comput. Mater. 4, 12
    (2018), and its open-source code in ``veidt``): the shift of each reference is fitted once
    (least squares on the normalised grid), the ``candidates`` closest references are then
    ranked by every pair of a preprocessing (area normalisation, maximum normalisation, sigmoid
    and square-root squashing, first derivative) and a similarity (cosine, Euclidean, Ruzicka),
    and the rankings are combined by a Borda count: each pair gives a reference one point per
    reference it ranks below it. The reported similarity is the Borda count over its maximum
    (1: first in every ranking). The fitted shift and the pre-selection keep the ensemble at the
    cost of one matrix product per query, like ``cosine``; ``candidates=0`` ranks the whole
    index with the ensemble (slower).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from xanesdb.xas.align import ALIGNED_GRID

if TYPE_CHECKING:
    from xanesdb.search.index import SearchIndex

__all__ = ["DEFAULT_CANDIDATES", "ELSIE_MEMBERS", "GRID_STEP_EV", "METHODS", "rank_references", "wide_grid"]

#: spacing of the aligned grid (eV); shifts are whole multiples of it
GRID_STEP_EV = float(ALIGNED_GRID[1] - ALIGNED_GRID[0])
#: the methods :func:`rank_references` knows
METHODS = ("cosine", "elsie")
#: how many references the ensemble ranks (the closest by the fitted least-squares distance)
DEFAULT_CANDIDATES = 500
#: memory for one block of similarities (floats), to batch queries against large indexes
_BLOCK_FLOATS = 25_000_000


def wide_grid(max_shift_ev: float) -> np.ndarray:
    """The aligned grid extended by ``max_shift_ev`` (rounded to grid steps) at both ends."""
    pad = _pad(max_shift_ev)
    return np.round(ALIGNED_GRID[0] + (np.arange(len(ALIGNED_GRID) + 2 * pad) - pad) * GRID_STEP_EV, 6)


def _pad(max_shift_ev: float) -> int:
    if not 0 <= max_shift_ev <= 10:
        raise ValueError(f"max_shift_ev must be between 0 and 10 eV, got {max_shift_ev}")
    return int(round(max_shift_ev / GRID_STEP_EV))


def windows_of(wide: np.ndarray) -> np.ndarray:
    """``(q, n_shifts, 100)`` windows of ``(q, 100 + 2 pad)`` wide rows (a view, no copy)."""
    wide = np.atleast_2d(np.asarray(wide, dtype=np.float32))
    return np.lib.stride_tricks.sliding_window_view(wide, len(ALIGNED_GRID), axis=1)


def _shift_ev(j: np.ndarray | int, n_shifts: int) -> np.ndarray:
    return (np.asarray(j) - (n_shifts - 1) // 2) * GRID_STEP_EV


# ----------------------------------------------------------------------------- the ensemble
def _safe(d: np.ndarray) -> np.ndarray:
    d = np.where(np.abs(d) < 1e-12, 1.0, d)
    return d


def _area(y):
    return y / _safe(np.trapezoid(y, dx=GRID_STEP_EV, axis=1))[:, None] if hasattr(np, "trapezoid") else \
        y / _safe(np.trapz(y, dx=GRID_STEP_EV, axis=1))[:, None]  # fmt: skip


def _maxnorm(y):
    return y / _safe(y.max(axis=1))[:, None]


def _intnorm(y):
    return y / _safe(y.sum(axis=1))[:, None]


def _sigmoid(y):
    z = np.clip(_maxnorm(y), 0.0, 1.0)
    return _intnorm((1.0 - np.cos(np.pi * z)) / 2.0)


def _sqrt(y):
    return _intnorm(np.sqrt(np.abs(y)))


def _derivative(y):
    d = np.diff(y, axis=1) / GRID_STEP_EV
    return d / _safe(np.linalg.norm(d, axis=1))[:, None]


def _cos(a, b):
    return np.einsum("ij,ij->i", a, b) / _safe(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _euclid(a, b):
    return -np.linalg.norm(a - b, axis=1)


def _ruzicka(a, b):
    a, b = np.clip(a, 0.0, None), np.clip(b, 0.0, None)
    return np.minimum(a, b).sum(axis=1) / _safe(np.maximum(a, b).sum(axis=1))


_PRE: dict[str, Callable] = {"area": _area, "max": _maxnorm, "sigmoid": _sigmoid, "sqrt": _sqrt, "derivative": _derivative}
_SIM: dict[str, Callable] = {"cosine": _cos, "euclidean": _euclid, "ruzicka": _ruzicka}
#: (preprocessing, similarity) pairs of the ensemble; Ruzicka needs non-negative spectra, so not
#: on the derivative
ELSIE_MEMBERS: tuple[tuple[str, str], ...] = tuple(
    (p, s) for p in _PRE for s in _SIM if not (p == "derivative" and s == "ruzicka")
)


def borda(scores: list[np.ndarray]) -> np.ndarray:
    """Borda count of several score vectors (higher is better): per vector, each item gets the
    number of items ranked below it."""
    m = len(scores[0])
    total = np.zeros(m)
    for s in scores:
        order = np.argsort(-s, kind="stable")
        pts = np.empty(m)
        pts[order] = np.arange(m - 1, -1, -1)
        total += pts
    return total


def _ensemble(xc: np.ndarray, qc: np.ndarray) -> np.ndarray:
    """Borda count of the candidates ``xc`` against their shifted query windows ``qc``."""
    scores = []
    pre_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for p, s in ELSIE_MEMBERS:
        if p not in pre_cache:
            pre_cache[p] = (_PRE[p](xc), _PRE[p](qc))
        a, b = pre_cache[p]
        scores.append(_SIM[s](a, b))
    return borda(scores)


# ----------------------------------------------------------------------------- ranking
def rank_references(
    index: SearchIndex,
    windows: np.ndarray,
    rows: np.ndarray | slice,
    *,
    method: str = "cosine",
    top: int = 10,
    candidates: int = DEFAULT_CANDIDATES,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The ``top`` references (among index ``rows``) of each query.

    Parameters
    ----------
    index
        The references.
    windows
        ``(q, n_shifts, 100)`` shifted windows of the queries (:func:`windows_of`).
    rows
        Which rows of the index to search (one absorber's).
    method
        ``"cosine"`` or ``"elsie"`` (module docstring).
    top
        How many references per query.
    candidates
        References the ensemble ranks (0: all); ignored by ``cosine``.

    Returns
    -------
    list of (index rows, similarities, shifts in eV)
        Per query, best first.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use {', '.join(METHODS)}")
    windows = np.asarray(windows, dtype=np.float32)
    q, n_shifts, width = windows.shape
    all_rows = np.arange(len(index))[rows]
    m = len(all_rows)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if m == 0 or q == 0:
        return [(np.array([], dtype=int), np.array([]), np.array([]))] * q
    top = max(1, min(top, m))
    batch = max(1, int(_BLOCK_FLOATS // (m * n_shifts)))
    if method == "cosine":
        R = index.unit_rows[rows]
        Wn = windows / _safe(np.linalg.norm(windows, axis=2))[:, :, None]
        for i in range(0, q, batch):
            w = Wn[i : i + batch]
            sims = (R @ w.reshape(-1, width).T).reshape(m, len(w), n_shifts)
            best_j = sims.argmax(axis=2)
            best = np.take_along_axis(sims, best_j[:, :, None], axis=2)[:, :, 0]
            for k in range(len(w)):
                sel = _top(best[:, k], top)
                out.append((all_rows[sel], best[sel, k].astype(float), _shift_ev(best_j[sel, k], n_shifts)))
        return out
    # elsie: least-squares shift per reference, then the ensemble on the closest candidates
    X = index.X[rows]
    x2 = np.einsum("ij,ij->i", X, X)
    n_cand = m if candidates <= 0 else max(top, min(candidates, m))
    for i in range(0, q, batch):
        w = windows[i : i + batch]
        w2 = np.einsum("qsj,qsj->qs", w, w)
        # |x - w|^2 = |x|^2 + |w|^2 - 2 x.w: the best shift of a row maximises 2 x.w - |w|^2 (in place)
        g = (X @ w.reshape(-1, width).T).reshape(m, len(w), n_shifts)
        g *= 2.0
        g -= w2[None]
        best_j = g.argmax(axis=2)
        best_d2 = x2[:, None] - np.take_along_axis(g, best_j[:, :, None], axis=2)[:, :, 0]
        for k in range(len(w)):
            cand = _top(-best_d2[:, k], n_cand)
            xc = X[cand]
            qc = w[k][best_j[cand, k]]
            total = _ensemble(xc.astype(np.float64), qc.astype(np.float64))
            order = np.lexsort((best_d2[cand, k], -total))[:top]
            denom = len(ELSIE_MEMBERS) * max(len(cand) - 1, 1)
            sel = cand[order]
            out.append((all_rows[sel], total[order] / denom, _shift_ev(best_j[sel, k], n_shifts)))
    return out


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, highest first (ties: lower position first)."""
    if k >= len(score):
        return np.lexsort((np.arange(len(score)), -score))
    part = np.argpartition(-score, k - 1)[:k]
    return part[np.lexsort((part, -score[part]))]
