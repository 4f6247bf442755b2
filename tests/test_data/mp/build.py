"""Rebuild the fake Materials Project test data in this folder from ../shared/data.

Run from the repository root: ``.venv/bin/python tests/test_data/mp/build.py``.
Writes ``structures.json.gz`` and ``xas_spectra.json.gz`` (see README.md for what they are).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[3] / "shared" / "data"

#: summary structures: material id -> (file in ../shared/data/structures, why it is here)
SUMMARY = {
    "mp-19419": ("li_fe_o_entries.json.gz", "LiFeO2, Fe oxide"),
    "mp-1181437": ("li_fe_o_entries.json.gz", "FeO, Fe oxide"),
    "mp-1068212": ("li_fe_o_entries.json.gz", "Fe2O3, Fe oxide"),
    "mp-1104628": ("li_fe_o_entries.json.gz", "Fe6O8, a peroxide (oxide_type): the anion check drops it"),
    "mp-19359": ("small_sets.json.gz", "NaFeO2, Fe oxide"),
    "mp-2657": ("small_sets.json.gz", "TiO2 rutile"),
    "mp-390": ("small_sets.json.gz", "TiO2 anatase"),
    "mp-5986": ("small_sets.json.gz", "BaTiO3"),
    "mp-4930": ("small_sets.json.gz", "TiAl2O5"),
    "mp-24850": ("small_sets.json.gz", "LiCoO2"),
    "mp-788": ("small_sets.json.gz", "CoTe, no O: an elements=[Co, O] search must not return it"),
}

LABEL = ("xanesdb test data: a FEFF 9.9.1 Cu K-edge site spectrum from OmniXAS "
         "(AI-multimodal/OmniXAS@57a6282), served as if it were a Materials Project XASDoc; not MP data")


def _structures() -> dict[str, dict]:
    out = {}
    for e in json.load(gzip.open(SHARED / "structures" / "li_fe_o_entries.json.gz")):
        out[e["entry_id"]] = e["structure"]
    for r in json.load(gzip.open(SHARED / "structures" / "small_sets.json.gz")):
        if r.get("material_id"):
            out.setdefault(r["material_id"], r["structure"])
    return out


def main() -> None:
    structures = _structures()
    summary = [
        {"material_id": mid, "structure": structures[mid],
         "reference": f"../shared/data/structures/{fname}", "note": why}
        for mid, (fname, why) in SUMMARY.items()
    ]
    cu_structures = {r["material_id"]: r["structure"]
                     for r in json.load(gzip.open(SHARED / "omnixas_cu" / "structures.json.gz"))}
    spectra: dict[str, list[dict]] = {}
    for r in json.load(gzip.open(SHARED / "omnixas_cu" / "feff9_site_spectra.json.gz")):
        spectra.setdefault(r["material_id"], []).append(r)

    def rec(s: dict, absorbing_index: int | None, mu: list[float], warnings: list[str]) -> dict:
        return {"material_id": s["material_id"], "structure": cu_structures[s["material_id"]],
                "absorbing_element": "Cu", "absorbing_index": absorbing_index, "edge": "K",
                "spectrum_type": "XANES", "energy": s["energy"], "mu": mu, "warnings": warnings}

    xas = []
    # CuO: one unique Cu site, site-specific document
    (cuo,) = spectra["mp-704645"]
    xas.append(rec(cuo, cuo["absorbing_index"], cuo["mu"], [LABEL]))
    # Cu2SbO5: two unique Cu sites, one site-specific document each
    two = spectra["mp-622628"]
    assert len(two) == 2
    for s in two:
        xas.append(rec(s, s["absorbing_index"], s["mu"], [LABEL]))
    # Ba2(CuO2)3: three unique sites, a site average (no absorbing_index) -> cannot be keyed to a site
    three = spectra["mp-1228668"]
    avg = [sum(v) / len(three) for v in zip(*(s["mu"] for s in three))]
    xas.append(rec(three[0], None, avg, [LABEL, "plain mean of the OmniXAS site spectra (test data)"]))
    # Ba2CuO6: one unique Cu site, served without absorbing_index (a site average of one site)
    (one,) = spectra["mp-1182377"]
    xas.append(rec(one, None, one["mu"], [LABEL]))
    # RbCuO: a spectrum made invalid on purpose (a repeated energy point) -> state failed.
    # (Negative mu cannot be used: emmet's XAS adapter in the client clips y <= 0 to 1e-12.)
    (bad,) = spectra["mp-1008807"][:1]
    bad = {**bad, "energy": [*bad["energy"][:20], bad["energy"][19], *bad["energy"][21:]]}
    xas.append(rec(bad, bad["absorbing_index"], bad["mu"],
                   [LABEL, "energy point 20 replaced by a copy of point 19 on purpose (invalid test spectrum)"]))

    with gzip.open(HERE / "structures.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(summary, fh)
    with gzip.open(HERE / "xas_spectra.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(xas, fh)
    print(f"{len(summary)} structures, {len(xas)} XAS records -> {HERE}")


if __name__ == "__main__":
    main()
