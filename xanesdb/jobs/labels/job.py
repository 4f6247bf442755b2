"""The one labelling job: ChemEnv labels of one structure's unique absorbing sites."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from jobflow import job

from xanesdb.jobs.labels.chemenv import ABSORBERS, label_doc
from xanesdb.platform.settings import get_settings
from xanesdb.schemas.structure import StructureDoc

logger = logging.getLogger(__name__)

__all__ = ["label_sites_chemenv"]


@job(name="label sites")
def label_sites_chemenv(
    structure_doc: StructureDoc | dict,
    elements: Sequence[str] = ABSORBERS,
    symprec: float | None = None,
    store_sites: bool = False,
) -> list[dict]:
    """Label the unique absorbing sites of one structure document with ChemEnv.

    Parameters
    ----------
    structure_doc
        A :class:`StructureDoc` or its dict (as stored in ``structures``).
    elements
        Absorbing elements to label.
    symprec
        Symmetry precision for site equivalence (default: the settings').
    store_sites
        Label in a killable worker process with the ChemEnv time limit
        (:func:`xanesdb.jobs.labels.pool.label_structures`; a material labelled already is not
        labelled again) and store the sites in the job's database
        (:func:`xanesdb.jobs.database.job_database`); return the material's stored sites. Without
        it the labels are computed here and only returned.

    Returns
    -------
    list[dict]
        :class:`SiteDoc` dicts (JSON types), failed ones with ``state="failed"`` and ``error``.
    """
    settings = get_settings()
    symprec = settings.SYMPREC if symprec is None else symprec
    if not isinstance(structure_doc, StructureDoc):
        structure_doc = dict(structure_doc)
        if hasattr(structure_doc["structure"], "as_dict"):  # a job's inputs come back decoded (monty)
            structure_doc["structure"] = structure_doc["structure"].as_dict()
    doc = structure_doc if isinstance(structure_doc, StructureDoc) else StructureDoc.from_mongo(structure_doc)
    if not store_sites:
        return [d.model_dump(mode="json") for d in label_doc(doc, tuple(elements), symprec)]
    from xanesdb.jobs.database import job_database, store_over
    from xanesdb.jobs.labels.pool import label_structures

    db = job_database(settings)
    summary = label_structures([doc], store=store_over(db, "sites"), settings=settings, workers=1, elements=elements)
    logger.info("labelled %s: %s", doc.material_id, summary)
    crit = {"material_id": doc.material_id, "element": {"$in": list(elements)}}
    return sorted(db["sites"].find(crit, {"_id": 0, "last_updated": 0}), key=lambda s: s["site_id"])
