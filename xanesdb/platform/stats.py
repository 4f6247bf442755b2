"""Database statistics and queries printed for people (``xanesdb db stats``/``db query``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bson import json_util
from rich.table import Table

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.stores import COLLECTIONS, get_database

if TYPE_CHECKING:
    from rich.console import Console

    from xanesdb.platform.settings import XanesdbSettings

__all__ = ["collection_counts", "class_counts", "print_stats", "run_query"]

ABSORBERS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
CLASSES = ("T4", "S5", "O6")


def collection_counts(db) -> dict[str, int]:
    """Documents per xanesdb collection."""
    return {name: db[name].count_documents({}) for name in COLLECTIONS}


def class_counts(db, collection: str = "sites", match: dict | None = None) -> dict[tuple[str, str], int]:
    """(element, lce_class or 'other') -> count, by an aggregation on the server."""
    pipeline: list[dict[str, Any]] = []
    if match:
        pipeline.append({"$match": match})
    pipeline.append({"$group": {"_id": {"e": "$element", "c": "$lce_class"}, "n": {"$sum": 1}}})
    out: dict[tuple[str, str], int] = {}
    for row in db[collection].aggregate(pipeline):
        key = (row["_id"].get("e"), row["_id"].get("c") or "other")
        out[key] = out.get(key, 0) + row["n"]
    return out


def _class_table(title: str, counts: dict[tuple[str, str], int]) -> Table:
    table = Table(title=title)
    table.add_column("element")
    for c in (*CLASSES, "other", "total"):
        table.add_column(c, justify="right")
    elements = [e for e in ABSORBERS if any(k[0] == e for k in counts)]
    elements += sorted({k[0] for k in counts if k[0] not in ABSORBERS and k[0]})
    for e in elements:
        row = [counts.get((e, c), 0) for c in (*CLASSES, "other")]
        table.add_row(e, *map(str, row), str(sum(row)))
    return table


def print_stats(console: Console, settings: XanesdbSettings) -> None:
    """Print counts per collection and per element x class."""
    db = get_database(settings, ensure=False)
    table = Table(title="collections")
    table.add_column("collection")
    table.add_column("documents", justify="right")
    for name, n in collection_counts(db).items():
        table.add_row(name, str(n))
    console.print(table)
    console.print(_class_table("unique sites per element x class", class_counts(db, "sites")))
    if db["spectra"].estimated_document_count():
        console.print(
            _class_table("spectra kept (not duplicates)", class_counts(db, "spectra", {"duplicate_of": None}))
        )


def run_query(
    console: Console,
    settings: XanesdbSettings,
    collection: str,
    criteria: dict,
    fmt: str = "table",
    limit: int = 20,
    fields: list[str] | None = None,
) -> int:
    """Print the documents matching ``criteria``; returns how many were printed."""
    if collection not in COLLECTIONS and collection not in ("fs.files",):
        raise XanesdbUserError(
            f"unknown collection {collection!r}; choose one of {', '.join(COLLECTIONS)}"
        )
    db = get_database(settings, ensure=False)
    projection = {f: 1 for f in fields} if fields else None
    if projection is None and fmt == "table":
        # the bulky fields stay out of a table
        projection = {"structure": 0, "mu": 0, "energies": 0, "mu0": 0, "chi": 0, "raw": 0}
    from pymongo.errors import OperationFailure

    try:
        cursor = db[collection].find(criteria, projection).limit(max(limit, 0))
        docs = list(cursor)
    except OperationFailure as err:
        raise XanesdbUserError(f"the server refused the query: {(err.details or {}).get('errmsg', err)}; check the "
                              "filter (JSON field filters and operators MongoDB knows)") from None
    if fmt == "jsonl":
        for d in docs:
            d.pop("_id", None)
            print(json.dumps(json.loads(json_util.dumps(d)), default=str))
        return len(docs)
    keys: list[str] = fields or []
    if not keys:
        for d in docs:
            for k in d:
                if k not in keys and k not in ("_id", "xanesdb_version", "schema_version"):
                    keys.append(k)
        keys = keys[:10]
    table = Table(title=f"{collection}: {len(docs)} shown")
    for k in keys:
        table.add_column(k, overflow="fold")
    for d in docs:
        table.add_row(*[_short(d.get(k)) for k in keys])
    console.print(table)
    return len(docs)


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."
