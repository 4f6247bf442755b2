"""The upload page's work: read dropped files, predict (the shipped models, as ``xanesdb
predict``), search the nearest computed spectra (as ``xanesdb search``), and plot the overlay.

Files are written only into a private temporary folder (mode 0700) for the readers, under a
sanitised name, and the folder is removed before the page is sent; nothing reaches the database.
Messages name the uploaded file, never the temporary path.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from xanesdb.platform.errors import XanesdbUserError

logger = logging.getLogger(__name__)

__all__ = ["MAX_UPLOAD_BYTES", "MAX_FILES", "MAX_PLOTS", "KNN_K", "analyse_uploads"]

#: the largest upload (all files of one request together), bytes: the readers' per-file limit
MAX_UPLOAD_BYTES = 50_000_000
#: files per upload
MAX_FILES = 20
#: spectra that get an overlay plot (an Athena project may hold dozens; the tables cover all)
MAX_PLOTS = 12
#: neighbours the kNN vote beside the networks' answer uses
KNN_K = 5


def _safe_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")[:100]
    return safe or "spectrum"


def _scrub(text: str, tmp: str) -> str:
    """A message with the temporary folder taken out (only the uploaded file's name is shown)."""
    return text.replace(tmp + "/", "").replace(tmp, "")


def _form_words(text: str) -> str:
    """A message in the words of the upload form (its fields, not the CLI options)."""
    return (text.replace("--energy-col", "the energy column field").replace("--mu-col", "the mu column field")
            .replace("give --self-absorption FORMULA", "give the sample formula"))


def analyse_uploads(files: list[tuple[str, bytes]], reader, *, method: str = "cosine", top: int = 5,
                    fidelity: str = "none", energy_col: str = "", mu_col: str = "", formula: str = "") -> dict[str, Any]:  # fmt: skip
    """Predictions and nearest computed spectra for the uploaded files.

    Parameters
    ----------
    files
        (file name as uploaded, content) pairs.
    reader
        The request's :class:`xanesdb.web.access.Reader` (whose settings the search uses).
    method, top, fidelity
        As ``xanesdb search --method/--top/--fidelity``; ``fidelity="scf+k-edge"`` is ``--fidelity
        scf --calibration k-edge``.
    energy_col, mu_col
        As ``xanesdb predict --energy-col/--mu-col`` (empty: chosen by the reader), for the column
        files among the uploads; Athena projects are read as they are.
    formula
        As ``xanesdb predict --self-absorption`` (empty: no correction): every spectrum is corrected
        for self-absorption in a thick sample of that formula (45 degree angles). Spectra whose
        file name, Athena label or XDI header says HERFD are broadened as conventional ones, as
        ``xanesdb predict`` does by default.

    Returns
    -------
    dict
        ``results`` (one row per spectrum, as ``xanesdb predict`` gives it, plus ``search``, ``knn``
        and ``plot``) and ``message`` (a one-line reason when no file could be read, else None).
    """
    from xanesdb.xas.readers import read_files

    tmp = tempfile.mkdtemp(prefix="xanesdb-web-")
    spectra, bad = [], []
    try:
        for i, (name, content) in enumerate(files):
            shown = _safe_name(name)
            folder = Path(tmp) / str(i)
            folder.mkdir(mode=0o700)
            path = folder / shown
            path.write_bytes(content)
            found, failed = read_files([path], energy_col=energy_col or None, mu_col=mu_col or None)
            if formula and found:
                from xanesdb.xas.selfabs import correct_spectra

                try:
                    found, not_corrected = correct_spectra(found, formula)
                except ValueError as err:
                    return {"results": [], "message": f"sample formula: {err}", "more_plots": False}
                failed = [*failed, *not_corrected]
            from xanesdb.xas.herfd import herfd_spectra

            found, not_broadened = herfd_spectra(found, "auto")  # as predict's default: HERFD by its own words
            failed = [*failed, *not_broadened]
            for _, why in failed:  # a file that cannot be read, or a spectrum of it that cannot be corrected
                bad.append({"name": shown, "error": _scrub(_form_words(why), str(folder))})
            spectra.extend(replace(s, path=shown) for s in found)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not spectra:
        return {"results": bad, "message": bad[0]["error"] if bad else "no file was given", "more_plots": False}
    from xanesdb.ml.predict import predict_measured

    rows = predict_measured(spectra)
    for r in rows:  # a reader's message names the file as given (the bare name here)
        for k in ("error", "reason", "note"):
            if r.get(k):
                text = str(r[k]).splitlines()[0] if k == "error" else str(r[k])
                r[k] = _scrub(_form_words(text), tmp)
    try:  # one read of the index per upload (checking the database's state costs ~1 s on SecantusDB)
        index = _index(reader, fidelity)
        no_index = None
    except XanesdbUserError as err:
        index, no_index = None, f"no search: {str(err).splitlines()[0]}"
    searches = _search(spectra, index, no_index, method=method, top=top)
    from xanesdb.search import knn_vote

    for k, (s, r, found) in enumerate(zip(spectra, rows, searches)):
        r["search"] = found
        if found.get("matches"):
            r["knn"] = knn_vote(found["matches"], k=KNN_K)
            if k < MAX_PLOTS:
                r["plot"] = _overlay(s, r, found, index)
    return {"results": bad + rows, "message": None, "more_plots": len(spectra) > MAX_PLOTS}


def _index(reader, fidelity: str):
    from xanesdb.search import load_search_index

    fid, _, cal = fidelity.partition("+")  # "scf+k-edge": corrected towards scf, then calibrated to measurement
    return load_search_index(reader.settings, fidelity=None if fid == "none" else fid, calibration=cal or None)


def _search(spectra, index, no_index: str | None, *, method: str, top: int) -> list[dict[str, Any]]:
    from xanesdb.search import search_spectra

    if index is None:
        return [{"method": method, "error": no_index} for _ in spectra]
    out = search_spectra(spectra, top=top, method=method, index=index)
    for r in out:
        if r.get("error"):
            r["error"] = str(r["error"]).splitlines()[0]
    return out


def _overlay(spectrum, row: dict[str, Any], found: dict[str, Any], index) -> str | None:
    from xanesdb.search import prepare_query
    from xanesdb.web.plots import overlay_figure, svg_uri
    from xanesdb.xas.align import ALIGNED_GRID

    try:
        q = prepare_query(spectrum)
    except XanesdbUserError:
        return None
    where = _rows_by_id(index)
    refs = [(index.X[where[m["spectrum_id"]]], m) for m in found["matches"][:5] if m.get("spectrum_id") in where]
    answer = row.get("predicted") or ""
    if answer == "unsure":
        answer = f"unsure (best {row.get('best_class')})"
    return svg_uri(overlay_figure(spectrum.name, np.asarray(q.y), ALIGNED_GRID, refs, answer=answer))


_ROWS: dict[str, dict[str, int]] = {}


def _rows_by_id(index) -> dict[str, int]:
    """spectrum_id -> row of the index (built once per index)."""
    got = _ROWS.get(index.key)
    if got is None:
        got = {str(s): i for i, s in enumerate(index.meta["spectrum_id"])}
        _ROWS.clear()
        _ROWS[index.key] = got
    return got
