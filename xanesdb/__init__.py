"""xanesdb: computed XANES spectra labelled with local chemical environments, in MongoDB.

The Python API (:mod:`xanesdb.api`) is importable from here; its names load on first use, so
``import xanesdb`` stays light (no Keras, pandas or database client until they are needed).

Examples
--------
>>> import xanesdb
>>> db = xanesdb.connect()                         # doctest: +SKIP
>>> df = db.spectra({"element": "Fe"})             # doctest: +SKIP
>>> xanesdb.predict("hematite.xdi")                # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("xanesdb")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from xanesdb.api import (Connection, Model, as_spectra, connect, load_model, plot_spectra, predict,  # noqa: F401
                             read_spectra)  # fmt: skip

#: names of :mod:`xanesdb.api` exported here (imported on first access)
_API_NAMES = ("Connection", "Model", "as_spectra", "connect", "load_model", "plot_spectra", "predict", "read_spectra")

__all__ = ["__version__", *_API_NAMES]


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from xanesdb import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xanesdb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API_NAMES))
