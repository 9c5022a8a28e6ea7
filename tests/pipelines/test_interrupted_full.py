"""A `--full` re-sync cut off half-way (the server failed) leaves the form as it was: the next run resumes,
loads what is new, deletes nothing, and the warehouse equals a fresh full sync."""

from __future__ import annotations

import pytest
from sync_helpers import assert_same_form, dump_form, fast_client, query, sync_once, sync_settings

from config import EtlError
from connectors.demo_server import DemoKoboServer


@pytest.mark.parametrize("history", [True, False], ids=["history", "sweep"])
def test_the_run_after_an_interrupted_full_resync_works(tmp_path, history):
    with DemoKoboServer(households=120, seed=11, include_fixtures=False) as srv:
        settings = sync_settings(srv, tmp_path / "inc", page_size=40, concurrency=1, history=history)
        sync_once(settings)
        top = query(settings.warehouse_path, "SELECT last_id FROM ops.watermarks")[0][0]
        srv.add_submissions(srv.household_uid, 5)
        srv.set_faults(fail_every=3)  # the third page request fails, and the client does not retry
        with pytest.raises(EtlError):
            sync_once(settings, full=True, client=fast_client(srv, max_attempts=1))
        srv.set_faults()
        assert query(settings.warehouse_path, "SELECT last_id FROM ops.watermarks")[0][0] == top
        after = sync_once(settings)
        fresh = sync_settings(srv, tmp_path / "fresh", page_size=40, concurrency=1, history=history)
        sync_once(fresh)
    assert after.error is None and (after.inserted, after.deleted) == (5, 0)
    assert query(settings.warehouse_path, "SELECT count(*) FROM ops.deletions")[0][0] == 0
    assert_same_form(dump_form(settings.warehouse_path), dump_form(fresh.warehouse_path))
