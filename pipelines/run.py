"""Running syncs for a set of forms: client, warehouse connection, post-load steps. Plain functions."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from config import ConfigError, EtlError, FormConfig, Settings, load_form_configs
from connectors import KoboClient
from pipelines.alerts import INDICATORS, alert_exception, alert_run
from pipelines.checks import publish_outputs
from pipelines.progress import CONSOLE_ATTR, SyncProgress
from pipelines.sync import SyncSummary, sync_form, unexpected_error_text
from warehouse import connect

log = logging.getLogger("kobo_etl")
FILE_ONLY = {CONSOLE_ATTR: False}


@dataclass
class RunResult:
    """Summaries of every form synced in one run, and whether the run is red."""

    summaries: list[SyncSummary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: slug → error message / error class name of forms whose sync raised (for alerts and status)
    failures: dict[str, str] = field(default_factory=dict)
    error_types: dict[str, str] = field(default_factory=dict)

    def error_items(self) -> list[tuple[str, str]]:
        """(form, message) per error; errors not tied to one form (indicators) come as ('indicators', …)."""
        items = list(self.failures.items())
        tied = {f"{slug}: {msg}" for slug, msg in items}
        return items + [(INDICATORS, e) for e in self.errors if e not in tied]

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(s.status == "failed" for s in self.summaries)

    @property
    def red(self) -> bool:
        """Red = a sync failed or an `error`-severity check failed (a scheduled run shows red)."""
        return self.failed or any(s.checks_failed for s in self.summaries)


def make_client(settings: Settings) -> KoboClient:
    return KoboClient(
        settings.kobo_url,
        settings.require_token(),
        timeout=settings.request_timeout_s,
        max_retry_s=settings.max_retry_s,
        allow_insecure_http=settings.allow_insecure_http,
    )


def select_forms(settings: Settings, slugs: list[str] | None) -> list[FormConfig]:
    forms = load_form_configs(settings.forms_dir, slugs or None)
    if not forms:
        raise ConfigError(
            f"no forms configured in {settings.forms_dir}: run `kobo-etl forms` to list the server's forms, "
            "then `kobo-etl add-form <asset_uid>`"
        )
    return forms


def run_sync(
    settings: Settings,
    slugs: list[str] | None = None,
    *,
    full: bool = False,
    client: KoboClient | None = None,
    wait_s: float = 0,
    outputs: bool = True,
    progress: bool = True,
    alerts: bool = True,
    checks: bool = True,
) -> RunResult:
    """Sync the given forms (all configured ones by default), then publish and report.

    An error of one form (expected, or a bug) is recorded and the other forms still sync. A red run sends
    the configured alerts (pipelines/alerts.py) unless `alerts=False`; so does a run that cannot start
    because the warehouse is locked or the token/key is missing. `progress` shows pages, rate and ETA.
    `checks=False` skips the GX/HFC checks (tests and quick resyncs).
    """
    forms: list[FormConfig] = []
    try:
        # a broken form file stops every scheduled run: it must reach the log and the alert like the rest
        forms = select_forms(settings, slugs)
        settings.require_key()  # stop before fetching anything when the key is missing
        client = client or make_client(settings)
        con = connect(settings.warehouse_path, wait_s=wait_s, memory_limit=settings.duckdb_memory_limit)
    except EtlError as exc:
        log.error("the run could not start: %s", exc, extra=FILE_ONLY)  # the CLI prints it
        if alerts:
            alert_exception(settings, exc, [f.slug for f in forms] or list(slugs or []))
        raise
    result = RunResult()
    with con:
        for form in forms:
            bar = SyncProgress(form.slug) if progress else None
            try:
                summary = sync_form(settings, form, con, client, full=full, checks=checks, progress=bar)
                result.summaries.append(summary)
                for line in summary.lines():  # the outcome, for the log file (the CLI prints it)
                    log.info("%s", line, extra=FILE_ONLY)
            except EtlError as exc:
                log.error("%s: %s", form.slug, exc)
                result.errors.append(f"{form.slug}: {exc}")
                result.failures[form.slug] = str(exc)
                result.error_types[form.slug] = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 — a bug: this form fails, the others still sync
                message = unexpected_error_text(exc)
                # the frames say where; the message is left out, as it may quote a submission's value
                log.error("%s: %s; the other forms still sync. Traceback (most recent call last):\n%s",
                          form.slug, message, "".join(traceback.format_tb(exc.__traceback__)).rstrip())
                result.errors.append(f"{form.slug}: {message}")
                result.failures[form.slug] = message
                result.error_types[form.slug] = type(exc).__name__
            finally:
                if bar is not None:
                    bar.close()
        synced = [f for f in forms if any(s.form == f.slug for s in result.summaries)]
        if outputs and synced:
            by_slug = {s.form: s for s in result.summaries}
            result.errors += publish_outputs(
                con,
                settings,
                synced,
                hfc={k: s.hfc for k, s in by_slug.items() if s.hfc is not None},
                schemas={k: s.schema for k, s in by_slug.items() if s.schema is not None},
            )
        if alerts:
            alert_run(settings, result, con)
    return result


def data_paths(settings: Settings) -> dict[str, Path]:
    """Where outputs land, for summaries and docs."""
    d = settings.data_dir
    return {
        "warehouse": settings.warehouse_path,
        "exports": d / "exports",
        "reports": d / "reports",
        "logs": d / "logs",
    }
