"""What the web pages show, read from the database: counts, materials, sites, spectra, models.

Every function takes a pymongo ``Database`` and only reads (``find``, ``aggregate``,
``count_documents``). Values from a request reach a filter only as plain strings or integers
that :mod:`xanesdb.web.checks` accepted: no operator or document from outside is ever passed on.
Shipped models (``xanesdb/data/models``) are read from their ``card.json`` files.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["CLASSES", "spectra_counts", "collection_counts", "catalogue", "list_materials", "material", "model_rows",
           "model_card", "shipped_cards"]  # fmt: skip

#: geometry classes, in the order the tables show them
CLASSES = ("T4", "S5", "O6")
ABSORBER_ORDER = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
#: collections the summary counts
SUMMARY_COLLECTIONS = ("structures", "sites", "feff_tasks", "spectra", "models")
#: the summary's counts are recomputed in the background when older than this (seconds); a page
#: meanwhile shows the last ones with their time (counting on SecantusDB takes 1-2 s)
SUMMARY_TTL_S = 120.0
_SUMMARY_MEMO: dict[str, tuple[float, Any]] = {}
_REFRESHING: set[str] = set()
_MEMO_LOCK = threading.Lock()
#: site fields the material page shows (the ChemEnv candidates stay in the database)
SITE_FIELDS = ("site_id", "element", "site_index", "equivalent_indices", "multiplicity", "wyckoff", "state", "error",
               "chemenv_symbol", "csm", "lce_class", "ambiguous", "ambiguity_reasons", "coordination_number",
               "mean_bond_length", "neighbor_elements", "oxidation_state")  # fmt: skip
SPECTRUM_FIELDS = ("spectrum_id", "site_id", "element", "edge", "source", "code", "preset", "multiplicity",
                   "chemenv_symbol", "lce_class", "energies", "mu", "mu_aligned", "aligned_grid", "e_half",
                   "duplicate_of", "state")  # fmt: skip


def _memo(key: str, build):
    """``build()``'s value, cached: computed now when never computed, else the cached value (a stale
    one is refreshed in a background thread, so a page never waits for a recount)."""
    with _MEMO_LOCK:
        hit = _SUMMARY_MEMO.get(key)
        stale = hit is not None and time.time() - hit[0] >= SUMMARY_TTL_S and key not in _REFRESHING
        if stale:
            _REFRESHING.add(key)
    if hit is None:
        value = build()
        with _MEMO_LOCK:
            _SUMMARY_MEMO[key] = (time.time(), value)
        return value
    if stale:
        def refresh():
            try:
                value = build()
                with _MEMO_LOCK:
                    _SUMMARY_MEMO[key] = (time.time(), value)
            except Exception as err:  # noqa: BLE001 - the old counts stay; the next page tries again
                logger.warning("summary counts not refreshed: %s", err)
            finally:
                with _MEMO_LOCK:
                    _REFRESHING.discard(key)

        threading.Thread(target=refresh, name="xanesdb-web-counts", daemon=True).start()
    return hit[1]


def counted_at(key_prefix: str) -> float | None:
    """When the oldest cached count under ``key_prefix`` was made (epoch seconds), or None."""
    times = [t for k, (t, _) in _SUMMARY_MEMO.items() if k.startswith(key_prefix)]
    return min(times) if times else None


def _order(elements) -> list[str]:
    els = sorted({e for e in elements if e})
    return [e for e in ABSORBER_ORDER if e in els] + [e for e in els if e not in ABSORBER_ORDER]


def collection_counts(db, who: str = "") -> dict[str, int]:
    """Documents per collection (the server's estimate)."""
    return _memo(f"{who}|{db.name}|collections", lambda: {c: db[c].estimated_document_count() for c in SUMMARY_COLLECTIONS})


def spectra_counts(db, who: str = "") -> dict[str, Any]:
    """Kept spectra (not duplicates) per absorber x class x source, by one aggregation.

    Returns
    -------
    dict
        ``sources`` (sorted), ``elements`` (absorber order), ``counts`` {(element, source, class): n}
        with class ``"other"`` for unlabelled sites, ``duplicates`` (spectra marked as duplicates).
    """

    def build():
        pipeline = [
            {"$match": {"duplicate_of": None}},
            {"$group": {"_id": {"e": "$element", "s": "$source", "c": "$lce_class"}, "n": {"$sum": 1}}},
        ]
        counts: dict[tuple[str, str, str], int] = {}
        for row in db["spectra"].aggregate(pipeline):
            k = (row["_id"].get("e") or "?", row["_id"].get("s") or "?", row["_id"].get("c") or "other")
            counts[k] = counts.get(k, 0) + int(row["n"])
        dups = db["spectra"].count_documents({"duplicate_of": {"$ne": None}})
        return {"sources": sorted({k[1] for k in counts}), "elements": _order(k[0] for k in counts),
                "counts": counts, "duplicates": dups}  # fmt: skip

    return _memo(f"{who}|{db.name}|spectra", build)


def catalogue(db, who: str = "") -> list[dict[str, Any]]:
    """Every structure's id, formula, source, elements and size, sorted by id (cached as the counts are).

    One projected read of the collection (3-4 s for the 2,167 bundled structures on SecantusDB,
    which reads whole documents for any range or regular-expression query, so a page of a filtered
    listing cost as much); pages then filter and page this list in memory.
    """

    def build():
        proj = {"_id": 0, "material_id": 1, "formula": 1, "source": 1, "elements": 1, "nsites": 1}
        docs = list(db["structures"].find({}, proj))
        docs.sort(key=lambda d: str(d.get("material_id")))
        return docs

    return _memo(f"{who}|{db.name}|catalogue", build)


def list_materials(db, *, element: str | None = None, q: str | None = None, page: int = 1, per_page: int = 50,
                   who: str = "") -> dict[str, Any]:  # fmt: skip
    """One page of structures (id, formula, source, elements), filtered by absorber and/or text.

    ``q`` matches a formula exactly or at its start, or the start of a material id (plain text
    compared in Python: never a pattern or operator).
    """
    items = catalogue(db, who)
    if element:
        items = [d for d in items if element in (d.get("elements") or ())]
    if q:
        items = [d for d in items if str(d.get("material_id", "")).startswith(q)
                 or str(d.get("formula", "")).startswith(q)]  # fmt: skip
    total = len(items)
    pages = max(1, -(-total // per_page))
    page = min(page, pages)
    return {"items": items[(page - 1) * per_page: page * per_page], "total": total, "page": page, "pages": pages}


def material(db, material_id: str) -> dict[str, Any] | None:
    """A structure (without its site list), its labelled sites and their spectra; None if unknown."""
    s = db["structures"].find_one({"material_id": material_id},
                                  {"_id": 0, "structure.sites": 0})  # fmt: skip
    if s is None:
        return None
    lat = (s.get("structure") or {}).get("lattice") or {}
    s["lattice"] = {k: lat.get(k) for k in ("a", "b", "c", "alpha", "beta", "gamma", "volume") if k in lat}
    s.pop("structure", None)
    sites = list(db["sites"].find({"material_id": material_id}, {"_id": 0, **{f: 1 for f in SITE_FIELDS}})
                 .sort([("element", 1), ("site_index", 1)]))  # fmt: skip
    spectra = list(db["spectra"].find({"material_id": material_id}, {"_id": 0, **{f: 1 for f in SPECTRUM_FIELDS}})
                   .sort("spectrum_id", 1))  # fmt: skip
    by_site: dict[str, list[dict]] = {}
    for sp in spectra:
        by_site.setdefault(sp.get("site_id"), []).append(sp)
    for site in sites:
        site["spectra"] = [{k: v for k, v in sp.items() if k not in ("energies", "mu", "mu_aligned")}
                           for sp in by_site.get(site["site_id"], [])]  # fmt: skip
    return {"structure": s, "sites": sites, "spectra": spectra}


def _macro(metrics: dict[str, Any]) -> tuple[float | None, float | None]:
    f1 = (metrics or {}).get("f1") or {}
    m = f1.get("macro")
    if isinstance(m, (list, tuple)) and m:
        return float(m[0]), float(m[1]) if len(m) > 1 else None
    if isinstance(m, (int, float)):
        return float(m), None
    return None, None


def _elements_of(query: dict[str, Any]) -> str:
    el = (query or {}).get("element")
    if isinstance(el, str):
        return el
    if isinstance(el, dict) and isinstance(el.get("$in"), list):
        return ", ".join(map(str, el["$in"]))
    return "all"


def _row(doc: dict[str, Any], where: str) -> dict[str, Any]:
    mean, std = _macro(doc.get("metrics") or {})
    return {"run_id": doc.get("run_id"), "kind": doc.get("kind"), "elements": _elements_of(doc.get("query") or {}),
            "classes": doc.get("classes") or [], "n_spectra": doc.get("n_spectra"), "f1_macro": mean,
            "f1_std": std, "created": str(doc.get("created") or "")[:16].replace("T", " "), "state": doc.get("state"),
            "representation": (doc.get("hyperparameters") or {}).get("representation", "grid"), "where": where,
            "knn": ((doc.get("metrics") or {}).get("knn") or {}).get("f1_macro")
            if isinstance((doc.get("metrics") or {}).get("knn"), dict) else None}  # fmt: skip


_SHIPPED: dict[str, Any] = {}


def shipped_cards() -> dict[str, dict[str, Any]]:
    """run_id -> card of each model shipped with xanesdb (read once per process)."""
    if "cards" not in _SHIPPED:
        from xanesdb.ml.portable import shipped_models

        cards: dict[str, dict[str, Any]] = {}
        for label, folder in shipped_models().items():
            try:
                card = json.loads((Path(folder) / "card.json").read_text())
            except (OSError, ValueError) as err:
                logger.warning("shipped model card %s unreadable: %s", folder, err)
                continue
            card["_shipped_as"] = label
            card["_folder"] = Path(folder).name
            cards[str(card.get("run_id") or Path(folder).name)] = card
        _SHIPPED["cards"] = cards
    return _SHIPPED["cards"]


def model_rows(db) -> list[dict[str, Any]]:
    """Registered runs (newest first) and then the shipped models, one summary row each."""
    proj = {"_id": 0, "run_id": 1, "kind": 1, "query": 1, "classes": 1, "n_spectra": 1, "metrics.f1": 1,
            "metrics.knn": 1, "created": 1, "state": 1, "hyperparameters.representation": 1}  # fmt: skip
    rows = [_row(d, "registry") for d in db["models"].find({}, proj).sort("created", -1).limit(200)]
    rows += [_row(c, f"shipped ({c['_shipped_as']})") for c in shipped_cards().values()]
    return rows


def model_card(db, run_id: str) -> dict[str, Any] | None:
    """The registry document of a run, else a shipped model's card; None when neither has it."""
    doc = db["models"].find_one({"run_id": run_id}, {"_id": 0})
    if doc is not None:
        doc["_where"] = "registry"
        return doc
    card = shipped_cards().get(run_id)
    if card is not None:
        return {**card, "_where": f"shipped with xanesdb ({card['_folder']})"}
    return None
