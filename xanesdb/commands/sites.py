"""``xanesdb sites ...``: ChemEnv labels of the unique absorbing sites.

Examples
--------
::

    xanesdb sites label                      # every structure, absorbers Ti-Cu
    xanesdb sites label --element Fe --workers 2 --limit 50
    xanesdb sites label --force              # relabel what is already labelled
"""

from __future__ import annotations

import logging
from typing import Optional

import typer
from xanesdb.commands._console import SafeConsole
from rich.table import Table

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

logger = logging.getLogger(__name__)

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)

app = typer.Typer(help="Absorbing sites: ChemEnv labels.", no_args_is_help=True)



def _check_elements(elements: list[str]) -> list[str]:
    from pymatgen.core.periodic_table import Element

    out = []
    for el in elements:
        sym = el.strip().capitalize()
        try:
            Element(sym)
        except ValueError as err:
            raise XanesdbUserError(f"unknown element {el!r}; give a symbol such as Fe or Cu") from err
        out.append(sym)
    return out


def site_class_table(db, elements: list[str]) -> Table:
    """Unique sites per absorber x class, with 1.2-vs-1.4 disagreements, ambiguous and failed counts."""
    from xanesdb.platform.stats import SITE_LABEL_COLUMNS, site_label_counts

    rows = site_label_counts(db, elements)
    table = Table(title="unique sites per absorber x class (ChemEnv, cutoff 1.2)")
    for col in ("absorber", "T:4", "S:5", "O:6", "other", "failed", "1.2 vs 1.4 disagree", "ambiguous"):
        table.add_column(col, justify="left" if col == "absorber" else "right")
    for el in elements:
        if el in rows:
            r = rows[el]
            table.add_row(el, *(str(r[k]) for k in SITE_LABEL_COLUMNS))
    return table


@app.command("label")
def label(
    element: Optional[list[str]] = typer.Option(
        None, "--element", "-e", help="Absorbing element (repeatable); default Ti, V, Cr, Mn, Fe, Co, Ni, Cu."
    ),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default XANESDB_WORKERS, 0 = cores)."),
    limit: int = typer.Option(0, help="Label at most this many structures (0: all)."),
    force: bool = typer.Option(False, "--force", help="Relabel structures whose sites are already stored."),
    timeout: Optional[float] = typer.Option(
        None, help="Seconds allowed per structure (default XANESDB_CHEMENV_TIMEOUT_S)."
    ),
) -> None:
    """Label the unique absorbing sites of the stored structures with ChemEnv (writes `sites`)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from xanesdb.jobs.labels import ABSORBERS, label_structures
    from xanesdb.jobs.structures import structures_with_elements
    from xanesdb.platform.stats import collection_counts
    from xanesdb.platform.stores import get_database, get_store

    elements = _check_elements(element) if element else list(ABSORBERS)
    if workers is not None and workers < 0:
        raise XanesdbUserError("--workers must be 0 (one per core) or more")
    if limit < 0:
        raise XanesdbUserError("--limit must be 0 (all) or more")
    if timeout is not None and timeout <= 0:
        raise XanesdbUserError("--timeout must be a positive number of seconds")
    settings = get_settings()
    db = get_database(settings)
    docs = structures_with_elements(db, elements, limit)
    if not docs and collection_counts(db, ["structures"])["structures"] == 0:
        raise XanesdbUserError("no structures in the database; run `xanesdb structures fetch` first")

    store = get_store("sites", settings)
    with Progress(
        TextColumn("[bold]labelling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("label", total=None, status="checking what is done")

        def report(done: int, failed: int, remaining: int) -> None:
            progress.update(task, completed=done, total=done + remaining,
                            status=f"failed {failed}, remaining {remaining}")

        with store:
            summary = label_structures(docs, store=store, settings=settings, workers=workers or None,
                                       timeout=timeout, elements=elements, force=force, progress=report)
    console.print(
        f"{len(docs)} structures: {summary.succeeded} labelled, {summary.failed} failed, "
        f"{summary.skipped} already labelled (skipped); {summary.sites_written} site documents written"
    )
    for mid, reason in list(summary.failures.items())[:10]:
        console.print(f"  failed {mid}: {reason}", markup=False)
    console.print(site_class_table(db, elements))
from xanesdb.commands import descriptors as _descriptors; app.command("descriptors")(_descriptors.descriptors)  # noqa: E402,E702
