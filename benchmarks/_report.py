"""What the table-writing benchmarks share: print the table, write it where asked."""

from __future__ import annotations

from pathlib import Path


def finish(text: str, out: Path | None) -> int:
    """Print a benchmark's text and write it to ``out`` when one is given; returns the exit status 0."""
    print(text, end="")
    if out is not None:
        out.write_text(text)
    return 0
