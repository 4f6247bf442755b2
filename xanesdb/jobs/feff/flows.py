"""Former home of ``xanesdb feff run``'s executor; kept so existing imports work.

Use :mod:`xanesdb.jobs.feff.local` (the executor) and :mod:`xanesdb.jobs.feff.pending` (which
sites still need FEFF).
"""

from __future__ import annotations

from xanesdb.jobs.feff.local import PopulationSummary, populate_feff
from xanesdb.jobs.feff.pending import select_pending_sites

__all__ = ["PopulationSummary", "select_pending_sites", "populate_feff"]
