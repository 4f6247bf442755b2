"""Markdown reports of training runs beside the paper's Table II, with PNG figures.

:func:`write_report` is what ``xanesdb models report`` runs: for the chosen registry documents it
writes ``report.md`` with a summary beside Carbone et al. (2019) Table II, one F1 table per group
of runs (dataset query, protocol, model kind, pre-edge, class weights), a confusion-matrix PNG per
run, robustness-curve PNGs comparing runs with and without augmentation where both exist, and
the cross-code scores stored by ``xanesdb models score``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.schemas import TrainingRunDoc

logger = logging.getLogger(__name__)

__all__ = [
    "PAPER_TABLE_II",
    "PAPER_COLUMNS",
    "f1_table",
    "absorber_of",
    "variant_of",
    "select_runs",
    "write_report",
]

#: Carbone et al. (2019) Table II, macro F1: absorber -> (MLP, CNN, pre-edge MLP, pre-edge CNN)
PAPER_TABLE_II: dict[str, tuple[float, float, float, float]] = {
    "Ti": (0.83, 0.84, 0.73, 0.78), "V": (0.86, 0.86, 0.77, 0.79), "Cr": (0.87, 0.87, 0.72, 0.75),
    "Mn": (0.83, 0.85, 0.62, 0.68), "Fe": (0.85, 0.86, 0.57, 0.63), "Co": (0.85, 0.87, 0.59, 0.64),
    "Ni": (0.87, 0.88, 0.61, 0.66), "Cu": (0.86, 0.86, 0.50, 0.64),
}  # fmt: skip
#: column names of :data:`PAPER_TABLE_II`
PAPER_COLUMNS = ("MLP", "CNN", "pre-edge MLP", "pre-edge CNN")


def _pm(v: Any) -> str:
    return f"{v[0]:.2f} ± {v[1]:.2f}" if isinstance(v, (list, tuple)) and len(v) == 2 else "-"


def f1_table(
    rows: list[tuple[Any, ...]],
    classes: list[str],
    extra_columns: list[str] | None = None,
) -> str:
    """A Markdown table: one row per run with per-class and macro F1 (mean ± std).

    Parameters
    ----------
    rows
        ``(label, metrics)`` or ``(label, metrics, extra_cells)`` per row; ``metrics`` holds
        ``f1`` {class: [mean, std], "macro": [mean, std]} and ``n_test``.
    classes
        Class columns, in order.
    extra_columns
        Names of columns appended after ``n test`` (their cells are ``extra_cells``).
    """
    extra_columns = list(extra_columns or [])
    head = "| model | " + " | ".join(f"F1 {c}" for c in classes) + " | macro F1 | n test |"
    head += "".join(f" {c} |" for c in extra_columns)
    sep = "|---" * (len(classes) + 3 + len(extra_columns)) + "|"
    lines = [head, sep]
    for row in rows:
        label, m = row[0], row[1]
        extras = list(row[2]) if len(row) > 2 else []
        f1 = m.get("f1", {})
        n_test = m.get("n_test", [])
        line = (f"| {label} | " + " | ".join(_pm(f1.get(c)) for c in classes)
                + f" | **{_pm(f1.get('macro'))}** | {sum(n_test) // max(len(n_test), 1)} |")  # fmt: skip
        line += "".join(f" {e} |" for e in extras + ["-"] * (len(extra_columns) - len(extras)))
        lines.append(line)
    return "\n".join(lines)


def absorber_of(query: dict[str, Any]) -> str | None:
    """The absorbing element a dataset query fixes (``{"element": "Cu", ...}``), else None."""
    el = query.get("element")
    if isinstance(el, str):
        return el
    for part in query.get("$and", []) if isinstance(query.get("$and"), list) else []:
        if isinstance(part, dict) and isinstance(part.get("element"), str):
            return part["element"]
    return None


def _paper_index(doc: TrainingRunDoc) -> int:
    return int(doc.kind == "cnn") + 2 * int(bool(doc.hyperparameters.get("pre_edge")))


def variant_of(doc: TrainingRunDoc) -> str:
    """Augmentation variant: ``'no augmentation'``, ``'shift'``, ``'shift+noise'``..."""
    aug = doc.hyperparameters.get("augment") or []
    return "+".join(aug) if aug else "no augmentation"


def _group_key(doc: TrainingRunDoc) -> tuple[str, str, str, bool, str]:
    hp = doc.hyperparameters
    return (json.dumps(doc.query, sort_keys=True), str(hp.get("protocol", "paper")), doc.kind,
            bool(hp.get("pre_edge")), str(hp.get("class_weight") or "none"))  # fmt: skip


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-")[:80]


def _short_title(doc: TrainingRunDoc) -> str:
    hp = doc.hyperparameters
    el = absorber_of(doc.query) or "?"
    kind = ("pre-edge " if hp.get("pre_edge") else "") + doc.kind.upper()
    return f"{el} {kind}, {hp.get('protocol', 'paper')} protocol, {variant_of(doc)}"


def select_runs(
    criteria: dict[str, Any] | None = None, settings: XanesdbSettings | None = None
) -> list[TrainingRunDoc]:
    """Complete registry documents matching ``criteria`` (a filter on ``models``), oldest first."""
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database
    from xanesdb.schemas import TrainingRunDoc

    crit = {"$and": [criteria or {}, {"state": "complete"}]}
    docs = get_database(settings or get_settings(), ensure=False)["models"].find(crit).sort("created", 1)
    return [TrainingRunDoc.from_mongo(d) for d in docs]


def _summary_table(docs: list[TrainingRunDoc]) -> str:
    """Best macro F1 per absorber, protocol and paper column, beside Table II."""
    cells: dict[tuple[str, str, str], dict[int, list[TrainingRunDoc]]] = defaultdict(lambda: defaultdict(list))
    for d in docs:
        el = absorber_of(d.query)
        if el is None or not d.metrics.get("f1", {}).get("macro"):
            continue
        src = d.query.get("source")
        src = f"source {src}" if isinstance(src, str) else "all sources"
        cells[(el, src, str(d.hyperparameters.get("protocol", "paper")))][_paper_index(d)].append(d)
    head = "| absorber | source of the numbers | " + " | ".join(PAPER_COLUMNS) + " |"
    lines = [head, "|---" * (2 + len(PAPER_COLUMNS)) + "|"]
    order = list(PAPER_TABLE_II)
    for el in sorted({k[0] for k in cells}, key=lambda e: (order.index(e) if e in order else 99, e)):
        paper = PAPER_TABLE_II.get(el)
        if paper:
            lines.append(f"| {el} | Carbone et al. 2019, Table II | " + " | ".join(f"{v:.2f}" for v in paper) + " |")
        for src, protocol in sorted({(k[1], k[2]) for k in cells if k[0] == el}, key=lambda t: (t[0], t[1] != "paper")):
            col = cells[(el, src, protocol)]
            out = []
            for i in range(len(PAPER_COLUMNS)):
                runs = col.get(i, [])
                if not runs:
                    out.append("-")
                    continue
                best = max(runs, key=lambda d: d.metrics["f1"]["macro"][0])
                n = f", best of {len(runs)}" if len(runs) > 1 else ""
                out.append(f"{_pm(best.metrics['f1']['macro'])} ({variant_of(best)}{n})")
            lines.append(f"| {el} | xanesdb, {src}, {protocol} protocol | " + " | ".join(out) + " |")
    if len(lines) == 2:
        return "_No run has a query that fixes one absorber (`{\"element\": ...}`)._"
    return "\n".join(lines)


def _cross_table(docs: list[TrainingRunDoc]) -> str | None:
    rows = []
    for d in docs:
        for s in d.metrics.get("cross_scores", []) or []:
            classes = s.get("classes", d.classes)
            per = ", ".join(f"{c} {_pm(s['f1'].get(c))}" for c in classes)
            rows.append(
                f"| `{d.run_id}` ({_short_title(d)}) | `{s['query_json']}` | {s['align']}"
                + (f" {s['shift_ev']:+g} eV" if s.get("shift_ev") else "")
                + f" | {s['n_scored']} ({s['n_materials']}) "
                + (f"| {s['n_excluded_training']} " if s.get("exclude_training_materials") else "| not excluded ")
                + f"| {s['n_off_grid']} (> {s.get('max_extrapolate_ev', 2):g} eV) | {per} "
                f"| **{_pm(s['f1']['macro'])}** | {s['f1_ensemble']['macro']:.2f} |"
            )
    if not rows:
        return None
    head = ("| model (trained on its query) | scored on | align | spectra (materials) scored | left out: training "
            "materials | left out: missing more of the grid than | F1 per class | macro F1 | ensemble macro F1 |")
    return "\n".join([head, "|---" * 9 + "|", *rows])


def write_report(
    docs: list[TrainingRunDoc],
    out_dir: Path,
    *,
    title: str = "xanesdb training report",
    selection: str = "",
) -> Path:
    """Write ``out_dir/report.md`` and its PNGs for the given runs.

    Parameters
    ----------
    docs
        Registry documents (complete runs).
    out_dir
        Folder for ``report.md``, ``confusion-<run_id>.png`` and ``robustness-<n>.png``.
    title
        First heading.
    selection
        How the runs were chosen (printed under the title).

    Returns
    -------
    Path
        The Markdown file.
    """
    from xanesdb import __version__
    from xanesdb.ml.plots import plot_confusion, plot_robustness
    from xanesdb.schemas.base import utcnow

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md: list[str] = [f"# {title}", ""]
    md.append(f"{len(docs)} training run(s) from the `models` collection{(' matching ' + selection) if selection else ''}; "
              f"written {utcnow():%Y-%m-%d %H:%M} UTC by xanesdb {__version__}.")  # fmt: skip
    md.append("")
    md.append("F1 is the mean ± standard deviation over the networks of a run and, for the training runs, "
              "over bootstrapped test sets (Carbone et al. 2019 protocol). Protocol `paper`: stratified "
              "90/10 splits; `grouped`: no material in both training and test set (stricter). The paper's "
              "numbers are macro F1 of Table II (FEFF9, Materials Project oxides).")  # fmt: skip
    md += ["", "## Summary beside the paper's Table II (macro F1)", "", _summary_table(docs), ""]
    md.append("A cell shows the best run of that kind and protocol (its augmentation in brackets); every run "
              "is listed below.")  # fmt: skip
    # --- one section per dataset query, one table per protocol / kind / pre-edge / class weights
    groups: dict[tuple, list[TrainingRunDoc]] = defaultdict(list)
    for d in docs:
        groups[_group_key(d)].append(d)
    by_query: dict[str, list[tuple]] = defaultdict(list)
    for key in groups:
        by_query[key[0]].append(key)
    n_fig = 0
    for query_json, keys in by_query.items():
        first = groups[keys[0]][0]
        fps = sorted({d.fingerprint for k in keys for d in groups[k]})
        md += ["", f"## Dataset `{query_json}`", ""]
        md.append(f"{first.n_spectra} spectra, label `{first.label_field}`, classes {', '.join(first.classes)}, "
                  f"grid {first.grid_name}; data fingerprint(s) {', '.join(fps)}.")  # fmt: skip
        el = absorber_of(first.query)
        for key in sorted(keys, key=lambda k: (k[1] != "paper", k[3], k[2], k[4])):
            runs = sorted(groups[key], key=lambda d: (variant_of(d), d.created))
            _, protocol, kind, pre_edge, cw = key
            kind_name = ("pre-edge " if pre_edge else "") + kind.upper()
            md += ["", f"### {kind_name}, {protocol} protocol, class weights {cw}", ""]
            paper = PAPER_TABLE_II.get(el or "")
            rows = []
            for d in runs:
                hp = d.hyperparameters
                label = f"{variant_of(d)} (`{d.run_id}`)"
                knn = (d.metrics.get("knn") or {}).get("f1", {}).get("macro")
                extras = [f"{paper[_paper_index(d)]:.2f}" if paper else "-", _pm(knn),
                          f"{hp.get('n_models')}{f' × ensemble {e}' if (e := hp.get('ensemble', 1)) > 1 else ''}"
                          f" × {hp.get('epochs')} ep, seed {d.seed}"]  # fmt: skip
                rows.append((label, d.metrics, extras))
            md.append(f1_table(rows, list(first.classes),
                               ["paper macro F1 (paper protocol)", "kNN-5 macro F1 (same splits)", "networks × epochs"]))
            md.append("")
            # confusion matrices
            for d in runs:
                conf = d.metrics.get("confusion")
                if not conf:
                    continue
                png = plot_confusion(conf, list(d.classes), out_dir / f"confusion-{_slug(d.run_id)}.png",
                                     title=f"{d.run_id}: {_short_title(d)}\nmacro F1 {_pm(d.metrics['f1'].get('macro'))}; "
                                           "count / row fraction, summed over test sets")  # fmt: skip
                md.append(f"![confusion matrix of {d.run_id}]({png.name})")
            # robustness curves where runs with and without augmentation both exist
            with_curves = [d for d in runs if d.metrics.get("shift_curve") or d.metrics.get("noise_curve")]
            variants = {variant_of(d) for d in with_curves}
            if "no augmentation" in variants and len(variants) > 1:
                n_fig += 1
                curves = {f"{variant_of(d)} ({d.run_id[-8:]})": d.metrics for d in with_curves}
                png = plot_robustness(
                    curves, out_dir / f"robustness-{n_fig}-{_slug((el or 'data') + '-' + kind_name + '-' + protocol)}.png",
                    title=f"{el or query_json[:40]} {kind_name}, {protocol} protocol: macro F1 on perturbed test "
                          "spectra, with and without training augmentation",
                )  # fmt: skip
                md += ["", "Robustness (test spectra shifted by -3..+3 eV or given Gaussian noise of sigma "
                           "0..0.1, networks trained with and without augmentation):", "",
                       f"![robustness curves]({png.name})"]  # fmt: skip
            elif with_curves:
                md += ["", f"_Robustness curves are stored for {', '.join(sorted(variants))} only; train the "
                           "same model with and without `--augment` to compare them._"]  # fmt: skip
    cross = _cross_table(docs)
    if cross:
        md += ["", "## Scores on other data (`xanesdb models score`)", "",
               "Models scored on the spectra of another query (e.g. another FEFF code), materials of the "
               "training data left out unless stated; F1 mean ± std over the model's networks.", "", cross]  # fmt: skip
    path = out_dir / "report.md"
    path.write_text("\n".join(md) + "\n")
    logger.info("report of %d runs written to %s", len(docs), path)
    return path
