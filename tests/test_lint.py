"""Pyflakes' checks (ruff's F rules) on the package, tests, benchmarks and scripts: undefined
names, unused imports and variables, names in ``__all__`` that do not exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyflakes_rules_pass():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    res = subprocess.run([ruff, "check", "--select", "F", "--output-format", "concise", "--no-cache",
                          "xanesdb", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
