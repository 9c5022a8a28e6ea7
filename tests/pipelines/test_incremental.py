"""Incremental sync against the demo server: after adds, edits, validation changes, deletions and late
arrivals the incremental warehouse equals a fresh full sync of the same server state, row by row, in every
table."""

from __future__ import annotations

from pathlib import Path

import pytest
from sync_helpers import (
    SLUG,
    assert_same_form,
    data_requests,
    dump_form,
    fast_client,
    hold_back,
    ids_of,
    query,
    server_ids,
    sync_once,
    sync_settings,
)

from connectors.demo_server import DemoKoboServer

PAGE = 40  # 120 households → 3 pages: enough to exercise paging and the watermark


def fresh_full_dump(server: DemoKoboServer, root: Path) -> dict:
    """A clean first sync of the server's current state into a new warehouse."""
    settings = sync_settings(server, root, page_size=PAGE)
    summary = sync_once(settings)
    assert summary.status in ("success", "warning") and summary.error is None
    return dump_form(settings.warehouse_path)


def test_changes_between_syncs_give_the_servers_state(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    server, uid = fresh_server, fresh_server.household_uid
    # every run sweeps the manifest (the project-history path: test_history_sync.py)
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, history=False)
    wh = settings.warehouse_path

    first = sync_once(settings)
    assert (first.inserted, first.updated, first.deleted) == (120, 0, 0)
    assert first.server_count == first.warehouse_count == 120
    assert_same_form(dump_form(wh), fresh_full_dump(server, tmp_path / "full0"))

    ids = server_ids(server)
    with_members = [i for i in ids if ids_of(wh, "members").count(i) >= 2]
    unvalidated = [r[0] for r in query(wh, f'SELECT _id FROM "{SLUG}".submissions '
                                           "WHERE _validation_status_uid IS NULL ORDER BY _id")]
    edited, status_changed, deleted = ids[10], unvalidated[20], with_members[3]
    old_uuid = query(wh, f'SELECT _uuid FROM "{SLUG}".submissions WHERE _id = ?', [edited])[0][0]
    new_uuid = server.edit_submission(uid, edited, {"household/hh_size": "9", "household/income": "1234"})
    server.set_validation_status(uid, status_changed, "validation_status_approved")
    server.delete_submission(uid, deleted)
    added = server.add_submissions(uid, 7)

    second = sync_once(settings)
    assert (second.inserted, second.updated, second.deleted) == (7, 2, 1)
    assert second.server_count == second.warehouse_count == 126
    assert_same_form(dump_form(wh), fresh_full_dump(server, tmp_path / "full1"))

    # an edit is the same row with a new _uuid, never a second row
    rows = query(wh, f'SELECT _uuid, hh_size, income FROM "{SLUG}".submissions WHERE _id = ?', [edited])
    assert len(rows) == 1 and rows[0][0] == new_uuid != old_uuid and rows[0][1] == 9
    assert query(wh, f'SELECT _validation_status_uid FROM "{SLUG}".submissions WHERE _id = ?',
                 [status_changed]) == [("validation_status_approved",)]
    # a deletion takes its repeat rows with it and is recorded
    assert deleted not in ids_of(wh) and deleted not in ids_of(wh, "members")
    assert query(wh, "SELECT form, submission_id FROM ops.deletions") == [(SLUG, deleted)]
    assert set(added) <= set(ids_of(wh))
    assert query(wh, "SELECT last_id FROM ops.watermarks WHERE form = ?", [SLUG]) == [(max(added),)]

    # nothing changed: nothing written, only the manifest (and an empty keyset page) transferred
    server.clear_requests()
    third = sync_once(settings)
    assert (third.inserted, third.updated, third.deleted, third.fetched) == (0, 0, 0, 0)
    assert third.status == "success"
    reqs = data_requests(server)
    answers = [e for e in reqs if "fields" not in e.query]
    # empty pages: an envelope, with a `previous` link for the one asked at an offset (≈ 160 bytes more)
    assert answers and all(e.nbytes < 400 for e in answers), [e.nbytes for e in answers]
    manifest = [e for e in reqs if e.query.get("fields") == '["_id","_uuid","_validation_status"]']
    assert manifest and sum(e.nbytes for e in reqs) < sum(e.nbytes for e in manifest) + 1000
    assert sum(e.nbytes for e in reqs) < 0.15 * first.bytes
    assert_same_form(dump_form(wh), fresh_full_dump(server, tmp_path / "full2"))


def test_late_arrival_behind_the_watermark_is_found_by_the_sweep(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    server = fresh_server
    # the sweep's way of finding it (the project history's: test_history_sync.py)
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, history=False)
    late = server_ids(server)[50]
    reveal = hold_back(server, late)  # its upload is still in flight: invisible to the first sync
    first = sync_once(settings)
    assert first.inserted == 119 and late not in ids_of(settings.warehouse_path)
    watermark = query(settings.warehouse_path, "SELECT last_id FROM ops.watermarks")[0][0]
    assert late < watermark

    reveal()
    second = sync_once(settings)
    assert second.inserted == 1 and late in ids_of(settings.warehouse_path)
    assert second.server_count == second.warehouse_count == 120
    assert_same_form(dump_form(settings.warehouse_path), fresh_full_dump(server, tmp_path / "full"))


def test_soft_deletions_keep_the_row_with_deleted_at(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    server, uid = fresh_server, fresh_server.household_uid
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, deletions="soft")
    wh = settings.warehouse_path
    sync_once(settings)
    gone = server_ids(server)[5]
    members_before = ids_of(wh, "members").count(gone)
    server.delete_submission(uid, gone)

    summary = sync_once(settings)
    assert summary.deleted == 1 and summary.warehouse_count == summary.server_count == 119
    rows = query(wh, f'SELECT _deleted_at IS NOT NULL FROM "{SLUG}".submissions WHERE _id = ?', [gone])
    assert rows == [(True,)]
    assert ids_of(wh, "members").count(gone) == members_before
    assert query(wh, "SELECT submission_id FROM ops.deletions") == [(gone,)]
    assert query(wh, f'SELECT count(*) FROM "{SLUG}".submissions WHERE _deleted_at IS NULL') == [(119,)]

    again = sync_once(settings)  # a soft-deleted id is not "deleted" again on every run
    assert again.deleted == 0 and query(wh, "SELECT count(*) FROM ops.deletions") == [(1,)]


@pytest.mark.parametrize("deletions", ["delete", "soft"])
def test_full_resync_drops_what_the_server_no_longer_has(
    fresh_server: DemoKoboServer, tmp_path: Path, deletions: str
) -> None:
    server = fresh_server
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, deletions=deletions)
    sync_once(settings)
    gone = server_ids(server)[-1]  # the watermark itself: a deletion there must not break resuming
    server.delete_submission(server.household_uid, gone)
    full = sync_once(settings, full=True)
    assert full.deleted == 1 and full.inserted == 0 and full.updated == 119
    assert full.warehouse_count == full.server_count == 119
    added = server.add_submissions(server.household_uid, 2)
    after = sync_once(settings)
    assert after.inserted == 2 and set(added) <= set(ids_of(settings.warehouse_path))


def test_count_mismatch_at_the_end_of_a_run_is_a_warning(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    server = fresh_server
    # a submission that vanishes without a `delete-submission` entry: only the sweep sees it
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, history=False)
    wh = settings.warehouse_path
    vanished = server_ids(server)[0]
    pages: list[int] = []

    def lose_one_after_loading(page) -> None:  # noqa: ANN001 — a SubmissionPage
        pages.append(page.last_id)
        if len(pages) == 3:  # already loaded, then gone from the server before the end-of-run count
            hold_back(server, vanished)

    summary = sync_once(settings, progress=lose_one_after_loading)
    assert (summary.server_count, summary.warehouse_count, summary.status) == (119, 120, "warning")
    runs = query(wh, "SELECT status, server_count, warehouse_count FROM ops.sync_runs")
    assert runs == [("warning", 119, 120)]
    assert any("server has 119 submissions, warehouse has 120" in line for line in summary.lines())

    after = sync_once(settings)  # the sweep then finds it missing: counts agree again
    assert (after.deleted, after.status) == (1, "success")
    assert (after.server_count, after.warehouse_count) == (119, 119)
    runs = query(wh, "SELECT status, server_count, warehouse_count FROM ops.sync_runs ORDER BY started")
    assert runs[-1] == ("success", 119, 119)


def test_submissions_arriving_during_a_run_are_the_next_runs(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    """The crawl takes what was there when it started; the count check counts up to the last `_id` loaded,
    so arrivals meanwhile are neither a gap nor a warning, and the next run loads exactly them."""
    server = fresh_server
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, history=False)
    added: list[int] = []

    def arrive_after_the_first_page(page) -> None:  # noqa: ANN001 — a SubmissionPage
        if not added:
            added.extend(server.add_submissions(server.household_uid, 5))

    first = sync_once(settings, progress=arrive_after_the_first_page)
    assert (first.inserted, first.server_count, first.warehouse_count) == (120, 120, 120)
    assert first.status == "success"
    assert len(added) == 5 and not set(added) & set(ids_of(settings.warehouse_path))
    assert fast_client(server).count_submissions(server.household_uid) == 125  # KoBo's total, meanwhile

    second = sync_once(settings)
    assert (second.inserted, second.server_count, second.warehouse_count) == (5, 125, 125)
    assert second.status == "success"
    assert sorted(ids_of(settings.warehouse_path))[-5:] == sorted(added)
