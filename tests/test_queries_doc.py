"""docs/queries.md: every ```python block of the guide runs against the real local server with real
data (the bundled FEFF10 tasks, their sites and structures, spectra built from them, a registered
model), and the generated field tables match the schemas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "queries.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_field_tables_are_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_queries_doc.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = DOC.read_text()
    from xanesdb.schemas import ALL_DOCUMENTS

    for model in ALL_DOCUMENTS:  # every field of every schema is documented
        for name in model.model_fields:
            assert f"| `{name}` |" in text, (model.__name__, name)


def _subset_snapshot(tmp: Path, every: int = 6) -> int:
    """Every ``every``-th of the bundled database's own FEFF10 tasks (by task_id, so all absorbers are
    in), with their sites and structures; how many tasks. A sixth keeps the test short as the
    bundled database grows."""
    from xanesdb.testing.snapshot import bundled_subset

    return bundled_subset(tmp, every)


@pytest.mark.integration
def test_cookbook_runs_against_the_local_server(db_settings, tmp_path, capsys):
    import keras

    from xanesdb.jobs.spectra.build import build_spectra
    from xanesdb.ml.registry import register_run
    from xanesdb.platform.snapshot import load_snapshot
    from xanesdb.platform.stores import get_database
    from xanesdb.schemas import TrainingRunDoc

    n_tasks = _subset_snapshot(tmp_path)
    counts = load_snapshot(db_settings, tmp_path)
    assert counts["feff_tasks"] == n_tasks >= 75
    build_spectra(db_settings)
    db = get_database(db_settings)
    n_spectra = db.spectra.count_documents({})
    n_ok = db.feff_tasks.count_documents({"state": "successful"})
    assert n_spectra == n_ok >= n_tasks - 5  # one spectrum per successful task; failed tasks are kept, not built
    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(3, activation="softmax")])
    run = TrainingRunDoc(run_id="mlp-cookbook", kind="mlp", query={"element": "Cu", "lce_class": {"$ne": None}},
                         fingerprint="0" * 16, n_spectra=700, classes=["O6", "S5", "T4"])
    register_run(run, model, db_settings)

    blocks = _blocks()
    assert len(blocks) >= 9
    ns: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"docs/queries.md block {i + 1}", "exec"), ns)
        except Exception as err:  # noqa: BLE001 - name the failing block
            pytest.fail(f"docs/queries.md python block {i + 1} failed: {type(err).__name__}: {err}\n{code}")
    out = capsys.readouterr().out
    assert "spectra" in out and "bytes of weights" in out

    # the answers are right: compared with the same selections made in Python
    every = list(db.spectra.find({}, {"_id": 0}))
    expect_fe = [d["spectrum_id"] for d in every if d["element"] == "Fe" and d.get("lce_class") == "O6"
                 and d.get("csm") is not None and d["csm"] < 1 and d.get("duplicate_of") is None]
    assert [d["spectrum_id"] for d in ns["fe_o6"]] == sorted(expect_fe)
    expect_mn = [d for d in every if d["element"] == "Mn" and d.get("lce_class") and d.get("csm") is not None
                 and d["csm"] < 1]
    assert len(ns["mn_good"]) == len(expect_mn) > 0
    expect_counts: dict = {}
    for d in every:
        if d.get("lce_class") and d.get("duplicate_of") is None and d["state"] == "successful":
            expect_counts[(d["element"], d["lce_class"])] = expect_counts.get((d["element"], d["lce_class"]), 0) + 1
    assert ns["class_counts"] == expect_counts and sum(expect_counts.values()) > 0
    assert ns["one_material"] and all(d["spectrum_id"].startswith(ns["material_id"]) for d in ns["one_material"])
    assert [r["run_id"] for r in ns["runs"]] == ["mlp-cookbook"]
    assert ns["recent"] == n_spectra
    assert ns["site_counts"] and ns["task"]["mu"]
