"""Tests of the bundled structure set (xanesdb/platform/bundled.py) and its build script."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xanesdb.platform.bundled import (
    BUNDLED_SOURCE,
    bundled_attribution_path,
    bundled_data_path,
    count_bundled_structures,
    iter_bundled_structures,
)
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas.structure import StructureDoc

ABSORBERS = ["Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu"]
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_bundled_structures.py"


@pytest.fixture(scope="module")
def all_docs() -> list[StructureDoc]:
    return list(iter_bundled_structures())


@pytest.fixture(scope="module")
def build_script():
    spec = importlib.util.spec_from_file_location("build_bundled_structures", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_data_file_is_packaged_and_small():
    path = bundled_data_path()
    assert path.is_file()
    assert path.parent.name == "data" and path.parent.parent.name == "xanesdb"
    assert path.stat().st_size < 8_000_000


def test_docs_are_valid_with_provenance_and_licence(all_docs):
    assert len(all_docs) > 1900
    by_origin: dict[str, list[StructureDoc]] = {}
    for doc in all_docs:
        assert isinstance(doc, StructureDoc)
        assert doc.source == BUNDLED_SOURCE
        assert doc.provenance.licence and doc.provenance.reference
        assert doc.elements == sorted(doc.elements) and doc.nsites == len(doc.structure["sites"])
        by_origin.setdefault(doc.provenance.origin, []).append(doc)
    # every source kind is there: OmniXAS POSCARs, MP entries (emmet, small sets), a CIF without
    # an mp id, and the substituted prototypes
    assert set(by_origin) == {"omnixas", "materials_project", "file", "prototype", "literature"}
    assert len(by_origin["omnixas"]) == 1607
    for doc in by_origin["omnixas"]:
        assert re.fullmatch(r"(mp|mvc)-\d+", doc.material_id)
        assert "OmniXAS" in doc.provenance.reference and "BSD-3" in doc.provenance.licence
        assert "Cu" in doc.elements and "omnixas-cu" in doc.tags
    for doc in by_origin["materials_project"]:
        assert re.fullmatch(r"mp-\d+", doc.material_id)
        assert doc.provenance.source_id == doc.material_id
        assert "CC BY 4.0" in doc.provenance.licence
        assert "O" in doc.elements
    fe_o = [d for d in by_origin["materials_project"] if "emmet" in d.provenance.reference]
    assert len(fe_o) == 311 and all("Fe" in d.elements for d in fe_o)
    assert [d.material_id for d in by_origin["file"]] == ["veidt:alpha_Al2O3"]
    for doc in by_origin["prototype"]:
        prov = doc.provenance
        assert doc.material_id.startswith("proto:") and prov.source_id == doc.material_id
        assert prov.prototype and prov.substitution
        assert prov.relaxation and prov.relaxation.startswith("CHGNet") and "fmax" in prov.relaxation
        assert "substituted" in doc.tags
        assert doc.nsites <= 60
    # known compounds built from measured lattice constants: their bonds are the measured ones
    lit = {d.material_id: d for d in by_origin["literature"]}
    assert {"lit:spinel:FeAl2O4", "lit:spinel:CoAl2O4", "lit:calcite:MnCO3"} <= set(lit)
    for doc in lit.values():
        assert doc.material_id.startswith(("lit:spinel:", "lit:calcite:", "lit:rocksalt:", "lit:beta_k2so4:", "lit:vo2_m1:", "lit:zircon:"))
        assert "literature" in doc.tags
        assert "measured" in doc.provenance.reference and "not relaxed" in doc.provenance.note
    from pymatgen.core import Structure

    def bond(mid, el):
        s = Structure.from_dict(lit[mid].structure)
        i = next(k for k, site in enumerate(s) if site.specie.symbol == el)
        return min(n.nn_distance for n in s.get_neighbors(s[i], 3.0))

    assert abs(bond("lit:spinel:FeCr2O4", "Cr") - 1.995) < 0.01  # Cr(III)-O, Shannon sum
    assert 1.9 < bond("lit:spinel:FeAl2O4", "Fe") < 2.05  # tetrahedral Fe(II)-O, hercynite 1.96-2.0
    assert abs(bond("lit:calcite:MnCO3", "Mn") - 2.19) < 0.02  # rhodochrosite Mn-O
    assert abs(bond("lit:beta_k2so4:K2CrO4", "Cr") - 1.65) < 0.005  # chromate Cr(VI)-O
    assert bond("lit:beta_k2so4:K2CrO4", "K") > 2.6  # K-O 2.7-3.2 A in K2CrO4
    assert abs(bond("lit:beta_k2so4:K2MnO4", "Mn") - 1.66) < 0.005  # manganate Mn(VI)-O
    assert bond("lit:beta_k2so4:K2MnO4", "K") > 2.6
    assert abs(bond("lit:vo2_m1:VO2", "V") - 1.76) < 0.01  # the short V-O bond of monoclinic VO2
    assert abs(bond("lit:zircon:YVO4", "V") - 1.709) < 0.01  # orthovanadate V(V)-O, measured 1.709 A
    assert abs(bond("lit:zircon:YVO4", "Y") - 2.291) < 0.01  # the shorter Y-O of YVO4, measured 2.291 A


def test_no_non_oxides_and_ids_unique(all_docs):
    ids = [d.material_id for d in all_docs]
    assert len(ids) == len(set(ids))
    assert "mp-788" not in ids  # CoTe is not an oxide
    assert all("O" in d.elements for d in all_docs)


def test_each_absorber_has_at_least_100_structures(all_docs):
    counts = count_bundled_structures()
    assert set(counts) == set(ABSORBERS)
    for el in ABSORBERS:
        assert counts[el] >= 100, (el, counts[el])
        assert counts[el] == sum(1 for d in all_docs if el in d.elements)


def test_element_filter_and_limit():
    ni = list(iter_bundled_structures(["Ni"]))
    assert len(ni) == count_bundled_structures(["Ni"])["Ni"]
    assert all("Ni" in d.elements for d in ni)
    # lower case works; a structure with both elements is yielded once
    both = list(iter_bundled_structures(["ni", "Co"]))
    ids = [d.material_id for d in both]
    assert len(ids) == len(set(ids))
    assert {d.material_id for d in ni} <= set(ids)
    assert all({"Ni", "Co"} & set(d.elements) for d in both)
    first = [d.material_id for d in iter_bundled_structures(["Ti"], limit=5)]
    assert len(first) == 5
    assert first == [d.material_id for d in iter_bundled_structures(["Ti"], limit=5)]  # deterministic
    assert list(iter_bundled_structures(limit=0)) == []
    assert list(iter_bundled_structures(["Pu"])) == []


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(XanesdbUserError, match="element symbol"):
        next(iter_bundled_structures(["Xx"]))
    with pytest.raises(XanesdbUserError, match="limit"):
        next(iter_bundled_structures(limit=-1))
    with pytest.raises(XanesdbUserError, match="regenerate"):
        next(iter_bundled_structures(path=tmp_path / "missing.json.gz"))


def test_attribution_names_every_source():
    text = bundled_attribution_path().read_text()
    for needle in [
        "CC BY 4.0",
        "APL Materials 1, 011002",
        "AI-multimodal/OmniXAS",
        "57a6282d3c6717586a1a562614c64a5d18d3ba6f",
        "materialsproject/emmet",
        "AI-multimodal/Lightshow",
        "pbenner/pycoordinationnet",
        "materialsvirtuallab/veidt",
        "Brookhaven Science Associates",
        "CHGNet",
    ]:
        assert needle in text, needle


def test_substitution_step_without_relaxation(build_script, shared_data, tmp_path):
    """The script's substitution step on one prototype (spinel), written and read back."""
    from pymatgen.core import Composition

    b = build_script
    records = b.substituted_records(shared_data, do_relax=False, only=["spinel"])
    ids = [r["material_id"] for r in records]
    assert len(ids) == len(set(ids)) == sum(1 for p, _ in b.substitution_plan() if p == "spinel") > 20
    rec = records[ids.index("proto:spinel:A=Ni,B=Al")]
    prov = rec["provenance"]
    assert prov["origin"] == "prototype" and "mp-19306" in prov["prototype"]
    assert prov["substitution"] == {"A:Fe": "Ni", "B:Fe": "Al"}
    assert "unrelaxed" in prov["note"] and "relaxation" not in prov
    assert records[ids.index("proto:spinel:A=Ni,B=Cr/Mn")]["provenance"]["substitution"] == {
        "A:Fe": "Ni",
        "B:Fe": "Cr/Mn",
    }

    out = tmp_path / "structures.json.gz"
    b.write_records(records, out)
    docs = {d.material_id: d for d in iter_bundled_structures(path=out)}
    assert len(docs) == len(records)
    s = docs["proto:spinel:A=Ni,B=Al"].to_structure()
    assert s.composition.reduced_composition == Composition("NiAl2O4")
    # Ni sits on the tetrahedral site, Al on the octahedral one; the cell was rescaled
    # (Al3+ is smaller than Fe3+/Fe2+ of the Fe3O4 parent)
    for site in s:
        n_o = sum(1 for n in s.get_neighbors(site, 2.3) if n.specie.symbol == "O")
        assert n_o == {"Ni": 4, "Al": 6, "O": n_o}[site.specie.symbol]
    assert s.volume < b.load_prototypes(shared_data)["spinel"]["structure"].volume
    mixed = docs["proto:spinel:A=Ni,B=Cr/Mn"].to_structure()
    assert mixed.composition.reduced_composition == Composition("NiCrMnO4")
    assert docs["proto:spinel:A=Mg,B=Co/Ni"].to_structure().composition.reduced_composition == Composition(
        "MgCoNiO4"
    )
    # deterministic: the same step gives the same bytes
    out2 = tmp_path / "again.json.gz"
    b.write_records(b.substituted_records(shared_data, do_relax=False, only=["spinel"]), out2)
    assert out.read_bytes() == out2.read_bytes()


def test_plan_reaches_the_targets_on_paper(build_script):
    """Planned substitutions + real structures give >= 100 structures per absorber (before drops)."""
    real = {"Ti": 62, "V": 77, "Cr": 43, "Mn": 74, "Fe": 363, "Co": 34, "Ni": 35, "Cu": 1607}
    n = dict.fromkeys(real, 0)
    for _, mapping in build_script.substitution_plan():
        put = {e for v in mapping.values() for e in (v if isinstance(v, list) else [v])}
        for el in put & set(n):
            n[el] += 1
    assert all(real[el] + n[el] >= 105 for el in real), n


def test_literature_prototype_roles(build_script, shared_data):
    """Prototypes built from cited Wyckoff positions have the intended cation geometry."""
    protos = build_script.load_prototypes(shared_data)
    ybco = protos["ybaco2o5"]
    s = ybco["structure"]
    from pymatgen.core import Composition

    assert s.composition.reduced_composition == Composition("YBaCo2O5") and len(s) == 9
    for site, role in zip(s, ybco["roles"]):
        if role == "B":
            assert sum(1 for n in s.get_neighbors(site, 2.3) if n.specie.symbol == "O") == 5
    bm = protos["brownmillerite"]
    cn = {"B": set(), "T": set()}
    for site, role in zip(bm["structure"], bm["roles"]):
        if role in cn:
            cn[role].add(sum(1 for n in bm["structure"].get_neighbors(site, 2.3) if n.specie.symbol == "O"))
    assert cn == {"B": {6}, "T": {4}}


def test_substituted_structures_have_the_intended_geometry():
    """ChemEnv (paper's 1.2 cutoff) on relaxed substituted structures: the classes they were made for."""
    from xanesdb.jobs.labels import label_structure

    docs = {
        d.material_id: d
        for d in iter_bundled_structures(["Ni"])
        if d.material_id in ("proto:ybaco2o5:A=Ba,B=Co/Ni,L=Nd", "proto:spinel:A=Ni,B=Al", "proto:layered:A=Ni,B=Co")
    }
    assert len(docs) == 3
    got = {}
    for mid, doc in docs.items():
        for site in label_structure(doc.to_structure(), mid, doc.source, elements=["Co", "Ni"]):
            got[(mid, site.element)] = site.chemenv.symbol
    assert got == {
        ("proto:ybaco2o5:A=Ba,B=Co/Ni,L=Nd", "Co"): "S:5",
        ("proto:ybaco2o5:A=Ba,B=Co/Ni,L=Nd", "Ni"): "S:5",
        ("proto:spinel:A=Ni,B=Al", "Ni"): "T:4",
        ("proto:layered:A=Ni,B=Co", "Ni"): "O:6",
        ("proto:layered:A=Ni,B=Co", "Co"): "O:6",
    }


def test_shipped_feff10_inputs_regenerate_identically(tmp_path):
    """The regeneration command would key and write the same FEFF inputs as the shipped tasks (byte
    for byte, or for at most 2 % of them with two atoms at one distance in the other order).

    Every shipped ``fast`` task is checked (the main file and the ``feff_tasks.fast-*`` parts), by two
    runs of the script side by side (each on every other task, with the bundled structures): the check is CPU-bound and pytest
    uses one core, so this halves its time on two cores.
    """
    import gzip
    import os

    from xanesdb.platform.snapshot import BUNDLED_DB_DIR

    script = Path(__file__).resolve().parents[1] / "scripts" / "check_regeneration.py"
    lines = []
    # the main file and the parts of fast tasks added later (feff_tasks.fast-*.jsonl.gz)
    for path in [BUNDLED_DB_DIR / "feff_tasks.jsonl.gz", *sorted(BUNDLED_DB_DIR.glob("feff_tasks.fast-*.jsonl.gz"))]:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines += [ln for ln in fh if ln.strip()]
    n_shards = 2 if (os.cpu_count() or 1) > 1 else 1
    procs = []
    for k in range(n_shards):
        shard = tmp_path / f"shard{k}"
        shard.mkdir()
        with gzip.open(shard / "feff_tasks.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.writelines(lines[k::n_shards])
        for part in BUNDLED_DB_DIR.glob("structures*.jsonl.gz"):
            (shard / part.name).symlink_to(part)
        procs.append(subprocess.Popen([sys.executable, str(script), "--run", "0", "--db", str(shard)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    total = 0
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
        m = re.search(r"(\d+) shipped FEFF10 tasks: (\d+) task keys and (\d+) feff.inp hashes regenerated identically, "
                      r"(\d+) more the same input", out)
        n, keys, same, reordered = map(int, m.groups())
        # every key, and every input byte for byte but a few atoms at one distance swapped by a newer pymatgen
        assert n > 0 and keys == same + reordered == n and reordered <= 0.02 * n, out
        total += n
    assert total >= 300


def test_inputs_equivalent_up_to_the_order_of_atoms_at_one_distance():
    from xanesdb.jobs.feff.sets import input_equivalent
    from xanesdb.platform.snapshot import BUNDLED_DB_DIR, iter_snapshot

    text = next(t["feff_inp"] for t in iter_snapshot(BUNDLED_DB_DIR / "feff_tasks.jsonl.gz") if t.get("feff_inp"))
    lines = text.splitlines()
    i = lines.index("ATOMS") + 3  # the first neighbours after the absorber
    a, b = lines[i].split(), lines[i + 1].split()
    assert a[5] == b[5]  # two atoms at one distance
    swapped = lines[:i] + ["  ".join([*b[:6], a[6]]), "  ".join([*a[:6], b[6]])] + lines[i + 2:]
    assert "\n".join(swapped) != text and input_equivalent("\n".join(swapped), text)
    moved = lines[:i] + ["  ".join([f"{float(a[0]) + 0.001:.5f}", *a[1:]])] + lines[i + 1:]
    assert not input_equivalent("\n".join(moved), text)
    cards = text.replace("FMS 6.0 0", "FMS 7.0 0")
    assert cards != text and not input_equivalent(cards, text)
