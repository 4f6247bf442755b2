"""Dependencies: every package xanesdb imports is declared (core or an extra), every core package is
used, and a missing extra (FireWorks: ``[cluster]``) is one line naming it, exit 2."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: core packages used without an ``import`` in xanesdb's code, and how
USED_WITHOUT_IMPORT = {
    "secantusdb": "the local MongoDB server, run as a separate process (secantusd-py), never imported (GPL)",
    "tensorflow-cpu": "Keras' default backend, imported by keras",
    "tensorflow": "Keras' default backend off Linux x86-64, imported by keras",
}


def _requirements() -> tuple[set[str], dict[str, set[str]]]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs):
        return {_norm(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in reqs}

    return names(project["dependencies"]), {k: names(v) for k, v in project["optional-dependencies"].items()}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(folder: Path) -> set[str]:
    mods = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    local = {p.stem for p in folder.glob("*.py")}  # tests importing each other's helpers
    return mods - set(sys.stdlib_module_names) - local - {"xanesdb", "__future__"}


def test_every_import_is_declared_and_every_core_package_used():
    core, extras = _requirements()
    declared = core.union(*extras.values())
    dists = packages_distributions()
    used: set[str] = set()
    for folder in ("xanesdb", "tests"):
        for mod in _imported_modules(ROOT / folder):
            owners = {_norm(d) for d in dists.get(mod, [])}
            if folder == "xanesdb":
                assert owners, f"xanesdb imports {mod}, which no installed distribution provides"
                assert owners & declared, f"xanesdb imports {mod} ({', '.join(sorted(owners))}) but pyproject declares none of them"
            used |= owners
    unused = core - used - set(USED_WITHOUT_IMPORT)
    assert not unused, f"core dependencies never imported: {sorted(unused)}"
    # the heavy optional parts are not in the core
    assert not {"fireworks", "torch", "jax"} & core
    assert extras["cluster"] == {"fireworks"} and "jax" in extras["test"] and "torch" not in extras["test"]


def _cli_without_fireworks(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; sys.modules['fireworks'] = None\nfrom xanesdb.cli import main\nmain(sys.argv[1:])\n"
    env = {**os.environ, "XANESDB_DB_URI": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500",
           "XANESDB_DB_RETRIES": "0"}  # fmt: skip
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip


def test_missing_fireworks_names_the_cluster_extra(tmp_path):
    for args in (["populate", "--engine", "fireworks", "--element", "Cu"], ["populate", "worker", "--nlaunches", "1"],
                 ["populate", "status"], ["populate", "config", str(tmp_path / "cfg")]):  # fmt: skip
        r = _cli_without_fireworks(*args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, (args, r.stderr[-2000:])
        assert lines[0].startswith("error: ") and "pip install 'xanesdb[cluster]'" in lines[0], (args, lines)
    assert not (tmp_path / "cfg").exists()
