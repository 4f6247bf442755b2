"""Populating ``feff_tasks``: FEFF for every labelled unique site not yet computed with a preset.

The task key ``<site_id>:<edge>:<preset-hash>`` is computed before anything runs, sites that
already have a task under that key are skipped, and each task is upserted as soon as its run
finishes. So a run that is interrupted (Ctrl-C, SIGKILL, a reboot) resumes where it stopped
when started again, and never duplicates a task. FEFF runs in parallel worker processes
(default: one per core), each with its own time limit.

Examples
--------
>>> from xanesdb.jobs.feff.flows import populate_feff
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
from typing import Any, Callable, Sequence

from xanesdb.jobs.feff import run as feff_run
from xanesdb.jobs.feff.jobs import compute_feff_task, store_feff_task
from xanesdb.jobs.feff.sets import get_preset, preset_cards
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.schemas import FeffTaskDoc, preset_hash, task_id as make_task_id

logger = logging.getLogger(__name__)

__all__ = ["PopulationSummary", "select_pending_sites", "populate_feff"]


@dataclass
class PopulationSummary:
    """Outcome of one population run.

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


def select_pending_sites(
    db: Any,
    elements: Sequence[str] | None = None,
    preset: str = "fast",
    edge: str = "K",
    limit: int | None = None,
    retry_failed: bool = False,
    material_ids: Sequence[str] | None = None,
    covered_by: Sequence[str] = ("mp",),
    order: str = "site_id",
) -> tuple[list[dict], int, int]:
    """Sites (from ``sites``) that have no task under this preset yet.

    A site that already has a successful task of the same edge from one of the sources in
    ``covered_by`` (default: Materials Project XAS documents imported with
    ``xanesdb structures import-mp-xas``) counts as computed, so only missing sites are run;
    pass ``covered_by=()`` to compute them anyway.

    Returns ``(pending, n_sites, n_already)``; each pending entry holds site_id, material_id,
    element, site_index and task_id. Sites are taken in site_id order, so ``limit`` is stable;
    ``order="diverse"`` takes them farthest-first by local environment instead
    (:func:`xanesdb.jobs.feff.diversity.diverse_site_order`: the sites least like anything computed
    come first, so a limited run adds the fewest near-duplicate spectra).
    """
    if order not in ("site_id", "diverse"):
        raise XanesdbUserError(f"unknown site order {order!r}; use site_id or diverse")
    phash = preset_hash(preset_cards(preset, edge))
    criteria: dict[str, Any] = {"state": {"$ne": "failed"}}
    if elements:
        criteria["element"] = {"$in": list(elements)}
    if material_ids:
        criteria["material_id"] = {"$in": list(material_ids)}
    sites = list(db["sites"].find(criteria, {"_id": 0, "site_id": 1, "material_id": 1, "element": 1, "site_index": 1})
                 .sort("site_id", 1))
    for s in sites:
        s["task_id"] = make_task_id(s["site_id"], edge, phash)
    done_criteria: dict[str, Any] = {"preset_hash": phash, "source": "xanesdb"}
    if retry_failed:
        done_criteria["state"] = "successful"
    if elements:
        done_criteria["element"] = {"$in": list(elements)}
    done = set(db["feff_tasks"].distinct("task_id", done_criteria))
    covered: set[str] = set()
    if covered_by:
        cov_criteria: dict[str, Any] = {"source": {"$in": list(covered_by)}, "edge": edge, "state": "successful"}
        if elements:
            cov_criteria["element"] = {"$in": list(elements)}
        covered = set(db["feff_tasks"].distinct("site_id", cov_criteria))
    pending = [s for s in sites if s["task_id"] not in done and s["site_id"] not in covered]
    n_already = len(sites) - len(pending)
    if order == "diverse" and pending:
        from xanesdb.jobs.feff.diversity import diverse_site_order

        pending = diverse_site_order(db, pending, phash)
    if limit is not None and limit > 0:
        pending = pending[:limit]
    return pending, len(sites), n_already


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


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
    progress: bool = True,
    console: Any = None,
    on_task: Callable[[FeffTaskDoc], None] | None = None,
    on_start: Callable[[PopulationSummary], None] | None = None,
    covered_by: Sequence[str] = ("mp",),
    order: str = "site_id",
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
    progress
        Show a rich progress bar (done / failed / remaining, sites per hour).
    on_task
        Called with each finished task (after it is stored).
    on_start
        Called with the summary once the pending sites are known, before FEFF starts.
    covered_by
        Sources whose successful tasks count as computed (default: imported Materials Project
        spectra); ``()`` computes every site.
    order
        ``"site_id"`` (stable) or ``"diverse"``: sites least like any computed one first (see
        :func:`select_pending_sites`).
    """
    from xanesdb.platform.stores import get_database

    settings = settings or get_settings()
    preset_name = get_preset(preset or settings.FEFF_PRESET).name
    workers = workers or settings.n_workers
    if workers < 1:
        raise XanesdbUserError("--workers must be at least 1")
    feff_cmd = feff_cmd if feff_cmd is not None else settings.FEFF_CMD
    timeout = timeout if timeout is not None else settings.FEFF_TIMEOUT_S
    db = get_database(settings)
    pending, n_sites, n_already = select_pending_sites(db, elements, preset_name, edge, limit, retry_failed, material_ids,
                                                      covered_by, order)
    summary = PopulationSummary(preset=preset_name, preset_hash=preset_hash(preset_cards(preset_name, edge)),
                                n_sites=n_sites, n_already=n_already, n_pending=len(pending), workers=workers)
    if on_start is not None:
        on_start(summary)
    if not pending:
        return summary
    # structures of the pending sites, once
    mids = sorted({s["material_id"] for s in pending})
    structures: dict[str, dict] = {}
    for i in range(0, len(mids), 500):
        for d in db["structures"].find({"material_id": {"$in": mids[i:i + 500]}}, {"_id": 0, "material_id": 1, "structure": 1}):
            structures[d["material_id"]] = d["structure"]
    work_root = settings.HOME / "feff-runs"
    _remove_stale_workdirs(work_root)
    tasks_coll = db["feff_tasks"]
    lock = threading.Lock()

    def one(site: dict) -> FeffTaskDoc | None:
        from pymatgen.core import Structure

        t0 = time.perf_counter()
        sd = structures.get(site["material_id"])
        if sd is None:
            logger.warning("no structure %s for site %s; skipped", site["material_id"], site["site_id"])
            return None
        # unique per process: two runs on the same sites never share a folder
        workdir = work_root / f"{_safe(site['task_id'])}.{os.getpid()}"
        try:
            structure = Structure.from_dict(sd)
            doc = compute_feff_task(structure, site["site_index"], site["material_id"], preset=preset_name, edge=edge,
                                    workdir=workdir, feff_cmd=feff_cmd, timeout=timeout, site_id=site["site_id"],
                                    name=f"feff xanes {site['site_id']}", clean=True)
        except Exception as err:  # noqa: BLE001 - a bad site is a failed task, not a dead run
            if stop.is_set():
                raise
            logger.warning("site %s: %s", site["site_id"], err)
            doc = _failed_doc(site, preset_name, edge, f"{type(err).__name__}: {err}"[:300])
        store_feff_task(doc, tasks_coll)
        if doc.state == "successful" and not keep_workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        elif workdir.is_dir():
            (workdir / "error.txt").write_text(f"{doc.task_id}\n{doc.error or ''}\n")
        total = time.perf_counter() - t0
        with lock:
            summary.feff_seconds += doc.wall_seconds or 0.0
            summary.stage_seconds += sum(doc.stage_seconds.values())
            summary.overhead_seconds += max(0.0, total - (doc.wall_seconds or 0.0))
        return doc

    stop = threading.Event()
    feff_run.allow_runs()
    bar = _ProgressBar(len(pending), workers, enabled=progress, console=console)
    t_start = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feff")
    try:
        _drive(pool, pending, workers, one, summary, bar, on_task)
    except BaseException:
        # Ctrl-C or a fatal error: run nothing more, kill the FEFF processes that run now;
        # finished tasks are stored already, so the next run resumes from here
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        n = feff_run.kill_running()
        logger.warning("interrupted: killed %d running FEFF process(es); finished tasks are stored", n)
        bar.close()
        raise
    pool.shutdown(wait=True)
    bar.close()
    summary.wall_seconds = time.perf_counter() - t_start
    return summary


def _remove_stale_workdirs(work_root) -> None:
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


def _failed_doc(site: dict, preset_name: str, edge: str, error: str) -> FeffTaskDoc:
    """A failed task for a site whose inputs could not even be made."""
    phash = preset_hash(preset_cards(preset_name, edge))
    return FeffTaskDoc(task_id=site["task_id"], site_id=site["site_id"], material_id=site["material_id"],
                       element=site["element"], absorbing_index=site["site_index"], edge=edge, source="xanesdb",
                       code="feff10-rs", preset=preset_name, preset_hash=phash, cards=preset_cards(preset_name, edge),
                       state="failed", error=f"input: {error}")


def _drive(pool, pending, workers, one, summary, bar, on_task) -> None:
    """Keep ``workers`` sites running; account each finished one."""
    bar.open()
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
                summary.n_failed += 1
                reason = f"{type(err).__name__}: {err}"[:120]
                summary.failures[reason] = summary.failures.get(reason, 0) + 1
                bar.advance(failed=True)
                continue
            if doc is None:
                summary.n_skipped += 1
                bar.advance(skipped=True)
                continue
            if doc.state == "successful":
                summary.n_done += 1
            else:
                summary.n_failed += 1
                reason = (doc.error or "")[:80]
                summary.failures[reason] = summary.failures.get(reason, 0) + 1
            bar.advance(failed=doc.state != "successful")
            if on_task is not None:
                on_task(doc)


class _ProgressBar:
    """rich progress: done / failed / remaining and sites per hour."""

    def __init__(self, total: int, workers: int, enabled: bool = True, console: Any = None) -> None:
        self.total, self.workers, self.enabled = total, workers, enabled
        self.done = self.failed = self.skipped = 0
        self.t0 = time.perf_counter()
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("FEFF [bold]{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), console=console, transient=False,
            )
            self._task = self._progress.add_task(f"{workers} workers", total=total, stats=self._stats())

    def _stats(self) -> str:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        n = self.done + self.failed
        rate = 3600.0 * n / elapsed if n else 0.0
        remaining = self.total - n - self.skipped
        return f"done {self.done}  failed {self.failed}  remaining {remaining}  {rate:.1f} sites/h"

    def advance(self, failed: bool = False, skipped: bool = False) -> None:
        if skipped:
            self.skipped += 1
        elif failed:
            self.failed += 1
        else:
            self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, stats=self._stats())

    def open(self) -> None:
        if self._progress is not None:
            self._progress.start()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
