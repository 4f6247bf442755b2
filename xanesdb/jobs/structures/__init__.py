"""Structures: the sources (Materials Project, bundled set, files), the writer, one fetch API.

- :mod:`~xanesdb.jobs.structures.sources`: each source yields checked ``StructureDoc`` documents;
- :mod:`~xanesdb.jobs.structures.store`: :func:`write_structures`, upserts on ``material_id``;
- :mod:`~xanesdb.jobs.structures.fetch`: :func:`fetch_structures` (and its job).

Examples
--------
>>> from xanesdb.jobs.structures import fetch_structures
>>> summary = fetch_structures("bundled", elements=["Fe"], limit=10)   # doctest: +SKIP
>>> summary.n_new, summary.n_total                                    # doctest: +SKIP
"""

from xanesdb.jobs.structures.fetch import fetch_structures, fetch_structures_job
from xanesdb.jobs.structures.sources import (
    DEFAULT_ABSORBERS,
    MP_LICENCE,
    SOURCES,
    FetchSummary,
    ProgressCallback,
    bundled_structure_docs,
    file_structure_docs,
    is_oxide,
    mp_rester,
    mp_structure_docs,
    normalise_elements,
)
from xanesdb.jobs.structures.store import structures_with_elements, write_structures

__all__ = [
    "SOURCES",
    "DEFAULT_ABSORBERS",
    "MP_LICENCE",
    "FetchSummary",
    "ProgressCallback",
    "normalise_elements",
    "is_oxide",
    "mp_rester",
    "mp_structure_docs",
    "bundled_structure_docs",
    "structures_with_elements",
    "file_structure_docs",
    "write_structures",
    "fetch_structures",
    "fetch_structures_job",
]
