"""The data-quality tables (`ops.dq_runs`, `ops.dq_results`, `ops.dq_failed_rows`) and `_dq_status` on rows.

The warehouse sits below `expectations`, so check results arrive as plain mappings or any object with the
same attribute names (e.g. `expectations.CheckResult`), and failing rows as an Arrow table or a DuckDB table
with the columns of `expectations.validate.FAILED_ROWS_SCHEMA`: counts, ids and pseudonyms only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from warehouse.load import DELETED_AT, existing_columns
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
_ROW_COLUMNS = _FAILED_COLUMNS[2:]  # what a check gives for each failing row
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
    failed_rows: pa.Table | None = None,
    *,
    rows_checked: int | None = None,
    run_id: str | None = None,
    started: datetime | None = None,
    failed_rows_table: str | None = None,
) -> dict[str, Any]:
    """Record one form's checks: a run row, one result row per check, one row per failing submission.

    Args:
        results: items with `expectation` (or `check`), `kind`, `column`, `severity`, `success`,
            `unexpected_count`, `unexpected_percent`, `description`.
        failed_rows: an Arrow table with `submission_id`, `rule`, `severity` and, when known, `column`,
            `enumerator` and `row_key` (the repeat row's `_key`, for a check on a repeat table); a missing
            column is NULL. It goes into DuckDB as it is: no Python object per row.
        rows_checked: how many submissions were checked.
        failed_rows_table: a table (e.g. a `FailedRows` the checks filled as they ran) whose rows, with all
            the columns of `failed_rows`, are failing rows too: copied within DuckDB, none of them in Python
            (a sync's run has ≈ 0.8 per submission in the demo data, most from the HFCs).

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
        if failed_rows is not None:
            _insert_failed_rows(con, "ops.dq_failed_rows", failed_rows, (run_id, form))
        if failed_rows_table is not None:
            cols = ", ".join(quote_ident(n) for n in _FAILED_COLUMNS)
            values = ", ".join(quote_ident(n) for n in _ROW_COLUMNS)
            con.execute(
                f"INSERT INTO ops.dq_failed_rows ({cols}) SELECT ?, ?, {values} FROM {failed_rows_table}",
                [run_id, form],
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return run


def _insert_failed_rows(
    con: duckdb.DuckDBPyConnection, target: str, rows: pa.Table, run: tuple[str, str] | None = None
) -> None:
    """Arrow failing rows into `target` (a missing column is NULL), with `run` = (run_id, form) in front for
    `ops.dq_failed_rows`."""
    if not rows.num_rows:
        return
    have = set(rows.column_names)
    values = ", ".join(quote_ident(n) if n in have else f"NULL AS {quote_ident(n)}" for n in _ROW_COLUMNS)
    cols = ", ".join(quote_ident(n) for n in (_FAILED_COLUMNS if run else _ROW_COLUMNS))
    con.complete()  # DuckDB 2 registers nothing while an earlier result is unread
    con.register("_dq_failed_in", rows)
    try:
        con.execute(
            f"INSERT INTO {target} ({cols}) SELECT {'?, ?, ' if run else ''}{values} FROM _dq_failed_in",
            list(run or ()),
        )
    finally:
        con.unregister("_dq_failed_in")


class FailedRows:
    """A checks run's failing rows, put in a DuckDB temp table as each check finds them, for `write_dq_run`'s
    `failed_rows_table`: held in Python until then, they grew with N (≈ 0.8 per submission in the demo data,
    ≈ 40 bytes each: ≈ 64 MB at 2 000 000 while GX ran)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, form: str) -> None:
        self._con = con
        self.table = "temp.main." + quote_ident(f"_dq_failed_rows_{form}")
        columns = ", ".join(
            f"{quote_ident(n)} {'BIGINT' if n == 'submission_id' else 'VARCHAR'}" for n in _ROW_COLUMNS
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE {self.table} ({columns})")

    def add(self, rows: pa.Table) -> None:
        """Add failing rows, as `write_dq_run`'s `failed_rows` takes them."""
        _insert_failed_rows(self._con, self.table, rows)

    def close(self) -> None:
        self._con.execute(f"DROP TABLE IF EXISTS {self.table}")


def earlier_failures(
    con: duckdb.DuckDBPyConnection, form: str, checks: Iterable[str], rechecked: str
) -> pa.Table:
    """The failing rows of `checks` in the form's latest checks run for the submissions still stored and not
    in the table `rechecked` (its `_id`s were loaded, and so checked, again in this run).

    The form's rules run on the rows a sync loads; a failure found on an earlier run's rows still stands
    until that submission changes, so each run carries these forward.
    """
    ensure_quality_tables(con)
    last = con.execute(
        "SELECT run_id FROM ops.dq_runs WHERE form = ? ORDER BY started DESC LIMIT 1", [form]
    ).fetchone()
    names = sorted(set(checks))
    table = qualified(form, "submissions")
    columns = ", ".join(quote_ident(c) for c in _ROW_COLUMNS)
    if last is None or not names:
        return _arrow(con, f"SELECT {columns} FROM ops.dq_failed_rows LIMIT 0")
    soft_deleted = DELETED_AT in existing_columns(con, form).get("submissions", {})
    live = f" WHERE {DELETED_AT} IS NULL" if soft_deleted else ""
    # as Arrow, not Python rows: at 500 000 submissions hundreds of thousands of rows can fail
    return _arrow(
        con,
        f"SELECT {columns} FROM ops.dq_failed_rows WHERE run_id = ? AND form = ? AND list_contains(?, rule) "
        f"AND submission_id NOT IN (SELECT _id FROM {rechecked}) "
        f"AND submission_id IN (SELECT _id FROM {table}{live})",
        [last[0], form, names],
    )


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> pa.Table:
    con.complete()  # `con.sql` refuses to start while a result of `execute` is unread
    return con.sql(sql, params=params or []).to_arrow_table()


def flag_rows(con: duckdb.DuckDBPyConnection, slug: str, run_id: str) -> dict[str, int]:
    """Set `_dq_status` ('error', 'warning' or 'ok') on `"<slug>".submissions`, adding the column if missing.

    The statuses come from the run's rows in `ops.dq_failed_rows` (`write_dq_run` first): an `error` row
    wins over a `warning`; a submission with neither is 'ok'. Returns the number of rows per status.
    """
    table = qualified(slug, "submissions")
    col = quote_ident(STATUS_COLUMN)
    con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {col} VARCHAR")
    # joined in DuckDB: the failing ids never come to Python (≈ 300 000 of them at 500 000 submissions)
    failed = "SELECT submission_id FROM ops.dq_failed_rows WHERE run_id = ? AND form = ? AND severity = ?"
    con.execute(
        f"UPDATE {table} SET {col} = CASE WHEN _id IN ({failed}) THEN 'error' "
        f"WHEN _id IN ({failed}) THEN 'warning' ELSE 'ok' END",
        [run_id, slug, "error", run_id, slug, "warning"],
    )
    rows = con.execute(f"SELECT {col}, count(*) FROM {table} GROUP BY 1").fetchall()
    return {str(s): int(n) for s, n in rows}
