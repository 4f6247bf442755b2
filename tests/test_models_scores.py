"""`xanesdb models list/show` give each task its own score (classification F1, regression MAE,
fractions MAE), not an empty F1 column for regression and fractions runs."""

from __future__ import annotations

from types import SimpleNamespace

from xanesdb.commands import ml


def test_headline_per_task():
    cls = {"task": "classification", "metrics": {"f1": {"macro": [0.91, 0.02]}}}
    reg = {"task": "regression", "metrics": {"targets": {
        "mean_bond_length": {"mae_ensemble": [0.031, 0.004], "mae_baseline": [0.12, 0.01]},
        "coordination_number": {"mae_ensemble": [0.2, 0.1], "mae_baseline": [0.7, 0.1]}}}}  # fmt: skip
    frac = {"task": "fractions", "metrics": {"mae_mixed": 0.084, "mae_mixed_baseline_mean": 0.21}}
    assert ml._headline(cls) == "F1 0.910 ± 0.020"
    assert ml._headline(reg) == "MAE mean_bond_length 0.031 ± 0.004 vs 0.120 ± 0.010 (+1)"
    assert ml._headline(frac) == "MAE fractions 0.084 vs 0.210"
    assert ml._headline({"metrics": {}}) == "F1 -"  # an old document without a task field


def test_show_prints_the_regression_table_and_the_fractions_line(capsys, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(ml, "console", Console(width=200))
    reg = SimpleNamespace(task="regression", classes=[], hyperparameters={}, metrics={"targets": {
        "mean_bond_length": {"mae_ensemble": [0.031, 0.004], "r2_ensemble": [0.8, 0.05], "mae_baseline": [0.12, 0.01],
                             "coverage": {"1sigma": 0.71}}}})  # fmt: skip
    ml._print_scores(reg)
    out = capsys.readouterr().out
    assert "mean_bond_length" in out and "0.031 ± 0.004" in out and "0.710" in out and "F1" not in out
    frac = SimpleNamespace(task="fractions", classes=[], hyperparameters={},
                           metrics={"mae_mixed": 0.084, "mae_all": 0.05, "mae_mixed_baseline_mean": 0.21,
                                    "mae_mixed_baseline_nnls": 0.15})  # fmt: skip
    ml._print_scores(frac)
    out = capsys.readouterr().out
    assert "MAE 0.084" in out and "non-negative least squares 0.150" in out
