"""Who the web app reads the database as.

- On a loopback address (the default) the app reads with xanesdb's own connection: the local
  server's administrator credential, or ``XANESDB_DB_URI``, as every other command does.
- On any other address (or with ``--login``) every request must carry a database user's name and
  password (HTTP Basic): the app logs in to MongoDB *as that user* (``authSource`` = the xanesdb
  database, the users ``xanesdb db roles --apply`` creates, e.g. ``xanesdb_reader``) and reads with
  that connection, so the server's roles decide what each person may read. A wrong password gets
  401 after a one-second pause. Connections are kept for :data:`LOGIN_TTL_S` per user, keyed by a
  hash of the password (the password itself stays only inside the pymongo client).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from xanesdb.platform.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

__all__ = ["Reader", "Connections", "LoginRequired", "LOGIN_TTL_S"]

#: a logged-in user's connection is reused this long (seconds), then the login is checked again
LOGIN_TTL_S = 600.0
#: pause after a refused login (seconds): slows guessing
FAILED_LOGIN_PAUSE_S = 1.0
_MAX_USERS = 32


class LoginRequired(Exception):
    """The request needs (other) database credentials; the message says why."""


@dataclass
class Reader:
    """A database connection the pages read through, and the settings it was made from."""

    settings: Any
    client: Any
    user: str

    @property
    def db(self):
        return self.client[self.settings.DB_NAME]


class Connections:
    """The app's database connections: one shared (no login) or one per logged-in user."""

    def __init__(self, settings, require_login: bool) -> None:
        self.settings = settings
        self.require_login = require_login
        self._lock = threading.Lock()
        self._shared: Reader | None = None
        self._users: dict[tuple[str, str], tuple[float, Reader]] = {}

    def reader(self, username: str | None = None, password: str | None = None) -> Reader:
        """The connection for a request (with its Basic credentials when logins are required)."""
        if not self.require_login:
            with self._lock:
                if self._shared is None:
                    from xanesdb.platform.stores import get_client

                    self._shared = Reader(self.settings, get_client(self.settings), "xanesdb")
                return self._shared
        if not username or password is None:
            raise LoginRequired("log in with a database user of this xanesdb (e.g. xanesdb_reader)")
        key = (username, hashlib.sha256(f"{username}\0{password}".encode()).hexdigest())
        now = time.monotonic()
        with self._lock:
            hit = self._users.get(key)
            if hit is not None and now - hit[0] < LOGIN_TTL_S:
                return hit[1]
        reader = self._login(username, password)
        with self._lock:
            old = self._users.pop(key, None)
            self._users[key] = (now, reader)
            while len(self._users) > _MAX_USERS:  # the oldest login goes first
                _, gone = self._users.pop(next(iter(self._users)))
                gone.client.close()
        if old is not None:
            old[1].client.close()
        return reader

    def _login(self, username: str, password: str) -> Reader:
        import pymongo
        from pymongo.errors import OperationFailure, PyMongoError

        from xanesdb.platform.access import user_uri
        from xanesdb.platform.settings import get_settings
        from xanesdb.platform.stores import database_uri, redact_uri

        uri = user_uri(database_uri(self.settings), username, self.settings.DB_NAME, password)
        timeout_ms = int(self.settings.DB_TIMEOUT_S * 1000)
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        try:
            client.admin.command("ping")
        except OperationFailure as err:
            client.close()
            if err.code == 18:
                time.sleep(FAILED_LOGIN_PAUSE_S)
                raise LoginRequired("the database refused this user name and password") from None
            raise DatabaseUnavailableError(f"MongoDB refused the login check (code {err.code})") from None
        except PyMongoError as err:
            client.close()
            raise DatabaseUnavailableError(
                f"cannot reach MongoDB at {redact_uri(uri)} ({type(err).__name__})"
            ) from None
        user_settings = get_settings(HOME=self.settings.HOME, DB_NAME=self.settings.DB_NAME, DB_URI=uri)
        return Reader(user_settings, client, username)

    def close(self) -> None:
        with self._lock:
            if self._shared is not None:
                self._shared.client.close()
                self._shared = None
            for _, r in self._users.values():
                r.client.close()
            self._users.clear()
