"""Former home of the population campaigns; kept so existing imports and workflows in flight work.

Workflows already on a LaunchPad name their jobs by this module (``xanesdb.jobs.populate``
``label_material``, ``run_pending_feff``, ``build_material_spectra``, ``SiteFeffMaker``): they
resolve here to the one implementation in :mod:`xanesdb.jobs.feff.campaign` and
:mod:`xanesdb.jobs.feff.makers`.
"""

from __future__ import annotations

from jobflow import job

from xanesdb.jobs.feff.campaign import (
    TASK_KEY_SPEC,
    CampaignPlan,
    MaterialCampaign,
    MaterialXanesMaker,
    build_material_spectra,
    campaign_key,
    plan_campaign,
    run_campaign_locally,
    submit_campaign,
)
from xanesdb.jobs.feff.makers import FeffXanesMaker, feff_site_jobs, run_pending_feff
from xanesdb.jobs.labels.job import label_sites_chemenv

#: the campaign FEFF Maker is :class:`FeffXanesMaker` itself (it skips stored tasks and cleans up)
SiteFeffMaker = FeffXanesMaker


@job(name="label sites")
def label_material(structure_doc: dict, elements: list[str]) -> list[dict]:
    """The labelling job of workflows submitted before the move: :func:`label_sites_chemenv` storing the sites."""
    return label_sites_chemenv.original(structure_doc, elements, store_sites=True)

__all__ = [
    "TASK_KEY_SPEC",
    "SiteFeffMaker",
    "MaterialXanesMaker",
    "label_material",
    "run_pending_feff",
    "build_material_spectra",
    "feff_site_jobs",
    "MaterialCampaign",
    "CampaignPlan",
    "campaign_key",
    "plan_campaign",
    "run_campaign_locally",
    "submit_campaign",
]
