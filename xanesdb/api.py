"""The Python API of xanesdb: connect, query spectra, train, load models, predict, plot.

One module for scripts and notebooks; the command line (``xanesdb ...``) calls the same layers.
Nothing heavy is imported until it is used: querying needs neither Keras nor pandas, and the
plots draw on :class:`matplotlib.figure.Figure` objects without touching the pyplot backend (a
notebook keeps its inline figures; a Figure that is the value of a cell is shown).

Main names (also importable from ``xanesdb`` itself, loaded on first use):

- :func:`connect` -> :class:`Connection`: a database (the local server under ``XANESDB_HOME`` or
  any MongoDB URI) with :meth:`~Connection.spectra` (a pandas DataFrame),
  :meth:`~Connection.spectra_xas` (pymatgen ``XAS`` objects), :meth:`~Connection.dataset`
  (arrays), :meth:`~Connection.train`, :meth:`~Connection.models`, :meth:`~Connection.load_model`,
  :meth:`~Connection.load_bundled` and :meth:`~Connection.build_spectra`;
- :func:`load_model` -> :class:`Model`: a registered run, an exported model folder, or the model
  that ships for an absorber; :meth:`Model.predict` reads arrays, pymatgen ``XAS``, measured
  spectra or files; :meth:`Model.export` writes a portable folder;
- :func:`predict`: files or spectra of any absorbers, each through the model that ships for it
  (no database needed) or through one given model;
- :func:`read_spectra`, :func:`as_spectra`: measured spectra from files, arrays or ``XAS``;
- :func:`plot_spectra`, :meth:`Model.plot_prediction`, :meth:`Model.plot_confusion`,
  :meth:`Model.plot_robustness`: matplotlib Figures.

Examples
--------
>>> import xanesdb
>>> db = xanesdb.connect(home="/tmp/xanesdb-demo")            # doctest: +SKIP
>>> db.load_bundled(elements=["Fe"])                           # doctest: +SKIP
>>> df = db.spectra({"element": "Fe", "lce_class": "O6"})      # doctest: +SKIP
>>> model = db.train({"element": "Fe"}, kind="mlp", epochs=20, n_models=3)  # doctest: +SKIP
>>> model.predict("hematite.xdi", align="edge")                # doctest: +SKIP
>>> xanesdb.predict("Fe.prj")            # shipped per-absorber models, no database  # doctest: +SKIP

See ``docs/api.md`` and the notebook ``docs/api_tour.ipynb``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from pymatgen.analysis.xas.spectrum import XAS

    from xanesdb.ml.dataset import XanesDataset
    from xanesdb.ml.train import TrainConfig, TrainResult
    from xanesdb.platform.settings import XanesdbSettings
    from xanesdb.schemas import TrainingRunDoc
    from xanesdb.xas.readers import MeasuredSpectrum

logger = logging.getLogger(__name__)

__all__ = [
    "Connection",
    "Model",
    "SPECTRUM_FIELDS",
    "as_spectra",
    "connect",
    "load_model",
    "plot_spectra",
    "predict",
    "read_spectra",
]

#: columns of :meth:`Connection.spectra` when no ``fields`` are given (``energies`` and ``mu`` as arrays)
SPECTRUM_FIELDS: tuple[str, ...] = (
    "spectrum_id", "material_id", "site_id", "formula", "element", "edge", "source", "code", "preset",
    "lce_class", "chemenv_symbol", "csm", "coordination_number", "mean_bond_length", "multiplicity",
    "grid_name", "e0", "duplicate_of", "energies", "mu",
)  # fmt: skip

#: spectrum fields holding arrays (become numpy arrays in a DataFrame)
_ARRAY_FIELDS = ("energies", "mu", "mu_aligned")


def _pandas():
    try:
        import pandas as pd
    except ImportError:  # pymatgen depends on pandas, so this is a broken install
        raise XanesdbUserError("DataFrames need pandas, which is not installed; `pip install pandas` "
                               "(pymatgen, a dependency of xanesdb, normally brings it)") from None
    return pd


# ----------------------------------------------------------------------------- connecting
def connect(
    uri: str | None = None,
    *,
    db_name: str | None = None,
    home: str | Path | None = None,
    settings: XanesdbSettings | None = None,
    **overrides: Any,
) -> Connection:
    """Open xanesdb's database.

    Parameters
    ----------
    uri
        A MongoDB URI (``mongodb://user:pw@host/?authSource=...``). None: ``XANESDB_DB_URI`` if set,
        else the local server under ``home``, started on first use.
    db_name
        Database name inside the server (default ``XANESDB_DB_NAME``, else ``xanesdb``).
    home
        xanesdb's folder (local server data, caches); default ``XANESDB_HOME`` or ``~/.xanesdb``.
    settings
        Complete settings instead of the three arguments above.
    **overrides
        Any other setting by name (e.g. ``KERAS_BACKEND="jax"``, ``DB_TIMEOUT_S=30``).

    Returns
    -------
    Connection

    Examples
    --------
    >>> db = connect()                                              # doctest: +SKIP
    >>> db = connect("mongodb://reader:pw@lab-server:27017/", db_name="xanesdb")  # doctest: +SKIP
    >>> with connect(home="/tmp/scratch") as db:                    # doctest: +SKIP
    ...     db.count({"element": "Fe"})
    """
    from xanesdb.platform.settings import get_settings

    if settings is None:
        given = {"DB_URI": uri, "DB_NAME": db_name, "HOME": home}
        settings = get_settings(**{k: v for k, v in given.items() if v is not None}, **overrides)
    elif uri or db_name or home or overrides:
        raise XanesdbUserError("give either settings or uri/db_name/home/overrides to connect(), not both")
    return Connection(settings)


class Connection:
    """A database of computed spectra and trained models (see :func:`connect`).

    The pymongo client opens on first use and is re-used by every call (close it with
    :meth:`close`, or use the connection as a context manager).

    Parameters
    ----------
    settings
        Where the database is and where caches go.
    """

    def __init__(self, settings: XanesdbSettings) -> None:
        self.settings = settings
        self._db = None

    # connection -------------------------------------------------------------
    @property
    def db(self):
        """The pymongo ``Database`` (collections ``spectra``, ``sites``, ``structures``, ``models``, ...)."""
        if self._db is None:
            from xanesdb.platform.stores import get_database

            self._db = get_database(self.settings, ensure=False)
        return self._db

    def close(self) -> None:
        """Close the client (a later call opens a new one)."""
        if self._db is not None:
            self._db.client.close()
            self._db = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "local server" if self.settings.DB_URI is None else "XANESDB_DB_URI"
        return f"<xanesdb Connection {self.settings.DB_NAME!r} ({where}, home {self.settings.HOME})>"

    @property
    def uri(self) -> str:
        """The database URI (password and secrets masked), starting the local server if needed."""
        from xanesdb.platform.stores import database_uri, redact_uri

        return redact_uri(database_uri(self.settings))

    # filling ----------------------------------------------------------------
    def load_bundled(self, elements: Sequence[str] | None = None, build: bool = True) -> dict[str, int]:
        """Load the database that ships with xanesdb (idempotent upserts), then build its spectra.

        Parameters
        ----------
        elements
            Absorbers to load (their FEFF tasks and sites, and the structures those sites are in);
            None loads everything (about a minute on 2 cores, Cu being most of it).
        build
            Also standardise the loaded FEFF tasks into spectra (:meth:`build_spectra`).

        Returns
        -------
        dict
            Documents loaded per collection, and ``spectra_built`` (FEFF tasks standardised) when built.
        """
        from xanesdb.platform.snapshot import BUNDLED_DB_DIR, load_snapshot

        if elements:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="xanesdb-bundled-") as tmp:
                _bundled_subset(BUNDLED_DB_DIR, Path(tmp), set(elements))
                counts = load_snapshot(self.settings, Path(tmp))
        else:
            counts = load_snapshot(self.settings, BUNDLED_DB_DIR)
        if build:
            report = self.build_spectra(elements)
            counts["spectra_built"] = int(report.processed)
        return counts

    def build_spectra(self, elements: Sequence[str] | None = None, **kwargs: Any):
        """Standardise new or changed FEFF tasks into spectra and deduplicate (``xanesdb spectra build``).

        Parameters
        ----------
        elements
            Absorbers to build (None: all).
        **kwargs
            Passed to :func:`xanesdb.jobs.spectra.build.build_spectra` (``threshold``, ``regrid``).

        Returns
        -------
        BuildReport
        """
        from xanesdb.jobs.spectra.build import build_spectra

        return build_spectra(self.settings, elements=list(elements) if elements else None, **kwargs)

    # querying ---------------------------------------------------------------
    def count(self, query: dict[str, Any] | None = None, collection: str = "spectra") -> int:
        """Documents of ``collection`` matching ``query``."""
        return self.db[collection].count_documents(query or {})

    def _spectra_docs(self, query, fields, limit, include_duplicates) -> list[dict[str, Any]]:
        crit = dict(query or {})
        if not include_duplicates and "duplicate_of" not in crit:
            crit = {"$and": [crit, {"duplicate_of": None}]} if crit else {"duplicate_of": None}
        projection = {"_id": 0, **{f: 1 for f in fields}} if fields else {"_id": 0}
        return list(self.db["spectra"].find(crit, projection, limit=int(limit), batch_size=10_000))

    def spectra(
        self,
        query: dict[str, Any] | None = None,
        *,
        fields: Sequence[str] | None = SPECTRUM_FIELDS,
        limit: int = 0,
        include_duplicates: bool = False,
    ) -> pd.DataFrame:
        """Spectra matching a Mongo filter, one row each, as a pandas DataFrame.

        Parameters
        ----------
        query
            Filter on ``spectra`` (e.g. ``{"element": "Fe", "lce_class": {"$in": ["O6", "T4"]}}``);
            see ``docs/queries.md`` for the fields.
        fields
            Columns to read (:data:`SPECTRUM_FIELDS` by default; None: every field).
        limit
            At most this many rows (0: all).
        include_duplicates
            Keep spectra marked ``duplicate_of`` another (left out by default, as for training).

        Returns
        -------
        pandas.DataFrame
            Indexed by ``spectrum_id``; ``energies`` and ``mu`` hold one numpy array per row.

        Examples
        --------
        >>> df = db.spectra({"element": "Fe"}, limit=5)                 # doctest: +SKIP
        >>> df.groupby("lce_class").size()                              # doctest: +SKIP
        """
        pd = _pandas()
        docs = self._spectra_docs(query, fields, limit, include_duplicates)
        for d in docs:
            for f in _ARRAY_FIELDS:
                if isinstance(d.get(f), list):
                    d[f] = np.asarray(d[f], dtype=float)
        df = pd.DataFrame(docs, columns=list(fields) if fields else None)
        if "spectrum_id" in df.columns:
            df = df.set_index("spectrum_id", drop=False)
            df.index.name = None
        return df

    def spectra_xas(
        self, query: dict[str, Any] | None = None, *, limit: int = 0, include_duplicates: bool = False
    ) -> list[XAS]:
        """Spectra matching a Mongo filter as pymatgen :class:`~pymatgen.analysis.xas.spectrum.XAS`.

        Each carries its structure (from ``structures``, read in one query), the absorbing element
        and site index, the edge, and xanesdb's ids in ``xas.xanesdb`` (a dict: ``spectrum_id``,
        ``material_id``, ``lce_class``, ``chemenv_symbol``, ``grid_name``, ``preset``).

        Parameters
        ----------
        query, limit, include_duplicates
            As in :meth:`spectra`.

        Returns
        -------
        list of pymatgen.analysis.xas.spectrum.XAS
        """
        from pymatgen.analysis.xas.spectrum import XAS
        from pymatgen.core import Structure

        fields = ("spectrum_id", "material_id", "site_id", "element", "edge", "lce_class", "chemenv_symbol",
                  "grid_name", "preset", "energies", "mu")  # fmt: skip
        docs = self._spectra_docs(query, fields, limit, include_duplicates)
        mids = sorted({d["material_id"] for d in docs})
        structures = {
            s["material_id"]: Structure.from_dict(s["structure"])
            for s in self.db["structures"].find({"material_id": {"$in": mids}}, {"_id": 0, "material_id": 1, "structure": 1})
        }  # fmt: skip
        out = []
        for d in docs:
            st = structures.get(d["material_id"])
            if st is None:
                raise XanesdbUserError(f"spectrum {d['spectrum_id']}: structure {d['material_id']} is not in "
                                       "'structures'; load it (e.g. `xanesdb db load-bundled`) or use spectra()")  # fmt: skip
            try:
                index = int(str(d.get("site_id", "")).rsplit(":", 1)[-1])
            except ValueError:
                index = None
            xas = XAS(np.asarray(d["energies"], dtype=float), np.asarray(d["mu"], dtype=float), st, d["element"],
                      edge=d.get("edge") or "K", spectrum_type="XANES", absorbing_index=index)  # fmt: skip
            xas.xanesdb = {k: d.get(k) for k in ("spectrum_id", "material_id", "lce_class", "chemenv_symbol",
                                                 "grid_name", "preset")}  # fmt: skip
            out.append(xas)
        return out

    def dataset(
        self,
        query: dict[str, Any],
        *,
        label_field: str = "lce_class",
        representation: str = "grid",
        **kwargs: Any,
    ) -> XanesDataset:
        """Spectra matching ``query`` as training arrays (:class:`~xanesdb.ml.dataset.XanesDataset`).

        Parameters
        ----------
        query
            Filter on ``spectra``; duplicates, failed and unlabelled spectra are left out.
        label_field
            Field learned.
        representation
            ``"grid"`` (each absorber's absolute grid, max-scaled: :func:`xanesdb.ml.dataset.load_dataset`)
            or ``"aligned"`` (edge-step normalised, relative to the half step:
            :func:`xanesdb.ml.aligned.load_aligned_dataset`).
        **kwargs
            Passed on (e.g. ``include_duplicates``, ``use_cache``, ``cache_check``).
        """
        if representation == "aligned":
            from xanesdb.ml.aligned import load_aligned_dataset

            return load_aligned_dataset(query, self.settings, label_field=label_field, **kwargs)
        if representation != "grid":
            raise XanesdbUserError(f"representation must be 'grid' or 'aligned', not {representation!r}")
        from xanesdb.ml.dataset import load_dataset

        return load_dataset(query, self.settings, label_field=label_field, collection=self.db["spectra"], **kwargs)

    # training and models ----------------------------------------------------
    def train(
        self,
        query: dict[str, Any],
        config: TrainConfig | None = None,
        *,
        label_field: str = "lce_class",
        register: bool = True,
        on_epoch=None,
        **knobs: Any,
    ) -> Model:
        """Train classifiers on the spectra a query selects (``xanesdb train``), and register them.

        Parameters
        ----------
        query
            Filter on ``spectra``.
        config
            A :class:`xanesdb.ml.train.TrainConfig`; or give its fields as keyword arguments
            (``kind="cnn"``, ``epochs=20``, ``n_models=3``, ``augment=("shift",)``, ...).
        label_field
            Field learned.
        register
            Store the run and its weights in the database (``models`` and GridFS).
        on_epoch
            Progress callback ``(epoch, loss, epochs)``.

        Returns
        -------
        Model
            The trained model; its ``doc`` holds the query, fingerprint, metrics and versions, and
            ``training`` the :class:`~xanesdb.ml.train.TrainResult` (splits, feature indices).

        Examples
        --------
        >>> model = db.train({"element": "Fe"}, kind="mlp", epochs=20, n_models=3, curves=False)  # doctest: +SKIP
        >>> model.doc.metrics["f1"]["macro"]                                                        # doctest: +SKIP
        """
        from xanesdb.ml.train import TrainConfig, train_from_query

        if config is None:
            unknown = sorted(set(knobs) - set(TrainConfig.__dataclass_fields__))
            if unknown:
                raise XanesdbUserError(f"unknown training option(s) {unknown}; see xanesdb.ml.train.TrainConfig")
            for k in ("augment", "hidden", "window"):
                if isinstance(knobs.get(k), list):
                    knobs[k] = tuple(knobs[k])
            config = TrainConfig(**knobs)
        elif knobs:
            raise XanesdbUserError("give either a TrainConfig or its fields as keywords, not both")
        result = train_from_query(query, config, self.settings, label_field=label_field, register=register,
                                  on_epoch=on_epoch)  # fmt: skip
        return Model(result.doc, result.model, training=result)

    def models(self, criteria: dict[str, Any] | None = None) -> pd.DataFrame:
        """Registered training runs, newest first, as a DataFrame (``xanesdb models list``)."""
        from xanesdb.ml.registry import list_runs

        pd = _pandas()
        rows = list_runs(self.settings, criteria)
        for r in rows:
            f1 = (r.pop("metrics", None) or {}).get("f1", {}).get("macro")
            r["f1_macro"] = f1[0] if f1 else None
        return pd.DataFrame(rows)

    def load_model(self, key: str | Path) -> Model:
        """A registered run (id or unique prefix), an exported folder, or a shipped absorber's model."""
        return load_model(key, self)


# ----------------------------------------------------------------------------- models
class Model:
    """A trained model: its registry document (model card) and its Keras networks.

    Get one from :func:`load_model`, :meth:`Connection.load_model` or :meth:`Connection.train`.

    Attributes
    ----------
    doc : TrainingRunDoc
        Training query and fingerprint, grid, classes, hyper-parameters, metrics, library
        versions, Keras backend and device.
    keras_model : keras.Model
        The networks side by side (input ``(batch, networks, features)``).
    training : TrainResult or None
        What :meth:`Connection.train` produced (splits, feature indices); None for loaded models.
    """

    def __init__(self, doc: TrainingRunDoc, keras_model: Any, training: TrainResult | None = None) -> None:
        self.doc = doc
        self.keras_model = keras_model
        self.training = training

    def __repr__(self) -> str:
        return (f"<xanesdb Model {self.doc.run_id}: {self.doc.kind}, {self.representation} representation, "
                f"classes {', '.join(self.classes)}>")  # fmt: skip

    @property
    def run_id(self) -> str:
        """The run id (the registry key)."""
        return self.doc.run_id

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in output order."""
        return tuple(self.doc.classes)

    @property
    def energies(self) -> np.ndarray:
        """The model's input grid (eV; relative to the half edge step for aligned models)."""
        return np.asarray(self.doc.energies, dtype=float)

    @property
    def representation(self) -> str:
        """``"grid"`` or ``"aligned"``."""
        return self.doc.hyperparameters.get("representation", "grid")

    @property
    def metrics(self) -> dict[str, Any]:
        """Scores of the training run (``f1``, ``confusion``, curves, calibration ...)."""
        return self.doc.metrics

    def predict(
        self,
        data: Any,
        energies: np.ndarray | None = None,
        *,
        align: str = "auto",
        names: Sequence[str] | None = None,
        min_confidence: float | None = None,
        herfd: str = "auto",
        as_frame: bool = True,
    ) -> pd.DataFrame | list[dict[str, Any]]:
        """Classify spectra: arrays, pymatgen ``XAS``, measured spectra or files.

        Parameters
        ----------
        data
            Anything :func:`as_spectra` reads: a file path (XDI, Athena project, CSV, ``xmu.dat``), a
            :class:`~xanesdb.xas.readers.MeasuredSpectrum`, a pymatgen ``XAS``, a 1-D ``mu`` or a 2-D
            array (one spectrum per row), a DataFrame with ``energies`` and ``mu`` columns, or a
            list of these.
        energies
            Energies (eV) of array input. None: the model's own grid (grid models only; an
            aligned model needs absolute energies to find the edge).
        align
            ``"auto"`` (the model's rule), or for grid models ``"none"`` / ``"edge"`` (move the
            spectrum's edge onto the training data's: for measured spectra).
        names
            Row names for array input.
        min_confidence
            Calibrated probability below which the answer is ``unsure`` (default
            :data:`xanesdb.ml.predict.MIN_CONFIDENCE`).
        herfd
            As ``xanesdb predict --herfd``: ``"auto"`` broadens spectra whose file name, Athena
            label or XDI header says HERFD as conventional ones, ``"yes"`` all, ``"no"`` none.
        as_frame
            Return a DataFrame (one row per spectrum, ``p_<class>`` columns) rather than dicts.

        Returns
        -------
        pandas.DataFrame or list of dict
            ``name``, ``predicted`` (a class or ``unsure``), ``best_class``, ``confidence``,
            probabilities, ``reason``; ``error`` for a spectrum that could not be prepared, or a file
            of a list that could not be read (the other files are still predicted; one file given
            alone that cannot be read raises :class:`XanesdbUserError`).

        Examples
        --------
        >>> model.predict(df.mu.tolist(), energies=df.energies.iloc[0])  # doctest: +SKIP
        >>> model.predict("Fe.prj", align="edge")                        # doctest: +SKIP
        """
        from xanesdb.ml.predict import MIN_CONFIDENCE, predict_spectra

        if energies is None and self.representation == "aligned" and _is_array_input(data):
            raise XanesdbUserError(f"model {self.run_id} reads aligned spectra: give the energies (eV) of the arrays")
        grid = self.energies if energies is None else energies
        from xanesdb.xas.herfd import herfd_spectra

        read, unread = _read_batch(data, energies=grid, names=names)
        spectra, not_broadened = herfd_spectra(read, herfd)
        rows = predict_spectra(self.doc, self.keras_model, spectra, align=align,
                               min_confidence=MIN_CONFIDENCE if min_confidence is None else min_confidence)  # fmt: skip
        last = getattr(self, "_last", {})
        if len(last) > 10_000:  # names of earlier predictions, for plot_prediction(name); bounded
            last = {}
        last.update(zip((r["name"] for r in rows), zip(spectra, rows)))
        self._last = last
        from xanesdb.ml.predict import error_rows

        rows = error_rows(unread) + _herfd_error_rows(not_broadened) + rows
        return _rows_frame(rows, self.classes) if as_frame else rows

    def export(self, folder: str | Path) -> Path:
        """Write the model as a portable folder (``model.keras``, ``card.json``, ``card.md``)."""
        from xanesdb.ml.portable import export_portable

        return export_portable(self.doc, self.keras_model, Path(folder))

    # plots -------------------------------------------------------------------
    def plot_prediction(self, spectrum: Any, row: dict[str, Any] | None = None, *, align: str = "auto") -> Figure:
        """A spectrum as the model reads it, over the model's class means, with its answer.

        Parameters
        ----------
        spectrum
            One spectrum (anything :func:`as_spectra` reads that holds one), or the ``name`` of a
            spectrum given to the last :meth:`predict`.
        row
            Its prediction row (computed when None).
        """
        if isinstance(spectrum, str) and spectrum in getattr(self, "_last", {}):
            s, last_row = self._last[spectrum]
            row = row if row is not None else last_row
        else:
            found = as_spectra(spectrum, energies=None if self.representation == "aligned" else self.energies)
            if len(found) != 1:
                raise XanesdbUserError(f"plot_prediction takes one spectrum, got {len(found)}; pass one of them")
            s = found[0]
        if row is None:
            row = self.predict(s, align=align, as_frame=False)[0]
        if "error" in row:
            raise XanesdbUserError(row["error"])
        from xanesdb.ml.plots import figure_measured_prediction

        return figure_measured_prediction(self.doc, s, row, align)

    def plot_confusion(self, title: str | None = None) -> Figure:
        """Confusion matrix of the training run's test sets (rows true, columns predicted)."""
        from xanesdb.ml.plots import figure_confusion

        conf = self.doc.metrics.get("confusion")
        if not conf:
            raise XanesdbUserError(f"model {self.run_id} has no confusion matrix in its metrics")
        return figure_confusion(conf, list(self.classes), title=self.run_id if title is None else title)

    def plot_robustness(self, title: str | None = None) -> Figure:
        """Macro F1 against test energy shifts and noise (runs trained with ``curves=True``)."""
        from xanesdb.ml.plots import figure_robustness

        if not (self.doc.metrics.get("shift_curve") or self.doc.metrics.get("noise_curve")):
            raise XanesdbUserError(f"model {self.run_id} has no robustness curves (train with curves=True)")
        return figure_robustness({self.run_id: self.doc.metrics}, title=self.run_id if title is None else title)


def load_model(key: str | Path, connection: Connection | None = None) -> Model:
    """Load a model: an exported folder, a shipped absorber's model, or a registered run.

    Parameters
    ----------
    key
        A folder written by :meth:`Model.export` / ``xanesdb models export``; an absorber symbol
        (``"Fe"``) for the model that ships with xanesdb for its K edge (``"all"``: the pooled
        one) or that model's run id; else a run id (or unique prefix) in the registry.
    connection
        Where the registry is (default: :func:`connect` with the environment's settings).

    Examples
    --------
    >>> load_model("Fe")                           # shipped, no database  # doctest: +SKIP
    >>> load_model("exported/cnn-1a2b3c")          # a folder               # doctest: +SKIP
    >>> load_model("cnn-4f0e1d", connect())        # the registry           # doctest: +SKIP
    """
    from xanesdb.ml.portable import load_portable, shipped_model_named

    path = Path(key)
    if path.is_dir():
        return Model(*load_portable(path))
    shipped = shipped_model_named(key) if isinstance(key, str) else None
    if shipped is not None:
        return Model(*load_portable(shipped))
    from xanesdb.ml.registry import get_run, load_model as load_registered

    conn = connection or connect()
    doc = get_run(str(key), conn.settings)
    return Model(doc, load_registered(doc, conn.settings))


# ----------------------------------------------------------------------------- spectra in
def read_spectra(path: str | Path, **kwargs: Any) -> list[MeasuredSpectrum]:
    """Measured spectra of one file (:func:`xanesdb.xas.readers.read_spectra`: XDI, Athena, SPEC, HDF5, CSV, xmu.dat)."""
    from xanesdb.xas.readers import read_spectra as _read

    return _read(path, **kwargs)


def _is_array_input(data: Any) -> bool:
    if isinstance(data, np.ndarray):
        return True
    if isinstance(data, (list, tuple)) and data and all(isinstance(x, (int, float, np.floating, np.integer)) for x in data):
        return True
    if isinstance(data, (list, tuple)) and data and all(isinstance(x, (list, tuple, np.ndarray)) for x in data):
        return all(np.ndim(x) == 1 and not isinstance(x, str) for x in data)
    return False


def _array_spectra(mu: Any, energies: Any, names: Sequence[str] | None) -> list[MeasuredSpectrum]:
    from xanesdb.xas.readers import MeasuredSpectrum

    Y = np.asarray(mu, dtype=float)
    if Y.ndim == 1:
        Y = Y[None, :]
    if Y.ndim != 2:
        raise XanesdbUserError(f"array input must be one spectrum (1-D) or one per row (2-D), not shape {Y.shape}")
    if energies is None:
        raise XanesdbUserError("array input needs its energies (eV): pass energies=")
    E = np.asarray(energies, dtype=float)
    if E.ndim != 1 or len(E) != Y.shape[1]:
        raise XanesdbUserError(f"{Y.shape[1]} points per spectrum but {E.size} energies; give energies of the same length")
    names = list(names) if names is not None else [f"spectrum {i}" for i in range(len(Y))]
    if len(names) != len(Y):
        raise XanesdbUserError(f"{len(names)} names for {len(Y)} spectra")
    return [MeasuredSpectrum(name=str(n), path=str(n), group=None, energy=E.copy(), mu=y, absorber=None, edge=None,
                             kind="array", mu_source="array") for n, y in zip(names, Y)]  # fmt: skip


def _xas_spectrum(xas: Any) -> MeasuredSpectrum:
    from xanesdb.xas.readers import MeasuredSpectrum

    ids = getattr(xas, "xanesdb", None) or {}
    el = str(xas.absorbing_element)
    name = ids.get("spectrum_id") or f"{xas.structure.composition.reduced_formula} {el} {xas.edge}" + (
        f" site {xas.absorbing_index}" if xas.absorbing_index is not None else "")  # fmt: skip
    return MeasuredSpectrum(name=name, path=name, group=None, energy=np.asarray(xas.x, dtype=float),
                            mu=np.asarray(xas.y, dtype=float), absorber=el, edge=xas.edge, kind="pymatgen-xas",
                            mu_source="XAS.y")  # fmt: skip


def as_spectra(
    data: Any, energies: np.ndarray | None = None, names: Sequence[str] | None = None
) -> list[MeasuredSpectrum]:
    """Spectra from any supported input, as :class:`~xanesdb.xas.readers.MeasuredSpectrum` objects.

    Parameters
    ----------
    data
        A file path (str or Path; every spectrum of an Athena project), a ``MeasuredSpectrum``, a
        pymatgen ``XAS``, a 1-D array (one ``mu``) or 2-D array (one per row) on ``energies``, a
        pandas DataFrame with ``energies`` and ``mu`` columns (e.g. from :meth:`Connection.spectra`),
        or a list of any of these.
    energies
        Energies (eV) of array input.
    names
        Names of array input rows.

    Returns
    -------
    list of MeasuredSpectrum
    """
    import dataclasses

    from xanesdb.xas.readers import MeasuredSpectrum

    if isinstance(data, (str, Path)):
        return read_spectra(data)
    if isinstance(data, MeasuredSpectrum):
        return [data]
    if type(data).__name__ == "XAS" and hasattr(data, "absorbing_element"):
        return [_xas_spectrum(data)]
    if hasattr(data, "columns") and hasattr(data, "iterrows"):  # a DataFrame
        if not {"energies", "mu"} <= set(data.columns):
            raise XanesdbUserError("a DataFrame of spectra needs 'energies' and 'mu' columns (Connection.spectra gives them)")
        out = []
        for i, (_, r) in enumerate(data.iterrows()):
            name = str(r["spectrum_id"]) if "spectrum_id" in data.columns else str(data.index[i])
            out.extend(_array_spectra(r["mu"], r["energies"], [name]))
            if "element" in data.columns:
                out[-1] = dataclasses.replace(out[-1], absorber=r["element"], edge=r.get("edge", "K"))
        return out
    if _is_array_input(data):
        return _array_spectra(data, energies, names)
    if isinstance(data, Iterable):
        out = []
        for item in data:
            out.extend(as_spectra(item, energies=energies))
        return out
    raise XanesdbUserError(f"cannot read spectra from a {type(data).__name__}; give files, arrays, XAS or MeasuredSpectrum")


def predict(
    data: Any,
    model: str | Path | Model | None = None,
    *,
    energies: np.ndarray | None = None,
    align: str = "auto",
    herfd: str = "auto",
    connection: Connection | None = None,
    as_frame: bool = True,
) -> pd.DataFrame | list[dict[str, Any]]:
    """Classify spectra of any absorbers (``xanesdb predict``).

    Parameters
    ----------
    data
        Files, spectra, ``XAS`` or arrays (see :func:`as_spectra`).
    model
        None: each spectrum's absorber is found from its edge energy and the model shipped for it
        is used (no database). A :class:`Model`, a folder, or a registered run id: that model
        for every spectrum.
    energies
        Energies (eV) of array input.
    align
        As in :meth:`Model.predict`.
    herfd
        As ``xanesdb predict --herfd``: ``"auto"`` broadens spectra whose file name, Athena label
        or XDI header says HERFD as conventional ones, ``"yes"`` every spectrum, ``"no"`` none
        (:mod:`xanesdb.xas.herfd`).
    connection
        Where a run id is looked up (default: :func:`connect`).
    as_frame
        A DataFrame rather than a list of dicts.

    Returns
    -------
    pandas.DataFrame or list of dict
        One row per spectrum, with ``absorber`` and ``absorber_from`` when the model was chosen
        per absorber; a spectrum that could not be broadened as HERFD, or a file of a list that
        could not be read (the others are still predicted, as ``xanesdb predict`` does a batch), is
        a row with ``error``.

    Examples
    --------
    >>> predict("Fe.prj")                                   # doctest: +SKIP
    """
    if isinstance(model, Model):
        return model.predict(data, energies, align=align, as_frame=as_frame)
    from xanesdb.ml.predict import error_rows, predict_measured

    from xanesdb.xas.herfd import herfd_spectra

    read, unread = _read_batch(data, energies=energies)
    spectra, not_broadened = herfd_spectra(read, herfd)
    key = None if model is None else str(model)
    settings = connection.settings if connection is not None else None
    rows = error_rows(unread) + _herfd_error_rows(not_broadened) + predict_measured(spectra, model=key, align=align, settings=settings)
    classes = sorted({c for r in rows for c in (r.get("probabilities") or {})})
    return _rows_frame(rows, tuple(classes)) if as_frame else rows


def _read_batch(data: Any, energies: np.ndarray | None = None, names: Sequence[str] | None = None):
    """``(spectra, failures)`` of :func:`as_spectra`'s input, where a list's files are read as
    ``xanesdb predict`` reads a batch (:func:`xanesdb.xas.readers.read_files`): a file that cannot be
    read is a ``(path, one-line reason)`` failure, and the other items are still read. One file given
    alone, or any other input that cannot be read, raises :class:`XanesdbUserError` as before."""
    if isinstance(data, (str, Path)) or _is_array_input(data) or not isinstance(data, (list, tuple)):
        return as_spectra(data, energies=energies, names=names), []
    from xanesdb.xas.readers import read_files

    if all(isinstance(item, (str, Path)) for item in data):  # files and folders only: as the command reads them
        return read_files(list(data))
    spectra, failures = [], []
    for item in data:
        if isinstance(item, (str, Path)):
            got, failed = read_files([item])
            spectra += got
            failures += failed
        else:
            spectra += as_spectra(item, energies=energies)
    return spectra, failures


def _herfd_error_rows(failures: list[tuple[Path, str]]) -> list[dict[str, Any]]:
    """Error rows (as predict gives them) of spectra :func:`~xanesdb.xas.herfd.herfd_spectra` could not broaden."""
    return [{"name": why.split(": ")[0], "file": str(f), "error": why} for f, why in failures]


def _rows_frame(rows: list[dict[str, Any]], classes: Sequence[str]) -> pd.DataFrame:
    from xanesdb.ml.predict import vote_text

    pd = _pandas()
    flat = []
    for r in rows:
        f = {k: v for k, v in r.items() if k not in ("probabilities", "probabilities_uncalibrated", "std",
                                                     "probabilities_networks", "reference_vote", "nearest_references")}  # fmt: skip
        for c in classes:
            f[f"p_{c}"] = (r.get("probabilities") or {}).get(c)
        if r.get("reference_vote"):  # the nearest reference compounds, as text and the nearest one's material
            f["reference_vote"] = vote_text(r)
            f["nearest_reference"] = r["nearest_references"][0]["material_id"]
        flat.append(f)
    first = ["name", "predicted", "best_class", "confidence", *[f"p_{c}" for c in classes], "reason", "error"]
    df = pd.DataFrame(flat)
    return df[[c for c in first if c in df.columns] + [c for c in df.columns if c not in first]]


# ----------------------------------------------------------------------------- plots
def plot_spectra(
    data: Any,
    labels: Any = "lce_class",
    *,
    energies: np.ndarray | None = None,
    title: str = "",
    max_lines: int = 30,
) -> Figure:
    """Spectra coloured by class, each class's mean bold; a matplotlib Figure.

    Parameters
    ----------
    data
        A DataFrame from :meth:`Connection.spectra` (one grid), a
        :class:`~xanesdb.ml.dataset.XanesDataset`, or a 2-D array with ``energies``.
    labels
        A column name of the DataFrame (default ``lce_class``), one label per row, or None.
    energies
        Energies of array input.
    title
        Figure title.
    max_lines
        Thin lines drawn per class (means use every row).
    """
    from xanesdb.ml.plots import figure_spectra

    if hasattr(data, "columns"):
        grids = set(data["grid_name"]) if "grid_name" in data.columns else set()
        if len(grids) > 1:
            raise XanesdbUserError(f"the spectra are on {len(grids)} grids {sorted(grids)}; select one grid_name")
        E = np.asarray(data["energies"].iloc[0], dtype=float)
        Y = np.stack([np.asarray(m, dtype=float) for m in data["mu"]])
        Y = Y / Y.max(axis=1, keepdims=True)
        labs = data[labels].tolist() if isinstance(labels, str) and labels in data.columns else labels
        if isinstance(labs, str):
            labs = None
        return figure_spectra(E, Y, labs, title=title or (next(iter(grids)) if grids else ""), max_lines=max_lines)
    if hasattr(data, "X") and hasattr(data, "energies"):
        labs = data.labels if isinstance(labels, str) else labels
        rel = "aligned" in str(getattr(data, "grid_name", ""))
        return figure_spectra(data.energies, data.X, labs, title=title or data.grid_name, max_lines=max_lines,
                              xlabel="E - E(half edge step) / eV" if rel else "E / eV")  # fmt: skip
    if energies is None:
        raise XanesdbUserError("array input needs its energies (eV): pass energies=")
    return figure_spectra(energies, np.asarray(data), None if isinstance(labels, str) else labels, title=title,
                          max_lines=max_lines)  # fmt: skip


# ----------------------------------------------------------------------------- helpers
def _bundled_subset(src: Path, dst: Path, elements: set[str]) -> None:
    """A snapshot of the bundled one with only ``elements``' FEFF tasks and sites (and their structures).

    Lines are copied unchanged; only those that may match are parsed (the FEFF tasks file is
    18 MB of gzipped JSON, most of it Cu).
    """
    import gzip
    import json

    unknown = elements - {"Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn"}
    if unknown:
        raise XanesdbUserError(f"the bundled database holds 3d-metal K edges only; not {sorted(unknown)}")
    marks = [f'"element": "{e}"' for e in elements]
    mids: set[str] = set()
    for f in sorted(src.glob("*.jsonl.gz")):
        coll = f.name.split(".")[0]
        if coll not in ("sites", "feff_tasks", "spectra"):
            continue
        with gzip.open(f, "rt", encoding="utf-8") as fin, gzip.open(dst / f.name, "wt", encoding="utf-8",
                                                                    compresslevel=1) as fout:  # fmt: skip
            for line in fin:
                if not any(m in line for m in marks):
                    continue
                d = json.loads(line)
                if d.get("element") in elements:
                    mids.add(d.get("material_id"))
                    fout.write(line)
    for f in sorted(src.glob("structures*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fin, gzip.open(dst / f.name, "wt", encoding="utf-8",
                                                                    compresslevel=1) as fout:  # fmt: skip
            for line in fin:
                if line.strip() and json.loads(line).get("material_id") in mids:
                    fout.write(line)
