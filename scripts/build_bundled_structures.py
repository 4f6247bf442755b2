#!/usr/bin/env python
"""Build xanesdb's bundled structure set, ``xanesdb/data/structures.json.gz``.

Steps (deterministic; the output depends only on the inputs and the CHGNet version):

1. Real Materials Project structures from ``../shared/data``: the OmniXAS Cu developer part
   (which also holds the Ti, V, Cr, Mn, Fe, Co, Ni oxides listed in
   ``structures/other_tm_in_omnixas.json``), the 311 Fe-O entries of emmet's Li-Fe-O test file
   (structures only) and the oxides of ``structures/small_sets.json.gz`` (CoTe and the other
   non-oxides are skipped).
2. Substituted structures: cations of known prototypes (``scripts/prototypes/prototypes.json``;
   coordinates from real structures in ``../shared/data`` or literature Wyckoff positions,
   each cited there) are replaced to build real compound families for the absorbers that lack
   T:4, S:5 or O:6 sites, the volume is rescaled by ionic radii, and each structure is relaxed
   with CHGNet (FIRE, cell and positions) -- relaxation runs only here, never inside xanesdb.
3. Known compounds built from literature crystallography without relaxation
   (``scripts/prototypes/literature.json``): normal spinels A[B2]O4 with the tetrahedral
   Fe(II), Mn(II), Co(II) and octahedral Cr(III), V(III), Fe(III), Co(III), Mn(III/IV) sites that
   step 1 lacks (measured lattice constant, oxygen parameter from Shannon radii), and calcite-type
   carbonates MCO3 of Mn, Fe, Co, Ni (measured a, c; oxygen parameter from the C-O bond), and
   rock-salt FeO and NiO, the chromate K2CrO4 (beta-K2SO4 structure, the Cr(VI) tetrahedra of the
   chromates measured as references), and monoclinic VO2 (M1, the room-temperature phase) from its
   published positions. ids ``lit:spinel:<formula>``, ``lit:calcite:<formula>``,
   ``lit:rocksalt:<formula>``, ``lit:beta_k2so4:<formula>``, ``lit:vo2_m1:VO2``.
   ``--literature-only`` replaces just these
   records in an existing output file (no CHGNet needed).
4. Optionally (``--check``) every absorber site is labelled with ChemEnv (SimplestChemenvStrategy,
   distance cutoff 1.2, angle cutoff 0.3, the paper's settings) and counts per absorber and class
   are printed and written to ``scripts/prototypes/bundled_counts.json``.

Usage::

    nice -n 10 python scripts/build_bundled_structures.py [--shared-data ../shared/data]
        [--cache /tmp/relax-cache] [--check] [--no-relax]

Relaxed structures are cached by substitution id in ``--cache`` so an interrupted build resumes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("build_bundled_structures")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
OUTPUT = REPO / "xanesdb" / "data" / "structures.json.gz"
PROTOTYPES = Path(__file__).resolve().parent / "prototypes" / "prototypes.json"
LITERATURE = Path(__file__).resolve().parent / "prototypes" / "literature.json"
COUNTS = Path(__file__).resolve().parent / "prototypes" / "bundled_counts.json"

ABSORBERS = ["Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu"]

MP_LICENCE = "CC BY 4.0 (Materials Project data; cite A. Jain et al., APL Mater. 1, 011002 (2013))"
OMNIXAS_REF = "AI-multimodal/OmniXAS tutorial_omnixas/FEFF/Cu/{id}/POSCAR@57a6282d3c6717586a1a562614c64a5d18d3ba6f"
OMNIXAS_LICENCE = (
    MP_LICENCE + "; file from OmniXAS, BSD-3-Clause, Copyright (c) 2022, Brookhaven Science "
    "Associates, LLC, Brookhaven National Laboratory"
)
EMMET_REF = "materialsproject/emmet test_files/Li-Fe-O.json.gz@fbe8656b65647e69f30b09090da4135e95d8b2f7"
EMMET_LICENCE = (
    MP_LICENCE + "; file from emmet, BSD-3-Clause-LBNL, Copyright (c) 2017, The Regents of the "
    "University of California, through Lawrence Berkeley National Laboratory"
)
SMALL_LICENCES = {
    "AI-multimodal/Lightshow": "BSD-3-Clause, Copyright (c) 2022, Brookhaven Science Associates, LLC, "
    "Brookhaven National Laboratory",
    "pbenner/pycoordinationnet": "BSD-3 (declared in setup.py), Copyright (C) 2023 Philipp Benner",
    "materialsvirtuallab/veidt": "BSD-3-Clause, Copyright (c) 2015, Regents of the University of California",
}


# --------------------------------------------------------------------------------------------
# 1. real structures
# --------------------------------------------------------------------------------------------


def _record(material_id: str, structure: dict, provenance: dict, tags: list[str]) -> dict[str, Any]:
    prov = {k: v for k, v in provenance.items() if v is not None}
    return {"material_id": material_id, "structure": structure, "provenance": prov, "tags": tags}


def real_records(shared: Path) -> list[dict[str, Any]]:
    """Compact records of the real Materials Project structures in ``shared``.

    Parameters
    ----------
    shared
        The shared data folder (with ``omnixas_cu/`` and ``structures/``).

    Returns
    -------
    list of dict
        ``{material_id, structure, provenance, tags}``, unique by material_id (first source wins,
        tags merged), OmniXAS first, then Li-Fe-O, then the small sets.
    """
    out: dict[str, dict[str, Any]] = {}

    def add(rec: dict[str, Any]) -> None:
        mid = rec["material_id"]
        if mid in out:
            out[mid]["tags"] = sorted(set(out[mid]["tags"]) | set(rec["tags"]))
            return
        out[mid] = rec

    with gzip.open(shared / "omnixas_cu" / "structures.json.gz", "rt") as fh:
        omni = json.load(fh)
    other = json.loads((shared / "structures" / "other_tm_in_omnixas.json").read_text())
    tm_of: dict[str, list[str]] = {}
    for el, ids in other["material_ids_by_element"].items():
        for mid in ids:
            tm_of.setdefault(mid, []).append(el)
    for r in sorted(omni, key=lambda r: r["material_id"]):
        mid = r["material_id"]
        tags = ["omnixas-cu"] + (["omnixas-other-tm"] if mid in tm_of else [])
        add(
            _record(
                mid,
                r["structure"],
                {
                    "origin": "omnixas",
                    "reference": OMNIXAS_REF.format(id=mid),
                    "licence": OMNIXAS_LICENCE,
                    "source_id": mid,
                    "note": "Materials Project structure (mvc- ids: MP 'materials virtual "
                    "chemistry' set) from the OmniXAS Cu K-edge FEFF set, developer part",
                },
                tags,
            )
        )

    with gzip.open(shared / "structures" / "li_fe_o_entries.json.gz", "rt") as fh:
        entries = json.load(fh)
    for e in sorted(entries, key=lambda e: e["entry_id"]):
        mid = e["entry_id"]
        comp = set(e["composition"])
        add(
            _record(
                mid,
                e["structure"],
                {
                    "origin": "materials_project",
                    "reference": EMMET_REF,
                    "licence": EMMET_LICENCE,
                    "source_id": mid,
                    "note": f"ComputedStructureEntry structure ({e['data'].get('run_type', '?')}); "
                    f"oxide_type {e['data'].get('oxide_type', '?')}",
                },
                ["li-fe-o" if "Li" in comp else "fe-o"],
            )
        )

    with gzip.open(shared / "structures" / "small_sets.json.gz", "rt") as fh:
        small = json.load(fh)
    from pymatgen.core import Structure

    for r in small:
        s = Structure.from_dict(r["structure"])
        els = {e.symbol for e in s.composition.elements}
        if "O" not in els:
            logger.info("skip non-oxide %s (%s)", r.get("material_id") or r.get("name"), r["formula"])
            continue
        repo = "/".join(r["source"].split("/")[:2])
        mid = r.get("material_id")
        name = r.get("name")
        if mid is None:
            mid = f"{repo.split('/')[1]}:{name}"
        path, _, commit = r["source"].partition("@")
        add(
            _record(
                mid,
                r["structure"],
                {
                    "origin": "materials_project" if mid.startswith("mp-") else "file",
                    "reference": f"{repo} {path[len(repo) + 1:]}@{commit}",
                    "licence": (MP_LICENCE + "; " if mid.startswith("mp-") else "")
                    + f"file from {repo}, {SMALL_LICENCES[repo]}",
                    "source_id": r.get("material_id") or name,
                    "note": None if mid.startswith("mp-") else "CIF without an mp id",
                },
                ["small-set", repo.split("/")[1].lower()],
            )
        )
    return list(out.values())


# --------------------------------------------------------------------------------------------
# 2. substitution into prototypes
# --------------------------------------------------------------------------------------------

#: absorbers that get the full set of families (Fe and Cu already have >= 100 real structures
#: and >= 10 unique T:4, S:5 and O:6 sites; they still appear as second cations)
SUBSTITUTED_ABSORBERS = ["Ti", "V", "Cr", "Mn", "Co", "Ni"]
LANTHANIDES = ["Y", "La", "Pr", "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er"]
O_CUTOFF = 2.45  # A, O neighbours counted to tell tetrahedral from octahedral sites of one element


def load_prototypes(shared: Path, path: Path = PROTOTYPES) -> dict[str, dict[str, Any]]:
    """Parent structures with a role per site.

    Parameters
    ----------
    shared
        The shared data folder (real prototypes are read from it).
    path
        The prototype definitions (``scripts/prototypes/prototypes.json``).

    Returns
    -------
    dict
        name -> ``{"structure": Structure, "roles": [role per site], "reference": str,
        "parent": str, "description": str}``.
    """
    from pymatgen.core import Lattice, Structure

    defs = json.loads(path.read_text())
    out: dict[str, dict[str, Any]] = {}
    for name, d in defs.items():
        if name.startswith("_"):
            continue
        if d["kind"] == "real":
            with gzip.open(shared / d["file"], "rt") as fh:
                recs = json.load(fh)
            rec = next(r for r in recs if (r.get("material_id") or r.get("entry_id")) == d["material_id"])
            s = Structure.from_dict(rec["structure"])
            if d.get("primitive"):
                s = s.get_primitive_structure()
            s.remove_site_property("magmom") if "magmom" in s.site_properties else None
            roles = []
            for i, site in enumerate(s):
                el = site.specie.symbol
                rule = d["roles"].get(el, el)
                if isinstance(rule, dict):
                    cn = sum(1 for n in s.get_neighbors(site, O_CUTOFF) if n.specie.symbol == "O")
                    rule = rule[str(cn)]
                roles.append(rule)
            parent = d["material_id"]
            ref = f"{parent} from ../shared/data/{d['file']} (Materials Project, CC BY 4.0)"
        else:
            lat = d["lattice"]
            sg = d["spacegroup"]
            if "b" in lat:
                lattice = Lattice.orthorhombic(lat["a"], lat["b"], lat["c"])
            elif sg.startswith(("P6", "R")):
                lattice = Lattice.hexagonal(lat["a"], lat["c"])
            else:
                lattice = Lattice.tetragonal(lat["a"], lat["c"])
            species = [f"{el}" for _, el, _ in d["sites"]]
            coords = [c for _, _, c in d["sites"]]
            # build once per role so that the role of every generated site is known
            s = Structure.from_spacegroup(sg, lattice, species, coords, tol=1e-3)
            role_of = {}
            for role, el, c in d["sites"]:
                orbit = Structure.from_spacegroup(sg, lattice, [el], [c], tol=1e-3)
                for site in orbit:
                    role_of[tuple(round(x % 1.0, 4) % 1.0 for x in site.frac_coords)] = role
            roles_full = [role_of[tuple(round(x % 1.0, 4) % 1.0 for x in site.frac_coords)] for site in s]
            s.add_site_property("role", roles_full)
            if d.get("primitive"):
                s = s.get_primitive_structure(use_site_props=True)
            roles = list(s.site_properties["role"])
            s.remove_site_property("role")
            parent = name
            ref = d["reference"]
        out[name] = {
            "structure": s,
            "roles": roles,
            "reference": ref,
            "parent": parent,
            "description": d["description"],
        }
    return out


def substitution_plan() -> list[tuple[str, dict[str, Any]]]:
    """The substitutions to make: ``(prototype, {role: element or [elements alternating]})``.

    Real compound families (YBaCo2O5 / LnBaMn2O5 / LnBaCoFeO5 square-pyramidal double
    perovskites, spinels CoAl2O4 / NiCr2O4 / MnCo2O4, ilmenites NiTiO3 / CoTiO3 / MnTiO3,
    layered LiCoO2 / LiNiO2 / NaCrO2-type ordered rocksalts, perovskites LnNiO3 / LnCoO3 / LnCrO3,
    Ba2TiO4 / Ba2CoO4, melilites Ca2CoSi2O7, olivines LiMnPO4 / LiCoPO4 / LiNiPO4, brownmillerites
    Ca2Fe2O5 / Sr2Co2O5 ...) extended over the absorbers. Where a cell has several cation sites,
    different absorbers share it, so one small cell serves several absorbers (CHGNet relaxation
    costs ~10-30 s per cell on a shared 2-core machine). Chosen so that every absorber reaches
    >= 100 structures and >= 10 unique T:4, S:5 and O:6 sites with the real structures.
    The order is fixed (scarce classes first), so the output is deterministic.
    """
    tm = SUBSTITUTED_ABSORBERS
    plan: list[tuple[str, dict[str, Any]]] = []
    # S:5 -- square pyramids in LnBaB2O5; one absorber, or two sharing the two B sites
    for ln in ["Y", "La", "Pr"]:
        for m in tm:
            plan.append(("ybaco2o5", {"A": "Ba", "L": ln, "B": m}))
    for ln in ["Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er"]:
        plan.append(("ybaco2o5", {"A": "Ba", "L": ln, "B": ["Co", "Ni"]}))
        plan.append(("ybaco2o5", {"A": "Ba", "L": ln, "B": ["Cr", "Mn"]}))
    for ln in ["Nd", "Sm", "Gd", "Dy"]:
        plan.append(("ybaco2o5", {"A": "Ba", "L": ln, "B": ["Ti", "V"]}))
        plan.append(("ybaco2o5", {"A": "Ba", "L": ln, "B": ["Ni", "Cr"]}))
        plan.append(("ybaco2o5", {"A": "Ba", "L": ln, "B": ["Co", "Mn"]}))
    # T:4 -- the A site of spinels A[B B']O4
    def pairs(els: list[str]) -> list[Any]:
        return [[a, b] for i, a in enumerate(els) for b in els[i + 1 :]]

    for b in pairs(["Ti", "V", "Cr", "Mn", "Co"]) + ["Al", "Ga", "Fe"]:
        plan.append(("spinel", {"A": "Ni", "B": b}))
    for b in pairs(["Cr", "Mn", "Co", "Ni"]) + ["Al", "Ga"]:
        plan.append(("spinel", {"A": "Ti", "B": b}))
    for b in [["Ni", "Cr"], ["Ni", "Mn"], "Al", "Ga"]:
        plan.append(("spinel", {"A": "Co", "B": b}))
    for a in ["Mg", "Zn", "Cd"]:  # Co, Ni, Cr octahedral in spinels of non-absorbers
        plan.append(("spinel", {"A": a, "B": ["Co", "Ni"]}))
        plan.append(("spinel", {"A": a, "B": ["Co", "Cr"]}))
    # Ba2TiO4 / Ba2CoO4 / Ba2CrO4: isolated tetrahedra; melilites Ca2CoSi2O7, Ca2NiSi2O7
    for m in ["Ti", "Co", "Cr"]:
        plan.append(("beta_k2so4", {"A": "Ba", "B": m}))
    for m in ["Co", "Ni"]:
        plan.append(("melilite", {"A": "Ca", "B": m, "X": "Si"}))
    # O:6 and counts -- ordered rocksalts (layered AB O2) and ilmenites with two absorbers
    for a in tm:
        for b in tm:
            if a != b:
                plan.append(("layered", {"A": a, "B": b}))
                plan.append(("ilmenite", {"A": a, "B": b}))
    for m in ["Cr", "Co", "Ni"]:  # perovskites LnMO3 and AMO3
        for a in ["Ca", "Sr", "Ba"] + LANTHANIDES:
            plan.append(("perovskite", {"A": a, "B": m}))
    for a in ["Ca", "Sr", "Ba", "La"]:
        plan.append(("perovskite", {"A": a, "B": "Ti"}))
    for m in tm:
        for proto in ["rocksalt", "rutile", "corundum", "wurtzite"]:
            plan.append((proto, {"B": m}))
    for m in ["Mn", "Co", "Ni"]:  # olivines LiMPO4
        plan.append(("olivine", {"B1": "Li", "B2": m, "X": "P"}))
    for a, m in [("Ca", "Fe"), ("Sr", "Co")]:  # brownmillerites Ca2Fe2O5, Sr2Co2O5
        plan.append(("brownmillerite", {"A": a, "B": m, "T": m}))
    for a in ["Cu", "Ag"]:  # delafossites CuCrO2, AgNiO2, CuCoO2
        for m in ["Cr", "Co", "Ni"]:
            plan.append(("delafossite", {"A": a, "B": m}))
    seen: set[str] = set()
    out = []
    for proto, mapping in plan:
        key = substitution_id(proto, mapping)
        if key not in seen:
            seen.add(key)
            out.append((proto, mapping))
    return out


def substitution_id(prototype: str, mapping: dict[str, Any]) -> str:
    """Deterministic material id ``proto:<prototype>:<role>=<element>,...`` (roles sorted)."""
    parts = []
    for role in sorted(mapping):
        el = mapping[role]
        parts.append(f"{role}={'/'.join(el) if isinstance(el, list) else el}")
    return f"proto:{prototype}:{','.join(parts)}"


def _radius(el: str) -> float:
    from pymatgen.core import Element

    e = Element(el)
    r = float(e.average_ionic_radius or 0.0)
    return r if r > 0 else float(e.atomic_radius or 1.0)


def substitute(proto: dict[str, Any], mapping: dict[str, Any]):
    """Put elements on the prototype's roles and rescale the cell by ionic radii.

    Parameters
    ----------
    proto
        One entry of :func:`load_prototypes`.
    mapping
        role -> element, or role -> list of elements assigned alternately (in site order) to
        the sites of that role (e.g. an inverse spinel's octahedral sites).

    Returns
    -------
    tuple
        (unrelaxed Structure, substitution dict ``"<role>:<parent element>" -> element``).
    """
    from pymatgen.core import Structure

    s0: Structure = proto["structure"]
    species: list[str] = []
    put: dict[str, list[str]] = {}
    seen_in_role: dict[str, int] = {}
    ratios = []
    for site, role in zip(s0, proto["roles"]):
        old = site.specie.symbol
        new = mapping.get(role, old)
        if isinstance(new, list):
            k = seen_in_role.get(role, 0)
            seen_in_role[role] = k + 1
            new = new[k % len(new)]
        species.append(new)
        if role in mapping:
            key = f"{role}:{old}"
            if new not in put.setdefault(key, []):
                put[key].append(new)
            ratios.append((_radius(new) + 1.38) / (_radius(old) + 1.38))
    subst = {k: "/".join(v) for k, v in put.items()}
    scale = sum(ratios) / len(ratios) if ratios else 1.0
    lattice = s0.lattice.matrix * scale
    s = Structure(lattice, species, s0.frac_coords)
    return s, subst


def relax(structure, model=None, fmax: float = 0.15, steps: int = 150):
    """Relax cell and positions with CHGNet (FIRE); returns (Structure, description, energy/atom)."""
    import chgnet
    import torch
    from chgnet.model import CHGNet, StructOptimizer

    torch.set_num_threads(1)
    model = model or CHGNet.load(verbose=False)
    opt = StructOptimizer(model=model, optimizer_class="FIRE")
    result = opt.relax(structure, fmax=fmax, steps=steps, relax_cell=True, verbose=False)
    n = len(result["trajectory"].energies)
    final = result["final_structure"]
    e = float(result["trajectory"].energies[-1]) / len(final)
    desc = (
        f"CHGNet {chgnet.__version__} (model {model.version}), FIRE, cell+positions, fmax {fmax} eV/A, "
        f"{n} steps of max {steps}{'' if n < steps else ' (not converged)'}"
    )
    return final, desc, e


def _compact(structure) -> dict[str, Any]:
    """Structure.as_dict() with rounded coordinates and no site properties (smaller file)."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice([[round(x, 6) for x in row] for row in structure.lattice.matrix])
    fc = [[round(x % 1.0, 6) % 1.0 for x in site.frac_coords] for site in structure]
    return Structure(lat, [site.specie.symbol for site in structure], fc).as_dict()


def substituted_records(
    shared: Path,
    do_relax: bool = True,
    cache: Path | None = None,
    only: list[str] | None = None,
    absorbers: list[str] | None = None,
    relax_missing: bool = True,
) -> list[dict[str, Any]]:
    """Compact records of the substituted (and, by default, CHGNet-relaxed) structures.

    Parameters
    ----------
    shared
        The shared data folder (real prototypes).
    do_relax
        Relax with CHGNet (needs ``pip install xanesdb[relax]``); False keeps the rescaled
        unrelaxed structures (for tests).
    cache
        Folder for a ``relaxed.jsonl`` cache of relaxed structures (resume after interruption).
    only
        Restrict to these prototypes.
    absorbers
        Keep only substitutions that put one of these elements in (default: all).
    relax_missing
        False: use only what the cache holds and leave the rest out (for a partial build).
    """
    protos = load_prototypes(shared)
    def puts(mapping: dict[str, Any]) -> set[str]:
        return {e for v in mapping.values() for e in (v if isinstance(v, list) else [v])}

    plan = [
        (p, m)
        for p, m in substitution_plan()
        if (only is None or p in only) and (absorbers is None or puts(m) & set(absorbers))
    ]
    cached: dict[str, dict[str, Any]] = {}
    cache_file = None
    if cache is not None and do_relax:
        cache.mkdir(parents=True, exist_ok=True)
        cache_file = cache / "relaxed.jsonl"
        if cache_file.exists():
            for line in cache_file.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    cached[r["material_id"]] = r
    model = None
    out = []
    t0 = time.time()
    built = []
    for pname, mapping in plan:
        s, subst = substitute(protos[pname], mapping)
        built.append((pname, substitution_id(pname, mapping), s, subst))
    if do_relax and relax_missing:
        # relax small cells first (an interrupted build then holds as many structures as possible)
        order = sorted(range(len(built)), key=lambda k: (len(built[k][2]), k))
        todo = [built[k] for k in order if built[k][1] not in cached]
        for i, (pname, mid, s, _) in enumerate(todo):
            if model is None:
                from chgnet.model import CHGNet

                model = CHGNet.load(verbose=False)
            t = time.time()
            try:
                final, relaxation, e = relax(s, model)
                c = {"material_id": mid, "structure": _compact(final), "relaxation": relaxation,
                     "energy_per_atom": round(e, 4), "ok": True}
            except Exception as exc:  # noqa: BLE001 - a failed relaxation drops the structure
                logger.warning("%s: relaxation failed: %s", mid, exc)
                c = {"material_id": mid, "ok": False, "error": str(exc)}
            logger.info("[%d/%d] %s relaxed in %.1f s", i + 1, len(todo), mid, time.time() - t)
            cached[mid] = c
            if cache_file is not None:
                with open(cache_file, "a") as fh:
                    fh.write(json.dumps(c) + "\n")
    for pname, mid, s, subst in built:
        proto = protos[pname]
        relaxation, note = None, None
        if do_relax:
            if mid in cached:
                c = cached[mid]
            else:
                logger.warning("%s: not relaxed yet (--cached-only), left out", mid)
                continue
            if not c.get("ok"):
                continue
            from pymatgen.core import Structure

            final = Structure.from_dict(c["structure"])
            if not _sane(s, final):
                logger.warning("%s: dropped, relaxation went astray", mid)
                continue
            struct_dict = c["structure"]
            relaxation = c["relaxation"]
            note = f"CHGNet energy {c['energy_per_atom']} eV/atom; hypothetical unless the compound is known"
        else:
            struct_dict = _compact(s)
            note = "unrelaxed (cell rescaled by ionic radii only)"
        out.append(
            _record(
                mid,
                struct_dict,
                {
                    "origin": "prototype",
                    "reference": proto["reference"],
                    "licence": "CC BY 4.0 (derived from Materials Project data)"
                    if proto["parent"].startswith("mp-")
                    else "CC BY 4.0 (xanesdb; positions from the cited literature)",
                    "source_id": mid,
                    "prototype": f"{pname} ({proto['parent']}): {proto['description']}",
                    "substitution": subst,
                    "relaxation": relaxation,
                    "note": note,
                },
                ["substituted", f"prototype:{pname}"],
            )
        )
    logger.info("%d substituted structures in %.0f s", len(out), time.time() - t0)
    return out


def _sane(before, after) -> bool:
    """False when a relaxed cell collapsed or exploded (volume x0.5..x2) or atoms overlap (< 1.0 A)."""
    import numpy as np

    ratio = after.volume / before.volume
    if not 0.5 < ratio < 2.0:
        return False
    dm = after.distance_matrix + np.eye(len(after)) * 100
    return bool(dm.min() > 1.0)


# --------------------------------------------------------------------------------------------
# 3. ChemEnv check
# --------------------------------------------------------------------------------------------


def chemenv_labels(structure, elements: list[str], symprec: float = 0.1) -> list[tuple[str, int, str | None]]:
    """ChemEnv symbol of each symmetry-unique site of ``elements`` (SimplestChemenvStrategy 1.2/0.3).

    Uses ``xanesdb.jobs.labels.label_structure`` when it exists, else pymatgen directly.

    Returns
    -------
    list of (element, site index, symbol or None)
    """
    try:
        from xanesdb.jobs.labels import label_structure  # type: ignore[import-not-found]
    except ImportError:
        label_structure = None
    if label_structure is not None:
        try:
            docs = label_structure(structure, material_id="check", source="bundled")
            return [(d.element, d.site_index, d.chemenv.symbol if d.chemenv else None) for d in docs
                    if d.element in elements]
        except Exception as exc:  # noqa: BLE001 - fall back to pymatgen when the interface differs
            logger.debug("label_structure failed (%s); using pymatgen", exc)
    from pymatgen.analysis.chemenv.coordination_environments.chemenv_strategies import (
        SimplestChemenvStrategy,
    )
    from pymatgen.analysis.chemenv.coordination_environments.coordination_geometry_finder import (
        LocalGeometryFinder,
    )
    from pymatgen.analysis.chemenv.coordination_environments.structure_environments import (
        LightStructureEnvironments,
    )
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sym = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetrized_structure()
        groups = sym.equivalent_indices
    except Exception:  # noqa: BLE001
        groups = [[i] for i in range(len(structure))]
    idx = [g[0] for g in groups if structure[g[0]].specie.symbol in elements]
    if not idx:
        return []
    lgf = LocalGeometryFinder()
    lgf.setup_parameters(centering_type="centroid", include_central_site_in_centroid=True)
    lgf.setup_structure(structure)
    se = lgf.compute_structure_environments(only_indices=idx, maximum_distance_factor=1.41)
    strategy = SimplestChemenvStrategy(distance_cutoff=1.2, angle_cutoff=0.3)
    lse = LightStructureEnvironments.from_structure_environments(strategy=strategy, structure_environments=se)
    out = []
    for i in idx:
        ces = lse.coordination_environments[i]
        sym_ = min(ces, key=lambda c: c["csm"])["ce_symbol"] if ces else None
        out.append((structure[i].specie.symbol, i, sym_))
    return out


def check_counts(records: list[dict[str, Any]], cache: Path | None = None) -> dict[str, Any]:
    """Structures per absorber and ChemEnv classes of the symmetry-unique absorber sites.

    Parameters
    ----------
    records
        Compact records to check.
    cache
        Folder for a ``labels.jsonl`` cache of ChemEnv labels (keyed by material id and the
        sha1 of the structure), so a re-check only labels new structures.
    """
    from pymatgen.core import Structure

    labels_cache: dict[str, list] = {}
    cache_file = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        cache_file = cache / "labels.jsonl"
        if cache_file.exists():
            for line in cache_file.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    labels_cache[r["key"]] = r["labels"]
    n_struct = dict.fromkeys(ABSORBERS, 0)
    classes = {el: {"T:4": 0, "S:5": 0, "O:6": 0, "other": 0} for el in ABSORBERS}
    per_structure = {}
    for k, rec in enumerate(records):
        s = Structure.from_dict(rec["structure"])
        present = {e.symbol for e in s.composition.elements}
        for el in ABSORBERS:
            if el in present:
                n_struct[el] += 1
        key = rec["material_id"] + ":" + hashlib.sha1(json.dumps(rec["structure"], sort_keys=True).encode()).hexdigest()
        if key in labels_cache:
            labels = labels_cache[key]
        else:
            labels = [list(x) for x in chemenv_labels(s, [el for el in ABSORBERS if el in present])]
            if cache_file is not None:
                with open(cache_file, "a") as fh:
                    fh.write(json.dumps({"key": key, "labels": labels}) + "\n")
        per_structure[rec["material_id"]] = [f"{el}{i}:{sym}" for el, i, sym in labels]
        for el, _, sym in labels:
            classes[el][sym if sym in ("T:4", "S:5", "O:6") else "other"] += 1
        if k % 50 == 0:
            logger.info("checked %d/%d", k, len(records))
    return {"structures": n_struct, "site_classes": classes, "labels": per_structure}


# --------------------------------------------------------------------------------------------
# 3. known compounds from literature crystallography (no relaxation)
# --------------------------------------------------------------------------------------------

#: oxygen radius of a four-coordinated O2- (Shannon 1976), as in the spinel bond-length model
R_OXYGEN_IV = 1.38


def _spinel(a: float, u: float, A: str | None, B: str):
    from pymatgen.core import Lattice, Structure

    # Fd-3m origin choice 1 (pymatgen's setting): A 8a, B 16d, O 32e; A None: an empty A site
    if A is None:
        return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), [B, "O"], [[5 / 8] * 3, [u] * 3])
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), [A, B, "O"], [[0, 0, 0], [5 / 8] * 3, [u] * 3])


#: the C-O bond of calcite-type carbonates (1.28-1.29 A in calcite, magnesite, rhodochrosite, siderite)
R_CARBONATE_CO = 1.285


def _calcite(a: float, c: float, M: str):
    from pymatgen.core import Lattice, Structure

    # R-3c, hexagonal setting: M 6b, C 6a, O 18e (x, 0, 1/4)
    x = R_CARBONATE_CO / a
    return Structure.from_spacegroup("R-3c", Lattice.hexagonal(a, c), [M, "C", "O"],
                                     [[0, 0, 0], [0, 0, 0.25], [x, 0, 0.25]]), x


def _shortest_bond(structure: Any, element: str) -> float:
    i = next(k for k, site in enumerate(structure) if site.specie.symbol == element)
    return min(n.nn_distance for n in structure.get_neighbors(structure[i], 3.0))


def _radius_vi(element: str, oxidation: float) -> float:
    """Shannon radius of a six-coordinated cation; a half-integer state averages its neighbours'."""
    from pymatgen.core import Species

    if oxidation != int(oxidation):
        return 0.5 * (_radius_vi(element, int(oxidation)) + _radius_vi(element, int(oxidation) + 1))
    # low spin for Co(III) (as in Co3O4), high spin for Mn(III) and Fe(III); Mn(IV) has no spin label
    spin = {("Co", 3): "Low Spin", ("Fe", 3): "High Spin", ("Mn", 3): "High Spin"}.get((element, int(oxidation)), "")
    return Species(element, int(oxidation)).get_shannon_radius("VI", spin)


def _spinel_bond(a: float, u: float, A: str | None, B: str, site: str) -> float:
    """The tetrahedral (``site="A"``) or octahedral (``"B"``) bond of a spinel; where A and B are one
    element (Co3O4) or A is empty, a stand-in on the other site tells the two apart."""
    if site == "A":
        return _shortest_bond(_spinel(a, u, A, "Zn" if A == B else B), A)
    return _shortest_bond(_spinel(a, u, "Zn" if A in (B, None) else A, B), B)


def spinel_oxygen_parameter(a: float, A: str | None, B: str, oxidation_b: float = 3) -> float:
    """Oxygen parameter u (origin choice 1) giving the octahedral bond r(B, VI) + r(O, IV)."""
    from scipy.optimize import brentq

    target = _radius_vi(B, oxidation_b) + R_OXYGEN_IV
    return float(brentq(lambda u: _spinel_bond(a, u, A, B, "B") - target, 0.376, 0.40, xtol=1e-6))


def _rocksalt(a: float, M: str):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [M, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _oxyanion_salt(A: str, B: str, a: float, b: float, c: float, bond: float):
    """A2BO4 of the beta-K2SO4 structure: K2SO4's fractional positions in the salt's cell, each
    B-O bond of the asymmetric unit rescaled along its own direction to ``bond``."""
    import numpy as np
    from pymatgen.core import Lattice, Structure

    sites = json.loads(PROTOTYPES.read_text())["beta_k2so4"]["sites"]
    lattice = Lattice.orthorhombic(a, b, c)
    centre = np.array(next(f for role, _, f in sites if role == "B"))
    species, coords = [], []
    for role, _, f in sites:
        f = np.asarray(f, dtype=float)
        if role == "O":  # the three O of the asymmetric unit all belong to its one tetrahedron
            f = centre + (f - centre) * bond / float(np.linalg.norm(lattice.get_cartesian_coords(f - centre)))
        species.append({"A": A, "B": B, "O": "O"}[role])
        coords.append(f)
    return Structure.from_spacegroup("Pnma", lattice, species, coords)


def _wyckoff_structure(rec: dict[str, Any]):
    """A structure from its space group, cell and published positions (``wyckoff_structures``)."""
    from pymatgen.core import Lattice, Structure

    lat = rec["lattice"]
    lattice = Lattice.from_parameters(lat["a"], lat["b"], lat["c"], lat["alpha"], lat["beta"], lat["gamma"])
    return Structure.from_spacegroup(rec["spacegroup"], lattice, [el for el, _ in rec["sites"]],
                                     [xyz for _, xyz in rec["sites"]])  # fmt: skip


def _literature_record(mid: str, structure: Any, reference: str, note: str, kind: str) -> dict[str, Any]:
    prov = {
        "origin": "literature",
        "source_id": mid,
        "reference": f"{reference}; scripts/prototypes/literature.json",
        "licence": "structure built by xanesdb from published lattice constants (facts, no licence)",
        "note": note,
    }
    return _record(mid, structure.get_primitive_structure().as_dict(), prov, ["literature", f"prototype:{kind}"])


def literature_records(path: Path = LITERATURE) -> list[dict[str, Any]]:
    """Compact records of the known compounds of ``path`` (primitive cells)."""
    spec = json.loads(path.read_text())
    out = []
    for A, B, a, _, ox_b, note in spec["spinels"]:
        u = round(spinel_oxygen_parameter(a, A, B, ox_b), 4)
        mid = {None: f"lit:spinel:{B}O2", B: f"lit:spinel:{B}3O4"}.get(A, f"lit:spinel:{A}{B}2O4")
        bonds = f"B-O {_spinel_bond(a, u, A, B, 'B'):.3f} A"
        if A is not None:
            bonds = f"T-O {_spinel_bond(a, u, A, B, 'A'):.3f} A, " + bonds
        out.append(_literature_record(
            mid, _spinel(a, u, A, B), f"Fd-3m, a = {a} A (measured), u = {u} (origin choice 1) from Shannon radii",
            f"{note}: known compound, normal cation order, not relaxed; {bonds}", "spinel"))  # fmt: skip
    for M, a, c, note in spec.get("calcite_carbonates", []):
        structure, x = _calcite(a, c, M)
        out.append(_literature_record(
            f"lit:calcite:{M}CO3", structure,
            f"R-3c, a = {a} A, c = {c} A (measured), O x = {x:.4f} from the C-O bond {R_CARBONATE_CO} A",
            f"{note}: known compound, not relaxed; M-O {_shortest_bond(structure, M):.3f} A", "calcite"))  # fmt: skip
    for M, a, note in spec.get("rocksalt", []):
        out.append(_literature_record(f"lit:rocksalt:{M}O", _rocksalt(a, M), f"Fm-3m, a = {a} A (measured)",
                                      f"{note}: known compound, not relaxed; M-O {a / 2:.3f} A", "rocksalt"))  # fmt: skip
    for rec in spec.get("wyckoff_structures", []):
        structure = _wyckoff_structure(rec)
        el = rec["sites"][0][0]
        out.append(_literature_record(
            f"lit:{rec['kind']}:{rec['formula']}", structure, rec["reference"],
            f"{rec['note']}: known compound, not relaxed; {el}-O from {_shortest_bond(structure, el):.3f} A", rec["kind"]))  # fmt: skip
    for A, B, a, b, c, bond, note in spec.get("oxyanion_salts", []):
        structure = _oxyanion_salt(A, B, a, b, c, bond)
        out.append(_literature_record(
            f"lit:beta_k2so4:{A}2{B}O4", structure,
            f"Pnma, a = {a} A, b = {b} A, c = {c} A (measured), K2SO4 positions with B-O {bond} A (measured mean)",
            f"{note}: known compound, not relaxed; {A}-O from {_shortest_bond(structure, A):.3f} A", "beta_k2so4"))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def write_records(records: list[dict[str, Any]], path: Path = OUTPUT) -> str:
    """Write the records as compact gzipped JSON (fixed mtime, so the bytes are reproducible).

    Returns
    -------
    str
        sha256 of the uncompressed JSON.
    """
    text = json.dumps(records, separators=(",", ":"), sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode())
    return hashlib.sha256(text.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--real-only", action="store_true", help="only the real MP structures")
    parser.add_argument("--no-relax", action="store_true", help="skip CHGNet (unrelaxed substitutions)")
    parser.add_argument("--cache", type=Path, default=None, help="folder caching relaxed structures")
    parser.add_argument("--only", nargs="*", default=None, help="only these prototypes")
    parser.add_argument("--cached-only", action="store_true", help="use cached relaxations, relax nothing")
    parser.add_argument("--check", action="store_true", help="ChemEnv-label the substituted structures")
    parser.add_argument("--literature-only", action="store_true",
                        help="replace only the lit: records of the existing --output file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    t0 = time.time()
    if args.literature_only:
        with gzip.open(args.output, "rt", encoding="utf-8") as fh:
            kept = [r for r in json.load(fh) if not r["material_id"].startswith("lit:")]
        lit = literature_records()
        digest = write_records(kept + lit, args.output)
        logger.info("wrote %d records (%d literature) to %s (sha256 %s)", len(kept) + len(lit), len(lit),
                    args.output, digest)
        return 0
    records = real_records(args.shared_data)
    logger.info("%d real structures", len(records))
    if not args.real_only:
        subst = substituted_records(
            args.shared_data, do_relax=not args.no_relax, cache=args.cache, only=args.only,
            relax_missing=not args.cached_only,
        )
        ids = {r["material_id"] for r in records}
        records += [r for r in subst if r["material_id"] not in ids]
        records += literature_records()
    digest = write_records(records, args.output)
    logger.info("wrote %d records to %s (sha256 %s) in %.1f s", len(records), args.output, digest, time.time() - t0)
    if args.check and not args.real_only:
        counts = check_counts([r for r in records if r["material_id"].startswith("proto:")], cache=args.cache)
        counts["note"] = "substituted structures only; add the real-structure counts of DESIGN.md"
        COUNTS.write_text(json.dumps(counts, indent=1) + "\n")
        logger.info("substituted: %s", json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
