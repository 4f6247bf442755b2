"""The FEFF recipe (jobs/feff/task.py): keys, one document builder, kept files, the one writer."""

from __future__ import annotations

import json
import shutil

from pymatgen.core import Structure

from xanesdb.jobs.feff.sets import preset_cards, preset_hash_of
from xanesdb.jobs.feff.task import (
    KEEP_FILES,
    compute_feff_task,
    failed_input_doc,
    feff_task_key,
    safe_name,
    task_doc_from_folder,
    write_tasks,
)
from xanesdb.jobs.feff.workdir import clean_folder
from xanesdb.schemas import FeffTaskDoc
from xanesdb.testing.feff import monkeypatch_feff

from ..conftest import REF, memory_database  # noqa: TID252 - the jobs tests' shared helpers

CASE = REF / "CuO_Cu_K_fast"


def _cuo() -> Structure:
    return Structure.from_dict(json.loads((CASE / "inputs" / "structure.json").read_text()))


def test_task_key_format_is_unchanged():
    # the shipped tasks' keys: <material>:<element>:<index>:<edge>:<preset hash>
    assert feff_task_key("mp-704645", "Cu", 0, "fast") == f"mp-704645:Cu:0:K:{preset_hash_of('fast')}"
    assert feff_task_key("x", "Cu", 3, "mp", site_id="mp-1:Cu:3") == f"mp-1:Cu:3:K:{preset_hash_of('mp')}"
    assert safe_name("mp-1:Cu:0:K:ab") == "mp-1_Cu_0_K_ab"


def test_recipe_with_fake_feff_records_versions_and_cleans(monkeypatch, tmp_path):
    for update in monkeypatch_feff(monkeypatch, REF, check="full"):
        update({"feff xanes one": "CuO_Cu_K_fast"})
    (tmp_path / "attempt-0").mkdir()
    doc = compute_feff_task(_cuo(), 0, "mp-704645", preset="fast", workdir=tmp_path, feff_cmd=None, name="feff xanes one",
                            clean=True)
    assert doc.state == "successful" and doc.task_id == feff_task_key("mp-704645", "Cu", 0, "fast")
    assert doc.library_versions and "pymatgen" in doc.library_versions and "xanesdb" in doc.library_versions
    assert {p.name for p in (tmp_path / "attempt-0").iterdir()} <= set(KEEP_FILES)


def test_failed_input_doc_is_a_failed_task_of_the_same_key():
    site = {"site_id": "mp-1:Cu:9", "material_id": "mp-1", "element": "Cu", "site_index": 9}
    doc = failed_input_doc(site, "fast", "K", "IndexError: out of range")
    assert doc.state == "failed" and doc.error == "input: IndexError: out of range"
    assert doc.task_id == feff_task_key("mp-1", "Cu", 9, "fast") and doc.cards == preset_cards("fast")
    assert doc.mu == [] and doc.feff_inp is None and doc.input_hash is None


def test_batch_folder_gives_the_same_document_as_a_local_run(monkeypatch, tmp_path):
    """task_doc_from_folder (batch import) and compute_feff_task (local) fill the same fields."""
    for update in monkeypatch_feff(monkeypatch, REF, check="full"):
        update({"feff xanes": "CuO_Cu_K_fast"})
    local = compute_feff_task(_cuo(), 0, "mp-704645", preset="fast", workdir=tmp_path / "local", feff_cmd=None,
                              name="feff xanes")
    folder = tmp_path / "batch"
    shutil.copytree(CASE / "outputs", folder)
    task = {"site_id": local.site_id, "material_id": "mp-704645", "element": "Cu", "absorbing_index": 0, "edge": "K",
            "preset": "fast", "preset_hash": local.preset_hash, "cards": local.cards}
    result = {"code": "feff10-rs", "code_version": local.code_version, "stage_seconds": local.stage_seconds,
              "wall_seconds": 1.5, "hostname": "elsewhere"}
    imported = task_doc_from_folder(folder, task, result, local.feff_inp)
    same = ("task_id", "state", "energies", "mu", "cards", "input_hash", "preset_hash", "library_versions")
    assert {k: getattr(imported, k) for k in same} == {k: getattr(local, k) for k in same}
    assert imported.hostname == "elsewhere"


def test_write_tasks_upserts_on_the_key_in_memory():
    db = memory_database()
    site = {"site_id": "mp-1:Cu:9", "material_id": "mp-1", "element": "Cu", "site_index": 9}
    doc = failed_input_doc(site, "fast", "K", "first")
    assert write_tasks([doc], db) == 1
    assert write_tasks([doc.model_copy(update={"error": "input: second"})], db["feff_tasks"]) == 1
    docs = list(db["feff_tasks"].find({}, {"_id": 0}))
    assert len(docs) == 1 and FeffTaskDoc.from_mongo(docs[0]).error == "input: second"
    # a maggma store is written through the same function
    from maggma.stores import MemoryStore

    store = MemoryStore("feff_tasks", key="task_id")
    store.connect()
    write_tasks([doc, doc], store)
    assert store.count() == 1


def test_clean_folder_keeps_only_the_listed_files(tmp_path):
    for name in ("feff.inp", "xmu.dat", "phase.bin", "fort.13"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    clean_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feff.inp", "xmu.dat"]
