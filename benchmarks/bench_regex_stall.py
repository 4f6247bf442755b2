"""How long one pathological ``$regex`` holds the local server, and what another client waits.

Starts a throw-away local server (SecantusDB), stores one document whose ``material_id`` is ``n``
letters ``a`` and a ``!``, then sends ``{"material_id": {"$regex": "^(a+)+$"}}`` with
``maxTimeMS=1000`` while a second client pings 0.2 s later. Prints one row per ``n``. xanesdb's
CLI refuses this filter (``xanesdb.platform.queries.check_regex``); a client with the reader's
password and pymongo can still send it, which is what these numbers show.

    python benchmarks/bench_regex_stall.py            # n = 16 18 20 22 24
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import pymongo

from xanesdb.platform.server import LocalServer, find_free_port


def main(lengths: list[int]) -> int:
    with tempfile.TemporaryDirectory() as home:
        server = LocalServer(Path(home), port=find_free_port())
        uri = server.ensure_running().uri()
        try:
            slow, other = pymongo.MongoClient(uri), pymongo.MongoClient(uri)
            coll = slow.bench.docs
            print("| a's | regex query (s) | maxTimeMS | another client's ping waited (s) |")
            print("|---|---|---|---|")
            for n in lengths:
                coll.delete_many({})
                coll.insert_one({"material_id": "a" * n + "!"})
                other.admin.command("ping")
                waited: list[float] = []

                def ping_later() -> None:
                    time.sleep(0.2)
                    t = time.perf_counter()
                    other.admin.command("ping")
                    waited.append(time.perf_counter() - t)

                th = threading.Thread(target=ping_later)
                t0 = time.perf_counter()
                th.start()
                try:
                    list(coll.find({"material_id": {"$regex": "^(a+)+$"}}).max_time_ms(1000))
                except pymongo.errors.ExecutionTimeout:
                    pass
                took = time.perf_counter() - t0
                th.join()
                print(f"| {n} | {took:.2f} | 1000 | {waited[0]:.2f} |")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [16, 18, 20, 22, 24]))
