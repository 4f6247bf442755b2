"""The model registry: ``TrainingRunDoc`` in ``models``, ``.keras`` files in GridFS ``model_files``.

Registration is two-phase, so a killed run never leaves a ``complete`` document without weights:
the document is first upserted with ``state="training"``, then the weights go to GridFS, and only
then is the document switched to ``"complete"`` with the GridFS id (and any older file of the same
run id deleted).

Every run document records what shaped its numbers (:func:`model_provenance`): the versions of
:data:`xanesdb.platform.provenance.MODEL_LIBRARIES` plus the Keras backend's own package in
``versions``, the backend in ``backend`` and the device in ``device``; a portable model's card
carries the same.

This module does not import :mod:`xanesdb.ml.train` (training imports the registry, not the
other way round).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas import TrainingRunDoc

if TYPE_CHECKING:
    from xanesdb.ml.dataset import XanesDataset
    from xanesdb.ml.train import TrainConfig
    from xanesdb.platform.settings import XanesdbSettings

logger = logging.getLogger(__name__)

__all__ = ["BACKEND_LIBRARIES", "model_provenance", "run_id_of", "make_run_doc", "run_document", "register_run", "list_runs", "get_run", "load_model", "GRIDFS_BUCKET"]

GRIDFS_BUCKET = "model_files"

#: Keras backend -> the distributions whose version is recorded with it (those installed)
BACKEND_LIBRARIES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "jax": ("jax", "jaxlib"),
    "torch": ("torch",),
    "numpy": (),
}


def model_provenance() -> dict[str, Any]:
    """What shapes a trained model's numbers: Keras backend, device and library versions.

    Returns
    -------
    dict
        ``backend`` (Keras's), ``device`` (the first GPU Keras lists, else the CPU) and
        ``versions``: :func:`~xanesdb.platform.provenance.library_versions` of
        :data:`~xanesdb.platform.provenance.MODEL_LIBRARIES` plus the backend's packages (keys
        with ``_`` for ``-``, e.g. ``scikit_learn``, ``tensorflow_cpu``).

    Examples
    --------
    >>> info = model_provenance()                        # doctest: +SKIP
    >>> info["backend"], sorted(info["versions"])        # doctest: +SKIP
    ('tensorflow', ['keras', 'numpy', 'scikit_learn', 'tensorflow_cpu', 'xanesdb'])
    """
    import platform

    import keras

    from xanesdb.platform.provenance import MODEL_LIBRARIES, library_versions

    backend = keras.backend.backend()
    device = f"cpu ({platform.processor() or platform.machine()})"
    try:
        devices = keras.distribution.list_devices()
        gpus = [d for d in devices if "gpu" in str(d).lower() or "cuda" in str(d).lower()]
        if gpus:
            device = f"{gpus[0]} (+{len(gpus) - 1} more)" if len(gpus) > 1 else str(gpus[0])
    except Exception:  # noqa: BLE001 - not every backend lists devices
        pass
    versions = library_versions((*MODEL_LIBRARIES, *BACKEND_LIBRARIES.get(backend, (backend,))))
    return {"backend": backend, "device": device, "versions": versions}


def run_id_of(kind: str, fingerprint: str, label_field: str, hyperparameters: dict[str, Any], seed: int) -> str:
    """Deterministic id: same data, label, knobs and seed -> same run id."""
    blob = json.dumps({"label": label_field, "hp": hyperparameters, "seed": seed}, sort_keys=True, default=str)
    return f"{kind}-{fingerprint[:10]}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def make_run_doc(
    ds: XanesDataset,
    config: TrainConfig,
    metrics: dict[str, Any],
    feature_indices: np.ndarray,
    timings: dict[str, float],
) -> TrainingRunDoc:
    """The registry document of a finished training (state 'training' until registered)."""
    hp = config.as_dict()
    hp["feature_indices"] = [int(i) for i in feature_indices]
    return run_document(ds, kind=config.kind, task="classification", label_field=ds.label_field,
                        classes=list(ds.classes), hyperparameters=hp, seed=config.seed, metrics=metrics,
                        timings=timings)  # fmt: skip


def run_document(
    data: Any,
    *,
    kind: str,
    task: str,
    label_field: str,
    classes: list[str],
    hyperparameters: dict[str, Any],
    seed: int,
    metrics: dict[str, Any],
    timings: dict[str, float],
    query: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> TrainingRunDoc:
    """The registry document of any finished run (state 'training' until registered).

    ``data``: what the run learned from (its ``fingerprint``, ``grid_name``, ``energies``, length
    and, unless ``query`` is given, ``query``); ``run_id`` None: :func:`run_id_of` the knobs and data.
    The provenance (library versions, backend, device) is this process's.
    """
    info = model_provenance()
    return TrainingRunDoc(
        run_id=run_id or run_id_of(kind, data.fingerprint, label_field, hyperparameters, seed), kind=kind, task=task,
        query=data.query if query is None else query, label_field=label_field, classes=list(classes),
        fingerprint=data.fingerprint, n_spectra=len(data), grid_name=data.grid_name,
        energies=[float(e) for e in data.energies], hyperparameters=hyperparameters, seed=seed, metrics=metrics,
        versions=info["versions"], backend=info["backend"], device=info["device"],
        timings={k: float(v) for k, v in timings.items()}, state="training",
    )  # fmt: skip


def _db(settings: XanesdbSettings | None):
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    return get_database(settings or get_settings())


def register_run(doc: TrainingRunDoc, model: Any, settings: XanesdbSettings | None = None) -> TrainingRunDoc:
    """Store the run: document 'training' -> weights in GridFS -> document 'complete'."""
    import gridfs

    db = _db(settings)
    runs = db["models"]
    previous = runs.find_one({"run_id": doc.run_id}, {"weights_file_id": 1})
    doc = doc.model_copy(update={"state": "training", "weights_file_id": None})
    runs.replace_one({"run_id": doc.run_id}, doc.to_mongo(), upsert=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{doc.run_id}.keras"
        model.save(path)
        fs = gridfs.GridFS(db, GRIDFS_BUCKET)
        file_id = fs.put(path.read_bytes(), filename=path.name, run_id=doc.run_id)
    doc = doc.model_copy(update={"state": "complete", "weights_file_id": str(file_id)})
    runs.update_one({"run_id": doc.run_id}, {"$set": {"state": "complete", "weights_file_id": str(file_id)}})
    old = (previous or {}).get("weights_file_id")
    if old and old != str(file_id):
        from bson import ObjectId

        gridfs.GridFS(db, GRIDFS_BUCKET).delete(ObjectId(old))
    # weights of an earlier registration of this run killed between the upload and the switch to
    # 'complete' (found by tests/test_reliability.py): referenced by nothing, removed now
    for orphan in db[f"{GRIDFS_BUCKET}.files"].find({"run_id": doc.run_id, "_id": {"$ne": file_id}}, {"_id": 1}):
        gridfs.GridFS(db, GRIDFS_BUCKET).delete(orphan["_id"])
    logger.info("registered %s (weights %s)", doc.run_id, file_id)
    return doc


def list_runs(settings: XanesdbSettings | None = None, criteria: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Summaries of registered runs, newest first."""
    fields = {"_id": 0, "run_id": 1, "kind": 1, "query": 1, "n_spectra": 1, "classes": 1, "state": 1,
              "created": 1, "hyperparameters.protocol": 1, "hyperparameters.augment": 1,
              "hyperparameters.pre_edge": 1, "metrics.f1.macro": 1, "backend": 1, "seed": 1, "task": 1,
              "metrics.targets": 1, "metrics.mae_mixed": 1, "metrics.mae_mixed_baseline_mean": 1}  # fmt: skip
    return list(_db(settings)["models"].find(criteria or {}, fields).sort("created", -1))


#: longest model id (or prefix) accepted; real ones are about 40 characters
MAX_RUN_ID_LENGTH = 200


def get_run(run_id: str, settings: XanesdbSettings | None = None) -> TrainingRunDoc:
    """The registry document of ``run_id`` (a unique prefix is enough)."""
    import re

    if not isinstance(run_id, str) or not run_id.strip():
        raise XanesdbUserError("give a model id (see `xanesdb models list`); an empty id matches nothing")
    if len(run_id) > MAX_RUN_ID_LENGTH:
        raise XanesdbUserError(f"a model id is at most {MAX_RUN_ID_LENGTH} characters, this one has "
                               f"{len(run_id)}; copy it from `xanesdb models list`")
    runs = _db(settings)["models"]
    doc = runs.find_one({"run_id": run_id})
    if doc is None:
        matches = list(runs.find({"run_id": {"$regex": "^" + re.escape(run_id)}}).limit(2))
        if len(matches) == 1:
            doc = matches[0]
        elif len(matches) > 1:
            raise XanesdbUserError(f"model id {run_id!r} is ambiguous; give more of it (see `xanesdb models list`)")
    if doc is None:
        raise XanesdbUserError(f"no model {run_id!r} in the registry; see `xanesdb models list`")
    return TrainingRunDoc.from_mongo(doc)


def load_model(run: str | TrainingRunDoc, settings: XanesdbSettings | None = None):
    """The trained Keras model of a complete run, read from GridFS."""
    import gridfs
    import keras
    from bson import ObjectId

    import xanesdb.ml.models  # noqa: F401 - registers the custom layers

    doc = run if isinstance(run, TrainingRunDoc) else get_run(run, settings)
    if doc.state != "complete" or not doc.weights_file_id:
        raise XanesdbUserError(f"model {doc.run_id} is {doc.state!r}, not complete; train it again")
    data = gridfs.GridFS(_db(settings), GRIDFS_BUCKET).get(ObjectId(doc.weights_file_id)).read()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(data)
        return keras.saving.load_model(path)
