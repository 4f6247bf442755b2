"""Mongo filters from user text: JSON only (never eval), no server-side code, writes or joins.

A filter is refused, before the database is contacted, when it

- uses an operator that runs code or writes on the server (``$where``, ``$function``,
  ``$accumulator``, ``$merge``, ``$out``) or reads other collections (``$lookup``,
  ``$graphLookup``, ``$unionWith``: on SecantusDB the reader role is not scoped to collections, so
  these would read ``jobs`` or ``launches`` through an allowed one);
- is nested more than :data:`MAX_DEPTH` levels (a 5,000-deep filter exhausted Python's recursion
  limit with a traceback);
- holds a regular expression (``$regex``, ``$regexMatch``/``$regexFind``/``$regexFindAll``) longer
  than :data:`MAX_REGEX_LENGTH` or with catastrophic backtracking potential: a repeated group that
  itself contains a repetition or an alternation (``(a+)+``, ``(a|aa)*``), a back-reference, a
  bounded repetition above :data:`MAX_REGEX_REPEAT`, or more than :data:`MAX_REGEX_UNBOUNDED`
  unbounded repetitions (``.*.*.*.*x``). The server's ``maxTimeMS`` does not stop a
  regular expression in the middle of one document: ``^(a+)+$`` against 26 ``a`` and ``!`` held a
  SecantusDB server for seconds, and every other client waited with it.
"""

from __future__ import annotations

import json
from typing import Any

from xanesdb.platform.errors import XanesdbUserError

__all__ = [
    "FORBIDDEN_OPERATORS",
    "MAX_DEPTH",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_REPEAT",
    "MAX_REGEX_UNBOUNDED",
    "parse_filter",
    "check_filter",
    "check_regex",
]

#: operators that run code or write on the server; refused anywhere in a user filter
CODE_OPERATORS = frozenset({"$where", "$function", "$accumulator", "$merge", "$out"})
#: operators that read another collection; refused anywhere in a user filter
JOIN_OPERATORS = frozenset({"$lookup", "$graphLookup", "$unionWith"})
FORBIDDEN_OPERATORS = CODE_OPERATORS | JOIN_OPERATORS
#: deepest nesting of objects and arrays accepted in a filter (real ones use 2-5 levels)
MAX_DEPTH = 32
#: longest regular expression accepted (characters)
MAX_REGEX_LENGTH = 200
#: largest bounded repetition count accepted in a regular expression (``a{1,100}``)
MAX_REGEX_REPEAT = 100
#: most unbounded repetitions (``*``, ``+``, ``{n,}``) in one expression: even unnested, k of them
#: in a row backtrack like (field length)^k on a field that does not match
MAX_REGEX_UNBOUNDED = 3
#: aggregation-expression operators whose ``regex`` argument is a regular expression
_REGEX_EXPRESSIONS = frozenset({"$regexMatch", "$regexFind", "$regexFindAll"})


def _regex_refusal(pattern: str, why: str) -> XanesdbUserError:
    shown = pattern if len(pattern) <= 40 else pattern[:37] + "..."
    return XanesdbUserError(
        f"regular expression {shown!r} is refused: {why}; use a plain prefix such as "
        "{\"formula\": {\"$regex\": \"^Fe2\"}} or an exact match (a pathological expression stalls the "
        "shared server for every user)"
    )


def check_regex(pattern: Any) -> None:
    """Raise :class:`XanesdbUserError` for a regular expression that may backtrack for long.

    Parsed with Python's own regular-expression parser (close to PCRE for the constructs that
    matter); a pattern it cannot parse is refused too.
    """
    if not isinstance(pattern, str):
        raise XanesdbUserError(f"$regex needs a string pattern, not {type(pattern).__name__}")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise _regex_refusal(pattern, f"longer than {MAX_REGEX_LENGTH} characters")
    try:
        import re._parser as sre_parse  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse  # type: ignore[no-redef]
    try:
        tree = sre_parse.parse(pattern)
    except Exception as err:  # re.error, or anything odd in the parser
        raise _regex_refusal(pattern, f"not a valid regular expression ({err})") from None
    constants = sre_parse  # opcode names live in the parser module's namespace
    repeats = {constants.MAX_REPEAT, constants.MIN_REPEAT, getattr(constants, "POSSESSIVE_REPEAT", None)}
    maxrepeat = constants.MAXREPEAT
    unbounded = 0

    def walk(items: Any, under_repeat: bool) -> None:
        for op, av in items:
            if op in repeats:
                lo, hi, body = av
                if hi != maxrepeat and hi > MAX_REGEX_REPEAT:
                    raise _regex_refusal(pattern, f"a repetition count above {MAX_REGEX_REPEAT}")
                repeated = hi == maxrepeat or hi > 1
                if hi == maxrepeat:
                    nonlocal unbounded
                    unbounded += 1
                    if unbounded > MAX_REGEX_UNBOUNDED:
                        raise _regex_refusal(
                            pattern, f"more than {MAX_REGEX_UNBOUNDED} unbounded repetitions (* + {{n,}})")
                if under_repeat and repeated:
                    raise _regex_refusal(pattern, "a repetition inside a repeated group (nested quantifiers)")
                walk(body, under_repeat or repeated)
            elif op == constants.BRANCH:
                if under_repeat:
                    raise _regex_refusal(pattern, "an alternation inside a repeated group")
                for alt in av[1]:
                    walk(alt, under_repeat)
            elif op == constants.SUBPATTERN:
                walk(av[-1], under_repeat)
            elif op in (constants.ASSERT, constants.ASSERT_NOT):
                walk(av[1], under_repeat)
            elif op in (constants.GROUPREF, getattr(constants, "GROUPREF_EXISTS", None)):
                raise _regex_refusal(pattern, "a back-reference")
            elif op == getattr(constants, "ATOMIC_GROUP", None):
                walk(av, under_repeat)

    walk(tree, False)


def check_filter(criteria: Any, _depth: int = 0) -> None:
    """Raise :class:`XanesdbUserError` if the filter is refused (see the module's description)."""
    # iterative, so no input can exhaust the recursion limit here
    stack: list[tuple[Any, int]] = [(criteria, _depth)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise XanesdbUserError(
                f"the query is nested more than {MAX_DEPTH} levels deep; write a flatter filter such as "
                "{\"element\": \"Fe\", \"lce_class\": {\"$in\": [\"O6\", \"T4\"]}}"
            )
        if isinstance(node, dict):
            for k, v in node.items():
                if k in CODE_OPERATORS:
                    raise XanesdbUserError(
                        f"operator {k} is not allowed in queries (it runs code or writes on the "
                        "server); use plain field filters such as {\"element\": \"Fe\"}"
                    )
                if k in JOIN_OPERATORS:
                    raise XanesdbUserError(
                        f"operator {k} is not allowed in queries (it reads other collections); query "
                        "each collection on its own"
                    )
                if k == "$regex":
                    check_regex(v)
                elif k in _REGEX_EXPRESSIONS and isinstance(v, dict) and "regex" in v:
                    check_regex(v["regex"])
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_filter(text: str) -> dict[str, Any]:
    """Parse a JSON filter; one-line errors that say what to do."""
    try:
        criteria = json.loads(text)
    except json.JSONDecodeError as err:
        raise XanesdbUserError(
            f"the query is not valid JSON ({err.msg} at column {err.colno}); write it like "
            "'{\"element\": \"Fe\", \"lce_class\": \"O6\"}' with double quotes"
        ) from None
    except RecursionError:
        raise XanesdbUserError(
            f"the query is nested more than {MAX_DEPTH} levels deep; write a flatter filter such as "
            "{\"element\": \"Fe\"}"
        ) from None
    if not isinstance(criteria, dict):
        raise XanesdbUserError(
            "the query must be a JSON object such as '{\"element\": \"Fe\"}', not "
            f"a {type(criteria).__name__}"
        )
    check_filter(criteria)
    return criteria
