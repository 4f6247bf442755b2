"""Import of Materials Project XAS documents (``materials.xas``) as ``feff_tasks`` of source 'mp'.

K-edge XANES documents of an absorber are fetched with the real ``mp-api`` client and stored
as :class:`~xanesdb.schemas.FeffTaskDoc` with ``source='mp'``, ``code='FEFF 9 (Materials
Project)'`` and ``preset='mp-xas'``; the key is ``task_id(site_id(...), 'K',
preset_hash(MP_XAS_CARDS), source='mp')``, one per symmetry-unique site, so a FEFF population
run can skip the sites that already have an MP spectrum.

Which site a spectrum belongs to:

- a site-specific document (its spectrum carries ``absorbing_index``): the unique site whose
  equivalent indices hold that index (from the ``sites`` collection when the structure is
  labelled, else from the structure's symmetry with the labeller's recipe,
  ``SpacegroupAnalyzer(symprec).get_symmetrized_structure()``, first index of each orbit);
- a site-averaged document (no ``absorbing_index``): only when the absorber has a single unique
  site in the structure (the average of equivalent sites is that site's spectrum); otherwise
  it is skipped and counted, since it cannot be keyed to one site.

The spectrum is checked with the same validity checks as xanesdb's own FEFF tasks
(:func:`xanesdb.jobs.feff.validate.validate_spectrum`: no NaN, no negative absorption,
increasing energies, edge near the tabulated one); a failing one is stored with
``state='failed'`` and the reason. A structure not yet in ``structures`` is added from the XAS
document (``source='mp'``); when a stored structure differs from the document's, the spectrum is
skipped rather than keyed to a site of another structure. Nothing is written until every
document has been fetched and checked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobflow import job
from pydantic import BaseModel, Field

from xanesdb.jobs.structures.sources import (
    DEFAULT_ABSORBERS,
    MP_LICENCE,
    ProgressCallback,
    _canonical_mp_id,
    _db_version,
    _mp_error,
    _tick,
    mp_rester,
    normalise_elements,
)
from xanesdb.jobs.structures.store import write_structures
from xanesdb.jobs.database import open_store
from xanesdb.jobs.feff.task import write_tasks
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.schemas import FeffTaskDoc, Provenance, StructureDoc, preset_hash, site_id, task_id

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = [
    "MP_XAS_CODE",
    "MP_XAS_PRESET",
    "MP_XAS_CARDS",
    "MpXasSummary",
    "unique_site_groups",
    "mp_xas_task_docs",
    "import_mp_xas",
    "import_mp_xas_job",
]

#: code recorded on imported tasks
MP_XAS_CODE = "FEFF 9 (Materials Project)"
#: preset name of imported tasks
MP_XAS_PRESET = "mp-xas"
#: what defines the preset of an MP XAS task (the MP documents carry no FEFF cards)
MP_XAS_CARDS: dict[str, str] = {
    "source": "mp",
    "preset": MP_XAS_PRESET,
    "code": MP_XAS_CODE,
    "spectrum_type": "XANES",
    "edge": "K",
}
_CONTENT_FIELDS = ("site_id", "material_id", "element", "absorbing_index", "state", "error",
                   "energies", "mu", "warnings", "import_path", "preset_hash")  # fmt: skip


class MpXasSummary(BaseModel):
    """What one import of Materials Project XAS documents did."""

    n_documents: int = Field(0, description="XAS documents the API returned.")
    n_tasks: int = Field(0, description="Tasks built (one per unique site).")
    n_new: int = Field(0, description="Tasks not in feff_tasks before.")
    n_updated: int = Field(0, description="Tasks present before whose content changed.")
    n_unchanged: int = Field(0, description="Tasks present with the same content (not rewritten).")
    n_successful: int = Field(0, description="Tasks with state 'successful'.")
    n_failed: int = Field(0, description="Tasks with state 'failed' (spectrum failed validation).")
    n_structures_new: int = Field(0, description="Structures added to 'structures' from the documents.")
    skipped: dict[str, int] = Field(default_factory=dict, description="Reason -> documents not imported.")
    task_ids: list[str] = Field(default_factory=list, description="Keys of the tasks built.")
    database_version: str | None = Field(None, description="Materials Project release.")


def unique_site_groups(structure: Structure, element: str, symprec: float) -> list[list[int]]:
    """Equivalent-index orbits of ``element``'s sites, as the site labeller groups them.

    Each orbit's first index is the representative ``site_index`` of its ``site_id``.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sym = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetrized_structure()
    groups = [sorted(idx) for idx in sym.equivalent_indices if structure[idx[0]].specie.symbol == element]
    return sorted(groups, key=lambda g: g[0])


def _same_structure(a: Structure, b: Structure, tol: float = 1e-3) -> bool:
    """Same cell, same site order and species, same fractional coordinates (within tol)."""
    import numpy as np

    if len(a) != len(b) or [s.species_string for s in a] != [s.species_string for s in b]:
        return False
    if not np.allclose(a.lattice.matrix, b.lattice.matrix, atol=tol * 10):
        return False
    d = a.frac_coords - b.frac_coords
    return bool(np.all(np.abs(d - np.round(d)) < tol))


def _spectrum_arrays(spectrum: Any) -> tuple[list[float], list[float]]:
    return [float(x) for x in spectrum.x], [float(y) for y in spectrum.y]


def mp_xas_task_docs(
    xas_docs: Sequence[Any],
    structures: dict[str, Structure],
    sites: dict[str, list[tuple[str, list[int]]]],
    db_version: str | None,
    symprec: float,
    progress: ProgressCallback | None = None,
) -> tuple[list[FeffTaskDoc], dict[str, Structure], dict[str, int]]:
    """FEFF task documents from mp-api ``XASDoc`` objects (no database access).

    Parameters
    ----------
    xas_docs
        ``XASDoc`` objects as ``MPRester().materials.xas.search`` returns them.
    structures
        Stored structures by material id (a document for another structure is skipped).
    sites
        ``material_id:element`` -> [(site_id, equivalent_indices)] from the ``sites`` collection.
    db_version
        MP release (recorded in ``import_path``).
    symprec
        Symmetry precision for unique sites of unlabelled structures.
    progress
        Called per document.

    Returns
    -------
    tuple
        (tasks, structures to add by material id, reason -> documents skipped).
    """
    phash = preset_hash(MP_XAS_CARDS)
    tasks: dict[str, FeffTaskDoc] = {}
    new_structures: dict[str, Structure] = {}
    skipped: dict[str, int] = {}

    def skip(reason: str, mid: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1
        logger.info("MP XAS %s not imported: %s", mid, reason)

    for n, doc in enumerate(xas_docs):
        _tick(progress, "mp xas: checking spectra", n + 1, len(xas_docs))
        mid = _canonical_mp_id(doc.task_id)
        out = _xas_task(doc, mid, structures, new_structures, sites, db_version, symprec, phash)
        if isinstance(out, str):
            skip(out, mid)
        elif out.task_id in tasks:
            skip("second spectrum for the same unique site", mid)
        else:
            tasks[out.task_id] = out
    return list(tasks.values()), new_structures, skipped


def _xas_task(doc: Any, mid: str, structures: dict[str, Structure], new_structures: dict[str, Structure],
              sites: dict[str, list[tuple[str, list[int]]]], db_version: str | None, symprec: float,
              phash: str) -> FeffTaskDoc | str:
    """The task of one ``XASDoc``, or why it is not imported. A structure not stored yet goes to
    ``new_structures`` (even when its spectrum is then refused, as the structure itself is sound)."""
    from xanesdb.jobs.feff.validate import validate_spectrum

    element = str(getattr(doc.absorbing_element, "symbol", doc.absorbing_element))
    edge = str(getattr(doc.edge, "value", doc.edge))
    kind = str(getattr(doc.spectrum_type, "value", doc.spectrum_type))
    spectrum = doc.spectrum
    if edge != "K" or kind != "XANES":
        return f"not a K-edge XANES spectrum ({edge} {kind})"
    if spectrum is None:
        return "document has no spectrum"
    structure = spectrum.structure
    stored = structures.get(mid) or new_structures.get(mid)
    if stored is None:
        new_structures[mid] = structure
    elif not _same_structure(stored, structure):
        return "structure differs from the stored one"
    site = _xas_site(spectrum, mid, element, structure, sites, symprec)
    if isinstance(site, str):
        return site
    sid, index = site
    energies, mu = _spectrum_arrays(spectrum)
    error, warnings = validate_spectrum(energies, mu, element, edge="K")
    warnings = [*warnings, *[str(w) for w in (doc.warnings or [])]]
    if spectrum.absorbing_index is None:
        warnings.append("site-averaged MP spectrum of the only unique site")
    spectrum_id = f"{mid}-XANES-{element}-K"
    return FeffTaskDoc(
        task_id=task_id(sid, "K", phash, source="mp"),
        site_id=sid,
        material_id=mid,
        element=element,
        absorbing_index=index,
        edge="K",
        source="mp",
        code=MP_XAS_CODE,
        code_version=None,
        preset=MP_XAS_PRESET,
        preset_hash=phash,
        cards={},
        state="failed" if error else "successful",
        error=error,
        warnings=warnings,
        energies=energies,
        mu=mu,
        import_path=f"materials/xas/{spectrum_id}" + (f" (MP {db_version})" if db_version else ""),
    )


def _xas_site(spectrum: Any, mid: str, element: str, structure: Structure,
              sites: dict[str, list[tuple[str, list[int]]]], symprec: float) -> tuple[str, int] | str:
    """``(site_id, absorbing index)`` of the unique site a spectrum belongs to, or why none fits."""
    labelled = sites.get(f"{mid}:{element}")
    if labelled:
        groups = [(sid, idx) for sid, idx in labelled]
    else:
        groups = [(site_id(mid, element, g[0]), g) for g in unique_site_groups(structure, element, symprec)]
    index = spectrum.absorbing_index
    if index is None:
        if len(groups) != 1:
            return "site-averaged spectrum over several unique sites"
        sid, idx = groups[0]
        return sid, idx[0]
    index = int(index)
    match = [(s, idx) for s, idx in groups if index in idx]
    if not match:
        return f"absorbing index is not a {element} site"
    return match[0][0], index


def import_mp_xas(
    elements: Sequence[str] | None = None,
    limit: int | None = None,
    settings: XanesdbSettings | None = None,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
    db: Any = None,
) -> MpXasSummary:
    """Import MP K-edge XANES documents of ``elements`` into ``feff_tasks`` (source 'mp').

    Parameters
    ----------
    elements
        Absorbers (default: Ti-Cu).
    limit
        At most this many XAS documents per element.
    settings
        Database settings (default: from the environment).
    endpoint
        API base URL (tests: the fake server's).
    progress
        ``progress(description, completed, total)`` callback.
    db
        The database to read and write (default: the settings'; the job hands its own).

    Returns
    -------
    MpXasSummary
        Counts; re-running changes none of the database counts.
    """
    from xanesdb.platform.errors import XanesdbUserError

    settings = settings or get_settings()
    elements = normalise_elements(elements) or list(DEFAULT_ABSORBERS)
    if limit is not None and limit < 0:
        raise XanesdbUserError(f"limit must be 0 or more, got {limit}")
    found, db_version = _search_xas(elements, limit, endpoint, progress)
    structures, sites = _known_structures_and_sites(sorted({_canonical_mp_id(d.task_id) for d in found}), settings, db)
    tasks, new_structures, skipped = mp_xas_task_docs(found, structures, sites, db_version, settings.SYMPREC, progress)
    # write: structures first (tasks refer to them), then tasks
    n_structures_new = _write_new_structures(new_structures, db_version, settings, db)
    counts = _write_changed_tasks(tasks, settings, db)
    _tick(progress, "mp xas: written", len(tasks), len(tasks))
    return MpXasSummary(
        n_documents=len(found),
        n_tasks=len(tasks),
        n_new=counts["new"],
        n_updated=counts["updated"],
        n_unchanged=counts["unchanged"],
        n_successful=sum(t.state == "successful" for t in tasks),
        n_failed=sum(t.state == "failed" for t in tasks),
        n_structures_new=n_structures_new,
        skipped=skipped,
        task_ids=[t.task_id for t in tasks],
        database_version=db_version,
    )


def _search_xas(elements: Sequence[str], limit: int | None, endpoint: str | None,
                progress: ProgressCallback | None) -> tuple[list[Any], str | None]:
    """K-edge XANES ``XASDoc`` objects of each element (at most ``limit`` each), and the MP release."""
    import requests
    from mp_api.client.core import MPRestError

    found: list[Any] = []
    with mp_rester(endpoint) as mpr:
        db_version = _db_version(mpr)
        for el in elements:
            _tick(progress, f"mp xas: searching {el} K-edge XANES", 0, None)
            kwargs: dict[str, Any] = {}
            if limit is not None:
                kwargs["chunk_size"] = max(1, min(limit, 1000))
                kwargs["num_chunks"] = max(1, math.ceil(limit / kwargs["chunk_size"]))
            try:
                hits = mpr.materials.xas.search(absorbing_element=el, edge="K", spectrum_type="XANES", **kwargs)
            except (MPRestError, requests.RequestException) as err:
                raise _mp_error(err, endpoint) from None
            found.extend(hits[:limit] if limit is not None else hits)
    return found, db_version


def _known_structures_and_sites(mids: list[str], settings: XanesdbSettings, db: Any
                                ) -> tuple[dict[str, Structure], dict[str, list[tuple[str, list[int]]]]]:
    """What the database knows of these materials: stored structures, and labelled sites by
    ``material_id:element`` as ``(site_id, equivalent_indices)``."""
    from pymatgen.core import Structure

    with open_store("structures", settings, db) as store:
        structures = {d["material_id"]: Structure.from_dict(d["structure"])
                      for d in store.query({"material_id": {"$in": mids}}, properties=["material_id", "structure"])}
    sites: dict[str, list[tuple[str, list[int]]]] = {}
    with open_store("sites", settings, db) as store:
        for d in store.query({"material_id": {"$in": mids}},
                             properties=["site_id", "material_id", "element", "equivalent_indices"]):
            sites.setdefault(f"{d['material_id']}:{d['element']}", []).append(
                (d["site_id"], list(d["equivalent_indices"])))
    return structures, sites


def _write_new_structures(new_structures: dict[str, Structure], db_version: str | None, settings: XanesdbSettings,
                          db: Any) -> int:
    """Store the structures of XAS documents not in the database yet; how many were new."""
    structure_docs = [
        StructureDoc.from_structure(
            s, material_id=mid, source="mp",
            provenance=Provenance(origin="materials_project", licence=MP_LICENCE, source_id=mid,
                                  database_version=db_version,
                                  reference=f"materials/xas/{mid} (structure of the XAS document)"),
        )
        for mid, s in sorted(new_structures.items())
    ]
    if not structure_docs:
        return 0
    with open_store("structures", settings, db) as store:
        return write_structures(structure_docs, settings, store=store)["new"]


def _write_changed_tasks(tasks: list[FeffTaskDoc], settings: XanesdbSettings, db: Any) -> dict[str, int]:
    """Write the tasks that are new or whose content changed; counts ``new``, ``updated``, ``unchanged``."""
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    with open_store("feff_tasks", settings, db) as store:
        ids = [t.task_id for t in tasks]
        old = {d["task_id"]: d for d in store.query({"task_id": {"$in": ids}}, properties=["task_id", *_CONTENT_FIELDS])}
        todo = []
        for t in tasks:
            new = t.to_mongo()
            if t.task_id not in old:
                counts["new"] += 1
            elif all(old[t.task_id].get(f) == new.get(f) for f in _CONTENT_FIELDS):
                counts["unchanged"] += 1
                continue
            else:
                counts["updated"] += 1
            todo.append(t)
        write_tasks(todo, store)
    return counts


@job
def import_mp_xas_job(
    elements: list[str] | None = None, limit: int | None = None, endpoint: str | None = None
) -> MpXasSummary:
    """Import Materials Project K-edge XANES as ``feff_tasks`` of source 'mp' (needs MP_API_KEY)."""
    from xanesdb.jobs.database import job_database

    return import_mp_xas(elements, limit, endpoint=endpoint, db=job_database())
