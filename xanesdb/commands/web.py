"""``xanesdb web``: serve the read-only pages (:mod:`xanesdb.web`) until Ctrl-C.

Thin: check the options, build the app, run werkzeug's threaded server. Access follows
``xanesdb db serve``: on a loopback address (the default) the pages read with xanesdb's own
connection; on any other address every visitor logs in with a database user (HTTP Basic; the
users of ``xanesdb db roles --apply``) and the pages read as that user. ``--insecure`` serves a
non-loopback address without logins, loudly.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer

from xanesdb.commands._console import SafeConsole
from xanesdb.platform.errors import XanesdbUserError

console = SafeConsole(soft_wrap=True, emoji=False)
err_console = SafeConsole(stderr=True, emoji=False)


def web(
    host: str = typer.Option("127.0.0.1", help="Address to listen on; a non-loopback one (0.0.0.0 for a lab network) "
                             "makes every visitor log in with a database user."),
    port: int = typer.Option(8050, help="Port to listen on."),
    login: bool = typer.Option(False, "--login", help="Ask for a database user's login on a loopback address too."),
    insecure: bool = typer.Option(False, "--insecure", help="On a non-loopback address, serve WITHOUT logins: anyone "
                                  "who can reach the port reads the whole database through xanesdb's own connection."),
    certfile: Optional[Path] = typer.Option(None, "--certfile", help="TLS certificate (PEM): serve https, so that "
                                            "logins do not cross the network in clear."),
    keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="TLS private key (PEM) of --certfile."),
    warm: bool = typer.Option(True, "--warm/--no-warm", help="At start, count the spectra, read the search index and "
                              "import Keras in the background, so the first pages do not wait for them."),
) -> None:
    """Read-only web pages: summary, materials and their site spectra, model cards, predictions for dropped spectra.

    Binds 127.0.0.1 unless --host says otherwise. Nothing is fetched from elsewhere: plots are
    drawn on the server, and the pages may load only this server's own style sheet and script.
    """
    from xanesdb.platform.server import is_loopback
    from xanesdb.platform.settings import get_settings
    from xanesdb.web import require_flask

    require_flask()
    if login and insecure:
        raise XanesdbUserError("--login and --insecure contradict each other")
    if not 1 <= port <= 65535:
        raise XanesdbUserError(f"--port must be between 1 and 65535, got {port}")
    if (certfile is None) != (keyfile is None):
        raise XanesdbUserError("give --certfile and --keyfile together")
    for f in (certfile, keyfile):
        if f is not None and not f.is_file():
            raise XanesdbUserError(f"{f}: no such file; give the PEM file of the TLS certificate and key")
    loopback = is_loopback(host)
    if insecure and loopback:
        raise XanesdbUserError("--insecure is for non-loopback addresses; on a loopback address no login is asked anyway")
    require_login = login or (not loopback and not insecure)
    # before any warning and before the database starts: werkzeug would print its own lines and exit 1
    ssl_context = _tls_context(certfile, keyfile) if certfile is not None else None
    _check_listen(host, port)
    settings = get_settings()
    if insecure:
        err_console.print(f"WARNING: serving {host}:{port} WITHOUT logins (--insecure): anyone who can reach this port "
                          "can read the whole database", markup=False)  # fmt: skip
    if require_login:
        from xanesdb.platform.access import recorded_users

        if settings.DB_URI is None and not recorded_users(get_settings(DB_URI=None)):
            err_console.print("visitors log in with a database user; none besides xanesdb's administrator exists yet: "
                              "create them with `xanesdb db roles --apply` (e.g. xanesdb_reader)", markup=False)  # fmt: skip
        if certfile is None and not loopback:
            err_console.print(f"WARNING: logins to http://{host}:{port} cross the network in clear; give --certfile and "
                              "--keyfile to serve https", markup=False)  # fmt: skip
    from xanesdb.platform.stores import database_uri, get_client
    from xanesdb.web import create_app

    if require_login:
        database_uri(settings)  # starts the local server; each visitor's login is checked against it
    else:
        get_client(settings).close()  # a one-line error now, rather than on the first page
    app = create_app(settings, require_login=require_login, loopback_only=loopback)
    from werkzeug.serving import make_server

    try:
        server = make_server(host, port, app, threaded=True, ssl_context=ssl_context)
    except (OSError, SystemExit) as err:
        why = getattr(err, "strerror", None) or str(err) or "the address cannot be bound"
        raise XanesdbUserError(f"cannot listen on {host}:{port} ({why}); give another --port or --host") from None
    if warm:
        threading.Thread(target=_warm, args=(app,), name="xanesdb-web-warm", daemon=True).start()
    scheme = "https" if ssl_context else "http"
    shown = f"[{host}]" if ":" in host else host
    who = "visitors log in with a database user" if require_login else f"reading database {settings.DB_NAME} as xanesdb"
    console.print(f"xanesdb web on {scheme}://{shown}:{server.port}/ ({who}; read-only; Ctrl-C stops)", markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["xanesdb_connections"].close()


def _warm(app) -> None:
    from xanesdb.web.app import warm_up

    try:
        warm_up(app)
    except Exception:  # noqa: BLE001 - the first page that needs it reports any real problem
        pass


def _tls_context(certfile: Path, keyfile: Path):
    """The server's TLS context, or a one-line error that says the certificate or key is the problem."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(certfile), str(keyfile))
    except (ssl.SSLError, OSError, ValueError) as err:
        raise XanesdbUserError(f"--certfile {certfile} / --keyfile {keyfile} are not a PEM certificate and its key "
                               f"({getattr(err, 'reason', None) or err}); give the PEM files of one TLS certificate") from None
    return ctx


def _check_listen(host: str, port: int) -> None:
    """A one-line error when ``host`` does not resolve or ``host:port`` cannot be bound."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise XanesdbUserError(f"--host {host!r} is not an address of this machine nor a name that resolves "
                               f"({getattr(err, 'strerror', None) or err}); give e.g. 127.0.0.1 or 0.0.0.0") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        try:
            sock.bind(addr)
        except OSError as err:
            hint = "give another --port" if err.errno == errno.EADDRINUSE else "give an address of this machine as --host, e.g. 0.0.0.0"
            raise XanesdbUserError(f"cannot listen on {host}:{port} ({err.strerror or err}); {hint}") from None
