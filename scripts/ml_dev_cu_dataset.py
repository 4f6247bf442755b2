"""Developer script: label the OmniXAS Cu FEFF9 site spectra with ChemEnv and load them as spectra.

Until the pipeline (structures -> sites -> FEFF tasks -> spectra) lands, this makes a real
Cu dataset for developing and measuring the classifiers:

1. ``label``: ChemEnv (SimplestChemenvStrategy, distance_cutoff=1.2, angle_cutoff=0.3, symbol of
   lowest CSM) for every absorbing Cu site in ``../shared/data/omnixas_cu``; results are appended
   to a JSON-lines cache (default ``/tmp/xanesdb-ml-dev/cu_chemenv.jsonl``) so an interrupted run
   resumes.
2. ``load``: interpolate each labelled spectrum onto a 100-point Cu grid (0.5 eV steps from
   the grid start), scale to max 1 and upsert SpectrumDoc-shaped documents (source 'omnixas')
   into the ``spectra`` collection of the configured database.

Run at low priority::

    nice -n 10 .venv/bin/python scripts/ml_dev_cu_dataset.py label
    XANESDB_HOME=/tmp/me-home .venv/bin/python scripts/ml_dev_cu_dataset.py load
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import signal
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "omnixas_cu"
CACHE = Path("/tmp/xanesdb-ml-dev/cu_chemenv.jsonl")
CLASS_OF = {"T:4": "T4", "S:5": "S5", "O:6": "O6"}

#: Cu K grid used for the dev dataset: 100 points, 0.5 eV apart (the paper's spacing),
#: from 8985 eV (about 11 eV below the median FEFF9 edge), spanning the edge and ~38 eV above it
CU_GRID_START = 8985.0
CU_GRID = CU_GRID_START + 0.5 * np.arange(100)
CU_GRID_NAME = "Cu-K-omnixas-dev-v1"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout


def label_sites(cache: Path = CACHE, timeout_s: int = 120, limit: int | None = None) -> None:
    """ChemEnv labels of every Cu absorbing site with a spectrum, appended to ``cache``."""
    from pymatgen.analysis.chemenv.coordination_environments.chemenv_strategies import (
        SimplestChemenvStrategy,
    )
    from pymatgen.analysis.chemenv.coordination_environments.coordination_geometry_finder import (
        LocalGeometryFinder,
    )
    from pymatgen.analysis.chemenv.coordination_environments.structure_environments import (
        LightStructureEnvironments,
    )
    from pymatgen.analysis.bond_valence import BVAnalyzer
    from pymatgen.core import Structure

    logging.getLogger("pymatgen").setLevel(logging.ERROR)
    structures = {r["material_id"]: r["structure"] for r in json.load(gzip.open(DATA / "structures.json.gz"))}
    spectra = json.load(gzip.open(DATA / "feff9_site_spectra.json.gz"))
    by_material: dict[str, list[int]] = {}
    for s in spectra:
        by_material.setdefault(s["material_id"], []).append(s["absorbing_index"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if cache.exists():
        for line in cache.read_text().splitlines():
            done.add(json.loads(line)["material_id"])
    todo = [m for m in sorted(by_material) if m not in done]
    if limit:
        todo = todo[:limit]
    # small structures first: most labels early
    todo.sort(key=lambda m: len(structures[m]["sites"]))

    lgf = LocalGeometryFinder()
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.time()
    with cache.open("a") as fh:
        for i, mid in enumerate(todo):
            structure = Structure.from_dict(structures[mid])
            indices = by_material[mid]
            rec = {"material_id": mid, "sites": {}}
            signal.alarm(timeout_s)
            try:
                # valences make the strategy's anion-cation bond condition work (as emmet's
                # ChemEnv builder); without them most sites get no environment
                try:
                    valences = BVAnalyzer().get_valences(structure)
                except ValueError:
                    valences = "undefined"
                    rec["valences"] = "undefined"
                lgf.setup_structure(structure)
                se = lgf.compute_structure_environments(
                    only_indices=indices, maximum_distance_factor=1.41, valences=valences
                )
                # a fresh strategy per structure: a reused one kept stale state (most sites None)
                strategy = SimplestChemenvStrategy(distance_cutoff=1.2, angle_cutoff=0.3)
                lse = LightStructureEnvironments.from_structure_environments(
                    strategy=strategy, structure_environments=se
                )
                for idx in indices:
                    ces = lse.coordination_environments[idx] or []
                    ces = [c for c in ces if c.get("csm") is not None]
                    best = min(ces, key=lambda c: c["csm"]) if ces else None
                    rec["sites"][str(idx)] = (
                        {"symbol": best["ce_symbol"], "csm": float(best["csm"])} if best else None
                    )
            except _Timeout:
                rec["error"] = f"timeout {timeout_s} s"
            except Exception as err:  # noqa: BLE001 - record and carry on
                rec["error"] = f"{type(err).__name__}: {err}"[:300]
            finally:
                signal.alarm(0)
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            if i % 25 == 0:
                print(f"{i + 1}/{len(todo)} materials, {time.time() - t0:.0f} s", flush=True)


def build_docs(cache: Path = CACHE) -> list[dict]:
    """SpectrumDoc-shaped dicts of every labelled Cu site spectrum (classes T4/S5/O6 or None)."""
    from scipy.interpolate import CubicSpline

    from xanesdb.schemas import SpectrumDoc

    labels: dict[tuple[str, int], dict | None] = {}
    for line in cache.read_text().splitlines():
        rec = json.loads(line)
        for idx, lab in rec.get("sites", {}).items():
            labels[(rec["material_id"], int(idx))] = lab
    formulas = {r["material_id"]: r["formula"] for r in json.load(gzip.open(DATA / "structures.json.gz"))}
    docs = []
    for s in json.load(gzip.open(DATA / "feff9_site_spectra.json.gz")):
        key = (s["material_id"], s["absorbing_index"])
        if key not in labels:
            continue
        lab = labels[key]
        e = np.asarray(s["energy"], float)
        mu = np.asarray(s["mu"], float)
        if CU_GRID[0] < e[0] or CU_GRID[-1] > e[-1]:
            continue
        order = np.argsort(e)
        e, mu = e[order], mu[order]
        keep = np.concatenate([[True], np.diff(e) > 0])
        y = CubicSpline(e[keep], mu[keep])(CU_GRID)
        if not np.all(np.isfinite(y)) or y.max() <= 0:
            continue
        y = y / y.max()
        task_id = f"{s['material_id']}:Cu:{s['absorbing_index']}:K:omnixas-feff9"
        symbol = lab["symbol"] if lab else None
        doc = SpectrumDoc(
            spectrum_id=f"{task_id}:std",
            task_id=task_id,
            site_id=f"{s['material_id']}:Cu:{s['absorbing_index']}",
            material_id=s["material_id"],
            formula=formulas.get(s["material_id"]),
            element="Cu",
            source="omnixas",
            code="FEFF 9.9.1",
            preset="lightshow",
            chemenv_symbol=symbol,
            csm=lab["csm"] if lab else None,
            lce_class=CLASS_OF.get(symbol),
            grid_name=CU_GRID_NAME,
            energies=[float(x) for x in CU_GRID],
            mu=[float(x) for x in y],
        )
        docs.append(doc.to_mongo())
    return docs


def load_docs(cache: Path = CACHE) -> int:
    """Upsert the dev Cu spectra into the configured database's ``spectra`` collection."""
    from pymongo import ReplaceOne

    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    docs = build_docs(cache)
    db = get_database(get_settings())
    ops = [ReplaceOne({"spectrum_id": d["spectrum_id"]}, d, upsert=True) for d in docs]
    for i in range(0, len(ops), 1000):
        db.spectra.bulk_write(ops[i : i + 1000], ordered=False)
    return len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["label", "load", "counts"])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args()
    if args.step == "label":
        label_sites(args.cache, args.timeout, args.limit)
    elif args.step == "load":
        print(f"upserted {load_docs(args.cache)} spectra")
    else:
        from collections import Counter

        docs = build_docs(args.cache)
        print(Counter(d["lce_class"] for d in docs))


if __name__ == "__main__":
    main()
