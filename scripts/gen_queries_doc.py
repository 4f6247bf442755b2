"""Regenerate the field and index tables of docs/queries.md from the pydantic schemas.

The tables sit between ``<!-- fields:<collection> -->`` / ``<!-- /fields -->`` markers (and
``<!-- indexes -->`` / ``<!-- /indexes -->``); everything else in the file is hand-written.
``python scripts/gen_queries_doc.py --check`` fails when the file is out of date
(tests/test_queries_doc.py runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "queries.md"


def _type_of(prop: dict) -> str:
    if "bsonType" in prop:
        t = prop["bsonType"]
        t = " or ".join(t) if isinstance(t, list) else t
        if t == "array" and "items" in prop:
            inner = _type_of(prop["items"])
            return f"array of {inner}" if inner else "array"
        return t
    if "anyOf" in prop:
        return " or ".join(_type_of(b) + (f" {b['enum']}" if "enum" in b else "") for b in prop["anyOf"])
    return "any"


def field_table(collection: str) -> str:
    from xanesdb.platform.validation import validator_for

    schema = validator_for(collection)["$jsonSchema"]
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]

    def walk(props: dict, prefix: str = "") -> None:
        for name, prop in props.items():
            if name == "_id":
                continue
            t = _type_of(prop) + (f" {prop['enum']}" if "enum" in prop else "")
            desc = prop.get("description", "").replace("|", "\\|")
            req = "yes" if (not prefix and name in required) else ""
            rows.append(f"| `{prefix}{name}` | {t.replace('|', '/')} | {req} | {desc} |")
            sub = prop.get("properties") or next(
                (b.get("properties") for b in prop.get("anyOf", []) if b.get("properties")), None)
            if sub is None and "items" in prop:
                sub = prop["items"].get("properties")
            if sub:
                walk(sub, f"{prefix}{name}.")

    walk(schema["properties"])
    return "\n".join(rows)


def index_table() -> str:
    from xanesdb.platform.stores import COLLECTIONS

    rows = ["| collection | unique key | other indexed fields |", "|---|---|---|"]
    for name, (key, fields) in COLLECTIONS.items():
        rows.append(f"| `{name}` | `{key}` | {', '.join(f'`{f}`' for f in fields)} |")
    return "\n".join(rows)


def render(text: str) -> str:
    def fields(m: re.Match) -> str:
        return f"{m.group(1)}\n{field_table(m.group(2))}\n{m.group(3)}"

    text = re.sub(r"(<!-- fields:(\w+) -->)\n(?:.*?\n)??(<!-- /fields -->)", fields, text, flags=re.S)
    text = re.sub(r"(<!-- indexes -->)\n(?:.*?\n)??(<!-- /indexes -->)",
                  lambda m: f"{m.group(1)}\n{index_table()}\n{m.group(2)}", text, flags=re.S)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="Fail if docs/queries.md is out of date.")
    args = p.parse_args(argv)
    old = DOC.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print(f"{DOC} is out of date: run python scripts/gen_queries_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
