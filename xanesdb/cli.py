"""The ``xanesdb`` command line: parses arguments and calls the layers below.

Bad input raises :class:`~xanesdb.platform.errors.XanesdbUserError`; :func:`main` prints it on
one line (``error: ...``) and exits with code 2.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import typer  # noqa: E402
from xanesdb.commands._console import SafeConsole  # noqa: E402
from xanesdb.commands._quiet import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

from xanesdb.platform.errors import XanesdbUserError

console = SafeConsole(soft_wrap=True)
err_console = SafeConsole(stderr=True)

app = typer.Typer(help="xanesdb: computed XANES spectra and site-geometry classifiers in MongoDB.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
# --- sub-apps of other areas: one line each, `app.add_typer(<module>.app, name="<name>")`
# (the modules live in xanesdb/commands/; keep each area's commands in its own module)
from xanesdb.commands import db as _db; app.add_typer(_db.app, name="db")  # noqa: E402,E702
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
from xanesdb.commands import web as _web; app.command("web")(_web.web)  # noqa: E402,E702
from xanesdb.commands import disorder as _disorder; app.add_typer(_disorder.app, name="disorder")  # noqa: E402,E702
from xanesdb.commands import calibrate as _calibrate; app.command("calibrate")(_calibrate.calibrate)  # noqa: E402,E702


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        try:
            # without standalone mode click returns the code of a `typer.Exit(code)` instead of exiting
            code = app(args=argv, standalone_mode=False)
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                sys.exit(code)
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
