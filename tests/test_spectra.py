"""Spectra: grids, standardisation, blocked dedup, the incremental build on the real local server
with real OmniXAS Cu FEFF9 spectra, pymatgen XAS / emmet XASDoc views, CLI build and plot."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from xanesdb.jobs.spectra import (
    GRID_POINTS,
    build_spectra,
    choose_grid,
    current_grid,
    find_duplicates,
    find_duplicates_bruteforce,
    site_averaged_xas,
    site_averaged_xasdoc,
    spectrum_doc_from_xas,
    spectrum_id,
    spectrum_to_xas,
    standardise,
)
from xanesdb.jobs.spectra.grid import edge_energy

OMNIXAS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omnixas_cu"
N_MATERIALS = 14


@lru_cache(maxsize=1)
def _omnixas() -> tuple[list[dict], dict[str, dict]]:
    """Real records of the first materials with 1-3 Cu site spectra, and their structures."""
    records = json.load(gzip.open(OMNIXAS / "feff9_site_spectra.json.gz"))
    by_mat: dict[str, list[dict]] = {}
    for r in records:
        by_mat.setdefault(r["material_id"], []).append(r)
    chosen = [m for m, rs in by_mat.items() if len(rs) <= 3][:N_MATERIALS]
    structures = {s["material_id"]: s for s in json.load(gzip.open(OMNIXAS / "structures.json.gz"))
                  if s["material_id"] in chosen}
    return [r for m in chosen for r in by_mat[m]], structures


def _site_fields(structure, index: int) -> dict:
    """Multiplicity (spglib equivalence) and a first-shell label of one Cu site (CN from O within 2.4 A)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    eq = SpacegroupAnalyzer(structure, symprec=0.1).get_symmetry_dataset().equivalent_atoms
    equivalent = [int(i) for i in np.nonzero(eq == eq[index])[0]]
    neigh = [n for n in structure.get_neighbors(structure[index], 2.4) if n.specie.symbol == "O"]
    cn = len(neigh)
    symbol = {4: "T:4", 5: "S:5", 6: "O:6"}.get(cn, f"X:{cn}")
    return {
        "equivalent_indices": equivalent,
        "multiplicity": len(equivalent),
        "coordination_number": cn,
        "chemenv_symbol": symbol,
        "csm": 0.5,
        "bond_lengths": [round(n.nn_distance, 4) for n in neigh],
        "mean_bond_length": round(float(np.mean([n.nn_distance for n in neigh])), 4) if neigh else None,
    }


def _task(r: dict, source: str = "omnixas", code: str = "FEFF 9.9.1", mu=None, material_id=None, **kw):
    from xanesdb.schemas import FeffTaskDoc, site_id, task_id

    mid = material_id or r["material_id"]
    sid = site_id(mid, "Cu", r["absorbing_index"])
    return FeffTaskDoc(
        task_id=task_id(sid, "K", "lightshow", source=source), site_id=sid, material_id=mid, element="Cu",
        absorbing_index=r["absorbing_index"], source=source, code=code, preset="lightshow",
        preset_hash="lightshow", state="successful", energies=r["energy"],
        mu=list(mu) if mu is not None else r["mu"], **kw,
    )


def _populate(settings) -> dict:
    """Real structures, sites and FEFF9 tasks, a noisy near-copy, a FEFF10-source copy, failures."""
    from pymatgen.core import Structure

    from xanesdb.platform.stores import get_database
    from xanesdb.schemas import Provenance, SiteDoc, StructureDoc, lce_class_of, site_id

    records, structures = _omnixas()
    db = get_database(settings)
    tasks, sites = [], []
    for mid, s in structures.items():
        st = Structure.from_dict(s["structure"])
        db["structures"].insert_one(StructureDoc.from_structure(
            st, mid, "omnixas", Provenance(origin="omnixas", licence="CC BY 4.0")).to_mongo())
    for r in records:
        st = Structure.from_dict(structures[r["material_id"]]["structure"])
        f = _site_fields(st, r["absorbing_index"])
        sites.append(SiteDoc(site_id=site_id(r["material_id"], "Cu", r["absorbing_index"]),
                             material_id=r["material_id"], source="omnixas", formula=st.composition.reduced_formula,
                             element="Cu", site_index=r["absorbing_index"], lce_class=lce_class_of(f["chemenv_symbol"]),
                             **f))
        tasks.append(_task(r))
    rng = np.random.default_rng(5)
    orig = records[3]
    # a near-duplicate: noise << 0.015 on a real spectrum, as a separate (synthetic) material
    noisy = np.asarray(orig["mu"]) * (1 + rng.normal(0, 0.002, len(orig["mu"])))
    tasks.append(_task(orig, mu=noisy, material_id="zz-synthetic"))
    # the very same spectrum from another source: never deduplicated across sources
    tasks.append(_task(orig, source="xanesdb", code="feff10-rs"))
    # a failed FEFF task gets no spectrum; one that does not cover the grid gets a failed spectrum
    failed = _task(records[5], material_id="zz-failed")
    failed = failed.model_copy(update={"state": "failed", "error": "no xmu.dat", "mu": [], "energies": []})
    short = _task(records[6], material_id="zz-short",
                  mu=records[6]["mu"][:40]).model_copy(update={"energies": records[6]["energy"][:40]})
    tasks += [failed, short]
    db["feff_tasks"].insert_many([t.to_mongo() for t in tasks])
    db["sites"].insert_many([s.to_mongo() for s in sites])
    return {"records": records, "orig": orig, "tasks": tasks, "sites": sites, "noisy": tasks[len(records)],
            "other_source": tasks[len(records) + 1], "short": short}


# ----------------------------------------------------------------------------- unit
def test_grid_has_100_points_half_ev_apart_around_the_edge():
    records, _ = _omnixas()
    grid = choose_grid("Cu", "K", "omnixas", [(r["energy"], r["mu"]) for r in records])
    e = grid.energies
    assert grid.grid_name == "Cu-K-omnixas-v1"
    assert len(e) == GRID_POINTS == 100
    np.testing.assert_allclose(np.diff(e), 0.5)
    assert 49 <= e[-1] - e[0] <= 50
    # starts below the edge (~8979-9000 eV for Cu K in FEFF9), covers it
    assert e[0] < grid.e0_median < e[-1]
    assert grid.e0_median - e[0] >= 5
    mu, e0 = standardise(records[0]["energy"], records[0]["mu"], grid)
    assert mu.shape == (100,) and mu.max() == pytest.approx(1.0)
    assert e0 == pytest.approx(edge_energy(records[0]["energy"], records[0]["mu"]))
    with pytest.raises(ValueError, match="ends at"):
        standardise(records[0]["energy"][:30], records[0]["mu"][:30], grid)


def test_blocked_dedup_equals_the_sequential_rule():
    records, _ = _omnixas()
    grid = choose_grid("Cu", "K", "omnixas", [(r["energy"], r["mu"]) for r in records])
    base = np.array([standardise(r["energy"], r["mu"], grid)[0] for r in records])
    rng = np.random.default_rng(0)
    # real spectra, mixtures of them, near copies (noise << 0.015) and exact copies
    mix = 0.8 * base[rng.integers(0, len(base), 300)] + 0.2 * base[rng.integers(0, len(base), 300)]
    near = base[rng.integers(0, len(base), 100)] + rng.normal(0, 0.003, (100, 100))
    x = np.vstack([base, mix, near, base[:10]]).astype(np.float32)
    x = x[rng.permutation(len(x))]
    ref = find_duplicates_bruteforce(x, 0.015)
    assert (ref >= 0).sum() >= 110  # the copies at least
    for block in (7, 64, 1024):
        np.testing.assert_array_equal(find_duplicates(x, 0.015, block=block), ref)
    # kept spectra are pairwise >= threshold apart; each duplicate is close to its kept one
    kept = np.nonzero(ref < 0)[0]
    mad = np.abs(x[kept][:, None] - x[kept][None]).mean(-1)
    assert mad[np.triu_indices(len(kept), 1)].min() >= 0.015
    dups = np.nonzero(ref >= 0)[0]
    assert np.all(np.abs(x[dups] - x[ref[dups]]).mean(-1) < 0.015)
    assert np.all(ref[dups] < dups)  # the lower (earlier) one is kept


# ----------------------------------------------------------------------------- integration
@pytest.mark.integration
def test_build_dedup_and_incremental_rerun(db_settings):
    from xanesdb.platform.stores import get_database
    from xanesdb.schemas import SpectrumDoc

    data = _populate(db_settings)
    db = get_database(db_settings)
    n_real = len(data["records"])
    report = build_spectra(db_settings)
    assert sorted(report.grids_created) == ["Cu-K-omnixas-v1", "Cu-K-xanesdb-v1"]
    assert report.processed == n_real + 3  # real + noisy copy + other source + short (failed)
    assert report.failed == 1 and spectrum_id(data["short"].task_id) in report.errors
    assert db["spectra"].count_documents({}) == n_real + 3

    # standardised spectra: 100 points on the stored grid, max 1, e0 on the edge, labels joined
    grid = current_grid("Cu", "omnixas", settings=db_settings)
    sites = {s.site_id: s for s in data["sites"]}
    e0s = []
    n_aligned = 0
    for doc in db["spectra"].find({"source": "omnixas", "state": "successful", "material_id": {"$ne": "zz-synthetic"}}):
        s = SpectrumDoc.from_mongo(doc)
        assert s.grid_name == grid.grid_name and s.energies == grid.energies.tolist()
        assert len(s.mu) == 100 and max(s.mu) == pytest.approx(1.0)
        # the aligned representation (schema v2): normalised, half step at 0 eV of its grid; v3: site_class
        assert s.aligned_grid == "halfstep-rel-v1" and s.schema_version == 3
        assert s.site_class == (s.lce_class or ("other" if s.chemenv_symbol else None))
        if s.mu_aligned is not None:
            assert len(s.mu_aligned) == 100 and abs(s.mu_aligned[10] - 0.5) < 0.05 and s.edge_step > 0
            n_aligned += 1
        e0s.append(s.e0)
        assert s.dedup_threshold == 0.015
        site = sites[s.site_id]
        for f in ("chemenv_symbol", "csm", "lce_class", "coordination_number", "mean_bond_length", "multiplicity"):
            assert getattr(s, f) == getattr(site, f), f
    # e0 (max of dmu/dE) is on the edge, inside the grid, for nearly all (FEFF9 can start on the rise)
    assert np.mean((np.array(e0s) > grid.energies[0] + 2) & (np.array(e0s) < grid.energies[0] + 30)) > 0.8
    assert n_aligned >= 0.8 * len(e0s)  # FEFF9 spectra reach +44.5 eV above their half step
    assert db["spectra"].find_one({"spectrum_id": spectrum_id(data["short"].task_id)})["state"] == "failed"

    # the noisy copy is a duplicate of the original (or of what the original duplicates)
    orig = db["spectra"].find_one({"site_id": data["tasks"][3].site_id, "source": "omnixas"})
    noisy = db["spectra"].find_one({"task_id": data["noisy"].task_id})
    assert noisy["duplicate_of"] == (orig["duplicate_of"] or orig["spectrum_id"])
    # the identical FEFF10-source copy is never compared across sources
    other = db["spectra"].find_one({"task_id": data["other_source"].task_id})
    assert other["duplicate_of"] is None and other["grid_name"] == "Cu-K-xanesdb-v1"
    # the stored marks are the sequential rule over spectrum_id order
    docs = list(db["spectra"].find({"source": "omnixas", "state": "successful"}).sort("spectrum_id", 1))
    ref = find_duplicates_bruteforce(np.array([d["mu"] for d in docs]), 0.015)
    assert [d["duplicate_of"] for d in docs] == [docs[j]["spectrum_id"] if j >= 0 else None for j in ref]
    assert report.n_duplicates == int((ref >= 0).sum()) >= 1
    assert sum(c["kept"] + c["duplicates"] for c in report.counts.values()) == n_real + 2

    # incremental: nothing new, nothing rewritten
    stamps = {d["spectrum_id"]: d["last_updated"] for d in db["spectra"].find()}
    again = build_spectra(db_settings)
    assert again.processed == 0 and again.grids_created == [] and again.duplicate_changes == 0
    assert again.up_to_date == n_real + 3
    assert {d["spectrum_id"]: d["last_updated"] for d in db["spectra"].find()} == stamps

    # a changed task (newer last_updated) is processed again, alone
    t = data["tasks"][0]
    db["feff_tasks"].update_one({"task_id": t.task_id},
                                {"$set": {"last_updated": stamps[spectrum_id(t.task_id)] + timedelta(seconds=5)}})
    third = build_spectra(db_settings)
    assert third.processed == 1 and third.groups_deduplicated == ["Cu-K-omnixas"]
    # a task that failed on re-run loses its spectrum
    db["feff_tasks"].update_one({"task_id": data["noisy"].task_id}, {"$set": {"state": "failed"}})
    fourth = build_spectra(db_settings)
    assert fourth.removed == 1 and db["spectra"].find_one({"task_id": data["noisy"].task_id}) is None
    # a spectrum an older, stricter coverage rule left off the aligned grid (no half step kept) is
    # aligned again, once (tasks[0] is left out: its task was stamped 5 s ahead above)
    sid = spectrum_id(data["tasks"][1].task_id)
    db["spectra"].update_one({"spectrum_id": sid}, {"$set": {"e_half": None, "mu_aligned": None}})
    stamp = db["spectra"].find_one({"spectrum_id": sid})["last_updated"]
    build_spectra(db_settings)
    doc = db["spectra"].find_one({"spectrum_id": sid})
    assert doc["last_updated"] > stamp and doc["e_half"] is not None and doc["mu_aligned"] is not None
    build_spectra(db_settings)
    assert db["spectra"].find_one({"spectrum_id": sid})["last_updated"] == doc["last_updated"]
    assert db["spectra"].count_documents({"state": "successful", "e_half": None}) == 0


@pytest.mark.integration
def test_xas_round_trip_site_average_and_xasdoc(db_settings):
    from emmet.core.xas import XASDoc
    from pymatgen.analysis.xas.spectrum import XAS
    from pymatgen.core import Structure
    from scipy.interpolate import CubicSpline

    from xanesdb.platform.stores import get_database
    from xanesdb.schemas import SiteDoc, SpectrumDoc

    data = _populate(db_settings)
    build_spectra(db_settings, elements=["Cu"])
    db = get_database(db_settings)
    grid = current_grid("Cu", "omnixas", settings=db_settings)
    _, structures = _omnixas()

    # every spectrum -> pymatgen XAS -> spectrum
    for doc in db["spectra"].find({"source": "omnixas", "state": "successful", "material_id": {"$ne": "zz-synthetic"}}):
        s = SpectrumDoc.from_mongo(doc)
        st = Structure.from_dict(structures[s.material_id]["structure"])
        xas = spectrum_to_xas(s, st)
        assert isinstance(xas, XAS) and xas.spectrum_type == "XANES" and xas.edge == "K"
        assert xas.absorbing_element.symbol == "Cu" and xas.structure == st
        assert xas.absorbing_index == int(s.site_id.rsplit(":", 1)[1])
        back = spectrum_doc_from_xas(xas, task_id=s.task_id, material_id=s.material_id, source=s.source,
                                     code=s.code, preset=s.preset, grid=grid, lce_class=s.lce_class)
        assert back.spectrum_id == s.spectrum_id and back.site_id == s.site_id
        np.testing.assert_allclose(back.mu, s.mu, atol=1e-6)
        assert back.energies == s.energies and back.lce_class == s.lce_class
        assert back.e0 == pytest.approx(float(xas.e0), abs=0.5)

    # site average per material: multiplicity-weighted, only when every unique site has a spectrum
    by_mat: dict[str, list[SiteDoc]] = {}
    for s in data["sites"]:
        by_mat.setdefault(s.material_id, []).append(s)
    # a material with sites of different multiplicities, so that the weights matter
    multi = next(m for m, ss in by_mat.items() if len({s.multiplicity for s in ss}) > 1)
    avg = site_averaged_xas(multi, "Cu", "omnixas", settings=db_settings)
    assert avg is not None and avg.absorbing_index is None and max(avg.y) == pytest.approx(1.0)
    recs = {(r["material_id"], r["absorbing_index"]): r for r in data["records"]}
    w = np.array([s.multiplicity for s in by_mat[multi]], float)
    raw = np.array([CubicSpline(recs[(multi, s.site_index)]["energy"], recs[(multi, s.site_index)]["mu"])(
        grid.energies) for s in by_mat[multi]])
    expect = w @ raw / w.sum()
    np.testing.assert_allclose(avg.y, expect / expect.max(), atol=1e-3)

    xasdoc = site_averaged_xasdoc(multi, "Cu", "omnixas", settings=db_settings)
    again = XASDoc.model_validate(json.loads(xasdoc.model_dump_json()))  # emmet-core's own model
    assert again.absorbing_element.value == "Cu" and again.edge.value == "K"
    assert again.spectrum_type.value == "XANES" and again.formula_pretty == avg.structure.composition.reduced_formula
    np.testing.assert_allclose(again.spectrum.y, avg.y)
    assert again.spectrum_id.endswith("-XANES-Cu-K")

    # a unique site without a spectrum: no average
    one = by_mat[multi][0]
    db["sites"].insert_one(one.model_copy(update={"site_id": f"{multi}:Cu:999", "site_index": 999}).to_mongo())
    assert site_averaged_xas(multi, "Cu", "omnixas", settings=db_settings) is None
    assert site_averaged_xasdoc(multi, "Cu", "omnixas", settings=db_settings) is None


@pytest.mark.integration
def test_cli_build_and_plot(db_settings, tmp_path, capsys):
    from matplotlib.image import imread

    from xanesdb.cli import main

    _populate(db_settings)
    main(["spectra", "build", "--element", "Cu"])
    out = capsys.readouterr().out
    assert "new grids: Cu-K-omnixas-v1, Cu-K-xanesdb-v1" in out
    assert "omnixas" in out and "duplicates" in out and "marked duplicate_of" in out
    png = tmp_path / "cu.png"
    main(["spectra", "plot", "--element", "Cu", "--source", "omnixas", "--out", str(png)])
    assert str(png) in capsys.readouterr().out.replace("\n", "")
    img = imread(png)
    assert img.shape[0] > 400 and img.shape[1] > 600 and img[..., :3].std() > 0.05
    # two sources of Cu: the plot asks which one
    with pytest.raises(SystemExit) as exc:
        main(["spectra", "plot", "--element", "Cu"])
    assert exc.value.code == 2
    assert "--source" in capsys.readouterr().err
