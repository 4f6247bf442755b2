"""Count the malformed inputs the test suite feeds xanesdb, by kind, with the expected errors.

A "malformed input" is a refusal the tests assert: ``pytest.raises(...)``, an exit code 2 of
the CLI, or one row of a parametrized table of bad inputs. Kinds come from the test file and
the words around the refusal. Used for docs/reliability.md: ``python scripts/count_malformed_inputs.py``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
REFUSAL = re.compile(r"pytest\.raises\(|returncode == 2|exit_code == 2|\.code == 2")
KINDS = [  # first match wins: (kind, words near the refusal)
    ("queries", r"query|filter|\$where|\$function|\$out|\$merge|json"),
    ("settings", r"setting|uri|config|yaml|credentials|chmod|port|XANESDB_"),
    ("documents", r"schema|document|validat|snapshot|migrat|field"),
    ("structure files (CIF/POSCAR/JSON)", r"cif|poscar|structure|\.vasp|element"),
    ("spectra files", r"spectr|xmu|csv|\.dat|mu\b|energ|grid"),
    ("FEFF inputs/outputs", r"feff|preset|ladder|timeout"),
]
MSG = re.compile(r"""(?:match=|in r\.stderr|in str\(|in capsys|msg)[^"'\n]*["']([^"'\n]{6,90})["']""")


def classify(text: str) -> str:
    low = text.lower()
    for kind, words in KINDS:
        if re.search(words, low):
            return kind
    return "other"


def main() -> int:
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS.glob("test_*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if REFUSAL.search(line):
                ctx = "\n".join(lines[max(0, i - 3): i + 3])
                kind = classify(path.stem + " " + ctx)
                counts[kind] += 1
                m = MSG.search(ctx)
                if m and len(examples[kind]) < 4 and m.group(1) not in examples[kind]:
                    examples[kind].append(m.group(1))
        # rows of parametrized tables of bad inputs (each one a malformed input)
        text = path.read_text()
        for block in re.findall(r"\n(BAD_\w+|\w*BAD\w*)\s*=\s*\[(.*?)\n\]", text, flags=re.S):
            rows = len(re.findall(r"^\s+\(", block[1], flags=re.M))
            counts[classify(block[0] + " " + block[1][:300])] += rows
        for params in re.findall(r"@pytest\.mark\.parametrize\(\s*\"text, ?match\",\s*\[(.*?)\]\)", text, flags=re.S):
            counts["queries"] += len(re.findall(r"^\s+\(", params, flags=re.M))
    print("| kind of input | malformed inputs tried | example expected errors |")
    print("|---|---|---|")
    for kind, n in counts.most_common():
        ex = "; ".join(f"`{e}`" for e in examples[kind]) or ""
        print(f"| {kind} | {n} | {ex} |")
    print(f"| **all** | **{sum(counts.values())}** | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
