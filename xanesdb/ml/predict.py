"""Class probabilities of measured (or computed) spectra from a model, or ``unsure`` with a reason.

Each spectrum (a :class:`xanesdb.xas.readers.MeasuredSpectrum`, read from XDI, Athena, CSV or
FEFF files) is put in the model's representation:

- ``aligned`` models (trained with ``--representation aligned``): Athena-style normalisation and
  the half-step point as energy origin (:func:`xanesdb.ml.aligned.align_measured`), the same rule
  the training spectra went through; the applied shift is minus the half-step energy.
- ``grid`` models (the paper's representation): optionally aligned (``align="edge"``: the
  spectrum's e0 moved onto the training data's), interpolated onto the absolute grid, scaled to
  max 1.

For aligned models the spectrum is also read shifted by -2..+2 eV (beamline energy calibrations
differ by 1-3 eV): the probabilities are averaged over the five readings, and an answer that
fewer than three of them give is ``unsure``. The networks' mean probabilities are then
temperature-scaled (aligned models carry the fitted temperature and class log-odds) and, where
the model carries its training spectra as references (:class:`xanesdb.ml.trust.ReferenceVote`),
averaged with the classes of the 7 reference materials nearest each reading (with the weight the
run gave that vote). Then they are checked: a spectrum that the
model's outlier test finds unlike its training spectra, or whose most probable class stays below
:data:`MIN_CONFIDENCE`, or whose file says the sample is no oxide (a metal foil, an XDI sample
formula without oxygen: :func:`outside_models_reason`), is answered ``unsure`` with the reason.
A measured spectrum with a strong isolated pre-edge peak (:mod:`xanesdb.xas.preedge`: no
inversion centre) has O6 ruled out before the answer is taken, a Ti, V or Cr spectrum with no
strong pre-edge at all its low-coordinated classes, and its row says so in ``note``; where the
classes ruled out held :data:`RULED_OUT_MAX` of the probability or more, the answer is ``unsure``,
except where the weak-pre-edge rule ruled them out and the networks gave the classes left at least
:data:`RULED_LEFT_MIN`: then the pre-edge decides among those (the row's note says what the
networks read). A spectrum that cannot be prepared gets a row with its ``error``; the others are
still predicted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.ml.inputs import prepare, representation_of, to_grid, where  # noqa: F401 - their home is ml.inputs
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.xas.normalize import find_e0
from xanesdb.xas.preedge import STARTS_ON_PEAK_FALL, ruled_out_by_preedge

if TYPE_CHECKING:
    from collections.abc import Callable

    from xanesdb.schemas import TrainingRunDoc
    from xanesdb.xas.readers import MeasuredSpectrum

logger = logging.getLogger(__name__)

__all__ = ["MIN_CONFIDENCE", "absorber_of", "where", "edge_energy", "ends_early", "error_rows", "load_any_model", "prepare",
           "predict_measured", "predict_spectra", "to_grid", "vote_text"]  # fmt: skip

#: below this calibrated probability of the most probable class the answer is ``unsure``: an
#: answer is given when its class is more probable than all the others together
MIN_CONFIDENCE = 0.5
#: when the classes a spectrum's pre-edge rules out (:mod:`xanesdb.xas.preedge`) held at least this
#: calibrated probability, the answer is ``unsure``: the two disagree, and the other classes' share
#: of what is left is no answer (unless the weak-pre-edge rule ruled them out: :data:`RULED_LEFT_MIN`)
RULED_OUT_MAX = 0.5
#: where the weak-pre-edge rule (no strong pre-edge: a d0 ion's low-coordinated classes ruled out)
#: ruled out classes that held :data:`RULED_OUT_MAX` or more, the pre-edge decides among the classes
#: left only when the networks gave them together at least this calibrated probability: the
#: networks, which do not read the pre-edge, found them plausible. Below it the two contradict each
#: other (a computed chromate with no pre-edge, read T4 1.00) and the answer is ``unsure``. Where a
#: strong pre-edge peak ruled out O6 that held :data:`RULED_OUT_MAX` or more, the answer stays
#: ``unsure``: a glitch or another element's edge can make such a peak, while little in a measurement
#: takes a strong one away. On the development records under the stress changes
#: (``benchmarks/bench_measured_stress.py``) all 18 spectra the weak rule decided so were answered
#: right (VO2, V2O3, EuTiO3, PbTiO3: O6), with 0.06-0.50 left to those classes
RULED_LEFT_MIN = 0.05
#: aligned models also read each spectrum shifted by these energies (eV): the probabilities are
#: averaged, and an answer that changes among them is ``unsure``
TTA_SHIFTS_EV: tuple[float, ...] = (-2.0, -1.0, 1.0, 2.0)


def edge_energy(energies: np.ndarray, mu: np.ndarray) -> float:
    """Edge energy e0 (:func:`xanesdb.xas.normalize.find_e0`, the one definition)."""
    return find_e0(energies, mu)


def _networks_probs(model: Any, X: np.ndarray) -> np.ndarray:
    """(n, networks, classes) probabilities: each row read by every network inside the graph
    (:func:`xanesdb.ml.models.predict_networks`; no copy per network on the host)."""
    from xanesdb.ml.models import predict_networks

    return predict_networks(model, X)


def predict_spectra(
    doc: TrainingRunDoc,
    model: Any,
    spectra: list[MeasuredSpectrum],
    align: str = "auto",
    min_confidence: float = MIN_CONFIDENCE,
    absorbers: list[str | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per spectrum: probabilities (calibrated), the class or ``unsure`` and why.

    Parameters
    ----------
    doc, model
        The registry document and its Keras model.
    spectra
        Spectra from :func:`xanesdb.xas.readers.read_spectra`.
    align
        ``auto`` (the model's own rule), or for ``grid`` models ``none`` / ``edge``.
    min_confidence
        Calibrated probability the most probable class must reach; below it the answer is ``unsure``.
    absorbers
        Each spectrum's absorber when the caller has it already (:func:`absorber_of`; None: found here).

    Returns
    -------
    list of dict
        ``name``, ``file``, ``group``, ``model``, ``mu_from`` (how the reader got mu: a column's
        name, ``ln(i0/itrans)``, ...), ``predicted`` (a class or ``unsure``),
        ``best_class``, ``confidence``, ``probabilities``, ``probabilities_uncalibrated``,
        ``probabilities_networks`` (the calibrated networks alone), ``reference_vote`` and
        ``nearest_references`` (models with references),
        ``std`` (over networks), ``outlier_score``, ``reason``, ``note``, ``shift_ev``, ``e0``, ``e_half``,
        ``edge_step`` (and for aligned models ``preedge_height``, ``preedge_ev``, ``normalised_as_given``:
        the spectrum was already normalised and was taken as it is); or ``name``, ``file``, ``error`` for a spectrum that could not be prepared.
    """
    from xanesdb.ml.trust import OutlierTest, ReferenceVote, apply_temperature, combine_with_references

    cols = np.asarray(doc.hyperparameters.get("feature_indices", range(len(doc.energies))), dtype=int)
    rows: list[dict[str, Any]] = []
    ready: list[tuple[int, dict[str, Any], MeasuredSpectrum]] = []  # (row, prepared input, spectrum)
    known = dict(zip(map(id, spectra), absorbers)) if absorbers is not None else {}
    for s in spectra:
        base = {"name": s.name, "file": s.path, "group": s.group, "model": doc.run_id, "mu_from": s.mu_source}
        try:
            prep = prepare(doc, s, align)
        except XanesdbUserError as err:
            rows.append({**base, "error": str(err).splitlines()[0]})
            continue
        rows.append(base)
        ready.append((len(rows) - 1, prep, s))
    if not ready:
        return rows
    from xanesdb.ml.models import inference_model

    if len(model.input_shape) == 3:  # a group model: its inference graph, built once for every pass below
        model = inference_model(model)
    X_full = np.stack([p["x"] for _, p, _ in ready])
    X = X_full[:, cols]
    P = _networks_probs(model, X)
    mean = P.mean(axis=1)
    # what each measured pre-edge rules out (xanesdb.xas.preedge): O6 under a strong isolated peak;
    # for Ti, V, Cr the low-coordinated classes when there is no strong pre-edge at all
    allowed = np.ones((len(X), len(doc.classes)), dtype=bool)
    notes: list[str | None] = []
    rules: list[str | None] = []  # what the pre-edge ruled out, in words (also the first part of the note)
    for k, (_, prep, s) in enumerate(ready):
        why = None
        if representation_of(doc) == "aligned":
            if id(s) in known:
                absorber = known[id(s)]
            else:
                try:
                    absorber, _ = absorber_of(s)
                except XanesdbUserError:
                    absorber = None
            out, why = ruled_out_by_preedge(absorber, prep.get("preedge_height", 0.0), prep.get("preedge_ev"),
                                            prep.get("preedge_max"))  # fmt: skip
            out = [c for c in out if c in doc.classes]
            why = why if out else None
            if out and len(out) < len(doc.classes):
                allowed[k, [doc.classes.index(c) for c in out]] = False
        fluo = fluorescence_note(s)
        edges = other_edges_note(prep.get("other_edges"))
        measured = s.kind in ("xdi", "athena", "csv", "columns")  # not FEFF output, arrays or pymatgen XAS
        paper = GRID_MODEL_NOTE if representation_of(doc) == "grid" and measured else None
        herfd = HERFD_NOTE if (s.meta or {}).get("herfd") else None
        rel = (s.meta or {}).get("energy_relative_to")
        relative = f"energies relative to the edge: {rel['edge_ev']:g} eV ({rel['absorber']} K) added" if rel else None
        rules.append(why)
        notes.append("; ".join(w for w in (why, fluo, edges, herfd, relative, paper) if w) or None)
    calib = doc.metrics.get("calibration") or {}
    T = float(calib.get("temperature", 1.0))
    bias = calib.get("bias")  # per-class log-odds of bias-corrected temperature scaling (None in older cards)
    refs = ReferenceVote(**_vote_fields(doc.metrics["reference_vote"])) if doc.metrics.get("reference_vote") else None
    outside = [outside_models_reason(s) for _, _, s in ready]
    flips = np.zeros(len(X), dtype=bool)
    means = [mean]
    readings = [X]
    if representation_of(doc) == "aligned" and TTA_SHIFTS_EV:
        # the energy calibration of a beamline is known to 1-3 eV: average over shifted copies,
        # and an answer that changes within that range is not one to trust
        grid = np.asarray(doc.energies, dtype=float)
        for sh in TTA_SHIFTS_EV:
            Xs = np.stack([np.interp(grid - sh, grid, x) for x in X_full])[:, cols].astype(np.float32)
            means.append(_networks_probs(model, Xs).mean(axis=1))
            readings.append(Xs)
        mean = np.mean(means, axis=0)
    Pn = apply_temperature(mean, T, bias)
    # the reference vote of each reading (None: the card has no references)
    shares = [refs.shares(r) for r in readings] if refs is not None else None
    Pc = combine_with_references(Pn, np.mean(shares, axis=0), refs.weight) if shares is not None else Pn
    if len(means) > 1:
        # unsure when the averaged answer is the answer of fewer than 3 of the 5 readings, each
        # reading taken as it would be answered: calibrated, with the class priors put back (and
        # with its own reference vote)
        final = np.argmax(Pc * allowed, axis=1)
        each = [apply_temperature(m, T, bias) for m in means]
        if shares is not None:
            each = [combine_with_references(q, v, refs.weight) for q, v in zip(each, shares)]
        votes = np.stack([np.argmax(q * allowed, axis=1) == final for q in each], axis=1)
        flips = votes.sum(axis=1) < 3
    near_idx, near_d = refs.nearest(X) if refs is not None else (None, None)
    outlier = OutlierTest(**doc.metrics["outlier_test"]) if doc.metrics.get("outlier_test") else None
    scores = outlier.score(X) if outlier is not None else np.zeros(len(X))
    for j, ((i, prep, _), p, praw, pk, sc, x, flip, ok, note, rule, not_oxide) in enumerate(
        zip(ready, Pc, mean, P, scores, X, flips, allowed, notes, rules, outside)
    ):
        # probability the model gave the classes the pre-edge rules out: most of it there, and the
        # spectrum and its pre-edge disagree (RULED_OUT_MAX, RULED_LEFT_MIN say when that is unsure)
        ruled = float(p[~ok].sum())
        # O6 ruled out: a strong pre-edge peak, which a glitch or another edge can fake; the absence of
        # a peak (the weak-pre-edge rule) nothing in a measurement fakes so easily
        strong_peak = "O6" in doc.classes and not ok[doc.classes.index("O6")]
        read_as = ", ".join(f"{c} {v:.2f}" for c, v, kept in zip(doc.classes, p, ok) if not kept and v >= 0.005)
        if not ok.all() and (p * ok).sum() > 0:
            p = p * ok / (p * ok).sum()
        best = int(np.argmax(p))
        reason = None
        fall = float(prep.get("start_fall", 0.0))
        if not_oxide:
            reason = not_oxide
        elif fall >= STARTS_ON_PEAK_FALL:
            reason = (f"the scan starts on a pre-edge peak (it falls {fall:.2f} of the edge step below its first point "
                      "before the edge): its pre-edge line, edge step and pre-edge peak cannot be measured; start the "
                      "scan at least 30 eV below the edge")  # fmt: skip
        elif sc > 1.0:
            reason = outlier.explain(x)
        elif ruled >= RULED_OUT_MAX and (strong_peak or 1.0 - ruled < RULED_LEFT_MIN):
            reason = f"the model reads the spectrum as {read_as}, which its pre-edge rules out ({rule})"
        elif p[best] < min_confidence or flip:
            reason = ("most readings of the spectrum shifted by "
                      f"{min(TTA_SHIFTS_EV):+g}..{max(TTA_SHIFTS_EV):+g} eV (calibration uncertainty) give another class: "
                      if flip else f"no class reaches {min_confidence:g}: ") + ", ".join(
                f"{c} {v:.2f}" for c, v in sorted(zip(doc.classes, p), key=lambda t: -t[1])
            )  # fmt: skip
        if ruled >= RULED_OUT_MAX and reason is None:  # the pre-edge decided: say what the networks read
            note = "; ".join(w for w in (f"answered by the pre-edge: the model read {read_as}, {1.0 - ruled:.2f} for the classes left",
                                         note) if w)  # fmt: skip
        rows[i].update({
            "predicted": doc.classes[best] if reason is None else "unsure",
            "best_class": doc.classes[best],
            "confidence": float(p[best]),
            "probabilities": {c: float(v) for c, v in zip(doc.classes, p)},
            "probabilities_uncalibrated": {c: float(v) for c, v in zip(doc.classes, praw)},
            "probabilities_networks": {c: float(v) for c, v in zip(doc.classes, Pn[j])},
            **(_nearest_fields(doc, refs, near_idx[j], near_d[j]) if refs is not None else {}),
            "std": {c: float(v) for c, v in zip(doc.classes, pk.std(axis=0))},
            "outlier_score": float(sc),
            "reason": reason,
            "note": note,
            **{k: v if isinstance(v, (bool, list)) else float(v) for k, v in prep.items() if k != "x"},
        })  # fmt: skip
    return rows


#: the note on a HERFD spectrum broadened as a conventional one (xanesdb.xas.herfd)
HERFD_NOTE = "HERFD, broadened as a conventional spectrum before the model read it (--herfd no: as measured)"
#: the note on a measured spectrum read by a grid model (the paper's representation: computed
#: spectra on FEFF's absolute energies, no calibration to measurement, no outlier test)
GRID_MODEL_NOTE = ("a grid model (the paper's representation) reads computed spectra; it was never calibrated to "
                   "measured ones and has no outlier test: for measured spectra use the shipped models (no --model) "
                   "or a model trained with --representation aligned")

#: how readers name mu taken from a fluorescence channel (xanesdb.xas.readers)
_FLUORESCENCE = ("mufluor", "ifluor", "normfluor", "if/i0", "ifl", "fluo", "ff/i0", "ffi0")


def fluorescence_note(spectrum: MeasuredSpectrum) -> str | None:
    """A word on self-absorption for a fluorescence spectrum that was not corrected, else None."""
    src = (spectrum.mu_source or "").lower()
    if "self-absorption corrected" in src or not any(f in src for f in _FLUORESCENCE):
        return None
    return ("fluorescence yield: in a concentrated sample self-absorption flattens the white line (O6 then reads "
            "like T4); give --self-absorption FORMULA to correct it")  # fmt: skip


#: words by which a label or XDI sample field names a metal (a foil is the usual energy reference)
_METAL = re.compile(r"foil|\bmetal(?:lic)?\b(?![- ]?(?:organic|oxide|complex))", re.I)
#: sulfide minerals of Ti-Cu absorbers, named in a label (the models know oxide and oxysalt sites only)
_SULFIDE = re.compile(r"sulph?ides?|pyrite|marcasite|troilite|pyrrhotite|pentlandite|chalcopyrite|bornite|covellite"
                      r"|chalcocite|digenite|cubanite|greigite|mackinawite|millerite|heazlewoodite|violarite|linnaeite"
                      r"|cobaltite|carrollite|tetrahedrite|tennantite|enargite|stannite|arsenopyrite|patronite", re.I)
#: anions and ligand atoms of non-oxides: with the absorber and without oxygen, a formula of a label is no oxide
_LIGANDS = frozenset({"S", "Se", "Te", "F", "Cl", "Br", "I", "N", "P", "As", "Sb", "C"})
#: a word of a label that may be a formula ("CuFeS2", "Cu2S", "K3Fe(CN)6")
_FORMULA_WORD = re.compile(r"[A-Z][A-Za-z0-9().]*")


def sample_formula(spectrum: MeasuredSpectrum) -> tuple[str, set[str]]:
    """The XDI ``Sample.formula`` of a spectrum and its elements; ``("", set())`` when the file
    gives none, or a field that is no formula ("Hematite", "Fe2O3 powder")."""
    import xraydb

    formula = str(((spectrum.meta or {}).get("xdi") or {}).get("sample.formula") or "").strip()
    try:
        elements = {el for el, n in xraydb.chemparse(formula).items() if n > 0} if formula else set()
    except ValueError:
        elements = set()
    return (formula, elements) if elements else ("", set())


def _append_note(row: dict[str, Any], text: str) -> None:
    row["note"] = "; ".join(w for w in (row.get("note"), text) if w)


def outside_models_reason(spectrum: MeasuredSpectrum) -> str | None:
    """Why no geometry class is given when the file says the sample is no oxide, else None.

    The models learned oxide and oxysalt sites only. A metal foil's K edge has no white line and
    reads like a tetrahedral oxide site to them (the Fe foil of xraylarch's ``Fe.prj`` answered T4
    0.98 and passed the outlier test), and sulfides read as T4 or O6 at random, so the sample's own
    words are taken: an Athena group label, file name or XDI ``Sample.name`` with "foil" or "metal",
    or an XDI ``Sample.formula`` that is the absorbing element alone or has no oxygen.
    """
    xdi = spectrum.meta.get("xdi") or {}
    formula, elements = sample_formula(spectrum)
    if elements and spectrum.absorber and elements == {spectrum.absorber}:
        return f"the sample is metallic {spectrum.absorber} (XDI Sample.formula): the models know oxide sites, not metals"
    if elements and "O" not in elements:
        return f"the sample {formula} has no oxygen (XDI Sample.formula): the models know oxide and oxysalt sites only"
    # the sample's name only: a preparation note ("powder sealed in Al foil") is about something else
    words = " ".join(str(v) for v in (spectrum.group, spectrum.name, xdi.get("sample.name")) if v)
    m = _METAL.search(words)
    if m:
        return f"the sample is a metal ({m.group(0)!r} in its label): the models know oxide sites, not metals"
    m = _SULFIDE.search(words)
    if m:
        return f"the sample is a sulfide ({m.group(0)!r} in its label): the models know oxide and oxysalt sites only"
    formula = _oxygen_free_formula(words, spectrum)
    if formula:
        return (f"the sample {formula} (in its label) has no oxygen: the models know oxide and oxysalt sites only; "
                "if it is an oxide after all, rename it")  # fmt: skip
    return None


def _oxygen_free_formula(words: str, spectrum: MeasuredSpectrum) -> str | None:
    """A word of ``words`` that is a chemical formula of the absorber with a non-oxide ligand and no
    oxygen ("CuS", "Cu2S", "FeS2", "NiCl2", "K3Fe(CN)6"), or None. A word that is no formula
    ("HERFD", "Sample1"), the absorber alone or with a cation only ("CuY", a Cu-exchanged zeolite
    Y), or a formula without the absorber (the "BN" of a dilution) says nothing."""
    import xraydb

    candidates = []  # (word, its elements): formulas with a non-oxide ligand and no oxygen
    for w in _FORMULA_WORD.findall(words):
        w = re.sub(r"(?<=[A-Za-z)])\.\d+$", "", w).strip("().")  # "CuS.001", an Athena copy's suffix
        try:
            elements = {el for el, n in xraydb.chemparse(w).items() if n > 0}
        except (ValueError, KeyError, TypeError):
            continue
        if "O" not in elements and elements & _LIGANDS:
            candidates.append((w, elements))
    if not candidates:
        return None
    absorber = spectrum.absorber  # found from the edge only when a label has such a word
    if absorber is None:
        try:
            absorber, _ = absorber_of(spectrum)
        except (XanesdbUserError, ValueError):
            return None
    return next((w for w, elements in candidates if absorber in elements), None)


def other_edges_note(energies) -> str | None:
    """Words on other absorption edges found in the scan (:func:`xanesdb.xas.normalize.other_edges`), or None."""
    if not energies:
        return None
    from xanesdb.xas.edges import identify_edge

    def named(x: float) -> str:
        found = identify_edge(x)
        return f"{x:.0f} eV" + (f" ({found[0]} {found[1]}?)" if found else "")

    return (f"another edge in the scan at {', '.join(named(x) for x in energies)}: kept out of the pre- and post-edge "
            "fits")  # fmt: skip


def error_rows(failures: list[tuple[Path, str]]) -> list[dict[str, Any]]:
    """Prediction rows of the files that could not be read or prepared (``(path, one-line reason)``,
    :func:`xanesdb.xas.readers.read_files`): named by the file, with its ``error``."""
    return [{"name": Path(f).name, "file": str(f), "error": why} for f, why in failures]


def vote_text(row: dict[str, Any], sep: str = ", ", colon: str = " ") -> str:
    """A row's reference vote as ``O6 5, S5 2``, most votes first ("" for a model without references)."""
    v = row.get("reference_vote") or {}
    return sep.join(f"{c}{colon}{n}" for c, n in sorted(v.items(), key=lambda t: -t[1]))


def _vote_fields(d: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~xanesdb.ml.trust.ReferenceVote` fields of a card's ``reference_vote`` (which also
    carries its held-out scores)."""
    return {k: d[k] for k in ("X", "labels", "n_classes", "k", "names", "weight") if k in d}


def _nearest_fields(doc: TrainingRunDoc, refs: Any, idx: np.ndarray, dist: np.ndarray) -> dict[str, Any]:
    """``reference_vote`` (class -> neighbours of the unshifted reading) and ``nearest_references``
    (material, class, root-mean-square difference) of one row."""
    labels = [doc.classes[refs.labels[t]] for t in idx]
    names = refs.names or [None] * len(refs.labels)
    return {
        "reference_vote": {c: labels.count(c) for c in doc.classes if c in labels},
        "nearest_references": [{"material_id": names[t], "class": c, "rmse": round(float(d), 4)}
                               for t, c, d in zip(idx, labels, dist)],
    }  # fmt: skip


def prepared_inputs(doc: TrainingRunDoc, spectra: list[MeasuredSpectrum], align: str = "auto") -> list[np.ndarray | None]:
    """Each spectrum's model input on the model's energies (None where it cannot be prepared); for plots."""
    out: list[np.ndarray | None] = []
    for s in spectra:
        try:
            out.append(prepare(doc, s, align)["x"])
        except XanesdbUserError:
            out.append(None)
    return out


def absorber_of(spectrum: MeasuredSpectrum) -> tuple[str | None, str]:
    """Absorber of a spectrum and how it was decided: its edge energy (xraydb's tables) rules.

    Athena guesses ``bkg_z`` from e0 and often lands on an L edge of a heavy element (35 of the 88
    V K-edge groups of one development project say La or Xe), so a file's word that disagrees
    with the edge energy is overruled, and said so.

    Raises
    ------
    XanesdbUserError
        When the spectrum has no absorption edge (the normalisation finds no positive step).
    """
    absorber, _, how = absorber_and_edge(spectrum)
    return absorber, how


def absorber_and_edge(spectrum: MeasuredSpectrum) -> tuple[str | None, str | None, str]:
    """:func:`absorber_of` with the edge (``"K"``, ``"L3"``, ...; None when no tabulated edge is near
    and the file does not say) between the absorber and how they were decided."""
    from xanesdb.xas.edges import identify_edge
    from xanesdb.xas.normalize import pre_edge

    try:
        found = identify_edge(pre_edge(spectrum.energy, spectrum.mu).e0)
    except ValueError as err:
        raise XanesdbUserError(f"{where(spectrum)}: {err}") from None
    said = spectrum.absorber
    if found is None:
        return said, spectrum.edge if said else None, "file" if said else "unknown"
    if said and said != found[0]:
        return found[0], found[1], f"edge energy ({found[1]} of {found[0]}; the file says {said})"
    return found[0], found[1], f"file and edge energy ({found[1]})" if said else f"edge energy ({found[1]})"


def _without_model(absorber: str | None, edge: str | None) -> str:
    """What to do for a spectrum no shipped model reads: the K-edge recipe applies to K edges only."""
    if edge == "K" and absorber:
        return f"train one on {absorber} K-edge spectra (xanesdb train --recipe measured) and give --model"
    what = " ".join(filter(None, (absorber, edge)))
    return f"give --model with one trained on {what} spectra" if what else "give --model with one trained on spectra like it"


def load_any_model(key: str, settings=None) -> tuple[TrainingRunDoc, Any]:
    """A portable model folder, a shipped model (absorber symbol or its run id), or a registered run id."""
    from xanesdb.ml.portable import load_portable, shipped_model_named

    if Path(key).is_dir():
        return load_portable(Path(key))
    shipped = shipped_model_named(key)
    if shipped is not None:
        return load_portable(shipped)
    from xanesdb.ml.registry import get_run, load_model
    from xanesdb.platform.settings import get_settings

    settings = settings or get_settings()
    doc = get_run(key, settings)
    return doc, load_model(doc, settings)


#: a scan that ends this far past the full model's need above the absorber's tabulated K edge
#: reaches it whatever its half step: an oxide's half step lies 0-20 eV above the metal's edge
#: (Cr(VI), Mn(VII) the most)
SURE_REACH_EV = 30.0


def ends_early(spectrum: MeasuredSpectrum, absorber: str | None, window_end_ev: float | None) -> float | None:
    """How far the scan reaches above its half step (eV) when that falls short of what an aligned
    model whose input window ends at ``window_end_ev`` (None: the grid's end) needs; None when it
    reaches far enough, or cannot be normalised (the model's preparation then says what is wrong)."""
    from xanesdb.xas.align import needed_reach, reach_above_half_step
    from xanesdb.xas.edges import edge_energy_of

    need = needed_reach(window_end_ev)
    try:  # most scans run far past the edge: no need to normalise them again to know
        if absorber and float(np.max(spectrum.energy)) - edge_energy_of(absorber) > need + SURE_REACH_EV:
            return None
    except (ValueError, KeyError, TypeError):
        pass
    try:
        reach = reach_above_half_step(spectrum.energy, spectrum.mu)
    except ValueError:
        return None
    return reach if reach < need else None


def _short_scan_model(spectrum: MeasuredSpectrum, absorber: str, full) -> tuple[Any, str] | None:
    """The shipped short-scan model of the absorber and the note that says why, for a scan that ends
    too early for the full model ``full`` (if too early for the short one as well, its error row
    names the least a scan must reach); else None."""
    from xanesdb.ml.portable import shipped_model_dir, window_end_of
    from xanesdb.xas.align import MAX_EXTRAPOLATE_EV, needed_reach

    short = shipped_model_dir(absorber, short=True)
    if short is None:
        return None
    full_end = window_end_of(full)
    reach = ends_early(spectrum, absorber, full_end)
    if reach is None:
        return None
    return short, (f"the scan ends {reach:+.1f} eV from its half step, short of the {needed_reach(full_end):+.1f} eV the full "
                   f"model reads: answered by the short-scan model (to "
                   f"{needed_reach(window_end_of(short)) + MAX_EXTRAPOLATE_EV:+.0f} eV)")  # fmt: skip


def predict_measured(
    spectra: list[MeasuredSpectrum],
    model: str | None = None,
    align: str = "auto",
    min_confidence: float = MIN_CONFIDENCE,
    png_dir=None,
    settings=None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`predict_spectra` for spectra of any absorbers, each with its own model.

    Parameters
    ----------
    spectra
        From :func:`xanesdb.xas.readers.read_spectra`.
    model
        A registered run id or a portable model folder for all spectra; None: the shipped model of
        each spectrum's absorber (:func:`absorber_of`), no database needed.
    png_dir
        When given, one PNG per predicted spectrum (:func:`xanesdb.ml.plots.plot_measured_prediction`)
        and ``overview.png`` with all of them (24 a page: ``overview-2.png``, ...).
    progress
        Called as ``progress(done, total)`` as spectra are answered (and drawn): for a progress bar.

    Returns
    -------
    list of dict
        One row per spectrum (see :func:`predict_spectra`) plus ``absorber`` and
        ``absorber_from`` (and ``if_undiluted`` for an uncorrected fluorescence spectrum whose XDI
        file names its sample: the answer corrected as a thick sample of that formula); a spectrum
        without a model gets an ``error`` row.
    """
    from xanesdb.ml.portable import POOLED, shipped_model_dir, shipped_models

    loaded: dict[str, tuple] = {}
    notes: dict[int, str] = {}  # id(spectrum) -> why the short-scan model answers it
    rows: list[dict[str, Any] | None] = []
    batches: dict[str, list[tuple[int, MeasuredSpectrum, str, str]]] = {}
    for s in spectra:
        try:
            absorber, edge, how = absorber_and_edge(s)
        except XanesdbUserError as err:
            rows.append({"name": s.name, "file": s.path, "group": s.group, "error": str(err)})
            continue
        key = model
        if key is None:
            d = shipped_model_dir(absorber) if absorber else None
            if d is None:
                have = ", ".join(sorted(el for el in shipped_models() if el != POOLED)) or "none"
                rows.append({"name": s.name, "file": s.path, "group": s.group, "absorber": absorber or "",
                             "absorber_from": how, "error": f"{where(s)}: no shipped model for absorber {absorber or 'unknown'} "
                             f"({how}); models ship for the K edges of {have}: {_without_model(absorber, edge)}"})  # fmt: skip
                continue
            short = _short_scan_model(s, absorber, d)
            if short is not None:
                d, notes[id(s)] = short
            key = str(d)
        if key not in loaded:
            loaded[key] = load_any_model(key, settings)
        doc = loaded[key][0]
        el = doc.query.get("element")
        trained_on = [el] if isinstance(el, str) else list(el.get("$in", [])) if isinstance(el, dict) else []
        if trained_on and absorber and absorber not in trained_on:
            rows.append({"name": s.name, "file": s.path, "group": s.group, "absorber": absorber, "absorber_from": how,
                         "model": doc.run_id, "error": f"{where(s)} is a {absorber} spectrum ({how}); model "
                         f"{doc.run_id} was trained on {', '.join(trained_on)}"})  # fmt: skip
            continue
        rows.append(None)  # filled below, in input order
        batches.setdefault(key, []).append((len(rows) - 1, s, absorber or "", how))
    drawn: list[tuple[int, tuple]] = []  # (row index, (model card, spectrum, row)) of each PNG
    total, done = sum(len(items) for items in batches.values()), 0
    for key, items in batches.items():  # one pass per model: its inference graph is built once
        doc, keras_model = loaded[key]
        out = predict_spectra(doc, keras_model, [s for _, s, _, _ in items], align=align, min_confidence=min_confidence,
                              absorbers=[a or None for _, _, a, _ in items])  # fmt: skip
        for (i, s, absorber, how), r in zip(items, out):
            r.update(absorber=absorber, absorber_from=how)
            if id(s) in notes and "error" not in r:
                r["note"] = "; ".join(w for w in (notes[id(s)], r.get("note")) if w)
            if png_dir is not None and "error" not in r:
                from xanesdb.ml.plots import plot_measured_prediction

                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in s.name)
                r["png"] = str(plot_measured_prediction(doc, s, r, Path(png_dir) / f"{safe}.png", align))
                drawn.append((i, (doc, s, r)))
            rows[i] = r
            done += 1
            if progress is not None:
                progress(done, total)
    if drawn:  # the whole batch at a glance, in input order
        from xanesdb.ml.plots import plot_prediction_overview

        plot_prediction_overview([item for _, item in sorted(drawn, key=lambda t: t[0])], png_dir, align)
    _what_self_absorption_changes(spectra, rows, model, align, min_confidence, settings)
    return rows


def _what_self_absorption_changes(spectra, rows, model, align, min_confidence, settings) -> None:
    """Add to the note of each uncorrected fluorescence spectrum whose file names its sample
    (XDI ``Sample.formula``, with oxygen) what it reads once corrected as a thick sample of that
    formula: the answer a user gets from ``--self-absorption FORMULA`` (``if_undiluted``), or that
    its white line is too high for such a sample.

    Whether the sample was diluted or thin cannot be told from the spectrum alone, so the answer
    itself stays the one of the spectrum as measured; the note says whether it depends on that.
    """
    from xanesdb.xas.selfabs import BeyondThickSample, correct_spectrum

    by_row = {}
    for i, (s, r) in enumerate(zip(spectra, rows)):
        formula, elements = sample_formula(s)
        if r is None or "error" in r or "O" not in elements or fluorescence_note(s) is None or outside_models_reason(s):
            continue
        try:
            by_row[i] = (formula, correct_spectrum(s, formula))
        except BeyondThickSample:
            _append_note(r, f"its white line is higher than a thick sample of {formula} can record: self-absorption "
                            "did not flatten it much (a diluted or thin sample)")  # fmt: skip
        except ValueError:  # a formula xraydb reads and the correction does not
            continue
    if not by_row:
        return
    again = predict_measured([c for _, c in by_row.values()], model=model, align=align,
                             min_confidence=min_confidence, settings=settings)  # fmt: skip
    for (i, (formula, _)), r in zip(by_row.items(), again):
        if "error" in r:
            continue
        conf = f"{r['confidence']:.2f}"
        read = f"{r['predicted']} {conf}" if r["predicted"] != "unsure" else f"unsure ({r['best_class']} {conf})"
        then = ("the answer does not hang on self-absorption" if r["predicted"] == rows[i]["predicted"]
                else f"if the sample was a thick one of that composition, give --self-absorption {formula}")
        _append_note(rows[i], f"corrected as a thick sample of {formula} (the file's Sample.formula) it reads {read}: {then}")
        rows[i]["if_undiluted"] = {"formula": formula, "predicted": r["predicted"], "best_class": r["best_class"],
                                   "confidence": r["confidence"]}  # fmt: skip
