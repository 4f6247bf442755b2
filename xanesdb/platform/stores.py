"""Where xanesdb's collections live: the database URI, maggma stores and indexes.

With ``XANESDB_DB_URI`` set, every store points at that MongoDB and nothing local starts.
Without it, :func:`database_uri` starts (or reuses) the local SecantusDB server under
``XANESDB_HOME`` and returns its URI, with the administrator credential generated at the
server's first start (``XANESDB_HOME/db/admin_credential.json``): authentication is on and
xanesdb logs in transparently. Print a URI only through :func:`redact_uri`.

Examples
--------
>>> from xanesdb.platform.stores import get_store
>>> with get_store("structures") as store:          # doctest: +SKIP
...     store.count({"elements": "Fe"})
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

import pymongo
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

from xanesdb.platform.errors import DatabaseUnavailableError
from xanesdb.platform.settings import XanesdbSettings, get_settings
from xanesdb.platform.validation import apply_validator

if TYPE_CHECKING:
    from maggma.core import Store

logger = logging.getLogger(__name__)

__all__ = [
    "COLLECTIONS",
    "database_uri",
    "redact_uri",
    "get_client",
    "get_database",
    "get_store",
    "ensure_indexes",
    "job_store",
]

#: collection name -> (key field, further indexed fields)
COLLECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "structures": ("material_id", ("elements", "source", "formula", "last_updated")),
    "sites": (
        "site_id",
        ("material_id", "element", "lce_class", "chemenv_symbol", "source", "last_updated"),
    ),
    "feff_tasks": (
        "task_id",
        ("site_id", "material_id", "element", "state", "source", "preset", "last_updated"),
    ),
    "spectra": (
        "spectrum_id",
        ("task_id", "site_id", "material_id", "element", "lce_class", "source", "duplicate_of",
         "last_updated"),
    ),  # fmt: skip
    "models": ("run_id", ("kind", "fingerprint", "created")),
}


#: URI options that carry a secret (lower case); also any option whose name holds one of
#: :data:`_SECRET_WORDS`
_SECRET_OPTIONS = frozenset({"authmechanismproperties", "tlscertificatekeyfilepassword", "sslpemkeypassword",
                             "sslclientcertificatekeypassword"})
_SECRET_WORDS = ("password", "secret", "token")


def redact_uri(uri: str) -> str:
    """The URI with its password and every secret-bearing option replaced by ``***``.

    The user information ends at the *last* ``@`` before the host list, so a password with an
    unescaped ``@`` (``mongodb://u:p@ss@host``) is masked whole, not from its first ``@`` on.
    Options masked: ``tlsCertificateKeyFilePassword``, ``authMechanismProperties`` (AWS session
    tokens), the legacy ``ssl...Password`` ones, and any option named like a password, secret or
    token. Used for every URI xanesdb prints or logs.
    """
    m = re.match(r"(?i)(mongodb(?:\+srv)?://)(.*)", uri, flags=re.S)
    if m is None:
        return uri
    scheme, rest = m.groups()
    # user information: up to the last "@" before the first "/" (a password may hold "@" or "?")
    slash = rest.find("/")
    at = (rest if slash < 0 else rest[:slash]).rfind("@")
    user_part = ""
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        user = userinfo.split(":", 1)[0]
        user_part = f"{user}:***@" if ":" in userinfo else f"{user}@"
    query_at = rest.find("?")
    head, query = (rest, "") if query_at < 0 else (rest[:query_at], rest[query_at:])
    head = user_part + head
    if query:
        def mask(opt: re.Match) -> str:
            name = opt.group(2).lower()
            secret = name in _SECRET_OPTIONS or any(w in name for w in _SECRET_WORDS)
            return f"{opt.group(1)}{opt.group(2)}=***" if secret else opt.group(0)

        query = re.sub(r"([?&;])([^=&;]+)=([^&;]*)", mask, query)
    return scheme + head + query


def database_uri(settings: XanesdbSettings | None = None) -> str:
    """URI of the configured database, starting the local server when none is configured."""
    settings = settings or get_settings()
    if settings.DB_URI is not None:
        return settings.DB_URI.get_secret_value()
    from xanesdb.platform.server import LocalServer

    server = LocalServer(settings.HOME, host=settings.DB_HOST, port=settings.DB_PORT)
    return server.ensure_running().uri()


_URI_FILE_OPTIONS = ("tlscafile", "tlscertificatekeyfile", "tlscrlfile")


def _check_uri_files(uri: str) -> None:
    """Refuse, naming the file, a tls file option of the URI that cannot be read.

    pymongo opens these files itself, but how it reports a missing one (and whether it names
    the file) differs between its releases; checking first gives one stable message.
    """
    import os
    from urllib.parse import parse_qsl, unquote

    query = uri.split("?", 1)[1] if "?" in uri else ""
    for name, value in parse_qsl(query.replace(";", "&"), keep_blank_values=True):
        if name.lower() not in _URI_FILE_OPTIONS or not value:
            continue
        path = os.path.expanduser(unquote(value))
        if not (os.path.isfile(path) and os.access(path, os.R_OK)):
            why = "no such file" if not os.path.exists(path) else "not a readable file"
            raise DatabaseUnavailableError(
                f"cannot read {path} named in the database URI ({why}); "
                f"fix the tls file options of XANESDB_DB_URI ({redact_uri(uri)})"
            )


def get_client(settings: XanesdbSettings | None = None, check: bool = True) -> pymongo.MongoClient:
    """A pymongo client for the configured database; checks that it answers."""
    settings = settings or get_settings()
    uri = database_uri(settings)
    timeout_ms = int(settings.DB_TIMEOUT_S * 1000)
    attempts = max(1, settings.DB_RETRIES + 1)
    # the time budget is shared: each attempt waits its share, then backs off 0.1, 0.2, 0.4 ... s
    per_try_s = max(0.2, settings.DB_TIMEOUT_S / attempts)
    delay = 0.1
    _check_uri_files(uri)
    for attempt in range(1, attempts + 1):
        client = None
        try:
            # the URI goes to pymongo untouched: tls, authSource, replicaSet ... are honoured
            client = pymongo.MongoClient(
                uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
            )
            if check:
                with pymongo.timeout(per_try_s):
                    client.admin.command("ping")
            return client
        except OperationFailure as err:  # the server answered: retrying will not help
            if client is not None:
                client.close()
            if err.code == 18 and settings.DB_URI is None:
                from xanesdb.platform.server import admin_credential_file

                cred = admin_credential_file(settings.HOME)
                raise DatabaseUnavailableError(
                    f"the local database server refused the administrator credential in {cred}; if that file "
                    f"was edited or replaced, remove it and run `xanesdb db stop`: the next command sets a new one"
                ) from err
            if err.code == 18:
                raise DatabaseUnavailableError(
                    f"authentication failed at {redact_uri(uri)}; check the user and password in "
                    "XANESDB_DB_URI and its authSource (the database the user was created in)"
                ) from err
            raise DatabaseUnavailableError(
                f"MongoDB at {redact_uri(uri)} refused the connection check (code {err.code}); "
                "check XANESDB_DB_URI"
            ) from err
        except OSError as err:  # pymongo opens tlsCAFile / tlsCertificateKeyFile while parsing the URI
            if client is not None:
                client.close()
            raise DatabaseUnavailableError(
                f"cannot read {err.filename or 'a file'} named in the database URI ({err.strerror or err}); "
                f"fix the tls file options of XANESDB_DB_URI ({redact_uri(uri)})"
            ) from None
        except (PyMongoError, ValueError) as err:
            if client is not None:
                client.close()
            if isinstance(err, (ValueError, ConfigurationError)) or attempt == attempts:
                raise DatabaseUnavailableError(
                    f"cannot reach MongoDB at {redact_uri(uri)} within {settings.DB_TIMEOUT_S:g} s "
                    f"({attempt} attempt{'s' if attempt > 1 else ''}, {type(err).__name__}); check "
                    "XANESDB_DB_URI, the network, or unset it to use the local server"
                ) from err
            logger.info(  # info: the CLI shows only the final one-line error
                "MongoDB at %s did not answer (attempt %d of %d, %s); retrying in %.1f s",
                redact_uri(uri), attempt, attempts, type(err).__name__, delay,
            )  # fmt: skip
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def get_database(settings: XanesdbSettings | None = None, ensure: bool = True):
    """The xanesdb database (a pymongo ``Database``).

    With ``ensure`` (default) the collections, their indexes and validators are created first, as
    a writer needs them. Read-only commands pass ``ensure=False``: they create nothing (and a
    read-only user is not warned that it may not create indexes).
    """
    settings = settings or get_settings()
    db = get_client(settings)[settings.DB_NAME]
    if ensure:
        for name in COLLECTIONS:
            ensure_indexes(db[name], name)
    return db


def get_store(collection: str, settings: XanesdbSettings | None = None, **kwargs: Any) -> Store:
    """A maggma store for one of xanesdb's collections (connect with ``with store:``)."""
    from maggma.stores import MongoStore

    if collection not in COLLECTIONS:
        raise ValueError(f"unknown collection {collection!r}; one of {sorted(COLLECTIONS)}")
    settings = settings or get_settings()
    key = COLLECTIONS[collection][0]
    # checks the connection and creates the indexes before the first upsert
    client = get_client(settings)
    ensure_indexes(client[settings.DB_NAME][collection], collection)
    client.close()
    return MongoStore.from_uri(
        database_uri(settings),
        collection,
        database=settings.DB_NAME,
        key=key,
        **kwargs,
    )


def ensure_indexes(collection: Any, name: str | None = None) -> None:
    """Create the collection's unique key index and field indexes (idempotent).

    Accepts a pymongo collection or a maggma store. Like maggma's ``ensure_indexes``, a failure
    is logged rather than raised (a read-only user cannot create indexes).
    """
    from maggma.core import Store as MaggmaStore

    is_store = isinstance(collection, MaggmaStore)
    name = name or (collection.collection_name if is_store else collection.name)
    key, fields = COLLECTIONS[name]
    # the $jsonSchema validator (xanesdb.platform.validation); logged, not raised, when refused
    apply_validator(getattr(collection, "_coll", None) if is_store else collection, name)
    if is_store:
        collection.ensure_index(key, unique=True)
        for f in fields:
            collection.ensure_index(f)
        return
    try:
        collection.create_index(key, unique=True, name=f"{key}_unique")
        for f in fields:
            collection.create_index(f)
    except PyMongoError as err:
        # a read-only user may not create indexes: expected, so not a warning on every command
        unauthorized = isinstance(err, OperationFailure) and err.code in (13, 8000)
        logger.log(logging.DEBUG if unauthorized else logging.WARNING, "could not create indexes on %s: %s", name, err)


def job_store(settings: XanesdbSettings | None = None):
    """A jobflow ``JobStore`` in the xanesdb database (collection ``jobs``, bulky data in GridFS).

    Flows run with ``run_locally(flow, store=job_store())`` or on FireWorks keep their job outputs
    beside xanesdb's own collections.
    """
    from jobflow import JobStore
    from maggma.stores import GridFSStore, MongoStore

    settings = settings or get_settings()
    uri = database_uri(settings)
    docs = MongoStore.from_uri(uri, "jobs", database=settings.DB_NAME, key="uuid")
    data = GridFSStore.from_uri(uri, "job_data", database=settings.DB_NAME)
    return JobStore(docs, additional_stores={"data": data})
