"""The ``spectra`` collection: standardised spectra ready for learning."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from xanesdb.schemas.base import XanesdbDoc

__all__ = ["SEPARATE_SCALE_PRESETS", "SpectrumDoc"]

#: presets of xanesdb's own FEFF runs whose spectra sit on an energy scale of their own (a
#: self-consistent potential moves edges and features by several eV): they get their own grids
#: and dedup groups, and paper-representation datasets leave them out unless a query names a preset
SEPARATE_SCALE_PRESETS: tuple[str, ...] = ("scf", "scflite", "scfwide", "scfrpa", "mp")


class SpectrumDoc(XanesdbDoc):
    """One unique site's spectrum on its absorber's 100-point grid, scaled to max 1, and normalised on
    the aligned grid (schema version 2: ``e_half``, ``edge_step``, ``aligned_grid``, ``mu_aligned``;
    version 3: ``site_class``, the class of every site including ``other``)."""

    collection: ClassVar[str] = "spectra"
    key_field: ClassVar[str] = "spectrum_id"

    spectrum_id: str = Field(..., description="'<task_id>:std' - one per FEFF task.")
    task_id: str = Field(..., description="FEFF task the spectrum came from.")
    site_id: str = Field(..., description="Unique site.")
    material_id: str = Field(..., description="Structure.")
    formula: str | None = Field(None, description="Reduced formula.")
    element: str = Field(..., description="Absorbing element.")
    edge: str = Field("K", description="Edge.")
    source: str = Field(..., description="'xanesdb' (FEFF10), 'omnixas' (FEFF9), 'mp'; never deduplicated across.")
    code: str = Field(..., description="Code that computed it.")
    preset: str = Field(..., description="FEFF preset of the task.")
    multiplicity: int = Field(1, description="Equivalent sites in the cell (weight in site averages).")
    chemenv_symbol: str | None = Field(None, description="ChemEnv symbol (1.2 cutoff).")
    csm: float | None = Field(None, description="CSM of the symbol.")
    lce_class: Literal["T4", "S5", "O6"] | None = Field(None, description="Paper's class or None.")
    site_class: Literal["T4", "S5", "O6", "other"] | None = Field(
        None, description="lce_class, or 'other' for any other ChemEnv geometry (linear, square planar...); "
        "None without a ChemEnv symbol. Derived from chemenv_symbol (schema version 3)."
    )
    coordination_number: int | None = Field(None, description="From the site.")
    mean_bond_length: float | None = Field(None, description="From the site (Angstrom).")
    grid_name: str = Field(..., description="Name/version of the absorber's grid, e.g. 'Fe-K-v1'.")
    energies: list[float] = Field(..., description="Grid energies (eV), 100 points.")
    mu: list[float] = Field(..., description="mu on the grid, scaled to max 1.")
    e0: float | None = Field(None, description="Edge energy of the raw spectrum (eV), largest dmu/dE (places the absolute grid).")
    e_half: float | None = Field(None, description="Half-step energy (eV), the origin of mu_aligned (kept also where the spectrum does not cover the aligned grid).")
    edge_step: float | None = Field(None, description="Edge step of the Athena-style normalisation of the raw spectrum.")
    aligned_grid: str | None = Field(None, description="Aligned grid of mu_aligned (e.g. 'halfstep-rel-v1'); None before it was computed.")
    mu_aligned: list[float] | None = Field(
        None, description="Edge-step-normalised mu on the aligned grid (100 points, -5..+44.5 eV from e_half); "
        "None when the raw spectrum does not span it."
    )
    dedup_threshold: float = Field(0.015, description="Mean-absolute-difference threshold used.")
    duplicate_of: str | None = Field(None, description="spectrum_id this one duplicates, or None if kept.")
    state: Literal["successful", "failed"] = Field("successful", description="Standardisation outcome.")
    error: str | None = Field(None, description="Why standardisation failed.")

    @model_validator(mode="before")
    @classmethod
    def _derive_site_class(cls, data: Any) -> Any:
        from xanesdb.schemas.site import site_class_of

        if isinstance(data, dict) and data.get("site_class") is None:
            data = {**data, "site_class": site_class_of(data.get("chemenv_symbol"))}
        return data
