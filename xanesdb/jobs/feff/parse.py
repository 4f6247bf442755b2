"""Parsing FEFF outputs: ``xmu.dat`` columns, the code that wrote them, and ``feff.inp`` cards."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["XmuData", "parse_xmu", "parse_feff_cards", "detect_code", "scf_converged"]

#: feff.inp sections that are per site (not cards)
_SECTIONS = {"POTENTIALS", "ATOMS", "END"}


@dataclass
class XmuData:
    """The columns of ``xmu.dat`` (omega, e, k, mu, mu0, chi) and what the header says.

    ``edge_energy`` is omega - e (FEFF's edge, eV); ``code`` is the code named in the header.
    """

    energies: list[float]
    e_rel: list[float]
    k: list[float]
    mu: list[float]
    mu0: list[float]
    chi: list[float]
    edge_energy: float | None = None
    code: str | None = None
    header: list[str] = field(default_factory=list)


def parse_xmu(path: str | Path) -> XmuData:
    """Read ``xmu.dat`` (FEFF9 or FEFF10); raises ``ValueError`` when it has no data rows."""
    path = Path(path)
    header: list[str] = []
    rows: list[list[float]] = []
    for line in path.read_text(errors="replace").splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            header.append(s)
            continue
        parts = s.split()
        if len(parts) < 6:
            continue
        try:
            rows.append([float(p.replace("D", "E")) for p in parts[:6]])
        except ValueError:
            # FEFF prints NaN as 'NaN' or '********' when a number overflows
            rows.append([_to_float(p) for p in parts[:6]])
    if not rows:
        raise ValueError(f"{path} has no data rows")
    cols = list(zip(*rows))
    energies, e_rel = list(cols[0]), list(cols[1])
    edge = None
    finite = [(o - e) for o, e in zip(energies, e_rel) if math.isfinite(o) and math.isfinite(e)]
    if finite:
        edge = sum(finite) / len(finite)
    return XmuData(energies=energies, e_rel=e_rel, k=list(cols[2]), mu=list(cols[3]), mu0=list(cols[4]),
                   chi=list(cols[5]), edge_energy=edge, code=_code_from_header(header), header=header)


def _to_float(text: str) -> float:
    try:
        return float(text.replace("D", "E"))
    except ValueError:
        return float("nan")


def _code_from_header(header: list[str]) -> str | None:
    for line in header[:3]:
        m = re.search(r"(FEFF\s*\d+(?:\.\d+)*)", line, re.IGNORECASE)
        if m:
            return re.sub(r"\s+", " ", m.group(1)).upper().replace("FEFF", "FEFF ").replace("  ", " ").strip()
    return None


def detect_code(folder: str | Path) -> str | None:
    """The FEFF version named in ``xmu.dat``'s header or ``feff.out`` ('FEFF 9.9.1'), if any."""
    folder = Path(folder)
    if (folder / "xmu.dat").is_file():
        with open(folder / "xmu.dat", errors="replace") as fh:
            head = [next(fh, "") for _ in range(3)]
        code = _code_from_header([h.strip() for h in head])
        if code:
            return code
    out = folder / "feff.out"
    if out.is_file():
        m = re.search(r"Launching FEFF version\s+(FEFF\s*[\d.]+)", out.read_text(errors="replace"))
        if m:
            return _code_from_header([m.group(1)])
    return None


def atoms_rows(text: str) -> list[list[str]]:
    """The rows of a ``feff.inp``'s ATOMS card, each split into its fields (comment lines left out)."""
    rows, inside = [], False
    for line in text.splitlines():
        s = line.strip()
        if s.upper().startswith("ATOMS"):
            inside = True
            continue
        if inside and s and not s.startswith("*"):
            if s.upper().startswith("END"):
                break
            rows.append(s.split())
    return rows


def parse_feff_cards(text: str) -> dict[str, str]:
    """Cards of a ``feff.inp`` text by name (``POTENTIALS``/``ATOMS`` and the header left out).

    Continuation lines (e.g. ``k_grid`` under ``EGRID``) are appended to their card, one per line.
    """
    cards: dict[str, str] = {}
    current: str | None = None
    in_section = False
    for raw in text.splitlines():
        line = raw.split("*")[0].rstrip() if not raw.lstrip().startswith("*") else ""
        s = line.strip()
        if not s:
            continue
        word = s.split()[0]
        if word.upper() in _SECTIONS:
            in_section = word.upper() != "END"
            current = None
            continue
        if word.upper() == "TITLE":
            continue
        if word.isupper() and word.isalpha() or word.upper() in {"S02"} or re.fullmatch(r"[A-Z][A-Z0-9_]+", word):
            in_section = False
            current = word.upper()
            cards[current] = " ".join(s.split()[1:])
        elif not in_section and current is not None:
            cards[current] = (cards[current] + "\n" + " ".join(s.split())).strip("\n") if cards[current] else "\n" + " ".join(s.split())
    return cards


def scf_converged(folder: str | Path) -> bool | None:
    """Whether FEFF's self-consistent potential converged (None when no SCF ran or no log says)."""
    folder = Path(folder)
    texts = []
    for name in ("log1.dat", "feff.out", "feff_run.log"):
        p = folder / name
        if p.is_file():
            texts.append(p.read_text(errors="replace"))
    text = "\n".join(texts)
    if not re.search(r"self-consistent|SCF|scf", text):
        return None
    # FEFF's pot gives up on charge counts it cannot fix ("Bad counts found repeatedly - pot
    # will exit now") and writes no pot.bin: a non-convergence, whatever stage crashes next
    if re.search(r"(Bad counts found repeatedly|not converge|convergence not reached|Convergence was not)",
                 text, re.IGNORECASE):
        return False
    if re.search(r"Convergence reached", text, re.IGNORECASE):
        return True
    return None
