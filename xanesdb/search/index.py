"""The in-memory search index: every stored spectrum's ``mu_aligned`` as one numpy matrix.

Built from one projected query on the ``spectra`` collection (the aligned representation that
``xanesdb spectra build`` stores, see :mod:`xanesdb.xas.align`) and cached twice: in the process
(a dict keyed by the database's state) and on disk under ``XANESDB_HOME/cache/search`` (an
``.npz``), so a later command reads the matrix without asking the database for the spectra
again. The cache key is the query, the number of documents in ``spectra`` and their newest
``last_updated``: an upsert (which stamps ``last_updated``), an insert or a delete changes it; a
hand edit that leaves ``last_updated`` alone is not seen (``use_cache=False`` rebuilds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.xas.align import ALIGNED_GRID, ALIGNED_GRID_NAME

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings

logger = logging.getLogger(__name__)

__all__ = ["INDEX_FIELDS", "SearchIndex", "index_criteria", "load_search_index"]

#: string fields of a spectrum document kept beside each row of the matrix
INDEX_FIELDS = ("spectrum_id", "material_id", "site_id", "formula", "element", "lce_class", "chemenv_symbol",
                "preset", "source")  # fmt: skip
#: processes keep this many indexes (different queries) in memory
_MEMO_SIZE = 4
_MEMO: dict[str, SearchIndex] = {}


@dataclass
class SearchIndex:
    """Reference spectra on the aligned grid, with what a search result shows of each.

    Attributes
    ----------
    X : numpy.ndarray
        ``(n, 100)`` float32, normalised mu on :data:`xanesdb.xas.align.ALIGNED_GRID` (eV relative
        to each spectrum's half step).
    meta : dict of str to numpy.ndarray
        One array of ``n`` strings per field of :data:`INDEX_FIELDS` (``""`` where the document has
        none, e.g. an unlabelled site's ``lce_class``).
    e_half : numpy.ndarray
        ``(n,)`` half-step energy of each raw spectrum (eV; NaN where unknown).
    key : str
        The cache key (query + the database's state it was built from).
    criteria : dict
        The MongoDB filter the spectra were selected with.
    """

    X: np.ndarray
    meta: dict[str, np.ndarray]
    e_half: np.ndarray
    key: str = ""
    criteria: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _norms: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def unit_rows(self) -> np.ndarray:
        """Rows scaled to unit length (computed once), for cosine similarity."""
        if self._norms is None:
            n = np.linalg.norm(self.X, axis=1)
            n[n == 0] = 1.0
            self._norms = (self.X / n[:, None]).astype(np.float32)
        return self._norms

    def elements(self) -> list[str]:
        """Absorbers present, sorted."""
        return sorted(set(self.meta["element"].tolist()))

    def rows(self, element: str | None = None, labelled_only: bool = False) -> np.ndarray:
        """Row numbers of one absorber's spectra (all when ``element`` is None), optionally only
        those with a geometry class (``lce_class``)."""
        sel = np.ones(len(self), dtype=bool)
        if element is not None:
            sel &= self.meta["element"] == element
        if labelled_only:
            sel &= self.meta["lce_class"] != ""
        return np.flatnonzero(sel)

    def subset(self, rows: np.ndarray) -> SearchIndex:
        """A new index of the given rows (e.g. the training materials of a grouped split)."""
        rows = np.asarray(rows)
        return SearchIndex(X=self.X[rows], meta={k: v[rows] for k, v in self.meta.items()}, e_half=self.e_half[rows],
                           key=f"{self.key}:subset", criteria=self.criteria)  # fmt: skip

    @classmethod
    def from_arrays(cls, X, meta: dict[str, Any], e_half=None, key: str = "arrays") -> SearchIndex:
        """An index from arrays (tests, benchmarks): ``meta`` needs at least ``element``."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(ALIGNED_GRID):
            raise ValueError(f"X must be (n, {len(ALIGNED_GRID)}), got {X.shape}")
        n = X.shape[0]
        full = {}
        for f in INDEX_FIELDS:
            v = meta.get(f)
            full[f] = np.array([("" if x is None else str(x)) for x in v] if v is not None else [""] * n, dtype=str)
            if full[f].shape != (n,):
                raise ValueError(f"meta[{f!r}] must have {n} entries")
        if meta.get("spectrum_id") is None:
            full["spectrum_id"] = np.array([f"row-{i}" for i in range(n)])
        eh = np.full(n, np.nan) if e_half is None else np.asarray(e_half, dtype=float)
        return cls(X=X, meta=full, e_half=eh, key=key)


def index_criteria(elements: list[str] | None = None, criteria: dict | None = None,
                   include_duplicates: bool = False) -> dict:  # fmt: skip
    """The filter of the spectra a search index holds: aligned, not a duplicate (unless asked)."""
    c: dict[str, Any] = {"aligned_grid": ALIGNED_GRID_NAME, "mu_aligned": {"$ne": None}}
    if not include_duplicates:
        c["duplicate_of"] = None
    if elements:
        c["element"] = elements[0] if len(elements) == 1 else {"$in": sorted(elements)}
    if criteria:
        c = {"$and": [c, criteria]}
    return c


def _state_key(db, criteria: dict) -> str:
    """Query + the collection's size and newest ``last_updated``: changes with every insert,
    delete and (stamped) upsert. Asked of the whole collection, which its indexes answer fast;
    counting the filtered documents would scan their arrays."""
    coll = db["spectra"]
    n = coll.estimated_document_count()
    newest = list(coll.find({}, {"_id": 0, "last_updated": 1}).sort("last_updated", -1).limit(1))
    stamp = newest[0].get("last_updated") if newest else None
    stamp = stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)
    text = json.dumps(criteria, sort_keys=True, default=str) + f"|{db.name}|{n}|{stamp}|{ALIGNED_GRID_NAME}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_search_index(
    settings: XanesdbSettings | None = None,
    *,
    elements: list[str] | None = None,
    criteria: dict | None = None,
    include_duplicates: bool = False,
    use_cache: bool = True,
    fidelity: str | None = None,
    calibration: str | None = None,
) -> SearchIndex:
    """The search index of the stored spectra (all absorbers, or ``elements``).

    Parameters
    ----------
    settings
        Which database; default the current settings.
    elements
        Absorbers to index; default all.
    criteria
        An extra MongoDB filter on the spectra (e.g. ``{"preset": "scf"}``).
    include_duplicates
        Also index spectra marked as duplicates of another (``duplicate_of``).
    use_cache
        Read and write the in-process and on-disk caches.
    fidelity
        ``"scf"``: correct the ``fast`` references towards the ``scf`` preset
        (:func:`xanesdb.ml.aligned.fit_fidelity_from_db`, the correction ``xanesdb train
        --fidelity scf`` applies), which brings their white line where measured spectra have it.
    calibration
        A computed -> measured calibration (:mod:`xanesdb.xas.calibration`; ``"k-edge"`` ships)
        applied to every reference after the fidelity correction: references look like
        measurements of themselves (FEFF's energy scale stretched, broadened, damped).

    Raises
    ------
    XanesdbUserError
        When no stored spectrum matches (none built yet, or an absorber the database lacks).

    Examples
    --------
    >>> index = load_search_index(elements=["Fe"])          # doctest: +SKIP
    >>> index.X.shape                                        # doctest: +SKIP
    (1432, 100)
    """
    from xanesdb.platform.settings import get_settings

    settings = settings or get_settings()
    index = _load_raw(settings, elements, criteria, include_duplicates, use_cache)
    if fidelity is not None and fidelity != "none":
        index = _corrected(index, settings, fidelity, use_cache)
    if calibration is not None and calibration != "none":
        index = _calibrated(index, calibration, use_cache)
    return index


def _calibrated(index: SearchIndex, name: str, use_cache: bool) -> SearchIndex:
    """The index with every row mapped by the computed -> measured calibration ``name``."""
    from xanesdb.xas.calibration import load_calibration

    try:
        cal = load_calibration(name)
    except ValueError as err:
        raise XanesdbUserError(str(err)) from None
    p = cal.params()
    key = f"{index.key}-cal-{p['shift']:g}_{p['stretch']:g}_{p['sigma']:g}_{p['damping']:g}"
    if use_cache and key in _MEMO:
        return _MEMO[key]
    out = SearchIndex(X=cal.apply(index.X, ALIGNED_GRID), meta=index.meta, e_half=index.e_half, key=key,
                      criteria=index.criteria, timings={**index.timings, "calibration": name})  # fmt: skip
    if use_cache:
        _remember(out)
    return out


def _corrected(index: SearchIndex, settings, target: str, use_cache: bool) -> SearchIndex:
    """The index with its ``fast`` rows corrected towards the ``target`` preset."""
    from xanesdb.ml.aligned import fit_fidelity_from_db

    key = f"{index.key}-fid-{target}"
    if use_cache and key in _MEMO:
        return _MEMO[key]
    warp = fit_fidelity_from_db(settings, "fast", target)
    X = index.X.copy()
    sel = index.meta["preset"] == "fast"
    if sel.any():
        X[sel] = warp.apply(X[sel], ALIGNED_GRID)
    out = SearchIndex(X=X.astype(np.float32), meta=index.meta, e_half=index.e_half, key=key, criteria=index.criteria,
                      timings={**index.timings, "fidelity": f"fast->{target} {warp.delta:g} eV"})  # fmt: skip
    if use_cache:
        _remember(out)
    return out


def _load_raw(settings, elements, criteria, include_duplicates, use_cache) -> SearchIndex:
    from xanesdb.platform.stores import get_database

    t0 = time.perf_counter()
    db = get_database(settings)
    crit = index_criteria(elements, criteria, include_duplicates)
    key = _state_key(db, crit)
    if use_cache and key in _MEMO:
        return _MEMO[key]
    cache = settings.HOME / "cache" / "search" / f"index-{key}.npz"
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                index = SearchIndex(X=z["X"], meta={f: z[f"meta_{f}"] for f in INDEX_FIELDS}, e_half=z["e_half"],
                                    key=key, criteria=crit,
                                    timings={"read_s": time.perf_counter() - t0, "cache_hit": 1.0})  # fmt: skip
            _remember(index)
            return index
        except (OSError, KeyError, ValueError) as err:  # a damaged cache file is rebuilt
            logger.warning("search index cache %s unreadable (%s); rebuilding", cache, err)
    proj = {"_id": 0, "mu_aligned": 1, "e_half": 1, **{f: 1 for f in INDEX_FIELDS}}
    rows, meta, e_half = [], {f: [] for f in INDEX_FIELDS}, []
    n_bad = 0
    for d in db["spectra"].find(crit, proj).sort("spectrum_id", 1):
        y = d.get("mu_aligned")
        if not y or len(y) != len(ALIGNED_GRID):
            n_bad += 1
            continue
        rows.append(y)
        for f in INDEX_FIELDS:
            v = d.get(f)
            meta[f].append("" if v is None else str(v))
        e_half.append(np.nan if d.get("e_half") is None else float(d["e_half"]))
    if not rows:
        what = f" of {', '.join(elements)}" if elements else ""
        raise XanesdbUserError(
            f"no aligned computed spectra{what} in the database; load and build them first "
            "(`xanesdb db load-bundled && xanesdb spectra build`)"
        )
    X = np.asarray(rows, dtype=np.float32)
    index = SearchIndex(X=X, meta={f: np.array(v, dtype=str) for f, v in meta.items()}, e_half=np.array(e_half),
                        key=key, criteria=crit,
                        timings={"read_s": time.perf_counter() - t0, "cache_hit": 0.0, "n_unusable": float(n_bad)})  # fmt: skip
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, X=X, e_half=index.e_half, **{f"meta_{f}": v for f, v in index.meta.items()})
        tmp.replace(cache)
        _remember(index)
    logger.info("search index %s: %d spectra in %.2f s", key, len(index), index.timings["read_s"])
    return index


def _remember(index: SearchIndex) -> None:
    _MEMO[index.key] = index
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
