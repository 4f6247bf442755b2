"""Readers of measured spectra (xanesdb.xas.readers) against the dev set and xraylarch's output.

``tests/test_data/measured/larch_reference.json`` was written by ``scripts/make_reader_fixture.py``
with xraylarch (not a xanesdb dependency): larch's energies there are WITHOUT Athena's bkg_eshift,
ours have it added, so the comparison subtracts it. Malformed inputs are small files in tmp_path.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.xas import readers
from xanesdb.xas.readers import MeasuredSpectrum, detect_format, read_spectra

TEST_DATA = Path(__file__).resolve().parent / "test_data"
LARCH = json.loads((TEST_DATA / "measured" / "larch_reference.json").read_text())
XMU_DAT = TEST_DATA / "feff" / "CuO_Cu_K_fast" / "outputs" / "xmu.dat"
OPTIONS_HINT = ("--energy-col", "--mu-col")


@pytest.fixture
def dev(shared_data) -> Path:
    return shared_data / "experimental_dev"


def _labels(dev: Path) -> list[dict]:
    return json.loads((dev / "labels.json").read_text())


def _refused(path, match: str = "", **kw) -> str:
    """Read ``path`` expecting a one-line XanesdbUserError that names the file; return the message."""
    with pytest.raises(XanesdbUserError) as exc:
        read_spectra(path, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert str(path) in msg, msg
    assert match.lower() in msg.lower(), msg
    return msg


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _rows(n=40, e0=7100.0, step=1.0, ncol=2) -> list[list[float]]:
    return [[e0 + i * step] + [1.0 + 0.01 * i + c for c in range(ncol - 1)] for i in range(n)]


def _csv(rows, header=None, sep=",") -> str:
    lines = [sep.join(header)] if header else []
    return "\n".join(lines + [sep.join(f"{v:.6f}" for v in r) for r in rows]) + "\n"


# --- Athena projects ------------------------------------------------------------------------------

def test_every_labelled_group_found_by_label_with_its_shift(dev):
    larch = {(r["file"], r.get("label")): r for r in LARCH["athena"]}
    records = _labels(dev)
    assert len(records) == 48
    for rec in records:
        (s,) = read_spectra(dev / rec["athena_file"], groups=[rec["athena_group"]])
        assert isinstance(s, MeasuredSpectrum) and s.kind == "athena"
        assert s.group == rec["athena_group"]
        assert s.name == f"{Path(rec['athena_file']).name}:{rec['athena_group']}"
        assert s.energy_shift_ev == pytest.approx(rec["energy_shift_ev"], abs=1e-9)
        ref = larch[(rec["athena_file"], rec["athena_group"])]
        assert len(s.energy) == ref["n"]
        # larch leaves the shift out of its energies; ours has it added
        assert s.energy[0] == pytest.approx(ref["energy_first"] + rec["energy_shift_ev"], abs=1e-6)
        assert s.energy[-1] == pytest.approx(ref["energy_last"] + rec["energy_shift_ev"], abs=1e-6)
        assert s.energy.dtype == np.float64 and np.all(np.diff(s.energy) > 0)
        if rec["athena_group"] == "V_XANES_V2O3_standard.001":
            # Athena guessed La L3 from e0 (~5474.5 eV) and stored it as bkg_z/fft_edge; it is V K
            assert (s.absorber, s.edge) == ("La", "L3")
        else:
            assert (s.absorber, s.edge) == (rec["absorber"], "K")


def test_mn3o4_carries_its_19_ev_shift(dev):
    (s,) = read_spectra(dev / "athena" / "Mn.prj", groups=["Mn3O4"])
    assert s.energy_shift_ev == pytest.approx(19.1)
    assert s.meta["athena_e0"] == pytest.approx(6547.106)
    assert s.energy[0] < s.meta["athena_e0"] < s.energy[-1]


def test_every_athena_group_matches_larch(dev):
    by_file = defaultdict(dict)
    for r in LARCH["athena"]:
        by_file[r["file"]][r["old_group"]] = r
    total = 0
    for rel, ref in sorted(by_file.items()):
        ours = {s.meta["athena_old_group"]: s for s in read_spectra(dev / rel)}
        total += len(ours)
        larch_mu = {k for k, r in ref.items() if r["larch_kind"] == "mu"}
        if rel == "athena/NiO.prj":
            # larch keeps only the last of groups sharing a label ('NiO.000', '  Ref NiO.000' twice)
            assert set(ours) - larch_mu == {"naqow", "sdhhl"}
            assert read_spectra(dev / rel, groups=["NiO.000"])[1].name == "NiO.prj:NiO.000#2"
        else:
            assert set(ours) == larch_mu, rel
        for key in larch_mu:
            s, r = ours[key], ref[key]
            assert s.group == r["label"]
            assert s.energy_shift_ev == pytest.approx(r["bkg_eshift"], abs=1e-12)
            assert len(s.energy) == r["n"]
            np.testing.assert_allclose(s.energy[[0, -1]] - s.energy_shift_ev,
                                       [r["energy_first"], r["energy_last"]], rtol=0, atol=1e-6)
            np.testing.assert_allclose(s.mu[r["sample_index"]], r["mu_samples"], rtol=1e-12, atol=0)
            assert s.mu.sum() == pytest.approx(r["mu_sum"], rel=1e-9)
        chi = {k for k, r in ref.items() if r["larch_kind"] == "chi"}
        if chi:
            skipped = next(iter(ours.values())).meta["skipped_groups"]
            assert set(skipped) == {ref[k]["label"] for k in chi} and all("is_chi" in v for v in skipped.values())
    assert total == 248  # 253 groups, 5 of them chi(k)


def test_athena_group_selection_errors(dev):
    prj = dev / "athena" / "eutio3.prj"
    msg = _refused(prj, "no group labelled 'Hematite'", groups=["Hematite"])
    assert "'tieu_015'" in msg  # the available labels are listed
    # a project with reference channels under the same labels: each label once, at most 12, then a count
    msg = _refused(dev / "athena" / "NiO.prj", "no group labelled", groups=["nosuch"])
    listed = msg.split("group label(s): ")[1]
    assert listed.count("'NiO.000'") == 1 and "'Ref NiO.000'" in listed and "'  Ref" not in listed
    assert listed.count("'") == 2 * 12 and listed.endswith("more")
    _refused(prj, "is_chi", groups=["ti015"])
    _refused(prj, "select groups", mu_col="mu")


def test_handmade_perl_project_with_shift_chi_group_and_odd_strings(tmp_path):
    e = ", ".join(f"'{7000 + i}'" for i in range(30))
    y = ", ".join(f"'{0.1 * i}'" for i in range(30))
    text = (
        "# Athena project file -- Demeter version 0.9.26\n\n"
        "$old_group = 'abcde';\n"
        "@args = ('label','it\\'s \\'odd\\' => [x]','bkg_eshift','-2.5','bkg_z','26','fft_edge','k',"
        "'titles',['system(\"rm -rf /\")'],'xdi_beamline',{'name' => {'a' => undef}},'is_xmu',1);\n"
        f"@x = ({e});\n@y = ({y});\n[record]\n\n"
        "$old_group = 'fghij';\n@args = ('label','chi data','is_chi',1,'is_xmu',0);\n"
        f"@x = ({e});\n@y = ({y});\n[record]\n\n1;\n"
    )
    prj = tmp_path / "hand.prj"
    prj.write_bytes(gzip.compress(text.encode()))
    assert detect_format(prj) == "athena"
    (s,) = read_spectra(prj)
    assert s.group == "it's 'odd' => [x]" and s.absorber == "Fe" and s.edge == "K"
    assert s.energy[0] == 6997.5 and s.energy_shift_ev == -2.5
    assert s.meta["titles"] == ['system("rm -rf /")']
    assert s.meta["skipped_groups"] == {"chi data": "not mu(E): is_chi"}


def test_crlf_project_string_groups_and_damaged_args(tmp_path):
    e = ",".join(f"'{7000 + i}'" for i in range(30))
    text = ("# Athena project file -- Demeter version 0.9.26\r\n$old_group = 'a';\r\n"
            "@args = ('label','G one','bkg_eshift','1');\r\n" f"@x = ({e});\r\n@y = ({e});\r\n[record]\r\n1;\r\n")
    prj = _write(tmp_path, "crlf.prj", text)
    assert read_spectra(prj, groups="g  one ".replace("  ", " "))[0].energy[0] == 7001.0
    assert len(read_spectra(prj, groups=[])) == 1  # empty selection = every group
    _refused(_write(tmp_path, "bad.prj", text.replace("'G one'", "'G one")), "line 3 of the athena project")


def test_larch_json_flavour(tmp_path):
    prj = _write(tmp_path, "json.prj", json.dumps({
        "_____header1": "# Athena project file -- Demeter version 0.9.26 (larch JSON)",
        "_____journal": [], "_____order": ["grp1"],
        "grp1": {"args": {"label": "Sample A", "bkg_eshift": "1.5", "bkg_z": "Mn", "fft_edge": "K", "bkg_e0": "6550"},
                 "x": [6500.0 + i for i in range(40)], "y": [0.01 * i for i in range(40)]}}))
    (s,) = read_spectra(prj, groups=["sample a"])
    assert (s.group, s.absorber, s.energy[0], s.meta["athena_e0"]) == ("Sample A", "Mn", 6501.5, 6550.0)


def test_perl_literal_parser():
    value = readers._perl_literal(
        "bless( {'a' => ['1', 2, undef], 'b' => {'c' => \"x\\x{e9}\\\"y\"}}, 'Xray::XDI' );")
    assert value == {"a": ["1", "2", None], "b": {"c": 'x\u00e9"y'}}


# --- XDI ------------------------------------------------------------------------------------------

def test_xdi_files_match_larch(dev):
    for ref in LARCH["xdi"]:
        (s,) = read_spectra(dev / ref["file"])
        assert s.kind == "xdi" and s.group is None and s.name == Path(ref["file"]).name
        assert s.mu_source == "ln(i0/itrans)"
        assert (s.absorber, s.edge) == (ref["element"], ref["edge"])
        assert len(s.energy) == ref["n"]
        assert s.energy[[0, -1]].tolist() == pytest.approx([ref["energy_first"], ref["energy_last"]], abs=1e-6)
        np.testing.assert_allclose(s.mu[ref["sample_index"]], ref["mu_samples"], rtol=1e-9)
        assert s.meta["columns"] == ref["array_labels"]
    (cdo,) = read_spectra(dev / "xdi" / "CdO_10K_01.xdi")
    assert cdo.meta["temperature"] == "10K" and cdo.meta["beamline"] == "SSRL 4-3"


def test_xdi_reference_channel_only_when_named(dev):
    path = dev / "xdi" / "Cu2S_13K_01.xdi"
    data = np.loadtxt(path)
    (s,) = read_spectra(path)
    np.testing.assert_allclose(s.mu, np.log(data[:, 1] / data[:, 2]))
    (r,) = read_spectra(path, mu_col="irefer")
    assert r.mu_source == "irefer"
    np.testing.assert_allclose(r.mu, data[:, 3])


def _six_column_xdi(dev, tmp_path, names: list[str]) -> tuple[Path, np.ndarray]:
    """Cu2S_13K_01.xdi rewritten with six named columns (the old reader took column 4 as mu)."""
    data = np.loadtxt(dev / "xdi" / "Cu2S_13K_01.xdi")
    mutrans = np.log(data[:, 1] / data[:, 2])
    six = np.column_stack([data, data[:, 1] * 0.5, mutrans])
    head = ["# XDI/1.0", *[f"# Column.{i + 1}: {n}" for i, n in enumerate(names)],
            "# Element.symbol: Cu", "# Element.edge: K", "#----", "# " + " ".join(n.split()[0] for n in names)]
    path = _write(tmp_path, "six.xdi", "\n".join(head) + "\n" + "\n".join(" ".join(map(str, r)) for r in six) + "\n")
    return path, six


def test_six_column_xdi_with_irefer_is_not_read_as_xmu_dat(dev, tmp_path):
    path, six = _six_column_xdi(dev, tmp_path, ["energy eV", "i0", "itrans", "irefer", "ifluor", "mutrans"])
    assert detect_format(path) == "xdi"
    (s,) = read_spectra(path)
    assert s.mu_source == "mutrans" and s.kind == "xdi"
    np.testing.assert_allclose(s.mu, six[:, 5])
    assert not np.allclose(s.mu, six[:, 3])
    path, six = _six_column_xdi(dev, tmp_path, ["energy eV", "i0", "itrans", "irefer", "i2", "other"])
    (s,) = read_spectra(path)
    assert s.mu_source == "ln(i0/itrans)"
    np.testing.assert_allclose(s.mu, np.log(six[:, 1] / six[:, 2]))


def test_xdi_kev_fluorescence_angle_and_no_mu(tmp_path):
    rows = [[7.1 + 0.001 * i, 1000.0, 50.0 + i] for i in range(40)]
    body = "\n".join(" ".join(map(str, r)) for r in rows) + "\n"
    (s,) = read_spectra(_write(tmp_path, "f.xdi", "# XDI/1.0\n# Column.1: energy keV\n# Column.2: i0\n"
                                                  "# Column.3: ifluor\n#----\n" + body))
    assert s.mu_source == "ifluor/i0" and s.energy[0] == pytest.approx(7100.0)
    _refused(_write(tmp_path, "a.xdi", "# XDI/1.0\n# Column.1: angle deg\n# Column.2: i0\n# Column.3: itrans\n" + body),
             "angle")
    theta = [[float(np.degrees(np.arcsin(12398.419843 / (2 * 3.13551 * (7100.0 + i))))), 1000.0, 900.0 - i] for i in range(40)]
    (d,) = read_spectra(_write(tmp_path, "d.xdi", "# XDI/1.0\n# Column.1: angle degrees\n# Column.2: i0\n# Column.3: itrans\n"
                                                  "# Mono.d_spacing: 3.13551\n#----\n" + "\n".join(" ".join(map(str, r)) for r in theta)))
    np.testing.assert_allclose(d.energy, 7100.0 + np.arange(40), atol=1e-6)  # angles with the XDI d-spacing: energies
    _refused(_write(tmp_path, "r.xdi", "# XDI/1.0\n# Column.1: energy eV\n# Column.2: i0\n# Column.3: irefer\n" + body),
             "no mu column")


# --- FEFF xmu.dat ---------------------------------------------------------------------------------

def test_feff_xmu_dat_by_header():
    assert detect_format(XMU_DAT) == "feff-xmu"
    (s,) = read_spectra(XMU_DAT)
    data = np.loadtxt(XMU_DAT)
    assert (s.kind, s.mu_source, s.absorber, s.edge) == ("feff-xmu", "xmu.dat mu", "Cu", "K")
    np.testing.assert_array_equal(s.energy, data[:, 0])
    np.testing.assert_array_equal(s.mu, data[:, 3])


def test_six_columns_without_feff_header_are_not_xmu_dat(tmp_path):
    path = _write(tmp_path, "six.dat", _csv(_rows(ncol=6), sep=" "))
    assert detect_format(path) == "columns"
    msg = _refused(path, "cannot tell which column is energy")
    assert all(opt in msg for opt in OPTIONS_HINT)


# --- CSV / whitespace columns ---------------------------------------------------------------------

def test_csv_with_names_and_units(tmp_path):
    rows = _rows(ncol=3)
    (s,) = read_spectra(_write(tmp_path, "n.csv", _csv(rows, ["Energy (eV)", "I0", "xmu"])))
    assert (s.kind, s.mu_source) == ("csv", "xmu")
    np.testing.assert_allclose(s.energy, [r[0] for r in rows])
    kev = [[r[0] / 1000.0, r[1]] for r in rows]
    (k,) = read_spectra(_write(tmp_path, "k.csv", _csv(kev, ["energy [keV]", "norm"])))
    assert k.energy[0] == pytest.approx(7100.0) and k.meta["energy_converted"] == "keV -> eV"


def test_semicolons_decimal_commas_tabs_and_energy_by_its_unit(tmp_path):
    rows = _rows(ncol=3)
    # a spreadsheet export in a decimal-comma locale: semicolons between fields, "7100,000000"
    text = _csv(rows, ["Energie (eV)", "I0", "mu"], sep=";").replace(".", ",")
    (s,) = read_spectra(_write(tmp_path, "dc.csv", text))
    assert (s.kind, s.mu_source) == ("csv", "mu")  # energy: the one column in eV, whatever its name
    np.testing.assert_allclose(s.energy, [r[0] for r in rows])
    np.testing.assert_allclose(s.mu, [r[2] for r in rows])
    (t,) = read_spectra(_write(tmp_path, "tabs.txt", _csv(rows, ["energy", "i0", "mutrans"], sep="\t")))
    np.testing.assert_allclose(t.mu, [r[2] for r in rows])
    # a tab-separated export whose names hold spaces: the tabs, not the spaces, part the names
    (u,) = read_spectra(_write(tmp_path, "tab_units.txt", _csv(rows, ["Energy (eV)", "I0 (counts)", "mu(E)"], sep="\t")))
    assert u.mu_source == "mu(E)"
    np.testing.assert_allclose(u.energy, [r[0] for r in rows])
    titled = "Sample: olivine, ALS export\n" + _csv(rows, ["Energy (eV)", "I0 (counts)", "mu(E)"], sep="\t")
    (v,) = read_spectra(_write(tmp_path, "tab_titled.txt", titled))  # a title line above the names too
    assert v.mu_source == "mu(E)"
    (k,) = read_spectra(_write(tmp_path, "k.csv", _csv([[r[0] / 1000, r[1]] for r in rows], ["E [keV]", "xmu"])))
    assert k.energy[0] == pytest.approx(7100.0)
    # two columns in eV: still ambiguous, and said so
    _refused(_write(tmp_path, "two_ev.csv", _csv(rows, ["E1 (eV)", "E2 (eV)", "mu"])), "cannot tell which column is energy")


def test_quoted_fields_as_r_and_spreadsheets_write_them(tmp_path):
    rows = _rows()
    # R's write.csv: quoted names and a quoted row-name column with an empty name
    text = '"","energy","mu"\n' + "\n".join(f'"{i}",{e},{m}' for i, (e, m) in enumerate(rows, 1))
    (s,) = read_spectra(_write(tmp_path, "r.csv", text))
    assert s.mu_source == "mu"
    np.testing.assert_allclose(s.energy, [r[0] for r in rows])
    np.testing.assert_allclose(s.mu, [r[1] for r in rows])
    # every field quoted, a separator inside a quoted name
    text = '"Energy, eV","mu"\n' + "\n".join(f'"{e}","{m}"' for e, m in rows)
    (q,) = read_spectra(_write(tmp_path, "q.csv", text))
    np.testing.assert_allclose(q.mu, [r[1] for r in rows])


def test_two_unnamed_columns_and_commented_header(tmp_path):
    (s,) = read_spectra(_write(tmp_path, "two.dat", _csv(_rows(), sep="  ")))
    assert (s.kind, s.mu_source, s.energy[0]) == ("columns", "column 2", 7100.0)
    (c,) = read_spectra(_write(tmp_path, "c.dat", "# energy i0 itrans\n" + _csv(_rows(ncol=3), sep=" ")))
    assert c.mu_source == "ln(i0/itrans)"


def test_ambiguous_columns_refused_with_the_option_names(tmp_path):
    path = _write(tmp_path, "three.csv", _csv(_rows(ncol=3)))
    msg = _refused(path, "cannot tell which column is energy")
    assert all(opt in msg for opt in OPTIONS_HINT)
    msg = _refused(_write(tmp_path, "names.csv", _csv(_rows(ncol=3), ["energy", "foo", "bar"])), "no mu column")
    assert "foo, bar" in msg and all(opt in msg for opt in OPTIONS_HINT)
    (s,) = read_spectra(_write(tmp_path, "signal.csv", _csv(_rows(), ["energy", "signal"])))
    assert s.mu_source == "signal"  # two columns, one of them energy: the other is mu ...
    _refused(_write(tmp_path, "i0.csv", _csv(_rows(), ["energy", "I0"])), "no mu column")  # ... unless it is not


def test_explicit_columns_by_name_and_number(tmp_path):
    rows = _rows(ncol=3)
    path = _write(tmp_path, "three.csv", _csv(rows, ["a", "b", "c"]))
    for e, m in (("a", "c"), (1, 3), ("1", "3"), ("A", 3)):
        (s,) = read_spectra(path, energy_col=e, mu_col=m)
        np.testing.assert_allclose(s.mu, [r[2] for r in rows])
    (u,) = read_spectra(_write(tmp_path, "u.csv", _csv(rows)), energy_col=1, mu_col=2)
    assert u.mu_source == "column 2"
    assert "columns are: a, b, c" in _refused(path, "no column named 'zz'", energy_col="a", mu_col="zz")
    _refused(path, "column 4 does not exist", energy_col=1, mu_col=4)


def _raw(n=40, e0=6390.0):
    """Rows of a raw transmission + fluorescence scan: energy, i0, it, iref, if."""
    e = e0 + np.arange(n) * 2.0
    i0 = 60000.0 + 10 * np.arange(n)
    mu = 0.2 + 0.8 / (1 + np.exp(-(e - e0 - 40) / 2))
    return np.column_stack([e, i0, i0 * np.exp(-mu), 1e5 + np.arange(n), i0 * 0.01 * mu]), mu


def test_raw_beamline_files_by_their_labels(tmp_path):
    """The label lines of common beamline files (MRCAT text header, EPICS, SPEC, numbered labels)
    name the columns; the channel names there (Io, It, I1, If) give mu as the XDI ones do."""
    rows, mu = _raw()
    data = "\n".join(" ".join(f"{v:.5f}" for v in r) for r in rows) + "\n"
    mrcat = ("MRCAT_XAFS V0.4 Datafile\n\"MnO2.002\" created at APS 10BM\nE0= 6540.00\nOffsets= 1.0 2.0 3.0\n"
             "-------------------------\n   energy       Io       It     Iref       If \n" + data)
    (s,) = read_spectra(_write(tmp_path, "mrcat.dat", mrcat))
    assert s.mu_source == "ln(i0/itrans)" and s.meta["columns"] == ["energy", "Io", "It", "Iref", "If"]
    np.testing.assert_allclose(s.mu, mu, rtol=1e-4)
    (f,) = read_spectra(tmp_path / "mrcat.dat", mu_col="If/Io")
    assert f.mu_source == "If/Io"
    np.testing.assert_allclose(f.mu, 0.01 * mu, rtol=1e-3)
    epics = ("; Epics Scan 1 dimensional scan\n; E0 = 6540.00\n; column labels:\n; P1 = {Energy} --> 13BMA:E:Energy.VAL\n"
             "; D1 = {I0}  --> 13BMD:scaler1_calc2.VAL\n; D2 = {I1}  --> x\n; D3 = {Iref} --> y\n"
             ";--------\n;  P1 D1 D2 D3\n" + "\n".join(" ".join(f"{v:.5f}" for v in r[:4]) for r in rows))
    path = _write(tmp_path, "epics.dat", epics)
    msg = _refused(path, "no mu column")  # I1: transmission by convention, but not assumed ...
    assert "columns are: Energy, I0, I1, Iref" in msg and "give --mu-col 'ln(I0/I1)'" in msg
    (e,) = read_spectra(path, mu_col="ln(Io/I1)")  # ... it is said (Io: another name of I0)
    assert e.mu_source == "ln(I0/I1)"
    np.testing.assert_allclose(e.mu, mu, rtol=1e-4)
    spec = "#S 29 exafsscan\n#C exafs_edge_energy 6.539\n#L Energy  I0  It  I ref  IF\n" + data
    assert read_spectra(_write(tmp_path, "spec.dat", spec))[0].mu_source == "ln(i0/itrans)"
    kev = rows.copy()
    kev[:, 0] /= 1000.0
    numbered = "#C 1_Energy (keV) 2_i0 3_it 4_iref 5_ifluor\n" + "\n".join(" ".join(f"{v:.6f}" for v in r) for r in kev)
    (n,) = read_spectra(_write(tmp_path, "num.dat", numbered))
    assert n.mu_source == "ln(i0/itrans)"
    assert n.energy[0] == pytest.approx(6390.0) and n.meta["energy_converted"] == "keV -> eV"
    _refused(path, "no column named 'I9' for mu", mu_col="ln(I0/I9)")
    listed = ("# Here is a readable list of column headings:\n#  1) Mono Energy (alt) *  4) XMAP4:DT Corr I0\n"
              "#  2) PreKB-I0 *          5) XMAP4:FeKa_Sum\n#  3) IT\n#\n# Column Headings:\n"
              "#Mono Energy (alt) *  PreKB-I0 *  IT   XMAP4:DT Corr I0   XMAP4:FeKa_Sum\n" + data)
    (a,) = read_spectra(_write(tmp_path, "aps20id.dat", listed), mu_col="XMAP4:FeKa_Sum/XMAP4:DT Corr I0")
    assert a.meta["columns"] == ["Mono Energy (alt)", "PreKB-I0", "IT", "XMAP4:DT Corr I0", "XMAP4:FeKa_Sum"]
    assert a.energy[0] == pytest.approx(6390.0)  # the one column named with "energy"
    np.testing.assert_allclose(a.mu, rows[:, 4] / rows[:, 3])
    counters = "# Column Headings:\n#Mono Energy  I0-32  It-32  Iref-32  If-32\n" + data  # APS 9-BM: scaler suffixes
    assert read_spectra(_write(tmp_path, "aps9bm.dat", counters))[0].mu_source == "ln(i0/itrans)"
    cls = ('# CLS Data Acquisition\n#(1)\t"Energy:sp"\t"MONO:Energy:fbk"\t"mcs03"\t"mcs04"\t"mcs05"\n'
           '#(1)\t"$(EnergySetpoint)"\t"$(EnergyFeedback)"\t"$(Detector1)"\t"$(Detector2)"\t"$(Detector3)"\n'
           + "\n".join(", ".join(f"{v:.5f}" for v in r) for r in np.column_stack([rows[:, 0] - 0.01, rows[:, :4]])))
    path = _write(tmp_path, "cls.dat", cls)
    msg = _refused(path, "no mu column")
    assert "columns are: Energy:sp, MONO:Energy:fbk, mcs03" in msg
    (c,) = read_spectra(path, mu_col="ln(mcs03/mcs04)")  # two energies: the read-back (fbk) one
    np.testing.assert_allclose(c.energy, rows[:, 0])
    np.testing.assert_allclose(c.mu, mu, rtol=1e-4)


def test_beamline_scan_tables_above_the_data_and_bragg_angles(tmp_path):
    """Short numeric tables in a beamline header (scan regions, weights) are header, not data; SSRL
    names come one per line after 'Data:'; Photon Factory angles become energies with the header's
    d-spacing; a damaged line inside the data is still refused."""
    rows, mu = _raw()
    theta = np.degrees(np.arcsin(12398.419843 / (2 * 3.13551 * rows[:, 0])))
    pf = (" 9809     KEK-PF   BL9A\n Fe010   22.05.11 17:26\n Mono :   Si(111)       D=  3.13551 A    Initial angle= 13.93 deg\n"
          " Block      Init-Eng  Final-Eng      Step/eV     Time/s       Num\n"
          "     1        6606.20   7061.20         6.50       1.00        70\n"
          "     2        7061.20   7076.20         1.00       1.00        15\n Ortec(-1)     NDCH = 3\n"
          "  Angle(c)  Angle(o)    time/s         2         3\n      Mode         0         0         1         3\n"
          + "\n".join(f"{t:.6f} {t:.6f} 1.00 {a:.1f} {b:.3f}" for t, a, b in zip(theta, rows[:, 1], rows[:, 4])) + "\n")
    (p,) = read_spectra(_write(tmp_path, "pf.dat", pf), mu_col="5/4")
    np.testing.assert_allclose(p.energy, rows[:, 0], atol=1e-3)
    np.testing.assert_allclose(p.mu, 0.01 * mu, rtol=1e-3)
    assert "d = 3.13551" in p.meta["energy_converted"]
    ssrl = ("SSRL   EXAFS Data Collector 1.3\nPTS:        40 COLS:          5\nWeights: \n 1.000  1.000  1.000  1.000  1.000\n"
            "Offsets: \n 0.000  0.000  0.000  144.200  133.500\nData: \nReal time clock\nRequested Energy\nAchieved Energy\n"
            "I0\nI1\n\n" + "\n".join(f" 1.000 {e:.3f} {e + 0.01:.3f} {a:.3f} {b:.3f}" for e, a, b in zip(rows[:, 0], rows[:, 1], rows[:, 2])))
    (q,) = read_spectra(_write(tmp_path, "ssrl.dat", ssrl), mu_col="ln(I0/I1)")
    assert q.meta["columns"] == ["Real time clock", "Requested Energy", "Achieved Energy", "I0", "I1"]
    np.testing.assert_allclose(q.energy, rows[:, 0] + 0.01)  # the achieved energy
    np.testing.assert_allclose(q.mu, mu, rtol=1e-4)


def _spec_file(rows) -> str:
    """A SPEC data file as a beamline's session writes it: a file header, an alignment scan of a
    motor, an energy scan, an aborted energy scan, an energy scan with MCA lines, and scan 2 again
    after a restart."""
    data = "\n".join(" ".join(f"{v:.5f}" for v in r[:4]) for r in rows)
    head = "#F /data/visit/session.spec\n#E 1700000000\n#D Mon Jan  1 10:00:00 2024\n#O0 samx  samy  mono\n\n"
    align = ("#S 1  ascan  samx -1 1 14 1\n#D Mon Jan  1 10:01:00 2024\n#N 4\n#L samx  I0  It  Seconds\n"
             + "\n".join(f"{-1 + i / 7:.4f} 60000 {30000 + 100 * i} 1" for i in range(15)) + "\n\n")
    energy = "#S 2  exafs_scan  mono 6390 6468 40 1\n#N 4\n#L Energy  I0  It  I ref\n" + data + "\n\n"
    aborted = "#S 3  exafs_scan  mono 6390 6468 40 1\n#N 4\n#L Energy  I0  It  I ref\n" + "\n".join(data.splitlines()[:3]) + "\n#C aborted\n\n"
    mca = ("#S 4  exafs_scan  mono 6390 6468 40 1\n#N 4\n#@MCA 16C\n#L Energy  I0  It  I ref\n"
           + "\n".join(f"@A 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 \\\n 15 16 17 18\n{ln}" for ln in data.splitlines()) + "\n\n")
    again = "#S 2  exafs_scan  mono 6390 6468 40 1\n#N 4\n#L Energy  I0  It  I ref\n" + data + "\n"
    return head + align + energy + aborted + mca + again


def test_spec_file_of_several_scans_gives_each_energy_scan(tmp_path):
    """A SPEC file of several scans (#S): one spectrum per energy scan, named by its number (a number
    used again after a restart gets #2); alignment and aborted scans are left out and listed; -g
    chooses scans by number, and a chosen scan that cannot be read is an error."""
    from xanesdb.xas.readers import read_files

    rows, mu = _raw()
    path = _write(tmp_path, "session.spec", _spec_file(rows))
    assert detect_format(path) == "spec"
    spectra = read_spectra(path)
    assert [s.name for s in spectra] == ["session.spec:scan 2", "session.spec:scan 4", "session.spec:scan 2#2"]
    for s in spectra:
        assert s.kind == "spec" and s.mu_source == "ln(i0/itrans)" and s.path == str(path)
        np.testing.assert_allclose(s.energy, rows[:, 0])
        np.testing.assert_allclose(s.mu, mu, rtol=1e-4)
    skipped = spectra[0].meta["skipped_scans"]
    assert sorted(skipped) == ["scan 1", "scan 3"]
    assert "energy" in skipped["scan 1"] and "ascan  samx" in skipped["scan 1"] and "3 data points" in skipped["scan 3"]
    assert spectra[1].meta["spec_title"] == "exafs_scan  mono 6390 6468 40 1"
    for want in (["4"], ["scan 4"], ["#S 4"], [" Scan 4 "]):
        assert [s.name for s in read_spectra(path, groups=want)] == ["session.spec:scan 4"]
    assert [s.group for s in read_spectra(path, groups=["2"])] == ["scan 2", "scan 2#2"]
    assert [s.group for s in read_spectra(path, groups=["scan 2#2"])] == ["scan 2#2"]
    msg = _refused(path, "has no scan 9", groups=["9"])
    assert "'scan 1', 'scan 2', 'scan 3', 'scan 4', 'scan 2#2'" in msg
    _refused(path, "(scan 3): has 3 data points", groups=["3"])
    (f,) = read_spectra(path, groups=["4"], mu_col="I ref")  # column options reach every scan
    np.testing.assert_allclose(f.mu, rows[:, 3])
    spectra, failures = read_files([path, _write(tmp_path, "empty.spec", "")], groups=["4"])
    assert [s.name for s in spectra] == ["session.spec:scan 4"] and len(failures) == 1
    alignment_only = _spec_file(rows).split("#S 2")[0] + "#S 5  ascan  samy 0 1 14 1\n#L samy  I0\n" + "\n".join(
        f"{i / 14:.4f} {60000 + i}" for i in range(15)) + "\n"
    _refused(_write(tmp_path, "align.spec", alignment_only), "2 SPEC scans and none is an energy scan")


def test_desy_fio_and_diamond_gda_column_names(tmp_path):
    """DESY FIO files name their columns on 'Col N name TYPE' lines under %d; Diamond's GDA writes mu
    as lnI0It (transmission) and FF/I0 (total fluorescence, which gets the self-absorption note)."""
    from xanesdb.ml.predict import fluorescence_note

    rows, mu = _raw()
    fio = ("!\n! Comments\n!\n%c\nqexafs_energy scan 6390 6468\nuser p65 file fe_0001.fio\n!\n! Parameter\n!\n%p\n"
           "SAMPLE_X = 1.25\nGAIN_I0 = 1e8\n!\n! Data\n!\n%d\n Col 1 energy DOUBLE\n Col 2 i0 DOUBLE\n Col 3 it DOUBLE\n"
           " Col 4 iref DOUBLE\n" + "\n".join(" ".join(f"{v:.5f}" for v in r[:4]) for r in rows) + "\n")
    (s,) = read_spectra(_write(tmp_path, "fe_0001.fio", fio))
    assert s.meta["columns"] == ["energy", "i0", "it", "iref"] and s.mu_source == "ln(i0/itrans)"
    np.testing.assert_allclose(s.mu, mu, rtol=1e-4)
    gda = np.column_stack([rows[:, :4], np.log(rows[:, 1] / rows[:, 2]), np.log(rows[:, 2] / rows[:, 3]), rows[:, 4],
                           rows[:, 4] / rows[:, 1]])
    body = "\n".join("\t".join(f"{v:.6f}" for v in r) for r in gda) + "\n"
    (g,) = read_spectra(_write(tmp_path, "b18.dat", "# Energy\tI0\tIt\tIref\tlnI0It\tlnItIref\tFF\tFF/I0\n" + body))
    assert g.mu_source == "lnI0It" and fluorescence_note(g) is None
    np.testing.assert_allclose(g.mu, mu, rtol=1e-4)
    fluo = np.delete(gda, [2, 4], axis=1)  # a fluorescence scan: no It, no lnI0It
    text = "# Energy\tI0\tIref\tlnItIref\tFF\tFF/I0\n" + "\n".join("\t".join(f"{v:.6f}" for v in r) for r in fluo)
    (f,) = read_spectra(_write(tmp_path, "b18_fluo.dat", text))
    assert f.mu_source == "FF/I0" and fluorescence_note(f)
    np.testing.assert_allclose(f.mu, 0.01 * mu, rtol=1e-3)


def test_hdf5_files_give_a_spectrum_per_group_of_counters(tmp_path):
    """HDF5 (NeXus, ESRF BLISS): each group of 1-D datasets of one length is a table read by name;
    the same datasets linked into another group count once; keV becomes eV; a motor scan is left
    out and listed; -g chooses groups; a damaged or table-less file is one line naming it."""
    h5py = pytest.importorskip("h5py")
    from xanesdb.xas.readers import read_files

    rows, mu = _raw()
    path = tmp_path / "session.h5"
    with h5py.File(path, "w") as fh:
        scan = fh.create_group("1.1")
        scan["title"] = "contscan energy 6.39 6.468"
        m = scan.create_group("measurement")
        m["energy_enc"] = rows[:, 0] / 1000.0
        m["energy_enc"].attrs["units"] = "keV"
        m["I0"], m["It"], m["Iref"] = rows[:, 1], rows[:, 2], rows[:, 3]
        m["xmap"] = np.zeros((len(rows), 16))  # an MCA: not a column
        plot = scan.create_group("plotselect")  # NXdata linking two of the same counters
        plot.attrs.update({"NX_class": "NXdata", "signal": "It", "axes": "energy_enc"})
        plot["It"], plot["energy_enc"] = m["It"], m["energy_enc"]
        motor = fh.create_group("2.1/measurement")  # an alignment scan
        motor["sample_y"], motor["I0"] = np.linspace(0, 1, 15), np.ones(15)
        nx = fh.create_group("entry")
        nx.attrs["NX_class"] = "NXentry"
        data = nx.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "mu", "axes": ["energy"]})
        data["mu"], data["energy"] = mu, rows[:, 0]
    assert detect_format(path) == "hdf5"
    spectra = read_spectra(path)
    assert [s.name for s in spectra] == ["session.h5:1.1/measurement", "session.h5:entry/data"]
    s, nexus = spectra
    assert s.kind == "hdf5" and s.mu_source == "ln(i0/itrans)" and s.meta["energy_converted"] == "keV -> eV"
    assert sorted(s.meta["columns"]) == ["I0", "Iref", "It", "energy_enc"] and s.meta["title"].startswith("contscan")
    np.testing.assert_allclose(s.energy, rows[:, 0])
    np.testing.assert_allclose(s.mu, mu, rtol=1e-4)
    assert list(s.meta["skipped_groups"]) == ["2.1/measurement"]
    assert nexus.mu_source == "mu" and nexus.meta["nx_class"] == "NXdata"
    np.testing.assert_allclose(nexus.mu, mu)
    assert [x.group for x in read_spectra(path, groups=["1.1"])] == ["1.1/measurement"]
    assert [x.group for x in read_spectra(path, groups=["/entry/data"])] == ["entry/data"]
    (r,) = read_spectra(path, groups=["1.1"], mu_col="Iref")
    np.testing.assert_allclose(r.mu, rows[:, 3])
    msg = _refused(path, "has no group '9.1'", groups=["9.1"])
    assert "'1.1/measurement'" in msg and "'2.1/measurement'" in msg
    _refused(path, "(2.1/measurement): cannot tell which column is energy", groups=["2.1"])
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)
    _refused(damaged, "HDF5 file h5py cannot read")
    empty = tmp_path / "empty.nxs"
    with h5py.File(empty, "w") as fh:
        fh["image"] = np.zeros((20, 20))
    _refused(empty, "without a group of 1-D datasets")
    folder = tmp_path / "beamtime"
    folder.mkdir()
    (folder / "session.h5").write_bytes(path.read_bytes())
    got, failures = read_files([folder, damaged], groups=["entry/data"])
    assert [x.name for x in got] == ["session.h5:entry/data"] and len(failures) == 1


def _nxxas(path, rows, signal, *, definition="NXxas", mode=None):
    """A NeXus file of the standard NXxas layout: raw I0 and sample signal under instrument/, an
    NXdata group linking energy and the signal (what a name-based reader would take for mu)."""
    import h5py

    with h5py.File(path, "w") as fh:
        entry = fh.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["definition"], entry["title"] = definition, "Fe2O3 pellet"
        inst = entry.create_group("instrument")
        inst["monochromator/energy"] = rows[:, 0]
        inst["monochromator/energy"].attrs["units"] = "eV"
        inst["incoming_beam/data"] = rows[:, 1]
        inst["absorbed_beam/data"] = signal
        if mode:
            inst["absorbed_beam/type"] = mode
        entry["monitor/data"] = inst["incoming_beam/data"]
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "absorbed_beam", "axes": "energy"})
        data["energy"], data["absorbed_beam"] = inst["monochromator/energy"], inst["absorbed_beam/data"]
    return path


def test_nexus_nxxas_entries_are_read_by_their_definition(tmp_path):
    """An NXxas entry keeps raw counts: mu is ln(I0/I) for transmission and I/I0 for fluorescence,
    as the detector says or, when it does not, as the scan shows (transmitted intensity falls across
    the edge, fluorescence rises), never the raw absorbed_beam its NXdata group plots. When neither
    tells, a one-line error asks for --mu-col. FAIRmat's NXxas_trans keeps mu as intensity, with the
    absorber named in element."""
    h5py = pytest.importorskip("h5py")
    rows, mu = _raw()
    (t,) = read_spectra(_nxxas(tmp_path / "trans.nxs", rows, rows[:, 2]))
    assert t.name == "trans.nxs:entry" and t.mu_source == "ln(i0/itrans)" and t.meta["nexus_definition"] == "NXxas"
    assert t.meta["nxxas"].startswith("transmission (absorbed_beam/I0 falls")
    np.testing.assert_allclose(t.mu, mu, rtol=1e-4)
    (f,) = read_spectra(_nxxas(tmp_path / "fluo.nxs", rows, rows[:, 4]))
    assert f.mu_source == "ifluor/i0" and f.meta["nxxas"].startswith("fluorescence (absorbed_beam/I0 rises")
    np.testing.assert_allclose(f.mu, 0.01 * mu, rtol=1e-3)
    (said,) = read_spectra(_nxxas(tmp_path / "said.nxs", rows, rows[:, 4], mode="fluorescence detector"))
    assert said.mu_source == "ifluor/i0" and "as its absorbed_beam says" in said.meta["nxxas"]
    flat = _nxxas(tmp_path / "flat.nxs", rows, rows[:, 1] * 0.5)  # no edge in the ratio
    _refused(flat, "--mu-col")
    (asked,) = read_spectra(flat, mu_col="ln(i0/absorbed_beam)")
    np.testing.assert_allclose(asked.mu, np.log(2.0))
    fairmat = tmp_path / "fairmat.nxs"
    with h5py.File(fairmat, "w") as fh:
        entry = fh.create_group("entry")
        entry["definition"], entry["element/name"], entry["element/edge/name"] = "NXxas_trans", "Fe", "K"
        entry["intensity"] = mu
        entry["data/energy"] = rows[:, 0]
        entry["data/intensity"] = entry["intensity"]
        entry["data/other_counter"] = rows[:, 3]
    (x,) = read_spectra(fairmat)
    assert (x.absorber, x.edge, x.mu_source) == ("Fe", "K", "mu") and "NXxas_trans" in x.meta["nxxas"]
    np.testing.assert_allclose(x.mu, mu)


# --- malformed input ------------------------------------------------------------------------------

def test_file_level_refusals(tmp_path, monkeypatch):
    _refused(tmp_path / "missing.csv", "not found")
    _refused(tmp_path, "directory")
    _refused(_write(tmp_path, "empty.csv", ""), "empty")
    _refused(_write(tmp_path, "blank.csv", "  \n\n"), "empty")
    binary = tmp_path / "x.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    _refused(binary, "binary")
    import zipfile

    with zipfile.ZipFile(tmp_path / "book.xlsx", "w") as z:  # an Excel workbook is a zip of xl/ parts
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    _refused(tmp_path / "book.xlsx", "spreadsheet workbook; save the sheet with energy and mu as CSV")
    bad_gz = tmp_path / "bad.prj"
    bad_gz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    _refused(bad_gz, "gzip")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text(_csv(_rows(), ["energy", "mu"]), encoding="utf-16")
    assert read_spectra(utf16)[0].mu_source == "mu"
    big = _write(tmp_path, "big.csv", _csv(_rows()))
    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 100)
    _refused(big, "limit")
    _refused(_write(tmp_path, "comments.csv", "# only\n# comments\n"), "no numeric data")


@pytest.mark.parametrize("case, rows, match", [
    ("few", _rows(n=9), "9 data points"),
    ("nan", [[7100 + i, float("nan") if i == 5 else 1.0] for i in range(40)], "nan/inf"),
    ("inf", [[7100 + i, float("inf") if i == 5 else 1.0] for i in range(40)], "nan/inf"),
    ("nan_energy", [[float("nan") if i == 3 else 7100 + i, 1.0] for i in range(40)], "energy has 1 nan"),
    ("descending", _rows()[::-1], "energies decrease"),
    ("unsorted", _rows()[:20] + _rows()[10:11] + _rows()[20:], "not increasing"),
    ("repeated", _rows()[:20] + _rows()[19:], "repeated"),
    ("narrow", _rows(n=40, step=0.25), "covers only 9.8 ev"),
])
def test_data_refusals(tmp_path, case, rows, match):
    _refused(_write(tmp_path, f"{case}.csv", _csv(rows, ["energy", "mu"]).replace("nan", "NaN")), match)


def test_non_numeric_and_ragged_rows(tmp_path):
    text = _csv(_rows(), ["energy", "mu"])
    _refused(_write(tmp_path, "word.csv", text.replace("7105.000000,", "7105.0x,")), "line 7 is not numeric")
    _refused(_write(tmp_path, "ragged.csv", text + "7200,1.0,3.0\n"), "has 3 columns")
    _refused(_write(tmp_path, "hdr.csv", _csv(_rows(), ["energy", "mu", "extra"])), "header names 3 columns")


def test_groups_only_for_athena(tmp_path):
    _refused(_write(tmp_path, "g.csv", _csv(_rows())), "group selection applies only", groups=["x"])


def test_read_files_applies_columns_to_column_files_and_groups_to_athena_projects(dev, tmp_path):
    """A batch: column options reach the column files, group labels the Athena projects; a file that
    cannot be read is one reason beside the others."""
    from xanesdb.xas.readers import read_files

    rows, mu = _raw()
    raw = _write(tmp_path, "raw.dat", "# energy  I0  I1\n" + "\n".join(f"{r[0]:.3f} {r[1]:.3f} {r[2]:.5f}" for r in rows))
    bad = _write(tmp_path, "bad.csv", "")
    prj = dev / "athena" / "Fe.prj"
    spectra, failures = read_files([raw, prj, bad], groups=["Hematite"], mu_col="ln(I0/I1)")
    assert [s.name for s in spectra] == ["raw.dat", "Fe.prj:Hematite"]
    np.testing.assert_allclose(spectra[0].mu, mu, rtol=1e-4)
    assert spectra[1].mu_source.startswith("athena")
    assert [(p.name, "empty" in why) for p, why in failures] == [("bad.csv", True)]


def test_each_group_label_of_a_batch_comes_from_the_files_that_have_it(dev):
    """``predict a.prj b.prj -g X -g Y``: each label is read from the projects that have it, a
    project with none of them gives nothing, and only a label no file has is one failure."""
    from xanesdb.xas.readers import read_files

    ath = dev / "athena"
    files = [ath / "Fe.prj", ath / "Mn.prj", ath / "NiO.prj"]
    spectra, failures = read_files(files, groups=["Hematite", "mno", "Goerthite"])
    assert [s.name for s in spectra] == ["Fe.prj:Hematite", "Fe.prj:Goerthite", "Mn.prj:MnO"]
    assert failures == []
    spectra, failures = read_files(files, groups=["Hematite", "no such group"])
    assert [s.name for s in spectra] == ["Fe.prj:Hematite"]
    ((where, why),) = failures
    assert "'no such group'" in why and "Fe.prj, Mn.prj, NiO.prj" in why and "Hematite" not in why
    # a label none of them has, alone: one failure, not one a project
    assert len(read_files(files, groups=["nosuch"])[1]) == 1
    # one project: its own message, with the labels it has
    (((_, why),)) = read_files([ath / "Fe.prj"], groups=["nosuch"])[1]
    assert "no group labelled 'nosuch'" in why and "'Hematite'" in why
    # every label it lacks is named at once
    (((_, why),)) = read_files([ath / "Fe.prj"], groups=["Hematite", "nosuch", "other"])[1]
    assert "no group labelled 'nosuch', 'other';" in why


def test_read_files_tells_same_named_files_apart_by_their_folders(tmp_path):
    """FEFF run folders each hold an xmu.dat: a batch names them by as many folders as it takes."""
    from xanesdb.xas.readers import read_files

    paths = []
    for sub in ("a/run1", "a/run2", "b/run1"):
        (tmp_path / sub).mkdir(parents=True)
        paths.append(_write(tmp_path / sub, "scan.csv", _csv(_rows(), ["energy", "mu"])))
    other = _write(tmp_path, "other.csv", _csv(_rows(), ["energy", "mu"]))
    spectra, failures = read_files([*paths, other, paths[0]])
    assert not failures
    assert [s.name for s in spectra] == ["a/run1/scan.csv", "a/run2/scan.csv", "b/run1/scan.csv", "other.csv",
                                         "a/run1/scan.csv"]  # fmt: skip


def test_a_folder_stands_for_its_spectrum_files(tmp_path):
    """A folder in a batch: its spectrum files by name (no subfolders, no hidden or other files); of a
    FEFF run folder only xmu.dat; a folder without any is one failure beside the others."""
    from xanesdb.xas.readers import read_files

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for name in ("b.CSV", "a.csv", ".hidden.csv", "sub/c.csv"):
        _write(data, name, _csv(_rows(), ["energy", "mu"]))
    _write(data, "notes.md", "not a spectrum\n")
    run = tmp_path / "feff_run"
    run.mkdir()
    _write(run, "feff.inp", "EDGE K\n")
    (run / "xmu.dat").write_text(XMU_DAT.read_text())
    _write(run, "chi.dat", "# not read\n1 2\n")
    (tmp_path / "empty").mkdir()
    spectra, failures = read_files([data, run, tmp_path / "empty"])
    assert [s.name for s in spectra] == ["a.csv", "b.CSV", "xmu.dat"]
    assert [(p.name, "folder without spectrum files" in why) for p, why in failures] == [("empty", True)]


def _table_of(dev: Path, tmp_path: Path, groups: list[str], header: str, name: str = "marked.nor") -> tuple[Path, list]:
    """A table of spectra as Athena's "save marked groups as mu(E)" writes it: the first group's
    energies, each group's mu interpolated onto them, one column a group."""
    spectra = read_spectra(dev / "athena" / "Fe.prj", groups=groups)
    e = spectra[0].energy
    cols = [np.interp(e, s.energy, s.mu) for s in spectra]
    body = "\n".join("  ".join(f"{v:.6f}" for v in (x, *row)) for x, row in zip(e, np.array(cols).T))
    return _write(tmp_path, name, header + body + "\n"), spectra


def test_a_table_of_spectra_reads_one_spectrum_a_column(dev, tmp_path):
    head = "# Athena data file -- Athena version 0.9.26\n# Saving marked groups as mu(E)\n# ----\n#  energy  Hematite  Goerthite  Lepidocrocite\n"
    path, spectra = _table_of(dev, tmp_path, ["Hematite", "Goerthite", "Lepidocrocite"], head)
    got = read_spectra(path)
    assert [s.name for s in got] == ["marked.nor:Hematite", "marked.nor:Goerthite", "marked.nor:Lepidocrocite"]
    assert [s.group for s in got] == ["Hematite", "Goerthite", "Lepidocrocite"] and got[1].mu_source == "Goerthite"
    for s, ref in zip(got, spectra):
        assert np.allclose(s.mu, np.interp(s.energy, ref.energy, ref.mu), atol=1e-5)
    # a column chosen by name (case ignored), as an Athena group is; a name it lacks is a one-line error
    (goethite,) = read_spectra(path, groups=["goerthite"])
    assert goethite.group == "Goerthite"
    _refused(path, "has no spectrum column 'magnetite'", groups=["magnetite"])
    msg = _refused(path, "has no spectrum column 'magnetite'", groups=["Hematite", "magnetite"])  # as a project does
    assert "'Hematite';" not in msg
    # --mu-col still takes one column
    (one,) = read_spectra(path, mu_col="Lepidocrocite")
    assert one.name == "marked.nor" and one.mu_source == "Lepidocrocite"
    # a reference channel beside the samples is no sample: one spectrum a sample column
    head = "#  energy  Hematite  Goerthite  reference\n"
    path, _ = _table_of(dev, tmp_path, ["Hematite", "Goerthite", "Fe foil"], head, "with_ref.nor")
    assert [s.group for s in read_spectra(path)] == ["Hematite", "Goerthite"]
    head = "#  energy  Hematite  Fe_ref\n"
    path, _ = _table_of(dev, tmp_path, ["Hematite", "Fe foil"], head, "one_ref.nor")
    assert [s.name for s in read_spectra(path)] == ["one_ref.nor:Hematite"]
    # a file of one spectrum refuses group selection as before
    _refused(_write(tmp_path, "one.csv", _csv(_rows(), ["energy", "mu"])), "group selection", groups=["x"])


def test_channels_or_columns_without_an_edge_are_not_a_table(dev, tmp_path):
    # detector channels by name: the usual hint, not one spectrum a channel
    head = "#  energy  I0  I1\n"
    path, _ = _table_of(dev, tmp_path, ["Hematite", "Goerthite"], head, "raw.dat")
    msg = _refused(path, "no mu column")
    assert all(opt in msg for opt in OPTIONS_HINT)
    # unnamed channels, one of them without an edge (an i0 falling smoothly): the hint again
    rows = [[7000 + i, 1e5 * np.exp(-i / 500), 1.0 + (i > 112) + 0.001 * i] for i in range(300)]
    msg = _refused(_write(tmp_path, "scan.dat", _csv(rows, ["energy", "ch_a", "ch_b"])), "no mu column")
    assert all(opt in msg for opt in OPTIONS_HINT)


def test_predict_answers_each_spectrum_of_a_table(dev, tmp_path, capsys):
    from tests.test_predict_cli import _run

    head = "energy,Hematite,Goerthite\n"
    path, _ = _table_of(dev, tmp_path, ["Hematite", "Goerthite"], head, "samples.csv")
    path.write_text(path.read_text().replace("  ", ","))
    code, out, _ = _run(["predict", str(path), "-f", "json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["name"] for r in rows] == ["samples.csv:Hematite", "samples.csv:Goerthite"]
    assert [r["predicted"] for r in rows] == ["O6", "O6"] and all(r["absorber"] == "Fe" for r in rows)
    # -g picks a column of a table as it picks an Athena group, in one batch with a project
    fe_prj = dev / "athena" / "Fe.prj"
    code, out, _ = _run(["predict", str(path), str(fe_prj), "-g", "goerthite", "-g", "Hematite", "-f", "json"], capsys)
    names = [json.loads(line)["name"] for line in out.splitlines()]
    assert code == 0 and names == ["samples.csv:Hematite", "samples.csv:Goerthite", "Fe.prj:Goerthite", "Fe.prj:Hematite"]


def test_energies_relative_to_the_edge_are_refused_with_what_to_do(tmp_path):
    rows = [[-40.0 + i, 0.5 + 0.5 * np.tanh((i - 40) / 3)] for i in range(160)]
    msg = _refused(_write(tmp_path, "rel.csv", _csv(rows, ["energy", "norm"])), "relative to the edge")
    assert "absolute energies" in msg
