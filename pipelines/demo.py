"""`kobo-etl demo`: start the bundled KoBo server, configure its forms, run the full flow, print where
things are."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from config import DEMO_PSEUDONYMISATION_KEY, load_settings
from config.settings import Settings
from connectors.demo_server import DemoKoboServer
from pipelines.forms import add_form
from pipelines.run import RunResult, make_client, run_sync
from pipelines.sync import SyncSummary

#: The demo household survey's reviewed form config (a realistic privacy policy), shipped with the code.
DEMO_FORM_CONFIG = Path(__file__).resolve().parents[1] / "config" / "demo" / "household_survey.yaml"


def prepare_demo_forms(server: DemoKoboServer, forms_dir: Path) -> list[Path]:
    """Write the demo forms' configs: the household survey's reviewed YAML, and `add-form` for the others."""
    if forms_dir.exists():
        shutil.rmtree(forms_dir)
    forms_dir.mkdir(parents=True)
    household = forms_dir / "household_survey.yaml"
    household.write_text(
        DEMO_FORM_CONFIG.read_text(encoding="utf-8").replace("{{ASSET_UID}}", server.household_uid),
        encoding="utf-8",
    )
    paths = [household]
    client = make_client(load_settings(kobo_url=server.url, kobo_token=server.token))
    for asset in client.iter_assets():  # the real recorded forms the demo server also serves
        uid = asset["uid"]
        if (
            uid != server.household_uid
            and asset.get("has_deployment")
            and asset.get("deployment__submission_count")
        ):
            paths.append(add_form(client, forms_dir, uid))
    return paths


def run_demo(settings: Settings, households: int = 2000, use_prefect: bool = True) -> int:
    """Run the whole pipeline on the demo server; exit code 0 when every form synced."""
    forms_dir = settings.data_dir / "demo" / "forms"
    with DemoKoboServer(households=households, seed=7) as server:
        env = {
            "KOBO_URL": server.url,
            "KOBO_TOKEN": server.token,
            "KOBO_ETL_FORMS_DIR": str(forms_dir),
            "KOBO_ETL_DATA_DIR": str(settings.data_dir),
        }
        if settings.pseudonymisation_key is None:
            env["KOBO_ETL_PSEUDONYMISATION_KEY"] = DEMO_PSEUDONYMISATION_KEY
            print("Using the public DEMO pseudonymisation key (fine for demo data, never for real data).")
        os.environ.update(env)
        prepare_demo_forms(server, forms_dir)
        print(
            f"Demo KoBo server on {server.url}; syncing {households} household submissions and sample forms"
        )
        result = _run_flow() if use_prefect else run_sync(load_settings())
    print_demo_summary(load_settings(), result)
    return 1 if result.failed else 0


def _run_flow() -> RunResult:
    from pipelines.flows import RedRun, sync_all

    state = sync_all(return_state=True)
    payload: Any = state.result(raise_on_failure=False) if state.data is not None else []
    if isinstance(payload, RedRun):  # a red run carries its summaries on the exception
        payload = payload.summaries
    summaries = [SyncSummary(**d) for d in payload] if isinstance(payload, list) else []
    errors = [] if summaries else [state.message or "the flow failed"]
    return RunResult(
        summaries=summaries, errors=errors + [f"{s.form}: {s.error}" for s in summaries if s.error]
    )


def print_demo_summary(settings: Settings, result: RunResult) -> None:
    print()
    print(f"{'form':40} {'status':8} {'submissions':>11}  tables")
    for s in result.summaries:
        print(f"{s.form:40} {s.status:8} {s.warehouse_count or 0:>11}  {', '.join(s.tables)}")
    for e in result.errors:
        print(f"FAILED {e}", file=sys.stderr)
    d = settings.data_dir
    print()
    print(f"Warehouse (DuckDB): {settings.warehouse_path}")
    print(f"Power BI exports:   {d / 'exports'}")
    print(f"Quality reports:    {d / 'reports' / 'index.html'}")
    print(f"Logs:               {d / 'logs'}")
    if any(s.checks_failed for s in result.summaries):
        print(
            "The data-quality checks found the demo's deliberate problems "
            "(short interviews, duplicates, ...):"
        )
        print(f"  open {d / 'reports' / 'index.html'} in a browser")
    copy = d / "exports" / "warehouse.duckdb"
    print("Query the read-only copy, e.g.:")
    print(
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{copy}', read_only=True)"
        ".sql('SELECT admin1, count(*) FROM household_survey.submissions GROUP BY ALL'))\""
    )
