"""``XANESDB_KERAS_BACKEND``: chosen before Keras is imported, the user's ``KERAS_BACKEND`` wins,
a missing backend package is one line naming the extra (exit 2), and ``xanesdb train`` runs on it.

Each case runs in a fresh interpreter: Keras fixes its backend at its first import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRINT_BACKEND = "import xanesdb.ml.models, keras; print('backend', keras.backend.backend())"
#: runs the CLI with the jax package hidden, as if it were not installed
CLI_WITHOUT_JAX = "import sys; sys.modules['jax'] = None\nfrom xanesdb.cli import main\nmain(sys.argv[1:])\n"


def _run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XANESDB_KERAS_BACKEND")}
    # never the local server started on demand: a command that reaches the database fails fast instead
    full.setdefault("XANESDB_DB_URI", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500")
    full.setdefault("XANESDB_DB_RETRIES", "0")
    full.update(env)
    return subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)  # fmt: skip


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "W0000"))]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    return lines[0]


def test_setting_chooses_the_backend_and_keras_backend_wins():
    r = _run(PRINT_BACKEND, XANESDB_KERAS_BACKEND="jax")
    assert r.returncode == 0 and r.stdout.split()[-1] == "jax", r.stderr[-2000:]
    r = _run(PRINT_BACKEND, XANESDB_KERAS_BACKEND="jax", KERAS_BACKEND="tensorflow")
    assert r.returncode == 0 and r.stdout.split()[-1] == "tensorflow", r.stderr[-2000:]
    r = _run(PRINT_BACKEND)  # unset: Keras's default
    assert r.returncode == 0 and r.stdout.split()[-1] == "tensorflow", r.stderr[-2000:]


def test_a_setting_after_keras_was_imported_warns():
    code = ("import warnings, keras\nwith warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n    import xanesdb.ml\n"
            "print([str(x.message) for x in w if 'XANESDB_KERAS_BACKEND' in str(x.message)])")  # fmt: skip
    r = _run(code, XANESDB_KERAS_BACKEND="jax")
    assert r.returncode == 0 and "has no effect" in r.stdout and "tensorflow backend" in r.stdout, r.stderr[-2000:]


def test_missing_or_unknown_backend_is_one_line_exit_2(tmp_path):
    line = _one_error_line(_run(CLI_WITHOUT_JAX, "train", "-q", '{"element": "Cu"}', XANESDB_KERAS_BACKEND="jax"))
    assert "'jax' needs the jax package" in line and "xanesdb[jax]" in line and "xanesdb[gpu]" in line
    line = _one_error_line(_run(CLI_WITHOUT_JAX, "train", "-q", '{"element": "Cu"}', KERAS_BACKEND="jax"))
    assert "xanesdb[jax]" in line
    # a backend chosen in Keras's own config file: keras itself fails to import jax, the CLI says the same
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "card.json").write_text("{}")
    (folder / "model.keras").write_bytes(b"")
    line = _one_error_line(_run(CLI_WITHOUT_JAX, "models", "import", str(folder), KERAS_HOME=str(tmp_path)))
    assert "xanesdb[jax]" in line
    line = _one_error_line(_run(CLI_WITHOUT_JAX, "train", "-q", '{"element": "Cu"}', XANESDB_KERAS_BACKEND="mxnet"))
    assert "KERAS_BACKEND" in line and "'jax'" in line


@pytest.mark.integration
def test_train_runs_and_reports_on_the_chosen_backend(db_settings):
    from test_models_portable import _insert_spectra

    _insert_spectra(db_settings)
    code = "from xanesdb.cli import main; import sys; main(sys.argv[1:])"
    r = _run(code, "train", "-q", '{"element": "Cu"}', "--epochs", "2", "--n-models", "2", "--no-curves",
             XANESDB_KERAS_BACKEND="jax")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "trained with Keras (jax) on cpu" in r.stdout
    from xanesdb.ml.registry import list_runs

    (run,) = list_runs(db_settings)
    assert run["backend"] == "jax"
