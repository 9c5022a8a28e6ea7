"""Checks after a sync see only what the sync loaded, and are skipped when nothing changed."""

from __future__ import annotations

from pathlib import Path

from sync_helpers import SLUG, fast_client_for, query, sync_settings

from config import load_form_configs
from connectors.demo_server import DemoKoboServer
from pipelines.sync import SyncSummary, sync_form
from warehouse import connect


def _sync_with_checks(settings) -> SyncSummary:
    (form,) = load_form_configs(settings.forms_dir, [SLUG])
    con = connect(settings.warehouse_path)
    try:
        summary = sync_form(settings, form, con, fast_client_for(settings), checks=True)
        # the loaded ids lived in a temp table for the sync only
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)
        return summary
    finally:
        con.close()


def _dq_runs(path: Path) -> list[tuple]:
    return query(path, "SELECT rows_checked, errors_failed FROM ops.dq_runs WHERE form = ? ORDER BY started",
                 [SLUG])


def test_nothing_changed_skips_checks_and_keeps_their_results(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    server = fresh_server
    settings = sync_settings(server, tmp_path, page_size=40)
    wh = settings.warehouse_path

    first = _sync_with_checks(settings)
    assert first.inserted == 120
    assert _dq_runs(wh) == [(120, first.checks_failed)]
    assert first.hfc is not None

    second = _sync_with_checks(settings)
    assert (second.inserted, second.updated, second.deleted) == (0, 0, 0)
    assert _dq_runs(wh) == [(120, first.checks_failed)]  # no new check run
    assert second.checks_failed == first.checks_failed  # the last results still stand
    assert second.hfc is None

    edited = query(wh, f'SELECT _id FROM "{SLUG}".submissions ORDER BY _id LIMIT 1 OFFSET 5')[0][0]
    server.edit_submission(server.household_uid, edited, {"household/hh_size": "3"})
    third = _sync_with_checks(settings)
    assert (third.inserted, third.updated) == (0, 1)
    runs = _dq_runs(wh)
    assert len(runs) == 2 and runs[1][0] == 1  # only the re-fetched submission was validated by GX
    gx_checked = query(
        wh, "SELECT count(*) FROM ops.dq_results r JOIN ops.dq_runs u USING (run_id, form) "
            "WHERE u.rows_checked = 1 AND r.kind = 'gx'",
    )[0][0]
    assert gx_checked > 0
