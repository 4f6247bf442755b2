"""Integration tests of FEFF tasks against the real local MongoDB server: population (resume,
no duplicates, SIGKILL mid-way), imports of run folders and of the OmniXAS bundle, and the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymatgen.core import Structure

from xanesdb.commands.demo import choose_live_element
from xanesdb.jobs.feff.local import populate_feff
from xanesdb.jobs.feff.pending import select_pending_sites
from xanesdb.jobs.feff.task import feff_task_key
from xanesdb.jobs.feff.sets import preset_hash_of
from xanesdb.platform.stores import get_database
from xanesdb.schemas import FeffTaskDoc, Provenance, SiteDoc, StructureDoc
from xanesdb.testing.feff import fake_feff_command, monkeypatch_feff

pytestmark = pytest.mark.integration

REF = Path(__file__).parent / "test_data" / "feff"


def _load_cu_sites(db, raw: Path, n_materials: int | None = None) -> list[str]:
    """Structures of the OmniXAS raw sample and one SiteDoc per computed Cu site; returns site ids."""
    site_ids = []
    mats = sorted(p for p in raw.iterdir() if (p / "POSCAR").is_file())[:n_materials]
    for mat in mats:
        s = Structure.from_file(mat / "POSCAR")
        sdoc = StructureDoc.from_structure(s, mat.name, "files", Provenance(origin="omnixas", source_id=mat.name))
        db["structures"].replace_one({"material_id": mat.name}, sdoc.to_mongo(), upsert=True)
        for run in sorted((mat / "FEFF-XANES").iterdir()):
            idx = int(run.name.split("_")[0])
            site = SiteDoc(site_id=f"{mat.name}:Cu:{idx}", material_id=mat.name, source="files",
                           formula=sdoc.formula, element="Cu", site_index=idx, equivalent_indices=[idx], multiplicity=1)
            db["sites"].replace_one({"site_id": site.site_id}, site.to_mongo(), upsert=True)
            site_ids.append(site.site_id)
    return site_ids


def _cli(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xanesdb.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_population_with_fake_feff_resumes_without_duplicates(db_settings, shared_data, monkeypatch):
    db = get_database(db_settings)
    site_ids = _load_cu_sites(db, shared_data / "omnixas_cu" / "raw_sample", n_materials=4)
    assert len(site_ids) >= 4
    refs = {f"feff xanes {sid}": "CuO_Cu_K_fast" for sid in site_ids}
    for update in monkeypatch_feff(monkeypatch, REF, check="cards"):
        update(refs)
    pending, n_sites, n_already = select_pending_sites(db, ["Cu"], "fast")
    assert (len(pending), n_sites, n_already) == (len(site_ids), len(site_ids), 0)
    # first run stops after 2 sites (--limit), the second finishes the rest
    s1 = populate_feff(db_settings, elements=["Cu"], preset="fast", workers=2, limit=2, feff_cmd="")
    assert (s1.n_done, s1.n_failed, s1.n_pending) == (2, 0, 2)
    # the demo's live step takes the first absorber with enough uncomputed sites, else the one with most
    assert choose_live_element(db, 2, ("Ti", "Cu")) == "Cu"
    assert choose_live_element(db, 3, ("Ti", "Cu")) == "Cu"
    s2 = populate_feff(db_settings, elements=["Cu"], preset="fast", workers=2, feff_cmd="")
    assert s2.n_already == 2 and s2.n_done == len(site_ids) - 2
    s3 = populate_feff(db_settings, elements=["Cu"], preset="fast", workers=2, feff_cmd="")
    assert s3.n_pending == 0 and s3.n_already == len(site_ids)
    assert choose_live_element(db, 2, ("Ti", "Cu")) is None
    docs = list(db["feff_tasks"].find({}, {"_id": 0}))
    assert sorted(d["site_id"] for d in docs) == sorted(site_ids)
    assert len({d["task_id"] for d in docs}) == len(docs)
    doc = FeffTaskDoc.from_mongo(docs[0])
    assert doc.state == "successful" and doc.source == "xanesdb" and doc.preset_hash == preset_hash_of("fast")
    assert doc.task_id == feff_task_key(doc.material_id, "Cu", doc.absorbing_index, "fast")
    # another preset is another task for the same site
    assert select_pending_sites(db, ["Cu"], "mp")[0][0]["task_id"].endswith(preset_hash_of("mp"))
    # no sites of another element
    assert select_pending_sites(db, ["Ti"], "fast")[1] == 0
    # a site whose input cannot be made is a failed task (kept, not retried), not a dead run
    bad = SiteDoc(site_id="mp-1182377:Cu:99", material_id="mp-1182377", source="files", formula="Ba2CuO6", element="Cu",
                  site_index=99, equivalent_indices=[99], multiplicity=1)
    db["sites"].insert_one(bad.to_mongo())
    s4 = populate_feff(db_settings, elements=["Cu"], preset="fast", workers=2, feff_cmd="")
    assert (s4.n_pending, s4.n_done, s4.n_failed) == (1, 0, 1)
    failed = db["feff_tasks"].find_one({"site_id": "mp-1182377:Cu:99"})
    assert failed["state"] == "failed" and failed["error"].startswith("input:") and "outside the structure" in failed["error"]
    assert populate_feff(db_settings, elements=["Cu"], preset="fast", feff_cmd="").n_pending == 0


def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(db_settings, shared_data):
    """SIGKILL the `xanesdb feff run` process mid-way, run it again: every site once, none lost."""
    db = get_database(db_settings)
    site_ids = _load_cu_sites(db, shared_data / "omnixas_cu" / "raw_sample", n_materials=7)
    n = len(site_ids)
    assert n >= 12
    env = {"XANESDB_FEFF_CMD": fake_feff_command(REF / "CuO_Cu_K_fast", check="cards", sleep=0.4),
           "XANESDB_HOME": str(Path(os.environ["XANESDB_HOME"]))}
    cmd = [sys.executable, "-m", "xanesdb.cli", "feff", "run", "--element", "Cu", "--workers", "2", "--no-progress"]
    # its own process group, killed whole (as a scheduler or the OOM killer ends a job): a worker left
    # running after its parent died could still store a task after the count below
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 90
    while db["feff_tasks"].count_documents({}) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed; make the fake slower"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    n_killed = db["feff_tasks"].count_documents({})
    assert 3 <= n_killed < n
    rerun = _cli(["feff", "run", "--element", "Cu", "--workers", "2", "--no-progress"], env=env, timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{n_killed} already computed, {n - n_killed} to do now" in rerun.stdout
    docs = list(db["feff_tasks"].find({}, {"_id": 0, "task_id": 1, "site_id": 1, "state": 1}))
    assert len(docs) == n
    assert sorted(d["site_id"] for d in docs) == sorted(site_ids)  # none lost, none twice
    assert all(d["state"] == "successful" for d in docs)
    # the killed run's half-done folders were cleaned up by the second run
    runs = Path(os.environ["XANESDB_HOME"]) / "feff-runs"
    assert not runs.is_dir() or list(runs.iterdir()) == []


def test_import_run_folders_and_status(db_settings, shared_data, cli_here):
    raw = shared_data / "omnixas_cu" / "raw_sample"
    r = _cli(["feff", "import", str(raw), "--source", "omnixas"])
    assert r.returncode == 0, r.stderr
    n_folders = len(list(raw.rglob("feff.inp")))
    assert f"imported {n_folders} run folders as source 'omnixas': {n_folders - 2} successful, 2 failed" in r.stdout
    db = get_database(db_settings)
    failed = list(db["feff_tasks"].find({"state": "failed"}, {"_id": 0}))
    assert sorted(d["site_id"] for d in failed) == ["mp-1101124:Cu:1", "mp-1101124:Cu:3"]
    assert all("no xmu.dat" in d["error"] and d["mu"] == [] for d in failed)
    good = FeffTaskDoc.from_mongo(db["feff_tasks"].find_one({"site_id": "mp-704645:Cu:0"}))
    assert good.code == "FEFF 9.9.1" and good.code_version == "9.9.1" and good.source == "omnixas"
    assert good.task_id.startswith("omnixas/mp-704645:Cu:0:K:") and good.cards["COREHOLE"] == "RPA"
    assert len(good.mu) == 173 and len(good.chi) == 173
    assert db["structures"].count_documents({}) == 12
    # re-import: same keys, nothing duplicated
    assert cli_here(["feff", "import", str(raw), "--source", "omnixas"]).returncode == 0
    assert db["feff_tasks"].count_documents({}) == n_folders
    st = cli_here(["feff", "status"])
    assert st.returncode == 0
    assert re.search(r"Cu\s.*omnixas\s.*omnixas\s.*\b%d\b\s.*\b2\b" % (n_folders - 2), st.stdout), st.stdout
    assert "no xmu.dat" in st.stdout


def test_import_omnixas_bundle_kept_apart(db_settings, shared_data, tmp_path, cli_here):
    """The bundle importer on the first 150 site spectra of the real bundle (the full 3366 take ~40 s)."""
    import gzip
    import json
    import shutil

    bundle = shared_data / "omnixas_cu"
    records = json.load(gzip.open(bundle / "feff9_site_spectra.json.gz"))
    keep = {"mp-704645", "mvc-5770"}
    subset = [r for r in records if r["material_id"] in keep] + [r for r in records[:150] if r["material_id"] not in keep]
    with gzip.open(tmp_path / "feff9_site_spectra.json.gz", "wt") as fh:
        json.dump(subset, fh)
    shutil.copy(bundle / "parameters.json", tmp_path / "parameters.json")
    n_failed = len(json.loads((bundle / "parameters.json").read_text())["failed_runs_report_json"]["feff_xanes"])
    db = get_database(db_settings)
    r = _cli(["feff", "import-omnixas", str(tmp_path / "feff9_site_spectra.json.gz")], timeout=300)
    assert r.returncode == 0, r.stderr
    n = len(subset)
    assert f"imported {n + n_failed} OmniXAS tasks: {n} successful, {n_failed} failed" in r.stdout
    assert db["feff_tasks"].count_documents({"source": "omnixas", "state": "successful"}) == n
    assert db["feff_tasks"].count_documents({"source": {"$ne": "omnixas"}}) == 0
    assert db["feff_tasks"].count_documents({"task_id": {"$not": {"$regex": "^omnixas/"}}}) == 0
    doc = FeffTaskDoc.from_mongo(db["feff_tasks"].find_one({"site_id": "mp-704645:Cu:0"}))
    assert doc.code == "FEFF 9.9.1" and doc.preset == "omnixas" and len(doc.mu) == 173 and doc.cards["FMS"] == "9.0 0"
    # a folder import of the same runs lands on the same keys (mp-704645 and mvc-5770 are in both)
    assert cli_here(["feff", "import", str(bundle / "raw_sample" / "mvc-5770"), "--source", "omnixas",
                     "--no-structures"]).returncode == 0
    assert cli_here(["feff", "import", str(bundle / "raw_sample" / "mp-704645"), "--source", "omnixas",
                     "--no-structures"]).returncode == 0
    assert db["feff_tasks"].count_documents({}) == n + n_failed


def test_cli_rejects_bad_input(db_settings, tmp_path, refused):
    r = _cli(["feff", "run", "--preset", "bogus"])  # one as a real process; the rest in-process
    assert r.returncode == 2 and "error: unknown FEFF preset 'bogus'" in r.stderr
    assert "is not a folder" in refused(["feff", "import", str(tmp_path / "nowhere")])
    assert "unknown element" in refused(["feff", "run", "--element", "Qq"])
    r = _cli(["feff", "run", "--element", "Ti", "--no-progress"])
    assert r.returncode == 0 and "no labelled sites match" in r.stdout


def test_batch_export_run_elsewhere_import(db_settings, shared_data, tmp_path, cli_here):
    """Inputs written here, FEFF run by the stand-alone batch runner, outputs imported: each task once."""
    db = get_database(db_settings)
    site_ids = _load_cu_sites(db, shared_data / "omnixas_cu" / "raw_sample", n_materials=3)
    n = len(site_ids)
    batch = tmp_path / "batch"
    out = _cli(["feff", "export-inputs", str(batch), "--element", "Cu", "--limit", "2"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 new site folders" in out.stdout
    out = cli_here(["feff", "export-inputs", str(batch), "--element", "Cu"])  # idempotent: only the rest is added
    assert f"{n - 2} new site folders" in out.stdout and f"({n} in the batch" in out.stdout
    # the runner needs only the standard library and FEFF: run it as a plain script, with the fake FEFF
    fake = fake_feff_command(REF / "CuO_Cu_K_fast", check="cards", sleep=0.2)
    run = subprocess.run([sys.executable, "-m", "xanesdb.jobs.feff.batch", str(batch), "--workers", "2", "--limit", "3",
                          "--feff-cmd", fake, "--pack", str(tmp_path / "part.tgz")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"done": 3' in run.stdout
    # import the packed part: 3 tasks; twice changes nothing
    for cli in (_cli, cli_here):
        imp = cli(["feff", "import-batch", str(tmp_path / "part.tgz")])
        assert imp.returncode == 0, imp.stdout + imp.stderr
    assert db["feff_tasks"].count_documents({"source": "xanesdb", "state": "successful"}) == 3
    # the rest runs, the whole folder is imported; the local population then finds nothing to do
    run = subprocess.run([sys.executable, "-m", "xanesdb.jobs.feff.batch", str(batch), "--workers", "2", "--feff-cmd", fake],
                         capture_output=True, text=True, timeout=120)
    assert f'"done": {n - 3}' in run.stdout and '"skipped": 3' in run.stdout
    # FEFF10 rewrites feff.inp in its folder: the stored input must be the one exported, kept in
    # task.json, or regenerated from the stored structure for batches exported without it
    exported = {}
    for i, tj in enumerate(sorted(batch.glob("*/task.json"))):
        task = json.loads(tj.read_text())
        exported[task["task_id"]] = task["input_hash"]
        (tj.parent / "feff.inp").write_text("TITLE rewritten by FEFF\n")
        if i % 2:
            del task["feff_inp"]
            tj.write_text(json.dumps(task))
    imp = cli_here(["feff", "import-batch", str(batch)])
    assert f"imported {n - 3} successful" in imp.stdout and "kept 3 already successful" in imp.stdout
    docs = list(db["feff_tasks"].find({}, {"_id": 0, "site_id": 1, "task_id": 1, "wall_seconds": 1, "preset": 1,
                                           "input_hash": 1, "feff_inp": 1}))
    assert sorted(d["site_id"] for d in docs) == sorted(site_ids)
    for d in docs:
        assert d["input_hash"] == exported[d["task_id"]] and "rewritten by FEFF" not in d["feff_inp"], d["feff_inp"][:80]
    for d in docs:  # the deterministic key of a local run: `feff run` would skip these sites
        mid, el, idx = d["site_id"].split(":")
        assert d["task_id"] == feff_task_key(mid, el, int(idx))
    assert all(d["wall_seconds"] > 0 and d["preset"] == "fast" for d in docs)
    assert select_pending_sites(db, ["Cu"], "fast")[0] == []


def test_batch_cli_bad_input(db_settings, tmp_path, refused):
    (tmp_path / "empty").mkdir()
    for args in (["feff", "import-batch", str(tmp_path / "empty")], ["feff", "run-batch", str(tmp_path / "empty")],
                 ["feff", "import-batch", str(tmp_path / "nope.tgz")]):
        refused(args)  # in-process: exit 2, one `error:` line, nothing on stdout, nothing written
    (tmp_path / "bad.tgz").write_bytes(b"not a tarball")
    out = _cli(["feff", "import-batch", str(tmp_path / "bad.tgz")])
    assert out.returncode == 2 and "not a readable .tar.gz" in out.stderr
    out = subprocess.run([sys.executable, "-m", "xanesdb.jobs.feff.batch", str(tmp_path / "missing")], capture_output=True, text=True)
    assert out.returncode == 2 and "export-inputs" in out.stderr


def test_order_batch_runs_new_environments_first(db_settings, shared_data, tmp_path, refused):
    """order-batch rewrites the manifest: finished folders first, the rest farthest-first, tasks stored elsewhere last."""
    db = get_database(db_settings)
    _load_cu_sites(db, shared_data / "omnixas_cu" / "raw_sample", n_materials=3)
    batch = tmp_path / "batch"
    assert _cli(["feff", "export-inputs", str(batch), "--element", "Cu"]).returncode == 0
    before = json.loads((batch / "manifest.json").read_text())["folders"]
    fake = fake_feff_command(REF / "CuO_Cu_K_fast", check="cards", sleep=0.0)
    run = subprocess.run([sys.executable, "-m", "xanesdb.jobs.feff.batch", str(batch), "--workers", "1", "--limit", "1",
                          "--feff-cmd", fake], capture_output=True, text=True, timeout=120)
    assert '"done": 1' in run.stdout, run.stdout + run.stderr
    # one task of the batch is already in the database (computed elsewhere): it goes last
    stored_name = before[-1]
    task = json.loads((batch / stored_name / "task.json").read_text())
    doc = FeffTaskDoc(task_id=task["task_id"], site_id=task["site_id"], material_id=task["material_id"], element="Cu",
                      absorbing_index=task["absorbing_index"], code="feff10-rs", preset=task["preset"],
                      preset_hash=task["preset_hash"], state="successful", feff_inp=task["feff_inp"])
    db["feff_tasks"].insert_one(doc.to_mongo())
    out = _cli(["feff", "order-batch", str(batch)])
    assert out.returncode == 0, out.stdout + out.stderr
    after = json.loads((batch / "manifest.json").read_text())["folders"]
    assert sorted(after) == sorted(before) and after[0] == before[0] and after[-1] == stored_name
    assert f"{len(before) - 2} unfinished folders ordered farthest-first against 2 computed sites" in out.stdout
    assert "1 whose task the database already has go last" in out.stdout
    # the runner follows the new order
    run = subprocess.run([sys.executable, "-m", "xanesdb.jobs.feff.batch", str(batch), "--workers", "1", "--limit", "1",
                          "--feff-cmd", fake], capture_output=True, text=True, timeout=120)
    assert (batch / after[1] / "result.json").is_file()
    assert "holds no FEFF batch" in refused(["feff", "order-batch", str(tmp_path)])


def test_diverse_order_runs_a_copy_of_a_computed_site_last(db_settings, shared_data, tmp_path, refused):
    """`feff run --order diverse`: a site whose environment was computed already (here: a copy of that
    structure under another id) is taken last, though it comes first in site_id order."""
    from xanesdb.jobs.feff.sets import feff_input_text

    db = get_database(db_settings)
    site_ids = _load_cu_sites(db, shared_data / "omnixas_cu" / "raw_sample", n_materials=4)
    mid, _, idx = site_ids[0].split(":")
    structure = Structure.from_dict(db["structures"].find_one({"material_id": mid})["structure"])
    copy = StructureDoc.from_structure(structure, "aa-copy", "files", Provenance(origin="test", source_id=mid))
    db["structures"].insert_one(copy.to_mongo())
    db["sites"].insert_one(SiteDoc(site_id=f"aa-copy:Cu:{idx}", material_id="aa-copy", source="files", formula=copy.formula,
                                   element="Cu", site_index=int(idx), equivalent_indices=[int(idx)], multiplicity=1).to_mongo())
    text = feff_input_text(structure, int(idx), "fast")
    db["feff_tasks"].insert_one(FeffTaskDoc(task_id=feff_task_key(mid, "Cu", int(idx)), site_id=site_ids[0], material_id=mid,
                                            element="Cu", absorbing_index=int(idx), code="feff10-rs", preset="fast",
                                            preset_hash=preset_hash_of("fast"), state="successful", feff_inp=text).to_mongo())
    by_id = [s["site_id"] for s in select_pending_sites(db, ["Cu"], "fast")[0]]
    diverse = [s["site_id"] for s in select_pending_sites(db, ["Cu"], "fast", order="diverse")[0]]
    assert sorted(by_id) == sorted(diverse) and by_id[0] == f"aa-copy:Cu:{idx}" and diverse[-1] == f"aa-copy:Cu:{idx}"
    assert [s["site_id"] for s in select_pending_sites(db, ["Cu"], "fast", limit=2, order="diverse")[0]] == diverse[:2]
    # export-inputs writes the batch in the same order
    batch = tmp_path / "batch"
    assert _cli(["feff", "export-inputs", str(batch), "--element", "Cu", "--order", "diverse"]).returncode == 0
    folders = json.loads((batch / "manifest.json").read_text())["folders"]
    assert folders == [s.replace(":", "_") for s in (select_pending_sites(db, ["Cu"], "fast", order="diverse")[0][i]["task_id"]
                                                     for i in range(len(diverse)))]
    for args in (["feff", "run", "--element", "Cu", "--order", "random"], ["feff", "export-inputs", str(batch), "--order", "x"]):
        assert "--order" in refused(args), args
