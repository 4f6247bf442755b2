"""Models outside the database: a folder with ``model.keras`` and its model card.

A portable model is a folder holding the Keras file (the networks, with their standardisation
inside) and ``card.json``, the registry document (training query and data fingerprint, grid and
representation, classes, hyper-parameters, scores, calibration, outlier test, library versions),
plus ``card.md`` for people, and for models with a reference vote ``references.npz`` (the
reference spectra as float16, their classes and materials; kept out of ``card.json`` so the card
stays readable). It loads with Keras and xanesdb alone, no database.

The per-absorber models that ``xanesdb predict`` uses when no ``--model`` is given ship in this
format under ``xanesdb/data/models/<element>-K-<representation>/`` (made by
``scripts/train_shipped_models.py`` from the bundled database). Beside them, under
``xanesdb/data/models/short/``, each absorber's model of the same recipe reading only up to
+30 eV above the half step: ``xanesdb predict`` answers with it a scan that ends too early for
the full model (a XANES-only scan to +30..+40 eV), and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from xanesdb.schemas import TrainingRunDoc

__all__ = ["POOLED", "SHIPPED_DIR", "SHORT_DIR", "export_portable", "load_portable", "shipped_model_dir", "shipped_models",
           "shipped_model_named", "window_end_of"]

#: where the shipped models live
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
#: where the shipped models for short scans live (input window ending at +30 eV)
SHORT_DIR = SHIPPED_DIR / "short"


def _card_markdown(doc: TrainingRunDoc) -> str:
    m = doc.metrics
    hp = {k: v for k, v in doc.hyperparameters.items() if k != "feature_indices"}
    f1 = m.get("f1", {}).get("macro")
    cal = m.get("calibration") or {}
    lines = [
        f"# {doc.run_id}", "",
        f"- kind: {doc.kind}, classes: {', '.join(doc.classes)}, label `{doc.label_field}`",
        f"- training query: `{json.dumps(doc.query)}` ({doc.n_spectra} spectra, fingerprint {doc.fingerprint})",
        f"- representation: {hp.get('representation', 'grid')}, grid {doc.grid_name} "
        f"({doc.energies[0]:g} to {doc.energies[-1]:g} eV, {len(doc.energies)} points)",
        f"- hyper-parameters: `{json.dumps(hp)}`",
        f"- macro F1 ({hp.get('protocol')} protocol): {f1[0]:.3f} ± {f1[1]:.3f}" if f1 else "- macro F1: -",
    ]  # fmt: skip
    if m.get("classes_left_out"):  # scripts/train_shipped_models.py --min-class-materials
        lines.append("- classes left out: " + "; ".join(f"{c} ({why})" for c, why in m["classes_left_out"].items()))
    bias = cal.get("bias")
    priors = (", class log-odds " + ", ".join(f"{c} {b:+.2f}" for c, b in zip(doc.classes, bias))
              + " (bias-corrected temperature scaling: the classes' frequencies put back after balanced training)"
              if bias else "")  # fmt: skip
    if "ece_before" in cal:
        lines.append(f"- calibration: temperature {cal['temperature']:.2f}{priors}, expected calibration error "
                     f"{cal['ece_before']:.3f} -> {cal['ece_after']:.3f} on {cal['n']} measured-like held-out spectra")  # fmt: skip
    elif cal:
        lines.append(f"- calibration: temperature {cal['temperature']:.2f}{priors}")
    ot = m.get("outlier_test") or {}
    if ot.get("null_residuals"):
        lines.append(f"- outlier test: thresholds at {ot.get('quantile', 0.99):.0%} of held-out measured-like copies, "
                     f"each carrying one of {ot['null_residuals']} measured-minus-calibrated residuals of reference compounds")  # fmt: skip
    rv = m.get("reference_vote") or {}
    if rv.get("labels"):
        held = (f"; on the measured-like held-out copies the vote alone is right for {rv['accuracy']:.0%}, "
                f"the networks with it for {rv['accuracy_with_networks']:.0%} (expected calibration error "
                f"{rv['ece_with_networks']:.3f})" if "accuracy_with_networks" in rv else "")  # fmt: skip
        how = ("are averaged with the calibrated networks" if rv.get("weight", 0.5) > 0 else
               "are reported with each answer but not averaged in (on held-out copies they lowered the accuracy)")  # fmt: skip
        if "accuracy_networks" in rv:
            held = held.replace("the networks with it", f"the networks alone for {rv['accuracy_networks']:.0%}, with it")
        lines.append(f"- reference vote: the {len(rv['labels'])} training spectra are kept as references; the classes "
                     f"of the {rv['k']} nearest materials (one vote each) {how}{held}")  # fmt: skip
    fid = m.get("fidelity")
    if fid:
        lines.append(f"- fidelity correction fast -> scf: shift {fid['delta']:g} eV over an onset of {fid['e1']:g} eV, "
                     f"broadening {fid['sigma']:g} eV; fitted on {fid['n_pairs']} twin sites, RMSE "
                     f"{fid['rmse_before']:.3f} -> {fid['rmse_after']:.3f}")  # fmt: skip
    mc = m.get("measured_calibration")
    if mc:
        drawn = "measured" in (hp.get("augment") or []) and (hp.get("measurement") or {}).get("stretch")
        how = ("; applied: the energy scale to every spectrum, Gaussian, damping and stretch drawn per measured-like "
               "copy from the ranges under `measurement` above" if drawn else "; applied whole to every spectrum")  # fmt: skip
        lines.append(f"- computed -> measured calibration: energy scale x{mc['stretch']:g} above the edge, shift "
                     f"{mc['shift']:g} eV, Gaussian {mc['sigma']:g} eV, damping {mc['damping']:g} ({mc['provenance']}){how}")  # fmt: skip
    lines.append(f"- backend {doc.backend} on {doc.device}; versions: "
                 + ", ".join(f"{k} {v}" for k, v in doc.versions.items()))  # fmt: skip
    return "\n".join(lines) + "\n"


def export_portable(doc: TrainingRunDoc, model: Any, out_dir: Path) -> Path:
    """Write ``model.keras``, ``card.json``, ``card.md`` (and ``references.npz``) into ``out_dir`` (created)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise XanesdbUserError(f"{out_dir} is a file; give a folder for the model")
    out_dir.mkdir(parents=True, exist_ok=True)
    import keras

    bare = keras.models.clone_model(model)  # uncompiled: the file holds no optimizer state
    bare.set_weights(model.get_weights())
    bare.save(out_dir / "model.keras")
    card = doc.model_dump(mode="json")
    card.pop("weights_file_id", None)
    refs = (card.get("metrics") or {}).get("reference_vote")
    if refs and refs.get("X"):
        import numpy as np

        np.savez_compressed(out_dir / "references.npz", X=np.asarray(refs.pop("X"), dtype=np.float16),
                            labels=np.asarray(refs.pop("labels"), dtype=np.int16),
                            names=np.asarray(refs.pop("names", None) or [], dtype=str))  # fmt: skip
        refs["file"] = "references.npz"
    elif (out_dir / "references.npz").exists():
        (out_dir / "references.npz").unlink()
    (out_dir / "card.json").write_text(json.dumps(card, indent=1))
    (out_dir / "card.md").write_text(_card_markdown(doc))
    return out_dir


def load_portable(path: Path) -> tuple[TrainingRunDoc, Any]:
    """The registry document and Keras model of a portable model folder."""
    import keras

    import xanesdb.ml.models  # noqa: F401 - registers the custom layers
    from xanesdb.schemas import TrainingRunDoc

    path = Path(path)
    card, weights = path / "card.json", path / "model.keras"
    if not (card.is_file() and weights.is_file()):
        raise XanesdbUserError(f"{path} is not a model folder (needs card.json and model.keras)")
    try:
        data = json.loads(card.read_text())
        refs = (data.get("metrics") or {}).get("reference_vote") or {}
        if refs.get("file"):
            import numpy as np

            with np.load(path / refs.pop("file")) as z:
                refs.update(X=z["X"].astype(np.float32).tolist(), labels=z["labels"].tolist(),
                            names=z["names"].tolist() or None)  # fmt: skip
        doc = TrainingRunDoc.model_validate(data)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as err:
        raise XanesdbUserError(f"{card} is not a valid model card ({type(err).__name__})") from None
    return doc, keras.saving.load_model(weights)


#: folder-name prefix of a model trained on the spectra of all absorbers together
POOLED = "all"


def shipped_models(short: bool = False) -> dict[str, Path]:
    """Absorber symbol (or ``"all"`` for a pooled model) -> folder of the shipped model for its K edge
    (``short``: the model for scans that end early, :data:`SHORT_DIR`)."""
    out = {}
    root = SHORT_DIR if short else SHIPPED_DIR
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "card.json").is_file():
                out[d.name.split("-")[0]] = d
    return out


def window_end_of(folder: Path) -> float | None:
    """The end of a portable model's input window (eV above the half step; None: the whole grid),
    read from its card without loading the networks."""
    from xanesdb.ml.inputs import window_end

    try:
        return window_end(json.loads((Path(folder) / "card.json").read_text()).get("hyperparameters", {}))
    except (OSError, ValueError):
        return None


def shipped_model_named(key: str) -> Path | None:
    """Folder of the shipped model that ``key`` names, or None.

    ``key`` is an absorber symbol (``"Fe"``; ``"all"``: the pooled model), a folder name
    (``"Fe-K-aligned"``) or the run id a shipped model answers with (``xanesdb predict`` prints it;
    a unique prefix of at least 8 characters is enough), so the id a user copies from a prediction
    works as ``--model`` on any database.
    """
    models = shipped_models()
    if key in models:
        return models[key]
    by_name = {d.name: d for d in models.values()}
    if key in by_name:
        return by_name[key]
    ids = {}
    for d in [*models.values(), *shipped_models(short=True).values()]:  # a short-scan model answers with its id too
        try:
            run_id = json.loads((d / "card.json").read_text()).get("run_id")
        except (OSError, ValueError):
            continue
        if isinstance(run_id, str):
            ids[run_id] = d
    if key in ids:
        return ids[key]
    hits = [d for rid, d in ids.items() if len(key) >= 8 and rid.startswith(key)]
    return hits[0] if len(hits) == 1 else None


def shipped_model_dir(element: str, short: bool = False) -> Path | None:
    """Folder of the shipped model of an absorber, or None where none was trained on its spectra
    (``short``: of the models for scans that end early).

    The pooled model (:data:`POOLED`, trained on Ti-Cu together) does not stand in for the others:
    made measured-like, the FEFF spectra of 52 Zn sites it never saw were read right for 25 (7 of the
    26 tetrahedra; ``benchmarks/results/unseen_zn_pooled.txt``). Ask for it by name (``"all"``).
    """
    return shipped_models(short).get(element) if element != POOLED else None
