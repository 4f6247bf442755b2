"""Contract tests over every document (after scikit-learn's parametrize_with_checks)."""

from __future__ import annotations

import pytest

from xanesdb.schemas import ALL_DOCUMENTS, SCHEMA_VERSIONS


@pytest.mark.parametrize("doc_cls", ALL_DOCUMENTS, ids=lambda c: c.__name__)
def test_every_field_described(doc_cls):
    missing = [n for n, f in doc_cls.model_fields.items() if not f.description]
    assert not missing, f"{doc_cls.__name__} fields without description: {missing}"


@pytest.mark.parametrize("doc_cls", ALL_DOCUMENTS, ids=lambda c: c.__name__)
def test_key_and_version(doc_cls):
    assert doc_cls.collection in SCHEMA_VERSIONS
    assert doc_cls.key_field in doc_cls.model_fields
    assert doc_cls.model_fields["schema_version"].default == SCHEMA_VERSIONS[doc_cls.collection]


def test_structure_doc_roundtrip():
    from pymatgen.core import Lattice, Structure

    from xanesdb.schemas import Provenance, StructureDoc

    s = Structure(Lattice.cubic(4.2), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    doc = StructureDoc.from_structure(s, "test:NiO", "files", Provenance(origin="file"))
    again = StructureDoc.from_mongo({"_id": 1, **doc.to_mongo()})
    assert again.model_dump(mode="json") == doc.model_dump(mode="json")
    assert again.to_structure() == s
    assert doc.key == "test:NiO"
    with pytest.raises(ValueError, match="extra"):
        StructureDoc.model_validate({**doc.model_dump(), "unexpected": 1})
