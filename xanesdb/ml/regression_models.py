"""Regression model families for structural descriptors (issue 20): Lin et al.'s four and the paper's two.

Every Keras family is a *group* of ``n_models`` independent networks trained side by side, as the
classifiers of :mod:`xanesdb.ml.models` are (input ``(batch, n_models, n_features)``, output
``(batch, n_models, n_targets)``, standardisation of the inputs inside, targets de-standardised by
the last layer so a saved model answers in the targets' units). The layers are
:mod:`xanesdb.ml.models`' grouped ones plus a multi-channel grouped convolution.

=============== ==================================================================================
family          architecture
=============== ==================================================================================
``gbt``         scikit-learn gradient boosted trees, 100 trees of depth 3, one model per target
                (Lin et al.); ensemble members differ by seed and a 0.8 row subsample
``mlp-shallow`` Dense 400-400, tanh (Lin)
``mlp-deep``    Dense 400-400-200-200-100, tanh (Lin)
``cnn-lin``     Conv1D 32 kernels of 30, Conv1D 64 kernels of 30, ReLU, no pooling, Dense 100 ReLU,
                linear output (Lin's 1D-CNN: two conv layers then two dense)
``mlp``         the classifier paper's MLP: Dense 90-60-20 ReLU, dropout 0.3
``cnn``         the paper's CNN: Conv1D 8 kernels of 10, max-pool 2, then its MLP
=============== ==================================================================================

Gradient boosted trees are stored without pickles: :class:`TreeEnsemble` keeps each fitted tree's
arrays (children, feature, threshold, value) in an ``.npz`` and predicts from them.
"""

from __future__ import annotations

import io
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from xanesdb.ml.models import GroupedConv1D, GroupedDense, GroupedMaxPool1D, Standardize

__all__ = ["FAMILIES", "KERAS_FAMILIES", "LOSSES", "keras_loss", "GroupedConv1DChannels", "GroupedFlatten", "Destandardize",
           "build_group_regressor", "TreeEnsemble"]  # fmt: skip

#: family -> one line, as ``xanesdb train --task regression --model`` lists them
FAMILIES: dict[str, str] = {
    "gbt": "gradient boosted trees, 100 trees of depth 3 (Lin)",
    "mlp-shallow": "MLP 400-400 tanh (Lin)",
    "mlp-deep": "MLP 400-400-200-200-100 tanh (Lin)",
    "cnn-lin": "1D-CNN conv 32+64 kernels of 30, ReLU, no pooling, dense 100 (Lin)",
    "mlp": "the paper's MLP 90-60-20 ReLU, dropout 0.3",
    "cnn": "the paper's CNN conv 8x10, pool 2, then its MLP",
}
KERAS_FAMILIES = tuple(f for f in FAMILIES if f != "gbt")
#: training losses of the networks (on standardised targets): squared error, Huber (delta 1 standard
#: deviation: squared near the truth, absolute beyond), absolute error
LOSSES: dict[str, str] = {"mse": "mean squared error", "huber": "Huber, delta 1 standard deviation",
                          "mae": "mean absolute error"}  # fmt: skip
#: the same losses in scikit-learn's gradient boosting (its Huber is at the 0.9 quantile of the residuals)
SKLEARN_LOSS: dict[str, str] = {"mse": "squared_error", "huber": "huber", "mae": "absolute_error"}


def keras_loss(name: str):
    """The Keras loss of :data:`LOSSES` ``name`` (on standardised targets)."""
    if name not in LOSSES:
        raise ValueError(f"unknown regression loss {name!r}; use one of {', '.join(LOSSES)}")
    return keras.losses.Huber(delta=1.0) if name == "huber" else name


@keras.saving.register_keras_serializable(package="xanesdb")
class GroupedConv1DChannels(keras.layers.Layer):
    """``n_models`` independent Conv1D (valid, stride 1) on ``C`` channels: ``(b, k, L, C) -> (b, k, L', F)``."""

    def __init__(self, filters: int, kernel_size: int, activation: str | None = "relu", seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = keras.activations.get(activation)
        self.seed = seed

    def build(self, input_shape):
        k, c = input_shape[1], input_shape[-1]
        limit = math.sqrt(6.0 / (self.kernel_size * c + self.kernel_size * self.filters))  # Glorot, as keras Conv1D
        self.kernel = self.add_weight(shape=(k, self.kernel_size, c, self.filters),
                                      initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
                                      name="kernel")  # fmt: skip
        self.bias = self.add_weight(shape=(k, self.filters), initializer="zeros", name="bias")

    def call(self, x):
        n = x.shape[2] - self.kernel_size + 1
        # one product per kernel offset: no (b, k, L', w, C) patch tensor in memory
        out = self.bias[None, :, None, :]
        for j in range(self.kernel_size):
            out = out + ops.einsum("bklc,kcf->bklf", x[:, :, j : j + n, :], self.kernel[:, j])
        return self.activation(out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "activation": keras.activations.serialize(self.activation), "seed": self.seed}  # fmt: skip


@keras.saving.register_keras_serializable(package="xanesdb")
class GroupedFlatten(keras.layers.Layer):
    """``(b, k, L, F) -> (b, k, L * F)``."""

    def call(self, x):
        return ops.reshape(x, (-1, x.shape[1], x.shape[2] * x.shape[3]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[2] * input_shape[3])


@keras.saving.register_keras_serializable(package="xanesdb")
class Destandardize(keras.layers.Layer):
    """``z * std + mean`` with one (mean, std) per network and target: outputs in the targets' units."""

    def build(self, input_shape):
        shape = tuple(input_shape[1:])
        self.mean = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=shape, initializer="ones", trainable=False, name="std")

    def call(self, z):
        return z * self.std + self.mean

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        std = np.where(np.asarray(std) > 1e-8, std, 1.0)
        self.mean.assign(np.asarray(mean, dtype="float32"))
        self.std.assign(np.asarray(std, dtype="float32"))


def build_group_regressor(
    family: str, n_features: int, n_targets: int, *, n_models: int = 1, learning_rate: float = 1e-3, seed: int = 0,
    loss: str = "mse",
) -> tuple[keras.Model, keras.Model]:
    """A group of ``n_models`` regression networks of one Keras family.

    Returns
    -------
    (trainable, answering)
        ``trainable`` is compiled (``loss``, one of :data:`LOSSES`, on standardised targets); ``answering`` shares its layers and
        adds :class:`Destandardize` (set its statistics, then save and predict with it).
    """
    if family not in KERAS_FAMILIES:
        raise ValueError(f"unknown regression family {family!r}; use one of {', '.join(KERAS_FAMILIES)}")
    inputs = keras.Input(shape=(n_models, n_features), name="spectra")
    x = Standardize(name="standardize")(inputs)
    act, hidden, dropout = "tanh", (), 0.0
    if family == "mlp-shallow":
        hidden = (400, 400)
    elif family == "mlp-deep":
        hidden = (400, 400, 200, 200, 100)
    elif family == "cnn-lin":
        x = keras.layers.Reshape((n_models, n_features, 1), name="channels")(x)
        x = GroupedConv1DChannels(32, 30, activation="relu", seed=seed, name="conv_1")(x)
        x = GroupedConv1DChannels(64, 30, activation="relu", seed=seed + 1, name="conv_2")(x)
        x = GroupedFlatten(name="flatten")(x)
        act, hidden = "relu", (100,)
    elif family in ("mlp", "cnn"):
        if family == "cnn":
            x = GroupedConv1D(8, 10, activation="relu", seed=seed, name="conv")(x)
            x = GroupedMaxPool1D(2, name="pool")(x)
        act, hidden, dropout = "relu", (90, 60, 20), 0.3
    for i, units in enumerate(hidden):
        x = GroupedDense(units, activation=act, seed=seed + 1 + i, name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed + 100 + i, name=f"dropout_{i}")(x)
    z = GroupedDense(n_targets, activation=None, seed=seed + 50, name="output")(x)
    trainable = keras.Model(inputs, z, name=f"xanesdb_reg_{family}_x{n_models}")
    trainable.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=keras_loss(loss))
    out = Destandardize(name="destandardize")(z)
    answering = keras.Model(inputs, out, name=f"xanesdb_reg_{family}_x{n_models}_units")
    return trainable, answering


class TreeEnsemble:
    """Gradient boosted trees of ``n_members`` x ``n_targets`` (scikit-learn), stored as arrays.

    ``fit`` trains one ``GradientBoostingRegressor`` per member and target (its own training rows
    and seed); ``predict`` evaluates the stored trees with numpy, so a loaded ensemble needs neither
    pickles nor scikit-learn. ``save(path)`` writes an ``.npz`` (what the registry stores).
    """

    def __init__(self, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 subsample: float = 0.8, seed: int = 0, loss: str = "mse") -> None:  # fmt: skip
        if loss not in LOSSES:
            raise ValueError(f"unknown regression loss {loss!r}; use one of {', '.join(LOSSES)}")
        self.params = {"n_estimators": n_estimators, "max_depth": max_depth, "learning_rate": learning_rate,
                       "subsample": subsample, "loss": SKLEARN_LOSS[loss]}  # fmt: skip
        self.seed = seed
        self.members: list[list[dict[str, np.ndarray]]] = []  # [member][target] -> arrays

    def fit(self, X: np.ndarray, Y: np.ndarray, train_sets: list[np.ndarray]) -> TreeEnsemble:
        from sklearn.ensemble import GradientBoostingRegressor

        self.members = []
        for m, tr in enumerate(train_sets):
            per_target = []
            for t in range(Y.shape[1]):
                gb = GradientBoostingRegressor(random_state=self.seed + 1000 * m + t, **self.params)
                gb.fit(X[tr], Y[tr, t])
                per_target.append(_tree_arrays(gb))
            self.members.append(per_target)
        return self

    def predict_members(self, X_list: list[np.ndarray]) -> list[np.ndarray]:
        """``(n_j, n_targets)`` predictions of member ``j`` on ``X_list[j]``."""
        return [np.stack([_predict_arrays(a, X) for a in self.members[j]], axis=1) for j, X in enumerate(X_list)]

    def predict_all(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_members, n_targets)``: every member on every row."""
        return np.stack(self.predict_members([X] * len(self.members)), axis=1)

    def save(self, path: Any) -> None:
        arrays: dict[str, np.ndarray] = {"shape": np.array([len(self.members), len(self.members[0])])}
        for m, per_target in enumerate(self.members):
            for t, a in enumerate(per_target):
                for key, v in a.items():
                    arrays[f"m{m}_t{t}_{key}"] = v
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        with open(path, "wb") as fh:
            fh.write(buf.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> TreeEnsemble:
        self = cls()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n_m, n_t = (int(v) for v in z["shape"])
            keys = ("init", "lr", "left", "right", "feature", "threshold", "value", "offsets")
            self.members = [[{k: z[f"m{m}_t{t}_{k}"] for k in keys} for t in range(n_t)] for m in range(n_m)]
        return self


def _tree_arrays(gb: Any) -> dict[str, np.ndarray]:
    """A fitted GradientBoostingRegressor's trees concatenated into flat arrays (node ids offset per tree)."""
    left, right, feat, thr, val, offsets = [], [], [], [], [], []
    base = 0
    for est in gb.estimators_[:, 0]:
        tr = est.tree_
        offsets.append(base)
        lc, rc = tr.children_left.copy(), tr.children_right.copy()
        left.append(np.where(lc >= 0, lc + base, -1))
        right.append(np.where(rc >= 0, rc + base, -1))
        feat.append(tr.feature)
        thr.append(tr.threshold)
        val.append(tr.value[:, 0, 0])
        base += tr.node_count
    init = float(np.ravel(gb.init_.predict(np.zeros((1, gb.n_features_in_))))[0])
    return {"init": np.array(init), "lr": np.array(gb.learning_rate), "left": np.concatenate(left),
            "right": np.concatenate(right), "feature": np.concatenate(feat), "threshold": np.concatenate(thr),
            "value": np.concatenate(val), "offsets": np.array(offsets)}  # fmt: skip


def _predict_arrays(a: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)  # scikit-learn compares float32 features to the thresholds
    out = np.full(len(X), float(a["init"]))
    rows = np.arange(len(X))
    for start in a["offsets"]:
        node = np.full(len(X), int(start))
        while True:
            leaf = a["left"][node] < 0
            if leaf.all():
                break
            f = a["feature"][node]
            go_left = X[rows, np.where(leaf, 0, f)] <= a["threshold"][node]
            node = np.where(leaf, node, np.where(go_left, a["left"][node], a["right"][node]))
        out += float(a["lr"]) * a["value"][node]
    return out
