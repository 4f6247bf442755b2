"""Search by spectrum: ranking (a spectrum finds itself), the ensemble's pieces, the kNN vote, the
CLI on a small real database (bundled FEFF10 tasks loaded into the local server and built), and
bad input refused in one line with nothing written."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from xanesdb.search import SearchIndex, knn_vote, query_from_aligned, search_queries
from xanesdb.search.match import ELSIE_MEMBERS, borda, rank_references, wide_grid, windows_of
from xanesdb.xas.align import ALIGNED_GRID

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "experimental_dev"


def _toy_index(n: int = 40, seed: int = 0) -> SearchIndex:
    """Smooth edge-like curves with a white line whose position and height vary by row."""
    rng = np.random.default_rng(seed)
    g = ALIGNED_GRID
    rows, labels = [], []
    for i in range(n):
        pos, height = rng.uniform(2, 12), rng.uniform(0.2, 0.8)
        y = 1 / (1 + np.exp(-g / 1.2)) + height * np.exp(-((g - pos) / 2.5) ** 2)
        rows.append(y)
        labels.append(("O6", "T4", "S5")[i % 3])
    return SearchIndex.from_arrays(np.array(rows), {"element": ["Fe"] * n, "lce_class": labels,
                                                   "material_id": [f"m-{i}" for i in range(n)]})  # fmt: skip


# ----------------------------------------------------------------------------- unit
@pytest.mark.parametrize("method", ["cosine", "elsie"])
def test_each_reference_finds_itself_first_with_no_shift(method):
    index = _toy_index()
    queries = [query_from_aligned(index.X[i], name=str(i), absorber="Fe") for i in range(len(index))]
    results = search_queries(queries, index, top=3, method=method)
    for i, r in enumerate(results):
        best = r["matches"][0]
        assert best["material_id"] == f"m-{i}" and best["shift_ev"] == 0.0, (i, r["matches"])
        assert [m["rank"] for m in r["matches"]] == [1, 2, 3]
    if method == "cosine":
        assert results[0]["matches"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("method", ["cosine", "elsie"])
def test_a_shifted_copy_is_found_with_its_shift(method):
    index = _toy_index()
    g = ALIGNED_GRID
    y = np.interp(g - 1.5, g, index.X[7])  # features 1.5 eV higher than reference 7's
    (r,) = search_queries([query_from_aligned(y, absorber="Fe")], index, top=1, method=method)
    assert r["matches"][0]["material_id"] == "m-7" and r["matches"][0]["shift_ev"] == 1.5


def test_ensemble_over_all_references_agrees_on_the_best_and_only_searches_the_element():
    index = _toy_index()
    W = windows_of(np.stack([query_from_aligned(index.X[5]).wide]))
    (rows, sim, shift), = rank_references(index, W, slice(None), method="elsie", top=5, candidates=0)
    assert rows[0] == 5 and sim[0] == pytest.approx(1.0) and np.all(np.diff(sim) <= 0)
    # a query of another absorber: an error row naming what the database has
    (r,) = search_queries([query_from_aligned(index.X[5], name="q", absorber="Cu")], index)
    assert "no computed Cu spectra" in r["error"] and "Fe" in r["error"]


def test_borda_and_members():
    total = borda([np.array([3.0, 1.0, 2.0]), np.array([2.0, 0.0, 1.0])])
    assert total.tolist() == [4.0, 0.0, 2.0]
    assert len(ELSIE_MEMBERS) == 14 and ("derivative", "ruzicka") not in ELSIE_MEMBERS
    assert len(wide_grid(3.0)) == len(ALIGNED_GRID) + 12


def test_knn_vote_majority_then_nearest():
    m = [{"lce_class": c} for c in ("T4", None, "O6", "O6", "T4", "S5")]
    assert knn_vote(m, k=3) == "O6"  # T4, O6, O6 (the unlabelled one skipped)
    assert knn_vote(m, k=2) == "T4"  # a tie goes to the nearer
    assert knn_vote([{"lce_class": None}]) is None


def test_query_reads_as_predict_does(shared_data):
    """The query row is align_measured's: what ``xanesdb predict`` gives an aligned model."""
    from xanesdb.search import prepare_query
    from xanesdb.xas.align import align_measured
    from xanesdb.xas.readers import read_spectra

    (s,) = read_spectra(DEV / "athena" / "Fe-K-ALS-10.3.2.prj", groups=["Chromite"])
    q = prepare_query(s, max_shift_ev=2.0)
    a = align_measured(s.energy, s.mu)
    np.testing.assert_allclose(q.y, a["y"])
    np.testing.assert_allclose(q.wide[4:-4], a["y"], atol=1e-6)
    assert q.absorber == "Fe" and q.e_half == pytest.approx(a["e_half"])


# ----------------------------------------------------------------------------- integration
def _subset(tmp: Path, elements=("Fe", "Mn"), every: int = 12) -> int:
    """Every ``every``-th bundled FEFF10 task of ``elements``, with their sites and structures."""
    from xanesdb.testing.snapshot import bundled_subset

    return bundled_subset(tmp, every, elements)


@pytest.fixture(scope="module")
def search_db(local_server, tmp_path_factory):
    """A database with a subset of the bundled Fe and Mn FEFF10 tasks, spectra built."""
    from xanesdb.jobs.spectra.build import build_spectra
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.snapshot import load_snapshot

    snap = tmp_path_factory.mktemp("search-snapshot")
    _subset(snap)
    name = f"test_search_{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XANESDB_HOME", str(tmp_path_factory.mktemp("search-home")))
        mp.setenv("XANESDB_DB_URI", local_server)
        mp.setenv("XANESDB_DB_NAME", name)
        settings = get_settings()
        load_snapshot(settings, snap)
        build_spectra(settings)
    return local_server, name


@pytest.fixture
def search_settings(search_db, monkeypatch):
    from xanesdb.platform.settings import get_settings

    monkeypatch.setenv("XANESDB_DB_URI", search_db[0])
    monkeypatch.setenv("XANESDB_DB_NAME", search_db[1])
    return get_settings()


def _xmu_dat(task: dict, path: Path) -> Path:
    """A FEFF xmu.dat of a stored task (the columns FEFF writes)."""
    e, mu, mu0 = (np.asarray(task[k]) for k in ("energies", "mu", "mu0"))
    lines = ["# FEFF10 xmu.dat written by the search test", "#  omega    e    k    mu    mu0     chi"]
    lines += [f"{a:.4f} {a - e[0]:.4f} 0.0 {b:.8g} {c:.8g} {b - c:.8g}" for a, b, c in zip(e, mu, mu0)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.integration
def test_cli_finds_the_stored_spectrum_of_a_feff_file_first(search_settings, tmp_path, capsys):
    from xanesdb.cli import main
    from xanesdb.platform.stores import get_database
    from xanesdb.search import load_search_index

    db = get_database(search_settings)
    index = load_search_index(search_settings)
    assert set(index.elements()) == {"Fe", "Mn"} and len(index) >= 40
    # an indexed O6 Fe spectrum, written as the xmu.dat FEFF gave
    sid = next(s for s, el, c in zip(index.meta["spectrum_id"], index.meta["element"], index.meta["lce_class"])
               if el == "Fe" and c == "O6")  # fmt: skip
    doc = db.spectra.find_one({"spectrum_id": sid}, {"task_id": 1, "material_id": 1})
    task = db.feff_tasks.find_one({"task_id": doc["task_id"]})
    xmu = _xmu_dat(task, tmp_path / "xmu.dat")
    for method in ("cosine", "elsie"):
        main(["search", str(xmu), "--top", "3", "--method", method, "-f", "json"])
        (row,) = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
        assert row["absorber"] == "Fe" and row["element"] == "Fe" and len(row["matches"]) == 3
        best = row["matches"][0]
        assert best["spectrum_id"] == sid and best["material_id"] == doc["material_id"], (method, row["matches"])
        assert best["lce_class"] == "O6" and abs(best["shift_ev"]) <= 0.5 and best["site"] == task["absorbing_index"]
    # the table and the csv name the material, its class and the shift
    main(["search", str(xmu), "--top", "2"])
    out = capsys.readouterr().out
    assert doc["material_id"] in out and "O6" in out and "shift" in out
    main(["search", str(xmu), "--top", "2", "-f", "csv", "--element", "Fe"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("input,file,") and sid in lines[1]
    # the index is cached per database state: a second load does not rebuild it
    again = load_search_index(search_settings)
    assert again is index or again.timings.get("cache_hit") == 1.0


@pytest.mark.integration
def test_cli_measured_spectrum_and_a_bad_file_beside_it(search_settings, tmp_path, capsys):
    from xanesdb.cli import main

    binary = tmp_path / "scan.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    out = tmp_path / "hits.csv"
    with pytest.raises(SystemExit) as exit_:
        main(["search", str(DEV / "athena" / "Fe-K-ALS-10.3.2.prj"), str(binary), "-g", "Chromite",
              "-f", "csv", "-o", str(out), "--top", "4"])  # fmt: skip
    assert exit_.value.code == 2  # not every input could be searched ...
    err = capsys.readouterr().err
    assert "1 of 2 spectra could not be searched" in err
    rows = out.read_text().strip().splitlines()  # ... but the good one was
    assert len(rows) == 1 + 1 + 4 and "binary file" in rows[1] and sum("Chromite" in r for r in rows) == 4
    # the same spectrum with energies relative to its edge: --element says whose K edge to add
    from xanesdb.xas.normalize import pre_edge
    from xanesdb.xas.readers import read_spectra

    (s,) = read_spectra(DEV / "athena" / "Fe-K-ALS-10.3.2.prj", groups=["Chromite"])
    e0 = pre_edge(s.energy, s.mu).e0
    rel = tmp_path / "chromite_rel.csv"
    rel.write_text("E-E0,mu\n" + "\n".join(f"{a - e0:.4f},{b:.6f}" for a, b in zip(s.energy, s.mu)))
    main(["search", str(rel), "--element", "Fe", "-f", "csv", "--top", "4"])
    hits = capsys.readouterr().out.strip().splitlines()[1:]
    assert [h.split(",")[6] for h in hits] == [r.split(",")[6] for r in rows[2:]]  # the same materials


@pytest.mark.integration
@pytest.mark.parametrize("case", ["binary", "no-edge", "unknown-element", "bad-method", "bad-fidelity"])
def test_bad_input_one_line_exit_2_nothing_written(case, refused, tmp_path):
    good = DEV / "athena" / "Fe-K-ALS-10.3.2.prj"
    out = tmp_path / "out.json"
    if case == "binary":
        f = tmp_path / "x.dat"
        f.write_bytes(b"\x00\x01\x02PK\x03\x04" * 200)
        args, words = [f], "binary file"
    elif case == "no-edge":
        f = tmp_path / "flat.csv"
        e = np.arange(7000, 7300, 0.5)
        noise = np.random.default_rng(0).normal(0, 1e-3, len(e))
        np.savetxt(f, np.c_[e, 1 + noise], delimiter=",", header="energy,mu", comments="")
        args, words = [f], "no absorption edge"
    elif case == "unknown-element":
        args, words = [good, "-g", "Chromite", "--element", "Xx"], "unknown element"
    elif case == "bad-fidelity":
        args, words = [good, "--fidelity", "mp"], "unknown --fidelity"
    else:
        args, words = [good, "--method", "pearson"], "unknown --method"
    line = refused(["search", *args, "-f", "json", "-o", out])
    assert words in line, line
    assert not out.exists()


@pytest.mark.integration
def test_an_absorber_the_database_lacks_is_one_line(search_settings, tmp_path, capsys):
    from xanesdb.cli import main
    from xanesdb.platform.stores import get_database

    db = get_database(search_settings)
    before = {c: db[c].count_documents({}) for c in db.list_collection_names()}
    out = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as exit_:
        main(["search", str(DEV / "athena" / "NiO.prj"), "-f", "csv", "-o", str(out)])
    o, err = capsys.readouterr()
    assert exit_.value.code == 2 and o == "" and len(err.strip().splitlines()) == 1
    assert "no computed Ni spectra in the database (it has Fe, Mn)" in err
    assert not out.exists() and {c: db[c].count_documents({}) for c in db.list_collection_names()} == before


@pytest.mark.integration
def test_fidelity_needs_sites_under_both_presets(search_settings, capsys):
    """The subset has no scf spectra: --fidelity scf says how to get them, in one line."""
    from xanesdb.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["search", str(DEV / "athena" / "Fe-K-ALS-10.3.2.prj"), "-g", "Chromite", "--fidelity", "scf"])
    o, err = capsys.readouterr()
    assert exit_.value.code == 2 and o == "" and len(err.strip().splitlines()) == 1
    assert "under both the 'fast' and 'scf' presets" in err


@pytest.mark.integration
def test_auto_references_per_input_kind(search_settings, tmp_path, capsys, monkeypatch):
    """`--fidelity/--calibration auto` (the default): a FEFF xmu.dat meets the stored references, a
    measured spectrum the references corrected towards scf and calibrated to measurement, or the
    stored ones (said in the row) where the database has no site under both presets."""
    from xanesdb.cli import main
    from xanesdb.platform.stores import get_database

    db = get_database(search_settings)
    task = db.feff_tasks.find_one({"element": "Fe", "state": "successful"})
    xmu = _xmu_dat(task, tmp_path / "xmu.dat")
    prj = DEV / "athena" / "Fe-K-ALS-10.3.2.prj"
    main(["search", str(xmu), str(prj), "-g", "Chromite", "-f", "json", "--top", "2"])
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [r["references"] for r in rows] == ["stored", "stored"]  # this small database has no scf twins
    # with twins (the correction stubbed to the identity) the measured one gets the calibrated references
    seen = []
    import xanesdb.search as search_mod  # the command imports search_spectra at call time: the spy is what it calls

    def spy(spectra, **kw):
        seen.append((kw["fidelity"], kw["calibration"], [s.kind for s in spectra]))
        return [{"name": s.name, "matches": []} for s in spectra]

    monkeypatch.setattr(search_mod, "search_spectra", spy)
    main(["search", str(xmu), str(prj), "-g", "Chromite", "-f", "json"])
    capsys.readouterr()
    assert sorted(seen, key=str) == sorted([(None, None, ["feff-xmu"]), ("scf", "k-edge", ["athena"])], key=str)
    seen.clear()
    main(["search", str(prj), "-g", "Chromite", "-f", "json", "--fidelity", "none", "--calibration", "none"])
    capsys.readouterr()
    assert seen == [(None, None, ["athena"])]
