"""load_dataset: one read, the per-query cache and how it notices changes (real server)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

GRID = 8985.0 + 0.5 * np.arange(100)


def _docs(n: int = 30, seed: int = 0) -> list[dict]:
    from xanesdb.schemas import SpectrumDoc

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cls = ("O6", "T4", "S5")[i % 3]
        mu = 1 / (1 + np.exp(-(GRID - 8995.0) / 1.5)) + 0.5 * np.exp(-((GRID - 9000 - 5 * (i % 3)) ** 2) / 8) + rng.random(100) * 0.01
        out.append(SpectrumDoc(
            spectrum_id=f"mp-{i}:Cu:0:K:test:std", task_id=f"mp-{i}:Cu:0:K:test", site_id=f"mp-{i}:Cu:0",
            material_id=f"mp-{i}", element="Cu", source="test", code="synthetic", preset="none", lce_class=cls,
            grid_name="Cu-K-test", energies=GRID.tolist(), mu=mu.tolist(),
        ).to_mongo())  # fmt: skip
    return out


@pytest.fixture
def spectra(db_settings):
    from xanesdb.platform.stores import get_database

    db = get_database(db_settings)
    db.spectra.insert_many(_docs())
    yield db_settings, db.spectra
    db.client.close()


@pytest.mark.integration
def test_cache_is_reused_until_a_spectrum_is_written(spectra):
    from xanesdb.ml.dataset import load_dataset

    settings, coll = spectra
    first = load_dataset({"element": "Cu"}, settings, collection=coll)
    assert first.timings["cache_hit"] == 0.0 and first.X.shape == (30, 100)
    hit = load_dataset({"element": "Cu"}, settings, collection=coll)
    assert hit.timings["cache_hit"] == 1.0 and hit.timings.get("cache_check_changes") == 1.0
    np.testing.assert_array_equal(hit.X, first.X)
    assert hit.fingerprint == first.fingerprint and hit.spectrum_ids == first.spectrum_ids
    # a spectrum outside the query written later: checked once by fingerprint, still the same data
    other = dict(_docs(1)[0], spectrum_id="other:std", element="Fe", last_updated=datetime.now(timezone.utc))
    coll.insert_one(other)
    again = load_dataset({"element": "Cu"}, settings, collection=coll)
    assert again.timings.get("cache_check_fingerprint") == 1.0 and again.fingerprint == first.fingerprint
    assert load_dataset({"element": "Cu"}, settings, collection=coll).timings.get("cache_check_changes") == 1.0
    # a spectrum of the query touched: read again, new fingerprint
    coll.update_one({"spectrum_id": first.spectrum_ids[0]},
                    {"$set": {"last_updated": datetime.now(timezone.utc) + timedelta(seconds=1)}})  # fmt: skip
    changed = load_dataset({"element": "Cu"}, settings, collection=coll)
    assert changed.timings["cache_hit"] == 0.0 and changed.fingerprint != first.fingerprint
    # the exact check on request, and the uncached read agrees with the cached one
    exact = load_dataset({"element": "Cu"}, settings, collection=coll, cache_check="fingerprint")
    assert exact.timings.get("cache_check_fingerprint") == 1.0 and exact.fingerprint == changed.fingerprint
    fresh = load_dataset({"element": "Cu"}, settings, collection=coll, use_cache=False)
    np.testing.assert_array_equal(fresh.X, exact.X)
    assert fresh.fingerprint == exact.fingerprint


@pytest.mark.integration
def test_dataset_without_a_collection_opens_and_closes_its_own(spectra):
    from xanesdb.ml.dataset import load_dataset

    settings, _ = spectra
    ds = load_dataset({"element": "Cu"}, settings, use_cache=False)
    assert len(ds) == 30 and ds.grid_name == "Cu-K-test" and np.allclose(ds.X.max(axis=1), 1.0)
    with pytest.raises(Exception, match="cache_check"):
        load_dataset({"element": "Cu"}, settings, cache_check="never")


def test_importing_the_dataset_module_does_not_import_keras():
    import subprocess
    import sys

    code = "import sys, xanesdb.ml.dataset as d; assert 'keras' not in sys.modules; d.SpectraBatches; assert 'keras' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
