"""Checks of what a request may carry: query parameters, path parts, upload options.

A page takes only its own parameters, each a plain value of a fixed form. Anything else is
refused with a :class:`BadRequestInput` whose message the page shows (HTTP 400) before any
database is asked: a parameter shaped like a MongoDB operator (``element[$ne]=``,
``q={"$gt": ""}``), an unknown parameter, a value of the wrong form.
"""

from __future__ import annotations

import re
from typing import Mapping

__all__ = ["BadRequestInput", "check_args", "check_path_id", "PARAMS"]


class BadRequestInput(ValueError):
    """A request the pages do not accept; the message says what to change."""


#: value forms of the parameters the pages take
_FORMS: dict[str, tuple[re.Pattern, str]] = {
    "element": (re.compile(r"[A-Z][a-z]?"), "a chemical symbol such as Fe"),
    "q": (re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.,()+=\- ]{0,63}"), "a formula or the start of a material id "
          "(letters, digits and : _ . , ( ) + = -, at most 64 characters)"),
    "page": (re.compile(r"[1-9][0-9]{0,4}"), "a page number"),
    "method": (re.compile(r"cosine|elsie"), "cosine or elsie"),
    "top": (re.compile(r"[1-9]|1[0-9]|20"), "a number from 1 to 20"),
    "fidelity": (re.compile(r"none|scf|scf\+k-edge"), "none, scf or scf+k-edge"),
    # column files' energy and mu columns: a name or number, mu also ln(a/b) or a/b (xanesdb predict's options)
    "energy_col": (re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.\- ]{0,47}"), "a column name or number"),
    "mu_col": (re.compile(r"(ln\()?[A-Za-z0-9][A-Za-z0-9:_.\- ]{0,47}(/[A-Za-z0-9][A-Za-z0-9:_.\- ]{0,47})?(?(1)\))"),
               "a column name or number, or a ratio such as ln(I0/It) or If/I0"),
    # the sample's formula for the self-absorption correction of fluorescence spectra (xanesdb predict --self-absorption)
    "formula": (re.compile(r"[A-Z][A-Za-z0-9.()]{0,63}"), "a chemical formula such as Fe2O3 or Fe0.05B0.95N0.95"),
}
#: endpoint -> the query parameters it takes
PARAMS: dict[str, tuple[str, ...]] = {
    "materials": ("element", "q", "page"),
}
#: material and run ids as xanesdb writes them (mp-1234, bundled:rutile, proto:layered:A=Ti,B=Mn, mlp-...)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.,()+=\-]{0,159}")
_OPERATOR = re.compile(r"[$\[\]{}]|\\u0024")


def _operator_like(text: str) -> bool:
    return bool(_OPERATOR.search(text)) or any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_args(endpoint: str | None, args: Mapping[str, str] | object) -> dict[str, str]:
    """The page's parameters as plain strings; raises :class:`BadRequestInput` for anything else.

    ``args`` is a werkzeug ``MultiDict`` (``getlist``) or a plain mapping.
    """
    allowed = PARAMS.get(endpoint or "", ())
    out: dict[str, str] = {}
    keys = list(args.keys())  # type: ignore[attr-defined]
    for key in keys:
        values = args.getlist(key) if hasattr(args, "getlist") else [args[key]]  # type: ignore[index]
        shown = key if len(key) <= 40 else key[:37] + "..."
        if _operator_like(key) or any(_operator_like(v) for v in values):
            raise BadRequestInput(
                f"the query parameter {shown!r} carries MongoDB operator or document syntax ($, [ ], {{ }}); "
                "these pages take plain values only (e.g. ?element=Fe&q=Fe2O3) and nothing was queried"
            )
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise BadRequestInput(f"this page does not take the parameter {shown!r} (it takes {takes})")
        if len(values) > 1:
            raise BadRequestInput(f"the parameter {shown!r} is given {len(values)} times; give it once")
        value = values[0].strip()
        if value == "":
            continue
        form, what = _FORMS[key]
        if not form.fullmatch(value):
            raise BadRequestInput(f"{key}={value[:40]!r} is not {what}")
        out[key] = value
    return out


def check_path_id(value: str, what: str) -> str:
    """A material or run id from the URL path, or :class:`BadRequestInput`."""
    if _operator_like(value) or not _ID.fullmatch(value):
        raise BadRequestInput(
            f"{value[:60]!r} is not a {what} (letters, digits and : _ . , ( ) + = -; no MongoDB operators)"
        )
    return value


def check_form(form: Mapping[str, str]) -> dict[str, str]:
    """The upload form's options (method, top, fidelity, energy_col, mu_col, formula), checked like query parameters."""
    out = {"method": "cosine", "top": "5", "fidelity": "none", "energy_col": "", "mu_col": "", "formula": ""}
    for key in form.keys():  # type: ignore[attr-defined]
        value = str(form.get(key, "")).strip()
        if _operator_like(key) or _operator_like(value):
            raise BadRequestInput(f"the form field {key[:40]!r} carries MongoDB operator syntax; nothing was read")
        if key not in out:
            raise BadRequestInput(f"the upload form has no field {key[:40]!r}")
        if value:
            form_re, what = _FORMS[key]
            if not form_re.fullmatch(value):
                raise BadRequestInput(f"{key}={value[:40]!r} is not {what}")
            out[key] = value
    return out
