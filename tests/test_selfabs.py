"""Self-absorption of fluorescence spectra (xanesdb.xas.selfabs) and ``xanesdb predict --self-absorption``."""

from __future__ import annotations

import numpy as np
import pytest

from xanesdb.xas.selfabs import correct_self_absorption, corrected, fluo_alpha, self_absorbed


def test_alpha_from_tabulated_cross_sections():
    # pure hematite: the absorption apart from the Fe K step is 0.40 of it (strong self-absorption);
    # diluted to 0.5 wt% in BN it is 12 times the step (hardly any)
    assert fluo_alpha("Fe2O3", "Fe") == pytest.approx(0.40, abs=0.01)
    assert fluo_alpha("Fe0.002B0.998N0.998", "Fe") > 10
    # grazing exit: the fluorescence escapes from a shallow layer only, so self-absorption is weaker (alpha larger)
    assert fluo_alpha("Fe2O3", "Fe", angle_in=45, angle_out=10) > fluo_alpha("Fe2O3", "Fe")
    # potassium absorbs at the Cr K edge: K2CrO4 flattens less than Cr2O3
    assert fluo_alpha("K2CrO4", "Cr") > fluo_alpha("Cr2O3", "Cr")


@pytest.mark.parametrize("formula, absorber, words", [
    ("fe2o3", "Fe", "capitals"),
    ("Xx2O", "Fe", "cannot read the formula"),
    ("", "Fe", "formula is empty"),
    ("NiO", "Fe", "has no Fe"),
])  # fmt: skip
def test_formula_errors_say_what_to_give(formula, absorber, words):
    with pytest.raises(ValueError, match=words) as exc:
        fluo_alpha(formula, absorber)
    assert ":)" not in str(exc.value) and "\n" not in str(exc.value)


def test_correction_inverts_the_thick_sample_model():
    n = np.concatenate([np.linspace(0, 1.6, 50), np.linspace(1.6, 0.9, 50)])
    for alpha in (0.4, 2.0, 20.0):
        f = self_absorbed(n, alpha)
        assert f[0] == pytest.approx(0) and self_absorbed([1.0], alpha)[0] == pytest.approx(1.0)
        assert f.max() < n.max()  # the white line flattens ...
        assert self_absorbed([0.1], alpha)[0] > 0.1  # ... and the foot of the edge grows
        assert np.allclose(corrected(f, alpha), n)
    with pytest.raises(ValueError, match="cannot give"):
        corrected([0.2, 1.5], 0.4)  # 1.5 > 1 + 0.4: not a thick sample of that formula


def test_raw_spectrum_correction_keeps_background_and_step():
    e = np.arange(6950.0, 7500.0, 0.5)
    n = 1 / (1 + np.exp(-(e - 7125) / 1.5)) + 0.5 * np.exp(-0.5 * ((e - 7133) / 3) ** 2)
    background = 0.3 - 2e-5 * (e - 7000)
    step = 0.8
    raw = background + step * self_absorbed(n, 0.5)
    fixed = correct_self_absorption(e, raw, 0.5)
    from xanesdb.xas.normalize import pre_edge

    a, b = pre_edge(e, background + step * n), pre_edge(e, fixed)
    assert b.edge_step == pytest.approx(a.edge_step, rel=0.02)
    assert np.max(b.norm) == pytest.approx(np.max(a.norm), abs=0.03)


def _fluorescence_file(path, shared_data, alpha_formula="Fe2O3"):
    """Measured hematite (experimental_dev) as thick-sample fluorescence of pure Fe2O3 would record it."""
    from xanesdb.xas.normalize import pre_edge
    from xanesdb.xas.readers import read_spectra

    (s,) = read_spectra(shared_data / "experimental_dev" / "athena" / "Fe.prj", groups=["Hematite"])
    n = pre_edge(s.energy, s.mu)
    i0 = 1e5 * (1 + 0.1 * np.sin(s.energy / 50))
    ifl = (0.02 + self_absorbed(n.norm, fluo_alpha(alpha_formula, "Fe"))) * i0 * 0.01
    np.savetxt(path, np.c_[s.energy, i0, ifl], header="energy i0 ifluor", comments="# ")
    return path


def test_predict_corrects_fluorescence_when_given_the_formula(tmp_path, shared_data, capsys):
    from tests.test_predict_cli import _run

    f = _fluorescence_file(tmp_path / "hematite_fluo.dat", shared_data)
    code, out, err = _run(["predict", str(f), "-f", "json"], capsys)
    import json

    (raw,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "self-absorption" in raw["note"] and raw["mu_from"] == "ifluor/i0"
    code, out, err = _run(["predict", str(f), "-f", "json", "--self-absorption", "Fe2O3"], capsys)
    (fixed,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "self-absorption corrected for Fe2O3" in fixed["mu_from"] and not fixed["note"]
    # flattened, hematite reads as tetrahedral; corrected, it is octahedral again
    assert raw["probabilities"]["O6"] < 0.5 <= fixed["probabilities"]["O6"]
    assert fixed["predicted"] == "O6"


def test_predict_self_absorption_errors(tmp_path, shared_data, capsys):
    from tests.test_predict_cli import _run

    f = _fluorescence_file(tmp_path / "hematite_fluo.dat", shared_data)
    nio = shared_data / "experimental_dev" / "athena" / "NiO.prj"
    # a formula that cannot be read stops the batch with one line, exit 2, nothing printed
    code, out, err = _run(["predict", str(f), "--self-absorption", "fe2o3"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "capitals" in err
    code, out, err = _run(["predict", str(f), "--self-absorption", "Fe2O3", "--fluo-angles", "45"], capsys)
    assert code == 2 and out == "" and "two angles" in err
    # the NiO spectrum has no Ni in the formula: an error row, the hematite one is still predicted
    code, out, err = _run(["predict", str(f), str(nio), "--self-absorption", "Fe2O3", "-f", "csv"], capsys)
    assert code == 2 and "has no Ni" in out and ",O6," in out


def test_training_copies_with_self_absorption_keep_the_half_step():
    """MeasurementModel.self_absorption flattens the white line of measured-like copies and moves
    each back so that its half step stays at the grid's origin (as xanesdb aligns a measurement)."""
    from xanesdb.ml.augment import self_absorb
    from xanesdb.xas.normalize import half_step_energy
    from xanesdb.xas.align import ALIGNED_GRID

    e = ALIGNED_GRID.astype(float)
    y = 1 / (1 + np.exp(-e / 1.2)) + 0.6 * np.exp(-0.5 * ((e - 6) / 2.5) ** 2)
    Y = np.stack([y, y, y])
    Z = self_absorb(Y, e, [0.0, 0.5, 2.0])
    assert np.allclose(Z[0], y, atol=1e-5)
    assert Z[2].max() < Z[1].max() < y.max()
    assert [half_step_energy(e, z, e0=0.0) for z in Z] == pytest.approx([half_step_energy(e, y, e0=0.0) for y in Y], abs=0.05)


def _xdi(path, energy, columns: dict, formula: str):
    names = ["energy", *columns]
    head = ["XDI/1.0", *(f"Column.{k}: {n}{' eV' if n == 'energy' else ''}" for k, n in enumerate(names, 1)),
            "Element.symbol: Fe", "Element.edge: K", f"Sample.formula: {formula}", "///", "-" * 20, " ".join(names)]
    np.savetxt(path, np.column_stack([energy, *columns.values()]), header="\n".join(head), comments="# ")
    return path


def test_a_named_sample_in_fluorescence_says_what_the_correction_would_answer(tmp_path, shared_data, capsys):
    """An XDI fluorescence file that names its sample gets, in its note, the answer corrected as a
    thick sample of that pure compound, and keeps its own answer (dilution is not in the spectrum)."""
    import json

    from tests.test_predict_cli import _run
    from xanesdb.xas.readers import read_spectra

    energy, i0, ifl = np.loadtxt(_fluorescence_file(tmp_path / "thick.dat", shared_data), unpack=True)
    thick = _xdi(tmp_path / "hematite_thick.xdi", energy, {"i0": i0, "ifluor": ifl}, "Fe2O3")
    (s,) = read_spectra(shared_data / "experimental_dev" / "athena" / "Fe.prj", groups=["Hematite"])
    trans = _xdi(tmp_path / "hematite_trans.xdi", s.energy, {"i0": np.full(len(s.mu), 1e5), "itrans": 1e5 * np.exp(-s.mu)}, "Fe2O3")
    code, out, _ = _run(["predict", str(thick), str(trans), "-f", "json"], capsys)
    fluo, tr = (json.loads(line) for line in out.splitlines())
    assert code == 0
    assert fluo["predicted"] != "O6" and fluo["if_undiluted"]["predicted"] == "O6"  # flattened, and as corrected
    assert "corrected as a thick sample of Fe2O3 (the file's Sample.formula) it reads O6" in fluo["note"]
    assert "give --self-absorption Fe2O3" in fluo["note"]
    assert tr["predicted"] == "O6" and "if_undiluted" not in tr and "thick sample" not in (tr["note"] or "")
    # the measured hematite sent as fluorescence: higher than pure thick Fe2O3 can record, so said, answer kept
    flat = _xdi(tmp_path / "hematite_as_fluo.xdi", s.energy, {"i0": np.full(len(s.mu), 1e5), "ifluor": 1e3 * s.mu},
                "Fe2O3")  # fmt: skip
    code, out, _ = _run(["predict", str(flat), "-f", "json"], capsys)
    (h,) = (json.loads(line) for line in out.splitlines())
    assert h["predicted"] == "O6" and "higher than a thick sample of Fe2O3 can record" in h["note"]
    # a diluted sample, named as such: hardly any self-absorption, the same answer either way
    dilute = _xdi(tmp_path / "hematite_bn.xdi", energy, {"i0": i0, "ifluor": i0 * (0.02 + np.interp(
        energy, s.energy, (s.mu - s.mu[:20].mean()) / np.ptp(s.mu)))}, "Fe0.02O0.03B0.99N0.99")  # fmt: skip
    code, out, _ = _run(["predict", str(dilute), "-f", "json"], capsys)
    (d,) = (json.loads(line) for line in out.splitlines())
    assert d["predicted"] == "O6" and d["if_undiluted"]["best_class"] == "O6"  # little to correct
    assert "corrected as a thick sample of Fe0.02O0.03B0.99N0.99" in d["note"]
