"""Former home of the population campaigns; kept so existing imports and workflows in flight work.

Workflows already on a LaunchPad name their jobs by this module (``xanesdb.jobs.populate``
``label_material``, ``run_pending_feff``, ``build_material_spectra``, ``SiteFeffMaker``): they
resolve here to the one implementation in :mod:`xanesdb.jobs.feff.campaign` and
:mod:`xanesdb.jobs.feff.makers`.
"""

from __future__ import annotations

from xanesdb.jobs.feff.campaign import (
    TASK_KEY_SPEC,
    CampaignPlan,
    MaterialCampaign,
    MaterialXanesMaker,
    build_material_spectra,
    campaign_key,
    label_material,
    plan_campaign,
    run_campaign_locally,
    submit_campaign,
)
from xanesdb.jobs.feff.makers import FeffXanesMaker, feff_site_jobs, run_pending_feff

#: the campaign FEFF Maker is :class:`FeffXanesMaker` itself (it skips stored tasks and cleans up)
SiteFeffMaker = FeffXanesMaker

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
