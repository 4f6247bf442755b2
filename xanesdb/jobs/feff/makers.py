"""FEFF as jobflow jobs: :class:`FeffXanesMaker` (one site) and :func:`run_pending_feff` (the fan-out).

Every engine that runs flows (jobflow ``run_locally``, FireWorks workers, jobflow-remote) uses
these two; the recipe itself is :func:`xanesdb.jobs.feff.task.compute_feff_task` and "which sites"
is :func:`xanesdb.jobs.feff.pending.pending_sites`. Jobs do not connect to MongoDB themselves:
they use the database handed to them (:func:`xanesdb.jobs.database.use_database`) or the
process's shared client of their settings.

Examples
--------
>>> from jobflow import run_locally
>>> job = FeffXanesMaker(preset="fast").make(structure, 0, "mp-704645")     # doctest: +SKIP
>>> run_locally(job, create_folders=True)                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from jobflow import Flow, Maker, Response, job

from xanesdb.jobs.database import job_database
from xanesdb.jobs.feff.pending import DEFAULT_COVERED_BY, pending_sites
from xanesdb.jobs.feff.task import clean_folder, compute_feff_task, feff_task_key, write_tasks
from xanesdb.platform.launchpad import TASK_KEY_SPEC
from xanesdb.platform.settings import SETTINGS, get_settings
from xanesdb.schemas import FeffTaskDoc, site_id as make_site_id

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = ["FeffXanesMaker", "should_stop_children", "feff_site_jobs", "run_pending_feff"]


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

    The task is looked up by its deterministic key when the job starts: a site computed meanwhile
    (by another worker or campaign, or by a run that stored its task and was killed before its
    manager heard of it) is not computed again; the stored task is the output.

    Parameters
    ----------
    name
        Job name; flows make it ``"feff xanes <site_id>"`` (the fake FEFF of the tests is keyed on it).
    preset
        FEFF preset: 'fast' or 'mp'.
    edge
        Absorption edge.
    run_feff_kwargs
        Passed to the runner: ``feff_cmd`` (external FEFF), ``timeout`` (s); default: the worker's settings.
    max_actions
        Most error-ladder actions per site.
    store_task
        Upsert the task into ``feff_tasks`` of the job's database.
    skip_existing
        With ``store_task``: return the stored task instead of running FEFF when the key exists.
    retry_failed
        With ``skip_existing``: still recompute a site whose stored task failed.
    clean
        Delete FEFF's bulky by-products of a successful run from the job folder.
    """

    name: str = "feff xanes"
    preset: str = "fast"
    edge: str = "K"
    run_feff_kwargs: dict = field(default_factory=dict)
    max_actions: int = 3
    store_task: bool = True
    skip_existing: bool = True
    retry_failed: bool = False
    clean: bool = True

    def task_key(self, material_id: str, element: str, absorbing_index: int, site_id: str | None = None) -> str:
        """Deterministic task key of a site under this maker's preset and edge."""
        return feff_task_key(material_id, element, absorbing_index, self.preset, self.edge, site_id=site_id)

    @job(output_schema=FeffTaskDoc)
    def make(self, structure: Structure, absorbing_index: int, material_id: str, site_id: str | None = None) -> Response:
        """Look the task up; if absent: input set -> FEFF -> parse -> validate -> store, in the job's folder."""
        settings = get_settings()  # read now: the worker's environment, not the one at import
        db = job_database(settings) if self.store_task else None
        if db is not None and self.skip_existing:
            key = self.task_key(material_id, structure[absorbing_index].specie.symbol, absorbing_index, site_id)
            found = _stored_task(db, key, self.retry_failed)
            if found is not None:
                logger.info("task %s exists (%s): FEFF not run again", key, found.state)
                return Response(output=found)
        kwargs = {"feff_cmd": settings.FEFF_CMD, "timeout": settings.FEFF_TIMEOUT_S, **self.run_feff_kwargs}
        doc = compute_feff_task(structure, absorbing_index, material_id, preset=self.preset, edge=self.edge,
                                workdir=Path.cwd(), max_actions=self.max_actions, site_id=site_id,
                                name=self.name, **kwargs)
        if self.clean and doc.state == "successful":
            for attempt in Path.cwd().glob("attempt-*"):
                clean_folder(attempt)
        if db is not None:
            write_tasks([doc], db)
        return Response(output=doc, stop_children=should_stop_children(doc))


def _stored_task(db: Any, key: str, retry_failed: bool) -> FeffTaskDoc | None:
    crit: dict[str, Any] = {"task_id": key}
    if retry_failed:
        crit["state"] = "successful"
    found = db["feff_tasks"].find_one(crit, {"_id": 0})
    return FeffTaskDoc.from_mongo(found) if found is not None else None


def feff_site_jobs(structure: Structure | dict, material_id: str, sites: Sequence[dict], maker: FeffXanesMaker) -> list:
    """One FEFF job per site, named ``"<maker.name> <site_id>"``, its task key in the job metadata.

    ``sites`` hold ``element``, ``site_index`` and optionally ``site_id``. The key lands in the
    Firework spec (``xanesdb_task_key``), so the LaunchPad can say which tasks are queued.
    """
    from pymatgen.core import Structure as PmgStructure

    if isinstance(structure, dict):
        structure = PmgStructure.from_dict(structure)
    jobs = []
    for s in sites:
        sid = s.get("site_id") or make_site_id(material_id, s["element"], s["site_index"])
        j = maker.make(structure, s["site_index"], material_id, site_id=sid)
        j.name = f"{maker.name} {sid}"
        j.metadata[TASK_KEY_SPEC] = maker.task_key(material_id, s["element"], s["site_index"], sid)
        j.metadata["material_id"] = material_id
        jobs.append(j)
    return jobs


@job(name="feff fan-out")
def run_pending_feff(structure: Any, material_id: str, sites: list[dict], maker: FeffXanesMaker,
                     covered_by: Sequence[str] = DEFAULT_COVERED_BY) -> Response:
    """Replace this job by one FEFF job per site that still needs FEFF (decided now, on the worker).

    The sites are filtered by :func:`xanesdb.jobs.feff.pending.pending_sites`, as ``xanesdb feff
    run`` filters them: a site with a task under the maker's preset, or covered by a successful
    task from a source in ``covered_by`` (imported Materials Project spectra), is left out.

    Returns
    -------
    Response
        ``replace`` with the FEFF jobs (output: their task ids), or an empty list when none is pending.
    """
    sites = [{**s, "site_id": s.get("site_id") or make_site_id(material_id, s["element"], s["site_index"]),
              "material_id": material_id} for s in sites if s.get("state") != "failed"]  # failed labels: no FEFF
    pending = pending_sites(job_database(), sites, maker.preset, maker.edge, maker.retry_failed, covered_by)
    logger.info("%s: %d sites, %d to compute", material_id, len(sites), len(pending))
    if not pending:
        return Response(output=[])
    jobs = feff_site_jobs(structure, material_id, pending, maker)
    return Response(replace=Flow(jobs, output=[j.output.task_id for j in jobs], name=f"feff xanes {material_id}"))
