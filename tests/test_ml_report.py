"""Tests of ``xanesdb models score|reproduce|report`` on the real local server.

Synthetic spectra of two "codes": source ``xanesdb`` and source ``omnixas`` whose energy scale is
7 eV higher (as FEFF9's edges sit above FEFF10's), each on its own grid, with a few materials in
both. A class is told by where its peak sits above the edge, so a model trained on one source
scores well on the other only after edge alignment.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

OFFSET_EV = 7.0  # the omnixas-like source's energy scale sits this much higher
PEAK_ABOVE_EDGE = {"T4": 5.0, "S5": 15.0, "O6": 25.0}


def _spectrum(grid: np.ndarray, edge: float, cls: str, rng: np.random.Generator) -> np.ndarray:
    """A steep edge step plus a broad class peak at a fixed distance above the edge, with noise."""
    c = edge + PEAK_ABOVE_EDGE[cls] + rng.normal(0, 0.7)
    mu = 1 / (1 + np.exp(-(grid - edge) / 0.5)) + 0.8 * np.exp(-((grid - c) ** 2) / 18.0)
    mu = mu + rng.normal(0, 0.01, grid.shape)
    return mu / mu.max()


def _docs(source: str, n_per_class: int, seed: int, shared: int = 0) -> list[dict]:
    """Spectra of one source; the first ``shared`` materials per class carry the other source's ids."""
    from xanesdb.schemas import SpectrumDoc

    offset = OFFSET_EV if source == "omnixas" else 0.0
    grid = 8985.0 + offset + 0.5 * np.arange(100)
    rng = np.random.default_rng(seed)
    docs = []
    for cls in PEAK_ABOVE_EDGE:
        for i in range(n_per_class):
            m = i // 2
            mid = f"mp-x{cls}-{m}" if (source == "xanesdb" or m < shared) else f"mp-o{cls}-{m}"
            edge = 8995.0 + offset + rng.normal(0, 0.5)
            tid = f"{mid}:Cu:{i % 2}:K:{source}"
            docs.append(SpectrumDoc(
                spectrum_id=f"{tid}:std", task_id=tid, site_id=f"{mid}:Cu:{i % 2}", material_id=mid,
                element="Cu", source=source, code="synthetic", preset="none", lce_class=cls,
                grid_name=f"Cu-K-{source}-test", energies=grid.tolist(),
                mu=_spectrum(grid, edge, cls, rng).tolist(),
            ).to_mongo())  # fmt: skip
    return docs


@pytest.fixture
def two_sources(db_settings):
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    db.spectra.insert_many(_docs("xanesdb", 40, seed=0))
    db.spectra.insert_many(_docs("omnixas", 30, seed=1, shared=1))  # 1 material (2 spectra) per class shared
    return db_settings


def _train(settings, register=True, **kw):
    from xanesdb.ml.train import TrainConfig, train_from_query

    knobs = dict(kind="mlp", epochs=3, n_models=2, n_bootstrap=2, learning_rate=3e-3, curves=False, seed=1)
    knobs.update(kw)
    return train_from_query({"source": "xanesdb", "element": "Cu"}, TrainConfig(**knobs), settings, register=register)


# ----------------------------------------------------------------------------- unit
def test_spectra_onto_grid_aligns_edges_and_refuses_far_extrapolation():
    from xanesdb.ml.crosscheck import spectra_onto_grid

    rng = np.random.default_rng(0)
    grid = 8985.0 + 0.5 * np.arange(100)
    other = grid + OFFSET_EV
    mu = _spectrum(other, 8995.0 + OFFSET_EV, "S5", rng)
    X, kept, _ = spectra_onto_grid([(other, mu)], grid, align="none")
    assert len(kept) == 0 and X.shape == (0, 100)  # misses 7 eV of the grid
    X, kept, shifts = spectra_onto_grid([(other, mu)], grid, align="edge", target_edge_ev=8995.0)
    assert list(kept) == [0] and shifts[0] == pytest.approx(-OFFSET_EV, abs=0.5)
    assert abs(grid[np.argmax(np.gradient(X[0], grid))] - 8995.0) <= 0.5 and X.max() == pytest.approx(1.0)
    X2, kept, _ = spectra_onto_grid([(other, mu)], grid, align="none", shift_ev=-OFFSET_EV)
    np.testing.assert_allclose(X2[0], X[0], atol=0.15)


# ----------------------------------------------------------------------------- integration
@pytest.mark.integration
def test_score_across_sources(two_sources, tmp_path, capsys):
    from xanesdb.cli import main
    from xanesdb.ml.crosscheck import score_model_on_query
    from xanesdb.ml.registry import get_run

    run = _train(two_sources).doc
    omni = {"source": "omnixas", "element": "Cu"}
    res = score_model_on_query(run, omni, two_sources, align="edge")
    assert res["n_found"] == 90 and res["n_excluded_training"] == 6 and res["n_scored"] == 84
    assert res["n_off_grid"] == 0 and res["n_networks"] == 2
    assert res["f1"]["macro"][0] > 0.7, res["f1"]  # the class peaks sit where training saw them
    assert np.sum(res["confusion"]) == 84
    assert res["mean_shift_ev"] == pytest.approx(-OFFSET_EV, abs=1.0)
    kept = score_model_on_query(run, omni, two_sources, exclude_training_materials=False)
    assert kept["n_scored"] == 90 and kept["n_excluded_training"] == 0
    # the same source is all training materials
    with pytest.raises(Exception, match="none of the 120 spectra is left"):
        score_model_on_query(run, {"source": "xanesdb"}, two_sources)
    # through the CLI: stored on the run document, PNG written
    png = tmp_path / "cross.png"
    main(["models", "score", "--model", run.run_id, "--query", json.dumps(omni), "--png", str(png)])
    out = capsys.readouterr().out
    assert "84 scored" in out and "6 of training materials left out" in out and "macro" in out
    assert png.stat().st_size > 5000
    main(["models", "score", "--model", run.run_id[:14], "--query", json.dumps(omni)])  # same key: replaced
    stored = get_run(run.run_id, two_sources).metrics["cross_scores"]
    assert len(stored) == 1 and stored[0]["n_scored"] == 84 and stored[0]["align"] == "edge"
    # without alignment the other code's spectra miss 7 eV of the grid: one-line error, exit 2
    for args, msg in (
        (["--model", run.run_id, "--query", json.dumps(omni), "--align", "none"], "covers the model's grid"),
        (["--model", "mlp-nosuchmodel", "--query", json.dumps(omni)], "no model 'mlp-nosuchmodel'"),
        (["--model", run.run_id, "--query", '{"source": omnixas}'], "not valid JSON"),
        (["--model", run.run_id, "--query", json.dumps(omni), "--align", "peak"], "unknown --align"),
        (["--model", run.run_id, "--query", '{"source": "nowhere"}'], "no spectra match"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["models", "score", *args])
        err = capsys.readouterr().err
        assert exc.value.code == 2, err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    # a constant shift instead of per-spectrum alignment also brings them onto the grid
    main(["models", "score", "--model", run.run_id, "--query", json.dumps(omni), "--align", "none",
          "--shift", str(-OFFSET_EV), "--json", "--no-store"])  # fmt: skip
    shifted = json.loads(capsys.readouterr().out)
    assert shifted["n_scored"] + shifted["n_off_grid"] == 84 and shifted["n_scored"] > 40


@pytest.mark.integration
def test_reproduce_from_the_registry(two_sources, capsys):
    from datetime import datetime, timezone

    from xanesdb.cli import main
    from xanesdb.platform.stores import get_database

    run = _train(two_sources, epochs=2).doc
    main(["models", "reproduce", run.run_id])
    out = capsys.readouterr().out
    assert f"stored {run.fingerprint}, now {run.fingerprint} (equal)" in out
    assert "reproduced: same data" in out and "macro" in out
    # the data changed after training: the fingerprint differs -> exit 1 with the reason
    get_database(two_sources).spectra.update_one(
        {"source": "xanesdb"}, {"$set": {"last_updated": datetime.now(timezone.utc)}}
    )
    with pytest.raises(SystemExit) as exc:
        main(["models", "reproduce", run.run_id, "--tol", "1"])
    assert exc.value.code == 1
    assert "fingerprint differs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["models", "reproduce", "cnn-nosuchrun"])
    assert exc.value.code == 2


@pytest.mark.integration
def test_report_tables_and_figures(two_sources, tmp_path, capsys):
    from xanesdb.cli import main
    from xanesdb.ml.crosscheck import score_model_on_query, store_cross_score

    plain = _train(two_sources, curves=True).doc
    shifted = _train(two_sources, curves=True, augment=("shift",)).doc
    grouped = _train(two_sources, protocol="grouped").doc
    store_cross_score(score_model_on_query(plain, {"source": "omnixas"}, two_sources), two_sources)
    out = tmp_path / "report"
    main(["models", "report", "--out", str(out)])
    assert "report of 3 runs" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    for d in (plain, shifted, grouped):
        assert f"`{d.run_id}`" in md
        assert (out / f"confusion-{d.run_id}.png").stat().st_size > 5000
        assert f"(confusion-{d.run_id}.png)" in md
    assert "| Cu | Carbone et al. 2019, Table II | 0.86 | 0.86 | 0.50 | 0.64 |" in md
    assert "| Cu | xanesdb, source xanesdb, paper protocol |" in md
    assert "| Cu | xanesdb, source xanesdb, grouped protocol |" in md
    assert "### MLP, paper protocol, class weights none" in md and "### MLP, grouped protocol" in md
    f1 = plain.metrics["f1"]["macro"]
    assert f"| no augmentation (`{plain.run_id}`) |" in md and f"**{f1[0]:.2f} ± {f1[1]:.2f}**" in md
    # the kNN baseline beside the networks, scored on their own splits
    knn = plain.metrics["knn"]
    assert knn["k"] == 5 and 0.0 <= knn["f1_macro"] <= 1.0 and "kNN-5 macro F1 (same splits)" in md
    assert f"{knn['f1']['macro'][0]:.2f} ± {knn['f1']['macro'][1]:.2f}" in md
    pngs = sorted(p.name for p in out.glob("robustness-*.png"))
    assert len(pngs) == 1 and f"({pngs[0]})" in md  # paper-protocol MLP with and without augmentation
    assert "## Scores on other data" in md and '`{"source": "omnixas"}`' in md
    # a filter on the models collection, and nothing matching
    main(["models", "report", "--out", str(tmp_path / "g"), "--query", '{"hyperparameters.protocol": "grouped"}'])
    md_g = (tmp_path / "g" / "report.md").read_text()
    assert grouped.run_id in md_g and plain.run_id not in md_g
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["models", "report", "--out", str(tmp_path / "none"), "--query", '{"kind": "cnn"}'])
    assert exc.value.code == 2 and "no complete training runs" in capsys.readouterr().err


def test_knn_baseline_separates_distinct_shapes_and_not_random_labels():
    from xanesdb.ml.train import knn_baseline

    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 60)
    a = np.exp(-((grid - 0.3) / 0.05) ** 2)
    b = np.exp(-((grid - 0.7) / 0.05) ** 2)
    X = np.concatenate([a + rng.normal(0, 0.05, (40, 60)), b + rng.normal(0, 0.05, (40, 60))])
    y = np.repeat([0, 1], 40)
    idx = rng.permutation(80)
    splits = [(idx[:60], idx[60:]), (idx[20:], idx[:20])]
    assert knn_baseline(X, y, splits, ["A", "B"])["f1_macro"] == 1.0
    shuffled = rng.permutation(y)
    assert knn_baseline(X, shuffled, splits, ["A", "B"])["f1_macro"] < 0.8
