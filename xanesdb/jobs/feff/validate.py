"""Validation of FEFF spectra and the error ladder (custodian's FEFF handler, in small).

:func:`validate_spectrum` says why a spectrum is unusable (missing output, NaN, negative
absorption, an edge far from the tabulated K-edge, SCF not converged); a failed task keeps
that reason in ``error`` and ``state='failed'``, so it stays in the database but never
reaches the spectra. :func:`next_action` picks the next corrective action for a failure:
first the SCF mixing (as custodian's ``UnconvergedErrorHandler`` does), then a smaller
full-multiple-scattering radius; every action taken is recorded on the task.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from xanesdb.schemas import HandlerAction

logger = logging.getLogger(__name__)

__all__ = ["EDGE_TOLERANCE_EV", "tabulated_k_edge", "validate_spectrum", "next_action", "failure_kind"]

#: how far (eV) FEFF's edge may sit from the tabulated one; FEFF10/FEFF9 edges of Cu oxides sit
#: 6-16 eV above 8979 eV
EDGE_TOLERANCE_EV = 60.0


def tabulated_k_edge(element: str) -> float | None:
    """Tabulated K-edge energy (eV) from xraydb (:func:`xanesdb.xas.edges.edge_energy_of`), or None."""
    from xanesdb.xas.edges import edge_energy_of

    try:
        return edge_energy_of(element, "K")
    except (ValueError, KeyError, AttributeError):
        return None


def _edge_from_mu(energies: Sequence[float], mu: Sequence[float]) -> float | None:
    """Edge energy e0 of mu (:func:`xanesdb.xas.normalize.find_e0`, the one definition), or None."""
    from xanesdb.xas.normalize import find_e0

    try:
        return find_e0(energies, mu)
    except ValueError:
        return None


def validate_spectrum(
    energies: Sequence[float],
    mu: Sequence[float],
    element: str,
    edge: str = "K",
    edge_energy: float | None = None,
    scf_converged: bool | None = None,
    tolerance: float = EDGE_TOLERANCE_EV,
) -> tuple[str | None, list[str]]:
    """Check a spectrum; returns ``(error, warnings)`` with ``error`` None when it is usable.

    Parameters
    ----------
    energies, mu
        xmu.dat columns 1 and 4.
    element, edge
        Absorber and edge (the edge check applies to K edges).
    edge_energy
        FEFF's edge (omega - e) when known; otherwise estimated from mu.
    scf_converged
        False fails the task ('SCF did not converge').
    """
    warnings: list[str] = []
    if not mu or not energies:
        return "missing output: xmu.dat has no spectrum", warnings
    if len(mu) != len(energies):
        return f"malformed output: {len(energies)} energies but {len(mu)} mu values", warnings
    if scf_converged is False:
        return "non-convergence: SCF did not converge", warnings
    if any(not math.isfinite(v) for v in mu) or any(not math.isfinite(e) for e in energies):
        return "NaN or infinite values in the spectrum", warnings
    if max(mu) <= 0:
        return "no absorption: mu is never positive", warnings
    if min(mu) < -0.01 * max(mu):
        return f"negative absorption: min mu {min(mu):.3g} (max {max(mu):.3g})", warnings
    if min(mu) < 0:
        warnings.append(f"slightly negative mu ({min(mu):.2g}) at some energies")
    if any(b <= a for a, b in zip(energies, energies[1:])):
        return "energies are not increasing", warnings
    if edge.upper() == "K":
        ref = tabulated_k_edge(element)
        e0 = edge_energy if edge_energy is not None else _edge_from_mu(energies, mu)
        if ref is not None and e0 is not None and abs(e0 - ref) > tolerance:
            return (f"edge at {e0:.1f} eV, {e0 - ref:+.1f} eV from the tabulated {element} K-edge "
                    f"({ref:.0f} eV)"), warnings
    return None, warnings


def failure_kind(error: str | None) -> str | None:
    """Class of a failure: 'convergence', 'timeout', 'crash', 'invalid' or None."""
    if error is None:
        return None
    if error.startswith("non-convergence"):
        return "convergence"
    if error.startswith("timeout"):
        return "timeout"
    if "exited with code" in error or error.startswith("missing output"):
        return "crash"
    return "invalid"


def _fms_radius(cards: dict[str, Any]) -> float | None:
    try:
        return float(str(cards["FMS"]).split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def next_action(error: str, cards: dict[str, Any], actions: Sequence[HandlerAction], max_actions: int = 3,
                min_fms_radius: float = 4.0) -> HandlerAction | None:
    """The next rung of the error ladder for ``error`` with the current ``cards``, or None.

    1. Non-convergence with SCF: more iterations with smaller mixing (``SCF r 0 100 0.05 3``),
       as custodian's FEFF ``UnconvergedErrorHandler`` changes the mixing;
       once more: no SCF-mixing left -> go on.
    2. Any failure: full multiple scattering radius 1 A smaller (not below ``min_fms_radius``).
    Timeouts get only rung 2 (a smaller FMS radius is what makes a run faster).
    """
    if len(actions) >= max_actions:
        return None
    kind = failure_kind(error)
    tried = {tuple(sorted(a.action)) for a in actions}
    if kind == "convergence" and "SCF" in cards and ("SCF",) not in tried:
        parts = str(cards["SCF"]).split()
        rscf = parts[0] if parts else "4.5"
        return HandlerAction(error=error, action={"SCF": f"{rscf} 0 100 0.05 3"})
    r = _fms_radius(cards)
    if r is not None and r - 1.0 >= min_fms_radius:
        rest = " ".join(str(cards["FMS"]).split()[1:]) or "0"
        return HandlerAction(error=error, action={"FMS": f"{r - 1.0:g} {rest}"})
    return None
