"""FeffXanesMaker and the fan-out job (jobs/feff/makers.py), on an in-memory database."""

from __future__ import annotations

import json

import pytest
from jobflow import run_locally
from pymatgen.core import Structure

from xanesdb.jobs.database import use_database
from xanesdb.jobs.feff.makers import FeffXanesMaker, run_pending_feff, should_stop_children
from xanesdb.jobs.feff.sets import preset_cards
from xanesdb.jobs.feff.task import failed_input_doc, feff_task_key
from xanesdb.schemas import FeffTaskDoc
from xanesdb.testing.feff import monkeypatch_feff

from ..conftest import REF, memory_database  # noqa: TID252 - the jobs tests' shared helpers


def _cuo() -> Structure:
    return Structure.from_dict(json.loads((REF / "CuO_Cu_K_fast" / "inputs" / "structure.json").read_text()))


def test_feff_job_skips_a_stored_task(memory_jobstore, monkeypatch, tmp_path):
    """A FEFF job whose task exists (another worker, a rerun of a lost run) returns it without running FEFF."""
    import xanesdb.jobs.feff.run as feff_run

    calls = []

    def no_feff(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("FEFF was run")

    monkeypatch.setattr(feff_run, "run_feff", no_feff)
    db = memory_database()
    key = feff_task_key("mp-704645", "Cu", 0, "fast")
    stored = FeffTaskDoc(task_id=key, site_id="mp-704645:Cu:0", material_id="mp-704645", element="Cu", absorbing_index=0,
                         edge="K", source="xanesdb", code="feff10-rs", preset="fast", preset_hash=key.rsplit(":", 1)[1],
                         cards=preset_cards("fast"), state="failed", error="non-convergence: stored earlier")
    db["feff_tasks"].insert_one(stored.to_mongo())
    with use_database(db):
        job = FeffXanesMaker().make(_cuo(), 0, "mp-704645")
        responses = run_locally(job, store=memory_jobstore, log=False, create_folders=True, root_dir=tmp_path)
        assert calls == [] and responses[job.uuid][1].output.task_id == key
        assert responses[job.uuid][1].output.error == "non-convergence: stored earlier"
        # with retry_failed the failed task is computed again (here: the runner raises)
        with pytest.raises(RuntimeError, match="FEFF was run"):
            run_locally(FeffXanesMaker(retry_failed=True).make(_cuo(), 0, "mp-704645"), store=memory_jobstore,
                        log=False, raise_immediately=True, create_folders=True, root_dir=tmp_path)
    assert len(calls) == 1


def test_maker_stores_its_task_in_the_handed_database_and_cleans(monkeypatch, memory_jobstore, tmp_path):
    for update in monkeypatch_feff(monkeypatch, REF, check="full"):
        update({"feff xanes": "CuO_Cu_K_fast"})
    db = memory_database()
    job = FeffXanesMaker().make(_cuo(), 0, "mp-704645")
    with use_database(db):
        run_locally(job, store=memory_jobstore, log=False, create_folders=True, root_dir=tmp_path, ensure_success=True)
    stored = db["feff_tasks"].find_one({"task_id": feff_task_key("mp-704645", "Cu", 0, "fast")})
    assert stored["state"] == "successful" and stored["library_versions"]["pymatgen"]
    # maker contract: round-trips, has a name
    m = FeffXanesMaker.from_dict(FeffXanesMaker(preset="mp", retry_failed=True).as_dict())
    assert (m.name, m.preset, m.retry_failed, m.clean) == ("feff xanes", "mp", True, True)


def test_fan_out_leaves_out_computed_covered_and_failed_sites(memory_jobstore, monkeypatch, tmp_path):
    for update in monkeypatch_feff(monkeypatch, REF, check="cards"):
        update({"feff xanes mp-704645:Cu:1": "CuO_Cu_K_fast"})
    db = memory_database()
    # site 0 computed already; site 2 covered by an MP spectrum; site 3's label failed
    site0 = {"site_id": "mp-704645:Cu:0", "material_id": "mp-704645", "element": "Cu", "site_index": 0}
    done = failed_input_doc(site0, "fast", "K", "stored")
    db["feff_tasks"].insert_one(done.to_mongo())
    db["feff_tasks"].insert_one(FeffTaskDoc(task_id="mp/mp-704645:Cu:2:K:x", site_id="mp-704645:Cu:2",
                                            material_id="mp-704645", element="Cu", absorbing_index=2, source="mp",
                                            code="FEFF 9", preset="mp", preset_hash="x", state="successful").to_mongo())
    sites = [{"element": "Cu", "site_index": i} for i in range(3)] + [
        {"element": "Cu", "site_index": 3, "state": "failed"}]
    fan = run_pending_feff(_cuo().as_dict(), "mp-704645", sites, FeffXanesMaker())
    with use_database(db):
        responses = run_locally(fan, store=memory_jobstore, log=False, create_folders=True, root_dir=tmp_path,
                                ensure_success=True)
    docs = [r[1].output for r in responses.values() if isinstance(r[1].output, FeffTaskDoc)]
    assert [d.site_id for d in docs] == ["mp-704645:Cu:1"]


def test_should_stop_children_policy():
    ok = FeffTaskDoc(task_id="a", site_id="a", material_id="m", element="Cu", absorbing_index=0, code="c",
                     preset="fast", preset_hash="h", state="successful")
    bad = ok.model_copy(update={"state": "failed", "error": "boom"})
    assert should_stop_children(ok, "error") is False
    assert should_stop_children(bad, True) is True and should_stop_children(bad, False) is False
    with pytest.raises(RuntimeError, match="boom"):
        should_stop_children(bad, "error")
