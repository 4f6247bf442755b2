"""The one pending query (jobs/feff/pending.py), on an in-memory database."""

from __future__ import annotations

import pytest

from xanesdb.jobs.feff.pending import covered_site_ids, existing_task_ids, pending_sites, select_pending_sites
from xanesdb.jobs.feff.task import failed_input_doc, feff_task_key, write_tasks
from xanesdb.platform.errors import XanesdbUserError


def test_pending_skips_computed_and_mp_covered_sites(campaign):
    db, c = campaign
    pending, n_sites, n_already = select_pending_sites(db, ["Cu"], "fast")
    assert [s["site_id"] for s in pending] == sorted(c.site_ids)  # site_id order
    assert (n_sites, n_already) == (4, 1)
    assert all(s["task_id"] == feff_task_key(*s["site_id"].split(":")[:2], int(s["site_id"].split(":")[2]))
               for s in pending)
    # covered_by=() computes the MP-covered site too
    assert len(select_pending_sites(db, ["Cu"], "fast", covered_by=())[0]) == 4
    assert covered_site_ids(db, [c.covered_site_id, *c.site_ids]) == {c.covered_site_id}
    # an MP spectrum of another edge covers nothing
    assert covered_site_ids(db, [c.covered_site_id], edge="L3") == set()


def test_failed_tasks_count_unless_retried_and_limit_and_elements(campaign):
    db, c = campaign
    site = db["sites"].find_one({"site_id": c.site_ids[0]}, {"_id": 0})
    write_tasks([failed_input_doc(site, "fast", "K", "boom")], db)
    key = feff_task_key(site["material_id"], "Cu", site["site_index"], "fast")
    assert existing_task_ids(db, [key]) == {key} and existing_task_ids(db, [key], retry_failed=True) == set()
    assert len(select_pending_sites(db, ["Cu"], "fast")[0]) == 2
    assert len(select_pending_sites(db, ["Cu"], "fast", retry_failed=True)[0]) == 3
    assert len(select_pending_sites(db, ["Cu"], "fast", limit=1)[0]) == 1
    assert select_pending_sites(db, ["Ti"], "fast")[1] == 0
    # another preset is another key: the failed fast task does not count for mp
    assert len(select_pending_sites(db, ["Cu"], "mp")[0]) == 3
    with pytest.raises(XanesdbUserError, match="unknown site order"):
        select_pending_sites(db, ["Cu"], order="random")


def test_pending_sites_of_a_given_list_is_the_same_answer(campaign):
    """What a fan-out job asks on the worker (a material's labelled sites) agrees with the plan."""
    db, c = campaign
    sites = list(db["sites"].find({"material_id": "mp-1181633"}, {"_id": 0}))
    assert pending_sites(db, sites, "fast") == []  # only the MP-covered site
    sites = list(db["sites"].find({"material_id": "mp-1101124"}, {"_id": 0}))
    assert [s["site_id"] for s in pending_sites(db, sites, "fast")] == ["mp-1101124:Cu:1", "mp-1101124:Cu:3"]
