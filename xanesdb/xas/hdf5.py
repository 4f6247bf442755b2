"""Tables of 1-D datasets in an HDF5 file (NeXus, ESRF BLISS, ...) for the measured-spectrum readers.

Beamlines that write HDF5 keep a scan's counters as 1-D datasets of one length in one group: a
NeXus ``NXdata`` group (``entry/data``), a BLISS scan's ``1.1/measurement``, ... This module only
finds those groups; :mod:`xanesdb.xas.readers` chooses energy and mu among their datasets by name,
as it does for the columns of a text file. A group is a table when it holds at least two 1-D
numeric datasets of the same length (the most common length there, at least ``min_points``);
images and MCA spectra (2-D and more) are left out. A table whose datasets are all in another
table too (NeXus links a scan's counters into several groups) is dropped for that one.

A NeXus entry that declares an XAS application definition is read by that definition, not by the
names in its ``NXdata`` group (:func:`nxxas_table`): the standard ``NXxas`` keeps raw counts,
``instrument/incoming_beam/data`` (I0) and ``instrument/absorbed_beam/data`` (the sample's signal:
transmitted or fluorescence), which become the ``i0`` and ``itrans`` or ``ifluor`` columns, so
that mu is ``ln(i0/itrans)`` or ``ifluor/i0``; the FAIRmat ``NXxas_trans``, ``NXxas_tfy``,
``NXxas_pfy``, ... keep mu itself as ``intensity``, with the absorber in ``element``.

h5py reads the file lazily, so an HDF5 file is not held to the size limit of text files: only the
1-D datasets of the tables are read.

Examples
--------
>>> tables = hdf5_tables("scan.h5")  # doctest: +SKIP
>>> [(t.group, t.names) for t in tables]  # doctest: +SKIP
[('1.1/measurement', ['I0', 'I1', 'energy_enc', 'mu_trans'])]
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["HDF5_SIGNATURE", "Hdf5Table", "hdf5_tables", "is_hdf5", "nxxas_table"]

#: the first 8 bytes of every HDF5 file
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path) -> bool:
    """Whether the file at ``path`` starts with the HDF5 signature."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


@dataclass
class Hdf5Table:
    """One group's 1-D datasets of a common length.

    Attributes
    ----------
    group
        The group's path in the file, without the leading slash (``"1.1/measurement"``).
    names
        Dataset names: NeXus ``axes`` first, then ``signal``, then the rest in h5py's order (by name
        unless the file tracks creation order).
    data
        ``(n_points, n_datasets)`` float array.
    units
        Each dataset's ``units`` attribute (lower case; ``""`` when none).
    meta
        ``title`` (the scan's or entry's ``title`` dataset, when there is one) and ``nx_class``;
        for an XAS application definition also ``nexus_definition``, ``nxxas`` (where each
        column came from and, for ``NXxas``, why transmission or fluorescence), ``absorber`` and
        ``edge`` when the file names them.
    """

    group: str
    names: list[str]
    data: np.ndarray
    units: list[str]
    meta: dict = field(default_factory=dict)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _title(group) -> str | None:
    """The ``title`` dataset of a group or of the groups above it (BLISS scans, NeXus entries)."""
    g = group
    while g is not None and g.name != "/":
        t = g.get("title")
        if t is not None and hasattr(t, "shape") and t.shape in ((), (1,)):
            return _text(t[()])
        g = g.parent
    return None


def hdf5_tables(path, min_points: int = 10) -> list[Hdf5Table]:
    """Every table of 1-D datasets in the HDF5 file ``path`` (see the module notes).

    Raises
    ------
    OSError
        When h5py cannot open the file (damaged, not HDF5).
    """
    import h5py

    tables: list[tuple[Hdf5Table, frozenset]] = []
    with h5py.File(Path(path), "r") as fh:
        groups = [fh]
        fh.visititems(lambda name, obj: groups.append(obj) if isinstance(obj, h5py.Group) else None)
        defined: list[tuple[Hdf5Table, frozenset]] = []  # entries of an XAS application definition
        for g in groups:
            got = nxxas_table(g, min_points)
            if got is not None:
                defined.append(got)
        claimed = frozenset().union(*(ids for _, ids in defined))
        for g in groups:
            one_d = {}
            for name, obj in g.items():
                if _is_counter(obj, min_points):
                    one_d[name] = obj
            if len(one_d) < 2:
                continue
            length = Counter(d.shape[0] for d in one_d.values()).most_common(1)[0][0]
            names = [n for n, d in one_d.items() if d.shape[0] == length]
            if len(names) < 2:
                continue
            attrs = {k: _text(v) for k, v in g.attrs.items() if k in ("NX_class", "signal", "axes")}
            axes = [a for a in re.split(r"[\s,\[\]'\"]+", attrs.get("axes", "")) if a in names]
            signal = [attrs["signal"]] if attrs.get("signal") in names else []
            names = list(dict.fromkeys(axes + signal + names))
            data = np.column_stack([np.asarray(one_d[n][()], dtype=float) for n in names])
            units = [_text(one_d[n].attrs.get("units", "")).strip().lower() for n in names]
            table = Hdf5Table(group=g.name.lstrip("/") or "/", names=names, data=data, units=units,
                              meta={"title": _title(g), "nx_class": attrs.get("NX_class")})  # fmt: skip
            tables.append((table, frozenset(hash(one_d[n].id) for n in names)))  # the same object under any link
    # an entry read by its application definition wins over any group that shows its datasets
    tables = [(t, ids) for t, ids in tables if not ids & claimed]
    # links: the same datasets seen from another group; keep the table that holds the most of them, once
    out, seen = [table for table, _ in defined], set()
    for table, ids in tables:
        if ids in seen or any(ids < other for _, other in tables):
            continue
        seen.add(ids)
        out.append(table)
    return out


#: fields of an ``NXxas`` detector or entry that may say how the sample signal was measured
_MODE_FIELDS = ("mode", "type", "description", "local_name", "name", "detector_type")


def _is_counter(obj, min_points: int) -> bool:
    """Whether ``obj`` is a 1-D numeric dataset of at least ``min_points`` values (a scan's counter)."""
    import h5py

    try:
        return isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.kind in "fiu" and obj.shape[0] >= min_points
    except (KeyError, OSError):  # a dangling external or soft link
        return False


def _dataset_1d(group, path: str, min_points: int):
    """The 1-D numeric dataset at ``path`` under ``group``, or None."""
    try:
        obj = group.get(path)
    except (KeyError, OSError, ValueError):
        return None
    return obj if _is_counter(obj, min_points) else None


def _text_field(group, name: str) -> str:
    import h5py

    obj = group.get(name)
    if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "SOU" and obj.shape in ((), (1,)):
        return _text(obj[()])
    return ""


def _transmission(energy: np.ndarray, i0: np.ndarray, signal: np.ndarray) -> bool | None:
    """Whether the sample signal of an ``NXxas`` scan is transmitted intensity (True: signal/I0
    falls across the edge, as Beer-Lambert has it) or fluorescence (False: it rises); None when
    the scan does not say (no step, or not a finite positive ratio)."""
    order = np.argsort(energy)
    with np.errstate(all="ignore"):
        r = np.log(signal[order] / i0[order])
    n = len(r)
    lo, hi = r[: max(3, n // 5)], r[-max(3, n // 4):]
    lo, hi = lo[np.isfinite(lo)], hi[np.isfinite(hi)]
    if min(lo.size, hi.size) < 3:
        return None
    step = float(np.median(hi) - np.median(lo))
    finite = r[np.isfinite(r)]
    spread = float(np.std(np.diff(finite))) if finite.size > 3 else 0.0
    if abs(step) < max(0.02, 3.0 * spread):
        return None
    return step < 0


def nxxas_table(group, min_points: int = 10) -> tuple[Hdf5Table, frozenset] | None:
    """The spectrum of a NeXus entry that declares an XAS application definition (``definition``
    ``NXxas`` or ``NXxas_*``), as a table :mod:`xanesdb.xas.readers` reads by name, with the ids of
    its datasets; None for any other group.

    ``NXxas`` (the NeXus standard): columns ``energy`` (``instrument/monochromator/energy``),
    ``i0`` (``instrument/incoming_beam/data``) and the sample signal
    (``instrument/absorbed_beam/data``) as ``itrans`` or ``ifluor``: what the detector's ``mode``,
    ``type`` or ``description`` says, else what the scan shows (transmitted intensity falls across
    the edge, fluorescence rises; when neither, it stays ``absorbed_beam`` and the reader asks
    for ``--mu-col``). ``NXxas_trans``, ``NXxas_tfy``, ``NXxas_pfy``, ... (FAIRmat):
    ``intensity`` is mu, with the ``energy`` of the entry or of its ``NXdata`` group."""
    import h5py

    if not isinstance(group, h5py.Group) or "definition" not in group:
        return None
    definition = _text_field(group, "definition").strip()
    if not definition.lower().startswith("nxxas"):
        return None
    where = group.name.lstrip("/") or "/"
    meta = {"title": _title(group), "nx_class": _text(group.attrs.get("NX_class", "NXentry")), "nexus_definition": definition}
    element = _text_field(group, "element/name") or _text_field(group, "element/symbol") or _text_field(group, "element")
    if element.strip().capitalize().isalpha() and len(element.strip()) <= 2:
        meta["absorber"] = element.strip().capitalize()
    edge = (_text_field(group, "element/edge/name") or _text_field(group, "edge/name") or _text_field(group, "edge")
            or _text_field(group, "element/edge"))  # fmt: skip
    if edge.strip().upper() in ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5"):
        meta["edge"] = edge.strip().upper()
    if definition.lower() == "nxxas":
        energy = _dataset_1d(group, "instrument/monochromator/energy", min_points)
        i0 = _dataset_1d(group, "instrument/incoming_beam/data", min_points)
        signal = _dataset_1d(group, "instrument/absorbed_beam/data", min_points)
        if energy is None or i0 is None or signal is None or not energy.shape == i0.shape == signal.shape:
            return None
        e, a, b = (np.asarray(d[()], dtype=float) for d in (energy, i0, signal))
        said = " ".join(_text_field(group[p], f) for p in ("instrument/absorbed_beam", ".") for f in _MODE_FIELDS).lower()
        fluo_said, trans_said = "fluo" in said or "yield" in said, "trans" in said
        if fluo_said != trans_said:
            trans, why = trans_said, "as its absorbed_beam says"
        else:
            trans = _transmission(e, a, b)
            why = "absorbed_beam/I0 falls across the edge" if trans else "absorbed_beam/I0 rises across the edge"
        # neither said nor seen: the column keeps its name and the reader asks for --mu-col
        sig = "absorbed_beam" if trans is None else "itrans" if trans else "ifluor"
        mode = ("transmission or fluorescence not told (absorbed_beam/I0 neither falls nor rises across the edge)"
                if trans is None else f"{'transmission' if trans else 'fluorescence'} ({why})")  # fmt: skip
        meta["nxxas"] = (f"{mode}: energy = instrument/monochromator/energy, i0 = instrument/incoming_beam/data, "
                         f"{sig} = instrument/absorbed_beam/data")  # fmt: skip
        names, sets, data = ["energy", "i0", sig], [energy, i0, signal], np.column_stack([e, a, b])
    else:
        intensity = _dataset_1d(group, "intensity", min_points)
        if intensity is None:
            for sub in group.values():
                if isinstance(sub, h5py.Group) and _text(sub.attrs.get("NX_class", "")) == "NXdata":
                    intensity = _dataset_1d(sub, "intensity", min_points)
                    if intensity is not None:
                        break
        if intensity is None:
            return None
        energy = _dataset_1d(group, "energy", min_points)
        if energy is None or energy.shape != intensity.shape:
            energy = next((d for sub in group.values() if isinstance(sub, h5py.Group)
                           for d in [_dataset_1d(sub, "energy", min_points)] if d is not None and d.shape == intensity.shape), None)  # fmt: skip
        if energy is None:
            return None
        meta["nxxas"] = f"mu = {intensity.name.lstrip('/')}, energy = {energy.name.lstrip('/')} ({definition})"
        names, sets = ["energy", "mu"], [energy, intensity]
        data = np.column_stack([np.asarray(d[()], dtype=float) for d in sets])
    units = [_text(d.attrs.get("units", "")).strip().lower() for d in sets]
    table = Hdf5Table(group=where, names=names, data=data, units=units, meta=meta)
    return table, frozenset(hash(d.id) for d in sets)
