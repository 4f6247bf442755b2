"""Readers for measured XAS spectra: XDI, Athena projects, SPEC, HDF5, FEFF ``xmu.dat``, CSV / whitespace columns.

Every reader returns :class:`MeasuredSpectrum` objects with energies in eV, strictly increasing,
and the raw (un-normalised) absorption mu(E). Columns are chosen by their *names* (XDI
``# Column.N:`` fields, a CSV header line, the FEFF ``omega e k mu mu0 chi`` line), never by
counting, and reference channels (``irefer``, ``murefer``) are used only when asked for by name.
mu is, in this order: the ``mu_col`` asked for; a column named ``mutrans``, ``lnI0It``, ``mufluor``,
``FF/I0`` (Diamond's GDA names), ``mu``, ``xmu``, ``absorption``; ``ln(i0/itrans)``; ``ifluor/i0``;
a normalised column (``normtrans``, ``norm``, ...); the other column of a two-column file. ``mu_col`` may also be a ratio of two
columns, ``'ln(I0/I1)'`` or ``'If/I0'``, for raw beamline files. A table of spectra (an energy
column and two or more others, none named as a detector channel, each rising at a tabulated edge:
Athena's "save marked groups as columns", a spreadsheet of samples) is read as one spectrum per
column, named ``file:column``. The channel names beamlines use
(``Io``, ``It``, ``Iref``, ``If``, ...) count as the XDI ones. Energy: ``energy_col``, else a column
named ``omega`` (FEFF), ``energy``, ``e``, ``ev``; keV is converted to eV. Comment lines start with
``#``, ``%``, ``!`` or ``;``; above the data of a column file, lines of text (scan settings) may
stand uncommented, and the last of them that names as many columns as the data has names them
(DESY FIO files: their ``Col N name TYPE`` lines). A SPEC data file of several scans (``#S`` lines)
gives one spectrum per energy scan, named ``file:scan N``. An HDF5 file (NeXus, ESRF BLISS) gives
one spectrum per group of 1-D datasets of one length in which energy and mu are found by name as in
a column file (:mod:`xanesdb.xas.hdf5`), named ``file:group``.

Athena project files (``.prj``, gzip or plain; Perl Data::Dumper text written by Athena/Demeter
or the JSON flavour written by larch) are parsed without evaluating anything: the Perl list and
hash literals are tokenised and rebuilt as Python lists and dicts. Athena's stored energy shift
(``bkg_eshift``) is *added* to the energies; larch's ``read_athena`` does not apply it (it keeps
it as ``group.energy_shift``), see ``docs/measured_readers.md``.

Every problem with a file is a :class:`~xanesdb.platform.errors.XanesdbUserError` whose message is
one line that names the file and says what to do.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

__all__ = ["MeasuredSpectrum", "read_spectra", "read_files", "spectrum_files_in", "SPECTRUM_SUFFIXES", "detect_format", "MAX_FILE_BYTES", "MIN_POINTS", "MIN_RANGE_EV"]

_HC_EV_A = 12398.419843  # h c in eV A: E = hc / (2 d sin(theta))
MAX_FILE_BYTES = 50_000_000
"""Largest spectrum file (and largest gunzipped Athena project) accepted, in bytes (50 MB)."""
MIN_POINTS = 10
"""Fewest data rows accepted."""
MIN_RANGE_EV = 20.0
"""Narrowest energy range accepted, in eV."""

_COL_HINT = "give --energy-col and --mu-col (column names or 1-based numbers; mu also as 'ln(I0/It)' or 'If/I0')"
_ENERGY_NAMES = ("omega", "energy", "e", "ev", "energy_ev", "en", "e_e0")  # omega first: FEFF's "e" is E - E_fermi; "E-E0": relative (--absorber)
#: ``lnI0It``, ``FF/I0`` (``FFI0``): what Diamond's GDA writes for transmission and total fluorescence
_MU_NAMES = ("mutrans", "mu_trans", "lni0it", "mufluor", "mu_fluo", "mu_fluor", "ff/i0", "ffi0", "mu", "xmu", "absorption", "mu_e")
_NORM_NAMES = ("normtrans", "normfluor", "norm", "normmu", "norm_mu", "normalized", "flat")
_NEVER_MU = {"i0", "itrans", "ifluor", "irefer", "murefer", "mu_ref", "normrefer", "lnitiref", "i1", "i2", "chi", "k", "angle"}
#: other names beamlines give the XDI channels (lower case, units stripped)
_ALIASES = {"io": "i0", "i_0": "i0", "it": "itrans", "i_t": "itrans", "itr": "itrans", "iref": "irefer",
            "ir": "irefer", "i_ref": "irefer", "if": "ifluor", "i_f": "ifluor", "ifl": "ifluor", "fluo": "ifluor",
            "fluor": "ifluor"}
_COMMENT = "#%!;"
#: the line that starts each scan of a SPEC data file: ``#S 12  ascan  mono 7000 7500 300 1``
_SPEC_SCAN = re.compile(r"^#S[ \t]+(\d+)[ \t]*(.*)$", re.M)
_RATIO = re.compile(r"^\s*(?:(ln|log)\s*\(\s*(.+?)\s*/\s*(.+?)\s*\)|([^/()]+?)\s*/\s*([^/()]+?))\s*$", re.I)
_NOT_MU = ("is_chi", "is_xmudat", "is_bkg", "is_diff", "is_pixel", "is_rsp", "is_qsp")
_SYMBOLS = ("H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
            "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
            "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu").split()


@dataclass(frozen=True)
class MeasuredSpectrum:
    """One measured mu(E) spectrum as read from a file.

    Attributes
    ----------
    name : str
        ``"<file>:<label>"`` for an Athena group (e.g. ``"Fe.prj:Hematite"``), else the file name.
    path : str
        The file path as given.
    group : str or None
        Athena group label, else None.
    energy : numpy.ndarray
        Energies in eV (float64, strictly increasing), Athena energy shift already applied.
    mu : numpy.ndarray
        Raw (un-normalised) absorption, float64, same length as ``energy``.
    absorber, edge : str or None
        Element symbol and edge (``'K'``, ``'L3'``) when the file states them.
    kind : str
        ``'xdi'``, ``'athena'``, ``'spec'``, ``'hdf5'``, ``'csv'``, ``'feff-xmu'`` or ``'columns'``.
    mu_source : str
        How mu was obtained, e.g. ``'mutrans'``, ``'ln(i0/itrans)'``, ``'column 2'``.
    energy_shift_ev : float
        Energy shift added to the stored energies (Athena ``bkg_eshift``; else 0.0).
    meta : dict
        Header fields, column names, Athena's stored e0 / edge step / normalisation ranges.
    """

    name: str
    path: str
    group: str | None
    energy: np.ndarray
    mu: np.ndarray
    absorber: str | None
    edge: str | None
    kind: str
    mu_source: str
    energy_shift_ev: float = 0.0
    meta: dict = field(default_factory=dict)


def _fail(where, what: str):
    raise XanesdbUserError(re.sub(r"[\r\n]+", " ", f"{where}: {what}"))


class GroupNotFound(XanesdbUserError):
    """Groups, scans or columns chosen with ``groups`` (``-g``) that the file does not have
    (``missing``: those names, as given)."""

    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)


def _not_found(where, what: str, missing: Sequence[str]):
    raise GroupNotFound(re.sub(r"[\r\n]+", " ", f"{where}: {what}"), missing)


def _read_text(path) -> str:
    """Return the text of ``path`` (gunzipped if needed) after the file-level checks."""
    p = Path(path)
    if not p.exists():
        _fail(path, "file not found; check the path")
    if p.is_dir():
        _fail(path, "is a directory; give a spectrum file (XDI, Athena .prj, CSV or xmu.dat)")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        _fail(path, f"is {size / 1e6:.1f} MB, over the {MAX_FILE_BYTES / 1e6:g} MB limit for a spectrum file; "
                    "export only the spectra you need")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.open(p) as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except (OSError, EOFError):
            _fail(path, "is a damaged gzip file; re-save or re-download it")
        if len(raw) > MAX_FILE_BYTES:
            _fail(path, f"unpacks to over {MAX_FILE_BYTES / 1e6:g} MB, the limit for a spectrum file")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with BOM (some Windows exports)
        raw = raw.decode("utf-16", errors="replace").encode("utf-8")
    if not raw.strip():
        _fail(path, "is empty; give a file with energy and mu data")
    head = raw[:65536]
    control = sum(head.count(bytes([b])) for b in range(32) if b not in (9, 10, 12, 13))
    if b"\x00" in head or control > 0.01 * len(head):
        if head[:4] == b"PK\x03\x04" and any(k in head for k in (b"xl/", b"content.xml", b"opendocument")) or \
                head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":  # Excel/LibreOffice (zip), or old .xls
            _fail(path, "is a spreadsheet workbook; save the sheet with energy and mu as CSV and give that file")
        _fail(path, "is a binary file, not text; export the spectrum as XDI, CSV or an Athena project")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _detect(text: str) -> str:
    text = text.lstrip("\ufeff")
    if "Athena project file --" in text[:500]:
        return "athena"
    if re.match(r"\s*#\s*XDI/", text, re.I):
        return "xdi"
    if len(_SPEC_SCAN.findall(text, 0, 2_000_000)) >= 2:  # a SPEC data file of several scans
        return "spec"
    comments = [ln for ln in text.splitlines()[:300] if ln.lstrip().startswith("#")]
    if any("feff" in c.lower() for c in comments) and any(
            re.match(r"#\s*omega\s+e\s+k\s+mu\s+mu0\s+chi\b", c.strip(), re.I) for c in comments):
        return "feff-xmu"
    return "columns"


def detect_format(path) -> str:
    """Return the format of a spectrum file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        ``'athena'`` (the "Athena project file --" header), ``'xdi'`` (first line ``# XDI/``),
        ``'hdf5'`` (the HDF5 signature), ``'spec'`` (two or more ``#S`` scan lines), ``'feff-xmu'``
        (comments mention FEFF and end with ``omega e k mu mu0 chi``), else
        ``'columns'`` (CSV or whitespace-separated columns).
    """
    from xanesdb.xas.hdf5 import is_hdf5

    return "hdf5" if is_hdf5(path) else _detect(_read_text(path))


def read_spectra(path, *, energy_col: str | int | None = None, mu_col: str | int | None = None,
                 groups: Sequence[str] | None = None, relative_to: str | None = None) -> list[MeasuredSpectrum]:
    """Read every measured spectrum in a file.

    Parameters
    ----------
    path : str or os.PathLike
        An XDI file, Athena project, FEFF ``xmu.dat`` or CSV / whitespace-column file.
    energy_col, mu_col : str or int, optional
        Column name (case-insensitive) or 1-based column number; not for Athena projects.
    relative_to : str, optional
        Element symbol: a spectrum whose energies are relative to its edge (E - E0, from below
        0 eV) gets that element's tabulated K-edge energy added (``meta["energy_converted"]``) and
        that absorber; absolute energies are read as they are. Without it such a file is refused.
    groups : sequence of str, optional
        Athena group labels to read (exact, else case- and space-insensitive); default (None or
        empty): every mu(E) group. For a SPEC file, scan numbers; for an HDF5 file, group paths
        (or a scan's first part, ``1.1``); for a table of spectra, the column names to read.

    Returns
    -------
    list of MeasuredSpectrum
        One per Athena group read; one per energy scan of a SPEC file; one per group of counters of an
        HDF5 file; one per column of a table of spectra (an energy column and
        two or more columns each holding a sample's spectrum, none named as a detector channel,
        as Athena's "save marked groups" and spreadsheets write them; ``group`` is the column's
        name); else a single spectrum.

    Raises
    ------
    XanesdbUserError
        One-line message naming the file when it cannot be read as a usable spectrum.
    """
    from xanesdb.xas.hdf5 import is_hdf5

    if is_hdf5(path):
        return _read_hdf5(path, energy_col, mu_col, [groups] if isinstance(groups, str) else (list(groups) if groups else None),
                          relative_to=relative_to)
    text = _read_text(path)
    return _read_spectra_of(text, _detect(text), path, energy_col, mu_col, groups, relative_to=relative_to)


def _read_spectra_of(text: str, fmt: str, path, energy_col, mu_col, groups, *,
                     relative_to: str | None = None) -> list[MeasuredSpectrum]:
    """:func:`read_spectra` on a file's text already read and its format already detected."""
    groups = [groups] if isinstance(groups, str) else (list(groups) if groups else None)
    if fmt == "athena":
        if energy_col is not None or mu_col is not None:
            _fail(path, "is an Athena project: columns cannot be chosen there; select groups by label instead")
        return _read_athena(text, path, groups)
    if fmt == "spec":
        return _read_spec(text, path, energy_col, mu_col, groups, relative_to=relative_to)
    spectra = _read_table(text, path, fmt, energy_col, mu_col, relative_to=relative_to)
    if groups is None:
        return spectra
    if spectra[0].group is None:
        _fail(path, f"is a {fmt} file of one spectrum, not an Athena project or a table of spectra; "
                    "group selection applies only to those")  # fmt: skip
    return _columns_named(spectra, groups, path)


def _columns_named(spectra: list[MeasuredSpectrum], groups: Sequence[str], path) -> list[MeasuredSpectrum]:
    """The spectra of a table whose column names are among ``groups`` (case ignored); a name that
    is none of them is an error."""
    have = {s.group.strip().lower() for s in spectra}
    missing = [g for g in groups if g.strip().lower() not in have]
    if missing:
        _not_found(path, f"has no spectrum column {', '.join(map(repr, missing))}; its spectrum columns are "
                         f"{', '.join(repr(s.group) for s in spectra)}", missing)  # fmt: skip
    wanted = {g.strip().lower() for g in groups}
    return [s for s in spectra if s.group.strip().lower() in wanted]



def read_files(paths, *, groups: Sequence[str] | None = None, energy_col: str | int | None = None,
               mu_col: str | int | None = None, relative_to: str | None = None,
               ) -> tuple[list[MeasuredSpectrum], list[tuple[Path, str]]]:
    """Read many files, as a batch command does: ``groups`` selects groups of the Athena projects,
    scans of the SPEC files, groups of the HDF5 files and columns of the tables of spectra among them
    (other files are read whole; of several such files each gives the ones it has, and a name none
    of them has is one failure),
    ``energy_col``/``mu_col`` apply to the files that are not Athena projects (an Athena group's
    arrays are what they are); a file that cannot be read is kept as ``(path, one-line reason)`` so
    the others are still read; a folder stands for the spectrum files in it
    (:func:`spectrum_files_in`); ``relative_to`` as in :func:`read_spectra`. Returns ``(spectra, failures)``."""
    spectra: list[MeasuredSpectrum] = []
    failures: list[tuple[Path, str]] = []
    files: list[Path] = []
    for f in paths:
        try:
            files += spectrum_files_in(f) if Path(f).is_dir() else [Path(f)]
        except XanesdbUserError as err:
            failures.append((Path(f), str(err)))
    groups = [groups] if isinstance(groups, str) else list(groups or [])
    each = len(groups) > 0 and len(files) > 1  # several files: each -g from the files that have it
    found: dict[str, int] = {g: 0 for g in groups}  # -g name -> files that have it
    choosable: list[tuple[Path, str | None, bool]] = []  # files where -g applies: (file, why one is lacking, has any)
    for f in files:
        try:
            if not each:
                spectra.extend(_read_file(f, groups or None, energy_col, mu_col, relative_to=relative_to))
                continue
            got, have, why = _read_file_each(f, groups, energy_col, mu_col, relative_to)
            spectra.extend(got)
            for g in have:
                found[g] += 1
            if have or why is not None:
                choosable.append((f, why, bool(have)))
        except XanesdbUserError as err:
            failures.append((Path(f), str(err).splitlines()[0]))
    nowhere = [g for g, n in found.items() if n == 0]
    if each and nowhere:
        if len(choosable) == 1 and not choosable[0][2]:  # one file could have had them: its message lists what it has
            failures.append(choosable[0][:2])
        else:
            names = [p.name for p, *_ in choosable] or [p.name for p in files]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            failures.append((choosable[0][0] if choosable else files[0],
                             f"-g {', '.join(map(repr, nowhere))}: no file of the batch ({shown}) has a group, scan or "
                             "column of that name; check the label (a file given without -g is read whole)"))  # fmt: skip
    return _distinct_names(spectra), failures


def _read_file(f: Path, groups: Sequence[str] | None, energy_col, mu_col, text: str | None = None, *,
               relative_to: str | None = None) -> list[MeasuredSpectrum]:
    """The spectra of one file of a batch (:func:`read_files`); ``groups`` apply to the formats that
    have them (``text``: the file's text, when already read)."""
    from xanesdb.xas.hdf5 import is_hdf5

    if text is None and is_hdf5(f):  # -g: the groups of its scans, as for a SPEC file's scans
        return _read_hdf5(f, energy_col, mu_col, list(groups) if groups else None, relative_to=relative_to)
    text = _read_text(f) if text is None else text  # read once: its format decides which options apply
    fmt = _detect(text)
    athena, grouped = fmt == "athena", fmt in ("athena", "spec")  # -g: Athena groups, SPEC scans
    got = _read_spectra_of(text, fmt, f, None if athena else energy_col, None if athena else mu_col,
                           groups if grouped else None, relative_to=relative_to)  # fmt: skip
    if groups and not grouped and got[0].group is not None:  # a table of spectra: -g names its columns
        got = _columns_named(got, groups, f)
    return got


def _read_file_each(f: Path, groups: Sequence[str], energy_col, mu_col, relative_to: str | None = None):
    """One file of a batch read for each of ``groups`` alone: ``(spectra, the names it has, why it
    lacks one or None)``. A file without groups, scans or columns to choose is read whole (no names)."""
    from xanesdb.xas.hdf5 import is_hdf5

    text = None if is_hdf5(f) else _read_text(f)
    try:
        got = _read_file(f, groups, energy_col, mu_col, text, relative_to=relative_to)
    except GroupNotFound as err:  # read again with the names it has (in the format's order, each once)
        have = [g for g in groups if g not in err.missing]
        return (_read_file(f, have, energy_col, mu_col, text, relative_to=relative_to) if have else []), have, \
            str(err).splitlines()[0]
    if got and got[0].group is None:  # a file of one spectrum: -g does not apply
        return got, [], None
    return got, list(groups), None


#: what a folder given to a batch contributes: files with these suffixes (case ignored), hidden ones left out
SPECTRUM_SUFFIXES = (".xdi", ".prj", ".csv", ".dat", ".txt", ".xmu", ".nor", ".tsv", ".asc", ".spec", ".fio", ".h5", ".hdf5",
                     ".nxs", ".nx5")


def spectrum_files_in(folder) -> list[Path]:
    """The spectrum files directly in ``folder`` (not its subfolders), sorted by name: those with a
    :data:`SPECTRUM_SUFFIXES` suffix; of a FEFF run folder (``feff.inp`` beside ``xmu.dat``) only
    ``xmu.dat``, not FEFF's other outputs. A folder without any is refused (XanesdbUserError)."""
    folder = Path(folder)
    if (folder / "feff.inp").is_file() and (folder / "xmu.dat").is_file():
        return [folder / "xmu.dat"]
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SPECTRUM_SUFFIXES)
    if not found:
        _fail(folder, f"is a folder without spectrum files ({', '.join(SPECTRUM_SUFFIXES)}); give the files themselves")
    return found


def _distinct_names(spectra: list[MeasuredSpectrum]) -> list[MeasuredSpectrum]:
    """Spectra of files with the same name in different folders (``run1/xmu.dat``, ``run2/xmu.dat``)
    named with as many parent folders as it takes to tell them apart."""
    import dataclasses

    where = [Path(s.path).resolve() for s in spectra]
    paths_of: dict[str, set[Path]] = {}
    for s, p in zip(spectra, where):
        paths_of.setdefault(s.name, set()).add(p)
    out = []
    for s, p in zip(spectra, where):
        paths = paths_of[s.name]
        if len(paths) < 2:
            out.append(s)
            continue
        for k in range(1, max(len(q.parts) for q in paths)):
            if len({q.parts[-1 - k : -1] for q in paths}) == len(paths):
                break
        out.append(dataclasses.replace(s, name="/".join((*p.parts[-1 - k : -1], s.name))))
    return out


#: a number written with a decimal comma (``7112,5``, ``1,2E-3``), as spreadsheets in many locales export it
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")


def _split(line: str) -> list[str]:
    """The fields of a line: separated by semicolons (then a decimal comma is a decimal point), commas,
    or whitespace (tabs included); a field in quotes (R's ``write.csv``, spreadsheets) is read without them."""
    sep = ";" if ";" in line else "," if "," in line else None
    if sep is None:
        toks = [t[1:-1] if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'" else t for t in line.split()]
    elif '"' in line:
        toks = [t.strip() for t in next(csv.reader([line], delimiter=sep, skipinitialspace=True))]
    else:
        toks = [t.strip() for t in line.split(sep)]
    if sep == ";":
        toks = [t.replace(",", ".") if _DECIMAL_COMMA.match(t) else t for t in toks]
    while toks and not toks[-1]:
        toks.pop()
    return toks


def _fields_apart(line: str) -> list[str]:
    """The fields of a line parted by tabs or two or more spaces: names that hold single spaces."""
    return [t.strip() for t in re.split(r"\s{2,}|\t", line) if t.strip()]


def _norm_name(name: str) -> tuple[str, str]:
    """``'Energy (keV)'`` -> ``('energy', 'kev')``: lower-case name without units, and the units."""
    m = re.search(r"[(\[]\s*([^)\]]*)\s*[)\]]", name)
    base = re.sub(r"[(\[][^)\]]*[)\]]", "", name).strip().lower()
    return re.sub(r"[\s\-]+", "_", base), (m.group(1).strip().lower() if m else "")


def _parse_rows(text: str, path, fmt: str):
    """Comment lines, the header line's names (plain column files only), numeric rows, comma-separated?"""
    comments, preamble, rows, comma = [], [], [], False
    spaced = {}  # preamble index -> the text line's fields parted by tabs or 2+ spaces ("Energy (eV)<tab>mu(E)")
    broken = None  # (line, text, rows before it) of a text line that may have broken the data in two
    for n, line in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        s = line.strip()
        if not s or s[0] in _COMMENT:
            comments += [s] if s else []
            continue
        toks = _split(s)
        try:
            vals = [float(t) for t in toks]
        except ValueError:
            if len(rows) < MIN_POINTS and fmt == "columns":  # header text above the data, commented or not,
                broken = (n, s, rows) if rows else None  # with any short numeric table in it
                preamble += [[f"{v:g}" for v in r] for r in rows] + [toks]
                spaced[len(preamble) - 1] = _fields_apart(s)
                rows, comma = [], False
                continue
            _fail(path, f"line {n} is not numeric data ({s[:40]!r}); remove it or comment it out with '#'")
        if broken and not rows:  # one text line between rows that go on as before: a damaged data line
            bn, bs, before = broken
            firsts = [r[0] for r in before] + [vals[0]]
            if len(before[-1]) == len(vals) and preamble[-1] == _split(bs) and np.all(np.diff(firsts) > 0):
                _fail(path, f"line {bn} is not numeric data ({bs[:40]!r}); remove it or comment it out with '#'")
        if rows and len(vals) != len(rows[0]) and len(rows) < MIN_POINTS and fmt == "columns":
            preamble += [[f"{v:g}" for v in r] for r in rows]  # a short table of scan settings, then the data
            rows, comma = [], False
        if rows and len(vals) != len(rows[0]):
            _fail(path, f"line {n} has {len(vals)} columns but the first data line has {len(rows[0])}; fix the ragged rows")
        comma = comma or "," in s or ";" in s
        rows.append(vals)
    if not rows:
        _fail(path, "has no numeric data rows; give a file with energy and mu columns")
    ncol = len(rows[0])  # a text line naming too many columns by its spaces may name them by its tabs
    preamble = [spaced[i] if len(t) != ncol and len(spaced.get(i, ())) == ncol else t for i, t in enumerate(preamble)]
    return comments, _preamble_names(preamble, ncol), np.asarray(rows, dtype=float), comma


def _numeric(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _preamble_names(preamble: list[list[str]], ncol: int) -> list[str] | None:
    """Column names from the text above the data: a single header line; else the ``Col N name TYPE``
    lines of a DESY FIO file; else names one per line after ``Data:`` (SSRL); else the last line,
    not mostly numbers, that names ``ncol`` columns (beamline files carry scan settings above it)."""
    if len(preamble) == 1:
        return preamble[0]
    fio = [t for t in preamble if len(t) >= 3 and t[0].lower() == "col" and t[1].isdigit()]  # DESY FIO: " Col 1 energy DOUBLE"
    if len(fio) == ncol and [int(t[1]) for t in fio] == list(range(1, ncol + 1)):
        return [t[2] for t in fio]
    for i, toks in enumerate(preamble):
        if [t.lower() for t in toks] == ["data:"] and len(preamble) - i - 1 == ncol:
            return [" ".join(t) for t in preamble[i + 1 :]]
    return next((t for t in preamble[::-1] if len(t) == ncol and sum(map(_numeric, t)) <= ncol / 2), None)


def _header(fmt: str, comments: list[str], header, ncol: int, path):
    """Column names (None when the file gives none), their units, absorber, edge and metadata."""
    names, units, absorber, edge, meta = None, [""] * ncol, None, None, {}
    if fmt == "xdi":
        fields = {}
        for c in comments:
            m = re.match(r"#\s*([A-Za-z]\w*\.[\w.\-]+)\s*:\s*(.*)$", c)
            if m:
                fields.setdefault(m.group(1).lower(), m.group(2).strip())
        names = [f"column {i + 1}" for i in range(ncol)]
        for key, val in fields.items():
            m = re.fullmatch(r"column\.(\d+)", key)
            if m and 1 <= int(m.group(1)) <= ncol and val:
                names[int(m.group(1)) - 1], *rest = val.split()
                units[int(m.group(1)) - 1] = " ".join(rest).lower()
        last = comments[-1].lstrip("#").split() if comments else []
        if not any(k.startswith("column.") for k in fields) and len(last) == ncol:
            names = last  # no Column.N fields: the column-label line just above the data
        absorber, edge = fields.get("element.symbol") or None, fields.get("element.edge") or None
        meta = {"xdi": fields, "temperature": fields.get("sample.temperature"), "beamline": fields.get("beamline.name"),
                "sample": fields.get("sample.name") or fields.get("sample.formula")}
    elif fmt == "feff-xmu":
        for c in comments:
            if re.match(r"#\s*omega\s+e\s+k\s+mu\s+mu0\s+chi\b", c, re.I):
                names = "omega e k mu mu0 chi".split()
            m = re.search(r"Abs\s+Z=\s*(\d+).*?\b(K|L\d|M\d)\s+shell", c)
            if m and 0 < int(m.group(1)) <= len(_SYMBOLS):
                absorber, edge = _SYMBOLS[int(m.group(1)) - 1], m.group(2)
        if ncol != 6:
            _fail(path, f"looks like FEFF xmu.dat but has {ncol} columns, not 6 (omega e k mu mu0 chi); {_COL_HINT}")
        meta = {"feff_header": [c for c in comments if "feff" in c.lower()][:1]}
    else:
        label = re.sub(r"^#L\s", "", comments[-1]).lstrip(_COMMENT + " ").strip() if comments else ""  # SPEC's #L too
        last = _split(label) if label else []
        spaced = [t.rstrip("*").strip() for t in _fields_apart(label)]  # '*': a positioner
        if header is None and len(last) != ncol and len(spaced) == ncol:
            last = spaced  # "#Mono Energy  I0-32  It-32": names with spaces, two apart
        if header is None and len(last) == ncol and not all(map(_numeric, last)):
            header = last  # "# energy mu" just above the data
        if header is None or all(re.fullmatch(r"[PD]\d+", t) for t in header):  # EPICS: P1 D1 ... named elsewhere
            header = _beamline_labels(comments, ncol) or header
        if header is not None and len(header) != ncol:
            _fail(path, f"the header names {len(header)} columns but the data has {ncol}; fix the header or {_COL_HINT}")
        if header is not None:
            names, units = header, [_norm_name(h)[1] for h in header]
    return names, units, absorber, edge, meta


def _beamline_labels(comments: list[str], ncol: int) -> list[str] | None:
    """Column names from the label comments of common beamline files, or None: quoted names (CLS),
    SPEC ``#L`` lines (names two spaces apart), numbered labels (``#C 1_Energy (keV) 2_sec 3_i0 ...``,
    ``#  1) Mono Energy  11) XMAP4:TiKa_Sum``) and the EPICS scan labels (``; P1 = {Energy}``,
    ``; D1 = {I0}``, listed in column order)."""
    for c in reversed(comments):
        quoted = re.findall(r'"([^"]*)"', c)  # CLS: #(1) "Event-ID" "BL1606-ID-1:Energy" ...
        if len(quoted) == ncol and sum(q.startswith("$(") for q in quoted) < ncol / 2:  # not the template line
            return quoted
        if c.startswith("#L "):
            names = [t for t in re.split(r"\s{2,}", c[3:].strip()) if t]
            if len(names) == ncol:
                return names
        numbered = re.findall(r"(?:^|\s)(\d+)_(\S+(?:\s+\([^)]*\))?)", c.lstrip(_COMMENT))
        if len(numbered) == ncol and [int(n) for n, _ in numbered] == list(range(1, ncol + 1)):
            return [name for _, name in numbered]
    epics = [m.group(1).strip() for c in comments if (m := re.match(r"[;#]\s*[PD]\d+\s*=\s*\{([^}]*)\}", c))]
    if len(epics) == ncol:
        return epics
    listed = {}  # "#  1) Mono Energy (alt) *  11) XMAP4:TiKa_Sum": a numbered list, possibly in two columns
    for c in comments:
        for n, name in re.findall(r"(?:^|\s)(\d+)\)\s+(.+?)(?=\s+\d+\)\s|\s*$)", c.lstrip(_COMMENT)):
            listed.setdefault(int(n), name.strip().rstrip("*").strip())
    return [listed[i] for i in range(1, ncol + 1)] if sorted(listed) == list(range(1, ncol + 1)) else None


def _choose(data: np.ndarray, names, energy_col, mu_col, path):
    """Energy column index, mu array and how mu was obtained (the order is in the module docstring)."""
    ncol = data.shape[1]
    cols = f"columns are: {', '.join(names)}" if names else f"{ncol} unnamed columns"
    lookup: dict[str, int] = {}
    for i, nm in enumerate(names or []):
        lookup.setdefault(nm.lower(), i)
        lookup.setdefault(_norm_name(nm)[0], i)
    for i, nm in enumerate(names or []):  # a scaler's counter suffix: "I0-32", "It_2"
        lookup.setdefault(re.sub(r"_\d+$", "", _norm_name(nm)[0]), i)
    for alias, name in _ALIASES.items():
        if alias in lookup and name not in lookup:
            lookup[name] = lookup[alias]

    def pick(req, what):
        if isinstance(req, (int, np.integer)) or str(req).strip().isdigit():
            if not 1 <= int(req) <= ncol:
                _fail(path, f"{what} column {int(req)} does not exist: the file has {ncol} columns (numbers start at 1)")
            return int(req) - 1
        for key in (str(req).strip().lower(), _norm_name(str(req))[0]):
            for k in (key, _ALIASES.get(key)):
                if k in lookup:
                    return lookup[k]
        _fail(path, f"no column named {req!r} for {what}; {cols}")

    def column(i):
        return data[:, i], (names[i] if names else f"column {i + 1}")

    ratio = _RATIO.match(str(mu_col)) if mu_col is not None else None
    if ratio:  # mu asked for as ln(a/b) or a/b of two columns
        log, a, b = ratio.group(1), ratio.group(2) or ratio.group(4), ratio.group(3) or ratio.group(5)
        ia, ib = pick(a, "mu"), pick(b, "mu")
        what = f"{column(ia)[1]}/{column(ib)[1]}"
        with np.errstate(all="ignore"):
            q = data[:, ia] / data[:, ib]
            mu_from = (np.log(q), f"ln({what})") if log else (q, what)
    ie = pick(energy_col, "energy") if energy_col is not None else None
    im = pick(mu_col, "mu") if mu_col is not None and not ratio else None
    if ie is None:
        ie = next((lookup[n] for n in _ENERGY_NAMES if n in lookup), None)
        if ie is None and names:  # one column called something with "energy" ("Mono Energy", "energy_readback")
            hits = [i for i, nm in enumerate(names) if "energy" in nm.lower()]
            read_back = [i for i in hits if re.search(r"achieved|readback|rbv|fbk|actual", names[i], re.I)]
            ie = hits[0] if len(hits) == 1 else read_back[0] if len(read_back) == 1 else None  # the read-back one
        if ie is None and names:  # the one column in eV or keV, whatever it is called ("Energie (eV)", "E [keV]")
            in_ev = [i for i, nm in enumerate(names) if _norm_name(str(nm))[1] in ("ev", "kev")]
            ie = in_ev[0] if len(in_ev) == 1 else None
        if ie is None and "angle" in lookup:
            _fail(path, "gives the monochromator angle, not energy; convert it to energy in eV first (Athena, larch)")
        if ie is None and ncol == 2 and (im is not None or names is None):
            ie = 1 - im if im is not None else 0
        if ie is None:
            _fail(path, f"cannot tell which column is energy ({cols}); {_COL_HINT}")
    if ratio:
        return ie, *mu_from
    if im is not None:
        return ie, *column(im)
    im = next((lookup[n] for n in _MU_NAMES if n in lookup and lookup[n] != ie), None)
    if im is not None:
        return ie, *column(im)
    with np.errstate(all="ignore"):
        if {"i0", "itrans"} <= lookup.keys():
            return ie, np.log(data[:, lookup["i0"]] / data[:, lookup["itrans"]]), "ln(i0/itrans)"
        if {"i0", "ifluor"} <= lookup.keys():
            return ie, data[:, lookup["ifluor"]] / data[:, lookup["i0"]], "ifluor/i0"
    other = 1 - ie if ncol == 2 and not (names and _norm_name(names[1 - ie])[0] in _NEVER_MU) else None
    im = next((lookup[n] for n in _NORM_NAMES if n in lookup and lookup[n] != ie), other)
    if im is None and mu_col is None:
        samples = _sample_columns(data, names, ie)
        if samples:
            raise _OneSpectrumPerColumn(ie, samples)
    if im is None:
        hint = _COL_HINT
        if "i0" in lookup and "i1" in lookup:  # the usual ion chambers: I1 after the sample
            hint = f"for transmission give --mu-col 'ln({names[lookup['i0']]}/{names[lookup['i1']]})', or {_COL_HINT}"
        _fail(path, f"no mu column and no i0 with itrans or ifluor to compute it ({cols}); {hint}")
    return ie, *column(im)


class _OneSpectrumPerColumn(Exception):
    """:func:`_choose` found a table of spectra: one energy column, one spectrum in each of ``samples``."""

    def __init__(self, energy: int, samples: list[int]):
        super().__init__(energy, samples)
        self.energy, self.samples = energy, samples


#: names of detector channels and scan bookkeeping: a column so named is not a sample's spectrum
_CHANNEL = re.compile(r"i\d|i[tfro]|i_?(ref|trans|fluor|fl|tr)|time|sec(onds)?|counts?|icr|ocr|dtc?|roi\d*|sca\d*|ch\d+"
                      r"|mca\d*|temp\w*|.*_(err|std|sigma|unc)|(err|std|sigma)_.*|index|point|row")


#: a reference channel's name in a table of spectra
_REFERENCE = re.compile(r"ref(er|erence)?|\w+_ref(erence)?|ref(erence)?_\w+")


def _sample_columns(data: np.ndarray, names, ie: int) -> list[int]:
    """The columns of a table of spectra (Athena's "save marked groups as columns", a spreadsheet of
    samples): besides the energy and any reference channel (``ref``, ``reference``, ``Fe_ref``), at
    least two columns, or one beside a reference, none named as a detector channel, each rising at
    a tabulated absorption edge. Else ``[]``."""
    from xanesdb.xas.edges import identify_edge
    from xanesdb.xas.normalize import pre_edge

    if not names:
        return []
    others = [i for i in range(data.shape[1]) if i != ie]
    # a reference channel beside the samples ("ref", "reference", "Fe_ref"): measured with each
    # scan for its energy calibration, not a sample
    rest = [i for i in others if not _REFERENCE.fullmatch(_norm_name(names[i])[0])]
    if len(rest) < (1 if len(rest) < len(others) else 2):
        return []
    if any(_CHANNEL.fullmatch(_norm_name(names[i])[0]) or _norm_name(names[i])[0] in _NEVER_MU | set(_ALIASES) | {"energy", "e", ""}
           for i in rest):  # fmt: skip
        return []
    energy = data[:, ie]
    if not (np.all(np.isfinite(energy)) and np.all(np.diff(energy) > 0)):
        return []
    if energy.max() < 100:  # keV
        energy = energy * 1000.0
    for i in rest:
        mu = data[:, i]
        if not np.all(np.isfinite(mu)):
            return []
        try:
            n = pre_edge(energy, mu)
        except (ValueError, np.linalg.LinAlgError):
            return []
        if not (n.edge_step > 0 and identify_edge(n.e0)):
            return []
    return rest


def _read_table(text: str, path, fmt: str, energy_col, mu_col, *, relative_to: str | None = None) -> list[MeasuredSpectrum]:
    comments, header, data, comma = _parse_rows(text, path, fmt)
    names, units, absorber, edge, meta = _header(fmt, comments, header, data.shape[1], path)
    meta["columns"] = list(names) if names else None
    # Bragg angles (degrees) and the crystal's d-spacing: XDI's Mono.d_spacing field, or the header
    # of a Photon Factory 9809 file ("D=  3.13551 A")
    mono_d = (re.search(r"\bD\s*=\s*(\d+\.\d+)\s*A\b", text[:5000]) if fmt == "columns"
              else re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:a|angstroms?|Å)?\s*", (meta.get("xdi") or {}).get("mono.d_spacing", ""), re.I)
              if fmt == "xdi" else None)  # fmt: skip
    angle = [i for i, nm in enumerate(names or []) if _norm_name(nm)[0] == "angle" and not units[i].startswith("rad")]
    if mono_d and angle and energy_col is None:
        i = angle[0]
        d = float(mono_d.group(1))
        with np.errstate(all="ignore"):
            data = np.column_stack([data, _HC_EV_A / (2.0 * d * np.sin(np.radians(data[:, i])))])
        names = [*names, f"energy (from {names[i]}, d = {d:g} A)"]
        units = [*units, "ev"]
        energy_col = len(names)
        meta["energy_converted"] = f"Bragg angle {names[i]} -> eV with d = {d:g} A"
    return _table_spectra(data, names, units, energy_col, mu_col, path, kind="csv" if fmt == "columns" and comma else fmt,
                          meta=meta, absorber=absorber, edge=edge, feff=fmt == "feff-xmu", relative_to=relative_to)  # fmt: skip


def _table_spectra(data: np.ndarray, names, units: list[str], energy_col, mu_col, path, *, kind: str, meta: dict,
                   absorber: str | None = None, edge: str | None = None, feff: bool = False,
                   relative_to: str | None = None) -> list[MeasuredSpectrum]:  # fmt: skip
    """The spectra of a table whose columns are named (or not): energy and mu chosen by :func:`_choose`
    (or one spectrum a column of a table of spectra), keV made eV, energies relative to the edge
    given the K edge of ``relative_to``, each checked; ``path`` names them and their errors (callers
    of a part of a file, a SPEC scan or an HDF5 group, rename them)."""
    try:
        ie, mu, mu_source = _choose(data, names, energy_col, mu_col, path)
        columns = [(None, mu, "xmu.dat mu" if feff and mu_source == "mu" else mu_source)]
    except _OneSpectrumPerColumn as table:  # one spectrum a column: each named by its column
        ie, columns = table.energy, [(names[i], data[:, i], names[i]) for i in table.samples]
    energy = data[:, ie].copy()
    finite = energy[np.isfinite(energy)]
    if units[ie].startswith("kev") or (units[ie] != "ev" and finite.size and 0 < finite.min() and finite.max() < 100):
        energy *= 1000.0
        meta["energy_converted"] = "keV -> eV"
    if relative_to and finite.size and finite.min() < 0:  # E - E0: the absorber's tabulated K edge added
        from xanesdb.xas.edges import edge_energy_of

        e_edge = edge_energy_of(relative_to)
        energy += e_edge
        meta["energy_converted"] = f"relative to the edge: {e_edge:g} eV ({relative_to} K) added"
        meta["energy_relative_to"] = {"absorber": relative_to, "edge": "K", "edge_ev": e_edge}
        absorber, edge = relative_to, "K"
    out = []
    for group, mu, source in columns:
        where = path if group is None else f"{path} column {group!r}"
        _check(where, energy, mu, f"mu ({source})")
        out.append(MeasuredSpectrum(name=Path(path).name if group is None else f"{Path(path).name}:{group}",
                                    path=str(path), group=group, energy=energy, mu=np.asarray(mu, dtype=float),
                                    absorber=absorber, edge=edge, kind=kind, mu_source=source, meta=dict(meta)))  # fmt: skip
    return out


def _read_spec(text: str, path, energy_col, mu_col, groups: Sequence[str] | None, *,
               relative_to: str | None = None) -> list[MeasuredSpectrum]:
    """The energy scans of a SPEC data file of several scans (``#S`` lines), one spectrum each, named
    ``file:scan N`` (``group`` ``scan N``; a scan number used twice, after a restart: ``scan N#2``).
    Each scan is read as a column file of its own (its ``#L`` line names the columns). Without
    ``groups`` the scans that are not energy scans (alignment scans of a motor) or cannot be read
    (an aborted scan of a few points) are left out and listed in ``meta["skipped_scans"]``; ``groups``
    chooses scans by number (``12``, ``scan 12``, ``#S 12``) and any of them that cannot be read is an error."""
    import dataclasses

    lines = text.lstrip("\ufeff").splitlines()
    starts = [i for i, ln in enumerate(lines) if _SPEC_SCAN.match(ln)]
    scans, seen = [], {}
    for k, i in enumerate(starts):
        m = _SPEC_SCAN.match(lines[i])
        seen[m.group(1)] = seen.get(m.group(1), 0) + 1
        label = f"scan {m.group(1)}" + (f"#{seen[m.group(1)]}" if seen[m.group(1)] > 1 else "")
        block, mca = [], False
        for ln in lines[i + 1 : starts[k + 1] if k + 1 < len(starts) else len(lines)]:
            if ln.startswith("@") or mca:  # MCA spectra saved in the scan (@A lines, continued with a backslash)
                mca = ln.rstrip().endswith("\\")
                continue
            block.append(ln)
        scans.append((label, m.group(1), m.group(2).strip(), "\n".join(block)))
    if groups is not None:
        def key(g: str) -> str:
            return g.strip().lower().removeprefix("#s").removeprefix("scan").strip()

        keys = {key(g) for g in groups}
        missing = keys - {lab.removeprefix("scan ").lower() for lab, *_ in scans} - {n for _, n, *_ in scans}
        if missing:
            _not_found(path, f"has no scan {', '.join(sorted(missing))}; {_group_list([lab for lab, *_ in scans], what='scan', where='file')}",
                       [g for g in groups if key(g) in missing])
        scans = [s for s in scans if s[0].removeprefix("scan ").lower() in keys or s[1] in keys]
    out, skipped = [], {}
    for label, _, title, block in scans:
        where = f"{path} ({label})"
        try:
            got = _read_table(block, where, "columns", energy_col, mu_col, relative_to=relative_to)
        except XanesdbUserError as exc:
            if groups is not None:
                raise
            skipped[label] = f"{title}: {str(exc).replace(f'{where}: ', '')}"
            continue
        for s in got:
            name = f"{Path(path).name}:{label}" + (f":{s.group}" if s.group else "")
            out.append(dataclasses.replace(s, name=name, path=str(path), group=label if s.group is None else f"{label}:{s.group}",
                                           kind="spec", meta={**s.meta, "spec_scan": label, "spec_title": title,
                                                              "skipped_scans": skipped}))  # fmt: skip
    if not out:
        first = next(iter(skipped.items()))
        _fail(path, f"has {len(scans)} SPEC scans and none is an energy scan with a mu column ({first[0]}, {first[1]})")
    return out


def _read_hdf5(path, energy_col, mu_col, groups: list[str] | None, *, relative_to: str | None = None) -> list[MeasuredSpectrum]:
    """The spectra of an HDF5 file (NeXus, ESRF BLISS, ...): one per group of 1-D datasets of one
    length (:func:`xanesdb.xas.hdf5.hdf5_tables`) in which energy and mu are found by name as in a
    column file, named ``file:group`` (``group``: its path, ``1.1/measurement``). Without ``groups``
    the tables without energy or mu (a motor scan) are left out and listed in ``meta["skipped_groups"]``;
    ``groups`` chooses tables by path, or by the path's first part (a scan: ``1.1``)."""
    from xanesdb.xas.hdf5 import hdf5_tables

    if Path(path).is_dir():
        _fail(path, "is a directory; give a spectrum file (XDI, Athena .prj, CSV or xmu.dat)")
    try:
        tables = hdf5_tables(path, MIN_POINTS)
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(path, f"is an HDF5 file h5py cannot read ({str(exc).splitlines()[0][:80]}); re-export it or save the spectrum as XDI or CSV")
    if not tables:
        _fail(path, f"is an HDF5 file without a group of 1-D datasets of at least {MIN_POINTS} points (a scan's counters); "
                    "save the spectrum as XDI or CSV")  # fmt: skip
    if groups is not None:
        paths = {t.group for t in tables} | {t.group.split("/")[0] for t in tables}
        missing = [g for g in groups if g.strip().strip("/") not in paths]
        if missing:
            _not_found(path, f"has no group {', '.join(map(repr, missing))} with 1-D datasets; "
                             f"{_group_list([t.group for t in tables], what='group', where='file')}", missing)  # fmt: skip
        keys = {g.strip().strip("/") for g in groups}
        tables = [t for t in tables if t.group in keys or t.group.split("/")[0] in keys]
    import dataclasses

    out, skipped = [], {}
    for t in tables:
        where = f"{path} ({t.group})"
        meta = {"columns": t.names, "hdf5_group": t.group, "title": t.meta.get("title"), "nx_class": t.meta.get("nx_class"),
                "skipped_groups": skipped}  # fmt: skip
        meta.update({k: t.meta[k] for k in ("nexus_definition", "nxxas") if k in t.meta})
        try:
            got = _table_spectra(t.data, t.names, t.units, energy_col, mu_col, where, kind="hdf5", meta=meta,
                                 absorber=t.meta.get("absorber"), edge=t.meta.get("edge"), relative_to=relative_to)  # fmt: skip
        except XanesdbUserError as exc:
            if groups is not None:
                raise
            skipped[t.group] = str(exc).replace(f"{where}: ", "")
            continue
        for s in got:
            group = t.group if s.group is None else f"{t.group}/{s.group}"
            out.append(dataclasses.replace(s, name=f"{Path(path).name}:{group}", path=str(path), group=group))
    if not out:
        first = next(iter(skipped.items()))
        _fail(path, f"has {len(tables)} group(s) of 1-D datasets and none with an energy and a mu ({first[0]}: {first[1]})")
    return out


def _check(where, energy: np.ndarray, mu: np.ndarray, what: str = "mu") -> None:
    """Refuse too few points, non-finite values, unsorted or repeated energies and a narrow range."""
    n = len(energy)
    if n < MIN_POINTS:
        _fail(where, f"has {n} data points; at least {MIN_POINTS} are needed")
    for arr, label in ((energy, "energy"), (mu, what)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            _fail(where, f"{label} has {bad.size} NaN/inf values (first at data row {bad[0] + 1}); remove or fix those rows")
    step = np.diff(energy)
    if (step < 0).all():
        _fail(where, "energies decrease; sort the rows by increasing energy")
    if (step < 0).any():
        i = int(np.flatnonzero(step < 0)[0])
        _fail(where, f"energies are not increasing ({energy[i + 1]:g} eV after {energy[i]:g} eV at data row {i + 2}); "
                     "sort the rows by energy")
    if (step == 0).any():
        i = int(np.flatnonzero(step == 0)[0])
        _fail(where, f"energy {energy[i]:g} eV is repeated (data rows {i + 1} and {i + 2}); "
                     "remove or average repeated points")
    if energy[-1] - energy[0] < MIN_RANGE_EV:
        _fail(where, f"covers only {energy[-1] - energy[0]:.1f} eV; at least {MIN_RANGE_EV:g} eV around the edge is needed")
    if energy[0] < 0:
        _fail(where, f"energies run from {energy[0]:g} to {energy[-1]:g} eV, relative to the edge (E - E0) it seems; give "
                     "absolute energies in eV (add the edge energy, e.g. 8333 eV at the Ni K edge; xanesdb predict "
                     "--absorber Ni adds it)")



_PERL_TOKEN = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"  # 1: 'single', 2: "double" quoted
                            |(=>|[\[\](){},])                           # 3: punctuation
                            |([^\s'"\[\](){},;=]+)                      # 4: bare word / number
                            |[\s;]+|=(?!>)                              # skipped""", re.S | re.X)


def _perl_literal(text: str):
    """Parse one Perl literal (list, hash, ``bless(...)``, string, bare word) without evaluating it.

    Lists become Python lists, hashes dicts, ``bless(X, 'Class')`` becomes ``X``, ``undef`` None;
    every scalar stays a string.
    """
    toks, pos = [], 0
    for m in _PERL_TOKEN.finditer(text):
        if m.start() != pos:
            raise ValueError(f"cannot parse {text[pos:pos + 20]!r}")  # e.g. an unterminated quote
        pos = m.end()
        if m.group(1) is not None:
            toks.append(("s", re.sub(r"\\([\\'])", r"\1", m.group(1))))
        elif m.group(2) is not None:
            s = re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda h: chr(int(h.group(1), 16)), m.group(2))
            toks.append(("s", re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)), s)))
        elif m.group(3) is not None:
            toks.append(("p", m.group(3)))
        elif m.group(4) is not None:
            toks.append(("w", m.group(4)))

    def value(i):
        kind, tok = toks[i]
        if kind == "s":
            return tok, i + 1
        if kind == "w" and tok == "bless" and i + 1 < len(toks) and toks[i + 1] == ("p", "("):
            items, i = value(i + 1)
            return (items[0] if items else None), i
        if kind == "w":
            return (None if tok == "undef" else tok), i + 1
        if tok in "([{":
            close = {"(": ")", "[": "]", "{": "}"}[tok]
            items, i = [], i + 1
            while toks[i] != ("p", close):
                if toks[i][0] == "p" and toks[i][1] in (",", "=>"):
                    i += 1
                    continue
                item, i = value(i)
                items.append(item)
            if tok == "{":
                return dict(zip(items[::2], items[1::2])), i + 1
            return items, i + 1
        raise ValueError(f"unexpected {tok!r}")

    if not toks or pos != len(text):
        raise ValueError("empty or unterminated literal")
    return value(0)[0]


def _flag(value) -> bool:
    try:
        return float(value or 0) != 0
    except (TypeError, ValueError):
        return False


def _athena_records(text: str, path) -> list[dict]:
    """Raw groups of an Athena project: ``{'old_group', 'args': dict, 'x', 'y', ...}`` each."""
    if "____header" in text[:500]:
        try:
            data = json.loads(text)
            return [{"old_group": key, **data[key], "args": dict(data[key].get("args", {}))}
                    for key in data.get("_____order", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            _fail(path, "is a damaged larch (JSON) Athena project; re-save it from Athena or larch")
    records, cur = [], {}
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): quoted strings may hold a bare \r
        try:
            if line.startswith("$old_group"):
                cur = {"old_group": _perl_literal(line.split("=", 1)[1])}
            elif line.startswith("@args"):
                items = _perl_literal(line.split("=", 1)[1])
                cur["args"] = dict(zip(items[::2], items[1::2]))
            elif re.match(r"@(x|y|i0|signal|stddev)\s*=", line):
                key, rhs = line[1:].split("=", 1)
                inner = rhs.strip().rstrip(";").strip().lstrip("(").rstrip(")")
                cur[key.strip()] = np.array([float(t.strip().strip("'\"")) for t in inner.split(",") if t.strip()])
            elif line.startswith("[record]"):
                records.append(cur)
                cur = {}
        except (ValueError, IndexError, RecursionError):
            _fail(path, f"line {n} of the Athena project cannot be parsed; re-save the project from Athena")
    return records


def _group_list(labels: list[str], most: int = 12, what: str = "group label", where: str = "project") -> str:
    """The distinct group labels of a project (or scans, groups of a file), for an error message: the
    first ``most`` and how many more."""
    distinct = list(dict.fromkeys(lab.strip() for lab in labels))
    shown = ", ".join(repr(lab) for lab in distinct[:most])
    more = f" and {len(distinct) - most} more" if len(distinct) > most else ""
    return f"the {where} has {len(distinct)} {what}(s): {shown}{more}"


def _read_athena(text: str, path, groups: Sequence[str] | None) -> list[MeasuredSpectrum]:
    records = _athena_records(text, path)
    if not records:
        _fail(path, "is an Athena project without any groups")
    labels = [str(r.get("args", {}).get("label") or r.get("old_group") or f"group {i + 1}") for i, r in enumerate(records)]
    if groups is not None:
        chosen, missing = [], []
        for want in groups:
            hits = [i for i, lab in enumerate(labels) if lab == want] or \
                   [i for i, lab in enumerate(labels) if lab.strip().lower() == str(want).strip().lower()]
            if not hits:
                missing.append(want)
            chosen += [i for i in hits if i not in chosen]
        if missing:
            _not_found(path, f"no group labelled {', '.join(map(repr, missing))}; {_group_list(labels)}", missing)
    else:
        chosen = list(range(len(records)))
    out, skipped, seen = [], {}, {}
    header = [ln.lstrip("# ").strip() for ln in text.splitlines()[:4] if ln.startswith("#")]
    for i in chosen:
        rec, label = records[i], labels[i]
        args = rec.get("args", {})
        where = f"{path} (group {label!r})"
        not_mu = [k for k in _NOT_MU if _flag(args.get(k))]
        if not _flag(args.get("is_xmu", 1)) or not_mu:
            reason = f"not mu(E): {', '.join(not_mu) or 'is_xmu=0'}"
            if groups is not None:
                _fail(where, f"is {reason}; choose a mu(E) group")
            skipped[label] = reason
            continue
        try:
            shift = float(args.get("bkg_eshift") or 0.0)
            if "x" not in rec or "y" not in rec or len(rec["x"]) != len(rec["y"]):
                _fail(where, "has no energy/mu arrays of equal length; re-save the project from Athena")
            energy = np.asarray(rec["x"], dtype=float) + shift
            _check(where, energy, np.asarray(rec["y"], dtype=float))
        except (XanesdbUserError, ValueError) as exc:
            if groups is not None:
                raise
            skipped[label] = str(exc).replace(f"{where}: ", "")
            continue
        z = args.get("bkg_z") or args.get("z")
        z = _SYMBOLS[int(z) - 1] if str(z).isdigit() and 0 < int(z) <= len(_SYMBOLS) else (z or None)
        edge = args.get("fft_edge") or args.get("edge") or None
        meta = {"athena_old_group": rec.get("old_group"), "project_header": header,
                "is_nor": _flag(args.get("is_nor")), "is_merge": args.get("is_merge") or None,
                "titles": args.get("titles") or [], "xmu_string": args.get("xmu_string") or None,
                "original_file": args.get("file") or None, "skipped_groups": skipped,
                "absorber_source": "Athena bkg_z: Athena guesses it from e0 unless the user set it (can be wrong)"}
        for key in ("e0", "step", "pre1", "pre2", "nor1", "nor2", "nnorm", "fixstep"):
            try:
                meta[f"athena_{'edge_step' if key == 'step' else key}"] = float(args[f"bkg_{key}"])
            except (KeyError, TypeError, ValueError):
                pass
        seen[label] = seen.get(label, 0) + 1  # a label used twice in a project: "file:label#2"
        name = f"{Path(path).name}:{label}" + (f"#{seen[label]}" if seen[label] > 1 else "")
        out.append(MeasuredSpectrum(name=name, path=str(path), group=label, energy=energy,
                                    mu=np.asarray(rec["y"], dtype=float), absorber=str(z) if z else None,
                                    edge=str(edge).upper() if edge else None, kind="athena",
                                    mu_source="athena @y" + (" (normalised: is_nor)" if meta["is_nor"] else ""),
                                    energy_shift_ev=shift, meta=meta))
    if not out:
        _fail(path, f"has no readable mu(E) group ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return out
