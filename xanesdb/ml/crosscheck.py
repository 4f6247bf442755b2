"""Checks of registered models: scores on other data (cross-code) and reproduction from the registry.

- :func:`score_model_on_query` scores a registered model on the spectra another query selects,
  e.g. a Cu model trained on xanesdb's FEFF10 spectra scored on the imported OmniXAS FEFF9
  spectra of *other* materials (and the reverse). The spectra may live on another energy grid:
  each is interpolated onto the model's grid (:func:`xanesdb.ml.predict.to_grid`), after an
  optional constant shift and, with ``align="edge"``, after moving its edge
  (:func:`xanesdb.ml.predict.edge_energy`, the largest dmu/dE) onto the training data's mean
  edge (the mean of its spectra's edges; ``metrics.train_edge_ev``, the edge of the mean training
  spectrum, when the training data cannot be reloaded). The two differ: on a grid that starts
  close to the edges (xanesdb's FEFF10 Cu grid) the mean spectrum's steepest point lies 3 eV
  below the typical edge. FEFF10 (no SCF) edges sit
  5-11 eV below FEFF9's, so without alignment most spectra do not cover the model's grid.
- :func:`reproduce_run` trains again from the registry document alone (query, label field,
  hyper-parameters, seed) and compares fingerprint and F1 with the stored run.

Examples
--------
>>> res = score_model_on_query("mlp-3f2a", {"source": "omnixas", "element": "Cu"})  # doctest: +SKIP
>>> res["f1"]["macro"]                                                               # doctest: +SKIP
[0.61, 0.02]
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.schemas import TrainingRunDoc

logger = logging.getLogger(__name__)

__all__ = [
    "ALIGN_MODES",
    "DEFAULT_MAX_EXTRAPOLATE_EV",
    "spectra_onto_grid",
    "mean_edge_of",
    "score_model_on_query",
    "store_cross_score",
    "reproduce_run",
]

ALIGN_MODES = ("none", "edge")
#: a spectrum may miss at most this much of the model's grid at either end (held flat there)
DEFAULT_MAX_EXTRAPOLATE_EV = 2.0


def spectra_onto_grid(
    spectra: list[tuple[np.ndarray, np.ndarray]],
    grid: np.ndarray,
    *,
    align: str = "none",
    target_edge_ev: float | None = None,
    shift_ev: float = 0.0,
    max_extrapolate_ev: float = DEFAULT_MAX_EXTRAPOLATE_EV,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectra moved and interpolated onto ``grid``, each scaled to max 1.

    Parameters
    ----------
    spectra
        ``(energies, mu)`` pairs, energies ascending (eV).
    grid
        The model's grid energies (eV).
    align
        ``"none"``: energies as stored (plus ``shift_ev``); ``"edge"``: each spectrum shifted so
        that its edge (largest dmu/dE) sits at ``target_edge_ev``.
    target_edge_ev
        The training data's mean edge (needed for ``align="edge"``).
    shift_ev
        Constant shift added to every spectrum's energies before alignment.
    max_extrapolate_ev
        A spectrum may miss at most this much of the grid at either end; the missing points are
        held at the spectrum's end value. Spectra missing more are left out.

    Returns
    -------
    X, kept, shifts
        ``(n_kept, len(grid))`` spectra, the indices of the spectra kept, and the total shift
        applied to each kept spectrum (eV).
    """
    from xanesdb.ml.predict import edge_energy, to_grid

    if align not in ALIGN_MODES:
        raise XanesdbUserError(f"unknown --align {align!r}; use {' or '.join(ALIGN_MODES)}")
    if align == "edge" and target_edge_ev is None:
        raise XanesdbUserError("the model has no stored training edge (metrics.train_edge_ev); use --align none")
    grid = np.asarray(grid, dtype=float)
    rows, kept, shifts = [], [], []
    for i, (e, mu) in enumerate(spectra):
        e = np.asarray(e, dtype=float) + shift_ev
        mu = np.asarray(mu, dtype=float)
        shift = shift_ev
        if align == "edge":
            d = float(target_edge_ev) - edge_energy(e, mu)
            e, shift = e + d, shift + d
        low, high = e[0] - grid[0], grid[-1] - e[-1]  # eV of the grid the spectrum misses
        if max(low, high) > max_extrapolate_ev + 1e-9:
            continue
        inside = (grid >= e[0]) & (grid <= e[-1])
        y = np.empty(len(grid))
        y[inside] = to_grid(e, mu, grid[inside])
        y[grid < e[0]] = mu[0]
        y[grid > e[-1]] = mu[-1]
        if y.max() <= 0:
            continue
        rows.append(y / y.max())
        kept.append(i)
        shifts.append(shift)
    X = np.array(rows, dtype=np.float32).reshape(len(rows), len(grid))
    return X, np.array(kept, dtype=int), np.array(shifts, dtype=float)


def _training_data(doc: TrainingRunDoc, settings: XanesdbSettings, required: bool) -> tuple[Any, list[str]]:
    """The model's training dataset (its query reloaded), or None when not required and gone."""
    from xanesdb.ml.dataset import load_dataset

    warnings = []
    try:
        ds = load_dataset(doc.query, settings, label_field=doc.label_field)
    except XanesdbUserError as err:
        if required:
            raise XanesdbUserError(
                f"the training data of {doc.run_id} cannot be reloaded to exclude its materials ({err}); "
                "pass --no-exclude-training-materials to score on everything"
            ) from None
        return None, [f"the training data cannot be reloaded ({err})"]
    if ds.fingerprint != doc.fingerprint:
        warnings.append(
            f"the model's training query now selects other data (fingerprint {ds.fingerprint} != "
            f"{doc.fingerprint}); used the data it selects now"
        )
    return ds, warnings


def mean_edge_of(X: np.ndarray, energies: np.ndarray) -> float:
    """Mean of the spectra's edges (:func:`xanesdb.ml.predict.edge_energy` of each row)."""
    from xanesdb.ml.predict import edge_energy

    energies = np.asarray(energies, dtype=float)
    return float(np.mean([edge_energy(energies, row) for row in np.asarray(X, dtype=float)]))


def score_model_on_query(
    run: str | TrainingRunDoc,
    query: dict[str, Any],
    settings: XanesdbSettings | None = None,
    *,
    align: str = "edge",
    shift_ev: float = 0.0,
    exclude_training_materials: bool = True,
    max_extrapolate_ev: float = DEFAULT_MAX_EXTRAPOLATE_EV,
    model: Any = None,
) -> dict[str, Any]:
    """Score a registered model on the spectra ``query`` selects.

    Parameters
    ----------
    run
        Run id (or unique prefix), or the registry document.
    query
        Mongo filter on ``spectra``; duplicates, failed and unlabelled spectra are left out as in
        training (:func:`xanesdb.ml.dataset.full_criteria`).
    settings
        Database settings.
    align, shift_ev, max_extrapolate_ev
        How spectra are brought onto the model's grid (see :func:`spectra_onto_grid`).
    exclude_training_materials
        Leave out spectra of materials in the model's training data (its query reloaded).
    model
        The Keras model (read from GridFS when None).

    Returns
    -------
    dict
        ``f1`` {class: [mean, std] over the model's networks, "macro": [...]}, ``f1_ensemble``
        (networks' probabilities averaged), ``confusion`` (ensemble; rows true, columns
        predicted), counts of spectra scored and left out (and why), alignment details.
    """
    from xanesdb.ml.dataset import fingerprint_of, full_criteria
    from xanesdb.ml.evaluate import f1_per_class, nan_mean_std
    from xanesdb.ml.registry import get_run, load_model
    from xanesdb.platform.queries import check_filter
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database
    from xanesdb.schemas.base import utcnow

    settings = settings or get_settings()
    if not isinstance(query, dict):
        raise XanesdbUserError("the query must be a JSON object such as '{\"element\": \"Cu\"}'")
    check_filter(query)
    if align not in ALIGN_MODES:
        raise XanesdbUserError(f"unknown --align {align!r}; use {' or '.join(ALIGN_MODES)}")
    doc = run if not isinstance(run, str) else get_run(run, settings)
    if doc.task != "classification":
        raise XanesdbUserError(f"model {doc.run_id} is a {doc.task} model; score classifies only")
    label = doc.label_field
    # read the spectra (projection of the needed fields only)
    criteria = full_criteria(query, label)
    projection = {"_id": 0, "spectrum_id": 1, "material_id": 1, "energies": 1, "mu": 1, "last_updated": 1, label: 1}
    docs = sorted(get_database(settings)["spectra"].find(criteria, projection), key=lambda d: d["spectrum_id"])
    if not docs:
        raise XanesdbUserError(
            f"no spectra match {json.dumps(query)} with a non-null {label!r} (duplicates excluded); "
            "check the filter with `xanesdb db query -c spectra '<filter>'`"
        )
    warnings: list[str] = []
    n_found = len(docs)
    # the training data: its materials are left out, its mean edge is the alignment target
    ds, w = _training_data(doc, settings, required=exclude_training_materials)
    warnings += w
    n_excluded = 0
    if exclude_training_materials:
        train_materials = {str(g) for g in ds.groups}
        before = len(docs)
        docs = [d for d in docs if d["material_id"] not in train_materials]
        n_excluded = before - len(docs)
    target_edge = doc.metrics.get("train_edge_ev")  # edge of the mean training spectrum (fallback)
    if ds is not None:
        target_edge = mean_edge_of(ds.X, ds.energies)
    # labels the model knows
    unknown: dict[str, int] = {}
    known = []
    for d in docs:
        v = str(d[label])
        if v in doc.classes:
            known.append(d)
        else:
            unknown[v] = unknown.get(v, 0) + 1
    docs = known
    if not docs:
        raise XanesdbUserError(
            f"none of the {n_found} spectra is left to score ({n_excluded} of training materials, "
            f"{sum(unknown.values())} with labels outside {doc.classes}); widen the query"
        )
    # onto the model's grid
    grid = np.asarray(doc.energies, dtype=float)
    X, kept, shifts = spectra_onto_grid(
        [(np.asarray(d["energies"]), np.asarray(d["mu"])) for d in docs], grid, align=align,
        target_edge_ev=target_edge, shift_ev=shift_ev,
        max_extrapolate_ev=max_extrapolate_ev,
    )  # fmt: skip
    n_off_grid = len(docs) - len(kept)
    if not len(kept):
        hint = "try --align edge" if align == "none" else "widen --max-extrapolate"
        raise XanesdbUserError(
            f"none of the {len(docs)} spectra covers the model's grid {grid[0]:.1f}-{grid[-1]:.1f} eV "
            f"within {max_extrapolate_ev:g} eV ({hint})"
        )
    docs = [docs[i] for i in kept]
    classes = list(doc.classes)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[str(d[label])] for d in docs])
    # predict with every network of the model
    model = model if model is not None else load_model(doc, settings)
    cols = np.asarray(doc.hyperparameters.get("feature_indices", range(len(grid))), dtype=int)
    k = model.input_shape[1]
    P = np.asarray(model.predict(np.repeat(X[:, cols][:, None, :], k, axis=1), verbose=0))  # (n, k, classes)
    per_net = np.array([f1_per_class(y, P[:, j].argmax(axis=1), len(classes)) for j in range(k)])
    f1 = nan_mean_std(per_net, classes)
    y_ens = P.mean(axis=1).argmax(axis=1)
    ens = f1_per_class(y, y_ens, len(classes))
    from sklearn.metrics import confusion_matrix

    confusion = confusion_matrix(y, y_ens, labels=list(range(len(classes))))
    result = {
        "run_id": doc.run_id,
        "query_json": json.dumps(query, sort_keys=True),
        "align": align,
        "shift_ev": float(shift_ev),
        "max_extrapolate_ev": float(max_extrapolate_ev),
        "exclude_training_materials": bool(exclude_training_materials),
        "classes": classes,
        "n_found": n_found,
        "n_scored": len(docs),
        "n_materials": len({d["material_id"] for d in docs}),
        "n_excluded_training": n_excluded,
        "n_off_grid": n_off_grid,
        "unknown_labels": unknown,
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "n_networks": int(k),
        "f1": f1,
        "f1_ensemble": {**{c: float(ens[i]) for i, c in enumerate(classes)}, "macro": float(ens[-1])},
        "confusion": confusion.tolist(),
        "target_edge_ev": target_edge if align == "edge" else None,
        "mean_shift_ev": float(shifts.mean()),
        "std_shift_ev": float(shifts.std()),
        "data_fingerprint": fingerprint_of([(d["spectrum_id"], d.get("last_updated")) for d in docs]),
        "warnings": warnings,
        "scored_at": utcnow().isoformat(),
    }
    logger.info("scored %s on %d spectra of %s: macro F1 %.3f", doc.run_id, len(docs), result["query_json"],
                f1["macro"][0])  # fmt: skip
    return result


def _cross_key(result: dict[str, Any]) -> str:
    keys = ("query_json", "align", "shift_ev", "max_extrapolate_ev", "exclude_training_materials")
    return json.dumps({k: result[k] for k in keys}, sort_keys=True)


def store_cross_score(result: dict[str, Any], settings: XanesdbSettings | None = None) -> None:
    """Keep ``result`` on its run document, in ``metrics.cross_scores`` (one entry per setting).

    A new score of the same query and settings replaces the older one. Stored under ``metrics``
    (a free-form field of :class:`~xanesdb.schemas.TrainingRunDoc`), so the schema is unchanged.
    """
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    runs = get_database(settings or get_settings())["models"]
    entry = {**result, "key": _cross_key(result)}
    runs.update_one({"run_id": result["run_id"]}, {"$pull": {"metrics.cross_scores": {"key": entry["key"]}}})
    runs.update_one({"run_id": result["run_id"]}, {"$push": {"metrics.cross_scores": entry}})


def reproduce_run(
    run: str | TrainingRunDoc,
    settings: XanesdbSettings | None = None,
    *,
    tol: float = 0.05,
    register: bool = False,
    on_epoch: Any = None,
) -> dict[str, Any]:
    """Train again from the registry document alone and compare with it.

    Parameters
    ----------
    run
        Run id (or unique prefix), or the registry document.
    settings
        Database settings.
    tol
        Largest accepted difference of the mean macro F1.
    register
        Register the new run (same data, knobs and seed give the same run id, so this replaces
        the stored document and weights).
    on_epoch
        Progress callback ``(epoch, loss)``.

    Returns
    -------
    dict
        ``ok``, ``reasons`` (why not ok), ``old``/``new`` fingerprints and run ids, ``f1``
        {class: {"old", "new", "diff"}} for every class and ``macro``, and backend/device/version
        differences.
    """
    from xanesdb.ml.registry import get_run
    from xanesdb.ml.train import TrainConfig, train_from_query
    from xanesdb.platform.settings import get_settings

    settings = settings or get_settings()
    old = run if not isinstance(run, str) else get_run(run, settings)
    for key, how in (("transfer", "fine-tuned from another run (train --from)"),
                     ("pretrain", "trained from a pretrained encoder (train --pretrain)")):  # fmt: skip
        if old.hyperparameters.get(key):
            raise XanesdbUserError(f"run {old.run_id} was {how}; reproduce retrains plain runs only: "
                                   "run the same train command again instead")  # fmt: skip
    config = TrainConfig.from_dict(old.hyperparameters)
    if config.seed != old.seed:
        raise XanesdbUserError(f"run {old.run_id} stores seed {old.seed} but hyper-parameters seed {config.seed}")
    res = train_from_query(old.query, config, settings, label_field=old.label_field, register=register,
                           on_epoch=on_epoch)  # fmt: skip
    new = res.doc
    reasons = []
    if new.fingerprint != old.fingerprint:
        reasons.append(
            f"data fingerprint differs ({new.fingerprint} != {old.fingerprint}): the query now selects other spectra"
        )
    if list(new.classes) != list(old.classes):
        reasons.append(f"classes differ ({new.classes} != {old.classes})")
    f1_old, f1_new = old.metrics.get("f1", {}), new.metrics.get("f1", {})
    f1 = {}
    for c in [*old.classes, "macro"]:
        o, n = f1_old.get(c), f1_new.get(c)
        f1[c] = {"old": o, "new": n, "diff": (n[0] - o[0]) if (o and n) else None}
    d = f1["macro"]["diff"]
    if d is None:
        reasons.append("macro F1 missing from one of the runs")
    elif abs(d) > tol:
        reasons.append(f"macro F1 differs by {d:+.3f} (tolerance {tol:g})")
    env = {}
    for name in ("backend", "device"):
        if getattr(old, name) != getattr(new, name):
            env[name] = [getattr(old, name), getattr(new, name)]
    for pkg in sorted(set(old.versions) | set(new.versions)):
        if old.versions.get(pkg) != new.versions.get(pkg):
            env[pkg] = [old.versions.get(pkg), new.versions.get(pkg)]
    return {
        "ok": not reasons,
        "reasons": reasons,
        "run_id": {"old": old.run_id, "new": new.run_id},
        "fingerprint": {"old": old.fingerprint, "new": new.fingerprint},
        "n_spectra": {"old": old.n_spectra, "new": new.n_spectra},
        "f1": f1,
        "environment_differences": env,
        "registered": bool(register),
        "tol": tol,
    }
