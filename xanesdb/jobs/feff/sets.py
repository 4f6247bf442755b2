"""FEFF K-edge XANES input sets: the ``mp`` and ``fast`` presets on top of pymatgen's ``MPXANESSet``.

A preset fixes every card that is not per site (``POTENTIALS`` and ``ATOMS`` are per site) plus the
cluster radius; :func:`preset_cards` lists them and :func:`xanesdb.schemas.preset_hash` hashes
them, so the hash names the physics, and ``feff.inp`` text is a pure function of structure, site
and preset (written twice, byte-identical), which makes the task key a true dedup key.

Examples
--------
>>> from xanesdb.jobs.feff.sets import get_preset, feff_input_text
>>> preset = get_preset("fast")
>>> text = feff_input_text(structure, 0, preset)          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.schemas import preset_hash

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from pymatgen.io.feff.sets import MPXANESSet

logger = logging.getLogger(__name__)

__all__ = [
    "FeffPreset",
    "PRESETS",
    "XANES_STAGES",
    "get_preset",
    "feff_input_set",
    "feff_input_text",
    "preset_cards",
    "input_equivalent",
    "input_hash",
    "stages_for_cards",
    "preset_hash_of",
]

#: FEFF10 stages a K-edge XANES run needs. DMDW, LDOS, CRPA, OPCONSAT, SFCONV, COMPTON, EELS
#: and RHORRP only produce other properties: on CuO (mp-704645, Cu K, FMS 6 A) the spectrum with
#: these stages only was identical (max |diff| 0.0 over all xmu.dat columns) and took 48 s
#: instead of 106 s (LDOS alone 68 s). SCREEN is added when the core hole is RPA.
XANES_STAGES: tuple[str, ...] = ("rdinp", "atomic", "pot", "xsph", "fms", "mkgtr", "path", "genfmt", "ff2x")


@dataclass(frozen=True)
class FeffPreset:
    """A named set of FEFF settings for K-edge XANES.

    Parameters
    ----------
    name
        Preset name, stored on every task ('fast', 'mp').
    radius
        Cluster radius (Angstrom) of the ATOMS list written by pymatgen.
    user_tag_settings
        Changes to ``MPXANESSet``'s cards (pymatgen's ``user_tag_settings``; ``_del`` removes).
    description
        One line for ``xanesdb feff status`` and the README.
    """

    name: str
    radius: float = 10.0
    user_tag_settings: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def with_cards(self, **cards: Any) -> FeffPreset:
        """A copy with some cards changed (used by the error ladder)."""
        uts = {k: v for k, v in self.user_tag_settings.items()}
        dels = [d for d in uts.get("_del", []) if d not in cards]
        uts.update(cards)
        if dels:
            uts["_del"] = dels
        else:
            uts.pop("_del", None)
        return replace(self, user_tag_settings=uts)


#: the presets: ``mp`` is the Materials Project's MPXANESSet as it is; ``fast`` drops SCF and the
#: LDOS card and uses a 6 A full-multiple-scattering radius (see README for the measurements);
#: ``scf`` keeps a self-consistent potential over a 3 A cluster (first shell) with the same FMS
#: radius: without SCF FEFF places the Fermi level too high, cuts the rising edge and pre-edge off
#: and puts the white line 4-5 eV too close to the edge (hematite: +4.5 eV against +9 measured;
#: with SCF 3 A, +7..+9), at about 5x the cost of ``fast`` (229 s against 45 s on busy cores);
#: ``scflite`` is ``scf`` with a 4.5 A FMS radius: on hematite 17 s against 223 s for ``scf`` on one
#: core, normalised spectra within RMSE 0.035 (Pearson 0.996) of ``scf`` from -8 to +40 eV.
#: ``scfwide`` is ``scflite`` with the XANES range to k = 5.0 1/A (95 eV above FEFF's Fermi level
#: instead of 52): with a self-consistent potential the d0 oxyanions (chromate, vanadate,
#: orthotitanate) put their pre-edge peak at the Fermi level and the main edge 12-17 eV above it,
#: so ``scflite`` ends 35-38 eV past their half step, short of the +44.5 eV the aligned models read.
#: ``scfrpa`` is ``scflite`` with the core hole screened in the random-phase approximation (FEFF's
#: ``COREHOLE RPA``, as OmniXAS's FEFF9 runs) instead of the unscreened final-state rule (``FSR``):
#: about 1.2x the cost; ``benchmarks/bench_core_hole.py`` compares the two on measured references.
PRESETS: dict[str, FeffPreset] = {
    "mp": FeffPreset(
        name="mp",
        radius=10.0,
        user_tag_settings={},
        description="Materials Project MPXANESSet: SCF 4.5 A, FMS 7.5 A, FSR core hole, cluster 10 A.",
    ),
    "fast": FeffPreset(
        name="fast",
        radius=8.0,
        user_tag_settings={"_del": ["SCF", "LDOS"], "FMS": "6.0 0"},
        description="No SCF, FMS 6 A, FSR core hole, cluster 8 A (MPXANESSet otherwise).",
    ),
    "scf": FeffPreset(
        name="scf",
        radius=8.0,
        user_tag_settings={"_del": ["LDOS"], "SCF": "3.0 0 30 0.2 1", "FMS": "6.0 0"},
        description="SCF 3 A, FMS 6 A, FSR core hole, cluster 8 A: measured-like white line and pre-edge.",
    ),
    "scflite": FeffPreset(
        name="scflite",
        radius=8.0,
        user_tag_settings={"_del": ["LDOS"], "SCF": "3.0 0 30 0.2 1", "FMS": "4.5 0"},
        description="SCF 3 A, FMS 4.5 A, FSR core hole, cluster 8 A: the edge region of scf at ~1/10 of its cost.",
    ),
    "scfwide": FeffPreset(
        name="scfwide",
        radius=8.0,
        user_tag_settings={"_del": ["LDOS"], "SCF": "3.0 0 30 0.2 1", "FMS": "4.5 0", "XANES": "5.0 .04 .1"},
        description="scflite with the XANES range to 95 eV above the Fermi level: d0 oxyanions' whole edge.",
    ),
    "scfrpa": FeffPreset(
        name="scfrpa",
        radius=8.0,
        user_tag_settings={"_del": ["LDOS"], "SCF": "3.0 0 30 0.2 1", "FMS": "4.5 0", "COREHOLE": "RPA"},
        description="scflite with an RPA-screened core hole instead of FSR (adds the SCREEN stage).",
    ),
}


def get_preset(name: str | FeffPreset) -> FeffPreset:
    """The preset called ``name`` (a :class:`FeffPreset` passes through)."""
    if isinstance(name, FeffPreset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise XanesdbUserError(f"unknown FEFF preset {name!r}; use one of {', '.join(sorted(PRESETS))}") from None


def feff_input_set(structure: Structure, absorbing_index: int, preset: str | FeffPreset = "fast", edge: str = "K") -> MPXANESSet:
    """pymatgen's ``MPXANESSet`` for one absorbing site under a preset."""
    from pymatgen.io.feff.sets import MPXANESSet

    preset = get_preset(preset)
    if not 0 <= absorbing_index < len(structure):
        raise XanesdbUserError(
            f"absorbing index {absorbing_index} is outside the structure ({len(structure)} sites)"
        )
    # deep copies: MPXANESSet mutates user_tag_settings (pops '_del')
    uts = {k: (list(v) if isinstance(v, list) else v) for k, v in preset.user_tag_settings.items()}
    return MPXANESSet(absorbing_index, structure, edge=edge, radius=preset.radius, user_tag_settings=uts)


def _card_text(value: Any) -> str:
    """A card's value as FEFF text (pymatgen's Tags holds lists for some)."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def preset_cards(preset: str | FeffPreset, edge: str = "K") -> dict[str, str]:
    """Every non-per-site card of a preset, by name, plus the cluster radius (``RADIUS``).

    This is what :func:`xanesdb.schemas.preset_hash` hashes: the same for every site.
    """
    from pymatgen.io.feff.sets import MPXANESSet

    preset = get_preset(preset)
    config = dict(MPXANESSet.CONFIG)
    config["EDGE"] = edge
    uts = dict(preset.user_tag_settings)
    for key in uts.pop("_del", []):
        config.pop(key, None)
    config.update(uts)
    cards = {k: _card_text(v) for k, v in config.items()}
    cards["RADIUS"] = f"{preset.radius:g}"
    return dict(sorted(cards.items()))


def feff_input_text(structure: Structure, absorbing_index: int, preset: str | FeffPreset = "fast", edge: str = "K") -> str:
    """The complete ``feff.inp`` text for one site: pymatgen's ``MPXANESSet`` cards, and the ATOMS
    card written by :func:`atoms_card`.

    Deterministic on any machine: the same structure, site and preset give byte-identical text
    (and :func:`input_hash`), whatever numpy, BLAS or CPU computed the cluster.
    """
    inp = feff_input_set(structure, absorbing_index, preset, edge=edge).all_input()
    parts = [str(inp[key]) for key in ("HEADER", "PARAMETERS", "POTENTIALS") if key in inp]
    if "ATOMS" in inp:
        parts.append(atoms_card(inp["ATOMS"]))
    return "\n\n".join(parts)


def atoms_card(atoms) -> str:
    """The ATOMS card of a pymatgen ``Atoms`` (its cluster and potential indices), canonical.

    pymatgen writes the rows in the order of full-precision distances, so the last bits of the
    linear algebra that built the cluster (they differ between numpy/BLAS builds and CPUs) swap
    atoms at the same distance and print ``-2.8e-17`` for a zero: 60 % of the bundled inputs came
    out different on another machine. Here every coordinate is first rounded to 1e-9 Å (far below
    FEFF's 5 printed decimals, far above that noise), the distance is computed from the rounded
    coordinates in plain float arithmetic, and the rows are sorted by (distance, potential, x, y,
    z) and numbered in that order.
    """
    import math

    cluster = atoms.cluster
    rows = []
    for idx, site in enumerate(cluster):
        x, y, z = (float(v) for v in np.round(np.asarray(site.coords, dtype=float), 9) + 0.0)
        ipot = 0 if idx == 0 else int(atoms.pot_dict[site.specie.symbol])
        rows.append((round(math.sqrt(x * x + y * y + z * z), 9), ipot, x, y, z, site.specie.symbol))
    rows.sort()
    lines = ["ATOMS", "*         x           y           z  ipot  tag     distance  number"]
    for n, (dist, ipot, x, y, z, tag) in enumerate(rows):
        lines.append(f"{x:11.5f} {y:11.5f} {z:11.5f} {ipot:5d}  {tag:<4s} {dist:10.5f} {n:7d}")
    lines.append("END")
    return "\n".join(lines) + "\n"


def input_equivalent(a: str, b: str) -> bool:
    """Whether two ``feff.inp`` texts are the same input up to the order of atoms at one printed
    distance (and so their numbers).

    :func:`atoms_card` orders atoms at the same distance by their distance's last digits, then
    their coordinates; a pymatgen release that builds the cluster with other rounding swaps a
    pair of them now and then (11 of the 2,445 bundled inputs under pymatgen 2026.10): the same
    cluster, potentials and cards (one of them rerun by FEFF10 gave its shipped mu to 4.3e-7).
    """
    return _equidistant_sorted(a) == _equidistant_sorted(b)


def _equidistant_sorted(text: str) -> list[str] | tuple:
    """``text`` with its ATOMS rows sorted by (printed distance, row) and their numbers left out."""
    lines = text.splitlines()
    if "ATOMS" not in lines or "END" not in lines[lines.index("ATOMS"):]:
        return lines
    i = lines.index("ATOMS")
    j = lines.index("END", i)
    try:
        rows = sorted((float(r[5]), r[:5]) for r in (ln.split() for ln in lines[i + 2:j]))
    except (IndexError, ValueError):
        return lines
    return (lines[:i + 2], rows, lines[j:])


def input_hash(text: str) -> str:
    """SHA-256 of a feff.inp text."""
    return hashlib.sha256(text.encode()).hexdigest()


def stages_for_cards(cards: dict[str, Any]) -> list[str]:
    """FEFF10 stages to run for these cards: :data:`XANES_STAGES`, plus SCREEN for an RPA core hole."""
    stages = list(XANES_STAGES)
    if str(cards.get("COREHOLE", "")).strip().upper() == "RPA":
        stages.insert(stages.index("xsph"), "screen")
    return stages


def preset_hash_of(preset: str | FeffPreset, edge: str = "K") -> str:
    """The preset hash that names tasks computed with this preset."""
    return preset_hash(preset_cards(preset, edge))
