"""ChemEnv labels of symmetry-unique absorbing sites (collection ``sites``).

- :mod:`~xanesdb.jobs.labels.chemenv`: the science (Carbone et al.'s ChemEnv recipe, one structure);
- :mod:`~xanesdb.jobs.labels.pool`: many structures in killable worker processes with a time limit;
- :mod:`~xanesdb.jobs.labels.job`: the one labelling job, :func:`label_sites_chemenv`.
"""

from xanesdb.jobs.labels.chemenv import (
    ABSORBERS,
    DEFAULT_STRATEGY,
    PAPER_STRATEGY,
    failed_site_docs,
    label_doc,
    label_structure,
    map_sites_to_lgf,
)
from xanesdb.jobs.labels.job import label_sites_chemenv
from xanesdb.jobs.labels.pool import LabelSummary, label_structures

__all__ = [
    "ABSORBERS",
    "PAPER_STRATEGY",
    "DEFAULT_STRATEGY",
    "LabelSummary",
    "label_structure",
    "label_doc",
    "label_sites_chemenv",
    "label_structures",
    "map_sites_to_lgf",
    "failed_site_docs",
]
