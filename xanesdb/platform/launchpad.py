"""FireWorks in xanesdb's MongoDB: the LaunchPad, a worker-side JobStore, worker configuration.

The LaunchPad lives in the **same database** as xanesdb's own collections (``DB_NAME``; FireWorks
adds ``fireworks``, ``launches``, ``workflows``, ``fw_id_assigner``, ``offline_runs`` and the
``fw_gridfs`` bucket, none of which clash with xanesdb's names). One database means one set of
credentials for workers (a MongoDB user with ``readWrite`` on that one database is enough, which
is what a managed MongoDB usually hands out), one backup, and the population flows can see the
queue (which site tasks are queued already) with the same client they use for ``feff_tasks``.
``lpad reset`` only empties FireWorks' collections, never xanesdb's.

Workers find the database the way every other xanesdb process does: from ``XANESDB_DB_URI`` and
``XANESDB_DB_NAME`` (or ``~/.xanesdb.yaml``). The jobflow ``JobStore`` written into each Firework
is made of :class:`SettingsMongoStore` / :class:`SettingsGridFSStore`, which serialise only a
collection name and the campaign's database name, and resolve the URI on the worker when they
connect. So no password ends up in the ``fireworks`` collection, and a worker that reaches the
server under another host name (a tunnel, a cluster-internal address) still works.

SecantusDB (the local server) answers everything FireWorks 2.1 and jobflow 0.4 use here: the
``fw_id_assigner`` counters (``find_one_and_update`` with ``$inc``), checkout, pings,
``detect_lostruns`` (``$elemMatch`` on ISO date strings and a ``$lookup`` aggregation), detours
from ``Response(replace=...)`` and the GridFS fallback bucket; checked with the tests in
``tests/test_fireworks.py``. The only step FireWorks normally needs first, ``lpad reset``
(which creates the id counters), is done here without deleting anything
(:func:`ensure_launchpad`).

Examples
--------
>>> from xanesdb.platform.launchpad import get_launchpad
>>> lp = get_launchpad()                                  # doctest: +SKIP
>>> lp.get_fw_ids({"state": "READY"}, count_only=True)    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maggma.stores import GridFSStore, MongoStore

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import XanesdbSettings, get_settings

if TYPE_CHECKING:
    from fireworks import LaunchPad
    from jobflow import JobStore

logger = logging.getLogger(__name__)

__all__ = [
    "FIREWORKS_COLLECTIONS",
    "TASK_KEY_SPEC",
    "CAMPAIGN_META",
    "SettingsMongoStore",
    "SettingsGridFSStore",
    "worker_job_store",
    "get_launchpad",
    "ensure_launchpad",
    "queued_task_keys",
    "active_campaign_keys",
    "launchpad_summary",
    "write_worker_config",
    "rlaunch_command",
]

#: collections FireWorks keeps in the database (beside xanesdb's)
FIREWORKS_COLLECTIONS = ("fireworks", "launches", "workflows", "fw_id_assigner", "offline_runs",
                         "fw_gridfs.files", "fw_gridfs.chunks")
#: Firework spec field holding the deterministic FEFF task key of a FEFF Firework
TASK_KEY_SPEC = "xanesdb_task_key"
#: workflow metadata field holding the campaign description (material, preset, task keys)
CAMPAIGN_META = "xanesdb"
#: Firework states in which a task is still going to run (so it must not be queued twice)
ACTIVE_STATES = ("WAITING", "READY", "RESERVED", "RUNNING", "PAUSED")


# ----------------------------------------------------------------------------- worker-side stores
def _check_database(expected: str | None, settings: XanesdbSettings) -> None:
    if expected and expected != settings.DB_NAME:
        raise RuntimeError(
            f"this workflow writes to database {expected!r} but the worker is configured for "
            f"{settings.DB_NAME!r}; start the worker with XANESDB_DB_NAME={expected}"
        )


def _resolved_uri(settings: XanesdbSettings, require_uri: bool) -> str:
    from xanesdb.platform.stores import database_uri

    if require_uri and settings.DB_URI is None:
        raise RuntimeError("XANESDB_DB_URI is not set on this worker, so it would use its own local database; "
                           "set XANESDB_DB_URI to the campaign's MongoDB URI")
    return database_uri(settings)


class _SettingsResolvedStore:
    """What the two stores below share: only names are serialised, the server is the connecting
    process's (see :class:`SettingsMongoStore`). Mixed in before the maggma store class."""

    _scheme = "xanesdb"

    def __init__(self, collection_name: str, database: str | None = None, require_uri: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(database=database or "", collection_name=collection_name, **kwargs)  # type: ignore[call-arg]
        self.database = database
        self.require_uri = require_uri

    @property
    def name(self) -> str:
        """Where the store is, without credentials."""
        return f"{self._scheme}://{self.database or '<worker DB_NAME>'}/{self.collection_name}"  # type: ignore[attr-defined]

    def connect(self, force_reset: bool = False) -> None:
        """Connect to the worker's configured MongoDB."""
        if getattr(self, "_coll", None) is None or force_reset:
            settings = get_settings()
            _check_database(self.database, settings)
            self.uri = _resolved_uri(settings, self.require_uri)
            saved, self.database = self.database, settings.DB_NAME
            try:
                super().connect(force_reset=True)  # type: ignore[misc]
            finally:
                self.database = saved
                self.uri = None


class SettingsMongoStore(_SettingsResolvedStore, MongoStore):
    """A maggma ``MongoStore`` whose server comes from the xanesdb settings of the process that connects.

    Serialises to ``{collection_name, database}`` only (no URI, no password); on ``connect`` the
    URI is read from ``XANESDB_DB_URI`` (or the local server) of the worker, and the worker's
    ``XANESDB_DB_NAME`` must be the campaign's ``database``.

    Parameters
    ----------
    collection_name
        Collection inside the xanesdb database.
    database
        The campaign's database name (checked against the worker's settings); None: the worker's.
    require_uri
        Refuse to connect on a worker without ``XANESDB_DB_URI`` (set when the campaign was
        submitted to an external MongoDB: such a worker would otherwise start its own local server).
    **kwargs
        Passed to maggma's ``Store`` (``key``, ``last_updated_field``...).
    """

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, SettingsMongoStore) and self.collection_name == other.collection_name
                and self.database == other.database)

    def __hash__(self) -> int:
        return hash((self.database, self.collection_name, self.last_updated_field))


class SettingsGridFSStore(_SettingsResolvedStore, GridFSStore):
    """A maggma ``GridFSStore`` resolved from the connecting process's settings (see :class:`SettingsMongoStore`).

    Parameters
    ----------
    collection_name
        GridFS bucket name.
    database
        The campaign's database name (checked on connect); None: the worker's.
    require_uri
        Refuse to connect on a worker without ``XANESDB_DB_URI``.
    **kwargs
        Passed to ``GridFSStore`` (``compression``, ``searchable_fields``...).
    """

    _scheme = "xanesdb-gridfs"


def worker_job_store(settings: XanesdbSettings | None = None) -> JobStore:
    """The jobflow ``JobStore`` for Fireworks: collection ``jobs`` and GridFS ``job_data``.

    The same collections as :func:`xanesdb.platform.stores.job_store`, but resolved on the
    worker (see :class:`SettingsMongoStore`), so it can be written into every Firework.
    """
    from jobflow import JobStore

    settings = settings or get_settings()
    external = settings.DB_URI is not None
    docs = SettingsMongoStore("jobs", database=settings.DB_NAME, require_uri=external, key="uuid")
    data = SettingsGridFSStore("job_data", database=settings.DB_NAME, require_uri=external)
    return JobStore(docs, additional_stores={"data": data})


# ----------------------------------------------------------------------------- LaunchPad
def get_launchpad(settings: XanesdbSettings | None = None, strm_lvl: str = "WARNING",
                  logdir: str | None = None, init: bool = True) -> LaunchPad:
    """A FireWorks ``LaunchPad`` in the configured database (starts the local server if needed).

    Parameters
    ----------
    settings
        Where the database is (default: the environment's settings).
    strm_lvl
        FireWorks' log level on the console.
    logdir
        Folder for FireWorks' log files (default: none).
    init
        Create the id counters and indexes when the LaunchPad is new (:func:`ensure_launchpad`).
    """
    from fireworks import LaunchPad

    from xanesdb.platform.stores import get_client

    settings = settings or get_settings()
    get_client(settings).close()  # a clear error when the database is unreachable
    from xanesdb.platform.stores import database_uri

    timeout_ms = int(settings.DB_TIMEOUT_S * 1000)
    lp = LaunchPad(host=database_uri(settings), name=settings.DB_NAME, uri_mode=True, strm_lvl=strm_lvl,
                   logdir=logdir, user_indices=[f"spec.{TASK_KEY_SPEC}"],
                   wf_user_indices=[f"metadata.{CAMPAIGN_META}.material_id", f"metadata.{CAMPAIGN_META}.key"],
                   mongoclient_kwargs={"serverSelectionTimeoutMS": timeout_ms})
    lp.m_logger.propagate = False  # FireWorks logs through its own handler at strm_lvl
    if init:
        ensure_launchpad(lp)
    return lp


def ensure_launchpad(lp: LaunchPad) -> bool:
    """Create FireWorks' id counters and indexes if the LaunchPad is new; delete nothing.

    ``lpad reset`` does this too but also empties the LaunchPad; this is safe to call every time.
    The counter document has a fixed ``_id`` (as FireWorks' own reset writes it), so two
    processes initialising at once still make one. Returns True when it initialised.
    """
    if lp.fw_id_assigner.count_documents({}) > 0:
        return False
    n_fw = max([d["fw_id"] for d in lp.fireworks.find({}, {"fw_id": 1}).sort("fw_id", -1).limit(1)] or [0]) + 1
    n_l = max([d["launch_id"] for d in lp.launches.find({}, {"launch_id": 1}).sort("launch_id", -1).limit(1)] or [0]) + 1
    lp.fw_id_assigner.update_one({"_id": -1}, {"$setOnInsert": {"next_fw_id": n_fw, "next_launch_id": n_l}},
                                 upsert=True)
    lp.tuneup()
    logger.info("initialised the FireWorks LaunchPad in database %s", lp.name)
    return True


def queued_task_keys(lp: LaunchPad, task_keys: list[str] | None = None) -> set[str]:
    """FEFF task keys of Fireworks that are waiting, ready, reserved, running or paused."""
    crit: dict[str, Any] = {"state": {"$in": list(ACTIVE_STATES)}, f"spec.{TASK_KEY_SPEC}": {"$exists": True}}
    if task_keys is not None:
        out: set[str] = set()
        for i in range(0, len(task_keys), 1000):
            crit[f"spec.{TASK_KEY_SPEC}"] = {"$in": task_keys[i:i + 1000]}
            out.update(d["spec"][TASK_KEY_SPEC] for d in lp.fireworks.find(crit, {f"spec.{TASK_KEY_SPEC}": 1}))
        return out
    return {d["spec"][TASK_KEY_SPEC] for d in lp.fireworks.find(crit, {f"spec.{TASK_KEY_SPEC}": 1})}


def active_campaign_keys(lp: LaunchPad) -> set[str]:
    """``metadata.xanesdb.key`` of workflows that are not finished (not COMPLETED, FIZZLED or DEFUSED)."""
    crit = {"state": {"$nin": ["COMPLETED", "FIZZLED", "DEFUSED", "ARCHIVED"]},
            f"metadata.{CAMPAIGN_META}.key": {"$exists": True}}
    return {d["metadata"][CAMPAIGN_META]["key"] for d in lp.workflows.find(crit, {f"metadata.{CAMPAIGN_META}.key": 1})}


def launchpad_summary(lp: LaunchPad) -> dict[str, dict[str, int]]:
    """Counts of workflows, Fireworks and FEFF Fireworks by state."""
    def by_state(coll: Any, match: dict) -> dict[str, int]:
        rows = coll.aggregate([{"$match": match}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}])
        return {r["_id"]: r["n"] for r in sorted(rows, key=lambda r: str(r["_id"]))}

    return {
        "workflows": by_state(lp.workflows, {}),
        "fireworks": by_state(lp.fireworks, {}),
        "feff fireworks": by_state(lp.fireworks, {f"spec.{TASK_KEY_SPEC}": {"$exists": True}}),
    }


# ----------------------------------------------------------------------------- worker configuration
def write_worker_config(folder: str | Path, settings: XanesdbSettings | None = None, worker_name: str | None = None,
                        category: str | None = None, ping_seconds: int | None = None,
                        include_uri: bool = True, slurm_cores: int | None = None,
                        walltime: str = "24:00:00") -> dict[str, Path]:
    """Write ``my_launchpad.yaml`` and ``my_fworker.yaml`` for ``rlaunch``/``qlaunch`` workers.

    Parameters
    ----------
    folder
        Where to write them (created).
    settings
        The database the workers use (default: the environment's).
    worker_name
        FireWorker name (default: this host's name).
    category
        FireWorker category (``_category`` of the Fireworks it pulls); None pulls everything.
    ping_seconds
        Write an ``FW_config.yaml`` with this ``PING_TIME_SECS`` (running jobs report every
        this many seconds, so ``xanesdb populate recover`` can use a short expiration).
    include_uri
        Put the URI (with any password) into ``my_launchpad.yaml`` (written with mode 600); else
        the host is left as ``$XANESDB_DB_URI`` for you to fill in.
    slurm_cores
        Also write a SLURM ``my_qadapter.yaml`` for ``qlaunch``: one node job running
        ``rlaunch multi <slurm_cores>``, i.e. one single-threaded FEFF process per core (with
        ``ping_seconds``, its ``pre_rocket`` exports ``FW_CONFIG_FILE`` so the node job reads it).
    walltime
        SLURM wall time of each node job.

    Returns
    -------
    dict
        File kind -> path written.
    """
    import yaml

    from xanesdb.platform.stores import database_uri, redact_uri

    settings = settings or get_settings()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    uri = database_uri(settings) if include_uri else "$XANESDB_DB_URI"
    lp = {"host": uri, "name": settings.DB_NAME, "uri_mode": True, "strm_lvl": "INFO",
          "user_indices": [f"spec.{TASK_KEY_SPEC}"], "wf_user_indices": [], "logdir": None,
          "mongoclient_kwargs": {"serverSelectionTimeoutMS": int(settings.DB_TIMEOUT_S * 1000)}}
    written: dict[str, Path] = {}
    path = folder / "my_launchpad.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# FireWorks LaunchPad in the xanesdb database ({redact_uri(uri)})\n")
        yaml.safe_dump(lp, fh, sort_keys=False)
    os.chmod(path, 0o600)
    written["launchpad"] = path
    fworker = {"name": worker_name or socket.gethostname(), "category": category or "", "query": "{}",
               "env": {}}
    (folder / "my_fworker.yaml").write_text(yaml.safe_dump(fworker, sort_keys=False))
    written["fworker"] = folder / "my_fworker.yaml"
    if ping_seconds is not None:
        (folder / "FW_config.yaml").write_text(
            yaml.safe_dump({"PING_TIME_SECS": int(ping_seconds), "RUN_EXPIRATION_SECS": int(ping_seconds) * 4}))
        written["fw_config"] = folder / "FW_config.yaml"
    if slurm_cores is not None:
        launch = (f"rlaunch -l {(folder / 'my_launchpad.yaml').resolve()} -w {(folder / 'my_fworker.yaml').resolve()} "
                  f"multi {int(slurm_cores)} --nlaunches 0 --sleep 60")
        qadapter = {
            "_fw_name": "CommonAdapter", "_fw_q_type": "SLURM", "nodes": 1, "ntasks": 1,
            "cpus_per_task": int(slurm_cores), "walltime": walltime, "queue": None, "account": None,
            "job_name": "xanesdb-feff",
            # the URI (a password) comes from ~/.xanesdb.yaml (chmod 600), never from a batch script
            "pre_rocket": f"export XANESDB_DB_NAME={settings.DB_NAME} OMP_NUM_THREADS=1 XANESDB_WORKERS=1"
            # the node job runs in qlaunch's launch folder, where FireWorks would not find FW_config.yaml
            + (f" FW_CONFIG_FILE={(folder / 'FW_config.yaml').resolve()}" if ping_seconds is not None else ""),
            "rocket_launch": launch, "post_rocket": None,
        }
        (folder / "my_qadapter.yaml").write_text(yaml.safe_dump(qadapter, sort_keys=False))
        written["qadapter"] = folder / "my_qadapter.yaml"
    return written


def rlaunch_command(folder: str | Path, sleep: int = 10, nlaunches: int = 0) -> list[str]:
    """The ``rlaunch rapidfire`` command of a worker using the files of :func:`write_worker_config`."""
    folder = Path(folder)
    rlaunch = Path(sys.executable).with_name("rlaunch")
    exe = str(rlaunch) if rlaunch.exists() else "rlaunch"
    return [exe, "-l", str(folder / "my_launchpad.yaml"), "-w", str(folder / "my_fworker.yaml"),
            "rapidfire", "--nlaunches", str(nlaunches), "--sleep", str(sleep)]


#: the one-line error when FireWorks (the ``cluster`` extra) is not installed
CLUSTER_EXTRA_MISSING = ("the fireworks engine needs FireWorks, which is not installed: pip install 'xanesdb[cluster]' "
                         "(or run here with --engine local)")


def require_fireworks() -> None:
    """Raise a user error when FireWorks is not installed."""
    try:
        import fireworks  # noqa: F401
    except ImportError as err:
        raise XanesdbUserError(CLUSTER_EXTRA_MISSING) from err
