"""A computed -> measured calibration fitted on the user's own reference compounds.

Each reference is a measured spectrum (any file ``xanesdb predict`` reads; an Athena group by its
label) and the material of the *same phase* in the database. Every aligned computed spectrum of
that material's absorber sites (of one geometry class when given) becomes one pair; ``fast``
spectra are corrected towards ``scf`` first, as training does. The fit is
:func:`xanesdb.xas.calibration.fit_calibration`; the result is a JSON file that ``xanesdb train
--calibration FILE`` and ``xanesdb search --calibration FILE`` take. ``xanesdb calibrate`` is the
command; ``scripts/fit_measured_calibration.py`` makes the shipped ``k-edge`` one with it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.xas.calibration import MeasurementCalibration

__all__ = ["Reference", "calibration_pairs", "fit_calibration_from_db", "read_references"]

@dataclass(frozen=True)
class Reference:
    """One measured reference compound and the database material of the same phase."""

    file: str
    material_id: str
    group: str | None = None
    lce_class: str | None = None
    name: str | None = None


def read_references(path) -> list[Reference]:
    """The rows of a CSV file with columns ``file``, ``material_id`` and optionally ``group``,
    ``lce_class``, ``name`` (relative file paths are relative to the CSV's folder).

    Raises
    ------
    XanesdbUserError
        When the file is missing, has no such columns or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise XanesdbUserError(f"{path}: no such file; give a CSV with columns file,material_id[,group,lce_class,name]")
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except (UnicodeDecodeError, csv.Error) as err:
        raise XanesdbUserError(f"{path}: not a CSV file ({err}); give columns file,material_id[,group,lce_class,name]") from None
    if not rows or not {"file", "material_id"} <= set(rows[0]):
        raise XanesdbUserError(f"{path}: needs a header with at least file and material_id, and one row per reference")
    out = []
    for i, r in enumerate(rows, start=2):
        f, m = (r.get("file") or "").strip(), (r.get("material_id") or "").strip()
        if not f or not m:
            raise XanesdbUserError(f"{path}, line {i}: file and material_id must not be empty")
        fp = Path(f) if Path(f).is_absolute() else path.parent / f
        out.append(Reference(file=str(fp), material_id=m, group=(r.get("group") or "").strip() or None,
                             lce_class=(r.get("lce_class") or "").strip() or None,
                             name=(r.get("name") or "").strip() or None))  # fmt: skip
    return out


def calibration_pairs(references: list[Reference], settings: XanesdbSettings | None = None,
                      fidelity: str | None = "scf") -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:  # fmt: skip
    """(computed, measured, pairs) on the aligned grid for :func:`fit_calibration`.

    Raises
    ------
    XanesdbUserError
        When a file cannot be read (one line naming it) or a material has no aligned computed
        spectrum of the measured spectrum's absorber.
    """
    from xanesdb.ml.aligned import ALIGNED_GRID, fit_fidelity_from_db
    from xanesdb.ml.predict import absorber_of
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database
    from xanesdb.xas.align import align_measured
    from xanesdb.xas.readers import read_spectra

    settings = settings or get_settings()
    db = get_database(settings)
    fid = fit_fidelity_from_db(settings, target_preset=fidelity) if fidelity else None
    C, M, pairs = [], [], []
    for ref in references:
        spectra = read_spectra(ref.file, groups=[ref.group] if ref.group else None)
        if len(spectra) != 1:
            raise XanesdbUserError(f"{ref.file} holds {len(spectra)} spectra; name one with the group column")
        s = spectra[0]
        absorber, _ = absorber_of(s)
        if absorber is None:
            raise XanesdbUserError(f"{ref.file}: no K edge of a known absorber at its edge energy")
        name = ref.name or s.name
        try:
            y = align_measured(s.energy, s.mu)["y"]
        except ValueError as err:
            raise XanesdbUserError(f"{ref.file}: {err}") from None
        query = {"source": "xanesdb", "material_id": ref.material_id, "element": absorber, "mu_aligned": {"$ne": None}}
        if ref.lce_class:
            query["lce_class"] = ref.lce_class
        docs = sorted(db["spectra"].find(query, {"_id": 0, "spectrum_id": 1, "preset": 1, "mu_aligned": 1, "lce_class": 1}),
                      key=lambda d: d["spectrum_id"])  # fmt: skip
        if not docs:
            what = f" {ref.lce_class}" if ref.lce_class else ""
            raise XanesdbUserError(
                f"{ref.material_id} has no aligned computed{what} {absorber} spectrum in the database (reference "
                f"{name}); compute it (`xanesdb populate`, `xanesdb spectra build`) or check the material id"
            )
        for d in docs:
            c = np.asarray(d["mu_aligned"], dtype=float)
            if d.get("preset") == "fast" and fid is not None:
                c = fid.apply(c, ALIGNED_GRID)[0]
            C.append(c)
            M.append(y)
            pairs.append({"measured": name, "computed": d["spectrum_id"], "preset": d.get("preset"),
                          "absorber": absorber, "lce_class": d.get("lce_class")})  # fmt: skip
    return np.array(C), np.array(M), pairs


def fit_calibration_from_db(references: list[Reference], settings: XanesdbSettings | None = None,
                            fidelity: str | None = "scf", provenance: str = "") -> MeasurementCalibration:  # fmt: skip
    """The calibration fitted on ``references`` (see the module docstring)."""
    from xanesdb.ml.aligned import ALIGNED_GRID
    from xanesdb.xas.calibration import fit_calibration

    if not references:
        raise XanesdbUserError("no references given; one measured spectrum per reference compound is needed")
    C, M, pairs = calibration_pairs(references, settings, fidelity)
    note = provenance or (f"fitted on {len(pairs)} pairs of {len(references)} measured references; fast spectra "
                          f"corrected towards {fidelity or 'nothing'} first")  # fmt: skip
    return fit_calibration(C, M, ALIGNED_GRID, pairs, provenance=note)
