"""``xanesdb search``: the stored computed spectra nearest to each given spectrum.

Thin: read the files (:mod:`xanesdb.xas.readers`), call :func:`xanesdb.search.search_spectra`,
print or write the rows.
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
CSV_FIELDS = ("input", "file", "group", "absorber", "method", "rank", "material_id", "formula", "site", "site_id",
              "lce_class", "chemenv_symbol", "similarity", "shift_ev", "preset", "source", "spectrum_id", "e_half",
              "e_half_ref", "error")  # fmt: skip


def search(
    files: list[Path] = typer.Argument(..., help="Spectrum files: XDI, Athena .prj (every group), CSV/whitespace columns, FEFF xmu.dat."),
    element: Optional[str] = typer.Option(None, "--element", "-e", help="Search this absorber's computed spectra; default: each spectrum's absorber (from its edge energy). Files whose energies are relative to the edge (E - E0) get its tabulated K edge added."),
    top: int = typer.Option(10, "--top", "-n", help="Matches per spectrum."),
    method: str = typer.Option("cosine", "--method", help="cosine (plain, on the aligned normalised grid) or elsie (ensemble of preprocessings x similarities, Borda vote)."),
    max_shift: float = typer.Option(3.0, "--max-shift", help="Fit the energy shift within +-this many eV (0.5 eV steps) after half-step alignment."),
    fidelity: str = typer.Option("auto", "--fidelity", help="scf: compare with the fast-preset references corrected towards the scf preset (as `train --fidelity scf`); none: as stored; auto: scf for measured spectra, none for FEFF xmu.dat files."),
    calibration: str = typer.Option("auto", "--calibration", help="k-edge (or a calibration .json): compare with references mapped to what a measurement of them looks like (FEFF's energy scale stretched, broadened, damped; fitted on reference compounds); none: as stored; auto: k-edge for measured spectra, none for FEFF xmu.dat files (so a computed spectrum finds its stored copy)."),
    group: Optional[list[str]] = typer.Option(None, "--group", "-g", help="Athena group label to read from the .prj files (repeat); default all groups."),
    energy_col: Optional[str] = typer.Option(None, "--energy-col", help="Energy column (name or 1-based number) of column files."),
    mu_col: Optional[str] = typer.Option(None, "--mu-col", help="mu column (name or 1-based number) of column files, or a ratio of two: 'ln(I0/It)', 'If/I0'."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json (JSON lines, one per spectrum)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the csv/json rows to this file instead of the screen."),
) -> None:
    """Nearest computed spectra to each spectrum: material, site, ChemEnv class, similarity, fitted energy shift.

    Spectra are read, normalised and aligned at their half step as `xanesdb predict` does.
    """
    from xanesdb.search import check_element
    from xanesdb.search.match import METHODS
    from xanesdb.xas.readers import read_files

    if fmt not in FORMATS:
        raise XanesdbUserError(f"unknown --format {fmt!r}; use {', '.join(FORMATS)}")
    if method not in METHODS:
        raise XanesdbUserError(f"unknown --method {method!r}; use {' or '.join(METHODS)}")
    if not 1 <= top <= 1000:
        raise XanesdbUserError(f"--top must be between 1 and 1000, got {top}")
    if not 0.0 <= max_shift <= 10.0:
        raise XanesdbUserError(f"--max-shift must be between 0 and 10 eV, got {max_shift:g}")
    if fidelity not in ("auto", "none", "scf"):
        raise XanesdbUserError(f"unknown --fidelity {fidelity!r}; use auto, none or scf")
    if calibration not in ("auto", "none"):
        from xanesdb.xas.calibration import load_calibration

        try:
            load_calibration(calibration)
        except ValueError as err:
            raise XanesdbUserError(f"--calibration: {err}") from None
    if element is not None:
        element = check_element(element)
    if out is not None:
        from xanesdb.platform.export import check_output_file

        if fmt == "table":
            raise XanesdbUserError("--out writes csv or json; add --format csv or --format json")
        check_output_file(out)
    cols = {k: (int(v) if v is not None and v.isdigit() else v) for k, v in (("energy_col", energy_col), ("mu_col", mu_col))}
    # every file is read before the database is asked; a bad one becomes an error row
    spectra, failures = read_files(files, groups=group, relative_to=element, **cols)
    bad = [{"name": f.name, "file": str(f), "method": method, "error": why} for f, why in failures]
    if not spectra:  # nothing to search: the first reason, in one line
        raise XanesdbUserError(bad[0]["error"])
    results = _search_by_references(spectra, fidelity, calibration, element=element, top=top, method=method,
                                    max_shift_ev=max_shift)  # fmt: skip
    rows = bad + results
    if all("error" in r for r in rows):
        raise XanesdbUserError(rows[0]["error"].splitlines()[0])
    _emit(rows, fmt, out, method)
    n_err = sum("error" in r for r in rows)
    if n_err:  # every spectrum that could be searched was; the exit code says not all could
        raise XanesdbUserError(f"{n_err} of {len(rows)} spectra could not be searched (rows marked error above)")


def _search_by_references(spectra, fidelity: str, calibration: str, **kw) -> list[dict]:
    """:func:`xanesdb.search.search_spectra` with ``auto`` resolved per spectrum: measured spectra
    against references corrected towards ``scf`` and calibrated to measurement, FEFF ``xmu.dat``
    files against the references as stored (so a computed spectrum finds its own copy)."""
    from xanesdb.search import search_spectra

    def refs(s) -> tuple[str | None, str | None]:
        measured = s.kind != "feff-xmu"
        fid = ("scf" if measured else None) if fidelity == "auto" else (None if fidelity == "none" else fidelity)
        cal = ("k-edge" if measured else None) if calibration == "auto" else (None if calibration == "none" else calibration)
        return fid, cal

    from xanesdb.ml.aligned import NoFidelityTwins

    keys = [refs(s) for s in spectra]
    out: list[dict | None] = [None] * len(spectra)
    for key in dict.fromkeys(keys):  # one search (one index) per kind of references, in input order
        idx = [i for i, k in enumerate(keys) if k == key]
        part = [spectra[i] for i in idx]
        try:
            rows = search_spectra(part, fidelity=key[0], calibration=key[1], **kw)
        except NoFidelityTwins:
            if fidelity != "auto":
                raise
            # a database with no site under both presets cannot correct fast towards scf (and the
            # calibration is fitted on corrected spectra): these spectra meet the stored references
            key = (None, None)
            rows = search_spectra(part, fidelity=None, calibration=None, **kw)
        for i, row in zip(idx, rows):
            out[i] = {**row, "references": "+".join(k for k in key if k) or "stored"} if "error" not in row else row
    return out


def _csv_rows(r: dict):
    base = {"input": r.get("name"), "file": r.get("file"), "group": r.get("group"), "absorber": r.get("absorber"),
            "method": r.get("method"), "e_half": r.get("e_half")}  # fmt: skip
    if "error" in r:
        yield {**base, "error": r["error"]}
        return
    for m in r["matches"]:
        yield {**base, **{k: m.get(k) for k in CSV_FIELDS if k in m}}


def _emit(rows: list[dict], fmt: str, out: Path | None, method: str) -> None:
    if fmt == "json":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            for row in _csv_rows(r):
                w.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        text = buf.getvalue()
    else:
        from rich.table import Table

        for i, r in enumerate(rows, 1):
            if "error" in r:
                console.print(f"{i}. {r['name']}: error: {r['error']}", markup=False, highlight=False)
                continue
            eh = f", half step {r['e_half']:.1f} eV" if r.get("e_half") is not None else ""
            t = Table(title=f"{i}. {r['name']} ({r['absorber'] or r.get('element')}{eh}): nearest computed "
                      f"{r.get('element')} spectra, {method}, references {r.get('references', 'stored')}",
                      title_justify="left")  # fmt: skip
            for c in ("#", "material", "formula", "site", "class", "ChemEnv", "sim.", "shift/eV", "preset"):
                t.add_column(c, overflow="fold", no_wrap=c in ("material", "sim.", "shift/eV"))
            for m in r["matches"]:
                t.add_row(str(m["rank"]), m["material_id"] or "", m["formula"] or "", "" if m["site"] is None else str(m["site"]),
                          m["lce_class"] or "-", m["chemenv_symbol"] or "-", f"{m['similarity']:.4f}",
                          f"{m['shift_ev']:+.1f}", m["preset"] or "")  # fmt: skip
            console.print(t)
        return
    if out is not None:
        from xanesdb.platform.export import write_text_output

        write_text_output(out, text)
        err_console.print(f"{len(rows)} spectra written to {out}")
    else:
        print(text, end="")
