"""Check that the regeneration command reproduces the shipped FEFF10 spectra, for a sample of sites.

For every xanesdb FEFF10 task in the bundled database (``xanesdb/data/db``) this regenerates the
FEFF input from the shipped structure and site with the task's preset, and checks that the task key
and the SHA-256 of ``feff.inp`` are the ones shipped (so a regeneration run finds and keys the same
tasks), or, where another pymatgen ordered a pair of atoms at one distance the other way round,
that the input is the shipped one up to that order (:func:`xanesdb.jobs.feff.sets.input_equivalent`). For a random sample of ``--run`` of them it then runs FEFF10 again through the same code
path as ``xanesdb feff run`` (:func:`xanesdb.jobs.feff.jobs.compute_feff_task`) and compares the
spectra: same energies, and mu equal within FEFF's printed precision (``xmu.dat`` prints mu with 5
significant digits, so |difference| <= 5e-5 x |mu| + 1e-7).

    python scripts/check_regeneration.py --run 5 --seed 0 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xanesdb.jobs.feff.jobs import compute_feff_task
from xanesdb.jobs.feff.sets import feff_input_text, get_preset, input_equivalent, input_hash, preset_cards
from xanesdb.platform.snapshot import iter_snapshot
from xanesdb.schemas import preset_hash, task_id

DB = Path(__file__).resolve().parents[1] / "xanesdb" / "data" / "db"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=int, default=5, help="how many sampled sites to recompute with FEFF10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", type=Path, default=DB, help="snapshot folder (default: the bundled one)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)

    from pymatgen.core import Structure

    tasks = [t for t in iter_snapshot(a.db / "feff_tasks.jsonl.gz") if t["source"] == "xanesdb" and t["state"] == "successful"]
    wanted = {t["material_id"] for t in tasks}
    # the main structures file and its parts (structures.<part>.jsonl.gz, e.g. the literature spinels)
    files = [a.db / "structures.jsonl.gz", *sorted(a.db.glob("structures.*.jsonl.gz"))]
    structures = {d["material_id"]: Structure.from_dict(d["structure"])
                  for f in files if f.exists() for d in iter_snapshot(f) if d["material_id"] in wanted}
    n_key = n_hash = n_equiv = 0
    bad = []
    for t in tasks:
        preset = get_preset(t["preset"])
        if t.get("actions"):  # the ladder changed cards: the first attempt is the preset's
            for act in t["actions"]:
                preset = preset.with_cards(**act["action"])
        phash = preset_hash(preset_cards(t["preset"], t["edge"]))
        n_key += task_id(t["site_id"], t["edge"], phash) == t["task_id"]
        text = feff_input_text(structures[t["material_id"]], t["absorbing_index"], preset, edge=t["edge"])
        same = input_hash(text) == t["input_hash"]
        n_hash += same
        # another pymatgen may order a pair of atoms at one distance the other way round (sets.input_equivalent)
        equivalent = not same and bool(t.get("feff_inp")) and input_equivalent(text, t["feff_inp"])
        n_equiv += equivalent
        if not (same or equivalent):
            bad.append(t["task_id"])
    print(f"{len(tasks)} shipped FEFF10 tasks: {n_key} task keys and {n_hash} feff.inp hashes regenerated identically, "
          f"{n_equiv} more the same input with atoms at one distance in another order")
    for b in bad[:10]:
        print(f"  input differs: {b}")

    rows = []
    sample = random.Random(a.seed).sample(tasks, min(a.run, len(tasks)))
    for t in sample:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            doc = compute_feff_task(structures[t["material_id"]], t["absorbing_index"], t["material_id"], preset=t["preset"],
                                    edge=t["edge"], workdir=tmp, feff_cmd=None, timeout=3600, site_id=t["site_id"])
            wall = time.perf_counter() - t0
        old_mu, new_mu = np.asarray(t["mu"]), np.asarray(doc.mu)
        same_e = len(doc.energies) == len(t["energies"]) and np.allclose(doc.energies, t["energies"], atol=1e-3)
        diff = float(np.max(np.abs(new_mu - old_mu))) if same_e else float("nan")
        within = bool(same_e and np.all(np.abs(new_mu - old_mu) <= 5e-5 * np.abs(old_mu) + 1e-7))
        same_input = doc.input_hash == t["input_hash"] or input_equivalent(doc.feff_inp or "", t.get("feff_inp") or "")
        row = {"task_id": t["task_id"], "same_key": doc.task_id == t["task_id"], "same_input": same_input,
               "same_energies": bool(same_e), "max_abs_mu_diff": diff, "within_print_precision": within,
               "feff_s": round(wall, 1), "shipped_host": t.get("hostname"), "code_version": doc.code_version}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = sum(r["same_key"] and r["same_input"] and r["within_print_precision"] for r in rows)
    print(f"recomputed {len(rows)} sampled sites: {ok} with the same key, the same input and mu within print precision")
    if a.json:
        a.json.write_text(json.dumps({"n_tasks": len(tasks), "n_same_key": n_key, "n_same_input": n_hash,
                                      "n_equivalent_input": n_equiv, "runs": rows}, indent=1))  # fmt: skip
    return 0 if (n_key == n_hash + n_equiv == len(tasks) and ok == len(rows)) else 1


if __name__ == "__main__":
    sys.exit(main())
