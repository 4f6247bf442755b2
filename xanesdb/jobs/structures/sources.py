"""Structure sources: the Materials Project, the bundled set and structure files -> ``structures``.

Every source yields :class:`~xanesdb.schemas.StructureDoc` documents that are upserted on
``material_id`` into the ``structures`` collection. A batch is read and checked completely
before anything is written, so a bad file or a failed request writes nothing. Re-running a
fetch changes no counts: documents whose content is unchanged are not rewritten (their
``last_updated`` stays, so incremental builders do not redo them).

- ``mp``: DFT-relaxed oxides containing a given element, through the real ``mp-api`` client
  (``MPRester(...).materials.summary.search``); only oxides pass (O present and pymatgen's
  ``oxide_type`` says 'oxide', so peroxides, superoxides and ozonides are dropped). The key comes
  from ``MP_API_KEY`` only (:func:`xanesdb.platform.settings.mp_api_key`) and is never stored,
  printed or logged; ``endpoint`` points the client at another server (tests use
  :mod:`xanesdb.testing.fake_mp`).
- ``bundled``: :func:`xanesdb.platform.bundled.iter_bundled_structures`.
- ``files``: a folder (searched recursively) or a list of CIF, POSCAR/CONTCAR, ``*.vasp`` and
  JSON files (a pymatgen ``Structure`` dict, a record with ``structure`` and an mp id, or a list
  of either); ``material_id`` is ``file:<path relative to the folder, without suffix>`` or the
  mp id of a JSON record.

They are written by :func:`xanesdb.jobs.structures.store.write_structures`; the fetch API that
chains the two is :func:`xanesdb.jobs.structures.fetch_structures`.

Examples
--------
>>> from xanesdb.jobs.structures.sources import bundled_structure_docs
>>> docs = bundled_structure_docs(["Fe"], limit=10)       # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import mp_api_key
from xanesdb.schemas.structure import Provenance, StructureDoc, structure_problem

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = [
    "SOURCES",
    "DEFAULT_ABSORBERS",
    "MP_LICENCE",
    "CONTENT_FIELDS",
    "FetchSummary",
    "ProgressCallback",
    "normalise_elements",
    "is_oxide",
    "mp_rester",
    "mp_structure_docs",
    "bundled_structure_docs",
    "file_structure_docs",
]

#: the structure sources, as ``StructureDoc.source`` spells them
SOURCES = ("bundled", "mp", "files")
#: the paper's absorbers, the default element set of the ``mp`` source
DEFAULT_ABSORBERS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
#: licence of Materials Project data
MP_LICENCE = "CC BY 4.0"
#: file names read by the ``files`` source (lower case), besides the suffixes below
_POSCAR_NAMES = ("poscar", "contcar")
_SUFFIXES = (".cif", ".vasp", ".poscar", ".json", ".json.gz")
_MP_ID = re.compile(r"^(mp|mvc)-\d+$")
#: fields compared to decide whether a stored document is unchanged
CONTENT_FIELDS = ("source", "formula", "elements", "nsites", "structure", "provenance", "tags")

#: ``progress(description, completed, total)``: called while a source is read and written
ProgressCallback = Callable[[str, int, "int | None"], None]


class FetchSummary(BaseModel):
    """What one fetch from a structure source did."""

    source: str = Field(..., description="Structure source: 'bundled', 'mp' or 'files'.")
    n_total: int = Field(0, description="Structures the source gave (after filters and limit).")
    n_new: int = Field(0, description="Of those, material ids not in the collection before.")
    n_updated: int = Field(0, description="Already present from the same source, content changed.")
    n_unchanged: int = Field(0, description="Already present with the same content; not rewritten.")
    n_kept_other_source: int = Field(
        0, description="Material ids held by another source; the stored document was kept."
    )
    n_skipped: int = Field(0, description="Structures the source returned but the filters dropped.")
    skipped: dict[str, int] = Field(default_factory=dict, description="Reason -> structures dropped.")
    n_in_collection: int = Field(0, description="Documents in 'structures' after the fetch.")
    material_ids: list[str] = Field(default_factory=list, description="Material ids of the structures.")
    database_version: str | None = Field(None, description="Materials Project release, for 'mp'.")


def _tick(progress: ProgressCallback | None, description: str, completed: int, total: int | None) -> None:
    if progress is not None:
        progress(description, completed, total)


def normalise_elements(elements: Iterable[str] | None) -> list[str] | None:
    """Element symbols in canonical spelling ('fe' -> 'Fe'), order kept, duplicates dropped.

    Raises
    ------
    XanesdbUserError
        For anything that is not an element symbol.
    """
    if elements is None:
        return None
    from pymatgen.core.periodic_table import Element

    out: list[str] = []
    for el in elements:
        sym = str(el).strip()
        sym = sym[:1].upper() + sym[1:].lower()
        if not Element.is_valid_symbol(sym):
            raise XanesdbUserError(f"'{el}' is not an element symbol; give symbols such as Ti, Fe, Cu")
        if sym not in out:
            out.append(sym)
    return out or None


def is_oxide(structure: Structure) -> tuple[bool, str]:
    """Whether a structure is an oxide: O present and O2- the oxygen anion.

    pymatgen's ``oxide_type`` looks at O-O distances: 'peroxide', 'superoxide' and 'ozonide'
    (O-O bonded anions) and 'hydroxide' are not oxides here.

    Returns
    -------
    tuple
        (is an oxide, reason when not: 'no oxygen' or the oxide type).
    """
    from pymatgen.analysis.structure_analyzer import oxide_type

    if "O" not in {el.symbol for el in structure.composition.elements}:
        return False, "no oxygen"
    kind = oxide_type(structure)
    return (True, "oxide") if kind == "oxide" else (False, str(kind))


# ----------------------------------------------------------------------------- mp
def _canonical_mp_id(value: Any) -> str:
    """'mp-2657' from an emmet AlphaID ('mp-aaaaadyf'), an MPID or a string."""
    string = getattr(value, "string", None)
    return str(string if string is not None else value)


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def mp_rester(endpoint: str | None = None) -> Any:
    """An ``MPRester`` with the key from ``MP_API_KEY`` (context manager).

    Parameters
    ----------
    endpoint
        API base URL; None uses mp-api's default (``MP_API_ENDPOINT`` or the public API).

    Raises
    ------
    XanesdbUserError
        When ``MP_API_KEY`` is not set, the key is malformed or the API cannot be reached.
    """
    key = mp_api_key()
    if key is None:
        raise XanesdbUserError(
            "set MP_API_KEY to your Materials Project API key (https://next-gen.materialsproject.org/api) "
            "to read the Materials Project, or use the bundled structures (source 'bundled')"
        )
    import requests
    from mp_api.client import MPRester
    from mp_api.client.core import MPRestError

    try:
        return MPRester(api_key=key, endpoint=endpoint, mute_progress_bars=True)
    except MPRestError as err:
        raise XanesdbUserError(f"Materials Project client refused to start: {_scrub(str(err), key)}"
                               .replace("\n", " ")) from None
    except (requests.RequestException, ValueError, KeyError) as err:
        where = endpoint or "the Materials Project API"
        raise XanesdbUserError(
            f"cannot reach {where} ({type(err).__name__}); check the network, or use the bundled structures "
            "(source 'bundled')"
        ) from None


def _db_version(mpr: Any) -> str | None:
    """The MP database release from the client (``db_version``, or the older getter)."""
    version = getattr(mpr, "db_version", None)
    if not version and hasattr(mpr, "get_database_version"):
        version = mpr.get_database_version()
    return str(version) if version else None


def _mp_error(err: Exception, endpoint: str | None) -> XanesdbUserError:
    msg = _scrub(str(err), mp_api_key()).replace("\n", " ")
    if "401" in msg or "403" in msg:
        return XanesdbUserError(f"the Materials Project API refused the key in MP_API_KEY: {msg[:300]}; "
                                "check the key")
    return XanesdbUserError(f"Materials Project request failed ({type(err).__name__}: {msg[:300]}); "
                            f"check the network or the API endpoint ({endpoint or 'default'})")


def mp_structure_docs(
    elements: Sequence[str] | None = None,
    limit: int | None = None,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[StructureDoc], str | None, dict[str, int]]:
    """Oxides containing any of ``elements`` from the Materials Project (nothing written).

    For each element, ``materials.summary.search(elements=[el, "O"], deprecated=False)`` with
    the fields ``material_id``, ``structure``, ``formula_pretty``; then the oxide check.

    Parameters
    ----------
    elements
        Elements the oxides must contain (one search each); default :data:`DEFAULT_ABSORBERS`.
    limit
        At most this many structures in all (and at most this many requested per element).
    endpoint
        API base URL (tests: the fake server's).
    progress
        Called as structures are checked.

    Returns
    -------
    tuple
        (documents, MP database version, reason -> number of structures dropped).
    """
    import requests
    from mp_api.client.core import MPRestError

    elements = normalise_elements(elements) or list(DEFAULT_ABSORBERS)
    docs: dict[str, StructureDoc] = {}
    skipped: dict[str, int] = {}
    with mp_rester(endpoint) as mpr:
        db_version = _db_version(mpr)
        base = (endpoint or getattr(mpr, "endpoint", "") or "").rstrip("/")
        for el in elements:
            if limit is not None and len(docs) >= limit:
                break
            kwargs: dict[str, Any] = {}
            if limit is not None:
                kwargs["chunk_size"] = max(1, min(limit, 1000))
                kwargs["num_chunks"] = math.ceil(limit / kwargs["chunk_size"])
            _tick(progress, f"mp: searching {el} oxides", 0, None)
            try:
                found = mpr.materials.summary.search(
                    elements=[el, "O"] if el != "O" else ["O"], deprecated=False,
                    fields=["material_id", "structure", "formula_pretty"], **kwargs,
                )
            except (MPRestError, requests.RequestException) as err:
                raise _mp_error(err, endpoint) from None
            for i, hit in enumerate(found):
                _tick(progress, f"mp: checking {el} oxides", i + 1, len(found))
                mid = _canonical_mp_id(hit.material_id)
                if mid in docs or (limit is not None and len(docs) >= limit):
                    continue
                structure = hit.structure
                problem = structure_problem(structure)
                if problem is not None:  # never stored: it could crash labelling (spglib)
                    skipped["invalid structure"] = skipped.get("invalid structure", 0) + 1
                    logger.warning("dropping %s: %s", mid, problem)
                    continue
                ok, why = is_oxide(structure)
                if not ok:
                    skipped[f"not an oxide ({why})"] = skipped.get(f"not an oxide ({why})", 0) + 1
                    logger.info("dropping %s %s: %s", mid, structure.composition.reduced_formula, why)
                    continue
                docs[mid] = StructureDoc.from_structure(
                    structure,
                    material_id=mid,
                    source="mp",
                    provenance=Provenance(
                        origin="materials_project",
                        reference=f"{base}/materials/summary/?material_ids={mid}",
                        licence=MP_LICENCE,
                        source_id=mid,
                        database_version=db_version,
                    ),
                )
    return list(docs.values()), db_version, skipped


# ----------------------------------------------------------------------------- bundled
def bundled_structure_docs(
    elements: Sequence[str] | None = None, limit: int | None = None
) -> list[StructureDoc]:
    """The bundled structures (``source='bundled'``) containing any of ``elements``."""
    from xanesdb.platform.bundled import iter_bundled_structures

    return list(iter_bundled_structures(elements=normalise_elements(elements), limit=limit))


# ----------------------------------------------------------------------------- files
def _is_structure_file(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(_POSCAR_NAMES) or name.endswith(_SUFFIXES)


def _stem(rel: Path) -> str:
    name = rel.name
    for suffix in (".json.gz", ".json", ".cif", ".vasp", ".poscar"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return (rel.parent / name).as_posix()


def _collect_files(path: str | Path | Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(file, path relative to its root) for a folder, a file or a list of them."""
    items = [path] if isinstance(path, (str, Path)) else list(path)
    if not items:
        raise XanesdbUserError("no structure files given; pass a folder or files (CIF, POSCAR, vasp, JSON)")
    out: list[tuple[Path, Path]] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _is_structure_file(f))
            out.extend((f, f.relative_to(p)) for f in found)
            if not found:
                raise XanesdbUserError(
                    f"no structure files (CIF, POSCAR/CONTCAR, *.vasp, JSON) under {p}; give another folder"
                )
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            raise XanesdbUserError(f"{p} does not exist; give a folder or a structure file")
    return out


def _structure_from_dict(d: Any, where: str) -> Structure:
    from pymatgen.core import Structure

    if not isinstance(d, dict) or "lattice" not in d or "sites" not in d:
        raise XanesdbUserError(f"{where} is not a pymatgen Structure dict (needs 'lattice' and 'sites')")
    try:
        return Structure.from_dict(d)
    except Exception as err:  # noqa: BLE001 - any parse failure is the file's fault
        raise XanesdbUserError(f"{where} holds a malformed structure ({type(err).__name__}: {err})") from None


def _json_records(file: Path, rel: Path) -> list[tuple[str, Structure, str | None]]:
    """(material_id, structure, mp id or None) for every structure in a JSON file."""
    import gzip

    try:
        if file.name.lower().endswith(".gz"):
            with gzip.open(file, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
        else:
            data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError) as err:
        raise XanesdbUserError(f"cannot read {file}: not valid JSON ({err}); fix or remove the file") from None
    except RecursionError:
        raise XanesdbUserError(f"cannot read {file}: its JSON is nested more than Python's parser allows "
                               "(a structure needs a few levels); fix or remove the file") from None
    records = data if isinstance(data, list) else [data]
    if not records:
        raise XanesdbUserError(f"{file} holds an empty list; give structures or remove the file")
    stem = _stem(rel)
    out = []
    for i, rec in enumerate(records):
        where = f"{file}" + (f" record {i}" if len(records) > 1 else "")
        if isinstance(rec, dict) and "structure" in rec and "sites" not in rec:
            structure = _structure_from_dict(rec["structure"], where)
            ids = [rec.get("material_id"), rec.get("entry_id"), (rec.get("data") or {}).get("material_id")]
            mp_id = next((str(x) for x in ids if x is not None and _MP_ID.match(str(x))), None)
        else:
            structure = _structure_from_dict(rec, where)
            mp_id = None
        mid = mp_id or (f"file:{stem}" if len(records) == 1 else f"file:{stem}#{i}")
        out.append((mid, structure, mp_id))
    return out


def _read_structure_file(file: Path) -> Structure:
    import warnings

    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(file)
    except Exception as err:  # noqa: BLE001 - pymatgen raises many kinds for a bad file
        raise XanesdbUserError(
            f"cannot read {file} as a structure ({type(err).__name__}: {str(err)[:200]}); "
            "fix or remove the file"
        ) from None
    if len(structure) == 0:
        raise XanesdbUserError(f"{file} holds no atoms; fix or remove the file")
    return structure


def file_structure_docs(
    path: str | Path | Sequence[str | Path],
    elements: Sequence[str] | None = None,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[StructureDoc], dict[str, int]]:
    """Structures read from files (``source='files'``); every file is parsed before returning.

    Parameters
    ----------
    path
        A folder (searched recursively), a file, or a list of folders/files.
    elements
        Keep only structures containing any of these elements.
    limit
        At most this many structures (all files are still checked).
    progress
        Called per file read.

    Returns
    -------
    tuple
        (documents, reason -> number of structures dropped by the element filter).

    Raises
    ------
    XanesdbUserError
        Naming the file, for an unreadable or malformed file, or for two files that give the
        same material id.
    """
    files = _collect_files(path)
    wanted = set(normalise_elements(elements) or [])
    docs: dict[str, StructureDoc] = {}
    origin_of: dict[str, Path] = {}
    skipped: dict[str, int] = {}
    for i, (file, rel) in enumerate(files):
        _tick(progress, "files: reading", i + 1, len(files))
        if file.name.lower().endswith((".json", ".json.gz")):
            records = _json_records(file, rel)
        else:
            records = [(f"file:{_stem(rel)}", _read_structure_file(file), None)]
        for mid, structure, mp_id in records:
            if mid in docs:
                raise XanesdbUserError(
                    f"{file} and {origin_of[mid]} both give material id {mid}; rename one of them"
                )
            origin_of[mid] = file
            problem = structure_problem(structure)
            if problem is not None:  # checked before anything is stored: labelling would crash on it
                where = f"{file}" + (f" ({mid})" if file.name.lower().endswith((".json", ".json.gz")) else "")
                raise XanesdbUserError(f"{where}: {problem}; fix or remove the file (nothing was stored)")
            if wanted and not wanted & {el.symbol for el in structure.composition.elements}:
                skipped["no requested element"] = skipped.get("no requested element", 0) + 1
                continue
            docs[mid] = StructureDoc.from_structure(
                structure,
                material_id=mid,
                source="files",
                provenance=Provenance(
                    origin="file",
                    reference=str(file.resolve()),
                    source_id=mp_id or rel.as_posix(),
                    note=f"read from {rel.as_posix()}" if mp_id else None,
                ),
            )
    out = list(docs.values())
    if limit is not None:
        out = out[:limit]
    return out, skipped
