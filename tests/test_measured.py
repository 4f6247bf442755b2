"""Measured spectra: one normalisation and edge, alignment, the measurement model, calibration,
the outlier test, portable models and the predict path (xanesdb.xas, xanesdb.ml.*)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xanesdb.xas.edges import identify_edge
from xanesdb.xas.normalize import find_e0, half_step_energy, normalize_computed, pre_edge
from xanesdb.xas.readers import read_spectra

TEST_DATA = Path(__file__).resolve().parent / "test_data"
XMU_DAT = TEST_DATA / "feff" / "CuO_Cu_K_fast" / "outputs" / "xmu.dat"
LARCH = json.loads((TEST_DATA / "measured" / "larch_reference.json").read_text())


@pytest.fixture
def dev(shared_data) -> Path:
    return shared_data / "experimental_dev"


def _labelled(dev: Path):
    for r in json.loads((dev / "labels.json").read_text()):
        (s,) = read_spectra(dev / r["athena_file"], groups=[r["athena_group"]])
        yield r, s


def _edge(e, e0=7112.0, width=1.5, step=1.0, slope=1e-4, offset=0.1):
    return offset + slope * (e - e[0]) + step / (1 + np.exp(-(e - e0) / width))


# ----------------------------------------------------------------------------- normalisation
def test_normalisation_matches_athena_references_of_the_dev_set(dev):
    """e0 and edge step of the 48 labelled groups against the Athena-style values in labels.json."""
    de, ds = [], []
    for r, s in _labelled(dev):
        n = pre_edge(s.energy, s.mu)
        de.append(abs(n.e0 - r["reference_e0_ev"]))
        ds.append(abs(n.edge_step / r["reference_edge_step"] - 1))
    de, ds = np.array(de), np.array(ds)
    assert len(de) == 48
    assert np.median(de) < 0.5 and np.mean(de < 2.0) >= 0.9, np.round(de, 2)
    assert np.median(ds) < 0.02 and np.mean(ds < 0.05) >= 0.85, np.round(ds, 3)


def test_e0_agrees_with_xraylarch_on_every_athena_group(dev):
    """larch's pre_edge e0 (fixture) for the 244 mu(E) groups it normalised: 80 % within 1 eV."""
    projects: dict[str, dict] = {}
    d = []
    for g in LARCH["athena"]:
        if g.get("e0") is None:
            continue
        if g["file"] not in projects:
            projects[g["file"]] = {s.group: s for s in read_spectra(dev / g["file"])}
        s = projects[g["file"]].get(g["label"])
        if s is not None and s.energy[-1] - g["e0"] > 20:
            d.append(abs(find_e0(s.energy, s.mu) - g["e0"]))
    d = np.array(d)
    assert len(d) > 200
    assert np.mean(d < 1.0) >= 0.8 and np.mean(d < 3.0) >= 0.9


def test_half_step_skips_a_narrow_pre_edge_peak_above_half_the_step():
    """A Cr(VI)-like pre-edge peak (0.9 of the step, 2 eV wide, 12 eV below the edge) is not the edge."""
    e = np.arange(5900.0, 6300.0, 0.25)
    mu = _edge(e, e0=6005.0) + 0.9 * np.exp(-0.5 * ((e - 5993.0) / 0.8) ** 2)
    n = pre_edge(e, mu)
    assert abs(half_step_energy(e, n.norm, e0=n.e0) - 6005.0) < 0.5
    # the largest-derivative rule of the old code lands on the pre-edge peak
    assert abs(e[np.argmax(np.gradient(mu, e))] - 5993.0) < 2


def test_half_step_is_stable_under_noise():
    rng = np.random.default_rng(0)
    e = np.arange(7000.0, 7400.0, 0.5)
    mu = _edge(e) + rng.normal(0, 0.01, len(e))
    n = pre_edge(e, mu)
    assert abs(half_step_energy(e, n.norm, e0=n.e0) - 7112.0) < 0.5
    assert abs(n.edge_step - 1.0) < 0.05


def test_computed_spectrum_normalised_on_feff_background():
    d = np.loadtxt(XMU_DAT)
    n = normalize_computed(d[:, 0], d[:, 3], d[:, 4])
    assert abs(n.edge_step - 1.0) < 0.1  # FEFF's mu0 is ~1 above the edge
    assert n.pre_range[0] < 0 and np.allclose(n.pre_line, 0.0)


def test_normalised_short_spectra_are_taken_as_given_raw_and_long_ones_refitted(dev):
    """A XANES export (normalised, -30..+80 eV) is not normalised again: a refit would put the
    post-edge line through the first oscillation. Raw spectra, and normalised ones long enough for
    Athena's post-edge range, go through pre_edge as before."""
    from xanesdb.xas.normalize import normalize_measured

    (s,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])  # stored normalised in the project
    full = pre_edge(s.energy, s.mu)
    assert not normalize_measured(s.energy, full.norm).as_given  # long: refitted, about the same
    # the same spectrum as a transmission scan records it: on a sloped background, its own step
    absorbance = 0.4 + 1e-4 * (s.energy - s.energy[0]) + 0.8 * full.norm
    raw = normalize_measured(s.energy, absorbance)
    assert not raw.as_given and raw.edge_step == pytest.approx(0.8, rel=0.05)
    e_half = half_step_energy(s.energy, full.norm, e0=full.e0)
    keep = (s.energy > e_half - 30) & (s.energy < e_half + 80)
    short = normalize_measured(s.energy[keep], full.norm[keep])
    assert short.as_given and short.edge_step == 1.0 and np.array_equal(short.norm, full.norm[keep])
    refit = pre_edge(s.energy[keep], full.norm[keep], level_short=False)
    assert abs(refit.edge_step - 1.0) > 0.05  # what an Athena refit of the cut spectrum does
    # a raw scan cut the same way still gets its own fit (background and step are not 0 and 1)
    assert not normalize_measured(s.energy[keep], absorbance[keep]).as_given


def test_normalised_exports_cut_10_eV_below_the_edge_are_taken_as_given(dev):
    """Every labelled record normalised on its whole scan and cut to -10..+50 eV around its half
    step: what is left below the edge of a Ti or V spectrum is the foot of its pre-edge peak (VO2
    starts at 0.31 of the step), and chromite has nothing left below e0 - 10 eV. They are taken as
    they are (refitted from so short a pre-edge, 7 of the 48 answers changed); so are all but the
    three Mn(IV) oxides, whose e0 lies 5 eV above the half step and which start 15 eV below it on a
    pre-edge of 0.08 (refitted, their answers do not change). The same cuts of a raw transmission
    scan (a sloped background of 0.4, a step of 0.8) are still fitted."""
    from xanesdb.xas.normalize import normalize_measured

    given, n = set(), 0
    for r, s in _labelled(dev):
        full = pre_edge(s.energy, s.mu)
        e_half = half_step_energy(s.energy, full.norm, e0=full.e0)
        keep = (s.energy > e_half - 10) & (s.energy < e_half + 50)
        got = normalize_measured(s.energy[keep], full.norm[keep])
        if got.as_given:
            assert np.array_equal(got.norm, full.norm[keep])
            given.add(r["id"])
        absorbance = 0.4 + 1e-4 * (s.energy - s.energy[0]) + 0.8 * full.norm
        assert not normalize_measured(s.energy[keep], absorbance[keep]).as_given, s.name
        n += 1
    assert n == 48 and len(given) >= 45
    assert {"lx_v_vo2", "lx_v_v2o3", "lx_v_v2o5", "lx_als_chromite", "lx_eutio3_300K", "lx_pbtio3_300K"} <= given


def _with_edge_of_another_element(s, at_ev: float, jump: float, width: float = 1.5, white_line: float = 0.6):
    """``s`` as if the sample held an element whose edge lies ``at_ev`` from its own (``jump``
    times its step): a Ti K scan of BaTiO3 runs into Ba L3 281 eV up, with twice the Ti step."""
    n = pre_edge(s.energy, s.mu)
    x = s.energy - (n.e0 + at_ev)
    extra = 0.5 + np.arctan(x / width) / np.pi + white_line * np.exp(-0.5 * ((x - 2 * width) / (1.5 * width)) ** 2)
    return s.mu + jump * n.edge_step * extra


@pytest.mark.parametrize("record, at_ev, jump", [
    ("lx_eutio3_300K", 281.0, 1.9),  # Ba L3 over Ti K (BaTiO3)
    ("lx_fe_hematite", 131.0, 1.9),  # Gd L3 over Fe K (GdFeO3)
    ("lx_fe_hematite", -98.0, 1.0),  # an edge below, in the pre-edge range (La L2 under Cr K in LaCrO3)
])  # fmt: skip
def test_another_elements_edge_in_the_scan_is_kept_out_of_the_fits(dev, record, at_ev, jump):
    labels = {r["id"]: r for r in json.loads((dev / "labels.json").read_text())}
    r = labels[record]
    (s,) = read_spectra(dev / r["athena_file"], groups=[r["athena_group"]])
    clean = pre_edge(s.energy, s.mu)
    mu = _with_edge_of_another_element(s, at_ev, jump)
    n = pre_edge(s.energy, mu)
    assert n.e0 == pytest.approx(clean.e0, abs=0.5)
    assert n.edge_step == pytest.approx(clean.edge_step, rel=0.08)
    if at_ev > 0:
        assert n.norm_range[1] <= at_ev - 10
    else:
        assert n.pre_range[0] >= at_ev + 10
    # the ranges Athena's defaults would give (no edge found) lose the step entirely
    naive = pre_edge(s.energy, mu, pre1=-200.0, norm2=1e9) if at_ev < 0 else None
    if naive is not None:
        assert abs(naive.edge_step / clean.edge_step - 1) > 0.1


def test_a_steeper_l_edge_does_not_take_e0_from_the_k_edge(dev):
    """Another element's L edge in the scan can rise more steeply than the K edge the scan is about
    (here a Gd L3 edge three times Fe's step, 131 eV above it, as in GdFeO3): the K edge stays e0."""
    (s,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])
    mu = _with_edge_of_another_element(s, 131.0, 3.0, width=0.7, white_line=1.0)
    steepest = find_e0(s.energy, mu, other_edges_considered=False)
    assert identify_edge(steepest)[:2] == ("Gd", "L3")
    e0 = find_e0(s.energy, mu)
    assert identify_edge(e0)[:2] == ("Fe", "K") and e0 == pytest.approx(find_e0(s.energy, s.mu), abs=0.5)


def test_pre_edge_refuses_spectra_without_edge():
    e = np.arange(7000.0, 7400.0, 1.0)
    with pytest.raises(ValueError, match="edge step|post-edge"):
        pre_edge(e, 1.0 - 1e-3 * (e - 7000.0))


@pytest.mark.parametrize("e0, expected", [(7126.5, ("Fe", "K")), (6555.0, ("Mn", "K")), (4970.0, ("Ti", "K")),
                                          (5480.0, ("V", "K")), (8992.0, ("Cu", "K")), (5730.0, ("Ce", "L3"))])  # fmt: skip
def test_identify_edge(e0, expected):
    assert identify_edge(e0)[:2] == expected


def test_identify_edge_none_far_from_edges():
    assert identify_edge(15000.0) is None or identify_edge(15000.0)[1] != "K"


# ----------------------------------------------------------------------------- measurement model
def test_broaden_keeps_area_and_widens():
    from xanesdb.ml.augment import broaden

    e = np.arange(-5, 44.51, 0.5)
    X = np.zeros((2, len(e)), dtype=np.float32)
    X[:, 40] = 1.0
    Y = broaden(X, e, [0.5, 2.0], [0.0, 0.5], [0.0, 0.05])
    assert np.allclose(Y.sum(axis=1), 1.0, atol=1e-3)
    assert Y[1].max() < Y[0].max() < 1.0


def test_measurement_augmentation_copies_and_bounds():
    from xanesdb.ml.augment import MeasurementModel, augment

    e = np.arange(-5, 44.51, 0.5)
    X = np.tile(1 / (1 + np.exp(-e)), (4, 1)).astype(np.float32)
    mm = MeasurementModel(copies=3)
    Xa, ya = augment(X, np.arange(4), e, ("measured",), rng=np.random.default_rng(1), measurement=mm)
    assert Xa.shape == (16, len(e)) and list(ya[:4]) == [0, 1, 2, 3]
    assert np.all(np.abs(Xa[4:, -1] - 1.0) < 0.2)  # step error + slope + noise stay small
    assert not np.allclose(Xa[4:8], X)


# ----------------------------------------------------------------------------- calibration, outliers
def test_temperature_scaling_fixes_overconfidence():
    from xanesdb.ml.trust import apply_temperature, expected_calibration_error, fit_temperature

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    right = rng.random(2000) < 0.7  # 70 % right but claiming 0.98
    pred = np.where(right, y, (y + 1) % 3)
    P = np.full((2000, 3), 0.01)
    P[np.arange(2000), pred] = 0.98
    T = fit_temperature(P, y)
    assert T > 1.5
    assert expected_calibration_error(apply_temperature(P, T), y) < 0.05 < expected_calibration_error(P, y)


def test_bias_corrected_temperature_puts_the_class_prior_back():
    """Networks trained with balanced weights say 50/50 where the data are 80/20: the biases learn it."""
    from xanesdb.ml.trust import apply_temperature, fit_temperature_bias

    rng = np.random.default_rng(1)
    n = 4000
    y = (rng.random(n) < 0.2).astype(int)  # class 1 (say S5) is rare
    # a balanced classifier: likelihood ratio only, as if both classes were equally common
    lr = np.where(y == 1, rng.normal(0.5, 1.0, n), rng.normal(-0.5, 1.0, n))
    P = np.stack([1 / (1 + np.exp(lr)), 1 / (1 + np.exp(-lr))], axis=1)
    T, bias = fit_temperature_bias(P, y)
    assert bias[0] == 0.0 and abs(bias[1] - np.log(0.2 / 0.8)) < 0.25  # the log prior odds
    Q = apply_temperature(P, T, bias)

    def nll(R):
        return -np.mean(np.log(R[np.arange(n), y]))

    assert nll(Q) < nll(P) - 0.05
    assert np.mean(Q.argmax(axis=1) == y) > np.mean(P.argmax(axis=1) == y) + 0.05
    # an undecided spectrum is read with the prior's odds
    assert apply_temperature(np.array([[0.5, 0.5]]), T, bias)[0, 0] > 0.7


def test_outlier_test_flags_a_spectrum_unlike_the_training_data():
    from xanesdb.ml.trust import OutlierTest

    rng = np.random.default_rng(0)
    e = np.arange(-5, 44.51, 0.5)
    base = 1 / (1 + np.exp(-e)) + 0.3 * np.exp(-0.5 * ((e - 8) / 3) ** 2)
    X = base + rng.normal(0, 0.02, (400, len(e))) + rng.normal(0, 0.1, (400, 1)) * np.exp(-0.5 * ((e - 8) / 3) ** 2)
    test = OutlierTest.fit(X[:300], X[300:])
    assert np.mean(test.score(X[300:]) <= 1.0) >= 0.98
    odd = 1 / (1 + np.exp(-(e - 10))) + 0.8 * np.exp(-0.5 * ((e + 3) / 1) ** 2)  # pre-edge peak, late edge
    assert test.score(odd[None])[0] > 1.0
    assert "unlike the training spectra" in test.explain(odd[None])


def test_reference_vote_counts_the_nearest_references_and_the_ensemble_averages():
    from xanesdb.ml.trust import ReferenceVote, combine_with_references

    e = np.arange(-5, 44.51, 0.5)
    step = 1 / (1 + np.exp(-e))
    white = step + 0.5 * np.exp(-0.5 * ((e - 5) / 2) ** 2)  # class 0: strong white line
    pre = step + 0.3 * np.exp(-0.5 * ((e + 3) / 0.7) ** 2)  # class 1: pre-edge peak
    rng = np.random.default_rng(0)
    X = np.concatenate([white + rng.normal(0, 0.01, (10, len(e))), pre + rng.normal(0, 0.01, (4, len(e)))])
    y = np.array([0] * 10 + [1] * 4)
    vote = ReferenceVote.fit(X, y, n_classes=2, k=5, names=[f"mp-{i}" for i in range(14)])
    S = vote.shares(np.stack([white, pre]))
    assert S.tolist() == [[1.0, 0.0], [0.2, 0.8]]  # 4 of class 1 exist, the 5th neighbour is class 0
    idx, d = vote.nearest(pre[None])
    assert set(idx[0, :4]) == {10, 11, 12, 13} and np.all(np.diff(d[0]) >= 0)
    again = ReferenceVote(**vote.as_dict())  # what a card stores reads back the same
    assert np.array_equal(again.shares(X), vote.shares(X))
    P = np.array([[0.3, 0.7]])
    assert np.allclose(combine_with_references(P, S[:1]), [[0.65, 0.35]])
    assert np.allclose(combine_with_references(P, S[:1], weight=0.0), P)  # a vote kept out of the answer
    # a material held several times (sites, presets) votes once, with its nearest spectrum
    names = ["a"] * 10 + ["b", "c", "d", "e"]
    once = ReferenceVote.fit(X, y, n_classes=2, k=5, names=names)
    assert once.shares(white[None]).tolist() == [[0.2, 0.8]]
    idx, _ = once.nearest(white[None])
    assert sorted(idx[0, 1:]) == [10, 11, 12, 13] and idx[0, 0] < 10


# ----------------------------------------------------------------------------- aligned representation
def test_align_computed_puts_the_half_step_at_zero():
    from xanesdb.ml.aligned import ALIGNED_GRID, align_computed

    d = np.loadtxt(XMU_DAT)
    a = align_computed(d[:, 0], d[:, 3], d[:, 4])
    assert a["y"].shape == (100,)
    assert abs(np.interp(0.0, ALIGNED_GRID, a["y"]) - 0.5) < 0.05


def test_align_takes_computed_spectra_that_start_just_below_the_model_window():
    """FEFF's fast preset starts some sites 1.9-2.0 eV below the half step: they reach -1 eV, where the
    shipped models' input begins, so they are aligned (held below their start); a spectrum that starts
    above -1 eV is not."""
    from xanesdb.ml.aligned import ALIGNED_GRID, align_computed

    e = np.arange(7110.5, 7170.0, 0.25)  # half step at about 7112: starts 1.5 eV below it
    a = align_computed(e, _edge(e))
    assert 3.0 < a["extrapolated_ev"] < 4.0
    assert np.all(a["y"][ALIGNED_GRID < -2.0] == a["y"][0])  # held at its first value
    short = e < 7142.0  # ends 30 eV above the half step: off the grid
    with pytest.raises(ValueError, match=r"models need -1\.\.\+41\.5 eV"):
        align_computed(e[short], _edge(e[short]))
    b = align_computed(e[short], _edge(e[short]), off_grid_ok=True)  # what `spectra build` keeps of it
    assert b["y"] is None and abs(b["e_half"] - a["e_half"]) < 0.5


def test_align_measured_refuses_short_spectra():
    """A scan must reach the end of what the model reads, to within 3 eV: the whole grid (+44.5 eV)
    by default, the end of a shorter input window (``upto``) for a model that reads less, with the
    grid above the scan's end held at its last value."""
    from xanesdb.ml.aligned import ALIGNED_GRID, align_measured
    from xanesdb.xas.align import reach_above_half_step

    e = np.arange(7080.0, 7145.0, 0.5)  # ends about 33 eV above the half step: the grid needs +41.5
    with pytest.raises(ValueError, match=r"models need -1\.\.\+41\.5 eV"):
        align_measured(e, _edge(e))
    reach = reach_above_half_step(e, _edge(e))
    assert 30.0 < reach < 36.0
    a = align_measured(e, _edge(e), upto=30.0)
    assert np.all(a["y"][ALIGNED_GRID > reach + 0.5] == a["y"][-1])  # held past the scan's end
    with pytest.raises(ValueError, match=r"models need -1\.\.\+27\.0 eV"):
        align_measured(e[e < 7130.0], _edge(e[e < 7130.0]), upto=30.0)


# ----------------------------------------------------------------------------- portable models, predict
def _tiny_doc_and_model(classes=("O6", "S5", "T4")):
    from xanesdb.ml.aligned import ALIGNED_GRID, ALIGNED_GRID_NAME
    from xanesdb.ml.models import build_model
    from xanesdb.ml.trust import OutlierTest
    from xanesdb.schemas import TrainingRunDoc

    rng = np.random.default_rng(0)
    X = np.clip(1 / (1 + np.exp(-ALIGNED_GRID)) + rng.normal(0, 0.05, (60, 100)), 0, None)
    model = build_model("mlp", 100, len(classes), n_models=2, hidden=(8,), seed=0)
    doc = TrainingRunDoc(
        run_id="mlp-test-aligned", kind="mlp", query={"element": "Fe"}, classes=list(classes), fingerprint="f" * 16,
        n_spectra=60, grid_name=ALIGNED_GRID_NAME, energies=ALIGNED_GRID.tolist(),
        hyperparameters={"representation": "aligned", "feature_indices": list(range(100))},
        metrics={"calibration": {"temperature": 1.3}, "outlier_test": OutlierTest.fit(X[:40], X[40:]).as_dict(),
                 "class_means": {str(i): X[i::3].mean(axis=0).tolist() for i in range(3)}},
    )  # fmt: skip
    return doc, model


def test_portable_model_round_trip(tmp_path):
    from xanesdb.ml.portable import export_portable, load_portable

    doc, model = _tiny_doc_and_model()
    export_portable(doc, model, tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.keras", "card.json", "card.md"}
    doc2, model2 = load_portable(tmp_path / "m")
    x = np.random.default_rng(1).random((3, 2, 100)).astype(np.float32)
    assert doc2.run_id == doc.run_id and doc2.metrics["calibration"]["temperature"] == 1.3
    assert np.allclose(model.predict(x, verbose=0), model2.predict(x, verbose=0), atol=1e-6)


def test_portable_model_keeps_its_references_beside_the_card(tmp_path):
    import json

    from xanesdb.ml.portable import export_portable, load_portable
    from xanesdb.ml.trust import ReferenceVote

    doc, model = _tiny_doc_and_model()
    R = np.random.default_rng(2).random((12, 100))
    doc.metrics["reference_vote"] = {**ReferenceVote.fit(R, [0, 1, 2] * 4, 3, names=[f"mp-{i}" for i in range(12)]).as_dict(),
                                     "accuracy": 0.4, "accuracy_with_networks": 0.8, "ece_with_networks": 0.05}  # fmt: skip
    export_portable(doc, model, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert "X" not in card["metrics"]["reference_vote"] and card["metrics"]["reference_vote"]["file"] == "references.npz"
    assert "reference vote: the 12 training spectra" in (tmp_path / "m" / "card.md").read_text()
    doc2, _ = load_portable(tmp_path / "m")
    v1, v2 = ReferenceVote(**{k: doc.metrics["reference_vote"][k] for k in ("X", "labels", "n_classes", "k", "names")}), \
        ReferenceVote(**{k: doc2.metrics["reference_vote"][k] for k in ("X", "labels", "n_classes", "k", "names")})
    assert v2.names[3] == "mp-3" and np.abs(np.asarray(v1.X) - np.asarray(v2.X)).max() < 1e-3
    assert np.array_equal(v1.shares(R), v2.shares(R))


def test_predict_rows_for_good_and_bad_spectra(dev):
    from xanesdb.ml.predict import predict_spectra
    from xanesdb.xas.readers import MeasuredSpectrum

    doc, model = _tiny_doc_and_model()
    (hematite,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])
    e = np.arange(7000.0, 7060.0, 0.5)
    flat = MeasuredSpectrum(name="flat", path="flat.csv", group=None, energy=e, mu=np.ones_like(e), absorber=None,
                            edge=None, kind="csv", mu_source="column 2")  # fmt: skip
    good, bad = predict_spectra(doc, model, [hematite, flat])
    assert bad["error"].startswith("flat.csv:") and "\n" not in bad["error"]
    assert abs(sum(good["probabilities"].values()) - 1) < 1e-6
    assert good["predicted"] in (*doc.classes, "unsure")
    assert good["predicted"] != "unsure" or good["reason"]
    assert abs(good["shift_ev"] + good["e_half"]) < 1e-9 and 7118 < good["e_half"] < 7130


def test_predict_averages_the_networks_with_the_reference_vote(dev):
    from xanesdb.ml.inputs import prepare
    from xanesdb.ml.predict import predict_spectra
    from xanesdb.ml.trust import ReferenceVote

    doc, model = _tiny_doc_and_model()
    (hematite,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])
    x = prepare(doc, hematite)["x"]
    # references: hematite itself as S5 (7 copies), far-away flat spectra as O6 and T4
    R = np.concatenate([np.repeat(x[None], 7, axis=0), np.full((4, 100), 3.0), np.full((4, 100), -3.0)])
    doc.metrics["reference_vote"] = {**ReferenceVote.fit(R, [1] * 7 + [0] * 4 + [2] * 4, 3,
                                                         names=[f"m{i}" for i in range(15)]).as_dict(),
                                     "accuracy": 0.5}  # fmt: skip
    (row,) = predict_spectra(doc, model, [hematite])
    assert row["reference_vote"] == {"S5": 7}
    assert [r["class"] for r in row["nearest_references"]] == ["S5"] * 7
    assert row["nearest_references"][0]["rmse"] < 0.01 and row["nearest_references"][0]["material_id"] == "m0"
    # shifted readings still sit nearest the S5 copies: the vote adds 0.5 to S5
    net = row["probabilities_networks"]
    assert abs(row["probabilities"]["S5"] - (0.5 * net["S5"] + 0.5)) < 1e-6
    assert abs(row["probabilities"]["O6"] - 0.5 * net["O6"]) < 1e-6
    # a run whose vote lowered the held-out accuracy reports it but answers with the networks alone
    doc.metrics["reference_vote"]["weight"] = 0.0
    (row,) = predict_spectra(doc, model, [hematite])
    assert row["reference_vote"] == {"S5": 7} and row["probabilities"] == pytest.approx(row["probabilities_networks"])


def test_plot_measured_prediction_writes_png(dev, tmp_path):
    from xanesdb.ml.plots import plot_measured_prediction
    from xanesdb.ml.predict import predict_spectra

    doc, model = _tiny_doc_and_model()
    (s,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])
    (row,) = predict_spectra(doc, model, [s])
    out = plot_measured_prediction(doc, s, row, tmp_path / "h.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    # a long reason is wrapped into the title so that it stays on the page
    from xanesdb.ml.plots import figure_measured_prediction

    reason = "unlike the training spectra: " + "shape outside their components " * 8
    fig = figure_measured_prediction(doc, s, {**row, "predicted": "unsure", "reason": reason})
    lines = fig.axes[0].get_title().splitlines()
    assert len(lines) >= 3 and max(map(len, lines[1:])) <= 110 and " ".join(lines[1:]) == reason.strip()


# ----------------------------------------------------------------------------- pre-edge peak
def test_preedge_peak_strong_isolated_rules_out_o6_and_a_shoulder_does_not():
    from xanesdb.xas.preedge import STRONG_PREEDGE_HEIGHT, find_preedge_peak

    e = np.arange(6500.0, 6620.0, 0.25)
    edge = _edge(e, e0=6555.0, offset=0.0, slope=0.0)
    peak = 0.7 * np.exp(-0.5 * ((e - 6543.0) / 1.0) ** 2)
    p = find_preedge_peak(e, edge + peak, e_half=6555.0)
    assert p.rules_out_o6 and abs(p.energy_rel + 12.0) < 0.5 and p.height >= STRONG_PREEDGE_HEIGHT
    # the same intensity as a shoulder on the rising edge (no dip before the edge): no peak
    shoulder = 0.3 * np.exp(-0.5 * ((e - 6551.0) / 2.0) ** 2)
    assert find_preedge_peak(e, edge + shoulder, e_half=6555.0).height == 0.0
    # a weak pre-edge (Fe-like, 0.1) is found but rules nothing out; noise alone makes no peak
    weak = find_preedge_peak(e, edge + 0.1 * np.exp(-0.5 * ((e - 6543.0) / 1.0) ** 2), e_half=6555.0)
    assert 0.05 < weak.height < STRONG_PREEDGE_HEIGHT and not weak.rules_out_o6
    noisy = edge + np.random.default_rng(0).normal(0, 0.003, len(e))
    assert find_preedge_peak(e, noisy, e_half=6555.0).height < 0.05


def test_kmno4_pre_edge_rules_out_o6_in_prediction(dev):
    from xanesdb.ml.predict import predict_spectra

    doc, model = _tiny_doc_and_model()
    (kmno4,) = read_spectra(dev / "athena" / "Mn_all.prj", groups=["KMnO4"])
    (hematite,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])
    k, h = predict_spectra(doc, model, [kmno4, hematite])
    assert k["preedge_height"] >= 0.5 and -14 < k["preedge_ev"] < -10
    assert k["probabilities"]["O6"] == 0.0 and "O6 ruled out" in k["note"]
    assert h["note"] is None and h["preedge_height"] < 0.5


def test_a_scan_that_starts_on_its_pre_edge_peak_is_unsure(dev):
    """KMnO4 started 12 eV below its half step begins on its pre-edge peak: its pre-edge level is
    taken there, the normalised spectrum falls 0.8 of the step below its start, and the shipped Mn
    model read it O6 0.99. Now ``unsure`` with the reason; the same scan from 22 eV below, and
    hematite, are answered as before."""
    import dataclasses

    from xanesdb.ml.predict import predict_spectra

    doc, model = _tiny_doc_and_model()
    (kmno4,) = read_spectra(dev / "athena" / "Mn_all.prj", groups=["KMnO4"])
    (hematite,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])
    full = pre_edge(kmno4.energy, kmno4.mu)
    e_half = half_step_energy(kmno4.energy, full.norm, e0=full.e0)

    def started(before: float):
        keep = kmno4.energy >= e_half - before
        return dataclasses.replace(kmno4, energy=kmno4.energy[keep], mu=kmno4.mu[keep])

    on_peak, before_peak, h = predict_spectra(doc, model, [started(12.0), started(22.0), hematite])
    assert on_peak["predicted"] == "unsure" and on_peak["start_fall"] > 0.5
    assert on_peak["reason"].startswith("the scan starts on a pre-edge peak")
    assert "start_fall" not in before_peak and not (before_peak["reason"] or "").startswith("the scan starts")
    assert before_peak["preedge_height"] >= 0.5 and "start_fall" not in h


def test_a_scan_that_starts_on_its_edge_is_refused_as_such(dev):
    """Raw Mn oxide scans started 10 eV below their half step rise from their first points; the
    post-edge fit then lands on a falling background and the error said 'transmitted intensity'.
    It now says the scan starts on the edge and what to give; the whole scans normalise as before."""
    (s,) = read_spectra(dev / "athena" / "Mn.prj", groups=["Psilomelane"])
    full = pre_edge(s.energy, s.mu)
    e_half = half_step_energy(s.energy, full.norm, e0=full.e0)
    keep = s.energy >= e_half - 10.0
    with pytest.raises(ValueError, match=r"starts on the absorption edge.*give it normalised"):
        pre_edge(s.energy[keep], s.mu[keep])
    assert pre_edge(s.energy[s.energy >= e_half - 40.0], s.mu[s.energy >= e_half - 40.0]).edge_step == pytest.approx(
        full.edge_step, rel=0.05)


def test_a_falling_edge_is_refused_with_what_to_give(dev):
    """Transmitted intensity (It/I0) or -mu read as mu: the one-line error says so and what to give."""
    (s,) = read_spectra(dev / "athena" / "Fe.prj", groups=["Hematite"])
    for wrong in (np.exp(-s.mu), -s.mu):
        with pytest.raises(ValueError, match=r"falls at the edge.*ln\(I0/It\)"):
            pre_edge(s.energy, wrong)


@pytest.mark.parametrize("start_ev, within", [(-15.0, 0.15), (-30.0, 0.04), (-50.0, 0.04), (-70.0, 0.04)])
def test_short_and_sparse_pre_edges_keep_the_edge_step(dev, start_ev, within):
    """A scan starting 15-70 eV below the half step, on a steep Ti background sampled every 20 eV
    far below the edge (EuTiO3 at 500 K): the pre-edge range ends 15 eV below e0, clear of the
    pre-edge peaks; under 8 eV of it gets a level instead of a line; where the default range holds
    under 2 points it runs up to 15 eV below e0. The edge step then stays within 4 % of the whole
    scan's (13 % from -15 eV, where only a level is left); the earlier rules missed it by 34 % from
    -15 eV (a line through the pre-edge's foot) and 16-20 % from -50 and -70 eV (a level from the
    first point)."""
    (s,) = read_spectra(dev / "athena" / "eutio3.prj", groups=["tieu_500"])
    full = pre_edge(s.energy, s.mu)
    e_half = half_step_energy(s.energy, full.norm, e0=full.e0)
    keep = s.energy >= e_half + start_ev
    short = pre_edge(s.energy[keep], s.mu[keep])
    assert short.edge_step == pytest.approx(full.edge_step, rel=within)


@pytest.mark.parametrize("start_ev", [-26.0, -24.0, -22.0, -21.0, -20.0])
def test_a_short_pre_edge_stops_before_a_permanganate_pre_edge_peak(dev, start_ev):
    """KMnO4 started 20-26 eV below its half step: its pre-edge peak (0.65 of the step, 13 eV
    below the half step and 16 eV below e0 on the main edge) lies inside the first half of what the
    scan has below the edge, where a short pre-edge line is fitted. Ending that range 2 eV before
    the peak's rise keeps the edge step within 16 % of the whole scan's (the level cannot follow the
    background's slope) and the peak where it was; a line through the peak's flank gave steps of
    0.06-0.8 of it, and the spectrum read as an outlier or not at all."""
    from xanesdb.xas.align import align_measured

    (s,) = read_spectra(dev / "athena" / "Mn_all.prj", groups=["KMnO4"])
    full = pre_edge(s.energy, s.mu)
    e_half = half_step_energy(s.energy, full.norm, e0=full.e0)
    keep = s.energy >= e_half + start_ev
    short = pre_edge(s.energy[keep], s.mu[keep])
    assert short.edge_step == pytest.approx(full.edge_step, rel=0.16)
    a = align_measured(s.energy[keep], s.mu[keep])
    assert a["preedge_height"] == pytest.approx(0.65, abs=0.1) and -15.0 < a["preedge_ev"] < -12.0


def test_a_xanes_only_raw_scan_takes_its_step_as_a_level_over_the_pre_edge_line(dev):
    """Raw scans of the labelled records cut 80 eV above the edge: Athena's linear post-edge fit
    from a third of the range goes through the first EXAFS oscillation and misses the whole scan's
    edge step by a median of about 10 %; the level of mu over the pre-edge line misses it by about 4 %."""
    level, line = [], []
    for _, s in _labelled(dev):
        full = pre_edge(s.energy, s.mu)
        if s.energy[-1] - full.e0 < 300 or s.energy[0] - full.e0 > -100:
            continue
        keep = s.energy <= full.e0 + 80.0
        cut = pre_edge(s.energy[keep], s.mu[keep], full.e0)
        athena = pre_edge(s.energy[keep], s.mu[keep], full.e0, level_short=False)
        assert cut.nnorm == 0 and athena.nnorm == 1
        level.append(abs(cut.edge_step / full.edge_step - 1))
        line.append(abs(athena.edge_step / full.edge_step - 1))
    assert len(level) >= 20
    assert np.median(level) < 0.06 and np.median(level) < 0.6 * np.median(line)
    assert np.percentile(level, 90) < np.percentile(line, 90)


def test_a_xanes_only_scan_matches_its_step_to_the_models_training_mean(dev):
    """Raw scans of the labelled records cut 50 eV above the edge: the level of mu over the pre-edge
    line takes the normalised spectrum to average 1 over +17..+50 eV, where the white line and the
    first oscillation average about 0.95 (more for titanates). Matched to the shipped model's mean
    training spectrum (as ``predict`` does), the step misses the whole scan's by about half as much
    (median 2.9 % against 6.3 %), and the titanates, whose level is up to 12 % too large, come back
    within 7 %."""
    from xanesdb.ml.inputs import expected_spectrum
    from xanesdb.ml.portable import load_portable, shipped_model_dir
    from xanesdb.xas.normalize import refine_level_step

    level, matched, ti = [], [], []
    for r, s in _labelled(dev):
        full = pre_edge(s.energy, s.mu)
        d = shipped_model_dir(r["absorber"])
        if d is None or s.energy[-1] - full.e0 < 300 or s.energy[0] - full.e0 > -100:
            continue
        keep = s.energy <= full.e0 + 50.0
        cut = pre_edge(s.energy[keep], s.mu[keep], full.e0)
        assert cut.level
        better = refine_level_step(s.energy[keep], cut, *expected_spectrum(load_portable(d)[0]))
        assert better.level and np.allclose(better.norm * better.edge_step, cut.norm * cut.edge_step)
        level.append(abs(cut.edge_step / full.edge_step - 1))
        matched.append(abs(better.edge_step / full.edge_step - 1))
        if r["absorber"] == "Ti":
            ti.append((cut.edge_step / full.edge_step, better.edge_step / full.edge_step))
    assert len(level) >= 20 and len(ti) >= 4
    assert np.median(matched) < 0.6 * np.median(level)
    assert np.percentile(matched, 90) < np.percentile(level, 90)
    assert max(abs(a - 1) for a, _ in ti) > 0.1 and max(abs(b - 1) for _, b in ti) < 0.07, ti
