"""The distortion series of a site as a jobflow job: :class:`DistortionSeriesMaker`.

Same family as :class:`xanesdb.jobs.feff.makers.FeffXanesMaker`: the job uses the database
handed to it (:func:`xanesdb.jobs.database.job_database`), looks up which distortions are
stored (:func:`xanesdb.jobs.disorder.series.pending_distortions`, the pending-style resume) and
runs only the others, one FEFF process at a time, upserting each task as soon as it finishes
(:func:`xanesdb.jobs.feff.task.write_tasks`), so a series killed at any point resumes where it
stopped.

Examples
--------
>>> from jobflow import run_locally
>>> job = DistortionSeriesMaker(step=0.05).make(structure, 1, "mp-5229")     # doctest: +SKIP
>>> run_locally(job, create_folders=True)                                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from jobflow import Maker, Response, job

from xanesdb.jobs.database import job_database
from xanesdb.jobs.disorder.series import (
    LITE_PRESET,
    check_distortion,
    compute_distorted_task,
    distortion_grid,
    pending_distortions,
)
from xanesdb.jobs.feff.task import clean_folder, write_tasks
from xanesdb.platform.settings import get_settings
from xanesdb.schemas import site_id as make_site_id

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = ["DistortionSeriesMaker", "run_distortion_series"]


def run_distortion_series(structure: Structure, absorbing_index: int, material_id: str, db: Any, *,
                          distortions: list[float], preset: str = LITE_PRESET.name, edge: str = "K",
                          site_id: str | None = None, workdir: str | Path = ".", retry_failed: bool = False,
                          clean: bool = True, run_kwargs: dict | None = None,
                          on_task: Callable[[Any], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run and store the distortions of one site not stored yet; a summary.

    Each run lives in ``workdir/d<+0.050>`` and its task is upserted before the next starts.
    """
    ds = [check_distortion(d) for d in distortions]
    element = structure[absorbing_index].specie.symbol
    site_id = site_id or make_site_id(material_id, element, absorbing_index)
    todo = pending_distortions(db, site_id, ds, preset, edge, retry_failed) if db is not None else ds
    summary: dict[str, Any] = {"site_id": site_id, "preset": preset, "n_series": len(ds),
                               "n_already": len(ds) - len(todo), "task_ids": [], "failed": {}}  # fmt: skip
    for d in todo:
        folder = Path(workdir) / f"d{d:+.3f}"
        doc = compute_distorted_task(structure, absorbing_index, material_id, d, preset=preset, edge=edge,
                                     workdir=folder, site_id=site_id, name=f"distortion {site_id} {d:+.3f}",
                                     **(run_kwargs or {}))  # fmt: skip
        if clean and doc.state == "successful":
            clean_folder(folder / "attempt-0")
        if db is not None:
            write_tasks([doc], db)
        summary["task_ids"].append(doc.task_id)
        if doc.state != "successful":
            summary["failed"][f"{d:+.3f}"] = doc.error
        logger.info("%s d=%+.3f: %s in %.1f s", site_id, d, doc.state, doc.wall_seconds or 0.0)
        if on_task is not None:
            on_task(doc)
    return summary


@dataclass
class DistortionSeriesMaker(Maker):
    """FEFF XANES of one site's radially distorted clusters, each stored as a task of the site.

    Parameters
    ----------
    name
        Job name.
    preset
        FEFF preset: ``fastlite`` (default, :data:`~xanesdb.jobs.disorder.series.LITE_PRESET`) or one
        of :mod:`xanesdb.jobs.feff.sets`.
    edge
        Absorption edge.
    step, limit
        The series: ``-limit..+limit`` in steps of ``step`` (A); ``distortions`` overrides them.
    distortions
        Explicit distortions (A), each in -0.45..+0.45.
    run_feff_kwargs
        Passed to the runner: ``feff_cmd``, ``timeout`` (s); default: the worker's settings.
    store_task
        Upsert every task into ``feff_tasks`` of the job's database (and skip the stored ones).
    retry_failed
        Run a distortion again whose stored task failed.
    clean
        Delete FEFF's bulky by-products of each successful run.
    """

    name: str = "distortion series"
    preset: str = LITE_PRESET.name
    edge: str = "K"
    step: float = 0.05
    limit: float = 0.45
    distortions: list[float] | None = None
    run_feff_kwargs: dict = field(default_factory=dict)
    store_task: bool = True
    retry_failed: bool = False
    clean: bool = True

    def series(self) -> list[float]:
        """The distortions this maker runs (checked: one-line error when out of range)."""
        if self.distortions is not None:
            return [check_distortion(d) for d in self.distortions]
        return distortion_grid(self.step, self.limit)

    @job
    def make(self, structure: Structure, absorbing_index: int, material_id: str, site_id: str | None = None) -> Response:
        """Run the distortions not stored yet (one FEFF at a time), store each; output: the summary."""
        settings = get_settings()  # the worker's environment, not the one at import
        db = job_database(settings) if self.store_task else None
        kwargs = {"feff_cmd": settings.FEFF_CMD, "timeout": settings.FEFF_TIMEOUT_S, **self.run_feff_kwargs}
        summary = run_distortion_series(structure, absorbing_index, material_id, db, distortions=self.series(),
                                        preset=self.preset, edge=self.edge, site_id=site_id, workdir=Path.cwd(),
                                        retry_failed=self.retry_failed, clean=self.clean, run_kwargs=kwargs)  # fmt: skip
        return Response(output=summary)
