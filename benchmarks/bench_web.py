"""Page load times of ``xanesdb web`` with the bundled database (goal: every page under 1 s on the
2-core machine), and the README screenshot.

Two measurements:

1. **Server time** (Flask's test client, in process): each page fetched once cold (right after
   the app is created, before :func:`xanesdb.web.app.warm_up`), then, after the warm-up that
   ``xanesdb web`` runs at start, ``--repeat`` times: median and worst. Pages: the summary, the
   material listing (all, and one absorber), three material pages (their site spectra plotted),
   a shipped model's page, the upload form, and one upload (an Athena project of 8 Fe K-edge
   groups: prediction, search, 8 overlay plots; not a page load, listed apart).
2. **In a browser** (with ``--browser``, when ``chromium`` is on PATH): ``xanesdb web`` started as
   its own process, headless Chromium loading each page until its load event.

    XANESDB_HOME=/tmp/hweb xanesdb db load-bundled && XANESDB_HOME=/tmp/hweb xanesdb spectra build
    XANESDB_HOME=/tmp/hweb python benchmarks/bench_web.py [--browser] [--screenshot docs/web_upload.png]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "experimental_dev"
FE_PRJ = DEV / "athena" / "Fe-K-ALS-10.3.2.prj"


def _pages(client) -> list[str]:
    mids = re.findall(r'href="/material/([^"]+)"', client.get("/materials?element=Fe").data.decode())
    models = re.findall(r'href="/model/([^"]+)"', client.get("/").data.decode())
    return ["/", "/materials", "/materials?element=Fe", *[f"/material/{m}" for m in mids[:3]], f"/model/{models[0]}",
            "/upload"]  # fmt: skip


def _time(client, url: str) -> float:
    t0 = time.perf_counter()
    r = client.get(url)
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"{url}: HTTP {r.status_code}")
    return dt


def _upload(client) -> float:
    import io

    t0 = time.perf_counter()
    r = client.post("/upload", data={"files": [(io.BytesIO(FE_PRJ.read_bytes()), FE_PRJ.name)]},
                    content_type="multipart/form-data")  # fmt: skip
    if r.status_code != 200:
        raise SystemExit(f"upload: HTTP {r.status_code}")
    return time.perf_counter() - t0


def server_times(repeat: int) -> list[tuple[str, float, float, float]]:
    from xanesdb.web import create_app
    from xanesdb.web.app import warm_up

    t0 = time.perf_counter()
    app = create_app()
    client = app.test_client()
    cold = {}
    urls = ["/", "/materials", "/upload"]
    for u in urls:
        cold[u] = _time(client, u)
    print(f"app created and first pages in {time.perf_counter() - t0:.1f} s (cold)", flush=True)
    t0 = time.perf_counter()
    warm_up(app)
    print(f"warm-up (counts, catalogue, search index, Keras import): {time.perf_counter() - t0:.1f} s", flush=True)
    pages = _pages(client)
    rows = []
    for u in pages:
        first = cold.get(u, _time(client, u))
        times = [_time(client, u) for _ in range(repeat)]
        rows.append((u, first, statistics.median(times), max(times)))
    ups = [_upload(client) for _ in range(2)]
    rows.append(("POST /upload (8 Fe spectra)", ups[0], ups[1], ups[1]))
    app.extensions["xanesdb_connections"].close()
    return rows


def browser_times(pages: list[str], screenshot: Path | None) -> list[tuple[str, float]]:
    from xanesdb.platform.server import find_free_port
    from xanesdb.web.browser import Chromium, find_chromium

    if find_chromium() is None:
        print("no chromium on PATH: browser times skipped")
        return []
    port = find_free_port()
    exe = Path(sys.executable).parent / "xanesdb"
    proc = subprocess.Popen([str(exe), "web", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        for line in proc.stdout:
            if "xanesdb web on" in line:
                break
        base = f"http://127.0.0.1:{port}"
        time.sleep(20)  # let the start-up warm-up finish
        out = []
        with Chromium(width=1280, height=1000) as b:
            for u in pages:
                b.goto(base + u)
                out.append((u, min(b.goto(base + u) for _ in range(3))))
            if screenshot is not None:
                b.goto(base + "/upload")
                b.set_files("#files", [FE_PRJ])
                b.timeout = 300
                b.click("#submit")
                b.screenshot(screenshot, full_page=False)
                print(f"screenshot: {screenshot}")
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--browser", action="store_true", help="also time the pages in headless Chromium")
    ap.add_argument("--screenshot", type=Path, help="PNG of the upload page's result (implies --browser)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "web.txt")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = server_times(args.repeat)
    lines = [f"xanesdb web page times, bundled database ({os.cpu_count()} CPUs visible; seconds)",
             f"{'page':45s} {'cold':>7s} {'median':>7s} {'worst':>7s}"]  # fmt: skip
    lines += [f"{u:45s} {a:7.3f} {m:7.3f} {w:7.3f}" for u, a, m, w in rows]
    if args.browser or args.screenshot:
        bt = browser_times([u for u, *_ in rows if not u.startswith("POST")], args.screenshot)
        if bt:
            lines += ["", "in headless Chromium, served by `xanesdb web` (load event, best of 3)"]
            lines += [f"{u:45s} {t:7.3f}" for u, t in bt]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
