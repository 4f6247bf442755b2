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


@app.command("train")
def train(
    element: Optional[list[str]] = typer.Option(None, "--element", "-e", help="Train on the series of these absorbers (repeat); default every stored series."),
    hold_out: Optional[list[str]] = typer.Option(None, "--hold-out", help="Absorbers whose sites are each held out once to score the model (default: all trained absorbers)."),
    target: str = typer.Option("variance", help="variance (spread about the mean distortion, what temperature changes) or msd (variance + mean^2)."),
    relative: bool = typer.Option(True, "--relative/--absolute", help="Read a spectrum against a reference of the same sample (a temperature series), or alone."),
    family: str = typer.Option("gbt", "--model", help="gbt (gradient-boosted trees), mlp, mlp-deep or cnn."),
    n_weightings: int = typer.Option(1000, "--n-weightings", help="Disordered spectra per site (seeded weightings of its series)."),
    step: float = typer.Option(0.05, help="Use each series' runs on this distortion grid (A)."),
    epochs: int = typer.Option(60, help="Epochs (networks)."),
    seed: int = typer.Option(0, help="Seed of weightings, pairs, splits and initialisation."),
    png: Optional[Path] = typer.Option(None, "--png", help="Write each held-out site's truth against prediction here (PNG)."),
) -> None:
    """Train a disorder regressor on the stored distortion series, score it on held-out sites, register it."""
    from xanesdb.ml.disorder import TARGETS, complete_series, load_series, train_disorder_model
    from xanesdb.ml.regression_models import FAMILIES
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    if target not in TARGETS:
        raise XanesdbUserError(f"unknown --target {target!r}; use one of {', '.join(TARGETS)}")
    if family not in FAMILIES:
        raise XanesdbUserError(f"unknown --model {family!r}; use one of {', '.join(FAMILIES)}")
    if n_weightings < 10 or epochs < 1 or not 0 < step <= 0.45:
        raise XanesdbUserError("--n-weightings must be at least 10, --epochs at least 1 and --step in (0, 0.45] A")
    if png is not None:
        from xanesdb.platform.export import check_output_file

        check_output_file(png, "--png")
    settings = get_settings()
    crit = {"element": {"$in": list(element)}} if element else {}
    series = complete_series(load_series(get_database(settings, ensure=False), crit), step=step)
    if len(series) < 2:
        raise XanesdbUserError(f"{len(series)} complete distortion series{' of ' + ', '.join(element) if element else ''}; "
                               "a disorder model needs at least 2 (run `xanesdb disorder series <site>`)")  # fmt: skip
    held = [s.site_id for s in series if not hold_out or s.element in hold_out]
    if hold_out and not held:
        raise XanesdbUserError(f"no complete series of {', '.join(hold_out)} to hold out; trained absorbers: "
                               f"{', '.join(sorted({s.element for s in series}))}")  # fmt: skip
    console.print(f"{len(series)} series ({', '.join(sorted({s.element for s in series}))}); holding out {len(held)} "
                  f"sites one at a time, then training on all")  # fmt: skip
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"training {family} ({len(held)} held-out sites, then all)", total=None)
        model, doc = train_disorder_model(series, target=target, relative=relative, family=family,
                                          n_weightings=n_weightings, seed=seed, epochs=epochs, held_out=held,
                                          on_site=lambda _: bar.update(task, description=f"training {family} on all sites"))  # fmt: skip
    from xanesdb.ml.registry import register_run

    doc = register_run(doc, model, settings)
    h = doc.metrics["held_out_sites"]
    kind = f"{'relative ' if relative else ''}{target}"
    console.print(f"model {doc.run_id}: {kind} (A^2), {doc.n_spectra} disordered spectra of {len(series)} sites")
    for sid, r in h["sites"].items():
        console.print(f"  held out {sid}: MAE {r['mae']:.4f}, baseline {r['mae_baseline']:.4f}, Spearman {r['spearman']:+.2f}")
    console.print(f"held-out sites: MAE {h['mae']:.4f} A^2 against {h['mae_baseline']:.4f} for the training mean")
    if png is not None:
        from xanesdb.ml.disorder import plot_held_out_sites

        plot_held_out_sites(doc, png)
        console.print(f"parity plot written to {png}")
    console.print(f"predict with: xanesdb disorder predict -m {doc.run_id} FILES" + (" --reference LOWEST_T_FILE" if relative else ""))


@app.command("predict")
def predict(
    files: list[Path] = typer.Argument(..., help="Measured spectra: XDI, Athena .prj, CSV columns, FEFF xmu.dat."),
    model: str = typer.Option(..., "--model", "-m", help="Run id of a `xanesdb disorder train` model."),
    reference: Optional[str] = typer.Option(None, "--reference", "-r", help="Spectrum of the same sample to read the others against (relative models): a file, or the name of one of the spectra read (e.g. 'EuTiO3.prj:14K')."),
    group: Optional[list[str]] = typer.Option(None, "--group", "-g", help="Athena group labels to read (repeat); default all."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json (JSON lines)."),
    energy_col: Optional[str] = typer.Option(None, "--energy-col", help="Energy column (name or 1-based number) of column files."),
    mu_col: Optional[str] = typer.Option(None, "--mu-col", help="mu column (name or 1-based number) of column files, or a ratio of two: 'ln(I0/It)', 'If/I0'."),
    absorber: Optional[str] = typer.Option(None, "--absorber", help="K-edge absorber of files whose energies are relative to the edge (E - E0, from below 0 eV): its tabulated edge energy is added. Default: the model's absorber, when it was trained on one. Files with absolute energies are read as they are."),
) -> None:
    """Disorder (variance or MSD of the bond lengths, A^2) of measured spectra, from a disorder model."""
    import csv
    import io
    import json
    import sys

    from xanesdb.ml.disorder import is_disorder_run, predict_disorder
    from xanesdb.ml.regression import load_regression_model
    from xanesdb.ml.registry import get_run
    from xanesdb.platform.settings import get_settings
    from xanesdb.xas.readers import read_files

    if fmt not in ("table", "csv", "json"):
        raise XanesdbUserError(f"unknown --format {fmt!r}; use table, csv or json")
    settings = get_settings()
    doc = get_run(model, settings)
    if not is_disorder_run(doc):
        raise XanesdbUserError(f"{model} is not a disorder model; train one with `xanesdb disorder train`")
    if absorber is not None:
        from xanesdb.search import check_element

        absorber = check_element(absorber)
    else:
        trained_on = doc.hyperparameters.get("disorder", {}).get("elements") or []
        absorber = trained_on[0] if len(trained_on) == 1 else None
    cols = {"energy_col": energy_col, "mu_col": mu_col, "relative_to": absorber}
    spectra, failures = read_files(files, groups=group, **cols)
    rows = [{"name": f.name, "error": why} for f, why in failures]
    ref = None
    if reference is not None:
        named = [s for s in spectra if s.name == reference]
        if named:
            ref = named[0]
        elif Path(reference).is_file():
            found, failed = read_files([Path(reference)], **cols)
            if failed:
                raise XanesdbUserError(failed[0][1])
            ref = found[0]
        else:
            raise XanesdbUserError(f"--reference {reference!r} is neither a file nor one of the spectra read "
                                   f"({', '.join(s.name for s in spectra[:4])}{', ...' if len(spectra) > 4 else ''})")  # fmt: skip
    rows = predict_disorder(doc, load_regression_model(doc, settings), spectra, ref) + rows
    fields = ("name", "absorber", "target", "value", "sigma", "relative_to", "model", "error")
    if fmt == "json":
        sys.stdout.write("".join(json.dumps({k: r.get(k) for k in fields}) + "\n" for r in rows))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else f"{r[k]:.6g}" if isinstance(r.get(k), float) else r[k]) for k in fields})
        sys.stdout.write(buf.getvalue())
    else:
        from rich.table import Table

        info = doc.hyperparameters["disorder"]
        t = Table(title=f"{'relative ' if info['relative'] else ''}{info['target']} (A^2), model {doc.run_id}"
                        + (f", against {ref.name}" if ref is not None and info["relative"] else ""))  # fmt: skip
        for c in ("spectrum", "value", "± sigma", "note"):
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(r["name"], "" if "value" not in r else f"{r['value']:.4f}",
                      "" if "sigma" not in r else f"{r['sigma']:.4f}", r.get("error", ""))  # fmt: skip
        console.print(t)
    n_err = sum("error" in r for r in rows)
    if n_err:
        raise XanesdbUserError(f"{n_err} of {len(rows)} spectra could not be read or aligned (rows marked above)")
