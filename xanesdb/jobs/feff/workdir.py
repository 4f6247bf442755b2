"""FEFF run folders: which files are kept, how a task key becomes a folder name, cleaning up.

Standard library only: the batch runner (``python -m xanesdb.jobs.feff.batch``) imports it on
hosts that have nothing but ``feff10``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

__all__ = ["KEEP_FILES", "safe_name", "clean_folder"]

#: outputs worth keeping in a run folder after a run (FEFF's bulky by-products are deleted); the
#: batch runner adds its own ``task.json`` and ``result.json``
KEEP_FILES: tuple[str, ...] = ("feff.inp", "xmu.dat", "feff_run.log", "feff_stage_times.json", "log.dat", "log1.dat",
                               "feff.out")


def safe_name(name: str) -> str:
    """A folder name for a task key (``mp-1:Cu:0:K:abc`` -> ``mp-1_Cu_0_K_abc``); batch folders use it."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def clean_folder(folder: str | Path, keep: Iterable[str] = KEEP_FILES) -> None:
    """Delete everything in ``folder`` except the files named in ``keep``."""
    keep = set(keep)
    for p in Path(folder).iterdir():
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
