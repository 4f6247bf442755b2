"""Autoencoder pretraining on every spectrum of an absorber (issue 20 item 4, after Huang et al.).

An encoder (``128-64-32``, ReLU) and a mirrored decoder learn to reconstruct standardised spectra;
no label is needed, so every spectrum of an absorber counts, the "other" class and unlabelled sites
included. A classifier is then trained on the labelled rows, either on the frozen code (a small
head on the 32 numbers: "the classifier on the code") or starting from the encoder and training all
of it. Both are compared with the paper's MLP trained on the same few labels
(:func:`few_label_comparison`), the case where the unlabelled spectra should help.

The autoencoders are groups of ``k`` networks side by side, as every xanesdb model is (input
``(batch, k, n_features)``), one per split: autoencoder ``j`` never sees the spectra of split
``j``'s test materials (grouped splits), so the pretraining leaks nothing about them. Encoder layers
are named as :func:`xanesdb.ml.models.build_model`'s dense layers, so an MLP ``128-64-32-<head>``
starts from a trained encoder by :func:`xanesdb.ml.transfer.fine_tune` (same code as transfer
learning). A 2-d code (``128-64-32-2``, linear code) gives the picture: :func:`plot_code_map`.

``xanesdb train --query LABELLED --pretrain ALL [--freeze N] [--fraction F]`` runs
:func:`pretrain_from_query`: one autoencoder per split of the labelled query on every spectrum
``ALL`` selects (same grid), less that split's test materials, then the classifier
``128-64-32-<classes>`` from each split's encoder, registered as any ``mlp`` run with
``hyperparameters["pretrain"]``.

Examples
--------
>>> ae, enc = fit_autoencoders(X_all, [np.arange(len(X_all))], AutoencoderConfig(epochs=50))  # doctest: +SKIP
>>> Z = encode(enc, X_all)                                                                    # doctest: +SKIP
>>> Z.shape                                                                                    # doctest: +SKIP
(2500, 32)
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from pathlib import Path

    import keras

logger = logging.getLogger(__name__)

__all__ = ["AutoencoderConfig", "build_autoencoder", "fit_autoencoders", "encode", "reconstruction_error",
           "few_label_comparison", "plot_code_map", "VARIANTS", "PretrainConfig", "PretrainResult", "pretrain_sets",
           "pretrain_from_query"]  # fmt: skip

#: classifiers compared at few labels
VARIANTS: dict[str, str] = {
    "mlp": "the paper's MLP 90-60-20 on the labelled rows only",
    "ae-code": "pretrained encoder frozen, a 20-unit head trained on its code",
    "ae-fine": "pretrained encoder + 20-unit head, all layers trained",
    "scratch-same": "encoder-shaped MLP 128-64-32-20 from a random start (control for ae-fine)",
}


@dataclass
class AutoencoderConfig:
    """Knobs of the autoencoder pretraining.

    Parameters
    ----------
    encoder
        Widths of the encoder's layers; the last is the code (Huang et al.: 128-64-32; 2 for a picture).
    code_activation
        ``"relu"`` (the code is a hidden layer of the classifier that starts from it) or ``"linear"``
        (the 2-d picture: no dead directions).
    epochs, batch_size, learning_rate
        Adam on the mean squared reconstruction error of the standardised spectrum.
    seed
        Initialisation and data order.
    """

    encoder: tuple[int, ...] = (128, 64, 32)
    code_activation: str = "relu"
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder"] = list(self.encoder)
        return d


def build_autoencoder(n_features: int, k: int, cfg: AutoencoderConfig) -> tuple[keras.Model, keras.Model]:
    """``(autoencoder, encoder)`` groups of ``k`` networks; the autoencoder outputs standardised spectra."""
    import keras

    from xanesdb.ml.models import GroupedDense, Standardize

    if not cfg.encoder or min(cfg.encoder) < 1:
        raise XanesdbUserError(f"encoder widths {cfg.encoder} must be positive")
    inputs = keras.Input(shape=(k, n_features), name="spectra")
    x = Standardize(name="standardize")(inputs)
    last = len(cfg.encoder) - 1
    for i, units in enumerate(cfg.encoder):
        act = cfg.code_activation if i == last else "relu"
        x = GroupedDense(units, activation=act, seed=cfg.seed + 1 + i, name=f"dense_{i}")(x)
    code = x
    for i, units in enumerate(reversed(cfg.encoder[:-1])):
        x = GroupedDense(units, activation="relu", seed=cfg.seed + 20 + i, name=f"decode_{i}")(x)
    out = GroupedDense(n_features, activation=None, seed=cfg.seed + 40, name="reconstruction")(x)
    ae = keras.Model(inputs, out, name=f"xanesdb_autoencoder_x{k}")
    ae.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate), loss=keras.losses.MeanSquaredError())
    return ae, keras.Model(inputs, code, name=f"xanesdb_encoder_x{k}")


def fit_autoencoders(X: np.ndarray, train_sets: list[np.ndarray], cfg: AutoencoderConfig,
                     on_epoch: Callable[[int, float, int], None] | None = None) -> tuple[keras.Model, keras.Model]:  # fmt: skip
    """Train one autoencoder per row set of ``X`` side by side; returns ``(autoencoder, encoder)``.

    ``on_epoch(epoch, loss, epochs)``: progress callback.
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    k, n = len(train_sets), X.shape[1]
    ae, enc = build_autoencoder(n, k, cfg)
    means = np.array([X[tr].mean(axis=0) for tr in train_sets])
    stds = np.array([np.where(X[tr].std(axis=0) > 1e-8, X[tr].std(axis=0), 1.0) for tr in train_sets])
    ae.get_layer("standardize").set_stats(means, stds)
    n_rows = max(len(tr) for tr in train_sets)
    Xg = np.empty((n_rows, k, n), dtype=np.float32)
    Tg = np.empty((n_rows, k, n), dtype=np.float32)
    for j, tr in enumerate(train_sets):
        order = rng.permutation(len(tr))
        if len(order) < n_rows:
            order = np.concatenate([order, rng.integers(0, len(tr), n_rows - len(order))])
        Xg[:, j] = X[np.asarray(tr)[order]]
        Tg[:, j] = (Xg[:, j] - means[j]) / stds[j]
    t0 = time.perf_counter()
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: on_epoch(e + 1, float(logs.get("loss", np.nan)), cfg.epochs)))  # fmt: skip
    ae.fit(Xg, Tg, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, verbose=0, callbacks=callbacks)
    logger.info("%d autoencoders on %d rows each in %.1f s", k, n_rows, time.perf_counter() - t0)
    return ae, enc


def encode(encoder: keras.Model, X: np.ndarray, network: int = 0) -> np.ndarray:
    """Codes of the rows of ``X`` by network ``network`` of an encoder group."""
    from xanesdb.ml.train import predict_group

    k = encoder.input_shape[1]
    lists = [np.asarray(X, dtype=np.float32) if j == network else np.asarray(X[:1], dtype=np.float32) for j in range(k)]
    return predict_group(encoder, lists)[network]


def reconstruction_error(ae: keras.Model, X: np.ndarray, network: int = 0) -> float:
    """Mean squared error of the standardised reconstruction of ``X`` (network ``network``)."""
    from keras import ops

    from xanesdb.ml.train import predict_group

    k = ae.input_shape[1]
    std = ae.get_layer("standardize")
    m, s = ops.convert_to_numpy(std.mean)[network], ops.convert_to_numpy(std.std)[network]
    lists = [np.asarray(X, dtype=np.float32) if j == network else np.asarray(X[:1], dtype=np.float32) for j in range(k)]
    R = predict_group(ae, lists)[network]
    return float(np.mean((R - (X - m) / s) ** 2))


def few_label_comparison(
    X_all: np.ndarray,
    groups_all: np.ndarray,
    labelled: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    *,
    label_fractions: tuple[float, ...] = (0.05, 0.10, 0.25),
    n_splits: int = 3,
    ae_cfg: AutoencoderConfig | None = None,
    epochs: int = 60,
    min_steps: int = 300,
    variants: tuple[str, ...] = tuple(VARIANTS),
    seed: int = 0,
    n_bootstrap: int = 10,
) -> dict[str, Any]:
    """Macro F1 of the :data:`VARIANTS` trained on ``label_fractions`` of each split's labelled training rows.

    Parameters
    ----------
    X_all, groups_all
        Every spectrum of the absorber (labelled or not) and its material.
    labelled, y
        Rows of ``X_all`` that carry a class, and their integer classes.
    classes
        Class names.
    label_fractions
        Shares of each split's labelled training rows given to the classifiers.
    n_splits
        Grouped splits of the labelled rows (no material in train and test); autoencoder ``j`` is
        pretrained on every spectrum except those of split ``j``'s test materials.
    ae_cfg, epochs
        Pretraining knobs; classifier epochs (every variant the same; each network is fed as many
        rows per epoch as the largest training set, resampled, so small fractions get the same
        number of updates), raised so that every classifier makes at least ``min_steps`` Adam
        updates of batch 32 (a few dozen labelled rows are one or two batches an epoch: they are
        resampled to fill more batches).

    Returns
    -------
    dict
        ``f1[variant][fraction] = [mean, std]`` (macro F1 over splits x bootstraps), ``n_labels``
        per fraction, ``reconstruction_mse`` (held-out materials), timings.
    """
    from xanesdb.ml.evaluate import make_splits
    from xanesdb.ml.transfer import Architecture, fine_tune, score_classifier, subsample

    ae_cfg = ae_cfg or AutoencoderConfig(seed=seed)
    labelled = np.asarray(labelled)
    Xl, gl = X_all[labelled], groups_all[labelled]
    splits = make_splits(y, gl, "grouped", n_splits, 1.0 / max(n_splits, 2) if n_splits < 10 else 0.1, seed)
    timings: dict[str, float] = {}
    # pretraining: every spectrum except the test materials of the split
    t0 = time.perf_counter()
    pre_sets = [np.nonzero(~np.isin(groups_all, np.unique(gl[te])))[0] for _, te in splits]
    ae, enc = fit_autoencoders(X_all, pre_sets, ae_cfg)
    timings["pretrain_s"] = time.perf_counter() - t0
    rec = []
    for j, (_, te) in enumerate(splits):
        rec.append(reconstruction_error(ae, Xl[te], network=j))
    # every (fraction, split) pair is one network of each variant's group
    pairs = [(f, j) for f in label_fractions for j in range(len(splits))]
    train_sets = [subsample([splits[j][0]], f, seed + 31 * i)[0] for i, (f, j) in enumerate(pairs)]
    eval_splits = [(tr, splits[j][1]) for tr, (_, j) in zip(train_sets, pairs)]
    code_dim, n_cls = ae_cfg.encoder[-1], len(classes)
    min_rows = _rows_for_steps(min_steps, epochs)
    out: dict[str, Any] = {"f1": {}, "f1_per_split": {}, "classes": list(classes),
                           "n_labels": {f"{f:g}": float(np.mean([len(train_sets[i]) for i, p in enumerate(pairs) if p[0] == f]))
                                        for f in label_fractions},  # fmt: skip
                           "n_labelled": int(len(labelled)), "n_all": int(len(X_all)),
                           "reconstruction_mse": [float(np.mean(rec)), float(np.std(rec))]}  # fmt: skip
    src_for_pairs = None
    for variant in variants:
        t0 = time.perf_counter()
        if variant == "mlp":
            arch, Xin, source, freeze = Architecture("classification", "mlp", Xl.shape[1]), Xl, None, 0
        elif variant == "ae-code":
            # the code of each split's own encoder, a head of 20 on it (the encoder frozen: fixed inputs)
            Z = np.concatenate([encode(enc, Xl, network=j)[None] for j in range(len(splits))])
            arch = Architecture("classification", "mlp", code_dim, hidden=(20,), dropout=0.1)
            res = _fit_on_codes(Z, y, train_sets, eval_splits, pairs, arch, n_cls, epochs, seed, classes, n_bootstrap, min_rows)
            _collect(out, variant, res, pairs, label_fractions)
            timings[f"{variant}_s"] = time.perf_counter() - t0
            continue
        elif variant in ("ae-fine", "scratch-same"):
            arch = Architecture("classification", "mlp", Xl.shape[1], hidden=(*ae_cfg.encoder, 20), dropout=0.1)
            Xin, freeze = Xl, 0
            if variant == "ae-fine":
                if src_for_pairs is None:  # network i of the group starts from the encoder of its split
                    src_for_pairs = _encoder_for_pairs(enc, [j for _, j in pairs])
                source = src_for_pairs
            else:
                source = None
        else:
            raise XanesdbUserError(f"unknown variant {variant!r}; use any of {', '.join(VARIANTS)}")
        model, _ = fine_tune(Xin, y, train_sets, arch, n_cls, source=source, copy_head=False, freeze=freeze,
                             epochs=epochs, min_rows=min_rows, seed=seed)  # fmt: skip
        res = score_classifier(model, Xin, y, eval_splits, 1, classes, n_bootstrap, seed)
        _collect(out, variant, res, pairs, label_fractions, per_model=res["f1_per_model"])
        timings[f"{variant}_s"] = time.perf_counter() - t0
    out["timings"] = timings
    out["splits"] = len(splits)
    out["classifier_rows_per_epoch"] = max(min_rows, max(len(tr) for tr in train_sets))
    return out


def _encoder_for_pairs(enc, split_of: list[int]):
    """An encoder group whose network ``i`` is the encoder of split ``split_of[i]``."""
    import keras

    from xanesdb.ml.models import GroupedDense, Standardize

    k, n = len(split_of), enc.input_shape[-1]
    inputs = keras.Input(shape=(k, n))
    x = Standardize(name="standardize")(inputs)
    for layer in enc.layers:
        if isinstance(layer, GroupedDense):
            x = GroupedDense(layer.units, activation=keras.activations.serialize(layer.activation), name=layer.name)(x)
    new = keras.Model(inputs, x)
    idx = np.asarray(split_of)
    for layer in new.layers:
        if layer.weights:
            layer.set_weights([w[idx] for w in enc.get_layer(layer.name).get_weights()])
    return new


def _rows_for_steps(min_steps: int, epochs: int, batch_size: int = 32) -> int:
    """Rows per network and epoch that give at least ``min_steps`` updates over ``epochs``."""
    return batch_size * math.ceil(min_steps / epochs)


def _fit_on_codes(Z, y, train_sets, eval_splits, pairs, arch, n_cls, epochs, seed, classes, n_bootstrap, min_rows=0):
    """A head per (fraction, split) on that split's codes ``Z[j]``."""
    from xanesdb.ml.evaluate import score_predictions
    from xanesdb.ml.transfer import fine_tune, predict_networks_on

    # one group: network i reads the codes of its split; rows are (code of split j) per network
    k = len(pairs)
    Xg_list = [Z[j] for _, j in pairs]
    # fine_tune takes one X; stack codes side by side and give each network its own row offset
    n = len(y)
    Xcat = np.concatenate(Xg_list)  # row r of network i -> i * n + r
    ycat = np.concatenate([y] * k)
    sets = [np.asarray(tr) + i * n for i, tr in enumerate(train_sets)]
    model, _ = fine_tune(Xcat, ycat, sets, arch, n_cls, epochs=epochs, min_rows=min_rows, seed=seed)
    P = predict_networks_on(model, [Z[j][te] for (_, te), (_, j) in zip(eval_splits, pairs)])
    preds = [p.argmax(axis=1) for p in P]
    return score_predictions([y[te] for _, te in eval_splits], preds, tuple(classes), n_bootstrap, seed)


def _collect(out, variant, res, pairs, label_fractions, per_model=None) -> None:
    """Macro F1 per fraction: mean +- std of each network's full-test-set macro F1."""
    per = res["f1_per_model"] if per_model is None else per_model
    out["f1"][variant] = {}
    out["f1_per_split"][variant] = {}
    for f in label_fractions:
        v = [per[i] for i, p in enumerate(pairs) if p[0] == f]
        out["f1"][variant][f"{f:g}"] = [float(np.nanmean(v)), float(np.nanstd(v))]
        out["f1_per_split"][variant][f"{f:g}"] = [float(x) for x in v]


# ----------------------------------------------------------------------------- xanesdb train --pretrain
@dataclass
class PretrainConfig:
    """Knobs of ``xanesdb train --pretrain`` (stored under ``hyperparameters["pretrain"]`` with the query).

    Parameters
    ----------
    freeze
        First weight layers of the classifier (``dense_0``, ``dense_1``, ``dense_2`` = the encoder,
        then ``output``) kept as the autoencoder left them; 0: all trained (the ``ae-fine`` variant),
        3: the encoder frozen, only the output layer trained on the code.
    fraction
        Share of each split's labelled training rows used, in (0, 1]; test rows are all kept.
    n_models, ensemble, protocol, test_size
        Splits of the labelled data as for any classifier; networks per split.
    epochs, ae_epochs
        Classifier epochs; autoencoder epochs (None: ``epochs``).
    encoder, dropout
        Encoder widths (the classifier is ``encoder``-``<classes>``) and the classifier's dropout.
    batch_size, learning_rate, min_steps
        Adam; ``min_steps``: at least this many updates per classifier (few labelled rows are
        resampled to fill more batches an epoch), None: no floor.
    n_bootstrap, seed
        Bootstrap resamples of each test set; splits, subsampling, initialisation, data order.
    """

    freeze: int = 0
    fraction: float = 1.0
    n_models: int = 5
    ensemble: int = 1
    protocol: Literal["paper", "grouped"] = "paper"
    test_size: float = 0.1
    epochs: int = 50
    ae_epochs: int | None = None
    encoder: tuple[int, ...] = (128, 64, 32)
    dropout: float = 0.1
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_steps: int | None = None
    n_bootstrap: int = 10
    seed: int = 0

    def layers(self) -> list[str]:
        """The classifier's weight layers, input to output (what ``freeze`` counts)."""
        return [f"dense_{i}" for i in range(len(self.encoder))] + ["output"]

    def check(self) -> None:
        """Refuse bad knobs with one line (before any data is read)."""
        from xanesdb.ml.transfer import TransferConfig, check_freeze

        TransferConfig(freeze=self.freeze, fraction=self.fraction, n_models=self.n_models, ensemble=self.ensemble,
                       protocol=self.protocol, epochs=self.epochs, seed=self.seed).check()  # fmt: skip
        if self.ae_epochs is not None and self.ae_epochs < 1:
            raise XanesdbUserError("the autoencoder's epochs must be at least 1")
        if self.min_steps is not None and self.min_steps < 1:
            raise XanesdbUserError("--min-steps must be at least 1")
        widths = "-".join(map(str, self.encoder))
        check_freeze(self.freeze, self.layers(), f"the pretrained classifier {widths}-<classes>")


@dataclass
class PretrainResult:
    """What :func:`pretrain_from_query` produced (``autoencoder`` None without pretraining)."""

    model: Any
    doc: Any
    info: dict[str, Any]
    autoencoder: Any = None


def pretrain_sets(pre_groups: np.ndarray, pre_ids, groups: np.ndarray, ids, splits) -> list[np.ndarray]:
    """Rows of the pretraining data each split's autoencoder learns: all but the spectra of that split's
    test materials (and the test spectra themselves, whatever their material)."""
    pre_groups, pre_ids, ids = np.asarray(pre_groups), np.asarray(pre_ids), np.asarray(ids)
    out = []
    for _, te in splits:
        drop = np.isin(pre_groups, np.unique(np.asarray(groups)[te])) | np.isin(pre_ids, ids[te])
        out.append(np.nonzero(~drop)[0])
    return out


def pretrain_from_query(
    query: dict[str, Any],
    pretrain_query: dict[str, Any] | None,
    cfg: PretrainConfig,
    settings: Any = None,
    *,
    label_field: str = "lce_class",
    register: bool = True,
    on_pretrain_epoch: Callable[[int, float, int], None] | None = None,
    on_epoch: Callable[[int, float, int], None] | None = None,
) -> PretrainResult:
    """``xanesdb train --pretrain``: autoencoders on ``pretrain_query``'s spectra, then a classifier from them.

    Per split of the labelled data (``query``, ``label_field``) one autoencoder (encoder
    ``cfg.encoder``) is trained on every spectrum ``pretrain_query`` selects, labelled or not, minus
    the spectra of that split's test materials (:func:`pretrain_sets`: nothing of a test material is
    seen, as in :func:`few_label_comparison`). The split's classifier ``128-64-32-<classes>`` starts
    from that encoder (and its input standardisation), keeps its first ``cfg.freeze`` weight layers,
    and is trained on ``cfg.fraction`` of the split's labelled training rows
    (:func:`xanesdb.ml.transfer.fine_tune`); it is scored on all the split's test rows.

    ``pretrain_query`` None: the same classifier, splits and rows from a random start (the control).

    The run is registered as an ``mlp`` classifier (``hyperparameters["pretrain"]``: the query,
    its fingerprint and number of spectra, the spectra each split pretrained on and left out, the
    held-out reconstruction error, ``freeze``, ``fraction`` and the frozen layers), so ``xanesdb
    predict -m RUN`` and ``models show`` read it as any other run.
    """
    from xanesdb.ml.dataset import load_dataset
    from xanesdb.ml.evaluate import make_splits
    from xanesdb.ml.registry import run_document, run_id_of
    from xanesdb.ml.transfer import Architecture, fine_tune, score_classifier, subsample
    from xanesdb.xas.normalize import find_e0

    cfg.check()
    t0 = time.perf_counter()
    ds = load_dataset(query, settings, label_field=label_field)
    ds_pre = None
    if pretrain_query is not None:
        try:
            ds_pre = load_dataset(pretrain_query, settings, label_field="spectrum_id")  # every spectrum, labelled or not
        except XanesdbUserError as err:
            if str(err).startswith("no spectra match"):
                raise XanesdbUserError(f"--pretrain {json.dumps(pretrain_query)[:120]} selects no spectra; check it with "
                                       "`xanesdb db query -c spectra '<filter>'`") from None  # fmt: skip
            raise XanesdbUserError(f"--pretrain: {str(err).splitlines()[0]}") from None
        same = ds_pre.grid_name == ds.grid_name and len(ds_pre.energies) == len(ds.energies) and np.allclose(
            ds_pre.energies, ds.energies, atol=1e-6)  # fmt: skip
        if not same:
            raise XanesdbUserError(f"--pretrain selects spectra on grid {ds_pre.grid_name}, the query on grid "
                                   f"{ds.grid_name}; pretraining needs the labelled spectra's grid (add "
                                   f'{{"grid_name": "{ds.grid_name}"}} to --pretrain)')  # fmt: skip
    classes = list(ds.classes)
    Y = ds.encode(tuple(classes))
    counts = np.bincount(Y, minlength=len(classes))
    if len(classes) < 2 or counts.min() < 2:
        raise XanesdbUserError(f"a classifier needs two or more classes with at least 2 spectra each; the query has "
                               f"{dict(zip(classes, counts.tolist()))}")  # fmt: skip
    if cfg.protocol == "grouped" and len(set(ds.groups)) < 2:
        raise XanesdbUserError("the grouped protocol needs spectra of at least two materials")
    splits = make_splits(Y, ds.groups, cfg.protocol, cfg.n_models, cfg.test_size, cfg.seed)
    timings = {"dataset_s": time.perf_counter() - t0}
    e, n_s = cfg.ensemble, len(splits)
    ae = source = None
    pre_info: dict[str, Any] | None = None
    if ds_pre is not None:
        t0 = time.perf_counter()
        sets = pretrain_sets(ds_pre.groups, ds_pre.spectrum_ids, ds.groups, ds.spectrum_ids, splits)
        empty = [j for j, s in enumerate(sets) if len(s) == 0]
        if empty:
            raise XanesdbUserError(f"every spectrum --pretrain selects belongs to a test material of split {empty[0]}; "
                                   "pretrain on more materials than the labelled query holds")  # fmt: skip
        ae_cfg = AutoencoderConfig(encoder=tuple(cfg.encoder), epochs=cfg.ae_epochs or cfg.epochs, seed=cfg.seed)
        ae, enc = fit_autoencoders(ds_pre.X, sets, ae_cfg, on_epoch=on_pretrain_epoch)
        rec = [reconstruction_error(ae, ds.X[te], network=j) for j, (_, te) in enumerate(splits)]
        source = _encoder_for_pairs(enc, [j for j in range(n_s) for _ in range(e)])  # network i: split i // e
        timings["pretrain_s"] = time.perf_counter() - t0
        pre_info = {"query": pretrain_query, "fingerprint": ds_pre.fingerprint, "n_spectra": len(ds_pre),
                    "grid_name": ds_pre.grid_name, "encoder": list(cfg.encoder), "epochs": ae_cfg.epochs,
                    "freeze": cfg.freeze, "fraction": cfg.fraction}  # fmt: skip
    t0 = time.perf_counter()
    train_sets = subsample([tr for tr, _ in splits], cfg.fraction, cfg.seed)
    arch = Architecture("classification", "mlp", ds.X.shape[1], hidden=tuple(cfg.encoder), dropout=cfg.dropout)
    min_rows = _rows_for_steps(cfg.min_steps, cfg.epochs, cfg.batch_size) if cfg.min_steps else 0
    model, info = fine_tune(ds.X, Y, [tr for tr in train_sets for _ in range(e)], arch, len(classes), source=source,
                            copy_head=False, freeze=cfg.freeze if source is not None else 0, standardize="source",
                            epochs=cfg.epochs, min_rows=min_rows, batch_size=cfg.batch_size,
                            learning_rate=cfg.learning_rate, seed=cfg.seed, on_epoch=on_epoch)  # fmt: skip
    timings["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    eval_splits = [(tr, te) for tr, (_, te) in zip(train_sets, splits)]
    metrics = score_classifier(model, ds.X, Y, eval_splits, e, classes, cfg.n_bootstrap, cfg.seed)
    metrics["class_counts"] = {c: int(n) for c, n in zip(classes, counts)}
    metrics["train_edge_ev"] = find_e0(ds.energies, ds.X[train_sets[0]].mean(axis=0))
    metrics["n_train"] = [int(len(tr)) for tr in train_sets]
    metrics["n_test"] = [int(len(te)) for _, te in splits]
    timings["evaluate_s"] = time.perf_counter() - t0
    hp: dict[str, Any] = {"kind": "mlp", "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                          "learning_rate": cfg.learning_rate, "augment": [], "n_models": cfg.n_models,
                          "protocol": cfg.protocol, "test_size": cfg.test_size, "n_bootstrap": cfg.n_bootstrap,
                          "class_weight": None, "pre_edge": False, "hidden": list(cfg.encoder), "dropout": cfg.dropout,
                          "ensemble": e, "seed": cfg.seed,
                          "feature_indices": list(range(ds.X.shape[1]))}  # fmt: skip
    if cfg.min_steps:
        hp["min_steps"] = cfg.min_steps
    if pre_info is not None:  # its fraction and freeze with it (a --from run of this one drops the key)
        hp["pretrain"] = pre_info
    else:
        hp["fraction"] = cfg.fraction
    run_id = run_id_of("mlp", ds.fingerprint, label_field, hp, cfg.seed)  # the knobs and data, not the outcome
    if pre_info is not None:
        pre_info.update({"frozen_layers": info["frozen"], "copied_layers": info["copied"],
                         "n_pretrain": [int(len(s)) for s in sets], "n_left_out": [int(len(ds_pre) - len(s)) for s in sets],
                         "reconstruction_mse": [float(np.mean(rec)), float(np.std(rec))],
                         "reconstruction_mse_per_split": [float(r) for r in rec]})  # fmt: skip
    doc = run_document(ds, kind="mlp", task="classification", label_field=label_field, classes=classes,
                       hyperparameters=hp, seed=cfg.seed, metrics=metrics, timings=timings, query=query,
                       run_id=run_id)  # fmt: skip
    if register:
        from xanesdb.ml.registry import register_run

        doc = register_run(doc, model, settings)
    return PretrainResult(model=model, doc=doc, info=info, autoencoder=ae)


# ----------------------------------------------------------------------------- the picture
def plot_code_map(Z: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> Path:
    """Scatter of a 2-d code coloured by class (``None``/empty labels in light grey, drawn first)."""
    from matplotlib.figure import Figure

    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[1] != 2:
        raise ValueError(f"a code map needs a 2-d code, got shape {Z.shape}")
    labels = np.array(["unlabelled" if (v is None or str(v) in ("", "None", "nan")) else str(v) for v in labels])
    fig = Figure(figsize=(6.4, 5.4), dpi=120)
    ax = fig.subplots()
    order = sorted(set(labels), key=lambda c: (c != "unlabelled", c == "other", c))
    palette = {"T4": "tab:blue", "S5": "tab:orange", "O6": "tab:green", "other": "tab:purple", "unlabelled": "0.8"}
    extra = iter(["tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for c in order:
        m = labels == c
        color = palette.get(c) or next(extra, "k")
        ax.scatter(Z[m, 0], Z[m, 1], s=6 if c in ("unlabelled", "other") else 9, alpha=0.45 if c in ("unlabelled", "other") else 0.8,
                   color=color, label=f"{c} ({int(m.sum())})", edgecolors="none")  # fmt: skip
    ax.set_xlabel("code 1")
    ax.set_ylabel("code 2")
    ax.legend(fontsize=8, markerscale=2, loc="best")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path
