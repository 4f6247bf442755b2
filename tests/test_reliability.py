"""Fault injection, each for real: the database server SIGKILLed mid-run and restarted, the database
unreachable (retries with backoff), a full disk and an unwritable XANESDB_HOME, two concurrent
population runs on the same sites, a training process SIGKILLed while registering its model.

FEFF crashing, hanging past its time limit or writing garbage, and `xanesdb feff run` SIGKILLed
mid-write, are tested in tests/test_feff.py and tests/test_feff_db.py (see docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure

from xanesdb.platform.errors import DatabaseUnavailableError
from xanesdb.platform.server import LocalServer, find_free_port
from xanesdb.platform.settings import get_settings
from xanesdb.platform.stores import get_client, get_database
from xanesdb.schemas import Provenance, SiteDoc, SpectrumDoc, StructureDoc

pytestmark = pytest.mark.integration
REF = Path(__file__).parent / "test_data" / "feff"

WRITER = r"""
import os, sys, time
import pymongo
from pymongo.errors import PyMongoError
from xanesdb.schemas import SpectrumDoc
uri, n, acked = sys.argv[1], int(sys.argv[2]), sys.argv[3]
coll = pymongo.MongoClient(uri, serverSelectionTimeoutMS=2000)["crash"]["spectra"]
with open(acked, "a") as log:
    for i in range(n):
        doc = SpectrumDoc(spectrum_id=f"s{i:04d}:std", task_id=f"s{i:04d}", site_id=f"m:Fe:{i}", material_id="m",
                          element="Fe", source="xanesdb", code="c", preset="fast", grid_name="Fe-K-v1",
                          energies=[7100.0 + k for k in range(100)], mu=[i + k / 100 for k in range(100)]).to_mongo()
        while True:  # a population worker's loop: retry the same upsert until the server acknowledges it
            try:
                coll.replace_one({"spectrum_id": doc["spectrum_id"]}, doc, upsert=True)
                break
            except PyMongoError:
                time.sleep(0.2)
        log.write(doc["spectrum_id"] + "\n"); log.flush(); os.fsync(log.fileno())
"""


def test_server_sigkilled_mid_run_and_restarted(tmp_path):
    """kill -9 of the database server under a writer: nothing acknowledged lost, no half document."""
    from xanesdb.platform.stores import ensure_indexes

    home, port = tmp_path / "home", find_free_port()
    server = LocalServer(home, port=port)
    info = server.ensure_running()
    db = get_client(get_settings(DB_URI=info.uri()))["crash"]
    ensure_indexes(db["spectra"], "spectra")  # unique key + validator, as xanesdb sets them up
    acked, n = tmp_path / "acked.txt", 400
    writer = subprocess.Popen([sys.executable, "-c", WRITER, info.uri(), str(n), str(acked)])
    try:
        deadline = time.time() + 60
        while (not acked.exists() or len(acked.read_text().split()) < 60) and time.time() < deadline:
            time.sleep(0.05)
        os.kill(info.pid, signal.SIGKILL)
        before = set(acked.read_text().split())
        assert 60 <= len(before) < n, "the writer finished before the kill; write more documents"
        time.sleep(1.0)
        assert writer.poll() is None  # the writer waits for the server
        restarted = LocalServer(home, port=port).ensure_running()  # stale record detected, same port, same data
        assert restarted.pid != info.pid and restarted.port == port
        assert writer.wait(timeout=120) == 0
        db = get_client(get_settings(DB_URI=restarted.uri()))["crash"]
        ids = [d["spectrum_id"] for d in db.spectra.find({}, {"spectrum_id": 1})]
        assert before <= set(ids)  # nothing acknowledged before the kill is lost
        assert len(ids) == len(set(ids)) == n  # and nothing is there twice
        for d in db.spectra.find():  # no half-written document
            doc = SpectrumDoc.from_mongo(d)
            assert len(doc.mu) == len(doc.energies) == 100
    finally:
        if writer.poll() is None:
            writer.kill()
        LocalServer(home).stop()


def test_unreachable_database_retries_with_backoff_then_clear_error(caplog):
    uri = f"mongodb://127.0.0.1:{find_free_port()}/?directConnection=true"
    settings = get_settings(DB_URI=uri, DB_TIMEOUT_S=1.2, DB_RETRIES=2)
    t0 = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="xanesdb.platform.stores"):
        with pytest.raises(DatabaseUnavailableError, match=r"cannot reach MongoDB at .* within 1.2 s \(3 attempts"):
            get_client(settings)
    elapsed = time.perf_counter() - t0
    retries = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(retries) == 2 and "retrying in 0.1 s" in retries[0] and "retrying in 0.2 s" in retries[1]
    assert 1.2 <= elapsed < 6


def test_database_coming_up_during_the_retries_is_used(tmp_path):
    """The server starts while xanesdb is retrying: the connection succeeds, no error."""
    port = find_free_port()
    server = LocalServer(tmp_path / "late", port=port)
    starter = threading.Timer(0.5, server.ensure_running)
    starter.start()
    try:
        settings = get_settings(DB_URI=f"mongodb://127.0.0.1:{port}/?directConnection=true", DB_TIMEOUT_S=20,
                                DB_RETRIES=8)
        client = get_client(settings)
        assert client.admin.command("ping")["ok"] == 1
        client.close()
    finally:
        starter.join()
        server.stop()


def _limit_file_size():  # runs in the child: files may not grow past 64 KiB, and writes fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_full_disk_during_export_one_line_nothing_written(db_settings, tmp_path, cli_here):
    db = get_database(db_settings)
    db.spectra.insert_many([SpectrumDoc(
        spectrum_id=f"s{i}:std", task_id=f"s{i}", site_id=f"m:Fe:{i}", material_id="m", element="Fe", source="xanesdb",
        code="c", preset="fast", grid_name="Fe-K-v1", energies=[7100.0 + k for k in range(100)],
        mu=np.random.default_rng(i).random(100).tolist()).to_mongo() for i in range(300)])  # fmt: skip
    for fmt in ("json", "parquet"):
        out = tmp_path / f"spectra.{fmt}"
        r = subprocess.run([sys.executable, "-m", "xanesdb.cli", "export", "--format", fmt, "--out", str(out)],
                           capture_output=True, text=True, env=os.environ.copy(), preexec_fn=_limit_file_size)
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.startswith(f"error: cannot write {out} (") and "File too large" in r.stderr
        assert "nothing was written" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert list(tmp_path.iterdir()) == []  # no partial file, no temporary left
    # with room to write, the same export succeeds (in-process: no file size limit here)
    r = cli_here(["export", "--out", str(tmp_path / "ok.parquet")])
    assert r.returncode == 0 and "300 spectra" in r.stdout


def test_unwritable_home_one_line_error(tmp_path):
    if os.geteuid() != 0:
        home = tmp_path / "ro"
        home.mkdir()
        home.chmod(0o555)
        target = home / "xanesdb"
    else:  # root writes through file modes; use a place even root cannot create folders in
        target = Path("/sys/fs/xanesdb-test-home")
    env = {**os.environ, "XANESDB_HOME": str(target)}
    env.pop("XANESDB_DB_URI", None)
    r = subprocess.run([sys.executable, "-m", "xanesdb.cli", "db", "stats"], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: cannot create the local database folder {target}/db")
    assert "set XANESDB_HOME to a writable folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_two_concurrent_population_runs_store_each_task_once(db_settings, shared_data):
    """Two `xanesdb feff run` processes on the same sites (fake FEFF): every task exactly once."""
    from xanesdb.testing.feff import fake_feff_command

    db = get_database(db_settings)
    raw = shared_data / "omnixas_cu" / "raw_sample"
    site_ids = []
    for mat in sorted(p for p in raw.iterdir() if (p / "POSCAR").is_file())[:4]:
        sdoc = StructureDoc.from_structure(Structure.from_file(mat / "POSCAR"), mat.name, "files",
                                           Provenance(origin="omnixas", source_id=mat.name))
        db.structures.replace_one({"material_id": mat.name}, sdoc.to_mongo(), upsert=True)
        for run in sorted((mat / "FEFF-XANES").iterdir()):
            idx = int(run.name.split("_")[0])
            site = SiteDoc(site_id=f"{mat.name}:Cu:{idx}", material_id=mat.name, source="files", formula=sdoc.formula,
                           element="Cu", site_index=idx, equivalent_indices=[idx], multiplicity=1)
            db.sites.replace_one({"site_id": site.site_id}, site.to_mongo(), upsert=True)
            site_ids.append(site.site_id)
    env = {**os.environ, "XANESDB_FEFF_CMD": fake_feff_command(REF / "CuO_Cu_K_fast", check="cards", sleep=0.2)}
    cmd = [sys.executable, "-m", "xanesdb.cli", "feff", "run", "--element", "Cu", "--workers", "1", "--no-progress"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    docs = list(db.feff_tasks.find({}, {"_id": 0, "task_id": 1, "site_id": 1, "state": 1}))
    assert sorted(d["site_id"] for d in docs) == sorted(site_ids)  # each site once, none lost
    assert len({d["task_id"] for d in docs}) == len(docs) == len(site_ids)
    assert all(d["state"] == "successful" for d in docs)


KILLED_REGISTRATION = r"""
import os, signal, sys
import gridfs, keras
from xanesdb.ml import registry
from xanesdb.schemas import TrainingRunDoc
where = sys.argv[1]
model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(3, activation="softmax")])
doc = TrainingRunDoc(run_id="mlp-killed-run", kind="mlp", query={"element": "Cu"}, fingerprint="f" * 16,
                     n_spectra=10, classes=["O6", "S5", "T4"])
if where == "save":      # killed while the weights are being written
    model.save = lambda path: os.kill(os.getpid(), signal.SIGKILL)
else:                    # killed after the upload, before the document says 'complete'
    put = gridfs.GridFS.put
    def put_then_die(self, *a, **k):
        put(self, *a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    gridfs.GridFS.put = put_then_die
registry.register_run(doc, model)
"""


@pytest.mark.parametrize("where", ["save", "put"])
def test_training_sigkilled_while_registering_leaves_no_half_model(db_settings, where):
    import keras

    from xanesdb.ml.registry import list_runs, load_model, register_run
    from xanesdb.platform.errors import XanesdbUserError
    from xanesdb.schemas import TrainingRunDoc

    r = subprocess.run([sys.executable, "-c", KILLED_REGISTRATION, where], env=os.environ.copy(),
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    db = get_database(db_settings)
    docs = list(db.models.find())
    # no usable-looking model: the only trace is a document that says it is still training
    assert [(d["run_id"], d["state"], d["weights_file_id"]) for d in docs] == [("mlp-killed-run", "training", None)]
    with pytest.raises(XanesdbUserError, match="not complete; train it again"):
        load_model("mlp-killed-run", db_settings)
    assert db["model_files.files"].count_documents({}) == (1 if where == "put" else 0)
    # training again registers it completely; the killed run's orphaned weights are removed
    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(3, activation="softmax")])
    doc = TrainingRunDoc(run_id="mlp-killed-run", kind="mlp", query={"element": "Cu"}, fingerprint="f" * 16,
                         n_spectra=10, classes=["O6", "S5", "T4"])
    done = register_run(doc, model, db_settings)
    files = list(db["model_files.files"].find({}, {"_id": 1}))
    assert [str(f["_id"]) for f in files] == [done.weights_file_id]
    assert [r["state"] for r in list_runs(db_settings)] == ["complete"]
    assert load_model("mlp-killed-run", db_settings).output_shape == (None, 3)
