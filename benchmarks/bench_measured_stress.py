"""Would the answers on the development records survive another beamline? Each labelled record of
``experimental_dev`` is changed the way another instrument or sample preparation would change it,
and predicted again with the shipped models.

The changes act on the raw mu(E) as read (before xanesdb normalises, aligns and predicts):

* ``shift+3`` / ``shift-3``: the monochromator calibrated 3 eV higher / lower (calibrations of
  beamlines differ by 1-3 eV; an uncalibrated scan by more);
* ``broad1.5``: a beamline of lower resolution, an extra Gaussian of 1.5 eV FWHM (Si(111) at
  a bending magnet against Si(311), a microprobe);
* ``selfabs2`` / ``selfabs0.7``: fluorescence from a thick, concentrated sample, which flattens the
  features (Troger et al., Phys. Rev. B 46, 3283 (1992)): ``n -> n (1 + b) / (n + b)`` on the
  normalised spectrum n, b the absorption of everything else over the absorber's edge step
  (2: moderate, 0.7: strong);
* ``noise0.01``: white noise of 1 % of the edge step (a dilute sample, a short count time);
* ``glitch0.1`` / ``glitch0.3``: three monochromator glitches, single points 0.1 / 0.3 edge steps
  off, at random energies from 10 eV below to 45 eV above the half step (raw data not deglitched);
* ``coarse1``: 1 eV steps everywhere (a quick XANES scan);
* ``pre-15`` / ``pre-30`` / ``pre-50``: the scan starts 15 / 30 / 50 eV below the edge (a XANES-only
  scan: a short pre-edge line);
* ``end+40`` / ``end+50`` / ``end+80``: the scan ends 40 / 50 / 80 eV above the edge (a XANES-only
  scan; one that ends before the full model's input window is answered by the short-scan model of
  its absorber, as ``xanesdb predict`` does);
* ``normcut-30+80`` / ``normcut-20+60`` / ``normcut-20+40`` / ``normcut-10+50``: the spectrum as a
  file of (energy, normalised mu) holds it: normalised on the whole scan (Athena-style), then cut
  to -30..+80 / -20..+60 / -20..+40 / -10..+50 eV around the half step (a XANES export; the crops
  of machine-learning datasets start as close as 10 eV below the edge);
* ``maxcut-30+80`` / ``maxcut-10+50``: the same crops of the normalised spectrum divided by their
  maximum (datasets and papers that scale each spectrum to a maximum of 1, the white line's top);
* ``flat``: the spectrum as Athena's "flattened" export holds it: above e0 the post-edge curve's
  rise over the pre-edge line is taken out, so the spectrum levels off at 1 (the other common
  export of normalised data).

Reported per change: O6 and T4 recall of the non-ambiguous records, unsure answers, wrong answers
with probability > 0.9 (O6, T4, S5 and other records), and how many answers changed against the
unchanged records.

    XANESDB_HOME=<bundled database> python benchmarks/bench_measured_stress.py [--changes shift+3,broad1.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_measured import SHARED, end_scan, load_records, score, shipped_models  # noqa: E402


def _uniform(e: np.ndarray, y: np.ndarray, step: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    g = np.arange(e[0], e[-1] + step / 2, step)
    return g, np.interp(g, e, y)


def gaussian_blur(e: np.ndarray, mu: np.ndarray, fwhm_ev: float) -> np.ndarray:
    """``mu`` convolved with a Gaussian of ``fwhm_ev`` (on a 0.1 eV grid, back on the original points)."""
    g, y = _uniform(e, mu)
    sigma = fwhm_ev / 2.3548 / 0.1
    half = int(4 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.concatenate([np.full(half, y[0]), y, np.full(half, y[-1])])
    return np.interp(e, g, np.convolve(pad, k, mode="valid"))


def self_absorbed(e: np.ndarray, mu: np.ndarray, b: float) -> np.ndarray:
    """Thick-sample fluorescence of ``mu``: the normalised spectrum n becomes n (1 + b) / (n + b),
    put back on the raw pre-edge line and edge step."""
    from xanesdb.xas.normalize import pre_edge

    n = pre_edge(e, mu)
    line = mu - n.norm * n.edge_step
    norm = np.clip(n.norm, -0.5 * b, None)
    return line + n.edge_step * norm * (1.0 + b) / (norm + b)


def change(s, name: str, rng: np.random.Generator):
    """The spectrum ``s`` as the change ``name`` (see module notes) would have measured it."""
    from xanesdb.xas.normalize import half_step_energy, pre_edge

    e, mu = s.energy, s.mu
    n = pre_edge(e, mu)  # the record as xanesdb normalises it, and its half step
    e_half = half_step_energy(e, n.norm, e0=n.e0)
    if name.startswith("shift"):
        return dataclasses.replace(s, energy=e + float(name[5:]))
    if name.startswith("broad"):
        return dataclasses.replace(s, mu=gaussian_blur(e, mu, float(name[5:])))
    if name.startswith("selfabs"):
        return dataclasses.replace(s, mu=self_absorbed(e, mu, float(name[7:])))
    if name.startswith("noise"):
        return dataclasses.replace(s, mu=mu + rng.normal(0.0, float(name[5:]) * n.edge_step, len(mu)))
    if name.startswith("glitch"):  # monochromator glitches: 3 single points off by +-size edge steps near the edge
        near = np.flatnonzero((e > e_half - 10) & (e < e_half + 45))
        out = mu.copy()
        for i in rng.choice(near, size=min(3, len(near)), replace=False):
            out[i] += rng.choice([-1.0, 1.0]) * float(name[6:]) * n.edge_step
        return dataclasses.replace(s, mu=out)
    if name.startswith("coarse"):
        g = np.arange(e[0], e[-1], float(name[6:]))
        return dataclasses.replace(s, energy=g, mu=np.interp(g, e, mu))
    if name.startswith("pre"):
        keep = e >= e_half + float(name[3:])
        return dataclasses.replace(s, energy=e[keep], mu=mu[keep])
    if name.startswith("end"):
        return end_scan(s, float(name[3:]))
    if name.startswith("normcut"):
        lo, hi = (float(v) for v in name[7:].replace("+", " ").split())
        keep = (e >= e_half + lo) & (e <= e_half + hi)
        return dataclasses.replace(s, energy=e[keep], mu=n.norm[keep])
    if name.startswith("maxcut"):
        lo, hi = (float(v) for v in name[6:].replace("+", " ").split())
        keep = (e >= e_half + lo) & (e <= e_half + hi)
        return dataclasses.replace(s, energy=e[keep], mu=n.norm[keep] / n.norm[keep].max())
    if name == "flat":
        above = e >= n.e0
        flat = n.norm.copy()
        flat[above] += 1.0 - (n.post_curve[above] - n.pre_line[above]) / n.edge_step
        return dataclasses.replace(s, mu=flat)
    raise ValueError(f"unknown change {name!r}")


CHANGES = ("shift+3", "shift-3", "broad1.5", "selfabs2", "selfabs0.7", "noise0.01", "glitch0.1", "glitch0.3", "coarse1",
           "pre-15", "pre-30", "pre-50", "end+40", "end+50", "end+80", "normcut-30+80", "normcut-20+60", "normcut-20+40", "normcut-10+50", "maxcut-30+80", "maxcut-10+50", "flat")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--changes", default=",".join(CHANGES))
    ap.add_argument("--elements", default="Ti,V,Mn,Fe,Ni,Cu")
    ap.add_argument("--min-confidence", type=float, default=0.5)
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="Take each absorber's model from this folder (<El>-K-aligned) where it has one.")
    ap.add_argument("--short-models-dir", type=Path, default=None,
                    help="Answer a scan that ends too early for the full model with the short-scan model of this folder "
                         "(<El>-K-aligned); default: those that ship (xanesdb/data/models/short), as predict does.")
    ap.add_argument("--json", type=Path, default=None, help="Write every answer here.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    records = load_records(args.data)
    elements = [e for e in args.elements.split(",") if e]
    models = shipped_models(elements, args.models_dir)
    short = shipped_models(elements, args.short_models_dir, short=True)
    base = score(records, models, "auto", args.min_confidence, short_models=short)
    answers = {x["id"]: x["predicted"] for x in base["rows"]}
    results = {"none": base}
    print("| change | O6 recall | T4 recall | unsure | other right | wrong with p > 0.9 | answers changed | seconds |")
    print("|---|---|---|---|---|---|---|---|")

    def line(name, r, t):
        moved = sum(answers[x["id"]] != x["predicted"] for x in r["rows"])
        print(f"| {name} | {r['recall']['O6']:.2f} | {r['recall']['T4']:.2f} | {r['unsure']}/{r['n_core']} | "
              f"{r['recall_other'][0]}/{r['recall_other'][1]} | {r['wrong_over_0.9']} | {moved}/{len(r['rows'])} | "
              f"{t:.0f} |", flush=True)  # fmt: skip

    line("none", base, 0.0)
    for name in [c for c in args.changes.split(",") if c]:
        t0 = time.time()
        rng = np.random.default_rng(args.seed)
        changed = [(r, change(s, name, rng)) for r, s in records]
        res = score(changed, models, "auto", args.min_confidence, short_models=short)
        results[name] = res
        line(name, res, time.time() - t0)
    print("\nanswers that changed (record: unchanged -> changed, best class and probability)")
    for name, r in results.items():
        for x in r["rows"]:
            if name != "none" and answers[x["id"]] != x["predicted"]:
                best = f"{x['best']} {x['confidence']:.2f}" if x["best"] else x.get("reason", "")
                print(f"  {name:11s} {x['id']:24s} {x['true']:6s}{'*' if x['ambiguous'] else ' '} "
                      f"{answers[x['id']]:6s} -> {x['predicted']:6s} ({best})")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
