"""The aligned representation: spectra as a measurement would see them.

Models that read *measured* spectra cannot use the paper's representation (each absorber's
absolute energy grid, spectra scaled to a maximum of 1): measured energies are calibrated
differently at every beamline, and the height of the white line, which max-scaling divides out,
is a geometry signal. Here every spectrum, computed or measured, is

1. normalised Athena-style (:func:`xanesdb.xas.normalize.pre_edge`; computed spectra with a zero
   pre-edge and the post-edge fitted to FEFF's atomic background ``mu0``), so it has a unit
   edge step;
2. placed on energies relative to its half-step point
   (:func:`xanesdb.xas.normalize.half_step_energy`), which neither pre-edge peaks nor noise
   move by more than a fraction of an eV;
3. interpolated onto :data:`ALIGNED_GRID`, 100 points 0.5 eV apart from 5 eV below that point.

Computed spectra are read from their FEFF tasks (raw ``energies``, ``mu``, ``mu0``) for the
spectra a query selects, so duplicates, labels and the query language are those of the
``spectra`` collection.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.ml.dataset import XanesDataset, _cache_dir, fingerprint_of, full_criteria
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.xas.normalize import half_step_energy, normalize_computed, pre_edge

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings

logger = logging.getLogger(__name__)

__all__ = ["ALIGNED_GRID", "ALIGNED_GRID_NAME", "AlignedSpectrum", "align_computed", "align_measured",
           "load_aligned_dataset"]  # fmt: skip

#: energies relative to the half-step point (eV): 100 points, 0.5 eV apart
ALIGNED_GRID = np.round(np.arange(100) * 0.5 - 5.0, 6)
#: the name models record for this representation
ALIGNED_GRID_NAME = "halfstep-rel-v1"
#: a spectrum may miss the grid by this much at either end (held at its end value)
MAX_EXTRAPOLATE_EV = 3.0


class AlignedSpectrum(dict):
    """``{"y", "e_half", "e0", "edge_step", "extrapolated_ev"}`` of one spectrum on the grid."""


def _on_grid(e: np.ndarray, norm: np.ndarray, e_half: float, name: str) -> tuple[np.ndarray, float]:
    target = ALIGNED_GRID + e_half
    miss = max(0.0, e[0] - target[0]) + max(0.0, target[-1] - e[-1])
    if e[0] - target[0] > MAX_EXTRAPOLATE_EV or target[-1] - e[-1] > MAX_EXTRAPOLATE_EV:
        raise ValueError(
            f"{name} covers {e[0] - e_half:+.1f}..{e[-1] - e_half:+.1f} eV around its half step, "
            f"the models need {ALIGNED_GRID[0]:+.0f}..{ALIGNED_GRID[-1]:+.1f} eV"
        )
    return np.interp(target, e, norm).astype(np.float32), float(miss)


def align_computed(energies, mu, mu0=None, name: str = "spectrum") -> AlignedSpectrum:
    """A computed (FEFF) spectrum on the aligned grid."""
    e = np.asarray(energies, dtype=float)
    n = normalize_computed(e, mu, mu0)
    e_half = half_step_energy(e, n.norm, e0=n.e0)
    y, miss = _on_grid(e, n.norm, e_half, name)
    return AlignedSpectrum(y=y, e_half=e_half, e0=n.e0, edge_step=n.edge_step, extrapolated_ev=miss)


def align_measured(energies, mu, name: str = "spectrum", e0: float | None = None) -> AlignedSpectrum:
    """A measured spectrum on the aligned grid (Athena-style normalisation first)."""
    e = np.asarray(energies, dtype=float)
    n = pre_edge(e, mu, e0)
    e_half = half_step_energy(e, n.norm, e0=n.e0)
    y, miss = _on_grid(e, n.norm, e_half, name)
    return AlignedSpectrum(y=y, e_half=e_half, e0=n.e0, edge_step=n.edge_step, extrapolated_ev=miss,
                           pre_range=n.pre_range, norm_range=n.norm_range, nnorm=n.nnorm)  # fmt: skip


def load_aligned_dataset(
    query: dict[str, Any],
    settings: XanesdbSettings | None = None,
    *,
    label_field: str = "lce_class",
    include_duplicates: bool = False,
    use_cache: bool = True,
) -> XanesDataset:
    """The spectra a query selects, in the aligned representation (see the module docstring).

    Same selection, duplicate exclusion, fingerprint and cache as
    :func:`xanesdb.ml.dataset.load_dataset`, except that a spectrum that failed the absolute grid is
    kept; spectra whose FEFF output cannot be normalised or does not span the aligned grid are left
    out (logged and counted in ``timings["n_unusable"]``).
    """
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    settings = settings or get_settings()
    db = get_database(settings)
    # a spectrum that failed only its absolute-grid standardisation (e.g. ends before that grid
    # does) is still usable here: this representation decides for itself (align_computed)
    criteria = full_criteria(query, label_field, include_duplicates)
    criteria["$and"] = [c for c in criteria["$and"] if c != {"state": {"$ne": "failed"}}]
    t0 = time.perf_counter()
    docs = sorted(
        db["spectra"].find(criteria, {"_id": 0, "spectrum_id": 1, "task_id": 1, "material_id": 1,
                                      "last_updated": 1, label_field: 1}),
        key=lambda d: d["spectrum_id"],
    )  # fmt: skip
    if not docs:
        raise XanesdbUserError(
            f"no spectra match {json.dumps(query)} with a non-null {label_field!r} (duplicates "
            "excluded); check the filter with `xanesdb db query -c spectra '<filter>'`"
        )
    fp = fingerprint_of([(d["spectrum_id"], d.get("last_updated")) for d in docs])
    safe_label = "".join(c if c.isalnum() or c in "_-" else "_" for c in label_field)
    cache = _cache_dir(settings) / f"{fp}-{safe_label}-{ALIGNED_GRID_NAME}.npz"
    if use_cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return XanesDataset(
                X=z["X"], labels=z["labels"], groups=z["groups"], spectrum_ids=tuple(z["spectrum_ids"].tolist()),
                energies=ALIGNED_GRID.copy(), grid_name=ALIGNED_GRID_NAME, query=query, criteria=criteria,
                label_field=label_field, fingerprint=fp,
                timings={"read_s": time.perf_counter() - t0, "cache_hit": 1.0, "n_unusable": float(z["n_unusable"])},
            )  # fmt: skip
    tasks = {}
    ids = [d["task_id"] for d in docs]
    for i in range(0, len(ids), 500):
        for t in db["feff_tasks"].find({"task_id": {"$in": ids[i : i + 500]}},
                                       {"_id": 0, "task_id": 1, "energies": 1, "mu": 1, "mu0": 1}):  # fmt: skip
            tasks[t["task_id"]] = t
    rows, labels, groups, kept = [], [], [], []
    unusable = 0
    for d in docs:
        t = tasks.get(d["task_id"])
        if t is None or not t.get("energies"):
            unusable += 1
            continue
        try:
            a = align_computed(t["energies"], t["mu"], t.get("mu0") or None, name=d["spectrum_id"])
        except ValueError as err:
            logger.info("left out %s: %s", d["spectrum_id"], err)
            unusable += 1
            continue
        rows.append(a["y"])
        labels.append(d[label_field])
        groups.append(d["material_id"])
        kept.append(d["spectrum_id"])
    if not rows:
        raise XanesdbUserError(f"none of the {len(docs)} spectra of {json.dumps(query)} could be normalised and aligned")
    X = np.stack(rows).astype(np.float32)
    ds = XanesDataset(
        X=X, labels=np.array(labels), groups=np.array(groups), spectrum_ids=tuple(kept),
        energies=ALIGNED_GRID.copy(), grid_name=ALIGNED_GRID_NAME, query=query, criteria=criteria,
        label_field=label_field, fingerprint=fp,
        timings={"read_s": time.perf_counter() - t0, "cache_hit": 0.0, "n_unusable": float(unusable)},
    )  # fmt: skip
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, X=X, labels=ds.labels, groups=ds.groups, spectrum_ids=np.array(kept),
                            n_unusable=np.array(unusable))  # fmt: skip
        tmp.replace(cache)
    logger.info("aligned dataset %s: %d spectra (%d unusable) in %.2f s", fp, len(kept), unusable, ds.timings["read_s"])
    return ds
