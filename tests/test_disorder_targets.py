"""The disorder targets: MSD = variance + mean^2 per row, and the variance target end to end (issue 21)."""

import json

import numpy as np
import pytest

from xanesdb.platform.errors import XanesdbUserError


def _series(n_sites=2, n_e=120):
    from xanesdb.ml.disorder import DistortionSeries

    d = np.round(np.arange(-0.45, 0.4501, 0.05), 2)
    e = np.linspace(8960.0, 9100.0, n_e)
    out = []
    for k in range(n_sites):
        # an edge whose white line sharpens as bonds shorten, different per site
        mu = np.stack([1 / (1 + np.exp(-(e - 8980 - 3 * x) / 1.5)) * (1 + (0.3 + 0.1 * k) * np.exp(-((e - 8990 - 20 * x) / (4 + 10 * abs(x))) ** 2))
                       for x in d])  # fmt: skip
        out.append(DistortionSeries(f"s{k}:Cu:0", f"s{k}", "Cu", "O6", "fastlite", d, e, mu, mu.copy()))
    return out


def test_variance_is_msd_minus_squared_mean():
    from xanesdb.ml.disorder import make_msd_dataset, mean_of, msd_of, series_weights

    ds = make_msd_dataset(_series(), 40, seed=3)
    s = _series()[0]
    w = series_weights(s.distortions, *ds.weightings[0])
    assert ds.mean[0] == pytest.approx(mean_of(s.distortions, w))
    assert ds.msd[0] == pytest.approx(msd_of(s.distortions, w))
    var = ds.target("variance")
    np.testing.assert_allclose(var, ds.msd - ds.mean**2)
    assert (var >= -1e-12).all() and (var <= ds.msd + 1e-12).all()
    # a weighting off centre carries a squared mean that the variance leaves out
    off = np.abs(ds.mean) > 0.05
    assert off.any() and (ds.msd[off] - var[off] > 0.0025 - 1e-9).all()
    with pytest.raises(XanesdbUserError, match="unknown disorder target"):
        ds.target("mean_square")


def test_held_out_sites_scores_the_variance_target():
    from xanesdb.ml.disorder import held_out_sites, make_msd_dataset, msd_config, regression_dataset

    ds = make_msd_dataset(_series(3), 30, seed=2)
    rd = regression_dataset(ds, target="variance")
    assert rd.labels == ("variance",)
    np.testing.assert_allclose(rd.Y[:, 0], ds.target("variance"))
    out = held_out_sites(ds, msd_config(family="gbt", epochs=1, seed=0, labels=("variance",)), ["s1:Cu:0"], "variance")
    assert out["target"] == "variance"
    r = out["sites"]["s1:Cu:0"]
    np.testing.assert_allclose(r["true"], ds.target("variance")[ds.groups == "s1:Cu:0"])
    tr = ds.groups != "s1:Cu:0"
    assert r["mae_baseline"] == pytest.approx(np.mean(np.abs(ds.target("variance")[tr].mean() - r["true"])))


def test_relative_dataset_takes_each_row_against_a_row_of_its_own_site():
    from xanesdb.ml.disorder import make_msd_dataset, relative_dataset

    ds = make_msd_dataset(_series(3), 25, seed=4)
    rel = relative_dataset(ds, seed=1)
    J = rel.reference
    assert (ds.groups[J] == ds.groups).all()
    np.testing.assert_allclose(rel.X, ds.X - ds.X[J], atol=1e-6)
    np.testing.assert_allclose(rel.target("variance"), ds.target("variance") - ds.target("variance")[J])
    np.testing.assert_allclose(rel.target("msd"), ds.msd - ds.msd[J])
    assert rel.fingerprint != ds.fingerprint
    np.testing.assert_array_equal(relative_dataset(ds, seed=1).reference, J)  # seeded
    with pytest.raises(XanesdbUserError, match="already relative"):
        relative_dataset(rel)


def test_disorder_model_trains_registers_and_reads_a_series_against_its_reference(db_settings, tmp_path, cli_here):
    """`xanesdb disorder train`'s core on three synthetic sites, registered on the real server; then
    `xanesdb disorder predict` reads spectra of one site, each against the least disordered one."""
    from xanesdb.ml.disorder import is_disorder_run, series_weights, train_disorder_model
    from xanesdb.ml.registry import get_run, register_run

    series = _series(3)
    model, doc = train_disorder_model(series, target="variance", relative=True, family="gbt", n_weightings=40,
                                      seed=0, held_out=["s1:Cu:0"])  # fmt: skip
    h = doc.metrics["held_out_sites"]
    assert list(h["sites"]) == ["s1:Cu:0"] and h["mae"] > 0 and h["mae_baseline"] > 0
    info = doc.hyperparameters["disorder"]
    assert (info["target"], info["relative"], info["elements"]) == ("variance", True, ["Cu"])
    doc = register_run(doc, model, db_settings)
    assert is_disorder_run(get_run(doc.run_id, db_settings))
    # a "temperature series" of site s2: Gaussians of growing width about d = 0
    s = series[2]
    files = []
    for k, sigma in enumerate((0.02, 0.06, 0.10)):
        mu = series_weights(s.distortions, 0.0, sigma) @ s.mu
        f = tmp_path / f"T{k}.csv"
        f.write_text("energy,mu\n" + "\n".join(f"{e:.3f},{m:.6f}" for e, m in zip(s.energies, mu)))
        files.append(str(f))
    r = cli_here(["disorder", "predict", "-m", doc.run_id, *files, "-r", files[0], "-f", "json"])
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    values = [x["value"] for x in rows]
    assert abs(values[0]) < 0.002 and values[2] > values[0]  # wider than the reference reads as more disordered
    assert all(x["relative_to"] == "T0.csv" and x["sigma"] > 0 for x in rows)
    # the widest one written as E - E0 (as papers give spectra) reads the same: the model's absorber's
    # tabulated K edge (Cu, 8979 eV) is added, and the absolute reference is read as it is
    rel = tmp_path / "T2_relative.csv"
    mu = series_weights(s.distortions, 0.0, 0.10) @ s.mu
    rel.write_text("E-E0,mu\n" + "\n".join(f"{e - 8979.0:.3f},{m:.6f}" for e, m in zip(s.energies, mu)))
    r = cli_here(["disorder", "predict", "-m", doc.run_id, str(rel), "-r", files[0], "-f", "json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["value"] == pytest.approx(values[2], abs=1e-4)
    # one-line refusals: no reference for a relative model; a classifier's id is no disorder model
    r = cli_here(["disorder", "predict", "-m", doc.run_id, *files])
    assert r.returncode == 2 and "--reference" in r.stderr
    r = cli_here(["predict", "-m", doc.run_id, files[0]])
    assert r.returncode == 2 and "xanesdb disorder predict" in r.stderr


def test_disorder_train_refuses_without_series(db_settings, cli_here):
    r = cli_here(["disorder", "train", "-e", "Cu"])
    assert r.returncode == 2 and "complete distortion series" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli_here(["disorder", "train", "--target", "mean"])
    assert r.returncode == 2 and "unknown --target" in r.stderr


def test_held_out_sites_parity_png(tmp_path):
    from xanesdb.ml.disorder import plot_held_out_sites, train_disorder_model

    _, doc = train_disorder_model(_series(2), family="gbt", n_weightings=20, held_out=["s0:Cu:0"])
    pts = doc.metrics["held_out_sites"]["sites"]["s0:Cu:0"]
    assert 0 < len(pts["true"]) == len(pts["pred"]) <= 200
    png = plot_held_out_sites(doc, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
