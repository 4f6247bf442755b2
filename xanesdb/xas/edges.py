"""Which absorption edge a measured spectrum shows, from xraydb's tables.

Tabulated edge energies are those of the elements (metal foils); an oxide's edge lies up to
~20 eV higher (Mn(VII) in KMnO4, Cr(VI) in chromates), a few eV lower is calibration. So the
edge of a spectrum with edge energy ``e0`` is the tabulated edge in ``[e0 - 30, e0 + 10]`` eV that
is nearest (one above ``e0`` counts double), K edges first: an L edge only where no K edge lies
in the window (the K edges of the 3d metals are 500-700 eV apart, but an L edge of some rare
earth lies within 20 eV of most of them).

Examples
--------
>>> identify_edge(7126.5)
('Fe', 'K', 7112.0)
>>> identify_edge(6555.0)
('Mn', 'K', 6539.0)
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["edge_energy_of", "identify_edge"]

#: the window (eV) around a spectrum's e0 in which its tabulated edge must lie
BELOW_EV, ABOVE_EV = 30.0, 10.0
_EDGES = ("K", "L3", "L2", "L1")


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, str, float], ...]:
    import xraydb

    rows = []
    for z in range(19, 93):
        sym = xraydb.atomic_symbol(z)
        edges = xraydb.xray_edges(sym)
        for name in _EDGES:
            if name in edges:
                rows.append((sym, name, float(edges[name].energy)))
    return tuple(rows)


def edge_energy_of(element: str, edge: str = "K") -> float:
    """Tabulated energy (eV) of an element's edge."""
    import xraydb

    return float(xraydb.xray_edge(element, edge).energy)


def identify_edge(e0: float) -> tuple[str, str, float] | None:
    """``(element, edge, tabulated energy)`` of the edge at ``e0`` eV, or None when none is near."""
    best = None
    for sym, name, energy in _table():
        d = e0 - energy
        if -ABOVE_EV <= d <= BELOW_EV:
            key = (name != "K", abs(d) if d >= 0 else 2 * abs(d))
            if best is None or key < best[0]:
                best = (key, (sym, name, energy))
    return None if best is None else best[1]
