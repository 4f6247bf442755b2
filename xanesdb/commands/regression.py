"""``xanesdb train --task regression``: descriptor regression (thin: check, call :mod:`xanesdb.ml.regression`, print)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rich.table import Table

from xanesdb.commands._console import SafeConsole, epoch_bar
from xanesdb.platform.errors import XanesdbUserError

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)


def _ms(v) -> str:
    return f"{v[0]:.4g} ± {v[1]:.2g}"


def train_regression(criteria: dict, labels: list[str], model: str, protocol: str, n_models: int, ensemble: int,
                     epochs: int, seed: int, train_fraction: float, png: Optional[Path], loss: str = "mse") -> None:  # fmt: skip
    """Check the knobs, train, register, print the scores (and write the parity PNG)."""
    from xanesdb.ml.regression import RegressionConfig, plot_parity, train_regression_from_query
    from xanesdb.platform.settings import get_settings

    cfg = RegressionConfig(family=model, labels=tuple(labels), protocol=protocol, n_models=n_models,
                           ensemble=ensemble, epochs=epochs, seed=seed, train_fraction=train_fraction, loss=loss)  # fmt: skip
    cfg.check()  # before any data is read: nothing is registered on bad input
    if png is not None:
        from xanesdb.platform.export import check_output_file

        check_output_file(png, "--png")
    with epoch_bar(err_console, f"training {n_models * ensemble} {model}", epochs,
                   lambda loss: f"training {n_models * ensemble} {model} (loss {loss:.3f})") as on_epoch:  # fmt: skip
        res = train_regression_from_query(criteria, cfg, get_settings(), on_epoch=on_epoch)
    doc = res.doc
    console.print(f"model {doc.run_id}: {doc.n_spectra} spectra ({len(set(res.dataset.groups))} materials), "
                  f"targets {', '.join(doc.classes)}, fingerprint {doc.fingerprint}")  # fmt: skip
    if res.dataset.n_dropped:
        console.print(f"{res.dataset.n_dropped} spectra left out: a target missing")
    t = Table(title=f"held-out scores ({protocol} protocol; mean ± std over {n_models} splits, networks: over all "
                    f"{doc.metrics['n_networks']})")  # fmt: skip
    for c in ("target", "MAE ensemble", "MAE networks", "MAE baseline", "R² ensemble", "±1σ cover", "±2σ cover", "mean σ"):
        t.add_column(c)
    for lab, m in doc.metrics["targets"].items():
        t.add_row(lab, _ms(m["mae_ensemble"]), _ms(m["mae_networks"]), _ms(m["mae_baseline"]), _ms(m["r2_ensemble"]),
                  f"{100 * m['coverage']['1sigma']:.0f} % (raw {100 * m['coverage_raw']['1sigma']:.0f})",
                  f"{100 * m['coverage']['2sigma']:.0f} % (raw {100 * m['coverage_raw']['2sigma']:.0f})", f"{m['mean_sigma']:.3g}")  # fmt: skip
    console.print(t)
    if png is not None:
        plot_parity(doc, png)
        console.print(f"parity plot written to {png}")
    console.print(f"trained on {doc.device}; timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in doc.timings.items()))


def predict_regression_rows(model: str, spectra: list, rows: list[dict], fmt: str, out: Optional[Path]) -> bool:
    """``xanesdb predict -m RUN`` for a registered regression run: ``value ± sigma`` per target.

    Returns False (nothing done) when ``model`` is not a registered regression run (a folder, or a
    classifier), so the classifier path runs as before. Spectra are put on the run's absolute grid
    by interpolation (held flat within 2 eV beyond the measured range), max-scaled as in training.
    """
    import numpy as np

    if Path(model).is_dir():
        return False
    from xanesdb.ml.regression import is_regression_run, load_regression_model, predict_regression
    from xanesdb.ml.registry import get_run
    from xanesdb.platform.settings import get_settings

    settings = get_settings()
    doc = get_run(model, settings)
    if not is_regression_run(doc):
        return False
    from xanesdb.ml.disorder import is_disorder_run

    if is_disorder_run(doc):
        raise XanesdbUserError(f"{model} is a disorder model; use `xanesdb disorder predict -m {model} FILES"
                               + (" --reference FILE`" if doc.hyperparameters["disorder"]["relative"] else "`"))
    net = load_regression_model(doc, settings)
    grid = np.asarray(doc.energies)
    for s in spectra:
        row = {"name": s.name, "file": getattr(s, "source_file", None) or getattr(s, "path", None), "absorber": s.absorber,
               "model": doc.run_id}  # fmt: skip
        e = np.asarray(s.energy, dtype=float) + float(getattr(s, "energy_shift_ev", 0.0) or 0.0)
        if e.min() > grid[0] + 2.0 or e.max() < grid[-1] - 2.0:
            row["error"] = (f"spectrum spans {e.min():.0f}..{e.max():.0f} eV, the model's grid {grid[0]:.0f}..{grid[-1]:.0f} eV "
                            f"({doc.grid_name}); not predicted")  # fmt: skip
            rows.append(row)
            continue
        x = np.interp(grid, e, np.asarray(s.mu, dtype=float))
        x = (x / x.max())[None, :].astype("float32")
        for lab, (v, sig) in predict_regression(doc, net, x).items():
            row[lab] = float(v[0])
            row[f"{lab}_sigma"] = float(sig[0])
        rows.append(row)
    if fmt == "json" or out is not None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if out is not None:
            from xanesdb.platform.export import write_text_output

            write_text_output(out, text)
        else:
            print(text, end="")
    else:
        t = Table(title=f"xanesdb predict: {doc.run_id} (regression, value ± σ calibrated on held-out spectra)")
        for c in ("#", "spectrum", *doc.classes):
            t.add_column(c, overflow="fold")
        for i, r in enumerate(rows, 1):
            t.add_row(str(i), r["name"], *(f"{r[lab]:.4g} ± {r[lab + '_sigma']:.2g}" if lab in r else r.get("error", "")
                                           for lab in doc.classes))  # fmt: skip
        console.print(t)
    n_err = sum("error" in r for r in rows)
    if n_err:
        raise XanesdbUserError(f"{n_err} of {len(rows)} spectra could not be predicted (rows marked error above)")
    return True
