"""FEFF XANES jobs: one symmetry-unique absorbing site -> one ``feff_tasks`` document.

:func:`compute_feff_task` is the recipe (input set -> run -> parse -> validate, with the error
ladder); :class:`FeffXanesMaker` wraps it as a jobflow job that also upserts the task into the
``feff_tasks`` collection, and the population flow of :mod:`xanesdb.jobs.feff.flows` calls it in
parallel for every site not yet computed.
"""

from __future__ import annotations

import logging
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobflow import Flow, Maker, Response, job

from xanesdb.jobs.feff import run as feff_run
from xanesdb.jobs.feff.parse import parse_xmu, scf_converged
from xanesdb.jobs.feff.sets import (
    FeffPreset,
    feff_input_text,
    get_preset,
    input_hash,
    preset_cards,
    stages_for_cards,
)
from xanesdb.jobs.feff.validate import next_action, validate_spectrum
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import SETTINGS, get_settings
from xanesdb.schemas import FeffTaskDoc, HandlerAction, preset_hash, site_id as make_site_id, task_id as make_task_id

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = ["compute_feff_task", "assess_attempt", "make_task_doc", "FeffXanesMaker", "feff_task_key", "store_feff_task", "should_stop_children", "run_feff_for_sites"]

#: outputs worth keeping in a work folder after a run (the rest, FEFF's bulky by-products, is deleted)
_KEEP = {"feff.inp", "xmu.dat", "feff_run.log", "feff_stage_times.json", "log.dat", "log1.dat", "feff.out"}


def feff_task_key(material_id: str, element: str, absorbing_index: int, preset: str | FeffPreset = "fast", edge: str = "K") -> str:
    """The deterministic task id of a site under a preset (what makes resuming possible)."""
    phash = preset_hash(preset_cards(preset, edge))
    return make_task_id(make_site_id(material_id, element, absorbing_index), edge, phash)


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
        Delete the bulky FEFF by-products of successful attempts.

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
    cards0 = preset_cards(preset, edge)
    phash = preset_hash(cards0)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
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
        result = feff_run.run_feff(attempt, feff_cmd=feff_cmd, timeout=timeout, stages=stages_for_cards(cards), name=name)
        total_wall += result.wall_seconds
        error, xmu, warnings = assess_attempt(attempt, result.error, cards, element, edge)
        if error is None or (action := next_action(error, cards, actions, max_actions)) is None:
            break
        logger.info("%s: %s -> %s", site_id, error, action.action)
        actions.append(action)
        current = current.with_cards(**action.action)
    if clean:
        for p in attempt.iterdir():
            if p.name not in _KEEP:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    code = result.code if not feff_cmd else (xmu.code if xmu and xmu.code else result.code)
    doc = make_task_doc(site_id, material_id, element, absorbing_index, edge, preset.name, phash, cards, text,
                        error, warnings, actions, xmu, code=code,
                        code_version=result.code_version or (xmu.code if xmu else None),
                        stage_seconds=result.stage_seconds, wall_seconds=total_wall, hostname=socket.gethostname())
    return doc


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


def make_task_doc(site_id: str, material_id: str, element: str, absorbing_index: int, edge: str, preset_name: str,
                  phash: str, cards: dict[str, Any], feff_inp: str, error: str | None, warnings: list[str],
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
        source="xanesdb",
        code=code,
        code_version=code_version,
        preset=preset_name,
        preset_hash=phash,
        cards=cards,
        feff_inp=feff_inp,
        input_hash=input_hash(feff_inp),
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
    )


def store_feff_task(doc: FeffTaskDoc, collection: Any) -> None:
    """Upsert a task on its key (a pymongo collection or a maggma store)."""
    if hasattr(collection, "replace_one"):
        collection.replace_one({"task_id": doc.task_id}, doc.to_mongo(), upsert=True)
    else:
        collection.update([doc.to_mongo()], key="task_id")


def should_stop_children(doc: FeffTaskDoc, handle_unsuccessful: bool | str = SETTINGS.FEFF_HANDLE_UNSUCCESSFUL) -> bool:
    """atomate2's three-way policy for a failed task: True stop children, False go on, 'error' raise."""
    if doc.state == "successful":
        return False
    if handle_unsuccessful == "error":
        raise RuntimeError(f"FEFF task {doc.task_id} failed: {doc.error}")
    return bool(handle_unsuccessful)


@dataclass
class FeffXanesMaker(Maker):
    """Run FEFF K-edge XANES for one symmetry-unique absorbing site and store the task.

    Parameters
    ----------
    name
        Job name; flows make it ``"feff xanes <site_id>"``.
    preset
        FEFF preset: 'fast' or 'mp'.
    edge
        Absorption edge.
    run_feff_kwargs
        Passed to the runner: ``feff_cmd`` (external FEFF), ``timeout`` (s).
    max_actions
        Most error-ladder actions per site.
    store_task
        Upsert the task into the ``feff_tasks`` collection of the configured database.
    """

    name: str = "feff xanes"
    preset: str = "fast"
    edge: str = "K"
    run_feff_kwargs: dict = field(default_factory=dict)
    max_actions: int = 3
    store_task: bool = True

    @job(output_schema=FeffTaskDoc)
    def make(self, structure: Structure, absorbing_index: int, material_id: str, site_id: str | None = None) -> Response:
        """Input set -> FEFF -> parse -> validate -> store, in the job's folder."""
        settings = get_settings()  # read now: the worker's environment, not the one at import
        kwargs = {"feff_cmd": settings.FEFF_CMD, "timeout": settings.FEFF_TIMEOUT_S, **self.run_feff_kwargs}
        doc = compute_feff_task(structure, absorbing_index, material_id, preset=self.preset, edge=self.edge,
                                workdir=Path.cwd(), max_actions=self.max_actions, site_id=site_id,
                                name=self.name, **kwargs)
        if self.store_task:
            from xanesdb.platform.stores import get_store

            with get_store("feff_tasks") as store:
                store_feff_task(doc, store)
        return Response(output=doc, stop_children=should_stop_children(doc))


@job
def run_feff_for_sites(sites: list[dict], structures: dict[str, dict], maker: FeffXanesMaker | None = None) -> Response:
    """Fan out one :class:`FeffXanesMaker` job per site (``Response(replace=Flow)``, atomate2 style).

    ``sites`` hold ``material_id``, ``site_index`` and optionally ``site_id``; ``structures`` maps
    material_id -> ``Structure.as_dict()``.
    """
    from pymatgen.core import Structure

    maker = maker or FeffXanesMaker()
    jobs = []
    for i, s in enumerate(sites):
        sid = s.get("site_id") or make_site_id(s["material_id"], s["element"], s["site_index"])
        j = maker.make(Structure.from_dict(structures[s["material_id"]]), s["site_index"], s["material_id"], site_id=sid)
        j.name = f"{maker.name} {sid} {i + 1}/{len(sites)}"
        jobs.append(j)
    return Response(replace=Flow(jobs, output=[j.output for j in jobs], name="feff xanes sites"))
