"""Values the privacy policy cannot transform are quarantined, never dropped in silence, and never stored
raw; a repeat sent in the wrong shape keeps what can be kept."""

from __future__ import annotations

import duckdb
from ops_helpers import demo_settings, write_household_form

from connectors.client import KoboClient
from connectors.demo_server import DemoKoboServer
from expectations import write_report
from pipelines.run import run_sync, select_forms

MARK = "ZZPII-7731"


def test_untransformable_values_are_quarantined_without_their_value(tmp_path):
    with DemoKoboServer(households=20, seed=7, include_fixtures=False) as srv:
        uid = srv.household_uid
        ids = srv.add_submissions(uid, 6)
        edits = {
            ids[0]: {"household/head_age": f"34,5 {MARK}"},  # bands need a number
            ids[1]: {"household/income": f"1234,5 {MARK}"},  # top-coding needs a number
            ids[2]: {"location/gps": f"near the big tree {MARK}"},  # rounding needs a point
            ids[3]: {"household/last_distribution": f"yesterday {MARK}"},  # to month needs a date
            ids[4]: {"respondent/phone": [f"0712 {MARK}", "0722"]},  # pseudonymise needs one value
            ids[5]: {"members": {"members/member_sex": "female", "members/member_age": "30",
                                 "members/member_name": MARK}},  # one instance, not a list of them
        }
        for _id, change in edits.items():
            srv.edit_submission(uid, _id, change)
        settings = demo_settings(srv, tmp_path)
        result = run_sync(settings, progress=False, checks=False, outputs=False, alerts=False)
        summary = result.summaries[0]
        assert summary.status == "success" and summary.warehouse_count == 20 + 6

        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            rows = con.execute(
                "SELECT submission_id, table_name, column_name, reason, raw_value FROM ops.quarantine "
                "WHERE reason LIKE '%privacy policy%' ORDER BY submission_id"
            ).fetchall()
            members = con.execute(
                "SELECT member_sex, member_age FROM household_survey.members WHERE _submission_id = ?",
                [ids[5]],
            ).fetchall()
            stored = con.execute(
                "SELECT head_age, income, gps, last_distribution, phone FROM household_survey.submissions "
                "WHERE _id IN (SELECT unnest(?)) ORDER BY _id", [ids[:5]]
            ).fetchall()
    rows = [r for r in rows if r[0] in edits]  # the demo's own planted problems are there too
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (ids[0], "submissions", "head_age"), (ids[1], "submissions", "income"),
        (ids[2], "submissions", "gps"), (ids[3], "submissions", "last_distribution"),
        (ids[4], "submissions", "phone"),
    ]
    assert all(r[3].endswith("; not stored (privacy policy)") and r[4] is None for r in rows)
    assert rows[0][3].startswith("not a number to put in a band")
    assert [stored[i][i] for i in range(5)] == [None] * 5
    assert members == [("female", 30)]  # the single instance is kept, its name dropped by the policy

    # the MEAL lead's report lists them: where, why, how many, which submissions; never a value
    with duckdb.connect(str(settings.warehouse_path)) as con:
        write_report(con, settings.data_dir / "reports", select_forms(settings, None))
    html = (settings.data_dir / "reports" / "household_survey.html").read_text(encoding="utf-8")
    section = html.split("Values not stored as typed (quarantine)</h2>", 1)[1].split("<h2>", 1)[0]
    assert "not a number to put in a band; not stored (privacy policy)" in section
    assert "head_age" in section and str(ids[0]) in section and "last_distribution" in section
    leaked = [p for p in settings.data_dir.rglob("*") if p.is_file() and MARK.encode() in p.read_bytes()]
    assert leaked == []


def test_metadata_the_policy_drops_has_no_column_and_the_sync_runs(tmp_path):
    """`_submitted_by: drop` (an enumerator's username) and `_validation_status.by_whom: drop` used to stop
    every page with a KeyError: their system columns were filled whatever the stored schema said."""
    with DemoKoboServer(households=30, seed=7, include_fixtures=False) as srv:
        write_household_form(srv, tmp_path / "forms")
        path = tmp_path / "forms" / "household_survey.yaml"
        text = path.read_text(encoding="utf-8")
        assert "\nquality:" in text
        path.write_text(text.replace("\nquality:", "\n  metadata:\n    _submitted_by: drop\n"
                                     "    _validation_status.by_whom: drop\nquality:", 1), encoding="utf-8")
        settings = demo_settings(srv, tmp_path)
        result = run_sync(settings, progress=False, checks=True, outputs=False, alerts=False)
        summary = result.summaries[0]
        client = KoboClient(srv.url, srv.token, timeout=10)
        records = [r for p in client.iter_submission_pages(srv.household_uid) for r in p.results]
        usernames = {r["_submitted_by"] for r in records}
        by_whom = {r["_validation_status"].get("by_whom") for r in records} - {None}
    # "warning": the checks ran and found the demo's planted problems
    assert summary.status == "warning" and summary.error is None and summary.warehouse_count == 30
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'household_survey' "
            "AND table_name = 'submissions'").fetchall()}
        approved = con.execute("SELECT count(*) FROM household_survey.submissions "
                               "WHERE _validation_status_label IS NOT NULL").fetchone()
    assert {"_submitted_by", "_validation_status_by"} & columns == set()
    assert {"_validation_status_uid", "_validation_status_label", "_uuid"} <= columns
    assert approved is not None and approved[0] > 0
    stored = settings.warehouse_path.read_bytes()
    assert len(usernames) > 1 and by_whom and [u for u in usernames | by_whom if u.encode() in stored] == []
