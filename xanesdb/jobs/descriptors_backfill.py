"""Backfill of the site descriptors (:mod:`xanesdb.jobs.labels.descriptors`) on stored sites.

Sites labelled before ``bond_length_spread`` and ``crystalnn_coordination_number`` existed lack
them; :func:`backfill_site_descriptors` computes them from each site's stored ``bond_lengths``
and its structure (``structures``), like ``xanesdb db migrate``: in place, idempotent (a site that
has the fields is not touched again unless ``force``), and each write guarded by the
``last_updated`` it was read with, so a relabelling meanwhile wins. ``xanesdb sites descriptors``
runs it.

Examples
--------
>>> report = backfill_site_descriptors(criteria={"element": "Fe"})   # doctest: +SKIP
>>> report.updated, report.failed                                     # doctest: +SKIP
(1930, {})
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from xanesdb.jobs.labels.descriptors import DESCRIPTOR_FIELDS, site_descriptors
from xanesdb.schemas.base import utcnow

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings

logger = logging.getLogger(__name__)

__all__ = ["BackfillReport", "backfill_site_descriptors", "missing_filter"]


@dataclass
class BackfillReport:
    """What a backfill did."""

    scanned: int = 0
    updated: int = 0
    skipped: int = 0  # changed by someone else between read and write
    failed: dict[str, str] = field(default_factory=dict)  # site_id -> reason
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def missing_filter() -> dict[str, Any]:
    """Filter of the successful sites that lack a descriptor field."""
    return {"state": "successful", "$or": [{f: {"$exists": False}} for f in DESCRIPTOR_FIELDS]}


def backfill_site_descriptors(
    settings: XanesdbSettings | None = None,
    criteria: dict[str, Any] | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
    db: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Compute and store the descriptor fields of stored sites that lack them.

    Parameters
    ----------
    settings
        Database settings (read from the environment if None).
    criteria
        Extra filter on ``sites`` (e.g. ``{"element": "Fe"}`` or ``{"site_id": {"$in": [...]}}``).
    force
        Recompute sites that have the fields already.
    dry_run
        Count what would be computed; write nothing (nothing is computed either).
    db
        A pymongo (or mongomock) database to use instead of the configured one (tests).
    progress
        Called as ``progress(done, total)`` after each material.

    Returns
    -------
    BackfillReport
    """
    from pymatgen.core import Structure

    t0 = time.perf_counter()
    if db is None:
        from xanesdb.platform.settings import get_settings
        from xanesdb.platform.stores import get_database

        db = get_database(settings or get_settings())  # ensure: the sites validator knows the new fields
    parts = [{"state": "successful"} if force else missing_filter()]
    if criteria:
        parts.append(criteria)
    query = {"$and": parts}
    report = BackfillReport()
    fields = {"_id": 1, "site_id": 1, "material_id": 1, "site_index": 1, "bond_lengths": 1, "last_updated": 1}
    by_material: dict[str, list[dict[str, Any]]] = {}
    for s in db["sites"].find(query, fields):
        by_material.setdefault(s["material_id"], []).append(s)
    report.scanned = sum(len(v) for v in by_material.values())
    if dry_run:
        report.seconds = time.perf_counter() - t0
        return report
    for done, (material_id, sites) in enumerate(sorted(by_material.items()), 1):
        sdoc = db["structures"].find_one({"material_id": material_id}, {"_id": 0, "structure": 1})
        structure = None
        if sdoc is None or not sdoc.get("structure"):
            reason = f"no structure {material_id} in structures"
        else:
            try:
                structure = Structure.from_dict(sdoc["structure"])
                reason = ""
            except Exception as err:  # noqa: BLE001 - a malformed stored structure
                reason = f"structure {material_id} unreadable ({type(err).__name__}: {err})"
        for s in sites:
            if structure is not None and not 0 <= s.get("site_index", -1) < len(structure):
                report.failed[s["site_id"]] = f"site index {s.get('site_index')} outside {material_id}"
                continue
            if structure is None:
                report.failed[s["site_id"]] = reason
                # the spread needs no structure: store it, leave CrystalNN's number missing
            values = site_descriptors(structure, s["site_index"], s.get("bond_lengths"))
            guard = {"_id": s["_id"], "last_updated": s.get("last_updated")}
            res = db["sites"].update_one(guard, {"$set": {**values, "last_updated": utcnow()}})
            if res.modified_count:
                report.updated += 1
            else:
                report.skipped += 1
        if progress is not None:
            progress(done, len(by_material))
    report.seconds = time.perf_counter() - t0
    logger.info("site descriptors: %d updated, %d skipped, %d failed", report.updated, report.skipped, len(report.failed))
    return report
