"""The form's rules run on the submissions a sync loads; a failure found earlier on a submission that is not
loaded again still stands (its `_dq_status` too) until the submission is edited or deleted."""

from __future__ import annotations

from ops_helpers import demo_settings
from sync_helpers import query, server_ids

from connectors.demo_server import DemoKoboServer
from pipelines.run import run_sync


def _sync(settings):
    return run_sync(settings, progress=False, alerts=False, outputs=False).summaries[0]


def _age_check(settings) -> tuple:
    sql = ("SELECT r.success, unexpected_count FROM ops.dq_results r JOIN ops.dq_runs USING (run_id, form) "
           "WHERE r.\"check\" = 'between:resp_age' ORDER BY started DESC LIMIT 1")
    return query(settings.warehouse_path, sql)[0]


def _status(settings, _id: int) -> str:
    return query(settings.warehouse_path,
                 "SELECT _dq_status FROM household_survey.submissions WHERE _id = ?", [_id])[0][0]


def _out_of_range(settings) -> int:
    """Stored submissions whose respondent's age is outside the form's 18-120, counted by hand."""
    return query(settings.warehouse_path, "SELECT count(*) FROM household_survey.submissions "
                                          "WHERE resp_age NOT BETWEEN 18 AND 120")[0][0]


def test_earlier_failures_stand_until_their_submission_changes(tmp_path):
    with DemoKoboServer(households=60, seed=7, include_fixtures=False) as srv:
        uid = srv.household_uid
        settings = demo_settings(srv, tmp_path)
        ids = server_ids(srv)
        for _id in ids[:2]:
            srv.edit_submission(uid, _id, {"respondent/resp_age": "150"})  # the form says 18-120
        _sync(settings)
        first = _age_check(settings), _out_of_range(settings)

        srv.add_submissions(uid, 2)  # nothing else changes: the two failures stand
        _sync(settings)
        after_new = _age_check(settings), _out_of_range(settings), _status(settings, ids[0]), _status(
            settings, ids[1])

        srv.edit_submission(uid, ids[0], {"respondent/resp_age": "40"})  # corrected in KoBo
        srv.delete_submission(uid, ids[1])
        _sync(settings)
        after_fix = _age_check(settings), _out_of_range(settings), _status(settings, ids[0])

    (ok, failing), by_hand = first
    assert not ok and failing == by_hand >= 2
    (ok, failing), by_hand, *statuses = after_new
    assert not ok and failing == by_hand >= 2 and statuses == ["error", "error"]
    (ok, failing), by_hand, status = after_fix
    assert failing == by_hand == after_new[1] - 2 and ok == (failing == 0) and status != "error"
