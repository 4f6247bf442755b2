"""The one fetch API: read a structure source, check everything, then write ``structures``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobflow import job

from xanesdb.jobs.structures.sources import (
    SOURCES,
    FetchSummary,
    ProgressCallback,
    _tick,
    bundled_structure_docs,
    file_structure_docs,
    mp_structure_docs,
    normalise_elements,
)
from xanesdb.jobs.structures.store import write_structures
from xanesdb.platform.errors import XanesdbUserError
from xanesdb.platform.settings import XanesdbSettings

__all__ = ["fetch_structures", "fetch_structures_job"]


def fetch_structures(
    source: str,
    elements: Sequence[str] | None = None,
    limit: int | None = None,
    path: str | Path | Sequence[str | Path] | None = None,
    settings: XanesdbSettings | None = None,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
    store: Any = None,
) -> FetchSummary:
    """Fetch structures from a source into the ``structures`` collection.

    A batch is read and checked completely before anything is written, so a bad file or a failed
    request writes nothing.

    Parameters
    ----------
    source
        'bundled', 'mp' or 'files'.
    elements
        Keep structures containing any of these elements (``mp``: default Ti-Cu).
    limit
        At most this many structures.
    path
        For 'files': a folder, a file or a list of them.
    settings
        Database settings (default: from the environment).
    endpoint
        For 'mp': the API base URL (default: mp-api's).
    progress
        ``progress(description, completed, total)`` callback.
    store
        The ``structures`` store to write to (default: the settings' database).

    Returns
    -------
    FetchSummary
        Counts (``n_new``, ``n_total`` ...); a re-run has ``n_new == 0``.

    Raises
    ------
    XanesdbUserError
        Unknown source, missing PATH, missing ``MP_API_KEY``, unreadable file; nothing is written.
    """
    if source not in SOURCES:
        raise XanesdbUserError(f"unknown source {source!r}; use one of: {', '.join(SOURCES)}")
    if limit is not None and limit < 0:
        raise XanesdbUserError(f"limit must be 0 or more, got {limit}")
    if path is not None and source != "files":
        raise XanesdbUserError(f"a PATH is only read with --source files, not --source {source}")
    elements = normalise_elements(elements)
    db_version = None
    skipped: dict[str, int] = {}
    # read and check everything first: nothing is written when any of it fails
    if source == "files":
        if path is None:
            raise XanesdbUserError("--source files needs a PATH: a folder or structure files (CIF, POSCAR, JSON)")
        docs, skipped = file_structure_docs(path, elements, limit, progress)
    elif source == "bundled":
        _tick(progress, "bundled: reading", 0, None)
        docs = bundled_structure_docs(elements, limit)
    else:
        docs, db_version, skipped = mp_structure_docs(elements, limit, endpoint, progress)
    counts = write_structures(docs, settings, progress=progress, store=store)
    return FetchSummary(
        source=source,
        n_total=len(docs),
        n_new=counts["new"],
        n_updated=counts["updated"],
        n_unchanged=counts["unchanged"],
        n_kept_other_source=counts["kept_other_source"],
        n_skipped=sum(skipped.values()),
        skipped=skipped,
        n_in_collection=counts["in_collection"],
        material_ids=[d.material_id for d in docs],
        database_version=db_version,
    )


@job(name="fetch structures")
def fetch_structures_job(
    source: str,
    elements: list[str] | None = None,
    limit: int | None = None,
    path: str | list[str] | None = None,
    endpoint: str | None = None,
) -> FetchSummary:
    """Fetch structures from ``source`` ('bundled', 'mp' (needs MP_API_KEY) or 'files') into ``structures``.

    The documents go to the ``structures`` collection of the job's database
    (:func:`xanesdb.jobs.database.job_database`).
    """
    from xanesdb.jobs.database import job_database, store_over

    store = store_over(job_database(), "structures")
    return fetch_structures(source, elements, limit, path=path, endpoint=endpoint, store=store)
