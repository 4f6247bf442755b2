"""Spectra: standardisation onto absorber grids, near-duplicate removal, pymatgen/emmet views, plots.

- :mod:`~xanesdb.jobs.spectra.grid`: energy grids and the standardisation of one spectrum;
- :mod:`~xanesdb.jobs.spectra.dedup`: blocked pairwise near-duplicate search;
- :mod:`~xanesdb.jobs.spectra.build`: the incremental ``feff_tasks`` -> ``spectra`` build (the flows' job is
  :func:`xanesdb.jobs.feff.campaign.build_material_spectra`);
- :mod:`~xanesdb.jobs.spectra.interop`: pymatgen ``XAS`` and emmet-core ``XASDoc`` views;
- :mod:`~xanesdb.jobs.spectra.plot`: spectra by class with a PCA inset.
"""

from xanesdb.jobs.spectra.build import (
    DEDUP_THRESHOLD,
    GRID_COLLECTION,
    BuildReport,
    build_spectra,
    current_grid,
    spectra_counts,
    spectrum_id,
)
from xanesdb.jobs.spectra.dedup import find_duplicates, find_duplicates_bruteforce
from xanesdb.jobs.spectra.grid import GRID_POINTS, GRID_STEP, EnergyGrid, choose_grid, edge_energy, standardise
from xanesdb.jobs.spectra.interop import (
    site_averaged_xas,
    site_averaged_xasdoc,
    spectrum_doc_from_xas,
    spectrum_to_xas,
)

__all__ = [
    "DEDUP_THRESHOLD",
    "GRID_COLLECTION",
    "GRID_POINTS",
    "GRID_STEP",
    "BuildReport",
    "EnergyGrid",
    "build_spectra",
    "choose_grid",
    "current_grid",
    "edge_energy",
    "find_duplicates",
    "find_duplicates_bruteforce",
    "site_averaged_xas",
    "site_averaged_xasdoc",
    "spectra_counts",
    "spectrum_doc_from_xas",
    "spectrum_id",
    "spectrum_to_xas",
    "standardise",
]
