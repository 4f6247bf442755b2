"""``xanesdb web``: the pages through Flask's test client against a small real database (a subset of
the bundled Fe and Mn FEFF10 tasks on the local server, spectra built, one registered model run);
bad input (operator-laden query strings, a binary file, a 50 MB file, a file with no edge) refused
on the page with nothing written; logins as a database user off loopback; the command itself;
and a real headless Chromium (Debian's ``chromium``) clicking through the served pages and
uploading a measured file. The browser tests skip when no ``chromium`` is on PATH."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask", reason="the web pages need Flask (pip install 'xanesdb[web]')")

from xanesdb.web.browser import find_chromium  # noqa: E402

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "experimental_dev"
FE_PRJ = DEV / "athena" / "Fe-K-ALS-10.3.2.prj"
ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "mlp-webtest-0001"


# ----------------------------------------------------------------------------- a small database
def _subset(tmp: Path, elements=("Fe", "Mn"), every: int = 12) -> None:
    """Every ``every``-th bundled FEFF10 task of ``elements``, with their sites and structures."""
    from xanesdb.testing.snapshot import bundled_subset

    bundled_subset(tmp, every, elements)


def _registered_run() -> dict:
    """A registry document: the shipped Fe model's card with robustness curves added."""
    from xanesdb.ml.portable import shipped_models

    card = json.loads((shipped_models()["Fe"] / "card.json").read_text())
    doc = copy.deepcopy(card)
    doc.update(run_id=RUN_ID, state="complete", created=datetime(2026, 1, 2, tzinfo=timezone.utc),
               last_updated=datetime(2026, 1, 2, tzinfo=timezone.utc))  # fmt: skip
    doc["metrics"]["shift_curve"] = {"x": [-4, -2, 0, 2, 4], "mean": [0.5, 0.7, 0.85, 0.7, 0.5], "std": [0.05] * 5}
    doc["metrics"]["noise_curve"] = {"x": [0, 0.01, 0.03], "mean": [0.85, 0.8, 0.6], "std": [0.04] * 3}
    return doc


@pytest.fixture(scope="module")
def web_db(local_server, tmp_path_factory):
    """(server URI, database name, home): the subset loaded and built, one model registered."""
    import pymongo

    from xanesdb.jobs.spectra.build import build_spectra
    from xanesdb.platform.settings import get_settings
    from xanesdb.platform.snapshot import load_snapshot

    snap = tmp_path_factory.mktemp("web-snapshot")
    _subset(snap)
    name = f"test_web_{uuid.uuid4().hex[:8]}"
    home = tmp_path_factory.mktemp("web-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XANESDB_HOME", str(home))
        mp.setenv("XANESDB_DB_URI", local_server)
        mp.setenv("XANESDB_DB_NAME", name)
        settings = get_settings()
        load_snapshot(settings, snap)
        build_spectra(settings)
    client = pymongo.MongoClient(local_server)
    client[name]["models"].insert_one(_registered_run())
    client.close()
    return local_server, name, home


@pytest.fixture
def web_settings(web_db, monkeypatch):
    from xanesdb.platform.settings import get_settings

    monkeypatch.setenv("XANESDB_HOME", str(web_db[2]))
    monkeypatch.setenv("XANESDB_DB_URI", web_db[0])
    monkeypatch.setenv("XANESDB_DB_NAME", web_db[1])
    return get_settings()


@pytest.fixture
def client(web_settings):
    from xanesdb.web import create_app

    app = create_app(web_settings)
    yield app.test_client()
    app.extensions["xanesdb_connections"].close()


def _counts(settings) -> dict[str, int]:
    import pymongo

    c = pymongo.MongoClient(settings.DB_URI.get_secret_value())
    try:
        db = c[settings.DB_NAME]
        return {n: db[n].count_documents({}) for n in sorted(db.list_collection_names())}
    finally:
        c.close()


def _error(resp) -> str:
    m = re.search(r'id="error">([^<]*)<', resp.data.decode())
    assert m, resp.data.decode()[:2000]
    import html

    return html.unescape(m.group(1))


# ----------------------------------------------------------------------------- pages (test client)
@pytest.mark.integration
def test_summary_counts_and_models(client, web_settings):
    r = client.get("/")
    assert r.status_code == 200
    page = r.data.decode()
    # spectra per absorber x class x source: the kept Fe and Mn spectra of the subset, by class
    import pymongo

    c = pymongo.MongoClient(web_settings.DB_URI.get_secret_value())
    n_fe_o6 = c[web_settings.DB_NAME].spectra.count_documents({"element": "Fe", "lce_class": "O6", "duplicate_of": None})
    c.close()
    table = page[page.index('id="spectra-counts"'):page.index("</table>", page.index('id="spectra-counts"'))]
    assert "xanesdb" in table and all(f">{c}<" in table for c in ("T4", "S5", "O6", "other"))
    fe_row = re.search(r">Fe</a></th>(.*?)</tr>", table, re.S).group(1)
    assert f">{n_fe_o6}<" in fe_row and ">Mn<" in table
    # models: the registered run and the shipped ones, with macro F1
    assert RUN_ID in page and "shipped (Fe)" in page and "registry" in page and " ± " in page
    # the page asks nothing of other hosts
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert not re.search(r'(src|href)="(https?:)?//', page)


@pytest.mark.integration
def test_material_page_sites_and_spectra(client, web_settings):
    import pymongo

    c = pymongo.MongoClient(web_settings.DB_URI.get_secret_value())
    site = c[web_settings.DB_NAME].sites.find_one({"element": "Fe", "lce_class": {"$ne": None}})
    c.close()
    r = client.get(f"/materials?element=Fe&q={site['formula']}")
    assert r.status_code == 200 and f'/material/{site["material_id"]}"' in r.data.decode()
    r = client.get(f"/material/{site['material_id']}")
    page = r.data.decode()
    assert r.status_code == 200 and f'id="formula">{site["formula"]}' in page
    sites = page[page.index('id="sites"'):page.index("</table>", page.index('id="sites"'))]
    row = re.search(rf"<tr><td>{site['site_index']}</td><td>Fe</td>.*?</tr>", sites, re.S).group(0)
    assert f'class="n">{site["multiplicity"]}<' in row and f"<b>{site['lce_class']}</b>" in row
    assert (site["chemenv_symbol"] or "-") in row and "fast/xanesdb" in row
    assert 'id="spectra-Fe"' in page and 'src="data:image/svg+xml;base64,' in page


@pytest.mark.integration
def test_model_pages_card_confusion_robustness(client):
    r = client.get(f"/model/{RUN_ID}")
    page = r.data.decode()
    assert r.status_code == 200 and RUN_ID in page and "registry" in page
    n = _registered_run()["n_spectra"]  # the shipped Fe card the registry copy came from
    assert 'id="confusion"' in page and 'id="robustness"' in page and f"{n} spectra" in page
    assert "temperature" in page and "tensorflow" in page
    from xanesdb.web.data import shipped_cards

    shipped = next(k for k, v in shipped_cards().items() if v["_shipped_as"] == "Mn")
    page = client.get(f"/model/{shipped}").data.decode()
    assert "shipped with xanesdb" in page and 'id="confusion"' in page and "No robustness curves" in page
    r = client.get("/model/mlp-nope")
    assert r.status_code == 404 and "no run 'mlp-nope'" in _error(r)


@pytest.mark.integration
@pytest.mark.parametrize("url, says", [
    ("/materials?element[$ne]=Fe", "MongoDB operator"),
    ('/materials?q={"$gt":""}', "MongoDB operator"),
    ("/materials?q=%24where", "MongoDB operator"),
    ("/materials?element=Fe&element=Mn", "given 2 times"),
    ("/materials?mongo=1", "does not take the parameter 'mongo'"),
    ("/materials?element=iron", "is not a chemical symbol"),
    ("/?filter[$where]=sleep(1000)", "MongoDB operator"),
    ("/material/%24where", "is not a material id"),
    ("/material/mp-1%7B%24ne%7D", "is not a material id"),
    ("/model/%5B%24gt%5D", "is not a model run id"),
])  # fmt: skip
def test_operator_laden_requests_refused_on_the_page(client, web_settings, url, says):
    before = _counts(web_settings)
    r = client.get(url)
    assert r.status_code == 400 and says in _error(r), (url, r.data[:500])
    assert "Nothing was read from or written" in r.data.decode()
    assert _counts(web_settings) == before


@pytest.mark.integration
def test_unknown_material_and_foreign_host(client):
    r = client.get("/material/mp-0000000")
    assert r.status_code == 404 and "no structure 'mp-0000000'" in _error(r)
    r = client.get("/", headers={"Host": "evil.example:8050"})  # DNS rebinding onto the loopback app
    assert r.status_code == 400 and "only on localhost" in _error(r)


# ----------------------------------------------------------------------------- uploads
def _post(client, files, **form):
    data = {"files": [(io.BytesIO(b), n) for n, b in files], **form}
    return client.post("/upload", data=data, content_type="multipart/form-data")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The temporary folder uploads go through; tests check it is left empty."""
    import tempfile

    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.mark.integration
def test_bad_uploads_get_a_message_and_nothing_is_written(client, web_settings, private_tmp):
    before = _counts(web_settings)
    flat = "\n".join(f"{7000 + i} 1.0" for i in range(300)).encode()
    cases = [
        ([("scan.bin", bytes(range(256)) * 40)], {}, 400, "scan.bin: is a binary file, not text"),
        ([("big.xdi", b"7112 1.0\n" * 5_600_000)], {}, 413, "over the 50 MB limit"),
        ([("flat.dat", flat)], {}, 400, "no absorption edge"),
        ([], {}, 400, "choose or drop at least one spectrum file"),
        ([("a.xdi", flat)], {"method": "$where"}, 400, "MongoDB operator"),
        ([("a.xdi", flat)], {"top": "500"}, 400, "top='500' is not a number from 1 to 20"),
    ]
    for files, form, status, says in cases:
        r = _post(client, files, **form)
        assert r.status_code == status and says in _error(r), (says, r.data[:800])
        assert str(private_tmp) not in r.data.decode()  # messages name the file, never the temporary path
        assert list(private_tmp.iterdir()) == []
    assert _counts(web_settings) == before


def test_upload_reads_a_raw_beamline_file_with_the_mu_column_field(client, web_settings, private_tmp):
    """A raw column file with I0 and I1 only is refused in the form's words; with the mu column
    field (as ``--mu-col``) it is read and predicted; an Athena project beside it is read as it is."""
    import numpy as np

    from xanesdb.xas.readers import read_spectra

    (hem,) = read_spectra(DEV / "athena" / "Fe.prj", groups=["Hematite"])
    i0 = 50000.0 + np.arange(hem.energy.size)
    raw = ("; Epics Scan 1 dimensional scan\n; P1 = {Energy}\n; D1 = {I0}\n; D2 = {I1}\n;  P1 D1 D2\n" +
           "\n".join(f"{e:.3f} {a:.1f} {a * np.exp(-m):.3f}" for e, a, m in zip(hem.energy, i0, hem.mu))).encode()
    r = _post(client, [("hematite_13bm.dat", raw)])
    says = _error(r)
    assert r.status_code == 400 and "hematite_13bm.dat" in says and "give the mu column field 'ln(I0/I1)'" in says, says
    assert "--mu-col" not in says
    r = _post(client, [("hematite_13bm.dat", raw), (FE_PRJ.name, FE_PRJ.read_bytes())], mu_col="ln(I0/I1)", top="1")
    page = r.data.decode()
    assert r.status_code == 200, page[:1500]
    assert "hematite_13bm.dat" in page and 'id="error"' not in page
    answers = re.findall(r'class="answer[^"]*">([^<]*)<', page)
    assert len(answers) == 1 + len(read_spectra(FE_PRJ))  # the Athena groups too, though mu_col was given
    assert list(private_tmp.iterdir()) == []


def test_upload_corrects_self_absorption_with_the_formula_field(client, web_settings, private_tmp, tmp_path, shared_data):
    """A thick-sample fluorescence scan of hematite reads as T4 with a note on self-absorption; with
    the sample formula field it is corrected and reads O6; a formula that cannot be read is refused."""
    from tests.test_selfabs import _fluorescence_file

    f = _fluorescence_file(tmp_path / "hematite_fluo.dat", shared_data)
    r = _post(client, [(f.name, f.read_bytes())], top="1")
    page = r.data.decode()
    assert r.status_code == 200 and "note: fluorescence yield" in page, page[:1500]
    assert "give the sample formula" in page and "--self-absorption" not in page
    assert re.findall(r'class="answer[^"]*">([^<]*)<', page) != ["O6"]
    r = _post(client, [(f.name, f.read_bytes())], top="1", formula="Fe2O3")
    page = r.data.decode()
    assert r.status_code == 200 and re.findall(r'class="answer[^"]*">([^<]*)<', page) == ["O6"], page[:1500]
    assert "note: fluorescence yield" not in page
    r = _post(client, [(f.name, f.read_bytes())], formula="FeXx2")
    assert r.status_code == 400 and "FeXx2" in _error(r)
    r = _post(client, [(f.name, f.read_bytes())], formula="Fe2O3; drop")
    assert r.status_code == 400
    assert list(private_tmp.iterdir()) == []


def test_upload_broadens_a_herfd_file_and_reads_each_column_of_a_table(client, web_settings, private_tmp, tmp_path, shared_data):
    """An upload named HERFD is broadened as ``xanesdb predict`` does by default (the HERFD Cu2O of
    the development set reads `other`, not `unsure`), and a table of spectra gives one answer a column."""
    from xanesdb.xas.readers import read_spectra

    prj = shared_data / "experimental_dev" / "athena"
    (cu2o,) = read_spectra(prj / "CuHERFD_standards.prj", groups=["CuHERFD_Cu(I)O.001"])
    herfd = "energy,mu\n" + "\n".join(f"{e:.3f},{m:.6f}" for e, m in zip(cu2o.energy, cu2o.mu))
    r = _post(client, [("cu2o_HERFD.csv", herfd.encode())], top="1")
    page = r.data.decode()
    assert r.status_code == 200 and re.findall(r'class="answer[^"]*">([^<]*)<', page) == ["other"], page[:1500]
    assert "HERFD, broadened" in page
    hem, goe = read_spectra(prj / "Fe.prj", groups=["Hematite", "Goerthite"])
    table = "energy,Hematite,Goerthite\n" + "\n".join(
        f"{e:.3f},{a:.6f},{b:.6f}" for e, a, b in zip(hem.energy, hem.mu, np.interp(hem.energy, goe.energy, goe.mu)))
    r = _post(client, [("iron_oxides.csv", table.encode())], top="1")
    page = r.data.decode()
    assert r.status_code == 200 and re.findall(r'class="answer[^"]*">([^<]*)<', page) == ["O6", "O6"], page[:1500]
    assert list(private_tmp.iterdir()) == []


@pytest.mark.integration
@pytest.mark.slow
def test_upload_predicts_and_overlays_nearest(client, web_settings, private_tmp):
    before = _counts(web_settings)
    r = _post(client, [(FE_PRJ.name, FE_PRJ.read_bytes()), ("scan.bin", bytes(range(256)) * 40)], top="3")
    page = r.data.decode()
    assert r.status_code == 200, page[:1000]
    answers = re.findall(r'class="answer[^"]*">([^<]*)<', page)
    from xanesdb.xas.readers import read_spectra

    groups = [s.group for s in read_spectra(FE_PRJ)]
    assert len(answers) == len(groups) >= 5
    assert all(re.fullmatch(r"(O6|S5|T4)|unsure \(best (O6|S5|T4)\)", a) for a in answers), answers
    assert page.count('class="reason">unsure: ') == sum(a.startswith("unsure") for a in answers)
    assert "scan.bin: is a binary file" in page  # the bad file beside the good one: a row of its own
    # the nearest computed Fe spectra, overlaid and linked to their material pages (3 per spectrum)
    assert page.count('class="plot overlay"') == len(groups)
    links = re.findall(r'<td><a href="/material/([^"]+)">', page)
    assert len(links) == 3 * len(groups)
    assert client.get(f"/material/{links[0]}").status_code == 200
    assert list(private_tmp.iterdir()) == [] and _counts(web_settings) == before


# ----------------------------------------------------------------------------- logins off loopback
@pytest.mark.integration
def test_login_as_a_database_user_off_loopback(web_settings):
    import base64

    import pymongo

    from xanesdb.platform.access import UserSpec, apply_roles
    from xanesdb.web import create_app

    pw = "web-reader-" + uuid.uuid4().hex[:8]
    c = pymongo.MongoClient(web_settings.DB_URI.get_secret_value())
    apply_roles(c[web_settings.DB_NAME], [UserSpec("xanesdb_reader", "xanesdb_read", "", "X", password=pw)])
    c.close()
    app = create_app(web_settings, require_login=True, loopback_only=False)
    cl = app.test_client()

    def basic(user, password):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
                "Host": "lab-host.example:8050"}  # fmt: skip

    r = cl.get("/", headers={"Host": "lab-host.example:8050"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic") and "log in" in _error(r)
    r = cl.get("/", headers=basic("xanesdb_reader", "wrong"))
    assert r.status_code == 401 and "refused this user name and password" in _error(r)
    r = cl.get("/", headers=basic("xanesdb_reader", pw))
    assert r.status_code == 200 and "signed in as xanesdb_reader" in r.data.decode() and RUN_ID in r.data.decode()
    assert r.headers["Cache-Control"] == "no-store"
    r = cl.get("/materials?element=Fe", headers=basic("xanesdb_reader", pw))
    assert r.status_code == 200 and "/material/" in r.data.decode()
    app.extensions["xanesdb_connections"].close()


# ----------------------------------------------------------------------------- the command
def test_without_flask_one_line_names_the_extra(monkeypatch, capsys):
    from xanesdb.cli import main

    monkeypatch.setitem(sys.modules, "flask", None)
    with pytest.raises(SystemExit) as exit_:
        main(["web"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == ["error: xanesdb web needs Flask: pip install 'xanesdb[web]'"]


@pytest.mark.integration
@pytest.mark.parametrize("args, says", [
    (["--login", "--insecure"], "contradict"),
    (["--insecure"], "--insecure is for non-loopback addresses"),
    (["--certfile", "cert.pem"], "give --certfile and --keyfile together"),
    (["--port", "0"], "--port must be between 1 and 65535"),
])  # fmt: skip
def test_cli_refuses_contradictions(refused, args, says):
    assert says in refused(["web", *args])


def _serve(web_db, port: int) -> subprocess.Popen:
    env = {**os.environ, "XANESDB_HOME": str(web_db[2]), "XANESDB_DB_URI": web_db[0], "XANESDB_DB_NAME": web_db[1]}
    exe = Path(sys.executable).parent / "xanesdb"
    proc = subprocess.Popen([str(exe), "web", "--port", str(port), "--no-warm"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)  # fmt: skip
    seen = []
    for line in proc.stdout:  # the line that says where it listens (warnings may come first)
        seen.append(line)
        if "xanesdb web on http://127.0.0.1:" in line:
            return proc
        if len(seen) > 50:
            break
    proc.kill()
    raise AssertionError(f"xanesdb web did not start: {''.join(seen)[-2000:]}")


@pytest.fixture(scope="module")
def served(web_db):
    """``xanesdb web`` running as a separate process on a free loopback port."""
    from xanesdb.platform.server import find_free_port

    port = find_free_port()
    proc = _serve(web_db, port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.integration
def test_served_on_loopback_only(served):
    import urllib.request

    with urllib.request.urlopen(served + "/upload", timeout=60) as resp:
        assert resp.status == 200 and "default-src 'none'" in resp.headers["Content-Security-Policy"]
    port = int(served.rsplit(":", 1)[1])
    import socket

    addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:  # not reachable on the machine's other addresses
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, port)) != 0, addr


# ----------------------------------------------------------------------------- a real browser
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no chromium on PATH (apt-get install chromium)")


@pytest.mark.integration
@pytest.mark.slow
@needs_chromium
def test_browser_clicks_through_and_uploads_a_measured_file(served):
    from xanesdb.web.browser import Chromium

    with Chromium(width=1280, height=900) as b:
        b.goto(served + "/")
        assert b.eval("document.title") == "Summary - xanesdb"
        assert b.eval("document.querySelectorAll('#spectra-counts tr').length") >= 4
        b.click("#nav-materials")
        assert b.eval("document.title") == "Materials - xanesdb"
        mid = b.eval("document.querySelector('a.material').textContent")
        b.click("a.material")
        assert b.eval("document.title") == f"{mid} - xanesdb"
        assert b.eval("document.querySelectorAll('#sites tr').length") >= 2
        # the inline SVG plot is decoded and drawn by the browser
        assert b.eval("(function(){var i=document.querySelector('img.plot'); return i.complete && i.naturalWidth;})()") > 300
        b.click("#nav-upload")
        b.set_files("#files", [FE_PRJ])
        b.timeout = 300  # the first prediction imports Keras
        b.click("#submit")
        answers = b.eval("Array.from(document.querySelectorAll('td.answer')).map(e => e.textContent.trim())")
        assert len(answers) >= 5 and all(re.fullmatch(r"(O6|S5|T4)|unsure \(best (O6|S5|T4)\)", a) for a in answers)
        chromite = b.eval("document.querySelector('tr.prediction').textContent")
        assert "Chromite" in chromite
        assert b.eval("document.querySelectorAll('img.overlay').length") == len(answers)
        # a bad query string in the address bar: the message is on the page
        b.goto(served + "/materials?element[$ne]=Fe")
        assert "MongoDB operator" in b.eval("document.getElementById('error').textContent")
        assert b.console == []  # no script errors, no CSP violations reported
    origin = served.rstrip("/")
    assert b.requests and all(u.startswith(origin) or u.startswith("data:") for u in b.requests), b.requests
