"""Errors that the command line turns into a one-line message and exit code 2."""

from __future__ import annotations

__all__ = ["XanesdbUserError", "DatabaseUnavailableError"]


class XanesdbUserError(Exception):
    """Bad input or set-up that the user can fix; the message says how.

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    """


class DatabaseUnavailableError(XanesdbUserError):
    """The configured database cannot be reached or the local server cannot start."""
