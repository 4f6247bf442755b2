"""Labelling many structures in killable worker processes, each with a time limit, into ``sites``.

A structure that runs past the time limit, or crashes native code (spglib, ChemEnv), kills only its
worker, which is replaced; the structure is stored as failed sites with the reason.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from maggma.core import StoreError

from xanesdb.jobs.labels.chemenv import ABSORBERS, failed_site_docs, label_doc
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.schemas.site import SiteDoc
from xanesdb.schemas.structure import StructureDoc

if TYPE_CHECKING:
    from maggma.core import Store

logger = logging.getLogger(__name__)

__all__ = ["LabelSummary", "label_structures"]


#: modules a worker needs: imported once in the fork server (or before "ready" under spawn)
_WORKER_MODULES = [
    "xanesdb.jobs.labels.chemenv",
    "pymatgen.analysis.chemenv.coordination_environments.coordination_geometry_finder",
    "pymatgen.analysis.chemenv.coordination_environments.chemenv_strategies",
    "pymatgen.symmetry.analyzer",
    "pymatgen.analysis.bond_valence",
]


def _worker(conn: Any, symprec: float, validate: bool = True) -> None:
    """Worker process: label ``(structure dict, elements)`` tasks from ``conn`` until ``None``."""
    import importlib

    for name in _WORKER_MODULES:  # before "ready": imports do not count against the time limit
        importlib.import_module(name)
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        doc, elements = task
        docs = label_doc(StructureDoc.from_mongo(doc), elements, symprec, validate)
        conn.send([d.model_dump(mode="json") for d in docs])


@dataclass
class _Slot:
    process: Any
    conn: Any
    ready: bool = False
    task: dict | None = None
    elements: tuple[str, ...] = ()
    started: float = 0.0


@dataclass
class LabelSummary:
    """What a batch labelling run did."""

    structures: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    sites_written: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # forked workers start with pymatgen already imported and no database client
        ctx.set_forkserver_preload(_WORKER_MODULES)
        return ctx
    return multiprocessing.get_context("spawn")


def _done_elements(store: Store, material_ids: list[str]) -> dict[str, set[str]]:
    done: dict[str, set[str]] = {}
    for d in store.query({"material_id": {"$in": material_ids}}, properties=["material_id", "element"]):
        done.setdefault(d["material_id"], set()).add(d["element"])
    return done


def label_structures(
    docs: Iterable[StructureDoc | dict],
    store: Store | None = None,
    settings: XanesdbSettings | None = None,
    workers: int | None = None,
    timeout: float | None = None,
    elements: Sequence[str] = ABSORBERS,
    force: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    validate: bool = True,
) -> LabelSummary:
    """Label many structures in worker processes, each with a time limit, into ``sites``.

    A structure whose sites (for every requested element it contains) are already in the store is
    skipped unless ``force``; re-running is therefore idempotent. A structure that runs past
    ``timeout`` has its worker killed (and replaced) and is recorded as failed documents.
    Workers come from a fork server (spawn elsewhere), so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.

    Parameters
    ----------
    docs
        Structure documents (or their dicts).
    store
        The ``sites`` store; defaults to ``get_store("sites", settings)``. Connected here if needed.
    settings
        Settings for the defaults (workers, time limit, symprec, database).
    workers
        Worker processes (default ``settings.n_workers``).
    timeout
        Seconds allowed per structure (default ``settings.CHEMENV_TIMEOUT_S``).
    elements
        Absorbing elements to label.
    force
        Relabel structures whose sites are already stored.
    progress
        Called as ``progress(done, failed, remaining)`` after each structure.
    validate
        Check each structure (:func:`~xanesdb.schemas.structure.structure_problem`) before any
        symmetry code runs; an invalid one is stored as failed with the reason. ``False`` hands
        structures to spglib/ChemEnv unchecked: one that crashes native code kills only its worker,
        and is stored as failed (``worker process died (SIGSEGV, exit code -11) ...``) without the parent
        touching it again.

    Returns
    -------
    LabelSummary
    """
    settings = settings or get_settings()
    workers = max(1, workers or settings.n_workers)
    timeout = settings.CHEMENV_TIMEOUT_S if timeout is None else timeout
    elements = tuple(elements)
    if store is None:
        from xanesdb.platform.stores import get_store

        store = get_store("sites", settings)
    summary = LabelSummary()
    structs = [d if isinstance(d, StructureDoc) else StructureDoc.from_mongo(d) for d in docs]
    with _connected(store):
        # skip what is done (only elements still missing are labelled)
        done = {} if force else _done_elements(store, [s.material_id for s in structs])
        todo = _still_to_label(structs, elements, done, summary)
        summary.structures = len(todo)
        if todo:
            _run_pool(todo, store, settings.SYMPREC, workers, timeout, summary, progress, validate)
    return summary


@contextmanager
def _connected(store: Store) -> Iterator[Store]:
    """The store, connected here (and closed after) unless the caller connected it already."""
    try:
        store.count({"site_id": None})
    except StoreError:
        store.connect()
        try:
            yield store
        finally:
            store.close()
    else:
        yield store


def _still_to_label(structs: list[StructureDoc], elements: tuple[str, ...], done: dict[str, set[str]],
                    summary: LabelSummary) -> list[tuple[StructureDoc, tuple[str, ...]]]:
    """``(structure, elements still without sites)`` of each structure with any; counts the others as skipped."""
    todo: list[tuple[StructureDoc, tuple[str, ...]]] = []
    for s in structs:
        wanted = tuple(el for el in elements if el in s.elements)
        missing = tuple(el for el in wanted if el not in done.get(s.material_id, set()))
        if not missing:
            summary.skipped += 1
        else:
            todo.append((s, missing))
    return todo


def _death_reason(exitcode: int | None) -> str:
    """The failure reason of a worker that died: its exit code, and the signal by name."""
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return (f"worker process died ({name}, exit code {exitcode}) while labelling: a crash in native "
                "code (spglib or ChemEnv) or out of memory; not retried")
    return f"worker process died (exit code {exitcode}) while labelling; not retried"


def _run_pool(todo, store, symprec, workers, timeout, summary, progress, validate=True) -> None:
    """Feed ``todo`` to killable worker processes; upsert results as they come."""
    _LabelPool(list(todo), store, symprec, timeout, summary, progress, validate).run(workers)


@dataclass
class _LabelPool:
    """The parent's side of the labelling workers: hand out structures, collect or fail them, store the sites."""

    queue: list[tuple[StructureDoc, tuple[str, ...]]]
    store: Any
    symprec: float
    timeout: float
    summary: LabelSummary
    progress: Callable[[int, int, int], None] | None
    validate: bool = True
    remaining: int = 0
    ctx: Any = field(default_factory=lambda: _context())

    def run(self, workers: int) -> None:
        self.remaining = len(self.queue)
        slots = [self._start() for _ in range(min(workers, len(self.queue)))]
        try:
            while slots:
                self._hand_out(slots)
                ready = wait([sl.conn for sl in slots], timeout=0.05)
                keep: list[_Slot] = []
                for sl in slots:
                    keep.extend(self._service(sl, sl.conn in ready))
                slots = keep
        finally:
            for sl in slots:
                _stop(sl, kill=True)

    def _start(self) -> _Slot:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.symprec, self.validate), daemon=True)
        proc.start()
        child.close()
        return _Slot(proc, parent)

    def _hand_out(self, slots: list[_Slot]) -> None:
        """Give work to idle, ready workers."""
        for sl in slots:
            if sl.ready and sl.task is None and self.queue:
                doc, sl.elements = self.queue.pop(0)
                sl.task = doc.to_mongo()
                sl.started = time.perf_counter()
                sl.conn.send((sl.task, sl.elements))

    def _service(self, sl: _Slot, has_message: bool) -> list[_Slot]:
        """One worker's turn: read its message or check its time limit; the slots that carry on (itself, a
        replacement, or none)."""
        if has_message:
            try:
                msg = sl.conn.recv()
            except EOFError:  # the worker died (crash, out of memory)
                if sl.task is not None:
                    sl.process.join(5)
                    self._finish(sl, [], _death_reason(sl.process.exitcode), died=True)
                _stop(sl, kill=True)
                return [self._start()] if self.queue else []
            if msg == "ready":
                sl.ready = True
            else:
                self._finish(sl, msg, None)
        elif sl.task is not None and time.perf_counter() - sl.started > self.timeout:
            # past the time limit: kill the worker, record the failure, start another
            _stop(sl, kill=True)
            self._finish(sl, [], f"timeout: labelling took longer than {self.timeout:g} s")
            return [self._start()] if self.queue else []
        if sl.ready and sl.task is None and not self.queue:
            _stop(sl)  # nothing left for this worker
            return []
        return [sl]

    def _finish(self, slot: _Slot, site_docs: list[dict], failed: str | None, died: bool = False) -> None:
        """Store one structure's sites (or failed documents) and count it."""
        task, slot.task = slot.task, None
        seconds = time.perf_counter() - slot.started
        self.remaining -= 1
        if failed is not None:
            s = StructureDoc.from_mongo(task)
            # a worker that died crashed in native code (spglib, ChemEnv): the parent must not run
            # the symmetry analysis on that structure again, or it dies too
            docs = failed_site_docs(s.to_structure(), s.material_id, s.source, failed, s.formula,
                                    slot.elements, self.symprec, seconds, symmetry=not died)
        else:
            docs = [SiteDoc.model_validate(d) for d in site_docs]
        summary = self.summary
        if docs:
            self.store.update([d.to_mongo() for d in docs], key="site_id")
            summary.sites_written += len(docs)
        errors = [d.error for d in docs if d.state == "failed"]
        if errors:
            summary.failed += 1
            summary.failures[task["material_id"]] = errors[0] or "failed"
        else:
            summary.succeeded += 1
            summary.seconds[task["material_id"]] = seconds
        if self.progress is not None:
            self.progress(summary.succeeded + summary.failed, summary.failed, self.remaining)


def _stop(slot: _Slot, kill: bool = False) -> None:
    """End a worker: politely (``None`` task) or by killing it."""
    if not kill:
        try:
            slot.conn.send(None)
        except OSError:
            kill = True
        else:
            slot.process.join(5)
    if slot.process.is_alive():
        slot.process.kill()
    slot.process.join(5)
    slot.conn.close()
