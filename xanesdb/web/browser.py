"""A headless Chromium driven over the DevTools protocol on a pipe (no driver, no extra package).

For the browser tests and the README screenshot: Chromium started with
``--remote-debugging-pipe`` reads protocol messages (JSON, each ended by a NUL byte) on file
descriptor 3 and writes its answers and events on descriptor 4. :class:`Chromium` opens one page
and offers what the tests need: go to a URL and wait for the load, evaluate JavaScript, set the
files of an ``<input type=file>``, take a screenshot.

Examples
--------
>>> with Chromium() as b:                                     # doctest: +SKIP
...     b.goto("http://127.0.0.1:8050/")
...     b.eval("document.title")
'Summary - xanesdb'
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "find_chromium", "BrowserError"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class BrowserError(RuntimeError):
    """Chromium did not start, answered with an error, or a wait ran out."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome on PATH (``XANESDB_CHROMIUM`` first), or None."""
    env = os.environ.get("XANESDB_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900, timeout: float = 60.0):
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError("no chromium on PATH (apt-get install chromium)")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="xanesdb-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # the child sees our pipe ends as its descriptors 3 (reads) and 4 (writes)
        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--disable-component-update",
                "--metrics-recording-only", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]  # fmt: skip

        def fds():  # in the child, before exec: our ends become its 3 and 4 (inheritable, unlike os.pipe's)
            import fcntl

            r, w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=fds, close_fds=False)  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self._events: list[dict[str, Any]] = []
        self.console: list[str] = []
        #: every URL the page asked for (Network.requestWillBeSent), for checks that nothing leaves
        self.requests: list[str] = []
        try:
            target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Network"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol
    def _send(self, msg: dict[str, Any]) -> None:
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed the DevTools pipe (it exited)")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _call(self, method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._send(msg)
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error'].get('message')}")
                return m.get("result", {})
            self._event(m)

    def _event(self, m: dict[str, Any]) -> None:
        if m.get("method") == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in m["params"]["args"]))
        elif m.get("method") == "Network.requestWillBeSent":
            self.requests.append(m["params"]["request"]["url"])
        elif m.get("method") == "Runtime.exceptionThrown":
            self.console.append("exception: " + str(m["params"]["exceptionDetails"].get("text")))
        self._events.append(m)

    def call(self, method: str, params: dict | None = None) -> dict[str, Any]:
        """A protocol command on the page's session."""
        return self._call(method, params, self.session)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The next event ``method`` (events seen before are looked at first)."""
        for i, m in enumerate(self._events):
            if m.get("method") == method:
                return self._events.pop(i)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method:
                return m
            self._event(m)

    # ------------------------------------------------------------------ what tests use
    def goto(self, url: str) -> float:
        """Load ``url`` and wait for its load event; returns the seconds it took."""
        self._events.clear()
        t0 = time.perf_counter()
        nav = self.call("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise BrowserError(f"{url}: {nav['errorText']}")
        self.wait_event("Page.loadEventFired")
        return time.perf_counter() - t0

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression[:80]}: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def click(self, selector: str) -> float:
        """Click the element (a link or submit button) and wait for the page it loads."""
        self._events.clear()
        t0 = time.perf_counter()
        found = self.eval(f"(function(){{var e=document.querySelector({json.dumps(selector)}); if(!e) return false; "
                          "e.click(); return true;})()")  # fmt: skip
        if not found:
            raise BrowserError(f"no element {selector!r} on the page")
        self.wait_event("Page.loadEventFired")
        return time.perf_counter() - t0

    def set_files(self, selector: str, paths: list[str | Path]) -> None:
        """Choose files in an ``<input type=file>`` (as a user picking them would)."""
        root = self.call("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.call("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise BrowserError(f"no element {selector!r} on the page")
        self.call("DOM.setFileInputFiles", {"nodeId": node, "files": [str(Path(p).resolve()) for p in paths]})

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        """A PNG of the page (the whole page by default)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the browser and remove its profile folder."""
        try:
            self._send({"id": self._id + 1, "method": "Browser.close"})
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
