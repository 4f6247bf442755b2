"""``inference_model`` / ``predict_networks``: one row per spectrum in, the same outputs as the group
model fed a copy per network, for the MLP, the CNN, any other group model, and under JAX."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _group(kind: str, k: int = 4, n: int = 60, seed: int = 0):
    from xanesdb.ml.models import build_model

    rng = np.random.default_rng(seed)
    model = build_model(kind, n, 3, n_models=k, seed=seed)
    # standardisation that matters: per network and feature, as after training
    model.get_layer("standardize").set_stats(rng.normal(0.5, 0.2, (k, n)), rng.uniform(0.05, 2.0, (k, n)))
    return model


def _old(model, X):
    k = model.input_shape[1]
    return model.predict(np.repeat(X[:, None, :], k, axis=1), batch_size=256, verbose=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_same_outputs_as_a_copy_per_network(kind):
    from xanesdb.ml.models import inference_model, predict_networks

    model = _group(kind)
    X = np.random.default_rng(1).random((1000, 60)).astype("float32")
    inf = inference_model(model)
    assert inf.input_shape == (None, 60) and inf.output_shape == (None, 4, 3)
    names = [layer.name for layer in inf.layers]
    assert ("first_dense_folded" in names) if kind == "mlp" else ("conv_depthwise" in names)
    ref = _old(model, X)
    # networks differ from each other, so a row sent to the wrong network would show
    assert np.abs(ref[:, 0] - ref[:, 1]).max() > 1e-3
    for batch in (1000, 300, 7):  # one step; steps with a padded last one
        got = predict_networks(inf, X, batch_size=batch)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=2e-6)
    np.testing.assert_allclose(predict_networks(model, X[:5]), ref[:5], atol=2e-6)  # a group model works too
    assert predict_networks(inf, X[:0]).shape == (0, 4, 3)
    with pytest.raises(ValueError, match="60 points"):
        predict_networks(inf, X[:, :50])


def test_another_group_model_is_wrapped_with_an_in_graph_broadcast():
    import keras

    from xanesdb.ml.models import GroupedDense, inference_model, predict_networks

    inp = keras.Input(shape=(3, 20))
    model = keras.Model(inp, GroupedDense(2, activation="softmax", seed=4)(GroupedDense(8, activation="tanh", seed=3)(inp)))
    inf = inference_model(model)
    assert "to_networks" in [layer.name for layer in inf.layers]
    X = np.random.default_rng(2).random((50, 20)).astype("float32")
    np.testing.assert_allclose(predict_networks(inf, X), _old(model, X), atol=2e-6)
    with pytest.raises(ValueError, match="networks, features"):
        flat = keras.Input(shape=(20,))
        inference_model(keras.Model(flat, keras.layers.Dense(2)(flat)))


def test_same_outputs_under_jax():
    code = (
        "import numpy as np, keras\n"
        "from xanesdb.ml.models import build_model, inference_model, predict_networks\n"
        "assert keras.backend.backend() == 'jax'\n"
        "rng = np.random.default_rng(0); X = rng.random((300, 60)).astype('float32')\n"
        "for kind in ('mlp', 'cnn'):\n"
        "    m = build_model(kind, 60, 3, n_models=4)\n"
        "    m.get_layer('standardize').set_stats(rng.normal(0.5, 0.2, (4, 60)), rng.uniform(0.05, 2, (4, 60)))\n"
        "    ref = m.predict(np.repeat(X[:, None], 4, axis=1), verbose=0)\n"
        "    print(kind, float(np.abs(predict_networks(inference_model(m), X, batch_size=128) - ref).max()))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    diffs = dict(line.split() for line in r.stdout.splitlines() if line.startswith(("mlp", "cnn")))
    assert set(diffs) == {"mlp", "cnn"} and all(float(v) < 2e-6 for v in diffs.values()), r.stdout
