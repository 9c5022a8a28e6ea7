"""The data-quality tables (`ops.dq_runs`, `ops.dq_results`, `ops.dq_failed_rows`) and `_dq_status` on rows.

The warehouse sits below `expectations`, so results arrive as plain mappings or any object with the same
attribute names (e.g. `expectations.CheckResult`, `FailedRow`): counts, ids and pseudonyms only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from warehouse.sql import qualified, quote_ident

DQ_DDL = (
    "CREATE SCHEMA IF NOT EXISTS ops",
    """CREATE TABLE IF NOT EXISTS ops.dq_runs (
        run_id VARCHAR NOT NULL, form VARCHAR NOT NULL, started TIMESTAMPTZ NOT NULL,
        success BOOLEAN NOT NULL,
        errors_failed INTEGER NOT NULL, warnings_failed INTEGER NOT NULL, rows_checked BIGINT,
        PRIMARY KEY (run_id, form))""",
    """CREATE TABLE IF NOT EXISTS ops.dq_results (
        run_id VARCHAR NOT NULL, form VARCHAR NOT NULL, "check" VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        "column" VARCHAR, severity VARCHAR NOT NULL, success BOOLEAN NOT NULL, unexpected_count BIGINT,
        unexpected_percent DOUBLE, description VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS ops.dq_failed_rows (
        run_id VARCHAR NOT NULL, form VARCHAR NOT NULL, submission_id BIGINT NOT NULL, rule VARCHAR NOT NULL,
        "column" VARCHAR, severity VARCHAR NOT NULL, enumerator VARCHAR, row_key VARCHAR)""",
    # a warehouse created before repeat tables were checked: the repeat row's `_key` (NULL for submissions)
    "ALTER TABLE ops.dq_failed_rows ADD COLUMN IF NOT EXISTS row_key VARCHAR",
)
_FAILED_COLUMNS = ("run_id", "form", "submission_id", "rule", "column", "severity", "enumerator", "row_key")
STATUS_COLUMN = "_dq_status"


def ensure_quality_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the three `ops.dq_*` tables if missing (idempotent)."""
    for ddl in DQ_DDL:
        con.execute(ddl)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def write_dq_run(
    con: duckdb.DuckDBPyConnection,
    form: str,
    results: Iterable[Any],
    failed_rows: Iterable[Any] = (),
    *,
    rows_checked: int | None = None,
    run_id: str | None = None,
    started: datetime | None = None,
) -> dict[str, Any]:
    """Record one form's checks: a run row, one result row per check, one row per failing submission.

    Args:
        results: items with `expectation` (or `check`), `kind`, `column`, `severity`, `success`,
            `unexpected_count`, `unexpected_percent`, `description`.
        failed_rows: items with `submission_id`, `rule`, `column`, `severity`, `enumerator` and, for a
            check on a repeat table, `row_key` (the repeat row's `_key`).
        rows_checked: how many submissions were checked.

    Returns:
        The run row as a dict (`run_id`, `success`, `errors_failed`, `warnings_failed`, ...). `success` is
        False when any `error` check failed: the flow uses it for its final state and exit code.
    """
    ensure_quality_tables(con)
    run_id = run_id or uuid.uuid4().hex
    started = started or datetime.now(UTC)
    res_rows = []
    errors = warnings = 0
    for r in results:
        sev, ok = str(_get(r, "severity", "error")), bool(_get(r, "success"))
        if not ok and sev == "error":
            errors += 1
        elif not ok and sev == "warning":
            warnings += 1
        res_rows.append(
            (
                run_id,
                form,
                str(_get(r, "expectation") or _get(r, "check")),
                str(_get(r, "kind", "gx")),
                _get(r, "column"),
                sev,
                ok,
                _get(r, "unexpected_count"),
                _get(r, "unexpected_percent"),
                _get(r, "description"),
            )
        )
    fr_rows = [
        (
            run_id,
            form,
            int(_get(f, "submission_id")),
            str(_get(f, "rule")),
            _get(f, "column"),
            str(_get(f, "severity", "error")),
            _get(f, "enumerator"),
            _get(f, "row_key"),
        )
        for f in failed_rows
    ]
    run = {
        "run_id": run_id,
        "form": form,
        "started": started,
        "success": errors == 0,
        "errors_failed": errors,
        "warnings_failed": warnings,
        "rows_checked": rows_checked,
    }
    con.execute("BEGIN")
    try:
        con.execute("INSERT INTO ops.dq_runs VALUES (?, ?, ?, ?, ?, ?, ?)", list(run.values()))
        if res_rows:
            con.executemany("INSERT INTO ops.dq_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", res_rows)
        if fr_rows:
            names = list(_FAILED_COLUMNS)
            arrow = pa.table(
                {n: [r[i] for r in fr_rows] for i, n in enumerate(names)},
                schema=pa.schema([(n, pa.int64() if n == "submission_id" else pa.string()) for n in names]),
            )
            con.register("_dq_failed_in", arrow)
            cols = ", ".join(quote_ident(n) for n in names)
            con.execute(f"INSERT INTO ops.dq_failed_rows ({cols}) SELECT {cols} FROM _dq_failed_in")
            con.unregister("_dq_failed_in")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return run


def failed_ids_by_severity(failed_rows: Iterable[Any]) -> dict[str, set[int]]:
    """`{'error': {ids}, 'warning': {ids}}` from failed-row items (other severities are ignored)."""
    out: dict[str, set[int]] = {"error": set(), "warning": set()}
    for f in failed_rows:
        sev = str(_get(f, "severity", "error"))
        if sev in out:
            out[sev].add(int(_get(f, "submission_id")))
    return out


def flag_rows(
    con: duckdb.DuckDBPyConnection,
    slug: str,
    failed_ids_by_severity: Mapping[str, Iterable[int]],
    *,
    scope_ids: Iterable[int] | None = None,
) -> dict[str, int]:
    """Set `_dq_status` ('error', 'warning' or 'ok') on `"<slug>".submissions`, adding the column if missing.

    Rows in `scope_ids` (all rows when None) are reset to 'ok' first, then warnings, then errors win.
    Returns the number of rows per status within the scope.
    """
    table = qualified(slug, "submissions")
    col = quote_ident(STATUS_COLUMN)
    con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {col} VARCHAR")
    # ids go in as registered Arrow tables: a list parameter of 500 000 ids cost ≈ 1 GB and seconds
    registered: list[str] = []

    def ids_view(ids: set[int]) -> str:
        name = f"__kobo_etl_flag_{uuid.uuid4().hex}"
        con.register(name, pa.table({"_id": pa.array(sorted(ids), type=pa.int64())}))
        registered.append(name)
        return name

    try:
        scope = "TRUE"
        if scope_ids is not None:
            scope = f"_id IN (SELECT _id FROM {ids_view({int(i) for i in scope_ids})})"
        con.execute(f"UPDATE {table} SET {col} = 'ok' WHERE {scope}")
        for status in ("warning", "error"):
            ids = {int(i) for i in failed_ids_by_severity.get(status, ())}
            if ids:
                failed = ids_view(ids)
                con.execute(
                    f"UPDATE {table} SET {col} = ? WHERE _id IN (SELECT _id FROM {failed}) AND {scope}",
                    [status],
                )
        rows = con.execute(f"SELECT {col}, count(*) FROM {table} WHERE {scope} GROUP BY 1").fetchall()
    finally:
        for name in registered:
            con.unregister(name)
    return {str(s): int(n) for s, n in rows}
