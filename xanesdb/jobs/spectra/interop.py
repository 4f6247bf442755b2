"""pymatgen ``XAS`` and emmet-core ``XASDoc`` views of xanesdb spectra.

- :func:`spectrum_to_xas` / :func:`spectrum_doc_from_xas`: one site spectrum <-> pymatgen XAS.
- :func:`site_averaged_xas`: per material x absorber x source, the multiplicity-weighted average
  of the site spectra (what emmet's XAS builder makes with ``site_weighted_spectrum``), only when
  every unique site of that element in ``sites`` has a successful spectrum.
- :func:`site_averaged_xasdoc`: that average as an emmet-core ``XASDoc``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.jobs.spectra.build import current_grid, spectrum_id
from xanesdb.jobs.spectra.grid import EnergyGrid, edge_energy, interpolate, standardise
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.platform.stores import get_database
from xanesdb.schemas.spectrum import SpectrumDoc
from xanesdb.schemas.structure import StructureDoc

if TYPE_CHECKING:
    from emmet.core.xas import XASDoc
    from pymatgen.analysis.xas.spectrum import XAS
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = [
    "absorbing_index_of",
    "load_structure",
    "site_averaged_xas",
    "site_averaged_xasdoc",
    "spectrum_doc_from_xas",
    "spectrum_to_xas",
]


def absorbing_index_of(site_id: str) -> int:
    """The absorbing site's index from a site id ``'<material_id>:<element>:<index>'``."""
    try:
        return int(site_id.rsplit(":", 1)[1])
    except (IndexError, ValueError) as err:
        raise ValueError(f"site id {site_id!r} is not '<material_id>:<element>:<index>'") from err


def load_structure(material_id: str, settings: XanesdbSettings | None = None) -> Structure:
    """The structure of ``material_id`` from the ``structures`` collection."""
    doc = get_database(settings or get_settings())["structures"].find_one({"material_id": material_id})
    if doc is None:
        raise XanesdbUserError(
            f"structure {material_id!r} is not in the 'structures' collection; add it first"
        )
    return StructureDoc.from_mongo(doc).to_structure()


def spectrum_to_xas(doc: SpectrumDoc, structure: Structure) -> XAS:
    """A standardised spectrum as a pymatgen ``XAS`` (site-wise: ``absorbing_index`` set).

    Parameters
    ----------
    doc
        The spectrum.
    structure
        The structure of ``doc.material_id``.
    """
    from pymatgen.analysis.xas.spectrum import XAS

    if doc.state != "successful":
        raise ValueError(f"spectrum {doc.spectrum_id} failed standardisation: {doc.error}")
    index = absorbing_index_of(doc.site_id)
    if structure[index].specie.symbol != doc.element:
        raise ValueError(
            f"site {index} of the structure is {structure[index].specie.symbol}, not {doc.element}"
        )
    return XAS(
        np.asarray(doc.energies),
        np.asarray(doc.mu),
        structure,
        doc.element,
        edge=doc.edge,
        spectrum_type="XANES",
        absorbing_index=index,
    )


def spectrum_doc_from_xas(
    xas: XAS,
    *,
    task_id: str,
    material_id: str,
    source: str,
    code: str,
    preset: str,
    grid: EnergyGrid,
    **fields: Any,
) -> SpectrumDoc:
    """A spectrum document from a site-wise pymatgen ``XAS``.

    The XAS is standardised onto ``grid`` (unchanged when it is already on it, apart from
    scaling to max 1). ``fields`` are further ``SpectrumDoc`` fields (labels, multiplicity).
    """
    if xas.absorbing_index is None:
        raise ValueError("a site-averaged XAS (absorbing_index None) is not a site spectrum")
    element = xas.absorbing_element.symbol
    x, y = np.asarray(xas.x, dtype=float), np.asarray(xas.y, dtype=float)
    if len(x) == grid.n_points and np.allclose(x, grid.energies, atol=1e-6):
        mu, e0 = y / y.max(), edge_energy(x, y)
    else:
        mu, e0 = standardise(x, y, grid)
    site = f"{material_id}:{element}:{xas.absorbing_index}"
    return SpectrumDoc(
        spectrum_id=spectrum_id(task_id),
        task_id=task_id,
        site_id=site,
        material_id=material_id,
        formula=xas.structure.composition.reduced_formula,
        element=element,
        edge=xas.edge,
        source=source,
        code=code,
        preset=preset,
        grid_name=grid.grid_name,
        energies=grid.energies.tolist(),
        mu=mu.tolist(),
        e0=e0,
        **fields,
    )


def _site_average(
    material_id: str, element: str, source: str, edge: str, preset: str | None, settings: XanesdbSettings
) -> tuple[np.ndarray, np.ndarray, list[str], Any] | None:
    """(energies, averaged mu, task ids, last_updated) or None when a site is missing."""
    db = get_database(settings)
    sites = list(db["sites"].find({"material_id": material_id, "element": element},
                                  {"_id": 0, "site_id": 1, "multiplicity": 1, "state": 1}))
    if not sites:
        return None
    crit: dict[str, Any] = {"material_id": material_id, "element": element, "source": source, "edge": edge,
                            "state": "successful"}
    if preset:
        crit["preset"] = preset
    spectra: dict[str, dict] = {}
    for s in db["spectra"].find(crit, {"_id": 0, "site_id": 1, "task_id": 1, "grid_name": 1,
                                       "last_updated": 1}).sort("last_updated", 1):
        spectra[s["site_id"]] = s  # the latest per site wins
    missing = [s["site_id"] for s in sites if s.get("state") != "successful" or s["site_id"] not in spectra]
    if missing:
        logger.info("no site average for %s %s (%s): no spectrum for %s", material_id, element, source, missing)
        return None
    grid = current_grid(element, source, edge, settings)
    if grid is None:
        return None
    task_ids = [spectra[s["site_id"]]["task_id"] for s in sites]
    tasks = {t["task_id"]: t for t in db["feff_tasks"].find({"task_id": {"$in": task_ids}},
                                                             {"_id": 0, "task_id": 1, "energies": 1, "mu": 1})}
    # multiplicity-weighted average of the raw mu on the grid, then scaled to max 1
    weights = np.array([s.get("multiplicity") or 1 for s in sites], dtype=float)
    curves = np.array([interpolate(tasks[t]["energies"], tasks[t]["mu"], grid) for t in task_ids])
    avg = weights @ curves / weights.sum()
    last = max(spectra[s["site_id"]]["last_updated"] for s in sites)
    return grid.energies, avg / avg.max(), task_ids, last


def site_averaged_xas(
    material_id: str,
    element: str,
    source: str,
    *,
    edge: str = "K",
    preset: str | None = None,
    settings: XanesdbSettings | None = None,
) -> XAS | None:
    """Multiplicity-weighted site-average spectrum of one material and absorber, or None.

    None when a unique site of ``element`` in ``sites`` failed labelling or has no successful
    spectrum from ``source`` (as emmet's builder skips materials with missing sites).
    ``absorbing_index`` of the result is None (pymatgen's mark of a site average).
    """
    from pymatgen.analysis.xas.spectrum import XAS

    settings = settings or get_settings()
    got = _site_average(material_id, element, source, edge, preset, settings)
    if got is None:
        return None
    energies, mu, task_ids, last = got
    xas = XAS(energies, mu, load_structure(material_id, settings), element, edge=edge, spectrum_type="XANES")
    xas.task_ids = task_ids
    xas.last_updated = last
    return xas


def site_averaged_xasdoc(
    material_id: str,
    element: str,
    source: str,
    *,
    edge: str = "K",
    preset: str | None = None,
    settings: XanesdbSettings | None = None,
) -> XASDoc | None:
    """The site-average spectrum as an emmet-core ``XASDoc`` (None where a site is missing).

    The document's ``task_id`` (emmet's material reference, from which it derives
    ``spectrum_id``, e.g. ``aaabocjt-XANES-Cu-K``) is ``material_id`` when emmet accepts it as an
    identifier (``mp-123``, ``mvc-45``); otherwise it is left out and the xanesdb id is named in
    the document's ``warnings``.
    """
    from emmet.core.xas import XASDoc

    xas = site_averaged_xas(material_id, element, source, edge=edge, preset=preset, settings=settings)
    if xas is None:
        return None
    warnings = [f"xanesdb {material_id} source {source!r}; site spectra {', '.join(xas.task_ids)}"]
    try:
        return XASDoc.from_spectrum(xas, task_id=material_id, last_updated=xas.last_updated,
                                    warnings=warnings)
    except ValueError:
        warnings.append(f"xanesdb material_id {material_id!r} is not an emmet identifier")
        return XASDoc.from_spectrum(xas, last_updated=xas.last_updated, warnings=warnings)
