"""Settings, the local server lifecycle, stores and query parsing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pymongo
import pytest

from xanesdb.platform.errors import DatabaseUnavailableError, XanesdbUserError
from xanesdb.platform.queries import parse_filter
from xanesdb.platform.server import LocalServer, find_free_port
from xanesdb.platform.settings import get_settings
from xanesdb.platform.stores import get_client, get_database, get_store, redact_uri


def test_settings_env_and_yaml(tmp_path, monkeypatch):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("workers: 3\nfeff_preset: mp\n")
    monkeypatch.setenv("XANESDB_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("XANESDB_FEFF_PRESET", "fast")
    s = get_settings()
    assert s.WORKERS == 3  # from YAML
    assert s.FEFF_PRESET == "fast"  # env beats YAML
    assert s.n_workers == 3


def test_settings_refuse_world_readable_uri(tmp_path, monkeypatch):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("db_uri: mongodb://u:secret@host/\n")
    cfg.chmod(0o644)
    monkeypatch.setenv("XANESDB_CONFIG_FILE", str(cfg))
    with pytest.raises(ValueError, match="chmod 600"):
        get_settings()
    cfg.chmod(0o600)
    assert get_settings().DB_URI.get_secret_value().endswith("host/")
    assert "secret" not in repr(get_settings())


def test_bad_uri_rejected(monkeypatch):
    monkeypatch.setenv("XANESDB_DB_URI", "http://example.org")
    with pytest.raises(ValueError, match="mongodb://"):
        get_settings()


def test_redact_uri():
    assert redact_uri("mongodb://alice:pw@h:1/db") == "mongodb://alice:***@h:1/db"
    assert redact_uri("mongodb+srv://a:b@c/") == "mongodb+srv://a:***@c/"


@pytest.mark.parametrize(
    "text, match",
    [
        ("{bad", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"$where": "this.a > 1"}', r"\$where is not allowed"),
        ('{"a": {"$function": {}}}', r"\$function"),
        ('{"$or": [{"x": 1}, {"$accumulator": 1}]}', r"\$accumulator"),
    ],
)
def test_parse_filter_rejects(text, match):
    with pytest.raises(XanesdbUserError, match=match):
        parse_filter(text)


def test_parse_filter_ok():
    assert parse_filter('{"element": "Fe", "lce_class": {"$in": ["T4"]}}')["element"] == "Fe"


@pytest.mark.integration
def test_local_server_lifecycle(tmp_path):
    server = LocalServer(tmp_path / "home")
    assert server.status()[0] == "stopped"
    info = server.ensure_running()
    try:
        # reused, not restarted
        assert server.ensure_running().pid == info.pid
        client = pymongo.MongoClient(info.uri(), serverSelectionTimeoutMS=5000)
        client.x.y.insert_one({"a": 1})
        # the server died (SIGKILL): detected as stale and restarted on the same data
        os.kill(info.pid, signal.SIGKILL)
        time.sleep(0.3)
        assert server.status()[0] == "stale"
        info2 = server.ensure_running()
        assert info2.pid != info.pid
        client = pymongo.MongoClient(info2.uri(), serverSelectionTimeoutMS=5000)
        assert client.x.y.count_documents({}) == 1
        # a garbage record file counts as no server
        server.stop()
        server.info_file.write_text("not json")
        assert server.status()[0] == "stopped"
    finally:
        server.stop()


@pytest.mark.integration
def test_fixed_port_in_use_is_reported(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        server = LocalServer(tmp_path / "home", port=port)
        with pytest.raises(DatabaseUnavailableError, match="already in use"):
            server.ensure_running()


@pytest.mark.integration
def test_store_upsert_idempotent(db_settings):
    from pymatgen.core import Lattice, Structure

    from xanesdb.schemas import Provenance, StructureDoc

    s = Structure(Lattice.cubic(4.2), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    docs = [StructureDoc.from_structure(s, f"m{i}", "files", Provenance(origin="file")).to_mongo()
            for i in range(50)]
    with get_store("structures", db_settings) as store:
        store.update(docs)
        store.update(docs)
        assert store.count() == 50
    db = get_database(db_settings)
    names = {ix["name"] for ix in db.structures.list_indexes()}
    assert "material_id_unique" in names
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        db.structures.insert_one(dict(docs[1]))


@pytest.mark.integration
def test_cli_db_uri_is_usable_by_pymongo(tmp_path):
    env = {**os.environ, "XANESDB_HOME": str(tmp_path / "h")}
    exe = [sys.executable, "-m", "xanesdb.cli"]
    try:
        # the local server requires authentication: the URI carries xanesdb's administrator (shown on request)
        out = subprocess.run(exe + ["db", "uri", "--show-password"], env=env, capture_output=True, text=True, check=True)
        uri = out.stdout.strip()
        assert uri.startswith("mongodb://xanesdb_root:") and "@127.0.0.1:" in uri
        # a second command reuses the same server
        out2 = subprocess.run(exe + ["db", "uri", "--show-password"], env=env, capture_output=True, text=True, check=True)
        assert out2.stdout.strip() == uri
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        assert client.admin.command("ping")["ok"] == 1
    finally:
        subprocess.run(exe + ["db", "stop"], env=env, capture_output=True)


def test_cli_unreachable_uri_exit_2(tmp_path):
    env = {**os.environ, "XANESDB_HOME": str(tmp_path / "h"),
           "XANESDB_DB_URI": f"mongodb://127.0.0.1:{find_free_port()}/", "XANESDB_DB_TIMEOUT_S": "0.5"}
    out = subprocess.run([sys.executable, "-m", "xanesdb.cli", "db", "stats"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: cannot reach MongoDB")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


@pytest.mark.integration
def test_jobflow_flow_runs_into_local_server(db_settings):
    """A jobflow flow stores its outputs (and GridFS data) in the local server."""
    from jobflow import Flow, job, run_locally

    from xanesdb.platform.stores import job_store

    @job(data="big")
    def make(n):
        return {"n": n, "big": list(range(n))}

    @job
    def add(a, b):
        return a["n"] + b["n"]

    j1, j2 = make(3), make(4)
    j3 = add(j1.output, j2.output)
    store = job_store(db_settings)
    responses = run_locally(Flow([j1, j2, j3]), store=store, ensure_success=True)
    assert responses[j3.uuid][1].output == 7
    store.connect()
    assert store.count({"uuid": j3.uuid}) == 1
    assert store.get_output(j1.uuid, load=True)["big"] == [0, 1, 2]


@pytest.mark.integration
def test_two_processes_share_local_server(tmp_path):
    """A writer process and `xanesdb db query` in another process use the same server."""
    env = {**os.environ, "XANESDB_HOME": str(tmp_path / "h")}
    exe = [sys.executable, "-m", "xanesdb.cli"]
    writer = (
        "import sys\n"
        "from xanesdb.platform.stores import get_store\n"
        "from xanesdb.schemas import SiteDoc\n"
        "with get_store('sites') as s:\n"
        "    for i in range(200):\n"
        "        s.update([SiteDoc(site_id=f'x:Fe:{i}', material_id='x', source='files', formula='FeO',\n"
        "                          element='Fe', site_index=i, equivalent_indices=[i], multiplicity=1,\n"
        "                          lce_class='O6').to_mongo()])\n"
    )
    try:
        p = subprocess.Popen([sys.executable, "-c", writer], env=env)
        q = subprocess.run(exe + ["db", "query", '{"element": "Fe"}', "--format", "jsonl", "--limit", "0"],
                           env=env, capture_output=True, text=True)
        assert p.wait(timeout=120) == 0
        assert q.returncode == 0, q.stderr
        q2 = subprocess.run(exe + ["db", "query", '{"element": "Fe"}', "--format", "jsonl", "--limit", "0"],
                            env=env, capture_output=True, text=True, check=True)
        assert len(q2.stdout.strip().splitlines()) == 200
        uri = subprocess.run(exe + ["db", "uri", "--show-password"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
        assert pymongo.MongoClient(uri).xanesdb.sites.count_documents({}) == 200
    finally:
        subprocess.run(exe + ["db", "stop"], env=env, capture_output=True)


@pytest.mark.integration
def test_snapshot_dump_and_load_roundtrip(db_settings, tmp_path, monkeypatch):
    from pymatgen.core import Lattice, Structure

    from xanesdb.platform.snapshot import dump_collections, load_snapshot
    from xanesdb.schemas import Provenance, StructureDoc

    s = Structure(Lattice.cubic(4.2), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    db = get_database(db_settings)
    for i in range(5):
        db.structures.insert_one(StructureDoc.from_structure(s, f"t:{i}", "files", Provenance(origin="file")).to_mongo())
    counts = dump_collections(db_settings, tmp_path / "snap", ["structures"])
    assert counts == {"structures": 5}
    first = (tmp_path / "snap" / "structures.jsonl.gz").read_bytes()
    dump_collections(db_settings, tmp_path / "snap", ["structures"])
    assert (tmp_path / "snap" / "structures.jsonl.gz").read_bytes() == first  # deterministic
    monkeypatch.setenv("XANESDB_DB_NAME", db_settings.DB_NAME + "_b")
    other = get_settings()
    try:
        assert load_snapshot(other, tmp_path / "snap") == {"structures": 5}
        assert load_snapshot(other, tmp_path / "snap") == {"structures": 5}
        assert get_database(other).structures.count_documents({}) == 5
        # a load that found the collection empty but meets keys written meanwhile (another loader):
        # the inserts that collide are written again as upserts, nothing fails or doubles
        odb = get_database(other)
        odb.structures.delete_many({"material_id": {"$in": ["t:0", "t:1", "t:2"]}})
        odb.structures.update_one({"material_id": "t:3"}, {"$set": {"formula": "changed"}})
        import pymongo.collection

        with monkeypatch.context() as m:
            m.setattr(pymongo.collection.Collection, "count_documents", lambda self, *a, **k: 0)
            assert load_snapshot(other, tmp_path / "snap", batch_size=2) == {"structures": 5}
        assert odb.structures.count_documents({}) == 5 and odb.structures.find_one({"material_id": "t:3"})["formula"] == "NiO"
        # a part file (<collection>.<part>.jsonl.gz) beside the main one is loaded after it
        for i in (5, 6):
            db.structures.insert_one(StructureDoc.from_structure(s, f"t:{i}", "files", Provenance(origin="file")).to_mongo())
        dump_collections(db_settings, tmp_path / "part", ["structures"],
                         criteria={"structures": {"material_id": {"$in": ["t:5", "t:6"]}}})  # fmt: skip
        (tmp_path / "part" / "structures.jsonl.gz").rename(tmp_path / "snap" / "structures.extra.jsonl.gz")
        assert load_snapshot(other, tmp_path / "snap") == {"structures": 7}
        assert odb.structures.count_documents({}) == 7
    finally:
        get_client(other).drop_database(other.DB_NAME)


@pytest.mark.integration
def test_damaged_snapshot_writes_nothing(db_settings, tmp_path):
    import gzip

    from xanesdb.platform.snapshot import load_snapshot

    snap = tmp_path / "bad"
    snap.mkdir()
    with gzip.open(snap / "structures.jsonl.gz", "wt") as fh:
        fh.write('{"material_id": "a"}\n')
    with pytest.raises(XanesdbUserError, match="does not match the structures schema"):
        load_snapshot(db_settings, snap)
    assert get_database(db_settings).structures.count_documents({}) == 0


def test_cli_unknown_option_is_one_line_exit_2(tmp_path):
    env = {**os.environ, "XANESDB_HOME": str(tmp_path / "h")}
    r = subprocess.run([sys.executable, "-m", "xanesdb.cli", "spectra", "build", "--no-such-flag"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: No such option: --no-such-flag"
    assert not (tmp_path / "h").exists() or not any((tmp_path / "h").rglob("*.wt"))
