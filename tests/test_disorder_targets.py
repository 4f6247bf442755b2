"""The disorder targets: MSD = variance + mean^2 per row, and the variance target end to end (issue 21)."""

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
