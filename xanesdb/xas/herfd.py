"""HERFD spectra made to look like conventional ones, the kind the models learned from.

High-energy-resolution fluorescence-detected (HERFD) XANES records the fluorescence line (Kα1 for
a 3d metal's K edge) through a crystal analyser. Its features are sharper than a transmission or
total-fluorescence spectrum of the same sample for two reasons, both known from tables:

* the 1s core-hole lifetime: a conventional spectrum is broadened by the K-level width Γ_K (1.55 eV
  FWHM at Cu), HERFD by an effective width Γ_eff = (Γ_K⁻² + Γ_L3⁻²)^(-1/2) (0.53 eV at Cu; Hämäläinen
  et al., Phys. Rev. Lett. 67, 2850 (1991); Carra, Fabrizio & Thole, Phys. Rev. Lett. 74, 3700
  (1995)), the L3 hole being the final state of Kα1;
* the monochromator: HERFD beamlines mostly run Si(311) (intrinsic ΔE/E 2.7e-5), conventional XANES
  Si(111) (1.33e-4), 1.2 against 0.24 eV at 9 keV.

The computed-to-measured calibration of the shipped models (:mod:`xanesdb.xas.calibration`) was
fitted on conventional spectra, so a HERFD spectrum reads as an outlier with its white line and
pre-edge too sharp (HERFD Cu2O of the development set: `unsure`, outlier 2.03, O6 0.60; the
conventional cuprite scans read `other` 0.98). :func:`to_conventional` adds what the HERFD
measurement took away: a Lorentzian of FWHM Γ_K - Γ_eff (linewidths add for Lorentzians) and a
Gaussian of the monochromators' difference at the edge energy, with xraydb's level widths and
edge energies. Nothing is fitted to spectra. The analyser's own resolution (about 1 eV at a 3d
K edge) widens a real HERFD spectrum beyond Γ_eff; a file does not say it, so it is left out and
the conversion errs towards a broader spectrum than a conventional measurement would give.

Examples
--------
>>> round(lifetime_gap_ev("Cu"), 2), round(mono_gap_sigma_ev(8979.0), 2)
(1.02, 0.5)
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HERFD_MODES", "herfd_spectra", "lifetime_gap_ev", "looks_like_herfd", "mono_gap_sigma_ev",
           "to_conventional"]  # fmt: skip

#: ``--herfd`` values: auto (the file's own words say HERFD), yes (every spectrum), no
HERFD_MODES = ("auto", "yes", "no")
#: intrinsic relative bandwidths (ΔE/E, FWHM) of the usual double-crystal monochromators
SI111_DE_E = 1.33e-4
SI311_DE_E = 2.7e-5
#: what names a spectrum HERFD (or HR-XANES, as some groups call it; or its detector a crystal analyser) in a file
#: name, Athena label or XDI header
_WORDS = re.compile(r"herfd|hr-?fd|hr-?xanes|high[ _-]?energy[ _-]?resolution|crystal[ _-]?analy[sz]er", re.I)
#: mu from a transmission channel, which HERFD never is
_TRANSMISSION_MU = re.compile(r"mutrans|itrans|normtrans|ln\(", re.I)
#: a label that names a conventional measurement
_CONVENTIONAL = re.compile(r"trans(mission)?\b|\btfy\b|total[ _-]?fluo|\btey\b", re.I)
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def lifetime_gap_ev(absorber: str, edge: str = "K", final: str = "L3") -> float:
    """Γ_edge - Γ_eff (eV, FWHM): the lifetime broadening a conventional spectrum has and HERFD lacks."""
    import xraydb

    g_edge, g_final = float(xraydb.core_width(absorber, edge)), float(xraydb.core_width(absorber, final))
    return g_edge - (g_edge**-2 + g_final**-2) ** -0.5


def mono_gap_sigma_ev(edge_energy_ev: float) -> float:
    """Gaussian standard deviation (eV) of a Si(111) monochromator's bandwidth beyond a Si(311) one."""
    return float(np.sqrt((SI111_DE_E * edge_energy_ev) ** 2 - (SI311_DE_E * edge_energy_ev) ** 2) / _FWHM_PER_SIGMA)


def looks_like_herfd(spectrum) -> bool:
    """Whether the file name, Athena label or XDI header calls the spectrum HERFD.

    Not a spectrum whose mu came from a transmission channel (``mutrans``, ``ln(i0/itrans)``), nor
    a group whose own label says transmission, TFY or TEY, in a project or file named HERFD (the
    reference foil of a HERFD beamtime is measured in transmission).
    """
    if _TRANSMISSION_MU.search(str(spectrum.mu_source or "")):
        return False
    if spectrum.group and _CONVENTIONAL.search(spectrum.group) and not _WORDS.search(spectrum.group):
        return False
    xdi = (spectrum.meta or {}).get("xdi") or {}
    words = [spectrum.name, spectrum.group or "", Path(str(spectrum.path)).name, *map(str, xdi.values())]
    return any(_WORDS.search(w) for w in words if w)


def _voigt_convolve(energy: np.ndarray, mu: np.ndarray, lorentz_fwhm: float, gauss_sigma: float) -> np.ndarray:
    """``mu`` convolved with a Lorentzian (FWHM) and a Gaussian (standard deviation), on its own energies.

    Not :func:`xanesdb.xas.broaden.broaden`: that one multiplies the two kernels and builds an
    explicit points x points matrix for 100-point grids; a whole measured scan on a 0.05 eV grid
    has some 20,000 points, and adding linewidths needs the true convolution."""
    step = 0.05
    u = np.arange(energy[0], energy[-1] + step / 2, step)
    y = np.interp(u, energy, mu)
    x = np.arange(-30.0, 30.0 + step / 2, step)
    kernel = 1.0 / (1.0 + (x / (lorentz_fwhm / 2)) ** 2) if lorentz_fwhm > 0 else (np.abs(x) < step / 2).astype(float)
    if gauss_sigma > 0:
        kernel = np.convolve(kernel, np.exp(-0.5 * (x / gauss_sigma) ** 2), mode="same")
    kernel /= kernel.sum()
    pad = len(x) // 2
    yp = np.concatenate([np.full(pad, y[0]), y, np.full(pad, y[-1])])  # the ends held, as a scan's ends are
    return np.interp(energy, u, np.convolve(yp, kernel, mode="same")[pad:-pad])


def to_conventional(spectrum, absorber: str, edge: str = "K"):
    """``spectrum`` (HERFD) with the lifetime and monochromator broadening of a conventional
    measurement added; ``mu_source`` and ``meta["herfd"]`` say what was added."""
    import xraydb

    lorentz = lifetime_gap_ev(absorber, edge)
    sigma = mono_gap_sigma_ev(float(xraydb.xray_edge(absorber, edge).energy))
    mu = _voigt_convolve(np.asarray(spectrum.energy, float), np.asarray(spectrum.mu, float), lorentz, sigma)
    return dataclasses.replace(
        spectrum, mu=mu,
        mu_source=f"{spectrum.mu_source}, HERFD broadened as conventional ({absorber} {edge}: Lorentzian "
                  f"{lorentz:.2f} eV FWHM, Gaussian sigma {sigma:.2f} eV)",
        meta={**spectrum.meta, "herfd": {"lorentzian_fwhm_ev": lorentz, "gaussian_sigma_ev": sigma}},
    )  # fmt: skip


def herfd_spectra(spectra: list, mode: str = "auto") -> tuple[list, list[tuple[Path, str]]]:
    """Each spectrum, HERFD ones (``mode`` auto: the file says so; yes: all) made conventional.

    Returns ``(spectra, [(path, why), ...])``: a spectrum to convert whose absorber cannot be
    found (no edge) is a failure, the others go on.
    """
    from xanesdb.xas.normalize import absorber_edge

    if mode not in HERFD_MODES:
        raise ValueError(f"unknown HERFD mode {mode!r}; use {', '.join(HERFD_MODES)}")
    out: list[Any] = []
    failures: list[tuple[Path, str]] = []
    for s in spectra:
        if mode == "no" or (mode == "auto" and not looks_like_herfd(s)):
            out.append(s)
            continue
        try:
            out.append(to_conventional(s, *absorber_edge(s)))
        except ValueError as err:
            failures.append((Path(s.path), f"{s.name}: not made conventional as HERFD: {err}"))
    return out, failures
