"""The Materials Project source and MP XAS import, with the real mp-api client against the fake API.

The fake server (:mod:`xanesdb.testing.fake_mp`) serves emmet-core documents built from real
structures (``tests/test_data/mp``, see its README); the XAS documents carry OmniXAS FEFF9 Cu
spectra labelled as test data. One test talks to the real Materials Project and skips without
``MP_API_KEY``; every database test runs on the real local server.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.testing.fake_mp import FAKE_API_KEY, FAKE_DB_VERSION, FakeMPServer, load_fake_mp_data

MP_TEST_DATA = Path(__file__).resolve().parent / "test_data" / "mp"
#: Fe and Ti oxides in the test data (the Fe6O8 peroxide mp-1104628 is not an oxide)
FE_TI_OXIDES = {"mp-19419", "mp-1181437", "mp-1068212", "mp-19359", "mp-2657", "mp-390", "mp-5986", "mp-4930"}


@pytest.fixture(scope="module")
def fake_mp_docs():
    return load_fake_mp_data(MP_TEST_DATA)


@pytest.fixture
def fake_mp(fake_mp_docs, monkeypatch):
    """The fake MP API on a free port, with MP_API_KEY set to the fake key."""
    summary, xas = fake_mp_docs
    monkeypatch.setenv("MP_API_KEY", FAKE_API_KEY)
    with FakeMPServer(summary, xas) as server:
        yield server


def _all_docs(settings, collection: str) -> list[dict]:
    from xanesdb.platform.stores import get_database

    return list(get_database(settings)[collection].find({}, {"_id": 0}))


def _assert_key_only_in_headers(server: FakeMPServer, key: str) -> None:
    data_requests = [r for r in server.requests if r.path != "/heartbeat"]
    assert data_requests, "no data request reached the fake server"
    for r in server.requests:
        assert key not in r.url
        assert all(key not in v for values in r.query.values() for v in values)
        assert all(key not in v for name, v in r.headers.items() if name != "x-api-key")
    for r in data_requests:
        assert r.headers.get("x-api-key") == key


# ----------------------------------------------------------------------------- client vs fake
def test_real_client_against_fake_server(fake_mp):
    from mp_api.client import MPRester

    with MPRester(api_key=FAKE_API_KEY, endpoint=fake_mp.endpoint, mute_progress_bars=True) as mpr:
        assert mpr.db_version == FAKE_DB_VERSION
        docs = mpr.materials.summary.search(
            elements=["Fe", "O"], deprecated=False, fields=["material_id", "structure", "formula_pretty"]
        )
        xas = mpr.materials.xas.search(absorbing_element="Cu", edge="K", spectrum_type="XANES")
        first = mpr.materials.summary.search(elements=["Ti", "O"], fields=["material_id"], num_chunks=1, chunk_size=2)
    ids = {d.material_id.string for d in docs}
    assert ids == {"mp-19419", "mp-1181437", "mp-1068212", "mp-1104628", "mp-19359"}
    assert all(d.structure.composition["Fe"] > 0 for d in docs)
    assert len(first) == 2
    assert len(xas) == 6 and {str(d.edge.value) for d in xas} == {"K"}
    site_specific = [d for d in xas if d.spectrum.absorbing_index is not None]
    assert len(site_specific) == 4
    assert all("test data" in d.warnings[0] for d in xas)
    paths = [r.path for r in fake_mp.requests]
    assert "/heartbeat" in paths and "/materials/summary/" in paths and "/materials/xas/" in paths
    summary_q = next(r.query for r in fake_mp.requests if r.path == "/materials/summary/")
    assert summary_q["elements"] == ["Fe,O"]
    _assert_key_only_in_headers(fake_mp, FAKE_API_KEY)


def test_fake_server_refuses_what_it_does_not_implement(fake_mp):
    from mp_api.client import MPRester
    from mp_api.client.core import MPRestError

    with MPRester(api_key=FAKE_API_KEY, endpoint=fake_mp.endpoint, mute_progress_bars=True) as mpr:
        with pytest.raises(MPRestError):
            mpr.materials.summary.search(elements=["Fe", "O"], possible_species=["Fe3+"], fields=["material_id"])
    with MPRester(api_key="b" * 32, endpoint=fake_mp.endpoint, mute_progress_bars=True) as mpr:
        with pytest.raises(MPRestError, match="401"):
            mpr.materials.summary.search(elements=["Fe", "O"], fields=["material_id"])


# ----------------------------------------------------------------------------- mp source
@pytest.mark.integration
def test_mp_source_writes_oxides_idempotently(fake_mp, db_settings, caplog):
    from xanesdb.jobs.structures import fetch_structures

    caplog.set_level(logging.DEBUG)
    s = fetch_structures("mp", ["Fe", "ti"], settings=db_settings, endpoint=fake_mp.endpoint)
    assert set(s.material_ids) == FE_TI_OXIDES
    assert (s.n_new, s.n_total, s.n_in_collection) == (8, 8, 8)
    assert s.skipped == {"not an oxide (peroxide)": 1}
    assert s.database_version == FAKE_DB_VERSION
    docs = {d["material_id"]: d for d in _all_docs(db_settings, "structures")}
    assert set(docs) == FE_TI_OXIDES
    rutile = docs["mp-2657"]
    assert rutile["source"] == "mp" and rutile["formula"] == "TiO2" and rutile["elements"] == ["O", "Ti"]
    assert rutile["provenance"]["origin"] == "materials_project"
    assert rutile["provenance"]["database_version"] == FAKE_DB_VERSION
    assert rutile["provenance"]["source_id"] == "mp-2657"
    stamps = {m: d["last_updated"] for m, d in docs.items()}
    # re-run: nothing new, nothing rewritten
    assert _new_total(fetch_structures("mp", ["Fe", "Ti"], settings=db_settings, endpoint=fake_mp.endpoint)) == (0, 8)
    again = {d["material_id"]: d for d in _all_docs(db_settings, "structures")}
    assert len(again) == 8 and {m: d["last_updated"] for m, d in again.items()} == stamps
    # the key: only in the request header, never in documents or logs
    assert FAKE_API_KEY not in json.dumps(list(again.values()), default=str)
    assert not [r for r in caplog.records if FAKE_API_KEY in r.getMessage()]
    _assert_key_only_in_headers(fake_mp, FAKE_API_KEY)


def _new_total(summary) -> tuple[int, int]:
    """(new material ids written, structures the source gave) of a fetch."""
    return summary.n_new, summary.n_total


@pytest.mark.integration
def test_mp_source_limit_and_non_oxides(fake_mp, db_settings):
    from xanesdb.jobs.structures import fetch_structures

    s = fetch_structures("mp", ["Fe"], limit=2, settings=db_settings, endpoint=fake_mp.endpoint)
    assert s.n_total == 2 and s.n_in_collection == 2
    limited = [r for r in fake_mp.requests if r.path == "/materials/summary/"]
    assert limited[0].query["_limit"] == ["2"]
    # CoTe has no O: the elements=[Co, O] search does not return it; LiCoO2 is an oxide
    s = fetch_structures("mp", ["Co"], settings=db_settings, endpoint=fake_mp.endpoint)
    assert s.material_ids == ["mp-24850"]


@pytest.mark.integration
def test_mp_source_needs_key_and_writes_nothing(fake_mp, db_settings, monkeypatch):
    from xanesdb.jobs.structures import fetch_structures

    monkeypatch.delenv("MP_API_KEY")
    with pytest.raises(XanesdbUserError, match="set MP_API_KEY"):
        fetch_structures("mp", ["Fe"], settings=db_settings, endpoint=fake_mp.endpoint)
    monkeypatch.setenv("MP_API_KEY", "c" * 32)  # well formed, refused by the server
    with pytest.raises(XanesdbUserError, match="refused the key") as info:
        fetch_structures("mp", ["Fe"], settings=db_settings, endpoint=fake_mp.endpoint)
    assert "c" * 32 not in str(info.value)
    monkeypatch.setenv("MP_API_KEY", "short")
    with pytest.raises(XanesdbUserError, match="Valid API keys are 32 characters"):
        fetch_structures("mp", ["Fe"], settings=db_settings, endpoint=fake_mp.endpoint)
    monkeypatch.setenv("MP_API_KEY", FAKE_API_KEY)
    from xanesdb.platform.server import find_free_port

    with pytest.raises(XanesdbUserError, match="cannot reach"):
        fetch_structures("mp", ["Fe"], settings=db_settings, endpoint=f"http://127.0.0.1:{find_free_port()}/")
    assert _all_docs(db_settings, "structures") == []


@pytest.mark.integration
def test_mp_job_runs_in_jobflow(fake_mp, db_settings, memory_jobstore):
    from jobflow import run_locally

    from xanesdb.jobs.structures import FetchSummary, fetch_structures_job

    job = fetch_structures_job("mp", ["Ti"], endpoint=fake_mp.endpoint)
    responses = run_locally(job, store=memory_jobstore, ensure_success=True)
    out = responses[job.uuid][1].output
    out = out if isinstance(out, FetchSummary) else FetchSummary.model_validate(out)
    assert (out.n_new, out.n_total) == (4, 4) and out.database_version == FAKE_DB_VERSION
    assert len(_all_docs(db_settings, "structures")) == 4


# ----------------------------------------------------------------------------- MP XAS
@pytest.mark.integration
def test_import_mp_xas_tasks(fake_mp, db_settings):
    from xanesdb.jobs.mp_xas import MP_XAS_CARDS, MP_XAS_CODE, import_mp_xas
    from xanesdb.schemas import FeffTaskDoc, preset_hash, site_id, task_id

    s = import_mp_xas(["Cu"], settings=db_settings, endpoint=fake_mp.endpoint)
    assert s.n_documents == 6 and s.n_tasks == 5 and s.n_new == 5
    assert (s.n_successful, s.n_failed) == (4, 1)
    assert s.skipped == {"site-averaged spectrum over several unique sites": 1}
    assert s.n_structures_new == 5 and s.database_version == FAKE_DB_VERSION
    tasks = {d["task_id"]: FeffTaskDoc.from_mongo(d) for d in _all_docs(db_settings, "feff_tasks")}
    phash = preset_hash(MP_XAS_CARDS)
    expected = {task_id(site_id(m, "Cu", i), "K", phash, source="mp")
                for m, i in [("mp-704645", 0), ("mp-622628", 0), ("mp-622628", 1), ("mp-1182377", 4), ("mp-1008807", 1)]}
    assert set(tasks) == expected
    for t in tasks.values():
        assert (t.source, t.code, t.preset, t.edge, t.element) == ("mp", MP_XAS_CODE, "mp-xas", "K", "Cu")
        assert t.task_id.startswith("mp/") and len(t.energies) == len(t.mu) == 173
    bad = tasks[task_id(site_id("mp-1008807", "Cu", 1), "K", phash, source="mp")]
    assert bad.state == "failed" and "not increasing" in bad.error
    averaged = tasks[task_id(site_id("mp-1182377", "Cu", 4), "K", phash, source="mp")]
    assert averaged.state == "successful" and any("site-averaged" in w for w in averaged.warnings)
    # the spectrum is the one served (OmniXAS FEFF9 test data), not a re-computation
    raw = json.load(__import__("gzip").open(MP_TEST_DATA / "xas_spectra.json.gz"))
    cuo = next(r for r in raw if r["material_id"] == "mp-704645")
    good = tasks[task_id(site_id("mp-704645", "Cu", 0), "K", phash, source="mp")]
    assert good.mu == pytest.approx(cuo["mu"]) and good.energies == pytest.approx(cuo["energy"])
    structures = {d["material_id"]: d for d in _all_docs(db_settings, "structures")}
    assert structures["mp-704645"]["source"] == "mp"
    # re-run: no count changes, nothing rewritten
    again = import_mp_xas(["Cu"], settings=db_settings, endpoint=fake_mp.endpoint)
    assert (again.n_new, again.n_updated, again.n_unchanged, again.n_structures_new) == (0, 0, 5, 0)
    assert len(_all_docs(db_settings, "feff_tasks")) == 5 and len(_all_docs(db_settings, "structures")) == 5
    assert FAKE_API_KEY not in json.dumps(_all_docs(db_settings, "feff_tasks"), default=str)


@pytest.mark.integration
def test_import_mp_xas_uses_labelled_sites_and_stored_structures(fake_mp, fake_mp_docs, db_settings):
    from pymatgen.core import Structure

    from xanesdb.jobs.mp_xas import import_mp_xas
    from xanesdb.jobs.structures import write_structures
    from xanesdb.platform.stores import get_store
    from xanesdb.schemas import Provenance, SiteDoc, StructureDoc

    raw = json.load(__import__("gzip").open(MP_TEST_DATA / "xas_spectra.json.gz"))
    cuo = Structure.from_dict(next(r for r in raw if r["material_id"] == "mp-704645")["structure"])
    cu = [i for i, site in enumerate(cuo) if site.specie.symbol == "Cu"]
    # a labelled site whose representative index is not the first one: the import must use it
    site = SiteDoc(site_id=f"mp-704645:Cu:{cu[-1]}", material_id="mp-704645", source="mp", formula="CuO",
                   element="Cu", site_index=cu[-1], equivalent_indices=cu, multiplicity=len(cu))
    with get_store("sites", db_settings) as store:
        store.update([site.to_mongo()], key="site_id")
    # a stored Ba2CuO6 that is not the XAS document's structure: its spectrum is not keyed to it
    ba = Structure.from_dict(next(r for r in raw if r["material_id"] == "mp-1182377")["structure"])
    ba.perturb(0.05, min_distance=0.05)
    write_structures([StructureDoc.from_structure(ba, "mp-1182377", "mp", Provenance(origin="materials_project"))],
                     db_settings)
    s = import_mp_xas(["Cu"], settings=db_settings, endpoint=fake_mp.endpoint)
    assert s.skipped["structure differs from the stored one"] == 1
    site_ids = {d["site_id"] for d in _all_docs(db_settings, "feff_tasks")}
    assert f"mp-704645:Cu:{cu[-1]}" in site_ids and "mp-704645:Cu:0" not in site_ids
    assert not any(sid.startswith("mp-1182377") for sid in site_ids)
    # only missing sites are computed: the site with an MP spectrum is not pending for FEFF ...
    from xanesdb.jobs.feff.flows import select_pending_sites
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    other = SiteDoc(site_id="mp-1182377:Cu:4", material_id="mp-1182377", source="mp", formula="Ba2CuO6",
                    element="Cu", site_index=4, equivalent_indices=[4], multiplicity=1)
    db["sites"].insert_one(other.to_mongo())
    pending, n_sites, n_done = select_pending_sites(db, ["Cu"], "fast")
    assert [p["site_id"] for p in pending] == ["mp-1182377:Cu:4"] and (n_sites, n_done) == (2, 1)
    # ... unless asked
    pending, _, _ = select_pending_sites(db, ["Cu"], "fast", covered_by=())
    assert {p["site_id"] for p in pending} == {f"mp-704645:Cu:{cu[-1]}", "mp-1182377:Cu:4"}


# ----------------------------------------------------------------------------- CLI
def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xanesdb.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _main(args: list[str]) -> int:
    """Run the CLI entry point in this process; its exit code."""
    from xanesdb.cli import main

    try:
        main(args)
    except SystemExit as done:
        return int(done.code or 0)
    return 0


@pytest.mark.integration
def test_cli_mp_fetch_and_errors(fake_mp, db_settings, local_server, capsys):
    # the commands in this process (the mp-api imports cost seconds per subprocess) ...
    assert _main(["structures", "fetch", "--source", "mp", "-e", "Ti", "--endpoint", fake_mp.endpoint]) == 0
    out = capsys.readouterr()
    assert "4 structures, 4 new" in out.out and FAKE_DB_VERSION in out.out
    assert FAKE_API_KEY not in out.out + out.err
    assert _main(["structures", "import-mp-xas", "--element", "Cu", "--endpoint", fake_mp.endpoint]) == 0
    assert "5 tasks (4 successful, 1 failed): 5 new" in capsys.readouterr().out
    assert _main(["structures", "fetch", "--source", "mp", "-e", "Ti", "--endpoint", fake_mp.endpoint]) == 0
    assert "4 structures, 0 new" in capsys.readouterr().out
    # ... and the exit code of a real process
    env = {k: v for k, v in os.environ.items() if k != "MP_API_KEY"}
    env.update(XANESDB_DB_URI=local_server, XANESDB_DB_NAME=db_settings.DB_NAME)
    nokey = _cli(["structures", "fetch", "--source", "mp", "-e", "Fe", "--endpoint", fake_mp.endpoint], env)
    assert nokey.returncode == 2
    assert nokey.stderr.strip().startswith("error: set MP_API_KEY") and len(nokey.stderr.strip().splitlines()) == 1
    assert len(_all_docs(db_settings, "structures")) == 4 + 5


@pytest.mark.integration
@pytest.mark.skipif(not os.environ.get("MP_API_KEY"), reason="network test: needs MP_API_KEY")
def test_real_materials_project(db_settings):
    from xanesdb.jobs.structures import fetch_structures

    s = fetch_structures("mp", ["Fe"], limit=3, settings=db_settings)
    assert 0 < s.n_total <= 3 and s.database_version
    assert all("Fe" in d["elements"] and "O" in d["elements"] for d in _all_docs(db_settings, "structures"))
