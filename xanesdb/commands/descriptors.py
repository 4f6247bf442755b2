"""``xanesdb sites descriptors``: backfill bond-length spread and CrystalNN's coordination number.

Thin: parse arguments, call :func:`xanesdb.jobs.descriptors_backfill.backfill_site_descriptors`.
"""

from __future__ import annotations

from typing import Optional

import typer

from xanesdb.commands._console import SafeConsole
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)


def descriptors(
    element: Optional[list[str]] = typer.Option(None, "--element", "-e", help="Only sites of these absorbers (repeat)."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Extra JSON filter on sites."),
    force: bool = typer.Option(False, "--force", help="Recompute sites that have the descriptors already."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the sites that would be computed; write nothing."),
) -> None:
    """Store bond_length_spread and crystalnn_coordination_number on labelled sites that lack them."""
    from xanesdb.jobs.descriptors_backfill import backfill_site_descriptors
    from xanesdb.platform.queries import parse_filter

    criteria = parse_filter(query) if query else {}
    if element:
        from pymatgen.core.periodic_table import Element

        bad = [e for e in element if not Element.is_valid_symbol(e.strip().capitalize())]
        if bad:
            raise XanesdbUserError(f"--element {bad[0]!r} is not an element symbol, e.g. Fe")
        criteria = {"$and": [criteria, {"element": {"$in": [e.capitalize() for e in element]}}]} if criteria else {
            "element": {"$in": [e.capitalize() for e in element]}}
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("site descriptors"), BarColumn(), TextColumn("{task.completed}/{task.total} materials"),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:  # fmt: skip
        task = progress.add_task("", total=None)
        report = backfill_site_descriptors(get_settings(), criteria, force=force, dry_run=dry_run,
                                           progress=lambda d, n: progress.update(task, completed=d, total=n))  # fmt: skip
    if dry_run:
        console.print(f"{report.scanned} sites would get descriptors (dry run: nothing written)")
        return
    console.print(f"site descriptors: {report.scanned} sites, {report.updated} updated, {report.skipped} changed "
                  f"meanwhile (left alone), {len(report.failed)} without a CrystalNN number, in {report.seconds:.1f} s")
    for sid, why in list(report.failed.items())[:5]:
        err_console.print(f"  {sid}: {why}")
