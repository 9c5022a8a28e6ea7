"""Alerts when a run fails or turns red: a Slack/Teams-compatible webhook and/or an e-mail via SMTP.

The message is built from counts, check names, error classes and error messages only (error messages are
free of personal data by contract, see docs/decisions/001). It never contains a submission value, the
token, the key or the webhook URL. Delivery problems are logged and swallowed: an alert must never turn a
finished sync into a crash.
"""

from __future__ import annotations

import logging
import smtplib
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

import duckdb
import requests

from config import Settings

if TYPE_CHECKING:  # pipelines.run imports this module; avoid the cycle at import time
    from pipelines.run import RunResult

log = logging.getLogger("kobo_etl.alerts")

ALERT_TIMEOUT_S = 10.0

#: What an IM officer should do, by error class (the class name is recorded by run_sync).
ADVICE = {
    "TokenRejected": "check KOBO_TOKEN in .env (the KoBo server rejected it; tokens change when a password "
    "is reset)",
    "PermissionDenied": "ask the form owner to share the form with the token's account "
    "('View submissions')",
    "FormNotFound": "check the form's asset_uid in config/forms/ and that the form is shared with the "
    "token's account",
    "FormNotDeployed": "deploy the form in KoBo, or remove its file from config/forms/",
    "KoboUnavailable": "the KoBo server was unreachable; the next scheduled run retries and resumes where "
    "this one stopped",
    "BadPayload": "the server sent a broken page; the next run resumes from the last good _id",
    "BadServerUrl": "check KOBO_URL in .env: the KoBo server's address, e.g. https://kf.kobotoolbox.org",
    "UntrustedCertificate": "the server's TLS certificate could not be verified: have it fixed, or set "
    "REQUESTS_CA_BUNDLE to your organisation's CA bundle",
    "WarehouseLocked": "another program holds the warehouse (a sync, Power BI refresh or DuckDB shell); "
    "close it or wait, then run `kobo-etl sync`",
    "PrivacyError": "a question has no privacy decision; review the form's privacy section, then sync again",
    "ConfigError": "fix the setting named in the message (.env or config/forms/)",
    "FormConfigError": "fix the form's YAML file named in the message",
}
DEFAULT_ADVICE = "see data/logs/kobo-etl.log for detail, then run `kobo-etl sync <form>` by hand"
#: What `RunResult.error_items` calls errors not tied to a form (the indicators), and what to do about them.
INDICATORS = "indicators"
INDICATOR_ADVICE = (
    "fix the indicator named in the message in config/indicators.yaml (or the file KOBO_ETL_INDICATORS_FILE "
    "names), then `kobo-etl publish`; the other outputs were written"
)


@dataclass
class FormProblem:
    """One form's problem in a run: counts, names and classes only."""

    form: str
    error_class: str | None = None
    error: str | None = None
    checks_failed: int = 0
    check_names: list[str] = field(default_factory=list)

    def advice(self) -> str:
        if self.error_class:
            return ADVICE.get(self.error_class, DEFAULT_ADVICE)
        if self.form == INDICATORS and not self.checks_failed:
            return INDICATOR_ADVICE
        return f"open data/reports/{self.form}.html and look at the failing checks"


@dataclass
class Alert:
    """A rendered alert: a subject line and a plain-text body."""

    subject: str
    text: str
    forms: list[str]


def failing_check_names(con: duckdb.DuckDBPyConnection, form: str, limit: int = 10) -> list[str]:
    """Names of the `error` checks that failed in the form's latest checked run (from ops.dq_results): the
    run's own, or those that still stand when the run loaded nothing and so checked nothing."""
    try:
        rows = con.execute(
            """SELECT "check" FROM ops.dq_results WHERE form = ? AND NOT success AND severity = 'error'
               AND run_id = (SELECT run_id FROM ops.dq_runs WHERE form = ? ORDER BY started DESC LIMIT 1)
               ORDER BY "check" LIMIT ?""",
            [form, form, limit],
        ).fetchall()
    except duckdb.Error:  # no dq tables yet
        return []
    return [r[0] for r in rows]


def problems_of(result: RunResult, con: duckdb.DuckDBPyConnection | None = None) -> list[FormProblem]:
    """One FormProblem per form that failed or has failing error checks, in run order."""
    problems: dict[str, FormProblem] = {}
    for slug, message in result.error_items():
        p = problems.setdefault(slug, FormProblem(slug))
        p.error_class = result.error_types.get(slug, p.error_class)
        p.error = message if p.error is None else f"{p.error}; {message}"
    for s in result.summaries:
        if s.status == "failed" or s.checks_failed:
            p = problems.setdefault(s.form, FormProblem(s.form))
            if s.status == "failed" and p.error is None:
                p.error = s.error
            p.checks_failed = s.checks_failed
            if s.checks_failed and con is not None:
                p.check_names = failing_check_names(con, s.form)
    return list(problems.values())


def build_alert(problems: list[FormProblem], *, host: str | None = None) -> Alert:
    """Subject and text naming each form, what failed and what to do."""
    forms = [p.form for p in problems]
    where = f" on {host}" if host else ""
    subject = f"kobo-etl: run RED{where} — {', '.join(forms)}"
    lines = [f"kobo-etl run{where} needs attention ({len(problems)} form(s)):"]
    for p in problems:
        lines.append("")
        lines.append(f"• {p.form}")
        if p.error:
            cls = f"{p.error_class}: " if p.error_class else ""
            lines.append(f"  failed: {cls}{p.error}")
        if p.checks_failed:
            names = f" ({', '.join(p.check_names)})" if p.check_names else ""
            lines.append(f"  {p.checks_failed} error-severity check(s) failed{names}")
        lines.append(f"  what to do: {p.advice()}")
    lines.append("")
    lines.append("Status of every form: `kobo-etl status`. Report: data/reports/index.html.")
    return Alert(subject=subject, text="\n".join(lines), forms=forms)


def send_webhook(url: str, alert: Alert) -> bool:
    """POST `{"text": ...}` (Slack and Teams incoming webhooks accept it). Returns True on HTTP 2xx."""
    try:
        resp = requests.post(url, json={"text": f"*{alert.subject}*\n{alert.text}"}, timeout=ALERT_TIMEOUT_S)
    except requests.RequestException as exc:
        # the exception text can contain the URL (a secret): log the class only
        log.error("alert webhook not delivered: %s", type(exc).__name__)
        return False
    if not 200 <= resp.status_code < 300:
        log.error("alert webhook not delivered: HTTP %s", resp.status_code)
        return False
    log.info("alert sent by webhook for %s", ", ".join(alert.forms))
    return True


def send_email(settings: Settings, alert: Alert) -> bool:
    """Send the alert by SMTP to KOBO_ETL_SMTP_TO. Returns True when the server accepted it."""
    recipients = [a.strip() for a in (settings.smtp_to or "").split(",") if a.strip()]
    if not settings.smtp_host or not recipients:
        return False
    msg = EmailMessage()
    msg["Subject"] = alert.subject
    msg["From"] = settings.smtp_from or (settings.smtp_user or "kobo-etl@localhost")
    msg["To"] = ", ".join(recipients)
    msg.set_content(alert.text)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=ALERT_TIMEOUT_S) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user and settings.smtp_password is not None:
                smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        log.error("alert e-mail not delivered: %s", type(exc).__name__)
        return False
    log.info("alert e-mailed to %d recipient(s) for %s", len(recipients), ", ".join(alert.forms))
    return True


def alerts_configured(settings: Settings) -> bool:
    return settings.alert_webhook_url is not None or bool(settings.smtp_host and settings.smtp_to)


def notify(settings: Settings, alert: Alert) -> dict[str, bool]:
    """Deliver on every configured channel; returns {channel: delivered}. Never raises."""
    sent: dict[str, bool] = {}
    try:
        if settings.alert_webhook_url is not None and settings.alert_webhook_url.get_secret_value():
            sent["webhook"] = send_webhook(settings.alert_webhook_url.get_secret_value(), alert)
        if settings.smtp_host and settings.smtp_to:
            sent["email"] = send_email(settings, alert)
    except Exception as exc:  # noqa: BLE001 — an alert must never crash the run
        log.error("alert not delivered: %s", type(exc).__name__)
    return sent


def alert_run(
    settings: Settings, result: RunResult, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, bool]:
    """Notify when `result` is red; returns {channel: delivered} ({} when green or nothing configured)."""
    if not result.red or not alerts_configured(settings):
        return {}
    try:
        problems = problems_of(result, con)
        if not problems:
            return {}
        return notify(settings, build_alert(problems, host=socket.gethostname()))
    except Exception as exc:  # noqa: BLE001
        log.error("alert not built: %s", type(exc).__name__)
        return {}


def alert_exception(settings: Settings, exc: BaseException, forms: list[str]) -> dict[str, bool]:
    """Notify about a run that stopped before any form synced (e.g. the warehouse is locked)."""
    if not alerts_configured(settings):
        return {}
    from config import EtlError

    name = type(exc).__name__
    # only our own errors have messages vetted free of personal data; for anything else the class is enough
    text = str(exc) if isinstance(exc, EtlError) else "unexpected error; see data/logs/kobo-etl.log"
    problems = [FormProblem(form=f, error_class=name, error=text) for f in forms] or [
        FormProblem(form="(all forms)", error_class=name, error=text)
    ]
    return notify(settings, build_alert(problems, host=socket.gethostname()))
