"""A small snapshot of the bundled database for tests: a slice of xanesdb's own FEFF10 tasks."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["bundled_subset"]


def bundled_subset(out: Path, every: int = 6, elements: Iterable[str] | None = None) -> int:
    """Write every ``every``-th bundled FEFF10 task (by task_id; of ``elements`` when given), with
    their sites and structures, as ``out/<collection>.jsonl.gz``; returns how many tasks."""
    from xanesdb.platform.snapshot import BUNDLED_DB_DIR

    def read(name):
        with gzip.open(BUNDLED_DB_DIR / f"{name}.jsonl.gz", "rt") as fh:
            yield from (ln for ln in fh if ln.strip())

    wanted = set(elements) if elements is not None else None
    tasks = sorted((ln for ln in read("feff_tasks") if '"source": "xanesdb"' in ln
                    and (wanted is None or json.loads(ln)["element"] in wanted)),
                   key=lambda ln: json.loads(ln)["task_id"])  # fmt: skip
    tasks = tasks[::every]
    site_ids = {json.loads(ln)["site_id"] for ln in tasks}
    mids = {s.split(":")[0] for s in site_ids}
    sites = [ln for ln in read("sites") if json.loads(ln)["site_id"] in site_ids]
    structures = [ln for ln in read("structures") if json.loads(ln)["material_id"] in mids]
    for name, lines in (("structures", structures), ("sites", sites), ("feff_tasks", tasks)):
        with gzip.open(out / f"{name}.jsonl.gz", "wt") as fh:
            fh.writelines(lines)
    return len(tasks)
