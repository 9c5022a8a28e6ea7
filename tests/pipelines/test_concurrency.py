"""One writer: a second sync of the same warehouse waits (wait_s > 0) or fails fast with WarehouseLocked
naming the holder's pid; an analyst holding the file open gets a clear CLI message, not a stack trace;
data stays intact."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_helpers import (
    SLUG,
    assert_same_form,
    data_requests,
    dump_form,
    fast_client,
    query,
    sync_env,
    sync_once,
    sync_settings,
)

from connectors.demo_server import DemoKoboServer
from pipelines import cli
from pipelines.run import run_sync
from warehouse import WarehouseLocked

REPO = Path(__file__).resolve().parents[2]
PAGE = 10

SYNC_SCRIPT = """
import sys
from config import load_settings
from pipelines.run import run_sync
result = run_sync(load_settings(), ["household_survey"], outputs=False, progress=False, alerts=False,
                  checks=False)
sys.exit(1 if result.failed else 0)
"""

HOLD_SCRIPT = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("ready", flush=True)
sys.stdin.read()
"""


def _start_slow_sync(server: DemoKoboServer, env: dict[str, str]) -> subprocess.Popen:
    """A sync in another process, slowed down by server latency; returns once it holds the warehouse."""
    server.clear_requests()
    server.set_faults(latency_ms=30)
    proc = subprocess.Popen([sys.executable, "-c", SYNC_SCRIPT], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # it opens the warehouse before its first request, so one data request means it holds the lock
    while not data_requests(server):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the first sync never started"
        time.sleep(0.005)
    return proc


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """`cli.main` installs console/file handlers on the `kobo_etl` logger; put the logger back afterwards."""
    root = logging.getLogger("kobo_etl")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def analyst(tmp_path: Path) -> Iterator[callable]:
    procs: list[subprocess.Popen] = []

    def open_file(path: Path, mode: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(path), mode], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    yield open_file
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_second_sync_fails_fast_or_waits_never_two_writers(
    fresh_server: DemoKoboServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = fresh_server
    settings = sync_settings(server, tmp_path / "wh", page_size=PAGE)
    first = _start_slow_sync(server, sync_env(settings))
    try:
        with pytest.raises(WarehouseLocked) as err:
            run_sync(settings, [SLUG], client=fast_client(server), wait_s=0, outputs=False, progress=False,
                     alerts=False, checks=False)
        assert err.value.pid == first.pid
        assert f"pid {first.pid}" in str(err.value) and "read-only copy" in str(err.value)
        assert first.poll() is None, "the failing second sync disturbed the first"

        with caplog.at_level(logging.WARNING, logger="warehouse.db"):
            second = run_sync(settings, [SLUG], client=fast_client(server), wait_s=60, outputs=False,
                              progress=False, alerts=False, checks=False)
        # it could only open the file once the first writer had finished and released it
        assert first.poll() == 0
        assert any(f"in use by pid {first.pid}" in r.getMessage() for r in caplog.records)
    finally:
        server.set_faults()
        if first.poll() is None:
            first.kill()
        first.wait()
        first.stderr.close()
    (summary,) = second.summaries
    assert (summary.inserted, summary.updated, summary.deleted) == (0, 0, 0)
    assert summary.server_count == summary.warehouse_count == 120
    runs = query(settings.warehouse_path, "SELECT status, inserted FROM ops.sync_runs ORDER BY started")
    assert runs == [("success", 120), ("success", 0)]  # the fast-failing attempt never wrote a row
    clean = sync_settings(server, tmp_path / "clean", page_size=PAGE)
    sync_once(clean)
    assert_same_form(dump_form(settings.warehouse_path), dump_form(clean.warehouse_path))


@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_analyst_holding_the_file_gets_a_clear_cli_message(
    fresh_server: DemoKoboServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], analyst, mode: str, cli_logging: None,  # noqa: ANN001
) -> None:
    settings = sync_settings(fresh_server, tmp_path, page_size=1000)
    sync_once(settings)
    before = dump_form(settings.warehouse_path)
    holder = analyst(settings.warehouse_path, mode)
    for key, value in sync_env(settings).items():
        monkeypatch.setenv(key, value)

    code = cli.main(["sync"])

    err = capsys.readouterr().err
    assert code != 0
    assert f"open in another program (pid {holder.pid})" in err
    assert "close it or use the read-only copy" in err
    assert "Traceback" not in err and "IOException" not in err
    assert fresh_server.token not in err
    holder.stdin.close()
    holder.wait(timeout=30)
    assert_same_form(dump_form(settings.warehouse_path), before)
