"""``xanesdb feff ...``: run FEFF for labelled sites, show task counts, import existing runs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import List, Optional

import typer
from xanesdb.commands._console import SafeConsole
from rich.table import Table

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import FEFF_PRESET_NAMES, get_settings

#: the FEFF presets, for the --preset help
_PRESET_NAMES = ", ".join(FEFF_PRESET_NAMES)

logger = logging.getLogger(__name__)

console = SafeConsole(soft_wrap=True)

app = typer.Typer(help="FEFF XANES tasks: run FEFF10 for labelled sites, status, import finished runs.",
                  no_args_is_help=True)

DEFAULT_OMNIXAS = Path(__file__).resolve().parents[3] / "shared" / "data" / "omnixas_cu" / "feff9_site_spectra.json.gz"


def _check_elements(elements: list[str] | None) -> list[str] | None:
    if not elements:
        return None
    from pymatgen.core import Element

    out = []
    for el in elements:
        for e in el.split(","):
            e = e.strip()
            if not e:
                continue
            try:
                out.append(Element(e.capitalize() if len(e) <= 2 else e).symbol)
            except ValueError:
                raise XanesdbUserError(f"unknown element {e!r}; give symbols like --element Ti --element Fe") from None
    return out


class _FeffProgress:
    """rich progress of `feff run`: done / failed / remaining and sites per hour, from the run's summary."""

    def __init__(self, console) -> None:
        self.console = console
        self._progress = None

    def start(self, total: int, workers: int) -> None:
        import time

        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.total, self.t0 = total, time.perf_counter()
        self._progress = Progress(TextColumn("FEFF [bold]{task.description}"), BarColumn(),
                                  TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=self.console,
                                  transient=False)
        self._task = self._progress.add_task(f"{workers} workers", total=total, stats=self._stats(0, 0, 0))
        self._progress.start()

    def _stats(self, done: int, failed: int, skipped: int) -> str:
        import time

        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        n = done + failed
        rate = 3600.0 * n / elapsed if n else 0.0
        return f"done {done}  failed {failed}  remaining {self.total - n - skipped}  {rate:.1f} sites/h"

    def update(self, summary) -> None:
        if self._progress is not None:
            n = summary.n_done + summary.n_failed + summary.n_skipped
            self._progress.update(self._task, completed=n,
                                  stats=self._stats(summary.n_done, summary.n_failed, summary.n_skipped))

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@app.command("run")
def run(
    element: Optional[List[str]] = typer.Option(None, "--element", "-e", help="Absorbing element(s); repeat or comma-separate. Default: all labelled sites."),
    preset: Optional[str] = typer.Option(None, help=f"FEFF preset: {_PRESET_NAMES} (default XANESDB_FEFF_PRESET)."),
    workers: Optional[int] = typer.Option(None, help="Parallel FEFF processes (default: XANESDB_WORKERS, or one per core)."),
    limit: Optional[int] = typer.Option(None, help="Compute at most this many sites now."),
    timeout: Optional[float] = typer.Option(None, help="Wall-time limit per FEFF run in s (default XANESDB_FEFF_TIMEOUT_S)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also recompute sites whose task failed."),
    keep_workdirs: bool = typer.Option(False, "--keep-workdirs", help="Keep every run folder under HOME/feff-runs."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    with_mp: bool = typer.Option(False, "--with-mp-covered", help="Also compute sites that already have an imported Materials Project spectrum (skipped by default)."),
    order: str = typer.Option("site_id", help="site_id (stable) or diverse: sites least like any computed one first."),
) -> None:
    """Run FEFF for every labelled site without a task under the preset (resumable, never duplicates).

    Sites with a successful imported Materials Project spectrum (`structures import-mp-xas`) are
    skipped unless --with-mp-covered is given."""
    from xanesdb.jobs.feff.local import populate_feff
    from xanesdb.jobs.feff.pending import DEFAULT_COVERED_BY
    from xanesdb.jobs.feff.sets import get_preset

    settings = get_settings()
    elements = _check_elements(element)
    preset_name = get_preset(preset or settings.FEFF_PRESET).name
    if workers is not None and workers < 1:
        raise XanesdbUserError("--workers must be at least 1")
    if limit is not None and limit < 0:
        raise XanesdbUserError("--limit must be 0 or more")
    if timeout is not None and timeout <= 0:
        raise XanesdbUserError("--timeout must be positive")
    if order not in ("site_id", "diverse"):
        raise XanesdbUserError(f"--order {order!r}: use site_id or diverse")
    import signal

    def _terminate(signum, frame):  # `kill PID` stops like Ctrl-C: running FEFF processes are killed too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)

    def log_task(doc) -> None:
        # without the bar (e.g. a background run writing to a file): one line per finished site
        what = "done" if doc.state == "successful" else f"FAILED ({doc.error})"
        console.print(f"{doc.site_id}: {what} in {doc.wall_seconds or 0:.1f} s", markup=False, highlight=False)

    bar = _FeffProgress(console) if progress else None

    def on_start(s) -> None:
        console.print(f"preset {s.preset} ({s.preset_hash}): {s.n_sites} labelled sites, "
                      f"{s.n_already} already computed, {s.n_pending} to do now with {s.workers} workers")
        if bar is not None and s.n_pending:
            bar.start(s.n_pending, s.workers)

    try:
        summary = populate_feff(settings, elements=elements, preset=preset_name, workers=workers, limit=limit,
                                timeout=timeout, retry_failed=retry_failed, keep_workdirs=keep_workdirs,
                                on_task=None if progress else log_task, on_start=on_start,
                                on_progress=bar.update if bar is not None else None,
                                covered_by=() if with_mp else DEFAULT_COVERED_BY, order=order)
    finally:
        if bar is not None:
            bar.stop()
    if summary.n_pending == 0:
        if summary.n_sites == 0:
            console.print("no labelled sites match; label structures first (xanesdb sites ...)")
        return
    n = summary.n_done + summary.n_failed
    console.print(
        f"done {summary.n_done}, failed {summary.n_failed}, skipped {summary.n_skipped} in "
        f"{summary.wall_seconds:.1f} s with {summary.workers} workers ({summary.sites_per_hour:.1f} sites/h)"
    )
    if n and summary.feff_seconds > 0:
        console.print(
            f"FEFF {summary.feff_seconds / n:.1f} s/site; platform overhead "
            f"{summary.overhead_seconds / n:.3f} s/site ({100 * summary.overhead_seconds / summary.feff_seconds:.2f} % of FEFF)"
        )
    for reason, count in sorted(summary.failures.items(), key=lambda kv: -kv[1])[:5]:
        console.print(f"  failed x{count}: {reason}")


@app.command("status")
def status(
    element: Optional[List[str]] = typer.Option(None, "--element", "-e", help="Only these absorbing elements."),
    top: int = typer.Option(5, help="How many failure reasons to list."),
) -> None:
    """Task counts by element x source x state, FEFF time per preset, and the top failure reasons."""
    from xanesdb.platform.stats import feff_failure_reasons, feff_task_counts
    from xanesdb.platform.stores import get_database

    if top < 0:
        raise XanesdbUserError("--top must be 0 or more")
    settings = get_settings()
    db = get_database(settings, ensure=False)
    elements = _check_elements(element)
    counts = feff_task_counts(db, elements)
    if not counts:
        console.print("no FEFF tasks yet: run `xanesdb feff run` or `xanesdb feff import DIR`")
        return
    table = Table(title=f"feff_tasks in {settings.DB_NAME}")
    for col in ("element", "source", "preset", "successful", "failed", "mean FEFF s"):
        table.add_column(col, justify="right" if col in ("successful", "failed", "mean FEFF s") else "left")
    for c in counts:
        table.add_row(str(c.element), str(c.source), str(c.preset), str(c.successful), str(c.failed),
                      f"{c.mean_wall_seconds:.1f}" if c.mean_wall_seconds is not None else "-")
    console.print(table)
    reasons = feff_failure_reasons(db, elements, top)
    if reasons:
        console.print("top failure reasons:")
        for n, source, error in reasons:
            console.print(f"  {n:>6}  [{source}] {error}", markup=False)


@app.command("import")
def import_dir(
    directory: Path = typer.Argument(..., help="Folder of finished FEFF runs (feff.inp + xmu.dat each), e.g. the OmniXAS layout <material>/FEFF-XANES/<iii>_<El>/."),
    source: str = typer.Option("import", help="Source recorded on the tasks and prefixed to their ids, e.g. omnixas."),
    code: Optional[str] = typer.Option(None, help="Code name and version; default read from xmu.dat/feff.out."),
    structures: bool = typer.Option(True, "--structures/--no-structures", help="Add structure files found beside the runs (only missing ones)."),
) -> None:
    """Import folders of finished FEFF runs into feff_tasks (a folder without xmu.dat -> a failed task)."""
    from xanesdb.jobs.feff.importer import import_feff_dirs
    from xanesdb.platform.stores import get_database

    if source == "xanesdb":
        raise XanesdbUserError("--source xanesdb is reserved for xanesdb's own FEFF10 runs; name the origin, e.g. --source omnixas")
    if not directory.is_dir():
        raise XanesdbUserError(f"{directory} is not a folder; give a folder of FEFF run folders")
    db = get_database(get_settings())
    s = import_feff_dirs(directory, db, source=source, code=code, with_structures=structures)
    console.print(f"imported {s.n_folders} run folders as source {source!r}: {s.n_successful} successful, "
                  f"{s.n_failed} failed; {s.n_structures_added} structures added")
    for reason, count in sorted(s.failures.items(), key=lambda kv: -kv[1])[:5]:
        console.print(f"  failed x{count}: {reason}", markup=False)


@app.command("import-omnixas")
def import_omnixas_cmd(
    path: Optional[Path] = typer.Argument(None, help="feff9_site_spectra.json.gz (parameters.json beside it); default ../shared/data/omnixas_cu."),
) -> None:
    """Load the OmniXAS Cu FEFF 9.9.1 site spectra as tasks of source 'omnixas' (idempotent)."""
    from xanesdb.jobs.feff.importer import import_omnixas
    from xanesdb.platform.stores import get_database

    path = path or DEFAULT_OMNIXAS
    if path.is_dir():
        path = path / "feff9_site_spectra.json.gz"
    if not path.is_file():
        raise XanesdbUserError(f"{path} not found; give the path of feff9_site_spectra.json.gz")
    db = get_database(get_settings())
    s = import_omnixas(db, path)
    console.print(f"imported {s.n_folders} OmniXAS tasks: {s.n_successful} successful, {s.n_failed} failed")


@app.command("export-inputs")
def export_inputs_cmd(
    directory: Path = typer.Argument(..., help="Batch folder to write (created; folders already in it are kept)."),
    element: Optional[List[str]] = typer.Option(None, "--element", "-e", help="Absorbing element(s); default all labelled sites."),
    lce_class: Optional[List[str]] = typer.Option(None, "--class", help="Only sites of these ChemEnv classes (e.g. --class T4 --class S5)."),
    chemenv: Optional[List[str]] = typer.Option(None, "--chemenv", help="Only sites of these ChemEnv symbols, e.g. --chemenv L:2 (linear) or S:4 (square planar)."),
    preset: Optional[str] = typer.Option(None, help=f"FEFF preset: {_PRESET_NAMES} (default XANESDB_FEFF_PRESET)."),
    limit: Optional[int] = typer.Option(None, help="Write at most this many new sites (balanced over absorber x class)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also write sites whose task failed."),
    order: str = typer.Option("balanced", help="balanced (round-robin over absorber x class) or diverse (sites least like any computed one first)."),
) -> None:
    """Write feff.inp + task.json for every pending site, to run FEFF elsewhere (python -m xanesdb.jobs.feff.batch)."""
    from xanesdb.jobs.feff.batch import export_inputs
    from xanesdb.jobs.feff.sets import get_preset
    from xanesdb.platform.stores import get_database

    settings = get_settings()
    elements = _check_elements(element)
    preset_name = get_preset(preset or settings.FEFF_PRESET).name
    if limit is not None and limit < 0:
        raise XanesdbUserError("--limit must be 0 or more")
    if directory.exists() and not directory.is_dir():
        raise XanesdbUserError(f"{directory} is a file; give a folder for the batch")
    from xanesdb.schemas.site import LCE_CLASSES

    known = sorted(set(LCE_CLASSES.values()))
    bad = [c for c in (lce_class or []) if c not in known]
    if bad:
        raise XanesdbUserError(f"unknown --class {bad[0]!r}; use one of {', '.join(known)}")
    if order not in ("balanced", "diverse"):
        raise XanesdbUserError(f"--order {order!r}: use balanced or diverse")
    bad_symbol = [c for c in (chemenv or []) if not re.fullmatch(r"[A-Z]{1,3}:\d{1,2}", c)]
    if bad_symbol:
        raise XanesdbUserError(f"--chemenv {bad_symbol[0]!r} is not a ChemEnv symbol; give one such as L:2, S:4 or T:4")
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("writing FEFF inputs", total=None)
        out = export_inputs(get_database(settings), directory, elements, preset_name, limit=limit, classes=lce_class,
                            retry_failed=retry_failed, order=order, symbols=chemenv,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"{out['written']} new site folders written to {directory} ({out['in_batch']} in the batch; "
                  f"{out['pending']} sites pending under preset {preset_name}).")
    console.print(f"run them anywhere feff10 is installed: python -m xanesdb.jobs.feff.batch {directory} --workers N; "
                  f"then: xanesdb feff import-batch {directory}", markup=False, highlight=False)


@app.command("run-batch")
def run_batch_cmd(
    directory: Path = typer.Argument(..., help="Batch folder written by `xanesdb feff export-inputs`."),
    workers: Optional[int] = typer.Option(None, help="Parallel FEFF processes (default: one per core)."),
    timeout: Optional[float] = typer.Option(None, help="Wall-time limit per site in s (default XANESDB_FEFF_TIMEOUT_S)."),
    deadline: Optional[float] = typer.Option(None, help="Start no run after this many s; runs cut short run again next time."),
    limit: Optional[int] = typer.Option(None, help="Run at most this many sites now."),
) -> None:
    """Run FEFF10 in every batch folder without a result yet (resumable; no database needed)."""
    from xanesdb.jobs.feff.batch import MANIFEST, TASK_FILE, run_batch

    if not directory.is_dir() or not ((directory / MANIFEST).is_file() or any(directory.glob(f"*/{TASK_FILE}"))):
        raise XanesdbUserError(f"{directory} holds no FEFF batch; write one with `xanesdb feff export-inputs {directory}`")
    settings = get_settings()
    # run_batch refuses a --workers, --timeout, --deadline or --limit out of range before it reads a folder
    out = run_batch(directory, settings.n_workers if workers is None else workers,
                    settings.FEFF_TIMEOUT_S if timeout is None else timeout, deadline, limit, feff_cmd=settings.FEFF_CMD)
    console.print(f"done {out['done']}, failed {out['failed']}, cut by the deadline {out['cut']}, already finished "
                  f"{out['skipped']}; {out['sites_per_hour']} sites/h on {out['workers']} workers")


@app.command("order-batch")
def order_batch_cmd(
    directory: Path = typer.Argument(..., help="Batch folder written by `xanesdb feff export-inputs`."),
    use_db: bool = typer.Option(True, "--db/--no-db", help="Also count the database's successful tasks of the preset as computed."),
) -> None:
    """Reorder the unfinished folders of a batch so the sites least like anything computed run first."""
    from xanesdb.jobs.feff.batch import LIKELY_DUPLICATE_DISTANCE, MANIFEST, TASK_FILE, order_batch
    from xanesdb.platform.stores import get_database

    if not directory.is_dir() or not ((directory / MANIFEST).is_file() or any(directory.glob(f"*/{TASK_FILE}"))):
        raise XanesdbUserError(f"{directory} holds no FEFF batch; write one with `xanesdb feff export-inputs {directory}`")
    try:
        out = order_batch(directory, get_database(get_settings()) if use_db else None)
    except ValueError as err:
        raise XanesdbUserError(f"{directory}: {err}; write the batch again with `xanesdb feff export-inputs`") from None
    console.print(f"{out['unfinished']} unfinished folders ordered farthest-first against {out['reference']} computed "
                  f"sites ({out['finished']} finished folders stay first; {out['already_in_db']} whose task the "
                  f"database already has go last).")
    console.print(f"| element | unfinished | likely near-duplicates (distance < {LIKELY_DUPLICATE_DISTANCE}) |")
    console.print("|---|---|---|")
    for el, (n, close) in out["by_element"].items():
        console.print(f"| {el} | {n} | {close} |")
    console.print(f"run them: python -m xanesdb.jobs.feff.batch {directory} --workers N", markup=False, highlight=False)


@app.command("import-batch")
def import_batch_cmd(
    directory: Path = typer.Argument(..., help="Batch folder (or an unpacked .tar.gz of one) with finished runs."),
    replace_successful: bool = typer.Option(False, "--replace-successful", help="Overwrite tasks already successful in the database."),
) -> None:
    """Parse, validate and store the finished runs of a batch under their task keys (idempotent)."""
    import statistics
    import tarfile
    import tempfile

    from xanesdb.jobs.feff.batch import TASK_FILE, import_batch
    from xanesdb.platform.stores import get_database

    tmp = None
    if directory.is_file() and directory.name.endswith((".tar.gz", ".tgz")):
        tmp = tempfile.TemporaryDirectory(prefix="xanesdb-batch-")
        try:
            with tarfile.open(directory) as tar:
                tar.extractall(tmp.name, filter="data")
        except (tarfile.TarError, OSError) as err:
            raise XanesdbUserError(f"{directory} is not a readable .tar.gz of a FEFF batch ({err})") from None
        directory = Path(tmp.name)
    if not directory.is_dir() or not any(directory.glob(f"*/{TASK_FILE}")):
        raise XanesdbUserError(f"{directory} holds no FEFF batch folders (*/task.json); give the folder run by the batch runner")
    s = import_batch(directory, get_database(get_settings()), replace_successful=replace_successful)
    mean = f"{statistics.mean(s.feff_seconds):.1f}" if s.feff_seconds else "-"
    console.print(f"imported {s.imported} successful and {s.failed} failed tasks; kept {s.kept_existing} already "
                  f"successful; {s.not_run} folders not run yet. Mean FEFF wall time {mean} s/site.")
    for el, n in sorted(s.by_element.items()):
        console.print(f"  {el}: {n}")
    for reason, n in sorted(s.failures.items(), key=lambda kv: -kv[1])[:10]:
        console.print(f"  failed {n:5d}  {reason}", markup=False, highlight=False)
    if tmp is not None:
        tmp.cleanup()
