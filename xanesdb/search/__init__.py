"""Search by spectrum: the stored computed spectra nearest to measured or computed ones.

Reading, normalisation and alignment are those of ``xanesdb predict``
(:mod:`xanesdb.search.query`); the references are the stored ``mu_aligned`` of every spectrum,
held in memory as one matrix (:mod:`xanesdb.search.index`); two ranking methods, plain cosine and
an ELSIE-style ensemble, each with a fitted energy shift (:mod:`xanesdb.search.match`); and a
k-nearest-neighbour classifier of the geometry class on top (:func:`knn_vote`).

Examples
--------
>>> from xanesdb.xas.readers import read_spectra
>>> from xanesdb.search import search_spectra
>>> results = search_spectra(read_spectra("hematite.xdi"), top=5, method="elsie")   # doctest: +SKIP
>>> [(m["material_id"], m["lce_class"], round(m["similarity"], 3)) for m in results[0]["matches"]]  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.search.index import INDEX_FIELDS, SearchIndex, load_search_index
from xanesdb.search.match import DEFAULT_CANDIDATES, METHODS, rank_references, windows_of
from xanesdb.search.query import SearchQuery, prepare_query, query_from_aligned

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.xas.readers import MeasuredSpectrum

__all__ = ["CLASSES", "DEFAULT_CANDIDATES", "METHODS", "SearchIndex", "SearchQuery", "knn_vote", "load_search_index",
           "prepare_query", "query_from_aligned", "search_queries", "search_spectra"]  # fmt: skip

#: geometry classes the kNN classifier votes among
CLASSES = ("O6", "S5", "T4")


def check_element(element: str) -> str:
    """The element symbol, or a one-line error for something that is not one."""
    from xanesdb.xas.readers import _SYMBOLS

    sym = element.strip().capitalize()
    if sym not in _SYMBOLS:
        raise XanesdbUserError(f"unknown element {element!r}; give a chemical symbol such as Fe")
    return sym


def search_queries(
    queries: Sequence[SearchQuery],
    index: SearchIndex,
    *,
    element: str | None = None,
    top: int = 10,
    method: str = "cosine",
    candidates: int = DEFAULT_CANDIDATES,
    labelled_only: bool = False,
) -> list[dict[str, Any]]:
    """Search prepared queries in an index.

    Each query is compared with the references of ``element`` (default: its own absorber).

    Returns
    -------
    list of dict
        Per query: ``name``, ``file``, ``group``, ``absorber``, ``absorber_from``, ``e_half``,
        ``element`` (searched), ``method`` and ``matches`` (best first: ``rank``, the fields of
        :data:`xanesdb.search.index.INDEX_FIELDS`, ``site`` (the site index), ``similarity``,
        ``shift_ev``, ``e_half_ref``); or ``error`` instead of ``matches``.
    """
    if method not in METHODS:
        raise XanesdbUserError(f"unknown method {method!r}; use {' or '.join(METHODS)}")
    if top < 1:
        raise XanesdbUserError(f"--top must be 1 or more, got {top}")
    have = index.elements()
    results: list[dict[str, Any] | None] = [None] * len(queries)
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        base = {"name": q.name, "file": q.file, "group": q.group, "absorber": q.absorber or "",
                "absorber_from": q.absorber_from, "e_half": q.e_half, "method": method,
                "normalised_as": q.extra.get("normalised_as", "given")}  # fmt: skip
        el = element or q.absorber
        if el is None:
            results[i] = {**base, "error": f"{q.name}: its absorber is unknown (no edge of a known element); give --element"}
        elif element and q.absorber and q.absorber != element:
            results[i] = {**base, "error": f"{q.name} is a {q.absorber} spectrum ({q.absorber_from}), not {element}"}
        elif el not in have:
            results[i] = {**base, "error": f"{q.name}: no computed {el} spectra in the database (it has "
                                           f"{', '.join(have) or 'none'})"}  # fmt: skip
        else:
            results[i] = {**base, "element": el}
            groups.setdefault(el, []).append(i)
    for el, members in groups.items():
        rows = index.rows(el, labelled_only=labelled_only)
        if len(rows) == 0:
            for i in members:
                results[i]["error"] = f"{queries[i].name}: no labelled computed {el} spectra in the database"
            continue
        W = windows_of(np.stack([queries[i].wide for i in members]))
        ranked = rank_references(index, W, rows, method=method, top=top, candidates=candidates)
        for i, (r, sim, shift) in zip(members, ranked):
            results[i]["matches"] = [_match(index, k + 1, int(row), float(s), float(sh)) for k, (row, s, sh) in
                                     enumerate(zip(r, sim, shift))]  # fmt: skip
    return results  # type: ignore[return-value]


def _match(index: SearchIndex, rank: int, row: int, similarity: float, shift: float) -> dict[str, Any]:
    m: dict[str, Any] = {"rank": rank}
    for f in INDEX_FIELDS:
        v = str(index.meta[f][row])
        m[f] = v or None
    site = (m.get("site_id") or "").rsplit(":", 1)[-1]
    m["site"] = int(site) if site.isdigit() else None
    m["similarity"] = similarity
    m["shift_ev"] = shift
    eh = index.e_half[row]
    m["e_half_ref"] = None if np.isnan(eh) else float(eh)
    return m


def search_spectra(
    spectra: Sequence[MeasuredSpectrum],
    *,
    element: str | None = None,
    top: int = 10,
    method: str = "cosine",
    max_shift_ev: float = 3.0,
    candidates: int = DEFAULT_CANDIDATES,
    labelled_only: bool = False,
    computed_as_measured: bool = False,
    fidelity: str | None = None,
    calibration: str | None = None,
    index: SearchIndex | None = None,
    settings: XanesdbSettings | None = None,
) -> list[dict[str, Any]]:
    """The nearest stored computed spectra to each read spectrum.

    Parameters
    ----------
    spectra
        From :func:`xanesdb.xas.readers.read_spectra` (measured files or FEFF ``xmu.dat``).
    element
        Search this absorber's references (a spectrum whose edge says otherwise gets an error
        row); default: each spectrum's own absorber.
    top
        Matches per spectrum.
    method
        ``"cosine"`` or ``"elsie"`` (:mod:`xanesdb.search.match`).
    max_shift_ev
        The energy shift is fitted within +-this (eV, 0.5 eV steps) after half-step alignment.
    candidates
        References the ELSIE ensemble ranks (0: all).
    labelled_only
        Only references with a geometry class (``lce_class``).
    computed_as_measured
        Normalise a FEFF ``xmu.dat`` as a measured spectrum (``predict``'s rule) rather than as
        the stored computed spectra were (:mod:`xanesdb.search.query`).
    fidelity
        ``"scf"``: compare with the ``fast`` references corrected towards ``scf``
        (:func:`load_search_index`); better for measured spectra.
    calibration
        ``"k-edge"`` (or a calibration file): compare with references mapped to what a
        measurement of them looks like (:mod:`xanesdb.xas.calibration`); for measured spectra.
    index
        A prepared index; default :func:`load_search_index` of the current database.

    Returns
    -------
    list of dict
        One per spectrum, see :func:`search_queries`; a spectrum that cannot be prepared (no edge,
        too short) gets an ``error``.
    """
    if element is not None:
        element = check_element(element)
    queries: list[SearchQuery] = []
    errors: dict[int, dict] = {}
    for i, s in enumerate(spectra):
        try:
            queries.append(prepare_query(s, max_shift_ev, computed_as_measured=computed_as_measured))
        except XanesdbUserError as err:
            errors[i] = {"name": s.name, "file": s.path, "group": s.group, "method": method, "error": str(err)}
    if index is None:  # the database is asked only when some spectrum has an absorber to search
        needed = any(element or q.absorber for q in queries)
        index = load_search_index(settings, fidelity=fidelity, calibration=calibration) if needed else SearchIndex.from_arrays(np.zeros((0, 100)), {}, key="empty")
    found = iter(search_queries(queries, index, element=element, top=top, method=method, candidates=candidates,
                                labelled_only=labelled_only) if queries else [])  # fmt: skip
    return [errors[i] if i in errors else next(found) for i in range(len(spectra))]


def knn_vote(matches: Sequence[dict[str, Any]], k: int = 5) -> str | None:
    """The geometry class most common among the first ``k`` labelled matches (a tie goes to the
    class of the better-ranked match); None when none is labelled."""
    labels = [m.get("lce_class") for m in matches if m.get("lce_class") in CLASSES][:k]
    if not labels:
        return None
    counts = Counter(labels)
    best = max(counts.values())
    return next(lab for lab in labels if counts[lab] == best)
