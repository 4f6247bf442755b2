"""The ``structures`` collection: one document per crystal structure, with provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from xanesdb.schemas.base import XanesdbDoc

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["Provenance", "StructureDoc"]


class Provenance(BaseModel):
    """Where a structure came from and under what terms."""

    origin: str = Field(
        ...,
        description="Kind of origin: 'materials_project', 'omnixas', 'literature', 'prototype', 'file'.",
    )
    reference: str | None = Field(
        None, description="Repository path at commit, DOI or URL the structure was taken from."
    )
    licence: str | None = Field(None, description="Licence of the structure data, e.g. 'CC BY 4.0'.")
    source_id: str | None = Field(None, description="Identifier at the origin (mp id, file name).")
    database_version: str | None = Field(
        None, description="Materials Project database release the structure was fetched from."
    )
    prototype: str | None = Field(
        None, description="For substituted structures: material id / name of the parent prototype."
    )
    substitution: dict[str, str] | None = Field(
        None, description="For substituted structures: element replaced -> element put in."
    )
    relaxation: str | None = Field(
        None, description="How the structure was relaxed, e.g. 'CHGNet 0.3.0, fmax 0.05 eV/A'."
    )
    note: str | None = Field(None, description="Free text.")

    model_config = ConfigDict(extra="forbid")


class StructureDoc(XanesdbDoc):
    """A crystal structure with its provenance (collection ``structures``)."""

    collection: ClassVar[str] = "structures"
    key_field: ClassVar[str] = "material_id"

    material_id: str = Field(..., description="Unique id: an mp id, or '<source>:<name>' otherwise.")
    source: str = Field(..., description="Structure source: 'mp', 'bundled' or 'files'.")
    formula: str = Field(..., description="Reduced formula, e.g. 'Fe2O3'.")
    elements: list[str] = Field(..., description="Sorted element symbols present.")
    nsites: int = Field(..., description="Number of sites in the cell.")
    structure: dict[str, Any] = Field(..., description="pymatgen Structure.as_dict().")
    provenance: Provenance = Field(..., description="Origin, licence and processing history.")
    tags: list[str] = Field(default_factory=list, description="Free labels, e.g. 'li-fe-o'.")

    @classmethod
    def from_structure(
        cls, structure: Structure, material_id: str, source: str, provenance: Provenance, **kwargs: Any
    ) -> StructureDoc:
        """Build the document from a pymatgen structure."""
        comp = structure.composition
        return cls(
            material_id=material_id,
            source=source,
            formula=comp.reduced_formula,
            elements=sorted({el.symbol for el in comp.elements}),
            nsites=len(structure),
            structure=structure.as_dict(),
            provenance=provenance,
            **kwargs,
        )

    def to_structure(self) -> Structure:
        """The pymatgen Structure."""
        from pymatgen.core import Structure

        return Structure.from_dict(self.structure)
