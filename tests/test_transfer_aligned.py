"""Transfer of aligned-representation classifiers to another absorber (issue 20 item 3), on the real server."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pymongo
import pytest

from xanesdb.platform.errors import XanesdbUserError


def _insert(settings, element: str, n_mat: int, rng, shift: float = 0.0) -> None:
    """Spectra that carry their aligned form (``mu_aligned`` on the aligned grid), as `spectra build` stores them."""
    from xanesdb.xas.align import ALIGNED_GRID, ALIGNED_GRID_NAME

    i = np.arange(len(ALIGNED_GRID))
    client = pymongo.MongoClient(settings.DB_URI.get_secret_value())
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    docs = []
    for m in range(n_mat):
        for s in range(2):
            y = int(rng.integers(0, 3))
            pos = 40 + 8 * y + shift + rng.normal(0, 1.0)
            mu = 1 / (1 + np.exp(-(i - 30) / 2)) + 0.6 * np.exp(-((i - pos) ** 2) / 8) + rng.normal(0, 0.02, len(i))
            sid = f"{element}-mp-{m}:{s}"
            docs.append({"spectrum_id": sid, "site_id": sid, "task_id": sid, "material_id": f"{element}-mp-{m}",
                         "element": element, "grid_name": f"{element}-K-xanesdb-v1", "energies": [], "mu": [],
                         "aligned_grid": ALIGNED_GRID_NAME, "mu_aligned": mu.astype(float).tolist(),
                         "lce_class": ["T4", "S5", "O6"][y], "duplicate_of": None, "state": "successful",
                         "preset": "fast", "source": "xanesdb", "last_updated": now})  # fmt: skip
    client[settings.DB_NAME]["spectra"].insert_many(docs)
    client.close()


def test_aligned_classifier_fine_tunes_on_another_absorber(db_settings, capsys):
    from xanesdb.cli import main
    from xanesdb.ml.registry import get_run, list_runs
    from xanesdb.xas.align import ALIGNED_GRID_NAME

    rng = np.random.default_rng(7)
    _insert(db_settings, "Fe", 40, rng)
    _insert(db_settings, "Co", 25, rng, shift=1.0)
    main(["train", "-q", '{"element": "Fe"}', "--representation", "aligned", "--epochs", "3", "--n-models", "2",
          "--no-curves"])  # fmt: skip
    src = list_runs(db_settings)[0]["run_id"]
    assert get_run(src, db_settings).hyperparameters["representation"] == "aligned"
    capsys.readouterr()
    main(["train", "--from", src, "-q", '{"element": "Co"}', "--freeze", "0", "--fraction", "0.5", "--epochs", "3",
          "--n-models", "2", "--standardize", "target"])  # fmt: skip
    assert "fine-tuned from" in capsys.readouterr().out
    runs = [r["run_id"] for r in list_runs(db_settings) if r["run_id"] != src]
    assert len(runs) == 1
    doc = get_run(runs[0], db_settings)
    assert doc.hyperparameters["representation"] == "aligned" and doc.grid_name == ALIGNED_GRID_NAME
    assert doc.hyperparameters["transfer"]["from"] == src and doc.n_spectra == 50
    assert doc.query == {"element": "Co"}
    # a run trained on spectra a calibration changed cannot be fine-tuned on unchanged ones
    from xanesdb.ml.transfer import TransferConfig, prepare_source

    client = pymongo.MongoClient(db_settings.DB_URI.get_secret_value())
    client[db_settings.DB_NAME]["models"].update_one({"run_id": src}, {"$set": {"hyperparameters.calibration": "k-edge"}})
    client.close()
    with pytest.raises(XanesdbUserError, match="changed by --calibration"):
        prepare_source(src, TransferConfig(freeze=0), db_settings)
