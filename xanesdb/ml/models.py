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

__all__ = ["Standardize", "GroupedDense", "GroupedConv1D", "GroupedMaxPool1D", "ToNetworks", "build_model",
           "inference_model", "predict_networks", "INFERENCE_BATCH"]


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


# ----------------------------------------------------------------------------- inference
@keras.saving.register_keras_serializable(package="xanesdb")
class ToNetworks(keras.layers.Layer):
    """``(b, n) -> (b, k, n)``: every spectrum to each of ``k`` networks, inside the graph (no host copy)."""

    def __init__(self, n_networks: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_networks = int(n_networks)

    def call(self, x):
        return ops.broadcast_to(ops.expand_dims(x, 1), (ops.shape(x)[0], self.n_networks, ops.shape(x)[1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_networks, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_networks": self.n_networks}


@keras.saving.register_keras_serializable(package="xanesdb")
class _StandardizeColumns(keras.layers.Layer):
    """``(b, n) -> (b, n, k)``: ``x * scale + shift`` with one (scale, shift) per feature and network."""

    def __init__(self, n_networks: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_networks = int(n_networks)

    def build(self, input_shape):
        shape = (input_shape[-1], self.n_networks)
        self.scale = self.add_weight(shape=shape, initializer="ones", trainable=False, name="scale")
        self.shift = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="shift")

    def call(self, x):
        return ops.expand_dims(x, -1) * self.scale + self.shift

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1], self.n_networks)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_networks": self.n_networks}


def inference_model(model: keras.Model) -> keras.Model:
    """The trained group ``model`` fed one spectrum per row: input ``(batch, n_features)``.

    No spectrum is copied per network on the host: the host sends ``n_features`` floats per
    spectrum and every network reads the same row inside the graph. For the models of
    :func:`build_model` the first layers are rewritten for speed (same outputs to float32
    round-off): the MLP's standardisation is folded into its first layer, which becomes one
    ``(n_features, n_networks x units)`` matrix product; the CNN's convolution runs as one
    depthwise convolution over a ``(batch, n_features, n_networks)`` tensor. The later layers are
    the trained ones, shared. Any other group model is wrapped as it is, with the row broadcast
    to ``(batch, n_networks, n_features)`` in the graph (:class:`ToNetworks`).

    The rewritten first layer holds a copy of the trained values taken now: build the inference
    model after training. Run it with :func:`predict_networks` (steps of ``INFERENCE_BATCH``)
    or ``predict(X, batch_size=INFERENCE_BATCH)``; Keras' default batch of 32 is far slower.

    Parameters
    ----------
    model
        A group model from :func:`build_model` (or loaded from the registry / a portable folder),
        input ``(batch, n_networks, n_features)``.

    Returns
    -------
    keras.Model
        Input ``(batch, n_features)``, output ``(batch, n_networks, n_outputs)``.
    """
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 3 and shape[1] and shape[2]):
        raise ValueError(f"expected a group model with input (batch, networks, features), got {shape}")
    k, n = int(shape[1]), int(shape[2])
    inputs = keras.Input(shape=(n,), name="spectrum")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    fast = _fast_head(layers, inputs, k, n)
    if fast is None:
        out = model(ToNetworks(k, name="to_networks")(inputs), training=False)
    else:
        x, rest = fast
        for layer in rest:
            if not isinstance(layer, keras.layers.Dropout):  # identity at inference
                x = layer(x)
        out = x
    return keras.Model(inputs, out, name=f"{model.name}_inference")


def _fast_head(layers: list, inputs, k: int, n: int):
    """``(x, remaining layers)`` with the standardisation and first layer rewritten, or None."""
    kinds = [type(layer) for layer in layers]
    allowed = (Standardize, GroupedConv1D, GroupedMaxPool1D, GroupedDense, keras.layers.Dropout)
    if len(layers) < 2 or kinds[0] is not Standardize or not all(t in allowed for t in kinds):
        return None
    std_layer = layers[0]
    mean = np.asarray(ops.convert_to_numpy(std_layer.mean), dtype="float64")  # (k, n)
    inv = 1.0 / np.asarray(ops.convert_to_numpy(std_layer.std), dtype="float64")
    first = layers[1]
    if isinstance(first, GroupedDense):
        W = np.asarray(ops.convert_to_numpy(first.kernel), dtype="float64")  # (k, n, u)
        b = np.asarray(ops.convert_to_numpy(first.bias), dtype="float64")  # (k, u)
        u = W.shape[-1]
        # ((x - m) * inv) @ W + b = x @ (inv * W) + (b - (m * inv) @ W), per network
        W2 = np.transpose(inv[:, :, None] * W, (1, 0, 2)).reshape(n, k * u)
        b2 = (b - np.einsum("ki,kio->ko", mean * inv, W)).reshape(k * u)
        dense = keras.layers.Dense(k * u, name="first_dense_folded")
        x = dense(inputs)
        dense.set_weights([W2.astype("float32"), b2.astype("float32")])
        x = first.activation(keras.layers.Reshape((k, u), name="per_network")(x))
        return x, layers[2:]
    if isinstance(first, GroupedConv1D) and len(layers) > 2 and isinstance(layers[2], GroupedMaxPool1D):
        W = ops.convert_to_numpy(first.kernel)  # (k, w, f)
        f = W.shape[-1]
        columns = _StandardizeColumns(k, name="standardize_columns")
        z = columns(inputs)  # (b, n, k): column j is the row as network j standardises it
        columns.set_weights([inv.T.astype("float32"), (-mean * inv).T.astype("float32")])
        conv = keras.layers.DepthwiseConv1D(first.kernel_size, depth_multiplier=f, name="conv_depthwise")
        x = conv(z)  # (b, L', k * f), channel j * f + c = network j's filter c
        conv.set_weights([np.transpose(W, (1, 0, 2)).astype("float32"),
                          ops.convert_to_numpy(first.bias).reshape(k * f).astype("float32")])  # fmt: skip
        x = first.activation(x)
        pool = layers[2].pool_size
        x = keras.layers.MaxPooling1D(pool, name="pool_channels")(x)  # (b, m, k * f)
        m = (n - first.kernel_size + 1) // pool
        x = keras.layers.Reshape((m, k, f))(x)
        x = keras.layers.Permute((2, 1, 3))(x)
        x = keras.layers.Reshape((k, m * f), name="per_network")(x)  # as GroupedMaxPool1D flattens
        return x, layers[3:]
    return None


#: spectra per step of :func:`predict_networks`. On 2 CPU cores 1,024 gave the most spectra per
#: second (MLP: 115,000/s against 61,000/s at 8,192; the CNN about the same at either size,
#: benchmarks/results/inference_cpu.txt); each step's activations then stay in the caches.
INFERENCE_BATCH = 1024


def predict_networks(model: keras.Model, X: np.ndarray, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """``(n, n_networks, n_outputs)`` outputs of every network for each row of ``X`` ``(n, n_features)``.

    ``model`` is an inference model (:func:`inference_model`; build it once and keep it when
    predicting many times) or a group model, whose inference model is then built for this call.
    Rows go through in steps of ``batch_size``; the last step is padded to the same size, so the
    compiled function is traced once.
    """
    X = np.ascontiguousarray(X, dtype="float32")
    if X.ndim != 2:
        raise ValueError(f"expected spectra as (n, n_features), got shape {X.shape}")
    inf = inference_model(model) if len(model.input_shape) == 3 else model
    if X.shape[1] != inf.input_shape[-1]:
        raise ValueError(f"the model takes {inf.input_shape[-1]} points per spectrum, got {X.shape[1]}")
    n = len(X)
    if n == 0:
        return np.zeros((0, *inf.output_shape[1:]), dtype="float32")
    step = max(1, min(int(batch_size), n))
    out = np.empty((n, *inf.output_shape[1:]), dtype="float32")
    for i in range(0, n, step):
        xb = X[i : i + step]
        if len(xb) < step:
            xb = np.concatenate([xb, np.zeros((step - len(xb), X.shape[1]), dtype="float32")])
        out[i : i + step] = np.asarray(inf.predict_on_batch(xb))[: n - i]
    return out
