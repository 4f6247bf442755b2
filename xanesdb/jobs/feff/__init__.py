"""FEFF K-edge XANES: input sets, runners, parsing, validation, jobs, population flows, imports.

The package imports nothing heavy itself (attributes load on first use), so that the FEFF worker
process (``python -m xanesdb.jobs.feff.run``) and the batch runner (``python -m
xanesdb.jobs.feff.batch``) start in milliseconds and run on hosts that have only ``feff10``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PRESETS", "FeffPreset", "feff_input_set", "feff_input_text", "get_preset", "preset_cards"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("xanesdb.jobs.feff.sets"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
