"""PNG plots of training runs: robustness curves and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_curves", "plot_confusion"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: dict[str, dict[str, Any]], curve: str, path: Path, title: str = "") -> Path:
    """Macro F1 (mean +- std over networks) of several runs' ``shift_curve`` or ``noise_curve``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, metrics in runs.items():
        c = metrics.get(curve)
        if not c:
            continue
        x, m, s = np.array(c["x"]), np.array(c["mean"]), np.array(c["std"])
        ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=label)
    ax.set_xlabel("test energy shift (eV)" if curve == "shift_curve" else "test noise sigma")
    ax.set_ylabel("macro F1")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    """Confusion matrix (rows true, columns predicted), counts and row fractions."""
    plt = _plt()
    cm = np.asarray(confusion, dtype=float)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}\n{frac[i, j]:.2f}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.6 else "black", fontsize=8)  # fmt: skip
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
