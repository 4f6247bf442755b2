"""HERFD spectra broadened as conventional ones (xanesdb.xas.herfd) before the shipped models read them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from xanesdb.xas.herfd import herfd_spectra, lifetime_gap_ev, looks_like_herfd, mono_gap_sigma_ev, to_conventional

HERFD_PRJ = ("experimental_dev", "athena", "CuHERFD_standards.prj")


def test_broadening_widths_from_the_tables():
    # Cu: Γ_K 1.55 eV, Γ_L3 0.56 eV (Krause & Oliver, via xraydb) -> Γ_eff 0.53, gap 1.02 eV
    assert lifetime_gap_ev("Cu") == pytest.approx(1.02, abs=0.02)
    # the gap grows with Z as the K width does
    assert lifetime_gap_ev("Ti") < lifetime_gap_ev("Fe") < lifetime_gap_ev("Cu")
    # Si(111) 1.33e-4 vs Si(311) 2.7e-5 at the Cu K edge: sqrt(1.194^2 - 0.242^2) / 2.355
    assert mono_gap_sigma_ev(8979.0) == pytest.approx(0.497, abs=0.005)


def _step_with_peak(name="x.dat", group=None, meta=None):
    from xanesdb.xas.readers import MeasuredSpectrum

    e = np.arange(8900.0, 9100.0, 0.1)
    mu = 1 / (1 + np.exp(-(e - 8985) / 0.5)) + 1.5 * np.exp(-0.5 * ((e - 8997) / 0.4) ** 2)
    return MeasuredSpectrum(name=name, path=name, group=group, energy=e, mu=mu, absorber=None, edge=None,
                            kind="columns", mu_source="column 2", energy_shift_ev=0.0, meta=meta or {})  # fmt: skip


def test_conversion_broadens_keeps_the_step_and_says_so():
    s = _step_with_peak()
    c = to_conventional(s, "Cu")
    # the sharp line is lower and wider, its area and the edge step kept
    assert c.mu.max() - 1 < 0.6 * (s.mu.max() - 1)
    above = c.energy > 9050
    assert np.allclose(c.mu[above], s.mu[above], atol=0.02)
    peak = (c.energy > 8990) & (c.energy < 9004)
    assert np.trapezoid(c.mu[peak], c.energy[peak]) == pytest.approx(np.trapezoid(s.mu[peak], s.energy[peak]), rel=0.05)
    assert "HERFD broadened" in c.mu_source and c.meta["herfd"]["lorentzian_fwhm_ev"] == pytest.approx(1.02, abs=0.02)
    assert np.array_equal(c.energy, s.energy) and s.mu.max() > 2  # the input is untouched


def test_herfd_named_by_file_group_or_xdi_header():
    assert looks_like_herfd(_step_with_peak(name="Cu2O_HERFD.dat"))
    assert looks_like_herfd(_step_with_peak(name="a.prj:CuHERFD_Cu2O", group="CuHERFD_Cu2O"))
    assert looks_like_herfd(_step_with_peak(meta={"xdi": {"detector.mode": "high energy resolution fluorescence"}}))
    assert looks_like_herfd(_step_with_peak(name="CuO_HR-XANES.csv"))
    assert looks_like_herfd(_step_with_peak(meta={"xdi": {"detector.fluor": "Si(444) crystal analyzer, Cu Ka1"}}))
    assert not looks_like_herfd(_step_with_peak(name="cu2o_fluo.dat"))
    # the transmission reference of a HERFD beamtime is no HERFD spectrum
    foil = _step_with_peak(name="CuHERFD_beamtime.prj:Cu foil transmission", group="Cu foil transmission")
    assert not looks_like_herfd(foil)
    assert not looks_like_herfd(dataclasses.replace(_step_with_peak(name="cu_herfd.xdi"), mu_source="ln(i0/itrans)"))
    assert not looks_like_herfd(_step_with_peak(name="cu_transmission.xdi"))


def test_modes_and_failures():
    plain, named = _step_with_peak(), _step_with_peak(name="s_herfd.dat")
    out, failed = herfd_spectra([plain, named], "auto")
    assert out[0] is plain and "herfd" in out[1].meta and not failed
    out, failed = herfd_spectra([plain, named], "no")
    assert out == [plain, named]
    out, failed = herfd_spectra([plain], "yes")
    assert "herfd" in out[0].meta
    # no tabulated edge near e0 and none in the file: a failure, the others go on
    lost = dataclasses.replace(named, energy=named.energy - 8000)
    out, failed = herfd_spectra([lost, named], "auto")
    assert len(out) == 1 and len(failed) == 1 and "absorber is unknown" in failed[0][1]
    with pytest.raises(ValueError, match="auto, yes, no"):
        herfd_spectra([plain], "maybe")


def test_predict_reads_herfd_cu2o_as_conventional_cuprite(shared_data, capsys):
    """The development set's HERFD Cu2O is an outlier to the Cu model until broadened (issue 16)."""
    from tests.test_predict_cli import _run

    prj = str(shared_data.joinpath(*HERFD_PRJ))
    args = ["predict", prj, "-g", "CuHERFD_Cu(I)O.001", "-f", "json"]
    code, out, err = _run(args, capsys)
    (auto,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "HERFD broadened" in auto["mu_from"] and "HERFD, broadened" in auto["note"]
    assert auto["predicted"] == "other" and auto["probabilities"]["other"] > 0.6
    code, out, err = _run([*args, "--herfd", "no"], capsys)
    (raw,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "HERFD" not in raw["mu_from"] + (raw["note"] or "") and raw["predicted"] == "unsure"
    code, out, err = _run([*args, "--herfd", "maybe"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "auto, yes, no" in err
