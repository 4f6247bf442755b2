"""PNG plots of training runs: robustness curves and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_curves", "plot_robustness", "plot_confusion", "plot_measured_prediction", "CURVE_AXES"]

#: x-axis label of each robustness curve
CURVE_AXES = {
    "shift_curve": "energy shift applied to the test spectra (eV)",
    "noise_curve": "Gaussian noise added to the test spectra, sigma (fraction of max mu)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def _draw_curve(ax, runs: dict[str, dict[str, Any]], curve: str) -> int:
    drawn = 0
    markers = "osD^v<>"
    for i, (label, metrics) in enumerate(runs.items()):
        c = metrics.get(curve)
        if not c:
            continue
        x, m, s = np.array(c["x"]), np.array(c["mean"]), np.array(c["std"])
        ax.errorbar(x, m, yerr=s, marker=markers[i % len(markers)], capsize=3, label=label)
        drawn += 1
    ax.set_xlabel(CURVE_AXES.get(curve, curve), fontsize=8)
    ax.set_ylabel("macro F1 (mean ± std over networks)", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    if drawn:
        ax.legend(fontsize=7, loc="lower left" if curve == "noise_curve" else "lower center")
    return drawn


def plot_curves(runs: dict[str, dict[str, Any]], curve: str, path: Path, title: str = "") -> Path:
    """Macro F1 (mean +- std over networks) of several runs' ``shift_curve`` or ``noise_curve``.

    Parameters
    ----------
    runs
        Legend label -> the run's ``metrics``.
    curve
        ``"shift_curve"`` or ``"noise_curve"``.
    path
        PNG written.
    title
        Figure title.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    _draw_curve(ax, runs, curve)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_robustness(runs: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Both robustness curves side by side: F1 vs test energy shift and vs test noise sigma."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    _draw_curve(axes[0], runs, "shift_curve")
    axes[0].set_title("test spectra shifted in energy", fontsize=9)
    _draw_curve(axes[1], runs, "noise_curve")
    axes[1].set_title("noise added to test spectra", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    """Confusion matrix (rows true, columns predicted): counts and row fractions (recall)."""
    plt = _plt()
    cm = np.asarray(confusion, dtype=float)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}\n{frac[i, j]:.2f}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.6 else "black", fontsize=9)  # fmt: skip
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_measured_prediction(doc, spectrum, row: dict, path) -> Path:
    """One measured spectrum, as the model sees it, over the model's class means; written as PNG.

    Uses matplotlib's object API (``Figure``), so it never changes the pyplot backend of the
    caller (a notebook keeps its inline figures).
    """
    from matplotlib.figure import Figure

    from xanesdb.ml.predict import prepare

    path = Path(path)
    x = np.asarray(doc.energies, dtype=float)
    cols = np.asarray(doc.hyperparameters.get("feature_indices", range(len(x))), dtype=int)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    means = doc.metrics.get("class_means") or {}
    colours = {"T4": "tab:blue", "S5": "tab:green", "O6": "tab:red"}
    for i, c in enumerate(doc.classes):
        m = means.get(str(i))
        if m is not None:
            p = (row.get("probabilities") or {}).get(c)
            ax.plot(x, m, color=colours.get(c, None), lw=1.5, alpha=0.8,
                    label=f"{c} training mean" + (f" (P {p:.2f})" if p is not None else ""))  # fmt: skip
    y = prepare(doc, spectrum, "auto" if doc.hyperparameters.get("representation") == "aligned" else "none")["x"]
    ax.plot(x[cols], np.asarray(y)[cols], "k", lw=2, label=f"{spectrum.name}")
    rel = doc.hyperparameters.get("representation") == "aligned"
    ax.set_xlabel("E - E(half edge step) / eV" if rel else "E / eV")
    ax.set_ylabel("normalised mu" if rel else "mu / max")
    answer = row.get("predicted", "?")
    why = f"\n{row['reason']}" if row.get("reason") else ""
    ax.set_title(f"{spectrum.name}: {answer} (model {doc.run_id}){why}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
