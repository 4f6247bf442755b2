"""One FEFF path, four engines: the same three sites (fake FEFF), the same task keys, the same skip.

Each engine runs the small Cu campaign of ``tests/jobs/conftest.py``: three labelled sites to
compute and a fourth covered by an imported Materials Project spectrum. Every engine must store
exactly the three tasks under their deterministic keys and leave the covered site alone. The local
pool, jobflow and batch engines run on an in-memory database; FireWorks needs its LaunchPad on the
real server.
"""

from __future__ import annotations

import io

import pytest

from xanesdb.jobs.feff.task import feff_task_key
from xanesdb.testing.feff import fake_feff_command, monkeypatch_feff

from ..conftest import REF, load_campaign  # noqa: TID252 - the jobs tests' shared helpers


def _expected_keys(site_ids: list[str]) -> set[str]:
    return {feff_task_key(*sid.split(":")[:2], int(sid.split(":")[2]), "fast") for sid in site_ids}


def _check(db, c) -> None:
    docs = list(db["feff_tasks"].find({"source": "xanesdb"}, {"_id": 0, "task_id": 1, "site_id": 1, "state": 1}))
    assert {d["task_id"] for d in docs} == _expected_keys(c.site_ids)
    assert len(docs) == 3 and all(d["state"] == "successful" for d in docs), docs
    # the MP-covered site was skipped: no task of xanesdb's own
    assert db["feff_tasks"].count_documents({"site_id": c.covered_site_id, "source": "xanesdb"}) == 0


def _fake(monkeypatch, c) -> None:
    for update in monkeypatch_feff(monkeypatch, REF, check="cards"):
        update(c.fake_refs)


def test_local_pool(campaign, monkeypatch):
    from xanesdb.jobs.feff.local import populate_feff

    db, c = campaign
    _fake(monkeypatch, c)
    seen = []
    s = populate_feff(elements=["Cu"], preset="fast", workers=2, feff_cmd="", db=db, on_progress=seen.append)
    assert (s.n_sites, s.n_already, s.n_pending, s.n_done, s.n_failed) == (4, 1, 3, 3, 0)
    assert len(seen) == 3  # one progress callback per finished site
    _check(db, c)
    assert populate_feff(elements=["Cu"], preset="fast", feff_cmd="", db=db).n_pending == 0


def test_jobflow_run_locally(campaign, monkeypatch, memory_jobstore, tmp_path):
    from xanesdb.jobs.feff.campaign import plan_campaign, run_campaign_locally

    db, c = campaign
    _fake(monkeypatch, c)
    monkeypatch.setenv("XANESDB_FEFF_CMD", "")
    plan = plan_campaign(elements=["Cu"], preset="fast", db=db, build_spectra=False)
    assert sorted(s["site_id"] for camp in plan.campaigns for s in camp.sites) == sorted(c.site_ids)
    assert (plan.n_sites, plan.n_sites_done, plan.n_materials_done) == (4, 1, 1)
    out = run_campaign_locally(plan, store=memory_jobstore, db=db, root_dir=tmp_path)
    assert out["failed"] == [] and out["materials"] == 2
    _check(db, c)
    assert plan_campaign(elements=["Cu"], preset="fast", db=db).campaigns == []


def test_batch_export_run_import(campaign, tmp_path):
    from xanesdb.jobs.feff.batch import export_inputs, import_batch, run_batch

    db, c = campaign
    out = export_inputs(db, tmp_path / "batch", ["Cu"], "fast")
    assert out["written"] == 3 and out["pending"] == 3
    fake = fake_feff_command(REF / "CuO_Cu_K_fast", check="cards")
    ran = run_batch(tmp_path / "batch", workers=2, feff_cmd=fake, log=io.StringIO())
    assert (ran["done"], ran["failed"]) == (3, 0)
    summary = import_batch(tmp_path / "batch", db)
    assert (summary.imported, summary.failed) == (3, 0)
    _check(db, c)
    assert export_inputs(db, tmp_path / "batch2", ["Cu"], "fast")["pending"] == 0


@pytest.mark.integration
def test_fireworks_workers(db_settings, shared_data, monkeypatch, tmp_path):
    """Submitted to the LaunchPad (real server), drained in this process by FireWorks' rapidfire."""
    from fireworks.core.fworker import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from xanesdb.jobs.feff.campaign import plan_campaign, submit_campaign
    from xanesdb.platform.launchpad import get_launchpad
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    c = load_campaign(db, shared_data / "omnixas_cu" / "raw_sample")
    _fake(monkeypatch, c)
    monkeypatch.setenv("XANESDB_FEFF_CMD", "")
    lp = get_launchpad(db_settings)
    plan = plan_campaign(db_settings, elements=["Cu"], preset="fast", build_spectra=False)
    assert sorted(s["site_id"] for camp in plan.campaigns for s in camp.sites) == sorted(c.site_ids)
    submit_campaign(plan, lp, db_settings)
    monkeypatch.chdir(tmp_path)
    rapidfire(lp, FWorker(name="here"), m_dir=str(tmp_path), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    assert lp.fireworks.count_documents({"state": {"$ne": "COMPLETED"}}) == 0
    _check(db, c)


def test_jobflow_labels_then_fans_out_skipping_the_covered_site(campaign, monkeypatch, memory_jobstore, tmp_path):
    """A material not labelled yet: its flow labels it (stored in the handed database), then the
    fan-out on the 'worker' asks the same pending query: the MP-covered site is not computed."""
    from xanesdb.jobs.feff.campaign import plan_campaign, run_campaign_locally

    db, c = campaign
    db["sites"].delete_many({"material_id": {"$in": ["mp-1181633", "mp-704645"]}})
    c.fake_refs.update({f"feff xanes mp-1181633:Cu:{i}": "CuO_Cu_K_fast" for i in range(16)})
    _fake(monkeypatch, c)
    monkeypatch.setenv("XANESDB_FEFF_CMD", "")
    plan = plan_campaign(elements=["Cu"], preset="fast", db=db, build_spectra=False,
                         material_ids=["mp-1181633", "mp-704645"])
    assert plan.n_to_label == 2
    out = run_campaign_locally(plan, store=memory_jobstore, db=db, root_dir=tmp_path)
    assert out["failed"] == []
    labelled = set(db["sites"].distinct("site_id", {"state": {"$ne": "failed"}, "material_id": {"$ne": "mp-1101124"}}))
    assert {c.covered_site_id, "mp-704645:Cu:0"} <= labelled
    tasks = set(db["feff_tasks"].distinct("site_id", {"source": "xanesdb"}))
    assert tasks == labelled - {c.covered_site_id}  # every labelled site but the MP-covered one


def test_local_pool_ctrl_c_kills_its_feff_and_the_next_run_starts(campaign, tmp_path, monkeypatch):
    """Ctrl-C in the local pool kills the FEFF processes of that pool (its own kill switch), stores no task for
    them, and needs no reset: the next run in the same process computes the sites."""
    import signal
    import sys
    import threading
    import time

    from xanesdb.jobs.feff.local import populate_feff
    from xanesdb.platform.settings import XanesdbSettings

    db, c = campaign
    settings = XanesdbSettings(HOME=tmp_path)
    started = tmp_path / "feff-started"
    sleeper = f"{sys.executable} -c 'import pathlib, time; pathlib.Path(\"{started}\").touch(); time.sleep(30)'"
    sent: list[float] = []
    stop = threading.Event()

    def ctrl_c() -> None:  # a real SIGINT to the main thread once FEFF runs, as Ctrl-C sends
        while not stop.is_set() and not started.exists():
            time.sleep(0.05)
        if not stop.is_set():
            time.sleep(0.5)
            sent.append(time.perf_counter())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # Python raises KeyboardInterrupt only where SIGINT was not ignored when it started (a job that a
    # non-interactive shell put in the background, as some CI runners do, inherits SIG_IGN)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=ctrl_c, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            populate_feff(settings, elements=["Cu"], preset="fast", workers=2, feff_cmd=sleeper, timeout=40, db=db)
    finally:
        stop.set()
        signal.signal(signal.SIGINT, previous)
    assert sent and time.perf_counter() - sent[0] < 10  # the sleeping FEFF processes were killed, not waited for
    assert db["feff_tasks"].count_documents({"source": "xanesdb"}) == 0
    _fake(monkeypatch, c)
    s = populate_feff(settings, elements=["Cu"], preset="fast", workers=2, feff_cmd="", db=db)
    assert (s.n_done, s.n_failed) == (3, 0)
    _check(db, c)


def test_batch_export_by_chemenv_symbol(campaign, tmp_path):
    """``symbols`` picks sites by ChemEnv symbol, the way to reach sites outside T4/S5/O6."""
    from xanesdb.jobs.feff.batch import export_inputs

    db, c = campaign
    linear = c.site_ids[0]
    db["sites"].update_one({"site_id": linear}, {"$set": {"chemenv_symbol": "L:2", "lce_class": None}})
    out = export_inputs(db, tmp_path / "batch", ["Cu"], "fast", symbols=["L:2"])
    assert (out["written"], out["pending"]) == (1, 1)
    assert [f for f in (tmp_path / "batch").iterdir() if f.is_dir()][0].name.startswith(linear.split(":")[0])
    assert export_inputs(db, tmp_path / "none", ["Cu"], "fast", symbols=["X:9"])["written"] == 0
