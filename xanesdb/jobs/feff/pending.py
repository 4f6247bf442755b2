"""Which sites still need FEFF under a preset: the one answer every engine uses.

A site needs FEFF when it is labelled (not failed), has no xanesdb task under the preset's key
``<site_id>:<edge>:<preset-hash>`` (a failed one counts unless ``retry_failed``), and is not
*covered*: a successful task of the same edge from one of the sources in ``covered_by``
(default :data:`DEFAULT_COVERED_BY`, the Materials Project spectra imported with ``xanesdb
structures import-mp-xas``) makes computing it again pointless. ``xanesdb feff run``, ``xanesdb
feff export-inputs``, ``xanesdb populate`` (when it plans and again on the worker when a fan-out
job runs) all ask :func:`pending_sites`, so they agree.

``db`` is anything that looks like a pymongo ``Database`` (``db["sites"].find(...)``): the real
server, or ``mongomock`` in tests.

Examples
--------
>>> from xanesdb.jobs.feff.pending import select_pending_sites
>>> pending, n_sites, n_done = select_pending_sites(db, ["Cu"], "fast", limit=10)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Sequence

from xanesdb.jobs.feff.sets import preset_hash_of
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas import task_id as make_task_id

__all__ = ["DEFAULT_COVERED_BY", "SITE_FIELDS", "existing_task_ids", "covered_site_ids", "pending_sites",
           "select_pending_sites"]

#: sources whose successful tasks make a site's own FEFF run unnecessary
DEFAULT_COVERED_BY: tuple[str, ...] = ("mp",)
#: what a pending entry holds (plus its ``task_id``)
SITE_FIELDS = ("site_id", "material_id", "element", "site_index")
_CHUNK = 1000


def _chunks(values: Sequence[str]):
    values = list(values)
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


def existing_task_ids(db: Any, task_ids: Sequence[str], retry_failed: bool = False) -> set[str]:
    """Which of ``task_ids`` are stored (successful ones, and failed ones too unless ``retry_failed``)."""
    out: set[str] = set()
    for chunk in _chunks(task_ids):
        crit: dict[str, Any] = {"task_id": {"$in": chunk}}
        if retry_failed:
            crit["state"] = "successful"
        out.update(db["feff_tasks"].distinct("task_id", crit))
    return out


def covered_site_ids(db: Any, site_ids: Sequence[str], edge: str = "K",
                     covered_by: Sequence[str] = DEFAULT_COVERED_BY) -> set[str]:
    """Which of ``site_ids`` have a successful task of ``edge`` from a source in ``covered_by``."""
    if not covered_by:
        return set()
    out: set[str] = set()
    for chunk in _chunks(site_ids):
        crit = {"site_id": {"$in": chunk}, "source": {"$in": list(covered_by)}, "edge": edge, "state": "successful"}
        out.update(db["feff_tasks"].distinct("site_id", crit))
    return out


def pending_sites(db: Any, sites: Sequence[dict], preset: str = "fast", edge: str = "K", retry_failed: bool = False,
                  covered_by: Sequence[str] = DEFAULT_COVERED_BY) -> list[dict]:
    """The entries of ``sites`` that still need FEFF, in their order, each with its ``task_id`` added.

    ``sites`` hold ``site_id``, ``material_id``, ``element`` and ``site_index``.
    """
    phash = preset_hash_of(preset, edge)
    sites = [{**s, "task_id": make_task_id(s["site_id"], edge, phash)} for s in sites]
    done = existing_task_ids(db, [s["task_id"] for s in sites], retry_failed)
    covered = covered_site_ids(db, [s["site_id"] for s in sites], edge, covered_by)
    return [s for s in sites if s["task_id"] not in done and s["site_id"] not in covered]


def labelled_sites(db: Any, elements: Sequence[str] | None = None, material_ids: Sequence[str] | None = None) -> list[dict]:
    """Labelled (not failed) sites of these absorbers and materials, in site_id order."""
    criteria: dict[str, Any] = {"state": {"$ne": "failed"}}
    if elements:
        criteria["element"] = {"$in": list(elements)}
    if material_ids:
        criteria["material_id"] = {"$in": list(material_ids)}
    projection = {"_id": 0, **{f: 1 for f in SITE_FIELDS}}
    return list(db["sites"].find(criteria, projection).sort("site_id", 1))


def select_pending_sites(
    db: Any,
    elements: Sequence[str] | None = None,
    preset: str = "fast",
    edge: str = "K",
    limit: int | None = None,
    retry_failed: bool = False,
    material_ids: Sequence[str] | None = None,
    covered_by: Sequence[str] = DEFAULT_COVERED_BY,
    order: str = "site_id",
) -> tuple[list[dict], int, int]:
    """Labelled sites that still need FEFF under ``preset`` (see :func:`pending_sites`).

    Returns ``(pending, n_sites, n_already)``; each pending entry holds site_id, material_id,
    element, site_index and task_id. Sites are taken in site_id order, so ``limit`` is stable;
    ``order="diverse"`` takes them farthest-first by local environment instead
    (:func:`xanesdb.jobs.feff.diversity.diverse_site_order`: the sites least like anything computed
    come first, so a limited run adds the fewest near-duplicate spectra).
    """
    if order not in ("site_id", "diverse"):
        raise XanesdbUserError(f"unknown site order {order!r}; use site_id or diverse")
    sites = labelled_sites(db, elements, material_ids)
    pending = pending_sites(db, sites, preset, edge, retry_failed, covered_by)
    n_already = len(sites) - len(pending)
    if order == "diverse" and pending:
        from xanesdb.jobs.feff.diversity import diverse_site_order

        pending = diverse_site_order(db, pending, preset_hash_of(preset, edge))
    if limit is not None and limit > 0:
        pending = pending[:limit]
    return pending, len(sites), n_already
