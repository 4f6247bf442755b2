"""``xanesdb disorder``: distortion series of a site, and the weightings that make disordered spectra.

Thin: check arguments, call :mod:`xanesdb.jobs.disorder` / :mod:`xanesdb.ml.disorder`, print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xanesdb.commands._console import SafeConsole
from xanesdb.platform.errors import XanesdbUserError

console = SafeConsole(soft_wrap=True)
app = typer.Typer(help="Disorder: distortion series of a site (FEFF) and the weightings of disordered spectra.",
                  no_args_is_help=True)  # fmt: skip


@app.command("series")
def series(
    site: str = typer.Argument(..., help="Site id, e.g. 'mp-2657:Ti:0' (see `xanesdb db query -c sites`)."),
    step: float = typer.Option(0.05, help="Distortion step (A); the series is -limit..+limit."),
    limit: float = typer.Option(0.45, help="Largest |distortion| (A), at most 0.45."),
    distortion: Optional[list[float]] = typer.Option(None, "--distortion", "-d", help="Explicit distortions (A; repeat); overrides --step/--limit."),
    preset: str = typer.Option("fastlite", help="FEFF preset: fastlite (cheap, for series) or fast, scf, ..."),
    workdir: Optional[Path] = typer.Option(None, help="Run folders (default XANESDB_HOME/disorder-runs)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run again the distortions whose task failed."),
) -> None:
    """Run FEFF on the site's radially distorted clusters (one at a time), each stored as a task of the site.

    Distortions already stored are skipped, so a killed series resumes where it stopped.
    """
    from xanesdb.jobs.disorder.makers import DistortionSeriesMaker, run_distortion_series
    from xanesdb.jobs.disorder.series import get_series_preset
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    maker = DistortionSeriesMaker(preset=preset, step=step, limit=limit, distortions=distortion or None)
    grid = maker.series()  # one-line errors before anything is read
    get_series_preset(preset)
    settings = get_settings()
    db = get_database(settings, ensure=False)  # nothing is created before the site is found
    doc = db["sites"].find_one({"site_id": site}, {"_id": 0, "material_id": 1, "site_index": 1})
    if doc is None:
        raise XanesdbUserError(f"no site {site[:80]!r}; list them with `xanesdb db query -c sites '{{}}'`")
    st = db["structures"].find_one({"material_id": doc["material_id"]}, {"_id": 0, "structure": 1})
    if st is None:
        raise XanesdbUserError(f"site {site} has no structure {doc['material_id']!r} stored")
    from pymatgen.core import Structure

    structure = Structure.from_dict(st["structure"])
    db = get_database(settings)  # a writer: indexes and validators
    root = workdir or Path(settings.HOME) / "disorder-runs"
    folder = root / "".join(c if c.isalnum() or c in "-_." else "_" for c in site)
    summary = run_distortion_series(
        structure, doc["site_index"], doc["material_id"], db, distortions=grid, preset=preset, site_id=site,
        workdir=folder, retry_failed=retry_failed, run_kwargs={"feff_cmd": settings.FEFF_CMD, "timeout": settings.FEFF_TIMEOUT_S},
        on_task=lambda t: console.print(f"{t.task_id}: {t.state} in {t.wall_seconds or 0:.1f} s"
                                        + (f" ({t.error})" if t.error else "")),
    )  # fmt: skip
    console.print(f"{site}: {summary['n_series']} distortions, {summary['n_already']} already stored, "
                  f"{len(summary['task_ids'])} run now, {len(summary['failed'])} failed")  # fmt: skip


@app.command("weights")
def weights(
    mu: float = typer.Option(0.0, help="Mean distortion (A)."),
    sigma: float = typer.Option(0.05, help="Width (A), > 0."),
    alpha: float = typer.Option(0.0, help="Skew-normal shape (0: Gaussian)."),
    step: float = typer.Option(0.05, help="Step of the series the weights are for (A)."),
) -> None:
    """The weights of one (skew-)normal distribution of distortions over a series, and its MSD."""
    from xanesdb.jobs.disorder.series import distortion_grid
    from xanesdb.ml.disorder import msd_of, series_weights

    grid = distortion_grid(step)
    w = series_weights(grid, mu, sigma, alpha)
    console.print(" ".join(f"{d:+.2f}:{x:.3f}" for d, x in zip(grid, w) if x >= 5e-4))
    console.print(f"MSD {msd_of(grid, w):.5f} A^2 (mean d {float((w * grid).sum()):+.4f} A)")
