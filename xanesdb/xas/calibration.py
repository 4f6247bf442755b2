"""Calibration of computed spectra to measured ones, fitted on reference compounds.

FEFF spectra, even with a self-consistent potential (the ``scf`` presets, or ``fast`` ones
corrected towards them by :mod:`xanesdb.xas.fidelity`), differ from measured K-edge XANES of the
same compound in three systematic ways:

* the energy scale above the edge is compressed: FEFF's muffin-tin potential and Hedin-Lundqvist
  self-energy put the white line and the first multiple-scattering resonances too close to the
  edge, by an amount that grows with the energy above it (a known FEFF trait; users stretch
  ``E - E0`` by 5-20 % when they compare);
* the measured features are broader: monochromator resolution (1-2 eV at 5-9 keV with Si(111))
  on top of the core-hole width FEFF already includes;
* they are weaker: thermal and static disorder and many-body losses damp the white line and the
  oscillations.

A :class:`MeasurementCalibration` is that map, with four numbers:

    y_cal(E) = 1 + (b(E) - 1) * (1 - (1 - damping) * r(E)),    r(E) = clip(E / 3 eV, 0, 1)
    b = broaden(y(g(E)), sigma),  g(E) = E for E <= 0,  g(E) = E / stretch - shift * r(E) above

(energies relative to the half step, as in :mod:`xanesdb.xas.align`: the half step stays put).
:func:`fit_calibration` picks them by least squares over pairs of one computed and one measured
spectrum of the same compound and phase (``scripts/fit_measured_calibration.py`` makes the pairs
from reference compounds and writes the file that ships, ``xanesdb/data/calibration/k-edge.json``),
and refits leaving each absorber out, so the file also says how well the map carries to an
absorber it never saw. Training applies it to every computed spectrum (``xanesdb train
--calibration k-edge``); measured spectra are never changed.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from xanesdb.xas.broaden import broaden

__all__ = ["CALIBRATION_DIR", "MeasurementCalibration", "fit_calibration", "load_calibration"]

#: where the shipped calibrations live (``<name>.json``)
CALIBRATION_DIR = Path(__file__).resolve().parent.parent / "data" / "calibration"
#: the parameter grid :func:`fit_calibration` searches
SHIFTS = tuple(np.round(np.arange(-1.0, 3.01, 0.5), 2))
STRETCHES = tuple(np.round(np.arange(1.0, 1.351, 0.025), 3))
SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
# above 1: measured features stronger than computed (FEFF's muffin-tin potential underestimates the
# white line of ionic Mn(II) and Fe(II) compounds); the fit decides, not the grid's edge
DAMPINGS = tuple(np.round(np.arange(0.5, 1.501, 0.05), 2))
#: the onset (eV above the half step) over which shift and damping ramp in
RAMP_EV = 3.0
#: the part of the aligned grid the fit compares (eV from the half step): what the models read
FIT_FROM_EV = -1.0


@dataclass
class MeasurementCalibration:
    """The fitted map from computed to measured spectra, and how well it did.

    Attributes
    ----------
    shift, stretch, sigma, damping
        Extra shift (eV) of the features above the onset, stretch of the energy scale above the
        half step, Gaussian broadening (eV, standard deviation), factor on the features above the
        edge.
    n_pairs
        Computed/measured pairs it was fitted on.
    rmse_before, rmse_after
        Mean over pairs of the root-mean-square difference (edge-step units, from
        ``FIT_FROM_EV``), without and with the map.
    pairs
        One entry per pair: ``measured`` (record id), ``computed`` (spectrum id), ``absorber``,
        ``lce_class``.
    held_out
        Per absorber: the parameters refitted without that absorber's pairs, and the RMSE of its
        own pairs before and with them.
    per_pair
        The parameters fitted to each pair alone, that pair's RMSE with them and its residual
        (measured minus the fitted computed spectrum, on the grid): how much one
        measurement differs from another (resolution, sample, temperature), the spread the
        measurement model of training should cover (:meth:`measurement_ranges`).
    provenance
        Free text: what made the file.
    """

    shift: float
    stretch: float
    sigma: float
    damping: float
    n_pairs: int = 0
    rmse_before: float | None = None
    rmse_after: float | None = None
    pairs: list[dict] = field(default_factory=list)
    held_out: dict[str, dict] = field(default_factory=dict)
    per_pair: list[dict] = field(default_factory=list)
    provenance: str = ""

    def apply(self, Y: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """The calibrated rows of ``Y`` (aligned spectra on ``grid``, half step at 0 eV)."""
        return _apply(np.atleast_2d(np.asarray(Y, dtype=np.float64)), np.asarray(grid, dtype=float),
                      self.shift, self.stretch, self.sigma, self.damping)  # fmt: skip

    def without(self, absorber: str) -> MeasurementCalibration:
        """The calibration refitted without ``absorber``'s pairs (itself when it had none)."""
        h = self.held_out.get(absorber)
        if h is None:
            return self
        keep = [p for p, q in zip(self.per_pair, self.pairs) if q.get("absorber") != absorber]
        return MeasurementCalibration(shift=h["shift"], stretch=h["stretch"], sigma=h["sigma"],
                                      damping=h["damping"], n_pairs=h["n_pairs"], per_pair=keep,
                                      provenance=f"{self.provenance}; refitted without {absorber}")  # fmt: skip

    def energy_scale(self) -> MeasurementCalibration:
        """Only the energy part of the map (stretch and shift; no broadening, no damping)."""
        return MeasurementCalibration(shift=self.shift, stretch=self.stretch, sigma=0.0, damping=1.0,
                                      n_pairs=self.n_pairs, provenance=f"energy scale of: {self.provenance}")  # fmt: skip

    def measurement_ranges(self, residuals: bool = False) -> dict[str, tuple]:
        """Ranges for :class:`xanesdb.ml.augment.MeasurementModel` spanning the per-pair fits around
        :meth:`energy_scale`: Gaussian width, damping, stretch relative to this one's, and with
        ``residuals`` the residuals of the per-pair fits (real computed-vs-measured mismatch that
        no stretch, broadening or damping explains); empty when there are no per-pair fits."""
        if not self.per_pair:
            return {}
        col = {k: [p[k] for p in self.per_pair] for k in ("stretch", "sigma", "damping")}
        out = {
            "gauss_ev": (max(min(col["sigma"]), 0.1), max(max(col["sigma"]), 0.5)),
            "damping": (min(col["damping"]), max(col["damping"])),
            "stretch": (round(min(col["stretch"]) / self.stretch, 4), round(max(col["stretch"]) / self.stretch, 4)),
        }
        bank = [p["residual"] for p in self.per_pair if p.get("residual")]
        if residuals and bank:
            out["residuals"] = bank
        return out

    def params(self) -> dict[str, float]:
        return {"shift": self.shift, "stretch": self.stretch, "sigma": self.sigma, "damping": self.damping}

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MeasurementCalibration:
        return cls(**d)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        tmp.replace(path)  # whole or not at all
        return path


def _warped(Y: np.ndarray, grid: np.ndarray, shift: float, stretch: float) -> np.ndarray:
    r = np.clip(grid / RAMP_EV, 0.0, 1.0)
    src = np.where(grid <= 0, grid, grid / stretch - shift * r)
    return np.stack([np.interp(src, grid, y) for y in Y])


def _damped(B: np.ndarray, grid: np.ndarray, damping: float) -> np.ndarray:
    r = np.clip(grid / RAMP_EV, 0.0, 1.0)
    return 1.0 + (B - 1.0) * (1.0 - (1.0 - damping) * r)


def _apply(Y, grid, shift, stretch, sigma, damping) -> np.ndarray:
    W = _warped(Y, grid, shift, stretch)
    B = broaden(W, grid, sigma).astype(np.float64) if sigma > 0 else W
    return _damped(B, grid, damping).astype(np.float32)


def _grid_search(C: np.ndarray, M: np.ndarray, grid: np.ndarray) -> tuple[float, dict[str, float]]:
    best = (np.inf, {})
    for shift, stretch in itertools.product(SHIFTS, STRETCHES):
        W = _warped(C, grid, shift, stretch)
        for sigma in SIGMAS:
            B = broaden(W, grid, sigma).astype(np.float64) if sigma > 0 else W
            for damping in DAMPINGS:
                r = _rmse(_damped(B, grid, damping), M, grid)
                if r < best[0]:
                    best = (r, {"shift": float(shift), "stretch": float(stretch), "sigma": float(sigma),
                                "damping": float(damping)})  # fmt: skip
    return best


def _rmse(C: np.ndarray, M: np.ndarray, grid: np.ndarray) -> float:
    sel = grid >= FIT_FROM_EV
    return float(np.mean(np.sqrt(np.mean((C[:, sel] - M[:, sel]) ** 2, axis=1))))


def fit_calibration(computed, measured, grid, pairs: list[dict] | None = None,
                    provenance: str = "") -> MeasurementCalibration:  # fmt: skip
    """The map that brings each computed spectrum closest to its measured twin.

    Parameters
    ----------
    computed, measured
        (n_pairs, n_points) aligned spectra of the same compounds, on ``grid``.
    grid
        Energies relative to the half step (the aligned grid).
    pairs
        One dict per pair, with at least ``absorber`` (used for the leave-one-absorber-out refits).
    """
    C = np.asarray(computed, dtype=np.float64)
    M = np.asarray(measured, dtype=np.float64)
    if C.shape != M.shape or len(C) == 0:
        raise ValueError(f"need matching, non-empty pair arrays, got {C.shape} and {M.shape}")
    grid = np.asarray(grid, dtype=float)
    pairs = list(pairs or [{} for _ in range(len(C))])
    r, p = _grid_search(C, M, grid)
    held_out = {}
    absorbers = np.array([q.get("absorber", "") for q in pairs])
    for el in sorted(set(absorbers) - {""}):
        keep = absorbers != el
        if keep.sum() == 0:
            continue
        _, q = _grid_search(C[keep], M[keep], grid)
        own = ~keep
        held_out[el] = {**q, "n_pairs": int(keep.sum()), "n_own": int(own.sum()),
                        "rmse_own_before": _rmse(C[own], M[own], grid),
                        "rmse_own_after": _rmse(_apply(C[own], grid, **q), M[own], grid)}  # fmt: skip
    per_pair = []
    for i in range(len(C)):
        ri, qi = _grid_search(C[i : i + 1], M[i : i + 1], grid)
        left = M[i] - _apply(C[i : i + 1], grid, **qi)[0]  # what no stretch, broadening or damping explains
        per_pair.append({**qi, "rmse": ri, "residual": [round(float(v), 4) for v in left]})
    return MeasurementCalibration(**p, n_pairs=len(C), rmse_before=_rmse(C, M, grid), rmse_after=r, pairs=pairs,
                                  held_out=held_out, per_pair=per_pair, provenance=provenance)  # fmt: skip


def load_calibration(name: str) -> MeasurementCalibration:
    """A shipped calibration by name (``k-edge``) or a JSON file written by
    :meth:`MeasurementCalibration.save`.

    Raises
    ------
    ValueError
        When there is no such calibration.
    """
    path = Path(name)
    if not path.suffix == ".json":
        path = CALIBRATION_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CALIBRATION_DIR.glob("*.json"))
        raise ValueError(f"no calibration {name!r}; use one of {', '.join(known) or '(none shipped)'} or a .json file")
    hint = "give a file written by `xanesdb calibrate REFS -o FILE.json`"
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON calibration ({str(err).splitlines()[0]}); {hint}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a calibration is a JSON object, this file holds a {type(d).__name__}; {hint}")
    known = {f.name for f in fields(MeasurementCalibration)}
    params = ("shift", "stretch", "sigma", "damping")
    unknown, missing = sorted(set(d) - known), [k for k in params if k not in d]
    if unknown or missing:
        what = "; ".join(x for x in (f"unknown keys {', '.join(unknown)}" if unknown else "",
                                     f"missing {', '.join(missing)}" if missing else "") if x)
        raise ValueError(f"{path}: not a calibration ({what}); {hint}")
    try:
        cal = MeasurementCalibration.from_dict(d)
        bad = [k for k in params if not np.isfinite(float(getattr(cal, k)))]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a calibration ({err}); {hint}") from None
    if bad or cal.stretch <= 0 or cal.sigma < 0:
        raise ValueError(f"{path}: calibration values out of range (stretch > 0, sigma >= 0, all finite); {hint}")
    return cal
