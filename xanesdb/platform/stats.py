"""Database statistics: counts and aggregations the commands print (``xanesdb db stats``/``db query``,
``xanesdb feff status``, ``xanesdb populate status``).

The functions named ``*_counts``/``*_reasons`` compute and return plain data; the commands render it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from bson import json_util
from rich.table import Table

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.stores import COLLECTIONS, get_database

if TYPE_CHECKING:
    from rich.console import Console

    from xanesdb.platform.settings import XanesdbSettings

__all__ = ["collection_counts", "class_counts", "FeffTaskCount", "feff_task_counts", "feff_failure_reasons",
           "feff_state_counts_by_preset", "waiting_firework_count", "site_label_counts", "print_stats", "run_query"]

ABSORBERS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
CLASSES = ("T4", "S5", "O6")


def collection_counts(db, names: Sequence[str] = COLLECTIONS) -> dict[str, int]:
    """Documents per xanesdb collection (all of them, or ``names``)."""
    return {name: db[name].count_documents({}) for name in names}


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


@dataclass(frozen=True)
class FeffTaskCount:
    """FEFF tasks of one element x source x preset: how many succeeded and failed, mean FEFF wall time."""

    element: str | None
    source: str | None
    preset: str | None
    successful: int = 0
    failed: int = 0
    mean_wall_seconds: float | None = None  # of the successful tasks; None when none recorded a time


def _element_match(elements: Sequence[str] | None) -> dict:
    return {"element": {"$in": list(elements)}} if elements else {}


def feff_task_counts(db, elements: Sequence[str] | None = None) -> list[FeffTaskCount]:
    """``feff_tasks`` by element x source x preset: successful and failed counts and the mean FEFF time of the
    successful ones (one aggregation on the server), sorted by element, source, preset."""
    rows = db["feff_tasks"].aggregate([
        {"$match": _element_match(elements)},
        {"$group": {"_id": {"element": "$element", "source": "$source", "preset": "$preset", "state": "$state"},
                    "n": {"$sum": 1}, "wall": {"$avg": "$wall_seconds"}}},
    ])
    agg: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r["_id"].get("element"), r["_id"].get("source"), r["_id"].get("preset"))
        a = agg.setdefault(key, {"successful": 0, "failed": 0, "mean_wall_seconds": None})
        state = r["_id"].get("state")
        if state in ("successful", "failed"):
            a[state] = r["n"]
        if state == "successful" and r.get("wall") is not None:
            a["mean_wall_seconds"] = r["wall"]
    return [FeffTaskCount(*key, **a) for key, a in sorted(agg.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]


def feff_failure_reasons(db, elements: Sequence[str] | None = None, top: int = 5) -> list[tuple[int, str | None, str | None]]:
    """The ``top`` most frequent ``(count, source, error)`` of failed FEFF tasks, most frequent first."""
    if top <= 0:
        return []
    rows = db["feff_tasks"].aggregate([
        {"$match": {**_element_match(elements), "state": "failed"}},
        {"$group": {"_id": {"source": "$source", "error": "$error"}, "n": {"$sum": 1}}},
        {"$sort": {"n": -1}}, {"$limit": top},
    ])
    return [(r["n"], r["_id"].get("source"), r["_id"].get("error")) for r in rows]


def feff_state_counts_by_preset(db, source: str = "xanesdb") -> dict[str, dict[str, int]]:
    """``preset -> state -> count`` of the FEFF tasks of one source (default xanesdb's own runs)."""
    counts: dict[str, dict[str, int]] = {}
    rows = db["feff_tasks"].aggregate([{"$match": {"source": source}},
                                       {"$group": {"_id": {"p": "$preset", "s": "$state"}, "n": {"$sum": 1}}}])
    for r in rows:
        counts.setdefault(r["_id"].get("p"), {})[r["_id"].get("s")] = r["n"]
    return dict(sorted(counts.items(), key=lambda kv: str(kv[0])))


SITE_LABEL_COLUMNS = (*CLASSES, "other", "failed", "disagree", "ambiguous")


def site_label_counts(db, elements: Sequence[str]) -> dict[str, dict[str, int]]:
    """Labelled sites per absorber: counts per ChemEnv class (T4, S5, O6, other), failed labellings, and
    among the labelled ones how many the 1.2 and 1.4 cutoffs disagree on and how many are ambiguous.

    Returns ``element -> {column: count}`` (columns :data:`SITE_LABEL_COLUMNS`), only for elements with sites.
    """
    pipeline = [
        {"$match": {"element": {"$in": list(elements)}}},
        {"$group": {
            "_id": {"element": "$element", "cls": "$lce_class", "state": "$state"},
            "n": {"$sum": 1},
            "disagree": {"$sum": {"$cond": [{"$eq": ["$strategies_agree", False]}, 1, 0]}},
            "ambiguous": {"$sum": {"$cond": [{"$eq": ["$ambiguous", True]}, 1, 0]}},
        }},
    ]
    rows: dict[str, dict[str, int]] = {}
    for r in db["sites"].aggregate(pipeline):
        el, cls, state = r["_id"]["element"], r["_id"].get("cls"), r["_id"].get("state")
        row = rows.setdefault(el, dict.fromkeys(SITE_LABEL_COLUMNS, 0))
        if state == "failed":
            row["failed"] += r["n"]
            continue
        row[cls if cls in CLASSES else "other"] += r["n"]
        row["disagree"] += r["disagree"]
        row["ambiguous"] += r["ambiguous"]
    return rows


def waiting_firework_count(lp) -> int:
    """Fireworks of a FireWorks LaunchPad that are ready or waiting to run."""
    return lp.fireworks.count_documents({"state": {"$in": ["READY", "WAITING"]}})


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
    from xanesdb.platform.export import check_fields

    check_fields(collection, fields)
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
