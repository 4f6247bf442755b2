"""Distortion series (xanesdb.jobs.disorder) and disordered spectra with MSD labels (xanesdb.ml.disorder)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xanesdb.jobs.disorder.series import (
    LITE_PRESET,
    check_distortion,
    distort_feff_input,
    distorted_task_key,
    distortion_grid,
)
from xanesdb.platform.errors import XanesdbUserError

REF = Path(__file__).resolve().parent / "test_data" / "feff"
CUO = REF / "CuO_Cu_K_fast"


def _atoms(text: str) -> list[list[float]]:
    from xanesdb.jobs.feff.parse import atoms_rows

    return [[float(p[0]), float(p[1]), float(p[2]), int(p[3]), float(p[5])] for p in atoms_rows(text)]


def _cards(text: str) -> str:
    return text.split("ATOMS")[0]


@pytest.mark.parametrize("d", [-0.45, -0.1, 0.0, 0.25, 0.45])
def test_distorted_cluster_moves_every_neighbour_radially_by_d(d):
    text = (CUO / "inputs" / "feff.inp").read_text()
    got = distort_feff_input(text, d)
    a, b = _atoms(text), _atoms(got)
    assert len(a) == len(b) > 20
    assert _cards(got) == _cards(text)  # cards and potentials untouched
    for (x, y, z, ip, r), (x2, y2, z2, ip2, r2) in zip(a, b):
        assert ip == ip2
        if r == 0:
            assert (x2, y2, z2, r2) == (0, 0, 0, 0)
            continue
        assert math.isclose(math.sqrt(x2**2 + y2**2 + z2**2), r + d, abs_tol=2e-5)
        assert math.isclose(r2, r + d, abs_tol=1e-4)
        cos = (x * x2 + y * y2 + z * z2) / (r * (r + d))
        assert cos == pytest.approx(1.0, abs=1e-5)  # same direction (inputs carry 6 digits)


@pytest.mark.parametrize("bad", [0.46, -0.5, float("nan"), float("inf"), "x", None])
def test_bad_distortion_is_one_line_error(bad):
    with pytest.raises(XanesdbUserError) as err:
        check_distortion(bad)
    assert "\n" not in str(err.value)


def test_series_grid_and_keys():
    grid = distortion_grid(0.05)
    assert len(grid) == 19 and grid[0] == -0.45 and grid[-1] == 0.45 and 0.0 in grid
    assert len(distortion_grid(0.01)) == 91
    with pytest.raises(XanesdbUserError):
        distortion_grid(0.07)
    with pytest.raises(XanesdbUserError):
        distortion_grid(0.05, limit=0.5)
    from xanesdb.jobs.feff.task import feff_task_key
    from xanesdb.jobs.feff.sets import preset_hash_of

    ordered = feff_task_key("mp-1", "Ti", 0, "fast")
    assert ordered == f"mp-1:Ti:0:K:{preset_hash_of('fast')}"  # d=None: the key format is unchanged
    assert distorted_task_key("mp-1:Ti:0", "K", preset_hash_of("fast"), 0.05) == ordered + ":d+0.050"
    assert distorted_task_key("mp-1:Ti:0", "K", "h", -0.4) == "mp-1:Ti:0:K:h:d-0.400"
    assert preset_hash_of(LITE_PRESET) != preset_hash_of("fast")


def test_schema_distortion_is_optional_and_described():
    from xanesdb.schemas import FeffTaskDoc

    f = FeffTaskDoc.model_fields["distortion"]
    assert f.default is None and f.description


def test_maker_runs_series_in_memory_and_skips_stored(memory_jobstore, monkeypatch, tmp_path):
    """The jobflow job with a fake FEFF and an in-memory database: every task stored once, a rerun runs nothing."""
    from jobflow import run_locally
    from maggma.stores import MemoryStore
    from pymatgen.core import Structure

    import xanesdb.jobs.feff.run as feff_run
    from xanesdb.jobs.database import use_database
    from xanesdb.jobs.disorder import DistortionSeriesMaker
    from xanesdb.testing.feff import check_feff_inputs, replay_outputs

    calls = []

    def counting(workdir=".", **kw):  # the fake FEFF: check the cards, replay CuO's outputs
        calls.append(str(workdir))
        check_feff_inputs(Path(workdir) / "feff.inp", CUO / "inputs", check="cards")
        replay_outputs(CUO, Path(workdir))
        return feff_run.FeffRunResult(ok=True, code="feff10-rs", code_version="test", wall_seconds=0.01)

    monkeypatch.setattr(feff_run, "run_feff", counting)
    store = MemoryStore("feff_tasks")
    store.connect()
    db = store._collection.database
    structure = Structure.from_file(CUO / "inputs" / "structure.json")
    maker = DistortionSeriesMaker(preset="fast", distortions=[-0.1, 0.0, 0.1], run_feff_kwargs={"feff_cmd": None})
    monkeypatch.chdir(tmp_path)
    with use_database(db):
        out = run_locally(maker.make(structure, 0, "mp-704645"), store=memory_jobstore, create_folders=True,
                          ensure_success=True)  # fmt: skip
        summary = next(iter(out.values()))[1].output
        assert len(calls) == 3 and summary["n_already"] == 0 and not summary["failed"]
        docs = list(db["feff_tasks"].find({}, {"_id": 0}))
        assert sorted(d["distortion"] for d in docs) == [-0.1, 0.0, 0.1]
        assert all(d["task_id"].startswith("mp-704645:Cu:0:K:") and ":d" in d["task_id"] for d in docs)
        assert all(d["state"] == "successful" and d["mu"] for d in docs)
        assert any(d["task_id"].endswith(":d+0.100") for d in docs)
        run_locally(maker.make(structure, 0, "mp-704645"), store=memory_jobstore, create_folders=True, ensure_success=True)
        assert len(calls) == 3  # nothing run again
        assert db["feff_tasks"].count_documents({}) == 3


def test_series_resumes_after_kill_and_stays_out_of_spectra(db_settings, tmp_path):
    """SIGKILL `xanesdb disorder series` mid-way, run it again: each distortion stored once; spectra build skips them."""
    from pymatgen.core import Structure

    from xanesdb.platform.stores import get_database
    from xanesdb.schemas import Provenance, SiteDoc, StructureDoc
    from xanesdb.testing.feff import fake_feff_command

    db = get_database(db_settings)
    s = Structure.from_file(CUO / "inputs" / "structure.json")
    sdoc = StructureDoc.from_structure(s, "mp-704645", "files", Provenance(origin="test", source_id="CuO"))
    db["structures"].replace_one({"material_id": "mp-704645"}, sdoc.to_mongo(), upsert=True)
    site = SiteDoc(site_id="mp-704645:Cu:0", material_id="mp-704645", source="files", formula=sdoc.formula,
                   element="Cu", site_index=0, equivalent_indices=[0], multiplicity=1)  # fmt: skip
    db["sites"].replace_one({"site_id": site.site_id}, site.to_mongo(), upsert=True)
    env = {**os.environ, "XANESDB_FEFF_CMD": fake_feff_command(CUO, check="cards", sleep=0.2)}
    cmd = [sys.executable, "-m", "xanesdb.cli", "disorder", "series", "mp-704645:Cu:0", "--preset", "fast",
           "--step", "0.05", "--workdir", str(tmp_path / "runs")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while db["feff_tasks"].count_documents({}) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the series finished before it could be killed; make the fake slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    n_killed = db["feff_tasks"].count_documents({})
    assert 3 <= n_killed < 19
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"19 distortions, {n_killed} already stored, {19 - n_killed} run now, 0 failed" in rerun.stdout
    docs = list(db["feff_tasks"].find({}, {"_id": 0, "task_id": 1, "distortion": 1, "state": 1}))
    assert len(docs) == 19 and len({d["task_id"] for d in docs}) == 19
    assert sorted(d["distortion"] for d in docs) == distortion_grid(0.05)
    assert all(d["state"] == "successful" for d in docs)
    # distorted clusters are not site spectra
    from xanesdb.jobs.spectra.build import build_spectra

    build_spectra(db_settings)
    assert db["spectra"].count_documents({}) == 0


def test_cli_refuses_bad_distortions_and_weightings(refused):
    assert "outside" in refused(["disorder", "series", "mp-1:Ti:0", "-d", "0.5"])
    assert "outside" in refused(["disorder", "series", "mp-1:Ti:0", "--limit", "0.6"])
    assert "not finite" in refused(["disorder", "series", "mp-1:Ti:0", "-d", "nan"])
    assert "must be > 0" in refused(["disorder", "weights", "--sigma", "0"])
    assert "must be > 0" in refused(["disorder", "weights", "--sigma", "-0.1"])
    assert "finite" in refused(["disorder", "weights", "--mu", "inf"])
    assert "finite" in refused(["disorder", "weights", "--alpha", "nan"])
    assert "no site" in refused(["disorder", "series", "mp-nothing:Ti:0"])


# ----------------------------------------------------------------------------- ml.disorder
def test_weights_and_msd():
    from xanesdb.ml.disorder import msd_of, sample_weightings, series_weights

    grid = distortion_grid(0.01)
    w = series_weights(grid, 0.0, 0.05, 0.0)
    assert w.sum() == pytest.approx(1.0) and msd_of(grid, w) == pytest.approx(0.05**2, rel=0.02)
    w2 = series_weights(grid, 0.1, 0.05, 0.0)
    assert msd_of(grid, w2) == pytest.approx(0.05**2 + 0.1**2, rel=0.02)
    skew = series_weights(grid, 0.0, 0.1, 4.0)
    assert float((skew * np.array(grid)).sum()) > 0.05  # positive shape: weight moves to +d
    for bad in ((0.0, 0.0, 0.0), (0.0, -1.0, 0.0), (float("nan"), 0.1, 0.0), (0.0, 0.1, float("inf"))):
        with pytest.raises(XanesdbUserError):
            series_weights(grid, *bad)
    with pytest.raises(XanesdbUserError, match="no weight"):
        series_weights(grid, 5.0, 0.01, 0.0)
    a, b = sample_weightings(50, 3), sample_weightings(50, 3)
    assert np.array_equal(a, b) and (a[:, 1] > 0).all()


def test_msd_dataset_from_series_is_reproducible():
    from xanesdb.jobs.feff.parse import parse_xmu
    from xanesdb.ml.disorder import make_msd_dataset, series_from_docs

    xmu = parse_xmu(CUO / "outputs" / "xmu.dat")
    docs = []
    for site in ("a:Cu:0", "b:Cu:0"):
        for d in distortion_grid(0.05):
            # a fake series: the edge moves with d (as compression moves it up)
            e = np.asarray(xmu.energies) - 4 * d
            docs.append({"site_id": site, "preset": "fast", "distortion": d, "energies": e.tolist(), "mu": xmu.mu,
                         "mu0": xmu.mu0})  # fmt: skip
    series = series_from_docs(docs)
    assert len(series) == 2 and series[0].mu.shape[0] == 19
    ds1, ds2 = make_msd_dataset(series, 40, seed=1), make_msd_dataset(series, 40, seed=1)
    assert np.array_equal(ds1.X, ds2.X) and np.array_equal(ds1.msd, ds2.msd)
    assert ds1.X.shape[1] == 100 and len(ds1.X) == len(ds1.msd) == len(ds1.groups) == len(ds1.weightings)
    assert set(ds1.groups) == {"a:Cu:0", "b:Cu:0"} and (ds1.msd > 0).all()
    assert json.dumps(ds1.weightings.tolist())  # recorded with the run


def test_held_out_sites_holds_out_only_the_given_sites():
    """Pooled training: every site trains, only the named ones are held out in turn."""
    from xanesdb.jobs.feff.parse import parse_xmu
    from xanesdb.ml.disorder import held_out_sites, make_msd_dataset, msd_config, series_from_docs

    xmu = parse_xmu(CUO / "outputs" / "xmu.dat")
    docs = [{"site_id": site, "preset": "fast", "distortion": d, "energies": (np.asarray(xmu.energies) - k * d).tolist(),
             "mu": xmu.mu, "mu0": xmu.mu0}
            for site, k in (("a:Cu:0", 4), ("b:Cu:0", 5), ("c:Cu:0", 6)) for d in distortion_grid(0.05)]  # fmt: skip
    ds = make_msd_dataset(series_from_docs(docs), 30, seed=2)
    out = held_out_sites(ds, msd_config(family="gbt", epochs=1, seed=0), ["b:Cu:0"])
    assert list(out["sites"]) == ["b:Cu:0"] and np.isfinite(out["mae"])
    assert len(out["sites"]["b:Cu:0"]["true"]) == int((ds.groups == "b:Cu:0").sum())
