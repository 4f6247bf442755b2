"""Figure of one absorber's spectra: each class's spectra, mean +- std bands, and a PCA inset."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.platform.stores import get_database

logger = logging.getLogger(__name__)

__all__ = ["CLASS_COLOURS", "SeveralSourcesError", "plot_spectra"]

#: class -> colour (colour-blind safe Okabe-Ito), 'other' in grey
CLASS_COLOURS = {"T4": "#0072B2", "S5": "#E69F00", "O6": "#009E73", "other": "#999999"}
_MAX_LINES = 150


class SeveralSourcesError(XanesdbUserError):
    """An absorber's spectra come from several sources (energy scales) and none was chosen."""

    def __init__(self, element: str, sources: Sequence[str], how: str = "with the source argument") -> None:
        self.element, self.sources = element, list(sources)
        super().__init__(f"{element} spectra come from several sources ({', '.join(self.sources)}) on different "
                         f"energy scales; choose one {how}")


def plot_spectra(
    element: str,
    source: str | None = None,
    out: Path | str | None = None,
    *,
    include_duplicates: bool = False,
    settings: XanesdbSettings | None = None,
    seed: int = 0,
) -> Path:
    """Plot the standardised spectra of one absorber by class, with a 2-component PCA inset.

    Parameters
    ----------
    element
        Absorber, e.g. ``'Fe'``.
    source
        Source of the spectra; may be left out when the absorber has spectra of one source only.
    out
        PNG path (default ``<HOME>/plots/spectra_<element>_<source>.png``).
    include_duplicates
        Also plot spectra marked ``duplicate_of``.
    settings
        Where the database is.
    seed
        Seed of the subsample of thin lines drawn per class (at most 150 each).

    Returns
    -------
    Path
        The PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = settings or get_settings()
    coll = get_database(settings)["spectra"]
    crit: dict[str, Any] = {"element": element, "state": "successful"}
    sources = sorted(coll.distinct("source", crit))
    if not sources:
        raise XanesdbUserError(f"no {element} spectra in the database; run `xanesdb spectra build` first")
    if source is None:
        if len(sources) > 1:
            raise SeveralSourcesError(element, sources)
        source = sources[0]
    elif source not in sources:
        raise XanesdbUserError(f"no {element} spectra of source {source!r}; sources: {', '.join(sources)}")
    crit["source"] = source
    if not include_duplicates:
        crit["duplicate_of"] = None
    docs = list(coll.find(crit, {"_id": 0, "spectrum_id": 1, "mu": 1, "energies": 1, "lce_class": 1,
                                 "grid_name": 1}).sort("spectrum_id", 1))
    energies = np.asarray(docs[0]["energies"])
    mu = np.array([d["mu"] for d in docs])
    labels = np.array([d.get("lce_class") or "other" for d in docs])
    grid_name = docs[0]["grid_name"]

    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(9, 7), dpi=130)
    order = [c for c in ("other", "T4", "S5", "O6") if np.any(labels == c)]
    for c in order:
        rows = mu[labels == c]
        colour = CLASS_COLOURS[c]
        pick = rows if len(rows) <= _MAX_LINES else rows[rng.choice(len(rows), _MAX_LINES, replace=False)]
        alpha = 0.06 if c == "other" else max(0.05, min(0.35, 8.0 / len(pick)))
        ax.plot(energies, pick.T, color=colour, lw=0.5, alpha=alpha)
    for c in order:
        rows = mu[labels == c]
        colour = CLASS_COLOURS[c]
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        if c != "other":
            ax.fill_between(energies, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
        ax.plot(energies, mean, color=colour, lw=2.4 if c != "other" else 1.5,
                ls="-" if c != "other" else "--", label=f"{c} (n={len(rows)}): mean ± std")
    ax.set_xlabel("energy (eV)")
    ax.set_ylabel("μ(E), scaled to max 1")
    n_dup = coll.count_documents({"element": element, "source": source, "state": "successful",
                                  "duplicate_of": {"$ne": None}})
    what = "all" if include_duplicates else f"unique ({n_dup} duplicates left out)"
    ax.set_title(f"{element} K-edge XANES, source {source}\n{len(docs)} {what} spectra on grid {grid_name}",
                 fontsize=11)
    ax.set_xlim(energies[0], energies[-1])
    # room above the spectra (max 1) for the legend and the inset
    ax.set_ylim(bottom=min(0.0, float(mu.min())) - 0.02, top=1.5)
    ax.set_yticks(np.arange(0, 1.01, 0.2))
    ax.legend(loc="upper left", fontsize=9, frameon=False)
    ax.grid(alpha=0.25)

    # PCA inset (2 components of the plotted spectra), top right above the spectra
    if len(mu) >= 3:
        centred = mu - mu.mean(axis=0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        scores = centred @ vt[:2].T
        explained = sv[:2] ** 2 / np.sum(sv**2)
        ins = ax.inset_axes([0.56, 0.695, 0.42, 0.29])
        for c in order:
            sel = labels == c
            ins.scatter(scores[sel, 0], scores[sel, 1], s=6 if c != "other" else 3, color=CLASS_COLOURS[c],
                        alpha=0.75 if c != "other" else 0.35, lw=0, label=c)
        ins.set_xlabel(f"PC1 ({explained[0]:.0%})", fontsize=8)
        ins.set_ylabel(f"PC2 ({explained[1]:.0%})", fontsize=8)
        ins.tick_params(labelsize=7)
        ins.text(0.02, 0.95, "PCA of the spectra", transform=ins.transAxes, fontsize=8, va="top",
                 bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1})
        ins.patch.set_alpha(0.92)

    out = Path(out) if out is not None else settings.HOME / "plots" / f"spectra_{element}_{source}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    logger.info("wrote %s", out)
    return out
