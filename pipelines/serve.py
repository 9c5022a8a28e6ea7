"""`kobo-etl serve`: every configured form on its own schedule, in one process, with Prefect's `serve`.

For one office laptop: no work pool and no worker. Each scheduled run executes in a subprocess, so a
failed or crashed run does not stop the others or the serve loop; Ctrl-C stops it cleanly (Prefect pauses
the schedules on shutdown, so nothing piles up while the laptop is off).

`serve` needs a Prefect API: a local `prefect server start` (recommended, see docs/operations.md) or,
without PREFECT_API_URL, the temporary server Prefect starts by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from config import FormConfig
from config.errors import EtlError
from pipelines.schedule import deployment_name, form_tags

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

log = logging.getLogger("kobo_etl.serve")


def build_deployments(forms: Sequence[FormConfig]) -> list[RunnerDeployment]:
    """One deployment of the `sync-form` flow per form, with the cron and time zone from its YAML.

    Parameters hold the slug only: the token and key are read from env/.env inside each run.
    """
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron

    from pipelines.flows import sync_form

    deployments: list[RunnerDeployment] = []
    for form in forms:
        deployment = sync_form.to_deployment(
            name=deployment_name(form),
            schedules=[Cron(form.schedule.cron, timezone=form.schedule.timezone,
                            active=form.schedule.active)],
            parameters={"slug": form.slug},
            description=f"Sync the KoBo form '{form.name or form.slug}' into the warehouse",
            tags=form_tags(form),
            # one run of a form at a time: a slow sync is not overtaken by the next tick
            concurrency_limit=1,
        )
        if not isinstance(deployment, RunnerDeployment):
            # Prefect returns a coroutine when called inside a running event loop (e.g. a notebook);
            # `serve` is synchronous, so that is unsupported: say so instead of returning a coroutine
            deployment.close()
            raise EtlError(
                "build the deployments outside a running event loop (Prefect returned a coroutine)",
                form=form.slug,
            )
        deployments.append(deployment)
    return deployments


def serve_forms(forms: Sequence[FormConfig], *, limit: int | None = 1) -> None:
    """Serve every form's deployment until Ctrl-C.

    Args:
        limit: runs at the same time in this process. 1 by default: all forms write one DuckDB file, so
            parallel runs would only queue on its lock.
    """
    from prefect import serve

    deployments = build_deployments(forms)
    for form in forms:
        state = "" if form.schedule.active else " (paused in its YAML)"
        log.info(
            "serving %s: %s %s%s", deployment_name(form), form.schedule.cron, form.schedule.timezone, state
        )
    serve(*deployments, limit=limit, print_starting_message=True)
