"""The ``structures`` collection: one document per crystal structure, with provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from xanesdb.schemas.base import XanesdbDoc

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "Provenance",
    "StructureDoc",
    "MIN_DISTANCE",
    "MIN_VOLUME_PER_ATOM",
    "MAX_LATTICE_LENGTH",
    "MAX_SITES",
    "structure_problem",
]

#: two atoms closer than this (Angstrom) make a structure invalid. pymatgen's own
#: ``Structure.is_valid`` tolerance (``DISTANCE_TOLERANCE``); the shortest real bond, H-H in H2,
#: is 0.74 A and the bonds around the absorbers Ti-Cu are all above 1.5 A, so no real crystal is
#: refused, while an atom put on top of another (0 A) or a fractional-coordinate typo is.
MIN_DISTANCE = 0.5
#: cell volume per atom below this (A^3) is not a solid: the densest real ones (diamond 5.7,
#: metals under pressure) are above 2
MIN_VOLUME_PER_ATOM = 1.0
#: a lattice vector longer than this (A) is a unit mistake (the largest Materials Project cells
#: are about 100 A, slab models with vacuum rarely above 200 A); ChemEnv cannot use it anyway
MAX_LATTICE_LENGTH = 500.0
#: more sites than this per cell is refused (ChemEnv's cost grows with the cell; the largest
#: Materials Project oxides have a few hundred sites)
MAX_SITES = 1000


def structure_problem(structure: Structure) -> str | None:
    """Why a structure cannot be stored or labelled, or None when it is sound.

    Checked in this order, each cheap and safe on any input (no symmetry code runs: spglib
    crashes the process on NaN coordinates): a non-empty cell of at most :data:`MAX_SITES` sites,
    finite lattice and coordinates, lattice vectors no longer than :data:`MAX_LATTICE_LENGTH`, a
    volume of at least :data:`MIN_VOLUME_PER_ATOM` per atom, no lattice vector (after LLL
    reduction) and no two atoms, periodic images included, closer than :data:`MIN_DISTANCE`.
    """
    import numpy as np

    n = len(structure)
    if n == 0:
        return "the structure has no atoms"
    if n > MAX_SITES:
        return f"the cell has {n} sites, more than the {MAX_SITES} allowed"
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        return "the lattice has non-finite (NaN or infinite) entries"
    frac = np.asarray(structure.frac_coords, dtype=float)
    if not np.all(np.isfinite(frac)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(frac), axis=1))[0])
        return f"site {bad} has non-finite (NaN or infinite) coordinates"
    lengths = np.linalg.norm(matrix, axis=1)
    if lengths.max() > MAX_LATTICE_LENGTH:
        return f"a lattice vector is {lengths.max():.4g} A long, more than {MAX_LATTICE_LENGTH:g} A"
    volume = abs(float(np.linalg.det(matrix)))
    if volume < MIN_VOLUME_PER_ATOM * n:
        return (f"the cell volume is {volume:.4g} A^3 for {n} atoms, less than "
                f"{MIN_VOLUME_PER_ATOM:g} A^3 per atom")
    shortest = float(np.linalg.norm(structure.lattice.lll_matrix, axis=1).min())
    if shortest < MIN_DISTANCE:
        return f"a lattice vector is {shortest:.3g} A long: each atom is that close to its own image"
    if n > 1:
        dist = structure.distance_matrix
        iu = np.triu_indices(n, 1)
        k = int(np.argmin(dist[iu]))
        i, j, d = int(iu[0][k]), int(iu[1][k]), float(dist[iu][k])
        if d < MIN_DISTANCE:
            return (f"sites {i} ({structure[i].species_string}) and {j} ({structure[j].species_string}) are "
                    f"{d:.3g} A apart, closer than {MIN_DISTANCE:g} A")
    return None


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
