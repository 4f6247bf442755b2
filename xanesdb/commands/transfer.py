"""``xanesdb train --from MODEL_ID``: fine-tune a registered network on a target query (thin: check, call
:mod:`xanesdb.ml.transfer`, print)."""

from __future__ import annotations

import json
from typing import Optional

from rich.table import Table

from xanesdb.commands._console import SafeConsole, epoch_bar

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)


def _ms(v) -> str:
    return f"{v[0]:.3f} ± {v[1]:.3f}" if isinstance(v, (list, tuple)) and len(v) == 2 else "-"


def train_transfer(criteria: dict, run_id: str, freeze: int, fraction: float, labels: Optional[list[str]], protocol: str,
                   n_models: int, ensemble: int, epochs: int, seed: int, standardize: str = "source") -> None:  # fmt: skip
    """Check the knobs and the source (before any data is read), fine-tune, register, print the scores."""
    from xanesdb.ml.transfer import TransferConfig, transfer_from_query
    from xanesdb.platform.settings import get_settings

    cfg = TransferConfig(freeze=freeze, fraction=fraction, n_models=n_models, ensemble=ensemble, protocol=protocol,
                         epochs=epochs, seed=seed, standardize=standardize)  # fmt: skip
    cfg.check()
    with epoch_bar(err_console, f"fine-tuning {n_models * ensemble} networks", epochs,
                   lambda loss: f"fine-tuning (loss {loss:.3f})") as on_epoch:  # fmt: skip
        res = transfer_from_query(run_id, criteria, cfg, get_settings(), labels=tuple(labels) if labels else None,
                                  on_epoch=on_epoch)  # fmt: skip
    doc = res.doc
    tr = doc.hyperparameters["transfer"]
    console.print(f"model {doc.run_id}: {doc.kind} fine-tuned from {tr['from']} on {doc.n_spectra} spectra "
                  f"({json.dumps(doc.query)[:80]}), fingerprint {doc.fingerprint}")  # fmt: skip
    console.print(f"grid {tr['source_grid']} -> {tr['target_grid']} (starts {tr['offset_ev']:+g} eV apart); frozen "
                  f"{', '.join(tr['frozen_layers']) or 'nothing'}; trained on {100 * fraction:g} % of each split's "
                  f"training rows (mean {sum(doc.metrics['n_train']) / len(doc.metrics['n_train']):.0f}); "
                  + ("new output layer" if tr["new_head"] else "output layer carried over"))  # fmt: skip
    if doc.task == "regression":
        t = Table(title=f"held-out scores ({protocol} protocol, mean ± std over {n_models} splits)")
        for c in ("target", "MAE ensemble", "MAE networks", "MAE baseline", "R² ensemble"):
            t.add_column(c)
        for lab, m in doc.metrics["targets"].items():
            t.add_row(lab, _ms(m["mae_ensemble"]), _ms(m["mae_networks"]), _ms(m["mae_baseline"]), _ms(m["r2_ensemble"]))
    else:
        f1 = doc.metrics["f1"]
        t = Table(title=f"F1 ({protocol} protocol, mean ± std over networks x bootstraps)")
        for c in [*doc.classes, "macro"]:
            t.add_column(c)
        t.add_row(*[_ms(f1.get(c)) for c in [*doc.classes, "macro"]])
    console.print(t)
    console.print(f"trained on {doc.device}; timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in doc.timings.items()))
