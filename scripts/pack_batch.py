"""Pack the unfinished folders of a FEFF batch (and its manifest) into a .tar.gz to run elsewhere.

A folder counts as finished when it has a ``result.json`` or when the results it came back with
were unpacked beside the batch (``--done RESULTS.tgz``, repeatable).

    python scripts/pack_batch.py .feffbatch/campaign .feffbatch/todo.tgz --done out1/results.tgz
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

from xanesdb.jobs.feff.batch import MANIFEST, RESULT_FILE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("batch", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--done", type=Path, action="append", default=[], help="results .tar.gz already run")
    p.add_argument("--limit", type=int, default=None, help="pack at most this many folders")
    p.add_argument("--names", type=Path, default=None,
                   help="file of folder names, one per line: pack only these, in this order (to split a batch between machines)")
    a = p.parse_args()
    done: set[str] = set()
    for tgz in a.done:
        with tarfile.open(tgz) as tar:
            done |= {m.name.split("/")[0] for m in tar.getmembers() if m.name.endswith("/" + RESULT_FILE)}
    manifest = json.loads((a.batch / MANIFEST).read_text())
    order = a.names.read_text().split() if a.names else manifest["folders"]
    todo = [n for n in order if n not in done and not (a.batch / n / RESULT_FILE).is_file()]
    if a.limit is not None:
        todo = todo[: a.limit]
    with tarfile.open(a.out, "w:gz") as tar:
        tar.add(a.batch / MANIFEST, arcname=MANIFEST)
        for n in todo:
            tar.add(a.batch / n, arcname=n)
    print(f"{len(todo)} folders packed into {a.out} ({a.out.stat().st_size / 1e6:.1f} MB); {len(done)} already done")


if __name__ == "__main__":
    main()
