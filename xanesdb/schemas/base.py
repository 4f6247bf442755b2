"""Shared base of every xanesdb document: deterministic key, schema version, provenance."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from xanesdb import __version__

__all__ = ["XanesdbDoc", "SCHEMA_VERSIONS", "utcnow"]

#: current schema version of each collection's documents; bump when a field changes meaning
SCHEMA_VERSIONS: dict[str, int] = {
    "structures": 1,
    "sites": 1,
    "feff_tasks": 1,
    "spectra": 3,
    "models": 1,
}


def utcnow() -> datetime:
    """Timezone-aware now, in UTC (what ``last_updated`` holds)."""
    return datetime.now(timezone.utc)


class XanesdbDoc(BaseModel):
    """Base of every document: subclasses set ``collection`` and ``key_field``."""

    collection: ClassVar[str] = ""
    key_field: ClassVar[str] = ""

    schema_version: int = Field(1, description="Schema version of this document's collection.")
    xanesdb_version: str = Field(__version__, description="xanesdb version that wrote it.")
    last_updated: datetime = Field(default_factory=utcnow, description="When it was written (UTC).")

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.collection and cls.collection in SCHEMA_VERSIONS:
            field = cls.model_fields.get("schema_version")
            if field is not None:
                field.default = SCHEMA_VERSIONS[cls.collection]

    @property
    def key(self) -> str:
        """The document's deterministic key (its upsert key)."""
        return getattr(self, self.key_field)

    def to_mongo(self) -> dict[str, Any]:
        """A BSON-ready dict: datetimes stay datetimes, everything else JSON types."""
        doc = self.model_dump(mode="json")
        doc["last_updated"] = self.last_updated
        return doc

    @classmethod
    def from_mongo(cls, doc: dict[str, Any]):
        """Validate a document read from MongoDB (drops ``_id``)."""
        doc = {k: v for k, v in doc.items() if k != "_id"}
        return cls.model_validate(doc)
