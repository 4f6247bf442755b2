"""The database a job reads and writes: handed to it, or one shared client per URI per process.

Jobs never open connections of their own. A caller that holds a database (a pymongo ``Database``,
or an in-memory mongomock one in tests) hands it to the jobs it runs with
:func:`use_database`; a job that runs elsewhere (a FireWorks worker) gets the database of its
settings from :func:`shared_database`, which opens one client per URI for the whole process,
creates the collections' indexes once, and closes the clients when the process ends.

Examples
--------
>>> from maggma.stores import MemoryStore
>>> from xanesdb.jobs.database import job_database, use_database
>>> store = MemoryStore("sites")
>>> store.connect()
>>> db = store._collection.database          # an in-memory database (mongomock)
>>> with use_database(db):
...     job_database() is db
True
"""

from __future__ import annotations

import atexit
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from xanesdb.platform.settings import XanesdbSettings

__all__ = ["use_database", "job_database", "shared_database", "store_over", "open_store"]

_HANDED: ContextVar[Any] = ContextVar("xanesdb_job_database", default=None)
_CLIENTS: dict[str, Any] = {}
_ENSURED: set[tuple[str, str]] = set()
_LOCK = threading.Lock()


@contextmanager
def use_database(db: Any) -> Iterator[Any]:
    """Hand ``db`` to the jobs run inside this block (in this thread: jobflow's ``run_locally``)."""
    token = _HANDED.set(db)
    try:
        yield db
    finally:
        _HANDED.reset(token)


def shared_database(settings: XanesdbSettings | None = None) -> Any:
    """The xanesdb database of ``settings``, through this process's one client for its URI."""
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import COLLECTIONS, database_uri, ensure_indexes, get_client

    settings = settings or get_settings()
    uri = database_uri(settings)
    with _LOCK:
        client = _CLIENTS.get(uri)
        if client is None:
            client = _CLIENTS[uri] = get_client(settings)
        db = client[settings.DB_NAME]
        if (uri, settings.DB_NAME) not in _ENSURED:
            for name in COLLECTIONS:
                ensure_indexes(db[name], name)
            _ENSURED.add((uri, settings.DB_NAME))
    return db


def job_database(settings: XanesdbSettings | None = None) -> Any:
    """The database handed to the running job (:func:`use_database`), else :func:`shared_database`."""
    handed = _HANDED.get()
    return handed if handed is not None else shared_database(settings)


def store_over(db: Any, name: str) -> Any:
    """A maggma ``MongoStore`` over ``db[name]`` (keyed as the collection is) that shares ``db``'s client.

    Do not close it (``with store:`` would close the shared client): use :func:`open_store`.
    """
    from maggma.stores import MongoStore

    from xanesdb.platform.stores import COLLECTIONS

    store = MongoStore.from_collection(db[name])
    store.key = COLLECTIONS[name][0]
    return store


@contextmanager
def open_store(name: str, settings: XanesdbSettings | None = None, db: Any = None) -> Iterator[Any]:
    """A store of collection ``name``: over the handed ``db`` (left open), else the settings' (closed after)."""
    if db is not None:
        yield store_over(db, name)
        return
    from xanesdb.platform.stores import get_store

    with get_store(name, settings) as store:
        yield store


@atexit.register
def _close_clients() -> None:
    with _LOCK:
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()
        _ENSURED.clear()
