"""Schema enforcement at the database ($jsonSchema validators from the pydantic schemas), schema
migrations and export, against the real local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from pymongo.errors import WriteError

from xanesdb.platform.stores import COLLECTIONS, get_database
from xanesdb.platform.validation import (
    DocumentValidationError,
    explain_write_error,
    translate_validation_errors,
    validated_doc,
    validator_for,
)
from xanesdb.schemas import SpectrumDoc, StructureDoc

UNSUPPORTED = {"$ref", "$defs", "default", "format", "definitions", "$schema", "type", "const", "prefixItems"}


def _keywords(schema, path="$"):
    """Every (path, keyword) of a $jsonSchema, sub-schemas included."""
    if isinstance(schema, dict):
        for k, v in schema.items():
            yield path, k
            if k == "properties":
                for name, sub in v.items():
                    yield from _keywords(sub, f"{path}.{name}")
            elif k in ("items", "additionalProperties") and isinstance(v, dict):
                yield from _keywords(v, f"{path}[]")
            elif k == "anyOf":
                for i, sub in enumerate(v):
                    yield from _keywords(sub, f"{path}|{i}")


def _spectrum(**kw) -> dict:
    base = dict(spectrum_id="mp-1:Fe:0:K:abc:std", task_id="mp-1:Fe:0:K:abc", site_id="mp-1:Fe:0",
                material_id="mp-1", element="Fe", source="xanesdb", code="feff10-rs", preset="fast",
                grid_name="Fe-K-v1", energies=[7100.0 + i for i in range(100)], mu=[0.01 * i for i in range(100)],
                chemenv_symbol="O:6", lce_class="O6", csm=0.4)  # fmt: skip
    return SpectrumDoc(**{**base, **kw}).to_mongo()


@pytest.mark.parametrize("collection", list(COLLECTIONS))
def test_validators_use_only_mongodb_dialect(collection):
    v = validator_for(collection)["$jsonSchema"]
    bad = [(p, k) for p, k in _keywords(v) if k in UNSUPPORTED]
    assert not bad, bad
    assert v["additionalProperties"] is False and "_id" in v["properties"]
    assert v["properties"]["last_updated"]["bsonType"] == "date"
    assert {"schema_version", "last_updated", COLLECTIONS[collection][0]} <= set(v["required"])


def test_translation_details():
    site = validator_for("sites")["$jsonSchema"]["properties"]
    assert site["csm"]["bsonType"] == ["double", "int", "long", "null"]  # Optional[float]
    assert site["site_index"]["bsonType"] == ["int", "long"]
    assert site["equivalent_indices"] == {"description": site["equivalent_indices"]["description"],
                                          "bsonType": "array", "items": {"bsonType": ["int", "long"]}}
    # a nested model (was a $ref) is inlined, extra=forbid kept, and may be null
    chemenv = site["chemenv"]["anyOf"]
    assert chemenv[0]["additionalProperties"] is False and chemenv[0]["properties"]["candidates"]["items"]["bsonType"] == "object"
    assert chemenv[1] == {"bsonType": "null"}
    assert site["lce_class"]["anyOf"][0]["enum"] == ["T4", "S5", "O6"]
    models = validator_for("models")["$jsonSchema"]["properties"]
    assert models["created"]["anyOf"][0] == {"bsonType": "date"}  # to_mongo writes it as ISO text
    assert models["query"]["bsonType"] == "object" and "additionalProperties" not in models["query"]
    tasks = validator_for("feff_tasks")["$jsonSchema"]["properties"]
    assert tasks["stage_seconds"]["additionalProperties"] == {"bsonType": ["double", "int", "long"]}


def test_pydantic_check_names_the_field():
    doc = _spectrum()
    doc["mu"] = "not a list"
    with pytest.raises(DocumentValidationError, match=r"'mp-1:Fe:0:K:abc:std' does not match the spectra schema: mu"):
        validated_doc("spectra", doc)


BAD_DOCUMENTS = [
    ("spectra", {"mu": "oops"}, None, "mu (type did not match (got 'oops'))"),
    ("spectra", {"lce_class": "X9"}, None, "lce_class (value was not found in enum"),
    ("spectra", {"surprise": 1}, None, "surprise (not a field of the schema)"),
    ("spectra", {}, "element", "element (missing)"),
    ("spectra", {"last_updated": "2024-01-01"}, None, "last_updated (type did not match"),
    ("spectra", {"schema_version": 1.5}, None, "schema_version (type did not match"),
    ("structures", {"provenance": {"origin": "file", "typo": 1}}, None, "provenance.typo (not a field of the schema)"),
    ("structures", {"elements": ["Fe", 26]}, None, "elements (At least one item did not match"),
    ("sites", {"chemenv": {"strategy": "s", "distance_cutoff": "far"}}, None, ": chemenv ("),
    ("feff_tasks", {"state": "maybe"}, None, "state (value was not found in enum"),
    ("feff_tasks", {"stage_seconds": {"pot": "slow"}}, None, "stage_seconds"),
    ("models", {"state": "half"}, None, "state (value was not found in enum"),
]


def _valid(collection: str) -> dict:
    from xanesdb.schemas import ChemEnvResult, FeffTaskDoc, Provenance, SiteDoc, TrainingRunDoc

    if collection == "spectra":
        return _spectrum()
    if collection == "structures":
        return StructureDoc(material_id="mp-1", source="files", formula="FeO", elements=["Fe", "O"], nsites=2,
                            structure={"lattice": {}}, provenance=Provenance(origin="file")).to_mongo()
    if collection == "sites":
        return SiteDoc(site_id="mp-1:Fe:0", material_id="mp-1", source="files", formula="FeO", element="Fe",
                       site_index=0, equivalent_indices=[0], multiplicity=1,
                       chemenv=ChemEnvResult(strategy="s", distance_cutoff=1.2)).to_mongo()
    if collection == "feff_tasks":
        return FeffTaskDoc(task_id="t", site_id="mp-1:Fe:0", material_id="mp-1", element="Fe", absorbing_index=0,
                           code="feff10-rs", preset="fast", preset_hash="abc", state="successful",
                           stage_seconds={"pot": 1.5}).to_mongo()
    return TrainingRunDoc(run_id="r", kind="mlp", query={"element": "Fe"}, fingerprint="f", n_spectra=3).to_mongo()


@pytest.mark.integration
@pytest.mark.parametrize("collection,change,drop,message", BAD_DOCUMENTS)
def test_server_refuses_bad_document_and_names_the_field(db_settings, collection, change, drop, message):
    db = get_database(db_settings)
    good = _valid(collection)
    db[collection].insert_one(dict(good))  # what the package writes passes
    bad = {**good, **change}
    bad.pop("_id", None)
    if drop:
        bad.pop(drop)
    key = COLLECTIONS[collection][0]
    bad[key] = "other-key"
    with pytest.raises(DocumentValidationError) as exc, translate_validation_errors(collection):
        db[collection].insert_one(bad)
    assert message in str(exc.value), str(exc.value)
    assert str(exc.value).startswith(f"the database refused a document in {collection}")
    assert db[collection].count_documents({key: "other-key"}) == 0  # nothing written
    # an update that would break the stored document is refused too; the document is unchanged
    with pytest.raises(WriteError) as werr:
        db[collection].update_one({key: good[key]}, {"$set": {"schema_version": "one"}})
    assert explain_write_error(werr.value).fields == ["schema_version"]
    assert db[collection].find_one({key: good[key]})["schema_version"] == good["schema_version"]


@pytest.mark.integration
def test_validators_are_in_place_and_strict(db_settings):
    db = get_database(db_settings)
    infos = {c["name"]: c["options"] for c in db.list_collections()}
    for name in COLLECTIONS:
        assert infos[name]["validationLevel"] == "strict" and infos[name]["validationAction"] == "error"
        assert infos[name]["validator"] == validator_for(name)
    # applying again changes nothing (no collMod needed: a writer without collMod is fine)
    from xanesdb.platform.validation import apply_validators

    assert not any(apply_validators(db).values())


@pytest.mark.integration
def test_everything_the_package_writes_passes(tmp_path, monkeypatch):
    """The bundled snapshot, spectra built from it and a trained model, all into a validated database.

    On a server of its own, stopped (not dropped: dropping 12,000 documents takes ~45 s) at the end.
    """
    from xanesdb.jobs.spectra.build import build_spectra
    from xanesdb.ml.train import TrainConfig, train_from_query
    from xanesdb.platform.server import LocalServer, find_free_port
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.snapshot import load_snapshot

    server = LocalServer(tmp_path / "own-server", port=find_free_port())
    monkeypatch.setenv("XANESDB_DB_URI", server.ensure_running().uri())
    settings = get_settings()
    try:
        counts = load_snapshot(settings)
        db = get_database(settings)
        for name, n in counts.items():
            assert db[name].count_documents({}) == n > 0
        six = ["Ti", "V", "Cr", "Mn", "Co", "Ni"]
        n_good = db["feff_tasks"].count_documents({"element": {"$in": six}, "state": "successful"})
        report = build_spectra(settings, elements=six)
        assert db["spectra"].count_documents({}) == n_good >= 75 and report.processed == n_good
        # the element with most spectra in two classes
        rows = db.spectra.aggregate([{"$match": {"lce_class": {"$ne": None}}},
                                     {"$group": {"_id": {"e": "$element", "c": "$lce_class"}, "n": {"$sum": 1}}}])
        per: dict = {}
        for r in rows:
            if r["n"] >= 2:
                per.setdefault(r["_id"]["e"], []).append(r["n"])
        element = max((e for e in per if len(per[e]) >= 2), key=lambda e: sum(per[e]))
        cfg = TrainConfig(kind="mlp", epochs=1, n_models=1, curves=False, n_bootstrap=0, test_size=0.3, seed=1)
        res = train_from_query({"element": element}, cfg, settings)
        _check_all_valid(db, res)
    finally:
        server.stop()


def _check_all_valid(db, res):
    assert res.doc.state == "complete"
    stored = db["models"].find_one({"run_id": res.doc.run_id})
    assert stored["state"] == "complete" and stored["weights_file_id"]
    # and every stored document satisfies its collection's validator, as the server sees it
    for name in COLLECTIONS:
        total = db[name].count_documents({})
        assert db[name].count_documents(validator_for(name)) == total > 0, name


# ----------------------------------------------------------------------------- migrate
@pytest.mark.integration
def test_migrate_upgrades_an_old_document_once(db_settings):
    from xanesdb.platform.migrate import migrate_database, upgrade_document

    db = get_database(db_settings)
    old = _spectrum(spectrum_id="old:std")
    for f in ("schema_version", "xanesdb_version", "lce_class", "duplicate_of", "state"):
        old.pop(f)
    old["chemenv_symbol"] = "O6"  # the early spelling
    old["last_updated"] = "2023-05-01T10:00:00Z"
    # written by an old xanesdb before validators existed
    db.spectra.insert_one(dict(old), bypass_document_validation=True)
    db.spectra.insert_one(_spectrum())
    with pytest.raises(WriteError):  # the server will not let anyone touch it until it is migrated
        db.spectra.update_one({"spectrum_id": "old:std"}, {"$set": {"csm": 0.5}})
    up = upgrade_document("spectra", db.spectra.find_one({"spectrum_id": "old:std"}))
    assert up["chemenv_symbol"] == "O:6" and up["lce_class"] == "O6" and up["schema_version"] == 3
    assert up["site_class"] == "O6"
    assert up["mu_aligned"] is None and up["aligned_grid"] is None  # v2: spectra build computes them

    first = migrate_database(db_settings)["spectra"]
    assert (first.scanned, first.upgraded, first.failed) == (1, 1, {})
    doc = db.spectra.find_one({"spectrum_id": "old:std"})
    assert doc["schema_version"] == 3 and doc["lce_class"] == "O6" and doc["duplicate_of"] is None
    assert doc["last_updated"] == datetime(2023, 5, 1, 10, tzinfo=timezone.utc).replace(tzinfo=None)
    assert doc["xanesdb_version"].startswith("unknown")
    SpectrumDoc.from_mongo(doc)
    second = migrate_database(db_settings)["spectra"]
    assert (second.scanned, second.upgraded) == (0, 0)  # idempotent
    assert db.spectra.count_documents({}) == 2
    # a document that cannot be upgraded is reported and left alone
    db.spectra.insert_one({"spectrum_id": "junk"}, bypass_document_validation=True)
    r = subprocess.run([sys.executable, "-m", "xanesdb.cli", "db", "migrate"], capture_output=True, text=True,
                       env=os.environ.copy())
    assert r.returncode == 2 and "1 documents could not be upgraded" in r.stderr
    assert "spectra junk:" in r.stdout and db.spectra.find_one({"spectrum_id": "junk"}) == {
        "_id": db.spectra.find_one({"spectrum_id": "junk"})["_id"], "spectrum_id": "junk"}


# ----------------------------------------------------------------------------- export
@pytest.mark.integration
def test_export_parquet_and_json(db_settings, tmp_path):
    import pyarrow.parquet as pq

    db = get_database(db_settings)
    db.spectra.insert_many([_spectrum(spectrum_id=f"s{i}:std", csm=0.2 * i, lce_class=("O6" if i < 3 else "T4"))
                            for i in range(5)])
    cli = [sys.executable, "-m", "xanesdb.cli", "export"]
    out = tmp_path / "o6.parquet"
    r = subprocess.run(cli + ["--query", '{"lce_class": "O6", "csm": {"$lt": 0.5}}', "--out", str(out)],
                       capture_output=True, text=True, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out)
    assert t.num_rows == 3 and t.column("spectrum_id").to_pylist() == ["s0:std", "s1:std", "s2:std"]
    assert str(t.schema.field("mu").type) == "list<element: double>" and len(t.column("mu")[0]) == 100
    assert t.schema.field("last_updated").type.unit in ("us", "ms")
    js = tmp_path / "all.json"
    r = subprocess.run(cli + ["--format", "json", "--out", str(js)], capture_output=True, text=True, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    rows = json.loads(js.read_text())
    assert len(rows) == 5 and rows[4]["lce_class"] == "T4" and len(rows[0]["energies"]) == 100
    # bad query, forbidden operator, bad format: one line, exit 2, nothing written
    for args, msg in ((["--query", "{element: Fe}"], "not valid JSON"),
                      (["--query", '{"$where": "true"}'], "operator $where is not allowed"),
                      (["--format", "csv"], "unknown --format 'csv'"),
                      (["--collection", "jobs"], "unknown collection 'jobs'")):
        bad = tmp_path / "bad.out"
        r = subprocess.run(cli + [*args, "--out", str(bad)], capture_output=True, text=True, env=os.environ.copy())
        assert r.returncode == 2 and r.stderr.startswith("error: ") and msg in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not bad.exists() and not list(tmp_path.glob(".bad.out*"))


def test_spectra_v2_to_v3_adds_site_class():
    """Version 3: ``site_class`` is the paper's class or ``other`` for any other ChemEnv geometry."""
    from xanesdb.platform.migrate import upgrade_document

    for symbol, expected in (("L:2", "other"), ("S:4", "other"), ("T:4", "T4"), (None, None)):
        old = _spectrum(chemenv_symbol=symbol, lce_class={"T:4": "T4"}.get(symbol))
        old.pop("site_class")
        old["schema_version"] = 2
        up = upgrade_document("spectra", old)
        assert (up["schema_version"], up["site_class"]) == (3, expected)
