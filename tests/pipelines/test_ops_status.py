"""`kobo-etl status`, logging to data/logs/ without the token, progress lines, report/publish/dictionary."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from ops_helpers import demo_env, demo_settings

from connectors import SubmissionPage
from connectors.demo_server import DemoKoboServer
from pipelines import cli
from pipelines.progress import CLEAR_LINE, SyncProgress
from pipelines.run import run_sync, select_forms
from pipelines.status import collect_status, render_text

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-SECRET-7f3a9c"
HOUSEHOLDS = 40


@pytest.fixture(scope="module")
def server():
    with DemoKoboServer(households=HOUSEHOLDS, seed=7, token=TOKEN, include_fixtures=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def synced(server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status")
    settings = demo_settings(server, tmp)
    result = run_sync(settings, progress=False)
    return settings, result


@pytest.fixture
def restore_logging():
    root = logging.getLogger("kobo_etl")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    for h in root.handlers:
        h.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = propagate


def test_status_after_a_sync(synced):
    settings, result = synced
    summary = result.summaries[0]
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    pending = con.execute(
        "SELECT count(*) FROM ops.pending_privacy_decisions WHERE form = 'household_survey'"
    )
    pending = pending.fetchone()[0]
    dq = con.execute("SELECT errors_failed, warnings_failed FROM ops.dq_runs WHERE form = 'household_survey'")
    errors, warnings = dq.fetchone()
    con.close()

    report = collect_status(settings, select_forms(settings, None))
    assert report.source == settings.warehouse_path and report.note is None
    (st,) = report.forms
    assert st.form == "household_survey"
    assert st.rows == HOUSEHOLDS == st.server_count == st.warehouse_count
    assert st.last_result == summary.status
    assert st.red == (summary.checks_failed > 0) and st.red is True  # planted errors in the demo data
    assert (st.checks_errors, st.checks_warnings) == (errors, warnings)
    assert "duplicate:_uuid" in st.failing_checks
    assert st.pending_privacy == pending
    assert st.schedule == "0 */6 * * * Africa/Nairobi"
    assert 0 <= st.since_success_s < 3600

    text = render_text(report)
    assert "household_survey" in text and "RED" in text and f"{HOUSEHOLDS} / {HOUSEHOLDS}" in text
    # where the files really are (the test's data folder, not the default data/)
    assert f"see {settings.data_dir / 'reports' / 'household_survey.html'}" in text


def test_status_cli_json_and_exit_code(server, synced, monkeypatch, capsys, restore_logging):
    settings, _ = synced
    env = demo_env(server, settings.data_dir.parent)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = cli.main(["status", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_RED and out["red"] is True
    assert [f["form"] for f in out["forms"]] == ["household_survey"]
    assert out["forms"][0]["rows"] == HOUSEHOLDS and out["forms"][0]["live_server_count"] is None


def test_status_live_asks_the_server(server, synced):
    settings, _ = synced
    server.add_submissions(server.household_uid, 3)
    report = collect_status(settings, select_forms(settings, None), live=True)
    (st,) = report.forms
    assert (st.live_server_count, st.server_count, st.rows) == (HOUSEHOLDS + 3, HOUSEHOLDS, HOUSEHOLDS)
    assert f"the server has {HOUSEHOLDS + 3} submissions, the warehouse {HOUSEHOLDS}" in render_text(report)


def test_status_falls_back_to_the_snapshot_while_a_writer_holds_the_file(synced):
    settings, _ = synced
    snapshot = settings.data_dir / "exports" / "warehouse.duckdb"
    assert snapshot.exists()  # published by the sync
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()",
         str(settings.warehouse_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        report = collect_status(settings, select_forms(settings, None))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert report.source == snapshot
    assert "in use by another program" in report.note and str(snapshot) in report.note
    assert report.forms[0].rows == HOUSEHOLDS
    assert render_text(report).startswith("note: the warehouse is in use")


def test_status_shows_a_failed_run_and_a_never_synced_warehouse(server, tmp_path):
    settings = demo_settings(server, tmp_path)
    before = collect_status(settings, select_forms(settings, None))
    assert before.source is None and "no warehouse yet" in before.note
    assert before.forms[0].last_result == "never run"

    run_sync(demo_settings(server, tmp_path, kobo_token="wrong"), progress=False)
    (st,) = collect_status(settings, select_forms(settings, None)).forms
    assert st.last_result == "failed" and st.red and st.since_success_s is None
    assert "check KOBO_TOKEN" in st.last_error
    assert "FAILED" in render_text(collect_status(settings, select_forms(settings, None)))


def test_sync_writes_a_log_file_without_the_token(server, tmp_path, monkeypatch, capsys, restore_logging):
    for k, v in demo_env(server, tmp_path).items():
        monkeypatch.setenv(k, v)
    code = cli.main(["--verbose", "sync"])
    assert code in (cli.EXIT_OK, cli.EXIT_RED)
    log_file = tmp_path / "data" / "logs" / "kobo-etl.log"
    text = log_file.read_text(encoding="utf-8")
    assert "kobo_etl.http" in text and "GET " in text  # --verbose: HTTP detail
    assert "household_survey: " in text and "submissions" in text  # one line per step, counts
    assert TOKEN not in text
    assert "sort=***" in text and '{"_id"' not in text  # query strings redacted
    assert TOKEN not in capsys.readouterr().err


def _page(n: int, count: int, last_id: int) -> SubmissionPage:
    return SubmissionPage.of([{"_id": i} for i in range(n)], count=count, last_id=last_id, nbytes=0)


def test_progress_on_a_terminal_redraws_one_line_with_rate_and_eta():
    now = [100.0]
    stream = io.StringIO()
    bar = SyncProgress("hh", stream=stream, tty=True, clock=lambda: now[0])
    now[0] += 10
    bar(_page(1000, 3000, 1000))  # 1000 in 10 s, 2000 left → ETA 20 s
    assert bar.line() == "hh: 1000/3000 submissions, 1 page, 100/s, ETA 20s"
    now[0] += 10
    bar(_page(1000, 2000, 2000))
    now[0] += 10
    bar(_page(1000, 1000, 3000))
    bar.close()
    out = stream.getvalue()
    assert out.count(CLEAR_LINE) == 3 and out.endswith("done\n")
    assert "hh: 3000/3000 submissions, 3 pages, 100/s, done" in out


def test_progress_off_a_terminal_logs_plain_lines():
    stream = io.StringIO()
    bar = SyncProgress("hh", stream=stream, tty=False, clock=iter([0.0, 5.0]).__next__)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("kobo_etl.progress")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel (not `.level =`) also clears logging's isEnabledFor cache
    # a logging setup run by earlier tests in this process (dictConfig) may have disabled this logger
    disabled, logger.disabled = logger.disabled, False
    try:
        bar(_page(500, 1500, 500))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled
    bar.close()
    assert stream.getvalue() == ""  # nothing drawn
    assert [r.getMessage() for r in records] == ["hh: 500/1500 submissions, 1 page, 100/s, ETA 10s"]


def test_report_publish_and_dictionary_commands(
    server, synced, monkeypatch, capsys, restore_logging, tmp_path
):
    settings, _ = synced
    for k, v in demo_env(server, settings.data_dir.parent).items():
        monkeypatch.setenv(k, v)
    report = settings.data_dir / "reports" / "household_survey.html"
    report.unlink()
    assert cli.main(["report"]) == cli.EXIT_OK and report.exists()
    assert cli.main(["publish"]) == cli.EXIT_OK
    assert (settings.data_dir / "exports" / "household_survey" / "submissions.parquet").exists()
    # an indicators file that was set but is missing is said, not skipped in silence
    missing = settings.data_dir.parent / "no-indicators.yaml"
    log_text = (settings.data_dir / "logs" / "kobo-etl.log").read_text(encoding="utf-8")
    assert f"WARNING kobo_etl.checks no indicators file at {missing} (KOBO_ETL_INDICATORS_FILE)" in log_text

    assert cli.main(["dictionary", "household_survey", "--out", str(tmp_path / "cb")]) == cli.EXIT_OK
    rows = list(csv.DictReader((tmp_path / "cb" / "codebook.csv").open(encoding="utf-8")))
    by_col = {(r["table"], r["column"]): r for r in rows}
    age = by_col[("submissions", "resp_age")]
    assert age["data_type"] in ("BIGINT", "INTEGER", "DOUBLE") and age["label"] == "Age of respondent (years)"
    assert {r["table"] for r in rows} >= {"submissions", "members"}
    assert ("submissions", "resp_name") not in by_col  # dropped by the privacy policy
    assert any("yes=Yes" in r["choices"] for r in rows)
    md = (tmp_path / "cb" / "codebook.md").read_text(encoding="utf-8")
    assert "## members" in md and "| `resp_age` |" in md


def test_a_broken_indicators_file_does_not_stop_exports_or_report(
    server, synced, monkeypatch, capsys, restore_logging, tmp_path
):
    settings, _ = synced
    for k, v in demo_env(server, settings.data_dir.parent).items():
        monkeypatch.setenv(k, v)
    broken = tmp_path / "indicators.yaml"
    text = (REPO / "config" / "indicators.yaml").read_text(encoding="utf-8")
    assert "unit: mean" in text
    broken.write_text(text.replace("unit: mean", "unit: average", 1), encoding="utf-8")
    monkeypatch.setenv("KOBO_ETL_INDICATORS_FILE", str(broken))
    report = settings.data_dir / "reports" / "household_survey.html"
    export = settings.data_dir / "exports" / "household_survey" / "submissions.parquet"
    report.unlink()
    shutil.rmtree(settings.data_dir / "exports")

    assert cli.main(["publish"]) == cli.EXIT_RED
    assert report.exists() and export.exists()
    err = capsys.readouterr().err
    assert "FAILED no indicators computed:" in err and "unit" in err and str(broken) in err


def test_after_the_demo_read_commands_use_its_forms_and_the_codebook_survives_a_publish(
    server, synced, monkeypatch, capsys, restore_logging, tmp_path
):
    """`make demo` keeps its form configs in data/demo/forms; `status`, `dictionary` and `publish` run from
    the repository (default forms folder empty) must work on its warehouse, and the codebook must not be
    written where the next publish replaces the folder."""
    settings, _ = synced
    env = demo_env(server, settings.data_dir.parent)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("KOBO_ETL_FORMS_DIR")
    demo_forms = settings.data_dir / "demo" / "forms"
    demo_forms.mkdir(parents=True)
    shutil.copy(settings.forms_dir / "household_survey.yaml", demo_forms)
    monkeypatch.chdir(tmp_path)  # no config/forms here
    try:
        assert cli.main(["status"]) == cli.EXIT_RED  # red: the demo's planted errors
        out, err = capsys.readouterr()
        assert "household_survey" in out and f"using the demo's, in {demo_forms}" in err
        assert cli.main(["dictionary", "household_survey"]) == cli.EXIT_OK
        codebook = settings.data_dir / "codebooks" / "household_survey" / "codebook.csv"
        assert codebook.exists()
        assert cli.main(["publish"]) == cli.EXIT_OK
        assert codebook.exists()
        # a folder chosen on purpose is never replaced by the demo's
        monkeypatch.setenv("KOBO_ETL_FORMS_DIR", str(tmp_path / "mine"))
        assert cli.main(["status"]) == cli.EXIT_USAGE
        assert "no forms configured in" in capsys.readouterr().err
    finally:
        shutil.rmtree(settings.data_dir / "demo")


def test_since_success_uses_the_given_clock(synced):
    settings, _ = synced
    later = collect_status(settings, select_forms(settings, None)).generated + timedelta(days=3)
    (st,) = collect_status(settings, select_forms(settings, None), now=later).forms
    assert st.since_success_s > 3 * 86400 - 60
    assert "3d ago" in render_text(collect_status(settings, select_forms(settings, None), now=later))


def test_privacy_todo_follows_the_policy(tmp_path):
    """A question the policy does not decide is listed as a to-do, from the first sync on; once the policy
    decides it, the next sync takes it off the list, also when no submission is new. A key only the data
    has stays listed: no form version defines it yet."""
    with DemoKoboServer(households=20, seed=7, include_fixtures=False) as srv:
        some_id = next(iter(srv.add_submissions(srv.household_uid, 1)))
        srv.edit_submission(srv.household_uid, some_id, {"surprise_field": "a value"})
        settings = demo_settings(srv, tmp_path)
        form_file = settings.forms_dir / "household_survey.yaml"
        reviewed = form_file.read_text(encoding="utf-8")
        undecided = re.sub(r"^    (needs_other|comments):.*\n", "", reviewed, flags=re.M)
        assert undecided.count("\n") == reviewed.count("\n") - 2
        form_file.write_text(undecided, encoding="utf-8")

        def todo() -> list[tuple[str, str]]:
            with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
                return con.execute(
                    "SELECT xpath, question_type FROM ops.pending_privacy_decisions "
                    "WHERE form = 'household_survey' ORDER BY xpath"
                ).fetchall()

        run_sync(settings, progress=False, checks=False, outputs=False, alerts=False)
        assert todo() == [("comments", "text"), ("needs_other", "text"), ("surprise_field", "unknown")]
        (st,) = collect_status(settings, select_forms(settings, None)).forms
        assert st.pending_privacy == 3

        form_file.write_text(reviewed, encoding="utf-8")
        result = run_sync(settings, progress=False, checks=False, outputs=False, alerts=False)
        assert result.summaries[0].inserted == 0  # nothing new: the policy alone settles the to-dos
        assert todo() == [("surprise_field", "unknown")]
        (st,) = collect_status(settings, select_forms(settings, None)).forms
        assert st.pending_privacy == 1

        # a decision taken back is listed again at once, before any new submission arrives
        form_file.write_text(re.sub(r"^    comments:.*\n", "", reviewed, flags=re.M), encoding="utf-8")
        run_sync(settings, progress=False, checks=False, outputs=False, alerts=False)
        assert todo() == [("comments", "text"), ("surprise_field", "unknown")]
