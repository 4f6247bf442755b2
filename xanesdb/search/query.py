"""Query spectra for a search: read, normalised and aligned exactly as ``xanesdb predict`` does.

:func:`prepare_query` takes a :class:`xanesdb.xas.readers.MeasuredSpectrum` (measured or a FEFF
``xmu.dat``, from :func:`xanesdb.xas.readers.read_spectra`), decides its absorber by the edge
energy (:func:`xanesdb.ml.predict.absorber_of`, the rule of ``predict``), normalises and aligns it
with :func:`xanesdb.xas.align.align_measured` (the aligned-model input of ``predict``) and reads
the same normalised curve on the wider grid that the energy-shift fit needs.

One exception: a FEFF ``xmu.dat`` (reader kind ``feff-xmu``) is normalised as the stored spectra
were (:func:`xanesdb.xas.align.align_computed`, post-edge fitted to its ``mu0`` column), so that a
computed spectrum finds its own stored copy first; read as a measured spectrum (``predict``'s
rule: a post-edge line fitted to the 50 eV FEFF computes) its edge step differs by some per cent
and near neighbours can overtake it. ``computed_as_measured=True`` reads it as ``predict`` does.
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


def prepare_query(spectrum: MeasuredSpectrum, max_shift_ev: float = 3.0, computed_as_measured: bool = False) -> SearchQuery:
    """A read spectrum, normalised and aligned as ``xanesdb predict`` does for aligned models
    (a FEFF ``xmu.dat`` as the stored computed spectra are, unless ``computed_as_measured``).

    Raises
    ------
    XanesdbUserError
        One line naming the file: no absorption edge, or too short around the edge.
    """
    from xanesdb.ml.predict import absorber_of, where
    from xanesdb.xas.align import align_computed, align_measured
    from xanesdb.xas.normalize import normalize_computed, normalize_measured

    absorber, how = absorber_of(spectrum)
    name = where(spectrum)
    e, mu = np.asarray(spectrum.energy, dtype=float), np.asarray(spectrum.mu, dtype=float)
    mu0 = None if computed_as_measured else _feff_mu0(spectrum)
    try:
        if mu0 is not None:
            a = align_computed(e, mu, mu0)
            n = normalize_computed(e, mu, mu0)  # the normalisation align_computed applied
        else:
            a = align_measured(e, mu)
            n = normalize_measured(e, mu)  # the normalisation align_measured applied
    except ValueError as err:
        raise XanesdbUserError(f"{name}: {err}") from None
    wide = np.interp(wide_grid(max_shift_ev) + a["e_half"], e, n.norm).astype(np.float32)
    return SearchQuery(name=spectrum.name, file=spectrum.path, group=spectrum.group, absorber=absorber,
                       absorber_from=how, y=a["y"], wide=wide, e_half=float(a["e_half"]), e0=float(a["e0"]),
                       edge_step=float(a["edge_step"]), extra={"normalised_as": "computed" if mu0 is not None else "measured"})  # fmt: skip


def _feff_mu0(spectrum: MeasuredSpectrum) -> np.ndarray | None:
    """The ``mu0`` column of a FEFF xmu.dat whose ``mu`` was read, else None."""
    if spectrum.kind != "feff-xmu" or spectrum.mu_source != "xmu.dat mu" or "mu0" not in (spectrum.meta.get("columns") or []):
        return None
    from xanesdb.xas.readers import read_spectra

    try:
        (s0,) = read_spectra(spectrum.path, mu_col="mu0")
    except XanesdbUserError:
        return None
    if s0.energy.shape != spectrum.energy.shape or not np.allclose(s0.energy, spectrum.energy):
        return None
    return np.asarray(s0.mu, dtype=float)


def query_from_aligned(y, name: str = "spectrum", absorber: str | None = None, max_shift_ev: float = 3.0) -> SearchQuery:
    """A query from a spectrum already on the aligned grid (e.g. a stored ``mu_aligned``); the
    shifted windows hold its end values beyond the grid."""
    y = np.asarray(y, dtype=np.float32)
    if y.shape != ALIGNED_GRID.shape:
        raise ValueError(f"an aligned spectrum has {len(ALIGNED_GRID)} points, got {y.shape}")
    wide = np.interp(wide_grid(max_shift_ev), ALIGNED_GRID, y).astype(np.float32)
    return SearchQuery(name=name, y=y, wide=wide, absorber=absorber, absorber_from="given" if absorber else "")
