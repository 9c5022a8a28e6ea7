"""`kobo-etl status`: per configured form, what the last runs did — read from the warehouse, read-only.

Nothing here calls the KoBo server unless asked (`live=True`): the server's count comes from the last
run in `ops.sync_runs`. DuckDB cannot open a file read-only while another process writes it; then the
analysts' snapshot `data/exports/warehouse.duckdb` is read instead, and the output says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from config import EtlError, FormConfig, Settings
from warehouse import WarehouseError, WarehouseLocked, connect, count_submissions

log = logging.getLogger("kobo_etl.status")

#: Run statuses that mean the data were synced (a 'warning' run loaded its data; its checks or counts differ).
SYNCED = ("success", "warning")


@dataclass
class FormStatus:
    """One form's state. Counts, times, check names — never a submission value."""

    form: str
    name: str = ""
    schedule: str = ""
    last_run: datetime | None = None
    last_result: str = "never run"
    last_error: str | None = None
    red: bool = False
    rows: int | None = None
    last_success: datetime | None = None
    since_success_s: float | None = None
    pending_privacy: int = 0
    checks_errors: int = 0
    checks_warnings: int = 0
    failing_checks: list[str] = field(default_factory=list)
    server_count: int | None = None
    warehouse_count: int | None = None
    live_server_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("last_run", "last_success"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


@dataclass
class StatusReport:
    """Every form's status and where it was read from."""

    forms: list[FormStatus]
    source: Path | None
    note: str | None = None  # e.g. "the warehouse is in use; showing the snapshot of …"
    generated: datetime = field(default_factory=lambda: datetime.now(UTC))
    reports_dir: Path = Path("data/reports")  # where to send the reader (KOBO_ETL_DATA_DIR moves them)
    forms_dir: Path = Path("config/forms")

    @property
    def red(self) -> bool:
        return any(f.red for f in self.forms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated": self.generated.isoformat(),
            "source": str(self.source) if self.source else None,
            "note": self.note,
            "red": self.red,
            "forms": [f.to_dict() for f in self.forms],
        }


def open_read_only(settings: Settings) -> tuple[duckdb.DuckDBPyConnection | None, Path | None, str | None]:
    """The warehouse read-only; the exports snapshot when a writer holds it; (None, None, note) if neither."""
    live = settings.warehouse_path
    snapshot = settings.data_dir / "exports" / "warehouse.duckdb"
    if not live.exists():
        return None, None, f"no warehouse yet at {live}: run `kobo-etl sync` first"
    try:
        return connect(live, read_only=True, memory_limit=settings.duckdb_memory_limit), live, None
    except WarehouseLocked as exc:
        if snapshot.exists():
            con = connect(snapshot, read_only=True, memory_limit=settings.duckdb_memory_limit)
            return con, snapshot, (
                f"the warehouse is in use by another program ({exc}); showing the last published snapshot "
                f"{snapshot}, which may be older than the running sync"
            )
        return None, None, f"the warehouse is in use by another program and there is no snapshot: {exc}"
    except WarehouseError as exc:
        return None, None, str(exc)


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def form_status(
    con: duckdb.DuckDBPyConnection, form: FormConfig, now: datetime | None = None
) -> FormStatus:
    """One form's status from `ops.sync_runs`, `ops.dq_runs`/`ops.dq_results`, pending privacy decisions."""
    now = now or datetime.now(UTC)
    slug = form.slug
    st = FormStatus(form=slug, name=form.name, schedule=f"{form.schedule.cron} {form.schedule.timezone}"
                    + ("" if form.schedule.active else " (paused)"))
    if _table_exists(con, "ops", "sync_runs"):
        last = con.execute(
            """SELECT started, status, error, checks_failed, server_count, warehouse_count
               FROM ops.sync_runs WHERE form = ? ORDER BY started DESC LIMIT 1""",
            [slug],
        ).fetchone()
        if last:
            st.last_run = _aware(last[0])
            st.last_result, st.last_error = last[1], last[2]
            st.red = last[1] == "failed" or bool(last[3])
            if last[1] == "running":
                st.red = False
        counted = con.execute(
            """SELECT started, server_count, warehouse_count FROM ops.sync_runs
               WHERE form = ? AND status IN ('success', 'warning') ORDER BY started DESC LIMIT 1""",
            [slug],
        ).fetchone()
        if counted:
            st.last_success = _aware(counted[0])
            if st.last_success is not None:  # `started` is NOT NULL; the check only narrows the type
                st.since_success_s = (now - st.last_success).total_seconds()
            st.server_count, st.warehouse_count = counted[1], counted[2]
    if _table_exists(con, "ops", "pending_privacy_decisions"):
        row = con.execute(
            "SELECT count(*) FROM ops.pending_privacy_decisions WHERE form = ?", [slug]
        ).fetchone()
        st.pending_privacy = int(row[0]) if row else 0
    if _table_exists(con, "ops", "dq_runs"):
        dq = con.execute(
            "SELECT run_id, errors_failed, warnings_failed FROM ops.dq_runs WHERE form = ? "
            "ORDER BY started DESC LIMIT 1",
            [slug],
        ).fetchone()
        if dq:
            st.checks_errors, st.checks_warnings = int(dq[1]), int(dq[2])
            if _table_exists(con, "ops", "dq_results"):
                st.failing_checks = [
                    r[0]
                    for r in con.execute(
                        """SELECT "check" FROM ops.dq_results WHERE run_id = ? AND form = ? AND NOT success
                           ORDER BY severity = 'error' DESC, "check" """,
                        [dq[0], slug],
                    ).fetchall()
                ]
    try:
        st.rows = count_submissions(con, slug)
    except duckdb.Error:
        st.rows = None
    return st


def collect_status(
    settings: Settings,
    forms: Sequence[FormConfig],
    *,
    live: bool = False,
    now: datetime | None = None,
) -> StatusReport:
    """Every form's status. `live=True` also asks the KoBo server for its current counts."""
    con, source, note = open_read_only(settings)
    if con is None:
        report = StatusReport([FormStatus(form=f.slug, name=f.name) for f in forms], None, note)
    else:
        with con:
            report = StatusReport([form_status(con, f, now) for f in forms], source, note)
    report.reports_dir, report.forms_dir = settings.data_dir / "reports", settings.forms_dir
    if live:
        from pipelines.run import make_client

        client = make_client(settings)
        for st, form in zip(report.forms, forms, strict=True):
            try:
                st.live_server_count = client.count_submissions(form.asset_uid)
            except EtlError as exc:
                log.warning("%s: could not ask the server for its count: %s", form.slug, exc)
    return report


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _result(st: FormStatus) -> str:
    if st.last_result == "failed":
        return "FAILED"
    if st.red:
        return "RED"
    return {"success": "ok"}.get(st.last_result, st.last_result)


def table_rows(report: StatusReport) -> list[dict[str, str]]:
    """The report as plain strings, one dict per form, for `print_table`."""
    out = []
    for st in report.forms:
        server = st.live_server_count if st.live_server_count is not None else st.server_count
        counts = "" if server is None else f"{server} / {st.rows if st.rows is not None else '?'}"
        checks = f"{st.checks_errors} err, {st.checks_warnings} warn" if st.last_run else ""
        out.append({
            "form": st.form,
            "last run": st.last_run.strftime("%Y-%m-%d %H:%M UTC") if st.last_run else "never",
            "result": _result(st),
            "rows": "" if st.rows is None else str(st.rows),
            "last good sync": _ago(st.since_success_s),
            "privacy todo": str(st.pending_privacy) if st.pending_privacy else "",
            "checks": checks,
            "server / warehouse": counts,
        })
    return out


TABLE_COLUMNS = ("form", "last run", "result", "rows", "last good sync", "privacy todo", "checks",
                 "server / warehouse")


def render_text(report: StatusReport) -> str:
    """A readable table and, below it, what needs attention."""
    rows = table_rows(report)
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in TABLE_COLUMNS}
    lines = []
    if report.note:
        lines += [f"note: {report.note}", ""]
    lines.append("  ".join(c.ljust(widths[c]) for c in TABLE_COLUMNS).rstrip())
    lines.append("  ".join("-" * widths[c] for c in TABLE_COLUMNS))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in TABLE_COLUMNS).rstrip() for r in rows]
    attention = []
    for st in report.forms:
        if st.last_result == "failed" and st.last_error:
            attention.append(f"{st.form}: last run failed — {st.last_error}")
        if st.checks_errors:
            names = ", ".join(st.failing_checks[:5]) + ("…" if len(st.failing_checks) > 5 else "")
            attention.append(f"{st.form}: failing checks: {names} — see {report.reports_dir / st.form}.html")
        if st.pending_privacy:
            attention.append(
                f"{st.form}: {st.pending_privacy} question(s) withheld until you decide their privacy "
                f"treatment in {report.forms_dir / st.form}.yaml"
            )
        server = st.live_server_count if st.live_server_count is not None else st.server_count
        if server is not None and st.rows is not None and server != st.rows:
            attention.append(f"{st.form}: the server has {server} submissions, the warehouse {st.rows}")
    if attention:
        lines += ["", "Needs attention:"] + [f"  {a}" for a in attention]
    if report.source is not None:
        lines += ["", f"(read from {report.source})"]
    return "\n".join(lines)
