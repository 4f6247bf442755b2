"""Datasets in the aligned representation, for models that read measured spectra.

Models that read *measured* spectra cannot use the paper's representation (each absorber's
absolute energy grid, spectra scaled to a maximum of 1): measured energies are calibrated
differently at every beamline, and the height of the white line, which max-scaling divides out,
is a geometry signal. The aligned representation (:mod:`xanesdb.xas.align`: Athena-style
normalisation, energies relative to the half step) is stored on every spectrum as ``mu_aligned``
by ``xanesdb spectra build``; spectra written before it (schema version 1, or not rebuilt since
``xanesdb db migrate``) are aligned here from their FEFF task's raw ``energies``, ``mu``, ``mu0``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.ml.dataset import XanesDataset, _cache_dir, fingerprint_of, full_criteria
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.xas.align import ALIGNED_GRID, ALIGNED_GRID_NAME, align_computed, align_measured

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings

logger = logging.getLogger(__name__)


class NoFidelityTwins(XanesdbUserError):
    """No site has aligned spectra under both presets, so no fidelity correction can be fitted."""

__all__ = ["ALIGNED_GRID", "ALIGNED_GRID_NAME", "NoFidelityTwins", "align_computed", "align_measured",
           "fit_fidelity_from_db", "load_aligned_dataset"]  # fmt: skip


def fit_fidelity_from_db(settings: XanesdbSettings | None = None, source_preset: str = "fast", target_preset: str = "scf",
                         query: dict[str, Any] | None = None):  # fmt: skip
    """The :class:`xanesdb.xas.fidelity.FidelityWarp` from ``source_preset`` to ``target_preset``,
    fitted on every site that has a stored aligned spectrum under both (``query`` narrows them).

    Raises
    ------
    XanesdbUserError
        When no site has both.
    """
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database
    from xanesdb.xas.fidelity import fit_fidelity

    db = get_database(settings or get_settings())
    proj = {"_id": 0, "site_id": 1, "mu_aligned": 1}
    base = {**(query or {}), "source": "xanesdb", "aligned_grid": ALIGNED_GRID_NAME, "mu_aligned": {"$ne": None}}
    target = {d["site_id"]: d["mu_aligned"] for d in db["spectra"].find({**base, "preset": target_preset}, proj)}
    pairs = [(d["site_id"], d["mu_aligned"], target[d["site_id"]])
             for d in db["spectra"].find({**base, "preset": source_preset, "site_id": {"$in": list(target)}}, proj)]  # fmt: skip
    if not pairs:
        raise NoFidelityTwins(
            f"no site has aligned spectra under both the {source_preset!r} and {target_preset!r} presets; compute "
            f"some with `xanesdb feff run --preset {target_preset}` and `xanesdb spectra build`"
        )
    pairs.sort()
    return fit_fidelity([p[1] for p in pairs], [p[2] for p in pairs], ALIGNED_GRID, names=[p[0] for p in pairs])

def load_aligned_dataset(
    query: dict[str, Any],
    settings: XanesdbSettings | None = None,
    *,
    label_field: str = "lce_class",
    include_duplicates: bool = False,
    use_cache: bool = True,
    fidelity=None,
    fidelity_from: str = "fast",
) -> XanesDataset:
    """The spectra a query selects, in the aligned representation (see the module docstring).

    ``fidelity`` (a :class:`xanesdb.xas.fidelity.FidelityWarp`) is applied to the spectra of preset
    ``fidelity_from``, which brings ``fast`` spectra close to what the ``scf`` preset gives.

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
    criteria = full_criteria(query, label_field, include_duplicates, default_scale=False)
    criteria["$and"] = [c for c in criteria["$and"] if c != {"state": {"$ne": "failed"}}]
    t0 = time.perf_counter()
    docs = sorted(
        db["spectra"].find(criteria, {"_id": 0, "spectrum_id": 1, "task_id": 1, "material_id": 1,
                                      "last_updated": 1, "aligned_grid": 1, "mu_aligned": 1, "preset": 1,
                                      label_field: 1}),
        key=lambda d: d["spectrum_id"],
    )  # fmt: skip
    if not docs:
        raise XanesdbUserError(
            f"no spectra match {json.dumps(query)} with a non-null {label_field!r} (duplicates "
            "excluded); check the filter with `xanesdb db query -c spectra '<filter>'`"
        )
    fp = fingerprint_of([(d["spectrum_id"], d.get("last_updated")) for d in docs])
    safe_label = "".join(c if c.isalnum() or c in "_-" else "_" for c in label_field)
    tag = "" if fidelity is None else f"-fid{fidelity.delta:g}_{fidelity.e1:g}_{fidelity.sigma:g}"
    cache = _cache_dir(settings) / f"{fp}-{safe_label}-{ALIGNED_GRID_NAME}{tag}.npz"
    if use_cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return XanesDataset(
                X=z["X"], labels=z["labels"], groups=z["groups"], spectrum_ids=tuple(z["spectrum_ids"].tolist()),
                energies=ALIGNED_GRID.copy(), grid_name=ALIGNED_GRID_NAME, query=query, criteria=criteria,
                label_field=label_field, fingerprint=fp,
                timings={"read_s": time.perf_counter() - t0, "cache_hit": 1.0, "n_unusable": float(z["n_unusable"])},
            )  # fmt: skip
    tasks = {}
    ids = [d["task_id"] for d in docs if d.get("aligned_grid") != ALIGNED_GRID_NAME]
    for i in range(0, len(ids), 500):
        for t in db["feff_tasks"].find({"task_id": {"$in": ids[i : i + 500]}},
                                       {"_id": 0, "task_id": 1, "energies": 1, "mu": 1, "mu0": 1}):  # fmt: skip
            tasks[t["task_id"]] = t
    rows, labels, groups, kept, corrected = [], [], [], [], []
    unusable = 0
    for d in docs:
        if d.get("aligned_grid") == ALIGNED_GRID_NAME:  # stored by spectra build
            if d.get("mu_aligned") is None:
                unusable += 1
                continue
            y = np.asarray(d["mu_aligned"], dtype=np.float32)
        else:
            t = tasks.get(d["task_id"])
            if t is None or not t.get("energies"):
                unusable += 1
                continue
            try:
                y = align_computed(t["energies"], t["mu"], t.get("mu0") or None)["y"]
            except ValueError as err:
                logger.info("left out %s: %s", d["spectrum_id"], err)
                unusable += 1
                continue
        rows.append(y)
        corrected.append(fidelity is not None and d.get("preset") == fidelity_from)
        labels.append(d[label_field])
        groups.append(d["material_id"])
        kept.append(d["spectrum_id"])
    if not rows:
        raise XanesdbUserError(f"none of the {len(docs)} spectra of {json.dumps(query)} could be normalised and aligned")
    X = np.stack(rows).astype(np.float32)
    if any(corrected):
        sel = np.array(corrected)
        X[sel] = fidelity.apply(X[sel], ALIGNED_GRID)
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
