"""FEFF batches: write inputs here, run FEFF on another machine, import the outputs.

For campaigns larger than the local machine: a 16-core node without the database (or without
xanesdb's dependencies) runs FEFF for thousands of sites, and the results come back as files.

1. :func:`export_inputs` (``xanesdb feff export-inputs DIR``) writes one folder per pending site
   (sites without a task under the preset, exactly what ``xanesdb feff run`` would compute):
   ``feff.inp`` plus ``task.json`` (task key, site, preset, cards, FEFF stages). Sites are ordered
   so that every prefix of the batch is balanced over (absorber, class): run any part of it and
   each absorber and class has grown.
2. :func:`run_batch` (``python -m xanesdb.jobs.feff.batch DIR --workers 16``) runs FEFF10 in each
   folder that has no ``result.json`` yet, one worker process per site with its time limit (the
   same runner as ``xanesdb feff run``), and writes ``result.json`` (wall time, per-stage times,
   host, error). It needs only the ``feff10`` package and the standard library: neither pymatgen
   nor a database. A ``--deadline`` stops it cleanly before a machine's lease ends: runs cut short
   leave no result and are simply run again next time, so the batch resumes.
3. :func:`import_batch` (``xanesdb feff import-batch DIR``) parses and validates every finished
   folder exactly as a local run is (the same error reasons) and upserts the task under its
   deterministic key, so a site is never stored twice and a finished local task is not replaced.

Examples
--------
>>> # here: xanesdb feff export-inputs /scratch/batch --preset fast
>>> # there: python -m xanesdb.jobs.feff.batch /scratch/batch --workers 16 --deadline 3000
>>> # here: xanesdb feff import-batch /scratch/batch
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from xanesdb.jobs.feff import run as feff_run
from xanesdb.jobs.feff.workdir import KEEP_FILES, clean_folder, safe_name
from xanesdb.platform.errors import XanesdbUserError

logger = logging.getLogger(__name__)

__all__ = ["TASK_FILE", "RESULT_FILE", "MANIFEST", "export_inputs", "run_batch", "import_batch", "pack_results",
           "BatchImportSummary", "balanced_order", "order_batch", "LIKELY_DUPLICATE_DISTANCE"]

#: fingerprint distance below which a site's spectrum is likely a near-duplicate (90.2 % of the
#: bundled sites this close to another had a spectrum within 0.015 of it; benchmarks/bench_batch_order.py)
LIKELY_DUPLICATE_DISTANCE = 0.1

TASK_FILE = "task.json"
RESULT_FILE = "result.json"
MANIFEST = "manifest.json"
#: files of a finished folder worth keeping (and packing); FEFF's bulky by-products are deleted
KEEP = (*KEEP_FILES, TASK_FILE, RESULT_FILE)


def balanced_order(sites: Sequence[dict], key: str = "lce_class", main_classes: Sequence[str] = ("T4", "S5", "O6")) -> list[dict]:
    """Round-robin over (element, class) buckets, main classes first, so every prefix is balanced.

    Within a bucket, sites keep their order (site_id order: stable across runs). Sites of other
    classes come after every main-class site.
    """
    buckets: dict[tuple[str, str], list[dict]] = {}
    for s in sites:
        buckets.setdefault((s["element"], str(s.get(key))), []).append(s)
    main = sorted(k for k in buckets if k[1] in main_classes)
    rest = sorted(k for k in buckets if k[1] not in main_classes)
    out: list[dict] = []
    for keys in (main, rest):
        queues = [list(buckets[k]) for k in keys]
        depth = max((len(q) for q in queues), default=0)
        for i in range(depth):
            out.extend(q[i] for q in queues if i < len(q))
    return out


def export_inputs(
    db: Any,
    out_dir: str | Path,
    elements: Sequence[str] | None = None,
    preset: str = "fast",
    edge: str = "K",
    limit: int | None = None,
    classes: Sequence[str] | None = None,
    retry_failed: bool = False,
    progress: Any = None,
    order: str = "balanced",
    symbols: Sequence[str] | None = None,
) -> dict[str, int]:
    """Write the FEFF inputs of pending sites into ``out_dir`` (one folder per task), idempotently.

    Parameters
    ----------
    db
        Database with ``sites``, ``structures`` and ``feff_tasks`` (pymongo, or mongomock in tests).
    out_dir
        Batch folder; folders already in it are kept (their task is not written again).
    elements, classes
        Absorbers and ChemEnv classes (``lce_class``) to include; default all.
    symbols
        ChemEnv symbols (``chemenv_symbol``, e.g. ``L:2`` for linear sites, ``S:4`` square planar) to
        include; default all. Sites outside T:4/S:5/O:6 have no ``lce_class``, so this is how they
        are chosen.
    preset, edge
        FEFF preset and edge; the sites are :func:`xanesdb.jobs.feff.pending.select_pending_sites`'s
        (no task under this preset, not covered by an imported Materials Project spectrum).
    limit
        Write at most this many new folders, taken in balanced order.
    retry_failed
        Also write sites whose task failed.
    progress
        Called as ``progress(done, total)`` after each folder written.
    order
        ``"balanced"``: round-robin over (absorber, class) (:func:`balanced_order`); ``"diverse"``:
        farthest-first by local environment against the computed tasks
        (:func:`xanesdb.jobs.feff.diversity.diverse_site_order`). ``limit`` takes the head of it.

    Returns
    -------
    dict
        ``{"pending": ..., "written": ..., "already_in_batch": ..., "in_batch": ...}``
    """
    from xanesdb.jobs.feff.local import load_structures
    from xanesdb.jobs.feff.sets import get_preset

    if order not in ("balanced", "diverse"):
        raise ValueError(f"unknown order {order!r}; use balanced or diverse")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preset_obj = get_preset(preset)
    ordered = _ordered_pending(db, elements, preset_obj.name, edge, classes, retry_failed, order, symbols)
    manifest_path = out / MANIFEST
    manifest = _read_json(manifest_path) if manifest_path.is_file() else {"folders": []}
    in_batch = set(manifest["folders"])
    todo = [s for s in ordered if safe_name(s["task_id"]) not in in_batch]
    already = len(ordered) - len(todo)
    if limit is not None:
        todo = todo[: max(limit, 0)]
    structures = load_structures(db, [s["material_id"] for s in todo])
    written = 0
    for i, s in enumerate(todo):
        if s["material_id"] not in structures:
            logger.warning("no structure %s for site %s; skipped", s["material_id"], s["site_id"])
            continue
        manifest["folders"].append(_write_folder(out, s, structures[s["material_id"]], preset_obj, edge))
        written += 1
        if progress is not None:
            progress(i + 1, len(todo))
    manifest.update(preset=preset_obj.name, preset_hash=_preset_hash(preset_obj, edge), edge=edge)
    tmp_manifest = out / f".{MANIFEST}.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=1))
    tmp_manifest.replace(manifest_path)
    return {"pending": len(ordered), "written": written, "already_in_batch": already, "in_batch": len(manifest["folders"])}


def _preset_hash(preset: Any, edge: str) -> str:
    from xanesdb.jobs.feff.sets import preset_hash_of

    return preset_hash_of(preset, edge)


def _ordered_pending(db: Any, elements: Sequence[str] | None, preset: str, edge: str, classes: Sequence[str] | None,
                     retry_failed: bool, order: str, symbols: Sequence[str] | None = None) -> list[dict]:
    """The pending sites with their ``lce_class``, of the wanted classes and symbols, in batch order."""
    from xanesdb.jobs.feff.pending import select_pending_sites

    pending, _, _ = select_pending_sites(db, elements, preset, edge, None, retry_failed)
    labels = {}
    ids = [s["site_id"] for s in pending]
    for i in range(0, len(ids), 1000):
        for d in db["sites"].find({"site_id": {"$in": ids[i:i + 1000]}},
                                  {"_id": 0, "site_id": 1, "lce_class": 1, "chemenv_symbol": 1}):
            labels[d["site_id"]] = (d.get("lce_class"), d.get("chemenv_symbol"))
    for s in pending:
        s["lce_class"], s["chemenv_symbol"] = labels.get(s["site_id"], (None, None))
    if classes:
        pending = [s for s in pending if s["lce_class"] in set(classes)]
    if symbols:
        pending = [s for s in pending if s["chemenv_symbol"] in set(symbols)]
    if order == "diverse":
        from xanesdb.jobs.feff.diversity import diverse_site_order

        return diverse_site_order(db, pending, _preset_hash(preset, edge))
    return balanced_order(pending)


def _write_folder(out: Path, site: dict, structure: dict, preset: Any, edge: str) -> str:
    """Write one site's folder (``feff.inp`` + ``task.json``) atomically; returns its name."""
    from pymatgen.core import Structure

    from xanesdb.jobs.feff.sets import feff_input_text, input_hash, preset_cards, stages_for_cards

    cards = preset_cards(preset, edge)
    name = safe_name(site["task_id"])
    folder = out / name
    tmp = out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    text = feff_input_text(Structure.from_dict(structure), site["site_index"], preset, edge=edge)
    (tmp / "feff.inp").write_text(text)
    task = {"task_id": site["task_id"], "site_id": site["site_id"], "material_id": site["material_id"],
            "element": site["element"], "absorbing_index": site["site_index"], "lce_class": site["lce_class"],
            "edge": edge, "preset": preset.name, "preset_hash": _preset_hash(preset, edge), "cards": cards,
            "stages": stages_for_cards(cards), "input_hash": input_hash(text),
            "feff_inp": text}  # FEFF10 rewrites feff.inp in its folder: the input as written is kept here
    (tmp / TASK_FILE).write_text(json.dumps(task, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return name


def _input_text(folder: Path, task: dict) -> str:
    return task.get("feff_inp") or (folder / "feff.inp").read_text()


def order_batch(batch_dir: str | Path, db: Any = None) -> dict[str, Any]:
    """Reorder a batch's unfinished folders farthest-first by local environment (rewrites its manifest).

    The reference set is every finished, successful folder of the batch plus, with ``db``, every
    successful ``feff_tasks`` document of the batch's preset (same ``preset_hash``). Finished
    folders keep their place at the front; unfinished ones follow in
    :func:`xanesdb.jobs.feff.diversity.farthest_first` order. Nothing else in the folders changes,
    so the batch runner (which runs folders in manifest order) picks the new order up on its next
    start.

    Returns
    -------
    dict
        ``{"finished": n, "unfinished": n, "reference": n, "already_in_db": n,
        "by_element": {el: (unfinished, likely duplicates)}}``; ``already_in_db`` counts unfinished
        folders whose task the database already has (computed elsewhere): they are placed last.
    """
    from xanesdb.jobs.feff.diversity import environment_fingerprint, farthest_first

    batch = Path(batch_dir)
    folders = _folders(batch)
    manifest_path = batch / MANIFEST
    manifest = _read_json(manifest_path) if manifest_path.is_file() else {}
    finished, todo, done = [], [], []
    hashes = set()
    for folder in folders:
        task = _read_json(folder / TASK_FILE)
        hashes.add(task.get("preset_hash"))
        result = folder / RESULT_FILE
        if result.is_file():
            finished.append(folder.name)
            if _read_json(result).get("ok"):
                done.append((task["task_id"], task["element"], environment_fingerprint(_input_text(folder, task))))
        else:
            todo.append((folder.name, task["task_id"], task["element"], environment_fingerprint(_input_text(folder, task))))
    seen = {t for t, _, _ in done}
    reference = [(el, fp) for _, el, fp in done]
    in_db: set[str] = set()
    if db is not None and hashes - {None}:
        query = {"state": "successful", "source": "xanesdb", "preset_hash": {"$in": sorted(hashes - {None})}}
        for d in db["feff_tasks"].find(query, {"_id": 0, "task_id": 1, "element": 1, "feff_inp": 1}):
            in_db.add(d["task_id"])
            if d["task_id"] not in seen and d.get("feff_inp"):
                reference.append((d["element"], environment_fingerprint(d["feff_inp"])))
    # folders whose task the database already has (computed elsewhere) go last: running them adds nothing
    stored = [name for name, task_id, _, _ in todo if task_id in in_db]
    ranked = farthest_first([(name, el, fp) for name, task_id, el, fp in todo if task_id not in in_db], reference)
    by_element: dict[str, list[int]] = {}
    for r in ranked:
        counts = by_element.setdefault(r.element, [0, 0])
        counts[0] += 1
        counts[1] += r.distance < LIKELY_DUPLICATE_DISTANCE
    placed = finished + [str(r.key) for r in ranked] + stored
    listed = set(placed)
    manifest["folders"] = placed + [n for n in manifest.get("folders", []) if n not in listed]  # keep the rest
    tmp = batch / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(manifest_path)
    return {"finished": len(finished), "unfinished": len(ranked), "reference": len(reference), "already_in_db": len(stored),
            "by_element": {el: tuple(v) for el, v in sorted(by_element.items())}}


def _read_json(path: Path, key: str | None = None) -> dict:
    """The JSON object of a batch file, or a one-line :class:`XanesdbUserError` naming the file and the fix."""
    path = Path(path)
    fix = ("remove it: the folders are then found by their task.json"
           if path.name == MANIFEST else "write the batch again (xanesdb feff export-inputs) or remove that site's folder")
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise XanesdbUserError(f"{path}: not readable JSON ({why}); {fix}") from None
    if not isinstance(d, dict) or (key is not None and key not in d):
        raise XanesdbUserError(f"{path}: not a batch file of xanesdb{f' (no {key!r})' if key else ''}; {fix}")
    return d


def _folders(batch: Path) -> list[Path]:
    manifest = batch / MANIFEST
    if manifest.is_file():
        names = _read_json(manifest, key="folders")["folders"]
        return [batch / n for n in names if (batch / n / "feff.inp").is_file()]
    return sorted(p.parent for p in batch.glob(f"*/{TASK_FILE}"))


def run_batch(
    batch_dir: str | Path,
    workers: int | None = None,
    timeout: float | None = 1800.0,
    deadline: float | None = None,
    limit: int | None = None,
    names: Sequence[str] | None = None,
    log: Any = None,
    feff_cmd: str | None = None,
) -> dict[str, Any]:
    """Run FEFF10 in every folder of the batch without a ``result.json``; write one per finished run.

    Parameters
    ----------
    batch_dir
        Folder written by :func:`export_inputs`.
    workers
        Parallel FEFF processes (default: one per core).
    timeout
        Wall-time limit per site (s); a site past it is a failed run ("timeout").
    deadline
        Seconds from now after which no run starts, and running ones are killed without a
        result (they run again next time): fit a batch into a lease.
    limit
        Run at most this many folders.
    names
        Run only these folders (in this order).
    log
        Stream for one line per finished site (default stdout).
    feff_cmd
        An external FEFF executable (e.g. FEFF9) run in each folder instead of FEFF10.

    Returns
    -------
    dict
        Counts and timing: ``done``, ``failed``, ``cut`` (stopped by the deadline), ``wall_s``,
        ``sites_per_hour``, ``workers``.
    """
    for bad, message in ((workers is not None and workers < 1, "--workers must be at least 1"),
                         (timeout is not None and timeout <= 0, "--timeout must be positive (seconds a site may run)"),
                         (deadline is not None and deadline <= 0, "--deadline must be positive (seconds after which no run starts)"),
                         (limit is not None and limit < 0, "--limit must be 0 or more")):
        if bad:  # before any folder is read or result written
            raise XanesdbUserError(message)
    batch = Path(batch_dir)
    workers = workers or os.cpu_count() or 1
    log = log or sys.stdout
    folders = [batch / n for n in names] if names else _folders(batch)
    todo = [f for f in folders if not (f / RESULT_FILE).is_file()]
    finished_before = len(folders) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    t_start = time.monotonic()
    one = _FolderRunner(t_end=t_start + deadline if deadline else None, timeout=timeout, feff_cmd=feff_cmd,
                        workers=workers, total=len(todo), log=log)
    one.counts["skipped"] = finished_before
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feff") as pool:
        try:
            list(pool.map(one, todo))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            one.kill_switch.kill()  # this run's FEFF processes only
            raise
    wall = time.monotonic() - t_start
    counts = one.counts
    n = counts["done"] + counts["failed"]
    return {**counts, "workers": workers, "wall_s": round(wall, 1), "sites_per_hour": round(3600 * n / wall, 1) if wall else 0.0}


@dataclass
class _FolderRunner:
    """One batch folder in a pool thread: FEFF, then ``result.json`` (or nothing when the deadline cut it)."""

    t_end: float | None
    timeout: float | None
    feff_cmd: str | None
    workers: int
    total: int
    log: Any
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "failed": 0, "cut": 0, "skipped": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)
    host: str = field(default_factory=socket.gethostname)
    version: str | None = field(default_factory=feff_run.feff10_version)
    kill_switch: feff_run.FeffKillSwitch = field(default_factory=feff_run.FeffKillSwitch)

    def _cut(self) -> None:
        with self.lock:
            self.counts["cut"] += 1

    def __call__(self, folder: Path) -> None:
        now = time.monotonic()
        if self.t_end is not None and now >= self.t_end - 1:
            return self._cut()
        task = _read_json(folder / TASK_FILE)
        limit_s = self.timeout
        if self.t_end is not None:
            limit_s = min(limit_s or float("inf"), self.t_end - now)
        t0 = time.time()
        result = feff_run.run_feff(folder, feff_cmd=self.feff_cmd, timeout=limit_s, stages=task.get("stages"),
                                   kill_switch=self.kill_switch)
        if (result.returncode is None and self.t_end is not None and time.monotonic() >= self.t_end - 1
                and (self.timeout is None or result.wall_seconds < self.timeout)):
            clean_folder(folder, KEEP)  # cut by the deadline, not by the site's own limit: run again next time
            (folder / "xmu.dat").unlink(missing_ok=True)
            return self._cut()
        if not result.ok:
            result.error = result.error or "FEFF10 failed"
        clean_folder(folder, KEEP)
        record = {"ok": result.ok, "returncode": result.returncode, "error": result.error, "code": result.code,
                  "code_version": result.code_version or self.version, "wall_seconds": round(result.wall_seconds, 3),
                  "stage_seconds": result.stage_seconds, "hostname": self.host, "started": t0, "finished": time.time(),
                  "workers": self.workers, "timeout": self.timeout}
        tmp = folder / f".{RESULT_FILE}.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(folder / RESULT_FILE)
        with self.lock:
            self.counts["done" if result.ok else "failed"] += 1
            n = self.counts["done"] + self.counts["failed"]
            print(f"[{n}/{self.total}] {task['task_id']}: {'ok' if result.ok else 'FAILED ' + str(result.error)} "
                  f"{result.wall_seconds:.1f} s", file=self.log, flush=True)


def pack_results(batch_dir: str | Path, out_file: str | Path, names: Sequence[str] | None = None) -> int:
    """Pack every finished folder (``KEEP`` files only) into a ``.tar.gz``; returns how many."""
    batch = Path(batch_dir)
    n = 0
    with tarfile.open(out_file, "w:gz") as tar:
        for folder in ([batch / x for x in names] if names else _folders(batch)):
            if not (folder / RESULT_FILE).is_file():
                continue
            for name in KEEP:
                if (folder / name).is_file():
                    tar.add(folder / name, arcname=f"{folder.name}/{name}")
            n += 1
    return n


@dataclass
class BatchImportSummary:
    """What :func:`import_batch` did."""

    imported: int = 0
    failed: int = 0
    kept_existing: int = 0
    not_run: int = 0
    by_element: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    feff_seconds: list[float] = field(default_factory=list)


def import_batch(batch_dir: str | Path, db: Any, replace_successful: bool = False) -> BatchImportSummary:
    """Parse, validate and upsert every finished folder of a batch (or an unpacked ``.tar.gz`` of one).

    Each folder goes through the last steps of the recipe, :func:`xanesdb.jobs.feff.task.task_doc_from_folder`
    (the same error reasons as a local run), and its task is written by
    :func:`xanesdb.jobs.feff.task.write_tasks` under its deterministic key. A task that is already
    ``successful`` in the database is kept unless ``replace_successful``.
    """
    from xanesdb.jobs.feff.pending import existing_task_ids
    from xanesdb.jobs.feff.task import count_failure, task_doc_from_folder, write_tasks

    batch = Path(batch_dir)
    summary = BatchImportSummary()
    folders = sorted(p.parent for p in batch.glob(f"*/{TASK_FILE}"))
    tasks = [_read_json(f / TASK_FILE, key="task_id") for f in folders]
    good = set() if replace_successful else existing_task_ids(db, [t["task_id"] for t in tasks], retry_failed=True)
    docs = []
    for folder, task in zip(folders, tasks):
        if not (folder / RESULT_FILE).is_file():
            summary.not_run += 1
            continue
        if task["task_id"] in good:
            summary.kept_existing += 1
            continue
        result = _read_json(folder / RESULT_FILE)
        doc = task_doc_from_folder(folder, task, result, _original_input(folder, task, db))
        if doc.task_id != task["task_id"]:
            raise ValueError(f"{folder}: task.json names {task['task_id']} but its fields give {doc.task_id}")
        docs.append(doc)
        if doc.state == "successful":
            summary.imported += 1
            summary.by_element[doc.element] = summary.by_element.get(doc.element, 0) + 1
            summary.feff_seconds.append(doc.wall_seconds or 0.0)
        else:
            summary.failed += 1
            count_failure(summary.failures, doc.error)
    write_tasks(docs, db)
    return summary


def _original_input(folder: Path, task: dict, db: Any) -> str:
    """The ``feff.inp`` text as exported (FEFF10 rewrites the file in its run folder).

    Taken from ``task.json``; batches exported before it was kept there get it regenerated from the
    stored structure, checked against the exported ``input_hash``.
    """
    from pymatgen.core import Structure

    from xanesdb.jobs.feff.sets import feff_input_text, get_preset, input_hash

    if task.get("feff_inp"):
        return task["feff_inp"]
    sd = db["structures"].find_one({"material_id": task["material_id"]}, {"structure": 1})
    if sd is not None:
        text = feff_input_text(Structure.from_dict(sd["structure"]), task["absorbing_index"], get_preset(task["preset"]),
                               edge=task["edge"])
        if input_hash(text) == task.get("input_hash"):
            return text
    logger.warning("%s: the exported input could not be regenerated; storing the feff.inp FEFF left", folder.name)
    return (folder / "feff.inp").read_text()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xanesdb.jobs.feff.batch DIR``: run a batch where only ``feff10`` is installed."""
    p = argparse.ArgumentParser(prog="python -m xanesdb.jobs.feff.batch", description=run_batch.__doc__.splitlines()[0])
    p.add_argument("batch_dir")
    p.add_argument("--workers", type=int, default=None, help="parallel FEFF processes (default: one per core)")
    p.add_argument("--timeout", type=float, default=1800.0, help="wall-time limit per site, s")
    p.add_argument("--deadline", type=float, default=None, help="stop starting runs after this many s; cut runs leave no result")
    p.add_argument("--limit", type=int, default=None, help="run at most this many folders")
    p.add_argument("--names", default=None, help="file listing folder names to run, one per line, in order")
    p.add_argument("--feff-cmd", default=None, help="external FEFF executable to run instead of FEFF10")
    p.add_argument("--pack", default=None, help="write the finished folders into this .tar.gz afterwards")
    a = p.parse_args(argv)
    if not Path(a.batch_dir).is_dir():
        print(f"error: no batch folder {a.batch_dir}; write one with `xanesdb feff export-inputs DIR`", file=sys.stderr)
        return 2
    names = Path(a.names).read_text().split() if a.names else None
    try:
        out = run_batch(a.batch_dir, a.workers, a.timeout, a.deadline, a.limit, names, feff_cmd=a.feff_cmd)
    except XanesdbUserError as err:  # a bad option or damaged batch file: one line, as the xanesdb command says it
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(out), flush=True)
    if a.pack:
        n = pack_results(a.batch_dir, a.pack, names)
        print(f"packed {n} finished folders into {a.pack}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
