"""Shared helpers for the incremental-sync tests: settings and a forms dir for a demo server, a fast client,
one sync without checks, and a canonical dump of every warehouse table of a form for row-by-row comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from config import DEMO_PSEUDONYMISATION_KEY, load_form_configs, load_settings
from config.settings import Settings
from connectors import KoboClient
from connectors.demo_server import DemoKoboServer
from pipelines.demo import DEMO_FORM_CONFIG
from pipelines.sync import SyncSummary, sync_form
from warehouse import connect

SLUG = "household_survey"
#: Columns whose values legitimately differ between two runs over the same server state.
RUN_SPECIFIC = frozenset({"_dq_status"})
#: ops.quarantine columns that depend on the run, not on the data.
QUARANTINE_RUN_COLUMNS = frozenset({"run_id", "recorded_at"})


def write_household_form(
    server: DemoKoboServer,
    forms_dir: Path,
    *,
    page_size: int = 1000,
    deletions: str = "delete",
    concurrency: int = 3,
    history: bool = True,
) -> Path:
    """Only the demo household survey's reviewed config, with the page size and deletion mode given;
    `history=False` makes every incremental run sweep the manifest (tests of the sweep itself)."""
    forms_dir.mkdir(parents=True, exist_ok=True)
    text = DEMO_FORM_CONFIG.read_text(encoding="utf-8").replace("{{ASSET_UID}}", server.household_uid)
    text = text.replace("page_size: 1000", f"page_size: {page_size}\n  concurrency: {concurrency}\n"
                                           f"  history: {str(history).lower()}")
    text = text.replace("deletions: delete", f"deletions: {deletions}")
    path = forms_dir / f"{SLUG}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def sync_settings(
    server: DemoKoboServer,
    root: Path,
    *,
    page_size: int = 1000,
    deletions: str = "delete",
    concurrency: int = 3,
    history: bool = True,
    **overrides: Any,
) -> Settings:
    """Settings for a warehouse in `root/data` and a forms dir `root/forms` with the household survey."""
    forms_dir = root / "forms"
    write_household_form(server, forms_dir, page_size=page_size, deletions=deletions, concurrency=concurrency,
                         history=history)
    values: dict[str, Any] = {
        "kobo_url": server.url,
        "kobo_token": server.token,
        "data_dir": root / "data",
        "forms_dir": forms_dir,
        "indicators_file": root / "no-indicators.yaml",
        "pseudonymisation_key": DEMO_PSEUDONYMISATION_KEY,
    }
    values.update(overrides)
    return load_settings(**values)


def sync_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables (for a subprocess or the CLI)."""
    assert settings.kobo_token is not None and settings.pseudonymisation_key is not None
    return {
        "KOBO_URL": settings.kobo_url,
        "KOBO_TOKEN": settings.kobo_token.get_secret_value(),
        "KOBO_ETL_DATA_DIR": str(settings.data_dir),
        "KOBO_ETL_FORMS_DIR": str(settings.forms_dir),
        "KOBO_ETL_INDICATORS_FILE": str(settings.indicators_file),
        "KOBO_ETL_PSEUDONYMISATION_KEY": settings.pseudonymisation_key.get_secret_value(),
        "KOBO_ETL_MAX_RETRY_SECONDS": str(settings.max_retry_s),
    }


def fast_client(server: DemoKoboServer, *, max_retry_s: float = 30, max_attempts: int = 8) -> KoboClient:
    """A client whose backoff waits are milliseconds (Retry-After from the server is still honoured)."""
    return KoboClient(server.url, server.token, timeout=10, max_retry_s=max_retry_s,
                      max_attempts=max_attempts,
                      backoff_s=0.01, backoff_max_s=0.05)


def sync_once(
    settings: Settings, *, full: bool = False, client: KoboClient | None = None, progress: Any = None
) -> SyncSummary:
    """One sync of the household survey without GX/HFC checks (they cost seconds and are tested elsewhere)."""
    (form,) = load_form_configs(settings.forms_dir, [SLUG])
    client = client or fast_client_for(settings)
    con = connect(settings.warehouse_path)
    try:
        return sync_form(settings, form, con, client, full=full, checks=False, progress=progress)
    finally:
        con.close()


def fast_client_for(settings: Settings) -> KoboClient:
    assert settings.kobo_token is not None
    return KoboClient(settings.kobo_url, settings.kobo_token, timeout=10, max_retry_s=settings.max_retry_s,
                      backoff_s=0.01, backoff_max_s=0.05)


def form_tables(con: duckdb.DuckDBPyConnection, slug: str = SLUG) -> list[str]:
    """The form's base tables (label views excluded), by name."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? "
        "ORDER BY table_name",
        [slug],
    ).fetchall()
    return [r[0] for r in rows]


def _dump_table(con: duckdb.DuckDBPyConnection, qualified: str, columns: list[str]) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in columns)
    return [tuple(r) for r in con.execute(f"SELECT {cols} FROM {qualified} ORDER BY ALL").fetchall()]


def dump_form(path: Path, slug: str = SLUG, *, ignore: frozenset[str] = RUN_SPECIFIC) -> dict[str, Any]:
    """Every table of the form (and its ops rows) in a canonical order: columns by name, rows sorted.

    Returns {table: (columns, rows)} plus `ops.quarantine` and `ops.deletions` (ids only) and `watermark`.
    """
    con = duckdb.connect(str(path), read_only=True)
    try:
        out: dict[str, Any] = {}
        for table in form_tables(con, slug):
            columns = sorted(
                r[0] for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                    "AND schema_name = ? AND table_name = ?",
                    [slug, table],
                ).fetchall()
                if r[0] not in ignore
            )
            out[table] = (columns, _dump_table(con, f'"{slug}"."{table}"', columns))
        q_cols = sorted(
            r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() "
                "WHERE schema_name = 'ops' AND table_name = 'quarantine'"
            ).fetchall()
            if r[0] not in QUARANTINE_RUN_COLUMNS
        )
        out["ops.quarantine"] = (q_cols, [
            tuple(r) for r in con.execute(
                f"SELECT {', '.join(q_cols)} FROM ops.quarantine WHERE form = ? ORDER BY ALL", [slug]
            ).fetchall()
        ])
        out["watermark"] = con.execute("SELECT last_id FROM ops.watermarks WHERE form = ?", [slug]).fetchall()
        return out
    finally:
        con.close()


def assert_same_form(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Compare two dumps table by table, with a readable first difference."""
    assert sorted(got) == sorted(want), "different tables"
    for table in want:
        if table == "watermark":
            continue
        g, w = got[table], want[table]
        assert g[0] == w[0], f"{table}: different columns"
        if g[1] != w[1]:
            extra = sorted(set(g[1]) - set(w[1]), key=repr)[:3]
            missing = sorted(set(w[1]) - set(g[1]), key=repr)[:3]
            raise AssertionError(
                f"{table}: {len(g[1])} rows vs {len(w[1])} expected; "
                f"first extra {extra}; first missing {missing}"
            )


def ids_of(path: Path, table: str = "submissions", slug: str = SLUG) -> list[int]:
    """`_id`s (or `_submission_id`s of a child table) in the warehouse, with repeats, sorted."""
    col = "_id" if table == "submissions" else "_submission_id"
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [r[0] for r in con.execute(f'SELECT "{col}" FROM "{slug}"."{table}" ORDER BY 1').fetchall()]
    finally:
        con.close()


def query(path: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """A read-only query on a closed warehouse file."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [tuple(r) for r in con.execute(sql, params or []).fetchall()]
    finally:
        con.close()


def server_ids(server: DemoKoboServer) -> list[int]:
    """Every `_id` the server currently has for the household survey."""
    client = KoboClient(server.url, server.token)
    return [int(r["_id"]) for p in client.iter_submission_pages(server.household_uid, fields=["_id"])
            for r in p.results]


def data_requests(server: DemoKoboServer) -> list[Any]:
    """The server's request log entries for the household survey's data endpoint."""
    path = f"/api/v2/assets/{server.household_uid}/data/"
    return [e for e in server.requests if e.path == path]


def hold_back(server: DemoKoboServer, _id: int) -> Any:
    """Make a submission invisible (as if its upload were still in flight); call the result to reveal it.

    KPI allocates `_id` before the record becomes readable, so a slow upload can appear behind a higher
    `_id` (kobo-api.md 4.4). The reveal also writes the upload's `add-submission` history entry.
    """
    server.hold_submission(server.household_uid, _id)
    return lambda: server.release_submission(server.household_uid, _id)
