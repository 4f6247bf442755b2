"""``xanesdb populate ...``: population campaigns as jobflow flows, run locally or on FireWorks workers.

``xanesdb populate --engine local|fireworks`` plans one flow per material (labels -> FEFF per site
still without a task -> spectra) and runs the flows here or adds them to the FireWorks LaunchPad
in the xanesdb database; ``worker`` drains the LaunchPad, ``status`` and ``recover`` watch it,
``config`` writes ``my_launchpad.yaml``/``my_fworker.yaml`` for ``rlaunch``/``qlaunch``.
"""

from __future__ import annotations

import logging
import re
import socket
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
err_console = SafeConsole(stderr=True)

app = typer.Typer(help="Population campaigns: the same flows run locally or on FireWorks workers against one MongoDB.",
                  invoke_without_command=True, no_args_is_help=False)

ENGINES = ("local", "fireworks")
SOURCES = ("db", "bundled")


def _elements(values: list[str] | None) -> list[str] | None:
    from xanesdb.commands.feff import _check_elements

    return _check_elements(values)


def _print_plan(plan, engine: str) -> None:
    console.print(
        f"preset {plan.preset} ({plan.preset_hash}), {plan.edge} edge, {'/'.join(plan.elements)}: "
        f"{plan.n_materials} materials; {plan.n_materials_done} done, {plan.n_materials_queued} queued already, "
        f"{len(plan.campaigns)} to {'run' if engine == 'local' else 'submit'}"
        + (f" ({plan.n_materials_over_limit} over --limit)" if plan.n_materials_over_limit else ""),
        markup=False, highlight=False)
    console.print(
        f"sites: {plan.n_sites} labelled, {plan.n_sites_done} already computed, {plan.n_sites_queued} queued, "
        f"{plan.n_sites_submitted} FEFF jobs now; {plan.n_to_label} materials to label first (their FEFF jobs are "
        "added after labelling)", markup=False, highlight=False)


@app.callback()
def populate(
    ctx: typer.Context,
    engine: str = typer.Option("local", help="local: run here with jobflow run_locally; fireworks: add to the LaunchPad."),
    element: Optional[List[str]] = typer.Option(None, "--element", "-e", help="Absorbing element(s); repeat or comma-separate (default: Ti-Cu)."),
    preset: Optional[str] = typer.Option(None, help=f"FEFF preset: {_PRESET_NAMES} (default XANESDB_FEFF_PRESET)."),
    limit: Optional[int] = typer.Option(None, help="At most this many materials (one flow each)."),
    source: str = typer.Option("db", help="db: structures already in the database; bundled: load the bundled structures first."),
    material: Optional[List[str]] = typer.Option(None, "--material", "-m", help="Only these material ids (repeat)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also recompute sites whose task failed."),
    spectra: bool = typer.Option(True, "--spectra/--no-spectra", help="End each material's flow with a spectra build."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; run or submit nothing."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Plan one flow per material (labels -> FEFF per site without a task -> spectra); run or submit them.

    Examples: `xanesdb populate --engine fireworks --element Fe --preset fast` then, on any host that
    reaches the database, `xanesdb populate worker` (or `rlaunch ... rapidfire`, see `populate config`).
    """
    if ctx.invoked_subcommand is not None:
        return
    from xanesdb.jobs.feff.sets import get_preset
    from xanesdb.jobs.feff.campaign import plan_campaign, run_campaign_locally, submit_campaign

    if engine not in ENGINES:
        raise XanesdbUserError(f"unknown --engine {engine!r}; use local or fireworks")
    if engine == "fireworks":
        from xanesdb.platform.launchpad import require_fireworks

        require_fireworks()  # before anything is read or written
    if source not in SOURCES:
        raise XanesdbUserError(f"unknown --source {source!r}; use db (structures in the database) or bundled")
    if limit is not None and limit < 0:
        raise XanesdbUserError("--limit must be 0 or more")
    settings = get_settings()
    elements = _elements(element)
    preset_name = get_preset(preset or settings.FEFF_PRESET).name
    if source == "bundled":
        from xanesdb.jobs.structures import fetch_structures

        s = fetch_structures("bundled", elements, settings=settings)
        console.print(f"bundled structures: {s.n_total} read, {s.n_new} new in the database")

    lp = None
    queued, active = set(), set()
    if engine == "fireworks":
        from xanesdb.platform.launchpad import active_campaign_keys, get_launchpad, queued_task_keys, require_fireworks

        require_fireworks()
        lp = get_launchpad(settings)
        queued, active = queued_task_keys(lp), active_campaign_keys(lp)
    plan = plan_campaign(settings, elements=elements, preset=preset_name, limit=limit, material_ids=material,
                         queued_task_keys=queued, active_keys=active, retry_failed=retry_failed, build_spectra=spectra)
    _print_plan(plan, engine)
    if plan.n_materials == 0 and material:
        raise XanesdbUserError(f"no structure in the database has the material id(s) {', '.join(material)} with "
                               f"{', '.join(elements) if elements else 'a Ti-Cu absorber'}; list them with `xanesdb db "
                               "query -c structures`, or fetch them (xanesdb structures fetch)")
    if plan.n_materials == 0:
        console.print("no structures with these elements; fetch some first (xanesdb structures fetch, or --source bundled)")
        return
    if dry_run or not plan.campaigns:
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, disable=not progress, transient=False)
    failed: list[str] = []

    def tick(c, ok: bool) -> None:
        if not ok:
            failed.append(c.material_id)
        if not progress:
            console.print(f"{c.material_id}: {'ok' if ok else 'FAILED'}", markup=False, highlight=False)
        bar.advance(task)

    with bar:
        if engine == "local":
            task = bar.add_task("materials", total=len(plan.campaigns))
            result = run_campaign_locally(plan, settings, on_material=tick)
        else:
            task = bar.add_task("submitting", total=len(plan.campaigns))
            added = submit_campaign(plan, lp, settings, on_material=tick)
    if engine == "local":
        console.print(f"ran {result['materials']} material flows in {result['seconds']:.1f} s; "
                      f"{len(failed)} with a job that did not finish; {result['sites_left']} of their sites still "
                      "without a task")
        for mid in failed[:10]:
            console.print(f"  not finished: {mid} (see the jobs collection / HOME/populate-runs)")
    else:
        from xanesdb.platform.stats import waiting_firework_count

        n_fw = waiting_firework_count(lp)
        console.print(f"added {len(added)} workflows to the LaunchPad in database {settings.DB_NAME!r} "
                      f"({n_fw} Fireworks ready or waiting in all)")
        console.print("start workers where the database is reachable: `xanesdb populate worker` "
                      "(or `xanesdb populate config DIR` for rlaunch/qlaunch files)")


@app.command("worker")
def worker(
    name: Optional[str] = typer.Option(None, help="FireWorker name (default: host name)."),
    nlaunches: int = typer.Option(0, help="Stop after this many jobs (0: when nothing is left to run)."),
    sleep: int = typer.Option(10, help="Seconds to wait when jobs are waiting on others (e.g. a fan-out)."),
    timeout: Optional[int] = typer.Option(None, help="Stop starting new jobs after this many seconds."),
    directory: Path = typer.Option(Path("."), "--dir", help="Folder for the launch folders (one per job)."),
    category: Optional[str] = typer.Option(None, help="Only run Fireworks of this _category."),
) -> None:
    """Run jobs from the LaunchPad here until none is left (like `rlaunch rapidfire`; one FEFF at a time).

    Start one per core for FEFF: FEFF10 is single-threaded.
    """
    from xanesdb.platform.launchpad import get_launchpad, require_fireworks

    require_fireworks()
    from fireworks.core.fworker import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    if nlaunches < 0:
        raise XanesdbUserError("--nlaunches must be 0 or more")
    if sleep < 0 or (timeout is not None and timeout <= 0):
        raise XanesdbUserError("--sleep must be 0 or more and --timeout positive (seconds)")
    if directory.exists() and not directory.is_dir():
        raise XanesdbUserError(f"--dir {directory} is a file; give a folder for the launch folders")
    directory.mkdir(parents=True, exist_ok=True)
    lp = get_launchpad(get_settings(), strm_lvl="INFO")
    fworker = FWorker(name=name or socket.gethostname(), category=category or "")
    rapidfire(lp, fworker, m_dir=str(directory.resolve()), nlaunches=nlaunches, sleep_time=sleep, timeout=timeout,
              strm_lvl="INFO")


@app.command("status")
def status(
    expiration: int = typer.Option(4 * 3600, help="A running job silent this long (s) counts as lost."),
) -> None:
    """Workflows and Fireworks by state, lost-run candidates, and FEFF tasks stored per preset."""
    from xanesdb.platform.launchpad import get_launchpad, launchpad_summary, require_fireworks
    from xanesdb.platform.stats import feff_state_counts_by_preset
    from xanesdb.platform.stores import get_database

    require_fireworks()
    if expiration < 0:
        raise XanesdbUserError("--expiration must be 0 or more seconds")
    settings = get_settings()
    lp = get_launchpad(settings)
    summary = launchpad_summary(lp)
    states = ["WAITING", "READY", "RESERVED", "RUNNING", "COMPLETED", "FIZZLED", "DEFUSED", "PAUSED"]
    table = Table(title=f"LaunchPad in database {settings.DB_NAME!r}")
    table.add_column("state")
    for what in summary:
        table.add_column(what, justify="right")
    for s in states:
        table.add_row(s.lower(), *[str(counts.get(s, 0)) for counts in summary.values()])
    console.print(table)
    lost_launches, lost_fws, inconsistent = lp.detect_lostruns(expiration_secs=expiration)
    console.print(f"lost runs (running, silent > {expiration} s): {len(lost_fws)}"
                  + (f" (fw_ids {', '.join(map(str, lost_fws[:10]))}); rerun them with `xanesdb populate recover`"
                     if lost_fws else ""))
    if inconsistent:
        console.print(f"inconsistent Fireworks (refresh with `lpad detect_lostruns --refresh`): {len(inconsistent)}")
    for p, c in feff_state_counts_by_preset(get_database(settings), source="xanesdb").items():
        console.print(f"feff_tasks (xanesdb, preset {p}): {c.get('successful', 0)} successful, {c.get('failed', 0)} failed")


@app.command("recover")
def recover(
    expiration: int = typer.Option(4 * 3600, help="A running job silent this long (s) is lost (FireWorks pings hourly by default; see docs/cluster.md)."),
    rerun: bool = typer.Option(True, "--rerun/--no-rerun", help="Mark lost runs fizzled and rerun them (else only list them)."),
    fizzled: bool = typer.Option(False, "--fizzled", help="Also rerun FIZZLED FEFF Fireworks (a FEFF job skips a site whose task exists)."),
) -> None:
    """Detect lost runs (a worker killed mid-job) and rerun them; no task is duplicated."""
    from xanesdb.platform.launchpad import get_launchpad, require_fireworks

    require_fireworks()
    if expiration < 0:
        raise XanesdbUserError("--expiration must be 0 or more seconds")
    from xanesdb.jobs.feff.campaign import recover_lost_runs, rerun_fizzled_feff

    lp = get_launchpad(get_settings())
    lost = recover_lost_runs(lp, expiration, rerun=rerun)
    verb = "rerun" if rerun else "found"
    console.print(f"lost runs {verb}: {len(lost)}")
    for fw_id, name in lost.items():
        console.print(f"  fw {fw_id}: {name}", markup=False, highlight=False)
    if fizzled:
        console.print(f"fizzled FEFF Fireworks rerun: {len(rerun_fizzled_feff(lp))}")


def _check_writable_folder(folder: Path) -> None:
    """Refuse a folder that cannot be created or written, before anything is written anywhere."""
    import os

    if folder.exists() and not folder.is_dir():
        raise XanesdbUserError(f"{folder} is a file, not a folder; give a folder for the worker files")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise XanesdbUserError(f"cannot write in {parent}; give a folder you can write to")
    for name in ("my_launchpad.yaml", "my_fworker.yaml", "FW_config.yaml", "my_qadapter.yaml"):
        target = folder / name
        if target.exists() and (target.is_dir() or not target.is_file()):
            raise XanesdbUserError(f"{target} exists and is not a regular file; remove it or choose another folder")


@app.command("config")
def config(
    folder: Path = typer.Argument(..., help="Folder for my_launchpad.yaml and my_fworker.yaml."),
    name: Optional[str] = typer.Option(None, help="FireWorker name (default: this host's name)."),
    category: Optional[str] = typer.Option(None, help="FireWorker category."),
    ping: Optional[int] = typer.Option(None, help="Also write FW_config.yaml with PING_TIME_SECS (s)."),
    uri: bool = typer.Option(True, "--uri/--no-uri", help="Write the database URI into my_launchpad.yaml (mode 600)."),
    slurm_cores: Optional[int] = typer.Option(None, help="Also write a SLURM my_qadapter.yaml: one node job, one FEFF per core."),
    walltime: str = typer.Option("24:00:00", help="SLURM wall time of a node job (with --slurm-cores)."),
) -> None:
    """Write FireWorks worker files for this database and print the rlaunch command."""
    from xanesdb.platform.launchpad import get_launchpad, require_fireworks, rlaunch_command, write_worker_config

    require_fireworks()
    settings = get_settings()
    if ping is not None and ping < 1:
        raise XanesdbUserError("--ping must be at least 1 second")
    if slurm_cores is not None and slurm_cores < 1:
        raise XanesdbUserError("--slurm-cores must be at least 1")
    if not re.fullmatch(r"(\d+-)?\d{1,3}(:\d{2}){0,2}", walltime.strip()):
        raise XanesdbUserError(f"--walltime {walltime!r}: give SLURM's form, e.g. 24:00:00, 90:00 or 2-00:00:00")
    _check_writable_folder(folder)  # before the LaunchPad's collections are created
    get_launchpad(settings).connection.close()  # counters and indexes exist before any worker starts
    written = write_worker_config(folder, settings, worker_name=name, category=category, ping_seconds=ping,
                                  include_uri=uri, slurm_cores=slurm_cores, walltime=walltime)
    for kind, path in written.items():
        console.print(f"{kind}: {path}")
    console.print("workers (one per core; the worker's environment needs XANESDB_DB_URI and XANESDB_DB_NAME):")
    console.print("  " + " ".join(rlaunch_command(folder)), markup=False, highlight=False)
    if slurm_cores is not None:
        console.print(f"SLURM: qlaunch -q {folder / 'my_qadapter.yaml'} -l {folder / 'my_launchpad.yaml'} rapidfire "
                      "--nlaunches 4 (node jobs in the queue)", markup=False, highlight=False)
