"""xanesdb.api: lazy exports, inputs of predict, queries as DataFrame / XAS on the real server."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from xanesdb.platform.errors import XanesdbUserError


def test_import_xanesdb_is_light_and_exports_the_api():
    code = ("import sys, xanesdb; heavy = [m for m in ('keras', 'pandas', 'pymongo', 'matplotlib') if m in sys.modules];"
            "assert not heavy, heavy; assert xanesdb.connect is __import__('xanesdb.api').api.connect;"
            "assert 'keras' not in sys.modules")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_as_spectra_reads_arrays_xas_and_frames():
    import pandas as pd
    from pymatgen.analysis.xas.spectrum import XAS
    from pymatgen.core import Lattice, Structure

    from xanesdb.api import as_spectra

    e = np.linspace(8980, 9030, 50)
    Y = np.vstack([np.linspace(0, 1, 50), np.linspace(0, 2, 50)])
    two = as_spectra(Y, energies=e, names=["a", "b"])
    assert [s.name for s in two] == ["a", "b"] and two[1].mu.max() == 2 and two[0].kind == "array"
    assert len(as_spectra(Y[0], energies=e)) == 1
    with pytest.raises(XanesdbUserError, match="energies"):
        as_spectra(Y)
    with pytest.raises(XanesdbUserError, match="50 points per spectrum but 3 energies"):
        as_spectra(Y, energies=[1, 2, 3])
    st = Structure(Lattice.cubic(4.2), ["Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    xas = XAS(e, Y[1] + 0.1, st, "Cu", absorbing_index=0)
    (s,) = as_spectra(xas)
    assert s.absorber == "Cu" and s.edge == "K" and np.allclose(s.energy, e)
    df = pd.DataFrame({"spectrum_id": ["x", "y"], "element": ["Cu", "Cu"], "energies": [e, e], "mu": list(Y)})
    assert [s.name for s in as_spectra(df)] == ["x", "y"] and as_spectra(df)[0].absorber == "Cu"
    with pytest.raises(XanesdbUserError, match="cannot read spectra"):
        as_spectra(object())


def test_connect_takes_uri_home_and_settings(tmp_path):
    from xanesdb.api import connect
    from xanesdb.platform.settings import get_settings

    c = connect("mongodb://example.invalid:27017/", db_name="other", home=tmp_path)
    assert c.settings.DB_NAME == "other" and c.settings.HOME == tmp_path and "XANESDB_DB_URI" in repr(c)
    assert connect(settings=get_settings(DB_NAME="x")).settings.DB_NAME == "x"
    with pytest.raises(XanesdbUserError, match="either settings"):
        connect("mongodb://h/", settings=get_settings())


def test_plots_return_figures_and_leave_the_backend_alone():
    import matplotlib

    from xanesdb.api import plot_spectra

    before = matplotlib.get_backend()
    fig = plot_spectra(np.random.default_rng(0).random((6, 20)), ["O6", "T4"] * 3, energies=np.arange(20.0))
    assert type(fig).__name__ == "Figure" and matplotlib.get_backend() == before
    import re

    src = open(sys.modules["xanesdb.ml.plots"].__file__).read()
    code = [line for line in src.splitlines() if line.strip().startswith(("import ", "from ")) or "(" in line]
    assert not [line for line in code if re.search(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot", line)]


@pytest.mark.integration
def test_spectra_as_dataframe_xas_dataset_and_a_model(db_settings, tmp_path):
    from datetime import datetime, timezone

    from xanesdb.api import Connection, load_model
    from xanesdb.schemas import SpectrumDoc

    conn = Connection(db_settings)
    grid = 8985.0 + 0.5 * np.arange(100)
    rng = np.random.default_rng(1)
    docs = []
    for i in range(24):
        cls = ("O6", "T4")[i % 2]
        mu = 1 / (1 + np.exp(-(grid - 8995.0) / 1.5)) + 0.8 * np.exp(-((grid - (9000 if cls == "T4" else 9020)) ** 2) / 8)
        docs.append(SpectrumDoc(
            spectrum_id=f"mp-{i}:Cu:0:K:t:std", task_id=f"mp-{i}:Cu:0:K:t", site_id=f"mp-{i}:Cu:0", material_id=f"mp-{i}",
            element="Cu", source="test", code="synthetic", preset="none", lce_class=cls, grid_name="Cu-K-test",
            energies=grid.tolist(), mu=(mu + rng.normal(0, 0.01, 100)).tolist(),
        ).to_mongo())  # fmt: skip
    docs.append(dict(docs[0], spectrum_id="dup:std", duplicate_of=docs[0]["spectrum_id"]))
    conn.db.spectra.insert_many(docs)
    conn.db.structures.insert_one({"material_id": "mp-0", "last_updated": datetime.now(timezone.utc), "structure": {
        "@module": "pymatgen.core.structure", "@class": "Structure", "charge": 0,
        "lattice": {"matrix": [[4.2, 0, 0], [0, 4.2, 0], [0, 0, 4.2]]},
        "sites": [{"species": [{"element": "Cu", "occu": 1}], "abc": [0, 0, 0], "label": "Cu", "properties": {}},
                  {"species": [{"element": "O", "occu": 1}], "abc": [0.5, 0.5, 0.5], "label": "O", "properties": {}}]}},
        bypass_document_validation=True)  # fmt: skip
    df = conn.spectra({"element": "Cu"})
    assert len(df) == 24 and "dup:std" not in df.index and isinstance(df["mu"].iloc[0], np.ndarray)
    assert len(conn.spectra({"element": "Cu"}, include_duplicates=True)) == 25
    assert list(conn.spectra({"element": "Cu"}, fields=["spectrum_id", "lce_class"], limit=3).columns) == ["spectrum_id", "lce_class"]
    (xas,) = conn.spectra_xas({"material_id": "mp-0"})
    assert xas.absorbing_index == 0 and xas.xanesdb["lce_class"] == "O6" and str(xas.absorbing_element) == "Cu"
    with pytest.raises(XanesdbUserError, match="not in 'structures'"):
        conn.spectra_xas({"material_id": "mp-1"})
    assert conn.dataset({"element": "Cu"}).X.shape == (24, 100)
    model = conn.train({"element": "Cu"}, kind="mlp", epochs=20, n_models=2, n_bootstrap=0, curves=False)
    assert model.doc.versions["keras"] and model.doc.backend and "scikit_learn" in model.doc.versions
    rows = model.predict(df)
    assert len(rows) == 24 and (rows["predicted"] == df["lce_class"].to_numpy()).mean() > 0.8
    assert model.predict(np.stack(df["mu"].head(2)))["best_class"].tolist() == rows["best_class"].head(2).tolist()
    assert type(model.plot_confusion()).__name__ == "Figure"
    assert type(model.plot_prediction(df.index[0])).__name__ == "Figure"
    with pytest.raises(XanesdbUserError, match="no robustness curves"):
        model.plot_robustness()
    again = load_model(model.run_id, conn)
    assert again.run_id == model.run_id and conn.models()["run_id"].tolist() == [model.run_id]
    exported = load_model(model.export(tmp_path / "m"))
    np.testing.assert_allclose(exported.predict(df, as_frame=False)[0]["confidence"], rows["confidence"].iloc[0], rtol=1e-5)
    conn.close()


def test_shipped_model_frame_has_the_reference_vote(shared_data):
    """A shipped model read from Python gives flat DataFrame rows: probabilities, and the nearest
    reference compounds as text and as the nearest one's material."""
    from xanesdb.api import load_model
    from xanesdb.ml.portable import shipped_model_dir

    model = load_model(shipped_model_dir("Fe"))
    df = model.predict(str(shared_data / "experimental_dev" / "athena" / "Fe.prj"), as_frame=True)
    row = df[df["name"].str.endswith(":Hematite")].iloc[0]
    assert row["predicted"] == "O6" and row["p_O6"] > 0.5
    assert row["reference_vote"].startswith("O6 ") and isinstance(row["nearest_reference"], str)
    assert not any(isinstance(v, dict) for v in row.values)


def test_predict_of_a_list_of_files_gives_a_bad_file_an_error_row(shared_data, tmp_path):
    """As ``xanesdb predict`` does for a batch: a file of the list that cannot be read is one row with
    its ``error`` naming it, and the other files are still predicted; one bad file given alone raises."""
    import xanesdb
    from xanesdb.api import load_model
    from xanesdb.ml.portable import shipped_model_dir
    from xanesdb.xas.readers import read_spectra

    hematite = next(s for s in read_spectra(shared_data / "experimental_dev" / "athena" / "Fe.prj")
                    if s.name.endswith(":Hematite"))  # fmt: skip
    good, backwards, empty = tmp_path / "hematite.csv", tmp_path / "backwards.csv", tmp_path / "empty.csv"
    np.savetxt(good, np.c_[hematite.energy, hematite.mu], delimiter=",", header="energy,mu", comments="")
    np.savetxt(backwards, np.c_[hematite.energy[::-1], hematite.mu[::-1]], delimiter=",", header="energy,mu", comments="")
    empty.write_text("")
    batch = [backwards, str(good), empty]
    for rows in (xanesdb.predict(batch, as_frame=False), load_model(shipped_model_dir("Fe")).predict(batch, as_frame=False)):
        errors = {r["name"]: r["error"] for r in rows if r.get("error")}
        assert set(errors) == {"backwards.csv", "empty.csv"}, errors
        assert "energies decrease" in errors["backwards.csv"]
        (answered,) = [r for r in rows if not r.get("error")]
        assert answered["name"] == "hematite.csv" and answered["predicted"] == "O6"
    with pytest.raises(XanesdbUserError, match="backwards.csv: energies decrease"):
        xanesdb.predict(backwards)
