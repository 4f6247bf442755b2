"""The pre-edge peak of a normalised K-edge spectrum, and what its height rules out.

Below a 3d metal's K edge, the 1s -> 3d transition is dipole-forbidden where the absorber sits on
an inversion centre (a regular octahedron) and grows with the 4p-3d mixing that a site without
one allows (a tetrahedron most, then a square pyramid). Its height in the normalised spectrum is
the classical measure of coordination: for Ti, octahedral sites stay at or below ~0.3-0.4 of the
edge step and tetrahedral ones reach 0.7-1.0 (Farges, Brown & Rehr, Phys. Rev. B 56, 1809 (1997));
the same holds for V (Chaurand et al., J. Phys. Chem. B 111, 5101 (2007)), Cr(VI) and Mn(VII)
oxyanions, while Fe and the late metals stay weak in any geometry (Wilke et al., Am. Mineral. 86,
714 (2001)), so a weak pre-edge rules nothing out.

xanesdb uses two conclusions of this physics, where the computed training spectra are least
reliable (FEFF's pre-edge is dipole-only and sits at the start of its energy range):

* an isolated pre-edge peak of at least :data:`STRONG_PREEDGE_HEIGHT` of the edge step rules out
  an octahedral site, for any absorber;
* for the d0 ions whose low-coordinated sites always carry a strong pre-edge (Ti(IV): [4]Ti
  0.7-1.0 and [5]Ti 0.5-0.8 of the step, Farges et al. 1997; V(V) and Cr(VI) in tetrahedra
  0.6-1.0), a spectrum whose normalised absorption stays below :data:`WEAK_PREEDGE_HEIGHT`
  everywhere from 22 to 7 eV below the half step rules out the classes of
  :data:`WEAK_PREEDGE_RULES_OUT` (Ti: T4 and S5; V: T4 and S5; Cr: T4). Five-coordinated
  vanadium in oxides is the vanadyl square pyramid of V(IV) and V(V), whose short V=O bond
  (1.58-1.60 A) gives a pre-edge of 0.4-0.7 of the step (V2O5, vanadyl compounds; Chaurand et al.
  2007), while V(III) and V(IV) octahedra stay at 0.1-0.3 (V2O3, VO2). The computed S5 class
  holds oxygen-deficient perovskite pyramids too, whose pre-edge nothing here measures; a
  V(III) square pyramid of that kind would be ruled out wrongly. The shipped Cr model has no S5
  class. Mn, Fe, Co, Ni and Cu get no such rule: a tetrahedral Mn(II) or Fe(II/III) site has a
  weak pre-edge too. The rule needs the measured spectrum to start at least 20 eV below its half
  step (:func:`preedge_maximum`).

Examples
--------
>>> import numpy as np
>>> e = np.linspace(-40, 60, 1001)
>>> mu = 0.5 + np.arctan(e / 2) / np.pi + 0.8 * np.exp(-0.5 * ((e + 12) / 1.2) ** 2)
>>> p = find_preedge_peak(e, mu, e_half=0.0)
>>> round(p.height, 1), round(p.energy_rel, 1)
(0.8, -12.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xanesdb.xas.normalize import smooth

__all__ = ["PREEDGE_WINDOW_EV", "STRONG_PREEDGE_HEIGHT", "WEAK_PREEDGE_HEIGHT", "WEAK_PREEDGE_RULES_OUT", "PreedgePeak",
           "find_preedge_peak", "preedge_maximum", "ruled_out_by_preedge", "start_fall", "STARTS_ON_PEAK_FALL"]  # fmt: skip

#: where a pre-edge peak is looked for, eV relative to the half-step energy
PREEDGE_WINDOW_EV: tuple[float, float] = (-22.0, -3.0)
#: an isolated pre-edge peak at least this high (fraction of the edge step) rules out O6: the most
#: distorted octahedra of Ti and V reach 0.3-0.4, tetrahedral d0 ions 0.7-1.0 (see module notes)
STRONG_PREEDGE_HEIGHT = 0.5
#: below this everywhere in :data:`WEAK_WINDOW_EV`, the classes of :data:`WEAK_PREEDGE_RULES_OUT` are ruled out
WEAK_PREEDGE_HEIGHT = 0.3
#: absorbers (d0 ions) whose low-coordinated sites always show a strong pre-edge, and the classes a weak one rules out
WEAK_PREEDGE_RULES_OUT: dict[str, tuple[str, ...]] = {"Ti": ("T4", "S5"), "V": ("T4", "S5"), "Cr": ("T4",)}
#: where the weak-pre-edge rule looks (eV relative to the half step): below the rising edge
WEAK_WINDOW_EV: tuple[float, float] = (-22.0, -7.0)
#: a peak counts as isolated when the spectrum dips at least this much between it and the edge
MIN_DIP = 0.03
#: a scan whose normalised absorption falls this much (fraction of the edge step) below its first
#: points before the edge begins on a pre-edge peak (:func:`start_fall`)
STARTS_ON_PEAK_FALL = 0.2


@dataclass(frozen=True)
class PreedgePeak:
    """The highest isolated pre-edge peak of a spectrum.

    Attributes
    ----------
    height
        Normalised absorption at the peak (fraction of the edge step; 0 when none is found).
    energy_rel
        Its energy relative to the half step (eV; NaN when none).
    dip
        How far the spectrum falls after the peak before the edge rises.
    """

    height: float
    energy_rel: float
    dip: float

    @property
    def rules_out_o6(self) -> bool:
        """True when the peak is strong enough to exclude an octahedral site."""
        return self.height >= STRONG_PREEDGE_HEIGHT


def find_preedge_peak(energy, norm, e_half: float, smooth_ev: float = 0.4) -> PreedgePeak:
    """The highest isolated local maximum of ``norm`` in :data:`PREEDGE_WINDOW_EV` around ``e_half``.

    Parameters
    ----------
    energy, norm
        A spectrum normalised to a unit edge step (:func:`xanesdb.xas.normalize.pre_edge`).
    e_half
        Its half-step energy.
    smooth_ev
        Gaussian smoothing (eV) before peaks are sought, so that noise makes no peaks.
    """
    e = np.asarray(energy, dtype=float)
    y = np.asarray(norm, dtype=float)
    lo, hi = e_half + PREEDGE_WINDOW_EV[0], e_half + PREEDGE_WINDOW_EV[1]
    sel = (e >= lo - 2.0) & (e <= e_half)
    none = PreedgePeak(height=0.0, energy_rel=float("nan"), dip=0.0)
    if sel.sum() < 5:
        return none
    es, ys = e[sel], smooth(e[sel], y[sel], smooth_ev) if smooth_ev > 0 else y[sel]
    best = none
    for i in range(1, len(es) - 1):
        if not (lo <= es[i] <= hi) or not (ys[i] >= ys[i - 1] and ys[i] > ys[i + 1]):
            continue
        after = ys[i + 1 :]
        # the lowest point between the peak and where the edge climbs back above it
        back = np.nonzero(after >= ys[i])[0]
        trough = after[: back[0]] if len(back) else after
        if len(trough) == 0:
            continue
        dip = float(ys[i] - trough.min())
        if dip >= MIN_DIP and ys[i] > best.height:
            best = PreedgePeak(height=float(ys[i]), energy_rel=float(es[i] - e_half), dip=dip)
    return best


def preedge_maximum(energy, norm, e_half: float, smooth_ev: float = 0.4) -> float | None:
    """The largest normalised absorption from 22 to 7 eV below the half step (smoothed), or None
    when the spectrum starts less than 20 eV below it (the pre-edge was not measured)."""
    e = np.asarray(energy, dtype=float)
    y = np.asarray(norm, dtype=float)
    lo, hi = e_half + WEAK_WINDOW_EV[0], e_half + WEAK_WINDOW_EV[1]
    if e[0] > lo + 2.0:
        return None
    sel = (e >= lo) & (e <= hi)
    if sel.sum() < 5:
        return None
    ys = smooth(e[sel], y[sel], smooth_ev) if smooth_ev > 0 else y[sel]
    return float(np.max(ys))


def start_fall(energy, norm, e_half: float, smooth_ev: float = 0.4) -> float:
    """How far a scan that starts inside the pre-edge window (less than 22 eV below its half step)
    falls below its first eV before the edge: 0 for a scan that starts earlier or only rises.

    A scan that begins on a pre-edge peak (a permanganate or chromate started 12 eV below its half
    step) has no pre-edge below the peak: its pre-edge level is taken on the peak, so the edge step,
    the normalised spectrum and the peak's height are all wrong (KMnO4: a fall of 0.9 of the edge
    step, read O6 0.99). :data:`STARTS_ON_PEAK_FALL` and more makes ``predict`` answer ``unsure``.
    """
    e = np.asarray(energy, dtype=float)
    y = np.asarray(norm, dtype=float)
    if e[0] <= e_half + PREEDGE_WINDOW_EV[0]:
        return 0.0
    sel = e <= e_half - 2.0
    if sel.sum() < 3:
        return 0.0
    es = e[sel]
    ys = smooth(es, y[sel], smooth_ev) if smooth_ev > 0 else y[sel]
    first = float(np.mean(ys[es <= es[0] + 1.0]))
    return max(0.0, first - float(np.min(ys)))


def ruled_out_by_preedge(absorber: str | None, peak_height: float, peak_ev: float | None,
                         maximum: float | None) -> tuple[tuple[str, ...], str | None]:  # fmt: skip
    """The classes the pre-edge of a measured spectrum rules out, and why in words.

    ``peak_height``/``peak_ev``: :func:`find_preedge_peak`; ``maximum``: :func:`preedge_maximum`.
    """
    if peak_height >= STRONG_PREEDGE_HEIGHT:
        return ("O6",), (f"pre-edge peak {peak_height:.2f} of the edge step at {peak_ev:+.1f} eV "
                         f"(>= {STRONG_PREEDGE_HEIGHT:g}): a site without an inversion centre, O6 ruled out")  # fmt: skip
    classes = WEAK_PREEDGE_RULES_OUT.get(absorber or "")
    if classes and maximum is not None and maximum < WEAK_PREEDGE_HEIGHT:
        return classes, (f"pre-edge at most {maximum:.2f} of the edge step (< {WEAK_PREEDGE_HEIGHT:g}): a {absorber} "
                         f"site with no strong pre-edge, {' and '.join(classes)} ruled out")  # fmt: skip
    return (), None
