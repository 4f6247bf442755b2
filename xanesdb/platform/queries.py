"""Mongo filters from user text: JSON only (never eval), no server-side code or writes."""

from __future__ import annotations

import json
from typing import Any

from xanesdb.platform.errors import XanesdbUserError

__all__ = ["FORBIDDEN_OPERATORS", "parse_filter", "check_filter"]

#: operators that run code or write on the server; refused anywhere in a user filter
FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator", "$merge", "$out"})


def check_filter(criteria: Any, _path: str = "") -> None:
    """Raise :class:`XanesdbUserError` if the filter uses a forbidden operator anywhere."""
    if isinstance(criteria, dict):
        for k, v in criteria.items():
            if k in FORBIDDEN_OPERATORS:
                raise XanesdbUserError(
                    f"operator {k} is not allowed in queries (it runs code or writes on the "
                    "server); use plain field filters such as {\"element\": \"Fe\"}"
                )
            check_filter(v, f"{_path}.{k}")
    elif isinstance(criteria, list):
        for v in criteria:
            check_filter(v, _path)


def parse_filter(text: str) -> dict[str, Any]:
    """Parse a JSON filter; one-line errors that say what to do."""
    try:
        criteria = json.loads(text)
    except json.JSONDecodeError as err:
        raise XanesdbUserError(
            f"the query is not valid JSON ({err.msg} at column {err.colno}); write it like "
            "'{\"element\": \"Fe\", \"lce_class\": \"O6\"}' with double quotes"
        ) from None
    if not isinstance(criteria, dict):
        raise XanesdbUserError(
            "the query must be a JSON object such as '{\"element\": \"Fe\"}', not "
            f"a {type(criteria).__name__}"
        )
    check_filter(criteria)
    return criteria
