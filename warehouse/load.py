"""Form tables in DuckDB: create and evolve them from the form schema, upsert flattened batches, apply
deletions, and read back what the incremental sync needs (manifest, watermark, history-poll state)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import duckdb
import pyarrow as pa

from transforms.model import MAIN_TABLE, FlatBatch, FormSchema, TableSchema
from warehouse.db import lowered_memory_limit
from warehouse.errors import WarehouseError
from warehouse.ops import now_utc, record_schema_changes
from warehouse.sql import qualified, quote_ident

BRIDGE_SUFFIX = "__selected"
BRIDGE_COLUMNS = (("_submission_id", "BIGINT"), ("_key", "VARCHAR"), ("choice", "VARCHAR"))
DELETED_AT = "_deleted_at"
#: The part of DuckDB's memory limit a sync's download loads under. DuckDB keeps up to its limit of what it
#: has written: at 500 000 submissions the load was the sync's peak (606-619 MB under 256 MiB, 522-529 MB
#: under 192), with no time lost at 100 000 (4.54-4.60 s against 4.46-4.80 s; bench/README.md, 16th round)
LOAD_MEMORY_PART = 0.75

# DuckDB spellings → the names ColumnSpec uses
_ALIASES = {
    "INT8": "BIGINT", "LONG": "BIGINT", "INT": "INTEGER", "INT4": "INTEGER", "SIGNED": "INTEGER",
    "FLOAT8": "DOUBLE", "NUMERIC": "DOUBLE", "TEXT": "VARCHAR", "STRING": "VARCHAR", "BOOL": "BOOLEAN",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "DATETIME": "TIMESTAMP", "FLOAT4": "FLOAT", "REAL": "FLOAT",
}
# each chain is ordered narrow → wide; a value of an earlier type always converts to a later one
_CHAINS = (
    ("BOOLEAN",),
    ("SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE"),
    ("DATE", "TIMESTAMP", "TIMESTAMPTZ"),
    ("TIME",),
)
_ids = itertools.count()


def normalize_type(duckdb_type: str) -> str:
    t = " ".join(duckdb_type.upper().split())
    return _ALIASES.get(t, t)


def widest_type(a: str, b: str) -> str:
    """The narrowest type that holds every value of both `a` and `b` (VARCHAR when they are unrelated)."""
    a, b = normalize_type(a), normalize_type(b)
    if a == b:
        return a
    for chain in _CHAINS:
        if a in chain and b in chain:
            return chain[max(chain.index(a), chain.index(b))]
    return "VARCHAR"


@dataclass(frozen=True)
class SchemaChange:
    """One change to a form's tables, as recorded in `ops.schema_changes`."""

    form: str
    version: str | None
    table: str
    column: str | None
    change: str  # new_table | new_column | type_widened
    detail: str  # the new type, "BIGINT → DOUBLE", or the column count of a new table

    def describe(self) -> str:
        """One plain-language line for the sync summary."""
        where = self.form if self.table == MAIN_TABLE else f"{self.form}.{self.table}"
        version = f" from version {self.version}" if self.version else ""
        if self.change == "new_table":
            return f"new table {self.form}.{self.table} ({self.detail}){version}"
        if self.change == "type_widened":
            return f"column {where}.{self.column} widened {self.detail}{version}"
        return f"new column {where}.{self.column} ({self.detail}){version}"

    def as_row(self, at: datetime) -> tuple[str, str | None, str, str | None, str, str, datetime]:
        return (self.form, self.version, self.table, self.column, self.change, self.detail, at)


class UpsertCounts(NamedTuple):
    """Submissions of one batch that were new, and that replaced a row already in the warehouse."""

    inserted: int
    updated: int


def existing_columns(con: duckdb.DuckDBPyConnection, slug: str) -> dict[str, dict[str, str]]:
    """Table → {column: type} for every table (and label view) of the form's schema, columns in order."""
    rows = con.execute(
        """SELECT table_name, column_name, data_type FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = ? ORDER BY table_name, column_index""",
        [slug],
    ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, dtype in rows:
        tables.setdefault(table, {})[column] = normalize_type(dtype)
    return tables


def _find(columns: dict[str, str], name: str) -> str | None:
    """The existing column matching `name`; DuckDB names are case-insensitive even when quoted."""
    if name in columns:
        return name
    lower = name.lower()
    return next((c for c in columns if c.lower() == lower), None)


def _create_table(con: duckdb.DuckDBPyConnection, slug: str, table: str, columns: list[tuple[str, str]],
                  key: str | None) -> None:
    defs = [
        f"{quote_ident(name)} {normalize_type(dtype)}" + (" PRIMARY KEY" if name == key else "")
        for name, dtype in columns
    ]
    con.execute(f"CREATE TABLE {qualified(slug, table)} ({', '.join(defs)})")


def _table_changes(
    con: duckdb.DuckDBPyConnection, schema: FormSchema, table: TableSchema, existing: dict[str, str] | None,
    version: str | None,
) -> list[SchemaChange]:
    slug = schema.slug
    if existing is None:
        key = "_id" if table.parent is None and table.column("_id") else None
        _create_table(con, slug, table.name, [(c.name, c.duckdb_type) for c in table.columns], key)
        return [SchemaChange(slug, version, table.name, None, "new_table", f"{len(table.columns)} columns")]
    changes = []
    for col in table.columns:
        wanted = normalize_type(col.duckdb_type)
        found = _find(existing, col.name)
        if found is None:
            con.execute(
                f"ALTER TABLE {qualified(slug, table.name)} ADD COLUMN {quote_ident(col.name)} {wanted}"
            )
            existing[col.name] = wanted
            changes.append(SchemaChange(slug, version, table.name, col.name, "new_column", wanted))
            continue
        have = existing[found]
        wider = widest_type(have, wanted)
        # a narrower new definition keeps the existing column: Power BI reports must never lose values
        if wider != have:
            con.execute(
                f"ALTER TABLE {qualified(slug, table.name)} "
                f"ALTER COLUMN {quote_ident(found)} SET DATA TYPE {wider}"
            )
            existing[found] = wider
            detail = f"{have} → {wider}"
            changes.append(SchemaChange(slug, version, table.name, found, "type_widened", detail))
    return changes


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.begin()
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


@dataclass
class _Session:
    columns: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # slug → existing_columns


_sessions: dict[int, _Session] = {}  # id(connection) → its open load session


@contextmanager
def load_session(con: duckdb.DuckDBPyConnection, memory_limit: str | None = None) -> Iterator[None]:
    """Load the `upsert_batch` calls made inside the block as one session: the table/column listing is
    read once, not once per batch. Each batch still commits on its own, with its watermark (a sync makes
    each batch several pages already, `pipelines.sync.PAGES_PER_LOAD`), so a crash loses at most the batch
    being written and the next sync fetches it again. DuckDB runs on one thread inside the block; given the
    connection's `memory_limit` (`KOBO_ETL_DUCKDB_MEMORY_LIMIT`, set again afterwards: DuckDB shows a rounded
    one), under `LOAD_MEMORY_PART` of it.
    """
    if id(con) in _sessions:  # nested: the outer session keeps the listing
        yield
        return
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
    # a batch is a few thousand submissions: more DuckDB threads only compete with the transform (worker
    # processes, or this one) for the cores. Measured at 100 000 with 2 workers on 2 cores: the sync
    # process's CPU 3.6-3.8 → 3.2-3.3 s; no change in process (bench/README.md, tenth round)
    con.execute("SET threads = 1")
    _sessions[id(con)] = _Session()
    try:
        if memory_limit is None:
            yield
        else:
            with lowered_memory_limit(con, memory_limit, part=LOAD_MEMORY_PART):
                yield
    finally:
        del _sessions[id(con)]
        with suppress(duckdb.Error):  # a connection closed meanwhile keeps nothing to restore
            con.execute(f"SET threads = {int(threads)}")


@contextmanager
def _batch_transaction(con: duckdb.DuckDBPyConnection, session: _Session | None) -> Iterator[None]:
    """One transaction per batch; a rollback also forgets the session's listing (a bridge table created in
    the rolled-back transaction is gone)."""
    try:
        with _transaction(con):
            yield
    except BaseException:
        if session is not None:
            session.columns.clear()
        raise


def _columns(
    con: duckdb.DuckDBPyConnection, slug: str, session: _Session | None
) -> dict[str, dict[str, str]]:
    if session is None:
        return existing_columns(con, slug)
    if slug not in session.columns:
        session.columns[slug] = existing_columns(con, slug)
    return session.columns[slug]


def ensure_tables(
    con: duckdb.DuckDBPyConnection, schema: FormSchema, version: str | None = None
) -> list[SchemaChange]:
    """Create or evolve the form's schema and tables so every column of `schema` exists.

    New tables and columns are created; a changed type only ever widens (BIGINT → DOUBLE → VARCHAR,
    DATE → TIMESTAMP → VARCHAR); columns of removed questions stay. All changes happen in one transaction
    and each is a row in `ops.schema_changes`.

    Args:
        version: the form version that brought the changes (default: the newest deployed version).

    Returns:
        The changes made, empty when the tables already matched.
    """
    version = version if version is not None else (schema.versions[0] if schema.versions else None)
    changes: list[SchemaChange] = []
    for session in _sessions.values():
        session.columns.pop(schema.slug, None)
    try:
        with _transaction(con):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema.slug)}")
            existing = existing_columns(con, schema.slug)
            for table in schema.tables.values():
                changes += _table_changes(con, schema, table, existing.get(table.name), version)
            at = now_utc()
            record_schema_changes(con, (c.as_row(at) for c in changes))
    except duckdb.Error as exc:
        raise WarehouseError(
            f"could not create or evolve the tables of form {schema.slug} ({type(exc).__name__})",
            form=schema.slug,
        ) from exc
    return changes


def _ensure_bridge(con: duckdb.DuckDBPyConnection, slug: str, name: str, existing: dict[str, dict[str, str]],
                   version: str | None) -> None:
    if name in existing:
        return
    _create_table(con, slug, name, list(BRIDGE_COLUMNS), None)
    existing[name] = dict(BRIDGE_COLUMNS)
    change = SchemaChange(slug, version, name, None, "new_table", f"{len(BRIDGE_COLUMNS)} columns")
    record_schema_changes(con, [change.as_row(now_utc())])


def _child_tables(
    con: duckdb.DuckDBPyConnection, slug: str, existing: dict[str, dict[str, str]]
) -> list[str]:
    """Every table of the form holding rows keyed by `_submission_id`: repeats, bridges, attachments, and
    the table of a repeat since renamed in the form builder (its rows must still go with their submission).
    Not the label views, which have the same columns."""
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? "
        "ORDER BY table_name",
        [slug],
    ).fetchall()
    return [t for (t,) in tables if t != MAIN_TABLE and "_submission_id" in existing.get(t, {})]


class _Views:
    """Arrow tables registered under unique names for the life of one load, then unregistered."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.names: list[str] = []

    def add(self, table: pa.Table) -> str:
        name = f"__kobo_etl_arrow_{next(_ids)}"
        self.con.register(name, table)
        self.names.append(name)
        return name

    def close(self) -> None:
        for name in self.names:
            self.con.unregister(name)


def _ids_table(ids: Iterable[int]) -> pa.Table:
    return pa.table({"_id": pa.array(sorted(set(ids)), type=pa.int64())})


def _batch_ids(batch: FlatBatch) -> list[int]:
    if batch.submission_ids:
        return list(batch.submission_ids)
    main = batch.tables.get(MAIN_TABLE)
    if main is None or "_id" not in main.column_names:
        return []
    return [i for i in main.column("_id").to_pylist() if i is not None]


def _quarantine_table(schema: FormSchema, batch: FlatBatch, run_id: str) -> pa.Table:
    recs = batch.quarantine
    at = now_utc()
    return pa.table({
        "run_id": pa.array([run_id] * len(recs), pa.string()),
        "form": pa.array([schema.slug] * len(recs), pa.string()),
        "submission_id": pa.array([r.submission_id for r in recs], pa.int64()),
        "table_name": pa.array([r.table for r in recs], pa.string()),
        "column_name": pa.array([r.column for r in recs], pa.string()),
        "reason": pa.array([r.reason for r in recs], pa.string()),
        "raw_value": pa.array([r.raw_value for r in recs], pa.string()),
        "recorded_at": pa.array([at] * len(recs), pa.timestamp("us", tz="UTC")),
        "row_key": pa.array([getattr(r, "row_key", None) for r in recs], pa.string()),
    })


def _insert(con: duckdb.DuckDBPyConnection, views: _Views, slug: str, name: str, rows: pa.Table,
            columns: dict[str, str]) -> None:
    """Bulk insert by column name; table columns missing from `rows` become NULL."""
    targets = []
    for col in rows.column_names:
        found = _find(columns, col)
        if found is None:
            raise WarehouseError(
                f"table {slug}.{name} has no column {col!r}; run ensure_tables with the current form schema",
                form=slug, field=col,
            )
        targets.append(found)
    view = views.add(rows)
    sources = ", ".join(quote_ident(c) for c in rows.column_names)
    con.execute(
        f"INSERT INTO {qualified(slug, name)} ({', '.join(quote_ident(c) for c in targets)}) "
        f"SELECT {sources} FROM {quote_ident(view)}"
    )


def upsert_batch(
    con: duckdb.DuckDBPyConnection, schema: FormSchema, batch: FlatBatch, *, run_id: str,
    watermark: int | None = None, new_only: bool = False,
) -> UpsertCounts:
    """Replace the batch's submissions (main, repeat and bridge rows), its quarantine rows and the watermark.

    All in one transaction: on any error the warehouse and the watermark are as before the call. Loading the
    same batch twice leaves the same rows. Quarantine rows of the batch's submissions are replaced too, so
    `ops.quarantine` describes the values currently loaded.

    Args:
        new_only: The caller knows none of the batch's ids is stored yet (keyset pages above the
            watermark): the deletes of old rows are skipped. A wrong promise fails on the `_id` primary
            key, never duplicates. Re-fetches and full re-syncs must leave it False.

    Returns:
        How many submissions were new and how many replaced an existing row.

    Raises:
        WarehouseError: a table or column is missing (run `ensure_tables` first) or a value cannot be stored
            in its column; the message names the table, never the value.
    """
    slug = schema.slug
    ids = _batch_ids(batch)
    views = _Views(con)
    current = MAIN_TABLE
    session = _sessions.get(id(con))
    try:
        with _batch_transaction(con, session):
            existing = _columns(con, slug, session)
            if MAIN_TABLE not in existing:
                raise WarehouseError(f"form {slug} has no tables yet; run ensure_tables first", form=slug)
            version = schema.versions[0] if schema.versions else None
            for name in batch.tables:
                if name.endswith(BRIDGE_SUFFIX) and name not in schema.tables:
                    _ensure_bridge(con, slug, name, existing, version)
                elif name not in existing:
                    raise WarehouseError(
                        f"table {slug}.{name} does not exist; run ensure_tables first", form=slug, field=name
                    )
            id_view = quote_ident(views.add(_ids_table(ids)))
            updated = 0 if new_only else _delete_old_rows(con, schema, existing, id_view)
            for name, rows in batch.tables.items():
                if rows.num_rows:
                    current = name
                    _insert(con, views, slug, name, rows, existing[name])
            current = "ops.quarantine"
            if batch.quarantine:
                q_view = quote_ident(views.add(_quarantine_table(schema, batch, run_id)))
                con.execute(f"INSERT INTO ops.quarantine BY NAME SELECT * FROM {q_view}")
            if watermark is not None:
                _set_watermark(con, slug, watermark)
    except duckdb.Error as exc:
        # DuckDB's message may quote the offending value, so only its class goes in ours
        raise WarehouseError(
            f"loading {len(ids)} submissions into {slug}.{current} failed ({type(exc).__name__}); "
            "the warehouse is unchanged",
            form=slug, field=current,
        ) from exc
    finally:
        views.close()
    return UpsertCounts(inserted=len(ids) - updated, updated=updated)


def _delete_old_rows(con: duckdb.DuckDBPyConnection, schema: FormSchema, existing: dict[str, dict[str, str]],
                     id_view: str) -> int:
    """Delete the stored rows (main, children, quarantine) of the ids in `id_view`; returns how many
    submissions were stored."""
    slug = schema.slug
    main = qualified(slug, MAIN_TABLE)
    batch_ids = f"(SELECT _id FROM {id_view})"
    row = con.execute(f"SELECT count(*) FROM {main} WHERE _id IN {batch_ids}").fetchone()
    con.execute(f"DELETE FROM {main} WHERE _id IN {batch_ids}")
    for child in _child_tables(con, slug, existing):
        con.execute(f"DELETE FROM {qualified(slug, child)} WHERE _submission_id IN {batch_ids}")
    con.execute(f"DELETE FROM ops.quarantine WHERE form = ? AND submission_id IN {batch_ids}", [slug])
    return int(row[0]) if row else 0


def _set_watermark(con: duckdb.DuckDBPyConnection, slug: str, last_id: int) -> None:
    # never lowered: a `--full` re-sync walks up from the first `_id` over rows stored above it; were it cut
    # off, a lowered watermark would make the next run insert those rows again (primary key) and its sweep
    # take them for deleted
    con.execute(
        """INSERT INTO ops.watermarks (form, last_id, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (form) DO UPDATE SET last_id = greatest(ops.watermarks.last_id, excluded.last_id),
           updated_at = excluded.updated_at""",
        [slug, last_id, now_utc()],
    )


def set_watermark(con: duckdb.DuckDBPyConnection, slug: str, last_id: int) -> None:
    """Set the form's watermark outside a batch (e.g. to 0 before a `--full` re-sync)."""
    _set_watermark(con, slug, last_id)


def stored_versions(con: duckdb.DuckDBPyConnection, slug: str) -> list[str | None]:
    """The form versions (`__version__`) the stored submissions were submitted with."""
    sql = f"SELECT DISTINCT __version__ FROM {qualified(slug, MAIN_TABLE)}"
    return [r[0] for r in con.execute(sql).fetchall()]


def get_watermark(con: duckdb.DuckDBPyConnection, slug: str) -> int | None:
    """The highest `_id` loaded by keyset paging for the form, or None before its first load."""
    row = con.execute("SELECT last_id FROM ops.watermarks WHERE form = ?", [slug]).fetchone()
    return None if row is None or row[0] is None else int(row[0])


class SyncState(NamedTuple):
    """When a form's changes below the watermark were last collected (all UTC, None = never)."""

    history_polled_at: datetime | None  # the last history poll or sweep started then
    swept_at: datetime | None  # the last full check of every id (manifest sweep, first load, --full)
    history_refused_at: datetime | None  # the project history was last refused then (no manage_asset)


def get_sync_state(con: duckdb.DuckDBPyConnection, slug: str) -> SyncState:
    """The form's `SyncState`, stored beside its watermark in `ops.watermarks`."""
    row = con.execute(
        "SELECT history_polled_at, swept_at, history_refused_at FROM ops.watermarks WHERE form = ?", [slug]
    ).fetchone()
    return SyncState(*row) if row else SyncState(None, None, None)


def set_sync_state(
    con: duckdb.DuckDBPyConnection, slug: str, *, polled_at: datetime, swept_at: datetime | None = None
) -> None:
    """Record that the form's changes up to `polled_at` are in the warehouse (`swept_at`: by a full check).

    Call it after the pages it vouches for are loaded: a crash in between only makes the next run poll
    (and re-fetch) the same changes again. The row is the watermark's: a form never loaded has none, and
    nothing is recorded (its first load checks everything anyway).
    """
    con.execute(
        "UPDATE ops.watermarks SET history_polled_at = ?, swept_at = coalesce(?, swept_at) WHERE form = ?",
        [polled_at, swept_at, slug],
    )


def set_history_refused(con: duckdb.DuckDBPyConnection, slug: str, at: datetime | None) -> None:
    """Record when the form's project history was refused (None: it is readable again)."""
    con.execute("UPDATE ops.watermarks SET history_refused_at = ? WHERE form = ?", [at, slug])


def ids_by_root_uuid(con: duckdb.DuckDBPyConnection, slug: str, roots: Iterable[str]) -> dict[str, list[int]]:
    """Root uuid (without `uuid:`) → `_id`s of the current (not soft-deleted) submissions that carry it.

    The project history names submissions by root uuid, not by `_id` (kobo-api.md 4.3).
    """
    wanted = sorted(set(roots))
    columns = existing_columns(con, slug).get(MAIN_TABLE)
    if not wanted or columns is None or _find(columns, "_root_uuid") is None:
        return {}
    views = _Views(con)
    try:
        view = quote_ident(views.add(pa.table({"root": pa.array(wanted, pa.string())})))
        live = f" AND {DELETED_AT} IS NULL" if _find(columns, DELETED_AT) else ""
        rows = con.execute(
            f"SELECT _root_uuid, _id FROM {qualified(slug, MAIN_TABLE)} "
            f"WHERE _root_uuid IN (SELECT root FROM {view}){live} ORDER BY _id"
        ).fetchall()
    finally:
        views.close()
    found: dict[str, list[int]] = {}
    for root, sid in rows:
        found.setdefault(root, []).append(int(sid))
    return found


def delete_submissions(
    con: duckdb.DuckDBPyConnection, schema: FormSchema, ids: Iterable[int], *, soft: bool = False
) -> int:
    """Remove submissions that the server no longer has, and record them in `ops.deletions`.

    Hard mode deletes the main row with its repeat and bridge rows. Soft mode keeps every row and sets
    `_deleted_at` on the main row (the column is added on first use). Ids not in the warehouse, or already
    soft-deleted, are ignored, so repeating a call changes nothing.

    Returns:
        The number of submissions deleted (or marked) by this call.
    """
    slug = schema.slug
    views = _Views(con)
    try:
        with _transaction(con):
            existing = existing_columns(con, slug)
            if MAIN_TABLE not in existing:
                return 0
            main = qualified(slug, MAIN_TABLE)
            id_view = quote_ident(views.add(_ids_table(ids)))
            if soft and _find(existing[MAIN_TABLE], DELETED_AT) is None:
                con.execute(f"ALTER TABLE {main} ADD COLUMN {DELETED_AT} TIMESTAMPTZ")
            live = f" AND {DELETED_AT} IS NULL" if soft else ""
            gone = [r[0] for r in con.execute(
                f"SELECT _id FROM {main} WHERE _id IN (SELECT _id FROM {id_view}){live}"
            ).fetchall()]
            if not gone:
                return 0
            now = now_utc()
            gone_view = quote_ident(views.add(_ids_table(gone)))
            if soft:
                con.execute(
                    f"UPDATE {main} SET {DELETED_AT} = ? WHERE _id IN (SELECT _id FROM {gone_view})", [now]
                )
            else:
                con.execute(f"DELETE FROM {main} WHERE _id IN (SELECT _id FROM {gone_view})")
                for child in _child_tables(con, slug, existing):
                    con.execute(
                        f"DELETE FROM {qualified(slug, child)} "
                        f"WHERE _submission_id IN (SELECT _id FROM {gone_view})"
                    )
                # their quarantined values go with them (the values may be personal; a soft delete keeps
                # the rows, and so their quarantine)
                con.execute(
                    "DELETE FROM ops.quarantine WHERE form = ? "
                    f"AND submission_id IN (SELECT _id FROM {gone_view})",
                    [slug],
                )
            con.execute(
                f"INSERT INTO ops.deletions SELECT ?, _id, ? FROM {gone_view}", [slug, now]
            )
    except duckdb.Error as exc:
        raise WarehouseError(
            f"deleting submissions from form {slug} failed ({type(exc).__name__}); "
            "the warehouse is unchanged",
            form=slug,
        ) from exc
    finally:
        views.close()
    return len(gone)


def read_manifest(con: duckdb.DuckDBPyConnection, slug: str) -> pa.Table:
    """`_id`, `_uuid`, `_validation_status_uid` of every current (not soft-deleted) submission, by `_id`.

    The sweep compares this with the server's manifest to find edits (a new `_uuid` or validation status)
    and deletions. Columns missing from the table read as NULL; a form never loaded gives an empty table.
    """
    empty = pa.table({
        "_id": pa.array([], pa.int64()), "_uuid": pa.array([], pa.string()),
        "_validation_status_uid": pa.array([], pa.string()),
    })
    columns = existing_columns(con, slug).get(MAIN_TABLE)
    if columns is None:
        return empty
    select = ["_id"] + [
        f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" if _find(columns, c)
        else f"CAST(NULL AS VARCHAR) AS {quote_ident(c)}"
        for c in ("_uuid", "_validation_status_uid")
    ]
    where = f" WHERE {DELETED_AT} IS NULL" if _find(columns, DELETED_AT) else ""
    result = con.sql(
        f"SELECT {', '.join(select)} FROM {qualified(slug, MAIN_TABLE)}{where} ORDER BY _id"
    ).to_arrow_table()
    return result.cast(empty.schema)


def count_submissions(con: duckdb.DuckDBPyConnection, slug: str) -> int:
    """Current (not soft-deleted) submissions of the form in the warehouse; 0 before its first load."""
    columns = existing_columns(con, slug).get(MAIN_TABLE)
    if columns is None:
        return 0
    where = f" WHERE {DELETED_AT} IS NULL" if _find(columns, DELETED_AT) else ""
    row = con.execute(f"SELECT count(*) FROM {qualified(slug, MAIN_TABLE)}{where}").fetchone()
    return int(row[0]) if row else 0
