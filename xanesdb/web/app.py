"""The Flask application of ``xanesdb web``: read-only pages over the database.

Pages: ``/`` (summary: spectra per absorber x class x source, models and their scores),
``/materials`` (find a structure), ``/material/<id>`` (formula, sites with labels and
multiplicities, their spectra plotted), ``/model/<run id>`` (card, confusion matrix, robustness
curves) and ``/upload`` (drop measured spectra: prediction, ``unsure`` reasons, nearest computed
spectra overlaid).

Every request is checked before the database is asked (:mod:`xanesdb.web.checks`): unknown or
operator-shaped query parameters, bad ids and oversized uploads get a page saying so (HTTP 400 or
413). Responses carry a Content-Security-Policy that lets the browser load nothing but this
server's own style sheet and script and ``data:`` images: no request leaves the machine.
On a loopback address only ``localhost``/loopback ``Host`` headers are answered (a page of another
site cannot reach the app through DNS rebinding).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Flask, Response, abort, g, render_template, request
from jinja2 import DictLoader
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from xanesdb.platform.errors import DatabaseUnavailableError, XanesdbUserError
from xanesdb.web import data
from xanesdb.web.access import Connections, LoginRequired
from xanesdb.web.checks import BadRequestInput, check_args, check_form, check_path_id
from xanesdb.web.templates import STATIC, TEMPLATES
from xanesdb.web.upload import KNN_K, MAX_FILES, MAX_PLOTS, MAX_UPLOAD_BYTES, analyse_uploads

logger = logging.getLogger(__name__)

__all__ = ["create_app", "warm_up", "CSP"]

CSP = ("default-src 'none'; img-src data:; style-src 'self'; script-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")  # fmt: skip
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
#: an over-size upload is read to its end (and thrown away) up to this many bytes, so that the
#: browser sees the page rather than a reset connection; beyond it the connection is closed
_DRAIN_BYTES = 4 * MAX_UPLOAD_BYTES


def create_app(settings=None, *, require_login: bool = False, loopback_only: bool = True) -> Flask:
    """The web application.

    Parameters
    ----------
    settings
        Which database (default: the current settings).
    require_login
        Every request must carry a database user's credentials (HTTP Basic); the pages read as
        that user (:mod:`xanesdb.web.access`). ``xanesdb web`` sets it for non-loopback hosts.
    loopback_only
        Answer only requests whose ``Host`` is a loopback name (the app listens on loopback).

    Examples
    --------
    >>> app = create_app()                                   # doctest: +SKIP
    >>> app.test_client().get("/").status_code               # doctest: +SKIP
    200
    """
    from xanesdb.platform.settings import get_settings

    settings = settings or get_settings()
    app = Flask("xanesdb.web")
    app.jinja_loader = DictLoader(TEMPLATES)
    app.config.update(MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES, MAX_FORM_PARTS=MAX_FILES + 10)
    conns = Connections(settings, require_login)
    app.extensions["xanesdb_connections"] = conns

    def reader():
        if "reader" not in g:
            auth = request.authorization
            g.reader = conns.reader(auth.username if auth else None, auth.password if auth else None)
        return g.reader

    @app.context_processor
    def _who() -> dict[str, Any]:
        r = g.get("reader")
        return {"who": f"signed in as {r.user}" if r is not None and conns.require_login else f"database {settings.DB_NAME}"}

    # ------------------------------------------------------------------ checks before every page
    @app.before_request
    def _check_request():
        if loopback_only:
            host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").startswith("[") \
                else (request.host or "").split("]")[0] + "]"  # fmt: skip
            if host not in _LOOPBACK_NAMES:
                raise BadRequestInput(f"this server answers only on localhost addresses, not {host[:60]!r}")
        g.args = check_args(request.endpoint, request.args)
        if request.endpoint != "static_file":
            reader()  # logs in (or refuses) before any page work

    # ------------------------------------------------------------------ pages
    @app.get("/")
    def summary():
        r = reader()
        db, who = r.db, r.user
        collections, counts = data.collection_counts(db, who), data.spectra_counts(db, who)
        models = data.model_rows(db)
        at = data.counted_at(f"{who}|{db.name}|")
        return render_template("summary.html", db_name=settings.DB_NAME, collections=collections, counts=counts,
                               classes=data.CLASSES, models=models, any_knn=any(m["knn"] is not None for m in models),
                               counted_at=time.strftime("%H:%M:%S", time.localtime(at)) if at else "")  # fmt: skip

    @app.get("/materials")
    def materials():
        a = g.args
        r = reader()
        result = data.list_materials(r.db, element=a.get("element"), q=a.get("q"), page=int(a.get("page", 1)), who=r.user)
        return render_template("materials.html", result=result, element=a.get("element"), q=a.get("q"))

    @app.get("/material/<path:material_id>")
    def material(material_id: str):
        mid = check_path_id(material_id, "material id")
        found = data.material(reader().db, mid)
        if found is None:
            return _page_error(404, "No such material", f"no structure {mid!r} in database {settings.DB_NAME}")
        from xanesdb.web.plots import site_spectra_figure, svg_uri

        plots = []
        by_el: dict[str, list] = {}
        for sp in found["spectra"]:
            by_el.setdefault(sp.get("element") or "?", []).append(sp)
        for el in sorted(by_el):
            plots.append((el, svg_uri(site_spectra_figure(by_el[el], el, f"{found['structure'].get('formula')} "
                                                                         f"({mid}): {el} K-edge site spectra"))))
        return render_template("material.html", s=found["structure"], sites=found["sites"], plots=plots)

    @app.get("/model/<path:run_id>")
    def model(run_id: str):
        rid = check_path_id(run_id, "model run id")
        d = data.model_card(reader().db, rid)
        if d is None:
            return _page_error(404, "No such model", f"no run {rid!r} in the registry or among the shipped models")
        from xanesdb.web.plots import confusion_uri, robustness_uri

        metrics = d.get("metrics") or {}
        f1 = {c: _pm(v) for c, v in (metrics.get("f1") or {}).items()}
        knn = metrics.get("knn")
        calib = metrics.get("calibration") or {}
        return render_template(
            "model.html", d=d, representation=(d.get("hyperparameters") or {}).get("representation", "grid"),
            query=json.dumps(d.get("query"), default=str), counts=metrics.get("class_counts") or {}, f1=f1,
            knn=json.dumps(knn, default=str)[:400] if knn else None,
            calibration=(f"temperature {calib['temperature']:.3g}" if isinstance(calib.get("temperature"), (int, float))
                         else None),
            hyper=json.dumps({k: v for k, v in (d.get("hyperparameters") or {}).items()
                              if k != "feature_indices"}, default=str)[:1500],
            confusion=confusion_uri(d), robustness=robustness_uri(d),
        )  # fmt: skip

    @app.route("/upload", methods=["GET", "POST"])
    def upload():
        ctx = {"max_files": MAX_FILES, "max_mb": MAX_UPLOAD_BYTES // 1_000_000, "max_plots": MAX_PLOTS,
               "knn_k": KNN_K, "opts": {"method": "cosine", "top": "5", "fidelity": "none", "energy_col": "", "mu_col": "",
                        "formula": ""}}  # fmt: skip
        if request.method == "GET":
            return render_template("upload.html", **ctx)
        opts = check_form(request.form)
        ctx["opts"] = opts
        if set(request.files) - {"files"}:
            raise BadRequestInput("the upload form has one file field, 'files'")
        files = [f for f in request.files.getlist("files") if f.filename]
        if not files:
            return render_template("upload.html", message="choose or drop at least one spectrum file", **ctx), 400
        if len(files) > MAX_FILES:
            return render_template("upload.html", message=f"{len(files)} files: give at most {MAX_FILES} at once",
                                   **ctx), 400  # fmt: skip
        contents = [(f.filename or "spectrum", f.read()) for f in files]
        out = analyse_uploads(contents, reader(), method=opts["method"], top=int(opts["top"]),
                              fidelity=opts["fidelity"], energy_col=opts["energy_col"], mu_col=opts["mu_col"],
                              formula=opts["formula"])  # fmt: skip
        for r in out["results"]:
            r["model_link"] = bool(r.get("model"))
        all_bad = all(r.get("error") for r in out["results"])
        message = out["message"] or (out["results"][0]["error"] if all_bad and out["results"] else None)
        return render_template("upload.html", results=out["results"], message=message,
                               more_plots=out["more_plots"], **ctx), 400 if all_bad else 200  # fmt: skip

    @app.get("/static/<name>")
    def static_file(name: str):
        if name not in STATIC:
            abort(404)
        mime, text = STATIC[name]
        return Response(text, mimetype=mime, headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------------ errors and headers
    @app.errorhandler(BadRequestInput)
    def _bad_input(err):
        return _page_error(400, "Not accepted", str(err))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(err):
        n = request.content_length or 0
        resp = _page_error(413, "Upload too large",
                           f"the upload is {n / 1e6:.1f} MB, over the {MAX_UPLOAD_BYTES / 1e6:g} MB limit; upload fewer "
                           "or smaller files (export only the spectra you need); nothing was read or stored")  # fmt: skip
        if not _drain(n):
            resp.headers["Connection"] = "close"
        return resp

    @app.errorhandler(LoginRequired)
    def _login(err):
        resp = _page_error(401, "Log in", f"{err}; the pages read the database as the user you log in as")
        resp.headers["WWW-Authenticate"] = 'Basic realm="xanesdb database users", charset="UTF-8"'
        return resp

    @app.errorhandler(DatabaseUnavailableError)
    def _db_down(err):
        return _page_error(503, "Database unavailable", str(err).splitlines()[0])

    @app.errorhandler(XanesdbUserError)
    def _user_error(err):
        return _page_error(400, "Not accepted", str(err).splitlines()[0])

    @app.errorhandler(HTTPException)
    def _http(err):
        return _page_error(err.code or 500, err.name, err.description or err.name)

    @app.errorhandler(Exception)
    def _unexpected(err):
        from pymongo.errors import OperationFailure

        if isinstance(err, OperationFailure) and err.code in (13, 8000):
            return _page_error(403, "Not allowed", "the database does not let this user read that; ask for a user "
                                                   "with the xanesdb_read role")  # fmt: skip
        logger.exception("web page failed")
        return _page_error(500, "Server error", f"the page failed ({type(err).__name__}); see the server's log")

    @app.after_request
    def _headers(resp):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        if conns.require_login:
            resp.headers["Cache-Control"] = "no-store"
        return resp

    return app


def warm_up(app: Flask, keras: bool = True) -> None:
    """Do once what the first pages would wait for: matplotlib's import, the summary's counts and the
    search index (without logins: with them, each visitor reads as themselves), Keras's import."""
    from xanesdb.platform.errors import XanesdbUserError as _UserError

    import matplotlib.figure  # noqa: F401

    conns = app.extensions["xanesdb_connections"]
    if not conns.require_login:
        r = conns.reader()
        data.collection_counts(r.db, r.user)
        data.spectra_counts(r.db, r.user)
        data.catalogue(r.db, r.user)
        try:
            from xanesdb.search import load_search_index

            load_search_index(r.settings)
        except _UserError:  # no spectra built yet: the upload page says so
            pass
    if keras:
        import xanesdb.ml.models  # noqa: F401 - imports Keras and its backend


def _pm(v: Any) -> str:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return f"{float(v[0]):.3f} ± {float(v[1]):.3f}"
    if isinstance(v, (int, float)):
        return f"{float(v):.3f}"
    return str(v)


def _page_error(status: int, title: str, message: str):
    try:
        body = render_template("error.html", title=title, message=message)
    except Exception:  # noqa: BLE001 - the error page must not fail in turn
        from markupsafe import escape

        body = f"<!doctype html><title>{escape(title)}</title><p id='error'>{escape(message)}</p>"
    resp = Response(body, status=status, mimetype="text/html")
    return resp


def _drain(n: int) -> bool:
    """Read and drop the rest of an over-size request body (so the browser gets the page);
    False when it is too big to bother (the connection is then closed)."""
    if n <= 0 or n > _DRAIN_BYTES:
        return n <= 0
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return False
    left = n
    try:
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
    except OSError:
        return False
    return True

