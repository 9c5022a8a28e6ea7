"""Alerts on a forced failure and on a red run: webhook and SMTP on loopback, no personal data, no secrets."""

from __future__ import annotations

import email
import json
import logging
from pathlib import Path

import pytest
from ops_helpers import demo_settings, raw_personal_values, smtp_sink, webhook_receiver

from config import DEMO_PSEUDONYMISATION_KEY
from config.errors import FormConfigError
from connectors.demo_server import DemoKoboServer
from pipelines.alerts import Alert, FormProblem, build_alert, notify
from pipelines.run import run_sync


@pytest.fixture(scope="module")
def server():
    with DemoKoboServer(households=60, seed=7, include_fixtures=False) as srv:
        yield srv


def _assert_clean(blob: bytes, pii: set[str], secrets: list[str]) -> None:
    text = blob.decode("utf-8", errors="replace")
    leaked = sorted(v for v in pii if v in text)
    assert leaked == [], f"personal data in the alert: {len(leaked)} value(s)"
    for secret in secrets:
        assert secret not in text


def test_wrong_token_alerts_by_webhook_and_email(server, tmp_path):
    pii = raw_personal_values(server)
    assert len(pii) > 50  # the search below means something
    with webhook_receiver() as (url, bodies), smtp_sink() as (host, port, messages):
        settings = demo_settings(
            server, tmp_path, kobo_token="wrong-token-xyz", alert_webhook_url=url, smtp_host=host,
            smtp_port=port, smtp_starttls=False, smtp_from="etl@example.org",
            smtp_to="im@example.org, duty@example.org",
        )
        result = run_sync(settings, progress=False)
    assert result.red and result.error_types == {"household_survey": "TokenRejected"}
    assert len(bodies) == 1 and len(messages) == 1

    payload = json.loads(bodies[0])
    assert list(payload) == ["text"]  # Slack/Teams incoming-webhook shape
    text = payload["text"]
    assert "household_survey" in text
    assert "TokenRejected" in text and "check KOBO_TOKEN" in text
    _assert_clean(bodies[0], pii, ["wrong-token-xyz", url, "SECRETPART", DEMO_PSEUDONYMISATION_KEY])

    mail = email.message_from_bytes(messages[0])
    assert "household_survey" in mail["Subject"]
    assert mail["To"] == "im@example.org, duty@example.org"
    assert "check KOBO_TOKEN" in mail.get_payload(decode=True).decode()
    _assert_clean(messages[0], pii, ["wrong-token-xyz", url, DEMO_PSEUDONYMISATION_KEY])


def test_red_run_names_failing_checks_and_report(server, tmp_path):
    """The demo survey has planted errors (duplicates, ages out of range): the run is red."""
    pii = raw_personal_values(server)
    with webhook_receiver() as (url, bodies):
        settings = demo_settings(server, tmp_path, alert_webhook_url=url)
        result = run_sync(settings, progress=False, outputs=False)
    assert not result.failed and result.red
    failed = result.summaries[0].checks_failed
    assert failed > 0 and len(bodies) == 1
    text = json.loads(bodies[0])["text"]
    assert f"{failed} error-severity check(s) failed" in text
    assert "duplicate:_uuid" in text  # a check name from ops.dq_results
    assert "data/reports/household_survey.html" in text
    _assert_clean(bodies[0], pii, [url])

    # the next run loads nothing, so it checks nothing: the failed checks still stand, and are named
    with webhook_receiver() as (url, bodies):
        again = demo_settings(server, tmp_path, alert_webhook_url=url)
        result = run_sync(again, progress=False, outputs=False)
    assert result.summaries[0].inserted == 0 and result.summaries[0].checks_failed == failed
    text = json.loads(bodies[0])["text"]
    assert f"{failed} error-severity check(s) failed (" in text and "duplicate:_uuid" in text


def test_no_alert_when_unconfigured(server, tmp_path):
    settings = demo_settings(server, tmp_path)  # no channel configured
    result = run_sync(settings, progress=False, outputs=False)
    assert result.red  # red, but nobody to tell: nothing raised, nothing sent
    from pipelines.alerts import alert_run

    assert alert_run(settings, result) == {}


def test_delivery_failure_is_logged_not_raised(server, tmp_path, caplog):
    # a closed loopback port: connection refused on both channels
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}/hooks/SECRETPART"
    settings = demo_settings(server, tmp_path, alert_webhook_url=url, smtp_host="127.0.0.1", smtp_port=port,
                             smtp_to="im@example.org", smtp_starttls=False)
    alert = build_alert([FormProblem("household_survey", "TokenRejected", "rejected")])
    logger = logging.getLogger("kobo_etl")
    logger.propagate = True  # the CLI turns propagation off; caplog listens on the root logger
    with caplog.at_level(logging.ERROR, logger="kobo_etl.alerts"):
        sent = notify(settings, alert)
    assert sent == {"webhook": False, "email": False}
    assert "not delivered" in caplog.text
    assert "SECRETPART" not in caplog.text


def test_message_advice_by_error_class():
    alert = build_alert([
        FormProblem("a_form", "WarehouseLocked", "the warehouse is in use"),
        FormProblem("b_form", checks_failed=2, check_names=["between:age", "duplicate:_uuid"]),
    ])
    assert isinstance(alert, Alert) and alert.forms == ["a_form", "b_form"]
    assert "close it or wait" in alert.text
    assert "2 error-severity check(s) failed (between:age, duplicate:_uuid)" in alert.text
    assert "data/reports/b_form.html" in alert.text

    # an indicator error is not a form's: its advice is the indicators file, not a report page
    alert = build_alert([FormProblem("indicators", error="indicator 'FCS_MEAN' failed: unknown column")])
    assert "config/indicators.yaml" in alert.text and "data/reports/indicators.html" not in alert.text


def test_a_broken_form_file_alerts_and_the_log_has_each_outcome(server, tmp_path, caplog):
    """A typo in one form file stops every scheduled run: it must reach the alert and the log file. The
    outcome of a run that works is in the log too (under cron the log is the only record)."""
    with webhook_receiver() as (url, bodies):
        settings = demo_settings(server, tmp_path, alert_webhook_url=url)
        with caplog.at_level(logging.INFO, logger="kobo_etl"):
            result = run_sync(settings, progress=False, checks=False, outputs=False)
        (settings.forms_dir / "other_form.yaml").write_text(
            "slug: other_form\nasset_uid: aOther\nsycn: {page_size: 10}\n", encoding="utf-8"
        )
        with caplog.at_level(logging.INFO, logger="kobo_etl"), pytest.raises(FormConfigError):
            run_sync(settings, progress=False, checks=False, outputs=False)
    assert not result.red
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("household_survey: success in ") for m in logged)
    assert any(m.startswith("  server has 60 submissions, warehouse has 60") for m in logged)
    assert any(m.startswith("the run could not start: ") and "sycn" in m for m in logged)
    assert len(bodies) == 1
    text = json.loads(bodies[0])["text"]
    assert "FormConfigError" in text and "other_form.yaml" in text


def test_a_broken_file_of_another_form_does_not_stop_this_forms_run(server, tmp_path):
    """`kobo-etl sync household_survey` (and its scheduled run) reads only its own file: a typo in another
    form's file stops neither its sync nor its indicators and exports."""
    settings = demo_settings(server, tmp_path, indicators_file=Path("config/indicators.yaml").resolve())
    (settings.forms_dir / "other_form.yaml").write_text(
        "slug: other_form\nasset_uid: aOther\nsycn: {page_size: 10}\n", encoding="utf-8"
    )
    result = run_sync(settings, ["household_survey"], progress=False, checks=False, alerts=False)
    assert not result.failed and [s.form for s in result.summaries] == ["household_survey"]
    exports = settings.data_dir / "exports" / "household_survey"
    assert (exports / "indicators" / "indicator_values.parquet").is_file()
