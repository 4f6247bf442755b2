"""Access, for real: the local server requires SCRAM-SHA-256 logins from its first start (an
administrator credential generated into a 0600 file, used by xanesdb transparently), so another
local user (`nobody`) is refused; open homes made before are migrated on first use; `db users` and
`db roles --check` flag users xanesdb did not create; roles and users for other groups
(`db roles --apply`, `db serve`), the read-only user refused on write, authSource and TLS URI
options honoured, credentials only from the environment or a 0600 file, never logged or stored."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest
from pymongo.errors import OperationFailure

from xanesdb.platform.access import PUBLIC_COLLECTIONS, read_credentials, user_uri
from xanesdb.platform.server import LocalServer, _ping, admin_credential_file, find_free_port

pytestmark = pytest.mark.integration
READER_PW = "reader-Pw-7f3a9c1e"


def _cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "xanesdb.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _cli_here(args, env):
    """``xanesdb ARGS`` run in this process, as ``_cli`` runs it in a fresh one (about a second less each).

    The environment is exactly ``env`` while it runs; stdout and stderr are captured as a pipe would
    be, and log records reach stderr in the CLI's own format (what ``logging.basicConfig`` in
    :func:`xanesdb.cli.main` gives a fresh process). Returns a ``CompletedProcess``. Used where the
    command starts no server that another process has to stop (a server started here is this
    process's child, reaped by ``LocalServer`` here, but a zombie for any other process).
    """
    import contextlib
    import io
    import logging

    from xanesdb.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    with pytest.MonkeyPatch.context() as mp:
        for key in set(os.environ) - set(env):
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main([str(a) for a in args])
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _start_open_server_elsewhere(home: Path):
    """Start ``LocalServer(home, auth=False)`` from a short-lived separate process, as an older
    xanesdb did: the server is not this process's child, so a command that stops it sees it exit
    (a child of pytest would stay a zombie, which ``LocalServer._kill`` waits out for 10 s)."""
    code = ("import sys; from pathlib import Path; from xanesdb.platform.server import LocalServer\n"
            "LocalServer(Path(sys.argv[1]), auth=False).ensure_running()\n")
    r = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return LocalServer(home, auth=False).read_info()


def test_roles_plan_printed_without_a_database(tmp_path):
    r = _cli(["db", "roles"], {**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    for word in ("xanesdb_reader", "xanesdb_read", "xanesdb_writer", "xanesdb_admin", "dbOwner",
                 "read-only", "XANESDB_READER_PASSWORD", "dry run"):
        assert word in r.stdout, word
    assert not (Path(os.environ["XANESDB_HOME"]) / "db").exists()  # nothing started


def test_serve_auth_reader_refused_on_write(tmp_path):
    home = tmp_path / "home"
    port = find_free_port()
    log_file = tmp_path / "cli.log"
    env = {**os.environ, "XANESDB_HOME": str(home), "XANESDB_DB_PORT": str(port), "COLUMNS": "200",
           "XANESDB_READER_PASSWORD": READER_PW}
    env.pop("XANESDB_DB_URI", None)
    outputs = []
    # --auth and --insecure together: one line, exit 2, nothing started
    r = _cli_here(["db", "serve", "--auth", "--insecure", "--port", str(port)], env)
    assert r.returncode == 2 and r.stderr.startswith("error: --auth and --insecure contradict"), r.stderr
    assert not (home / "db").exists()
    # provision through the local server, which already requires authentication (xanesdb logs in
    # as its administrator): roles, users, validators
    r = _cli(["db", "roles", "--apply"], env)
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr
    assert "user xanesdb_reader: created" in r.stdout and "generated passwords for xanesdb_writer, xanesdb_admin" in r.stdout
    assert LocalServer(home).read_info().auth
    cred = home / "credentials.yaml"
    assert oct(cred.stat().st_mode & 0o777) == "0o600"
    pw = read_credentials(cred)
    assert set(pw) == {"xanesdb_writer", "xanesdb_admin"}  # the reader's came from the environment
    # a second --apply keeps the generated passwords (no rotation) and updates in place (in-process:
    # the server the first one started runs on)
    r = _cli_here(["db", "roles", "--apply"], env)
    outputs.append(r.stdout + r.stderr)
    assert "user xanesdb_writer: updated" in r.stdout and read_credentials(cred) == pw
    # every user is xanesdb's: the administrator and the three of the plan
    r = _cli_here(["db", "roles", "--check"], env)
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0 and r.stdout.count(" yes ") == 4 and " NO " not in r.stdout, r.stdout + r.stderr
    # serve in the foreground for other groups (it replaces the background server; `--auth` is the default)
    server = subprocess.Popen([sys.executable, "-m", "xanesdb.cli", "db", "serve", "--auth", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        local = LocalServer(home)
        while time.time() < deadline and not (
            (info := local.read_info()) and info.foreground and info.auth and _ping("127.0.0.1", port, 0.3)
        ):
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.2)
        base = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        anon = pymongo.MongoClient(base, serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure) as e:
            anon.xanesdb.spectra.find_one()
        assert e.value.code == 13  # Unauthorized
        writer_uri = user_uri(base, "xanesdb_writer", "xanesdb", pw["xanesdb_writer"])
        reader_uri = user_uri(base, "xanesdb_reader", "xanesdb", READER_PW)
        # the writer populates through xanesdb (validated documents), the URI from the environment
        wenv = {**env, "XANESDB_DB_URI": writer_uri, "XANESDB_DB_TIMEOUT_S": "5"}
        code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
                "from xanesdb.platform.snapshot import load_snapshot, BUNDLED_DB_DIR\n"
                "import shutil, tempfile, gzip, pathlib\n"
                "d = pathlib.Path(tempfile.mkdtemp())\n"
                "src = gzip.open(BUNDLED_DB_DIR / 'structures.jsonl.gz', 'rt').readlines()[:20]\n"
                "gzip.open(d / 'structures.jsonl.gz', 'wt').writelines(src)\n"
                "print(load_snapshot(None, d))\n")
        w = subprocess.run([sys.executable, "-c", code], env=wenv, capture_output=True, text=True, timeout=120)
        outputs.append(w.stdout + w.stderr)
        assert w.returncode == 0, w.stderr[-2000:]
        assert "'structures': 20" in w.stdout
        # the read-only user queries ...
        renv = {**env, "XANESDB_DB_URI": reader_uri}
        q = _cli_here(["db", "query", "{}", "--collection", "structures", "--format", "jsonl", "--limit", "0"], renv)
        outputs.append(q.stdout + q.stderr)
        assert q.returncode == 0, q.stderr
        assert len(q.stdout.strip().splitlines()) == 20
        assert "WARNING" not in q.stderr  # no index/validator warnings for a user who may not create them
        # a write verb run as the reader: one line, exit 2, nothing written
        from pymatgen.core import Lattice, Structure

        Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(tmp_path / "MgO.json"))
        w = _cli_here(["structures", "fetch", "--source", "files", str(tmp_path / "MgO.json")], renv)
        outputs.append(w.stdout + w.stderr)
        assert w.returncode == 2 and len(w.stderr.strip().splitlines()) == 1, w.stderr[-2000:]
        assert w.stderr.startswith("error: the database refused this for the current user"), w.stderr
        reader = pymongo.MongoClient(reader_uri, serverSelectionTimeoutMS=5000)
        assert reader.xanesdb.structures.count_documents({"elements": "O"}) > 0
        assert list(reader.xanesdb.structures.aggregate([{"$count": "n"}])) == [{"n": 20}]
        # ... and cannot write, for real
        doc = reader.xanesdb.structures.find_one({}, {"_id": 0})
        for attempt in (lambda: reader.xanesdb.structures.insert_one(dict(doc, material_id="new")),
                        lambda: reader.xanesdb.structures.update_one({}, {"$set": {"tags": ["x"]}}),
                        lambda: reader.xanesdb.structures.delete_many({}),
                        lambda: reader.xanesdb.command("createUser", "evil", pwd="x", roles=[]),
                        lambda: reader.xanesdb.structures.drop_indexes()):
            with pytest.raises(OperationFailure) as e:
                attempt()
            assert e.value.code == 13
        assert reader.xanesdb.structures.count_documents({}) == 20
        # the writer cannot manage users; the admin can
        writer = pymongo.MongoClient(writer_uri, serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure):
            writer.xanesdb.command("createUser", "evil", pwd="x", roles=[])
        # a FireWorks worker with the writer's credentials can check out work from the LaunchPad
        from fireworks import Firework, LaunchPad, ScriptTask

        lp = LaunchPad(uri_mode=True, host=writer_uri, name="xanesdb")
        lp.fw_id_assigner.insert_one({"next_fw_id": 1, "next_launch_id": 1})
        lp.add_wf(Firework(ScriptTask.from_str("true"), name="probe"))
        fw, launch_id = lp.checkout_fw(__import__("fireworks").FWorker(name="w"), launch_dir=str(tmp_path))
        assert fw is not None and fw.name == "probe" and launch_id is not None
        with pytest.raises(OperationFailure):  # the reader cannot queue work
            reader.xanesdb.fireworks.insert_one({"fw_id": 99})
        # what README says: SecantusDB does not scope roles to collections, so the reader reads the
        # FireWorks collections too (directly and through $lookup), though the role names only the
        # public ones; xanesdb's own query checks refuse $lookup
        assert reader.xanesdb.fireworks.count_documents({"name": "probe"}) == 1
        assert reader.xanesdb.launches.count_documents({}) == 1
        joined = list(reader.xanesdb.structures.aggregate([
            {"$limit": 1}, {"$lookup": {"from": "fireworks", "pipeline": [], "as": "fw"}}]))
        assert len(joined[0]["fw"]) == 1
        writer.xanesdb.not_in_the_plan.insert_one({"x": 1})  # ... and the writer writes anywhere
        assert writer.xanesdb.not_in_the_plan.count_documents({}) == 1
        admin = pymongo.MongoClient(user_uri(base, "xanesdb_admin", "xanesdb", pw["xanesdb_admin"]))
        assert len(admin.xanesdb.command("usersInfo")["users"]) == 3
        # other xanesdb commands of this home use the foreground server, logged in as the administrator
        st = _cli_here(["db", "status"], env)
        assert st.returncode == 0 and f":{port}/" in st.stdout and "authentication on" in st.stdout, st.stderr
        # the role itself names only the public collections (MongoDB enforces that; SecantusDB not)
        role = admin.xanesdb.command("rolesInfo", "xanesdb_read", showPrivileges=True)["roles"][0]
        assert {p["resource"]["collection"] for p in role["privileges"]} == set(PUBLIC_COLLECTIONS)
        # authSource is honoured: the same user against authSource=admin fails to log in
        wrong = {**env, "XANESDB_DB_URI": user_uri(base, "xanesdb_reader", "admin", READER_PW)}
        bad = _cli_here(["db", "stats"], wrong)
        outputs.append(bad.stdout + bad.stderr)
        assert bad.returncode == 2 and bad.stderr.startswith("error: authentication failed at ")
        assert len(bad.stderr.strip().splitlines()) == 1
        wrong_pw = {**env, "XANESDB_DB_URI": user_uri(base, "xanesdb_reader", "xanesdb", "not-it")}
        assert _cli_here(["db", "stats"], wrong_pw).returncode == 2
        # no password anywhere: command output, DEBUG logs, stored documents, the server's log
        secrets = [READER_PW, *pw.values(), json.loads(admin_credential_file(home).read_text())["password"]]
        stored = "".join(str(d) for c in ("structures", "sites", "feff_tasks", "spectra", "models")
                         for d in admin.xanesdb[c].find())
        server_log = (home / "db" / "server.log").read_text(errors="replace") if (home / "db" / "server.log").exists() else ""
        for text in (*outputs, stored, server_log):
            for s in secrets:
                assert s not in text
        assert "***" in outputs[1]  # the URI shown by --apply is redacted
    finally:
        server.send_signal(signal.SIGTERM)  # stops `db serve` as Ctrl-C does; SIGINT is ignored in pytest-xdist workers
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        LocalServer(home).stop()
    log_file.write_text("\n".join(outputs))


def test_world_readable_credentials_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cred = home / "credentials.yaml"
    cred.write_text("xanesdb_reader: abc\n")
    cred.chmod(0o644)
    env = {**os.environ, "XANESDB_HOME": str(home), "XANESDB_DB_URI": "mongodb://127.0.0.1:1/"}
    r = _cli(["db", "roles", "--apply"], env)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: credentials file {cred} is readable by others (mode 644); run `chmod 600 {cred}`"]
    # a config file holding a URI with a password, readable by others: one line, no password echoed
    cfg = tmp_path / "xanesdb.yaml"
    cfg.write_text("db_uri: mongodb://u:hunter2-secret@127.0.0.1:1/\n")
    cfg.chmod(0o644)
    env = {**os.environ, "XANESDB_HOME": str(home), "XANESDB_CONFIG_FILE": str(cfg)}
    env.pop("XANESDB_DB_URI", None)
    r = _cli(["db", "status"], env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "chmod 600" in r.stderr
    assert "hunter2" not in r.stderr + r.stdout


def test_tls_uri_options_honoured(tmp_path):
    """A TLS-only server: the URI's tls/tlsCAFile reach pymongo untouched; without them, no connection."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    from xanesdb.platform.server import server_command

    port = find_free_port()
    (tmp_path / "empty.toml").touch()
    proc = subprocess.Popen(server_command() + ["--config", str(tmp_path / "empty.toml"), "--port", str(port),
                                                "--storage-path", str(tmp_path / "data"), "--log-level", "WARNING",
                                                "--tls-cert-file", str(cert), "--tls-key-file", str(key)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tls_uri = f"mongodb://127.0.0.1:{port}/?directConnection=true&tls=true&tlsCAFile={cert}"
        env = {**os.environ, "XANESDB_DB_URI": tls_uri, "XANESDB_DB_TIMEOUT_S": "20"}
        r = _cli_here(["db", "stats"], env)
        assert r.returncode == 0, r.stderr
        plain = {**os.environ, "XANESDB_DB_URI": f"mongodb://127.0.0.1:{port}/?directConnection=true",
                 "XANESDB_DB_TIMEOUT_S": "1"}
        r = _cli_here(["db", "stats"], plain)
        assert r.returncode == 2 and "cannot reach MongoDB" in r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ----------------------------------------------------------------------------- authentication by default
NOBODY_PROBE = """
import json, sys
import pymongo
from pymongo.errors import OperationFailure
uri = sys.argv[1]
client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
out = {"ping": client.admin.command("ping")["ok"]}
probes = {
    "find": lambda: client.xanesdb.structures.find_one(),
    "insert": lambda: client.xanesdb.structures.insert_one({"material_id": "planted"}),
    "drop": lambda: client.xanesdb.structures.drop(),
    "createUser": lambda: client.xanesdb.command("createUser", "planted", pwd="x", roles=["dbOwner"]),
    "listDatabases": lambda: client.list_database_names(),
}
for name, probe in probes.items():
    try:
        probe()
        out[name] = "allowed"
    except OperationFailure as err:
        out[name] = err.code
for path in sys.argv[2:]:
    try:
        open(path, "rb").read(1)
        out[path] = "read"
    except OSError as err:
        out[path] = err.errno
print(json.dumps(out))
"""


def _as_nobody() -> list[str] | None:
    """A command prefix that runs as the user `nobody`, or None where no second user is available."""
    import pwd

    if os.geteuid() != 0:
        return None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    return None


def test_default_server_refuses_another_local_user(tmp_path):
    """Another local user (`nobody`) reaches the default server's port but can neither log in nor
    read the data files or the admin credential; xanesdb itself works with no set-up."""
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("needs root (setpriv/runuser) and a second user `nobody` to connect as another user")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="xanesdb-nobody-", dir="/tmp"))
    os.chmod(base, 0o755)  # nobody may walk to the home (pytest's own folders are 0700): its modes decide the rest
    home = base / "home"
    env = {**os.environ, "XANESDB_HOME": str(home)}
    env.pop("XANESDB_DB_URI", None)
    r = _cli(["db", "stats"], env)  # the first command starts the server, authentication on
    try:
        assert r.returncode == 0, r.stderr
        assert "WARNING" not in r.stderr  # a new home is secured silently
        info = LocalServer(home).read_info()
        assert info.auth and info.password
        home.chmod(0o755)
        wt = next((home / "db" / "data").glob("*.wt"))
        probe = subprocess.run([*prefix, sys.executable, "-c", NOBODY_PROBE, info.uri(credentials=False),
                                str(admin_credential_file(home)), str(wt)],
                               capture_output=True, text=True, timeout=120, cwd="/")
        assert probe.returncode == 0, probe.stderr[-2000:]
        seen = json.loads(probe.stdout)
        assert seen.pop("ping") == 1  # the port answers a handshake ...
        import errno

        assert seen == {"find": 13, "insert": 13, "drop": 13, "createUser": 13, "listDatabases": 13,
                        str(admin_credential_file(home)): errno.EACCES, str(wt): errno.EACCES}, seen
        # ... and nothing changed: xanesdb (logged in as the administrator) sees the same database
        admin = pymongo.MongoClient(info.uri(), serverSelectionTimeoutMS=5000)
        assert "structures" not in admin.xanesdb.list_collection_names()
        assert [u["user"] for u in admin.admin["system.users"].find()] == ["xanesdb_root"]
    finally:
        LocalServer(home).stop()
        shutil.rmtree(base, ignore_errors=True)


def test_first_start_generates_the_admin_credential(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "XANESDB_HOME": str(home), "COLUMNS": "200"}
    env.pop("XANESDB_DB_URI", None)
    try:
        shown = _cli(["db", "uri"], env)
        assert shown.returncode == 0, shown.stderr
        cred = admin_credential_file(home)
        assert stat.S_IMODE(cred.stat().st_mode) == 0o600 and stat.S_IMODE(cred.parent.stat().st_mode) == 0o700
        password = json.loads(cred.read_text())["password"]
        assert len(password) >= 32
        assert shown.stdout.startswith("mongodb://xanesdb_root:***@127.0.0.1:") and "authSource=admin" in shown.stdout
        assert password not in (home / "db" / "server.json").read_text()
        clear = _cli_here(["db", "uri", "--show-password"], env).stdout.strip()
        assert password in clear
        client = pymongo.MongoClient(clear, serverSelectionTimeoutMS=5000)
        client.xanesdb.probe.insert_one({"a": 1})
        info = LocalServer(home).read_info()
        anon = pymongo.MongoClient(info.uri(credentials=False), serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure) as e:
            anon.xanesdb.probe.find_one()
        assert e.value.code == 13
        # only xanesdb's administrator exists, and `db users --check` says so
        r = _cli_here(["db", "users", "--check"], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "xanesdb_root" in r.stdout and " NO " not in r.stdout
        st = _cli_here(["db", "status"], env)
        assert "authentication on" in st.stdout and password not in st.stdout + st.stderr
        # a credential file others can read is refused, one line, naming the fix
        cred.chmod(0o644)
        r = _cli_here(["db", "stats"], env)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "chmod 600" in r.stderr, r.stderr
        stopped = _cli_here(["db", "stop"], env)  # stopping needs no credential
        assert stopped.returncode == 0 and "stopped the local database server" in stopped.stdout, stopped.stderr
        cred.chmod(0o600)
    finally:
        LocalServer(home).stop()


@pytest.mark.parametrize("old_server", ["running", "stopped"])
def test_open_home_is_migrated_on_first_use(old_server, tmp_path):
    """A home made before authentication was on by default: a user planted while it was open is kept
    but flagged; the data stay; anonymous clients are refused from then on."""
    home = tmp_path / "home"
    env = {**os.environ, "XANESDB_HOME": str(home), "COLUMNS": "200"}
    env.pop("XANESDB_DB_URI", None)
    old = LocalServer(home, auth=False)  # how every home was run before
    info = _start_open_server_elsewhere(home)
    try:
        assert not info.auth and not admin_credential_file(home).exists()
        planter = pymongo.MongoClient(info.uri(), serverSelectionTimeoutMS=5000)  # any local user could
        planter.xanesdb.structures.insert_one({"material_id": "kept"})
        planter.xanesdb.command("createUser", "planted", pwd="x", roles=["dbOwner"])
        planter.xanesdb.command("createUser", "xanesdb_reader", pwd="x", roles=["dbOwner"])  # a lookalike
        planter.close()
        if old_server == "stopped":
            old.stop()
        r = _cli(["db", "query", "{}", "--collection", "structures", "--format", "jsonl"], env)
        assert r.returncode == 0, r.stderr
        assert '"kept"' in r.stdout
        warnings = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(warnings) == 1 and "was open to every local user" in warnings[0], r.stderr
        assert "planted@xanesdb" in warnings[0] and "xanesdb db users --check" in warnings[0]
        new = LocalServer(home).read_info()
        assert new.auth and new.password and (old_server == "stopped" or new.pid != info.pid)
        anon = pymongo.MongoClient(new.uri(credentials=False), serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure):
            anon.xanesdb.structures.find_one()
        # a second command: no warning, same server
        again = _cli_here(["db", "stats"], env)
        assert again.returncode == 0 and again.stderr.strip() == "", again.stderr
        assert LocalServer(home).read_info().pid == new.pid
        # both planted users flagged, by `db users --check` and `db roles --check` (exit 1)
        for args in (["db", "users", "--check"], ["db", "roles", "--check"]):
            r = _cli_here(args, env)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            assert "planted@xanesdb" in r.stderr and "xanesdb_reader@xanesdb" in r.stderr, r.stderr
            assert r.stdout.count(" NO ") == 2, r.stdout
        # without --check: listed, exit 0
        assert _cli_here(["db", "users"], env).returncode == 0
        # `roles --apply` takes the lookalike over (roles and password reset); `--drop` removes the other
        assert _cli_here(["db", "roles", "--apply"], env).returncode == 0
        r = _cli_here(["db", "users", "--check"], env)
        assert r.returncode == 1 and "planted@xanesdb" in r.stderr and "xanesdb_reader@" not in r.stderr, r.stderr
        r = _cli_here(["db", "users", "--drop", "planted@xanesdb", "--check"], env)
        assert r.returncode == 0 and "dropped user planted@xanesdb" in r.stdout, r.stdout + r.stderr
        # bad --drop: one line, exit 2
        for bad, words in ((["--drop", "planted"], "USER@DATABASE"), (["--drop", "xanesdb_root@admin"], "cannot be dropped"),
                           (["--drop", "ghost@xanesdb"], "no user ghost@xanesdb")):
            r = _cli_here(["db", "users", *bad], env)
            assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    finally:
        LocalServer(home).stop()
