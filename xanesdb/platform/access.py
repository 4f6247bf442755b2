"""Access for other groups: MongoDB roles and users, and where their passwords come from.

The plan (:func:`role_plan`), one user per role, all defined in the xanesdb database itself (so
clients connect with ``authSource=<XANESDB_DB_NAME>``):

=================  ==================  =====================================================
user               role                may
=================  ==================  =====================================================
xanesdb_reader     xanesdb_read        query the public collections (find, aggregate, indexes)
xanesdb_writer     xanesdb_write       also insert/update/delete and create indexes (workers)
xanesdb_admin      xanesdb_admin       everything in the database, users and validators too
=================  ==================  =====================================================

Passwords come from ``XANESDB_READER_PASSWORD``, ``XANESDB_WRITER_PASSWORD`` and
``XANESDB_ADMIN_PASSWORD``; a missing one is generated and written to
``<XANESDB_HOME>/credentials.yaml`` with mode 0600 (a file readable by others is refused). No
password is ever printed, logged or stored in a document; URIs are shown redacted.

The local server always requires authentication (SCRAM-SHA-256): xanesdb itself logs in as
``xanesdb_root`` (role ``root``, created at the server's first start, password in
``<XANESDB_HOME>/db/admin_credential.json``; see :mod:`xanesdb.platform.server`). For other groups::

    xanesdb db roles --apply          # as that administrator: create roles and users
    xanesdb db serve --port 27017 --host 0.0.0.0

then other groups connect with
``mongodb://xanesdb_reader:<password>@<host>:27017/?authSource=xanesdb&directConnection=true``.

Which users xanesdb created is recorded in ``<XANESDB_HOME>/users.json`` (mode 0600), per server;
:func:`audit_users` flags every other user (one planted while a database was open, say), and
``xanesdb db users`` / ``xanesdb db roles --check`` print them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymongo.errors import OperationFailure

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from pymongo.database import Database

logger = logging.getLogger(__name__)

__all__ = [
    "PUBLIC_COLLECTIONS",
    "WRITER_COLLECTIONS",
    "RoleSpec",
    "UserSpec",
    "role_plan",
    "user_plan",
    "credentials_file",
    "read_credentials",
    "resolve_passwords",
    "apply_roles",
    "user_uri",
    "count_users",
    "UserFinding",
    "ledger_file",
    "recorded_users",
    "record_users",
    "list_users",
    "audit_users",
    "unknown_roles",
    "drop_user",
    "provision",
]

#: collections other groups may read (GridFS bucket of model weights included)
PUBLIC_COLLECTIONS = (
    "structures", "sites", "feff_tasks", "spectra", "models", "grids",
    "model_files.files", "model_files.chunks",
)  # fmt: skip
#: FireWorks' LaunchPad collections in the same database (see xanesdb.platform.launchpad)
FIREWORKS_COLLECTIONS = ("fireworks", "launches", "workflows", "fw_id_assigner", "offline_runs",
                         "fw_gridfs.files", "fw_gridfs.chunks")
#: collections population workers write (jobflow's job store and FireWorks' LaunchPad included)
WRITER_COLLECTIONS = PUBLIC_COLLECTIONS + ("jobs", "job_data.files", "job_data.chunks") + FIREWORKS_COLLECTIONS
READ_ACTIONS = ("find", "listCollections", "listIndexes", "collStats", "dbStats", "killCursors", "changeStream")
WRITE_ACTIONS = ("insert", "update", "remove", "createIndex", "createCollection")
PASSWORD_ENV = {
    "xanesdb_reader": "XANESDB_READER_PASSWORD",
    "xanesdb_writer": "XANESDB_WRITER_PASSWORD",
    "xanesdb_admin": "XANESDB_ADMIN_PASSWORD",
}


@dataclass
class RoleSpec:
    """A MongoDB role of the plan: privileges on named collections, plus inherited roles."""

    name: str
    description: str
    actions: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    inherits: tuple[str, ...] = ()
    builtin: tuple[str, ...] = ()

    def privileges(self, db_name: str) -> list[dict[str, Any]]:
        return [{"resource": {"db": db_name, "collection": c}, "actions": list(self.actions)} for c in self.collections]

    def roles(self, db_name: str) -> list[dict[str, str]]:
        return [{"role": r, "db": db_name} for r in (*self.inherits, *self.builtin)]


@dataclass
class UserSpec:
    """A user of the plan and the role it gets."""

    name: str
    role: str
    description: str
    password_env: str
    password: str | None = field(default=None, repr=False)


def role_plan() -> list[RoleSpec]:
    """The roles: read-only on the public collections, writer for workers, admin."""
    return [
        RoleSpec("xanesdb_read", "read-only: query the public collections", READ_ACTIONS, PUBLIC_COLLECTIONS),
        RoleSpec("xanesdb_write", "population workers: read + insert/update/delete, indexes",
                 READ_ACTIONS + WRITE_ACTIONS, WRITER_COLLECTIONS, inherits=("xanesdb_read",)),
        RoleSpec("xanesdb_admin", "administration: everything in the database, users, validators",
                 inherits=("xanesdb_write",), builtin=("dbOwner",)),
    ]  # fmt: skip


def user_plan() -> list[UserSpec]:
    """One user per role."""
    return [
        UserSpec("xanesdb_reader", "xanesdb_read", "other groups: read-only", PASSWORD_ENV["xanesdb_reader"]),
        UserSpec("xanesdb_writer", "xanesdb_write", "FEFF/labelling/training workers", PASSWORD_ENV["xanesdb_writer"]),
        UserSpec("xanesdb_admin", "xanesdb_admin", "the database's maintainer", PASSWORD_ENV["xanesdb_admin"]),
    ]  # fmt: skip


def credentials_file(home: Path) -> Path:
    """Where generated passwords are kept (mode 0600)."""
    return Path(home) / "credentials.yaml"


def read_credentials(path: Path) -> dict[str, str]:
    """Passwords from a credentials file; refuses one that others can read."""
    import yaml

    path = Path(path)
    if not path.is_file():
        return {}
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise XanesdbUserError(
            f"credentials file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise XanesdbUserError(f"credentials file {path} is not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise XanesdbUserError(f"credentials file {path} must map user names to password strings")
    return data


def _write_credentials(path: Path, data: dict[str, str]) -> None:
    """Write the file with mode 0600 from the start (never briefly world-readable)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# xanesdb database users' passwords; keep this file private (mode 0600)\n")
        yaml.safe_dump(data, fh)
    os.replace(tmp, path)


def resolve_passwords(home: Path, users: list[UserSpec] | None = None, generate: bool = True) -> tuple[list[UserSpec], list[str]]:
    """Give each user its password: environment first, then the credentials file, else generated.

    Returns the users and the names whose passwords were generated now (written to the file).
    """
    users = users or user_plan()
    path = credentials_file(home)
    stored = read_credentials(path)
    generated = []
    for u in users:
        env = os.environ.get(u.password_env, "")
        if env:
            u.password = env
        elif u.name in stored:
            u.password = stored[u.name]
        elif generate:
            u.password = secrets.token_urlsafe(24)
            stored[u.name] = u.password
            generated.append(u.name)
    if generated:
        _write_credentials(path, stored)
    return users, generated


def _role_exists(db: Database, name: str) -> bool:
    info = db.command("rolesInfo", name)
    return bool(info.get("roles"))


def _user_exists(db: Database, name: str) -> bool:
    info = db.command("usersInfo", name)
    return bool(info.get("users"))


def apply_roles(db: Database, users: list[UserSpec]) -> dict[str, str]:
    """Create (or update) the roles and users in ``db``; returns 'role <name>'/'user <name>' -> 'created'/'updated'.

    Idempotent: running it again updates privileges and passwords in place.
    """
    done: dict[str, str] = {}
    try:
        for role in role_plan():
            body = {"privileges": role.privileges(db.name), "roles": role.roles(db.name)}
            if _role_exists(db, role.name):
                db.command("updateRole", role.name, **body)
                done[f"role {role.name}"] = "updated"
            else:
                db.command("createRole", role.name, **body)
                done[f"role {role.name}"] = "created"
        for u in users:
            if not u.password:
                raise XanesdbUserError(f"no password for {u.name}; set {u.password_env}")
            roles = [{"role": u.role, "db": db.name}]
            if _user_exists(db, u.name):
                db.command("updateUser", u.name, pwd=u.password, roles=roles, mechanisms=["SCRAM-SHA-256"])
                done[f"user {u.name}"] = "updated"
            else:
                db.command("createUser", u.name, pwd=u.password, roles=roles, mechanisms=["SCRAM-SHA-256"])
                done[f"user {u.name}"] = "created"
    except OperationFailure as err:
        # err.details may echo the command; say only what failed
        raise XanesdbUserError(
            f"the server refused to create roles/users (code {err.code}, {err.details.get('codeName', '')}); "
            "connect as an administrator (XANESDB_DB_URI with an admin user; on the local server xanesdb "
            "logs in as its own)"
        ) from None
    logger.info("roles and users in %s: %s", db.name, done)
    return done


def user_uri(uri: str, user: str, db_name: str, password: str | None = None) -> str:
    """``uri`` with ``user`` (password or ``***``) and ``authSource=db_name`` (for display or use)."""
    from urllib.parse import quote_plus

    scheme, rest = uri.split("://", 1)
    rest = rest.split("@", 1)[-1]  # drop any credentials already there
    hostpart, _, query = rest.partition("?")
    hostpart = hostpart.rstrip("/")
    params = [p for p in query.split("&") if p and not p.startswith("authSource=")] + [f"authSource={db_name}"]
    pw = quote_plus(password) if password is not None else "***"
    return f"{scheme}://{quote_plus(user)}:{pw}@{hostpart}/?{'&'.join(params)}"


def count_users(db: Database) -> int:
    """Users defined in ``db`` (0 when the server does not say)."""
    return len(db.command("usersInfo").get("users", []))


# ----------------------------------------------------------------------------- who created which user
def ledger_file(home: Path) -> Path:
    """Where xanesdb records the users it created, per server (mode 0600)."""
    return Path(home) / "users.json"


def server_key(settings) -> str:
    """The ledger's name for the configured server: ``local``, or the URI's scheme and hosts."""
    if settings.DB_URI is None:
        return "local"
    uri = settings.DB_URI.get_secret_value()
    scheme, _, rest = uri.partition("://")
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    return f"{scheme}://{hosts.rsplit('@', 1)[-1]}"


def _read_ledger(home: Path) -> dict[str, list[str]]:
    path = ledger_file(home)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise XanesdbUserError(f"{path} is unreadable or damaged; remove it and run `xanesdb db roles --apply` "
                               "to record xanesdb's users again") from None
    if not isinstance(data, dict):
        return {}
    return {k: [str(x) for x in v] for k, v in data.items() if isinstance(v, list)}


def recorded_users(settings) -> set[str]:
    """``user@db`` names xanesdb created on the configured server (from this home's ledger)."""
    return set(_read_ledger(settings.HOME).get(server_key(settings), []))


def record_users(settings, names: Iterable[str]) -> None:
    """Add ``user@db`` names to the ledger (written 0600, atomically)."""
    home = Path(settings.HOME)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = _read_ledger(home)
    key = server_key(settings)
    data[key] = sorted(set(data.get(key, [])) | set(names))
    path = ledger_file(home)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


@dataclass
class UserFinding:
    """One user of the server and whether xanesdb created it."""

    user: str
    db: str
    roles: tuple[str, ...]
    ours: bool
    note: str

    @property
    def name(self) -> str:
        return f"{self.user}@{self.db}"


def list_users(client) -> list[dict[str, Any]]:
    """Every user of the server, all databases (``admin.system.users``, credentials left out)."""
    try:
        return list(client["admin"]["system.users"].find({}, {"credentials": 0}).sort([("db", 1), ("user", 1)]))
    except OperationFailure as err:
        if err.code in (13, 8000):
            raise XanesdbUserError(
                "listing every user needs an administrator of the server (the current user may not read "
                "admin.system.users); connect as one with XANESDB_DB_URI"
            ) from None
        raise


def audit_users(users: list[dict[str, Any]], settings) -> list[UserFinding]:
    """Each user, flagged unless xanesdb created it.

    xanesdb's users are the local server's administrator (``xanesdb_root@admin`` with role
    ``root``, on the local server only) and the plan's users (:func:`user_plan`) that this home's
    ``xanesdb db roles --apply`` created or took over (recorded in :func:`ledger_file`) and whose
    roles are still the plan's. Anything else is flagged: a user planted while the database was
    open, one named like xanesdb's but made by someone else, one whose roles were changed.
    """
    from xanesdb.platform.server import ADMIN_DB, ADMIN_USER

    plan = {u.name: u.role for u in user_plan()}
    ledger = recorded_users(settings)
    local = settings.DB_URI is None
    out = []
    for u in users:
        user, db = str(u.get("user")), str(u.get("db"))
        roles = tuple(sorted(f"{r.get('role')}@{r.get('db')}" for r in u.get("roles", []) if isinstance(r, dict)))
        if local and (user, db) == (ADMIN_USER, ADMIN_DB):
            ours = roles == ("root@admin",)
            note = ("the local server's administrator (made at its first start)" if ours
                    else "xanesdb's administrator name, but with other roles than root@admin")
        elif user in plan:
            expected = (f"{plan[user]}@{db}",)
            if roles != expected:
                ours, note = False, f"named like xanesdb's {user}, but its roles are not {expected[0]}"
            elif f"{user}@{db}" not in ledger:
                ours, note = False, ("named like xanesdb's, but not created by `xanesdb db roles --apply` from this "
                                     "XANESDB_HOME; run that to take it over (it resets the password)")
            else:
                ours, note = True, "made by `xanesdb db roles --apply`"
        else:
            ours, note = False, "not created by xanesdb"
        out.append(UserFinding(user, db, roles, ours, note))
    return out


def unknown_roles(db: Database) -> list[str]:
    """Custom roles in ``db`` that are not xanesdb's plan."""
    names = {r.name for r in role_plan()}
    return sorted(r["role"] for r in db.command("rolesInfo", 1).get("roles", []) if r.get("role") not in names)


def drop_user(client, name: str, settings) -> None:
    """Drop the user ``user@db``; refuses the local server's own administrator."""
    from xanesdb.platform.server import ADMIN_DB, ADMIN_USER

    user, sep, db = name.rpartition("@")
    if not sep or not user or not db:
        raise XanesdbUserError(f"--drop takes USER@DATABASE as `xanesdb db users` lists it, got {name!r}")
    if settings.DB_URI is None and (user, db) == (ADMIN_USER, ADMIN_DB):
        raise XanesdbUserError(f"{name} is the local server's administrator, which xanesdb logs in as; it cannot be dropped")
    if not client[db].command("usersInfo", user).get("users"):
        raise XanesdbUserError(f"no user {name} on this server; `xanesdb db users` lists them")
    client[db].command("dropUser", user)
    logger.info("dropped user %s", name)


def provision(settings) -> tuple[dict[str, str], list[str], int]:
    """``xanesdb db roles --apply``: roles and users of the plan, recorded as xanesdb's.

    Returns what was done per role/user, the users whose passwords were generated now, and the
    number of users in the database. Nothing is generated or recorded when the database cannot
    be reached (it is contacted first).
    """
    from xanesdb.platform.stores import get_database

    if credentials_file(settings.HOME).exists():
        read_credentials(credentials_file(settings.HOME))  # refuses a file others can read, before connecting
    db = get_database(settings)  # before any password is generated: an unreachable database writes nothing
    users, generated = resolve_passwords(settings.HOME)
    done = apply_roles(db, users)
    record_users(settings, [f"{u.name}@{db.name}" for u in users])
    return done, generated, count_users(db)
