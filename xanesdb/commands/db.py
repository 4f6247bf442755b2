"""``xanesdb db ...``: the local server, the URI, users and roles, statistics, queries, snapshots.

Commands parse arguments and print; the work is done in :mod:`xanesdb.platform` (server
lifecycle in ``server``, users and roles in ``access``, counts and queries in ``stats``,
snapshots in ``snapshot``, schema upgrades in ``migrate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from xanesdb.commands._console import SafeConsole
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)

app = typer.Typer(help="The database: local server, URI, users and roles, statistics, queries.",
                  no_args_is_help=True)


def _parse_json_filter(text: str) -> dict:
    """A Mongo filter from JSON text; refuses server-side code and write stages."""
    from xanesdb.platform.queries import parse_filter

    return parse_filter(text)


# ----------------------------------------------------------------------------- the local server
@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for a lab network)."),
    port: int = typer.Option(27017, help="Port to listen on."),
    auth: bool = typer.Option(False, "--auth", help="Require SCRAM-SHA-256 logins: the default, always on "
                              "unless --insecure (kept for scripts written before)."),
    insecure: bool = typer.Option(False, "--insecure", help="Serve WITHOUT authentication: anyone who can "
                                  "reach the port may read, change and drop everything."),
) -> None:
    """Run the local MongoDB server in the foreground, for other groups to connect to.

    Authentication is on (xanesdb logs in with its administrator credential; create users for
    other groups with `xanesdb db roles --apply`). --insecure turns it off, loudly.
    """
    from xanesdb.platform.access import recorded_users
    from xanesdb.platform.server import LocalServer, admin_credential_file, is_loopback

    if auth and insecure:
        raise XanesdbUserError("--auth and --insecure contradict each other; authentication is on unless --insecure")
    s = get_settings()
    if insecure:
        who = "every local user" if is_loopback(host) else "anyone who can reach this port"
        err_console.print(f"WARNING: serving {host}:{port} WITHOUT authentication (--insecure): {who} can read, "
                          "change and drop the whole database", markup=False)
    elif not recorded_users(get_settings(DB_URI=None)):
        err_console.print("only xanesdb's administrator can log in; create users for other groups with "
                          "`xanesdb db roles --apply`", markup=False)
    server = LocalServer(s.HOME, auth=not insecure)
    login = (f" with authentication (users in {s.DB_NAME}: authSource={s.DB_NAME}; xanesdb's administrator: "
             f"{admin_credential_file(s.HOME)})") if not insecure else " WITHOUT authentication"
    line = f"serving {s.HOME / 'db' / 'data'} on mongodb://{host}:{port}/{login} (Ctrl-C stops)"
    raise typer.Exit(server.serve_foreground(host, port, on_listening=lambda: console.print(line, markup=False)))


@app.command("stop")
def stop() -> None:
    """Stop the local MongoDB server started by xanesdb."""
    from xanesdb.platform.server import LocalServer

    s = get_settings()
    stopped = LocalServer(s.HOME).stop()
    console.print("stopped the local database server" if stopped else "no local database server was running")


@app.command("uri")
def uri(
    show_password: bool = typer.Option(False, "--show-password",
                                       help="Print the password and other secret options in clear."),
) -> None:
    """Print the URI that pymongo.MongoClient or mongosh can use (starts the local server).

    The password and secret options are printed as *** unless --show-password is given (for the
    local server the password is its administrator's, from XANESDB_HOME/db/admin_credential.json).
    """
    from xanesdb.platform.stores import database_uri, redact_uri

    text = database_uri(get_settings())
    print(text if show_password else redact_uri(text))


@app.command("status")
def status() -> None:
    """Say whether the local server runs, whether it requires authentication, and where the database is."""
    from xanesdb.platform.server import LocalServer, admin_credential_file
    from xanesdb.platform.stores import redact_uri

    s = get_settings()
    if s.DB_URI is not None:
        console.print(f"external database: {redact_uri(s.DB_URI.get_secret_value())}", markup=False)
        return
    state, info = LocalServer(s.HOME).status()
    where = f" pid {info.pid} at {redact_uri(info.uri())}" if info else ""
    if info is None:
        login = ""
    elif info.auth:
        login = f"; authentication on (xanesdb logs in with {admin_credential_file(s.HOME)})"
    else:
        login = "; authentication OFF (`xanesdb db serve --insecure`)"
    console.print(f"local server: {state}{where}{login}; data under {s.HOME / 'db' / 'data'}", markup=False)


# ----------------------------------------------------------------------------- users and roles
def _findings_table(findings, title: str) -> Table:
    table = Table(title=title)
    for col in ("user", "database", "roles", "made by xanesdb", "note"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(f.user, f.db, ", ".join(f.roles), "yes" if f.ours else "NO", f.note)
    return table


def _report_foreign(findings, extra: list[str] | None = None) -> int:
    """Print the flagged users (and other findings) on stderr; returns how many there are."""
    flagged = [f.name for f in findings if not f.ours] + (extra or [])
    if flagged:
        err_console.print(
            f"{len(flagged)} not created by xanesdb: {', '.join(flagged[:10])}"
            f"{' ...' if len(flagged) > 10 else ''}; drop a user with `xanesdb db users --drop USER@DATABASE`, "
            "or take over xanesdb's names with `xanesdb db roles --apply`", markup=False)
    return len(flagged)


@app.command("users")
def users(
    check: bool = typer.Option(False, "--check", help="Exit with code 1 when a user xanesdb did not create is found."),
    drop: list[str] = typer.Option([], "--drop", help="Drop this user (USER@DATABASE, as listed); repeatable."),
) -> None:
    """List every user of the server and flag the ones xanesdb did not create.

    xanesdb's users are the local server's administrator (xanesdb_root@admin) and the users that
    `xanesdb db roles --apply` created from this XANESDB_HOME with the plan's roles; anything
    else (a user planted while the database was open, say) is flagged NO.
    """
    from xanesdb.platform.access import audit_users, drop_user, list_users
    from xanesdb.platform.stores import get_client

    s = get_settings()
    client = get_client(s)
    try:
        for name in drop:
            drop_user(client, name, s)
            console.print(f"dropped user {name}", markup=False)
        findings = audit_users(list_users(client), s)
    finally:
        client.close()
    console.print(_findings_table(findings, f"users of the server ({len(findings)})"))
    n = _report_foreign(findings)
    if check and n:
        raise typer.Exit(1)


@app.command("roles")
def roles(
    apply: bool = typer.Option(False, "--apply", help="Create (or update) the roles and users in the database."),
    check: bool = typer.Option(False, "--check", help="List every user and custom role; exit with code 1 when one "
                               "xanesdb did not create is found."),
) -> None:
    """Print the roles/users plan (read-only, writer, admin); with --apply, create them.

    Passwords come from XANESDB_READER_PASSWORD / XANESDB_WRITER_PASSWORD / XANESDB_ADMIN_PASSWORD,
    or are generated into <XANESDB_HOME>/credentials.yaml (mode 0600). They are never printed.
    """
    from xanesdb.platform.access import credentials_file, role_plan, user_plan

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
    if not apply and not check:
        console.print("dry run: add --apply to create them (as an administrator: on the local server xanesdb logs in "
                      "as its own), --check to list every user and flag the ones xanesdb did not create",
                      markup=False)
        return
    if apply:
        from xanesdb.platform.access import provision, user_uri
        from xanesdb.platform.stores import database_uri, redact_uri

        done, generated, n_users = provision(s)
        for name, what in done.items():
            console.print(f"{name}: {what}", markup=False)
        if generated:
            console.print(f"generated passwords for {', '.join(generated)} -> {credentials_file(s.HOME)} (mode 0600)",
                          markup=False)
        console.print(f"{n_users} users in {s.DB_NAME}; connect as e.g. "
                      f"{redact_uri(user_uri(database_uri(s), 'xanesdb_reader', s.DB_NAME))}", markup=False)
    if check:
        from xanesdb.platform.access import audit_users, list_users, unknown_roles
        from xanesdb.platform.stores import get_client

        client = get_client(s)
        try:
            findings = audit_users(list_users(client), s)
            foreign_roles = unknown_roles(client[s.DB_NAME])
        finally:
            client.close()
        console.print(_findings_table(findings, f"users of the server ({len(findings)})"))
        n = _report_foreign(findings, [f"role {r}@{s.DB_NAME}" for r in foreign_roles])
        if n:
            raise typer.Exit(1)


@app.command("migrate")
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


# ----------------------------------------------------------------------------- statistics and queries
@app.command("stats")
def stats() -> None:
    """Counts per collection, and unique sites per element x class."""
    from xanesdb.platform.stats import print_stats

    print_stats(console, get_settings())


@app.command("query")
def query(
    filter: str = typer.Argument("{}", help="JSON filter, e.g. '{\"element\": \"Fe\"}'."),
    collection: str = typer.Option("sites", "--collection", "-c", help="Collection to query."),
    fmt: str = typer.Option("table", "--format", help="table or jsonl."),
    limit: int = typer.Option(20, help="Maximum documents to print (0: all)."),
    fields: Optional[str] = typer.Option(None, help="Comma-separated fields to show."),
) -> None:
    """Query a collection with a JSON filter."""
    from xanesdb.platform.stats import run_query

    if fmt not in ("table", "jsonl"):
        raise XanesdbUserError(f"unknown --format {fmt!r}; use table or jsonl")
    if limit < 0:
        raise XanesdbUserError(f"--limit must be 0 (all) or more, got {limit}")
    criteria = _parse_json_filter(filter)
    run_query(console, get_settings(), collection, criteria, fmt=fmt, limit=limit,
              fields=fields.split(",") if fields else None)


# ----------------------------------------------------------------------------- snapshots
@app.command("dump")
def dump(
    out: Path = typer.Argument(..., help="Folder for <collection>.jsonl.gz files."),
    collection: list[str] = typer.Option(
        ["structures", "sites", "feff_tasks", "spectra"], "--collection", "-c", help="Collections to dump."
    ),
    query: Optional[str] = typer.Option(None, help="JSON filter applied to every dumped collection."),
) -> None:
    """Dump collections to gzipped JSON Lines (a snapshot that `db load` reads back)."""
    from xanesdb.platform.snapshot import dump_collections
    from xanesdb.platform.stores import COLLECTIONS

    unknown = [c for c in collection if c not in COLLECTIONS]
    if unknown:
        raise XanesdbUserError(f"unknown collection {unknown[0]!r}; choose from {', '.join(COLLECTIONS)}")
    criteria = _parse_json_filter(query) if query else {}
    counts = dump_collections(get_settings(), out, collection, {c: criteria for c in collection})
    for name, n in counts.items():
        if name == "model_files":
            console.print(f"{name}: {n} .keras weight files -> {out / name}", markup=False)
        else:
            console.print(f"{name}: {n} documents -> {out / (name + '.jsonl.gz')}", markup=False)


def _load(path: Path) -> None:
    from rich.progress import Progress

    from xanesdb.platform.snapshot import load_snapshot

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("loading", total=None)
        counts = load_snapshot(get_settings(), path, progress=lambda name, n: progress.update(
            task, advance=n, description=f"loading {name}"))
    for name, n in counts.items():
        console.print(f"{name}: {n} .keras weight files put into GridFS" if name == "model_files"
                      else f"{name}: {n} documents upserted", markup=False)


@app.command("load")
def load(path: Path = typer.Argument(..., help="Snapshot folder written by `xanesdb db dump`.")) -> None:
    """Load a snapshot into the current database (idempotent upserts)."""
    if not path.is_dir():
        raise XanesdbUserError(f"{path} is not a folder; give the folder written by `xanesdb db dump`")
    _load(path)


@app.command("load-bundled")
def load_bundled() -> None:
    """Load the database shipped with xanesdb (structures, sites, FEFF tasks, spectra) in seconds."""
    from xanesdb.platform.snapshot import BUNDLED_DB_DIR

    _load(BUNDLED_DB_DIR)
