"""Markdown tables of training runs beside the paper's Table II."""

from __future__ import annotations

from typing import Any

__all__ = ["PAPER_TABLE_II", "f1_table"]

#: Carbone et al. (2019) Table II, macro F1: absorber -> (MLP, CNN, pre-edge MLP, pre-edge CNN)
PAPER_TABLE_II: dict[str, tuple[float, float, float, float]] = {
    "Ti": (0.83, 0.84, 0.73, 0.78), "V": (0.86, 0.86, 0.77, 0.79), "Cr": (0.87, 0.87, 0.72, 0.75),
    "Mn": (0.83, 0.85, 0.62, 0.68), "Fe": (0.85, 0.86, 0.57, 0.63), "Co": (0.85, 0.87, 0.59, 0.64),
    "Ni": (0.87, 0.88, 0.61, 0.66), "Cu": (0.86, 0.86, 0.50, 0.64),
}  # fmt: skip


def _pm(v: Any) -> str:
    return f"{v[0]:.2f} ± {v[1]:.2f}" if v else "-"


def f1_table(rows: list[tuple[str, dict[str, Any]]], classes: list[str]) -> str:
    """A Markdown table: one row per (label, metrics) with per-class and macro F1."""
    head = "| model | " + " | ".join(f"F1 {c}" for c in classes) + " | macro F1 | n test |"
    sep = "|---" * (len(classes) + 3) + "|"
    lines = [head, sep]
    for label, m in rows:
        f1 = m.get("f1", {})
        n_test = m.get("n_test", [])
        lines.append(f"| {label} | " + " | ".join(_pm(f1.get(c)) for c in classes)
                     + f" | **{_pm(f1.get('macro'))}** | {sum(n_test) // max(len(n_test), 1)} |")  # fmt: skip
    return "\n".join(lines)
