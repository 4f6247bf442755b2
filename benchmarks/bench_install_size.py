"""Install size of xanesdb's core and each extra, at two commits (before / after a dependency change).

For each ``pyproject.toml`` (taken from git) and each extra, ``pip install --dry-run --report``
resolves what a fresh install would bring; each resolved distribution's size is the sum of its
installed files in *this* environment (the project's .venv, which holds them all), so nothing is
downloaded or installed. Distributions not installed here (CUDA wheels) are counted and named, not
sized.

    .venv/bin/python benchmarks/bench_install_size.py --refs HEAD~4,HEAD --extras ",test,cluster,jax,gpu"
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _installed_mb(name: str) -> float | None:
    try:
        d = distribution(name)
    except PackageNotFoundError:
        return None
    total = 0
    for f in d.files or []:
        try:
            total += f.locate().stat().st_size
        except OSError:
            pass
    return total / 1e6


def _resolve(pyproject: str, extra: str, tmp: Path) -> list[str]:
    proj = tmp / "proj"
    (proj / "xanesdb").mkdir(parents=True, exist_ok=True)
    (proj / "xanesdb" / "__init__.py").write_text("")
    (proj / "README.md").write_text("x\n")
    (proj / "pyproject.toml").write_text(pyproject)
    report = tmp / "report.json"
    spec = f"{proj}[{extra}]" if extra else str(proj)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                        "--report", str(report), spec], capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"pip could not resolve {spec}: {r.stderr.strip().splitlines()[-1:]}")
    return [it["metadata"]["name"] for it in json.loads(report.read_text())["install"]
            if re.sub(r"[-_.]+", "-", it["metadata"]["name"]).lower() != "xanesdb"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refs", default="HEAD", help="comma-separated git refs whose pyproject.toml to resolve")
    p.add_argument("--extras", default=",test", help="comma-separated extras; empty = the core alone")
    a = p.parse_args()
    print("| commit | install | packages | MB installed | largest | not installed here (not sized) |")
    print("|---|---|---|---|---|---|")
    for ref in a.refs.split(","):
        pyproject = subprocess.run(["git", "show", f"{ref}:pyproject.toml"], cwd=ROOT, capture_output=True,
                                   text=True, check=True).stdout  # fmt: skip
        sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        for extra in a.extras.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                names = _resolve(pyproject, extra, Path(tmp))
            sizes = {n: _installed_mb(n) for n in names}
            known = {n: s for n, s in sizes.items() if s is not None}
            missing = sorted(n for n, s in sizes.items() if s is None)
            big = sorted(known.items(), key=lambda t: -t[1])[:4]
            print(f"| {ref} ({sha}) | {'xanesdb[' + extra + ']' if extra else 'xanesdb'} | {len(names)} | "
                  f"{sum(known.values()):,.0f} | {', '.join(f'{n} {s:,.0f}' for n, s in big)} | "
                  f"{len(missing)}{': ' + ', '.join(missing[:4]) + (' ...' if len(missing) > 4 else '') if missing else ''} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
