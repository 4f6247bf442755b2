"""Structural descriptors of an absorbing site beside its ChemEnv label (regression targets).

Pure functions of a structure and a site (no database, no ChemEnv run):

- :func:`bond_length_spread`: the population standard deviation of the first-shell distances
  (Angstrom) that ChemEnv's neighbour set gives; 0 for a regular polyhedron, larger for a
  distorted one (a Jahn-Teller Cu(II) octahedron is about 0.2).
- :func:`crystalnn_coordination`: pymatgen's ``CrystalNN`` coordination number of the site, an
  answer independent of ChemEnv's cutoffs (Pan et al., Inorg. Chem. 60, 1590, 2021), so the two can
  be compared and both learned.
- :func:`site_descriptors`: both, as the ``SiteDoc`` fields they fill, never raising (a failure
  leaves the value ``None`` and logs a warning).

Examples
--------
>>> bond_length_spread([2.0, 2.0, 2.0, 2.0, 2.2, 2.2])
0.0943
>>> from pymatgen.core import Lattice, Structure
>>> rutile = Structure.from_spacegroup(
...     "P4_2/mnm", Lattice.tetragonal(4.5937, 2.9587), ["Ti", "O"], [[0, 0, 0], [0.30478, 0.30478, 0]]
... )
>>> crystalnn_coordination(rutile, 0)
6
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = ["DESCRIPTOR_FIELDS", "bond_length_spread", "crystalnn_coordination", "site_descriptors"]

#: the SiteDoc fields this module fills
DESCRIPTOR_FIELDS: tuple[str, ...] = ("bond_length_spread", "crystalnn_coordination_number")


def bond_length_spread(bond_lengths: Sequence[float] | None) -> float | None:
    """Population standard deviation of first-shell distances (Angstrom, 4 decimals); None when empty."""
    if not bond_lengths:
        return None
    d = np.asarray(bond_lengths, dtype=float)
    if not np.all(np.isfinite(d)):
        return None
    return round(float(d.std()), 4)


def crystalnn_coordination(structure: Structure, site_index: int, *, cation_anion: bool = False) -> int | None:
    """CrystalNN coordination number of one site (pymatgen defaults), or None when it fails.

    Parameters
    ----------
    structure
        An ordered structure.
    site_index
        Index of the site.
    cation_anion
        Count only anion neighbours of a cation (needs oxidation states; ``False``: CrystalNN's
        geometric default, the one stored).
    """
    from pymatgen.analysis.local_env import CrystalNN

    import warnings

    try:
        with warnings.catch_warnings():  # "no oxidation states", "covalent radii used": expected here
            warnings.simplefilter("ignore", UserWarning)
            nn = CrystalNN(cation_anion=cation_anion)
            return int(nn.get_cn(structure, int(site_index), use_weights=False))
    except Exception as err:  # noqa: BLE001 - CrystalNN raises many kinds on odd structures
        logger.warning("CrystalNN failed on site %s: %s", site_index, err)
        return None


def site_descriptors(structure: Structure | None, site_index: int, bond_lengths: Sequence[float] | None) -> dict[str, Any]:
    """The descriptor fields of one site: ``bond_length_spread`` and ``crystalnn_coordination_number``.

    ``bond_lengths`` are the site's first-shell distances (ChemEnv's neighbour set, as stored in
    ``sites``); ``structure`` is the structure the site index refers to (None: no CrystalNN).
    """
    return {
        "bond_length_spread": bond_length_spread(bond_lengths),
        "crystalnn_coordination_number": None if structure is None else crystalnn_coordination(structure, site_index),
    }
