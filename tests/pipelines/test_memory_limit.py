"""DuckDB's memory cap is a setting (KOBO_ETL_DUCKDB_MEMORY_LIMIT), and a sync that outgrows it fails with
an error naming the form, the step and the setting, while the other forms and the data already loaded stay."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from sync_helpers import SLUG, fast_client_for, query, sync_settings

from config import ConfigError, load_settings
from connectors.demo_server import DemoKoboServer
from pipelines.run import run_sync
from warehouse import connect
from warehouse.db import lowered_memory_limit, part_of_memory_limit


def limit_of(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert row is not None
    return str(row[0])


def test_the_setting_is_read_checked_and_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOBO_ETL_DUCKDB_MEMORY_LIMIT", raising=False)
    assert load_settings().duckdb_memory_limit == "256MiB"
    monkeypatch.setenv("KOBO_ETL_DUCKDB_MEMORY_LIMIT", "1GiB")
    assert load_settings().duckdb_memory_limit == "1GiB"
    for wrong in ("lots", "256", "-1GB", "1 GiB of RAM"):
        monkeypatch.setenv("KOBO_ETL_DUCKDB_MEMORY_LIMIT", wrong)
        with pytest.raises(ConfigError, match="KOBO_ETL_DUCKDB_MEMORY_LIMIT.*256MiB, 1GB or 50%"):
            load_settings()
    with connect(tmp_path / "w.duckdb") as con:
        assert limit_of(con) == "256.0 MiB"
    with connect(tmp_path / "w.duckdb", memory_limit="0.5GiB") as con:
        assert limit_of(con) == "512.0 MiB"


def test_part_of_the_limit_as_duckdb_shows_it() -> None:
    assert part_of_memory_limit("256.0 MiB") == "131072KiB"
    assert part_of_memory_limit("1.5 GiB") == f"{3 * 2**30 // 4 // 1024}KiB"
    assert part_of_memory_limit("512.0 KiB") == "256KiB"
    assert part_of_memory_limit("lots") is None and part_of_memory_limit("12 parsecs") is None
    assert part_of_memory_limit("256.0 MiB", 0.75) == "196608KiB"


def test_a_block_runs_under_half_the_limit_and_the_configured_one_is_set_again(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb", memory_limit="300MiB") as con:
        with lowered_memory_limit(con, "300MiB") as inside:
            assert (inside, limit_of(con)) == ("153600KiB", "150.0 MiB")
            with lowered_memory_limit(con, inside) as deeper:  # publish's snapshot copy, inside the outputs
                assert (deeper, limit_of(con)) == ("76800KiB", "75.0 MiB")
            assert limit_of(con) == "150.0 MiB"
        assert limit_of(con) == "300.0 MiB"
        with pytest.raises(ZeroDivisionError), lowered_memory_limit(con):  # set back when the block fails
            assert limit_of(con) == "150.0 MiB"
            _ = 1 / 0
        assert limit_of(con) == "300.0 MiB"


def test_a_limit_that_cannot_be_lowered_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warehouse.db as db

    # DuckDB refuses to set this
    monkeypatch.setattr(db, "part_of_memory_limit", lambda shown, part: "half of it")
    with connect(tmp_path / "w.duckdb") as con, lowered_memory_limit(con, "256MiB") as inside:
        assert (inside, limit_of(con)) == ("256MiB", "256.0 MiB")


def test_load_checks_and_outputs_run_under_parts_of_the_cap_with_all_of_it_back_between_them(
    fresh_server: DemoKoboServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load writes the warehouse and the checks and outputs scan it: under the full cap DuckDB would keep
    it all as its cache (bench/README.md), so their memory would grow with the number of submissions."""
    import pipelines.checks as checks
    import pipelines.run as run
    import pipelines.sync as sync

    seen: list[tuple[str, str]] = []

    def spy(module: object, name: str) -> None:
        real = getattr(module, name)

        def call(con: duckdb.DuckDBPyConnection, *args: object, **kwargs: object) -> object:
            seen.append((name, limit_of(con)))
            return real(con, *args, **kwargs)

        monkeypatch.setattr(module, name, call)

    spied = ((sync, "load_pages"), (sync, "check_form"), (run, "publish_outputs"), (checks, "publish"))
    for module, name in spied:
        spy(module, name)
    result, _ = sync_under(fresh_server, tmp_path / "halved", "64MiB")
    assert not result.failures
    assert seen == [("load_pages", "48.0 MiB"), ("check_form", "32.0 MiB"), ("publish_outputs", "64.0 MiB"),
                    ("publish", "32.0 MiB")]


def sync_under(server: DemoKoboServer, root: Path, limit: str):  # noqa: ANN201 — (RunResult, Settings)
    settings = sync_settings(server, root, duckdb_memory_limit=limit)
    result = run_sync(settings, [SLUG], client=fast_client_for(settings), progress=False, alerts=False)
    return result, settings


@pytest.mark.parametrize(
    ("limit", "step", "share", "detail", "kept"),
    [
        # the submissions were loaded before the checks ran out: they stay, and so does the watermark
        ("8MiB", "checks", "; this step runs under half of it", "", 120),
        # the load's own error is kept as the detail; its group of pages was rolled back
        ("4MiB", "load", "; this step runs under three quarters of it", ": loading 120 submissions into", 0),
        # nothing loaded yet: the tables exist, the labels could not be written
        ("2MiB", "setup of the form's tables and labels", "", ": writing the labels of form", 0),
    ],
)
def test_out_of_memory_names_the_step_and_the_setting(
    fresh_server: DemoKoboServer, tmp_path: Path, limit: str, step: str, share: str, detail: str, kept: int
) -> None:
    result, settings = sync_under(fresh_server, tmp_path / "small", limit)
    message = result.failures[SLUG]
    assert message.startswith(f"DuckDB ran out of memory in the {step} (its cap is {limit}{share}){detail}")
    assert "set KOBO_ETL_DUCKDB_MEMORY_LIMIT higher" in message
    assert result.error_types[SLUG] == "WarehouseOutOfMemory" and result.red
    wh = settings.warehouse_path
    assert query(wh, "SELECT status, error FROM ops.sync_runs") == [("failed", message)]
    assert query(wh, f'SELECT count(*) FROM "{SLUG}".submissions') == [(kept,)]
    assert query(wh, "SELECT count(*) FROM ops.watermarks WHERE form = ?", [SLUG]) == [(1 if kept else 0,)]


def test_a_larger_cap_then_syncs_and_checks(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    result, settings = sync_under(fresh_server, tmp_path / "ok", "64MiB")
    assert not result.failures and [s.status for s in result.summaries] == ["warning"]
    assert query(settings.warehouse_path, f'SELECT count(*) FROM "{SLUG}".submissions') == [(120,)]
    (checks,) = query(settings.warehouse_path, "SELECT count(*) FROM ops.dq_results")[0]
    assert checks > 0


def test_a_sync_keeps_only_examples_of_the_hfc_failing_rows_once_written(
    fresh_server: DemoKoboServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every failing row is in ops.dq_failed_rows, where the report reads them; what the run holds on to for
    the report is a few ids per check and the count (all of them grew with the number of submissions)."""
    import pipelines.checks as checks

    monkeypatch.setattr(checks, "MAX_IDS", 3)
    settings = sync_settings(fresh_server, tmp_path / "examples")
    result = run_sync(settings, [SLUG], client=fast_client_for(settings), progress=False, alerts=False)
    (summary,) = result.summaries
    assert summary.hfc is not None
    failing = {r.check: r for r in summary.hfc.results if r.count}
    assert any(r.count > 3 for r in failing.values())
    sql = "SELECT rule, count(*) FROM ops.dq_failed_rows GROUP BY rule"
    written = dict(query(settings.warehouse_path, sql))
    for check, r in failing.items():
        assert (r.rows.num_rows, written[check]) == (min(r.count, 3), r.count), check


def test_the_hfc_failing_rows_are_let_go_before_gx_runs(
    fresh_server: DemoKoboServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They wait for `write_dq_run` in a DuckDB temp table, not in Python: while GX runs (the checks' peak),
    the HFCs' full report is gone and only its examples are held; every failing row is still written."""
    import weakref

    import pipelines.checks as checks

    reports: list[weakref.ref] = []
    alive_during_gx: list[bool] = []
    run_hfc, validate_table = checks.run_hfc, checks.validate_table

    def spy_hfc(*args, **kwargs):
        report = run_hfc(*args, **kwargs)
        reports.append(weakref.ref(report))
        return report

    def spy_gx(*args, **kwargs):
        alive_during_gx.append(reports[-1]() is not None)
        return validate_table(*args, **kwargs)

    monkeypatch.setattr(checks, "MAX_IDS", 3)
    monkeypatch.setattr(checks, "run_hfc", spy_hfc)
    monkeypatch.setattr(checks, "validate_table", spy_gx)
    settings = sync_settings(fresh_server, tmp_path / "released")
    result = run_sync(settings, [SLUG], client=fast_client_for(settings), progress=False, alerts=False)
    (summary,) = result.summaries
    assert summary.hfc is not None and alive_during_gx and not any(alive_during_gx)
    held = {r.check: r.rows.num_rows for r in summary.hfc.results if r.count}
    assert held and max(held.values()) <= 3
    wh = settings.warehouse_path
    written = dict(query(wh, "SELECT rule, count(*) FROM ops.dq_failed_rows GROUP BY rule"))
    assert {c: written[c] for c in held} == {r.check: r.count for r in summary.hfc.results if r.count}
    # the GX rules' failing rows went through the same table: the run's own (`_id` of this form) are there
    gx = query(wh, "SELECT count(*) FROM ops.dq_failed_rows f JOIN ops.dq_results r "
               "ON f.run_id = r.run_id AND f.rule = r.\"check\" WHERE r.kind = 'gx'")
    failed_gx = query(wh, "SELECT coalesce(sum(unexpected_count), 0) FROM ops.dq_results "
                      "WHERE kind = 'gx' AND NOT success")
    assert gx[0][0] > 0 and gx == failed_gx
