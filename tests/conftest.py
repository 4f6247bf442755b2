"""Shared fixtures.

- Every test runs with ``XANESDB_HOME`` in a temporary folder and no user config file.
- ``local_server``: the real local MongoDB server (SecantusDB) started once per session on a
  free port in a temporary folder, stopped at the end; authentication is on, as for users, and
  the URI carries the administrator credential generated at its first start (never print it
  unredacted). ``XANESDB_TEST_DB_URI`` points the integration tests at another MongoDB instead.
  Never skipped.
- ``db_settings``: settings pointing at a fresh database on that server, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEST_DATA = Path(__file__).resolve().parent / "test_data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XANESDB_HOME", str(tmp_path / "xanesdb-home"))
    monkeypatch.setenv("XANESDB_CONFIG_FILE", str(tmp_path / "no-config.yaml"))
    monkeypatch.delenv("XANESDB_DB_URI", raising=False)
    monkeypatch.delenv("XANESDB_DB_NAME", raising=False)


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    """URI of a real MongoDB server: the local SecantusDB, started for this session (logged in as its administrator)."""
    uri = os.environ.get("XANESDB_TEST_DB_URI")
    if uri:
        yield uri
        return
    from xanesdb.platform.server import LocalServer, find_free_port

    home = tmp_path_factory.mktemp("server-home")
    server = LocalServer(home, port=find_free_port())
    info = server.ensure_running()
    yield info.uri()
    server.stop()


@pytest.fixture
def db_settings(local_server, monkeypatch):
    """Settings for a fresh database on the real server.

    On a server given by XANESDB_TEST_DB_URI the database is dropped afterwards. The session's own
    local server is thrown away with its home at the end, and each test has its own database name,
    so there it is left in place: dropping the cookbook test's database took SecantusDB 215 s with all
    the bundled FEFF10 tasks loaded (`pytest --durations`), most of that test's time.
    """
    import pymongo

    from xanesdb.platform.settings import get_settings

    name = f"test_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("XANESDB_DB_URI", local_server)
    monkeypatch.setenv("XANESDB_DB_NAME", name)
    yield get_settings()
    if not os.environ.get("XANESDB_TEST_DB_URI"):
        return
    client = pymongo.MongoClient(local_server)
    client.drop_database(name)
    client.close()


@pytest.fixture
def memory_jobstore():
    """A jobflow JobStore in memory (mongomock), for unit tests of jobs."""
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    store.connect()
    return store


@pytest.fixture
def shared_data() -> Path:
    """The real data beside the checkout (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need ../shared/data beside the checkout")
    return SHARED_DATA


@pytest.fixture
def refused(db_settings, capsys):
    """Run the CLI in-process on bad input and check the refusal; returns the one error line.

    Asserts exit code 2, exactly one line on stderr that starts with ``error: ``, nothing on
    stdout, and the database unchanged: the same collections with the same document counts.
    """
    from xanesdb.cli import main

    def counts() -> dict[str, int]:
        import pymongo

        client = pymongo.MongoClient(db_settings.DB_URI.get_secret_value())
        try:
            db = client[db_settings.DB_NAME]
            return {c: db[c].count_documents({}) for c in sorted(db.list_collection_names())}
        finally:
            client.close()

    def run(args: list[str]) -> str:
        before = counts()
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert exit_.value.code == 2, (args, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err[-2000:])
        assert out.strip() == "", (args, out[-2000:])
        assert counts() == before, args
        return lines[0]

    run.counts = counts
    return run


@pytest.fixture
def cli_here(capsys):
    """Run ``xanesdb ARGS`` in this process; returns a ``subprocess.CompletedProcess`` (code, stdout, stderr).

    For commands whose output and exit code are all a test reads, where a fresh interpreter only
    adds its start-up (a second or more each); tests keep a real subprocess for the first call of a
    command whose command line itself is under test.
    """
    import subprocess

    from xanesdb.cli import main

    def run(args: list, env: dict | None = None) -> subprocess.CompletedProcess:
        """``env``: variables set (on top of the test's environment) while the command runs."""
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            for key, value in (env or {}).items():
                mp.setenv(key, value)
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run
