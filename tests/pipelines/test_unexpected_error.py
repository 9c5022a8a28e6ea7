"""A bug in one form's sync fails that form only: the other forms still sync, the run is red, and what is
recorded, logged and alerted names the error's class and where it happened, never its message (which may
quote a submission's value)."""

from __future__ import annotations

import logging

import duckdb
from ops_helpers import demo_settings

import pipelines.sync
from connectors.demo_server import DemoKoboServer
from pipelines.logs import setup_logging
from pipelines.run import run_sync

MARK = "Zawadi Chebet 0799123456"


def test_a_bug_in_one_form_fails_that_form_and_the_others_sync(tmp_path, monkeypatch):
    real_check_form = pipelines.sync.check_form

    def buggy(con, form, *args, **kwargs):  # the fault: a bug whose message quotes a value
        if form.slug == "household_survey":
            raise ValueError(f"invalid literal for int(): {MARK!r}")
        return real_check_form(con, form, *args, **kwargs)

    monkeypatch.setattr(pipelines.sync, "check_form", buggy)
    with DemoKoboServer(households=40, seed=7, include_fixtures=False) as srv:
        settings = demo_settings(srv, tmp_path)
        original = settings.forms_dir / "household_survey.yaml"
        copy = original.read_text(encoding="utf-8").replace("slug: household_survey",
                                                            "slug: z_household_copy")
        (settings.forms_dir / "z_household_copy.yaml").write_text(copy, encoding="utf-8")
        logger = logging.getLogger("kobo_etl")
        saved = logger.handlers[:], logger.propagate, logger.level
        setup_logging(settings, verbose=False)  # the CLI's log file
        try:
            result = run_sync(settings, progress=False, alerts=False)
        finally:
            for handler in logger.handlers:
                handler.close()
            logger.handlers[:], logger.propagate = saved[0], saved[1]
            logger.setLevel(saved[2])

    assert [s.form for s in result.summaries] == ["z_household_copy"]
    assert result.summaries[0].warehouse_count == 40
    assert result.red and list(result.failures) == ["household_survey"]
    assert result.failures["household_survey"].startswith("unexpected error ValueError;")
    assert result.error_types == {"household_survey": "ValueError"}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        errors = dict(con.execute("SELECT form, error FROM ops.sync_runs").fetchall())
    assert errors["household_survey"].startswith("unexpected error ValueError;")
    log_text = "".join(p.read_text(encoding="utf-8") for p in (settings.data_dir / "logs").glob("*.log*"))
    assert "household_survey: unexpected error ValueError" in log_text
    assert "in buggy" in log_text  # where it happened
    leaked = [p for p in settings.data_dir.rglob("*") if p.is_file() and MARK.encode() in p.read_bytes()]
    assert leaked == []
