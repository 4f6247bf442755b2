"""A local stand-in for the Materials Project API, so the real ``mp-api`` client runs offline.

:class:`FakeMPServer` is a small HTTP server (stdlib ``http.server`` in a thread) on
127.0.0.1 that answers the routes ``MPRester`` calls, with emmet-core-shaped JSON:

- ``GET /heartbeat``: ``{"db_version", "access_controlled_batch_ids", "version"}`` (the client
  reads the database version and the emmet version from here),
- ``GET /materials/summary/``: emmet ``SummaryDoc`` documents,
- ``GET /materials/xas/``: emmet ``XASDoc`` documents,

with the API's query conventions: comma-separated lists (``elements``, ``material_ids``,
``task_ids``), ``<field>_min``/``<field>_max`` ranges, booleans, ``_fields``/``_all_fields``
projections and ``_skip``/``_limit`` pagination with ``meta.total_doc``. A query parameter the
server does not implement is answered with HTTP 400 rather than silently ignored, so a test
cannot pass on a filter that was never applied.

The documents are built with emmet-core itself (``SummaryDoc.from_structure``,
``XASDoc.from_spectrum``) from real structures and spectra, see :func:`summary_doc` and
:func:`xas_doc`. Every request is recorded (:attr:`FakeMPServer.requests`), so tests can check
that the API key travelled only in the ``x-api-key`` header.

Examples
--------
>>> from mp_api.client import MPRester                      # doctest: +SKIP
>>> with FakeMPServer(summary_docs=[summary_doc(s, "mp-2657")]) as server:
...     with MPRester(api_key="x" * 32, endpoint=server.endpoint) as mpr:
...         docs = mpr.materials.summary.search(elements=["Ti", "O"], fields=["material_id"])

Run ``python -m xanesdb.testing.fake_mp tests/test_data/mp`` for a server to try the CLI against
(``MP_API_ENDPOINT`` is not read by xanesdb; pass ``--endpoint``).
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pymatgen.core import Structure

logger = logging.getLogger(__name__)

__all__ = [
    "FAKE_API_KEY",
    "FAKE_DB_VERSION",
    "RecordedRequest",
    "FakeMPServer",
    "summary_doc",
    "xas_doc",
    "load_fake_mp_data",
]

#: a syntactically valid (32 characters) API key that is not a real one
FAKE_API_KEY = "fakefakefakefakefakefakefake0000"
#: the database version the fake server reports (the format MP uses, YYYY.MM.DD)
FAKE_DB_VERSION = "2025.09.25"

#: list-valued parameters (comma-separated) per route; value: the document field they match
_LIST_PARAMS: dict[str, dict[str, str]] = {
    "summary": {
        "material_ids": "material_id",
        "elements": "elements",
        "exclude_elements": "elements",
        "chemsys": "chemsys",
        "formula": "formula_pretty",
    },
    "xas": {
        "task_ids": "task_id",
        "elements": "elements",
        "chemsys": "chemsys",
        "formula": "formula_pretty",
        "absorbing_element": "absorbing_element",
        "edge": "edge",
        "spectrum_type": "spectrum_type",
    },
}
_BOOL_PARAMS = {"deprecated", "theoretical", "is_stable", "is_metal", "is_gap_direct"}
_PAGING = {"_skip", "_limit", "_page", "_per_page", "_fields", "_all_fields", "_sort_fields"}
_DEFAULT_FIELDS = {
    "summary": ["material_id", "formula_pretty", "last_updated"],
    "xas": ["task_id", "formula_pretty", "last_updated"],
}


@dataclass
class RecordedRequest:
    """One request the fake server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    url: str
    status: int = 0


def _canonical_id(value: Any) -> str:
    """'mp-2657' for an AlphaID ('mp-aaaaadyf'), an MPID or a plain string."""
    from emmet.core.mpid import AlphaID

    try:
        return AlphaID(str(value)).string
    except Exception:  # noqa: BLE001 - not an MP id: compare as text
        return str(value)


def summary_doc(structure: Structure, material_id: str, **kwargs: Any) -> dict[str, Any]:
    """An emmet ``SummaryDoc`` as the API serves it (JSON), built from a real structure.

    Parameters
    ----------
    structure
        The material's structure.
    material_id
        Its Materials Project id, e.g. ``"mp-2657"``.
    **kwargs
        Further ``SummaryDoc`` fields, e.g. ``energy_above_hull=0.0, theoretical=False``.
    """
    from emmet.core.summary import SummaryDoc

    kwargs.setdefault("deprecated", False)
    doc = SummaryDoc.from_structure(structure, material_id=material_id, **kwargs)
    return doc.model_dump(mode="json")


def xas_doc(
    structure: Structure,
    material_id: str,
    energies: Sequence[float],
    mu: Sequence[float],
    absorbing_element: str,
    absorbing_index: int | None,
    edge: str = "K",
    spectrum_type: str = "XANES",
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """An emmet ``XASDoc`` as the API serves it (JSON), built from a spectrum and its structure.

    Parameters
    ----------
    structure, material_id
        The material and its id (the document's ``task_id``, as in the API).
    energies, mu
        The spectrum (eV, absorption).
    absorbing_element, absorbing_index
        Absorber; ``absorbing_index`` None for a site-averaged spectrum.
    edge, spectrum_type
        e.g. ``"K"`` and ``"XANES"``.
    warnings
        Stored in the document's ``warnings`` (label test data honestly here).
    """
    from emmet.core.xas import XASDoc
    from pymatgen.analysis.xas.spectrum import XAS

    spectrum = XAS(
        list(energies), list(mu), structure, absorbing_element, edge=edge,
        spectrum_type=spectrum_type, absorbing_index=absorbing_index,
    )
    doc = XASDoc.from_spectrum(spectrum, material_id=material_id, task_id=material_id, warnings=warnings)
    return doc.model_dump(mode="json")


def _matches(doc: dict[str, Any], route: str, params: dict[str, str]) -> bool:
    """Whether a served document satisfies the (already validated) query parameters."""
    for name, value in params.items():
        if name in _PAGING or name == "batch_id_not_eq":
            if name == "batch_id_not_eq" and doc.get("batch_id") == value:
                return False
            continue
        if name in _LIST_PARAMS[route]:
            wanted = [v.strip() for v in value.split(",") if v.strip()]
            have = doc.get(_LIST_PARAMS[route][name])
            if name in ("material_ids", "task_ids"):
                if _canonical_id(have) not in {_canonical_id(w) for w in wanted}:
                    return False
            elif name == "elements":
                if not set(wanted) <= set(have or []):
                    return False
            elif name == "exclude_elements":
                if set(wanted) & set(have or []):
                    return False
            elif name == "chemsys":
                if have not in {"-".join(sorted(w.split("-"))) for w in wanted}:
                    return False
            elif str(have) not in wanted:
                return False
        elif name in _BOOL_PARAMS:
            if bool(doc.get(name)) != (value.lower() == "true"):
                return False
        elif name.endswith(("_min", "_max")):
            have = doc.get(name[:-4])
            if have is None:
                return False
            bound = float(value)
            if (name.endswith("_min") and have < bound) or (name.endswith("_max") and have > bound):
                return False
    return True


def _unsupported(route: str, params: dict[str, str], docs: list[dict[str, Any]]) -> list[str]:
    """Query parameters this fake does not implement (answered with HTTP 400)."""
    known = set(_LIST_PARAMS[route]) | _BOOL_PARAMS | _PAGING | {"batch_id_not_eq"}
    fields = set().union(*(d.keys() for d in docs)) if docs else set()
    out = []
    for name in params:
        if name in known:
            continue
        if name.endswith(("_min", "_max")) and name[:-4] in fields:
            continue
        out.append(name)
    return out


class FakeMPServer:
    """Local HTTP server answering the Materials Project API routes that ``MPRester`` calls.

    Parameters
    ----------
    summary_docs
        JSON ``SummaryDoc`` documents served by ``/materials/summary/`` (see :func:`summary_doc`).
    xas_docs
        JSON ``XASDoc`` documents served by ``/materials/xas/`` (see :func:`xas_doc`).
    api_key
        Key the data routes require in the ``x-api-key`` header (401 otherwise); None accepts any.
    db_version
        Database version reported by ``/heartbeat``.
    port
        Port on 127.0.0.1; 0 picks a free one.
    """

    def __init__(
        self,
        summary_docs: list[dict[str, Any]] | None = None,
        xas_docs: list[dict[str, Any]] | None = None,
        api_key: str | None = FAKE_API_KEY,
        db_version: str = FAKE_DB_VERSION,
        port: int = 0,
    ) -> None:
        import emmet.core

        self.docs = {"summary": list(summary_docs or []), "xas": list(xas_docs or [])}
        self.api_key = api_key
        self.db_version = db_version
        self.emmet_version = getattr(emmet.core, "__version__", "0.87.0")
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        """Base URL to pass as ``MPRester(endpoint=...)``."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> FakeMPServer:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-mp", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FakeMPServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ answers
    def _answer(self, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        route_path = "/" + path.strip("/") + "/"
        if route_path == "/heartbeat/":
            return 200, {
                "db_version": self.db_version,
                "access_controlled_batch_ids": [],
                "version": self.emmet_version,
            }
        routes = {"/materials/summary/": "summary", "/materials/xas/": "xas"}
        if route_path not in routes:
            return 404, {"detail": f"Not Found: {path} (the fake MP server serves {sorted(routes)})"}
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return 401, {"detail": "API key is missing or invalid"}
        route = routes[route_path]
        docs = self.docs[route]
        bad = _unsupported(route, params, docs)
        if bad:
            return 400, {"detail": f"query parameters not implemented by the fake MP server: {bad}"}
        hits = [d for d in docs if _matches(d, route, params)]
        skip = int(params.get("_skip", 0) or 0)
        limit = int(params.get("_limit", params.get("_per_page", 100)) or 100)
        if "_page" in params:
            skip = (int(params["_page"]) - 1) * limit
        page = hits[skip : skip + limit]
        if "_fields" in params:
            keep = [f for f in params["_fields"].split(",") if f]
        elif str(params.get("_all_fields", "")).lower() == "true":
            keep = None
        else:
            keep = _DEFAULT_FIELDS[route]
        if keep is not None:
            page = [{k: d[k] for k in keep if k in d} for d in page]
        meta = {
            "api_version": self.emmet_version,
            "time_stamp": "2025-01-01T00:00:00",
            "total_doc": len(hits),
            "max_limit": 1000,
            "default_fields": _DEFAULT_FIELDS[route],
        }
        return 200, {"data": page, "meta": meta}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                params = {k: v[-1] for k, v in query.items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = RecordedRequest("GET", parts.path, query, headers, self.path)
                try:
                    status, body = server._answer(parts.path, params, headers)
                except Exception as err:  # noqa: BLE001 - report, do not kill the thread
                    status, body = 500, {"detail": f"fake MP server error: {type(err).__name__}: {err}"}
                record.status = status
                with server._lock:
                    server.requests.append(record)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, fmt: str, *args: Any) -> None:
                # paths only: never the headers (they carry the key)
                logger.debug("fake MP: " + fmt, *args)

        return Handler


def load_fake_mp_data(folder: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Summary and XAS documents built from the raw records of a test-data folder.

    The folder holds ``structures.json.gz`` (records ``{"material_id", "structure",
    "reference", ...extra SummaryDoc fields under "summary"}``) and ``xas_spectra.json.gz``
    (records ``{"material_id", "structure", "absorbing_element", "absorbing_index", "edge",
    "spectrum_type", "energy", "mu", "warnings"}``), as in ``tests/test_data/mp``.

    Returns
    -------
    tuple
        (summary documents, XAS documents), JSON as the API serves them.
    """
    from pymatgen.core import Structure

    folder = Path(folder)

    def read(name: str) -> list[dict[str, Any]]:
        path = folder / name
        if not path.exists():
            return []
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)

    summary = [
        summary_doc(Structure.from_dict(r["structure"]), r["material_id"], **r.get("summary", {}))
        for r in read("structures.json.gz")
    ]
    xas = [
        xas_doc(
            Structure.from_dict(r["structure"]), r["material_id"], r["energy"], r["mu"],
            r["absorbing_element"], r.get("absorbing_index"), edge=r.get("edge", "K"),
            spectrum_type=r.get("spectrum_type", "XANES"), warnings=r.get("warnings"),
        )
        for r in read("xas_spectra.json.gz")
    ]
    return summary, xas


def main(argv: list[str] | None = None) -> None:
    """Serve a test-data folder until interrupted (for manual trials of the CLI)."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="folder with structures.json.gz / xas_spectra.json.gz")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    summary, xas = load_fake_mp_data(args.folder)
    with FakeMPServer(summary, xas, port=args.port) as server:
        print(f"fake MP API at {server.endpoint} ({len(summary)} summary, {len(xas)} XAS documents); "
              f"key: MP_API_KEY={FAKE_API_KEY}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
