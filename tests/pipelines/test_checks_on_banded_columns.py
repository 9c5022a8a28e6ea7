"""A numeric question the privacy policy bands is stored as text (`18-59`): the form's range checks and the
numeric HFCs skip it with a note instead of failing the whole run (training exercise 3.4 bands `hh_size`).
Lifting the rule later leaves the column text (types only widen), and the checks still run."""

from __future__ import annotations

import duckdb
from ops_helpers import demo_settings

from connectors.demo_server import DemoKoboServer
from pipelines.run import run_sync

BANDS = (
    "    hh_size: {action: generalise, bands: [1, 4, 7, 10]}\n"
    "    resp_age: {action: generalise, bands: [0, 18, 60]}\n"
)


def _set_rules(settings, extra: str) -> None:
    path = settings.forms_dir / "household_survey.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(BANDS, "")
    path.write_text(text.replace("  questions:\n", "  questions:\n" + extra, 1), encoding="utf-8")


def _results(settings, check: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(
            'SELECT success, unexpected_count, description FROM ops.dq_results WHERE "check" = ? '
            "ORDER BY run_id DESC LIMIT 1", [check]
        ).fetchall()


def test_checks_skip_a_banded_column_and_the_run_goes_on(tmp_path):
    with DemoKoboServer(households=120, seed=7, include_fixtures=False) as srv:
        settings = demo_settings(srv, tmp_path)
        _set_rules(settings, BANDS)
        first = run_sync(settings, progress=False, alerts=False).summaries[0]
        html = (settings.data_dir / "reports" / "household_survey.html").read_text(encoding="utf-8")
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            types = dict(con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'household_survey' AND table_name = 'submissions' "
                "AND column_name IN ('hh_size', 'resp_age')"
            ).fetchall())
            stored = con.execute("SELECT resp_age FROM household_survey.submissions").fetchall()
            bands = {r[0] for r in stored}
        per_member = _results(settings, "duration_per_member")

        # the rules lifted: new answers are numbers again, the stored columns stay text
        _set_rules(settings, "")
        srv.add_submissions(srv.household_uid, 5)
        second = run_sync(settings, progress=False, alerts=False).summaries[0]
        html_after = (settings.data_dir / "reports" / "household_survey.html").read_text(encoding="utf-8")

    assert first.status in ("success", "warning") and first.error is None
    assert types == {"hh_size": "VARCHAR", "resp_age": "VARCHAR"}
    assert bands <= {"18-59", "60+", None} and "18-59" in bands
    assert per_member and per_member[0][1] in (0, None)
    not_run = html.split("<h2>Checks not run</h2>", 1)[1].split("</ul>", 1)[0]
    assert "per household member: hh_size: the column is stored as text" in not_run
    assert "Household size is between 1 and 30" in not_run  # the household overrides' range check
    # questions banded by the policy: their range and outlier checks are not built, and the report says so
    assert "Range and unusual values of resp_age: resp_age: the column is stored as text" in not_run
    assert "Range and unusual values of head_age" in not_run
    assert second.status in ("success", "warning") and second.error is None
    assert second.inserted == 5
    # the form says integer again, the column is text: resp_age's range and outlier checks are not run
    not_run = html_after.split("<h2>Checks not run</h2>", 1)[1].split("</ul>", 1)[0]
    assert "Age of respondent (years)" in not_run and "Unusual value of resp_age" in not_run
