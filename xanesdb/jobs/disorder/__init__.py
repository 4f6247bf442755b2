"""Distortion series of absorbing sites (issue 21): radially distorted clusters run through FEFF.

:mod:`~xanesdb.jobs.disorder.series` writes and runs one distorted cluster;
:mod:`~xanesdb.jobs.disorder.makers` runs a site's series as a resumable jobflow job.
"""

from xanesdb.jobs.disorder.makers import DistortionSeriesMaker, run_distortion_series
from xanesdb.jobs.disorder.series import (
    LITE_PRESET,
    MAX_DISTORTION,
    check_distortion,
    compute_distorted_task,
    distort_feff_input,
    distorted_task_key,
    distortion_grid,
    pending_distortions,
)

__all__ = ["DistortionSeriesMaker", "run_distortion_series", "LITE_PRESET", "MAX_DISTORTION", "check_distortion",
           "compute_distorted_task", "distort_feff_input", "distorted_task_key", "distortion_grid",
           "pending_distortions"]
