"""The FEFF recipe: one symmetry-unique absorbing site -> one ``feff_tasks`` document.

Every engine (``xanesdb feff run``, jobflow flows run locally or on FireWorks, the batch
export/run/import) goes through this module:

- :func:`feff_task_key`: the deterministic key ``<site_id>:<edge>:<preset-hash>``;
- :func:`compute_feff_task`: input set -> run -> parse -> validate, with the error ladder;
- :func:`task_doc_from_folder`: parse and validate a finished run folder into a document (the
  last steps of the recipe, also used for folders run elsewhere by the batch runner);
- :func:`make_task_doc` / :func:`failed_input_doc`: the only places a :class:`FeffTaskDoc` of
  xanesdb's own runs is filled;
- :func:`write_tasks`: the one writer of ``feff_tasks`` (upserts on the key).

The kept files and folder names are in :mod:`xanesdb.jobs.feff.workdir` (standard library only,
for the batch runner).
"""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from xanesdb.jobs.feff import run as feff_run
from xanesdb.jobs.feff.parse import parse_xmu, scf_converged
from xanesdb.jobs.feff.sets import (
    FeffPreset,
    feff_input_text,
    get_preset,
    input_hash,
    preset_cards,
    preset_hash_of,
    stages_for_cards,
)
from xanesdb.jobs.feff.validate import next_action, validate_spectrum
from xanesdb.jobs.feff.workdir import KEEP_FILES, clean_folder, safe_name
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.provenance import FEFF_LIBRARIES, library_versions
from xanesdb.platform.settings import SETTINGS
from xanesdb.schemas import FeffTaskDoc, HandlerAction, site_id as make_site_id, task_id as make_task_id

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from xanesdb.jobs.feff.run import FeffKillSwitch

logger = logging.getLogger(__name__)

__all__ = [
    "KEEP_FILES",
    "safe_name",
    "clean_folder",
    "feff_task_key",
    "compute_feff_task",
    "assess_attempt",
    "task_doc_from_folder",
    "make_task_doc",
    "failed_input_doc",
    "write_tasks",
    "count_failure",
]

#: the source of xanesdb's own FEFF runs (imports carry their own)
SOURCE = "xanesdb"


def feff_task_key(material_id: str, element: str, absorbing_index: int, preset: str | FeffPreset = "fast",
                  edge: str = "K", site_id: str | None = None) -> str:
    """The deterministic task id of a site under a preset (what makes resuming possible)."""
    sid = site_id or make_site_id(material_id, element, absorbing_index)
    return make_task_id(sid, edge, preset_hash_of(preset, edge))


def compute_feff_task(
    structure: Structure,
    absorbing_index: int,
    material_id: str,
    preset: str | FeffPreset = SETTINGS.FEFF_PRESET,
    edge: str = "K",
    workdir: str | Path = ".",
    feff_cmd: str | None = SETTINGS.FEFF_CMD,
    timeout: float | None = SETTINGS.FEFF_TIMEOUT_S,
    max_actions: int = 3,
    site_id: str | None = None,
    name: str | None = None,
    clean: bool = False,
    kill_switch: FeffKillSwitch | None = None,
) -> FeffTaskDoc:
    """Write inputs, run FEFF, parse and validate, climbing the error ladder on failure.

    Parameters
    ----------
    structure, absorbing_index, material_id
        The site: its structure, 0-based index of the absorber, and the structure's id.
    preset
        'fast', 'mp' or a :class:`~xanesdb.jobs.feff.sets.FeffPreset`.
    edge
        Absorption edge.
    workdir
        Folder for the run; each attempt runs in ``attempt-<n>`` under it.
    feff_cmd
        External FEFF command; None runs FEFF10 (feff10-rs) in a worker process.
    timeout
        Wall-time limit per attempt (s).
    max_actions
        Most error-ladder actions before giving up.
    site_id
        Key of the site; default ``<material_id>:<element>:<absorbing_index>``.
    name
        Label of the run (job name), passed to the runner.
    clean
        Delete the bulky FEFF by-products of the last attempt (see
        :data:`~xanesdb.jobs.feff.workdir.KEEP_FILES`).
    kill_switch
        The calling executor's :class:`~xanesdb.jobs.feff.run.FeffKillSwitch`: its :meth:`kill`
        stops this site's FEFF (None: only the time limit does).

    Returns
    -------
    FeffTaskDoc
        ``state='successful'`` with the spectrum, or ``state='failed'`` with ``error``.
    """
    preset = get_preset(preset)
    if not 0 <= absorbing_index < len(structure):
        raise XanesdbUserError(f"absorbing index {absorbing_index} is outside the structure ({len(structure)} sites)")
    element = structure[absorbing_index].specie.symbol
    site_id = site_id or make_site_id(material_id, element, absorbing_index)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_kwargs: dict[str, Any] = dict(feff_cmd=feff_cmd, timeout=timeout, name=name)
    if kill_switch is not None:  # a runner swapped in by tests need not know the argument otherwise
        run_kwargs["kill_switch"] = kill_switch
    last = _run_attempts(structure, absorbing_index, preset, edge, workdir, element, site_id, run_kwargs, max_actions)
    if clean:
        clean_folder(last["folder"])
    result, xmu = last["result"], last["xmu"]
    code = result.code if not feff_cmd else (xmu.code if xmu and xmu.code else result.code)
    return make_task_doc(
        site_id, material_id, element, absorbing_index, edge, preset.name, preset_hash_of(preset, edge), last["cards"],
        last["text"], last["error"], last["warnings"], last["actions"], xmu, code=code,
        code_version=result.code_version or (xmu.code if xmu else None), stage_seconds=result.stage_seconds,
        wall_seconds=last["wall_seconds"], hostname=socket.gethostname(),
    )


def _run_attempts(structure: Structure, absorbing_index: int, preset: FeffPreset, edge: str, workdir: Path,
                  element: str, site_id: str, run_kwargs: dict[str, Any], max_actions: int) -> dict[str, Any]:
    """Attempts ``attempt-0``, ``attempt-1`` ... until a good spectrum or the ladder gives up; the last one."""
    actions: list[HandlerAction] = []
    current = preset
    total_wall = 0.0
    while True:
        cards = preset_cards(current, edge)
        text = feff_input_text(structure, absorbing_index, current, edge=edge)
        attempt = workdir / f"attempt-{len(actions)}"
        if attempt.exists():  # left by an interrupted run
            shutil.rmtree(attempt)
        attempt.mkdir(parents=True)
        (attempt / "feff.inp").write_text(text)
        # run FEFF (through the module attribute, so tests can replace it)
        result = feff_run.run_feff(attempt, stages=stages_for_cards(cards), **run_kwargs)
        total_wall += result.wall_seconds
        error, xmu, warnings = assess_attempt(attempt, result.error, cards, element, edge)
        if error is None or (action := next_action(error, cards, actions, max_actions)) is None:
            return {"folder": attempt, "cards": cards, "text": text, "result": result, "error": error, "xmu": xmu,
                    "warnings": warnings, "actions": actions, "wall_seconds": total_wall}
        logger.info("%s: %s -> %s", site_id, error, action.action)
        actions.append(action)
        current = current.with_cards(**action.action)


def assess_attempt(attempt: Path, run_error: str | None, cards: dict[str, Any], element: str, edge: str = "K"):
    """Parse and validate one FEFF attempt's folder.

    Returns ``(error, xmu, warnings)``: ``error`` is None for a good spectrum, else the reason
    (the runner's own error first, then SCF non-convergence, missing output, validation).
    """
    error = run_error
    if "SCF" in cards and scf_converged(attempt) is False:
        error = f"non-convergence: SCF did not converge ({error or 'spectrum not used'})"
    xmu = None
    warnings: list[str] = []
    if (attempt / "xmu.dat").is_file():
        try:
            xmu = parse_xmu(attempt / "xmu.dat")
        except ValueError as err:
            error = error or f"missing output: {err}"
    elif error is None:
        error = "missing output: FEFF wrote no xmu.dat"
    if xmu is not None and error is None:
        error, warnings = validate_spectrum(xmu.energies, xmu.mu, element, edge, xmu.edge_energy)
    return error, xmu, warnings


def task_doc_from_folder(folder: Path, task: dict[str, Any], result: dict[str, Any], feff_inp: str) -> FeffTaskDoc:
    """The task of a run folder FEFF finished elsewhere (the batch runner): parse, validate, fill the document.

    ``task`` is the exported ``task.json`` (site, preset, cards), ``result`` the runner's
    ``result.json`` (error, code, times, host), ``feff_inp`` the input as exported.
    """
    error, xmu, warnings = assess_attempt(folder, result.get("error"), task["cards"], task["element"], task["edge"])
    return make_task_doc(
        task["site_id"], task["material_id"], task["element"], task["absorbing_index"], task["edge"], task["preset"],
        task["preset_hash"], task["cards"], feff_inp, error, warnings, [], xmu,
        code=result.get("code") or "feff10-rs", code_version=result.get("code_version"),
        stage_seconds=result.get("stage_seconds") or {}, wall_seconds=result.get("wall_seconds") or 0.0,
        hostname=result.get("hostname"),
    )


def make_task_doc(site_id: str, material_id: str, element: str, absorbing_index: int, edge: str, preset_name: str,
                  phash: str, cards: dict[str, Any], feff_inp: str | None, error: str | None, warnings: list[str],
                  actions: list[HandlerAction], xmu: Any, *, code: str, code_version: str | None,
                  stage_seconds: dict[str, float], wall_seconds: float, hostname: str | None) -> FeffTaskDoc:
    """The ``feff_tasks`` document of a finished (or failed) xanesdb FEFF run; the spectrum only when it is good."""
    good = xmu is not None and error is None
    return FeffTaskDoc(
        task_id=make_task_id(site_id, edge, phash),
        site_id=site_id,
        material_id=material_id,
        element=element,
        absorbing_index=absorbing_index,
        edge=edge,
        source=SOURCE,
        code=code,
        code_version=code_version,
        preset=preset_name,
        preset_hash=phash,
        cards=cards,
        feff_inp=feff_inp,
        input_hash=input_hash(feff_inp) if feff_inp is not None else None,
        state="successful" if error is None else "failed",
        error=error,
        warnings=warnings,
        actions=actions,
        energies=xmu.energies if good else [],
        mu=xmu.mu if good else [],
        mu0=xmu.mu0 if good else [],
        chi=xmu.chi if good else [],
        edge_energy=xmu.edge_energy if xmu else None,
        stage_seconds=stage_seconds,
        wall_seconds=round(wall_seconds, 3),
        hostname=hostname,
        library_versions=library_versions(FEFF_LIBRARIES),
    )


def failed_input_doc(site: dict[str, Any], preset: str | FeffPreset, edge: str, error: str) -> FeffTaskDoc:
    """A failed task for a site whose inputs could not even be made (``error`` starts ``input:``).

    ``site`` holds ``site_id``, ``material_id``, ``element`` and ``site_index``.
    """
    preset = get_preset(preset)
    return make_task_doc(site["site_id"], site["material_id"], site["element"], site["site_index"], edge, preset.name,
                         preset_hash_of(preset, edge), preset_cards(preset, edge), None, f"input: {error}", [], [],
                         None, code="feff10-rs", code_version=None, stage_seconds={}, wall_seconds=0.0,
                         hostname=socket.gethostname())


def write_tasks(docs: Iterable[FeffTaskDoc], target: Any, batch: int = 500) -> int:
    """Upsert tasks on ``task_id``: the one writer of ``feff_tasks``; returns the number written.

    ``target`` is a database (pymongo or mongomock: its ``feff_tasks`` collection is used), a
    collection, or a maggma store.
    """
    from maggma.core import Store

    if isinstance(target, Store):
        docs = [d.to_mongo() for d in docs]
        if docs:
            target.update(docs, key="task_id")
        return len(docs)
    # a database (the class has list_collection_names; both pymongo's and mongomock's answer any attribute)
    is_database = callable(getattr(type(target), "list_collection_names", None))
    collection = target[FeffTaskDoc.collection] if is_database else target
    from pymongo import ReplaceOne

    n = 0
    ops: list = []
    for doc in docs:
        ops.append(ReplaceOne({"task_id": doc.task_id}, doc.to_mongo(), upsert=True))
        if len(ops) >= batch:
            collection.bulk_write(ops, ordered=False)
            n, ops = n + len(ops), []
    if ops:
        collection.bulk_write(ops, ordered=False)
        n += len(ops)
    return n


def count_failure(failures: dict[str, int], reason: str | None, width: int = 80) -> None:
    """Tally one failure reason (cut to ``width`` characters) in a summary's ``failures``."""
    reason = (reason or "")[:width]
    failures[reason] = failures.get(reason, 0) + 1
