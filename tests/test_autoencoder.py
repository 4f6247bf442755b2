"""Autoencoder pretraining (issue 20 item 4): reconstruction, codes, few-label comparison, the 2-d picture."""

from __future__ import annotations

import numpy as np
import pytest

from xanesdb.ml.autoencoder import (VARIANTS, AutoencoderConfig, _encoder_for_pairs, build_autoencoder, encode,
                                    few_label_comparison, fit_autoencoders, plot_code_map, reconstruction_error)


def _spectra(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    i = np.arange(100)
    pos = 40 + 8 * y[:, None] + rng.normal(0, 1.0, (n, 1))
    X = 1 / (1 + np.exp(-(i - 30) / 2)) + 0.6 * np.exp(-((i - pos) ** 2) / 8) + rng.normal(0, 0.02, (n, 100))
    return (X / X.max(axis=1, keepdims=True)).astype("float32"), y, np.array([f"mp-{k // 2}" for k in range(n)])


def test_autoencoder_learns_and_encodes():
    X, _, _ = _spectra(200)
    cfg = AutoencoderConfig(epochs=1, seed=0)
    ae0, _ = build_autoencoder(100, 1, cfg)
    assert [layer.name for layer in ae0.layers if layer.weights][1:4] == ["dense_0", "dense_1", "dense_2"]
    ae, enc = fit_autoencoders(X, [np.arange(150), np.arange(50, 200)], AutoencoderConfig(epochs=20, seed=0))
    assert encode(enc, X, network=1).shape == (200, 32)
    err = reconstruction_error(ae, X[150:], network=0)
    untrained, _ = fit_autoencoders(X, [np.arange(150)], AutoencoderConfig(epochs=1, learning_rate=1e-6))
    assert err < 0.8 * reconstruction_error(untrained, X[150:])  # the 0.02 noise of flat points stays (~0.67 at 20 epochs)
    # a group whose network i is the encoder of split [1, 0][i]
    pairs = _encoder_for_pairs(enc, [1, 0])
    np.testing.assert_allclose(encode(pairs, X[:5], network=0), encode(enc, X[:5], network=1), rtol=1e-5, atol=1e-5)


def test_few_label_comparison_and_picture(tmp_path):
    X, y, groups = _spectra(400, seed=1)
    labelled = np.arange(0, 400, 2)  # half the spectra carry a class; all are pretrained on
    res = few_label_comparison(X, groups, labelled, y[labelled], ("a", "b", "c"), label_fractions=(0.1, 0.25),
                               n_splits=2, ae_cfg=AutoencoderConfig(epochs=15), epochs=5, min_steps=100,
                               n_bootstrap=0)  # 100 Adam updates per classifier: F1 ~0.85-1 here, chance ~0.33
    assert set(res["f1"]) == set(VARIANTS) and set(res["f1"]["mlp"]) == {"0.1", "0.25"}
    assert res["n_labels"]["0.1"] < res["n_labels"]["0.25"] and res["n_all"] == 400 and res["n_labelled"] == 200
    assert res["classifier_rows_per_epoch"] == 32 * 20  # 10-25 labelled rows resampled: 100 updates in 5 epochs
    assert res["f1"]["mlp"]["0.25"][0] > 0.6 and res["f1"]["ae-code"]["0.25"][0] > 0.5, res["f1"]
    cfg2 = AutoencoderConfig(encoder=(128, 64, 32, 2), code_activation="linear", epochs=10)
    _, enc = fit_autoencoders(X, [np.arange(400)], cfg2)
    Z = encode(enc, X)
    labels = np.array(["T4", "S5", "O6"], dtype=object)[y]
    labels[::3] = None
    path = plot_code_map(Z, labels, tmp_path / "code.png", title="test")
    assert path.stat().st_size > 5_000
    with pytest.raises(ValueError, match="2-d code"):
        plot_code_map(np.zeros((5, 3)), labels[:5], tmp_path / "x.png")


# ----------------------------------------------------------------------------- xanesdb train --pretrain
E = np.round(8970 + 0.5 * np.arange(100), 6)


def test_pretrain_sets_leave_out_test_materials():
    from xanesdb.ml.autoencoder import pretrain_sets

    groups = np.array(["a", "a", "b", "c", "c"])
    ids = np.array(["a:0", "a:1", "b:0", "c:0", "c:1"])
    pre_groups = np.array(["a", "b", "c", "d", "e", "x"])
    pre_ids = np.array(["a:9", "b:0", "c:1", "d:0", "e:0", "c:0"])  # x's spectrum carries a test spectrum's id
    sets = pretrain_sets(pre_groups, pre_ids, groups, ids, [(np.array([0, 1, 2]), np.array([3, 4])),
                                                            (np.array([2, 3, 4]), np.array([0]))])  # fmt: skip
    assert sets[0].tolist() == [0, 1, 3, 4]  # c and the c:0 spectrum (under another material) left out
    assert sets[1].tolist() == [1, 2, 3, 4, 5]  # a left out (all its spectra, not only the test one)


def _insert(settings, grid: str, n_mat: int, energies, seed: int, labelled: bool = True) -> None:
    import pymongo

    from datetime import datetime, timezone

    X, y, _ = _spectra(2 * n_mat, seed)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    docs = []
    for r in range(2 * n_mat):
        mat = f"{grid}-{'l' if labelled else 'u'}mp-{r // 2}"
        sid = f"{mat}:{r % 2}"
        docs.append({"spectrum_id": sid, "site_id": sid, "material_id": mat, "element": "Cu", "grid_name": grid,
                     "energies": list(map(float, energies)), "mu": X[r].tolist(),
                     "lce_class": ["T4", "S5", "O6"][y[r]] if labelled else None, "duplicate_of": None,
                     "state": "successful", "preset": "fast", "last_updated": now})  # fmt: skip
    client = pymongo.MongoClient(settings.DB_URI.get_secret_value())
    client[settings.DB_NAME]["spectra"].insert_many(docs)
    client.close()


def test_cli_pretrain_registers_and_refuses(db_settings, refused, capsys, monkeypatch, tmp_path):
    import xanesdb.ml.autoencoder as autoencoder
    import xanesdb.ml.evaluate as evaluate
    from xanesdb.cli import main
    from xanesdb.ml.registry import get_run, list_runs

    _insert(db_settings, "Cu-K-t-v1", 20, E, 0)  # 40 labelled spectra
    _insert(db_settings, "Cu-K-t-v1", 15, E, 1, labelled=False)  # 30 without a class
    _insert(db_settings, "Cu-L3-t-v1", 5, E - 8000, 2, labelled=False)
    # what each split's autoencoder sees, and the splits
    seen = {}
    fit, splits_of = autoencoder.fit_autoencoders, evaluate.make_splits

    def fit_seen(X, sets, *a, **k):
        seen["sets"] = sets
        return fit(X, sets, *a, **k)

    def splits_seen(*a, **k):
        seen["splits"] = splits_of(*a, **k)
        return seen["splits"]

    monkeypatch.setattr(autoencoder, "fit_autoencoders", fit_seen)
    monkeypatch.setattr(evaluate, "make_splits", splits_seen)
    q, pre = '{"grid_name": "Cu-K-t-v1"}', '{"element": "Cu", "grid_name": "Cu-K-t-v1"}'
    main(["train", "-q", q, "--pretrain", pre, "--epochs", "3", "--n-models", "2", "--fraction", "0.5",
          "--freeze", "1", "--protocol", "grouped"])
    out = capsys.readouterr().out
    assert "pretrained on 70 spectra" in out and "frozen dense_0;" in out, out
    (run,) = list_runs(db_settings)
    doc = get_run(run["run_id"], db_settings)
    p = doc.hyperparameters["pretrain"]
    assert doc.kind == "mlp" and doc.state == "complete" and doc.hyperparameters["hidden"] == [128, 64, 32]
    assert p["query"] == {"element": "Cu", "grid_name": "Cu-K-t-v1"} and p["n_spectra"] == 70
    assert p["frozen_layers"] == ["dense_0"] and p["freeze"] == 1 and p["fraction"] == 0.5
    assert 0 < p["reconstruction_mse"][0] < 10 and len(p["reconstruction_mse_per_split"]) == 2
    # no test material's spectrum is in its split's pretraining; every other spectrum is
    from xanesdb.ml.dataset import load_dataset

    lab = load_dataset({"grid_name": "Cu-K-t-v1"}, db_settings)
    every = load_dataset({"element": "Cu", "grid_name": "Cu-K-t-v1"}, db_settings, label_field="spectrum_id")
    for j, ((_, te), rows) in enumerate(zip(seen["splits"], seen["sets"])):
        test_mats = set(lab.groups[te])
        assert test_mats and not test_mats & set(every.groups[rows]), j
        assert len(rows) == 70 - 2 * len(test_mats) == p["n_pretrain"][j] and p["n_left_out"][j] == 2 * len(test_mats)
    assert doc.metrics["n_train"][0] < 0.6 * 40 and doc.metrics["f1"]["macro"][0] >= 0
    # a registered run like any other: shown, and predicts a file
    main(["models", "show", doc.run_id])
    assert '"pretrain"' in capsys.readouterr().out
    f = tmp_path / "s.csv"
    f.write_text("energy,mu\n" + "\n".join(f"{a},{b}" for a, b in zip(E, _spectra(1, 5)[0][0])))
    main(["predict", "-m", doc.run_id, str(f), "-f", "json", "--align", "none"])
    assert '"best_class"' in capsys.readouterr().out
    # and the source of a fine-tuning run, which names it (its pretraining stays on its own document)
    main(["train", "--from", doc.run_id, "-q", q, "--epochs", "1", "--n-models", "2", "--freeze", "3"])
    tuned = get_run(next(r["run_id"] for r in list_runs(db_settings) if r["run_id"] != doc.run_id), db_settings)
    assert tuned.hyperparameters["transfer"]["from"] == doc.run_id and "pretrain" not in tuned.hyperparameters
    assert tuned.hyperparameters["hidden"] == [128, 64, 32]
    # refusals: one line, exit 2, nothing registered
    base = ["train", "-q", q, "--epochs", "1", "--n-models", "2"]
    assert "--pretrain: the query is not valid JSON" in refused([*base, "--pretrain", "{element: Cu}"])
    assert "selects no spectra" in refused([*base, "--pretrain", '{"element": "Zn"}'])
    assert "grid Cu-L3-t-v1" in refused([*base, "--pretrain", '{"grid_name": "Cu-L3-t-v1"}'])
    assert "use one of them" in refused([*base, "--pretrain", pre, "--from", doc.run_id])
    assert "freeze 0 to 3" in refused([*base, "--pretrain", pre, "--freeze", "4"])
    assert "outside (0, 1]" in refused([*base, "--pretrain", pre, "--fraction", "0"])
    assert "leave out --model cnn, --augment" in refused([*base, "--pretrain", pre, "--model", "cnn", "--augment", "shift"])
    assert "trains a classifier" in refused([*base, "--pretrain", pre, "--task", "regression", "--label", "x"])
    assert len(list_runs(db_settings)) == 2
