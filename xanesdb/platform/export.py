"""Export a query's documents to Parquet (pyarrow) or JSON, for groups that do not use MongoDB.

One row per document (for ``spectra``: one row per spectrum); arrays such as ``energies`` and
``mu`` stay list columns (Parquet ``list<double>``); nested objects (a structure, FEFF cards)
become JSON text columns in Parquet so every row has the same column types. The output is
written to a temporary file beside ``out`` and renamed at the end, so a bad query, a full disk or
an interrupted export leaves nothing behind.

Examples
--------
>>> import pyarrow.parquet as pq                                   # doctest: +SKIP
>>> t = pq.read_table("fe_o6.parquet")                              # doctest: +SKIP
>>> t.column("mu")[0].values.to_numpy()                             # 100 floats  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from xanesdb.platform.errors import XanesdbUserError

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_FORMATS", "export_query", "check_export_args", "check_fields", "check_output_file", "write_text_output"]

EXPORT_FORMATS = ("parquet", "json")
_BATCH = 2000


def check_output_file(out: Path, option: str = "--out") -> None:
    """Refuse an output path that exists and is not a regular file (a FIFO, a device, a socket).

    Outputs are written to a temporary file and renamed over the target: renaming over a FIFO or
    a device node would replace it with a regular file (and a FIFO's reader would never see it).
    """
    import stat

    out = Path(out)
    try:
        mode = out.stat().st_mode  # follows a symbolic link to what it names
    except FileNotFoundError:
        return
    except OSError as err:
        raise XanesdbUserError(f"cannot use {option} {out} ({err.strerror or err}); choose another path") from None
    if stat.S_ISDIR(mode):
        raise XanesdbUserError(f"{out} is a folder; give a file name for {option}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise XanesdbUserError(f"{out} is {kind}; {option} writes only regular files, choose another path")


def _write_error(out: Path, err: OSError, option: str = "--out") -> XanesdbUserError:
    """The one-line error for an output file that could not be written."""
    hint = {errno.ENOSPC: "free some disk space", errno.EFBIG: "the file grew past the allowed size",
            errno.EROFS: "the folder is read-only", errno.EACCES: "no permission to write there",
            errno.EDQUOT: "the disk quota is used up"}.get(err.errno, f"choose another {option}")  # fmt: skip
    return XanesdbUserError(f"cannot write {out} ({err.strerror or err}); {hint}; nothing was written")


def write_text_output(out: Path, text: str, option: str = "--out") -> None:
    """Write ``text`` to the regular file ``out`` through a temporary file renamed over it."""
    out = Path(out)
    check_output_file(out, option)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(out, err, option) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_fields(collection: str, fields: list[str] | None) -> None:
    """Refuse a field the collection's documents cannot have (its schema forbids extra fields), so that
    a typo is an error instead of rows without that column; dotted paths are checked by their first part."""
    from xanesdb.schemas import DOCUMENT_FOR_COLLECTION

    schema = DOCUMENT_FOR_COLLECTION.get(collection)
    if schema is None or not fields:
        return
    known = set(schema.model_fields)
    unknown = [f for f in fields if f.strip().split(".")[0] not in known]
    if unknown:
        raise XanesdbUserError(f"{unknown[0]!r} is not a field of {collection}; give some of "
                               f"{', '.join(sorted(known))}")


def check_export_args(collection: str, fmt: str, out: Path) -> None:
    """Refuse a bad collection, format or output path before anything is read or written."""
    from xanesdb.platform.stores import COLLECTIONS

    if collection not in COLLECTIONS:
        raise XanesdbUserError(f"unknown collection {collection!r}; choose from {', '.join(COLLECTIONS)}")
    if fmt not in EXPORT_FORMATS:
        raise XanesdbUserError(f"unknown --format {fmt!r}; use parquet or json")
    out = Path(out)
    if out.is_dir():
        raise XanesdbUserError(f"{out} is a folder; give a file name such as spectra.{fmt}")
    check_output_file(out)
    if not out.parent.is_dir():
        raise XanesdbUserError(f"folder {out.parent} does not exist; create it or choose another --out")


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def _flatten_for_parquet(doc: dict[str, Any]) -> dict[str, Any]:
    """Nested objects -> JSON text (uniform column types); lists of scalars stay lists."""
    out = {}
    for k, v in doc.items():
        if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v)):
            out[k] = json.dumps(v, default=_json_default, sort_keys=True)
        else:
            out[k] = v
    return out


def _write_parquet(docs: Iterator[dict[str, Any]], tmp: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    schema = None
    n = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer, schema
        if not batch:
            return
        rows = [_flatten_for_parquet(d) for d in batch]
        if schema is None:
            # the schema from the first batch, with columns seen only as null given a type later
            table = pa.Table.from_pylist(rows)
            fields = [pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in table.schema]
            schema = pa.schema(fields)
            writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        cols = {name: [r.get(name) for r in rows] for name in schema.names}
        writer.write_table(pa.Table.from_pydict(cols, schema=schema))
        batch.clear()

    try:
        for d in docs:
            batch.append(d)
            n += 1
            if len(batch) >= _BATCH:
                flush()
        flush()
        if writer is None:  # no rows: an empty file with no columns
            pq.write_table(pa.table({}), tmp)
    finally:
        if writer is not None:
            writer.close()
    return n


def _write_json(docs: Iterator[dict[str, Any]], tmp: Path) -> int:
    """A JSON array of objects, written as it streams."""
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("[")
        for d in docs:
            fh.write(("\n" if n == 0 else ",\n") + json.dumps(d, default=_json_default, allow_nan=False))
            n += 1
        fh.write("\n]\n")
    return n


def export_query(
    settings: Any,
    criteria: dict[str, Any],
    out: Path,
    collection: str = "spectra",
    fmt: str = "parquet",
    fields: list[str] | None = None,
    limit: int = 0,
) -> int:
    """Write the documents matching ``criteria`` to ``out``; returns the number of rows."""
    from xanesdb.platform.queries import check_filter
    from xanesdb.platform.stores import COLLECTIONS, get_database

    out = Path(out)
    check_export_args(collection, fmt, out)
    check_fields(collection, fields)
    check_filter(criteria)
    key = COLLECTIONS[collection][0]
    db = get_database(settings, ensure=False)
    projection: dict[str, int] = {"_id": 0}
    if fields:
        projection = {f: 1 for f in fields} | {"_id": 0}
    cursor = db[collection].find(criteria, projection).sort(key, 1)
    if limit:
        cursor = cursor.limit(limit)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        n = (_write_parquet if fmt == "parquet" else _write_json)(iter(cursor), tmp)
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(out, err) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("exported %d %s to %s", n, collection, out)
    return n
