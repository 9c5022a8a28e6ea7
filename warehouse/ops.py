"""The `ops` schema: what the pipeline did (sync runs, quarantine, schema changes, watermarks, deletions,
privacy decisions waiting for a human)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson

RUN_STATUSES = ("running", "success", "failed", "warning")

# the counters a sync run reports; finish_run accepts exactly these (plus server/warehouse counts)
RUN_COUNTS = (
    "fetched", "inserted", "updated", "deleted", "quarantined", "withheld", "schema_changes", "checks_failed",
)

OPS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS ops",
    """CREATE TABLE IF NOT EXISTS ops.sync_runs (
        run_id VARCHAR PRIMARY KEY, form VARCHAR NOT NULL, started TIMESTAMPTZ NOT NULL,
        finished TIMESTAMPTZ,
        status VARCHAR NOT NULL CHECK (status IN ('running', 'success', 'failed', 'warning')),
        fetched BIGINT DEFAULT 0, inserted BIGINT DEFAULT 0, updated BIGINT DEFAULT 0,
        deleted BIGINT DEFAULT 0,
        quarantined BIGINT DEFAULT 0, withheld BIGINT DEFAULT 0, schema_changes BIGINT DEFAULT 0,
        checks_failed BIGINT DEFAULT 0, error VARCHAR, server_count BIGINT, warehouse_count BIGINT,
        duration_s DOUBLE, summary JSON)""",
    """CREATE TABLE IF NOT EXISTS ops.quarantine (
        run_id VARCHAR, form VARCHAR NOT NULL, submission_id BIGINT, table_name VARCHAR, column_name VARCHAR,
        reason VARCHAR, raw_value VARCHAR, recorded_at TIMESTAMPTZ NOT NULL, row_key VARCHAR)""",
    # row_key (`_id` or the repeat row's `_key`) came after the first layout
    "ALTER TABLE ops.quarantine ADD COLUMN IF NOT EXISTS row_key VARCHAR",
    """CREATE TABLE IF NOT EXISTS ops.schema_changes (
        form VARCHAR NOT NULL, version VARCHAR, table_name VARCHAR, column_name VARCHAR,
        change VARCHAR NOT NULL, detail VARCHAR, changed_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ops.watermarks (
        form VARCHAR PRIMARY KEY, last_id BIGINT, updated_at TIMESTAMPTZ NOT NULL)""",
    # when the form's changes were last collected (history poll / manifest sweep), and when the project
    # history was refused (pipelines/sync.py `catch_up`); added after the first layout
    "ALTER TABLE ops.watermarks ADD COLUMN IF NOT EXISTS history_polled_at TIMESTAMPTZ",
    "ALTER TABLE ops.watermarks ADD COLUMN IF NOT EXISTS swept_at TIMESTAMPTZ",
    "ALTER TABLE ops.watermarks ADD COLUMN IF NOT EXISTS history_refused_at TIMESTAMPTZ",
    """CREATE TABLE IF NOT EXISTS ops.deletions (
        form VARCHAR NOT NULL, submission_id BIGINT NOT NULL, seen_missing_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ops.pending_privacy_decisions (
        form VARCHAR NOT NULL, xpath VARCHAR NOT NULL, question_type VARCHAR, reason VARCHAR,
        first_seen TIMESTAMPTZ NOT NULL, last_seen TIMESTAMPTZ NOT NULL, PRIMARY KEY (form, xpath))""",
)


def ensure_ops_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the `ops` schema and its tables if they are missing (idempotent)."""
    for ddl in OPS_DDL:
        con.execute(ddl)


def now_utc() -> datetime:
    return datetime.now(UTC)


def start_run(con: duckdb.DuckDBPyConnection, form: str) -> str:
    """Record a sync run as 'running' and return its id.

    A run of the same form still marked 'running' was killed before it could finish (this process holds the
    only write lock, so it cannot be alive): it is closed as failed, so `kobo-etl status` tells the truth.
    """
    con.execute(
        """UPDATE ops.sync_runs SET status = 'failed', finished = ?,
               error = 'interrupted: the process stopped before the run finished (the next run resumed it)'
           WHERE form = ? AND status = 'running'""",
        [now_utc(), form],
    )
    run_id = uuid.uuid4().hex
    con.execute(
        "INSERT INTO ops.sync_runs (run_id, form, started, status) VALUES (?, ?, ?, 'running')",
        [run_id, form, now_utc()],
    )
    return run_id


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    status: str | None = None,
    server_count: int | None = None,
    warehouse_count: int | None = None,
    summary: Mapping[str, Any] | None = None,
    **counts: int,
) -> str:
    """Close a run with its counters; returns the status written.

    Without an explicit `status`, a run is 'warning' when checks failed or the server and warehouse counts
    differ, else 'success'.

    Raises:
        TypeError: an unknown counter name (a typo would otherwise be silently lost).
        ValueError: an unknown status.
    """
    unknown = sorted(set(counts) - set(RUN_COUNTS))
    if unknown:
        raise TypeError(f"finish_run got unknown counters {unknown}; known: {list(RUN_COUNTS)}")
    if status is None:
        both = server_count is not None and warehouse_count is not None
        mismatch = both and server_count != warehouse_count
        status = "warning" if counts.get("checks_failed", 0) or mismatch else "success"
    if status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {RUN_STATUSES}, not {status!r}")
    # column names come from RUN_COUNTS (checked above), never from the caller's data
    assignments = [f"{name} = ?" for name in counts] + [
        "status = ?", "finished = ?", "server_count = ?", "warehouse_count = ?", "summary = ?",
        "duration_s = epoch(CAST(? AS TIMESTAMPTZ)) - epoch(started)",
    ]
    finished = now_utc()
    summary_json = orjson.dumps(summary, default=str).decode() if summary is not None else None
    con.execute(
        f"UPDATE ops.sync_runs SET {', '.join(assignments)} WHERE run_id = ?",
        [*(int(v) for v in counts.values()), status, finished, server_count, warehouse_count, summary_json,
         finished, run_id],
    )
    return status


def fail_run(con: duckdb.DuckDBPyConnection, run_id: str, error: str) -> None:
    """Mark a run failed with a short error text (the caller passes a message without personal data)."""
    finished = now_utc()
    con.execute(
        """UPDATE ops.sync_runs SET status = 'failed', finished = ?, error = ?,
            duration_s = epoch(CAST(? AS TIMESTAMPTZ)) - epoch(started) WHERE run_id = ?""",
        [finished, error[:4000], finished, run_id],
    )


def upsert_pending_privacy(
    con: duckdb.DuckDBPyConnection, form: str, rows: Iterable[Mapping[str, Any]]
) -> int:
    """Record questions whose privacy treatment needs a human decision.

    Each row has `xpath`, `question_type` and `reason`. A question seen again keeps its `first_seen` and
    gets a new `last_seen`, type and reason. Returns the number of rows written.
    """
    now = now_utc()
    params = [[form, r["xpath"], r.get("question_type"), r.get("reason"), now, now] for r in rows]
    if params:
        con.executemany(
            """INSERT INTO ops.pending_privacy_decisions
                   (form, xpath, question_type, reason, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (form, xpath) DO UPDATE SET question_type = excluded.question_type,
                   reason = excluded.reason, last_seen = excluded.last_seen""",
            params,
        )
    return len(params)


def remove_pending_privacy(con: duckdb.DuckDBPyConnection, form: str, xpaths: Iterable[str]) -> int:
    """Take questions off the form's privacy to-do list (the policy now decides them); returns how many
    were listed."""
    listed = {r[0] for r in con.execute(
        "SELECT xpath FROM ops.pending_privacy_decisions WHERE form = ?", [form]
    ).fetchall()}
    done = sorted(listed & set(xpaths))
    if done:  # usually nothing is listed: no write at all, which matters under a tight memory cap
        con.execute(
            "DELETE FROM ops.pending_privacy_decisions WHERE form = ? AND list_contains(?, xpath)",
            [form, done],
        )
    return len(done)


def record_schema_changes(con: duckdb.DuckDBPyConnection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Append (form, version, table_name, column_name, change, detail, changed_at) rows."""
    params = [list(r) for r in rows]
    if params:
        con.executemany("INSERT INTO ops.schema_changes VALUES (?, ?, ?, ?, ?, ?, ?)", params)
