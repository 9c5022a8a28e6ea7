"""`kobo-etl serve`: deployments built from the form configs; one real scheduled tick, then Ctrl-C.

The tick test runs the real CLI in a subprocess with no Prefect server configured: `serve` starts its own
local `prefect server start` (its scheduler creates the runs; Prefect's temporary/ephemeral server runs no
scheduler, so `serve` would never fire there). A form's schedule is a cron expression, whose resolution is
one minute: the test waits for the next minute boundary (at most ~60 s), hence the `slow` marker.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from ops_helpers import demo_env, write_household_form

from config import load_form_configs
from connectors.demo_server import DemoKoboServer
from pipelines.serve import build_deployments

SERVER_START_TIMEOUT_S = 90
TICK_TIMEOUT_S = 150  # next minute boundary (<= 60 s) + scheduler/runner polling + the sync itself
STOP_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def server():
    with DemoKoboServer(households=20, seed=7, include_fixtures=False) as srv:
        yield srv


def test_deployments_follow_the_form_configs(server, tmp_path):
    write_household_form(server, tmp_path / "forms", cron="30 7 * * *")
    forms = load_form_configs(tmp_path / "forms")
    (dep,) = build_deployments(forms)
    assert dep.name == "sync-household_survey"
    assert dep.parameters == {"slug": "household_survey"}
    assert dep.entrypoint.endswith("pipelines/flows.py:sync_form") or dep.entrypoint.endswith(
        "flows.py:sync_form"
    )
    (sched,) = dep.schedules
    assert sched.schedule.cron == "30 7 * * *" and sched.schedule.timezone == "Africa/Nairobi"
    assert sched.active is True
    assert dep.concurrency_limit == 1
    assert set(dep.tags) == {"kobo-etl", "household_survey"}


def _base_env(tmp_path: Path, api_url: str) -> dict[str, str]:
    """The test's environment without any Prefect or KoBo settings, plus an isolated Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KOBO_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path / 'prefect' / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        # the server schedules a new deployment's runs within a second; the runner polls every second
        PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="1",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Kill a process group this test started, if it is still alive (the test never leaves it behind)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _local_server_url(serve: subprocess.Popen[bytes], err: Path) -> str:
    """The API URL of the local Prefect server `serve` started, from its log line."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert serve.poll() is None, f"serve exited early: {err.read_text(errors='replace')[-2000:]}"
        found = re.search(r"local Prefect server at (\S+/api)", err.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.5)
    pytest.fail(f"serve did not start a local Prefect server within {SERVER_START_TIMEOUT_S}s")


def _finished_runs(api_url: str) -> list[dict]:
    """Flow runs of the served deployment that reached a final state."""
    resp = httpx.post(
        f"{api_url}/flow_runs/filter",
        json={
            "deployments": {"name": {"any_": ["sync-household_survey"]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}},
        },
        timeout=10,
    )
    resp.raise_for_status()
    return list(resp.json())


@pytest.mark.slow
def test_serve_runs_a_scheduled_tick_and_stops_on_ctrl_c(server, tmp_path):
    """`kobo-etl serve` with no Prefect server configured: starts a local one, runs the form at its next cron
    tick by itself, then exits cleanly on SIGINT (and stops the local server)."""
    write_household_form(server, tmp_path / "forms", cron="* * * * *")
    env = _base_env(tmp_path, api_url="")
    del env["PREFECT_API_URL"]
    (tmp_path / "prefect").mkdir()
    bin_dir = Path(sys.executable).parent
    serve_out, serve_err = tmp_path / "serve.out", tmp_path / "serve.err"
    serve = None
    try:
        with serve_out.open("wb") as out, serve_err.open("wb") as err:
            serve = subprocess.Popen(
                [str(bin_dir / "kobo-etl"), "serve"],
                env={**env, **demo_env(server, tmp_path)},
                stdout=out,
                stderr=err,
                cwd=tmp_path,
                start_new_session=True,  # its own group: the finally can kill it and its run subprocesses
                # Ctrl-C must reach it even when the tests themselves run in the background of a shell, which
                # starts them with SIGINT ignored (inherited, and Python then installs no handler for it)
                preexec_fn=_sigint_default,
            )
        api_url = _local_server_url(serve, serve_err)

        runs: list[dict] = []
        deadline = time.monotonic() + TICK_TIMEOUT_S
        while not runs and time.monotonic() < deadline:
            early = serve.poll() is not None
            assert not early, f"serve exited early: {serve_err.read_text(errors='replace')[-2000:]}"
            time.sleep(1)
            runs = _finished_runs(api_url)
        assert runs, f"no scheduled run finished within {TICK_TIMEOUT_S}s: {serve_err.read_text()[-2000:]}"

        # the run came from the schedule (the server's scheduler), not from a manual trigger
        run = runs[0]
        assert run["auto_scheduled"] is True
        assert run["parameters"] == {"slug": "household_survey"}
        assert run["state"]["type"] in ("COMPLETED", "FAILED")  # FAILED = red checks, not a crash
        assert serve.poll() is None  # the serve loop survives the run, whatever its result
        if run["state"]["type"] == "FAILED":
            # the API shows the final state before the run's process has logged the RedRun it re-raises;
            # a Ctrl-C in between would put that (expected) traceback after the shutdown line
            logged = time.monotonic() + 30
            while "RedRun:" not in serve_err.read_text(errors="replace") and time.monotonic() < logged:
                time.sleep(0.2)

        serve.send_signal(signal.SIGINT)  # Ctrl-C
        rc = serve.wait(timeout=STOP_TIMEOUT_S)
        stderr = serve_err.read_text(errors="replace")
        assert rc in (0, 130), stderr[-2000:]
        # the red run (planted data errors) is re-raised by Prefect's engine as our RedRun and logged once;
        # shutting down on Ctrl-C must not print anything of the kind
        assert "Unexpected result for failed state" not in stderr
        shutdown = stderr[stderr.find("Pausing all deployments") :]
        assert "Pausing all deployments" in stderr and "Traceback" not in shutdown, stderr[-3000:]
    finally:
        _stop(serve)
    with pytest.raises(httpx.HTTPError):  # the local Prefect server stopped with serve
        httpx.get(f"{api_url}/health", timeout=2)

    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT form, status, warehouse_count, error FROM ops.sync_runs ORDER BY started"
    ).fetchall()
    con.close()
    # the tick synced the 20 demo households (planted data errors make it a warning, not a failure);
    # a next tick may have begun just before Ctrl-C, so only the first run is checked
    assert rows and {r[0] for r in rows} == {"household_survey"}
    assert rows[0][1] in ("success", "warning") and rows[0][2] == 20, rows


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "serving"])
def test_serve_in_the_background_stops_on_sigterm(server, tmp_path, when):
    """`kill <pid>` (SIGTERM: what systemd and `docker stop` send, and the way to stop a `serve` started in
    a shell's background, which ignores Ctrl-C) exits cleanly and stops the local Prefect server, also while
    `serve` is still starting (before Prefect's runner handles SIGTERM, the signal used to kill `serve` and
    leave that server running)."""
    write_household_form(server, tmp_path / "forms", cron="0 3 * * *")  # no tick while the test runs
    env = _base_env(tmp_path, api_url="")
    del env["PREFECT_API_URL"]
    (tmp_path / "prefect").mkdir()
    serve_err = tmp_path / "serve.err"
    serve = None
    try:
        with serve_err.open("wb") as err:
            serve = subprocess.Popen(
                [str(Path(sys.executable).parent / "kobo-etl"), "serve"],
                env={**env, **demo_env(server, tmp_path)},
                stdout=err,
                stderr=err,
                cwd=tmp_path,
                start_new_session=True,
            )
        api_url = _local_server_url(serve, serve_err)
        if when == "serving":
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while "being served" not in serve_err.read_text(errors="replace") and time.monotonic() < deadline:
                assert serve.poll() is None, serve_err.read_text(errors="replace")[-2000:]
                time.sleep(0.5)
            time.sleep(2)  # Prefect's runner handles SIGTERM once it polls
        serve.send_signal(signal.SIGTERM)
        rc = serve.wait(timeout=STOP_TIMEOUT_S)
        stderr = serve_err.read_text(errors="replace")
        assert rc == 0, stderr[-2000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        if when == "serving":
            assert "SIGTERM received, initiating graceful shutdown" in stderr
            assert "All deployments have been paused" in stderr
        else:
            assert "stopped (SIGTERM) while starting" in stderr
    finally:
        _stop(serve)
    with pytest.raises(httpx.HTTPError):  # the local Prefect server stopped with serve
        httpx.get(f"{api_url}/health", timeout=2)
