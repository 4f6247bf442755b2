"""Plots of training runs and predictions: robustness curves, confusion matrices, spectra.

Every plot is built on a :class:`matplotlib.figure.Figure` (matplotlib's object API), never
through ``pyplot`` and never with ``matplotlib.use``: calling these from a Jupyter notebook leaves
its backend (inline figures) alone. ``figure_*`` functions return the Figure (a notebook shows it
when it is the cell's value); ``plot_*`` functions write it to a PNG and return the path.

Examples
--------
>>> from xanesdb.ml.plots import figure_confusion
>>> fig = figure_confusion([[5, 1], [0, 4]], ["O6", "T4"], title="two classes")
>>> type(fig).__name__
'Figure'
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_curves", "plot_robustness", "plot_confusion", "plot_measured_prediction", "figure_curves",
           "figure_robustness", "figure_confusion", "figure_measured_prediction", "figure_prediction_overview",
           "plot_prediction_overview", "figure_spectra", "save_figure", "CURVE_AXES"]  # fmt: skip

#: colour of each class in the spectrum plots
CLASS_COLOURS = {"T4": "tab:blue", "S5": "tab:green", "O6": "tab:red", "other": "tab:purple"}

#: x-axis label of each robustness curve
CURVE_AXES = {
    "shift_curve": "energy shift applied to the test spectra (eV)",
    "noise_curve": "Gaussian noise added to the test spectra, sigma (fraction of max mu)",
}


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    _show_figures_in_ipython(Figure)
    return Figure(figsize=figsize)


def _show_figures_in_ipython(figure_class: type) -> None:
    """In IPython/Jupyter, show a Figure that is a cell's value as a PNG (when nothing else does).

    Only the display formatter is touched, never the backend: Jupyter's inline backend registers
    the same formatter once pyplot is imported; without pyplot a bare Figure would print as text.
    """
    import sys

    if "IPython" not in sys.modules:
        return
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    png = shell.display_formatter.formatters.get("image/png")
    if png is None:
        return
    try:
        png.lookup_by_type(figure_class)
    except KeyError:
        png.for_type(figure_class, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
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


def figure_curves(runs: dict[str, dict[str, Any]], curve: str, title: str = "") -> Figure:
    """Macro F1 (mean +- std over networks) of several runs' ``shift_curve`` or ``noise_curve``.

    Parameters
    ----------
    runs
        Legend label -> the run's ``metrics``.
    curve
        ``"shift_curve"`` or ``"noise_curve"``.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure((5.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    _draw_curve(ax, runs, curve)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(runs: dict[str, dict[str, Any]], curve: str, path: Path, title: str = "") -> Path:
    """:func:`figure_curves` written to the PNG ``path``."""
    return save_figure(figure_curves(runs, curve, title), path)


def figure_robustness(runs: dict[str, dict[str, Any]], title: str = "") -> Figure:
    """Both robustness curves side by side: F1 vs test energy shift and vs test noise sigma.

    Parameters
    ----------
    runs
        Legend label -> the run's ``metrics`` (with ``shift_curve`` / ``noise_curve``).
    title
        Figure title.
    """
    fig = _figure((10, 4.2))
    axes = fig.subplots(1, 2)
    _draw_curve(axes[0], runs, "shift_curve")
    axes[0].set_title("test spectra shifted in energy", fontsize=9)
    _draw_curve(axes[1], runs, "noise_curve")
    axes[1].set_title("noise added to test spectra", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_robustness(runs: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """:func:`figure_robustness` written to the PNG ``path``."""
    return save_figure(figure_robustness(runs, title), path)


def figure_confusion(confusion: list[list[int]], classes: list[str], title: str = "") -> Figure:
    """Confusion matrix (rows true, columns predicted): counts and row fractions (recall)."""
    cm = np.asarray(confusion, dtype=float)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure((4.6, 4.2))
    ax = fig.add_subplot(1, 1, 1)
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
    return fig


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    """:func:`figure_confusion` written to the PNG ``path``."""
    return save_figure(figure_confusion(confusion, classes, title), path)


def _model_input(doc, spectrum, align: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Energies and values of a spectrum as the model reads them (its input window only)."""
    from xanesdb.ml.inputs import prepare

    x = np.asarray(doc.energies, dtype=float)
    cols = np.asarray(doc.hyperparameters.get("feature_indices", range(len(x))), dtype=int)
    return x[cols], np.asarray(prepare(doc, spectrum, align)["x"])[cols]


def figure_measured_prediction(doc, spectrum, row: dict, align: str = "auto") -> Figure:
    """One measured spectrum, as the model sees it, over the model's class means.

    Parameters
    ----------
    doc
        The model's :class:`~xanesdb.schemas.TrainingRunDoc` (its card).
    spectrum
        A :class:`~xanesdb.xas.readers.MeasuredSpectrum`.
    row
        Its prediction row (:func:`xanesdb.ml.predict.predict_spectra`): class probabilities in the
        legend, the answer and any reason in the title.
    align
        The alignment the prediction used (``--align``).
    """
    x = np.asarray(doc.energies, dtype=float)
    fig = _figure((7.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    means = doc.metrics.get("class_means") or {}
    for i, c in enumerate(doc.classes):
        m = means.get(str(i))
        if m is not None:
            p = (row.get("probabilities") or {}).get(c)
            ax.plot(x, m, color=CLASS_COLOURS.get(c, None), lw=1.5, alpha=0.8,
                    label=f"{c} training mean" + (f" (P {p:.2f})" if p is not None else ""))  # fmt: skip
    ax.plot(*_model_input(doc, spectrum, align), "k", lw=2, label=f"{spectrum.name}")
    rel = doc.hyperparameters.get("representation") == "aligned"
    ax.set_xlabel("E - E(half edge step) / eV" if rel else "E / eV")
    ax.set_ylabel("normalised mu" if rel else "mu / max")
    answer = row.get("predicted", "?")
    why = "".join(f"\n{line}" for line in textwrap.wrap(row.get("reason") or "", width=110))  # within the page
    ax.set_title(f"{spectrum.name}: {answer} (model {doc.run_id}){why}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_measured_prediction(doc, spectrum, row: dict, path, align: str = "auto") -> Path:
    """:func:`figure_measured_prediction` written to the PNG ``path``."""
    return save_figure(figure_measured_prediction(doc, spectrum, row, align), path, dpi=100)


#: panels of one overview page (4 columns)
OVERVIEW_PANELS = 24
#: how to read an overview page, under its title
OVERVIEW_KEY = ("black: each spectrum as its model reads it (normalised; x: eV from the half edge step); colour: the "
                "training mean of the answered class (dashed: of the most probable class of an unsure answer)")


def figure_prediction_overview(items: list[tuple[Any, Any, dict]], align: str = "auto", title: str = "") -> Figure:
    """A batch of predictions at a glance: one small panel per spectrum.

    Each panel draws the spectrum as its model reads it (black) over the training mean of the
    answered class (for ``unsure``: of the most probable one, dashed), titled with the answer and
    its calibrated probability in the class's colour; grey for ``unsure``.

    Parameters
    ----------
    items
        ``(doc, spectrum, row)`` for each predicted spectrum (rows without an error), at most
        :data:`OVERVIEW_PANELS` of them.
    """
    n = len(items)
    ncol = min(4, max(n, 1))
    nrow = max(1, -(-n // ncol))
    title = "\n".join(textwrap.fill(line, width=38 * ncol) for line in title.splitlines())  # fits a narrow page
    fig = _figure((3.2 * ncol, 2.3 * nrow + (0.2 * (title.count("\n") + 2) if title else 0)))
    for k, (doc, spectrum, row) in enumerate(items):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        best = row.get("best_class") or row.get("predicted")
        unsure = row.get("predicted") == "unsure"
        colour = "0.45" if unsure else CLASS_COLOURS.get(best, "k")
        if best in doc.classes:
            m = (doc.metrics.get("class_means") or {}).get(str(doc.classes.index(best)))
            if m is not None:
                ax.plot(np.asarray(doc.energies, dtype=float), m, color=CLASS_COLOURS.get(best, "0.5"), lw=1.2,
                        ls="--" if unsure else "-", alpha=0.8)  # fmt: skip
        ax.plot(*_model_input(doc, spectrum, align), "k", lw=1.2)
        p = row.get("confidence")
        answer = f"unsure ({best} {p:.2f})" if unsure and p is not None else f"{best} {p:.2f}" if p is not None else str(best)
        name = spectrum.name if len(spectrum.name) <= 34 else "..." + spectrum.name[-31:]
        ax.set_title(f"{name}\n{answer}", fontsize=7, color=colour)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_prediction_overview(items: list[tuple[Any, Any, dict]], folder, align: str = "auto") -> list[Path]:
    """:func:`figure_prediction_overview` pages (``overview.png``, ``overview-2.png``, ...) in ``folder``."""
    pages = [items[i:i + OVERVIEW_PANELS] for i in range(0, len(items), OVERVIEW_PANELS)]
    paths = []
    for k, page in enumerate(pages, 1):
        name = "overview.png" if k == 1 else f"overview-{k}.png"
        title = (f"xanesdb predict: spectra {(k - 1) * OVERVIEW_PANELS + 1}-{(k - 1) * OVERVIEW_PANELS + len(page)} of "
                 f"{len(items)}\n{OVERVIEW_KEY}")
        paths.append(save_figure(figure_prediction_overview(page, align, title), Path(folder) / name, dpi=90))
    return paths


def figure_spectra(
    energies: np.ndarray,
    mu: np.ndarray,
    labels: Any = None,
    *,
    title: str = "",
    xlabel: str = "E / eV",
    ylabel: str = "mu / max",
    max_lines: int = 30,
) -> Figure:
    """Spectra on one grid, coloured by label, with each label's mean drawn bold.

    Parameters
    ----------
    energies
        (n_energies,) grid.
    mu
        (n_spectra, n_energies) spectra.
    labels
        One label per spectrum (e.g. ``lce_class``); None draws them all alike.
    title, xlabel, ylabel
        Text of the figure.
    max_lines
        At most this many individual spectra per label are drawn (thin); the mean uses all.
    """
    x = np.asarray(energies, dtype=float)
    Y = np.atleast_2d(np.asarray(mu, dtype=float))
    labs = np.array(["all"] * len(Y) if labels is None else [str(v) for v in labels])
    fig = _figure((7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    colours = {"T4": "tab:blue", "S5": "tab:green", "O6": "tab:red", "other": "tab:purple"}
    for i, lab in enumerate(sorted(set(labs))):
        rows = Y[labs == lab]
        colour = colours.get(lab, f"C{i % 10}")
        for r in rows[:max_lines]:
            ax.plot(x, r, color=colour, lw=0.5, alpha=0.25)
        ax.plot(x, rows.mean(axis=0), color=colour, lw=2, label=f"{lab} (n={len(rows)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
