"""Sites per hour through FireWorks workers against the local population pool, and the engine's overhead.

Starts a throw-away local database server (SecantusDB) in a temporary XANESDB_HOME and loads real
Cu structures with one site per computed Cu run folder of the OmniXAS raw sample. FEFF is the fake
of :mod:`xanesdb.testing.feff` with a fixed ``--sleep`` (it also starts a Python process, checks
the generated ``feff.inp`` and copies real FEFF10 outputs), so FEFF's own time is known and the
rest is platform. For each worker count, into a fresh database:

- ``pool``: :func:`xanesdb.jobs.feff.flows.populate_feff` (``xanesdb feff run``), FEFF in a
  thread-driven process pool, in this process;
- ``fireworks``: the campaign flows (FEFF per site; ``--spectra`` adds the per-material spectra
  job) submitted with :func:`xanesdb.jobs.populate.submit_campaign`, drained by N worker
  processes (``xanesdb populate worker``), timed from starting the workers until they exit
  (their start-up included) and from the first launch to the last (``drain``).

Overhead per site = worker-seconds per site - FEFF seconds per site (FEFF = the stored task's
``wall_seconds``: the FEFF process from start to exit), also as a percentage of that FEFF time
and of a real FEFF10 site: the mean ``wall_seconds`` of the successful FEFF10 tasks of the
bundled database (``xanesdb/data/db/feff_tasks.jsonl.gz``, fast preset), since the engine's cost
does not grow with FEFF's time.

Usage::

    nice -n 10 python benchmarks/bench_engines.py --sites 12 --sleep 2 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "omnixas_cu"
REF = ROOT / "tests" / "test_data" / "feff" / "CuO_Cu_K_fast"


def _load_sites(db, n_sites: int) -> list[str]:
    from pymatgen.core import Structure

    from xanesdb.schemas import Provenance, SiteDoc, StructureDoc

    raw = SHARED / "raw_sample"
    picked = []
    for mat in sorted(raw.iterdir()):
        runs = sorted((mat / "FEFF-XANES").glob("*_Cu")) if (mat / "FEFF-XANES").is_dir() else []
        if not runs:
            continue
        sd = StructureDoc.from_structure(Structure.from_file(mat / "POSCAR"), mat.name, "files",
                                         Provenance(origin="omnixas", source_id=mat.name))
        db["structures"].replace_one({"material_id": mat.name}, sd.to_mongo(), upsert=True)
        for run in runs:
            idx = int(run.name.split("_")[0])
            site = SiteDoc(site_id=f"{mat.name}:Cu:{idx}", material_id=mat.name, source="files", formula=sd.formula,
                           element="Cu", site_index=idx, equivalent_indices=[idx], multiplicity=1)
            db["sites"].replace_one({"site_id": site.site_id}, site.to_mongo(), upsert=True)
            picked.append(site.site_id)
            if len(picked) == n_sites:
                return picked
    return picked


def _bundled_feff_seconds(preset: str = "fast") -> tuple[float, int]:
    """Mean wall time of the bundled database's successful FEFF10 tasks of ``preset``, and their count."""
    import gzip
    import json

    times = []
    with gzip.open(ROOT / "xanesdb" / "data" / "db" / "feff_tasks.jsonl.gz", "rt") as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("source") == "xanesdb" and d.get("preset") == preset and d.get("state") == "successful":
                times.append(float(d["wall_seconds"]))
    return (sum(times) / len(times) if times else float("nan")), len(times)


def _t(x) -> float:
    return (x if isinstance(x, datetime) else datetime.fromisoformat(str(x))).timestamp()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=12)
    p.add_argument("--sleep", type=float, default=2.0, help="seconds the fake FEFF computes")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--spectra", action="store_true", help="FireWorks flows end with a spectra build per material")
    a = p.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="xanesdb-bench-engines-"))
    os.environ["XANESDB_HOME"] = str(home)
    os.environ.pop("XANESDB_DB_URI", None)
    os.environ["XANESDB_CONFIG_FILE"] = str(home / "none.yaml")

    from xanesdb.jobs.feff.flows import populate_feff
    from xanesdb.jobs.populate import plan_campaign, submit_campaign
    from xanesdb.platform.launchpad import TASK_KEY_SPEC, get_launchpad
    from xanesdb.platform.server import LocalServer, find_free_port
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.stores import get_database
    from xanesdb.testing.feff import fake_feff_command

    feff_cmd = fake_feff_command(REF, check="cards", sleep=a.sleep)
    server = LocalServer(home, port=find_free_port())
    uri = server.ensure_running().uri()
    rows = []
    try:
        for n in a.workers:
            # the local pool
            settings = get_settings(DB_NAME=f"bench_pool_{n}", HOME=home, DB_URI=uri)
            db = get_database(settings)
            k = len(_load_sites(db, a.sites))
            s = populate_feff(settings, elements=["Cu"], preset="fast", workers=n, feff_cmd=feff_cmd, progress=False)
            done = s.n_done + s.n_failed
            feff = s.feff_seconds / done
            rows.append(("pool", n, done, s.n_failed, s.wall_seconds, s.wall_seconds, feff,
                         n * s.wall_seconds / done - feff, s.overhead_seconds / done))
            print(f"pool, {n} workers: {done} sites in {s.wall_seconds:.1f} s", flush=True)

            # FireWorks: the campaign flows, N worker processes
            name = f"bench_fw_{n}"
            settings = get_settings(DB_NAME=name, HOME=home, DB_URI=uri)
            db = get_database(settings)
            k = len(_load_sites(db, a.sites))
            lp = get_launchpad(settings)
            plan = plan_campaign(settings, elements=["Cu"], preset="fast", build_spectra=a.spectra)
            submit_campaign(plan, lp, settings)
            env = {**os.environ, "XANESDB_DB_URI": uri, "XANESDB_DB_NAME": name, "XANESDB_FEFF_CMD": feff_cmd}
            procs = []
            t0 = time.perf_counter()
            for i in range(n):
                d = home / f"{name}-w{i}"
                d.mkdir()
                procs.append(subprocess.Popen([sys.executable, "-m", "xanesdb.cli", "populate", "worker", "--name",
                                               f"w{i}", "--sleep", "1"], cwd=d, env=env,
                                              stdout=open(d / "worker.log", "w"), stderr=subprocess.STDOUT))
            for proc in procs:
                proc.wait()
            wall = time.perf_counter() - t0
            tasks = list(db["feff_tasks"].find({}, {"wall_seconds": 1, "state": 1}))
            assert len(tasks) == k, f"{len(tasks)} tasks for {k} sites; see {home}"
            feff = sum(t["wall_seconds"] for t in tasks) / k
            launches = list(lp.launches.find({}, {"time_start": 1, "time_end": 1, "fw_id": 1, "runtime_secs": 1}))
            drain = max(_t(x["time_end"]) for x in launches) - min(_t(x["time_start"]) for x in launches)
            feff_fws = {f["fw_id"] for f in lp.fireworks.find({f"spec.{TASK_KEY_SPEC}": {"$exists": True}}, {"fw_id": 1})}
            in_launch = sum(x["runtime_secs"] for x in launches if x["fw_id"] in feff_fws) / k - feff
            n_failed = sum(t["state"] != "successful" for t in tasks)
            rows.append(("fireworks", n, k, n_failed, wall, drain, feff, n * wall / k - feff, in_launch))
            print(f"fireworks, {n} workers: {k} sites in {wall:.1f} s ({drain:.1f} s first launch to last)", flush=True)
    finally:
        server.stop()
    real, n_real = _bundled_feff_seconds()
    print()
    print(f"fake FEFF sleeping {a.sleep:g} s, {a.sites} Cu sites, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; FireWorks flows {'with' if a.spectra else 'without'} the spectra job; "
          f"real FEFF10 fast preset: {real:.1f} s/site (mean of the {n_real} bundled tasks)")
    print(f"{'engine':>9} {'workers':>7} {'sites':>5} {'failed':>6} {'wall s':>7} {'drain s':>7} {'sites/h':>8} "
          f"{'sites/h drain':>13} {'FEFF s/site':>11} {'overhead s/site':>15} {'% of FEFF':>9} "
          f"{'% of FEFF10':>11} {'in-job s/site':>13}")
    for eng, n, k, nf, wall, drain, feff, ov, inner in rows:
        print(f"{eng:>9} {n:>7} {k:>5} {nf:>6} {wall:>7.1f} {drain:>7.1f} {3600 * k / wall:>8.0f} "
              f"{3600 * k / drain:>13.0f} {feff:>11.2f} {ov:>15.2f} {100 * ov / feff:>8.1f}% "
              f"{100 * ov / real:>10.1f}% {inner:>13.2f}")
    print("overhead s/site: worker-seconds per site (workers x wall / sites) minus FEFF s/site; FireWorks' wall "
          "includes starting the worker processes. % of FEFF: of this run's (fake) FEFF s/site; % of FEFF10: of "
          "a real FEFF10 fast-preset site. in-job s/site: pool: input set, parse, validate, upsert; "
          "fireworks: the FEFF Firework's runtime minus FEFF (same work plus the job's JobStore write).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
