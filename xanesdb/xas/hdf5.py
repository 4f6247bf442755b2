"""Tables of 1-D datasets in an HDF5 file (NeXus, ESRF BLISS, ...) for the measured-spectrum readers.

Beamlines that write HDF5 keep a scan's counters as 1-D datasets of one length in one group: a
NeXus ``NXdata`` group (``entry/data``), a BLISS scan's ``1.1/measurement``, ... This module only
finds those groups; :mod:`xanesdb.xas.readers` chooses energy and mu among their datasets by name,
as it does for the columns of a text file. A group is a table when it holds at least two 1-D
numeric datasets of the same length (the most common length there, at least ``min_points``);
images and MCA spectra (2-D and more) are left out. A table whose datasets are all in another
table too (NeXus links a scan's counters into several groups) is dropped for that one.

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

__all__ = ["HDF5_SIGNATURE", "Hdf5Table", "hdf5_tables", "is_hdf5"]

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
        ``title`` (the scan's or entry's ``title`` dataset, when there is one) and ``nx_class``.
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
        for g in groups:
            one_d = {}
            for name, obj in g.items():
                try:
                    if (isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.kind in "fiu"
                            and obj.shape[0] >= min_points):  # fmt: skip
                        one_d[name] = obj
                except (KeyError, OSError):  # a dangling external or soft link
                    continue
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
    # links: the same datasets seen from another group; keep the table that holds the most of them, once
    out, seen = [], set()
    for table, ids in tables:
        if ids in seen or any(ids < other for _, other in tables):
            continue
        seen.add(ids)
        out.append(table)
    return out
