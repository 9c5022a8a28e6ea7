"""Bad networks: 5xx, 429 with Retry-After, truncated and non-JSON bodies are retried and the sync still
gives exactly the server's rows; a server that stays down fails the run clearly, and the next run resumes
where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from sync_helpers import (
    SLUG,
    assert_same_form,
    data_requests,
    dump_form,
    fast_client,
    query,
    sync_once,
    sync_settings,
)

from config import load_form_configs
from connectors.demo_server import DemoKoboServer
from connectors.errors import BadPayload, KoboUnavailable
from pipelines.sync import sync_form
from warehouse import connect

PAGE = 20  # 120 households → 6 pages


def _answers(e) -> bool:  # noqa: ANN001
    return "fields" not in e.query and "$in" not in e.query.get("query", "")


def test_flaky_server_still_gives_exactly_the_servers_rows(
    fresh_server: DemoKoboServer, tmp_path: Path
) -> None:
    server = fresh_server
    clean = sync_settings(server, tmp_path / "clean", page_size=PAGE)
    sync_once(clean)

    settings = sync_settings(server, tmp_path / "flaky", page_size=PAGE)
    server.set_faults(fail_every=3, rate_limit_every=4, retry_after=0, truncate_next=1, non_json_next=1)
    server.clear_requests()
    summary = sync_once(settings, client=fast_client(server))
    statuses = {e.status for e in data_requests(server)}
    server.set_faults()

    assert {429, 503} <= statuses, "the faults were not exercised"
    assert summary.status == "success" and summary.inserted == 120
    assert summary.server_count == summary.warehouse_count == 120
    assert_same_form(dump_form(settings.warehouse_path), dump_form(clean.warehouse_path))


def test_flaky_server_during_an_incremental_run(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    server, uid = fresh_server, fresh_server.household_uid
    settings = sync_settings(server, tmp_path / "inc", page_size=PAGE)
    sync_once(settings)
    server.edit_submission(uid, 10000001, {"household/hh_size": "4"})
    server.add_submissions(uid, 30)
    server.set_faults(fail_every=3, rate_limit_every=5, retry_after=1, truncate_next=1)
    summary = sync_once(settings, client=fast_client(server))
    server.set_faults()
    assert (summary.inserted, summary.updated) == (30, 1)
    assert_same_form(dump_form(settings.warehouse_path),
                     dump_form(_clean_sync(server, tmp_path / "clean")))


def _clean_sync(server: DemoKoboServer, root: Path) -> Path:
    settings = sync_settings(server, root, page_size=PAGE)
    sync_once(settings)
    return settings.warehouse_path


@pytest.mark.parametrize("fault", ["down", "truncated"])
def test_server_down_mid_sync_fails_clearly_then_resumes(
    fresh_server: DemoKoboServer, tmp_path: Path, fault: str
) -> None:
    server = fresh_server
    # one page at a time, so the fault starts exactly after the load that brought page 2 (several pages
    # load together: pipelines.sync.PAGES_PER_LOAD; concurrent fetching: test_crash.py)
    page = 5  # 24 pages: more than the first load and one load of PAGES_PER_LOAD pages
    settings = sync_settings(server, tmp_path / "wh", page_size=page, concurrency=1)
    (form,) = load_form_configs(settings.forms_dir, [SLUG])
    pages: list[int] = []

    def break_after_two_pages(page) -> None:  # noqa: ANN001 — a SubmissionPage
        pages.append(page.last_id)
        if len(pages) == 2:  # from now on every data request fails
            if fault == "down":
                server.set_faults(fail_every=1)
            else:
                server.set_faults(truncate_next=1000)

    con = connect(settings.warehouse_path)
    expected = KoboUnavailable if fault == "down" else BadPayload
    try:
        with pytest.raises(expected) as err:
            sync_form(settings, form, con, fast_client(server, max_retry_s=0.5), checks=False,
                      progress=break_after_two_pages)
    finally:
        con.close()
        server.set_faults()
    exc = err.value
    last_good = pages[-1]  # the last page loaded before the fault
    assert 2 < len(pages) < 120 // page
    assert exc.form == server.household_uid and exc.last_id == last_good
    assert server.household_uid in str(exc) and f"last good _id={last_good}" in str(exc)
    runs = query(settings.warehouse_path, "SELECT status, error FROM ops.sync_runs WHERE form = ?", [SLUG])
    assert runs == [("failed", str(exc))]
    assert query(settings.warehouse_path, "SELECT last_id FROM ops.watermarks") == [(last_good,)]
    stored = query(settings.warehouse_path, f'SELECT count(*) FROM "{SLUG}".submissions')
    assert stored == [(len(pages) * page,)]

    server.clear_requests()
    summary = sync_once(settings, client=fast_client(server))
    assert summary.status == "success" and summary.inserted == 120 - len(pages) * page
    first = next(e for e in data_requests(server) if _answers(e))
    assert first.query["query"] == f'{{"_id":{{"$gt":{last_good}}}}}', "the run restarted from zero"
    assert_same_form(dump_form(settings.warehouse_path), dump_form(_clean_sync(server, tmp_path / "clean")))
