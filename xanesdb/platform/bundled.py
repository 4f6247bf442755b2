"""The bundled offline structure set shipped in ``xanesdb/data/structures.json.gz``.

The file is a gzipped JSON list of compact records::

    {"material_id": "mp-1234" | "proto:<prototype>:<substitution>" | "<repo>:<name>",
     "structure": Structure.as_dict(),
     "provenance": Provenance fields (origin, reference, licence, source_id, prototype, ...),
     "tags": ["omnixas-cu", ...]}

It holds real Materials Project oxide structures (the OmniXAS Cu developer part, the Li-Fe-O
entries of emmet's test files, small oxide sets from Lightshow, pycoordinationnet and veidt) and
structures built by cation substitution into known prototypes and relaxed with CHGNet. The file
is written by ``scripts/build_bundled_structures.py``; attribution per source is in
``xanesdb/data/ATTRIBUTION.md``. Nothing here downloads anything.
"""

from __future__ import annotations

import gzip
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas.structure import Provenance, StructureDoc

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BUNDLED_SOURCE",
    "bundled_data_path",
    "bundled_attribution_path",
    "iter_bundled_structures",
    "count_bundled_structures",
    "record_elements",
]

logger = logging.getLogger(__name__)

#: value of ``StructureDoc.source`` for every bundled structure
BUNDLED_SOURCE = "bundled"


def bundled_data_path() -> Path:
    """Path of the bundled structure file (``xanesdb/data/structures.json.gz``)."""
    return Path(__file__).resolve().parents[1] / "data" / "structures.json.gz"


def bundled_attribution_path() -> Path:
    """Path of the licences and attribution notices of the bundled data."""
    return Path(__file__).resolve().parents[1] / "data" / "ATTRIBUTION.md"


@lru_cache(maxsize=2)
def _load_records(path: str) -> tuple[dict[str, Any], ...]:
    """Read and cache the compact records of a bundled structure file."""
    p = Path(path)
    if not p.is_file():
        raise XanesdbUserError(
            f"bundled structure file {p} is missing; reinstall xanesdb or regenerate it with "
            "'python scripts/build_bundled_structures.py'"
        )
    with gzip.open(p, "rt", encoding="utf-8") as fh:
        records = json.load(fh)
    logger.debug("read %d bundled structure records from %s", len(records), p)
    return tuple(records)


def record_elements(record: dict[str, Any]) -> set[str]:
    """Element symbols of a compact record, read from its structure dict without parsing it.

    Parameters
    ----------
    record
        One record of the bundled file (``structure`` is ``Structure.as_dict()``).

    Returns
    -------
    set of str
        Symbols of every species with non-zero occupancy.
    """
    out: set[str] = set()
    for site in record["structure"]["sites"]:
        for sp in site["species"]:
            if sp.get("occu", 1) > 0:
                out.add(sp["element"])
    return out


def _normalise_elements(elements: list[str] | None) -> set[str] | None:
    if elements is None:
        return None
    from pymatgen.core.periodic_table import Element

    out = set()
    for el in elements:
        sym = str(el).strip()
        sym = sym[:1].upper() + sym[1:].lower()
        if not Element.is_valid_symbol(sym):
            raise XanesdbUserError(f"'{el}' is not an element symbol; give symbols such as Ti, Fe, Cu")
        out.add(sym)
    return out


def iter_bundled_structures(
    elements: list[str] | None = None,
    limit: int | None = None,
    path: Path | str | None = None,
) -> Iterator[StructureDoc]:
    """Yield the bundled structures as :class:`StructureDoc` (``source='bundled'``).

    Each structure is yielded once, also when it holds several absorber elements. The order is
    that of the file (deterministic).

    Parameters
    ----------
    elements
        Keep only structures containing at least one of these elements (e.g. ``["Ti", "V"]``);
        ``None`` keeps all.
    limit
        Yield at most this many structures; ``None`` for all.
    path
        Another file in the same format (default: :func:`bundled_data_path`).

    Yields
    ------
    StructureDoc
        With ``material_id`` (mp id for Materials Project structures,
        ``proto:<prototype>:<substitution>`` for substituted ones), provenance and tags.
    """
    if limit is not None and limit < 0:
        raise XanesdbUserError(f"limit must be >= 0, got {limit}")
    wanted = _normalise_elements(elements)
    records = _load_records(str(Path(path) if path is not None else bundled_data_path()))
    from pymatgen.core import Structure

    n = 0
    for rec in records:
        if limit is not None and n >= limit:
            return
        if wanted is not None and not (record_elements(rec) & wanted):
            continue
        structure = Structure.from_dict(rec["structure"])
        yield StructureDoc.from_structure(
            structure,
            material_id=rec["material_id"],
            source=BUNDLED_SOURCE,
            provenance=Provenance(**rec["provenance"]),
            tags=list(rec.get("tags", [])),
        )
        n += 1


def count_bundled_structures(
    elements: list[str] | None = None, path: Path | str | None = None
) -> dict[str, int]:
    """Number of bundled structures containing each element (a structure counts once per element).

    Parameters
    ----------
    elements
        Elements to count (default: the eight absorbers Ti, V, Cr, Mn, Fe, Co, Ni, Cu).
    path
        Another file in the same format (default: :func:`bundled_data_path`).

    Returns
    -------
    dict
        element -> number of structures.
    """
    els = sorted(_normalise_elements(elements or ["Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu"]))
    records = _load_records(str(Path(path) if path is not None else bundled_data_path()))
    counts = dict.fromkeys(els, 0)
    for rec in records:
        present = record_elements(rec)
        for el in els:
            if el in present:
                counts[el] += 1
    return counts
