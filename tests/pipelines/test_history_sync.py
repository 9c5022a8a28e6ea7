"""Incremental runs through KoBo's project history (decision 008): edits, validation changes, late arrivals
and deletions are found from `/history/` without the id manifest; a refused history (403) falls back to the
manifest sweep; the full sweep still runs every `sync.full_sweep_every`. Real demo server, real DuckDB, the
real `sync_form`; the warehouse must equal a fresh full sync of the same server state, row by row."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sync_helpers import (
    SLUG,
    assert_same_form,
    dump_form,
    hold_back,
    ids_of,
    query,
    server_ids,
    sync_once,
    sync_settings,
)

from config import SyncOptions
from connectors import KoboClient, PermissionDenied
from connectors.demo_server import DemoKoboServer
from pipelines.sync import HISTORY_ACTIONS

PAGE = 40  # 120 households → 3 pages
MANIFEST = '["_id","_uuid","_validation_status"]'


def kind(e: Any) -> str:
    """What a logged request was for, as the sync makes them."""
    if e.path.endswith("/history/"):
        return "history"
    if "/data" not in e.path:
        return "asset"
    q = e.query.get("query", "")
    if e.query.get("fields") == MANIFEST:
        return "manifest"
    if "fields" in e.query:
        return "count"
    if "meta/rootUuid" in q:
        return "re-fetch by root uuid"
    if "$in" in q:
        return "re-fetch by id"
    return "keyset"


def kinds(server: DemoKoboServer) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in server.requests:
        out[kind(e)] = out.get(kind(e), 0) + 1
    return out


def fresh_full_dump(server: DemoKoboServer, root: Path) -> dict:
    settings = sync_settings(server, root, page_size=PAGE)
    assert sync_once(settings).error is None
    return dump_form(settings.warehouse_path)


def state(path: Path) -> tuple:
    return query(path, "SELECT history_polled_at, swept_at, history_refused_at FROM ops.watermarks "
                       "WHERE form = ?", [SLUG])[0]


def age_state(path: Path, column: str, hours: int) -> None:
    """Move a recorded time back, as if that many hours had passed (no test waits for a clock)."""
    con = duckdb.connect(str(path))
    try:
        con.execute(f"UPDATE ops.watermarks SET {column} = {column} - INTERVAL {int(hours)} HOUR "
                    "WHERE form = ?", [SLUG])
    finally:
        con.close()


def test_history_finds_every_change_without_the_manifest(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    server, uid = fresh_server, fresh_server.household_uid
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE)
    wh = settings.warehouse_path
    ids = server_ids(server)
    late = ids[50]
    server.hold_submission(uid, late)  # its upload is still in flight: invisible to the first sync
    first = sync_once(settings)
    assert first.inserted == 119 and late not in ids_of(wh)
    polled, swept, refused = state(wh)
    assert polled is not None and polled == swept and refused is None  # a first load counts as a sweep

    validated = [r[0] for r in query(wh, f'SELECT _id FROM "{SLUG}".submissions '
                                         "WHERE _validation_status_uid IS NOT NULL ORDER BY _id")]
    unvalidated = [r[0] for r in query(wh, f'SELECT _id FROM "{SLUG}".submissions '
                                           "WHERE _validation_status_uid IS NULL ORDER BY _id")]
    with_members = [i for i in ids if ids_of(wh, "members").count(i) >= 2]
    edited, taken, picked = ids[10], {late, ids[10]}, []
    for pool in (unvalidated, validated, with_members):  # one submission per kind of change
        picked.append(next(i for i in pool if i not in taken))
        taken.add(picked[-1])
    approved, reset, deleted = picked
    new_uuid = server.edit_submission(uid, edited, {"household/hh_size": "9"})
    server.set_validation_status(uid, approved, "validation_status_approved")
    server.set_validation_status(uid, reset, None)  # back to no status
    server.delete_submission(uid, deleted)
    server.release_submission(uid, late)  # now readable, below the watermark
    added = server.add_submissions(uid, 3)

    server.clear_requests()
    second = sync_once(settings)
    seen = kinds(server)
    assert "manifest" not in seen and seen["history"] == 1, seen
    assert seen["re-fetch by root uuid"] >= 1 and "re-fetch by id" not in seen, seen
    assert (second.inserted, second.updated, second.deleted) == (1 + 3, 3, 1)
    assert second.server_count == second.warehouse_count == 120 - 1 + 3
    assert_same_form(dump_form(wh), fresh_full_dump(server, tmp_path / "full"))

    rows = {r[0]: r[1:] for r in query(wh, f'SELECT _id, _uuid, hh_size, _validation_status_uid '
                                           f'FROM "{SLUG}".submissions WHERE _id IN (?, ?, ?)',
                                       [edited, approved, reset])}
    assert rows[edited][:2] == (new_uuid, 9)
    assert (rows[approved][2], rows[reset][2]) == ("validation_status_approved", None)
    assert late in ids_of(wh) and set(added) <= set(ids_of(wh))
    assert deleted not in ids_of(wh) and deleted not in ids_of(wh, "members")
    assert query(wh, "SELECT submission_id FROM ops.deletions") == [(deleted,)]
    later_polled, later_swept, _ = state(wh)
    assert later_polled > polled and later_swept == swept  # polled again, not swept


def test_deleting_one_of_two_submissions_with_the_same_root_uuid(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    # legacy duplicates share a root uuid (kobo-api.md 4.1): the history names the root, not the `_id`
    server = fresh_server
    gone, kept = server.quality_problems["duplicate_uuid"]
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE)
    wh = settings.warehouse_path
    sync_once(settings)
    roots = query(wh, f'SELECT DISTINCT _root_uuid FROM "{SLUG}".submissions WHERE _id IN (?, ?)',
                  [gone, kept])
    assert len(roots) == 1
    server.delete_submission(server.household_uid, gone)
    server.clear_requests()
    summary = sync_once(settings)
    assert "manifest" not in kinds(server) and summary.deleted == 1
    assert gone not in ids_of(wh) and kept in ids_of(wh)
    assert summary.server_count == summary.warehouse_count == 119


def test_nothing_new_transfers_a_few_hundred_bytes(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    server = fresh_server  # a first load records its start as a sweep: the next run polls the history
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE)
    first = sync_once(settings)
    server.clear_requests()
    second = sync_once(settings)
    assert (second.fetched, second.inserted, second.updated, second.deleted) == (0, 0, 0, 0)
    assert second.status == "success"
    sync = [e for e in server.requests if kind(e) != "asset"]
    assert {kind(e) for e in sync} == {"count", "history", "keyset"}  # keyset: the empty first and top pages
    assert [kind(e) for e in sync].count("history") == 1
    # three small answers, none growing with the number of submissions: the manifest of these 120 alone
    # would be > 120 x 140 B; the summary counts the same bytes as the server sent for the pages it read
    assert all(e.nbytes < 400 for e in sync), [(kind(e), e.nbytes) for e in sync]
    assert sum(e.nbytes for e in sync) < 1200 < 120 * 140
    assert second.bytes < 0.01 * first.bytes
    # the history does hold our own reads (`view-data`, one per data request): the query left them out
    client = KoboClient(server.url, server.token)
    since = datetime.now(UTC) - timedelta(hours=1)
    views = next(client.iter_history_pages(server.household_uid, actions=["view-data"], since=since))
    assert views.count > len(sync)


def test_refused_history_falls_back_to_the_sweep(
    fresh_server: DemoKoboServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, uid = fresh_server, fresh_server.household_uid
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE)
    wh = settings.warehouse_path
    sync_once(settings)
    server.manage_asset = False  # the token's account may view submissions, not manage the project
    ids = server_ids(server)
    server.edit_submission(uid, ids[2], {"household/hh_size": "7"})
    server.set_validation_status(uid, ids[3], "validation_status_on_hold")
    server.delete_submission(uid, ids[4])
    added = server.add_submissions(uid, 2)

    logger = logging.getLogger("kobo_etl")
    propagate, logger.propagate = logger.propagate, True  # caplog listens on the root logger
    try:
        server.clear_requests()
        with caplog.at_level(logging.INFO, logger="kobo_etl.sync"):
            second = sync_once(settings)
        seen = [kind(e) for e in server.requests]
        assert [e.status for e in server.requests if kind(e) == "history"] == [403]
        assert "manifest" in seen and (second.inserted, second.updated, second.deleted) == (2, 2, 1)
        assert set(added) <= set(ids_of(wh))
        assert_same_form(dump_form(wh), fresh_full_dump(server, tmp_path / "full"))
        # by identity: a library's logging set-up in an earlier test can leave pytest's capture handler on
        # the `kobo_etl` logger as well, so one record may be captured twice
        refused = "project history cannot be read"
        warnings = list({id(r): r for r in caplog.records if refused in r.getMessage()}.values())
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert state(wh)[2] is not None  # the refusal is remembered

        # the next run does not ask again (the refusal is recorded) and says nothing new
        caplog.clear()
        server.clear_requests()
        with caplog.at_level(logging.INFO, logger="kobo_etl.sync"):
            sync_once(settings)
        assert "history" not in kinds(server) and "manifest" in kinds(server)
        assert not [r for r in caplog.records if "project history" in r.getMessage()]
    finally:
        logger.propagate = propagate

    # a day later it asks once more; the permission was granted meanwhile: history again, no manifest
    server.manage_asset = True
    age_state(wh, "history_refused_at", 25)
    server.delete_submission(uid, ids[9])
    server.clear_requests()
    fourth = sync_once(settings)
    assert kinds(server)["history"] == 1 and "manifest" not in kinds(server)
    assert fourth.deleted == 1 and state(wh)[2] is None


def test_the_full_sweep_still_runs_when_due(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    server = fresh_server
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE)
    wh = settings.warehouse_path
    sync_once(settings)
    # a submission gone without a `delete-submission` entry (say, beyond the history's lookback): the
    # history cannot tell, so the count check warns until the next full sweep
    vanished = server_ids(server)[12]
    hold_back(server, vanished)
    server.clear_requests()
    second = sync_once(settings)
    assert "manifest" not in kinds(server) and second.deleted == 0 and second.status == "warning"
    _, swept, _ = state(wh)

    age_state(wh, "swept_at", 25)  # sync.full_sweep_every is 24 h by default
    server.clear_requests()
    third = sync_once(settings)
    assert "manifest" in kinds(server) and "history" not in kinds(server)
    assert third.deleted == 1 and third.status == "success" and vanished not in ids_of(wh)
    polled, swept_again, _ = state(wh)
    assert swept_again > swept and polled == swept_again

    server.clear_requests()
    sync_once(settings)  # swept just now: back to the history
    assert "manifest" not in kinds(server) and kinds(server)["history"] == 1


def test_history_off_sweeps_every_run(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    server = fresh_server
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, history=False)
    sync_once(settings)
    server.clear_requests()
    sync_once(settings)
    assert "manifest" in kinds(server) and "history" not in kinds(server)


def test_demo_history_endpoint_behaves_like_kpi(fresh_server: DemoKoboServer) -> None:
    server, uid = fresh_server, fresh_server.household_uid
    client = KoboClient(server.url, server.token)
    before = datetime.now(UTC) - timedelta(seconds=1)
    rows = next(client.iter_submission_pages(uid, fields=["_id"], page_size=2)).results
    (first, root), (second, second_root) = [(r["_id"], r["meta/rootUuid"]) for r in rows]
    server.edit_submission(uid, first, {"household/hh_size": "2"})
    server.delete_submission(uid, second)
    pages = list(client.iter_history_pages(uid, actions=HISTORY_ACTIONS, since=before))
    entries = [e for p in pages for e in p.results]
    assert [e["action"] for e in entries] == ["delete-submission", "modify-submission"]  # newest first
    assert root.startswith("uuid:") and entries[1]["metadata"]["submission"]["root_uuid"] == root[5:]
    assert {"user", "user_uid", "username", "date_created"} <= set(entries[0])
    # `date_created__gte` is honoured, and a `q` KPI cannot use selects nothing (no error)
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert next(client.iter_history_pages(uid, actions=HISTORY_ACTIONS, since=later)).count == 0
    import requests

    url, headers = f"{server.url}/api/v2/assets/{uid}/history/", {"Authorization": f"Token {server.token}"}
    for q in ("no_such_field:1", "action:(", "action:delete-submission AND", 'date_created__gte:"soon"'):
        assert requests.get(url, params={"q": q}, headers=headers, timeout=10).json()["count"] == 0, q
    body = requests.get(url, params={"q": "NOT action:view-data", "limit": 1, "start": 1}, headers=headers,
                        timeout=10).json()
    assert body["count"] == 2 and body["results"][0]["action"] == "modify-submission"
    # re-fetch by root uuid, with or without the prefix; the deleted one is simply absent
    pages = client.iter_submissions_by_root_uuid(uid, [root[5:], second_root])
    got = [r["_id"] for p in pages for r in p.results]
    assert got == [first]
    server.manage_asset = False
    with pytest.raises(PermissionDenied):
        next(client.iter_history_pages(uid, actions=HISTORY_ACTIONS, since=before))


def test_sync_options_durations() -> None:
    opts = SyncOptions.model_validate({"full_sweep_every": "6h", "history_overlap": "90s"})
    assert (opts.full_sweep_every, opts.history_overlap) == (timedelta(hours=6), timedelta(seconds=90))
    assert SyncOptions().model_dump(mode="json")["full_sweep_every"] == "24h"
    assert SyncOptions.model_validate({"full_sweep_every": "PT2H"}).full_sweep_every == timedelta(hours=2)
    with pytest.raises(ValueError, match="greater than 0"):
        SyncOptions.model_validate({"full_sweep_every": "0h"})


def test_a_failing_history_falls_back_to_the_sweep(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    """Only `/history/` fails (a proxy's 502 on a slow history query): the run sweeps instead of loading
    nothing, and nothing is recorded as refused (the next run tries the history again)."""
    server, uid = fresh_server, fresh_server.household_uid
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE, max_retry_s=1)
    wh = settings.warehouse_path
    sync_once(settings)
    ids = server_ids(server)
    server.edit_submission(uid, ids[2], {"household/hh_size": "7"})
    server.delete_submission(uid, ids[4])
    added = server.add_submissions(uid, 3)
    server.history_fault = 502
    try:
        server.clear_requests()
        second = sync_once(settings)
    finally:
        server.history_fault = None
    assert {e.status for e in server.requests if kind(e) == "history"} == {502}
    assert "manifest" in kinds(server)
    assert second.error is None and (second.inserted, second.updated, second.deleted) == (3, 1, 1)
    assert set(added) <= set(ids_of(wh))
    assert_same_form(dump_form(wh), fresh_full_dump(server, tmp_path / "full"))
    assert state(wh)[2] is None
