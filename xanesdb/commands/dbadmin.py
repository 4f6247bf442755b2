"""`xanesdb export`: a query's documents to Parquet or JSON (the `db` verbs are in xanesdb/commands/db.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from xanesdb.commands._console import SafeConsole

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)


def export(
    out: Path = typer.Option(..., "--out", "-o", help="Output file."),
    query: str = typer.Option("{}", "--query", "-q", help="JSON filter, e.g. '{\"element\": \"Fe\", \"lce_class\": \"O6\"}'."),
    collection: str = typer.Option("spectra", "--collection", "-c", help="Collection to export."),
    fmt: str = typer.Option("parquet", "--format", "-f", help="parquet or json."),
    fields: Optional[str] = typer.Option(None, help="Comma-separated fields (default: all)."),
    limit: int = typer.Option(0, help="At most this many rows (0: all)."),
) -> None:
    """Export a query's documents (one row per spectrum) to Parquet or JSON."""
    from xanesdb.platform.export import check_export_args, export_query
    from xanesdb.platform.queries import parse_filter

    if limit < 0:
        raise XanesdbUserError(f"--limit must be 0 (all) or more, got {limit}")
    check_export_args(collection, fmt, out)
    criteria = parse_filter(query)
    n = export_query(get_settings(), criteria, out, collection=collection, fmt=fmt,
                     fields=fields.split(",") if fields else None, limit=limit)
    console.print(f"{n} {collection} -> {out} ({fmt})", markup=False)
