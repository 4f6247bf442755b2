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
    "SpectraBatches",
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


def load_dataset(
    query: dict[str, Any],
    settings: XanesdbSettings | None = None,
    *,
    label_field: str = "lce_class",
    include_duplicates: bool = False,
    use_cache: bool = True,
    collection: Any = None,
) -> XanesDataset:
    """Read the spectra matching ``query`` into arrays.

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
        Read/write ``HOME/cache/ml/<fingerprint>-<label>.npz``.
    collection
        A pymongo collection to read instead of the configured ``spectra`` (tests).

    Returns
    -------
    XanesDataset
    """
    import time

    from xanesdb.platform.settings import get_settings

    settings = settings or get_settings()
    if collection is None:
        from xanesdb.platform.stores import get_database

        collection = get_database(settings)["spectra"]
    criteria = full_criteria(query, label_field, include_duplicates)
    t0 = time.perf_counter()
    # fingerprint from a light projection first: decides whether the cache is valid
    keys = [
        (d["spectrum_id"], d.get("last_updated"))
        for d in collection.find(criteria, {"_id": 0, "spectrum_id": 1, "last_updated": 1})
    ]
    if not keys:
        raise XanesdbUserError(
            f"no spectra match {json.dumps(query)} with a non-null {label_field!r} (duplicates "
            "excluded); check the filter with `xanesdb db query -c spectra '<filter>'`"
        )
    fp = fingerprint_of(keys)
    t_fp = time.perf_counter() - t0
    safe_label = "".join(c if c.isalnum() or c in "_-" else "_" for c in label_field)
    cache = _cache_dir(settings) / f"{fp}-{safe_label}.npz"
    if use_cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            ds = XanesDataset(
                X=z["X"], labels=z["labels"], groups=z["groups"],
                spectrum_ids=tuple(z["spectrum_ids"].tolist()), energies=z["energies"],
                grid_name=str(z["grid_name"]), query=query, criteria=criteria,
                label_field=label_field, fingerprint=fp,
                timings={"fingerprint_s": t_fp, "read_s": time.perf_counter() - t0 - t_fp,
                         "cache_hit": 1.0},
            )  # fmt: skip
        logger.info("dataset %s from cache %s", fp, cache)
        return ds
    projection = {"_id": 0, **{f: 1 for f in BASE_FIELDS}, label_field: 1}
    docs = sorted(collection.find(criteria, projection), key=lambda d: d["spectrum_id"])
    grids = {d["grid_name"] for d in docs}
    if len(grids) > 1:
        raise XanesdbUserError(
            f"the query mixes energy grids {sorted(grids)}; add e.g. "
            f'{{"grid_name": "{sorted(grids)[0]}"}} (or one element) to the filter'
        )
    grid_name = grids.pop()
    first = collection.find_one({"spectrum_id": docs[0]["spectrum_id"]}, {"_id": 0, "energies": 1})
    energies = np.asarray(first["energies"], dtype=np.float64)
    lengths = {len(d["mu"]) for d in docs}
    if lengths != {len(energies)}:
        raise XanesdbUserError(f"spectra on grid {grid_name} have {sorted(lengths)} points, expected {len(energies)}")
    X = max_scale(np.array([d["mu"] for d in docs], dtype=np.float32))
    labels = np.array([d[label_field] for d in docs])
    groups = np.array([d["material_id"] for d in docs])
    ids = tuple(d["spectrum_id"] for d in docs)
    fp_read = fingerprint_of([(d["spectrum_id"], d.get("last_updated")) for d in docs])
    if fp_read != fp:  # written between the two reads
        fp = fp_read
        cache = _cache_dir(settings) / f"{fp}-{safe_label}.npz"
    ds = XanesDataset(
        X=X, labels=labels, groups=groups, spectrum_ids=ids, energies=energies,
        grid_name=grid_name, query=query, criteria=criteria, label_field=label_field,
        fingerprint=fp, timings={"fingerprint_s": t_fp, "read_s": time.perf_counter() - t0 - t_fp,
                                 "cache_hit": 0.0},
    )  # fmt: skip
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp, X=X, labels=labels, groups=groups, spectrum_ids=np.array(ids),
            energies=energies, grid_name=np.array(grid_name),
        )  # fmt: skip
        tmp.replace(cache)
    logger.info("dataset %s: %d spectra read in %.2f s", fp, len(ids), ds.timings["read_s"])
    return ds


def _pydataset_base():
    import keras

    return keras.utils.PyDataset


class SpectraBatches(_pydataset_base()):
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
