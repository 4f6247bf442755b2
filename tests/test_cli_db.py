"""The `db` verbs' module (xanesdb/commands/db.py) and `xanesdb demo` without an import circle.

Commands parse and print; the work is in xanesdb/platform. The verbs and options are the same as
before the move (the list below is the CLI's, checked against the command tree).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main

DB_VERBS = {
    "serve": {"--host", "--port", "--auth", "--insecure"},
    "stop": set(),
    "uri": {"--show-password"},
    "status": set(),
    "users": {"--check", "--drop"},
    "roles": {"--apply", "--check"},
    "migrate": {"--collection", "--dry-run"},
    "stats": set(),
    "query": {"--collection", "--format", "--limit", "--fields"},
    "dump": {"--collection", "--query"},
    "load": set(),
    "load-bundled": set(),
}


def test_db_verbs_live_in_commands_db_with_their_options():
    from xanesdb.cli import app

    group = typer.main.get_command(app).commands["db"]
    assert set(group.commands) == set(DB_VERBS)
    for name, cmd in group.commands.items():
        assert cmd.callback.__module__ == "xanesdb.commands.db", name
        long_opts = {o for p in cmd.params for o in p.opts if o.startswith("--")}
        assert long_opts == DB_VERBS[name], name


def test_commands_do_not_import_the_cli():
    code = ("import sys\n"
            "import xanesdb.commands.db, xanesdb.commands.demo, xanesdb.commands.dbadmin\n"
            "assert 'xanesdb.cli' not in sys.modules, 'a command module imported xanesdb.cli'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_demo_runs_its_steps_through_the_command_tree(monkeypatch, capsys):
    """Each demo step is an ordinary command run through the tree `demo` belongs to; an error of a
    step ends the demo like any command (one line, exit 2)."""
    from xanesdb.cli import main
    from xanesdb.commands import demo

    monkeypatch.setattr(demo, "setup_steps", lambda n: [("where is the database", ["db", "status"])])
    monkeypatch.setattr(demo, "live_steps", lambda *a, **k: [("stop it", ["db", "stop"])])
    main(["demo", "--live-sites", "0"])
    out = capsys.readouterr().out
    assert "[1/2] where is the database: xanesdb db status" in out
    assert "local server: stopped" in out and "no local database server was running" in out
    assert "demo finished" in out
    monkeypatch.setattr(demo, "live_steps", lambda *a, **k: [("bad", ["db", "serve", "--auth", "--insecure"])])
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--live-sites", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == ["error: --auth and --insecure contradict each other; "
                                             "authentication is on unless --insecure"]
