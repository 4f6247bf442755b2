"""The ``feff_tasks`` collection: one FEFF XANES calculation (or import) for one unique site."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from xanesdb.schemas.base import XanesdbDoc

__all__ = ["FeffTaskDoc", "HandlerAction", "preset_hash", "task_id"]


def preset_hash(cards: dict[str, Any]) -> str:
    """Short hash of the FEFF cards that define a preset (not the per-site ATOMS/POTENTIALS)."""
    blob = json.dumps(cards, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def task_id(site_id: str, edge: str, phash: str, source: str = "xanesdb") -> str:
    """Deterministic key: ``<site_id>:<edge>:<preset-hash>`` (prefixed by source if not xanesdb)."""
    key = f"{site_id}:{edge}:{phash}"
    return key if source == "xanesdb" else f"{source}/{key}"


class HandlerAction(BaseModel):
    """One corrective action of the error ladder (custodian-style)."""

    error: str = Field(..., description="What went wrong.")
    action: dict[str, Any] = Field(..., description="Cards changed, e.g. {'FMS': '5.0 0'}.")

    model_config = ConfigDict(extra="forbid")


class FeffTaskDoc(XanesdbDoc):
    """A FEFF K-edge XANES run for one unique site: inputs, raw outputs, state."""

    collection: ClassVar[str] = "feff_tasks"
    key_field: ClassVar[str] = "task_id"

    task_id: str = Field(..., description="'<site_id>:<edge>:<preset-hash>', source-prefixed for imports.")
    site_id: str = Field(..., description="Unique site computed.")
    material_id: str = Field(..., description="Structure of the site.")
    element: str = Field(..., description="Absorbing element.")
    absorbing_index: int = Field(..., description="0-based index of the absorber in the structure.")
    edge: str = Field("K", description="Absorption edge.")
    source: str = Field("xanesdb", description="'xanesdb' (own runs), 'omnixas', 'mp' or 'import'.")
    code: str = Field(..., description="Code, e.g. 'feff10-rs'/'FEFF 9.9.1'.")
    code_version: str | None = Field(None, description="Version of the code.")
    preset: str = Field(..., description="Preset name ('fast', 'mp', or the importing source's).")
    preset_hash: str = Field(..., description="Hash of the preset's cards.")
    cards: dict[str, Any] = Field(default_factory=dict, description="Every FEFF card used, by name.")
    feff_inp: str | None = Field(None, description="The feff.inp text that was run.")
    input_hash: str | None = Field(None, description="SHA-256 of feff.inp.")
    state: Literal["successful", "failed"] = Field(..., description="Outcome after validation.")
    error: str | None = Field(None, description="Reason for failure.")
    warnings: list[str] = Field(default_factory=list, description="Non-fatal issues.")
    actions: list[HandlerAction] = Field(default_factory=list, description="Error-ladder actions taken.")
    energies: list[float] = Field(default_factory=list, description="Energies (eV), xmu.dat column 1.")
    mu: list[float] = Field(default_factory=list, description="mu(E), xmu.dat column 4.")
    mu0: list[float] = Field(default_factory=list, description="mu0(E), xmu.dat column 5.")
    chi: list[float] = Field(default_factory=list, description="chi(E), xmu.dat column 6.")
    edge_energy: float | None = Field(None, description="Fermi level / edge energy reported by FEFF (eV).")
    stage_seconds: dict[str, float] = Field(default_factory=dict, description="Wall time per FEFF stage.")
    wall_seconds: float | None = Field(None, description="Total FEFF wall time (s).")
    hostname: str | None = Field(None, description="Machine that ran it.")
    import_path: str | None = Field(None, description="Folder imported from, for imported runs.")
    distortion: float | None = Field(
        None, description="Radial distortion (A) of every neighbour of a distortion-series run (xanesdb.jobs.disorder); "
        "absent for ordered runs. Its key ends ':d<+0.050>'."
    )
    library_versions: dict[str, str] | None = Field(
        None, description="Versions of the libraries that made the task (xanesdb, pymatgen, feff10-rs), by name."
    )
