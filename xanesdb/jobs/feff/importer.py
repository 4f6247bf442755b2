"""Import of finished FEFF runs: run folders (``xanesdb feff import DIR``) and the OmniXAS bundle.

Imported tasks keep their ``source`` ('omnixas', 'import', ...), their code and version
('FEFF 9.9.1') and their cards, and their ``task_id`` is prefixed by the source
(``omnixas/mp-704645:Cu:0:K:<hash>``), so they never mix with xanesdb's own FEFF10 tasks.

Run folders follow the Lightshow/OmniXAS layout ``<material>/FEFF-XANES/<iii>_<El>/`` with
``feff.inp`` and ``xmu.dat``, and the structure (``POSCAR``) in ``<material>/``. A folder with
``feff.inp`` but no ``xmu.dat`` becomes a failed task whose ``error`` says so.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from xanesdb.jobs.feff.parse import detect_code, parse_feff_cards, parse_xmu, scf_converged
from xanesdb.jobs.feff.sets import input_hash
from xanesdb.jobs.feff.task import count_failure, write_tasks
from xanesdb.jobs.feff.validate import validate_spectrum
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas import FeffTaskDoc, Provenance, StructureDoc, preset_hash, site_id as make_site_id, task_id as make_task_id

logger = logging.getLogger(__name__)

__all__ = ["ImportSummary", "find_run_folders", "read_run_folder", "import_feff_dirs", "omnixas_tasks", "import_omnixas", "write_tasks"]

_SITE_DIR = re.compile(r"^(\d+)_([A-Z][a-z]?)$")
_STRUCTURE_FILES = ("POSCAR", "CONTCAR", "structure.cif", "structure.json")


@dataclass
class ImportSummary:
    """Counts of one import."""

    n_folders: int = 0
    n_successful: int = 0
    n_failed: int = 0
    n_structures_added: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, doc: FeffTaskDoc) -> None:
        if doc.state == "successful":
            self.n_successful += 1
        else:
            self.n_failed += 1
            count_failure(self.failures, doc.error)


def find_run_folders(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (itself included) holding a ``feff.inp``, sorted."""
    root = Path(root)
    if not root.exists():
        raise XanesdbUserError(f"{root} does not exist; give a folder of FEFF runs (each with feff.inp and xmu.dat)")
    if (root / "feff.inp").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("feff.inp"))


def _site_of(folder: Path) -> tuple[str, int | None, str | None, Path | None]:
    """(material_id, absorbing_index, element, material folder) from the Lightshow layout."""
    m = _SITE_DIR.match(folder.name)
    if m:
        mat_dir = folder.parent.parent if folder.parent.name.upper().startswith("FEFF") else folder.parent
        return mat_dir.name, int(m.group(1)), m.group(2), mat_dir
    return folder.name, None, None, folder


def _absorber_from_inp(text: str) -> str | None:
    """Element of potential 0 (the absorber) in a feff.inp."""
    in_pot = False
    for line in text.splitlines():
        s = line.strip()
        if s.upper().startswith("POTENTIALS"):
            in_pot = True
            continue
        if in_pot and s and not s.startswith("*"):
            parts = s.split()
            if parts[0] == "0" and len(parts) >= 3:
                return parts[2]
            if not parts[0].isdigit():
                break
    return None


def _load_structure(mat_dir: Path | None):
    if mat_dir is None:
        return None, None
    for name in _STRUCTURE_FILES:
        p = mat_dir / name
        if p.is_file():
            from pymatgen.core import Structure

            try:
                return Structure.from_file(p), p
            except Exception as err:  # noqa: BLE001 - a broken structure file is a warning
                logger.warning("cannot read %s: %s", p, err)
    return None, None


def read_run_folder(folder: str | Path, source: str = "import", code: str | None = None, preset: str | None = None) -> tuple[FeffTaskDoc, Any]:
    """One run folder -> ``(FeffTaskDoc, Structure or None)``.

    Parameters
    ----------
    folder
        Folder with ``feff.inp`` (and ``xmu.dat`` when the run finished).
    source
        Source recorded on the task and prefixed to its id ('omnixas', 'import').
    code
        Code and version; default: read from ``xmu.dat``/``feff.out`` ('FEFF 9.9.1').
    preset
        Preset name recorded; default: the source.
    """
    folder = Path(folder)
    text = (folder / "feff.inp").read_text(errors="replace")
    cards = parse_feff_cards(text)
    material_id, index, element, mat_dir = _site_of(folder)
    element = element or _absorber_from_inp(text) or "X"
    warnings: list[str] = []
    structure, spath = _load_structure(mat_dir)
    if index is None:
        warnings.append("absorbing index unknown (folder is not '<iii>_<El>'); 0 recorded")
        index = 0
    if structure is not None:
        if index >= len(structure) or structure[index].specie.symbol != element:
            warnings.append(f"{spath.name} site {index} is not {element}; structure not linked")
            structure = None
    edge = cards.get("EDGE", "K").split()[0] if cards.get("EDGE") else "K"
    phash = preset_hash(cards)
    sid = make_site_id(material_id, element, index)
    detected = detect_code(folder)
    fields: dict[str, Any] = {}
    error = None
    if not (folder / "xmu.dat").is_file():
        error = "missing output: feff.inp but no xmu.dat (the run did not finish)"
    else:
        try:
            xmu = parse_xmu(folder / "xmu.dat")
        except ValueError as err:
            error = f"missing output: {err}"
        else:
            conv = scf_converged(folder) if "SCF" in cards else None
            error, warnings2 = validate_spectrum(xmu.energies, xmu.mu, element, edge, xmu.edge_energy, conv)
            warnings += warnings2
            fields = dict(edge_energy=xmu.edge_energy)
            if error is None:
                fields.update(energies=xmu.energies, mu=xmu.mu, mu0=xmu.mu0, chi=xmu.chi)
    code_name = code or detected or "FEFF (unknown version)"
    doc = FeffTaskDoc(
        task_id=make_task_id(sid, edge, phash, source=source),
        site_id=sid, material_id=material_id, element=element, absorbing_index=index, edge=edge,
        source=source, code=code_name, code_version=_version_of(code_name), preset=preset or source,
        preset_hash=phash, cards=cards, feff_inp=text, input_hash=input_hash(text),
        state="successful" if error is None else "failed", error=error, warnings=warnings,
        import_path=str(folder.resolve()), **fields,
    )
    return doc, structure


def _version_of(code: str) -> str | None:
    m = re.search(r"(\d+(?:\.\d+)+)", code)
    return m.group(1) if m else None


def import_feff_dirs(root: str | Path, db: Any, source: str = "import", code: str | None = None,
                     with_structures: bool = True, progress: Any = None) -> ImportSummary:
    """Import every run folder under ``root`` into ``feff_tasks`` (and missing structures).

    Structures found beside the runs are added to ``structures`` only when that material_id is
    not there yet (they are never overwritten).
    """
    folders = find_run_folders(root)
    if not folders:
        raise XanesdbUserError(f"no feff.inp found under {root}; give a folder of FEFF run folders")
    summary = ImportSummary(n_folders=len(folders))
    docs = []
    structures: dict[str, Any] = {}
    for folder in folders:
        doc, structure = read_run_folder(folder, source=source, code=code)
        docs.append(doc)
        summary.add(doc)
        if structure is not None:
            structures.setdefault(doc.material_id, structure)
        if progress is not None:
            progress()
    write_tasks(docs, db)
    if with_structures:
        for mid, structure in structures.items():
            sdoc = StructureDoc.from_structure(
                structure, material_id=mid, source="files",
                provenance=Provenance(origin=source if source != "import" else "file", source_id=mid,
                                      reference=str(Path(root).resolve()), note="structure file beside imported FEFF runs"),
            )
            res = db["structures"].update_one({"material_id": mid}, {"$setOnInsert": sdoc.to_mongo()}, upsert=True)
            summary.n_structures_added += int(res.upserted_id is not None)
    return summary


def omnixas_cards(parameters: dict) -> dict[str, str]:
    """The OmniXAS FEFF cards, in the form :func:`parse_feff_cards` gives for their feff.inp."""
    return parse_feff_cards("\n".join(parameters["feff_inp_cards_verbatim"]))


def omnixas_tasks(spectra_path: str | Path, parameters_path: str | Path | None = None) -> Iterator[FeffTaskDoc]:
    """FeffTaskDocs (source 'omnixas') from ``feff9_site_spectra.json.gz`` and ``parameters.json``.

    Runs that OmniXAS lists as failed (``report.json``'s ``failed_no_file``) become failed tasks.
    """
    spectra_path = Path(spectra_path)
    parameters_path = Path(parameters_path) if parameters_path else spectra_path.parent / "parameters.json"
    if not spectra_path.is_file():
        raise XanesdbUserError(f"{spectra_path} not found; give the path of feff9_site_spectra.json.gz")
    if not parameters_path.is_file():
        raise XanesdbUserError(f"{parameters_path} not found; it must sit beside the spectra file")
    parameters = json.loads(parameters_path.read_text())
    cards = omnixas_cards(parameters)
    phash = preset_hash(cards)
    code = parameters.get("feff_version", "FEFF 9.9.1")
    opener = gzip.open if spectra_path.suffix == ".gz" else open
    with opener(spectra_path, "rt") as fh:
        records = json.load(fh)
    for r in records:
        element = r.get("absorbing_element", "Cu")
        edge = r.get("edge", "K")
        sid = make_site_id(r["material_id"], element, int(r["absorbing_index"]))
        error, warnings = validate_spectrum(r["energy"], r["mu"], element, edge)
        yield FeffTaskDoc(
            task_id=make_task_id(sid, edge, phash, source="omnixas"), site_id=sid, material_id=r["material_id"],
            element=element, absorbing_index=int(r["absorbing_index"]), edge=edge, source="omnixas",
            code=r.get("feff_version", code), code_version=_version_of(r.get("feff_version", code)),
            preset="omnixas", preset_hash=phash, cards=cards,
            state="successful" if error is None else "failed", error=error, warnings=warnings,
            energies=r["energy"] if error is None else [], mu=r["mu"] if error is None else [],
            import_path=str(spectra_path.resolve()),
        )
    for rel in parameters.get("failed_runs_report_json", {}).get("feff_xanes", []):
        parts = rel.split("/")
        m = _SITE_DIR.match(parts[-1])
        if not m:
            continue
        mid, index, element = parts[-3], int(m.group(1)), m.group(2)
        sid = make_site_id(mid, element, index)
        yield FeffTaskDoc(
            task_id=make_task_id(sid, "K", phash, source="omnixas"), site_id=sid, material_id=mid,
            element=element, absorbing_index=index, edge="K", source="omnixas", code=code,
            code_version=_version_of(code), preset="omnixas", preset_hash=phash, cards=cards, state="failed",
            error="missing output: no xmu.dat (OmniXAS report.json failed_no_file)", import_path=rel,
        )


def import_omnixas(db: Any, spectra_path: str | Path, parameters_path: str | Path | None = None) -> ImportSummary:
    """Load the OmniXAS Cu FEFF9 bundle into ``feff_tasks`` (idempotent: upserts on task_id)."""
    summary = ImportSummary()
    docs = []
    for doc in omnixas_tasks(spectra_path, parameters_path):
        summary.add(doc)
        docs.append(doc)
    summary.n_folders = len(docs)
    write_tasks(docs, db)
    return summary
