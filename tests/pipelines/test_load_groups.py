"""Pages are loaded several at a time (`pipelines.sync.PAGES_PER_LOAD`): the same rows as one page at a
time, and an `_id` that comes in two pages of one group ends with the later page's values."""

from __future__ import annotations

from pathlib import Path

from sync_helpers import SLUG, assert_same_form, dump_form, fast_client, query, sync_once, sync_settings

from config import DEMO_PSEUDONYMISATION_KEY, load_form_configs
from connectors.demo_server import DemoKoboServer
from pipelines.checks import LoadedIds
from pipelines.sync import PAGES_PER_LOAD, SyncSummary, load_form_context, load_pages
from warehouse import connect, ensure_tables
from warehouse.load import load_session


def test_small_pages_load_in_groups_into_the_same_rows(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    small = sync_settings(fresh_server, tmp_path / "small", page_size=5, concurrency=1)
    summary = sync_once(small)
    # 24 pages: the first alone, then groups of PAGES_PER_LOAD; each group is one watermark step
    assert summary.requests >= 24 > PAGES_PER_LOAD and summary.inserted == 120
    whole = sync_settings(fresh_server, tmp_path / "whole")
    assert sync_once(whole).inserted == 120
    assert_same_form(dump_form(small.warehouse_path), dump_form(whole.warehouse_path))


def test_an_id_in_two_pages_of_one_group_keeps_the_later_page(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    server, uid = fresh_server, fresh_server.household_uid
    settings = sync_settings(server, tmp_path / "wh")
    assert sync_once(settings).inserted == 120
    client = fast_client(server)
    first, second = list(client.iter_submission_pages(uid, page_size=5))[:2]
    edited = first.results[0]["_id"]
    server.edit_submission(uid, edited, {"household/hh_size": "11"})
    again = next(client.iter_submission_pages(uid, page_size=5))  # the first page, now with the edit
    (form,) = load_form_configs(settings.forms_dir, [SLUG])
    con = connect(settings.warehouse_path)
    try:
        ctx = load_form_context(client, form, DEMO_PSEUDONYMISATION_KEY.encode(), tmp_path / "cache")
        summary = SyncSummary(form=SLUG, run_id="group-test")
        loaded = LoadedIds(con, SLUG)
        with load_session(con):
            # the first page loads alone; `first` and `again` share the next group
            load_pages(con, ctx, [second, first, again], summary, advance_watermark=False, loaded=loaded)
        assert (summary.inserted, summary.updated, summary.fetched) == (0, 15, 15)
        assert loaded.count() == 10
    finally:
        con.close()
    rows = query(settings.warehouse_path, f'SELECT count(*), max(hh_size) FROM "{SLUG}".submissions '
                 "WHERE _id = ?", [edited])
    assert rows == [(1, 11)]
    assert query(settings.warehouse_path, f'SELECT count(*) FROM "{SLUG}".submissions') == [(120,)]


def test_the_end_of_the_transform_is_announced_before_the_last_group_is_written(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    """A sync starts GX's import there (`on_transformed`): the cores are free of the transform by then."""
    settings = sync_settings(fresh_server, tmp_path / "wh")
    client = fast_client(fresh_server)
    pages = list(client.iter_submission_pages(fresh_server.household_uid, page_size=5))[:3]
    (form,) = load_form_configs(settings.forms_dir, [SLUG])
    con = connect(settings.warehouse_path)
    try:
        ctx = load_form_context(client, form, DEMO_PSEUDONYMISATION_KEY.encode(), tmp_path / "cache")
        ensure_tables(con, ctx.schema)
        calls: list[int] = []
        for given, expected in ((pages, [5]), ([], [])):
            calls.clear()
            summary = SyncSummary(form=SLUG, run_id="end-test")
            loaded = LoadedIds(con, SLUG)
            with load_session(con):
                load_pages(con, ctx, given, summary, advance_watermark=False, loaded=loaded,
                           on_transformed=lambda s=summary: calls.append(s.fetched))
            # once, when only the first page (alone in its group) was written; never for no submissions
            assert calls == expected
            assert summary.fetched == 5 * len(given)
            loaded.close()
    finally:
        con.close()
