"""Transfer learning (issue 20 item 3): grid checks, freezing, weight copies, the CLI and its refusals."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from xanesdb.ml.transfer import (Architecture, TransferConfig, check_freeze, fine_tune, grid_compatibility,
                                 score_classifier, score_regressor, subsample, weight_layers)
from xanesdb.platform.errors import XanesdbUserError

E = np.round(8970 + 0.5 * np.arange(100), 6)


def _spectra(n: int, rng, shift: float = 0.0, width: float = 2.0):
    """Three classes: an edge plus a white line whose position depends on the class (+ ``shift`` points)."""
    y = rng.integers(0, 3, n)
    i = np.arange(100)
    pos = 40 + 8 * y[:, None] + shift + rng.normal(0, 1.0, (n, 1))
    X = 1 / (1 + np.exp(-(i - 30) / 2)) + 0.6 * np.exp(-((i - pos) ** 2) / (2 * width**2)) + rng.normal(0, 0.02, (n, 100))
    return (X / X.max(axis=1, keepdims=True)).astype("float32"), y


def test_grid_compatibility():
    g = grid_compatibility("Cu-K-omnixas-v1", E, "Cu-K-xanesdb-v1", E + 6.5)
    assert g["offset_ev"] == 6.5 and g["edge"] == "K" and g["source_element"] == g["target_element"] == "Cu"
    assert grid_compatibility("Mn-K-xanesdb-v1", E, "Fe-K-xanesdb-v1", E + 600)["target_element"] == "Fe"
    with pytest.raises(XanesdbUserError, match="same edge"):
        grid_compatibility("Cu-K-xanesdb-v1", E, "Cu-L3-xanesdb-v1", E)
    with pytest.raises(XanesdbUserError, match="same grid"):
        grid_compatibility("Cu-K-xanesdb-v1", E, "Cu-K-other-v1", E[:80])
    with pytest.raises(XanesdbUserError, match="same grid"):
        grid_compatibility("Cu-K-xanesdb-v1", E, "Cu-K-other-v1", 8970 + 0.25 * np.arange(100))


def test_config_refusals():
    for kw, msg in [({"fraction": 0.0}, r"outside \(0, 1\]"), ({"fraction": 1.5}, r"outside \(0, 1\]"),
                    ({"fraction": float("nan")}, r"outside \(0, 1\]"), ({"freeze": -1}, "negative"),
                    ({"protocol": "random"}, "unknown --protocol"), ({"epochs": 0}, "at least 1")]:
        with pytest.raises(XanesdbUserError, match=msg):
            TransferConfig(**kw).check()
    TransferConfig(fraction=1.0).check()
    with pytest.raises(XanesdbUserError, match="freeze 0 to 3"):
        check_freeze(4, ["dense_0", "dense_1", "dense_2", "output"])
    check_freeze(3, ["dense_0", "dense_1", "dense_2", "output"])
    a = [np.arange(100), np.arange(50)]
    s = subsample(a, 0.2, 0)
    assert [len(x) for x in s] == [20, 10] and set(s[0]) <= set(a[0]) and subsample(a, 1.0, 0)[1] is not None


def test_fine_tune_freezes_copies_and_helps():
    from keras import ops

    rng = np.random.default_rng(0)
    Xs, ys = _spectra(600, rng)  # source domain
    Xt, yt = _spectra(300, rng, shift=3.0)  # target: features moved by 3 points
    arch = Architecture("classification", "mlp", 100)
    src, info = fine_tune(Xs, ys, [np.arange(600)] * 2, arch, 3, epochs=15, seed=1)
    assert info["frozen"] == [] and info["copied"] == []
    assert weight_layers(src) == ["dense_0", "dense_1", "dense_2", "output"]
    splits = [(np.arange(0, 240), np.arange(240, 300)), (np.arange(60, 300), np.arange(0, 60))]
    few = subsample([tr for tr, _ in splits], 0.1, 0)  # 24 labelled rows per split
    tuned, info = fine_tune(Xt, yt, few, arch, 3, source=src, freeze=2, epochs=15, seed=2)
    assert info["frozen"] == ["dense_0", "dense_1"] and {"standardize", "dense_0", "output"} <= set(info["copied"])
    w = lambda m, name: ops.convert_to_numpy(m.get_layer(name).kernel)  # noqa: E731
    np.testing.assert_array_equal(w(tuned, "dense_0"), w(src, "dense_0"))  # frozen: as the source left them
    np.testing.assert_array_equal(w(tuned, "dense_1"), w(src, "dense_1"))
    assert not np.allclose(w(tuned, "dense_2"), w(src, "dense_2"))  # trained
    np.testing.assert_array_equal(ops.convert_to_numpy(tuned.get_layer("standardize").mean),
                                  ops.convert_to_numpy(src.get_layer("standardize").mean))
    scratch, _ = fine_tune(Xt, yt, few, arch, 3, epochs=15, seed=2)
    ev = [(tr, te) for tr, (_, te) in zip(few, splits)]
    f_t = score_classifier(tuned, Xt, yt, ev, 1, ("a", "b", "c"), 0)["f1"]["macro"][0]
    f_s = score_classifier(scratch, Xt, yt, ev, 1, ("a", "b", "c"), 0)["f1"]["macro"][0]
    assert f_t > 0.8 and f_t >= f_s - 0.05, (f_t, f_s)
    # a new head (other classes): the output layer is not copied
    _, info = fine_tune(Xt, yt % 2, few, arch, 2, source=src, copy_head=False, freeze=3, epochs=1)
    assert "output" not in info["copied"] and info["frozen"] == ["dense_0", "dense_1", "dense_2"]


def test_regression_transfer_keeps_units():
    from keras import ops

    rng = np.random.default_rng(3)
    Xs, ys = _spectra(300, rng)
    Ys = (4.0 + ys + rng.normal(0, 0.1, 300))[:, None].astype("float32")  # a coordination-number-like target
    arch = Architecture("regression", "reg-mlp-shallow", 100)
    src, _ = fine_tune(Xs, Ys, [np.arange(300)], arch, 1, epochs=20, seed=0)
    Xt, yt = _spectra(120, rng, shift=2.0)
    Yt = (4.0 + yt)[:, None].astype("float32")
    splits = [(np.arange(0, 100), np.arange(100, 120))]
    tuned, info = fine_tune(Xt, Yt, [splits[0][0]], arch, 1, source=src, freeze=1, epochs=20, seed=0)
    assert "destandardize" in info["copied"] and info["frozen"] == ["dense_0"]
    np.testing.assert_allclose(ops.convert_to_numpy(tuned.get_layer("destandardize").mean),
                               ops.convert_to_numpy(src.get_layer("destandardize").mean))
    m = score_regressor(tuned, Xt, Yt, splits, 1, ("coordination_number",))["targets"]["coordination_number"]
    assert m["mae_ensemble"][0] < m["mae_baseline"][0] and m["calibration"]["b"] >= 0


# ----------------------------------------------------------------------------- CLI on the real server
def _insert(settings, grid: str, n_mat: int, shift: float, energies, rng) -> None:
    import pymongo

    client = pymongo.MongoClient(settings.DB_URI.get_secret_value())
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    docs = []
    for m in range(n_mat):
        X, y = _spectra(2, rng, shift=shift)
        for s in range(2):
            sid = f"{grid}-mp-{m}:{s}"
            docs.append({"spectrum_id": sid, "site_id": sid, "material_id": f"{grid}-mp-{m}", "element": grid.split("-")[0],
                         "grid_name": grid, "energies": list(map(float, energies)), "mu": X[s].tolist(),
                         "lce_class": ["T4", "S5", "O6"][y[s]], "coordination_number": 4 + int(y[s]),
                         "duplicate_of": None, "state": "successful", "preset": "fast", "last_updated": now})  # fmt: skip
    client[settings.DB_NAME]["spectra"].insert_many(docs)
    client.close()


def test_cli_transfer_and_refusals(db_settings, refused, capsys):
    from xanesdb.cli import main
    from xanesdb.ml.registry import get_run, list_runs

    rng = np.random.default_rng(5)
    _insert(db_settings, "Cu-K-src-v1", 40, 0.0, E, rng)
    _insert(db_settings, "Cu-K-tgt-v1", 30, 2.0, E + 6.5, rng)
    _insert(db_settings, "Cu-L3-tgt-v1", 10, 0.0, E - 8000, rng)
    main(["train", "-q", '{"grid_name": "Cu-K-src-v1"}', "--epochs", "3", "--n-models", "2", "--no-curves"])
    src = list_runs(db_settings)[0]["run_id"]
    capsys.readouterr()
    main(["train", "--from", src, "-q", '{"grid_name": "Cu-K-tgt-v1"}', "--freeze", "2", "--fraction", "0.5",
          "--epochs", "3", "--n-models", "2", "--standardize", "target"])
    out = capsys.readouterr().out
    assert "fine-tuned from" in out and "+6.5 eV" in out and "dense_0, dense_1" in out
    runs = list_runs(db_settings)
    assert len(runs) == 2
    doc = get_run(runs[0]["run_id"] if runs[0]["run_id"] != src else runs[1]["run_id"], db_settings)
    tr = doc.hyperparameters["transfer"]
    assert tr["from"] == src and tr["fraction"] == 0.5 and tr["freeze"] == 2 and not tr["new_head"]
    assert tr["standardize"] == "target"
    assert doc.kind == "mlp" and doc.grid_name == "Cu-K-tgt-v1" and doc.state == "complete"
    assert doc.metrics["n_train"][0] < 0.6 * doc.n_spectra
    # the fine-tuned run is a registered model like any other: it can be the source of the next one
    base = ["train", "--from", src, "-q", '{"grid_name": "Cu-K-tgt-v1"}', "--epochs", "1", "--n-models", "2"]
    assert "same edge" in refused(["train", "--from", src, "-q", '{"grid_name": "Cu-L3-tgt-v1"}', "--epochs", "1"])
    assert "outside (0, 1]" in refused([*base, "--fraction", "0"])
    assert "outside (0, 1]" in refused([*base, "--fraction", "1.5"])
    assert "freeze 0 to 3" in refused([*base, "--freeze", "4"])
    assert "unknown --standardize" in refused([*base, "--standardize", "batch"])
    assert "--standardize is for fine-tuning" in refused(["train", "-q", '{"grid_name": "Cu-K-tgt-v1"}', "--standardize", "target"])
    assert "no model" in refused(["train", "--from", "nope-123", "-q", '{"grid_name": "Cu-K-tgt-v1"}'])
    assert "no spectra match" in refused(["train", "--from", src, "-q", '{"grid_name": "none"}'])


@pytest.mark.parametrize("key", ["transfer", "pretrain"])
def test_reproduce_refuses_fine_tuned_and_pretrained_runs(key):
    """``models reproduce`` retrains plain runs; a run made from another network says so in one line."""
    from xanesdb.ml.crosscheck import reproduce_run
    from xanesdb.schemas import TrainingRunDoc

    doc = TrainingRunDoc(run_id="mlp-x", kind="mlp", query={"element": "Cu"}, classes=["O6", "T4"], fingerprint="f" * 16,
                         n_spectra=10, grid_name="g", energies=[0.0, 1.0], hyperparameters={key: {"from": "mlp-y"}})  # fmt: skip
    with pytest.raises(XanesdbUserError, match="reproduce retrains plain runs only") as err:
        reproduce_run(doc)
    assert "\n" not in str(err.value)
