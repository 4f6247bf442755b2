"""ChemEnv labels of symmetry-unique absorbing sites (collection ``sites``).

The recipe of Carbone et al. (Phys. Rev. Materials 3, 033604, 2019): ChemEnv's
``LocalGeometryFinder`` with ``SimplestChemenvStrategy(distance_cutoff=1.2, angle_cutoff=0.3)``;
the label is the coordination geometry of lowest continuous symmetry measure (CSM). ChemEnv's own
default strategy (distance cutoff 1.4) is computed from the same structure environments and stored
beside it, so disagreements between the two can be counted and ambiguous sites flagged. Where
pymatgen's bond-valence analyser assigns oxidation states they are passed to ChemEnv, which then
keeps anion-cation bonds only (as the Materials Project's ChemEnv documents do).

Two traps handled here:

- ``LocalGeometryFinder.setup_structure`` may replace the input by a refined (conventional,
  re-sorted) structure; site indices are always taken from ``lgf.structure`` and mapped back to the
  input structure (:func:`map_sites_to_lgf`).
- ChemEnv strategies cache per-site results keyed by site index only, so a strategy reused across
  structures returns the previous structure's answer: a fresh strategy is made per structure.

Examples
--------
>>> from pymatgen.core import Lattice, Structure
>>> rutile = Structure.from_spacegroup(
...     "P4_2/mnm", Lattice.tetragonal(4.5937, 2.9587), ["Ti", "O"], [[0, 0, 0], [0.30478, 0.30478, 0]]
... )
>>> [d.chemenv_symbol for d in label_structure(rutile, "rutile", source="literature")]
['O:6']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.jobs.labels.descriptors import site_descriptors
from xanesdb.platform.provenance import LABEL_LIBRARIES, library_versions
from xanesdb.platform.settings import SETTINGS
from xanesdb.schemas.site import ChemEnvCandidate, ChemEnvResult, SiteDoc, lce_class_of, site_id
from xanesdb.schemas.structure import StructureDoc, structure_problem

if TYPE_CHECKING:
    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = [
    "ABSORBERS",
    "PAPER_STRATEGY",
    "DEFAULT_STRATEGY",
    "label_structure",
    "label_doc",
    "map_sites_to_lgf",
    "failed_site_docs",
]

#: default absorbers (the paper's)
ABSORBERS: tuple[str, ...] = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
#: (distance_cutoff, angle_cutoff) of the paper's strategy and of ChemEnv's default strategy
PAPER_STRATEGY: tuple[float, float] = (1.2, 0.3)
DEFAULT_STRATEGY: tuple[float, float] = (1.4, 0.3)
#: neighbours are searched up to this factor of the nearest distance (must exceed both cutoffs)
MAXIMUM_DISTANCE_FACTOR = 1.5
#: a best CSM above this is a poor fit (flagged ambiguous)
POOR_CSM = 3.0
#: a runner-up geometry whose CSM is within this of the best one makes the label ambiguous
CLOSE_CSM_GAP = 0.5
#: the CSM ChemEnv's strategies compare
CSM_TYPE = "csm_wcs_ctwcc"


# ----------------------------------------------------------------------------- one structure
def map_sites_to_lgf(
    structure: Structure, lgf_structure: Structure, indices: Iterable[int], spg_dataset: Any = None,
    tol: float = 0.5,
) -> dict[int, int]:
    """Map site indices of ``structure`` onto the sites of ChemEnv's ``lgf.structure``.

    ``lgf.structure`` is either a copy of the input (possibly re-ordered) or, with structure
    refinement, spglib's refined conventional cell, sorted by species. With the same lattice,
    sites are matched by species and fractional position modulo the lattice; with a refined cell,
    input fractional coordinates are first transformed with spglib's ``transformation_matrix`` and
    ``origin_shift`` (``x_std = P x + p``). Any symmetry-equivalent image is a valid answer.

    Parameters
    ----------
    structure
        The input structure whose indices are stored in the ``sites`` documents.
    lgf_structure
        The structure ChemEnv works on (``lgf.structure``).
    indices
        Indices of ``structure`` to map.
    spg_dataset
        spglib dataset of ``structure`` (``lgf.spg_analyzer.get_symmetry_dataset()``); needed only
        when the lattices differ.
    tol
        Largest accepted distance (Angstrom) between a site and its match.

    Returns
    -------
    dict[int, int]
        Input index -> index in ``lgf_structure``.

    Raises
    ------
    ValueError
        When a site has no match (different cells and no spglib dataset, or too far).
    """
    same_cell = np.allclose(structure.lattice.matrix, lgf_structure.lattice.matrix, atol=1e-6)
    if not same_cell and spg_dataset is None:
        raise ValueError("lgf.structure has another cell and no spglib dataset was given to map sites")
    target_frac = lgf_structure.frac_coords
    target_species = [site.species for site in lgf_structure]
    mapping: dict[int, int] = {}
    for i in indices:
        frac = structure[i].frac_coords
        if not same_cell:
            frac = np.asarray(spg_dataset.transformation_matrix) @ frac + np.asarray(spg_dataset.origin_shift)
        delta = target_frac - frac
        delta -= np.round(delta)
        dist = np.linalg.norm(delta @ lgf_structure.lattice.matrix, axis=1)
        same = np.array([sp == structure[i].species for sp in target_species])
        dist[~same] = np.inf
        j = int(np.argmin(dist))
        if not np.isfinite(dist[j]) or dist[j] > tol:
            raise ValueError(f"site {i} ({structure[i].species_string}) has no match in lgf.structure")
        mapping[i] = j
    return mapping


def _unique_absorber_sites(structure: Structure, elements: Sequence[str], symprec: float) -> list[dict]:
    """Symmetry-unique sites whose element is an absorber: index, equivalents, Wyckoff symbol."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sym = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetrized_structure()
    out = []
    for indices, wyckoff in zip(sym.equivalent_indices, sym.wyckoff_symbols, strict=True):
        el = structure[indices[0]].specie.symbol
        if el in elements:
            idx = sorted(indices)
            out.append({"element": el, "site_index": idx[0], "equivalent_indices": idx, "wyckoff": wyckoff})
    return sorted(out, key=lambda g: (g["element"], g["site_index"]))


def _bv_valences(structure: Structure) -> list[int] | None:
    """Integer bond-valence oxidation states per site, or None where BVAnalyzer finds none."""
    from pymatgen.analysis.bond_valence import BVAnalyzer

    try:
        return [int(v) for v in BVAnalyzer().get_valences(structure)]
    except Exception:  # BVAnalyzer raises ValueError when no valid assignment exists
        return None


def _oxidation_states(structure: Structure, bv: list[int] | None) -> list[float | None]:
    """Per-site oxidation states: bond valence first, else the composition's first guess."""
    if bv is not None:
        return [float(v) for v in bv]
    try:
        guesses = structure.composition.oxi_state_guesses(max_sites=-50)
    except Exception:
        guesses = []
    if guesses:
        return [float(guesses[0].get(site.specie.symbol, np.nan)) for site in structure]
    return [None] * len(structure)


def _strategy_result(se: Any, lgf_structure: Structure, isite: int, cutoffs: tuple[float, float]):
    """ChemEnvResult and the chosen neighbour set of one site, with a fresh strategy object."""
    from pymatgen.analysis.chemenv.coordination_environments.chemenv_strategies import (
        SimplestChemenvStrategy,
    )

    dist, ang = cutoffs
    name = f"SimplestChemenvStrategy distance_cutoff={dist:g} angle_cutoff={ang:g}"
    # a new strategy per structure: strategies cache per-site answers keyed by site index only
    strategy = SimplestChemenvStrategy(distance_cutoff=dist, angle_cutoff=ang)
    strategy.set_structure_environments(se)
    found = strategy.get_site_coordination_environment(lgf_structure[isite], isite=isite, return_map=True)
    if found is None:
        return ChemEnvResult(strategy=name, distance_cutoff=dist), None
    _, cn_map = found
    cn, inb = cn_map
    ce = se.ce_list[isite][cn][inb]
    nb_set = se.neighbors_sets[isite][cn][inb]
    candidates = []
    if ce is not None:
        for symbol, info in ce.minimum_geometries(symmetry_measure_type=CSM_TYPE):
            candidates.append(ChemEnvCandidate(symbol=symbol, csm=float(info["other_symmetry_measures"][CSM_TYPE])))
    best = candidates[0] if candidates else None
    result = ChemEnvResult(
        strategy=name,
        distance_cutoff=dist,
        symbol=best.symbol if best else f"UNKNOWN:{cn}",
        csm=best.csm if best else None,
        coordination_number=int(cn),
        candidates=candidates,
    )
    return result, nb_set


def _ambiguity(paper: ChemEnvResult, default: ChemEnvResult, poor_csm: float, close_gap: float) -> list[str]:
    reasons = []
    if paper.symbol is None:
        reasons.append("no environment found with the 1.2 cutoff")
    if paper.symbol != default.symbol:
        reasons.append(f"strategies disagree: {paper.symbol} (cutoff 1.2) vs {default.symbol} (cutoff 1.4)")
    if paper.csm is not None and paper.csm > poor_csm:
        reasons.append(f"poor fit: CSM of {paper.symbol} is {paper.csm:.2f} > {poor_csm:g}")
    if len(paper.candidates) > 1 and paper.csm is not None:
        runner = paper.candidates[1]
        if runner.csm - paper.csm < close_gap:
            reasons.append(
                f"runner-up {runner.symbol} (CSM {runner.csm:.2f}) within {close_gap:g} of {paper.symbol}"
            )
    return reasons


def label_structure(
    structure: Structure,
    material_id: str,
    source: str,
    formula: str | None = None,
    elements: Sequence[str] = ABSORBERS,
    symprec: float = SETTINGS.SYMPREC,
    structure_refinement: str = "none",
    poor_csm: float = POOR_CSM,
    close_gap: float = CLOSE_CSM_GAP,
    validate: bool = True,
) -> list[SiteDoc]:
    """Label every symmetry-unique absorbing site of one structure with ChemEnv.

    Parameters
    ----------
    structure
        An ordered pymatgen structure.
    material_id, source, formula
        Copied into the documents (``formula`` defaults to the reduced formula).
    elements
        Absorbing elements to label; sites of other elements are not computed.
    symprec
        Symmetry precision (Angstrom) for site equivalence.
    structure_refinement
        ChemEnv's refinement: ``"none"`` (default: ChemEnv works on the input cell) or
        ``"refined"`` (spglib's conventional cell; indices are mapped back either way).
    poor_csm, close_gap
        Thresholds of the ``ambiguous`` flag (see :data:`POOR_CSM`, :data:`CLOSE_CSM_GAP`).
    validate
        Refuse an invalid structure (:func:`~xanesdb.schemas.structure.structure_problem`) with a
        ``ValueError`` before any symmetry code runs (default). ``False`` hands it to spglib and
        ChemEnv as it is, which may crash the process (NaN coordinates do).

    Returns
    -------
    list[SiteDoc]
        One document per unique absorbing site, sorted by element and site index.
    """
    t0 = time.perf_counter()
    _check_labellable(structure, material_id, validate)
    formula = formula or structure.composition.reduced_formula
    groups = _unique_absorber_sites(structure, elements, symprec)
    if not groups:
        return []
    bv = _bv_valences(structure)
    oxi = _oxidation_states(structure, bv)
    lgf, se, to_lgf = _structure_environments(structure, groups, structure_refinement, bv)
    docs = []
    for g in groups:
        isite = to_lgf[g["site_index"]]
        paper, nb_set = _strategy_result(se, lgf.structure, isite, PAPER_STRATEGY)
        default, _ = _strategy_result(se, lgf.structure, isite, DEFAULT_STRATEGY)
        bonds = _first_shell(lgf.structure, isite, nb_set)
        docs.append(_site_doc(structure, material_id, source, formula, g, paper, default, bonds,
                              oxi[g["site_index"]], _ambiguity(paper, default, poor_csm, close_gap)))
    elapsed = time.perf_counter() - t0
    for doc in docs:
        doc.labelling_seconds = round(elapsed, 4)
    return docs


def _check_labellable(structure: Structure, material_id: str, validate: bool) -> None:
    """Refuse (``ValueError``) a disordered structure, and an invalid one when ``validate``."""
    if not structure.is_ordered:
        raise ValueError(f"{material_id}: disordered structures cannot be labelled by ChemEnv")
    # before any symmetry code: spglib crashes the process on NaN coordinates, and ChemEnv
    # labels an atom sitting on top of another as a sound octahedron
    problem = structure_problem(structure) if validate else None
    if problem is not None:
        raise ValueError(f"invalid structure: {problem}")


def _structure_environments(structure: Structure, groups: list[dict], structure_refinement: str,
                            bv: list[int] | None) -> tuple[Any, Any, dict[int, int]]:
    """ChemEnv's environments of the representative sites only (the expensive part).

    Returns ``(lgf, se, to_lgf)``: the LocalGeometryFinder (its ``structure`` is the one ChemEnv
    worked on), the StructureEnvironments, and input site index -> index in ``lgf.structure``.
    """
    from pymatgen.analysis.chemenv.coordination_environments.coordination_geometry_finder import (
        LocalGeometryFinder,
    )

    lgf = LocalGeometryFinder()
    lgf.setup_parameters(
        centering_type="centroid", include_central_site_in_centroid=True, structure_refinement=structure_refinement
    )
    lgf.setup_structure(structure)
    dataset = lgf.spg_analyzer.get_symmetry_dataset() if lgf.spg_analyzer is not None else None
    to_lgf = map_sites_to_lgf(structure, lgf.structure, [g["site_index"] for g in groups], dataset)
    # with valences ChemEnv keeps only anion-cation bonds (ONLY_ACB), as the Materials Project
    # does; without them, metal-metal contacts (e.g. Co-Co in NiAs-type CoTe) count as neighbours
    valences = bv if dataset is None else _bv_valences(lgf.structure)
    se = lgf.compute_structure_environments(
        only_indices=sorted(set(to_lgf.values())),
        only_cations=False,
        valences=valences if valences is not None else "undefined",
        maximum_distance_factor=MAXIMUM_DISTANCE_FACTOR,
    )
    return lgf, se, to_lgf


def _first_shell(lgf_structure: Structure, isite: int, nb_set: Any) -> list[tuple[float, str]]:
    """(distance, element) of the neighbours the paper's strategy chose, nearest first."""
    bonds: list[tuple[float, str]] = []
    if nb_set is not None:
        centre = lgf_structure[isite].coords
        for nb in nb_set.neighb_sites_and_indices:
            bonds.append((float(np.linalg.norm(nb["site"].coords - centre)), nb["site"].specie.symbol))
        bonds.sort()
    return bonds


def _site_doc(structure: Structure, material_id: str, source: str, formula: str, g: dict[str, Any],
              paper: ChemEnvResult, default: ChemEnvResult, bonds: list[tuple[float, str]], ox: float | None,
              reasons: list[str]) -> SiteDoc:
    """The SiteDoc of one unique absorbing site from its two strategies' results and first shell."""
    return SiteDoc(
        **_site_identity(material_id, source, formula, g),
        chemenv_symbol=paper.symbol,
        csm=paper.csm,
        lce_class=lce_class_of(paper.symbol),
        chemenv=paper,
        chemenv_default=default,
        strategies_agree=paper.symbol == default.symbol,
        ambiguous=bool(reasons),
        ambiguity_reasons=reasons,
        coordination_number=paper.coordination_number,
        bond_lengths=[round(d, 4) for d, _ in bonds],
        mean_bond_length=round(float(np.mean([d for d, _ in bonds])), 4) if bonds else None,
        neighbor_elements=[el for _, el in bonds],
        oxidation_state=None if ox is None or np.isnan(ox) else float(ox),
        # first-shell descriptors from the neighbours of the paper's strategy
        **site_descriptors(structure, g["site_index"], [d for d, _ in bonds]),
    )


def _site_identity(material_id: str, source: str, formula: str, g: dict[str, Any]) -> dict[str, Any]:
    """The SiteDoc fields that name a unique absorbing site (``g``: one of ``_unique_absorber_sites``)."""
    return {
        "site_id": site_id(material_id, g["element"], g["site_index"]),
        "material_id": material_id,
        "source": source,
        "formula": formula,
        "element": g["element"],
        "site_index": g["site_index"],
        "equivalent_indices": g["equivalent_indices"],
        "multiplicity": len(g["equivalent_indices"]),
        "wyckoff": g["wyckoff"],
        "library_versions": library_versions(LABEL_LIBRARIES),
    }


def failed_site_docs(
    structure: Structure | None,
    material_id: str,
    source: str,
    reason: str,
    formula: str | None = None,
    elements: Sequence[str] = ABSORBERS,
    symprec: float = SETTINGS.SYMPREC,
    seconds: float | None = None,
    symmetry: bool = True,
) -> list[SiteDoc]:
    """Failed documents (``state="failed"``, ``error=reason``), one per unique absorbing site.

    When the symmetry analysis fails, is not asked for (``symmetry=False``: after a worker
    crashed, the call that crashed it must not run again in the parent) or the structure is
    invalid (:func:`~xanesdb.schemas.structure.structure_problem`: spglib would crash on it), one
    document per absorbing element is written, keyed on the element's first site, with all its
    sites as equivalents.
    """
    if structure is None:
        return []
    formula = formula or structure.composition.reduced_formula
    groups: list[dict[str, Any]] = []
    if symmetry and structure_problem(structure) is None:
        try:
            groups = _unique_absorber_sites(structure, elements, symprec)
        except Exception:
            groups = []
    if not groups:
        for el in sorted({s.specie.symbol for s in structure if s.is_ordered} & set(elements)):
            idx = [i for i, s in enumerate(structure) if s.specie.symbol == el]
            groups.append({"element": el, "site_index": idx[0], "equivalent_indices": idx, "wyckoff": None})
    return [
        SiteDoc(
            **_site_identity(material_id, source, formula, g),
            state="failed",
            error=reason,
            labelling_seconds=None if seconds is None else round(seconds, 4),
        )
        for g in groups
    ]


def label_doc(doc: StructureDoc, elements: Sequence[str], symprec: float, validate: bool = True) -> list[SiteDoc]:
    """Label one structure document; any error becomes failed documents."""
    structure = doc.to_structure()
    t0 = time.perf_counter()
    try:
        return label_structure(structure, doc.material_id, doc.source, doc.formula, elements, symprec,
                               validate=validate)
    except Exception as err:  # recorded per structure, like maggma's MapBuilder.process_item
        logger.warning("labelling %s failed: %s", doc.material_id, err)
        reason = f"{type(err).__name__}: {err}"
        return failed_site_docs(
            structure, doc.material_id, doc.source, reason, doc.formula, elements, symprec,
            time.perf_counter() - t0,
        )
