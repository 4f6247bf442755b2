"""``xanesdb feff run``: FEFF for every pending site, in parallel worker processes on this machine.

The pending sites come from :func:`xanesdb.jobs.feff.pending.select_pending_sites` (their task
keys are known before anything runs), each site goes through the recipe
:func:`xanesdb.jobs.feff.task.compute_feff_task` and its task is written by
:func:`xanesdb.jobs.feff.task.write_tasks` as soon as its run finishes. So a run that is
interrupted (Ctrl-C, SIGKILL, a reboot) resumes where it stopped when started again, and never
duplicates a task. FEFF runs in parallel worker processes (default: one per core), each with its
own time limit. Progress reaches the caller through callbacks; nothing here prints.

Examples
--------
>>> from xanesdb.jobs.feff.local import populate_feff
>>> summary = populate_feff(elements=["Cu"], preset="fast", workers=2, limit=10)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from xanesdb.jobs.database import shared_database
from xanesdb.jobs.feff import run as feff_run
from xanesdb.jobs.feff.pending import DEFAULT_COVERED_BY, select_pending_sites
from xanesdb.jobs.feff.sets import get_preset, preset_hash_of
from xanesdb.jobs.feff.task import compute_feff_task, count_failure, failed_input_doc, safe_name, write_tasks
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.schemas import FeffTaskDoc

logger = logging.getLogger(__name__)

__all__ = ["PopulationSummary", "populate_feff", "load_structures"]


@dataclass
class PopulationSummary:
    """Outcome of one population run (also what progress callbacks receive while it runs).

    ``feff_seconds`` sums FEFF's wall time (worker process included); ``overhead_seconds`` sums
    everything else spent per site (input set, parsing, validation, database write).
    """

    preset: str
    preset_hash: str
    n_sites: int = 0
    n_already: int = 0
    n_pending: int = 0
    n_done: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    wall_seconds: float = 0.0
    feff_seconds: float = 0.0
    stage_seconds: float = 0.0
    overhead_seconds: float = 0.0
    workers: int = 1
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def sites_per_hour(self) -> float:
        """Throughput of this run."""
        n = self.n_done + self.n_failed
        return 3600.0 * n / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def count(self, doc: FeffTaskDoc | None, error: str | None = None) -> None:
        """Account one finished site: a task, a skipped site (None), or an error that stored nothing."""
        if doc is None and error is None:
            self.n_skipped += 1
            return
        if doc is not None and doc.state == "successful":
            self.n_done += 1
            return
        self.n_failed += 1
        if doc is not None:
            count_failure(self.failures, doc.error)
        else:
            count_failure(self.failures, error, width=120)


def load_structures(db: Any, material_ids: Sequence[str]) -> dict[str, dict]:
    """``material_id -> structure dict`` of these materials, read in chunks."""
    mids = sorted(set(material_ids))
    out: dict[str, dict] = {}
    for i in range(0, len(mids), 500):
        for d in db["structures"].find({"material_id": {"$in": mids[i:i + 500]}}, {"_id": 0, "material_id": 1, "structure": 1}):
            out[d["material_id"]] = d["structure"]
    return out


def populate_feff(
    settings: XanesdbSettings | None = None,
    elements: Sequence[str] | None = None,
    preset: str | None = None,
    workers: int | None = None,
    limit: int | None = None,
    edge: str = "K",
    feff_cmd: str | None = None,
    timeout: float | None = None,
    retry_failed: bool = False,
    keep_workdirs: bool = False,
    material_ids: Sequence[str] | None = None,
    on_task: Callable[[FeffTaskDoc], None] | None = None,
    on_start: Callable[[PopulationSummary], None] | None = None,
    on_progress: Callable[[PopulationSummary], None] | None = None,
    covered_by: Sequence[str] = DEFAULT_COVERED_BY,
    order: str = "site_id",
    db: Any = None,
    progress: bool = False,
) -> PopulationSummary:
    """Run FEFF for every labelled site not yet computed with ``preset``, in parallel.

    Parameters
    ----------
    settings
        Database, FEFF command and time limit, worker count (default: from the environment).
    elements
        Absorbing elements to compute (default: all labelled sites).
    preset
        'fast' or 'mp' (default ``settings.FEFF_PRESET``).
    workers
        Parallel FEFF processes (default ``settings.n_workers``: one per core).
    limit
        Compute at most this many sites in this run.
    feff_cmd, timeout
        External FEFF command (default ``settings.FEFF_CMD``; None: FEFF10) and time limit per run.
    retry_failed
        Also recompute sites whose task failed.
    keep_workdirs
        Keep every run folder under ``HOME/feff-runs`` (failed ones are always kept).
    on_task, on_start, on_progress
        Called with each finished task (after it is stored); with the summary once the pending
        sites are known, before FEFF starts; with the summary after each finished site.
    covered_by
        Sources whose successful tasks count as computed (default: imported Materials Project
        spectra); ``()`` computes every site.
    order
        ``"site_id"`` (stable) or ``"diverse"``: sites least like any computed one first.
    db
        The database to read sites from and write tasks to (default: the settings' database).
    progress
        Ignored; kept for callers of the former signature (show progress with ``on_progress``).
    """
    settings = settings or get_settings()
    preset_name = get_preset(preset or settings.FEFF_PRESET).name
    workers = workers or settings.n_workers
    if workers < 1:
        raise XanesdbUserError(f"workers must be at least 1 (XANESDB_WORKERS, or the workers argument), got {workers}")
    db = db if db is not None else shared_database(settings)
    pending, n_sites, n_already = select_pending_sites(db, elements, preset_name, edge, limit, retry_failed,
                                                       material_ids, covered_by, order)
    summary = PopulationSummary(preset=preset_name, preset_hash=preset_hash_of(preset_name, edge), n_sites=n_sites,
                                n_already=n_already, n_pending=len(pending), workers=workers)
    if on_start is not None:
        on_start(summary)
    if not pending:
        return summary
    runner = _SiteRunner(
        db=db, structures=load_structures(db, [s["material_id"] for s in pending]), preset=preset_name, edge=edge,
        feff_cmd=feff_cmd if feff_cmd is not None else settings.FEFF_CMD,
        timeout=timeout if timeout is not None else settings.FEFF_TIMEOUT_S,
        work_root=settings.HOME / "feff-runs", keep_workdirs=keep_workdirs, summary=summary,
    )
    t_start = time.perf_counter()
    _run_pool(pending, workers, runner, on_task, on_progress)
    summary.wall_seconds = time.perf_counter() - t_start
    return summary


def _run_pool(pending: list[dict], workers: int, runner: _SiteRunner, on_task, on_progress) -> None:
    """Run the sites in a pool of ``workers`` threads (one FEFF process each); Ctrl-C kills the running FEFF."""
    _remove_stale_workdirs(runner.work_root)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feff")
    try:
        _drive(pool, pending, workers, runner, runner.summary, on_task, on_progress)
    except BaseException:
        # Ctrl-C or a fatal error: run nothing more, kill the FEFF processes that run now;
        # finished tasks are stored already, so the next run resumes from here
        pool.shutdown(wait=False, cancel_futures=True)
        n = runner.kill_switch.kill()
        logger.warning("interrupted: killed %d running FEFF process(es); finished tasks are stored", n)
        raise
    pool.shutdown(wait=True)


@dataclass
class _SiteRunner:
    """One site in a pool thread: recipe in its own folder, store the task, keep or remove the folder."""

    db: Any
    structures: dict[str, dict]
    preset: str
    edge: str
    feff_cmd: str | None
    timeout: float | None
    work_root: Path
    keep_workdirs: bool
    summary: PopulationSummary
    #: this pool's FEFF processes: Ctrl-C kills them and starts no more (other executors untouched)
    kill_switch: feff_run.FeffKillSwitch = field(default_factory=feff_run.FeffKillSwitch)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, site: dict) -> FeffTaskDoc | None:
        from pymatgen.core import Structure

        t0 = time.perf_counter()
        sd = self.structures.get(site["material_id"])
        if sd is None:
            logger.warning("no structure %s for site %s; skipped", site["material_id"], site["site_id"])
            return None
        # unique per process: two runs on the same sites never share a folder
        workdir = self.work_root / f"{safe_name(site['task_id'])}.{os.getpid()}"
        try:
            doc = compute_feff_task(Structure.from_dict(sd), site["site_index"], site["material_id"], preset=self.preset,
                                    edge=self.edge, workdir=workdir, feff_cmd=self.feff_cmd, timeout=self.timeout,
                                    site_id=site["site_id"], name=f"feff xanes {site['site_id']}", clean=True,
                                    kill_switch=self.kill_switch)
        except Exception as err:  # noqa: BLE001 - a bad site is a failed task, not a dead run
            if self.kill_switch.stopped:
                raise
            logger.warning("site %s: %s", site["site_id"], err)
            doc = failed_input_doc(site, self.preset, self.edge, f"{type(err).__name__}: {err}"[:300])
        write_tasks([doc], self.db)
        if doc.state == "successful" and not self.keep_workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        elif workdir.is_dir():
            (workdir / "error.txt").write_text(f"{doc.task_id}\n{doc.error or ''}\n")
        total = time.perf_counter() - t0
        with self.lock:
            self.summary.feff_seconds += doc.wall_seconds or 0.0
            self.summary.stage_seconds += sum(doc.stage_seconds.values())
            self.summary.overhead_seconds += max(0.0, total - (doc.wall_seconds or 0.0))
        return doc


def _remove_stale_workdirs(work_root: Path) -> None:
    """Delete run folders left by a killed run (its pid is gone; failed runs' folders, with error.txt, stay)."""
    if not work_root.is_dir():
        return
    for d in work_root.iterdir():
        pid = d.suffix.lstrip(".")
        if not d.is_dir() or not pid.isdigit() or (d / "error.txt").is_file():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _drive(pool, pending, workers, one, summary, on_task, on_progress) -> None:
    """Keep ``workers`` sites running; account each finished one."""
    it = iter(pending)
    running = {}
    for site in it:
        running[pool.submit(one, site)] = site
        if len(running) >= workers:
            break
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in finished:
            site = running.pop(fut)
            nxt = next(it, None)
            if nxt is not None:
                running[pool.submit(one, nxt)] = nxt
            try:
                doc = fut.result()
            except Exception as err:  # noqa: BLE001 - one site never stops the others (e.g. a DB hiccup)
                logger.exception("site %s: %s", site["site_id"], err)
                summary.count(None, f"{type(err).__name__}: {err}")
            else:
                summary.count(doc)
                if doc is not None and on_task is not None:
                    on_task(doc)
            if on_progress is not None:
                on_progress(summary)
