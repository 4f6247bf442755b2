"""Database snapshots: dump collections to gzipped JSON Lines and load them back by upsert.

The bundled database shipped in ``xanesdb/data/db/`` is such a snapshot (``xanesdb db
load-bundled``); ``xanesdb db dump`` writes one, e.g. to commit the results of a long FEFF campaign
as it grows. Every document is validated by its pydantic schema before it is written, and
writes are upserts on the collection's key, so loading twice changes nothing.

A dump of ``models`` carries the weights too: each run's ``.keras`` file from GridFS
(``model_files``) goes to ``model_files/<run_id>.keras`` beside ``models.jsonl.gz``, and loading
puts it back into GridFS and points the run at it, so a loaded model predicts as the dumped one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.stores import COLLECTIONS, get_database

logger = logging.getLogger(__name__)

__all__ = ["BUNDLED_DB_DIR", "dump_collections", "load_snapshot", "iter_snapshot", "SNAPSHOT_ORDER"]

BUNDLED_DB_DIR = Path(__file__).resolve().parents[1] / "data" / "db"
#: load order: parents before children
SNAPSHOT_ORDER = ("structures", "sites", "feff_tasks", "spectra", "models")
_JSON_OPTIONS = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=True)
#: GridFS bucket of the models' .keras files (the registry's, xanesdb.ml.registry.GRIDFS_BUCKET)
WEIGHTS_BUCKET = "model_files"
#: folder of a snapshot that holds the models' .keras files
WEIGHTS_DIR = "model_files"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,150}$")


def weights_file_name(run_id: str) -> str:
    """File name of a run's weights in a snapshot: the run id, or its hash when unsafe as a name."""
    if _SAFE_NAME.match(run_id) and ".." not in run_id:
        return f"{run_id}.keras"
    return f"run-{hashlib.sha256(run_id.encode()).hexdigest()[:24]}.keras"


def _dump_weights(db, docs: list[dict[str, Any]], folder: Path) -> int:
    """Write the GridFS .keras file of every complete run in ``docs`` into ``folder``."""
    import gridfs
    from bson import ObjectId
    from bson.errors import InvalidId

    fs = gridfs.GridFS(db, WEIGHTS_BUCKET)
    folder.mkdir()
    n = 0
    for d in docs:
        fid = d.get("weights_file_id")
        if d.get("state") != "complete" or not fid:
            continue
        try:
            data = fs.get(ObjectId(fid)).read()
        except (gridfs.errors.NoFile, InvalidId):
            raise XanesdbUserError(f"model {d.get('run_id')!r} is complete but its weights ({fid}) are not in "
                                   f"GridFS {WEIGHTS_BUCKET}; train it again or leave models out of the dump") from None
        (folder / weights_file_name(d["run_id"])).write_bytes(data)
        n += 1
    return n


def _load_weights(db, docs: list[dict[str, Any]], folder: Path) -> int:
    """Put each run's snapshot .keras file into GridFS and point its document at it."""
    import gridfs

    fs = gridfs.GridFS(db, WEIGHTS_BUCKET)
    files = {}
    for d in docs:
        f = folder / weights_file_name(d["run_id"])
        if d.get("state") == "complete" and f.is_file():
            if not zipfile.is_zipfile(f):
                raise XanesdbUserError(f"{f} is not a .keras file (not a zip archive); the snapshot is damaged")
            files[d["run_id"]] = f
    for run_id, f in files.items():
        new_id = fs.put(f.read_bytes(), filename=f"{run_id}.keras", run_id=run_id)
        db["models"].update_one({"run_id": run_id}, {"$set": {"weights_file_id": str(new_id), "state": "complete"}})
        for old in db[f"{WEIGHTS_BUCKET}.files"].find({"run_id": run_id, "_id": {"$ne": new_id}}, {"_id": 1}):
            fs.delete(old["_id"])
    missing = [d["run_id"] for d in docs if d.get("state") == "complete" and d["run_id"] not in files]
    if missing:
        logger.warning("%d models in the snapshot have no weights file in %s (e.g. %s)", len(missing), folder, missing[0])
    return len(files)


def _schema_for(collection: str):
    from xanesdb.schemas import DOCUMENT_FOR_COLLECTION

    return DOCUMENT_FOR_COLLECTION[collection]


def iter_snapshot(path: Path) -> Iterator[dict[str, Any]]:
    """Documents of one ``<collection>.jsonl.gz`` file."""
    n = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json_util.loads(line, json_options=_JSON_OPTIONS)
                except (ValueError, json.JSONDecodeError) as err:
                    raise XanesdbUserError(f"{path}: line {n} is not valid JSON ({err}); the snapshot is damaged") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:  # not gzip, cut short, not UTF-8
        raise XanesdbUserError(f"{path}: not a complete gzip file of JSON lines (after line {n}: "
                               f"{str(err) or type(err).__name__}); the snapshot is damaged, dump it again") from None


def _check_gzip(path: Path) -> None:
    """Raise :class:`XanesdbUserError` unless ``path`` decompresses whole (a cheap pass before any write)."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as err:
        raise XanesdbUserError(f"{path}: not a complete gzip file ({str(err) or type(err).__name__}); the snapshot "
                               "is damaged, dump it again; nothing was loaded") from None


def dump_collections(
    settings,
    out_dir: Path,
    collections: Iterable[str] = SNAPSHOT_ORDER,
    criteria: dict[str, dict] | None = None,
) -> dict[str, int]:
    """Write each collection (optionally filtered) to ``out_dir/<collection>.jsonl.gz``, sorted by key."""
    from xanesdb.platform.export import check_output_file

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise XanesdbUserError(f"{out_dir} is a file; give a folder for the snapshot")
    for name in collections:
        check_output_file(out_dir / f"{name}.jsonl.gz", "db dump")
    db = get_database(settings, ensure=False)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    tmps: dict[str, Path] = {}
    weights_tmp = out_dir / f".{WEIGHTS_DIR}.{os.getpid()}.tmp"
    try:
        # every collection to a temporary file first: a refused query or a full disk leaves nothing
        for name in collections:
            key = COLLECTIONS[name][0]
            tmp = tmps[name] = out_dir / f".{name}.jsonl.gz.{os.getpid()}.tmp"
            n = 0
            runs = []
            # mtime=0: the same documents give a byte-identical file (clean git diffs)
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                for doc in db[name].find((criteria or {}).get(name, {}), {"_id": 0}).sort(key, 1):
                    gz.write((json_util.dumps(doc, json_options=_JSON_OPTIONS, sort_keys=True) + "\n").encode())
                    n += 1
                    if name == "models":
                        runs.append({k: doc.get(k) for k in ("run_id", "state", "weights_file_id")})
            counts[name] = n
            if name == "models":
                counts[WEIGHTS_DIR] = _dump_weights(db, runs, weights_tmp)
        for name, tmp in tmps.items():
            tmp.replace(out_dir / f"{name}.jsonl.gz")
        if weights_tmp.exists():
            final = out_dir / WEIGHTS_DIR
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists() or final.is_symlink():
                final.unlink()
            weights_tmp.replace(final)
    except BaseException as err:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        shutil.rmtree(weights_tmp, ignore_errors=True)
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        if isinstance(err, OSError):
            raise XanesdbUserError(f"cannot write the snapshot in {out_dir} ({err.strerror or err}); free space "
                                   "or choose another folder; nothing was written") from None
        raise
    return counts


def load_snapshot(
    settings,
    snapshot_dir: Path = BUNDLED_DB_DIR,
    batch_size: int = 1000,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Upsert every document of a snapshot into the database; returns documents per collection.

    All documents of a collection are validated before its first write, so a damaged snapshot
    writes nothing of that collection.
    """
    snapshot_dir = Path(snapshot_dir)
    # <collection>.jsonl.gz, then its parts <collection>.<part>.jsonl.gz (e.g. feff_tasks.scf.jsonl.gz:
    # tasks added later ship beside the main file instead of rewriting it)
    files = []
    for c in SNAPSHOT_ORDER:
        if (snapshot_dir / f"{c}.jsonl.gz").exists():
            files.append(snapshot_dir / f"{c}.jsonl.gz")
        files.extend(sorted(snapshot_dir.glob(f"{c}.*.jsonl.gz")))
    if not files:
        raise XanesdbUserError(f"no snapshot files (<collection>.jsonl.gz) in {snapshot_dir}")
    for path in files:  # a cut-short or foreign file stops the load before its first write
        _check_gzip(path)
    db = get_database(settings)
    counts: dict[str, int] = {}
    for path in files:
        name = path.name.split(".")[0]
        key = COLLECTIONS[name][0]
        schema = _schema_for(name)
        docs = []
        for i, d in enumerate(iter_snapshot(path), 1):
            try:
                docs.append(schema.from_mongo(d).to_mongo())
            except ValueError as err:
                which = f"document {d.get(key)!r}" if d.get(key) is not None else f"document {i} (no {key})"
                raise XanesdbUserError(
                    f"{path}: {which} does not match the {name} schema: "
                    f"{str(err).splitlines()[0]}"
                ) from None
        # into an empty collection plain inserts are much faster than upserts on the local server;
        # a batch that meets a key already there (a concurrent or
        # interrupted load) is written again as upserts, so loading stays idempotent
        fresh = db[name].count_documents({}, limit=1) == 0
        for i in range(0, len(docs), batch_size):
            batch = docs[i : i + batch_size]
            if fresh:
                try:
                    db[name].insert_many([dict(d) for d in batch], ordered=False)
                except BulkWriteError as err:
                    if any(e.get("code") != 11000 for e in err.details.get("writeErrors", [])):
                        raise
                    fresh = False
            if not fresh:
                db[name].bulk_write([ReplaceOne({key: d[key]}, d, upsert=True) for d in batch], ordered=False)
            if progress:
                progress(name, len(batch))
        counts[name] = counts.get(name, 0) + len(docs)
        logger.info("loaded %d %s from %s", len(docs), name, path)
        if name == "models" and (snapshot_dir / WEIGHTS_DIR).is_dir():
            counts[WEIGHTS_DIR] = counts.get(WEIGHTS_DIR, 0) + _load_weights(db, docs, snapshot_dir / WEIGHTS_DIR)
    return counts
