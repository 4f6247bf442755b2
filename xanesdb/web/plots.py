"""Plots of the web pages: matplotlib figures rendered on the server to SVG ``data:`` URIs.

The figures come from :mod:`xanesdb.ml.plots` where one exists (confusion matrix, robustness
curves); the material's site spectra and the upload's overlay are drawn here. Each is shown as
``<img src="data:image/svg+xml;base64,...">``: nothing is fetched from anywhere, and text from
a file name or a database field cannot become markup of the page.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["svg_uri", "site_spectra_figure", "overlay_figure", "confusion_uri", "robustness_uri"]

COLOURS = {"T4": "tab:blue", "S5": "tab:green", "O6": "tab:red"}


def _plain(text: Any) -> str:
    """Text for matplotlib without mathtext: a ``$`` in a file name stays a dollar sign."""
    return str(text).replace("$", r"\$")


def svg_uri(fig: Figure) -> str:
    """The figure as an SVG ``data:`` URI (text kept as text: smaller, searchable)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "xanesdb"}):
        fig.savefig(buf, format="svg")  # fixed margins: a "tight" box costs a second layout pass
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def site_spectra_figure(spectra: Sequence[dict[str, Any]], element: str, title: str = "") -> Figure:
    """The stored spectra of one absorber of a material, one colour per spectrum.

    Left: mu on the absorber's grid, as stored (scaled to max 1). Right: the aligned representation
    the models and the search compare (normalised, energy from the half edge step), where there is
    one. Labelled by site, class, preset and source; duplicates (``duplicate_of`` set) dashed.
    """
    from xanesdb.xas.align import ALIGNED_GRID

    def has_aligned(sp):
        return bool(sp.get("mu_aligned")) and len(sp["mu_aligned"]) == len(ALIGNED_GRID)

    aligned = any(has_aligned(sp) for sp in spectra)
    fig = _figure((10.5, 4.0) if aligned else (7.2, 4.0))
    axes = fig.subplots(1, 2) if aligned else [fig.add_subplot(1, 1, 1)]
    for i, sp in enumerate(spectra):
        e, mu = sp.get("energies"), sp.get("mu")
        site = str(sp.get("site_id") or "").rsplit(":", 1)[-1]
        cls = sp.get("lce_class") or sp.get("chemenv_symbol") or "unlabelled"
        label = _plain(f"site {site} {cls} ({sp.get('preset')}, {sp.get('source')})"
                       + (" duplicate" if sp.get("duplicate_of") else ""))  # fmt: skip
        style = {"ls": "--" if sp.get("duplicate_of") else "-", "lw": 1.4, "color": f"C{i % 10}", "alpha": 0.9}
        if e and mu and len(e) == len(mu):
            axes[0].plot(e, mu, label=label, **style)
        if aligned and has_aligned(sp):
            axes[1].plot(ALIGNED_GRID, sp["mu_aligned"], label=label, **style)
    axes[0].set_xlabel("E / eV")
    axes[0].set_ylabel("mu / max")
    axes[0].set_title("as stored", fontsize=8)
    if aligned:
        axes[1].set_xlabel("E - E(half edge step) / eV")
        axes[1].set_ylabel("normalised mu")
        axes[1].set_title("aligned, normalised (what models and search compare)", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    if axes[-1].lines:
        axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(_plain(title or f"{element} K-edge site spectra"), fontsize=9)
    fig.subplots_adjust(left=0.07 if aligned else 0.1, right=0.98, bottom=0.13, top=0.86, wspace=0.22)
    return fig


def overlay_figure(name: str, y: np.ndarray, grid: np.ndarray, refs: Sequence[tuple[np.ndarray, dict[str, Any]]],
                   answer: str = "") -> Figure:  # fmt: skip
    """An uploaded spectrum (normalised, aligned at its half step) over its nearest computed spectra.

    Each reference is drawn shifted by its fitted energy shift, as the search compared them.
    """
    fig = _figure((7.2, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for k, (row, m) in enumerate(refs):
        cls = m.get("lce_class") or "unlabelled"
        label = (f"{m.get('rank')}. {m.get('material_id')} {m.get('formula') or ''} site {m.get('site')} {cls} "
                 f"(sim {m.get('similarity', 0):.3f}, {m.get('shift_ev', 0):+.1f} eV)")  # fmt: skip
        ax.plot(grid + float(m.get("shift_ev") or 0.0), row, lw=1.1, alpha=0.8,
                color=COLOURS.get(cls, "tab:gray"), ls=("-", "--", ":", "-.")[k % 4], label=_plain(label))  # fmt: skip
    ax.plot(grid, y, color="black", lw=2.2, label=_plain(f"{name} (uploaded)"))
    ax.set_xlabel("E - E(half edge step) / eV")
    ax.set_ylabel("normalised mu")
    ax.set_title(_plain(f"{name}: {answer}" if answer else name), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92)
    return fig


def confusion_uri(doc: dict[str, Any]) -> str | None:
    """The run's confusion matrix (test sets), or None when it has none."""
    from xanesdb.ml.plots import figure_confusion

    conf = (doc.get("metrics") or {}).get("confusion")
    classes = doc.get("classes") or []
    if not conf or len(conf) != len(classes):
        return None
    return svg_uri(figure_confusion(conf, list(classes), title=_plain(doc.get("run_id", ""))))


def robustness_uri(doc: dict[str, Any]) -> str | None:
    """F1 against test energy shift and noise, when the run stored those curves."""
    from xanesdb.ml.plots import figure_robustness

    metrics = doc.get("metrics") or {}
    if not (metrics.get("shift_curve") or metrics.get("noise_curve")):
        return None
    return svg_uri(figure_robustness({_plain(doc.get("run_id", "run")): metrics}, title=""))
