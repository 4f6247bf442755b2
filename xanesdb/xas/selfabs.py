"""Self-absorption of fluorescence-yield spectra, and its correction from the sample's formula.

Fluorescence from a sample that is thick and concentrated is ``mu_a / (mu_a + mu_rest)``, not
``mu_a``: where the absorber absorbs more (the white line, the oscillations) fewer photons get in
and out, so the features flatten and the pre-edge and the foot of the edge grow (Troger et al.,
Phys. Rev. B 46, 3283 (1992)). In edge-step units, with ``alpha`` the absorption of everything but
the absorber's edge (at the incident energy and, scaled by the geometry, at the fluorescence
line) over the absorber's edge step, a true spectrum ``n`` is recorded as

    n_f = n (1 + alpha) / (n + alpha)

and the correction is its inverse, ``n = n_f alpha / (1 + alpha - n_f)``. This is the Fluo
algorithm of D. Haskel that Athena and xraylarch (``fluo_corr``) use, with ``alpha`` from
xraydb's tabulated cross-sections exactly as xraylarch computes it:
``alpha = (mu(E_line) sin(in) / sin(out) + mu(E_edge - 10)) / (mu(E_edge + 10) - mu(E_edge - 10))``.
One difference: the correction acts on the normalised spectrum and the pre-edge line is put back
afterwards, where ``fluo_corr`` multiplies the raw mu (pre-edge background included) by the factor.

A transmission spectrum, or fluorescence from a dilute sample (a few % of the absorber in BN or
cellulose), needs no correction: ``alpha`` is then large and the factor is close to 1.

Examples
--------
>>> round(fluo_alpha("Fe2O3", "Fe"), 2)  # pure hematite: white line 1.5 recorded as 1.1
0.4
>>> round(fluo_alpha("Fe0.002B0.998N0.998", "Fe"), 1)  # 0.5 wt% Fe in BN: white line 1.5 recorded as 1.45
12.1
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["BeyondThickSample", "fluo_alpha", "self_absorbed", "corrected", "correct_self_absorption",
           "correct_spectrum", "correct_spectra"]


def _formula(formula: str) -> dict[str, float]:
    import xraydb

    try:
        parts = xraydb.chemparse(formula)
    except ValueError as err:
        raise ValueError(f"cannot read the formula {formula!r} ({str(err).splitlines()[0].strip().rstrip(':;,.')}); write it as "
                         "'Fe2O3' or 'Fe0.05B0.95N0.95', element symbols with their capitals") from None  # fmt: skip
    if not parts:
        raise ValueError("the formula is empty; give the sample's formula, e.g. 'Fe2O3'")
    return parts


def fluo_alpha(formula: str, absorber: str, edge: str = "K", line: str = "Ka", angle_in: float = 45.0,
               angle_out: float = 45.0) -> float:  # fmt: skip
    """The sample's absorption apart from the absorber's edge, over that edge's step (see module notes).

    Parameters
    ----------
    formula
        The sample's stoichiometry, diluent included (``'Fe0.05B0.95N0.95'``).
    absorber, edge, line
        The absorbing element, its edge and the fluorescence line the detector counts.
    angle_in, angle_out
        Angles (degrees) of the incident beam and of the detected fluorescence to the sample surface.

    Raises
    ------
    ValueError
        For a formula that cannot be read, or one without the absorber.
    """
    import xraydb

    parts = _formula(formula)
    if absorber not in parts:
        raise ValueError(f"the formula {formula!r} has no {absorber}, the absorber of this spectrum; give the "
                         "formula of the sample measured")  # fmt: skip
    if not (0.0 < angle_in < 180.0 and 0.0 < angle_out < 180.0):
        raise ValueError(f"angles {angle_in:g}, {angle_out:g} must lie between 0 and 180 degrees")
    e_edge = xraydb.xray_edge(absorber, edge).energy
    e_line = xraydb.xray_line(absorber, line).energy
    mu_line, below, above = xraydb.material_mu(formula, np.array([e_line, e_edge - 10.0, e_edge + 10.0]), density=1.0)
    geometry = np.sin(np.deg2rad(angle_in)) / np.sin(np.deg2rad(angle_out))
    return float((mu_line * geometry + below) / (above - below))


class BeyondThickSample(ValueError):
    """A spectrum higher than a thick sample of the given formula can record: the formula or the
    angles are not the sample's, or the sample was diluted or thin."""


def self_absorbed(norm, alpha: float) -> np.ndarray:
    """A normalised spectrum as thick-sample fluorescence records it: ``n (1 + alpha) / (n + alpha)``."""
    n = np.asarray(norm, dtype=float)
    return n * (1.0 + alpha) / np.maximum(n + alpha, 1e-9)


def corrected(norm_f, alpha: float) -> np.ndarray:
    """The inverse of :func:`self_absorbed`: ``n_f alpha / (1 + alpha - n_f)``.

    Raises
    ------
    BeyondThickSample
        Where ``n_f`` reaches ``1 + alpha``, which no absorption gives (``alpha`` is too small for
        these data: the formula is not the sample's, or the sample is not thick).
    """
    n = np.asarray(norm_f, dtype=float)
    room = 1.0 + alpha - n
    if np.any(room <= 0.05 * alpha):
        raise BeyondThickSample(f"the normalised spectrum reaches {n.max():.2f}, which a thick sample of this formula "
                         f"cannot give (at most {1 + alpha:.2f}); the formula or the angles are not the sample's")  # fmt: skip
    return n * alpha / room


def correct_self_absorption(energy, mu, alpha: float) -> np.ndarray:
    """Raw ``mu`` with the self-absorption of ``alpha`` taken out (normalised, corrected, put back
    on the same pre-edge line and edge step)."""
    from xanesdb.xas.normalize import pre_edge

    n = pre_edge(energy, mu)
    line = np.asarray(mu, dtype=float) - n.norm * n.edge_step
    return line + n.edge_step * corrected(n.norm, alpha)


def correct_spectrum(spectrum, formula: str, angle_in: float = 45.0, angle_out: float = 45.0):
    """One spectrum with its self-absorption corrected for a sample of ``formula``.

    The absorber is the one of the spectrum's edge energy (:func:`xanesdb.xas.edges.identify_edge`);
    ``mu_source`` and ``meta["self_absorption"]`` record the correction.

    Raises
    ------
    BeyondThickSample
        When the spectrum is higher than a thick sample of ``formula`` can record.
    ValueError
        For no edge, or an absorber that is not in the formula.
    """
    from xanesdb.xas.normalize import absorber_edge

    absorber, edge = absorber_edge(spectrum)
    alpha = fluo_alpha(formula, absorber, edge, "Ka" if edge == "K" else "La", angle_in, angle_out)
    mu = correct_self_absorption(spectrum.energy, spectrum.mu, alpha)
    return dataclasses.replace(spectrum, mu=mu, mu_source=f"{spectrum.mu_source}, self-absorption corrected for "
                               f"{formula} (alpha {alpha:.3g})",
                               meta={**spectrum.meta, "self_absorption": {"formula": formula, "alpha": alpha,
                                                                          "angles": [angle_in, angle_out]}})  # fmt: skip


def correct_spectra(spectra, formula: str, angle_in: float = 45.0, angle_out: float = 45.0):
    """Each spectrum with its self-absorption corrected for a sample of ``formula``
    (:func:`correct_spectrum`).

    Returns ``(corrected spectra, [(path, why), ...])``: a spectrum that cannot be corrected (no
    edge, absorber not in the formula, higher than a thick sample records) is a failure, the others
    go on.
    """
    _formula(formula)  # a formula that cannot be read stops the whole batch
    out, failures = [], []
    for s in spectra:
        try:
            out.append(correct_spectrum(s, formula, angle_in, angle_out))
        except ValueError as err:
            failures.append((Path(s.path), f"{s.name}: no self-absorption correction: {err}"))
    return out, failures
