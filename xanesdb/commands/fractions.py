"""``xanesdb train --task fractions`` and ``xanesdb predict -m <fractions run>``: site fractions
(thin: check, call :mod:`xanesdb.ml.mixtures`, print)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rich.table import Table

from xanesdb.commands._console import SafeConsole, epoch_bar
from xanesdb.platform.errors import XanesdbUserError

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)


def train_fractions(criteria: dict, n_folds: int, epochs: int, seed: int, png: Optional[Path] = None,
                    fidelity: Optional[str] = None, calibration: Optional[str] = None) -> None:  # fmt: skip
    """Check the knobs, train, register, print held-out scores (and a parity PNG).

    ``fidelity="scf"`` warps the ``fast`` site spectra towards the ``scf`` preset first (better on
    measured spectra: ``benchmarks/results/mixtures_scf.txt``); ``calibration`` (``k-edge`` or a
    JSON file) then maps every site spectrum to what a measurement of it looks like before mixing
    (``benchmarks/results/mixtures_cal.txt``).
    """
    from xanesdb.ml.mixtures import CLASSES, MixtureConfig, train_fractions_from_query
    from xanesdb.platform.settings import get_settings

    if fidelity not in (None, "scf", "scflite"):
        raise XanesdbUserError(f"unknown --fidelity {fidelity!r}; use scf or scflite")
    cfg = MixtureConfig(n_folds=n_folds, epochs=epochs, seed=seed, fidelity=fidelity, calibration=calibration)
    cfg.check()  # before any data is read: nothing is registered on bad input
    if png is not None:
        from xanesdb.platform.export import check_output_file

        check_output_file(png, "--png")
    with epoch_bar(err_console, f"{n_folds} folds, then the final network", epochs,
                   lambda loss: f"final network (loss {loss:.3f})") as on_epoch:  # fmt: skip
        res = train_fractions_from_query(criteria, cfg, get_settings(), on_epoch=on_epoch)
    doc, m = res.doc, res.doc.metrics
    console.print(f"model {doc.run_id}: {len(res.sites)} site spectra, {m['n_materials']} complete materials "
                  f"({m['n_mixed_materials']} with several classes), fingerprint {doc.fingerprint}")  # fmt: skip
    t = Table(title=f"site fractions of held-out real materials ({m['n_folds']} folds over materials), MAE")
    for c in ("materials", "network", "baseline: training mean", "baseline: NNLS on class means"):
        t.add_column(c)
    t.add_row("several classes of site", f"{m['mae_mixed']:.3f}", f"{m['mae_mixed_baseline_mean']:.3f}",
              f"{m['mae_mixed_baseline_nnls']:.3f}")  # fmt: skip
    t.add_row("all held out", f"{m['mae_all']:.3f}", f"{m['mae_all_baseline_mean']:.3f}", f"{m['mae_all_baseline_nnls']:.3f}")
    console.print(t)
    console.print("per class (several classes): " + ", ".join(f"{c} {m['mae_mixed_per_class'][c]:.3f}" for c in CLASSES))
    if png is not None:
        plot_fraction_parity(doc, png)
        console.print(f"parity plot written to {png}")


def plot_fraction_parity(doc, path: Path) -> Path:
    """Held-out true against predicted fraction, one panel per class, as a PNG."""
    import numpy as np
    from matplotlib.figure import Figure

    rows = doc.metrics["heldout"]
    fig = Figure(figsize=(12, 4), dpi=110)
    for k, (ax, c) in enumerate(zip(fig.subplots(1, len(doc.classes)), doc.classes)):
        for mixed, col, lab in ((False, "tab:gray", "one class"), (True, "tab:red", "several classes")):
            sel = [r for r in rows if r["mixed"] == mixed]
            ax.scatter([r["true"][k] for r in sel], [r["pred"][k] for r in sel], s=12, alpha=0.6, color=col, label=lab)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        mae = np.mean([abs(r["pred"][k] - r["true"][k]) for r in rows if r["mixed"]])
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), xlabel=f"true {c} fraction", ylabel=f"predicted {c} fraction",
               title=f"{c}: MAE {mae:.3f} on mixed-site materials")  # fmt: skip
        ax.legend(fontsize=7)
    fig.suptitle(f"{doc.run_id}: held-out real materials (exact multiplicity-weighted averages)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def predict_fraction_rows(model: str, spectra: list, rows: list[dict], fmt: str, out: Optional[Path]) -> bool:
    """``xanesdb predict -m RUN`` for a registered fractions run: O6/S5/T4 fractions per spectrum.

    Returns False (nothing done) when ``model`` is a folder or not a fractions run.
    """
    if Path(model).is_dir():
        return False
    from xanesdb.ml.mixtures import CLASSES, fractions_of_measured, is_fractions_run
    from xanesdb.ml.registry import get_run, load_model
    from xanesdb.platform.settings import get_settings

    settings = get_settings()
    doc = get_run(model, settings)
    if not is_fractions_run(doc):
        return False
    net = load_model(doc, settings)
    for r in fractions_of_measured(net, spectra):
        r["model"] = doc.run_id
        rows.append(r)
    if fmt == "json" or out is not None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if out is not None:
            from xanesdb.platform.export import write_text_output

            write_text_output(out, text)
        else:
            print(text, end="")
    else:
        t = Table(title=f"xanesdb predict: {doc.run_id} (site fractions, aligned representation)")
        for c in ("#", "spectrum", *CLASSES):
            t.add_column(c, overflow="fold")
        for i, r in enumerate(rows, 1):
            t.add_row(str(i), r["name"], *(f"{r[c]:.2f}" if c in r else r.get("error", "")[:60] for c in CLASSES))
        console.print(t)
    n_err = sum("error" in r for r in rows)
    if n_err:
        raise XanesdbUserError(f"{n_err} of {len(rows)} spectra could not be predicted (rows marked error above)")
    return True
