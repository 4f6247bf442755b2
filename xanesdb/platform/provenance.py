"""The versions of the libraries that shape a document's numbers, recorded on the document.

``feff.inp`` text and preset hashes depend on pymatgen, ChemEnv labels on pymatgen and spglib,
spectra on the FEFF code, and trained models on Keras and its backend. Writers put
:func:`library_versions` of the libraries that made a document on it (``library_versions``
field), so a result can be traced to, and reproduced with, the versions that made it.

Examples
--------
>>> from xanesdb.platform.provenance import library_versions
>>> sorted(library_versions(["numpy"]))
['numpy']
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

__all__ = ["library_versions", "FEFF_LIBRARIES", "LABEL_LIBRARIES", "MODEL_LIBRARIES"]

#: what a FEFF task depends on (input text, running, parsing)
FEFF_LIBRARIES: tuple[str, ...] = ("xanesdb", "pymatgen", "feff10-rs")
#: what a ChemEnv label depends on
LABEL_LIBRARIES: tuple[str, ...] = ("xanesdb", "pymatgen", "spglib")
#: what a trained model depends on (the Keras backend is added by the trainer)
MODEL_LIBRARIES: tuple[str, ...] = ("xanesdb", "keras", "numpy", "scikit-learn")


@lru_cache(maxsize=None)
def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def library_versions(dists: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}`` of the installed ones among ``dists`` (missing ones left out).

    Keys use ``_`` for ``-`` and ``.`` so they can be MongoDB field names
    (``library_versions.feff10_rs``).
    """
    out = {}
    for d in dists:
        v = _version(d)
        if v is not None:
            out[d.replace("-", "_").replace(".", "_")] = v
    return out
