"""Checks a reviewer can repeat on jobs/feff/: short functions, one home per idea, a light batch runner."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

FEFF = Path(__file__).resolve().parents[3] / "xanesdb" / "jobs" / "feff"


def test_no_function_of_80_lines_or_more():
    long = []
    for path in sorted(FEFF.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n >= 80:
                    long.append(f"{path.name}:{node.name} ({n} lines)")
    assert not long, long


def test_one_writer_and_one_kept_file_list():
    """Only task.py writes feff_tasks, only workdir.py lists the kept files; nobody hashes a preset inline."""
    for path in sorted(FEFF.parents[0].rglob("*.py")):
        text = path.read_text()
        if path.name != "task.py":
            assert "ReplaceOne(" not in text or "feff_tasks" not in text, path
            assert '["feff_tasks"].replace_one' not in text and '["feff_tasks"].update' not in text, path
        if path.name != "workdir.py":
            assert '"feff_stage_times.json", "log.dat"' not in text, path
            assert "def _safe(" not in text, path
        if path.name != "sets.py":
            assert "preset_hash(preset_cards(" not in text, path


def test_batch_runner_imports_only_the_standard_library():
    code = ("import sys, json; import xanesdb.jobs.feff.batch; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    # the interpreter's own start-up hooks (editable install, setuptools) are not imports of the runner
    found = {m for m in json.loads(out.stdout) if not m.startswith(("__", "_distutils_hack"))}
    assert found <= {"xanesdb", "feff10"}, out.stdout
