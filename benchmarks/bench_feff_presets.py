"""Cost per site and agreement of FEFF10 preset candidates, on real Cu sites of the OmniXAS set.

For each site and candidate (FMS radius without SCF; optionally the full ``mp`` preset) this runs
FEFF10 through xanesdb's runner (its own worker process, the K-edge XANES stages only), then
compares the spectrum with

- the OmniXAS FEFF 9.9.1 spectrum of the same site (SCF 7 A, FMS 9 A, RPA core hole), and
- the ``mp`` preset spectrum when it was computed (``--with-mp``; 10-20 min per site),

by Pearson correlation and mean absolute difference after max-normalisation and alignment (the
shift that maximises Pearson, searched over +-20 eV in 0.1 eV steps; spectra interpolated on a
0.1 eV grid over the common range). Runs are kept in ``--workdir`` and reused, so a later
invocation only adds what is missing.

Usage (at low priority on a shared machine)::

    nice -n 10 python benchmarks/bench_feff_presets.py --sites 4 --fms 4 5 6
    nice -n 10 python benchmarks/bench_feff_presets.py --sites 20 --fms 5 6 --with-mp   # hours
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from xanesdb.jobs.feff.parse import parse_xmu
from xanesdb.jobs.feff.run import run_feff10
from xanesdb.jobs.feff.sets import FeffPreset, feff_input_text, get_preset, input_hash, preset_cards, stages_for_cards

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "omnixas_cu"

#: default sites: Cu in different geometries (CrystalNN neighbours from the data README)
DEFAULT_SITES = [
    ("mp-704645", 0),    # CuO, square planar O4
    ("mp-1182377", None),  # Ba2CuO6, O6
    ("mp-622628", None),   # Cu2SbO5, linear O2
    ("mvc-13059", None),   # Ca3Cu6(AsO4)8, O5/O4
    ("mp-1228668", None),  # Ba2(CuO2)3, O4/O2
    ("mp-1181633", None),  # CuClO, O3Cl
]


def candidates(fms: list[float], with_mp: bool) -> dict[str, FeffPreset]:
    out = {}
    for r in fms:
        out[f"fms{r:g}"] = FeffPreset(name=f"fms{r:g}", radius=max(8.0, r + 2.0),
                                      user_tag_settings={"_del": ["SCF", "LDOS"], "FMS": f"{r:.1f} 0"})
    if with_mp:
        out["mp"] = get_preset("mp")
    return out


def align_compare(e1, m1, e2, m2, max_shift: float = 20.0, step: float = 0.1) -> tuple[float, float, float]:
    """(pearson, mean abs diff, shift of spectrum 1 in eV) after max-normalisation and alignment."""
    e1, m1, e2, m2 = map(np.asarray, (e1, m1, e2, m2))
    m1, m2 = m1 / m1.max(), m2 / m2.max()
    best = (-2.0, 0.0, 0.0)
    for shift in np.arange(-max_shift, max_shift + step / 2, step):
        lo, hi = max(e1[0] + shift, e2[0]), min(e1[-1] + shift, e2[-1])
        if hi - lo < 20:
            continue
        grid = np.arange(lo, hi, step)
        a = np.interp(grid, e1 + shift, m1)
        b = np.interp(grid, e2, m2)
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best[0]:
            best = (r, float(np.mean(np.abs(a - b))), float(shift))
    return best


def run_site(structure, idx: int, preset: FeffPreset, work: Path, timeout: float) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    text = feff_input_text(structure, idx, preset)
    # FEFF10 rewrites feff.inp in its folder, so a finished run is recognised by the hash of our input
    old = json.loads((work / "result.json").read_text()) if (work / "result.json").is_file() else {}
    timed_out_before = not old.get("ok", True) and str(old.get("error")).startswith("timeout") and old.get("timeout", 0) < timeout
    if old.get("input_hash") != input_hash(text) or timed_out_before:
        (work / "feff.inp").write_text(text)
        res = run_feff10(work, timeout=timeout, stages=stages_for_cards(preset_cards(preset)))
        old = {"ok": res.ok, "error": res.error, "wall": res.wall_seconds, "stages": res.stage_seconds,
               "input_hash": input_hash(text), "timeout": timeout}
        (work / "result.json").write_text(json.dumps(old))
    return old


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=4, help="number of Cu sites (default set first, then the bundle order)")
    p.add_argument("--fms", type=float, nargs="+", default=[4.0, 5.0, 6.0], help="FMS radii (A) of no-SCF candidates")
    p.add_argument("--with-mp", action="store_true", help="also run the full mp preset (10-20 min per site)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/xanesdb-bench-presets"))
    p.add_argument("--timeout", type=float, default=3600.0, help="time limit (s) of one no-SCF run")
    p.add_argument("--mp-timeout", type=float, default=3600.0, help="time limit (s) of one mp run; slower sites are recorded as not run")
    p.add_argument("--json", type=Path, default=None, help="write the per-site rows here")
    p.add_argument("--reverse", action="store_true", help="work through the sites from the last (a second process "
                   "sharing --workdir then meets the first halfway; a final run without new work prints the table)")
    a = p.parse_args(argv)

    from pymatgen.core import Structure

    recs = {r["material_id"]: r for r in json.load(gzip.open(SHARED / "structures.json.gz"))}
    spectra = {(r["material_id"], r["absorbing_index"]): r for r in json.load(gzip.open(SHARED / "feff9_site_spectra.json.gz"))}
    sites = []
    for mid, idx in DEFAULT_SITES:
        cands = sorted(i for (m, i) in spectra if m == mid)
        if cands:
            sites.append((mid, idx if idx is not None else cands[0]))
    for key in sorted(spectra):
        if len(sites) >= a.sites:
            break
        if key not in sites and key[0] not in {m for m, _ in sites}:
            sites.append(key)
    sites = sites[: a.sites]
    if a.reverse:
        sites = sites[::-1]
    cands = candidates(a.fms, a.with_mp)
    rows = []
    for mid, idx in sites:
        s = Structure.from_dict(recs[mid]["structure"])
        ref = spectra[(mid, idx)]
        results = {}
        for name, preset in cands.items():
            res = run_site(s, idx, preset, a.workdir / f"{mid}_{idx}" / name, a.mp_timeout if name == "mp" else a.timeout)
            row = {"site": f"{mid}:Cu:{idx}", "formula": recs[mid]["formula"], "candidate": name, "ok": res["ok"],
                   "feff_s": res["wall"], "stage_s": sum(res["stages"].values())}
            if not res["ok"]:
                row["error"] = (res.get("error") or "")[:100]
            if res["ok"]:
                x = parse_xmu(a.workdir / f"{mid}_{idx}" / name / "xmu.dat")
                results[name] = x
                r, mad, shift = align_compare(x.energies, x.mu, ref["energy"], ref["mu"])
                row.update(pearson_feff9=round(r, 4), mad_feff9=round(mad, 4), shift_feff9=round(shift, 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if "mp" in results:
            for row in rows:
                if row["site"] == f"{mid}:Cu:{idx}" and row["candidate"] in results and row["candidate"] != "mp":
                    x = results[row["candidate"]]
                    r, mad, shift = align_compare(x.energies, x.mu, results["mp"].energies, results["mp"].mu)
                    row.update(pearson_mp=round(r, 4), mad_mp=round(mad, 4), shift_mp=round(shift, 2))
    # table
    print()
    print(f"{'candidate':>10} {'sites':>5} {'FEFF s/site':>12} {'Pearson FEFF9':>14} {'MAD FEFF9':>10} {'Pearson mp':>11} {'MAD mp':>8}")
    for name in cands:
        rs = [r for r in rows if r["candidate"] == name and r["ok"]]
        if not rs:
            print(f"{name:>10} {0:>5}")
            continue
        def mean(k):
            v = [r[k] for r in rs if k in r]
            return f"{statistics.mean(v):.3f}" if v else "-"
        print(f"{name:>10} {len(rs):>5} {statistics.mean(r['feff_s'] for r in rs):>12.1f} {mean('pearson_feff9'):>14} "
              f"{mean('mad_feff9'):>10} {mean('pearson_mp'):>11} {mean('mad_mp'):>8}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
