"""What do the shipped models answer for a compound they never saw, measured as the calibration says?

Chromates (Cr(VI) in isolated tetrahedra) are among the reference spectra users measure first, and
no measured Cr spectrum is at hand. This benchmark takes the FEFF spectra of a compound from a
database the shipped models were not trained on (e.g. a ``XANESDB_HOME`` holding only
``lit:beta_k2so4:K2CrO4``, computed with ``xanesdb feff run --preset fast|scflite``) and makes
each one look measured with the shipped model's own maps: the ``fast -> scf`` fidelity correction
(``fast`` spectra only) and the computed -> measured calibration of its card (energy scale,
shift, broadening, damping). FEFF's pre-edge sits inside the edge, so a measured-like pre-edge
region is put in front: from 40 to 5 eV below the half step, zero plus one Gaussian peak (0.8 eV
standard deviation) 12 eV below the half step, of each height asked for (0: none). Each copy is
written as a CSV file and read back through :func:`xanesdb.predict`, the path a user's file takes
(normalisation, half-step alignment, pre-edge rules, networks, reference vote, outlier test).

With ``--raw-starts``, each copy is written instead as a raw transmission scan: zero below the
pre-edge region, the spectrum relaxing to the edge step past its grid, an edge step of 0.8 on a
background falling 0.0015 a eV, noise of 0.002, from each start (eV below the half step) to
300 eV above it; so the Athena-style normalisation of predict runs too, on scans that start as
close to the edge as XANES scans do.

With ``--maps SIGMAS:DAMPINGS``, every pair of Gaussian (eV) and damping replaces the
calibration's own, so a scan sharper than the calibration (a low-temperature one, a better
resolution) or broader is read too.

With ``--pooled``, the pooled model that ships (``all``, trained on Ti-Cu together) answers, for an
absorber it was never trained on as well (Zn: ``xanesdb sites label -e Zn``, ``xanesdb feff run -e Zn
--preset scflite``, ``xanesdb spectra build -e Zn`` first); ``xanesdb predict`` refuses such
absorbers, and this measures why.

With ``--models DIR``, the model of ``DIR/<El>-K-aligned`` answers instead of the shipped one: the
shipped recipe retrained without the compound, so a compound the shipped model was trained on can
still test generalisation (``scripts/train_shipped_models.py --elements Cr --preset
scf,scflite,scfwide,fast --exclude-materials left_out.json --out DIR``; the second line of the
output names the materials left out).

    XANESDB_HOME=/tmp/xcr python benchmarks/bench_unseen_compound.py --query '{"element": "Cr"}' \\
        [--pre-edge 0,0.35,0.45,0.6,0.9] [--raw-starts 150,50,30,20] [--out benchmarks/results/unseen_k2cro4.txt]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from _report import finish  # benchmarks run as scripts: their folder is on sys.path

PRE_EDGE_EV = -12.0
PRE_EDGE_SIGMA_EV = 0.8
PRE_REGION_EV = (-40.0, -5.0)
HALF_STEP_ABOVE_EDGE_EV = 12.0  # where a measured half step lies above the tabulated K edge (default --e0)


def measured_like(query: dict, card: dict, maps: list[tuple[float, float]] | None = None,
                  ) -> list[tuple[str, str, str, str, np.ndarray]]:  # fmt: skip
    """(spectrum id, preset, label, map, aligned measured-like spectrum) of every spectrum ``query``
    selects, once for each (Gaussian sigma eV, damping) of ``maps`` in place of the calibration's own
    (None: the card's calibration as it is)."""
    from xanesdb.ml.aligned import load_aligned_dataset
    from xanesdb.platform.stores import get_database
    from xanesdb.xas.align import ALIGNED_GRID
    from xanesdb.xas.calibration import MeasurementCalibration
    from xanesdb.xas.fidelity import FidelityWarp

    metrics = card["metrics"]
    fid = metrics.get("fidelity")
    fidelity = FidelityWarp(delta=fid["delta"], e1=fid["e1"], sigma=fid["sigma"]) if fid else None
    ds = load_aligned_dataset(query, fidelity=fidelity, use_cache=False)
    cal = metrics.get("measured_calibration")
    versions = [("none", ds.X)]
    if cal:
        own = {k: cal[k] for k in ("shift", "stretch", "sigma", "damping")}
        versions = [(f"{sigma:g} eV, {damping:g}" + ("" if maps else " (card)"),
                     MeasurementCalibration(**{**own, "sigma": sigma, "damping": damping}).apply(ds.X, ALIGNED_GRID))
                    for sigma, damping in (maps or [(own["sigma"], own["damping"])])]  # fmt: skip
    presets = {d["spectrum_id"]: d.get("preset") for d in get_database()["spectra"].find(
        {"spectrum_id": {"$in": list(ds.spectrum_ids)}}, {"_id": 0, "spectrum_id": 1, "preset": 1})}  # fmt: skip
    return [(sid, presets.get(sid, "?"), str(lab), how, y) for how, Y in versions
            for sid, lab, y in zip(ds.spectrum_ids, ds.labels, Y)]  # fmt: skip


def with_pre_edge(y: np.ndarray, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Energies (eV from the half step) and normalised mu: a pre-edge region put before ``y``."""
    from xanesdb.xas.align import ALIGNED_GRID

    e_pre = np.arange(PRE_REGION_EV[0], PRE_REGION_EV[1], 0.5)
    y_pre = height * np.exp(-0.5 * ((e_pre - PRE_EDGE_EV) / PRE_EDGE_SIGMA_EV) ** 2)
    y_pre += y[0] * np.exp(-(((e_pre - PRE_REGION_EV[1]) / 3.0) ** 2))  # meets the edge's first point
    return np.concatenate([e_pre, ALIGNED_GRID]), np.concatenate([y_pre, y])


def _seen_note(model_dir: Path, card: dict, spectrum_ids: list[str]) -> str:
    """Whether the model's training spectra (its reference set) hold the compound."""
    from xanesdb.platform.stores import get_database

    trained = card.get("query", {}).get("element")
    trained = [trained] if isinstance(trained, str) else list((trained or {}).get("$in", []))
    absorbers = sorted(set(get_database()["spectra"].distinct("element", {"spectrum_id": {"$in": spectrum_ids}})))
    if trained and not set(absorbers) & set(trained):
        return (f"it was never trained on {', '.join(absorbers)} spectra (trained on {', '.join(trained)}; some of these "
                "materials' other absorbers were among them)")
    names = set(map(str, np.load(model_dir / "references.npz")["names"]))
    left_out = card.get("query", {}).get("material_id", {}).get("$nin")
    seen = sorted(set(get_database()["spectra"].distinct("material_id", {"spectrum_id": {"$in": spectrum_ids}})) & names)
    if seen:
        return f"the compound is in its training data ({', '.join(seen)}): this checks the reading path, not generalisation"
    return "the compound is not in its training data" + (f" (left out: {', '.join(left_out)})" if left_out else "")


def raw_scan(e: np.ndarray, m: np.ndarray, start: float, rng, overlap: float = 0.0,
             overlap_ev: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A raw transmission scan of the normalised ``(e, m)`` (eV from the half step, from
    :func:`with_pre_edge`) from ``start`` eV below the half step to 300 eV above it (see the module
    notes). ``overlap``: the share of the edge step that another element's edge at ``overlap_ev``
    (eV from the half step) carries, a step as wide as a core hole (2 eV half width) with no
    structure of its own, the absorber's spectrum the rest."""
    lo = np.arange(-start, e[0], 1.0)
    hi = np.arange(e[-1] + 0.5, 300.0, 2.0)
    ee = np.concatenate([lo, e, hi])
    mm = np.concatenate([np.zeros(len(lo)), m, 1.0 + (m[-1] - 1.0) * np.exp(-(hi - e[-1]) / 30.0)])
    keep = ee >= -start
    ee, mm = ee[keep], mm[keep]
    if overlap:
        mm = (1.0 - overlap) * mm + overlap * (0.5 + np.arctan((ee - overlap_ev) / 2.0) / np.pi)
    return ee, 1.5 - 0.0015 * (ee + start) + 0.8 * mm + rng.normal(0.0, 0.002, len(ee))


def main(argv: list[str] | None = None) -> int:
    import xanesdb
    from xanesdb.ml.portable import POOLED, shipped_model_dir, shipped_models
    from xanesdb.xas.edges import edge_energy_of

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--query", required=True, help="JSON filter of the spectra (one absorber)")
    ap.add_argument("--pre-edge", default="0,0.35,0.45,0.6,0.9", help="heights of the pre-edge peak put in front")
    ap.add_argument("--raw-starts", default="", help="write raw transmission scans starting this many eV below "
                    "the half step (comma-separated) instead of normalised spectra")
    ap.add_argument("--e0", type=float, default=None,
                    help="absolute energy given to the half step (eV); default 12 eV above the absorber's tabulated K "
                         "edge, so that predict reads the absorber from it as from a measurement")
    ap.add_argument("--models", type=Path, default=None,
                    help="a folder of portable models laid out as the shipped ones (<El>-K-aligned), e.g. written by "
                         "scripts/train_shipped_models.py --exclude-materials ... --out DIR: a model trained without "
                         "the compound; default: the shipped models")
    ap.add_argument("--maps", default="", help="Gaussians (eV) and dampings put in place of the calibration's own, "
                    "every pair: 'SIGMAS:DAMPINGS', e.g. '0.3,1,2,3:0.8,1,1.3' (sharper or broader than the calibration, "
                    "as a low-temperature scan or another beamline's resolution)")
    ap.add_argument("--overlap", default="", help="with --raw-starts: shares of the edge step (comma-separated) "
                    "that another element's edge at the absorber's tabulated K-edge energy carries, e.g. 0.34 for Ba's "
                    "L1 edge (5989 eV, Cr's K edge) in BaCrO4 by xraydb's cross-sections")
    ap.add_argument("--pooled", action="store_true",
                    help="the shipped pooled model (trained on Ti-Cu together) answers, also for an absorber it was not "
                         "trained on (predict refuses those: this measures why)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    query = json.loads(args.query)
    absorber = query.get("element")
    if absorber is None:
        ap.error("--query must name the absorber: {\"element\": ...}")
    if args.pooled and args.models:
        ap.error("--pooled and --models choose the model both: give one")
    model_dir = (args.models / f"{absorber}-K-aligned" if args.models else shipped_models()[POOLED] if args.pooled
                 else shipped_model_dir(absorber))  # fmt: skip
    if model_dir is None:
        ap.error(f"no shipped model for {absorber}: give --models DIR or --pooled")
    card = json.loads((model_dir / "card.json").read_text())
    if args.e0 is None:
        args.e0 = round(edge_energy_of(absorber) + HALF_STEP_ABOVE_EDGE_EV, 1)
    heights = [float(h) for h in args.pre_edge.split(",")]
    maps = None
    if args.maps:
        try:
            sigmas, dampings = ([float(v) for v in part.split(",")] for part in args.maps.split(":"))
        except ValueError:
            ap.error(f"--maps {args.maps!r}: give Gaussians and dampings as 'SIGMAS:DAMPINGS', e.g. '0.3,1,2:0.8,1'")
        maps = [(g, d) for g in sigmas for d in dampings]
    copies = measured_like(query, card, maps)
    starts = [float(x) for x in args.raw_starts.split(",") if x.strip()] or [None]
    overlaps = [float(x) for x in args.overlap.split(",") if x.strip()] or [0.0]
    if args.overlap and starts == [None]:
        ap.error("--overlap needs --raw-starts: the other edge is put into raw scans")
    overlap_ev = edge_energy_of(absorber) - args.e0  # the tabulated edge, from the half step
    raw = (" --raw-starts " + args.raw_starts if args.raw_starts else "") + (f" --maps {args.maps}" if args.maps else "")
    raw += f" --overlap {args.overlap}" if args.overlap else ""
    raw += " --pooled   (the pooled model answers every copy; predict refuses an absorber it was not trained on)" if args.pooled else ""
    if args.models:
        raw += (f" --models {args.models}   (a model of the shipped recipe trained without the materials named below: "
                "scripts/train_shipped_models.py --exclude-materials)")
    lines = [f"# XANESDB_HOME=<database holding the compound> python benchmarks/bench_unseen_compound.py --query '{args.query}' "
             f"--pre-edge {args.pre_edge}{raw}",
             f"# {'model' if args.models else 'shipped model'} {card.get('run_id')} ({absorber}); "
             + _seen_note(model_dir, card, [sid for sid, *_ in copies]),
             "| spectrum | preset | label | map (Gaussian, damping) | pre-edge put in | scan start | pre-edge measured | answer | "
             "best class | probability | probabilities | reference vote | outlier score | rule |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        files, meta = [], []
        for k, (sid, preset, label, how, y) in enumerate(copies):
            for h in heights:
                e, m = with_pre_edge(y, h)
                for start, share in ((st, sh) for st in starts for sh in overlaps):
                    f = Path(tmp) / f"s{k}_pre{h:g}_from{start}_other{share:g}.csv"
                    ee, mm = (e, m) if start is None else raw_scan(e, m, start, rng, share, overlap_ev)
                    np.savetxt(f, np.c_[ee + args.e0, mm], delimiter=",", header="energy,mu", comments="")
                    files.append(str(f))
                    scan = "normalised" if start is None else f"-{start:g} eV raw" + (f", other edge {share:g}" if share else "")
                    meta.append((sid, preset, label, how, h, scan))
        if args.pooled:
            rows = _pooled_rows(files, model_dir, absorber)
        else:
            rows = xanesdb.predict(files, model=model_dir if args.models else None).to_dict("records")
    for r in rows:  # the frame's error column is NaN on the rows that have none
        if not isinstance(r.get("error"), str):
            r.pop("error", None)
    by_file = {r["file"]: r for r in rows}  # rows of files that could not be read come first
    used = sorted({str(r.get("model")) for r in rows if not r.get("error")})
    if used and used != [str(card.get("run_id"))]:
        lines.insert(2, f"# WARNING: predict answered with {', '.join(used)}, not the {absorber} model: check --e0")
    for (sid, preset, label, how, h, start), r in zip(meta, (by_file[f] for f in files)):
        if r.get("error"):
            lines.append(f"| {sid} | {preset} | {label} | {how} | {h:g} | {start} | | error: {r['error']} | | | | | | |")
            continue
        probs = " ".join(f"{k[2:]} {v:.2f}" for k, v in r.items() if k.startswith("p_") and v == v)
        rule = r["note"].split(": ")[-1] if isinstance(r.get("note"), str) else ""
        lines.append(f"| {sid.split(':K:')[0]} | {preset} | {label} | {how} | {h:g} | {start} | {r.get('preedge_height', 0):.2f} | "
                     f"{r['predicted']} | {r['best_class']} | {r['confidence']:.2f} | "
                     f"{probs} | {r.get('reference_vote', '')} | "
                     f"{r.get('outlier_score', float('nan')):.2f} | {rule} |")  # fmt: skip
    lines += ["", "answers by label (wrong: another class; sure and wrong: another class at probability > 0.9)",
              "| label | copies | right | unsure | wrong | sure and wrong | error |", "|---|---|---|---|---|---|---|"]
    for label in sorted({m[2] for m in meta}):
        got = [by_file[f] for f, m in zip(files, meta) if m[2] == label]
        answered = [r for r in got if not r.get("error")]
        wrong = [r for r in answered if r["predicted"] not in (label, "unsure")]
        lines.append(f"| {label} | {len(got)} | {sum(r['predicted'] == label for r in answered)} | "
                     f"{sum(r['predicted'] == 'unsure' for r in answered)} | {len(wrong)} | "
                     f"{sum(r['confidence'] > 0.9 for r in wrong)} | {len(got) - len(answered)} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    return finish(text, args.out)


def _pooled_rows(files: list[str], model_dir: Path, absorber: str) -> list[dict]:
    """Rows of the pooled model for every file, read as predict reads them, without predict's check
    that the model was trained on the absorber."""
    from xanesdb.api import _rows_frame  # the rows as xanesdb.predict gives them
    from xanesdb.ml.portable import load_portable
    from xanesdb.ml.predict import predict_spectra
    from xanesdb.xas.readers import read_files

    spectra, unread = read_files(files)
    if unread:
        raise SystemExit(f"could not read {len(unread)} of the measured-like files: {unread[0]}")
    doc, model = load_portable(model_dir)
    rows = predict_spectra(doc, model, spectra, absorbers=[absorber] * len(spectra))
    for s, r in zip(spectra, rows):
        r.update(file=str(s.path), model=doc.run_id)
    return _rows_frame(rows, doc.classes).to_dict("records")


if __name__ == "__main__":
    sys.exit(main())
