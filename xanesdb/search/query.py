"""Query spectra for a search: read, normalised and aligned exactly as ``xanesdb predict`` does.

:func:`prepare_query` takes a :class:`xanesdb.xas.readers.MeasuredSpectrum` (measured or a FEFF
``xmu.dat``, from :func:`xanesdb.xas.readers.read_spectra`), decides its absorber by the edge
energy (:func:`xanesdb.ml.predict.absorber_of`, the rule of ``predict``), normalises and aligns it
with :func:`xanesdb.xas.align.align_measured` (the aligned-model input of ``predict``) and reads
the same normalised curve on the wider grid that the energy-shift fit needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.search.match import wide_grid
from xanesdb.xas.align import ALIGNED_GRID

if TYPE_CHECKING:
    from xanesdb.xas.readers import MeasuredSpectrum

__all__ = ["SearchQuery", "prepare_query", "query_from_aligned"]


@dataclass
class SearchQuery:
    """One spectrum ready to search with.

    Attributes
    ----------
    name, file, group
        Where it came from (``file`` and ``group`` as the reader gives them).
    absorber, absorber_from
        Its absorber and how that was decided (edge energy, file).
    y
        Normalised mu on :data:`xanesdb.xas.align.ALIGNED_GRID` (what ``predict`` gives a model).
    wide
        The same curve on :func:`xanesdb.search.match.wide_grid` (for the shift fit).
    e_half, e0, edge_step
        Of the raw spectrum (eV, eV, mu units); None for a spectrum given already aligned.
    """

    name: str
    y: np.ndarray
    wide: np.ndarray
    file: str | None = None
    group: str | None = None
    absorber: str | None = None
    absorber_from: str = ""
    e_half: float | None = None
    e0: float | None = None
    edge_step: float | None = None
    extra: dict = field(default_factory=dict)


def prepare_query(spectrum: MeasuredSpectrum, max_shift_ev: float = 3.0) -> SearchQuery:
    """A read spectrum, normalised and aligned as ``xanesdb predict`` does for aligned models.

    Raises
    ------
    XanesdbUserError
        One line naming the file: no absorption edge, or too short around the edge.
    """
    from xanesdb.ml.predict import absorber_of, where
    from xanesdb.xas.align import align_measured
    from xanesdb.xas.normalize import pre_edge

    absorber, how = absorber_of(spectrum)
    name = where(spectrum)
    e, mu = np.asarray(spectrum.energy, dtype=float), np.asarray(spectrum.mu, dtype=float)
    try:
        a = align_measured(e, mu, name=name)
        n = pre_edge(e, mu)  # the normalisation align_measured applied (same defaults)
    except ValueError as err:
        raise XanesdbUserError(f"{name}: {err}") from None
    wide = np.interp(wide_grid(max_shift_ev) + a["e_half"], e, n.norm).astype(np.float32)
    return SearchQuery(name=spectrum.name, file=spectrum.path, group=spectrum.group, absorber=absorber,
                       absorber_from=how, y=a["y"], wide=wide, e_half=float(a["e_half"]), e0=float(a["e0"]),
                       edge_step=float(a["edge_step"]))  # fmt: skip


def query_from_aligned(y, name: str = "spectrum", absorber: str | None = None, max_shift_ev: float = 3.0) -> SearchQuery:
    """A query from a spectrum already on the aligned grid (e.g. a stored ``mu_aligned``); the
    shifted windows hold its end values beyond the grid."""
    y = np.asarray(y, dtype=np.float32)
    if y.shape != ALIGNED_GRID.shape:
        raise ValueError(f"an aligned spectrum has {len(ALIGNED_GRID)} points, got {y.shape}")
    wide = np.interp(wide_grid(max_shift_ev), ALIGNED_GRID, y).astype(np.float32)
    return SearchQuery(name=name, y=y, wide=wide, absorber=absorber, absorber_from="given" if absorber else "")
