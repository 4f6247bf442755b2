"""Numbers of the FEFF10 campaign, from the database: FEFF time and the duplicate rate per batch log.

Prints, for the xanesdb FEFF10 tasks of the current database (after ``xanesdb spectra build``):
successful and failed tasks, FEFF wall time per site (mean, median, core-hours in all); how many
near-duplicates have their original in the same material; and for each batch log given (the output
of ``python -m xanesdb.jobs.feff.batch``), the tasks it ran that have a spectrum and how many of
those were marked ``duplicate_of``.

    XANESDB_HOME=/tmp/h xanesdb db load-bundled && xanesdb spectra build
    python scripts/campaign_stats.py --log .feffbatch/local5.log --log .feffbatch/local6.log
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

LINE = re.compile(r"\[\d+/\d+\] (\S+): ok")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", type=Path, action="append", default=[], help="batch log (repeatable)")
    a = p.parse_args()
    from xanesdb.platform.stores import get_database

    db = get_database()
    q = {"source": "xanesdb"}
    ok = db.feff_tasks.count_documents({**q, "state": "successful"})
    failed = db.feff_tasks.count_documents({**q, "state": "failed"})
    w = np.array([d["wall_seconds"] for d in db.feff_tasks.find({**q, "state": "successful"}, {"wall_seconds": 1})
                  if d.get("wall_seconds")])  # fmt: skip
    print(f"xanesdb FEFF10 tasks: {ok} successful, {failed} failed; FEFF wall time per site: mean {w.mean():.1f} s, "
          f"median {np.median(w):.1f} s, {w.sum() / 3600:.1f} core-hours in all ({len(w)} timed)")
    spectra = {d["spectrum_id"]: d for d in db.spectra.find(q, {"spectrum_id": 1, "task_id": 1, "material_id": 1,
                                                                "duplicate_of": 1})}  # fmt: skip
    dups = [d for d in spectra.values() if d.get("duplicate_of")]
    same = sum(1 for d in dups if spectra.get(d["duplicate_of"], {}).get("material_id") == d["material_id"])
    print(f"spectra: {len(spectra)}, duplicates {len(dups)} ({len(dups) / max(len(spectra), 1):.1%}); "
          f"with their original in the same material: {same}")
    by_task = {d["task_id"]: d for d in spectra.values()}
    for log in a.log:
        ran = [m.group(1) for m in map(LINE.match, log.read_text().splitlines()) if m]
        built = [by_task[t] for t in ran if t in by_task]
        n_dup = sum(1 for d in built if d.get("duplicate_of"))
        print(f"{log}: {len(ran)} tasks ok, {len(built)} with a spectrum, {n_dup} duplicates "
              f"({n_dup / max(len(built), 1):.1%})")


if __name__ == "__main__":
    main()
