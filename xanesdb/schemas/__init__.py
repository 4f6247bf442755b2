"""Pydantic documents stored by xanesdb. No database or jobflow imports here."""

from xanesdb.schemas.base import SCHEMA_VERSIONS, XanesdbDoc
from xanesdb.schemas.feff import FeffTaskDoc, HandlerAction, preset_hash, task_id
from xanesdb.schemas.model_run import TrainingRunDoc
from xanesdb.schemas.site import LCE_CLASSES, ChemEnvCandidate, ChemEnvResult, SiteDoc, lce_class_of, site_id
from xanesdb.schemas.spectrum import SpectrumDoc
from xanesdb.schemas.structure import Provenance, StructureDoc

ALL_DOCUMENTS = (StructureDoc, SiteDoc, FeffTaskDoc, SpectrumDoc, TrainingRunDoc)
#: each stored collection's document class
DOCUMENT_FOR_COLLECTION = {d.collection: d for d in ALL_DOCUMENTS}

__all__ = [
    "ALL_DOCUMENTS",
    "DOCUMENT_FOR_COLLECTION",
    "SCHEMA_VERSIONS",
    "XanesdbDoc",
    "FeffTaskDoc",
    "HandlerAction",
    "preset_hash",
    "task_id",
    "TrainingRunDoc",
    "LCE_CLASSES",
    "ChemEnvCandidate",
    "ChemEnvResult",
    "SiteDoc",
    "lce_class_of",
    "site_id",
    "SpectrumDoc",
    "Provenance",
    "StructureDoc",
]
