"""Crash safety: a sync killed with SIGKILL at several points (first load, later pages, the sweep, the
re-fetch of edited ids, the project-history path) leaves a warehouse that the next run completes into exactly
what a clean run gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sync_helpers import (
    SLUG,
    assert_same_form,
    data_requests,
    dump_form,
    query,
    server_ids,
    sync_env,
    sync_once,
    sync_settings,
)

from connectors.demo_server import DemoKoboServer

REPO = Path(__file__).resolve().parents[2]
PAGE = 10  # 120 households → 12 pages, so there are many points to die at
LATENCY_MS = 25  # keeps the child busy long enough for the parent to see the k-th request and kill it

SYNC_SCRIPT = """
import sys
from config import load_settings
from pipelines.run import run_sync
result = run_sync(load_settings(), ["household_survey"], outputs=False, progress=False, alerts=False,
                  checks=False)
sys.exit(1 if result.failed else 0)
"""


def _answers(e: Any) -> bool:
    """A data page with answers (not the manifest, not the count)."""
    return "fields" not in e.query and "$in" not in e.query.get("query", "")


def _manifest(e: Any) -> bool:
    return e.query.get("fields") == '["_id","_uuid","_validation_status"]'


def _refetch(e: Any) -> bool:
    return "$in" in e.query.get("query", "")


def kill_sync_at(server: DemoKoboServer, env: dict[str, str], which: Callable[[Any], bool], k: int) -> None:
    """Start `kobo-etl sync` (run_sync) in a child process; SIGKILL it once the server has seen the k-th
    request matching `which` (the child is then somewhere inside loading that page)."""
    server.clear_requests()
    server.set_faults(latency_ms=LATENCY_MS)
    proc = subprocess.Popen([sys.executable, "-c", SYNC_SCRIPT], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while sum(1 for e in data_requests(server) if which(e)) < k:
            if proc.poll() is not None:
                pytest.fail(f"the sync ended before the kill point: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        server.set_faults()


def assert_consistent(path: Path) -> None:
    """No duplicate keys, no orphan repeat rows, and the watermark is the highest loaded `_id`."""
    assert query(path, f'SELECT count(*) - count(DISTINCT _id) FROM "{SLUG}".submissions') == [(0,)]
    assert query(path, f'SELECT count(*) - count(DISTINCT _key) FROM "{SLUG}".members') == [(0,)]
    orphans = query(
        path,
        f'SELECT count(*) FROM "{SLUG}".members m '
        f'LEFT JOIN "{SLUG}".submissions s ON m._submission_id = s._id '
        "WHERE s._id IS NULL",
    )
    assert orphans == [(0,)]
    watermark = [r[0] for r in query(path, "SELECT last_id FROM ops.watermarks WHERE form = ?", [SLUG])]
    highest = query(path, f'SELECT max(_id) FROM "{SLUG}".submissions')[0][0]
    assert watermark == ([] if highest is None else [highest])


def change_server(server: DemoKoboServer) -> None:
    """Edits, validation changes, deletions and new submissions spread over the whole id range."""
    uid, ids = server.household_uid, server_ids(server)
    for i in ids[3:120:8]:
        server.edit_submission(uid, i, {"household/hh_size": "11"})
    for i in ids[5:120:17]:
        server.set_validation_status(uid, i, "validation_status_not_approved")
    for i in ids[7:120:30]:
        server.delete_submission(uid, i)
    server.add_submissions(uid, 25)


@pytest.mark.parametrize(
    ("point", "which", "k", "second_sync", "history"),
    [
        ("first page", _answers, 1, False, True),
        # fetching runs ahead of loading by at most a window of 6 pages (3 workers) after the first two
        # requests, so by the tenth request the loader has taken two more pages: the first one, which loads
        # alone, is committed
        ("tenth page", _answers, 10, False, True),
        ("sweep manifest", _manifest, 6, True, False),
        ("re-fetch of edited ids", _refetch, 1, True, False),
        ("new pages after the sweep", _answers, 2, True, False),
        # the second `$in` request re-fetches what the project history names (the first: the deleted ones)
        ("re-fetch of what the history names", _refetch, 2, True, True),
    ],
)
def test_kill_9_then_rerun_equals_a_clean_run(
    fresh_server: DemoKoboServer, tmp_path: Path, point: str, which: Callable[[Any], bool], k: int,
    second_sync: bool, history: bool,
) -> None:
    server = fresh_server
    # history=False: the second sync sweeps the manifest (the kill points above are in the sweep)
    settings = sync_settings(server, tmp_path / "crash", page_size=PAGE, history=history)
    if second_sync:
        assert sync_once(settings).warehouse_count == 120
        change_server(server)

    kill_sync_at(server, sync_env(settings), which, k)
    assert_consistent(settings.warehouse_path)  # what a killed run left is already coherent
    left = query(settings.warehouse_path, "SELECT last_id FROM ops.watermarks WHERE form = ?", [SLUG])

    server.clear_requests()
    resumed = sync_once(settings)
    assert resumed.status == "success", resumed.error
    assert resumed.server_count == resumed.warehouse_count
    assert_consistent(settings.warehouse_path)
    if not second_sync and k > 1:
        # committed pages are not fetched again: every page request starts above the old watermark
        assert left and left[0][0] is not None, f"{point}: the killed run committed no page"
        starts = [json.loads(e.query.get("query", "{}")).get("_id", {}).get("$gt")
                  for e in data_requests(server) if _answers(e)]
        assert starts and all(s is not None and s >= left[0][0] for s in starts), \
            f"{point}: restarted below the watermark {left[0][0]}: {starts}"

    clean = sync_once(sync_settings(server, tmp_path / "clean", page_size=PAGE))
    assert_same_form(dump_form(settings.warehouse_path), dump_form(clean_path(tmp_path)))
    assert clean.warehouse_count == resumed.warehouse_count
    interrupted = query(settings.warehouse_path,
                        "SELECT count(*) FROM ops.sync_runs WHERE status = 'running'")
    assert interrupted[0][0] <= 1  # the killed run's row; it never blocks or confuses the next run


def clean_path(tmp_path: Path) -> Path:
    return tmp_path / "clean" / "data" / "warehouse.duckdb"
