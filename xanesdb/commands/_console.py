"""Consoles of the command line that print stored strings as they are.

Material ids, file names, queries and error messages come from users and from the database: a
file named ``[/x].cif`` is Rich markup (it crashed the table of ``db query`` for every user), and
a name with ``ESC [ ... m`` in it would drive the terminal. :class:`SafeConsole` therefore has
markup off by default (callers that style constant text pass ``markup=True`` and escape what they
insert) and shows every control character except newline and tab as a visible escape
(``\\x1b``), in plain prints and table cells alike.
"""

from __future__ import annotations

import os
import re
from typing import Any

from rich.console import Console

__all__ = ["SafeConsole", "epoch_bar", "visible"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with control characters (but newline and tab) written as ``\\xNN`` escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


#: the width of tables written to a file or a pipe (no terminal to fit; ``COLUMNS`` still rules)
PIPE_WIDTH = 240


class SafeConsole(Console):
    """A Rich console with markup off by default and control characters made visible; written to
    a file or a pipe, it lays tables out :data:`PIPE_WIDTH` wide instead of Rich's 80 columns, which
    folded every cell of a ten-column table into strips of five characters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)  # ":x:" in a stored string or a file line is text, not an emoji
        super().__init__(*args, **kwargs)
        if "width" not in kwargs and not self.is_terminal and not self.is_jupyter and not os.environ.get("COLUMNS"):
            self.width = PIPE_WIDTH

    def render_str(self, text: str, *args: Any, **kwargs: Any):  # noqa: D102 - Console's
        return super().render_str(visible(text), *args, **kwargs)



def epoch_bar(console: Console, description: str, epochs: int | None, running=None):
    """A transient progress bar over training epochs, as a context manager yielding the
    ``on_epoch(epoch, loss, epochs_to_run)`` callback the training functions take.

    ``running(loss)`` gives the description while training runs (default: ``description``).
    """
    from contextlib import contextmanager

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def bar():
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:  # fmt: skip
            task = progress.add_task(description, total=epochs)

            def on_epoch(e: int, loss: float, total: int) -> None:
                progress.update(task, completed=e, total=total, **({"description": running(loss)} if running else {}))

            yield on_epoch

    return bar()
