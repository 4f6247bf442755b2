"""ChemEnv site labelling: known geometries, index mapping, the job, batches into the real server."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xanesdb.jobs.labels import (
    label_sites_chemenv,
    label_structure,
    label_structures,
    map_sites_to_lgf,
)
from xanesdb.schemas.site import SiteDoc
from xanesdb.schemas.structure import Provenance, StructureDoc

STRUCTURES = Path(__file__).parent / "test_data" / "structures"
CASES = sorted(p.stem for p in STRUCTURES.glob("*.json"))


def load_case(name: str) -> tuple[Structure, dict]:
    """A literature structure built with ``Structure.from_spacegroup`` from its JSON record."""
    rec = json.loads((STRUCTURES / f"{name}.json").read_text())
    lat = rec["lattice"]
    a = lat["a"]
    gamma = 120 if rec["spacegroup"].startswith("P6") else 90
    lattice = Lattice.from_parameters(a, lat.get("b", a), lat.get("c", a), 90, 90, gamma)
    return Structure.from_spacegroup(rec["spacegroup"], lattice, rec["species"], rec["coords"]), rec


def structure_doc(name: str, structure: Structure | None = None) -> StructureDoc:
    structure = structure if structure is not None else load_case(name)[0]
    return StructureDoc.from_structure(
        structure, f"lit:{name}", "files", Provenance(origin="literature", reference=load_case(name)[1]["reference"])
    )


def n_close_oxygens(structure: Structure, index: int, r: float = 2.15) -> int:
    return sum(1 for n in structure.get_neighbors(structure[index], r) if n.specie.symbol == "O")


# ----------------------------------------------------------------------------- known geometries
@pytest.mark.parametrize("name", CASES)
def test_known_geometries(name):
    structure, rec = load_case(name)
    docs = label_structure(structure, name, "literature", elements=list(rec["expected"]))
    for el, symbols in rec["expected"].items():
        got = sorted(d.chemenv_symbol for d in docs if d.element == el)
        assert got == sorted(symbols), f"{name} {el}: {got}"
    for d in docs:
        assert d.state == "successful"
        assert d.multiplicity == len(d.equivalent_indices)
        assert d.site_index == min(d.equivalent_indices)
        assert all(structure[i].specie.symbol == d.element for i in d.equivalent_indices)
        assert d.chemenv.candidates[0].symbol == d.chemenv_symbol
        assert [c.csm for c in d.chemenv.candidates] == sorted(c.csm for c in d.chemenv.candidates)
        assert d.coordination_number == len(d.bond_lengths) == len(d.neighbor_elements)
        if name != "V2O5":  # the textbook sites: both strategies agree and nothing is flagged
            assert d.strategies_agree and not d.ambiguous, d.ambiguity_reasons
            assert d.lce_class == {"T:4": "T4", "S:5": "S5", "O:6": "O6"}[d.chemenv_symbol]
    if "expected_default" in rec:
        for el, symbols in rec["expected_default"].items():
            assert sorted(d.chemenv_default.symbol for d in docs if d.element == el) == sorted(symbols)


def test_v2o5_is_the_hard_case():
    structure, _ = load_case("V2O5")
    (doc,) = label_structure(structure, "V2O5", "literature", elements=["V"])
    # cutoff 1.2: the 1.58 A vanadyl bond sets the scale, the 2.02 A basal O drops out
    assert doc.chemenv_symbol == "T:4" and 3.5 < doc.csm < 4.2
    assert doc.chemenv.distance_cutoff == 1.2 and doc.coordination_number == 4
    assert max(doc.bond_lengths) < 1.9 and min(doc.bond_lengths) == pytest.approx(1.575, abs=0.01)
    # cutoff 1.4: the textbook square pyramid
    assert doc.chemenv_default.symbol == "S:5" and doc.chemenv_default.distance_cutoff == 1.4
    assert doc.chemenv_default.coordination_number == 5 and doc.chemenv_default.csm < 2.5
    assert doc.lce_class == "T4" and doc.strategies_agree is False
    assert doc.ambiguous
    assert any("disagree" in r for r in doc.ambiguity_reasons)
    assert any("poor fit" in r for r in doc.ambiguity_reasons)
    assert doc.oxidation_state == pytest.approx(5.0)


def test_descriptors_rutile():
    structure, _ = load_case("rutile_TiO2")
    (doc,) = label_structure(structure, "rutile", "literature", elements=["Ti"])
    assert doc.site_id == "rutile:Ti:0" and doc.multiplicity == 2 and doc.wyckoff == "2a"
    assert doc.bond_lengths == pytest.approx([1.9486] * 4 + [1.98] * 2, abs=2e-3)
    assert doc.mean_bond_length == pytest.approx(np.mean(doc.bond_lengths), abs=1e-4)
    assert doc.neighbor_elements == ["O"] * 6
    assert doc.oxidation_state == pytest.approx(4.0)
    assert doc.csm == doc.chemenv.csm and doc.csm < 1.0


def test_co3o4_two_unique_sites_and_valences():
    structure, _ = load_case("spinel_Co3O4")
    docs = {d.chemenv_symbol: d for d in label_structure(structure, "co3o4", "literature", elements=["Co"])}
    assert set(docs) == {"T:4", "O:6"}
    assert docs["T:4"].multiplicity == 8 and docs["O:6"].multiplicity == 16
    assert docs["T:4"].oxidation_state == pytest.approx(2) and docs["O:6"].oxidation_state == pytest.approx(3)
    assert set(docs["T:4"].equivalent_indices).isdisjoint(docs["O:6"].equivalent_indices)


def test_other_elements_can_be_asked_for():
    structure, _ = load_case("hercynite_FeAl2O4")
    docs = label_structure(structure, "hercynite", "literature", elements=["Al", "Fe"])
    assert {(d.element, d.chemenv_symbol, d.lce_class) for d in docs} == {("Al", "O:6", "O6"), ("Fe", "T:4", "T4")}


# ----------------------------------------------------------------------------- index mapping
def _shuffled_primitive_co3o4(seed: int = 3) -> Structure:
    conv, _ = load_case("spinel_Co3O4")
    prim = conv.get_primitive_structure()
    order = np.random.default_rng(seed).permutation(len(prim))
    return Structure.from_sites([prim[int(i)] for i in order])


@pytest.mark.parametrize("refinement", ["none", "refined"])
def test_indices_map_back_to_the_input_structure(refinement):
    """A shuffled primitive cell: the refined structure ChemEnv works on has another cell and order."""
    structure = _shuffled_primitive_co3o4()
    assert len(structure) == 14
    docs = label_structure(structure, "co3o4-shuffled", "literature", elements=["Co"],
                           structure_refinement=refinement)
    assert sorted(d.chemenv_symbol for d in docs) == ["O:6", "T:4"]
    for d in docs:
        expect = {"T:4": 4, "O:6": 6}[d.chemenv_symbol]
        for i in d.equivalent_indices:  # every index names a Co with that many O neighbours
            assert structure[i].specie.symbol == "Co"
            assert n_close_oxygens(structure, i) == expect
        assert sorted(d.bond_lengths) == pytest.approx(sorted(
            n.nn_distance for n in structure.get_neighbors(structure[d.site_index], 2.15)), abs=1e-3)


def test_map_sites_to_lgf_on_a_refined_cell():
    from pymatgen.analysis.chemenv.coordination_environments.coordination_geometry_finder import (
        LocalGeometryFinder,
    )

    structure = _shuffled_primitive_co3o4(seed=11)
    lgf = LocalGeometryFinder()
    lgf.setup_parameters(centering_type="centroid", include_central_site_in_centroid=True,
                         structure_refinement="refined")
    lgf.setup_structure(structure)
    assert len(lgf.structure) == 56  # conventional cell, sorted: the indices differ
    mapping = map_sites_to_lgf(structure, lgf.structure, range(len(structure)),
                               lgf.spg_analyzer.get_symmetry_dataset())
    for i, j in mapping.items():
        assert lgf.structure[j].specie == structure[i].specie
        assert n_close_oxygens(lgf.structure, j) == n_close_oxygens(structure, i)
    with pytest.raises(ValueError, match="another cell"):
        map_sites_to_lgf(structure, lgf.structure, [0])


def test_results_do_not_carry_over_between_structures():
    """Labelling one structure after another gives the same answer as labelling it alone."""
    alone = label_structure(load_case("wurtzite_CoO")[0], "w", "literature", elements=["Co"])
    label_structure(load_case("V2O5")[0], "v", "literature", elements=["V"])
    after = label_structure(load_case("wurtzite_CoO")[0], "w", "literature", elements=["Co"])
    assert [d.chemenv.model_dump() for d in after] == [d.chemenv.model_dump() for d in alone]


def test_agrees_with_independent_chemenv_references(shared_data):
    """ChemEnv 1.4 results stored by pycoordinationnet (small_sets) match chemenv_default."""
    records = json.load(gzip.open(shared_data / "structures" / "small_sets.json.gz"))
    checked = 0
    for rec in records:
        if "chemenv" not in rec or len(rec["structure"]["sites"]) > 24:
            continue
        structure = Structure.from_dict(rec["structure"])
        ref = {s["site_index"]: s["ce_symbol"] for s in rec["chemenv"]["sites"]}
        elements = sorted({s["element"] for s in rec["chemenv"]["sites"]})
        for d in label_structure(structure, rec["material_id"], "small_sets", elements=elements):
            assert d.chemenv_default.symbol == ref[d.site_index], (rec["formula"], d.site_id)
            checked += 1
    assert checked >= 15


# ----------------------------------------------------------------------------- job and batches
def test_label_sites_chemenv_job(memory_jobstore):
    from jobflow import run_locally

    job = label_sites_chemenv(structure_doc("YBaCo2O5").model_dump(mode="json"), elements=["Co"])
    responses = run_locally(job, store=memory_jobstore, ensure_success=True)
    out = responses[job.uuid][1].output
    assert len(out) == 1 and out[0]["chemenv_symbol"] == "S:5" and out[0]["lce_class"] == "S5"
    SiteDoc.model_validate(out[0])
    # the versions of what made the label are recorded on it
    assert {"xanesdb", "pymatgen", "spglib"} <= set(out[0]["library_versions"])


def test_bad_structure_becomes_failed_docs():
    structure, _ = load_case("rocksalt_NiO")
    structure.replace_species({"Ni": {"Ni": 0.5, "Mg": 0.5}})  # disordered: ChemEnv cannot label it
    doc = StructureDoc.from_structure(structure, "disordered", "files", Provenance(origin="file"))
    out = label_sites_chemenv.original(doc, elements=["Ni"])
    assert out == [] or all(d["state"] == "failed" for d in out)


@pytest.mark.integration
def test_batch_labelling_is_idempotent_and_times_out(db_settings):
    from xanesdb.platform.stores import get_database, get_store

    names = ["rutile_TiO2", "wurtzite_CoO", "rocksalt_NiO", "V2O5", "YBaFe2O5"]
    docs = [structure_doc(n) for n in names]
    store = get_store("sites", db_settings)
    calls = []
    with store:
        summary = label_structures(docs, store=store, settings=db_settings, workers=2, timeout=120,
                                   progress=lambda *a: calls.append(a))
    assert summary.succeeded == 5 and summary.failed == 0 and summary.skipped == 0
    assert calls[-1] == (5, 0, 0)
    db = get_database(db_settings)
    sites = db["sites"]
    assert sites.count_documents({}) == 5
    assert sites.count_documents({"state": "successful", "lce_class": {"$ne": None}}) == 5
    v = sites.find_one({"material_id": "lit:V2O5"})
    assert v["chemenv_symbol"] == "T:4" and v["chemenv_default"]["symbol"] == "S:5" and v["ambiguous"]
    stamps = {d["site_id"]: d["last_updated"] for d in sites.find()}

    # re-running changes nothing; --force relabels in place (same keys, same counts)
    again = label_structures(docs, settings=db_settings, workers=2, timeout=120)
    assert again.skipped == 5 and again.structures == 0
    assert {d["site_id"]: d["last_updated"] for d in sites.find()} == stamps
    forced = label_structures(docs[:2], settings=db_settings, workers=1, timeout=120, force=True)
    assert forced.succeeded == 2 and sites.count_documents({}) == 5

    # a structure past its time limit: the worker is killed and the failure recorded
    slow = structure_doc("spinel_Co3O4")
    res = label_structures([slow], settings=db_settings, workers=1, timeout=0.01, elements=["Co"])
    assert res.failed == 1 and "timeout" in res.failures["lit:spinel_Co3O4"]
    failed = list(sites.find({"material_id": "lit:spinel_Co3O4"}))
    assert len(failed) == 2 and all(d["state"] == "failed" and "timeout" in d["error"] for d in failed)
    assert sites.count_documents({}) == 7


@pytest.mark.integration
def test_cli_sites_label(db_settings, capsys):
    from xanesdb.cli import main
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    for n in ["rutile_TiO2", "YBaMn2O5"]:
        db["structures"].insert_one(structure_doc(n).to_mongo())
    for _ in range(2):
        main(["sites", "label", "--workers", "1", "--element", "Ti", "--element", "Mn"])
    out = capsys.readouterr().out
    assert "2 already labelled" in out and "absorber" in out
    assert db["sites"].count_documents({}) == 2
    assert db["sites"].find_one({"element": "Mn"})["chemenv_symbol"] == "S:5"

    with pytest.raises(SystemExit) as exit_:
        main(["sites", "label", "--element", "Xx"])
    assert exit_.value.code == 2
    assert "unknown element" in capsys.readouterr().err


# ----------------------------------------------------------------------------- invalid structures
def _bad_structures() -> dict[str, Structure]:
    """A NaN coordinate (spglib segfaults on it) and an O atom 0 A from Ti (was labelled O:6)."""
    rutile, _ = load_case("rutile_TiO2")
    nan = rutile.as_dict()
    nan["sites"][2]["abc"] = [float("nan"), 0.3, 0.3]
    nan["sites"][2].pop("xyz", None)
    overlap = rutile.copy()
    overlap.append("O", overlap[0].frac_coords)
    return {"nan": Structure.from_dict(nan), "overlap": overlap}


def test_invalid_structure_is_refused_before_symmetry_code():
    bad = _bad_structures()
    with pytest.raises(ValueError, match="invalid structure: site 2 has non-finite"):
        label_structure(bad["nan"], "nan", "files")
    with pytest.raises(ValueError, match=r"sites 0 \(Ti\) and 6 \(O\) are 0 A apart"):
        label_structure(bad["overlap"], "overlap", "files")
    # the job stores them as failed, one document per absorbing element, without running spglib
    out = label_sites_chemenv.original(structure_doc("rutile_TiO2", bad["nan"]), elements=["Ti"])
    assert [(d["state"], d["element"], d["equivalent_indices"]) for d in out] == [("failed", "Ti", [0, 1])]
    assert "non-finite" in out[0]["error"]


@pytest.mark.integration
def test_stored_invalid_structures_become_failed_and_labelling_goes_on(db_settings, capsys):
    """Structures stored before validation existed: `sites label` stores them as failed, finishes."""
    from xanesdb.cli import main
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    for name, s in _bad_structures().items():
        doc = structure_doc("rutile_TiO2", s).to_mongo()
        doc["material_id"] = f"bad:{name}"
        db["structures"].insert_one(doc)
    db["structures"].insert_one(structure_doc("rutile_TiO2").to_mongo())
    main(["sites", "label", "--workers", "1", "--element", "Ti"])
    out = capsys.readouterr().out
    assert "3 structures: 1 labelled, 2 failed" in out, out
    sites = {d["material_id"]: d for d in db["sites"].find()}
    assert sites["lit:rutile_TiO2"]["state"] == "successful" and sites["lit:rutile_TiO2"]["chemenv_symbol"] == "O:6"
    assert sites["bad:nan"]["state"] == "failed" and "non-finite" in sites["bad:nan"]["error"]
    assert sites["bad:overlap"]["state"] == "failed" and "closer than 0.5 A" in sites["bad:overlap"]["error"]
    assert sites["bad:overlap"].get("lce_class") is None  # no longer "O:6, successful"
    # a later run goes on: nothing left to do, nothing rewritten
    main(["sites", "label", "--workers", "1", "--element", "Ti"])
    assert "3 already labelled" in capsys.readouterr().out
    assert db["sites"].count_documents({}) == 3


@pytest.mark.integration
def test_native_crash_is_isolated_in_its_worker(db_settings):
    """Unchecked (validate=False), the NaN structure segfaults spglib in the worker for real.

    The parent stores the failure without running symmetry code on it again (it would segfault
    too) and labels the next structure with a fresh worker.
    """
    from xanesdb.platform.stores import get_database

    nan = structure_doc("rutile_TiO2", _bad_structures()["nan"]).model_copy(update={"material_id": "bad:nan"})
    summary = label_structures([nan, structure_doc("rutile_TiO2")], settings=db_settings, workers=1,
                               timeout=120, elements=["Ti"], validate=False)
    assert summary.failed == 1 and summary.succeeded == 1, summary
    assert "worker process died (SIGSEGV, exit code -11)" in summary.failures["bad:nan"]
    sites = get_database(db_settings)["sites"]
    failed = sites.find_one({"material_id": "bad:nan"})
    assert failed["state"] == "failed" and failed["equivalent_indices"] == [0, 1]
    assert sites.find_one({"material_id": "lit:rutile_TiO2"})["state"] == "successful"
