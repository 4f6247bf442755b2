"""Structure sources: files (CIF, POSCAR, vasp, JSON), the bundled set, upserts, the CLI.

Files are written in a temporary folder from real Materials Project structures in
``../shared/data/structures/small_sets.json.gz``. Database tests run on the real local server.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xanesdb.platform.errors import XanesdbUserError


@pytest.fixture(scope="module")
def real_structures():
    """Real MP structures by material id (small_sets: Lightshow Ti-O, pycoordinationnet, veidt)."""
    from pymatgen.core import Structure

    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "structures" / "small_sets.json.gz"
    records = json.load(gzip.open(path))
    return {r["material_id"]: Structure.from_dict(r["structure"]) for r in records if r.get("material_id")}


@pytest.fixture
def structure_folder(tmp_path, real_structures):
    """A folder with one structure per supported format (and a file that is not a structure)."""
    from pymatgen.io.cif import CifWriter
    from pymatgen.io.vasp import Poscar

    root = tmp_path / "structures"
    (root / "sub").mkdir(parents=True)
    CifWriter(real_structures["mp-2657"]).write_file(root / "rutile.cif")
    Poscar(real_structures["mp-390"]).write_file(root / "sub" / "POSCAR")
    Poscar(real_structures["mp-5986"]).write_file(root / "BaTiO3.vasp")
    (root / "NaFeO2.json").write_text(json.dumps(real_structures["mp-19359"].as_dict()))
    records = [{"material_id": mid, "structure": real_structures[mid].as_dict()} for mid in ("mp-19418", "mp-24850")]
    (root / "records.json").write_text(json.dumps(records))
    (root / "notes.txt").write_text("not a structure file; ignored")
    return root


EXPECTED_IDS = {"file:rutile", "file:sub/POSCAR", "file:BaTiO3", "file:NaFeO2", "mp-19418", "mp-24850"}


# ----------------------------------------------------------------------------- parsing (no db)
def test_file_source_reads_every_format(structure_folder, real_structures):
    from xanesdb.jobs.structures import file_structure_docs

    docs, skipped = file_structure_docs(structure_folder)
    by_id = {d.material_id: d for d in docs}
    assert set(by_id) == EXPECTED_IDS and skipped == {}
    assert {d.source for d in docs} == {"files"} and {d.provenance.origin for d in docs} == {"file"}
    assert by_id["file:rutile"].formula == "TiO2" and by_id["file:rutile"].nsites == 6
    assert by_id["file:sub/POSCAR"].to_structure().matches(real_structures["mp-390"])
    assert by_id["file:BaTiO3"].formula == "BaTiO3"
    assert by_id["file:NaFeO2"].elements == ["Fe", "Na", "O"]
    assert by_id["mp-19418"].provenance.source_id == "mp-19418"
    assert by_id["mp-19418"].provenance.note == "read from records.json"
    assert by_id["file:sub/POSCAR"].provenance.source_id == "sub/POSCAR"
    # element filter and limit
    docs, skipped = file_structure_docs(structure_folder, elements=["Fe", "co"])
    assert {d.material_id for d in docs} == {"file:NaFeO2", "mp-24850"}
    assert skipped == {"no requested element": 4}
    docs, _ = file_structure_docs([structure_folder / "rutile.cif", structure_folder / "NaFeO2.json"], limit=1)
    assert [d.material_id for d in docs] == ["file:rutile"]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("broken.cif", "data_broken\n_cell_length_a 4.59\nloop_\n_atom_site_label\nTi1 0 0\n", "broken.cif"),
        ("POSCAR_bad", "TiO2\n1.0\nnot numbers here\n", "POSCAR_bad"),
        ("bad.json", "{\"lattice\": [1, 2", "bad.json: not valid JSON"),
        ("nostructure.json", "{\"material_id\": \"mp-1\", \"formula\": \"X\"}", "not a pymatgen Structure dict"),
        ("empty.vasp", "", "empty.vasp"),
    ],
)
def test_bad_file_is_named(structure_folder, name, content, match):
    from xanesdb.jobs.structures import file_structure_docs

    (structure_folder / name).write_text(content)
    with pytest.raises(XanesdbUserError, match=match):
        file_structure_docs(structure_folder)


def test_path_and_source_errors(tmp_path, structure_folder):
    from xanesdb.jobs.structures import fetch_structures, file_structure_docs

    with pytest.raises(XanesdbUserError, match="does not exist"):
        file_structure_docs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(XanesdbUserError, match="no structure files"):
        file_structure_docs(tmp_path / "empty")
    (structure_folder / "rutile.json").write_text((structure_folder / "NaFeO2.json").read_text())
    with pytest.raises(XanesdbUserError, match="both give material id file:rutile"):
        file_structure_docs(structure_folder)
    # these fail before any database is touched
    with pytest.raises(XanesdbUserError, match="unknown source 'nist'"):
        fetch_structures("nist")
    with pytest.raises(XanesdbUserError, match="needs a PATH"):
        fetch_structures("files")
    with pytest.raises(XanesdbUserError, match="only read with --source files"):
        fetch_structures("bundled", path=structure_folder)
    with pytest.raises(XanesdbUserError, match="'Xx' is not an element"):
        fetch_structures("bundled", elements=["Xx"])


def test_is_oxide(real_structures):
    from xanesdb.jobs.structures import is_oxide

    assert is_oxide(real_structures["mp-2657"]) == (True, "oxide")
    assert is_oxide(real_structures["mp-788"]) == (False, "no oxygen")  # CoTe


# ----------------------------------------------------------------------------- database
def _docs(settings) -> dict[str, dict]:
    from xanesdb.platform.stores import get_database

    return {d["material_id"]: d for d in get_database(settings)["structures"].find({}, {"_id": 0})}


def _new_total(summary) -> tuple[int, int]:
    """(new material ids written, structures the source gave) of a fetch."""
    return summary.n_new, summary.n_total


@pytest.mark.integration
def test_files_source_upserts_idempotently(structure_folder, db_settings):
    from xanesdb.jobs.structures import fetch_structures

    assert _new_total(fetch_structures("files", path=structure_folder, settings=db_settings)) == (6, 6)
    first = _docs(db_settings)
    assert set(first) == EXPECTED_IDS
    assert first["file:rutile"]["provenance"]["origin"] == "file"
    # re-run: no new documents, nothing rewritten
    s = fetch_structures("files", path=structure_folder, settings=db_settings)
    assert (s.n_new, s.n_total, s.n_unchanged, s.n_updated, s.n_in_collection) == (0, 6, 6, 0, 6)
    again = _docs(db_settings)
    assert {k: v["last_updated"] for k, v in again.items()} == {k: v["last_updated"] for k, v in first.items()}
    # a changed file updates its document only
    from pymatgen.core import Structure

    s2 = Structure.from_file(structure_folder / "BaTiO3.vasp")
    s2.scale_lattice(s2.volume * 1.05)
    s2.to(filename=str(structure_folder / "BaTiO3.vasp"), fmt="poscar")
    s = fetch_structures("files", path=structure_folder, settings=db_settings)
    assert (s.n_new, s.n_updated, s.n_unchanged, s.n_in_collection) == (0, 1, 5, 6)


@pytest.mark.integration
def test_bad_file_writes_nothing(structure_folder, db_settings):
    from xanesdb.jobs.structures import fetch_structures

    # sorts after the good files: they were parsed already, and still nothing may be written
    (structure_folder / "zz_broken.cif").write_text("data_x\nthis is not a CIF\n")
    with pytest.raises(XanesdbUserError, match="zz_broken.cif"):
        fetch_structures("files", path=structure_folder, settings=db_settings)
    assert _docs(db_settings) == {}


@pytest.mark.integration
def test_bundled_source(db_settings):
    from xanesdb.jobs.structures import fetch_structures
    from xanesdb.platform.bundled import iter_bundled_structures

    expected = [d.material_id for d in iter_bundled_structures(elements=["Fe"], limit=5)]
    s = fetch_structures("bundled", ["Fe"], limit=5, settings=db_settings)
    assert s.material_ids == expected and (s.n_new, s.n_total) == (5, 5)
    docs = _docs(db_settings)
    assert set(docs) == set(expected)
    assert all(d["source"] == "bundled" and "Fe" in d["elements"] and d["provenance"]["origin"] for d in docs.values())
    assert _new_total(fetch_structures("bundled", ["Fe"], limit=5, settings=db_settings)) == (0, 5)
    # a material id another source already wrote is kept, not replaced
    from xanesdb.jobs.structures import write_structures
    from xanesdb.schemas import Provenance, StructureDoc

    other = StructureDoc.from_structure(
        StructureDoc.model_validate({k: v for k, v in docs[expected[0]].items()}).to_structure(),
        material_id=expected[0], source="files", provenance=Provenance(origin="file"),
    )
    counts = write_structures([other], db_settings)
    assert counts["kept_other_source"] == 1 and _docs(db_settings)[expected[0]]["source"] == "bundled"


def test_file_job_in_jobflow(structure_folder, memory_jobstore):
    """The fetch job writes to the database handed to it (here in memory)."""
    from jobflow import run_locally
    from maggma.stores import MemoryStore

    from xanesdb.jobs.database import use_database
    from xanesdb.jobs.structures import FetchSummary, fetch_structures_job

    memory = MemoryStore("xanesdb")
    memory.connect()
    db = memory._collection.database
    job = fetch_structures_job("files", elements=["Ti"], path=str(structure_folder))
    with use_database(db):
        responses = run_locally(job, store=memory_jobstore, ensure_success=True)
    out = responses[job.uuid][1].output
    out = out if isinstance(out, FetchSummary) else FetchSummary.model_validate(out)
    assert set(out.material_ids) == {"file:rutile", "file:sub/POSCAR", "file:BaTiO3"}
    assert set(db["structures"].distinct("material_id")) == set(out.material_ids)


# ----------------------------------------------------------------------------- CLI
def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xanesdb.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.integration
def test_cli_exit_codes(structure_folder, db_settings, local_server, refused, monkeypatch, cli_here):
    env = {**os.environ, "XANESDB_DB_URI": local_server, "XANESDB_DB_NAME": db_settings.DB_NAME}
    env.pop("MP_API_KEY", None)
    monkeypatch.delenv("MP_API_KEY", raising=False)
    # bad arguments, in-process (exit 2, one line, nothing on stdout, nothing written); the broken
    # file runs as a separate process, the fetches after it in this one (cli_here)
    for args, message in [
        (["--source", "nist"], "error: unknown source 'nist'"),
        (["--source", "files"], "error: --source files needs a PATH"),
        (["--source", "mp", "-e", "Fe"], "error: set MP_API_KEY"),
    ]:
        assert refused(["structures", "fetch", *args]).startswith(message), args
    (structure_folder / "zz_broken.cif").write_text("data_x\nthis is not a CIF\n")
    r = _cli(["structures", "fetch", "--source", "files", str(structure_folder)], env)
    assert r.returncode == 2 and "zz_broken.cif" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _docs(db_settings) == {}
    (structure_folder / "zz_broken.cif").unlink()
    r = cli_here(["structures", "fetch", "--source", "files", str(structure_folder)])
    assert r.returncode == 0, r.stderr
    assert "files: 6 structures, 6 new" in r.stdout and "structures collection: 6" in r.stdout
    r = cli_here(["structures", "fetch", "--source", "files", str(structure_folder), "-e", "Fe"])
    assert r.returncode == 0 and "files: 1 structures, 0 new" in r.stdout and "dropped 5" in r.stdout
    assert len(_docs(db_settings)) == 6


# ----------------------------------------------------------------------------- invalid structures
def _rutile_dict(real_structures) -> dict:
    return real_structures["mp-2657"].as_dict()


def _nan_json(rs) -> str:
    d = _rutile_dict(rs)
    d["sites"][1]["abc"] = [float("nan"), 0.3, 0.3]
    d["sites"][1].pop("xyz", None)
    return json.dumps(d)  # writes NaN, which Python's json reads back


def _nan_poscar(rs) -> str:
    from pymatgen.io.vasp import Poscar

    lines = str(Poscar(rs["mp-2657"])).splitlines()
    lines[8] = "nan 0.5 0.5"  # first coordinate row
    return "\n".join(lines) + "\n"


def _overlapping(rs) -> str:
    s = rs["mp-2657"].copy()
    s.append("O", s[0].frac_coords)  # an O atom 0 A from Ti
    return json.dumps(s.as_dict())


def _lattice(rs, matrix) -> str:
    from pymatgen.core import Lattice, Structure

    s = rs["mp-2657"]
    return json.dumps(Structure(Lattice(matrix), s.species, s.frac_coords).as_dict())


def _huge_cell(rs) -> str:
    s = rs["mp-2657"].copy()
    s.make_supercell([6, 6, 5])  # 1,080 sites
    return json.dumps(s.as_dict())


def _deep_json(rs) -> str:
    return "[" * 5000 + "]" * 5000


#: each: file name, content builder, words of the expected one-line error
BAD_STRUCTURE_FILES = [
    ("nan.json", _nan_json, "site 1 has non-finite"),
    ("POSCAR", _nan_poscar, "site 0 has non-finite"),
    ("overlap.json", _overlapping, "0 A apart, closer than 0.5 A"),
    ("flat.json", lambda rs: _lattice(rs, [[4.6, 0, 0], [0, 4.6, 0], [2.3, 2.3, 0]]), "cell volume is 0"),
    ("huge.json", lambda rs: _lattice(rs, [[1e6, 0, 0], [0, 4.6, 0], [0, 0, 2.96]]), "1e+06 A long"),
    ("thin.json", lambda rs: _lattice(rs, [[4.6, 0, 0], [0, 4.6, 0], [0, 0, 0.3]]), "lattice vector is 0.3 A long"),
    ("big.json", _huge_cell, "1080 sites, more than the 1000"),
    ("deep.json", _deep_json, "nested more than"),
]


@pytest.mark.integration
@pytest.mark.parametrize(("name", "build", "match"), BAD_STRUCTURE_FILES, ids=[r[0] for r in BAD_STRUCTURE_FILES])
def test_invalid_structure_file_is_refused_before_storing(tmp_path, real_structures, refused, name, build, match):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "rutile.json").write_text(json.dumps(_rutile_dict(real_structures)))  # a good one beside it
    (folder / name).write_text(build(real_structures))
    line = refused(["structures", "fetch", "--source", "files", folder])
    assert name in line and match in line, line
    assert "nothing was stored" in line or "fix or remove" in line


def test_real_structures_pass_the_checks(real_structures):
    from xanesdb.schemas.structure import structure_problem

    assert {mid: structure_problem(s) for mid, s in real_structures.items() if structure_problem(s)} == {}
