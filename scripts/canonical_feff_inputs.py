"""Rewrite the shipped FEFF tasks' ``feff_inp`` and ``input_hash`` with the canonical ATOMS card.

``xanesdb.jobs.feff.sets.atoms_card`` writes the ATOMS rows in an order and a format that do not
depend on the machine; inputs written before it used pymatgen's, whose row order and column widths
follow the last bits of the linear algebra. For every task of the bundled ``feff_tasks*.jsonl.gz``
whose input xanesdb wrote (the text before ATOMS is the one ``feff_input_text`` gives for its
structure, site and preset), the input is regenerated and checked to hold the same atoms (potential
and coordinates within 2e-4 Å); then its text and hash are replaced. Imported
tasks (FEFF9 inputs of other origin) and any task whose atoms differ are left as they are and
listed.

    python scripts/canonical_feff_inputs.py [--check]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys

import numpy as np
from pymatgen.core import Structure

from xanesdb.jobs.feff.parse import atoms_rows
from xanesdb.jobs.feff.sets import feff_input_text, get_preset, input_hash
from xanesdb.platform.snapshot import BUNDLED_DB_DIR


def _atoms(text: str) -> np.ndarray:
    """(ipot, x, y, z) rows of a feff.inp's ATOMS card, sorted."""
    # rounded before sorting: pymatgen wrote -2.2e-16 where it meant 0
    return np.array(sorted((int(p[3]), *(round(float(v), 4) + 0.0 for v in p[:3])) for p in atoms_rows(text)))


def _same_atoms(a: np.ndarray, b: np.ndarray, tol: float = 2e-4) -> bool:
    """Whether every row of ``a`` has its own row in ``b`` with the same potential and coordinates within ``tol``."""
    if a.shape != b.shape:
        return False
    free = np.ones(len(b), dtype=bool)
    for row in a:
        hit = np.nonzero(free & (b[:, 0] == row[0]) & (np.abs(b[:, 1:] - row[1:]).max(axis=1) <= tol))[0]
        if not len(hit):
            return False
        free[hit[0]] = False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="Only count what would change.")
    args = ap.parse_args(argv)
    structures = {}
    for path in sorted(BUNDLED_DB_DIR.glob("structures*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    d = json.loads(line)
                    structures[d["material_id"]] = d["structure"]
    for path in sorted(BUNDLED_DB_DIR.glob("feff_tasks*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            tasks = [json.loads(line) for line in fh if line.strip()]
        changed, same, foreign, differ = 0, 0, 0, []
        for t in tasks:
            old = t.get("feff_inp")
            if not old or t.get("material_id") not in structures or "ATOMS" not in old:
                foreign += 1
                continue
            new = feff_input_text(Structure.from_dict(structures[t["material_id"]]), t["absorbing_index"],
                                  get_preset(t["preset"]), edge=t["edge"])  # fmt: skip
            if new.split("ATOMS")[0] != old.split("ATOMS")[0]:
                foreign += 1
                continue
            if not _same_atoms(_atoms(old), _atoms(new)):
                differ.append(t["task_id"])
                continue
            if new == old:
                same += 1
                continue
            changed += 1
            t["feff_inp"], t["input_hash"] = new, input_hash(new)
        print(f"{path.name}: {len(tasks)} tasks, {changed} rewritten, {same} already canonical, {foreign} not "
              f"written by xanesdb, {len(differ)} with other atoms{': ' + ', '.join(differ[:5]) if differ else ''}")  # fmt: skip
        if changed and not args.check:
            with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
                fh.writelines(json.dumps(t) + "\n" for t in tasks)  # the layout the bundled files have
    return 0


if __name__ == "__main__":
    sys.exit(main())
