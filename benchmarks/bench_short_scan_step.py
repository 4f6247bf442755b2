"""How well does a short raw scan's normalisation find the edge step of the whole scan?

Every group of the development projects (``experimental_dev``: Athena projects and XDI files)
whose raw scan runs from 150 eV or more below e0 to 300 eV or more above it is cut to start
``lo`` and end ``hi`` eV around e0 (e0 of the whole scan) and normalised again, with
:func:`xanesdb.xas.normalize.pre_edge` as it is (a scan ending within 100 eV of e0 takes its step as
the level of mu over the pre-edge line) and with Athena's rule (``level_short=False``: a line
fitted from a third of the post-edge range), and as ``xanesdb predict`` does for a scan whose absorber
has a shipped model: the level's step matched to the model's mean training spectrum
(:func:`xanesdb.xas.normalize.refine_level_step`; scans of other absorbers, e.g. metal foils of Zn,
keep the level's step). Reported: the median and 90th percentile of ``|step / step of the whole
scan - 1|``.

    python benchmarks/bench_short_scan_step.py [--out benchmarks/results/short_scan_step.txt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _report import finish  # benchmarks run as scripts: their folder is on sys.path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental_dev"
STARTS = (-150.0, -50.0, -30.0, -20.0)
ENDS = (45.0, 50.0, 60.0, 80.0, 100.0, 120.0, 150.0)


def long_raw_scans(data: Path):
    """(name, energy, mu, whole-scan normalisation, absorber) of every group with a long raw scan."""
    from xanesdb.ml.predict import absorber_of
    from xanesdb.xas.normalize import pre_edge
    from xanesdb.xas.readers import read_files

    paths = sorted((data / "athena").glob("*")) + sorted((data / "xdi").glob("*"))
    spectra, _ = read_files(paths)
    out = []
    for s in spectra:
        e, mu = np.asarray(s.energy, dtype=float), np.asarray(s.mu, dtype=float)
        try:
            full = pre_edge(e, mu)
        except ValueError:
            continue
        if e[-1] - full.e0 >= 300 and e[0] - full.e0 <= -150:
            out.append((s.name, e, mu, full, absorber_of(s)[0]))
    return len(spectra), out


def main(argv: list[str] | None = None) -> int:
    from xanesdb.ml.inputs import expected_spectrum
    from xanesdb.ml.portable import load_portable, shipped_model_dir
    from xanesdb.xas.normalize import pre_edge, refine_level_step

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    n_all, scans = long_raw_scans(args.data)
    expected = {}
    for el in {x[4] for x in scans if x[4]}:
        d = shipped_model_dir(el)
        if d is not None:
            expected[el] = expected_spectrum(load_portable(d)[0])
    lines = [f"# python benchmarks/bench_short_scan_step.py: {len(scans)} of the {n_all} groups of experimental_dev run "
             "from -150 eV or lower to +300 eV or higher around e0; each cut to [start, end] eV around its whole scan's e0",
             "| start (eV) | end (eV) | scans | Athena line: median | Athena line: 90th pct | level: median | level: 90th pct | "
             f"matched to the model ({sum(x[4] in expected for x in scans)} scans have one): median | 90th pct |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for lo in STARTS:
        for hi in ENDS:
            athena, ours, matched = [], [], []
            for _, e, mu, full, el in scans:
                keep = (e >= full.e0 + lo) & (e <= full.e0 + hi)
                try:
                    a = pre_edge(e[keep], mu[keep], full.e0, level_short=False)
                    b = pre_edge(e[keep], mu[keep], full.e0)
                except ValueError:
                    continue
                athena.append(abs(a.edge_step / full.edge_step - 1))
                ours.append(abs(b.edge_step / full.edge_step - 1))
                c = refine_level_step(e[keep], b, *expected[el]) if expected.get(el) is not None else b
                matched.append(abs(c.edge_step / full.edge_step - 1))
            lines.append(f"| {lo:+.0f} | {hi:+.0f} | {len(ours)} | {np.median(athena):.3f} | {np.percentile(athena, 90):.3f} | "
                         f"{np.median(ours):.3f} | {np.percentile(ours, 90):.3f} | "
                         f"{np.median(matched):.3f} | {np.percentile(matched, 90):.3f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    return finish(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
