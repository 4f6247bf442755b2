"""Datasets from a Mongo query on the ``spectra`` collection.

Models see arrays, never Mongo (like scikit-learn). :func:`load_dataset` reads only the fields
it needs (a projection), excludes duplicates and failed spectra by default, records the query
and a fingerprint of the exact documents (sorted ``spectrum_id`` + ``last_updated``), and keeps
a local ``.npz`` cache keyed by that fingerprint under ``XANESDB_HOME/cache/ml``. The label is
any field (``lce_class`` now; coordination numbers or bond lengths later), so nothing here
assumes classification. :class:`SpectraBatches` streams batches from the database for data
larger than memory; it pickles (the client is opened lazily in each worker).

Examples
--------
>>> ds = load_dataset({"element": "Cu", "lce_class": {"$in": ["T4", "S5", "O6"]}})  # doctest: +SKIP
>>> ds.X.shape, ds.classes                                                            # doctest: +SKIP
((2100, 100), ('O6', 'S5', 'T4'))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings

logger = logging.getLogger(__name__)

__all__ = [
    "XanesDataset",
    "full_criteria",
    "fingerprint_of",
    "load_dataset",
    "max_scale",
    "SpectraBatches",  # noqa: F822 - made on first access (module __getattr__)
]

#: fields read for a dataset besides the label (the projection)
BASE_FIELDS = ("spectrum_id", "material_id", "grid_name", "mu", "last_updated")


def max_scale(X: np.ndarray) -> np.ndarray:
    """Scale each spectrum (row) to a maximum of 1, as in the paper."""
    X = np.asarray(X, dtype=np.float32)
    m = X.max(axis=-1, keepdims=True)
    if np.any(m <= 0):
        raise XanesdbUserError("a spectrum has no positive value; it cannot be scaled to max 1")
    return X / m


@dataclass(frozen=True)
class XanesDataset:
    """Spectra on one energy grid with a label per row.

    Attributes
    ----------
    X
        (n_spectra, n_energies) float32, each row scaled to max 1.
    labels
        Raw label values per row (strings for classes, floats for regression targets).
    groups
        ``material_id`` per row, for grouped splits.
    spectrum_ids
        Keys of the rows, sorted.
    energies
        Grid energies (eV).
    grid_name
        Name of the grid shared by all rows.
    query
        The user's filter (before the default exclusions were added).
    criteria
        The full filter that was run.
    label_field
        Field learned.
    fingerprint
        Hash of the sorted ``spectrum_id`` and ``last_updated`` of the rows.
    """

    X: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    spectrum_ids: tuple[str, ...]
    energies: np.ndarray
    grid_name: str
    query: dict[str, Any]
    criteria: dict[str, Any]
    label_field: str
    fingerprint: str
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.spectrum_ids)

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted distinct labels (for classification)."""
        return tuple(sorted({str(v) for v in self.labels}))

    def encode(self, classes: tuple[str, ...] | None = None) -> np.ndarray:
        """Integer class index per row (classification)."""
        classes = classes or self.classes
        index = {c: i for i, c in enumerate(classes)}
        try:
            return np.array([index[str(v)] for v in self.labels], dtype=np.int64)
        except KeyError as err:
            raise XanesdbUserError(f"label {err.args[0]!r} is not one of the classes {classes}") from None


def full_criteria(
    query: dict[str, Any], label_field: str = "lce_class", include_duplicates: bool = False,
    default_scale: bool = True,
) -> dict[str, Any]:
    """The user's filter plus the default exclusions (duplicates, failed, missing label).

    With ``default_scale`` (the paper representation, on absolute grids) spectra of the presets
    on an energy scale of their own (``scf``, ``mp``; their own grids) are left out unless the
    query names ``preset`` or ``grid_name``, so an absorber's query selects one grid as before.
    """
    from xanesdb.schemas.spectrum import SEPARATE_SCALE_PRESETS

    parts: list[dict[str, Any]] = [query] if query else []
    if default_scale and not any(k in json.dumps(query or {}) for k in ('"preset"', '"grid_name"')):
        parts.append({"preset": {"$nin": list(SEPARATE_SCALE_PRESETS)}})
    parts.append({label_field: {"$ne": None}})
    parts.append({"state": {"$ne": "failed"}})
    if not include_duplicates:
        parts.append({"duplicate_of": None})
    return {"$and": parts}


def fingerprint_of(ids_updated: list[tuple[str, Any]]) -> str:
    """sha256 (first 16 hex) of sorted ``(spectrum_id, last_updated)`` pairs."""
    h = hashlib.sha256()
    for sid, updated in sorted(ids_updated, key=lambda t: t[0]):
        stamp = updated.isoformat() if hasattr(updated, "isoformat") else str(updated)
        h.update(f"{sid}\t{stamp}\n".encode())
    return h.hexdigest()[:16]


def _cache_dir(settings: XanesdbSettings) -> Path:
    return settings.HOME / "cache" / "ml"


#: how :func:`load_dataset` decides that a cached dataset still holds what the query selects
CACHE_CHECKS = ("changes", "fingerprint")


def _entry_key(criteria: dict[str, Any], label_field: str, db_id: str) -> str:
    """Name of a query's cache entry: the full criteria, label and database (not the data)."""
    blob = json.dumps({"criteria": criteria, "label": label_field, "db": db_id}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _db_id(collection: Any) -> str:
    """Which database a collection is in (address + names), for cache entry names."""
    try:
        address = collection.database.client.address
    except Exception:  # noqa: BLE001 - mongomock or a client that has not connected
        address = None
    return f"{address}/{collection.database.name}/{collection.name}"


def _newest_stamp(docs: list[dict[str, Any]]) -> Any:
    stamps = [d["last_updated"] for d in docs if d.get("last_updated") is not None]
    return max(stamps) if stamps else None


def _changed_since(collection: Any, stamp: Any) -> bool:
    """Whether any document of the collection was written after ``stamp`` (one index probe)."""
    if stamp is None:
        return True
    return collection.find_one({"last_updated": {"$gt": stamp}}, {"_id": 1}) is not None


def _newest_in_collection(collection: Any, after: Any) -> Any:
    """The newest ``last_updated`` of the whole collection, knowing it is later than ``after``."""
    newer = [d["last_updated"] for d in collection.find({"last_updated": {"$gt": after}}, {"_id": 0, "last_updated": 1})]
    return max(newer) if newer else after


def _read_entry(path: Path) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):  # a torn or foreign file: read the database instead
        return None


def _write_entry(path: Path, **arrays: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # uncompressed: spectra barely compress, and loading is then a copy
    tmp.replace(path)


def _stamp_array(stamp: Any) -> np.ndarray:
    return np.array("" if stamp is None else stamp.isoformat())


def _stamp_from(arr: np.ndarray) -> Any:
    from datetime import datetime

    s = str(arr)
    return datetime.fromisoformat(s) if s else None


def _grid_energies(collection: Any, spectrum_id: str) -> np.ndarray:
    first = collection.find_one({"spectrum_id": spectrum_id}, {"_id": 0, "energies": 1})
    return np.asarray(first["energies"], dtype=np.float64)


def load_dataset(
    query: dict[str, Any],
    settings: XanesdbSettings | None = None,
    *,
    label_field: str = "lce_class",
    include_duplicates: bool = False,
    use_cache: bool = True,
    collection: Any = None,
    cache_check: str = "changes",
) -> XanesDataset:
    """Read the spectra matching ``query`` into arrays.

    One query reads every field needed (a projection of the ids, stamps, label, material, grid
    name and ``mu``); the fingerprint is computed from that same read, and the energies come from
    one indexed lookup. Arrays are cached per query under ``HOME/cache/ml`` and re-used while the
    database has not changed.

    Parameters
    ----------
    query
        Mongo filter on ``spectra`` (as given by the user; recorded with every run).
    settings
        xanesdb settings (database and ``HOME`` for the cache); read from the environment if None.
    label_field
        Field of the spectrum document to learn (any scalar field).
    include_duplicates
        Keep spectra marked ``duplicate_of`` another.
    use_cache
        Read and write ``HOME/cache/ml/q-<query hash>-<label>.npz``.
    collection
        A pymongo collection to read instead of the configured ``spectra`` (tests).
    cache_check
        How a cached dataset is known to be current. ``"changes"`` (default): one index probe for
        any spectrum written after the newest ``last_updated`` the collection held when the entry
        was checked (about a millisecond; every xanesdb writer stamps ``last_updated``). When the
        probe finds newer documents, the entry is checked by its fingerprint and re-used if that
        still matches. Deleting spectra by hand, or a writer whose clock runs behind, is not seen
        by the probe: the cached rows (and the fingerprint recorded with them) are then those of
        the last read. ``"fingerprint"``: always read the ids and stamps of the matching spectra
        and compare fingerprints (exact, but it costs a query over the matching documents).

    Returns
    -------
    XanesDataset

    Examples
    --------
    >>> ds = load_dataset({"element": "Cu", "grid_name": "Cu-K-xanesdb-v1"})  # doctest: +SKIP
    >>> ds.X.shape, ds.timings["cache_hit"]                                    # doctest: +SKIP
    ((723, 100), 0.0)
    """
    import time

    from xanesdb.platform.settings import get_settings

    if cache_check not in CACHE_CHECKS:
        raise XanesdbUserError(f"cache_check must be one of {CACHE_CHECKS}, not {cache_check!r}")
    settings = settings or get_settings()
    if collection is None:  # a connection of its own, closed at the end (reads only: nothing to create)
        from xanesdb.platform.stores import get_database

        db = get_database(settings, ensure=False)
        try:
            return load_dataset(query, settings, label_field=label_field, include_duplicates=include_duplicates,
                                use_cache=use_cache, collection=db["spectra"], cache_check=cache_check)
        finally:
            db.client.close()
    criteria = full_criteria(query, label_field, include_duplicates)
    t0 = time.perf_counter()
    safe_label = "".join(c if c.isalnum() or c in "_-" else "_" for c in label_field)
    entry = _cache_dir(settings) / f"q-{_entry_key(criteria, label_field, _db_id(collection))}-{safe_label}.npz"

    def from_entry(z: dict[str, Any], fp_s: float, how: str) -> XanesDataset:
        return XanesDataset(
            X=z["X"], labels=z["labels"], groups=z["groups"], spectrum_ids=tuple(z["spectrum_ids"].tolist()),
            energies=z["energies"], grid_name=str(z["grid_name"]), query=query, criteria=criteria,
            label_field=label_field, fingerprint=str(z["fingerprint"]),
            timings={"fingerprint_s": fp_s, "read_s": time.perf_counter() - t0 - fp_s, "cache_hit": 1.0,
                     "cache_check_" + how: 1.0},
        )  # fmt: skip

    z = _read_entry(entry) if use_cache and entry.is_file() else None
    if z is not None:
        seen = _stamp_from(z["checked_stamp"])
        if cache_check == "changes" and not _changed_since(collection, seen):
            logger.info("dataset %s from cache %s (no spectrum written since)", z["fingerprint"], entry)
            return from_entry(z, time.perf_counter() - t0, "changes")
        # something was written (or an exact check was asked for): compare fingerprints
        keys = list(collection.find(criteria, {"_id": 0, "spectrum_id": 1, "last_updated": 1}))
        if keys and fingerprint_of([(d["spectrum_id"], d.get("last_updated")) for d in keys]) == str(z["fingerprint"]):
            t_fp = time.perf_counter() - t0
            if cache_check == "changes":  # the collection's newest stamp now: the next probe is one lookup again
                z["checked_stamp"] = _stamp_array(_newest_in_collection(collection, seen))
                _write_entry(entry, **z)
            return from_entry(z, t_fp, "fingerprint")
    # one read of everything needed, in the server's order; sorted here
    projection = {"_id": 0, **{f: 1 for f in BASE_FIELDS}, label_field: 1}
    docs = list(collection.find(criteria, projection, batch_size=10_000))
    t_read = time.perf_counter() - t0
    if not docs:
        raise XanesdbUserError(
            f"no spectra match {json.dumps(query)} with a non-null {label_field!r} (duplicates "
            "excluded); check the filter with `xanesdb db query -c spectra '<filter>'`"
        )
    docs.sort(key=lambda d: d["spectrum_id"])
    grids = {d["grid_name"] for d in docs}
    if len(grids) > 1:
        raise XanesdbUserError(
            f"the query mixes energy grids {sorted(grids)}; add e.g. "
            f'{{"grid_name": "{sorted(grids)[0]}"}} (or one element) to the filter'
        )
    grid_name = grids.pop()
    energies = _grid_energies(collection, docs[0]["spectrum_id"])
    mus = [d["mu"] for d in docs]
    lengths = {len(m) for m in mus}
    if lengths != {len(energies)}:
        raise XanesdbUserError(f"spectra on grid {grid_name} have {sorted(lengths)} points, expected {len(energies)}")
    X = max_scale(np.array(mus, dtype=np.float32))
    labels = np.array([d[label_field] for d in docs])
    groups = np.array([d["material_id"] for d in docs])
    ids = tuple(d["spectrum_id"] for d in docs)
    fp = fingerprint_of([(d["spectrum_id"], d.get("last_updated")) for d in docs])
    ds = XanesDataset(
        X=X, labels=labels, groups=groups, spectrum_ids=ids, energies=energies,
        grid_name=grid_name, query=query, criteria=criteria, label_field=label_field,
        fingerprint=fp, timings={"fingerprint_s": 0.0, "read_s": time.perf_counter() - t0,
                                 "server_s": t_read, "cache_hit": 0.0},
    )  # fmt: skip
    if use_cache:
        # the newest stamp of these rows: a later write anywhere in the collection sends the next
        # load through the fingerprint check once, which then records the collection's newest
        _write_entry(entry, X=X, labels=labels, groups=groups, spectrum_ids=np.array(ids), energies=energies,
                     grid_name=np.array(grid_name), fingerprint=np.array(fp),
                     checked_stamp=_stamp_array(_newest_stamp(docs)))  # fmt: skip
    logger.info("dataset %s: %d spectra read in %.2f s", fp, len(ids), ds.timings["read_s"])
    return ds


def _make_spectra_batches() -> type:
    """The :class:`SpectraBatches` class, made on first use: its base is Keras's, and importing
    Keras (and its backend) takes seconds that reading a dataset into arrays does not need."""
    import keras

    class SpectraBatches(keras.utils.PyDataset):
        """A ``keras.utils.PyDataset`` that reads batches of spectra from MongoDB on demand.

        For data larger than memory: only the ``spectrum_id`` list is held; each batch is one
        ``$in`` query with a projection of ``mu`` and the label. Picklable (the client is opened
        lazily and dropped on pickling), so ``workers>1, use_multiprocessing=True`` works.

        Parameters
        ----------
        uri, db_name
            Where the ``spectra`` collection is.
        spectrum_ids
            Rows, in order.
        label_field
            Field learned.
        classes
            Class names for one-hot targets; None yields the raw label values (regression).
        batch_size
            Rows per batch.
        shuffle_seed
            When given, rows are reshuffled at the end of every epoch.
        """

        def __init__(
            self,
            uri: str,
            db_name: str,
            spectrum_ids: list[str],
            label_field: str = "lce_class",
            classes: tuple[str, ...] | None = None,
            batch_size: int = 32,
            shuffle_seed: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.uri = uri
            self.db_name = db_name
            self.spectrum_ids = list(spectrum_ids)
            self.label_field = label_field
            self.classes = tuple(classes) if classes else None
            self.batch_size = batch_size
            self.shuffle_seed = shuffle_seed
            self._epoch = 0
            self._order = np.arange(len(self.spectrum_ids))
            self._client = None

        def __getstate__(self) -> dict[str, Any]:
            state = self.__dict__.copy()
            state["_client"] = None
            return state

        def _collection(self):
            if self._client is None:
                import pymongo

                self._client = pymongo.MongoClient(self.uri)
            return self._client[self.db_name]["spectra"]

        def __len__(self) -> int:
            return int(np.ceil(len(self.spectrum_ids) / self.batch_size))

        def __getitem__(self, idx: int):
            rows = self._order[idx * self.batch_size : (idx + 1) * self.batch_size]
            ids = [self.spectrum_ids[i] for i in rows]
            found = {
                d["spectrum_id"]: d
                for d in self._collection().find(
                    {"spectrum_id": {"$in": ids}}, {"_id": 0, "spectrum_id": 1, "mu": 1, self.label_field: 1}
                )
            }
            missing = [i for i in ids if i not in found]
            if missing:
                raise RuntimeError(f"{len(missing)} spectra vanished from the database, e.g. {missing[0]}")
            X = max_scale(np.array([found[i]["mu"] for i in ids], dtype=np.float32))
            labels = [found[i][self.label_field] for i in ids]
            if self.classes is None:
                return X, np.asarray(labels, dtype=np.float32)
            index = {c: k for k, c in enumerate(self.classes)}
            y = np.zeros((len(ids), len(self.classes)), dtype=np.float32)
            y[np.arange(len(ids)), [index[str(v)] for v in labels]] = 1.0
            return X, y

        def on_epoch_end(self) -> None:
            if self.shuffle_seed is not None:
                self._epoch += 1
                rng = np.random.default_rng(self.shuffle_seed + self._epoch)
                self._order = rng.permutation(len(self.spectrum_ids))

    SpectraBatches.__module__ = __name__
    SpectraBatches.__qualname__ = "SpectraBatches"
    return SpectraBatches


def __getattr__(name: str) -> Any:
    if name == "SpectraBatches":
        cls = _make_spectra_batches()
        globals()["SpectraBatches"] = cls  # pickles by reference to this module's attribute
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
