"""Valid JSON that the fast parsers refuse (an unpaired surrogate escape, an integer beyond 64 bits) does not
block its page: the page is repaired once, each repair is logged with the form, `_id` and field, and the
submission loads with the rest."""

from __future__ import annotations

import logging

import duckdb
from ops_helpers import demo_settings

from connectors.demo_server import DemoKoboServer
from pipelines.run import run_sync


def test_a_page_with_an_unpaired_surrogate_and_a_huge_integer_loads(tmp_path, caplog):
    with DemoKoboServer(households=30, seed=7, include_fixtures=False) as srv:
        uid = srv.household_uid
        ids = srv.add_submissions(uid, 3)
        srv.edit_submission(uid, ids[0], {"location/site": "saku\ud800camp", "household/hh_size": 10**30})
        srv.edit_submission(uid, ids[1], {"members": [{"members/member_sex": "female\udc00",
                                                       "members/member_age": "30"}]})
        settings = demo_settings(srv, tmp_path)
        with caplog.at_level(logging.WARNING, logger="kobo_etl"):
            result = run_sync(settings, progress=False, checks=False, outputs=False, alerts=False)
    summary = result.summaries[0]
    assert summary.status == "success" and summary.warehouse_count == 30 + 3

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        site, size = con.execute(
            "SELECT site, hh_size FROM household_survey.submissions WHERE _id = ?", [ids[0]]
        ).fetchone()
        members = con.execute(
            "SELECT member_sex, member_age FROM household_survey.members WHERE _submission_id = ?", [ids[1]]
        ).fetchall()
        quarantined = con.execute(
            "SELECT submission_id, column_name, reason, raw_value FROM ops.quarantine "
            "WHERE submission_id = ?",
            [ids[0]],
        ).fetchall()
    assert (site, size) == ("saku\ufffdcamp", None)
    assert members == [("female\ufffd", 30)]
    assert [(q[0], q[1], q[3]) for q in quarantined] == [(ids[0], "hh_size", str(10**30))]
    assert quarantined[0][2].startswith("integer out of range")
    repairs = [r.getMessage() for r in caplog.records if "repaired" in r.getMessage() or "stored with" in
               r.getMessage() or "beyond 64 bits" in r.getMessage()]
    assert any(f"submission _id {ids[0]}, field location/site: a text with an unpaired surrogate" in m
               for m in repairs), repairs
    assert any(f"submission _id {ids[0]}, field household/hh_size: an integer beyond 64 bits" in m
               for m in repairs), repairs
    assert any(f"submission _id {ids[1]}, field members/member_sex" in m for m in repairs), repairs
