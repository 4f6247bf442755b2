"""``xanesdb predict``: site geometry of measured spectra, many files and formats at once.

Thin: read the files (:mod:`xanesdb.xas.readers`), choose a model per spectrum, call
:func:`xanesdb.ml.predict.predict_spectra`, print or write the rows.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import typer

from xanesdb.commands._console import SafeConsole
from xanesdb.platform.errors import XanesdbUserError

console = SafeConsole(soft_wrap=True, emoji=False)
err_console = SafeConsole(stderr=True, emoji=False)

FORMATS = ("table", "csv", "json")
#: the class columns of the table and CSV (a model without ``other`` leaves that one empty)
CLASS_COLUMNS = ("O6", "S5", "T4", "other")
CSV_FIELDS = ("name", "file", "group", "absorber", "mu_from", "model", "predicted", "best_class", "confidence", "P_O6", "P_S5",
              "P_T4", "P_other", "reference_vote", "nearest_reference", "outlier_score", "shift_ev", "e0", "e_half", "edge_step", "preedge_height", "preedge_ev", "preedge_max", "start_fall", "normalised_as_given", "level_step", "reason",
              "note", "error")  # fmt: skip


def predict(
    files: list[Path] = typer.Argument(..., help="Spectrum files: XDI, Athena .prj (every group), SPEC (every energy scan), HDF5/NeXus (every group of counters), CSV/whitespace columns (DESY FIO too; a table of spectra: every column), FEFF xmu.dat; a folder stands for the spectrum files in it."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered run id, a portable model folder, or a shipped model (absorber symbol such as Fe, or the id predict printed); default: the shipped model of each spectrum's absorber (its short-scan model for a scan that ends 27-41.5 eV above its half step)."),
    group: Optional[list[str]] = typer.Option(None, "--group", "-g", help="Athena group label to read from the .prj files, scan number of a SPEC file, group of an HDF5 file, or column of a table of spectra (repeat; of several files, each gives the ones it has); default all."),
    energy_col: Optional[str] = typer.Option(None, "--energy-col", help="Energy column (name or 1-based number) of column files."),
    mu_col: Optional[str] = typer.Option(None, "--mu-col", help="mu column (name or 1-based number) of column files, or a ratio of two: 'ln(I0/It)', 'If/I0'."),
    align: str = typer.Option("auto", help="auto (the model's rule: aligned models put the edge's half step at 0, and take edge as the same), or for grid models none / edge."),
    min_confidence: float = typer.Option(0.5, "--min-confidence", help="Calibrated probability below which the answer is unsure (default: more probable than all other classes together)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json (JSON lines)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the csv/json rows to this file instead of the screen."),
    png: Optional[Path] = typer.Option(None, "--png", help="Folder for one PNG per spectrum: it over the model's class means."),
    self_absorption: Optional[str] = typer.Option(None, "--self-absorption", help="Correct fluorescence spectra for self-absorption in a thick sample of this formula, diluent included (e.g. 'Fe2O3', 'Fe0.05B0.95N0.95'), as Athena's Fluo does."),
    fluo_angles: str = typer.Option("45,45", "--fluo-angles", help="With --self-absorption: incident and exit angles to the sample surface, degrees."),
    absorber: Optional[str] = typer.Option(None, "--absorber", help="K-edge absorber (e.g. Fe) of files whose energies are relative to the edge (E - E0, from below 0 eV, as many papers and some codes give them): its tabulated edge energy is added. Files with absolute energies are read as they are."),
    herfd: str = typer.Option("auto", "--herfd", help="HERFD spectra broadened as conventional ones (the core-hole lifetime and monochromator width HERFD removes): auto (files whose name, Athena label or XDI header says HERFD), yes (every spectrum) or no."),
) -> None:
    """Local geometry (T4/S5/O6) of measured spectra, or `unsure` with the reason; one row per spectrum."""
    from xanesdb.xas.readers import read_files

    if fmt not in FORMATS:
        raise XanesdbUserError(f"unknown --format {fmt!r}; use {', '.join(FORMATS)}")
    if not 0.0 <= min_confidence <= 1.0:
        raise XanesdbUserError("--min-confidence must be between 0 and 1")
    from xanesdb.xas.herfd import HERFD_MODES, herfd_spectra

    if herfd not in HERFD_MODES:
        raise XanesdbUserError(f"unknown --herfd {herfd!r}; use {', '.join(HERFD_MODES)}")
    if align not in ("auto", "edge", "none"):
        raise XanesdbUserError(f"unknown --align {align!r}; use auto, edge or none")
    if out is not None:
        from xanesdb.platform.export import check_output_file

        if fmt == "table":
            raise XanesdbUserError("--out writes csv or json; add --format csv or --format json")
        check_output_file(out)
    if png is not None and png.exists() and not png.is_dir():
        raise XanesdbUserError(f"--png {png} is a file; give a folder")
    angles = _angles(fluo_angles) if self_absorption is not None else None
    if absorber is not None:
        from xanesdb.search import check_element

        absorber = check_element(absorber)
    cols = {k: (int(v) if v is not None and v.isdigit() else v) for k, v in (("energy_col", energy_col), ("mu_col", mu_col))}
    # every file is read before Keras loads; a bad one becomes an error row
    spectra, failures = read_files(files, groups=group, relative_to=absorber, **cols)
    if self_absorption is not None:
        from xanesdb.xas.selfabs import correct_spectra

        try:
            spectra, not_corrected = correct_spectra(spectra, self_absorption, *angles)
        except ValueError as err:
            raise XanesdbUserError(f"--self-absorption: {err}") from None
        failures = [*failures, *not_corrected]
    spectra, not_broadened = herfd_spectra(spectra, herfd)
    failures = [*failures, *not_broadened]
    from xanesdb.ml.predict import error_rows

    rows: list[dict] = error_rows(failures)
    if model is not None and not Path(model).is_dir():
        from xanesdb.ml.portable import shipped_model_named

        shipped = shipped_model_named(model)  # "Fe", or the id a prediction printed: no database needed
        model = str(shipped) if shipped is not None else model
    if model is not None:  # a registered fractions run prints O6/S5/T4 fractions (issue 21)
        from xanesdb.commands.fractions import predict_fraction_rows

        if predict_fraction_rows(model, spectra, rows, fmt, out):
            return
    if model is not None:  # a registered regression run prints value +- sigma (issue 20)
        from xanesdb.commands.regression import predict_regression_rows

        if predict_regression_rows(model, spectra, rows, fmt, out):
            return
    from xanesdb.ml.predict import predict_measured

    if png is not None:
        png.mkdir(parents=True, exist_ok=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("drawing" if png is not None else "predicting"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:  # fmt: skip
        task = bar.add_task("spectra", total=None)
        rows.extend(predict_measured(spectra, model=model, align=align, min_confidence=min_confidence, png_dir=png,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total)))  # fmt: skip
    _emit(rows, fmt, out)
    if png is not None:
        err_console.print(f"PNGs in {png}")
    n_err = sum("error" in r for r in rows)
    if n_err:  # every spectrum that could be predicted was; the exit code says not all could
        raise XanesdbUserError(f"{n_err} of {len(rows)} spectra could not be predicted (rows marked error above)")


def _angles(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise XanesdbUserError(f"--fluo-angles {text!r}: give two angles in degrees, e.g. 45,45") from None
    if not (0 < a < 180 and 0 < b < 180):
        raise XanesdbUserError(f"--fluo-angles {text!r}: each angle lies between 0 and 180 degrees")
    return a, b


def _flat(r: dict) -> dict:
    p = r.get("probabilities") or {}
    d = {k: r.get(k) for k in CSV_FIELDS if not k.startswith("P_")}
    d.update({f"P_{c}": p.get(c) for c in CLASS_COLUMNS})
    from xanesdb.ml.predict import vote_text

    d["reference_vote"] = vote_text(r, sep=";", colon=":") or None
    near = (r.get("nearest_references") or [None])[0]
    d["nearest_reference"] = f"{near['material_id']} {near['class']} rmse={near['rmse']:.3f}" if near else None
    return d


def _emit(rows: list[dict], fmt: str, out: Path | None) -> None:
    if fmt == "json":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else f"{v:.7g}" if isinstance(v, float) else v) for k, v in _flat(r).items()})
        text = buf.getvalue()
    else:
        from rich.table import Table

        from xanesdb.ml.predict import vote_text

        voted = any(r.get("reference_vote") for r in rows)
        classes = [c for c in CLASS_COLUMNS if c != "other" or any(c in (r.get("probabilities") or {}) for r in rows)]
        t = Table(title="xanesdb predict (probabilities calibrated" + (", the classes of the nearest reference "
                        "compounds averaged in" if voted else "") + "; notes below)")  # fmt: skip
        for c in ("#", "spectrum", "abs.", "answer", *classes, *(["nearest refs"] if voted else []), "outlier",
                  "E half"):  # fmt: skip
            t.add_column(c, overflow="fold")
        notes = []
        for i, r in enumerate(rows, 1):
            if "error" in r:
                t.add_row(str(i), r["name"], r.get("absorber", ""), "error", *[""] * (len(classes) + (3 if voted else 2)))
                notes.append(f"{i}. {r['error']}")
                continue
            p = r["probabilities"]
            t.add_row(str(i), r["name"], r.get("absorber", ""), r["predicted"],
                      *[f"{p[c]:.2f}" if c in p else "" for c in classes], *([vote_text(r)] if voted else []),
                      f"{r['outlier_score']:.2f}", f"{r['e_half']:.1f}" if r.get("e_half") is not None else "")  # fmt: skip
            for why in (r.get("reason"), r.get("note")):
                if why:
                    notes.append(f"{i}. {why}")
        console.print(t)
        for n in notes:
            console.print(n)
        n_err = sum("error" in r for r in rows)
        n_unsure = sum(r.get("predicted") == "unsure" for r in rows)
        models = sorted({r["model"] for r in rows if r.get("model")})
        console.print(f"{len(rows)} spectra: {len(rows) - n_err - n_unsure} answered, {n_unsure} unsure, {n_err} errors; "
                      f"model(s) {', '.join(models) or '-'}")  # fmt: skip
        return
    if out is not None:
        from xanesdb.platform.export import write_text_output

        write_text_output(out, text)
        err_console.print(f"{len(rows)} rows written to {out}")
    else:
        print(text, end="")
