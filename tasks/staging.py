"""The task that removes staging folders left behind by killed runs."""

from __future__ import annotations

from prefect import get_run_logger, task

from rasteret_core import Settings

from ._common import sweep_stages


@task(name="sweep-staging", tags=["rasteret"])
def sweep_staging() -> int:
    """Remove the staging folders no live run holds (:func:`sweep_stages`); return how many.

    Flows run it after claiming their own folder (``claim_stage``): what a killed run
    staged is removed by the next run, whichever flow it is, and a run that resumes
    its own folder keeps it.
    """
    settings = Settings.from_env()
    removed = sweep_stages(settings)
    if removed:
        get_run_logger().info("removed %d staging folder(s) of killed runs under %s", len(removed),
                              settings.staging_root())
    return len(removed)
