"""Population campaigns as jobflow flows: one flow per material, run locally or on FireWorks.

A material's flow is ``structure -> ChemEnv labels -> one FEFF job per symmetry-unique absorbing
site that still needs FEFF -> spectra build``, made of the shared jobs:
:func:`xanesdb.jobs.labels.label_sites_chemenv` (storing the sites, with the ChemEnv time limit), the fan-out
:func:`xanesdb.jobs.feff.makers.run_pending_feff`, a
:class:`~xanesdb.jobs.feff.makers.FeffXanesMaker` per site and :func:`build_material_spectra`.
The same flows run with jobflow's ``run_locally`` or as FireWorks workflows
(``flow_to_workflow``) drained by ``rlaunch`` workers on any host that reaches the database.

Large-campaign safety:

- one workflow per material, never a giant one;
- the sites of a flow are those :func:`xanesdb.jobs.feff.pending.select_pending_sites` gives (as
  ``xanesdb feff run``: no task under the preset's key, not covered by an imported Materials
  Project spectrum), decided **before** submission, and the FEFF job checks its key again when it
  starts (another worker, another campaign, or a lost run that had stored its task before dying),
  so nothing is computed twice;
- FEFF tasks already queued on the LaunchPad (Firework spec ``xanesdb_task_key``), and materials
  with an unfinished workflow of the same key, are not submitted again; a duplicate that slips
  through (two submitters at once) is harmless: every write is an upsert on the task key;
- materials not labelled yet get a labelling job whose FEFF fan-out (``Response(replace=...)``)
  is decided on the worker after labelling, by the same pending query.

Jobs use the database handed to them (:func:`xanesdb.jobs.database.use_database`) or the
worker's one shared client of its settings; they never open their own.

Examples
--------
>>> from xanesdb.jobs.feff.campaign import plan_campaign
>>> plan = plan_campaign(elements=["Cu"], preset="fast", limit=10)     # doctest: +SKIP
>>> [c.material_id for c in plan.campaigns]                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from jobflow import Flow, JobConfig, Maker, job
from jobflow.core.reference import OnMissing

from xanesdb.jobs.database import job_database, shared_database, use_database
from xanesdb.jobs.feff.makers import FeffXanesMaker, feff_site_jobs, run_pending_feff
from xanesdb.jobs.feff.pending import DEFAULT_COVERED_BY, select_pending_sites
from xanesdb.jobs.feff.sets import get_preset, preset_hash_of
from xanesdb.jobs.labels import ABSORBERS, label_sites_chemenv
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.launchpad import TASK_KEY_SPEC
from xanesdb.platform.settings import XanesdbSettings, get_settings

logger = logging.getLogger(__name__)

__all__ = [
    "TASK_KEY_SPEC",
    "MaterialXanesMaker",
    "build_material_spectra",
    "MaterialCampaign",
    "CampaignPlan",
    "campaign_key",
    "plan_campaign",
    "run_campaign_locally",
    "submit_campaign",
    "recover_lost_runs",
    "rerun_fizzled_feff",
]


# ----------------------------------------------------------------------------- spectra
@job(name="build spectra", config=JobConfig(on_missing_references=OnMissing.NONE))
def build_material_spectra(material_id: str, elements: list[str], task_ids: list | None = None) -> dict:
    """Standardise and deduplicate the new FEFF tasks of the material's absorbers (incremental).

    Runs :func:`xanesdb.jobs.spectra.build.build_spectra` for ``elements``: only new or changed
    tasks are standardised, so it also picks up what other workers finished meanwhile. Runs even
    when a FEFF job of the material failed (missing outputs resolve to None).

    Returns
    -------
    dict
        ``material_id``, ``task_ids`` (this flow's, None for a failed job), the build's
        ``processed`` count and ``seconds``, and ``n_spectra`` of the material.
    """
    from xanesdb.jobs.spectra.build import build_spectra

    db = job_database()
    report = build_spectra(elements=list(elements), db=db)
    n = db["spectra"].count_documents({"material_id": material_id, "element": {"$in": list(elements)}})
    return {"material_id": material_id, "task_ids": list(task_ids or []), "processed": report.processed,
            "seconds": report.seconds, "n_spectra": n}


# ----------------------------------------------------------------------------- one material
@dataclass
class MaterialXanesMaker(Maker):
    """The flow of one material: labels (if needed) -> FEFF per pending site -> spectra.

    Parameters
    ----------
    name
        Flow name prefix; the flow is ``"<name> <material_id>"``.
    elements
        Absorbing elements.
    feff_maker
        Maker of the FEFF jobs (its preset and edge are the campaign's).
    build_spectra
        End with a spectra build of the material's absorbers.
    covered_by
        Sources whose successful tasks make a site's FEFF run unnecessary (the fan-out after
        labelling leaves those sites out, as ``xanesdb feff run`` does).
    """

    name: str = "xanes"
    elements: list[str] = field(default_factory=lambda: list(ABSORBERS))
    feff_maker: FeffXanesMaker = field(default_factory=FeffXanesMaker)
    build_spectra: bool = True
    covered_by: list[str] = field(default_factory=lambda: list(DEFAULT_COVERED_BY))

    def make(self, structure_doc: dict, sites: list[dict] | None = None) -> Flow:
        """Build the material's flow.

        Parameters
        ----------
        structure_doc
            The material's ``structures`` document (``material_id``, ``structure``, ``elements``).
        sites
            Its labelled sites still to compute (``site_id``, ``element``, ``site_index``); None
            when the material is not labelled yet: then a labelling job and a fan-out decided on
            the worker come first.
        """
        mid = structure_doc["material_id"]
        elements = [el for el in self.elements if el in structure_doc.get("elements", self.elements)] or list(self.elements)
        jobs: list = []
        if sites is None:
            label = label_sites_chemenv({k: v for k, v in structure_doc.items() if k != "_id"}, elements,
                                        store_sites=True)
            fan = run_pending_feff(structure_doc["structure"], mid, label.output, self.feff_maker, self.covered_by)
            fan.name = f"feff fan-out {mid}"
            label.name = f"label sites {mid}"
            jobs += [label, fan]
            task_ids = fan.output
        else:
            feff = feff_site_jobs(structure_doc["structure"], mid, sites, self.feff_maker)
            jobs += feff
            task_ids = [j.output.task_id for j in feff]
        if self.build_spectra:
            spectra = build_material_spectra(mid, elements, task_ids)
            spectra.name = f"build spectra {mid}"
            jobs.append(spectra)
            output = spectra.output
        else:
            output = task_ids
        return Flow(jobs, output=output, name=f"{self.name} {mid}")


# ----------------------------------------------------------------------------- a campaign
@dataclass
class MaterialCampaign:
    """What is submitted for one material."""

    material_id: str
    key: str
    elements: list[str]
    labelled: bool
    sites: list[dict] = field(default_factory=list)
    flow: Flow | None = None

    @property
    def task_keys(self) -> list[str]:
        """Task keys of the FEFF jobs known at submission (none before labelling)."""
        return [s["task_id"] for s in self.sites]

    def metadata(self, preset: str, phash: str, edge: str) -> dict:
        """Workflow metadata (``metadata.xanesdb``) identifying the campaign entry."""
        return {"key": self.key, "material_id": self.material_id, "elements": self.elements, "preset": preset,
                "preset_hash": phash, "edge": edge, "labelled": self.labelled, "task_keys": self.task_keys}


@dataclass
class CampaignPlan:
    """The flows of a campaign and what was left out, and why."""

    preset: str
    preset_hash: str
    edge: str
    elements: list[str]
    campaigns: list[MaterialCampaign] = field(default_factory=list)
    n_materials: int = 0
    n_materials_done: int = 0
    n_materials_queued: int = 0
    n_materials_over_limit: int = 0
    n_to_label: int = 0
    n_sites: int = 0
    n_sites_done: int = 0
    n_sites_queued: int = 0

    @property
    def n_sites_submitted(self) -> int:
        """FEFF jobs known at submission (labelling flows add theirs on the worker)."""
        return sum(len(c.sites) for c in self.campaigns)


def campaign_key(material_id: str, elements: Sequence[str], edge: str, phash: str) -> str:
    """Key of a material's workflow: ``<material_id>:<elements>:<edge>:<preset-hash>``."""
    return f"{material_id}:{'-'.join(sorted(elements))}:{edge}:{phash}"


def plan_campaign(
    settings: XanesdbSettings | None = None,
    elements: Sequence[str] | None = None,
    preset: str | None = None,
    edge: str = "K",
    limit: int | None = None,
    material_ids: Sequence[str] | None = None,
    queued_task_keys: set[str] | None = None,
    active_keys: set[str] | None = None,
    retry_failed: bool = False,
    feff_maker: FeffXanesMaker | None = None,
    build_spectra: bool = True,
    covered_by: Sequence[str] = DEFAULT_COVERED_BY,
    db: Any = None,
) -> CampaignPlan:
    """Decide which materials get a flow, with which sites, and build the flows.

    Parameters
    ----------
    settings
        Where the database is.
    elements
        Absorbers (default: the paper's eight).
    preset, edge
        FEFF preset (default ``settings.FEFF_PRESET``) and edge.
    limit
        At most this many materials (flows), in material_id order.
    material_ids
        Only these materials.
    queued_task_keys
        Task keys already queued elsewhere (the LaunchPad's active FEFF Fireworks): not submitted.
    active_keys
        Campaign keys of unfinished workflows: those materials are not submitted.
    retry_failed
        Recompute sites whose task failed.
    feff_maker
        Maker of the FEFF jobs (default :class:`FeffXanesMaker` with ``preset`` and ``edge``).
    build_spectra
        End each flow with a spectra build.
    covered_by
        Sources whose successful tasks count as computed (default: imported Materials Project spectra).
    db
        The database to plan from (default: the settings' database).
    """
    from xanesdb.jobs.structures import normalise_elements

    settings = settings or get_settings()
    preset_name = get_preset(preset or settings.FEFF_PRESET).name
    elements = normalise_elements(elements) or list(ABSORBERS)
    if limit is not None and limit < 0:
        raise XanesdbUserError(f"limit must be 0 or more, got {limit}")
    db = db if db is not None else shared_database(settings)
    feff_maker = feff_maker or FeffXanesMaker(preset=preset_name, edge=edge, retry_failed=retry_failed)
    plan = CampaignPlan(preset=preset_name, preset_hash=preset_hash_of(preset_name, edge), edge=edge,
                        elements=list(elements))
    crit: dict[str, Any] = {"elements": {"$in": list(elements)}}
    if material_ids:
        crit["material_id"] = {"$in": list(material_ids)}
    materials = {d["material_id"]: d["elements"] for d in
                 db["structures"].find(crit, {"_id": 0, "material_id": 1, "elements": 1}).sort("material_id", 1)}
    plan.n_materials = len(materials)
    pending, plan.n_sites, plan.n_sites_done = select_pending_sites(
        db, elements, preset_name, edge, None, retry_failed, list(materials) if material_ids else None, covered_by)
    by_material: dict[str, list[dict]] = defaultdict(list)
    for s in pending:
        if s["material_id"] in materials:
            by_material[s["material_id"]].append(s)
    _choose_materials(plan, materials, _labelled_elements(db, elements), by_material, limit,
                      queued_task_keys or set(), active_keys or set())
    material_maker = MaterialXanesMaker(elements=list(elements), feff_maker=feff_maker, build_spectra=build_spectra,
                                        covered_by=list(covered_by))
    _build_flows(db, plan, material_maker)
    return plan


def _build_flows(db: Any, plan: CampaignPlan, material_maker: MaterialXanesMaker) -> None:
    """Read the chosen materials' structure documents and make their flows."""
    ids = [c.material_id for c in plan.campaigns]
    docs: dict[str, dict] = {}
    for i in range(0, len(ids), 500):
        for d in db["structures"].find({"material_id": {"$in": ids[i:i + 500]}}, {"_id": 0}):
            docs[d["material_id"]] = d
    for c in plan.campaigns:
        c.flow = material_maker.make(docs[c.material_id], c.sites if c.labelled else None)


def _labelled_elements(db: Any, elements: Sequence[str]) -> dict[str, set[str]]:
    """Labelled absorbers per material (failed labels count as labelled: they are not retried here)."""
    labelled: dict[str, set[str]] = defaultdict(set)
    for d in db["sites"].find({"element": {"$in": list(elements)}}, {"_id": 0, "material_id": 1, "element": 1}):
        labelled[d["material_id"]].add(d["element"])
    return labelled


def _choose_materials(plan: CampaignPlan, materials: dict[str, list[str]], labelled: dict[str, set[str]],
                      by_material: dict[str, list[dict]], limit: int | None, queued_task_keys: set[str],
                      active_keys: set[str]) -> None:
    """Fill ``plan.campaigns`` (and the counts of what was left out) from the pending sites per material."""
    for mid, mat_elements in materials.items():
        wanted = [el for el in plan.elements if el in mat_elements]
        key = campaign_key(mid, wanted, plan.edge, plan.preset_hash)
        if key in active_keys:
            plan.n_materials_queued += 1
            plan.n_sites_queued += len(by_material.get(mid, []))
            continue
        is_labelled = all(el in labelled.get(mid, ()) for el in wanted)
        sites = None
        if is_labelled:
            sites = [s for s in by_material.get(mid, []) if s["task_id"] not in queued_task_keys]
            plan.n_sites_queued += len(by_material.get(mid, [])) - len(sites)
            if not sites:
                if by_material.get(mid):
                    plan.n_materials_queued += 1
                else:
                    plan.n_materials_done += 1
                continue
        if limit is not None and len(plan.campaigns) >= limit:
            plan.n_materials_over_limit += 1
            continue
        plan.campaigns.append(MaterialCampaign(mid, key, wanted, is_labelled, sites or []))
        plan.n_to_label += not is_labelled


def run_campaign_locally(plan: CampaignPlan, settings: XanesdbSettings | None = None, root_dir: str | Path | None = None,
                         on_material: Any = None, store: Any = None, db: Any = None) -> dict[str, Any]:
    """Run every flow of a plan with jobflow's ``run_locally``, one material after another.

    Job outputs go to ``store`` (default: the ``jobs`` collection,
    :func:`xanesdb.platform.stores.job_store`); the jobs read and write ``db`` (default: the
    settings' database); each job runs in its own folder under ``root_dir`` (default
    ``HOME/populate-runs``).

    Returns
    -------
    dict
        ``materials`` run, ``failed`` materials (a job that did not finish), ``seconds``, and
        ``sites_left``: sites of these materials still without a task under the plan's preset.
    """
    from jobflow.managers.local import run_locally

    settings = settings or get_settings()
    root = Path(root_dir or settings.HOME / "populate-runs")
    root.mkdir(parents=True, exist_ok=True)
    if store is None:
        from xanesdb.platform.stores import job_store

        store = job_store(settings)
    t0 = time.perf_counter()
    failed: list[str] = []
    db = db if db is not None else shared_database(settings)
    with use_database(db):
        for c in plan.campaigns:
            responses = run_locally(c.flow, log=False, store=store, create_folders=True, root_dir=root)
            ok = all(j.uuid in responses for j in c.flow.jobs)
            if not ok:
                failed.append(c.material_id)
            if on_material is not None:
                on_material(c, ok)
    seconds = round(time.perf_counter() - t0, 3)
    left = select_pending_sites(db, plan.elements, plan.preset, plan.edge,
                                material_ids=[c.material_id for c in plan.campaigns])[0]
    return {"materials": len(plan.campaigns), "failed": failed, "seconds": seconds, "sites_left": len(left)}


def submit_campaign(plan: CampaignPlan, lp: Any, settings: XanesdbSettings | None = None,
                    on_material: Any = None, batch_size: int = 100) -> dict[int, str]:
    """Add one FireWorks workflow per material of a plan to the LaunchPad.

    Each flow becomes a workflow with ``flow_to_workflow`` and the worker-resolved JobStore of
    :func:`xanesdb.platform.launchpad.worker_job_store` (jobs and job_data in the same database);
    ``metadata.xanesdb`` holds the campaign key, material, preset and task keys. Workflows are
    inserted in batches with ``LaunchPad.bulk_add_wfs`` (about 6x faster than ``add_wf`` one by
    one: 200 workflows in 4 s on the local server).

    Returns
    -------
    dict
        First fw_id of each workflow -> material_id.
    """
    from jobflow.managers.fireworks import flow_to_workflow

    from xanesdb.platform.launchpad import CAMPAIGN_META, worker_job_store

    settings = settings or get_settings()
    store = worker_job_store(settings)
    added: dict[int, str] = {}
    for start in range(0, len(plan.campaigns), max(1, batch_size)):
        batch = plan.campaigns[start:start + max(1, batch_size)]
        wfs = []
        for c in batch:
            meta = {CAMPAIGN_META: c.metadata(plan.preset, plan.preset_hash, plan.edge)}
            with warnings.catch_warnings():  # FEFF jobs of a flow without the spectra job are independent, as meant
                warnings.filterwarnings("ignore", "Some jobs are not connected", UserWarning)
                wfs.append(flow_to_workflow(c.flow, store=store, name=f"xanes {c.material_id} {plan.preset}",
                                            metadata=meta))
        # FireWorks draws its own tqdm bar (stderr) for each batch; left as it is: nothing process-wide is swapped
        lp.bulk_add_wfs(wfs)
        for c, wf in zip(batch, wfs):
            added[min(fw.fw_id for fw in wf.fws)] = c.material_id
            if on_material is not None:
                on_material(c, True)
    return added


def recover_lost_runs(lp: Any, expiration: int, rerun: bool = True) -> dict[int, str]:
    """Lost runs of a LaunchPad (running, silent longer than ``expiration`` s), rerun unless ``rerun`` is
    False; returns ``fw_id -> Firework name``. No task is duplicated: a rerun FEFF job checks its key."""
    _, lost_fws, _ = lp.detect_lostruns(expiration_secs=expiration, rerun=rerun)
    names = {d["fw_id"]: d["name"] for d in lp.fireworks.find({"fw_id": {"$in": lost_fws}}, {"fw_id": 1, "name": 1})}
    return {fw_id: names.get(fw_id, "?") for fw_id in lost_fws}


def rerun_fizzled_feff(lp: Any) -> list[int]:
    """Rerun every FIZZLED FEFF Firework (one with a task key in its spec); returns their fw_ids."""
    ids = [d["fw_id"] for d in lp.fireworks.find({"state": "FIZZLED", f"spec.{TASK_KEY_SPEC}": {"$exists": True}},
                                                 {"fw_id": 1})]
    for fw_id in ids:
        lp.rerun_fw(fw_id)
    return ids
