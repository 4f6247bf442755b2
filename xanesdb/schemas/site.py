"""The ``sites`` collection: one document per symmetry-unique absorbing site, with ChemEnv labels."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from xanesdb.schemas.base import XanesdbDoc

__all__ = ["ChemEnvCandidate", "ChemEnvResult", "SiteDoc", "LCE_CLASSES", "SITE_CLASSES", "lce_class_of", "site_class_of",
           "site_id"]

#: ChemEnv symbol -> the paper's class name
LCE_CLASSES: dict[str, str] = {"T:4": "T4", "S:5": "S5", "O:6": "O6"}


def lce_class_of(symbol: str | None) -> str | None:
    """'T4'/'S5'/'O6' for those ChemEnv symbols, else None."""
    return LCE_CLASSES.get(symbol or "")


#: the paper's three classes plus ``other``: every site ChemEnv named with another geometry (linear
#: Cu(I) ``L:2``, square-planar Cu(II) ``S:4``, trigonal ``TL:3``...), which a model must be able to answer
SITE_CLASSES: tuple[str, ...] = ("T4", "S5", "O6", "other")


def site_class_of(symbol: str | None) -> str | None:
    """'T4'/'S5'/'O6' for those ChemEnv symbols, 'other' for any other symbol, None for no symbol.

    >>> site_class_of("O:6"), site_class_of("L:2"), site_class_of(None)
    ('O6', 'other', None)
    """
    if not symbol:
        return None
    return LCE_CLASSES.get(symbol, "other")


def site_id(material_id: str, element: str, site_index: int) -> str:
    """Deterministic key of a unique site: ``<material_id>:<element>:<site_index>``."""
    return f"{material_id}:{element}:{site_index}"


class ChemEnvCandidate(BaseModel):
    """One coordination geometry that ChemEnv fitted to the site."""

    symbol: str = Field(..., description="ChemEnv geometry symbol, e.g. 'O:6'.")
    csm: float = Field(..., description="Continuous symmetry measure (0 = perfect).")
    fraction: float | None = Field(None, description="Strategy's fraction for this geometry, if any.")

    model_config = ConfigDict(extra="forbid")


class ChemEnvResult(BaseModel):
    """The ChemEnv result of one strategy for one site."""

    strategy: str = Field(..., description="Strategy and its parameters, e.g. 'simplest d=1.2 a=0.3'.")
    distance_cutoff: float = Field(..., description="Neighbour cutoff in units of the nearest distance.")
    symbol: str | None = Field(None, description="Geometry of lowest CSM; None if no environment found.")
    csm: float | None = Field(None, description="CSM of that geometry.")
    coordination_number: int | None = Field(None, description="Coordination number of that geometry.")
    candidates: list[ChemEnvCandidate] = Field(
        default_factory=list, description="All fitted geometries, lowest CSM first."
    )

    model_config = ConfigDict(extra="forbid")


class SiteDoc(XanesdbDoc):
    """A symmetry-unique absorbing site of a structure and its local environment."""

    collection: ClassVar[str] = "sites"
    key_field: ClassVar[str] = "site_id"

    site_id: str = Field(..., description="'<material_id>:<element>:<site_index>'.")
    material_id: str = Field(..., description="Structure this site belongs to.")
    source: str = Field(..., description="Source of the structure ('mp', 'bundled', 'files').")
    formula: str = Field(..., description="Reduced formula of the structure.")
    element: str = Field(..., description="Absorbing element, e.g. 'Fe'.")
    site_index: int = Field(..., description="Index (0-based) of the representative site in the stored structure.")
    equivalent_indices: list[int] = Field(..., description="Indices of all symmetry-equivalent sites.")
    multiplicity: int = Field(..., description="Number of equivalent sites in the cell.")
    wyckoff: str | None = Field(None, description="Wyckoff symbol of the site, if known.")
    state: Literal["successful", "failed"] = Field("successful", description="Labelling outcome.")
    error: str | None = Field(None, description="Why labelling failed.")
    chemenv_symbol: str | None = Field(None, description="ChemEnv symbol with the paper's 1.2 cutoff.")
    csm: float | None = Field(None, description="CSM of chemenv_symbol.")
    lce_class: Literal["T4", "S5", "O6"] | None = Field(
        None, description="The paper's class from chemenv_symbol, or None for other geometries."
    )
    chemenv: ChemEnvResult | None = Field(None, description="Full result with the 1.2 cutoff (paper).")
    chemenv_default: ChemEnvResult | None = Field(
        None, description="Full result with ChemEnv's default strategy (cutoff 1.4)."
    )
    strategies_agree: bool | None = Field(None, description="Both strategies give the same symbol.")
    ambiguous: bool = Field(False, description="Label is uncertain; see ambiguity_reasons.")
    ambiguity_reasons: list[str] = Field(default_factory=list, description="Why the label is uncertain.")
    coordination_number: int | None = Field(None, description="Number of first-shell neighbours.")
    bond_lengths: list[float] = Field(default_factory=list, description="First-shell distances (Angstrom).")
    mean_bond_length: float | None = Field(None, description="Mean first-shell distance (Angstrom).")
    neighbor_elements: list[str] = Field(default_factory=list, description="First-shell neighbour elements.")
    oxidation_state: float | None = Field(None, description="Oxidation state guessed by pymatgen, if any.")
    bond_length_spread: float | None = Field(
        None, description="Population standard deviation of the first-shell distances (Angstrom); 0 for a regular polyhedron."
    )
    crystalnn_coordination_number: int | None = Field(
        None, description="Coordination number by pymatgen's CrystalNN (independent of ChemEnv's cutoffs)."
    )
    labelling_seconds: float | None = Field(None, description="Wall time to label the structure.")
    library_versions: dict[str, str] | None = Field(
        None, description="Versions of the libraries that made the label (xanesdb, pymatgen, spglib), by name."
    )
