"""Query to arrays: :func:`xanesdb.ml.dataset.load_dataset` against plain pymongo, in the same run.

For each query (default: the Cu spectra of xanesdb's own grid, then every absorber of the bundled
database together with their grids), interleaved ``--repeats`` times, median times of:

- ``pymongo full``: ``list(spectra.find(criteria))``, the matching documents whole (what the
  server serves; the reference rate of issue 19);
- ``pymongo projected``: the same with load_dataset's projection;
- ``load_dataset uncached``: ``use_cache=False``: one read, arrays, fingerprint;
- ``cache, probe``: a cached dataset checked by one ``last_updated`` index probe (the default);
- ``cache, fingerprint``: a cached dataset checked exactly (``cache_check="fingerprint"``);
- ``cache, new client``: the default, but through settings (a client opened and closed per call,
  as ``train_from_query`` does) instead of a re-used collection (the API's ``Connection``).

Goal (issue 19): uncached >= 0.8 of the raw rate, >= 50,000 spectra/s from the cache. Needs a
database with spectra: ``xanesdb db load-bundled && xanesdb spectra build`` under ``XANESDB_HOME``.

    XANESDB_HOME=/tmp/h19 .venv/bin/python benchmarks/bench_query.py [--repeats 7] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

DEFAULT_QUERIES = [{"element": "Cu", "grid_name": "Cu-K-xanesdb-v1"}, {"element": "Fe"}]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--query", action="append", help="JSON filter (repeat); default Cu (xanesdb grid) and Fe")
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--before", default=None, help="also time load_dataset as it was at this git commit")
    a = p.parse_args()

    from xanesdb.ml.dataset import BASE_FIELDS, full_criteria, load_dataset
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database

    settings = get_settings()
    db = get_database(settings, ensure=False)
    coll = db["spectra"]
    queries = [json.loads(q) for q in a.query] if a.query else DEFAULT_QUERIES
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{coll.estimated_document_count()} spectra in {settings.DB_NAME}; {os.cpu_count()} CPUs, load average "
          f"{load:.1f} at start; median of {a.repeats} interleaved repeats")  # fmt: skip
    results = []
    for query in queries:
        crit = full_criteria(query)
        projection = {"_id": 0, **{f: 1 for f in BASE_FIELDS}, "lce_class": 1}
        n = coll.count_documents(crit)
        load_dataset(query, settings, collection=coll)  # warm the cache entry (and the server)
        ways = {
            "pymongo full": lambda: list(coll.find(crit)),
            "pymongo projected": lambda: list(coll.find(crit, projection)),
            "load_dataset uncached": lambda: load_dataset(query, settings, use_cache=False, collection=coll),
            "cache, probe": lambda: load_dataset(query, settings, collection=coll),
            "cache, fingerprint": lambda: load_dataset(query, settings, collection=coll, cache_check="fingerprint"),
            "cache, new client": lambda: load_dataset(query, settings),
        }
        if a.before:
            old = _module_at(a.before)
            old.load_dataset(query, settings, collection=coll)
            ways[f"before ({a.before[:7]}) uncached"] = lambda: old.load_dataset(query, settings, use_cache=False,
                                                                                collection=coll)
            ways[f"before ({a.before[:7]}) cached"] = lambda: old.load_dataset(query, settings, collection=coll)
        times: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(a.repeats):
            for k, fn in ways.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        raw = n / med["pymongo full"]
        print(f"\nquery {json.dumps(query)}: {n} spectra")
        print("| way | median s | spectra/s | / pymongo full |")
        print("|---|---|---|---|")
        for k, s in med.items():
            print(f"| {k} | {s:.4f} | {n / s:,.0f} | {n / s / raw:.2f} |")
        results.append({"query": query, "n": n, "median_s": med, "times_s": times, "load_average": load})
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=1))
    db.client.close()


def _module_at(rev: str):
    """xanesdb/ml/dataset.py as it was at ``rev``, as a module (for the before/after columns)."""
    import subprocess
    import sys
    import types

    src = subprocess.run(["git", "show", f"{rev}:xanesdb/ml/dataset.py"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout  # fmt: skip
    mod = types.ModuleType("dataset_before")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, f"{rev}:xanesdb/ml/dataset.py", "exec"), mod.__dict__)  # noqa: S102 - our own history
    return mod


if __name__ == "__main__":
    main()
