"""Site fractions (xanesdb.ml.mixtures): mixtures, exact material averages, the network, CLI and predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xanesdb.ml.mixtures import (
    CLASSES,
    MixtureConfig,
    SiteSpectra,
    material_averages,
    random_mixtures,
    train_fractions_on,
)
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.xas.align import ALIGNED_GRID, ALIGNED_GRID_NAME

E = ALIGNED_GRID


def _proto(cls: str) -> np.ndarray:
    """A caricature of each class on the aligned grid: a unit edge step plus class features."""
    y = 1.0 / (1.0 + np.exp(-E / 1.0))
    if cls == "O6":
        y = y + 0.6 * np.exp(-((E - 10) ** 2) / 8)
    elif cls == "T4":
        y = y + 0.3 * np.exp(-((E + 2) ** 2) / 0.5) + 0.2 * np.exp(-((E - 25) ** 2) / 20)
    else:
        y = y + 0.35 * np.exp(-((E - 4) ** 2) / 4)
    return y


#: material -> [(class, multiplicity)]
MATERIALS = {
    "m-o6a": [("O6", 4)], "m-o6b": [("O6", 2), ("O6", 4)], "m-o6c": [("O6", 8)], "m-o6d": [("O6", 2)],
    "m-t4a": [("T4", 4)], "m-t4b": [("T4", 2)], "m-s5a": [("S5", 4)], "m-s5b": [("S5", 2)],
    "m-spinel1": [("T4", 8), ("O6", 16)], "m-spinel2": [("T4", 8), ("O6", 16)], "m-mix3": [("T4", 2), ("O6", 2)],
    "m-mix4": [("S5", 4), ("O6", 4)],
}  # fmt: skip


def _site_spectra(seed: int = 0, incomplete: tuple[str, ...] = ()) -> SiteSpectra:
    rng = np.random.default_rng(seed)
    xs, sids, mats, cls, mult = [], [], [], [], []
    for m, sites in MATERIALS.items():
        for i, (c, k) in enumerate(sites):
            xs.append(_proto(c) + rng.normal(0, 0.01, len(E)))
            sids.append(f"{m}:Fe:{i}")
            mats.append(m)
            cls.append(c)
            mult.append(k)
    complete = {m: m not in incomplete for m in MATERIALS}
    return SiteSpectra(X=np.array(xs, dtype=np.float32), site_ids=tuple(sids), material_ids=np.array(mats),
                       classes=np.array(cls), multiplicity=np.array(mult), complete=complete, energies=E.copy(),
                       grid_name=ALIGNED_GRID_NAME, query={}, fingerprint="test")  # fmt: skip


def test_random_mixtures_are_fraction_weighted_sums():
    ss = _site_spectra()
    rng = np.random.default_rng(1)
    X, F = random_mixtures(ss.X, ss.classes, 300, rng, max_classes=3, per_class=1)
    assert X.shape == (300, len(E)) and F.shape == (300, 3)
    assert np.allclose(F.sum(axis=1), 1.0, atol=1e-5) and (F >= 0).all()
    assert ((F > 0).sum(axis=1) == 1).any() and ((F > 0).sum(axis=1) == 3).any()
    # with one spectrum per class and prototypes + small noise, the mixture is close to sum f * proto
    protos = np.stack([_proto(c) for c in CLASSES])
    assert np.abs(X - F @ protos).max() < 0.06
    with pytest.raises(XanesdbUserError):
        random_mixtures(ss.X, np.array(["other"] * len(ss.X)), 5, rng)


def test_site_prior_draws_classes_as_often_as_the_sites_have_them():
    classes = np.array(["O6"] * 80 + ["T4"] * 15 + ["S5"] * 5)
    X = np.random.default_rng(0).random((100, 10)).astype(np.float32)
    _, F = random_mixtures(X, classes, 3000, np.random.default_rng(1), max_classes=1, class_prior="sites")
    share = (F > 0).mean(axis=0)  # CLASSES order: O6, S5, T4
    assert share == pytest.approx([0.80, 0.05, 0.15], abs=0.03)
    _, F = random_mixtures(X, classes, 3000, np.random.default_rng(1), max_classes=1, class_prior="uniform")
    assert (F > 0).mean(axis=0) == pytest.approx([1 / 3] * 3, abs=0.03)


def test_exact_material_averages_weight_sites_by_multiplicity():
    ss = _site_spectra(incomplete=("m-mix3",))
    ids, X, F = material_averages(ss)
    assert "m-mix3" not in ids  # a site without spectrum: no exact average
    k = ids.index("m-spinel1")
    assert F[k] == pytest.approx([2 / 3, 0.0, 1 / 3])  # magnetite-like: 1/3 T4 + 2/3 O6
    rows = [i for i, m in enumerate(ss.material_ids) if m == "m-spinel1"]
    assert X[k] == pytest.approx((8 * ss.X[rows[0]] + 16 * ss.X[rows[1]]) / 24, abs=1e-6)
    assert F[ids.index("m-o6b")] == pytest.approx([1.0, 0.0, 0.0])
    # a site of another class ('other') keeps its material out of the exact set
    other = SiteSpectra(**{**ss.__dict__, "classes": np.where(ss.material_ids == "m-mix4", "", ss.classes)})
    assert "m-mix4" not in material_averages(other)[0]


def test_network_beats_the_mean_baseline_on_held_out_mixed_materials():
    ss = _site_spectra()
    cfg = MixtureConfig(n_random=1500, n_folds=2, epochs=15, measured_share=0.2, seed=0)
    net, m = train_fractions_on(ss, cfg)
    assert m["n_mixed_materials"] == 4 and m["n_folds"] == 2
    assert {r["material_id"] for r in m["heldout"] if r["mixed"]} == {"m-spinel1", "m-spinel2", "m-mix3", "m-mix4"}
    assert m["mae_mixed"] < m["mae_mixed_baseline_mean"]
    assert m["mae_mixed"] < 0.15
    P = net.predict(np.stack([_proto("O6"), _proto("T4")]).astype("float32"), verbose=0)
    assert np.allclose(P.sum(axis=1), 1.0, atol=1e-5) and P[0, 0] > 0.6 and P[1, 2] > 0.6


def test_bad_knobs_are_refused():
    for bad in (dict(n_folds=0), dict(max_classes=4), dict(measured_share=1.5), dict(dropout=float("nan")),
                dict(epochs=0), dict(hidden=())):  # fmt: skip
        with pytest.raises(XanesdbUserError):
            MixtureConfig(**bad).check()
    pure = _site_spectra()
    keep = ~np.isin(pure.material_ids, ["m-spinel1", "m-spinel2", "m-mix3", "m-mix4"])
    only_pure = SiteSpectra(**{**pure.__dict__, "X": pure.X[keep], "site_ids": tuple(np.array(pure.site_ids)[keep]),
                               "material_ids": pure.material_ids[keep], "classes": pure.classes[keep],
                               "multiplicity": pure.multiplicity[keep]})  # fmt: skip
    with pytest.raises(XanesdbUserError, match="several classes"):
        train_fractions_on(only_pure, MixtureConfig(epochs=1))


def _load_into(db) -> None:
    from xanesdb.schemas import SiteDoc
    from xanesdb.schemas.spectrum import SpectrumDoc

    ss = _site_spectra(seed=3)
    for sid, m, c, k, x in zip(ss.site_ids, ss.material_ids, ss.classes, ss.multiplicity, ss.X):
        site = SiteDoc(site_id=sid, material_id=m, source="files", formula="FeO", element="Fe",
                       site_index=int(sid.split(":")[-1]), equivalent_indices=list(range(int(k))), multiplicity=int(k),
                       lce_class=c)  # fmt: skip
        db["sites"].insert_one(site.to_mongo())
        tid = f"{sid}:K:test"
        sp = SpectrumDoc(spectrum_id=f"{tid}:std", task_id=tid, site_id=sid, material_id=m, element="Fe",
                         source="xanesdb", code="feff10-rs", preset="fast", multiplicity=int(k), lce_class=c,
                         grid_name="Fe-K-v1", energies=list(range(100)), mu=[0.0] * 100, aligned_grid=ALIGNED_GRID_NAME,
                         mu_aligned=[float(v) for v in x])  # fmt: skip
        db["spectra"].insert_one(sp.to_mongo())


def _ok(main, args) -> None:
    try:
        main(args)
    except SystemExit as ex:
        assert ex.code in (0, None), args


def test_train_fractions_cli_registers_and_predict_reports_fractions(db_settings, shared_data, capsys):
    from xanesdb.cli import main
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    _load_into(db)
    _ok(main, ["train", "--task", "fractions", "-q", '{"element": "Fe"}', "--n-models", "2", "--epochs", "3",
               "--calibration", "k-edge"])  # fmt: skip
    out = capsys.readouterr().out
    assert "per class (several classes)" in out and "held-out real materials" in out
    run = db["models"].find_one({"task": "fractions"})
    assert run["state"] == "complete" and run["classes"] == list(CLASSES) and run["kind"] == "frac-mlp"
    assert run["metrics"]["n_mixed_materials"] == 4 and run["grid_name"] == ALIGNED_GRID_NAME
    assert run["metrics"]["measured_calibration"]  # the site spectra were mapped to measurement before mixing
    prj = shared_data / "experimental_dev" / "athena" / "Mn.prj"
    _ok(main, ["predict", "-m", run["run_id"], str(prj), "-g", "Mn3O4", "-f", "json"])
    out = capsys.readouterr().out
    (row,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert row["model"] == run["run_id"] and sum(row[c] for c in CLASSES) == pytest.approx(1.0, abs=1e-4)


def test_train_fractions_refusals(refused):
    assert "unknown --task" in refused(["train", "--task", "mixture", "-q", "{}"])
    assert "must be at least 1" in refused(["train", "--task", "fractions", "-q", "{}", "--n-models", "0"])
    assert "unknown --fidelity" in refused(["train", "--task", "fractions", "-q", "{}", "--fidelity", "mp"])
    assert "calibration" in refused(["train", "--task", "fractions", "-q", "{}", "--calibration", "no-such-beamline"])


def test_calibration_maps_the_site_spectra_before_mixing(db_settings):
    from xanesdb.ml.mixtures import load_site_spectra, resolve_mixture_calibration
    from xanesdb.platform.stores import get_database
    from xanesdb.xas.calibration import load_calibration

    _load_into(get_database(db_settings))
    q = {"element": "Fe"}
    plain = load_site_spectra(q, db_settings, use_cache=False)
    none = load_site_spectra(q, db_settings, use_cache=False, calibration=None)
    assert np.array_equal(plain.X, none.X) and plain.fingerprint == none.fingerprint  # None: unchanged
    cal = load_calibration("k-edge")
    cooked = load_site_spectra(q, db_settings, use_cache=False, calibration="k-edge")
    assert cooked.site_ids == plain.site_ids and cooked.X.dtype == plain.X.dtype
    assert np.abs(cooked.X - plain.X).max() > 0.01 and cooked.fingerprint != plain.fingerprint
    assert cooked.X == pytest.approx(cal.apply(plain.X, plain.energies), abs=1e-6)
    # the refitted calibration given as numbers (how the benchmark scores an absorber's measured records)
    fe = cal.without("Fe")
    spec = {**fe.params(), "provenance": fe.provenance}
    held = load_site_spectra(q, db_settings, use_cache=False, calibration=spec)
    assert held.X == pytest.approx(fe.apply(plain.X, plain.energies), abs=1e-6)
    assert resolve_mixture_calibration(spec).provenance.endswith("refitted without Fe")
    # the run records it; without it the recorded knobs are what they always were
    assert MixtureConfig(calibration="k-edge").as_dict()["calibration"] == "k-edge"
    assert "calibration" not in MixtureConfig().as_dict()


def test_bad_calibration_is_refused_in_one_line():
    for bad in ("no-such-calibration", {"shift": 0.5}, 3):
        with pytest.raises(XanesdbUserError) as err:
            MixtureConfig(calibration=bad).check()
        assert "\n" not in str(err.value) and "calibration" in str(err.value)
    from xanesdb.commands.fractions import train_fractions

    with pytest.raises(XanesdbUserError, match="no calibration 'nope'"):  # refused before any data is read
        train_fractions({"element": "Fe"}, 2, 1, 0, calibration="nope")
