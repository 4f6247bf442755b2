"""What the measured pre-edge rules out (xanesdb.xas.preedge): O6 under a strong isolated peak, and
for the d0 ions Ti, V, Cr their low-coordinated classes when there is no strong pre-edge at all."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xanesdb.xas.preedge import WEAK_PREEDGE_HEIGHT, preedge_maximum, ruled_out_by_preedge


def _edge(peak: float, start: float = -60.0):
    e = np.arange(start, 80.0, 0.25)
    mu = 0.5 + np.arctan(e / 1.5) / np.pi + peak * np.exp(-0.5 * ((e + 11) / 1.0) ** 2)
    return e, mu


def test_preedge_maximum_sees_a_peak_and_needs_the_pre_edge_measured():
    e, mu = _edge(0.8)
    assert preedge_maximum(e, mu, 0.0) == pytest.approx(0.8 + 0.03, abs=0.05)
    e, mu = _edge(0.1)
    assert preedge_maximum(e, mu, 0.0) < WEAK_PREEDGE_HEIGHT
    e, mu = _edge(0.1, start=-12.0)  # a scan that starts 12 eV below the edge says nothing
    assert preedge_maximum(e, mu, 0.0) is None


@pytest.mark.parametrize(("absorber", "peak", "maximum", "out"), [
    ("Fe", 0.7, 0.72, ("O6",)),          # strong isolated peak: never O6, any absorber
    ("Ti", 0.1, 0.15, ("T4", "S5")),     # Ti(IV) with no strong pre-edge: octahedral (Farges 1997)
    ("V", 0.0, 0.12, ("T4", "S5")),      # V(III/IV) octahedra; V S5 is the vanadyl pyramid, 0.4-0.7
    ("Cr", 0.0, 0.05, ("T4",)),
    ("Ti", 0.35, 0.36, ()),              # between the thresholds: nothing ruled out
    ("Mn", 0.0, 0.05, ()),               # tetrahedral Mn(II) has a weak pre-edge too
    ("Fe", 0.1, 0.12, ()),
    ("Ti", 0.0, None, ()),               # pre-edge not measured
])  # fmt: skip
def test_ruled_out_by_preedge(absorber, peak, maximum, out):
    got, why = ruled_out_by_preedge(absorber, peak, -11.0, maximum)
    assert got == out
    assert (why is None) == (not out)
    if out:
        assert " and ".join(out) in why or "O6 ruled out" in why


def test_predict_applies_the_weak_rule_to_a_measured_ti_spectrum(shared_data):
    """EuTiO3 (regular Ti(IV) octahedra, pre-edge at most ~0.19 of the step) read with the shipped
    Ti model: T4 and S5 get probability 0 and the row says why."""
    from xanesdb.ml.portable import load_portable, shipped_model_dir
    from xanesdb.ml.predict import predict_spectra
    from xanesdb.xas.readers import read_spectra

    doc, model = load_portable(shipped_model_dir("Ti"))
    spectra = [s for s in read_spectra(shared_data / "experimental_dev" / "athena" / "eutio3.prj")][:1]
    (row,) = predict_spectra(doc, model, spectra)
    assert row["preedge_max"] < WEAK_PREEDGE_HEIGHT
    assert row["probabilities"]["T4"] == 0.0 and row["probabilities"]["S5"] == 0.0
    assert row["best_class"] == "O6" and "T4 and S5 ruled out" in row["note"]


def _chromate_like_csv(tmp_path, peak: float = 0.9):
    """CuCrO4's computed Cr(VI) spectrum (shipped) made measured-like by the k-edge calibration, on a
    raw transmission background from 150 eV below to 300 eV above its half step (6005 eV), under a
    pre-edge peak of ``peak`` edge steps 13 eV below the edge; written as a CSV file."""
    import gzip
    import json

    from xanesdb.ml.train import resolve_calibration
    from xanesdb.platform.snapshot import BUNDLED_DB_DIR
    from xanesdb.xas.align import ALIGNED_GRID, align_computed

    with gzip.open(BUNDLED_DB_DIR / "feff_tasks.jsonl.gz", "rt") as fh:
        task = next(d for d in map(json.loads, fh) if d["site_id"] == "mp-504927:Cr:0" and not d.get("distortion"))
    y = align_computed(task["energies"], task["mu"], task.get("mu0"))["y"]
    y = resolve_calibration("k-edge").apply(y[None, :], ALIGNED_GRID)[0]  # as a measurement of it looks
    rel = np.arange(-150.0, 300.0, 0.5)
    m = np.interp(rel, ALIGNED_GRID, y)
    lo, hi = rel < ALIGNED_GRID[0], rel > ALIGNED_GRID[-1]
    m[lo] = y[0] * np.exp((rel[lo] - ALIGNED_GRID[0]) / 2.5)
    m[hi] = 1 + (y[-1] - 1) * np.exp(-(rel[hi] - ALIGNED_GRID[-1]) / 60) + 0.02 * np.sin(rel[hi] / 9)
    m += peak * np.exp(-0.5 * ((rel + 13.0) / 0.8) ** 2)  # the 1s -> 3d pre-edge peak
    e = 6005.0 + rel
    mu = 0.3 + 2e-4 * (e - 6005.0) + 0.8 * m * (1 - 3e-4 * np.clip(rel, 0, None))
    mu += np.random.default_rng(0).normal(0, 0.002, e.size)
    path = tmp_path / f"chromate_like_{peak:g}.csv"
    np.savetxt(path, np.column_stack([e, mu]), delimiter=",", header="energy,mu", comments="")
    return path


def test_a_chromate_like_spectrum_is_aligned_on_its_edge_and_answered_t4(tmp_path):
    """A Cr(VI) tetrahedron measured looks like its computed spectrum (CuCrO4's, shipped) broadened
    as measurements are, under a pre-edge peak of 0.6-1.0 of the edge step some 13 eV below the
    edge (chromates). The half step must come from the edge, not the pre-edge peak, the peak must
    rule out O6, and the shipped Cr model must answer T4 through the CLI's reader and path."""
    from xanesdb.ml.portable import load_portable, shipped_model_dir
    from xanesdb.ml.predict import predict_spectra
    from xanesdb.xas.readers import read_spectra

    path = _chromate_like_csv(tmp_path)

    doc, model = load_portable(shipped_model_dir("Cr"))
    (row,) = predict_spectra(doc, model, read_spectra(path))
    assert abs(row["e_half"] - 6005.0) < 1.0, row["e_half"]  # the edge, not the pre-edge peak at 5992 eV
    assert row["preedge_height"] >= 0.5 and -15 < row["preedge_ev"] < -11
    assert row["probabilities"]["O6"] == 0.0 and "O6 ruled out" in row["note"]
    assert row["best_class"] == "T4"


def test_where_no_strong_pre_edge_rules_out_what_the_networks_hedged_on_the_pre_edge_decides(shared_data):
    """Measured VO2 (V(IV) octahedra) at a resolution 1.5 eV FWHM coarser: its pre-edge stays under
    0.3 of the step, which rules out the vanadyl pyramid (S5) and the V(V) tetrahedron, while the V
    networks, which do not read the pre-edge, put S5 0.65 and T4 0.21 on it. What they left to O6 is
    more than RULED_LEFT_MIN, so the pre-edge decides (O6) and the note says what the networks read."""
    import dataclasses

    from xanesdb.ml.portable import load_portable, shipped_model_dir
    from xanesdb.ml.predict import RULED_LEFT_MIN, RULED_OUT_MAX, predict_spectra
    from xanesdb.xas.normalize import smooth
    from xanesdb.xas.readers import read_spectra

    (s,) = read_spectra(shared_data / "experimental_dev" / "athena" / "Vathena.prj", groups=["V_XANES_VO2_standard.001"])
    coarse = dataclasses.replace(s, mu=smooth(s.energy, s.mu, 1.5 / 2.3548))
    doc, model = load_portable(shipped_model_dir("V"))
    whole, blurred = predict_spectra(doc, model, [s, coarse])
    assert whole["preedge_max"] >= WEAK_PREEDGE_HEIGHT and whole["predicted"] == "S5"  # the rule does not fire
    assert blurred["preedge_max"] < WEAK_PREEDGE_HEIGHT
    read = [float(v) for v in re.findall(r"(?:S5|T4) ([0-9.]+)", blurred["note"].split(";")[0])]
    assert sum(read) >= RULED_OUT_MAX and 1.0 - sum(read) >= RULED_LEFT_MIN
    assert blurred["predicted"] == "O6" and blurred["reason"] is None
    assert blurred["probabilities"]["S5"] == blurred["probabilities"]["T4"] == 0.0
    assert "answered by the pre-edge" in blurred["note"] and "T4 and S5 ruled out" in blurred["note"]


def test_where_no_pre_edge_contradicts_what_the_networks_are_sure_of_the_answer_is_unsure(tmp_path):
    """The chromate-like spectrum without its pre-edge peak (as FEFF computes one, never measured): no
    strong pre-edge rules out T4 for Cr, which the networks read with near certainty, so they left
    the classes still allowed under RULED_LEFT_MIN and the answer is unsure, not O6 by elimination."""
    from xanesdb.ml.portable import load_portable, shipped_model_dir
    from xanesdb.ml.predict import RULED_LEFT_MIN, predict_spectra
    from xanesdb.xas.readers import read_spectra

    doc, model = load_portable(shipped_model_dir("Cr"))
    (row,) = predict_spectra(doc, model, read_spectra(_chromate_like_csv(tmp_path, peak=0.0)))
    assert row["preedge_max"] < WEAK_PREEDGE_HEIGHT
    assert row["predicted"] == "unsure" and "which its pre-edge rules out" in row["reason"]
    read = float(re.search(r"reads the spectrum as T4 ([0-9.]+)", row["reason"]).group(1))
    assert 1.0 - read < RULED_LEFT_MIN
