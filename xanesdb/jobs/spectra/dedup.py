"""Pairwise near-duplicate removal of standardised spectra, vectorised and blocked.

Of any two spectra whose mean absolute difference (MAD) is below a threshold, one is kept
(the paper's rule, Carbone et al. 2019: threshold 0.015 on max-normalised spectra). The
result is made deterministic by a priority order (xanesdb uses the ``spectrum_id`` order):
walking the spectra in that order, a spectrum is kept unless it is closer than the threshold
to an already kept one, in which case it becomes a duplicate of the first such kept spectrum.
So the kept spectra are pairwise at least the threshold apart, and every removed spectrum
names the kept one it duplicates.

The all-pairs MAD is never formed. Two exact lower bounds of the MAD prune the pairs first:

1. ``|w.(x - y)| <= MAD(x, y)`` for any ``w`` with ``|w_i| <= 1/d``; with ``w`` the sign
   patterns of the first three principal axes over ``d``, spectra sorted by the first
   projection only need comparing inside a window of width ``threshold``, and the other two
   filter each block x block tile of that window;
2. the L1 distance of segment sums over ``d`` (``sum_s |sum_{i in s}(x_i - y_i)| / d``),
   computed block x block;
3. the exact MAD of the pairs left, in chunks.

Work and memory go block by block (``block`` x ``block`` float32 matrices and at most
``block * 64`` candidate pairs at a time); only the list of near-duplicate pairs found grows
with the data. Identical spectra are collapsed first, so even large groups of exact copies
add no pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["DedupStats", "find_duplicates", "find_duplicates_bruteforce", "mean_abs_diff"]


@dataclass
class DedupStats:
    """Counters of one dedup run (for benchmarks and logs)."""

    n_spectra: int = 0
    n_unique_rows: int = 0
    n_window_pairs: int = 0
    n_segment_pairs: int = 0
    n_close_pairs: int = 0
    n_duplicates: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference between the rows of ``a`` and ``b`` (broadcasting)."""
    return np.abs(np.asarray(a) - np.asarray(b)).mean(axis=-1)


def _projections(x: np.ndarray, k: int = 3, sample: int = 4096) -> np.ndarray:
    """Weights ``sign(v_i) / d`` of the first ``k`` principal axes of a deterministic sample.

    Each column ``w`` has ``|w_i| = 1/d``, so ``|w.(x - y)|`` is a lower bound of the MAD.
    """
    n, d = x.shape
    idx = np.linspace(0, n - 1, min(n, sample)).astype(np.int64)
    s = x[idx].astype(np.float64)
    s -= s.mean(axis=0)
    if len(s) < 2 or not np.any(s):
        return np.full((d, 1), 1.0 / d)
    # leading eigenvectors of the d x d covariance (cheaper than an SVD of the sample)
    _, vecs = np.linalg.eigh(s.T @ s)
    w = np.sign(vecs[:, ::-1][:, :k])
    w[w == 0] = 1.0
    return w / d


def _segment_sums(x: np.ndarray, n_segments: int) -> np.ndarray:
    d = x.shape[1]
    starts = np.unique(np.linspace(0, d, n_segments + 1).astype(np.int64)[:-1])
    return np.add.reduceat(x, starts, axis=1) / d


def _leader(n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Resolve close pairs (lo < hi in priority) into ``duplicate_of`` row indices (-1 kept)."""
    dup = np.full(n, -1, dtype=np.int64)
    if len(lo) == 0:
        return dup
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    heads, starts = np.unique(lo, return_index=True)
    ends = np.append(starts[1:], len(lo))
    for h, a, b in zip(heads.tolist(), starts.tolist(), ends.tolist()):
        if dup[h] != -1:  # a duplicate claims nothing
            continue
        nb = hi[a:b]
        free = nb[dup[nb] == -1]
        dup[free] = h
    return dup


def find_duplicates(
    x: np.ndarray,
    threshold: float = 0.015,
    block: int = 1024,
    n_segments: int = 10,
    stats: DedupStats | None = None,
) -> np.ndarray:
    """Mark near-duplicate rows of ``x`` (rows in priority order, first = preferred).

    Parameters
    ----------
    x
        Spectra on one common grid, shape ``(n, d)``; row order is the priority order.
    threshold
        Two rows with mean absolute difference strictly below it are duplicates.
    block
        Rows and columns per block; memory is a few ``block x block`` float32 matrices.
    n_segments
        Segments of the segment-sum lower bound.
    stats
        Filled with counters and timings when given.

    Returns
    -------
    numpy.ndarray
        ``duplicate_of[i]``: the row index of the kept spectrum that row ``i`` duplicates,
        or -1 when row ``i`` is kept.
    """
    import time

    t0 = time.perf_counter()
    stats = stats if stats is not None else DedupStats()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"spectra must be a 2-d array (n, d), got shape {x.shape}")
    n, d = x.shape
    stats.n_spectra = n
    if n == 0:
        return np.full(0, -1, dtype=np.int64)

    # collapse identical rows: the first of each group stands for all
    _, first, inverse = np.unique(x.view(np.dtype((np.void, 4 * d))).ravel(), return_index=True,
                                  return_inverse=True)
    first_of_row = first[inverse.ravel()]
    reps = np.sort(first)  # representative rows, in priority order
    u = x[reps]
    m = len(reps)
    stats.n_unique_rows = m

    # bound 1: projections; sorted by the first, the others filter each tile
    proj = (u @ _projections(u).astype(np.float32)).astype(np.float64)
    order = np.argsort(proj[:, 0], kind="stable")
    ps = proj[order, 0]
    pk = proj[order, 1:]
    us = u[order]
    seg = _segment_sums(us, n_segments).astype(np.float32)
    t1 = time.perf_counter()

    # the bounds are computed in float32: a little slack keeps them safe against rounding
    bound = threshold + 1e-5
    lo_parts: list[np.ndarray] = []
    hi_parts: list[np.ndarray] = []
    pair_chunk = block * 64
    for r0 in range(0, m, block):
        r1 = min(m, r0 + block)
        c_end = int(np.searchsorted(ps, ps[r1 - 1] + bound, side="left"))
        for c0 in range(r0, c_end, block):
            c1 = min(c_end, c0 + block)
            # bound 1 on the block x block tile (upper triangle only: sorted position j > i)
            mask = np.abs(ps[r0:r1, None] - ps[None, c0:c1]) < bound
            for q in range(pk.shape[1]):
                mask &= np.abs(pk[r0:r1, q, None] - pk[None, c0:c1, q]) < bound
            if c0 == r0:
                mask &= np.arange(r0, r1)[:, None] < np.arange(c0, c1)[None, :]
            ii, jj = np.nonzero(mask)
            stats.n_window_pairs += len(ii)
            if len(ii) == 0:
                continue
            # bound 2: segment sums on the surviving pairs
            keep = np.zeros(len(ii), dtype=bool)
            for s0 in range(0, len(ii), pair_chunk):
                a = ii[s0:s0 + pair_chunk] + r0
                b = jj[s0:s0 + pair_chunk] + c0
                keep[s0:s0 + pair_chunk] = np.abs(seg[a] - seg[b]).sum(axis=1) < bound
            ii, jj = ii[keep] + r0, jj[keep] + c0
            stats.n_segment_pairs += len(ii)
            # exact MAD on what is left
            for s0 in range(0, len(ii), pair_chunk):
                a, b = ii[s0:s0 + pair_chunk], jj[s0:s0 + pair_chunk]
                close = np.abs(us[a] - us[b]).mean(axis=1) < threshold
                if np.any(close):
                    ra, rb = order[a[close]], order[b[close]]  # back to priority positions
                    lo_parts.append(np.minimum(ra, rb))
                    hi_parts.append(np.maximum(ra, rb))
    t2 = time.perf_counter()

    lo = np.concatenate(lo_parts) if lo_parts else np.zeros(0, dtype=np.int64)
    hi = np.concatenate(hi_parts) if hi_parts else np.zeros(0, dtype=np.int64)
    stats.n_close_pairs = len(lo)
    dup_u = _leader(m, lo, hi)

    # back to all rows: representatives map through reps; copies follow their representative
    dup_rep = np.where(dup_u >= 0, reps[np.maximum(dup_u, 0)], -1)
    dup_of_rep = np.full(n, -1, dtype=np.int64)
    dup_of_rep[reps] = dup_rep
    dup = np.full(n, -1, dtype=np.int64)
    is_copy = first_of_row != np.arange(n)
    # a copy duplicates its representative if that is kept, else what the representative duplicates
    rep_dup = dup_of_rep[first_of_row]
    dup[is_copy] = np.where(rep_dup[is_copy] >= 0, rep_dup[is_copy], first_of_row[is_copy])
    dup[reps] = dup_rep
    stats.n_duplicates = int(np.count_nonzero(dup >= 0))
    stats.seconds = {"prepare": t1 - t0, "pairs": t2 - t1, "resolve": time.perf_counter() - t2}
    logger.debug("dedup: %s", stats)
    return dup


def find_duplicates_bruteforce(x: np.ndarray, threshold: float = 0.015) -> np.ndarray:
    """The same rule by the plain sequential definition (reference for tests; O(n^2 d))."""
    x = np.asarray(x, dtype=np.float32)
    dup = np.full(len(x), -1, dtype=np.int64)
    kept: list[int] = []
    for i in range(len(x)):
        if kept:
            mad = np.abs(x[kept] - x[i]).mean(axis=1)
            hit = np.nonzero(mad < threshold)[0]
            if len(hit):
                dup[i] = kept[int(hit[0])]
                continue
        kept.append(i)
    return dup
