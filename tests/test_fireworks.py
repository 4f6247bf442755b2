"""Population flows on FireWorks against the real local MongoDB server: a LaunchPad in the xanesdb
database, a small Cu campaign drained by 2 worker processes, and a worker SIGKILLed mid-FEFF whose
lost run is detected and rerun. FEFF is the fake of xanesdb.testing.feff (replays a real FEFF10
run, checking each generated feff.inp), run by the workers as XANESDB_FEFF_CMD."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymatgen.core import Structure

from xanesdb.jobs.feff.task import feff_task_key
from xanesdb.jobs.feff.campaign import plan_campaign, submit_campaign
from xanesdb.platform.launchpad import TASK_KEY_SPEC, get_launchpad, rlaunch_command, worker_job_store
from xanesdb.platform.stores import get_database
from xanesdb.schemas import Provenance, SiteDoc, StructureDoc
from xanesdb.testing.feff import fake_feff_command

pytestmark = pytest.mark.integration

REF = Path(__file__).parent / "test_data" / "feff" / "CuO_Cu_K_fast"
LABELLED = ("mp-1101124", "mp-1181633")  # sites given (as if labelled before): 2 + 4 Cu sites
UNLABELLED = "mp-704645"  # structure only: ChemEnv labels it on a worker (1 unique Cu site)


def _load(db, raw: Path, unlabelled: bool = True) -> list[str]:
    """Structures of the campaign and SiteDocs of the pre-labelled ones; returns the expected site ids."""
    expected = []
    for mid in LABELLED + ((UNLABELLED,) if unlabelled else ()):
        s = Structure.from_file(raw / mid / "POSCAR")
        sdoc = StructureDoc.from_structure(s, mid, "files", Provenance(origin="omnixas", source_id=mid))
        db["structures"].replace_one({"material_id": mid}, sdoc.to_mongo(), upsert=True)
        if mid == UNLABELLED:
            expected.append(f"{mid}:Cu:0")
            continue
        for run in sorted((raw / mid / "FEFF-XANES").iterdir()):
            idx = int(run.name.split("_")[0])
            site = SiteDoc(site_id=f"{mid}:Cu:{idx}", material_id=mid, source="files", formula=sdoc.formula,
                           element="Cu", site_index=idx, equivalent_indices=[idx], multiplicity=1)
            db["sites"].replace_one({"site_id": site.site_id}, site.to_mongo(), upsert=True)
            expected.append(site.site_id)
    return sorted(expected)


def _cli(args: list[str], env: dict | None = None, timeout: float = 120, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "xanesdb.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=cwd)


def _start(cmd: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    log = open(cwd / "worker.log", "w")
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait(procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            logs = "\n".join((Path(q.args[q.args.index("-l") + 1]).parent / "worker.log").read_text()[-3000:]
                             if "-l" in q.args else "" for q in procs)
            pytest.fail(f"workers did not finish within {timeout} s\n{logs}")


def _feff_runs(root: Path) -> list[Path]:
    """xmu.dat files the (fake) FEFF wrote: one per FEFF run, each in its own launch folder."""
    return sorted(root.rglob("attempt-*/xmu.dat"))


def _check_campaign(db, lp, expected: list[str], n_workflows: int) -> None:
    docs = list(db["feff_tasks"].find({}, {"_id": 0, "task_id": 1, "site_id": 1, "state": 1}))
    assert sorted(d["site_id"] for d in docs) == expected  # none lost, none twice
    assert all(d["state"] == "successful" for d in docs)
    keys = set()
    for sid in expected:
        mid, el, idx = sid.split(":")
        keys.add(feff_task_key(mid, el, int(idx), "fast"))
    assert {d["task_id"] for d in docs} == keys
    wfs = list(lp.workflows.find({}, {"state": 1, "metadata": 1}))
    assert len(wfs) == n_workflows and all(w["state"] == "COMPLETED" for w in wfs), [w["state"] for w in wfs]
    # every FEFF Firework completed, one per task key
    feff = list(lp.fireworks.find({f"spec.{TASK_KEY_SPEC}": {"$exists": True}}, {"state": 1, "spec": 1, "launches": 1}))
    assert sorted(f["spec"][TASK_KEY_SPEC] for f in feff) == sorted(d["task_id"] for d in docs)
    assert all(f["state"] == "COMPLETED" for f in feff)
    # spectra built by the flows, one per task
    assert db["spectra"].count_documents({}) == len(expected)
    # job outputs in the JobStore of the same database
    assert db["jobs"].count_documents({"name": {"$regex": "^feff xanes "}}) >= len(expected)


def test_two_rlaunch_workers_drain_campaign_once(db_settings, shared_data, tmp_path, cli_here):
    db = get_database(db_settings)
    expected = _load(db, shared_data / "omnixas_cu" / "raw_sample")
    env = {"XANESDB_FEFF_CMD": fake_feff_command(REF, check="cards", sleep=0.5)}
    args = ["populate", "--engine", "fireworks", "--element", "Cu", "--preset", "fast", "--no-progress"]
    r = _cli(args, env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 materials; 0 done, 0 queued already, 3 to submit" in r.stdout, r.stdout
    assert "6 FEFF jobs now; 1 materials to label first" in r.stdout, r.stdout
    assert "added 3 workflows" in r.stdout
    # the same submission again is refused: every task and material is queued already
    r2 = cli_here(args, env)
    assert r2.returncode == 0 and "3 queued already, 0 to submit" in r2.stdout, r2.stdout
    lp = get_launchpad(db_settings)
    assert lp.workflows.count_documents({}) == 3
    # the workflows carry no database URI: workers resolve it from their own settings
    assert lp.fireworks.count_documents({"spec._tasks.store.docs_store.@class": "SettingsMongoStore"}) == \
        lp.fireworks.count_documents({})
    # two workers, separate OS processes, plain `rlaunch rapidfire` with the files `populate config` writes
    procs = []
    for name in ("w1", "w2"):
        folder = tmp_path / name
        c = cli_here(["populate", "config", str(folder), "--name", name, "--ping", "1"])
        assert c.returncode == 0 and "rlaunch" in c.stdout, c.stdout + c.stderr
        assert (folder / "my_launchpad.yaml").stat().st_mode & 0o077 == 0
        procs.append(_start(rlaunch_command(folder, sleep=1), folder, env))
    _wait(procs, timeout=100)
    assert [p.returncode for p in procs] == [0, 0]
    _check_campaign(db, lp, expected, n_workflows=3)
    # FEFF ran exactly once per site, and both workers took part
    assert len(_feff_runs(tmp_path)) == len(expected)
    workers = {d["fworker"]["name"] for d in lp.launches.find({}, {"fworker.name": 1})}
    assert workers == {"w1", "w2"}
    # the material labelled on a worker got its ChemEnv label, its FEFF job added by the fan-out
    site = db["sites"].find_one({"material_id": UNLABELLED})
    assert site["chemenv_symbol"] and site["state"] != "failed"
    # a third submission has nothing left to do
    r3 = cli_here(args, env)
    assert "3 done, 0 queued already, 0 to submit" in r3.stdout, r3.stdout
    st = cli_here(["populate", "status"])
    assert st.returncode == 0 and "feff_tasks (xanesdb, preset fast): 7 successful, 0 failed" in st.stdout, st.stdout


def test_sigkilled_worker_lost_run_detected_and_rerun(db_settings, shared_data, tmp_path):
    db = get_database(db_settings)
    expected = _load(db, shared_data / "omnixas_cu" / "raw_sample", unlabelled=False)
    env = {"XANESDB_FEFF_CMD": fake_feff_command(REF, check="cards", sleep=4)}
    lp = get_launchpad(db_settings)
    plan = plan_campaign(db_settings, elements=["Cu"], preset="fast")
    assert [c.material_id for c in plan.campaigns] == list(LABELLED)
    submit_campaign(plan, lp, db_settings)
    procs = {}
    for name in ("A", "B"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "FW_config.yaml").write_text("PING_TIME_SECS: 1\n")  # running jobs report every second
        procs[name] = _start([sys.executable, "-m", "xanesdb.cli", "populate", "worker", "--name", name,
                              "--sleep", "1"], folder, env)
    # wait until A runs a FEFF job, and kill it while FEFF (sleeping 4 s) has not finished
    deadline, launch = time.time() + 60, None
    while time.time() < deadline and launch is None:
        for d in lp.launches.find({"fworker.name": "A", "state": "RUNNING"}):
            fw = lp.fireworks.find_one({"fw_id": d["fw_id"]})
            if TASK_KEY_SPEC in fw["spec"]:
                launch = d
        time.sleep(0.2)
    assert launch is not None, (tmp_path / "A" / "worker.log").read_text()[-3000:]
    time.sleep(1.5)
    os.kill(procs["A"].pid, signal.SIGKILL)
    procs["A"].wait(timeout=10)
    lost_fw = launch["fw_id"]
    lost_key = lp.fireworks.find_one({"fw_id": lost_fw})["spec"][TASK_KEY_SPEC]
    assert db["feff_tasks"].count_documents({"task_id": lost_key}) == 0, "killed after FEFF finished; kill earlier"
    assert lp.fireworks.find_one({"fw_id": lost_fw})["state"] == "RUNNING"
    # the run is lost once silent for longer than the expiration; B's running job pings every second
    time.sleep(5)
    rec = _cli(["populate", "recover", "--expiration", "4"])
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "lost runs rerun: 1" in rec.stdout and f"fw {lost_fw}: feff xanes" in rec.stdout, rec.stdout
    # B, still polling (the lost job's spectra child was waiting), picks the rerun up and finishes
    _wait([procs["B"]], timeout=90)
    assert procs["B"].returncode == 0
    _check_campaign(db, lp, expected, n_workflows=2)
    launches = list(lp.launches.find({"fw_id": lost_fw}, {"state": 1, "fworker.name": 1}).sort("launch_id", 1))
    assert [(x["fworker"]["name"], x["state"]) for x in launches] == [("A", "FIZZLED"), ("B", "COMPLETED")]
    # FEFF finished once per site: the killed worker's FEFF died with it and wrote nothing
    assert len(_feff_runs(tmp_path)) == len(expected)
    assert _feff_runs(Path(launch["launch_dir"])) == []


def test_worker_job_store_resolves_on_the_worker(db_settings, monkeypatch):
    """The JobStore written into Fireworks holds no URI; it refuses a worker on another database."""
    store = worker_job_store(db_settings)
    d = store.as_dict()
    assert "mongodb://" not in str(d)
    store.connect()
    store.update({"uuid": "u1", "index": 1, "output": 5, "name": "x", "metadata": {}, "hosts": []}, key=["uuid", "index"])
    assert get_database(db_settings)["jobs"].count_documents({"uuid": "u1"}) == 1
    monkeypatch.setenv("XANESDB_DB_NAME", "another")
    from jobflow import JobStore

    with pytest.raises(RuntimeError, match="XANESDB_DB_NAME=" + db_settings.DB_NAME):
        JobStore.from_dict(d).connect()


def test_populate_local_engine_and_bad_input(db_settings, shared_data, refused, cli_here):
    """`--engine local` runs the same flows here (labels on the fly, FEFF, spectra); a re-run does nothing."""
    db = get_database(db_settings)
    raw = shared_data / "omnixas_cu" / "raw_sample"
    for mid in ("mp-1101124", UNLABELLED):  # one with sites given, one labelled by its flow
        s = Structure.from_file(raw / mid / "POSCAR")
        sdoc = StructureDoc.from_structure(s, mid, "files", Provenance(origin="omnixas", source_id=mid))
        db["structures"].replace_one({"material_id": mid}, sdoc.to_mongo(), upsert=True)
    for idx in (1, 3):
        site = SiteDoc(site_id=f"mp-1101124:Cu:{idx}", material_id="mp-1101124", source="files", formula="x",
                       element="Cu", site_index=idx, equivalent_indices=[idx], multiplicity=1)
        db["sites"].insert_one(site.to_mongo())
    env = {"XANESDB_FEFF_CMD": fake_feff_command(REF, check="cards")}
    r = _cli(["populate", "--engine", "local", "--element", "Cu", "--no-progress"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 to run" in r.stdout and "ran 2 material flows" in r.stdout and "0 with a job that did not finish" in r.stdout
    assert "0 of their sites still without a task" in r.stdout, r.stdout
    tasks = sorted(d["site_id"] for d in db["feff_tasks"].find({}, {"site_id": 1}))
    assert tasks == ["mp-1101124:Cu:1", "mp-1101124:Cu:3", f"{UNLABELLED}:Cu:0"]
    assert db["spectra"].count_documents({}) == 3
    assert db["jobs"].count_documents({}) >= 5  # job outputs in the same database
    # the re-run in this process (the command line itself was run above)
    again = cli_here(["populate", "--engine", "local", "--element", "Cu", "--no-progress"], env)
    assert "2 done, 0 queued already, 0 to run" in again.stdout, again.stdout
    # bad input, in-process: exit 2, one line, nothing on stdout, nothing written
    for args, msg in ((["--engine", "slurm"], "unknown --engine 'slurm'"),
                      (["--source", "mp"], "unknown --source 'mp'"),
                      (["--limit", "-1"], "--limit must be 0 or more"),
                      (["--element", "Xx"], "unknown element"),
                      (["--preset", "bogus"], "unknown FEFF preset 'bogus'")):
        assert f"error: {msg}" in refused(["populate", *args]), args
    assert "error: --expiration must be 0 or more" in refused(["populate", "recover", "--expiration", "-5"])
