"""Writing ``structures`` (upserts on ``material_id``; unchanged documents are not rewritten) and reading them back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from xanesdb.jobs.structures.sources import CONTENT_FIELDS, ProgressCallback, _tick
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.schemas.structure import StructureDoc

logger = logging.getLogger(__name__)

__all__ = ["write_structures", "structures_with_elements"]


def structures_with_elements(db: Any, elements: Sequence[str], limit: int = 0) -> list[dict]:
    """Stored structure documents holding any of ``elements``, by ``material_id`` (at most ``limit``; 0: all)."""
    cursor = db["structures"].find({"elements": {"$in": list(elements)}}, {"_id": 0}).sort("material_id", 1)
    if limit:
        cursor = cursor.limit(limit)
    return list(cursor)


def write_structures(
    docs: Sequence[StructureDoc],
    settings: XanesdbSettings | None = None,
    replace_other_sources: bool = False,
    progress: ProgressCallback | None = None,
    batch_size: int = 500,
    store: Any = None,
) -> dict[str, int]:
    """Upsert structure documents on ``material_id``; unchanged documents are not rewritten.

    Parameters
    ----------
    docs
        Documents to write.
    settings
        Database settings (default: read from the environment now).
    replace_other_sources
        Replace a document that another source wrote under the same material id (default: keep it).
    progress
        Called per batch written.
    batch_size
        Documents per bulk upsert.
    store
        The ``structures`` store (maggma) to write to; default: the settings' database.

    Returns
    -------
    dict
        Counts 'new', 'updated', 'unchanged', 'kept_other_source', 'in_collection'.
    """
    from contextlib import nullcontext

    counts = {"new": 0, "updated": 0, "unchanged": 0, "kept_other_source": 0}
    if store is None:
        from xanesdb.platform.stores import get_store

        store = get_store("structures", settings or get_settings())
        opened = store
    else:
        opened = nullcontext(store)
    with opened:
        ids = [d.material_id for d in docs]
        existing: dict[str, dict] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            for old in store.query({"material_id": {"$in": chunk}}, properties=["material_id", *CONTENT_FIELDS]):
                existing[old["material_id"]] = old
        todo = []
        for doc in docs:
            new = doc.to_mongo()
            old = existing.get(doc.material_id)
            if old is None:
                counts["new"] += 1
            elif old.get("source") != doc.source and not replace_other_sources:
                counts["kept_other_source"] += 1
                continue
            elif all(old.get(f) == new.get(f) for f in CONTENT_FIELDS):
                counts["unchanged"] += 1
                continue
            else:
                counts["updated"] += 1
            todo.append(new)
        for start in range(0, len(todo), batch_size):
            store.update(todo[start : start + batch_size], key="material_id")
            _tick(progress, "writing structures", min(start + batch_size, len(todo)), len(todo))
        counts["in_collection"] = store.count()
    logger.info("structures: %s", counts)
    return counts


