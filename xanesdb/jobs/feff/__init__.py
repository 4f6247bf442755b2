"""FEFF K-edge XANES: input sets, runners, parsing, validation, jobs, population flows, imports."""

from xanesdb.jobs.feff.sets import PRESETS, FeffPreset, feff_input_set, feff_input_text, get_preset, preset_cards

__all__ = ["PRESETS", "FeffPreset", "feff_input_set", "feff_input_text", "get_preset", "preset_cards"]
