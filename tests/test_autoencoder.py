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
