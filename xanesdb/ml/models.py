"""Keras 3 models of Carbone et al. (2019), built so that many train side by side.

Every model here is a *group* of ``n_models`` independent networks evaluated in one compiled
step: the input is ``(batch, n_models, n_features)`` (slot ``k`` carries model ``k``'s own
batch), weights carry a leading ``n_models`` axis and layers are batched einsums. The loss is the
mean over slots, so each network's gradient is its own loss's (scaled by 1/n_models, to which
Adam is invariant) and each keeps its own batch-32 updates; ``n_models=1`` is the paper's single
model. Only ``keras.ops`` are used, so the same code runs on TensorFlow, JAX and PyTorch.

Architectures (the paper's):

- MLP: inputs -> Dense 90 -> 60 -> 20 (ReLU, dropout 0.3 after each) -> softmax (3 classes).
- CNN: Conv1D (8 filters, kernel 10, stride 1, ReLU) + max-pooling 2, flattened, then the MLP.

Standardisation (per-feature zero mean / unit variance, fitted on each network's training set)
is the first layer, so it is saved in the ``.keras`` file with the weights.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import keras
import numpy as np
from keras import ops

__all__ = ["Standardize", "GroupedDense", "GroupedConv1D", "GroupedMaxPool1D", "build_model"]


def _uniform(limit: float, seed: int | None):
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


@keras.saving.register_keras_serializable(package="xanesdb")
class Standardize(keras.layers.Layer):
    """``(x - mean) / std`` with one (mean, std) per network and feature (not trained)."""

    def build(self, input_shape):
        shape = tuple(input_shape[1:])
        self.mean = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=shape, initializer="ones", trainable=False, name="std")

    def call(self, x):
        return (x - self.mean) / self.std

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Set the statistics, arrays of shape (n_models, n_features)."""
        std = np.where(np.asarray(std) > 1e-8, std, 1.0)
        self.mean.assign(np.asarray(mean, dtype="float32"))
        self.std.assign(np.asarray(std, dtype="float32"))


@keras.saving.register_keras_serializable(package="xanesdb")
class GroupedDense(keras.layers.Layer):
    """``n_models`` independent Dense layers: ``(b, k, i) -> (b, k, units)``."""

    def __init__(self, units: int, activation: str | None = None, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.seed = seed

    def build(self, input_shape):
        k, n_in = input_shape[-2], input_shape[-1]
        limit = math.sqrt(6.0 / (n_in + self.units))  # Glorot uniform of each network
        self.kernel = self.add_weight(shape=(k, n_in, self.units), initializer=_uniform(limit, self.seed), name="kernel")
        self.bias = self.add_weight(shape=(k, self.units), initializer="zeros", name="bias")

    def call(self, x):
        return self.activation(ops.einsum("bki,kio->bko", x, self.kernel) + self.bias)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation), "seed": self.seed}  # fmt: skip


@keras.saving.register_keras_serializable(package="xanesdb")
class GroupedConv1D(keras.layers.Layer):
    """``n_models`` independent single-channel Conv1D (valid, stride 1): ``(b, k, L) -> (b, k, L', f)``."""

    def __init__(self, filters: int, kernel_size: int, activation: str | None = "relu", seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = keras.activations.get(activation)
        self.seed = seed

    def build(self, input_shape):
        k = input_shape[-2]
        # Glorot uniform as keras Conv1D: fan_in = kernel * 1 channel, fan_out = kernel * filters
        limit = math.sqrt(6.0 / (self.kernel_size + self.kernel_size * self.filters))
        self.kernel = self.add_weight(
            shape=(k, self.kernel_size, self.filters), initializer=_uniform(limit, self.seed), name="kernel"
        )
        self.bias = self.add_weight(shape=(k, self.filters), initializer="zeros", name="bias")

    def call(self, x):
        n = x.shape[-1] - self.kernel_size + 1
        patches = ops.stack([x[:, :, j : j + n] for j in range(self.kernel_size)], axis=-1)
        out = ops.einsum("bklw,kwf->bklf", patches, self.kernel) + self.bias[None, :, None, :]
        return self.activation(out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "activation": keras.activations.serialize(self.activation), "seed": self.seed}  # fmt: skip


@keras.saving.register_keras_serializable(package="xanesdb")
class GroupedMaxPool1D(keras.layers.Layer):
    """Max-pooling along the length of ``(b, k, L, f)``, then flattening to ``(b, k, L//p * f)``."""

    def __init__(self, pool_size: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def call(self, x):
        k, length, f = x.shape[1], x.shape[2], x.shape[3]
        m = length // self.pool_size
        x = x[:, :, : m * self.pool_size, :]
        x = ops.max(ops.reshape(x, (-1, k, m, self.pool_size, f)), axis=3)
        return ops.reshape(x, (-1, k, m * f))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": self.pool_size}


def build_model(
    kind: Literal["mlp", "cnn"],
    n_features: int,
    n_outputs: int,
    *,
    n_models: int = 1,
    hidden: tuple[int, ...] = (90, 60, 20),
    dropout: float = 0.3,
    filters: int = 8,
    kernel_size: int = 10,
    pool_size: int = 2,
    learning_rate: float = 1e-3,
    task: Literal["classification", "regression"] = "classification",
    seed: int = 0,
) -> keras.Model:
    """A compiled group of ``n_models`` paper MLPs or CNNs.

    Parameters
    ----------
    kind
        ``"mlp"`` or ``"cnn"``.
    n_features
        Grid points per spectrum.
    n_outputs
        Classes (softmax) or regression targets (linear).
    n_models
        Networks trained side by side.
    hidden, dropout
        Dense layer widths and dropout rate after each.
    filters, kernel_size, pool_size
        The CNN's convolution and pooling.
    learning_rate
        Adam's learning rate.
    task
        Classification (categorical cross-entropy) or regression (mean squared error).
    seed
        Seed of the initialisers and dropout.

    Returns
    -------
    keras.Model
        Input ``(batch, n_models, n_features)``, output ``(batch, n_models, n_outputs)``.
    """
    if kind not in ("mlp", "cnn"):
        raise ValueError(f"unknown model kind {kind!r}; use mlp or cnn")
    inputs = keras.Input(shape=(n_models, n_features), name="spectra")
    x = Standardize(name="standardize")(inputs)
    if kind == "cnn":
        if n_features < kernel_size + pool_size - 1:
            raise ValueError(f"{n_features} features are too few for a kernel of {kernel_size}")
        x = GroupedConv1D(filters, kernel_size, activation="relu", seed=seed, name="conv")(x)
        x = GroupedMaxPool1D(pool_size, name="pool")(x)
    for i, units in enumerate(hidden):
        x = GroupedDense(units, activation="relu", seed=seed + 1 + i, name=f"dense_{i}")(x)
        x = keras.layers.Dropout(dropout, seed=seed + 100 + i, name=f"dropout_{i}")(x)
    if task == "classification":
        out = GroupedDense(n_outputs, activation="softmax", seed=seed + 50, name="output")(x)
        loss = keras.losses.CategoricalCrossentropy()
    else:
        out = GroupedDense(n_outputs, activation=None, seed=seed + 50, name="output")(x)
        loss = keras.losses.MeanSquaredError()
    model = keras.Model(inputs, out, name=f"xanesdb_{kind}_x{n_models}")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)
    return model
