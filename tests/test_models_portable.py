"""``xanesdb models export`` / ``models import`` and ``db dump -c models`` / ``db load`` with weights.

A model trained from a query leaves the database as a folder (``model.keras`` + model card), the
database is dropped, and the imported model gives the same probabilities as before.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

GRID = 8985.0 + 0.5 * np.arange(100)
CENTRES = {"T4": 9000.0, "S5": 9010.0, "O6": 9020.0}


def _spectrum(cls: str, rng: np.random.Generator) -> np.ndarray:
    c = CENTRES[cls] + rng.normal(0, 1.0)
    mu = 1 / (1 + np.exp(-(GRID - 8995.0) / 1.5)) + 0.8 * np.exp(-((GRID - c) ** 2) / 8.0)
    mu = mu + rng.normal(0, 0.01, GRID.shape)
    return mu / mu.max()


def _insert_spectra(settings, n_per_class: int = 16) -> None:
    from xanesdb.platform.stores import get_database
    from xanesdb.schemas import SpectrumDoc

    rng = np.random.default_rng(0)
    docs = []
    for cls in CENTRES:
        for i in range(n_per_class):
            mid = f"mp-{cls}-{i // 2}"
            docs.append(SpectrumDoc(
                spectrum_id=f"{mid}:Cu:{i % 2}:K:test:std", task_id=f"{mid}:Cu:{i % 2}:K:test",
                site_id=f"{mid}:Cu:{i % 2}", material_id=mid, element="Cu", source="test",
                code="synthetic", preset="none", lce_class=cls, grid_name="Cu-K-test",
                energies=GRID.tolist(), mu=_spectrum(cls, rng).tolist(),
            ).to_mongo())  # fmt: skip
    get_database(settings).spectra.insert_many(docs)


def _drop(settings) -> None:
    import pymongo

    from xanesdb.platform.stores import database_uri

    client = pymongo.MongoClient(database_uri(settings))
    client.drop_database(settings.DB_NAME)
    client.close()


def _cli(args, capsys) -> tuple[int, str, str]:
    from xanesdb.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _probs(model, X: np.ndarray) -> np.ndarray:
    k = model.input_shape[1]
    return model.predict(np.repeat(X[:, None, :], k, axis=1), verbose=0)


@pytest.fixture
def trained(db_settings):
    from xanesdb.ml.train import TrainConfig, train_from_query

    _insert_spectra(db_settings)
    cfg = TrainConfig(kind="mlp", epochs=3, n_models=2, curves=False, n_bootstrap=0, seed=1)
    return train_from_query({"element": "Cu"}, cfg, db_settings).doc


@pytest.mark.integration
def test_export_drop_import_same_predictions(db_settings, trained, tmp_path, capsys):
    from xanesdb.ml.registry import get_run, list_runs, load_model

    doc = trained
    rng = np.random.default_rng(7)
    X = np.stack([_spectrum(c, rng) for c in ("T4", "S5", "O6", "O6")]).astype(np.float32)
    before = _probs(load_model(doc, db_settings), X)

    out = tmp_path / "portable"
    code, text, err = _cli(["models", "export", doc.run_id[:14], str(out)], capsys)
    assert code == 0, err
    assert f"exported {doc.run_id}" in text
    assert {p.name for p in out.iterdir()} == {"model.keras", "card.json", "card.md"}
    card = json.loads((out / "card.json").read_text())
    assert card["run_id"] == doc.run_id and card["fingerprint"] == doc.fingerprint
    assert card["query"] == {"element": "Cu"} and card["classes"] == list(doc.classes)
    assert "keras" in card["versions"] and "weights_file_id" not in card
    assert doc.fingerprint in (out / "card.md").read_text()

    _drop(db_settings)
    assert list_runs(db_settings) == []
    code, _, err = _cli(["models", "show", doc.run_id], capsys)
    assert code == 2 and err.startswith("error: no model")

    code, text, err = _cli(["models", "import", str(out)], capsys)
    assert code == 0, err
    assert f"registered {doc.run_id}" in text and "2 networks" in text
    back = get_run(doc.run_id, db_settings)
    assert back.state == "complete" and back.weights_file_id and back.fingerprint == doc.fingerprint
    assert back.metrics == doc.metrics and back.hyperparameters == doc.hyperparameters
    after = _probs(load_model(back, db_settings), X)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-7)
    # importing again replaces the run: still one document, one weights file
    code, text, _ = _cli(["models", "import", str(out)], capsys)
    assert code == 0 and f"replaced {doc.run_id}" in text
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    assert db.models.count_documents({}) == 1 and db["model_files.files"].count_documents({}) == 1


@pytest.mark.integration
def test_export_import_refuse_bad_input_in_one_line(db_settings, trained, tmp_path, capsys):
    doc = trained
    out = tmp_path / "m"
    assert _cli(["models", "export", doc.run_id, str(out)], capsys)[0] == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "card.json").write_text((out / "card.json").read_text())
    (damaged / "model.keras").write_bytes(b"not a zip file")
    bad_card = tmp_path / "bad-card"
    bad_card.mkdir()
    (bad_card / "card.json").write_text('{"run_id": 3}')
    (bad_card / "model.keras").write_bytes((out / "model.keras").read_bytes())
    cases = [
        (["models", "export", "no-such-model", str(tmp_path / "x")], "no model"),
        (["models", "export", doc.run_id, str(out)], "already holds"),
        (["models", "export", doc.run_id, str(a_file)], "is a file"),
        (["models", "import", str(a_file)], "is not a folder"),
        (["models", "import", str(tmp_path / "missing")], "is not a folder"),
        (["models", "import", str(empty)], "is not a model folder"),
        (["models", "import", str(damaged)], "cannot be loaded"),
        (["models", "import", str(bad_card)], "not a valid model card"),
    ]
    for args, msg in cases:
        code, _, err = _cli(args, capsys)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], (args, err)
    # --force overwrites; the database still holds exactly the one run
    assert _cli(["models", "export", doc.run_id, str(out), "--force"], capsys)[0] == 0


@pytest.mark.integration
def test_db_dump_and_load_carry_the_weights(db_settings, trained, tmp_path, capsys):
    from xanesdb.ml.registry import get_run, load_model
    from xanesdb.platform.snapshot import weights_file_name
    from xanesdb.platform.stores import get_database

    doc = trained
    rng = np.random.default_rng(3)
    X = np.stack([_spectrum(c, rng) for c in ("T4", "S5", "O6")]).astype(np.float32)
    before = _probs(load_model(doc, db_settings), X)
    snap = tmp_path / "snap"
    code, text, err = _cli(["db", "dump", str(snap), "-c", "models", "-c", "spectra"], capsys)
    assert code == 0, err
    assert "models: 1 documents" in text and "model_files: 1 .keras weight files" in text
    assert (snap / "model_files" / weights_file_name(doc.run_id)).is_file()
    assert not [p for p in snap.iterdir() if p.name.startswith(".")]  # no temporary files left

    _drop(db_settings)
    code, text, err = _cli(["db", "load", str(snap)], capsys)
    assert code == 0, err
    assert "model_files: 1 .keras weight files" in text and "spectra: 48 documents" in text
    back = get_run(doc.run_id, db_settings)
    assert back.state == "complete" and back.weights_file_id != doc.weights_file_id
    np.testing.assert_allclose(_probs(load_model(back, db_settings), X), before, rtol=1e-6, atol=1e-7)
    # loading again is idempotent: one document, one weights file
    assert _cli(["db", "load", str(snap)], capsys)[0] == 0
    db = get_database(db_settings)
    assert db.models.count_documents({}) == 1 and db["model_files.files"].count_documents({}) == 1
    np.testing.assert_allclose(_probs(load_model(doc.run_id, db_settings), X), before, rtol=1e-6, atol=1e-7)
    # a damaged weights file: one line, exit 2
    (snap / "model_files" / weights_file_name(doc.run_id)).write_bytes(b"garbage")
    code, _, err = _cli(["db", "load", str(snap)], capsys)
    assert code == 2 and "not a .keras file" in err and len(err.strip().splitlines()) == 1


def test_weights_file_names_are_safe():
    from xanesdb.platform.snapshot import weights_file_name

    assert weights_file_name("mlp-0123456789-abcdef01") == "mlp-0123456789-abcdef01.keras"
    for bad in ("../../etc/passwd", "a/b", "", ".hidden", "x" * 400):
        name = weights_file_name(bad)
        assert "/" not in name and name.startswith("run-") and name.endswith(".keras")
    assert weights_file_name("a/b") != weights_file_name("a/c")


def test_shipped_cards_say_which_classes_were_left_out():
    """The Mn, Ni, Co and Cr models that ship learn O6 and T4 only (a class of fewer than 9 materials is
    left out, scripts/train_shipped_models.py --min-class-materials): their query and card say so."""
    import json

    from xanesdb.ml.portable import _card_markdown, shipped_model_dir
    from xanesdb.schemas import TrainingRunDoc

    for el in ("Mn", "Ni", "Co", "Cr"):
        folder = shipped_model_dir(el)
        card = json.loads((folder / "card.json").read_text())
        assert card["classes"] == ["O6", "T4"] and card["query"]["lce_class"] == {"$in": ["T4", "O6"]}
        assert "S5" in card["metrics"]["classes_left_out"]
        assert "- classes left out: S5 (" in (folder / "card.md").read_text()
        assert "- classes left out: S5 (" in _card_markdown(TrainingRunDoc(**card))
    for el in ("Ti", "V", "Fe"):  # S5 sites of 9 materials or more
        assert "S5" in json.loads((shipped_model_dir(el) / "card.json").read_text())["classes"]


def test_every_shipped_model_has_a_short_scan_twin():
    """Each absorber's shipped model has a short-scan model of the same recipe and classes that reads
    -1..+30 eV (xanesdb/data/models/short), which predict uses for scans that stop too early."""
    import json

    from xanesdb.ml.portable import POOLED, shipped_model_dir, shipped_models

    full = {el: d for el, d in shipped_models().items() if el != POOLED}
    assert sorted(full) == sorted(shipped_models(short=True))
    for el, folder in full.items():
        card = json.loads((folder / "card.json").read_text())
        short = json.loads((shipped_model_dir(el, short=True) / "card.json").read_text())
        assert short["classes"] == card["classes"] and short["label_field"] == card["label_field"], el
        assert short["hyperparameters"]["window"] == [-1.0, 30.0] and card["hyperparameters"]["window"] == [-1.0, 44.5]
        assert {k: v for k, v in short["hyperparameters"].items() if k not in ("window", "feature_indices")} == {
            k: v for k, v in card["hyperparameters"].items() if k not in ("window", "feature_indices")}, el
