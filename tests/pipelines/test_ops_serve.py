"""`kobo-etl serve`: deployments built from the form configs; one run served under prefect_test_harness."""

from __future__ import annotations

import asyncio

import duckdb
import pytest
from ops_helpers import demo_env, write_household_form

from config import load_form_configs
from connectors.demo_server import DemoKoboServer
from pipelines.serve import build_deployments


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


def test_one_served_run_under_the_test_harness(server, tmp_path, monkeypatch):
    """The served deployment picks up a run due now, runs it in a subprocess and the runner survives."""
    from prefect.deployments import run_deployment
    from prefect.runner import Runner
    from prefect.testing.utilities import prefect_test_harness

    for k, v in demo_env(server, tmp_path).items():
        monkeypatch.setenv(k, v)
    forms = load_form_configs(tmp_path / "forms")
    with prefect_test_harness(server_startup_timeout=60):
        (dep,) = build_deployments(forms)
        runner = Runner(query_seconds=1, limit=1)

        async def tick():
            await runner.aadd_deployment(dep)
            run = await run_deployment("sync-form/sync-household_survey", timeout=0)
            await runner.start(run_once=True)
            from prefect.client.orchestration import get_client

            async with get_client() as client:
                return await client.read_flow_run(run.id)

        flow_run = asyncio.run(tick())
    # the demo data carry planted errors: the run is red (Failed), and the runner came back normally
    assert flow_run.state is not None and flow_run.state.is_failed()
    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    rows = con.execute("SELECT status, warehouse_count FROM ops.sync_runs").fetchall()
    con.close()
    assert len(rows) == 1 and rows[0][1] == 20  # the served run synced the form
