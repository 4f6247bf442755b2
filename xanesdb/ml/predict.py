"""Class probabilities of spectra in files, from a registered model.

Files are CSV (``energy,mu`` with or without a header) or whitespace-separated columns as in
FEFF's ``xmu.dat`` (``#`` comments; with 6 columns, ``omega`` and ``mu`` = columns 1 and 4 are
used, otherwise columns 1 and 2). Each spectrum is optionally aligned (its edge moved onto the
training data's mean edge), interpolated onto the model's grid, scaled to max 1 and fed to every
network of the model; the probabilities are averaged over the networks.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from xanesdb.schemas import TrainingRunDoc

logger = logging.getLogger(__name__)

__all__ = ["read_spectrum", "edge_energy", "to_grid", "predict_spectra"]


def read_spectrum(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Energies (eV, ascending) and mu from a CSV or xmu.dat-style file."""
    path = Path(path)
    if not path.is_file():
        raise XanesdbUserError(f"{path} does not exist or is not a file")
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as err:
        raise XanesdbUserError(f"{path} cannot be read as text ({type(err).__name__})") from None
    rows: list[list[float]] = []
    header_lines = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            header_lines.append(s)
            continue
        parts = next(csv.reader([s])) if "," in s else s.split()
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            if not rows:  # a header line
                header_lines.append(s)
                continue
            raise XanesdbUserError(f"{path}:{lineno} is not numeric: {s[:60]!r}; give two columns energy,mu") from None
    if len(rows) < 5:
        raise XanesdbUserError(f"{path} has {len(rows)} data rows; a spectrum needs energy,mu columns and many rows")
    widths = {len(r) for r in rows}
    if len(widths) != 1 or min(widths) < 2:
        raise XanesdbUserError(f"{path} has rows of {sorted(widths)} columns; give two columns energy,mu")
    data = np.array(rows)
    mu_col = 3 if data.shape[1] == 6 else 1  # FEFF xmu.dat: omega e k mu mu0 chi
    e, mu = data[:, 0], data[:, mu_col]
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(mu))):
        raise XanesdbUserError(f"{path} contains non-finite values")
    order = np.argsort(e)
    e, mu = e[order], mu[order]
    if np.any(np.diff(e) <= 0):
        raise XanesdbUserError(f"{path} repeats an energy; energies must be distinct")
    if mu.max() <= 0:
        raise XanesdbUserError(f"{path} has no positive absorption")
    return e, mu


def edge_energy(energies: np.ndarray, mu: np.ndarray) -> float:
    """Edge energy: where d(mu)/dE is largest."""
    return float(energies[int(np.argmax(np.gradient(mu, energies)))])


def to_grid(e: np.ndarray, mu: np.ndarray, grid: np.ndarray, name: str = "spectrum") -> np.ndarray:
    """mu interpolated (cubic spline) onto ``grid``; refuses to extrapolate."""
    from scipy.interpolate import CubicSpline

    tol = 1e-6
    if e[0] > grid[0] + tol or e[-1] < grid[-1] - tol:
        raise XanesdbUserError(
            f"{name} covers {e[0]:.1f}-{e[-1]:.1f} eV but the model's grid needs "
            f"{grid[0]:.1f}-{grid[-1]:.1f} eV; give a spectrum spanning the grid (or use --align edge)"
        )
    return CubicSpline(e, mu)(grid)


def predict_spectra(
    doc: TrainingRunDoc,
    model: Any,
    files: list[Path],
    align: str = "none",
) -> list[dict[str, Any]]:
    """Probabilities per class for each file (mean over the model's networks).

    Parameters
    ----------
    doc
        The registry document (grid, classes, feature columns, training edge).
    model
        Its Keras model.
    files
        Spectrum files.
    align
        ``"none"``: absolute energies; ``"edge"``: shift each spectrum so its edge sits at the
        training data's mean edge (``metrics.train_edge_ev``).
    """
    grid = np.asarray(doc.energies, dtype=float)
    cols = np.asarray(doc.hyperparameters.get("feature_indices", range(len(grid))), dtype=int)
    rows = []
    for f in files:
        e, mu = read_spectrum(Path(f))
        shift = 0.0
        if align == "edge":
            target = doc.metrics.get("train_edge_ev")
            if target is None:
                raise XanesdbUserError(f"model {doc.run_id} has no stored training edge; use --align none")
            shift = float(target) - edge_energy(e, mu)
            e = e + shift
        elif align != "none":
            raise XanesdbUserError(f"unknown --align {align!r}; use none or edge")
        y = to_grid(e, mu, grid, name=str(f))
        if y.max() <= 0:
            raise XanesdbUserError(f"{f} has no positive absorption on the model's grid")
        rows.append((str(f), (y / y.max()).astype(np.float32), shift))
    X = np.stack([r[1] for r in rows])[:, cols]
    k = model.input_shape[1]
    P = model.predict(np.repeat(X[:, None, :], k, axis=1), verbose=0)
    probs = P.mean(axis=1)
    out = []
    for (name, _, shift), p, pk in zip(rows, probs, P):
        out.append({
            "file": name,
            "shift_ev": shift,
            "probabilities": {c: float(v) for c, v in zip(doc.classes, p)},
            "std": {c: float(v) for c, v in zip(doc.classes, pk.std(axis=0))},
            "predicted": doc.classes[int(np.argmax(p))],
        })  # fmt: skip
    return out
