"""The example notebook ``docs/api_tour.ipynb`` runs headlessly from top to bottom (nbclient).

It fills a throwaway database, trains a small model and predicts measured spectra, so it also
tests :mod:`xanesdb.api` end to end; and it checks that the API's figures leave a notebook's
inline backend alone (no ``matplotlib.use``) and are shown as images.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "api_tour.ipynb"


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_api_tour_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
    pytest.importorskip("ipykernel", reason="the test extra installs ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import matplotlib\nassert 'inline' in matplotlib.get_backend(), matplotlib.get_backend()"
    ))  # fmt: skip
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        extra_arguments=[f"--IPKernelApp.exec_lines=import sys; sys.executable = {sys.executable!r}"],
    )  # fmt: skip
    client.execute()
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) >= 3, "the Figures of plot_spectra, plot_confusion and plot_prediction show as images"
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))  # fmt: skip
    assert "predicted" in text and "O6" in text and "macro F1" in text  # predictions and the model card
    print(f"notebook ran in {seconds:.0f} s")
