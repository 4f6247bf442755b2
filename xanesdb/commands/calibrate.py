"""``xanesdb calibrate``: fit the computed -> measured calibration on your own reference compounds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from xanesdb.commands._console import SafeConsole
from xanesdb.platform.errors import XanesdbUserError

console = SafeConsole(soft_wrap=True)


def calibrate(
    references: Path = typer.Argument(..., help="CSV with columns file,material_id[,group,lce_class,name]: one measured "
                                      "reference spectrum per row and the database material of the same phase."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the calibration (.json); give it to `xanesdb train "
                             "--calibration` and `xanesdb search --calibration`."),
    fidelity: str = typer.Option("scf", "--fidelity", help="Correct fast-preset spectra towards this preset first "
                                 "(scf, scflite or none), as training does."),
) -> None:
    """Fit the map from computed to measured spectra (energy-scale stretch, shift, broadening, damping) on reference
    compounds measured at your beamline; each absorber is also refitted without its own references."""
    from xanesdb.ml.calibrate import fit_calibration_from_db, read_references
    from xanesdb.platform.export import check_output_file

    if fidelity not in ("scf", "scflite", "none"):
        raise XanesdbUserError(f"unknown --fidelity {fidelity!r}; use scf, scflite or none")
    if out.suffix != ".json":
        raise XanesdbUserError(f"--out {out} must end in .json (the file --calibration reads)")
    check_output_file(out)
    refs = read_references(references)
    cal = fit_calibration_from_db(refs, fidelity=None if fidelity == "none" else fidelity)
    cal.save(out)
    console.print(f"calibration from {cal.n_pairs} computed/measured pairs of {len(refs)} references: energy scale "
                  f"x{cal.stretch:g} above the half step, shift {cal.shift:g} eV, Gaussian {cal.sigma:g} eV, damping "
                  f"{cal.damping:g}; RMSE {cal.rmse_before:.3f} -> {cal.rmse_after:.3f} (edge-step units, from -1 eV)")  # fmt: skip
    if cal.held_out:
        t = Table(title="refitted without each absorber's own references: how the map carries to an absorber it did not see")
        for col in ("absorber", "pairs", "stretch", "shift", "Gaussian", "damping", "its RMSE before -> after"):
            t.add_column(col)
        for el, h in cal.held_out.items():
            t.add_row(el, str(h["n_own"]), f"{h['stretch']:g}", f"{h['shift']:g}", f"{h['sigma']:g}", f"{h['damping']:g}",
                      f"{h['rmse_own_before']:.3f} -> {h['rmse_own_after']:.3f}")  # fmt: skip
        console.print(t)
    console.print(f"written {out}; use it with `xanesdb train --representation aligned --augment measured "
                  f"--calibration {out}` and `xanesdb search --calibration {out}`")
