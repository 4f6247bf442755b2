"""The ``models`` collection: one training run, its metrics, and where its weights are."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from xanesdb.schemas.base import XanesdbDoc, utcnow

__all__ = ["TrainingRunDoc"]


class TrainingRunDoc(XanesdbDoc):
    """A trained model (or ensemble) with the query and data that made it."""

    collection: ClassVar[str] = "models"
    key_field: ClassVar[str] = "run_id"

    run_id: str = Field(..., description="Deterministic id from kind, query fingerprint, params and seed.")
    kind: str = Field(..., description="Model kind, e.g. 'mlp', 'cnn'.")
    task: Literal["classification", "regression", "fractions"] = Field(
        "classification", description="Learning task (fractions: site fractions of a mixture, xanesdb.ml.mixtures)."
    )
    query: dict[str, Any] = Field(..., description="Mongo filter on 'spectra' that selected the data.")
    label_field: str = Field("lce_class", description="Field learned.")
    classes: list[str] = Field(default_factory=list, description="Class names in output order.")
    fingerprint: str = Field(..., description="Hash of the exact spectra (ids + last_updated) used.")
    n_spectra: int = Field(..., description="Number of spectra in the dataset.")
    grid_name: str | None = Field(None, description="Energy grid of the inputs.")
    energies: list[float] = Field(default_factory=list, description="Input grid energies (eV).")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="Model and training knobs.")
    seed: int = Field(0, description="Random seed.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="F1 scores, confusion matrices, curves.")
    versions: dict[str, str] = Field(default_factory=dict, description="Library versions.")
    backend: str | None = Field(None, description="Keras backend.")
    device: str | None = Field(None, description="CPU/GPU description.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per phase.")
    weights_file_id: str | None = Field(None, description="GridFS id of the saved .keras file.")
    state: Literal["training", "complete", "failed"] = Field("complete", description="Lifecycle state.")
    created: datetime = Field(default_factory=utcnow, description="When the run started.")
