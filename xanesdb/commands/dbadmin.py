"""`xanesdb db roles`, `xanesdb db migrate` and `xanesdb export`: access, schema versions, export."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from xanesdb.commands._console import SafeConsole
from rich.table import Table

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)


def roles(
    apply: bool = typer.Option(False, "--apply", help="Create (or update) the roles and users in the database."),
) -> None:
    """Print the roles/users plan (read-only, writer, admin); with --apply, create them.

    Passwords come from XANESDB_READER_PASSWORD / XANESDB_WRITER_PASSWORD / XANESDB_ADMIN_PASSWORD,
    or are generated into <XANESDB_HOME>/credentials.yaml (mode 0600). They are never printed.
    """
    from xanesdb.platform.access import (
        count_users,
        credentials_file,
        read_credentials,
        resolve_passwords,
        role_plan,
        user_plan,
        user_uri,
    )

    s = get_settings()
    plan = {r.name: r for r in role_plan()}
    table = Table(title=f"roles and users in database {s.DB_NAME!r} (authSource={s.DB_NAME})")
    for col in ("user", "role", "may", "on"):
        table.add_column(col)
    for u in user_plan():
        r = plan[u.role]
        inherited = ", ".join(r.inherits + r.builtin)
        colls = " ".join(r.collections) if r.collections else f"all of {s.DB_NAME}"
        may = r.description + (f" (+ {inherited})" if inherited else "")
        table.add_row(u.name, u.role, may, colls)
    console.print(table)
    envs = ", ".join(f"${u.password_env}" for u in user_plan())
    console.print(f"passwords: {envs}, else generated into {credentials_file(s.HOME)} (mode 0600)", markup=False)
    if not apply:
        console.print("dry run: add --apply to create them (as an administrator, or on the local server before "
                      "`xanesdb db serve --auth`)")
        return
    from xanesdb.platform.access import apply_roles
    from xanesdb.platform.stores import database_uri, get_database, redact_uri

    if credentials_file(s.HOME).exists():
        read_credentials(credentials_file(s.HOME))  # refuses a file others can read, before connecting
    db = get_database(s)  # before any password is generated: an unreachable database writes nothing
    users, generated = resolve_passwords(s.HOME)
    done = apply_roles(db, users)
    for name, what in done.items():
        console.print(f"{name}: {what}")
    if generated:
        console.print(f"generated passwords for {', '.join(generated)} -> {credentials_file(s.HOME)} (mode 0600)")
    uri = database_uri(s)
    console.print(f"{count_users(db)} users in {s.DB_NAME}; connect as e.g. "
                  f"{redact_uri(user_uri(uri, 'xanesdb_reader', s.DB_NAME))}", markup=False)


def migrate(
    collection: list[str] = typer.Option([], "--collection", "-c", help="Only these collections."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be upgraded, write nothing."),
) -> None:
    """Upgrade documents with an older schema_version in place (idempotent)."""
    from xanesdb.platform.migrate import migrate_database

    reports = migrate_database(get_settings(), collection or None, dry_run=dry_run)
    table = Table(title="schema migration" + (" (dry run)" if dry_run else ""))
    for col in ("collection", "current version", "outdated", "upgraded", "skipped", "failed"):
        table.add_column(col)
    for r in reports.values():
        table.add_row(r.collection, str(r.current), str(r.scanned), str(r.upgraded), str(r.skipped), str(len(r.failed)))
    console.print(table)
    for r in reports.values():
        for key, why in list(r.failed.items())[:5]:
            console.print(f"{r.collection} {key}: {why}", markup=False)
    if any(r.failed for r in reports.values()):
        raise XanesdbUserError(
            f"{sum(len(r.failed) for r in reports.values())} documents could not be upgraded (listed above); "
            "fix or delete them and run `xanesdb db migrate` again"
        )


def export(
    out: Path = typer.Option(..., "--out", "-o", help="Output file."),
    query: str = typer.Option("{}", "--query", "-q", help="JSON filter, e.g. '{\"element\": \"Fe\", \"lce_class\": \"O6\"}'."),
    collection: str = typer.Option("spectra", "--collection", "-c", help="Collection to export."),
    fmt: str = typer.Option("parquet", "--format", "-f", help="parquet or json."),
    fields: Optional[str] = typer.Option(None, help="Comma-separated fields (default: all)."),
    limit: int = typer.Option(0, help="At most this many rows (0: all)."),
) -> None:
    """Export a query's documents (one row per spectrum) to Parquet or JSON."""
    from xanesdb.platform.export import check_export_args, export_query
    from xanesdb.platform.queries import parse_filter

    if limit < 0:
        raise XanesdbUserError(f"--limit must be 0 (all) or more, got {limit}")
    check_export_args(collection, fmt, out)
    criteria = parse_filter(query)
    n = export_query(get_settings(), criteria, out, collection=collection, fmt=fmt,
                     fields=fields.split(",") if fields else None, limit=limit)
    console.print(f"{n} {collection} -> {out} ({fmt})", markup=False)


def check_users_provisioned(settings) -> int:
    """Before `db serve --auth`: the local server's data must hold users; stops a background server.

    Users are created with the server running without authentication (`xanesdb db roles
    --apply`); the server is then restarted with --auth. Returns the number of users found.
    """
    import pymongo

    from xanesdb.platform.access import count_users
    from xanesdb.platform.server import LocalServer

    server = LocalServer(settings.HOME)
    state, info = server.status()
    if state == "running" and (info.auth or info.foreground):
        raise XanesdbUserError(
            f"a local server for {settings.HOME} is already running (pid {info.pid}, port {info.port}); "
            "stop it with `xanesdb db stop` first"
        )
    info = server.ensure_running()  # without authentication, to look at the users
    client = pymongo.MongoClient(info.uri(), serverSelectionTimeoutMS=int(settings.DB_TIMEOUT_S * 1000))
    try:
        n = count_users(client[settings.DB_NAME])
    finally:
        client.close()
        server.stop()  # restarted below with --auth
    if n == 0:
        raise XanesdbUserError(
            f"no users in database {settings.DB_NAME!r} of the local server: nobody could log in; "
            "create them first with `xanesdb db roles --apply`"
        )
    err_console.print(f"{n} users in {settings.DB_NAME}; restarting the local server with authentication")
    return n
