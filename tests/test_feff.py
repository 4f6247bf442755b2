"""Unit tests of the FEFF layer: presets, deterministic inputs, parsing, validation, error ladder,
runners (real FEFF10 on a tiny cluster, external commands, timeouts) and the Maker with the fake FEFF."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure

from xanesdb.jobs.feff import run as feff_run
from xanesdb.jobs.feff.makers import FeffXanesMaker
from xanesdb.jobs.feff.task import compute_feff_task, feff_task_key
from xanesdb.jobs.feff.parse import detect_code, parse_feff_cards, parse_xmu
from xanesdb.jobs.feff.sets import (
    PRESETS,
    XANES_STAGES,
    FeffPreset,
    feff_input_text,
    get_preset,
    preset_cards,
    preset_hash_of,
    stages_for_cards,
)
from xanesdb.jobs.feff.validate import next_action, tabulated_k_edge, validate_spectrum
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas import FeffTaskDoc
from xanesdb.testing.feff import check_feff_inputs, fake_feff_command, monkeypatch_feff

REF = Path(__file__).parent / "test_data" / "feff"
RAW = "omnixas_cu/raw_sample"


def _case_structure(case: str) -> Structure:
    return Structure.from_dict(json.loads((REF / case / "inputs" / "structure.json").read_text()))


def _tiny_preset() -> FeffPreset:
    meta = json.loads((REF / "CuO_Cu_K_tiny" / "inputs" / "meta.json").read_text())
    return FeffPreset(name=meta["preset"], radius=meta["radius"], user_tag_settings=meta["user_tag_settings"])


@pytest.fixture
def mock_feff(monkeypatch):
    yield from monkeypatch_feff(monkeypatch, REF)


@pytest.fixture
def cuo() -> Structure:
    return _case_structure("CuO_Cu_K_fast")


# ------------------------------------------------------------------ presets and inputs
def test_feff_inp_is_byte_identical_and_matches_reference(cuo):
    a = feff_input_text(cuo, 0, "fast")
    b = feff_input_text(Structure.from_dict(cuo.as_dict()), 0, "fast")
    assert a == b
    # the reference run was made from this very text
    assert a == (REF / "CuO_Cu_K_fast" / "inputs" / "feff.inp").read_text()
    # another site or preset gives another input
    assert feff_input_text(cuo, 1, "fast") != a
    assert feff_input_text(cuo, 0, "mp") != a


def test_presets_cards_and_hash():
    fast, mp = preset_cards("fast"), preset_cards("mp")
    assert "SCF" not in fast and "LDOS" not in fast and fast["FMS"] == "6.0 0"
    assert mp["SCF"].split()[0] == "4.5" and mp["FMS"].split()[0] == "7.5" and mp["COREHOLE"] == "FSR"
    assert fast["RADIUS"] == "8" and mp["RADIUS"] == "10"
    assert preset_hash_of("fast") != preset_hash_of("mp")
    assert preset_hash_of("fast") == preset_hash_of(get_preset("fast"))
    # the hash does not depend on the site
    assert feff_task_key("mp-1", "Cu", 0, "fast").endswith(preset_hash_of("fast"))
    assert feff_task_key("mp-1", "Cu", 0, "fast") == f"mp-1:Cu:0:K:{preset_hash_of('fast')}"
    with pytest.raises(XanesdbUserError, match="unknown FEFF preset 'bogus'"):
        get_preset("bogus")
    assert stages_for_cards(fast) == list(XANES_STAGES)
    assert "screen" in stages_for_cards({**fast, "COREHOLE": "RPA"})
    # scfwide: scflite's physics over a wider XANES range (kmax 5.0 1/A, ~95 eV), so its own hash
    lite, wide = preset_cards("scflite"), preset_cards("scfwide")
    assert lite["XANES"].split()[0] == "3.7" and wide["XANES"] == "5.0 .04 .1"
    assert {k: v for k, v in wide.items() if k != "XANES"} == {k: v for k, v in lite.items() if k != "XANES"}
    assert preset_hash_of("scfwide") != preset_hash_of("scflite")
    # scfrpa: scflite's physics with an RPA-screened core hole, which needs FEFF10's SCREEN stage
    rpa = preset_cards("scfrpa")
    assert rpa["COREHOLE"] == "RPA" and lite["COREHOLE"] == "FSR"
    assert {k: v for k, v in rpa.items() if k != "COREHOLE"} == {k: v for k, v in lite.items() if k != "COREHOLE"}
    assert "screen" in stages_for_cards(rpa) and "screen" not in stages_for_cards(lite)
    assert preset_hash_of("scfrpa") not in {preset_hash_of(p) for p in ("scflite", "scfwide", "scf", "fast", "mp")}
    # the settings (and the --preset help) name exactly these presets
    from xanesdb.platform.settings import FEFF_PRESET_NAMES

    assert FEFF_PRESET_NAMES == tuple(PRESETS)


def test_preset_with_cards_drops_deletion():
    p = get_preset("fast").with_cards(FMS="5 0")
    assert preset_cards(p)["FMS"] == "5 0" and "SCF" not in preset_cards(p)
    p2 = get_preset("fast").with_cards(SCF="4.5 0 100 0.05 3")
    assert preset_cards(p2)["SCF"] == "4.5 0 100 0.05 3" and "LDOS" not in preset_cards(p2)


def test_input_check_of_fake_feff_catches_wrong_inputs(tmp_path, cuo):
    (tmp_path / "feff.inp").write_text(feff_input_text(cuo, 0, "fast"))
    check_feff_inputs(tmp_path / "feff.inp", REF / "CuO_Cu_K_fast" / "inputs", check="full")
    (tmp_path / "feff.inp").write_text(feff_input_text(cuo, 0, "mp"))
    with pytest.raises(AssertionError, match="cards differ"):
        check_feff_inputs(tmp_path / "feff.inp", REF / "CuO_Cu_K_fast" / "inputs")
    moved = cuo.copy()
    moved.translate_sites([2], [0.01, 0, 0])
    (tmp_path / "feff.inp").write_text(feff_input_text(moved, 0, "fast"))
    with pytest.raises(AssertionError, match="ATOMS row|cluster has"):
        check_feff_inputs(tmp_path / "feff.inp", REF / "CuO_Cu_K_fast" / "inputs", check="full")


# ------------------------------------------------------------------ parsing and validation
def test_parse_feff10_and_feff9_outputs(shared_data):
    x = parse_xmu(REF / "CuO_Cu_K_fast" / "outputs" / "xmu.dat")
    assert x.code == "FEFF 10.0.0" and len(x.mu) == len(x.energies) == len(x.chi) > 50
    assert 8975 < x.edge_energy < 9000
    folder = shared_data / RAW / "mp-704645" / "FEFF-XANES" / "000_Cu"
    x9 = parse_xmu(folder / "xmu.dat")
    assert x9.code == "FEFF 9.9.1" and len(x9.mu) == 173 and detect_code(folder) == "FEFF 9.9.1"
    cards = parse_feff_cards((folder / "feff.inp").read_text())
    params = json.loads((shared_data / "omnixas_cu" / "parameters.json").read_text())
    expected = {k: v.strip() for k, v in params["feff_xanes"]["cards"].items()}
    assert {k: cards[k] for k in expected} == expected | {"EGRID": "k_grid -1 0 0.04\nk_grid 0 6 0.04"}


def test_validate_spectrum_reasons():
    e = [8970.0 + i for i in range(60)]
    good = [0.0 if x < 8985 else 1.0 + 0.01 * (x - 8985) for x in e]
    assert validate_spectrum(e, good, "Cu") == (None, [])
    assert validate_spectrum([], [], "Cu")[0].startswith("missing output")
    bad = list(good)
    bad[30] = float("nan")
    assert "NaN" in validate_spectrum(e, bad, "Cu")[0]
    neg = list(good)
    neg[40] = -0.5
    assert validate_spectrum(e, neg, "Cu")[0].startswith("negative absorption")
    assert "from the tabulated Cu K-edge" in validate_spectrum(e, good, "Cu", edge_energy=9500.0)[0]
    # a Ti spectrum labelled Cu: the edge is 4 keV off
    assert "tabulated Cu K-edge" in validate_spectrum([4960.0 + i for i in range(60)], good, "Cu")[0]
    assert validate_spectrum(e, good, "Cu", scf_converged=False)[0].startswith("non-convergence")
    assert tabulated_k_edge("Ti") == 4966.0 and 8000 < tabulated_k_edge("Ag") * 0 + 9000


def test_error_ladder_mixing_then_fms():
    mp = preset_cards("mp")
    a1 = next_action("non-convergence: SCF did not converge", mp, [])
    assert a1.action == {"SCF": "4.5 0 100 0.05 3"}
    a2 = next_action("non-convergence: SCF did not converge", {**mp, **a1.action}, [a1])
    assert a2.action == {"FMS": "6.5 0"}
    fast = preset_cards("fast")
    t1 = next_action("timeout: FEFF10 ran past 10 s and was killed", fast, [])
    assert t1.action == {"FMS": "5 0"}
    t2 = next_action("timeout: ...", {**fast, "FMS": "5 0"}, [t1])
    assert t2.action == {"FMS": "4 0"}
    assert next_action("timeout: ...", {**fast, "FMS": "4 0"}, [t1, t2]) is None  # not below 4 A
    assert next_action("x", fast, [t1, t2, t2]) is None  # at most 3 actions


# ------------------------------------------------------------------ runners
def test_real_feff10_tiny_cluster_matches_stored_reference(tmp_path):
    """Runs the real FEFF10 (feff10-rs) in its worker process on a 3 A FMS cluster (~5 s)."""
    structure = _case_structure("CuO_Cu_K_tiny")
    t0 = time.perf_counter()
    doc = compute_feff_task(structure, 0, "mp-704645", preset=_tiny_preset(), workdir=tmp_path, feff_cmd=None, timeout=120)
    assert time.perf_counter() - t0 < 60
    assert doc.state == "successful", doc.error
    assert doc.code == "feff10-rs" and doc.code_version
    assert set(doc.stage_seconds) == set(XANES_STAGES)
    assert doc.wall_seconds >= sum(doc.stage_seconds.values()) * 0.9
    ref = parse_xmu(REF / "CuO_Cu_K_tiny" / "outputs" / "xmu.dat")
    assert len(doc.mu) == len(ref.mu)
    assert max(abs(a - b) for a, b in zip(doc.mu, ref.mu)) < 1e-5  # machines agree to ~3e-7
    assert doc.feff_inp == (REF / "CuO_Cu_K_tiny" / "inputs" / "feff.inp").read_text()
    assert doc.cards["FMS"] == "3.0 0" and doc.actions == []


def test_external_command_timeout_kills_and_laddder_records(tmp_path, cuo):
    t0 = time.perf_counter()
    res = feff_run.run_feff_command(f"{sys.executable} -c 'import time; time.sleep(60)'", tmp_path, timeout=1.0)
    assert time.perf_counter() - t0 < 15
    assert not res.ok and res.returncode is None and res.error.startswith("timeout")
    # a crashing FEFF: return code counts, the ladder shrinks FMS twice (6 -> 5 -> 4 A), then gives up
    case = REF / "CuO_Cu_K_fast"
    cmd = fake_feff_command(case) + " --fail"
    doc = compute_feff_task(cuo, 0, "mp-704645", preset="fast", workdir=tmp_path / "w", feff_cmd=cmd, timeout=60)
    assert doc.state == "failed" and "exited with code 3" in doc.error
    assert [a.action for a in doc.actions] == [{"FMS": "5 0"}, {"FMS": "4 0"}]
    assert doc.mu == [] and doc.task_id == feff_task_key("mp-704645", "Cu", 0, "fast")
    # the external command path with a replaying fake succeeds
    ok = compute_feff_task(cuo, 0, "mp-704645", preset="fast", workdir=tmp_path / "ok", feff_cmd=fake_feff_command(case), timeout=60)
    assert ok.state == "successful" and len(ok.mu) > 50 and ok.code == "FEFF 10.0.0"


def test_missing_output_is_a_failed_task(tmp_path, cuo):
    doc = compute_feff_task(cuo, 0, "mp-704645", preset="fast", workdir=tmp_path, feff_cmd=f"{sys.executable} -c pass",
                            timeout=30, max_actions=0)
    assert doc.state == "failed" and doc.error.startswith("missing output") and doc.actions == []


# ------------------------------------------------------------------ Maker with the fake FEFF
def test_feff_xanes_maker_with_fake(mock_feff, tmp_path, memory_jobstore, cuo):
    from jobflow import run_locally

    mock_feff({"feff xanes": "CuO_Cu_K_fast"})
    job = FeffXanesMaker(store_task=False).make(cuo, 0, "mp-704645")
    responses = run_locally(job, store=memory_jobstore, create_folders=True, root_dir=tmp_path, ensure_success=True)
    doc = responses[job.uuid][1].output
    assert isinstance(doc, FeffTaskDoc)
    assert doc.state == "successful" and doc.edge == "K" and len(doc.mu) == len(doc.energies) > 50
    assert doc.task_id == feff_task_key("mp-704645", "Cu", 0, "fast")
    assert doc.preset == "fast" and doc.cards == preset_cards("fast") and doc.stage_seconds["fms"] > 1
    # the Maker round-trips (contract of every Maker)
    m2 = FeffXanesMaker.from_dict(FeffXanesMaker(preset="mp").as_dict())
    assert m2.preset == "mp" and m2.name == "feff xanes"


def test_fake_names_missing_reference(mock_feff, tmp_path, cuo):
    mock_feff({"other job": "CuO_Cu_K_fast"})
    with pytest.raises(KeyError, match="no reference for run 'feff xanes'"):
        compute_feff_task(cuo, 0, "mp-704645", workdir=tmp_path, feff_cmd=None, name="feff xanes")


def test_fan_out_flow_one_job_per_site(monkeypatch, tmp_path, memory_jobstore, cuo):
    """The fan-out job (in an in-memory database) replaces itself by one FEFF job per pending site."""
    from jobflow import run_locally
    from maggma.stores import MemoryStore

    from xanesdb.jobs.database import use_database
    from xanesdb.jobs.feff.makers import run_pending_feff

    for update in monkeypatch_feff(monkeypatch, REF, check="cards"):
        # siblings get distinct names ("feff xanes <site_id>"); they key the reference data
        update({f"feff xanes mp-704645:Cu:{i}": "CuO_Cu_K_fast" for i in (0, 1)})
    sites = [{"material_id": "mp-704645", "element": "Cu", "site_index": i} for i in (0, 1)]
    fan = run_pending_feff(cuo.as_dict(), "mp-704645", sites, FeffXanesMaker())
    memory = MemoryStore("xanesdb")
    memory.connect()
    db = memory._collection.database  # an in-memory (mongomock) database
    with use_database(db):
        responses = run_locally(fan, store=memory_jobstore, create_folders=True, root_dir=tmp_path, ensure_success=True)
    docs = [r[1].output for r in responses.values() if isinstance(r[1].output, FeffTaskDoc)]
    assert sorted(d.site_id for d in docs) == ["mp-704645:Cu:0", "mp-704645:Cu:1"]
    assert all(d.state == "successful" for d in docs)
    assert sorted(db["feff_tasks"].distinct("site_id")) == ["mp-704645:Cu:0", "mp-704645:Cu:1"]


def test_real_scf_failure_climbs_the_ladder(tmp_path):
    """Replays a real FEFF10 failure (mp preset, Ba2CuO6: SCF gave up, xsph crashed): the task is a
    non-convergence, the ladder changes the SCF mixing first, then shrinks FMS; all recorded."""
    from xanesdb.jobs.feff.parse import scf_converged

    case = REF / "Ba2CuO6_Cu_K_mp_scf_fail"
    assert scf_converged(case / "outputs") is False
    assert scf_converged(REF / "CuO_Cu_K_fast" / "outputs") is None  # no SCF ran
    structure = _case_structure("Ba2CuO6_Cu_K_mp_scf_fail")
    # the first attempt's input is exactly the one the real run got
    (tmp_path / "feff.inp").write_text(feff_input_text(structure, 4, "mp"))
    check_feff_inputs(tmp_path / "feff.inp", case / "inputs", check="full")
    cmd = fake_feff_command(case, check="none") + " --exit-code 1"
    doc = compute_feff_task(structure, 4, "mp-1182377", preset="mp", workdir=tmp_path / "w", feff_cmd=cmd, timeout=60)
    assert doc.state == "failed" and doc.error.startswith("non-convergence: SCF did not converge")
    assert [a.action for a in doc.actions] == [{"SCF": "4.5 0 100 0.05 3"}, {"FMS": "6.5 0"}, {"FMS": "5.5 0"}]
    assert doc.actions[0].error.startswith("non-convergence")
    assert doc.cards["SCF"] == "4.5 0 100 0.05 3" and doc.cards["FMS"] == "5.5 0"  # what the last attempt ran
    assert doc.task_id == feff_task_key("mp-1182377", "Cu", 4, "mp")  # the key stays the preset's


def test_stopping_kills_and_starts_no_new_feff(tmp_path):
    """An executor's kill switch kills its running FEFF and starts no more; other executors run on."""
    import threading

    holder = {}
    switch, other = feff_run.FeffKillSwitch(), feff_run.FeffKillSwitch()
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)'"

    def slow():
        try:
            feff_run.run_feff_command(sleeper, tmp_path, timeout=60, kill_switch=switch)
        except feff_run.FeffInterrupted as err:
            holder["err"] = err

    t = threading.Thread(target=slow)
    t0 = time.perf_counter()
    t.start()
    while not switch.n_running and time.perf_counter() - t0 < 10:
        time.sleep(0.05)
    assert other.kill() == 0 and switch.n_running == 1  # another executor's switch leaves this run alone
    assert switch.kill() == 1
    t.join(timeout=15)
    assert "killed" in str(holder["err"]) and time.perf_counter() - t0 < 15
    with pytest.raises(feff_run.FeffInterrupted, match="no new FEFF run"):
        feff_run.run_feff_command(f"{sys.executable} -c pass", tmp_path, timeout=10, kill_switch=switch)
    # nothing process-wide to reset: a new switch, or none, runs
    assert feff_run.run_feff_command(f"{sys.executable} -c pass", tmp_path, timeout=30).ok
    assert feff_run.run_feff_command(f"{sys.executable} -c pass", tmp_path, timeout=30,
                                     kill_switch=feff_run.FeffKillSwitch()).ok


def test_failure_reason_is_feffs_own_message():
    """A failed FEFF10 run's reason is FEFF's fatal-error line, not the .feff.error boilerplate after it."""
    from xanesdb.jobs.feff.run import failure_reason

    tail = """Calculating SCF potentials ...
    4  9.50111E-01  4.99590E-01  1.15000E+00
:WARNING   Fatal error in subroutine corval. Try to reduce ca1 in the SCF card.
If this does not help, SEND a bug report to the AUTHORS.
CORVAL-1
Traceback (most recent call last):
  File "/work/main/xanesdb/jobs/feff/run.py", line 242, in <module>
_feff10.FeffPipelineError: stage 'pot' failed (exit code: 1): worker exited with exit status: 1
.feff.error:  Starting FEFF9 module pot.  If this message is still here after the module fini
 shes running, it must have crashed. The content of this file is wiped on succes
 sful termination.
"""
    assert failure_reason(tail) == "Fatal error in subroutine corval. Try to reduce ca1 in the SCF card."
    assert failure_reason(tail.replace("Fatal error", "Problem")).startswith("stage 'pot' failed")
    assert failure_reason("") == "" and failure_reason("one line\n") == "one line"


# ------------------------------------------------------------------ batch order by local environment
def test_cluster_and_fingerprint_of_a_feff_inp(cuo):
    from xanesdb.jobs.feff.diversity import cluster_from_feff_inp, environment_fingerprint, fingerprint_distance

    text = feff_input_text(cuo, 0, "fast")
    z, r = cluster_from_feff_inp(text)
    # the same neighbours pymatgen finds around the absorber (FEFF input distances are rounded to 1e-5 Å)
    nbrs = sorted(n.nn_distance for n in cuo.get_neighbors(cuo[0], 6.0))
    assert np.allclose(np.sort(r[r <= 6.0 - 1e-4]), [d for d in nbrs if d <= 6.0 - 1e-4], atol=1e-4)
    assert set(z) == {8, 29}
    # another Cu site of CuO is symmetry-equivalent: same cluster, same fingerprint
    eq = [i for i, s in enumerate(cuo) if s.specie.symbol == "Cu" and i != 0][0]
    a, b = environment_fingerprint(text), environment_fingerprint(feff_input_text(cuo, eq, "fast"))
    assert fingerprint_distance(a, b) < 1e-6
    # the ATOMS order does not matter; turning an O neighbour into S moves weight to another channel
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "ATOMS") + 3
    end = next(i for i, ln in enumerate(lines) if ln.strip() == "END")
    shuffled = "\n".join(lines[:start] + [lines[start]] + lines[start + 1:end][::-1] + lines[end:])
    assert fingerprint_distance(environment_fingerprint(shuffled), a) < 1e-9
    swapped = cuo.copy()
    swapped.replace(next(i for i, s in enumerate(cuo) if s.specie.symbol == "O"), "S")
    assert fingerprint_distance(environment_fingerprint(feff_input_text(swapped, 0, "fast")), a) > 0.1
    with pytest.raises(ValueError, match="POTENTIALS"):
        cluster_from_feff_inp("TITLE nothing here\nEND\n")


def test_farthest_first_puts_repeats_of_computed_environments_last():
    from xanesdb.jobs.feff.diversity import farthest_first

    rng = np.random.default_rng(0)
    base = rng.random((4, 50))
    candidates = [("copy-of-done", "Fe", base[0] + 1e-4), ("new", "Fe", base[1]), ("near-new", "Fe", base[1] + 1e-3),
                  ("other", "Fe", base[2]), ("mn-first", "Mn", base[0])]
    ranked = farthest_first(candidates, done=[("Fe", base[0])])
    keys = [r.key for r in ranked]
    assert sorted(keys) == sorted(k for k, _, _ in candidates)  # a permutation: every site still runs
    assert keys[0] == "mn-first" and ranked[0].distance == np.inf  # nothing of Mn computed: Mn is new
    # then the two distinct Fe environments (either one of the new / near-new pair), then the repeats
    assert "other" in keys[1:3] and len({"new", "near-new"} & set(keys[1:3])) == 1
    assert "copy-of-done" in keys[3:]
    assert all(r.distance < 0.01 for r in ranked[3:]) and ranked[1].distance > ranked[3].distance
    # an Fe site computed does not push back a Mn site with the same fingerprint
    assert farthest_first([("a", "Mn", base[0])], done=[("Fe", base[0])])[0].distance == np.inf
    assert farthest_first([]) == []


def test_site_fingerprint_equals_the_feff_inp_one(cuo):
    from xanesdb.jobs.feff.diversity import environment_fingerprint, fingerprint_distance, site_fingerprint

    for i in range(len(cuo)):
        if cuo[i].specie.symbol == "Cu":
            d = fingerprint_distance(site_fingerprint(cuo, i), environment_fingerprint(feff_input_text(cuo, i, "fast")))
            assert d < 1e-6, (i, d)
