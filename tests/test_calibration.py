"""The computed -> measured calibration (xanesdb.xas.calibration, issue 16 item 3/4)."""

from __future__ import annotations

import numpy as np
import pytest

from xanesdb.xas.align import ALIGNED_GRID
from xanesdb.xas.calibration import MeasurementCalibration, fit_calibration, load_calibration


def _spectra(n: int, seed: int = 0) -> np.ndarray:
    """Edge-step-normalised, aligned-like spectra: an arctan step with a white line and two wiggles."""
    rng = np.random.default_rng(seed)
    g = ALIGNED_GRID
    rows = []
    for _ in range(n):
        wl, a = rng.uniform(5, 9), rng.uniform(0.4, 0.9)
        y = 0.5 + np.arctan(g / 1.2) / np.pi
        y = y + a * np.exp(-0.5 * ((g - wl) / 2.0) ** 2)
        y = y + 0.15 * np.sin((g - wl) / rng.uniform(3.5, 5.0)) * (g > wl) * np.exp(-(g - wl) / 30)
        rows.append(y)
    return np.array(rows)


def test_identity_leaves_spectra_alone():
    X = _spectra(4)
    same = MeasurementCalibration(shift=0.0, stretch=1.0, sigma=0.0, damping=1.0).apply(X, ALIGNED_GRID)
    np.testing.assert_allclose(same, X, atol=1e-5)


def test_stretch_moves_features_out_and_damping_weakens_them():
    X = _spectra(1)
    g = ALIGNED_GRID
    moved = MeasurementCalibration(shift=0.0, stretch=1.2, sigma=0.0, damping=1.0).apply(X, g)
    assert g[moved[0].argmax()] == pytest.approx(1.2 * g[X[0].argmax()], abs=0.6)
    damped = MeasurementCalibration(shift=0.0, stretch=1.0, sigma=0.0, damping=0.5).apply(X, g)
    assert damped[0].max() - 1 == pytest.approx(0.5 * (X[0].max() - 1), rel=0.05)
    # below the half step nothing moves
    np.testing.assert_allclose(moved[0][g <= 0], X[0][g <= 0], atol=1e-6)


def test_fit_recovers_a_known_map_and_refits_without_each_absorber():
    C = _spectra(9, seed=1)
    truth = MeasurementCalibration(shift=0.5, stretch=1.1, sigma=1.0, damping=0.8)
    M = truth.apply(C, ALIGNED_GRID)
    pairs = [{"absorber": el} for el in ["Fe"] * 3 + ["Mn"] * 3 + ["V"] * 3]
    cal = fit_calibration(C, M, ALIGNED_GRID, pairs)
    assert cal.params() == pytest.approx(truth.params())
    assert cal.rmse_after < 1e-3 < cal.rmse_before
    assert sorted(cal.held_out) == ["Fe", "Mn", "V"]
    for el, h in cal.held_out.items():
        assert h["n_pairs"] == 6 and h["n_own"] == 3
        assert h["rmse_own_after"] < 0.2 * h["rmse_own_before"]
        assert cal.without(el).params() == pytest.approx(truth.params())
    assert cal.without("Cu") is cal  # no pairs of its own: the full fit


def test_per_pair_fits_give_the_measurement_models_ranges():
    C = _spectra(4, seed=2)
    maps = [MeasurementCalibration(shift=0.5, stretch=st, sigma=sg, damping=d)
            for st, sg, d in [(1.05, 0.5, 0.9), (1.1, 1.0, 0.8), (1.15, 1.5, 0.7), (1.2, 2.0, 0.6)]]  # fmt: skip
    M = np.concatenate([m.apply(c, ALIGNED_GRID) for m, c in zip(maps, C)])
    cal = fit_calibration(C, M, ALIGNED_GRID, [{"absorber": "Fe"}, {"absorber": "Fe"}, {"absorber": "Mn"}, {"absorber": "Mn"}])
    assert [p["stretch"] for p in cal.per_pair] == pytest.approx([1.05, 1.1, 1.15, 1.2])
    r = cal.measurement_ranges()
    assert r["gauss_ev"] == pytest.approx((0.5, 2.0)) and r["damping"] == pytest.approx((0.6, 0.9))
    assert r["stretch"][0] * cal.stretch == pytest.approx(1.05, abs=1e-3)
    assert r["stretch"][1] * cal.stretch == pytest.approx(1.2, abs=1e-3)
    assert len(cal.without("Fe").per_pair) == 2
    assert "residuals" not in r
    bank = cal.measurement_ranges(residuals=True)["residuals"]
    assert len(bank) == 4 and len(bank[0]) == len(ALIGNED_GRID)
    assert max(np.abs(bank).max(axis=1)) < 0.05  # the maps were exact up to the grid
    e = cal.energy_scale()
    assert (e.sigma, e.damping, e.stretch, e.shift) == (0.0, 1.0, cal.stretch, cal.shift)


def test_measurement_copies_stretch_the_energy_scale():
    from xanesdb.ml.augment import MeasurementModel, measurement_copies

    X = _spectra(1)
    g = ALIGNED_GRID
    plain = dict(gauss_ev=(1e-3, 1e-3), lorentz_ev=(0.0, 0.0), lorentz_slope=(0.0, 0.0), shift_ev=0.0, scale=0.0,
                 slope_per_100ev=0.0, noise=(0.0, 0.0), damping=(1.0, 1.0))  # fmt: skip
    rng = np.random.default_rng(0)
    same = measurement_copies(X, g, MeasurementModel(**plain), rng)
    np.testing.assert_allclose(same, X, atol=1e-4)
    out = measurement_copies(X, g, MeasurementModel(**plain, stretch=(1.2, 1.2)), rng)
    assert g[out[0].argmax()] == pytest.approx(1.2 * g[X[0].argmax()], abs=0.6)
    # a residual bank: each copy gets one real mismatch curve times a factor in [0, 1]
    bump = np.where(np.abs(g - 20) < 2, 0.3, 0.0)
    mm = MeasurementModel.from_dict({**plain, "residuals": [bump.tolist()]})
    diff = measurement_copies(np.repeat(X, 50, axis=0), g, mm, rng) - X
    scale = diff[:, np.argmax(bump)] / 0.3
    assert np.all((scale >= -1e-3) & (scale <= 1 + 1e-3)) and scale.std() > 0.2
    np.testing.assert_allclose(diff[:, np.abs(g - 20) > 3], 0.0, atol=1e-3)


def test_save_load_round_trip_and_unknown_name(tmp_path):
    cal = fit_calibration(_spectra(2), _spectra(2, seed=3), ALIGNED_GRID, [{"absorber": "Ni"}] * 2)
    path = cal.save(tmp_path / "mine.json")
    back = load_calibration(str(path))
    assert back.params() == cal.params() and back.pairs == cal.pairs
    with pytest.raises(ValueError, match="no calibration 'nope'; use one of .*k-edge"):
        load_calibration("nope")
    with pytest.raises(ValueError, match="matching, non-empty"):
        fit_calibration(_spectra(2), _spectra(3), ALIGNED_GRID)
    # a file that is not a calibration: one line that names it, never a TypeError from the constructor
    for text, words in (('{"a": 1}', "unknown keys a; missing shift"), ("[1, 2]", "holds a list"),
                        ("{bad", "not a readable JSON calibration"),
                        ('{"shift": 0, "stretch": -1, "sigma": 1, "damping": 1}', "out of range")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ValueError, match=words) as err:
            load_calibration(str(tmp_path / "bad.json"))
        assert "bad.json" in str(err.value) and "xanesdb calibrate" in str(err.value)


def test_shipped_k_edge_calibration_carries_to_absorbers_it_did_not_see():
    """The shipped map (scripts/fit_measured_calibration.py): FEFF's energy scale stretched, measured
    features broader and weaker, and refitted without an absorber it still brings that absorber's
    computed spectra closer to their measured twins."""
    cal = load_calibration("k-edge")
    assert 1.0 < cal.stretch <= 1.25
    assert 0.5 <= cal.sigma <= 2.5 and 0.5 <= cal.damping < 1.0
    assert cal.rmse_after < 0.6 * cal.rmse_before
    assert len(cal.held_out) >= 3
    for el, h in cal.held_out.items():
        assert h["rmse_own_after"] < 0.85 * h["rmse_own_before"], el
        assert abs(h["stretch"] - cal.stretch) <= 0.05, el


def test_train_config_carries_the_calibration():
    from xanesdb.ml.train import TrainConfig, resolve_calibration
    from xanesdb.platform.errors import XanesdbUserError

    cfg = TrainConfig(representation="aligned", calibration="k-edge", window=(-1.0, 44.5))
    assert TrainConfig.from_dict(cfg.as_dict()) == cfg
    assert "calibration" not in TrainConfig().as_dict()  # run ids of runs without it do not change
    assert resolve_calibration("k-edge").params() == load_calibration("k-edge").params()
    got = resolve_calibration({"shift": 0, "stretch": 1.1, "sigma": 1, "damping": 0.9})
    assert got.stretch == 1.1
    with pytest.raises(XanesdbUserError, match="missing \\['damping'\\]"):
        resolve_calibration({"shift": 0, "stretch": 1.1, "sigma": 1})
    with pytest.raises(XanesdbUserError, match="no calibration"):
        resolve_calibration("no-such-map")


@pytest.mark.integration
@pytest.mark.parametrize(("args", "words"), [
    (["--calibration", "k-edge"], "--calibration needs --representation aligned"),
    (["--representation", "aligned", "--window", "5"], "is not LO,HI in eV"),
    (["--representation", "aligned", "--window", "9,2"], "LO must be below HI"),
])  # fmt: skip
def test_train_calibration_options_refused_in_one_line(refused, args, words):
    line = refused(["train", "--query", '{"element": "Fe"}', *args])
    assert words in line, line


def test_search_index_rows_are_calibrated():
    from xanesdb.search.index import SearchIndex, _calibrated

    X = _spectra(3).astype(np.float32)
    meta = {"element": np.array(["Fe"] * 3), "spectrum_id": np.array(["a", "b", "c"])}
    index = SearchIndex.from_arrays(X, meta, key="t")
    out = _calibrated(index, "k-edge", use_cache=False)
    np.testing.assert_allclose(out.X, load_calibration("k-edge").apply(X, ALIGNED_GRID), atol=1e-6)
    assert out.key != index.key and out.timings["calibration"] == "k-edge"
    np.testing.assert_array_equal(index.X, X)  # the stored index is untouched


@pytest.mark.integration
def test_search_calibration_refused_in_one_line(refused, shared_data):
    prj = shared_data / "experimental_dev" / "athena" / "Fe-K-ALS-10.3.2.prj"
    line = refused(["search", str(prj), "--calibration", "nope"])
    assert "--calibration: no calibration 'nope'" in line, line


@pytest.fixture
def reference_db(db_settings, shared_data):
    """One computed Fe O6 spectrum (material 'ref-hematite') whose calibrated form is the measured
    hematite of experimental_dev: the map to find is known."""
    from xanesdb.platform.stores import get_database
    from xanesdb.xas.align import align_measured
    from xanesdb.xas.readers import read_spectra

    (s,) = read_spectra(shared_data / "experimental_dev" / "athena" / "Fe.prj", groups=["Hematite"])
    y = align_measured(s.energy, s.mu)["y"]
    # a "computed" spectrum: the measured one squeezed in energy (the inverse of a 1.1 stretch)
    g = ALIGNED_GRID
    comp = np.interp(np.where(g > 0, g * 1.1, g), g, y)
    from xanesdb.schemas.spectrum import SpectrumDoc

    docs = []
    for i, (cls, mu) in enumerate([("O6", comp), ("T4", comp * 0.9 + 0.1)]):
        docs.append(SpectrumDoc(
            spectrum_id=f"ref-hematite:{i}:K:scf:std", task_id=f"ref-hematite:{i}:K:scf", site_id=f"ref-hematite:{i}",
            material_id="ref-hematite", element="Fe", source="xanesdb", code="FEFF10", preset="scf", lce_class=cls,
            grid_name="Fe-K-v1", energies=[7100.0 + k for k in range(100)], mu=[0.5] * 100, aligned_grid="halfstep-rel-v1",
            mu_aligned=mu.tolist()).to_mongo())  # fmt: skip
    get_database(db_settings)["spectra"].insert_many(docs)
    return db_settings


@pytest.mark.integration
def test_calibrate_command_fits_the_users_references(reference_db, shared_data, tmp_path, capsys):
    from xanesdb.cli import main

    prj = shared_data / "experimental_dev" / "athena" / "Fe.prj"
    refs = tmp_path / "refs.csv"
    refs.write_text(f"file,group,material_id,lce_class,name\n{prj},Hematite,ref-hematite,O6,hematite\n")
    out = tmp_path / "beamline.json"
    main(["calibrate", str(refs), "--out", str(out), "--fidelity", "none"])
    printed = capsys.readouterr().out
    cal = load_calibration(str(out))
    assert cal.n_pairs == 1 and cal.pairs[0]["computed"] == "ref-hematite:0:K:scf:std"  # the O6 site only
    assert cal.stretch == pytest.approx(1.1, abs=0.03) and cal.rmse_after < 0.3 * cal.rmse_before
    assert "energy scale x" in printed and str(out) in printed
    # the file is what train and search take
    from xanesdb.ml.train import resolve_calibration

    assert resolve_calibration(str(out)).params() == cal.params()


@pytest.mark.integration
@pytest.mark.parametrize(("rows", "words"), [
    ("file,material_id\n{prj},ref-hematite\n", "holds 5 spectra; name one with the group column"),
    ("file,group,material_id\n{prj},Hematite,mp-nothere\n", "mp-nothere has no aligned computed Fe spectrum"),
    ("file,group\n{prj},Hematite\n", "needs a header with at least file and material_id"),
    ("file,group,material_id\n{tmp}/none.xdi,,ref-hematite\n", "none.xdi"),
])  # fmt: skip
def test_calibrate_bad_references_one_line_nothing_written(reference_db, refused, shared_data, tmp_path, rows, words):
    prj = shared_data / "experimental_dev" / "athena" / "Fe.prj"
    refs = tmp_path / "refs.csv"
    refs.write_text(rows.format(prj=prj, tmp=tmp_path))
    out = tmp_path / "cal.json"
    line = refused(["calibrate", str(refs), "--out", str(out), "--fidelity", "none"])
    assert words in line, line
    assert not out.exists()


def test_web_upload_form_offers_the_calibrated_references():
    from xanesdb.web.checks import BadRequestInput, check_form

    assert check_form({"fidelity": "scf+k-edge"})["fidelity"] == "scf+k-edge"
    with pytest.raises(BadRequestInput, match="none, scf or scf\\+k-edge"):
        check_form({"fidelity": "k-edge"})


@pytest.fixture
def two_class_db(db_settings):
    """Twelve aligned computed spectra of two classes (white line at +6 or +9 eV), one material each."""
    from xanesdb.platform.stores import get_database
    from xanesdb.schemas.spectrum import SpectrumDoc
    from xanesdb.xas.align import ALIGNED_GRID_NAME

    g = ALIGNED_GRID
    rng = np.random.default_rng(3)
    docs = []
    for i in range(12):
        cls, wl = ("O6", 6.0) if i % 2 == 0 else ("T4", 9.0)
        y = 0.5 + np.arctan(g / 1.2) / np.pi + 0.6 * np.exp(-0.5 * ((g - wl - rng.uniform(-0.3, 0.3)) / 1.5) ** 2)
        docs.append(SpectrumDoc(
            spectrum_id=f"m{i}:0:K:scf:std", task_id=f"m{i}:0:K:scf", site_id=f"m{i}:0", material_id=f"m{i}",
            element="Fe", source="xanesdb", code="FEFF10", preset="scf", lce_class=cls, grid_name="Fe-K-v1",
            energies=[7100.0 + k for k in range(100)], mu=[0.5] * 100, aligned_grid=ALIGNED_GRID_NAME,
            mu_aligned=y.tolist()).to_mongo())  # fmt: skip
    get_database(db_settings)["spectra"].insert_many(docs)
    return db_settings


@pytest.mark.integration
def test_training_with_the_calibration_moves_the_energy_scale_and_draws_the_spread(two_class_db):
    from xanesdb.ml.train import TrainConfig, train_from_query

    cal = load_calibration("k-edge")
    cfg = TrainConfig(representation="aligned", augment=("measured",), calibration="k-edge", n_models=2, epochs=2,
                      curves=False, n_bootstrap=0, class_weight="balanced")  # fmt: skip
    res = train_from_query({"element": "Fe"}, cfg, two_class_db, register=False)
    m, hp = res.doc.metrics, res.doc.hyperparameters
    assert m["measured_calibration"]["stretch"] == cal.stretch and f"{cal.n_pairs} pairs" in m["measured_calibration"]["provenance"]
    # the trust layer: per-class log-odds beside the temperature, outlier thresholds set on copies
    # carrying the calibration's measured-minus-computed residuals
    assert len(m["calibration"]["bias"]) == len(res.doc.classes)
    assert m["outlier_test"]["null_residuals"] == len([p for p in cal.per_pair if p.get("residual")]) > 0
    ranges = cal.measurement_ranges()
    assert hp["calibration"] == "k-edge"
    assert tuple(hp["measurement"]["stretch"]) == ranges["stretch"] and tuple(hp["measurement"]["damping"]) == ranges["damping"]
    # the training spectra carry the energy scale: the O6 white line (+6 eV) sits near 6 x 1.15 + shift
    o6 = np.asarray(m["class_means"][str(res.doc.classes.index("O6"))])
    assert ALIGNED_GRID[o6.argmax()] == pytest.approx(6.0 * cal.stretch + cal.shift, abs=0.6)
    # without the measured augmentation the whole map is applied (broadened and damped white line)
    whole = train_from_query({"element": "Fe"}, TrainConfig(representation="aligned", calibration="k-edge", n_models=2,
                                                            epochs=2, curves=False, n_bootstrap=0),
                             two_class_db, register=False)  # fmt: skip
    o6_whole = np.asarray(whole.doc.metrics["class_means"][str(whole.doc.classes.index("O6"))])
    assert o6_whole.max() < o6.max() - 0.05


def test_shipped_models_put_the_class_priors_back_and_set_outliers_on_measured_residuals():
    """Each shipped card (scripts/train_shipped_models.py) carries the per-class log-odds of
    bias-corrected temperature scaling, and they follow the classes' frequencies among its
    training spectra; its outlier thresholds were set on copies carrying the calibration's
    measured-minus-computed residuals."""
    import json

    from xanesdb.ml.portable import SHIPPED_DIR

    cards = sorted(SHIPPED_DIR.glob("*-K-aligned/card.json"))
    assert len(cards) == 9
    for path in cards:
        card = json.loads(path.read_text())
        bias = dict(zip(card["classes"], card["metrics"]["calibration"]["bias"]))
        counts = card["metrics"]["class_counts"]
        assert len(bias) == len(card["classes"]) and bias[card["classes"][0]] == 0.0, path
        # each class's log-odds stays near the prior shift log(n_c / n_0) that puts the classes'
        # frequencies back on balanced networks; what the networks misread on the held-out copies
        # moves it by up to 1.15 in the shipped cards (the two-class Mn model's T4: -0.48 against a
        # prior of -1.63; Cr's +0.21 against -0.84: its networks read held-out T4 copies less surely)
        first = card["classes"][0]
        for c in card["classes"][1:]:
            prior = np.log(counts[c] / counts[first])
            assert abs(bias[c] - prior) < 1.5, (path, c, bias[c], prior)
        assert card["metrics"]["outlier_test"]["null_residuals"] >= 10, path
        # every training spectrum is a reference of the vote, kept beside the card
        rv = card["metrics"]["reference_vote"]
        with np.load(path.parent / rv["file"]) as z:
            assert z["X"].shape == (card["n_spectra"], len(card["hyperparameters"]["feature_indices"])), path
            assert len(z["labels"]) == len(z["names"]) == card["n_spectra"], path
        assert rv["k"] == 7 and rv["accuracy_with_networks"] > 0.6, path
        # the vote is averaged in only where it did not cost the held-out copies more than 2 points
        from xanesdb.ml.trust import VOTE_TOLERANCE, VOTE_WEIGHT

        kept = rv["accuracy_with_networks"] >= rv["accuracy_networks"] - VOTE_TOLERANCE
        assert rv["weight"] == (VOTE_WEIGHT if kept else 0.0), (path, rv["weight"])
