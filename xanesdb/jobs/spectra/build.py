"""Incremental build of the ``spectra`` collection from successful ``feff_tasks``.

One spectrum per successful FEFF task (one task per symmetry-unique site): interpolated onto
its absorber's grid (per element, edge and source; see :mod:`xanesdb.jobs.spectra.grid`),
scaled to max 1, joined with the site's ChemEnv label, its edge energy ``e0`` recorded, and
then deduplicated within each (element, edge, source) group
(:mod:`xanesdb.jobs.spectra.dedup`). Spectra of different sources are never compared.

Each spectrum also carries the aligned representation (:mod:`xanesdb.xas.align`: Athena-style
normalisation, energies relative to the half step, ``mu_aligned``) that models of measured spectra
read. Only tasks that are new, or changed since their spectrum was written (task or site
``last_updated`` later than the spectrum's, a new grid, or no aligned representation yet), are
standardised again; a group is
deduplicated again only when one of its spectra changed or the threshold did. Writes are upserts
on ``spectrum_id`` (``'<task_id>:std'``), so re-running never duplicates.

Examples
--------
>>> from xanesdb.jobs.spectra import build_spectra
>>> report = build_spectra(elements=["Cu"])          # doctest: +SKIP
>>> report.processed, report.n_duplicates            # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pymongo import UpdateOne

from xanesdb.jobs.database import store_over
from xanesdb.jobs.spectra.dedup import find_duplicates
from xanesdb.jobs.spectra.grid import EnergyGrid, choose_grid, standardise
from xanesdb.xas.align import ALIGNED_GRID_NAME, align_computed
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.platform.stores import get_database
from xanesdb.schemas.base import utcnow
from xanesdb.schemas.spectrum import SEPARATE_SCALE_PRESETS, SpectrumDoc

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

__all__ = [
    "DEDUP_THRESHOLD",
    "GRID_COLLECTION",
    "BuildReport",
    "build_spectra",
    "current_grid",
    "spectra_counts",
    "spectrum_id",
]

#: the paper's mean-absolute-difference threshold for near-duplicates
DEDUP_THRESHOLD = 0.015
#: collection holding the grid definitions (one document per grid version)
GRID_COLLECTION = "spectrum_grids"
#: site fields copied onto each spectrum
SITE_FIELDS = (
    "formula",
    "multiplicity",
    "chemenv_symbol",
    "csm",
    "lce_class",
    "coordination_number",
    "mean_bond_length",
)
_BATCH = 500


def spectrum_id(task_id: str) -> str:
    """Key of the spectrum of a FEFF task: ``'<task_id>:std'``."""
    return f"{task_id}:std"


@dataclass
class BuildReport:
    """What one build did, and the state of the collection afterwards."""

    processed: int = 0
    failed: int = 0
    up_to_date: int = 0
    removed: int = 0
    grids_created: list[str] = field(default_factory=list)
    groups_deduplicated: list[str] = field(default_factory=list)
    duplicate_changes: int = 0
    n_duplicates: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the job's output)."""
        return asdict(self)


#: presets of xanesdb's own runs with a self-consistent potential: their spectra sit on another
#: energy scale than ``fast`` ones and get their own grid and dedup group
SEPARATE_PRESETS = SEPARATE_SCALE_PRESETS


def energy_scale(source: str, preset: str | None) -> str:
    """The energy-scale label of a task: its source, plus the preset for xanesdb's non-default presets.

    Spectra of different codes or presets sit on different energy scales (FEFF10 without SCF puts
    edges 5-11 eV below FEFF9 with SCF), so each label gets its own grid and dedup group, e.g.
    ``'xanesdb'`` (preset ``fast``), ``'xanesdb-scf'``, ``'omnixas'``. Grid names keep this
    label (``Fe-K-xanesdb-v1``, ``Fe-K-xanesdb-scf-v1``).
    """
    if source == "xanesdb" and preset in SEPARATE_PRESETS:
        return f"{source}-{preset}"
    return source


def scale_criteria(scale: str) -> dict[str, Any]:
    """Filter on ``source``/``preset`` selecting the tasks or spectra of an energy-scale label."""
    if scale.startswith("xanesdb-"):
        return {"source": "xanesdb", "preset": scale.split("-", 1)[1]}
    if scale == "xanesdb":
        return {"source": "xanesdb", "preset": {"$nin": list(SEPARATE_PRESETS)}}
    return {"source": scale}


def _grids(db: Any):
    coll = db[GRID_COLLECTION]
    coll.create_index("grid_name", unique=True)
    return coll


def _database(settings: XanesdbSettings | None, db: Any = None) -> Any:
    """``db`` when one is handed in, else the settings' database."""
    return db if db is not None else get_database(settings or get_settings())


def current_grid(
    element: str, source: str, edge: str = "K", settings: XanesdbSettings | None = None, db: Any = None
) -> EnergyGrid | None:
    """The latest stored grid of an absorber and source, or None."""
    doc = _grids(_database(settings, db)).find_one(
        {"element": element, "edge": edge, "source": source}, sort=[("version", -1)]
    )
    if doc is None:
        return None
    doc.pop("_id", None)
    return EnergyGrid.model_validate(doc)


def _new_grid(coll, element: str, edge: str, source: str, tasks_store) -> EnergyGrid:
    """Choose a grid from the group's successful raw spectra and store it as the next version."""
    last = coll.find_one({"element": element, "edge": edge, "source": source}, sort=[("version", -1)])
    version = 1 if last is None else int(last["version"]) + 1
    crit = {"element": element, "edge": edge, **scale_criteria(source), "state": "successful", "distortion": None}
    raw = [
        (t["energies"], t["mu"])
        for t in tasks_store.query(crit, properties=["energies", "mu"])
        if t.get("energies") and t.get("mu")
    ]
    grid = choose_grid(element, edge, source, raw, version=version)
    coll.update_one({"grid_name": grid.grid_name}, {"$set": grid.model_dump()}, upsert=True)
    logger.info("new grid %s starting at %.1f eV from %d spectra", grid.grid_name, grid.start, grid.n_spectra)
    return grid


def _make_doc(task: dict, site: dict | None, grid: EnergyGrid, threshold: float) -> SpectrumDoc:
    """Standardise one task into a spectrum document (``state='failed'`` when it cannot)."""
    labels = {k: site.get(k) for k in SITE_FIELDS if site and site.get(k) is not None}
    common = {
        "spectrum_id": spectrum_id(task["task_id"]),
        "task_id": task["task_id"],
        "site_id": task["site_id"],
        "material_id": task["material_id"],
        "element": task["element"],
        "edge": task.get("edge", "K"),
        "source": task.get("source", "xanesdb"),
        "code": task["code"],
        "preset": task["preset"],
        "grid_name": grid.grid_name,
        "energies": grid.energies.tolist(),
        "dedup_threshold": threshold,
        **labels,
    }
    common.update(_aligned_fields(task))
    try:
        mu, e0 = standardise(task.get("energies") or [], task.get("mu") or [], grid)
    except ValueError as err:
        return SpectrumDoc(**common, mu=[], state="failed", error=str(err))
    return SpectrumDoc(**common, mu=np.round(mu, 7).tolist(), e0=round(e0, 4))


def _aligned_fields(task: dict) -> dict[str, Any]:
    """``e_half``, ``edge_step``, ``aligned_grid``, ``mu_aligned`` of a task (:mod:`xanesdb.xas.align`);
    ``mu_aligned`` None where the spectrum does not cover the aligned grid (its half step is still kept,
    the mark that the current coverage rule was tried) or cannot be normalised (no half step either)."""
    out: dict[str, Any] = {"aligned_grid": ALIGNED_GRID_NAME}
    try:
        a = align_computed(task.get("energies") or [], task.get("mu") or [], task.get("mu0") or None, off_grid_ok=True)
    except ValueError:
        return {**out, "mu_aligned": None}
    y = None if a["y"] is None else np.round(a["y"].astype(float), 6).tolist()
    return {**out, "e_half": round(a["e_half"], 4), "edge_step": round(a["edge_step"], 6), "mu_aligned": y}


def _dedup_group(spectra_coll, element: str, edge: str, source: str, threshold: float) -> tuple[int, int]:
    """Deduplicate one group; returns (duplicates in the group, documents changed)."""
    crit = {"element": element, "edge": edge, **scale_criteria(source), "state": "successful"}
    docs = list(
        spectra_coll.find(crit, {"_id": 0, "spectrum_id": 1, "mu": 1, "grid_name": 1, "duplicate_of": 1,
                                 "dedup_threshold": 1}).sort("spectrum_id", 1)
    )
    if not docs:
        return 0, 0
    grids = {d["grid_name"] for d in docs}
    if len(grids) > 1:  # cannot happen after a build; guard against a half-finished regrid
        raise RuntimeError(f"{element} {edge} {source} spectra are on several grids {sorted(grids)}; rebuild")
    ids = [d["spectrum_id"] for d in docs]
    dup = find_duplicates(np.array([d["mu"] for d in docs], dtype=np.float32), threshold)
    now = utcnow()
    ops = []
    for d, j in zip(docs, dup.tolist()):
        new = ids[j] if j >= 0 else None
        if d.get("duplicate_of") != new or d.get("dedup_threshold") != threshold:
            ops.append(UpdateOne({"spectrum_id": d["spectrum_id"]},
                                 {"$set": {"duplicate_of": new, "dedup_threshold": threshold,
                                           "last_updated": now}}))
    for i in range(0, len(ops), 5000):
        spectra_coll.bulk_write(ops[i:i + 5000], ordered=False)
    return int((dup >= 0).sum()), len(ops)


def spectra_counts(settings: XanesdbSettings | None = None, elements: Sequence[str] | None = None,
                   db: Any = None) -> dict:
    """Counts of successful spectra per ``'element|class|energy scale'``: kept and duplicates."""
    db = _database(settings, db)
    match: dict[str, Any] = {"state": "successful"}
    if elements:
        match["element"] = {"$in": list(elements)}
    pipeline = [
        {"$match": match},
        {"$group": {"_id": {"e": "$element", "c": "$lce_class", "s": "$source", "p": "$preset",
                            "d": {"$ne": ["$duplicate_of", None]}}, "n": {"$sum": 1}}},
    ]
    out: dict[str, dict[str, int]] = {}
    for row in db["spectra"].aggregate(pipeline):
        k = row["_id"]
        key = f"{k['e']}|{k.get('c') or 'other'}|{energy_scale(k['s'], k.get('p'))}"
        entry = out.setdefault(key, {"kept": 0, "duplicates": 0})
        entry["duplicates" if k["d"] else "kept"] += row["n"]
    return dict(sorted(out.items()))


def build_spectra(
    settings: XanesdbSettings | None = None,
    elements: Sequence[str] | None = None,
    threshold: float = DEDUP_THRESHOLD,
    regrid: bool = False,
    progress: Callable[[int, int], None] | None = None,
    db: Any = None,
) -> BuildReport:
    """Standardise new or changed successful FEFF tasks into spectra, then deduplicate.

    Parameters
    ----------
    settings
        Where the database is (default: the current settings).
    elements
        Absorbers to build (default: all).
    threshold
        Mean-absolute-difference threshold of the dedup, recorded on each spectrum.
    regrid
        Choose new grids (next version) from all current data and re-standardise every spectrum
        of the groups built.
    progress
        Called as ``progress(done, total)`` while standardising.
    db
        The database to build in (default: the settings'; a job hands its own).

    Returns
    -------
    BuildReport
        Counts of what was done, and the counts per element x class x source afterwards.
    """
    t_start = time.perf_counter()
    settings = settings or get_settings()
    report = BuildReport()
    # distortion-series runs (xanesdb.jobs.disorder) are not site spectra: never built into spectra
    crit: dict[str, Any] = {"state": "successful", "distortion": None}
    if elements:
        crit["element"] = {"$in": list(elements)}
    db = _database(settings, db)
    stores = _BuildStores(*(store_over(db, name) for name in ("feff_tasks", "sites", "spectra")))
    # the stores share db's client: nothing to open or close here
    tasks, spectra, sites = _read_current(stores, crit, bool(elements))
    touched = _remove_stale(stores.spectra, tasks, spectra, report)
    todo = _plan_standardise(db, stores.tasks, tasks, spectra, sites, regrid, threshold, touched, report)
    _standardise(todo, stores, crit, sites, threshold, touched, report, progress)
    # dedup of the groups that changed
    for element, edge, source in sorted(touched):
        n_dup, changed = _dedup_group(db["spectra"], element, edge, source, threshold)
        report.groups_deduplicated.append(f"{element}-{edge}-{source}")
        report.duplicate_changes += changed
    report.counts = spectra_counts(settings, elements, db=db)
    report.n_duplicates = sum(c["duplicates"] for c in report.counts.values())
    report.seconds = round(time.perf_counter() - t_start, 3)
    return report


@dataclass
class _BuildStores:
    """The three stores a build reads and writes, over one database."""

    tasks: Any
    sites: Any
    spectra: Any


def _read_current(stores: _BuildStores, crit: dict[str, Any], by_element: bool
                  ) -> tuple[list[dict], dict[str, dict], dict[str, dict]]:
    """The successful tasks matching ``crit``, their spectra by task id and the sites by site id (light fields)."""
    tasks = list(stores.tasks.query(crit, properties=["task_id", "site_id", "element", "edge", "source",
                                                      "preset", "last_updated"]))
    spec_crit = {"element": crit["element"]} if by_element else {}
    spectra = {s["task_id"]: s for s in stores.spectra.query(
        spec_crit, properties=["spectrum_id", "task_id", "last_updated", "grid_name", "dedup_threshold",
                               "element", "edge", "source", "preset", "aligned_grid", "state", "e_half"])}
    # sites of these elements, read once (a long `$in` list is slow on some servers)
    site_crit = {"element": crit["element"]} if by_element else {}
    sites = {s["site_id"]: s for s in stores.sites.query(
        site_crit, properties=["site_id", "last_updated", *SITE_FIELDS])}
    return tasks, spectra, sites


def _remove_stale(spectra_store: Any, tasks: list[dict], spectra: dict[str, dict],
                  report: BuildReport) -> set[tuple[str, str, str]]:
    """Remove spectra whose task is gone or no longer successful; the (element, edge, scale) groups touched."""
    live = {t["task_id"] for t in tasks}
    stale = [s["spectrum_id"] for tid, s in spectra.items() if tid not in live]
    touched: set[tuple[str, str, str]] = set()
    if stale:
        for tid, s in spectra.items():
            if tid not in live:
                touched.add((s["element"], s.get("edge", "K"), energy_scale(s["source"], s.get("preset"))))
        spectra_store.remove_docs({"spectrum_id": {"$in": stale}})
        report.removed = len(stale)
    return touched


def _plan_standardise(db: Any, tasks_store: Any, tasks: list[dict], spectra: dict[str, dict], sites: dict[str, dict],
                      regrid: bool, threshold: float, touched: set[tuple[str, str, str]],
                      report: BuildReport) -> list[tuple[dict, EnergyGrid]]:
    """The grid of each (element, edge, source) group (a new one when asked or missing), and the tasks whose
    spectrum is missing, older than the task, its site or the grid, or not on the aligned grid."""
    grids_coll = _grids(db)
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for t in tasks:
        groups[(t["element"], t.get("edge", "K"), energy_scale(t.get("source", "xanesdb"), t.get("preset")))].append(t)
    todo: list[tuple[dict, EnergyGrid]] = []
    for (element, edge, source), group in sorted(groups.items()):
        grid = None if regrid else current_grid(element, source, edge, db=db)
        if grid is None:
            grid = _new_grid(grids_coll, element, edge, source, tasks_store)
            report.grids_created.append(grid.grid_name)
        for t in group:
            s = spectra.get(t["task_id"])
            site_t = sites.get(t["site_id"], {}).get("last_updated")
            if (
                s is None
                or s.get("grid_name") != grid.grid_name
                or s.get("aligned_grid") != ALIGNED_GRID_NAME
                # off the aligned grid, tried under an older coverage rule (xanesdb.xas.align; no half step
                # kept then): try again
                or (s.get("state") == "successful" and s.get("e_half") is None)
                or s["last_updated"] < t["last_updated"]
                or (site_t is not None and s["last_updated"] < site_t)
            ):
                todo.append((t, grid))
            else:
                report.up_to_date += 1
                if s.get("dedup_threshold") != threshold:
                    touched.add((element, edge, source))
    return todo


def _standardise(todo: list[tuple[dict, EnergyGrid]], stores: _BuildStores, crit: dict[str, Any],
                 sites: dict[str, dict], threshold: float, touched: set[tuple[str, str, str]], report: BuildReport,
                 progress: Callable[[int, int], None] | None) -> None:
    """Standardise the planned tasks into spectra, in batches: few tasks are fetched by key, many by
    streaming their elements."""
    total = len(todo)
    if progress:
        progress(0, total)
    grid_of = {t["task_id"]: g for t, g in todo}
    if total <= _BATCH:
        stream = stores.tasks.query({"task_id": {"$in": list(grid_of)}})
    else:
        stream = (t for t in stores.tasks.query(crit) if t["task_id"] in grid_of)
    done = 0
    while True:
        full = list(itertools.islice(stream, _BATCH))
        if not full:
            break
        docs = []
        unlabelled = [t["site_id"] for t in full if t["site_id"] not in sites]
        if unlabelled:
            # one line per batch: label the structures (`xanesdb sites label`) and rebuild
            logger.warning("%d sites not in 'sites' (e.g. %s): their spectra have no label; "
                           "run `xanesdb sites label` and rebuild", len(unlabelled), unlabelled[0])
        for t in full:
            doc = _make_doc(t, sites.get(t["site_id"]), grid_of[t["task_id"]], threshold)
            if doc.state == "failed":
                report.failed += 1
                report.errors[doc.spectrum_id] = doc.error or ""
            docs.append(doc.to_mongo())  # duplicate_of is set by the group's dedup below
            touched.add((doc.element, doc.edge, energy_scale(doc.source, doc.preset)))
        stores.spectra.update(docs)
        report.processed += len(docs)
        done += len(full)
        if progress:
            progress(done, total)
