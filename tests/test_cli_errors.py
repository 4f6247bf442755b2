"""One error path for the whole command line (issue 17): every bad input ends in one line.

Each row of :data:`BAD_CLI_INPUTS` runs the real CLI in-process against the real local server
with a little data in it; the ``refused`` fixture (tests/conftest.py) asserts exit code 2, a
single ``error: ...`` line, nothing on stdout, and the same collections with the same counts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pymongo
import pytest

pytestmark = pytest.mark.integration

DEEP_QUERY = "[" * 5000 + "]" * 5000  # a JSON array nested 5,000 deep
DEEP_OBJECT = '{"a": ' * 100 + "1" + "}" * 100
SLOW_REGEX = {"material_id": {"$regex": "^(a+)+$"}}

#: (arguments, words of the expected error line); "{tmp}" is the test's temporary folder,
#: "{fifo}" a FIFO in it
BAD_CLI_INPUTS = [
    (["db", "query", '{"formula": {"$foo": 1}}', "-c", "structures"], "refused"),
    (["db", "query", '{"$and": 5}', "-c", "structures"], "refused"),
    (["db", "query", DEEP_QUERY], "nested more than 32 levels"),
    (["db", "query", DEEP_OBJECT], "nested more than 32 levels"),
    (["db", "query", json.dumps(SLOW_REGEX)], "nested quantifiers"),
    (["db", "query", '{"formula": {"$regex": "("}}'], "not a valid regular expression"),
    (["db", "query", '{"formula": {"$regex": "' + "a" * 201 + '"}}'], "longer than 200 characters"),
    (["db", "query", '{"$expr": {"$regexMatch": {"input": "$formula", "regex": "(a|aa)*$"}}}'],
     "alternation inside a repeated group"),
    (["db", "query", '{"formula": {"$regex": ".*.*.*.*x"}}'], "more than 3 unbounded"),
    (["db", "query", '{"$expr": {"$lookup": {"from": "jobs"}}}'], "reads other collections"),
    (["db", "query", '{"$unionWith": "launches"}'], "reads other collections"),
    (["db", "query", "{}", "--limit", "-5"], "--limit must be 0 (all) or more, got -5"),
    (["export", "--out", "{tmp}/x.json", "-f", "json", "-c", "structures", "--limit", "-1"], "--limit must be 0"),
    (["export", "--out", "{tmp}/x.json", "-f", "json", "-c", "structures", "-q", '{"a": {"$foo": 1}}'],
     "refused"),
    (["export", "--out", "{tmp}/x.json", "-f", "json", "-q", DEEP_QUERY], "nested more than"),
    (["export", "--out", "{fifo}", "-f", "json", "-c", "structures"], "is a FIFO"),
    (["db", "dump", "{tmp}/dump", "-c", "structures", "--query", '{"a": {"$foo": 1}}'],
     "refused"),
    (["models", "list", "--query", '{"$foo": 1}'], "refused"),
    (["models", "report", "--out", "{tmp}/rep", "--query", '{"run_id": {"$foo": 1}}'],
     "refused"),
    (["models", "show", ""], "give a model id"),
    (["models", "show", "   "], "give a model id"),
    (["models", "show", "m" * 1001], "at most 200 characters"),
    (["models", "score", "-m", "x", "-q", "{}", "--png", "{fifo}"], "is a FIFO"),
    (["train", "--query", "{}", "--label", "$where"], "is not a field name"),
    (["train", "--query", '{"element": {"$foo": 1}}', "--epochs", "1"], "refused"),
    (["train", "--query", "{}", "--recipe", "paper"], "unknown --recipe 'paper'; use measured"),
    (["train", "--query", "{}", "--recipe", "measured", "--task", "regression", "--label", "csm"],
     "leave out --task, --from and --pretrain"),
    (["feff", "export-inputs", "{tmp}/batch", "--class", "Q9"], "unknown --class 'Q9'"),
    (["populate", "config", "{tmp}/afile"], "is a file, not a folder"),
    (["populate", "config", "{tmp}/pc", "--slurm-cores", "4", "--walltime", "banana"], "--walltime 'banana'"),
    (["populate", "worker", "--dir", "{tmp}/afile"], "is a file; give a folder"),
    (["feff", "status", "--top", "-1"], "--top must be 0 or more"),
    (["sites", "descriptors", "-e", "Xx"], "'Xx' is not an element symbol"),
    (["demo", "--epochs", "0"], "--epochs must be at least 1"),
    (["export", "--out", "{tmp}/x.json", "-f", "json", "--fields", "nosuchfield"], "'nosuchfield' is not a field of spectra"),
    (["db", "query", "{}", "-c", "structures", "--fields", "formula,frmula"], "'frmula' is not a field of structures"),
    (["predict", "{tmp}/afile", "--align", "sideways"], "unknown --align 'sideways'"),
]


@pytest.fixture
def some_data(db_settings):
    """Two structures and a site in the test database, so the server has something to refuse on."""
    from xanesdb.platform.bundled import iter_bundled_structures
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    for d in iter_bundled_structures(elements=["Ti"], limit=2):
        db["structures"].insert_one(d.to_mongo())
    return db


@pytest.mark.parametrize(("args", "words"), BAD_CLI_INPUTS, ids=range(len(BAD_CLI_INPUTS)))
def test_bad_cli_input_is_one_line_and_writes_nothing(some_data, refused, tmp_path, args, words):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "afile").write_text("a file, not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    line = refused([a.replace("{tmp}", str(tmp_path)).replace("{fifo}", str(fifo)) for a in args])
    assert words in line, line
    # nothing written beside: no output, no temporary file, no dump folder; the FIFO is a FIFO
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert fifo.is_fifo()


def test_stored_markup_and_escape_sequences_print_as_text(some_data, capsys):
    """A material id with Rich markup and a terminal escape: the table shows them, inert."""
    from xanesdb.cli import main

    doc = some_data["structures"].find_one({}, {"_id": 0})
    for mid in ("file:[/x]", "file:[bold red]boom", "file:\x1b]0;pwned\x07\x1b[31mred"):
        some_data["structures"].insert_one(dict(doc, material_id=mid))
    main(["db", "query", "{}", "-c", "structures", "--fields", "material_id,formula", "--limit", "0"])
    out = capsys.readouterr().out
    assert "file:[/x]" in out and "file:[bold red]boom" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;pwned" in out  # shown as a visible escape


def test_a_table_written_to_a_file_or_pipe_is_not_folded_to_80_columns(monkeypatch):
    """Redirected (``xanesdb predict *.prj > answers.txt``), a ten-column table keeps each cell on
    one line; Rich's 80 columns folded them into strips of five characters. COLUMNS still rules."""
    import io

    from rich.table import Table

    from xanesdb.commands._console import SafeConsole

    def table_lines(**kwargs) -> list[str]:
        buf = io.StringIO()
        t = Table()
        for c in ("#", "spectrum", "abs.", "answer", "O6", "S5", "T4", "other", "nearest refs", "outlier", "E half"):
            t.add_column(c, overflow="fold")
        t.add_row("1", "Fe-K-ALS-10.3.2.prj:Olivine (Fo40)", "Fe", "unsure", "0.99", "0.01", "0.00", "", "O6 7", "0.51", "7119.2")
        SafeConsole(file=buf, **kwargs).print(t)
        return buf.getvalue().splitlines()

    monkeypatch.delenv("COLUMNS", raising=False)
    lines = table_lines()
    assert any("Fe-K-ALS-10.3.2.prj:Olivine (Fo40)" in ln and "unsure" in ln and "7119.2" in ln for ln in lines)
    assert len(lines) == 5  # top rule, header, rule, the row, bottom rule
    monkeypatch.setenv("COLUMNS", "60")
    assert max(len(ln) for ln in table_lines()) <= 60


def test_export_limit_zero_means_all_and_dump_is_all_or_nothing(some_data, db_settings, tmp_path, capsys):
    from xanesdb.cli import main

    main(["export", "--out", str(tmp_path / "s.json"), "-f", "json", "-c", "structures", "--limit", "0"])
    assert len(json.loads((tmp_path / "s.json").read_text())) == 2
    main(["db", "dump", str(tmp_path / "dump"), "-c", "structures", "-c", "sites"])
    assert sorted(p.name for p in (tmp_path / "dump").iterdir()) == ["sites.jsonl.gz", "structures.jsonl.gz"]


def test_read_only_commands_create_nothing(db_settings, tmp_path, capsys):
    """db query / stats / export on an empty database leave it without collections."""
    from xanesdb.cli import main

    main(["db", "query", "{}"])
    main(["db", "stats"])
    main(["export", "--out", str(tmp_path / "e.json"), "-f", "json"])
    client = pymongo.MongoClient(db_settings.DB_URI.get_secret_value())
    assert client[db_settings.DB_NAME].list_collection_names() == []
    client.close()


def test_roles_apply_on_unreachable_database_writes_no_credentials(tmp_path, monkeypatch, capsys):
    from xanesdb.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("XANESDB_HOME", str(home))
    monkeypatch.setenv("XANESDB_DB_URI", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")
    monkeypatch.setenv("XANESDB_DB_TIMEOUT_S", "0.5")
    with pytest.raises(SystemExit) as exit_:
        main(["db", "roles", "--apply"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: cannot reach MongoDB")
    assert not (home / "credentials.yaml").exists()


def test_pathological_regex_stalls_the_server_but_the_cli_refuses_it(some_data, db_settings, refused):
    """What the check prevents, measured on the local server: the same filter sent by pymongo.

    With ``maxTimeMS=1000`` the server still spends longer than a second on one document, and a
    ping from another client waits for it (SecantusDB answers one request at a time here).
    """
    import threading

    some_data["structures"].insert_one(dict(some_data["structures"].find_one({}, {"_id": 0}),
                                            material_id="a" * 25 + "!"))
    uri = db_settings.DB_URI.get_secret_value()
    slow = pymongo.MongoClient(uri)
    other = pymongo.MongoClient(uri)
    other.admin.command("ping")
    waited: list[float] = []

    def ping_later() -> None:
        time.sleep(0.3)
        t = time.perf_counter()
        other.admin.command("ping")
        waited.append(time.perf_counter() - t)

    thread = threading.Thread(target=ping_later)
    t0 = time.perf_counter()
    thread.start()
    try:
        list(slow[db_settings.DB_NAME]["structures"].find(SLOW_REGEX).max_time_ms(1000))
    except pymongo.errors.ExecutionTimeout:
        pass
    took = time.perf_counter() - t0
    thread.join()
    slow.close()
    other.close()
    print(f"regex query {took:.2f} s; another client's ping waited {waited[0]:.2f} s")
    assert took > 0.5  # the stall is real (3.8 s for 26 'a' in the probe)
    line = refused(["db", "query", json.dumps(SLOW_REGEX), "-c", "structures"])
    assert "nested quantifiers" in line


# ----------------------------------------------------------------------------- secrets in URIs
SECRET = "hunter2@tail"
#: URIs whose secret parts must never be printed: (URI, what the masked form keeps)
SECRET_URIS = [
    (f"mongodb://alice:{SECRET}@127.0.0.1:1/db", "mongodb://alice:***@127.0.0.1:1/db"),
    (f"mongodb://alice:p@ss?{SECRET}@127.0.0.1:1/", "mongodb://alice:***@127.0.0.1:1/"),
    (f"mongodb://127.0.0.1:1/?tls=true&tlsCertificateKeyFilePassword={SECRET}&authSource=admin",
     "tlsCertificateKeyFilePassword=***&authSource=admin"),
    (f"mongodb://u@127.0.0.1:1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}",
     "authMechanismProperties=***"),
    (f"mongodb://127.0.0.1:1/?sslPEMKeyPassword={SECRET}", "sslPEMKeyPassword=***"),
]


@pytest.mark.parametrize(("uri", "masked"), SECRET_URIS)
def test_redact_uri_masks_every_secret(uri, masked):
    from xanesdb.platform.stores import redact_uri

    out = redact_uri(uri)
    assert masked in out and "hunter2" not in out and "tail" not in out, out


@pytest.mark.parametrize(("uri", "masked"), SECRET_URIS[:3])
def test_secrets_never_printed_by_status_uri_or_errors(uri, masked, monkeypatch, capsys):
    from xanesdb.cli import main

    monkeypatch.setenv("XANESDB_DB_URI", uri)
    monkeypatch.setenv("XANESDB_DB_TIMEOUT_S", "0.3")
    main(["db", "status"])
    main(["db", "uri"])
    out = capsys.readouterr().out
    assert out.count(masked) == 2 and "hunter2" not in out, out
    with pytest.raises(SystemExit) as exit_:  # unreachable: one line, masked
        main(["db", "stats"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "hunter2" not in err, err
    main(["db", "uri", "--show-password"])  # asked for: in clear, on stdout only
    assert SECRET in capsys.readouterr().out


def test_missing_tls_key_file_is_one_line(tmp_path, monkeypatch, capsys):
    from xanesdb.cli import main

    key = tmp_path / "missing.pem"
    monkeypatch.setenv("XANESDB_DB_URI", f"mongodb://127.0.0.1:1/?tls=true&tlsCertificateKeyFile={key}"
                                         f"&tlsCertificateKeyFilePassword={SECRET}")
    with pytest.raises(SystemExit) as exit_:
        main(["db", "stats"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot read {key} named in the database URI" in err and "hunter2" not in err


# ----------------------------------------------------------------------------- the local server's files
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_serve_requires_authentication_unless_insecure(host, tmp_path, monkeypatch, capsys):
    """`db serve` on any address runs with authentication (no flag needed, --auth is the default):
    it gets as far as the port; --insecure says loudly that it turns authentication off; both flags
    together are refused. The port is taken, so nothing starts."""
    import socket

    from xanesdb.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("XANESDB_HOME", str(home))
    with socket.socket() as taken:
        taken.bind((host, 0))
        taken.listen(16)  # each port check leaves a connection waiting: room for all of them
        port = taken.getsockname()[1]
        for extra, warned in (([], False), (["--auth"], False), (["--insecure"], True)):
            with pytest.raises(SystemExit) as exit_:
                main(["db", "serve", "--host", host, "--port", str(port), *extra])
            err = capsys.readouterr().err.strip().splitlines()
            assert exit_.value.code == 2 and err[-1].startswith(f"error: port {port} on {host} is already in use"), err
            assert any("WITHOUT authentication (--insecure)" in ln for ln in err) == warned, err
        with pytest.raises(SystemExit) as exit_:
            main(["db", "serve", "--host", host, "--port", str(port), "--auth", "--insecure"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and "contradict" in err[0], err
    assert not (home / "db" / "data").exists() or not any((home / "db" / "data").iterdir())  # nothing started


def test_local_server_files_are_private(tmp_path):
    """Folders 0700 and files 0600, the data and a home made open before (0755/0644) included."""
    import stat

    from xanesdb.platform.server import LocalServer, find_free_port

    home = tmp_path / "home"
    (home / "db" / "data").mkdir(parents=True, mode=0o755)
    os.chmod(home / "db", 0o755)
    (home / "db" / "data" / "old.wt").write_text("from before")
    os.chmod(home / "db" / "data" / "old.wt", 0o644)
    server = LocalServer(home, port=find_free_port())
    info = server.ensure_running()
    try:
        client = pymongo.MongoClient(info.uri())
        client.xanesdb.structures.insert_one({"material_id": "x"})
        client.close()
        modes = {p.relative_to(home): stat.S_IMODE(p.stat().st_mode) for p in (home / "db").rglob("*")}
        modes[Path("db")] = stat.S_IMODE((home / "db").stat().st_mode)
        assert len(modes) > 3 and Path("db/admin_credential.json") in modes
        open_ = {str(p): oct(m) for p, m in modes.items() if m & 0o077}
        assert open_ == {}
    finally:
        server.stop()


def test_tensorflow_startup_chatter_is_dropped_other_stderr_kept(tmp_path):
    """The CLI's first ``import tensorflow`` leaves no absl/oneDNN start-up lines on stderr; other
    lines written to file descriptor 2 meanwhile still reach it."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "from xanesdb.commands._quiet import filtered_stderr, quiet_tensorflow_import\n"
            "quiet_tensorflow_import()\n"
            "import tensorflow\n"
            "with filtered_stderr():\n"
            "    os.write(2, b'I0000 oneDNN custom operations are on\\nkept line\\n')\n"
            "print('imported', 'tensorflow' in sys.modules)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "imported True"
    assert "oneDNN" not in out.stderr and "absl::InitializeLog" not in out.stderr, out.stderr
    assert "kept line" in out.stderr


def test_damaged_snapshot_and_batch_files_are_one_line_and_load_nothing(some_data, refused, tmp_path):
    import gzip

    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "sites.jsonl.gz").write_bytes(b"no gzip here")
    assert "sites.jsonl.gz: not a complete gzip file" in refused(["db", "load", dump])
    whole = gzip.compress(b"".join(b'{"site_id": "s%d"}\n' % i for i in range(5000)))
    (dump / "sites.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # cut short, as by a full disk
    assert "nothing was loaded" in refused(["db", "load", dump])
    site = tmp_path / "batch" / "mp-1_Cu_0_K_x"
    site.mkdir(parents=True)
    (site / "feff.inp").write_text("TITLE x\n")
    (site / "task.json").write_text("{not json")
    line = refused(["feff", "import-batch", site.parent])
    assert "task.json: not readable JSON" in line and "export-inputs" in line
    (site / "task.json").write_text('{"task_id": "t"}')
    (site.parent / "manifest.json").write_text("[1, 2")
    assert "manifest.json: not readable JSON" in refused(["feff", "run-batch", site.parent])
    assert "--timeout must be positive" in refused(["feff", "run-batch", site.parent, "--timeout", "-1"])
    assert not (site / "result.json").exists()
