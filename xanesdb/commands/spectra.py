"""``xanesdb spectra ...``: build standardised, deduplicated spectra and plot them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from xanesdb.commands._console import SafeConsole
from rich.table import Table

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)

app = typer.Typer(help="Spectra: standardise FEFF tasks onto grids, deduplicate, plot.", no_args_is_help=True)

_CLASSES = ("T4", "S5", "O6", "other")


def _counts_table(counts: dict[str, dict[str, int]]) -> Table:
    table = Table(title="spectra per absorber x class x source: kept/duplicates")
    table.add_column("element", no_wrap=True)
    table.add_column("source", no_wrap=True)
    for c in (*_CLASSES, "total"):
        table.add_column(c, justify="right", no_wrap=True)
    rows: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    for key, n in counts.items():
        element, cls, source = key.split("|")
        rows.setdefault((element, source), {})[cls] = n
    for (element, source), by_class in sorted(rows.items()):
        cells = []
        for c in _CLASSES:
            n = by_class.get(c, {"kept": 0, "duplicates": 0})
            cells.append(f"{n['kept']}/{n['duplicates']}")
        kept = sum(n["kept"] for n in by_class.values())
        dup = sum(n["duplicates"] for n in by_class.values())
        table.add_row(element, source, *cells, f"{kept}/{dup}")
    return table


@app.command("build")
def build(
    element: Optional[list[str]] = typer.Option(None, "--element", "-e", help="Absorber(s) to build (repeat)."),
    threshold: float = typer.Option(0.015, help="Mean absolute difference below which spectra are duplicates."),
    regrid: bool = typer.Option(False, help="Choose new grid versions from all data and re-standardise."),
) -> None:
    """Standardise new or changed successful FEFF tasks into spectra, then deduplicate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from xanesdb.jobs.spectra.build import build_spectra

    if not 0 < threshold < 1:
        raise XanesdbUserError(f"--threshold {threshold} must be between 0 and 1 (the paper uses 0.015)")
    elements = [e.strip().capitalize() for e in element] if element else None
    with Progress(TextColumn("standardising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("spectra", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = build_spectra(get_settings(), elements=elements, threshold=threshold, regrid=regrid,
                               progress=progress)
    if not report.counts and report.processed == 0:
        where = f" of {', '.join(elements)}" if elements else ""
        raise XanesdbUserError(f"no successful FEFF tasks{where} in the database; run or import FEFF first")
    console.print(
        f"standardised {report.processed} spectra ({report.failed} failed, {report.up_to_date} up to date, "
        f"{report.removed} removed) in {report.seconds:.1f} s"
    )
    if report.grids_created:
        console.print(f"new grids: {', '.join(report.grids_created)}")
    for sid, err in list(report.errors.items())[:5]:
        console.print(f"  failed {sid}: {err}", markup=False, highlight=False)
    console.print(_counts_table(report.counts))
    total = sum(n["kept"] + n["duplicates"] for n in report.counts.values())
    console.print(f"duplicates (mean |diff| < {threshold:g}, same absorber and source): "
                  f"{report.n_duplicates} of {total} marked duplicate_of; "
                  f"{report.duplicate_changes} marks changed in this build")


@app.command("plot")
def plot(
    element: str = typer.Option(..., "--element", "-e", help="Absorber, e.g. Fe."),
    source: Optional[str] = typer.Option(None, help="Source of the spectra (needed when there are several)."),
    out: Optional[Path] = typer.Option(None, help="PNG to write (default <HOME>/plots/spectra_<el>_<source>.png)."),
    include_duplicates: bool = typer.Option(False, help="Also plot spectra marked duplicate_of."),
) -> None:
    """Plot one absorber's spectra by class, mean +- std bands and a 2-component PCA inset."""
    from xanesdb.jobs.spectra.plot import SeveralSourcesError, plot_spectra

    if out is not None:
        from xanesdb.platform.export import check_output_file

        check_output_file(out)
    try:
        path = plot_spectra(element.strip().capitalize(), source, out, include_duplicates=include_duplicates,
                            settings=get_settings())
    except SeveralSourcesError as err:  # the library names its argument; here the flag
        raise SeveralSourcesError(err.element, err.sources, how="with --source") from None
    console.print(str(path), markup=False, highlight=False)
