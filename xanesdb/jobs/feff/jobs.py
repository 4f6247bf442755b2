"""Former home of the FEFF recipe and Maker; kept so existing imports (and stored jobs) work.

The recipe is :mod:`xanesdb.jobs.feff.task`, the jobflow Maker and fan-out job are
:mod:`xanesdb.jobs.feff.makers`.
"""

from __future__ import annotations

from xanesdb.jobs.feff.makers import FeffXanesMaker, should_stop_children
from xanesdb.jobs.feff.task import assess_attempt, compute_feff_task, feff_task_key, make_task_doc

__all__ = ["compute_feff_task", "assess_attempt", "make_task_doc", "FeffXanesMaker", "feff_task_key",
           "should_stop_children"]
