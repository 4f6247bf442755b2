"""Record what xraylarch reads from the measured dev set, as a fixture for xanesdb's own readers.

Run with a throw-away virtualenv that has xraylarch (it is NOT a xanesdb dependency)::

    python3 -m venv /tmp/larchvenv && /tmp/larchvenv/bin/pip install xraylarch
    /tmp/larchvenv/bin/python scripts/make_reader_fixture.py [DATA_DIR] [OUT_JSON]

DATA_DIR defaults to ``../shared/data/experimental_dev`` beside the checkout, OUT_JSON to
``tests/test_data/measured/larch_reference.json``.

For every Athena group (``larch.io.read_athena`` with ``do_preedge=False`` and
``use_hashkey=True``, so that groups sharing a label are all kept) and every XDI file
(``larch.io.read_xdi``) it records the label, the number of points, first/last energy *as larch
returns them*, the stored ``bkg_eshift`` (larch keeps it as ``energy_shift`` and does NOT add it
to ``energy``), the sum of mu and mu at five indices, and larch ``pre_edge`` e0 and edge_step
with default settings computed on ``energy + bkg_eshift`` (the energies xanesdb's reader returns).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import larch
from larch import Group
from larch.io import read_athena, read_xdi
from larch.xafs import pre_edge

ROOT = Path(__file__).resolve().parents[1]


def _preedge(energy: np.ndarray, mu: np.ndarray) -> dict:
    grp = Group()
    try:
        pre_edge(energy, mu, group=grp)
        return {"e0": float(grp.e0), "edge_step": float(grp.edge_step)}
    except Exception as exc:  # noqa: BLE001 - record larch's failure instead of stopping
        return {"e0": None, "edge_step": None, "pre_edge_error": f"{type(exc).__name__}: {exc}"}


def _summary(energy: np.ndarray, mu: np.ndarray) -> dict:
    n = len(energy)
    idx = [0, n // 4, n // 2, (3 * n) // 4, n - 1]
    return {"n": n, "energy_first": float(energy[0]), "energy_last": float(energy[-1]),
            "mu_sum": float(np.sum(mu)), "sample_index": idx, "mu_samples": [float(mu[i]) for i in idx]}


def athena_records(path: Path, rel: str) -> list[dict]:
    project = read_athena(str(path), do_preedge=False, use_hashkey=True)
    out = []
    for key, grp in project.groups.items():
        rec = {"file": rel, "old_group": key, "label": getattr(grp, "label", key)}
        eshift = float(getattr(grp.athena_params.bkg, "eshift", 0.0) or 0.0)
        rec["bkg_eshift"] = eshift
        if not hasattr(grp, "mu"):  # larch turned it into chi(k)
            rec["larch_kind"] = "chi"
            out.append(rec)
            continue
        rec["larch_kind"] = "mu"
        rec.update(_summary(grp.energy, grp.mu))
        rec.update(_preedge(grp.energy + eshift, grp.mu))
        out.append(rec)
    return out


def xdi_record(path: Path, rel: str) -> dict:
    grp = read_xdi(str(path))
    rec = {"file": rel, "array_labels": list(grp.array_labels),
           "element": str(getattr(grp, "element", "") or ""), "edge": str(getattr(grp, "edge", "") or "")}
    mu = grp.mutrans if hasattr(grp, "mutrans") else grp.mufluor
    rec["mu_from"] = "mutrans = -log(itrans/(i0+1e-12))" if hasattr(grp, "mutrans") else "mufluor"
    rec.update(_summary(grp.energy, mu))
    rec.update(_preedge(grp.energy, mu))
    return rec


def main(argv: list[str]) -> None:
    data = Path(argv[1]) if len(argv) > 1 else ROOT.parent / "shared" / "data" / "experimental_dev"
    out = Path(argv[2]) if len(argv) > 2 else ROOT / "tests" / "test_data" / "measured" / "larch_reference.json"
    result = {
        "generator": "scripts/make_reader_fixture.py",
        "larch_version": larch.__version__,
        "numpy_version": np.__version__,
        "notes": ("energy_first/energy_last are larch's energies WITHOUT bkg_eshift (larch keeps the "
                  "shift as group.energy_shift); e0/edge_step are larch pre_edge() defaults computed on "
                  "energy + bkg_eshift. XDI mu is larch's mutrans = -log(itrans/(i0+1e-12))."),
        "athena": [],
        "xdi": [],
    }
    for prj in sorted((data / "athena").glob("*.prj")):
        result["athena"] += athena_records(prj, f"athena/{prj.name}")
    for xdi in sorted((data / "xdi").glob("*.xdi")):
        result["xdi"].append(xdi_record(xdi, f"xdi/{xdi.name}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}: {len(result['athena'])} Athena groups, {len(result['xdi'])} XDI files")


if __name__ == "__main__":
    main(sys.argv)
