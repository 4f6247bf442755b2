"""The ``xanesdb`` command line: parses arguments and calls the layers below.

Bad input raises :class:`~xanesdb.platform.errors.XanesdbUserError`; :func:`main` prints it on
one line (``error: ...``) and exits with code 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import typer  # noqa: E402
from xanesdb.commands._console import SafeConsole  # noqa: E402

from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import get_settings

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)

app = typer.Typer(help="xanesdb: computed XANES spectra and site-geometry classifiers in MongoDB.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
db_app = typer.Typer(help="The database: local server, URI, statistics, queries.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# --- sub-apps of other areas: one line each, `app.add_typer(<module>.app, name="<name>")`
# (the modules live in xanesdb/commands/; keep each area's commands in its own module)
from xanesdb.commands import feff as _feff; app.add_typer(_feff.app, name="feff")  # noqa: E402,E702
from xanesdb.commands import spectra as _spectra; app.add_typer(_spectra.app, name="spectra")  # noqa: E402,E702
from xanesdb.commands import sites as _sites; app.add_typer(_sites.app, name="sites")  # noqa: E402,E702
from xanesdb.commands import structures as _structures; app.add_typer(_structures.app, name="structures")  # noqa: E402,E702
from xanesdb.commands import demo as _demo; app.command("demo")(_demo.demo)  # noqa: E402,E702
from xanesdb.commands import ml as _ml; app.add_typer(_ml.app, name="models"); app.command("train")(_ml.train)  # noqa: E402,E702
from xanesdb.commands import predict as _predict; app.command("predict")(_predict.predict)  # noqa: E402,E702
from xanesdb.commands import dbadmin as _dbadmin_top; app.command("export")(_dbadmin_top.export)  # noqa: E402,E702
from xanesdb.commands import populate as _populate; app.add_typer(_populate.app, name="populate")  # noqa: E402,E702
from xanesdb.commands import search as _search; app.command("search")(_search.search)  # noqa: E402,E702


def _parse_json_filter(text: str) -> dict:
    """A Mongo filter from JSON text; refuses server-side code and write stages."""
    from xanesdb.platform.queries import parse_filter

    return parse_filter(text)


# ----------------------------------------------------------------------------- db
@db_app.command("serve")
def db_serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for a lab network)."),
    port: int = typer.Option(27017, help="Port to listen on."),
    auth: bool = typer.Option(False, "--auth", help="Require SCRAM-SHA-256 logins (create users first: "
                              "`xanesdb db roles --apply`)."),
    insecure: bool = typer.Option(False, "--insecure", help="Serve a non-loopback address WITHOUT "
                                  "authentication: anyone who can reach the port may read, change and drop "
                                  "everything."),
) -> None:
    """Run the local MongoDB server in the foreground, for other groups to connect to.

    An address other than loopback needs --auth (or an explicit --insecure).
    """
    import ipaddress

    from xanesdb.platform.server import LocalServer

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not auth and not insecure:
        raise XanesdbUserError(
            f"serving {host} without authentication lets anyone on the network read, change and drop the "
            "database; add --auth (create users first with `xanesdb db roles --apply`), or --insecure if "
            "you really mean it"
        )
    s = get_settings()
    if not loopback and not auth:
        err_console.print(f"WARNING: serving {host}:{port} WITHOUT authentication (--insecure): anyone who "
                          "can reach this port can read, change and drop the whole database")
    if auth:
        from xanesdb.commands.dbadmin import check_users_provisioned

        check_users_provisioned(s)
    server = LocalServer(s.HOME, auth=auth)
    login = f" with authentication (authSource={s.DB_NAME})" if auth else ""
    console.print(f"serving {s.HOME / 'db' / 'data'} on mongodb://{host}:{port}/{login} (Ctrl-C stops)")
    raise typer.Exit(server.serve_foreground(host, port))


from xanesdb.commands import dbadmin as _dbadmin  # noqa: E402
db_app.command("roles")(_dbadmin.roles)
db_app.command("migrate")(_dbadmin.migrate)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the local MongoDB server started by xanesdb."""
    from xanesdb.platform.server import LocalServer

    s = get_settings()
    stopped = LocalServer(s.HOME).stop()
    console.print("stopped the local database server" if stopped else "no local database server was running")


@db_app.command("uri")
def db_uri(
    show_password: bool = typer.Option(False, "--show-password",
                                       help="Print the password and other secret options in clear."),
) -> None:
    """Print the URI that pymongo.MongoClient or mongosh can use (starts the local server).

    The password and secret options are printed as *** unless --show-password is given.
    """
    from xanesdb.platform.stores import database_uri, redact_uri

    uri = database_uri(get_settings())
    print(uri if show_password else redact_uri(uri))


@db_app.command("status")
def db_status() -> None:
    """Say whether the local server runs, and where the database is."""
    from xanesdb.platform.server import LocalServer
    from xanesdb.platform.stores import redact_uri

    s = get_settings()
    if s.DB_URI is not None:
        console.print(f"external database: {redact_uri(s.DB_URI.get_secret_value())}")
        return
    state, info = LocalServer(s.HOME).status()
    where = f" pid {info.pid} at {info.uri()}" if info else ""
    console.print(f"local server: {state}{where}; data under {s.HOME / 'db' / 'data'}")


@db_app.command("stats")
def db_stats() -> None:
    """Counts per collection, and unique sites per element x class."""
    from xanesdb.platform.stats import print_stats

    print_stats(console, get_settings())


@db_app.command("query")
def db_query(
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


@db_app.command("dump")
def db_dump(
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
            console.print(f"{name}: {n} .keras weight files -> {out / name}")
        else:
            console.print(f"{name}: {n} documents -> {out / (name + '.jsonl.gz')}")


def _load(path: Path) -> None:
    from rich.progress import Progress

    from xanesdb.platform.snapshot import load_snapshot

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("loading", total=None)
        counts = load_snapshot(get_settings(), path, progress=lambda name, n: progress.update(
            task, advance=n, description=f"loading {name}"))
    for name, n in counts.items():
        console.print(f"{name}: {n} .keras weight files put into GridFS" if name == "model_files"
                      else f"{name}: {n} documents upserted")


@db_app.command("load")
def db_load(path: Path = typer.Argument(..., help="Snapshot folder written by `xanesdb db dump`.")) -> None:
    """Load a snapshot into the current database (idempotent upserts)."""
    if not path.is_dir():
        raise XanesdbUserError(f"{path} is not a folder; give the folder written by `xanesdb db dump`")
    _load(path)


@db_app.command("load-bundled")
def db_load_bundled() -> None:
    """Load the database shipped with xanesdb (structures, sites, FEFF tasks, spectra) in seconds."""
    from xanesdb.platform.snapshot import BUNDLED_DB_DIR

    _load(BUNDLED_DB_DIR)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        try:
            app(args=argv, standalone_mode=False)
        except RecursionError:
            raise XanesdbUserError(
                "the input is nested too deeply to process (Python's recursion limit); give flatter JSON"
            ) from None
        except Exception as err:
            user_err = _database_error(err) or _missing_backend(err)
            if user_err is None:
                raise
            raise user_err from None
    except XanesdbUserError as err:
        _print_error(str(err) or type(err).__name__)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as err:  # usage errors of click, or of the click that newer typer vendors
        if _is_usage_error(err):
            _print_error(err.format_message())
            sys.exit(2)
        raise


def _print_error(msg: str) -> None:
    """``error: <first line>`` on stderr: no markup, control characters made visible."""
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    err_console.print(f"error: {lines[0] if lines else msg}", markup=False, highlight=False, soft_wrap=True)


def _database_error(err: BaseException) -> XanesdbUserError | None:
    """A one-line user error for a database error that reached the top, or None for other errors.

    The server refusing a request (``OperationFailure``: an unknown operator, an invalid regular
    expression, a write by a read-only user) and a connection lost in the middle of a command are
    not bugs of xanesdb: they end like every other bad input, in one line and exit code 2.
    """
    from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

    from xanesdb.platform.stores import redact_uri

    if isinstance(err, OperationFailure):
        details = err.details or {}
        msg = redact_uri(str(details.get("errmsg") or err)).replace("\n", " ")[:300]
        code = err.code
        if code in (13, 8000) or "not authorized" in msg.lower() or "unauthorized" in msg.lower():
            return XanesdbUserError(
                f"the database refused this for the current user ({msg}); this command needs a user "
                "allowed to do it (e.g. the writer for writes), see `xanesdb db roles`"
            )
        return XanesdbUserError(
            f"the database refused the request (code {code}: {msg}); check the query or filter "
            "(JSON field filters and operators MongoDB knows)"
        )
    if isinstance(err, ConnectionFailure):
        return XanesdbUserError(
            f"lost the connection to the database ({type(err).__name__}); check that it is running "
            "(`xanesdb db status`) and run the command again: upserts make that safe"
        )
    if isinstance(err, PyMongoError):
        return XanesdbUserError(f"database error ({type(err).__name__}: {redact_uri(str(err))[:300]})")
    return None


def _missing_backend(err: BaseException) -> XanesdbUserError | None:
    """The one-line error naming the extra, when an optional package (a Keras backend's, FireWorks) is missing."""
    from xanesdb.platform.settings import KERAS_BACKENDS, missing_backend_error

    if isinstance(err, ModuleNotFoundError) and err.name:
        top = err.name.split(".")[0]
        for backend, (module, _) in KERAS_BACKENDS.items():
            if top == module:
                return missing_backend_error(backend)
        if top == "fireworks":
            from xanesdb.platform.launchpad import CLUSTER_EXTRA_MISSING

            return XanesdbUserError(CLUSTER_EXTRA_MISSING)
    return None


def _is_usage_error(err: BaseException) -> bool:
    """A ClickException from ``click`` or from ``typer._click`` (typer >= 0.20 vendors click)."""
    classes = []
    for mod in ("click.exceptions", "typer._click.exceptions"):
        try:
            classes.append(__import__(mod, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            continue
    return any(isinstance(err, c) for c in classes)


if __name__ == "__main__":
    main()
