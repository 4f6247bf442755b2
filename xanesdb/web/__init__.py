"""``xanesdb web``: read-only pages over the database, and predictions for dropped spectra.

Needs Flask (``pip install 'xanesdb[web]'``). :func:`create_app` builds the application
(:mod:`xanesdb.web.app`); ``xanesdb web`` serves it (:mod:`xanesdb.commands.web`).

Examples
--------
>>> from xanesdb.web import create_app
>>> client = create_app().test_client()            # doctest: +SKIP
>>> client.get("/materials?element=Fe").status_code  # doctest: +SKIP
200
"""

from __future__ import annotations

from typing import Any

from xanesdb.platform.errors import XanesdbUserError

__all__ = ["create_app", "require_flask", "WEB_EXTRA_HINT"]

WEB_EXTRA_HINT = "xanesdb web needs Flask: pip install 'xanesdb[web]'"


def require_flask() -> None:
    """Raise a one-line :class:`XanesdbUserError` naming the extra when Flask is missing."""
    try:
        import flask  # noqa: F401
    except ImportError:
        raise XanesdbUserError(WEB_EXTRA_HINT) from None


def create_app(*args: Any, **kwargs: Any):
    """:func:`xanesdb.web.app.create_app` (imported on first use: Flask is an optional extra)."""
    require_flask()
    from xanesdb.web.app import create_app as _create

    return _create(*args, **kwargs)
