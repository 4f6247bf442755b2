"""Schema migrations: upgrade documents with an older ``schema_version`` in place, idempotently.

Every document carries ``schema_version`` (current values in
:data:`xanesdb.schemas.SCHEMA_VERSIONS`). :data:`MIGRATIONS` holds, per collection, one upgrade
function per version step (``v -> v + 1``); a document is upgraded through the chain, validated
by its pydantic schema, and replaced only if it still has the version it was read with, so a
second run (or two runs at once) changes nothing. Documents with no ``schema_version`` are
version 0: what xanesdb wrote before versions existed (or another group's script).

Adding a migration when a schema changes meaning: bump the collection in ``SCHEMA_VERSIONS``,
register ``MIGRATIONS[collection][old] = upgrade`` here, and add a test with an old document.

Examples
--------
>>> from xanesdb.platform.migrate import migrate_database      # doctest: +SKIP
>>> migrate_database(settings)["spectra"].upgraded             # doctest: +SKIP
12
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from xanesdb.platform.errors import XanesdbUserError

logger = logging.getLogger(__name__)

__all__ = ["MIGRATIONS", "MigrationReport", "upgrade_document", "migrate_collection", "migrate_database", "outdated_filter"]

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]
#: what version-0 documents get as the writing xanesdb version
UNKNOWN_VERSION = "unknown (before schema versions)"


def _common_v0_to_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """Fields every version-1 document has: schema_version, xanesdb_version, a BSON-date last_updated."""
    doc = dict(doc)
    doc["schema_version"] = 1
    doc.setdefault("xanesdb_version", UNKNOWN_VERSION)
    lu = doc.get("last_updated")
    if isinstance(lu, str):
        try:
            lu = datetime.fromisoformat(lu.replace("Z", "+00:00"))
        except ValueError:
            lu = None
    if not isinstance(lu, datetime):
        lu = datetime.now(timezone.utc)
    doc["last_updated"] = lu if lu.tzinfo else lu.replace(tzinfo=timezone.utc)
    return doc


def _labels_v0_to_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """Sites and spectra before versions: the paper's class derived from the ChemEnv symbol."""
    from xanesdb.schemas import lce_class_of

    doc = _common_v0_to_v1(doc)
    if "lce_class" not in doc:
        doc["lce_class"] = lce_class_of(doc.get("chemenv_symbol"))
    # early documents spelled the symbol with no colon ('O6'); ChemEnv's form is 'O:6'
    sym = doc.get("chemenv_symbol")
    if isinstance(sym, str) and ":" not in sym and sym[:1].isalpha() and sym[1:].isdigit():
        doc["chemenv_symbol"] = f"{sym[0]}:{sym[1:]}"
        doc["lce_class"] = lce_class_of(doc["chemenv_symbol"])
    return doc


def _spectra_v0_to_v1(doc: dict[str, Any]) -> dict[str, Any]:
    doc = _labels_v0_to_v1(doc)
    doc.setdefault("duplicate_of", None)
    doc.setdefault("state", "successful" if doc.get("mu") else "failed")
    return doc


def _spectra_v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 2 adds the aligned representation; ``xanesdb spectra build`` computes it from the
    FEFF task (a spectrum document alone does not hold the raw spectrum it needs)."""
    doc = dict(doc)
    doc["schema_version"] = 2
    for key in ("e_half", "edge_step", "aligned_grid", "mu_aligned"):
        doc.setdefault(key, None)
    return doc


def _spectra_v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 3 adds ``site_class``: the paper's class, or ``other`` for any other ChemEnv geometry."""
    from xanesdb.schemas.site import site_class_of

    doc = dict(doc)
    doc["schema_version"] = 3
    doc["site_class"] = site_class_of(doc.get("chemenv_symbol"))
    return doc


def _models_v0_to_v1(doc: dict[str, Any]) -> dict[str, Any]:
    doc = _common_v0_to_v1(doc)
    # a run without the lifecycle field was complete only if its weights were stored
    doc.setdefault("state", "complete" if doc.get("weights_file_id") else "failed")
    return doc


#: collection -> {from_version: upgrade to from_version + 1}
MIGRATIONS: dict[str, dict[int, Upgrade]] = {
    "structures": {0: _common_v0_to_v1},
    "sites": {0: _labels_v0_to_v1},
    "feff_tasks": {0: _common_v0_to_v1},
    "spectra": {0: _spectra_v0_to_v1, 1: _spectra_v1_to_v2, 2: _spectra_v2_to_v3},
    "models": {0: _models_v0_to_v1},
}


@dataclass
class MigrationReport:
    """What a migration of one collection did."""

    collection: str
    current: int
    scanned: int = 0
    upgraded: int = 0
    skipped: int = 0  # changed by someone else between read and write
    failed: dict[str, str] = field(default_factory=dict)


def _version_of(doc: dict[str, Any]) -> int:
    v = doc.get("schema_version")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def upgrade_document(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The document upgraded to the current version and validated (BSON-ready, ``_id`` kept)."""
    from xanesdb.platform.validation import validated_doc
    from xanesdb.schemas import SCHEMA_VERSIONS

    current = SCHEMA_VERSIONS[collection]
    version = _version_of(doc)
    if version > current:
        raise ValueError(f"schema_version {version} is newer than this xanesdb knows ({current}); upgrade xanesdb")
    steps = MIGRATIONS.get(collection, {})
    out = dict(doc)
    while version < current:
        if version not in steps:
            raise ValueError(f"no migration of {collection} from schema_version {version}")
        out = steps[version](out)
        version += 1
        out["schema_version"] = version
    new = validated_doc(collection, out)
    if "_id" in doc:
        new["_id"] = doc["_id"]
    return new


def outdated_filter(collection: str) -> dict[str, Any]:
    """Filter of the documents older than the current schema version."""
    from xanesdb.schemas import SCHEMA_VERSIONS

    return {"$or": [{"schema_version": {"$exists": False}}, {"schema_version": {"$lt": SCHEMA_VERSIONS[collection]}}]}


def migrate_collection(coll: Any, name: str, dry_run: bool = False) -> MigrationReport:
    """Upgrade the outdated documents of one pymongo collection in place."""
    from xanesdb.schemas import SCHEMA_VERSIONS

    from xanesdb.platform.stores import COLLECTIONS

    report = MigrationReport(name, SCHEMA_VERSIONS[name])
    key = COLLECTIONS[name][0]
    for doc in coll.find(outdated_filter(name)):
        report.scanned += 1
        try:
            new = upgrade_document(name, doc)
        except (ValueError, XanesdbUserError) as err:
            report.failed[str(doc.get(key, doc.get("_id")))] = str(err).splitlines()[0]
            continue
        if dry_run:
            report.upgraded += 1
            continue
        # replace only if nobody upgraded or changed its version meanwhile: idempotent, race-free
        guard = {"_id": doc["_id"]}
        guard["schema_version"] = doc["schema_version"] if "schema_version" in doc else {"$exists": False}
        res = coll.replace_one(guard, new)
        if res.modified_count:
            report.upgraded += 1
        else:
            report.skipped += 1
    if report.upgraded or report.failed:
        logger.info("migrated %s: %d upgraded, %d failed", name, report.upgraded, len(report.failed))
    return report


def migrate_database(settings: Any = None, collections: list[str] | None = None, dry_run: bool = False) -> dict[str, MigrationReport]:
    """Migrate every xanesdb collection of the configured database."""
    from xanesdb.platform.stores import COLLECTIONS, get_database

    names = collections or list(COLLECTIONS)
    unknown = [c for c in names if c not in COLLECTIONS]
    if unknown:
        raise XanesdbUserError(f"unknown collection {unknown[0]!r}; choose from {', '.join(COLLECTIONS)}")
    db = get_database(settings)
    return {name: migrate_collection(db[name], name, dry_run=dry_run) for name in names}
