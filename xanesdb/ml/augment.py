"""Augmentation of training spectra: energy shifts on the grid and Gaussian noise.

Applied to training data only, on spectra scaled to max 1 (before standardisation), as in
Carbone et al. (2019): shifts of +-1 and +-2 eV (5x data) and Gaussian noise of sigma 0.03.

``"measured"`` is a model of what a measurement does to a computed spectrum, for models that
read measured spectra (:class:`MeasurementModel`): each copy is broadened by a Gaussian of random
width (monochromator resolution) and a Lorentzian whose width grows with energy above the edge
(core-hole and final-state lifetimes beyond what FEFF includes), shifted by a random energy
(calibration and alignment error), its features above the edge damped (disorder, thermal motion
and many-body losses make measured white lines and oscillations weaker than FEFF's), scaled
(edge-step error of the normalisation), tilted (post-edge slope left by the normalisation) and
given noise of random amplitude. Where asked (``self_absorption``), copies are also flattened as
fluorescence from a thick, concentrated sample flattens a spectrum (:func:`self_absorb`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xanesdb.xas.broaden import broaden
from xanesdb.xas.normalize import half_step_energy
from xanesdb.xas.selfabs import self_absorbed

__all__ = [
    "shift_spectra",
    "add_noise",
    "augment",
    "broaden",
    "measurement_copies",
    "MeasurementModel",
    "self_absorb",
    "AUGMENTATIONS",
    "DEFAULT_SHIFTS_EV",
    "DEFAULT_NOISE_SIGMA",
]

DEFAULT_SHIFTS_EV: tuple[float, ...] = (-2.0, -1.0, 1.0, 2.0)
DEFAULT_NOISE_SIGMA = 0.03


def shift_spectra(X: np.ndarray, energies: np.ndarray, shift_ev: float) -> np.ndarray:
    """Spectra shifted by ``shift_ev`` in energy and re-interpolated on the same grid.

    A positive shift moves features to higher energy: the new value at E is the old one at
    E - shift. Points that come from outside the grid take the nearest end value.
    """
    X = np.asarray(X, dtype=np.float32)
    if shift_ev == 0:
        return X.copy()
    src = np.asarray(energies, dtype=np.float64) - shift_ev
    # linear interpolation on the (uniform or not) grid, vectorised over rows
    pos = np.interp(src, energies, np.arange(len(energies)))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(energies) - 1)
    w = (pos - lo).astype(np.float32)
    return X[:, lo] * (1 - w) + X[:, hi] * w


def add_noise(X: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Spectra with independent Gaussian noise of standard deviation ``sigma`` per point."""
    X = np.asarray(X, dtype=np.float32)
    if sigma <= 0:
        return X.copy()
    return X + rng.normal(0.0, sigma, size=X.shape).astype(np.float32)


def augment(
    X: np.ndarray,
    y: np.ndarray,
    energies: np.ndarray,
    kinds: tuple[str, ...] = ("shift",),
    *,
    shifts_ev: tuple[float, ...] = DEFAULT_SHIFTS_EV,
    noise_sigma: float = DEFAULT_NOISE_SIGMA,
    n_noise: int = 4,
    rng: np.random.Generator | None = None,
    measurement: MeasurementModel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The training set with augmented copies appended.

    Parameters
    ----------
    X, y
        Training spectra (max-scaled) and their targets.
    energies
        Grid energies (eV) of the columns of ``X``.
    kinds
        Any of ``"shift"`` (one copy per shift in ``shifts_ev``), ``"noise"`` (``n_noise``
        noisy copies of each original) and ``"measured"`` (``measurement.copies`` copies, see
        :class:`MeasurementModel`); the paper's 5x variants are ``("shift",)`` and ``("noise",)``.
    rng
        Random generator for the noise.

    Returns
    -------
    X_aug, y_aug
        Originals first, then the copies.
    """
    unknown = set(kinds) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown augmentation {sorted(unknown)}; use any of {', '.join(AUGMENTATIONS)}")
    rng = rng or np.random.default_rng(0)
    xs, ys = [np.asarray(X, dtype=np.float32)], [y]
    if "shift" in kinds:
        for s in shifts_ev:
            xs.append(shift_spectra(X, energies, s))
            ys.append(y)
    if "noise" in kinds:
        for _ in range(n_noise):
            xs.append(add_noise(X, noise_sigma, rng))
            ys.append(y)
    if "measured" in kinds:
        mm = measurement or MeasurementModel()
        for _ in range(mm.copies):
            xs.append(measurement_copies(X, energies, mm, rng, e_ref=float(energies[0]) + 5.0))
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


#: the augmentations ``augment`` knows
AUGMENTATIONS: tuple[str, ...] = ("shift", "noise", "measured")


@dataclass(frozen=True)
class MeasurementModel:
    """Ranges from which each measured-like copy of a computed spectrum draws its distortions.

    Parameters
    ----------
    copies
        Copies per training spectrum.
    gauss_ev
        Range of the Gaussian broadening's standard deviation (eV): beamline resolution of
        0.5-3 eV FWHM at 5-9 keV with Si(111), more in microprobes.
    lorentz_ev
        Range of the Lorentzian half width at the edge (eV), added to FEFF's own core-hole width.
    lorentz_slope
        Range of the growth of that half width per eV above the edge (final-state lifetime).
    shift_ev
        Largest energy shift (eV), both ways: calibration differences between beamlines (1-3 eV)
        plus alignment error.
    scale
        Largest relative error of the edge step, both ways.
    slope_per_100ev
        Largest post-edge slope left by the normalisation, per 100 eV above the edge.
    noise
        Range of the noise standard deviation (in edge-step units).
    damping
        Range of the factor applied to the features above the edge, ``1 + (y - 1) * d`` for
        energies above the half step (1: none).
    stretch
        Range of the factor on the energy scale above the edge (features at ``E`` move to
        ``E * s``): how far FEFF's energy scale differs between compounds from the mean map of
        :mod:`xanesdb.xas.calibration` (1: none).
    self_absorption
        Range of the self-absorption strength ``s`` of fluorescence-yield copies (:func:`self_absorb`;
        0: a transmission measurement or a dilute sample, 0.5: a concentrated sample whose other
        elements absorb twice the absorber's edge step). Each copy draws ``s`` from the range;
        (0, 0): none.
    residuals
        Curves on the model's grid of what real measurements differ from their calibrated
        computed twins by (:meth:`xanesdb.xas.calibration.MeasurementCalibration.measurement_ranges`);
        each copy gets one of them, scaled by a random factor in [0, 1] (none when empty, or when
        the grid has another length).
    """

    copies: int = 8
    gauss_ev: tuple[float, float] = (0.3, 2.0)
    lorentz_ev: tuple[float, float] = (0.0, 1.0)
    lorentz_slope: tuple[float, float] = (0.0, 0.05)
    shift_ev: float = 3.0
    scale: float = 0.08
    slope_per_100ev: float = 0.1
    noise: tuple[float, float] = (0.0, 0.02)
    damping: tuple[float, float] = (0.6, 1.0)
    stretch: tuple[float, float] = (1.0, 1.0)
    self_absorption: tuple[float, float] = (0.0, 0.0)
    residuals: tuple = ()

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> MeasurementModel:
        """The model with the fields of ``d`` changed (lists become tuples); None: the defaults."""
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in (d or {}).items()}
        if d.get("residuals"):
            d["residuals"] = tuple(tuple(float(x) for x in r) for r in d["residuals"])
        return cls(**d)


def measurement_copies(X: np.ndarray, energies: np.ndarray, model: MeasurementModel, rng: np.random.Generator,
                       e_ref: float = 0.0) -> np.ndarray:
    """One measured-like copy of each row of ``X`` (edge-step-normalised spectra on a uniform grid)."""
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    e = np.asarray(energies, dtype=np.float64)
    if model.stretch != (1.0, 1.0):
        st = rng.uniform(*model.stretch, n)
        X = np.stack([np.interp(np.where(e > e_ref, e_ref + (e - e_ref) / s, e), e, x) for s, x in zip(st, X)])
    Y = broaden(X, e, rng.uniform(*model.gauss_ev, n), rng.uniform(*model.lorentz_ev, n),
                rng.uniform(*model.lorentz_slope, n), e_ref)  # fmt: skip
    above_edge = (e > e_ref)[None, :]
    d = rng.uniform(*model.damping, (n, 1))
    Y = np.where(above_edge, 1.0 + (Y - 1.0) * d, Y)
    if model.self_absorption[1] > 0:
        Y = self_absorb(Y, e, rng.uniform(*model.self_absorption, n), e_ref)
    shifts = rng.uniform(-model.shift_ev, model.shift_ev, n)
    Y = np.stack([np.interp(e - s, e, y) for s, y in zip(shifts, Y)])
    above = np.maximum(e - e_ref, 0.0) / 100.0
    Y = Y * (1.0 + rng.uniform(-model.scale, model.scale, (n, 1)))
    Y = Y + rng.uniform(-model.slope_per_100ev, model.slope_per_100ev, (n, 1)) * above[None, :]
    Y = Y + rng.normal(0.0, 1.0, Y.shape) * rng.uniform(*model.noise, (n, 1))
    if model.residuals and len(model.residuals[0]) == Y.shape[1]:
        R = np.asarray(model.residuals, dtype=np.float64)
        Y = Y + R[rng.integers(0, len(R), n)] * rng.uniform(0.0, 1.0, (n, 1))
    return Y.astype(np.float32)


def self_absorb(Y: np.ndarray, energies: np.ndarray, strength, e_ref: float = 0.0) -> np.ndarray:
    """Edge-step-normalised spectra as thick-sample fluorescence would record them.

    The fluorescence of a sample too thick and concentrated to neglect self-absorption is
    ``mu_a / (mu_a + mu_rest)`` (Troger et al., Phys. Rev. B 46, 3283 (1992); ``mu_rest``: the
    absorption of everything else, at the incident and the fluorescence energies, weighted by the
    geometry). Normalised again by its edge step, a spectrum ``n`` becomes
    ``n (1 + s) / (1 + s n)`` with ``s = step / mu_rest``: 0 and 1 stay where they are, the white
    line and the oscillations flatten, the pre-edge and the foot of the edge grow. Each row is then
    moved back so that its half step is where it was (``e_ref``), as xanesdb aligns a measurement.

    ``strength``: ``s`` per row (0: no self-absorption).
    """
    Y = np.asarray(Y, dtype=np.float64)
    e = np.asarray(energies, dtype=np.float64)
    s = np.broadcast_to(np.asarray(strength, dtype=float), (len(Y),))[:, None]
    Z = self_absorbed(Y, 1.0 / np.maximum(s, 1e-12))  # alpha = 1 / s; s = 0: none
    # each copy's half step found as a measurement's is (xanesdb.xas.normalize.half_step_energy)
    moved = np.array([half_step_energy(e, z, e0=e_ref) - half_step_energy(e, y, e0=e_ref) for y, z in zip(Y, Z)])
    return np.stack([np.interp(e + dm, e, z) for dm, z in zip(moved, Z)]).astype(np.float32)
