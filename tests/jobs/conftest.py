"""Fixtures of the jobs tests: an in-memory database (mongomock through maggma's MemoryStore) and a
small Cu campaign in it: three sites to compute and one covered by an imported MP spectrum."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pymatgen.core import Structure

from xanesdb.schemas import FeffTaskDoc, Provenance, SiteDoc, StructureDoc

REF = Path(__file__).resolve().parents[1] / "test_data" / "feff"
#: (material, Cu site index) computed by every engine; and the one an MP spectrum covers
TO_COMPUTE = (("mp-1101124", 1), ("mp-1101124", 3), ("mp-704645", 0))
MP_COVERED = ("mp-1181633", 0)


@dataclass
class Campaign:
    """What :func:`load_campaign` put in a database."""

    site_ids: list[str]      # the three sites every engine computes
    covered_site_id: str     # the site an imported MP spectrum covers (never computed)
    fake_refs: dict[str, str]  # job/run name -> reference case of the fake FEFF


def memory_database():
    """A fresh in-memory database (mongomock, as maggma's MemoryStore uses it)."""
    from maggma.stores import MemoryStore

    store = MemoryStore("xanesdb")
    store.connect()
    return store._collection.database


@pytest.fixture
def memory_db():
    """An empty in-memory database."""
    return memory_database()


def load_campaign(db, raw: Path) -> Campaign:
    """Structures and labelled Cu sites of four OmniXAS materials; an MP task covering one site."""
    site_ids = []
    for mid, idx in (*TO_COMPUTE, MP_COVERED):
        s = Structure.from_file(raw / mid / "POSCAR")
        sdoc = StructureDoc.from_structure(s, mid, "files", Provenance(origin="omnixas", source_id=mid))
        db["structures"].replace_one({"material_id": mid}, sdoc.to_mongo(), upsert=True)
        site = SiteDoc(site_id=f"{mid}:Cu:{idx}", material_id=mid, source="files", formula=sdoc.formula, element="Cu",
                       site_index=idx, equivalent_indices=[idx], multiplicity=1, lce_class="O6")
        db["sites"].replace_one({"site_id": site.site_id}, site.to_mongo(), upsert=True)
        site_ids.append(site.site_id)
    covered = site_ids.pop()
    mp = FeffTaskDoc(task_id=f"mp/{covered}:K:mpxas", site_id=covered, material_id=MP_COVERED[0], element="Cu",
                     absorbing_index=MP_COVERED[1], edge="K", source="mp", code="FEFF 9", preset="mp-xas",
                     preset_hash="mpxas", state="successful", energies=[8980.0, 8990.0], mu=[0.1, 1.0])
    db["feff_tasks"].insert_one(mp.to_mongo())
    return Campaign(site_ids, covered, {f"feff xanes {sid}": "CuO_Cu_K_fast" for sid in site_ids})


@pytest.fixture
def campaign(shared_data):
    """``(db, Campaign)``: the small Cu campaign in a fresh in-memory database."""
    db = memory_database()
    return db, load_campaign(db, shared_data / "omnixas_cu" / "raw_sample")
