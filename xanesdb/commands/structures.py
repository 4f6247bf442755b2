"""``xanesdb structures ...``: fetch crystal structures, import Materials Project XAS.

Examples
--------
::

    xanesdb structures fetch --source bundled                 # the shipped oxide set
    xanesdb structures fetch --source bundled --element Fe --limit 20
    MP_API_KEY=... xanesdb structures fetch --source mp --element Fe --element Ti --limit 100
    xanesdb structures fetch --source files ./my_cifs         # CIF/POSCAR/vasp/JSON, recursively
    MP_API_KEY=... xanesdb structures import-mp-xas --element Fe --limit 50
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from xanesdb.commands._console import SafeConsole
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

logger = logging.getLogger(__name__)

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)

app = typer.Typer(help="Crystal structures: fetch from a source; import Materials Project XAS.",
                  no_args_is_help=True)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True,
                    disable=not err_console.is_terminal)


def _callback(progress: Progress):
    task = progress.add_task("starting", total=None)

    def update(description: str, completed: int, total: int | None) -> None:
        progress.update(task, description=description, completed=completed, total=total)

    return update


@app.command("fetch")
def fetch(
    source: str = typer.Option(..., "--source", "-s", help="Where from: bundled, mp or files."),
    element: Optional[list[str]] = typer.Option(
        None, "--element", "-e", help="Keep structures containing this element (repeat for more)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="At most this many structures."),
    path: Optional[list[Path]] = typer.Argument(
        None, help="For --source files: a folder (searched recursively) or structure files."
    ),
    endpoint: Optional[str] = typer.Option(
        None, "--endpoint", help="For --source mp: API base URL (default: the Materials Project's)."
    ),
) -> None:
    """Fetch structures into the database (upserts; re-running changes no counts)."""
    from xanesdb.jobs.structures import SOURCES, fetch_structures

    if source not in SOURCES:
        raise XanesdbUserError(f"unknown source {source!r}; use one of: {', '.join(SOURCES)}")
    if source == "files" and not path:
        raise XanesdbUserError("--source files needs a PATH: a folder or structure files (CIF, POSCAR, JSON)")
    if limit is not None and limit < 0:
        raise XanesdbUserError(f"--limit must be >= 0, got {limit}")
    with _progress() as progress:
        summary = fetch_structures(
            source, element or None, limit, path=list(path) if path else None, settings=get_settings(),
            endpoint=endpoint, progress=_callback(progress),
        )
    parts = [f"{summary.n_new} new", f"{summary.n_updated} updated", f"{summary.n_unchanged} unchanged"]
    if summary.n_kept_other_source:
        parts.append(f"{summary.n_kept_other_source} kept from another source")
    version = f" (MP database {summary.database_version})" if summary.database_version else ""
    console.print(f"{source}{version}: {summary.n_total} structures, {', '.join(parts)}; "
                  f"structures collection: {summary.n_in_collection}", markup=False, highlight=False)
    for reason, n in sorted(summary.skipped.items()):
        console.print(f"  dropped {n}: {reason}", markup=False, highlight=False)


@app.command("import-mp-xas")
def import_mp_xas_cmd(
    element: Optional[list[str]] = typer.Option(
        None, "--element", "-e", help="Absorber (repeat for more; default Ti-Cu)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="At most this many XAS documents per element."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="API base URL (default: the Materials Project's)."),
) -> None:
    """Import Materials Project K-edge XANES as FEFF tasks of source 'mp' (needs MP_API_KEY)."""
    from xanesdb.jobs.mp_xas import import_mp_xas

    if limit is not None and limit < 0:
        raise XanesdbUserError(f"--limit must be >= 0, got {limit}")
    with _progress() as progress:
        s = import_mp_xas(element or None, limit, settings=get_settings(), endpoint=endpoint,
                          progress=_callback(progress))
    version = f" (MP database {s.database_version})" if s.database_version else ""
    console.print(
        f"mp xas{version}: {s.n_documents} documents -> {s.n_tasks} tasks ({s.n_successful} successful, "
        f"{s.n_failed} failed): {s.n_new} new, {s.n_updated} updated, {s.n_unchanged} unchanged; "
        f"{s.n_structures_new} structures added", markup=False, highlight=False,
    )
    for reason, n in sorted(s.skipped.items()):
        console.print(f"  not imported {n}: {reason}", markup=False, highlight=False)
