"""Prefect flows: `sync_form` for one form, `sync_all` for every configured form (or those named).

Tasks are one-line wrappers over plain functions in pipelines/run.py. `persist_result=False` everywhere:
nothing that could carry a submission is ever written to Prefect's result store, and flow results are
counts only. Secrets are read from env/.env inside the run, never passed as parameters.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.states import Completed, Failed, State

from config import EtlError, load_settings
from pipelines.logs import setup_logging
from pipelines.run import RunResult, run_sync
from pipelines.schedule import server_limit_name


@task(name="sync forms", persist_result=False, retries=0)
def sync_forms_task(slugs: list[str] | None, full: bool) -> RunResult:
    # run_sync sends the alerts of a red run (pipelines/alerts.py); no second alert from a flow hook
    settings = load_settings()
    setup_logging(settings, verbose=False)
    return run_sync(settings, slugs, full=full, wait_s=600)


def _run(slugs: list[str] | None, full: bool) -> State:
    """Hold a slot of the KoBo server's global concurrency limit (if created) while syncing."""
    # strict=False: without the limit (the default) runs are not capped, nothing fails
    with concurrency(server_limit_name(load_settings().kobo_url), occupy=1, strict=False):
        result = sync_forms_task(slugs=slugs, full=full)
    return _final_state(result)


class RedRun(EtlError):
    """A run ended red: a form failed or an error-severity check failed. Carries the counts (no values)."""

    def __init__(self, message: str, summaries: list[dict]) -> None:
        super().__init__(message)
        self.summaries = summaries


def _final_state(result: RunResult) -> State:
    """Counts only in the result; a red run ends Failed.

    A Failed state's data must be an exception: a deployment run re-raises it (Prefect logs it once), and
    `state.result(raise_on_failure=False)` returns it with the summaries attached.
    """
    payload = [s.to_dict() for s in result.summaries]
    logger = get_run_logger()
    for summary in result.summaries:
        for line in summary.lines():
            logger.info(line)
    for error in result.errors:
        logger.error(error)
    if result.red:
        reasons = result.errors or [
            f"{s.form}: {s.checks_failed} error checks failed" for s in result.summaries if s.checks_failed
        ]
        message = "; ".join(reasons)
        return Failed(message=message, data=RedRun(message, payload))
    return Completed(message=f"{len(payload)} form(s) synced", data=payload)


@flow(name="sync-form", persist_result=False, log_prints=False)
def sync_form(slug: str, full: bool = False) -> State:
    """Sync one configured form (by its slug) into the warehouse."""
    return _run([slug], full)


@flow(name="sync-all", persist_result=False, log_prints=False)
def sync_all(full: bool = False, forms: list[str] | None = None) -> State:
    """Sync every form in config/forms/, or only the `forms` named (by slug)."""
    return _run(forms or None, full)
