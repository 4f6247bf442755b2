"""Tests of xanesdb.ml: augmentation, splits, grouped models, dataset/registry/predict on the real server."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from xanesdb.ml.augment import augment, shift_spectra
from xanesdb.ml.dataset import fingerprint_of, full_criteria
from xanesdb.ml.evaluate import make_splits, score_predictions

GRID = 8985.0 + 0.5 * np.arange(100)
CENTRES = {"T4": 9000.0, "S5": 9010.0, "O6": 9020.0}


def _synthetic_spectrum(cls: str, rng: np.random.Generator) -> np.ndarray:
    """An edge step plus a class-specific peak (position jittered), with noise."""
    c = CENTRES[cls] + rng.normal(0, 1.0)
    mu = 1 / (1 + np.exp(-(GRID - 8995.0) / 1.5)) + 0.8 * np.exp(-((GRID - c) ** 2) / 8.0)
    return mu + rng.normal(0, 0.01, GRID.shape)


def _spectrum_docs(n_per_class: int = 40, seed: int = 0) -> list[dict]:
    from xanesdb.schemas import SpectrumDoc

    rng = np.random.default_rng(seed)
    docs = []
    for cls in CENTRES:
        for i in range(n_per_class):
            mid = f"mp-{cls}-{i // 2}"  # two sites per material
            mu = _synthetic_spectrum(cls, rng)
            docs.append(SpectrumDoc(
                spectrum_id=f"{mid}:Cu:{i % 2}:K:test:std", task_id=f"{mid}:Cu:{i % 2}:K:test",
                site_id=f"{mid}:Cu:{i % 2}", material_id=mid, element="Cu", source="test",
                code="synthetic", preset="none", lce_class=cls, grid_name="Cu-K-test",
                energies=GRID.tolist(), mu=(mu / mu.max()).tolist(),
            ).to_mongo())  # fmt: skip
    # a duplicate and an unlabelled spectrum: excluded by default
    dup = dict(docs[0], spectrum_id="dup:std", duplicate_of=docs[0]["spectrum_id"])
    unl = dict(docs[1], spectrum_id="unlabelled:std", lce_class=None)
    return docs + [dup, unl]


# ----------------------------------------------------------------------------- unit
def test_shift_moves_a_peak_by_grid_points():
    X = np.zeros((1, 100), dtype=np.float32)
    X[0, 50] = 1.0
    assert np.argmax(shift_spectra(X, GRID, 1.0)[0]) == 52  # 1 eV = 2 points of 0.5 eV
    assert np.argmax(shift_spectra(X, GRID, -2.0)[0]) == 46
    half = shift_spectra(X, GRID, 0.25)[0]
    assert half[50] == pytest.approx(0.5) and half[51] == pytest.approx(0.5)


def test_augment_sizes_and_noise():
    rng = np.random.default_rng(0)
    X = np.ones((10, 100), dtype=np.float32)
    y = np.arange(10)
    Xa, ya = augment(X, y, GRID, ("shift",))
    assert Xa.shape == (50, 100) and (ya[:10] == y).all() and (ya[40:] == y).all()
    Xn, _ = augment(X, y, GRID, ("shift", "noise"), rng=rng)
    assert Xn.shape == (90, 100)
    assert np.std(Xn[50:] - 1.0) == pytest.approx(0.03, rel=0.1)
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(X, y, GRID, ("rotate",))


def test_fingerprint_is_order_free_and_sees_updates():
    t = datetime(2025, 1, 1, tzinfo=timezone.utc)
    a = fingerprint_of([("a", t), ("b", t)])
    assert a == fingerprint_of([("b", t), ("a", t)])
    assert a != fingerprint_of([("a", t), ("b", datetime(2025, 1, 2, tzinfo=timezone.utc))])
    assert a != fingerprint_of([("a", t)])
    crit = full_criteria({"element": "Cu"})
    assert {"duplicate_of": None} in crit["$and"] and {"element": "Cu"} in crit["$and"]
    assert {"duplicate_of": None} not in full_criteria({}, include_duplicates=True)["$and"]


def test_grouped_splits_keep_materials_apart():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    groups = np.array([f"m{i // 3}" for i in range(300)])
    for tr, te in make_splits(y, groups, "grouped", 10, 0.1, seed=1):
        assert not set(groups[tr]) & set(groups[te])
        assert 0.05 < len(te) / len(y) < 0.15
    paper = make_splits(y, groups, "paper", 10, 0.1, seed=1)
    assert len(paper) == 10 and all(len(te) == 30 for _, te in paper)
    assert any(set(groups[tr]) & set(groups[te]) for tr, te in paper)  # the paper's split mixes them


def test_scores_perfect_and_wrong():
    y = np.repeat([0, 1, 2], 20)
    s = score_predictions([y], [y], ("O6", "S5", "T4"), n_bootstrap=5)
    assert s["f1"]["macro"][0] == pytest.approx(1.0) and s["confusion"][1] == [0, 20, 0]
    s = score_predictions([y], [np.zeros_like(y)], ("O6", "S5", "T4"), n_bootstrap=0)
    assert s["f1"]["S5"][0] == 0.0 and s["f1"]["macro"][0] < 0.3
    # tiny test sets (10 % of 30 spectra): resamples that miss a class do not count it as 0
    small = np.array([0, 1, 2])
    s = score_predictions([small] * 10, [small] * 10, ("O6", "S5", "T4"), n_bootstrap=10)
    assert s["f1"]["macro"] == [1.0, 0.0] and s["f1"]["S5"][0] == 1.0
    s = score_predictions([small], [np.array([0, 1, 1])], ("O6", "S5", "T4"), n_bootstrap=0)
    assert s["f1"]["T4"][0] == 0.0 and s["f1"]["macro"][0] == pytest.approx((1 + 2 / 3 + 0) / 3)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_grouped_networks_are_independent(kind):
    """Network 0's output does not depend on what network 1 sees, before or after training."""
    import keras

    from xanesdb.ml.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(kind, 100, 3, n_models=2)
    rng = np.random.default_rng(0)
    X = rng.random((64, 2, 100)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, (64, 2)), 3)
    model.fit(X, y, batch_size=32, epochs=1, verbose=0)
    X2 = X.copy()
    X2[:, 1] = rng.random((64, 100))
    p1, p2 = model.predict(X, verbose=0), model.predict(X2, verbose=0)
    assert p1.shape == (64, 2, 3)
    np.testing.assert_allclose(p1[:, 0], p2[:, 0], atol=1e-6)
    assert np.abs(p1[:, 1] - p2[:, 1]).max() > 1e-4


def test_min_steps_raises_epochs_on_small_data_only():
    """--min-steps: a 40-spectrum set gets enough updates; the paper's runs keep their ids and epochs."""
    from xanesdb.ml.train import TrainConfig, effective_epochs, fit_group

    assert effective_epochs(TrainConfig(), 40) == 50
    assert effective_epochs(TrainConfig(min_steps=300), 40) == 150  # 2 batches of 32 per epoch
    assert effective_epochs(TrainConfig(min_steps=300), 20_000) == 50
    assert "min_steps" not in TrainConfig().as_dict()  # earlier registry ids unchanged
    assert TrainConfig.from_dict(TrainConfig(min_steps=300).as_dict()).min_steps == 300
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 100)).astype("float32"), rng.integers(0, 3, 40)
    seen = []
    fit_group(X, y, [np.arange(30), np.arange(10, 40)], GRID, 3, TrainConfig(epochs=2, min_steps=12),
              on_epoch=lambda e, loss, total: seen.append((e, total)))  # fmt: skip
    assert seen[-1] == (12, 12)  # 30 rows: 1 batch per epoch, so 12 epochs


def test_ensemble_trains_members_per_split_and_scores_their_mean():
    """--ensemble K: K networks per split side by side, a split scored on their mean probabilities."""
    from xanesdb.ml.dataset import XanesDataset
    from xanesdb.ml.train import TrainConfig, predict_group, train_on_dataset

    assert "ensemble" not in TrainConfig().as_dict()  # earlier registry ids unchanged
    assert TrainConfig.from_dict(TrainConfig(ensemble=3).as_dict()).ensemble == 3
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    X = (rng.random((60, 100)) * 0.2 + np.eye(3)[y] @ rng.random((3, 100))).astype("float32")
    ds = XanesDataset(X=X, labels=np.array(["O6", "S5", "T4"])[y], groups=np.array([f"m{i}" for i in range(60)]),
                      spectrum_ids=tuple(map(str, range(60))), energies=GRID, grid_name="g", query={},
                      criteria={}, label_field="lce_class", fingerprint="f")  # fmt: skip
    cfg = TrainConfig(epochs=3, n_models=2, ensemble=3, n_bootstrap=0, curves=False)
    model, metrics, cols, splits = train_on_dataset(ds, cfg)
    assert model.input_shape[1] == 6 and len(splits) == 2
    # the members of a split differ (own initialisation), and the split is scored on their mean
    te = splits[0][1]
    P = predict_group(model, [X[te]] * 6)
    assert not np.allclose(P[0], P[1])
    mean_pred = np.mean(P[:3], axis=0).argmax(axis=1)
    from xanesdb.ml.evaluate import f1_per_class

    assert metrics["f1_per_model"][0] == pytest.approx(float(f1_per_class(ds.encode(ds.classes)[te], mean_pred, 3)[-1]))


# ----------------------------------------------------------------------------- integration
@pytest.fixture
def spectra_db(db_settings):
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    db.spectra.insert_many(_spectrum_docs())
    return db_settings


@pytest.mark.integration
def test_dataset_from_query_cache_and_streaming(spectra_db):
    from xanesdb.ml.dataset import SpectraBatches, load_dataset
    from xanesdb.platform.stores import database_uri, get_database

    ds = load_dataset({"element": "Cu"}, spectra_db)
    assert len(ds) == 120 and ds.X.shape == (120, 100) and ds.classes == ("O6", "S5", "T4")
    assert "dup:std" not in ds.spectrum_ids and "unlabelled:std" not in ds.spectrum_ids
    assert np.allclose(ds.X.max(axis=1), 1.0) and ds.timings["cache_hit"] == 0.0
    again = load_dataset({"element": "Cu"}, spectra_db)
    assert again.timings["cache_hit"] == 1.0 and again.fingerprint == ds.fingerprint
    np.testing.assert_array_equal(again.X, ds.X)
    assert len(load_dataset({"element": "Cu"}, spectra_db, include_duplicates=True)) == 121
    # a touched document changes the fingerprint
    get_database(spectra_db).spectra.update_one(
        {"spectrum_id": ds.spectrum_ids[0]}, {"$set": {"last_updated": datetime.now(timezone.utc)}}
    )
    assert load_dataset({"element": "Cu"}, spectra_db).fingerprint != ds.fingerprint
    # streaming: picklable, same rows as the in-memory dataset
    batches = SpectraBatches(database_uri(spectra_db), spectra_db.DB_NAME, list(ds.spectrum_ids), classes=ds.classes)
    batches[0]
    clone = pickle.loads(pickle.dumps(batches))
    Xb, yb = clone[1]
    np.testing.assert_allclose(Xb, ds.X[32:64], rtol=1e-6)
    assert (yb.argmax(axis=1) == ds.encode()[32:64]).all() and len(clone) == 4


@pytest.mark.integration
def test_train_register_show_predict(spectra_db, tmp_path, capsys):
    from xanesdb.cli import main
    from xanesdb.ml.registry import get_run, list_runs, load_model
    from xanesdb.ml.train import TrainConfig, train_from_query

    cfg = TrainConfig(kind="cnn", epochs=6, n_models=3, augment=("shift",), protocol="grouped", seed=3)
    res = train_from_query({"element": "Cu"}, cfg, spectra_db)
    doc = res.doc
    assert doc.state == "complete" and doc.weights_file_id and doc.n_spectra == 120
    assert doc.metrics["f1"]["macro"][0] > 0.6  # separable synthetic classes
    assert len(doc.metrics["shift_curve"]["mean"]) == 7 and doc.backend and doc.versions["keras"]
    stored = get_run(doc.run_id[:12], spectra_db)
    assert stored.fingerprint == doc.fingerprint and stored.hyperparameters["augment"] == ["shift"]
    model = load_model(stored, spectra_db)
    assert model.input_shape == (None, 3, 100)
    # same query + seed: same fingerprint and run id, metrics within noise
    again = train_from_query({"element": "Cu"}, cfg, spectra_db).doc
    assert again.run_id == doc.run_id and again.fingerprint == doc.fingerprint
    assert abs(again.metrics["f1"]["macro"][0] - doc.metrics["f1"]["macro"][0]) < 0.1
    assert len(list_runs(spectra_db)) == 1  # re-registered, not duplicated
    # predict from files through the CLI
    rng = np.random.default_rng(9)
    good = tmp_path / "o6.csv"
    e = np.linspace(8980, 9040, 300)
    mu = np.interp(e, GRID, _synthetic_spectrum("O6", rng))
    good.write_text("energy,mu\n" + "\n".join(f"{a},{b}" for a, b in zip(e, mu)))
    xmu = tmp_path / "xmu.dat"
    xmu.write_text("# Cu K edge, FEFF 10.0\n# omega e k mu mu0 chi\n" + "\n".join(f"{a} 0 0 {b} 0 0" for a, b in zip(e, mu)))
    main(["predict", "--model", doc.run_id, str(good), str(xmu), "--format", "json", "--align", "none"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all('"best_class": "O6"' in line for line in out), out
    # a measured-looking file read by a grid model says what the model is not made for; FEFF output does not
    from xanesdb.ml.predict import GRID_MODEL_NOTE

    assert [json.loads(line)["note"] for line in out] == [GRID_MODEL_NOTE, None]
    short = tmp_path / "short.csv"
    short.write_text("\n".join(f"{a},{b}" for a, b in zip(e[:100], mu[:100])))
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,4\n5,x\n6,7\n8,9\n10,11\n")
    for f, msg in ((short, "at least 20 eV"), (bad, "not numeric")):
        with pytest.raises(SystemExit) as exc:
            main(["predict", "--model", doc.run_id, str(f), "--align", "none"])
        assert exc.value.code == 2
        captured = capsys.readouterr()
        assert msg in captured.out and "1 of 1 spectra could not be predicted" in captured.err
    main(["models", "list"])
    assert doc.run_id in capsys.readouterr().out
    main(["models", "show", doc.run_id])
    assert "confusion" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["train", "--query", '{"element": "Zz"}', "--epochs", "1"])
    assert exc.value.code == 2 and "no spectra match" in capsys.readouterr().err


@pytest.mark.integration
def test_killed_registration_leaves_no_complete_doc(spectra_db):
    """A save that dies after the 'training' document leaves that state, never 'complete'."""
    from xanesdb.ml.dataset import load_dataset
    from xanesdb.ml.registry import make_run_doc, register_run
    from xanesdb.ml.train import TrainConfig, train_on_dataset
    from xanesdb.platform.stores import get_database

    cfg = TrainConfig(kind="mlp", epochs=1, n_models=2, curves=False, n_bootstrap=0)
    ds = load_dataset({"element": "Cu"}, spectra_db)
    model, metrics, cols, _ = train_on_dataset(ds, cfg)
    doc = make_run_doc(ds, cfg, metrics, cols, metrics.pop("timings"))

    class Dies:
        def save(self, path):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        register_run(doc, Dies(), spectra_db)
    stored = get_database(spectra_db).models.find_one({"run_id": doc.run_id})
    assert stored["state"] == "training" and stored["weights_file_id"] is None


@pytest.mark.integration
def test_trains_under_a_second_backend(tmp_path):
    """The same code trains under Keras' JAX backend (no tf.* anywhere)."""
    code = (
        "import numpy as np, keras\n"
        "from xanesdb.ml.train import fit_group, TrainConfig\n"
        "assert keras.backend.backend() == 'jax'\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.random((60, 100)).astype('float32'); y = np.repeat([0, 1, 2], 20)\n"
        "X[y == 1, 40:50] += 1; X[y == 2, 60:70] += 1\n"
        "cfg = TrainConfig(kind='cnn', epochs=10, batch_size=8, n_models=2)\n"
        "m = fit_group(X, y, [np.arange(60), np.arange(60)], np.linspace(0, 50, 100), 3, cfg)\n"
        "p = m.predict(np.repeat(X[:, None], 2, axis=1), verbose=0)\n"
        "print('acc', (p.argmax(-1)[:, 0] == y).mean())\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    acc = float(r.stdout.split("acc")[-1])
    assert acc > 0.8


def test_pre_edge_indices_end_where_the_edge_rises():
    from xanesdb.ml.train import pre_edge_indices

    e = np.arange(100) * 0.5
    X = np.tile(1 / (1 + np.exp(-(e - 20.0))), (5, 1))  # edge at 20 eV: point 40
    idx = pre_edge_indices(X)
    assert idx[0] == 0 and 30 <= len(idx) <= 40
    early = np.tile(1 / (1 + np.exp(-(e - 2.0))), (5, 1))  # edge at the grid's start: the minimum
    assert len(pre_edge_indices(early)) == 20


def test_recipe_measured_is_the_shipped_models_recipe(monkeypatch):
    """``xanesdb train --recipe measured`` trains with the recipe of the shipped models (the
    fields of MEASURED_RECIPE, which scripts/train_shipped_models.py takes as its defaults); an
    option given besides it replaces its part."""
    import xanesdb.ml.train as train_module
    from xanesdb.cli import main
    from xanesdb.ml.portable import SHIPPED_DIR
    from xanesdb.platform.errors import XanesdbUserError

    seen = []

    def captured(criteria, config, *args, **kwargs):
        seen.append(config)
        raise XanesdbUserError("stopped before training")

    monkeypatch.setattr(train_module, "train_from_query", captured)
    for extra in ([], ["--n-models", "3", "--window=0,40"]):
        with pytest.raises(SystemExit):
            main(["train", "-q", '{"element": "Fe"}', "--recipe", "measured", *extra])
    shipped = json.loads((SHIPPED_DIR / "Fe-K-aligned" / "card.json").read_text())["hyperparameters"]
    recipe, changed = seen
    for key in ("representation", "augment", "fidelity", "calibration", "window", "n_models", "min_steps", "class_weight"):
        assert json.dumps(getattr(recipe, key)) == json.dumps(shipped[key]), key
    assert {k: shipped["measurement"][k] for k in recipe.measurement} == recipe.measurement
    assert changed.n_models == 3 and changed.window == (0.0, 40.0) and changed.fidelity == "scf"
