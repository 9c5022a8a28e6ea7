"""Publishing for Power BI: per-form Parquet/CSV folders swapped in atomically, a manifest, a read-only copy.

Layout of `out_dir` (normally `data/exports/`):

    warehouse.duckdb                 read-only snapshot for analysts (never the live file)
    manifest.json                    the forms published, the publish id, the run id and time
    <form>/manifest.json             every file: rows, columns, types, sha256, run id, time
    <form>/submissions.parquet       the main table, then one file per repeat and bridge table
    <form>/labels/questions.parquet  meta.questions of this form (label_<lang> columns)
    <form>/labels/choices.parquet    meta.choices of this form
    <form>/indicators/indicator_values.parquet, dim_indicator, dim_period, dim_location (when admin1 exists)

Every file of one publish comes from one snapshot of the warehouse (the copy above), so tables agree
with each other. Each file and each form folder is replaced whole, but a reader opening several files while
a publish swaps the folder can get files of two publishes: every Parquet file carries its `publish_id`.
Decisions and their reasons: docs/decisions/004-publish-files-for-power-bi.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from transforms.model import MAIN_TABLE
from warehouse.db import lowered_memory_limit
from warehouse.errors import WarehouseError
from warehouse.indicators import write_dim_period
from warehouse.sql import qualified, quote_ident, quote_literal

Format = Literal["parquet", "csv"]

_KEEP = {"BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN", "DATE", "TIME", "TIMESTAMP"}
_TO_BIGINT = {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_TO_DOUBLE = {"FLOAT", "REAL", "HUGEINT", "UHUGEINT"}
_TO_TIMESTAMP = {"TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"}
BRIDGE_SUFFIX = "__selected"
#: `dim_location`'s key, also added to the published submissions: admin2 names may repeat across admin1
LOCATION_KEY = "_location_key"
#: what a killed publish leaves in `out_dir`: `.<form>.<id>.tmp/`, `.<form>.<id>.old/`,
#: `.warehouse.<id>.tmp.duckdb` (+ `.wal`), `.manifest.json.<id>.tmp`
_LEFTOVER = re.compile(
    r"^\..+\.[0-9a-f]{32}\.(tmp|old)(\.duckdb(\.wal)?)?$|^\.manifest\.json\.[0-9a-f]{8}\.tmp$"
)


class PublishError(WarehouseError):
    """A publish could not be completed; the previous publish is still in place."""


@dataclass
class PublishResult:
    """What `publish` wrote."""

    out_dir: Path
    publish_id: str
    published_at: str
    run_id: str | None
    forms: dict[str, Path] = field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    warehouse_copy: Path | None = None


def publish(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    forms: Sequence[str],
    *,
    fmt: Format = "parquet",
    run_id: str | None = None,
    warehouse_path: Path | None = None,
    copy_warehouse: bool = True,
    memory_limit: str | None = None,
) -> PublishResult:
    """Export the forms' tables, labels and indicators for Power BI, and a read-only warehouse copy.

    Args:
        con: an open warehouse connection; the snapshot is attached to it and detached again.
        out_dir: the exports folder, normally `data/exports`.
        forms: form slugs to publish; each becomes `out_dir/<slug>/`, replaced atomically.
        fmt: "parquet" (default) or "csv" (UTF-8, comma, header, ISO dates, times in UTC).
        run_id: the sync run these data come from; by default the form's last successful run in ops.sync_runs.
        warehouse_path: where the read-only copy goes; default `out_dir/warehouse.duckdb`.
        copy_warehouse: keep the snapshot as the analysts' copy (False: delete it after exporting).
        memory_limit: the connection's memory limit as written when it was set (`KOBO_ETL_DUCKDB_MEMORY_LIMIT`
            or what `lowered_memory_limit` yields around the outputs), set again after a snapshot copied
            with `COPY FROM DATABASE` (`_copy_database`); by default the limit DuckDB reports, which it rounds
            down (1.5GB shows as 1.3 GiB).

    Raises:
        PublishError: a form is not in the warehouse, or writing failed (nothing half-written is left
            visible).
    """
    if fmt not in ("parquet", "csv"):
        raise PublishError(f"unknown export format {fmt!r}: use 'parquet' or 'csv'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    publish_id = uuid.uuid4().hex
    published_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    snap_path = out_dir / f".warehouse.{publish_id}.tmp.duckdb"
    result = PublishResult(out_dir=out_dir, publish_id=publish_id, published_at=published_at, run_id=run_id)
    tmp_dirs: list[Path] = []
    try:
        staged: list[tuple[str, Path]] = []
        with _snapshot(con, snap_path, memory_limit):
            schemas = {
                r[0]
                for r in con.execute(
                    "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database()"
                ).fetchall()
            }
            missing = [f for f in forms if f not in schemas]
            if missing:
                raise PublishError(f"form(s) {', '.join(missing)} not in the warehouse: sync them first")
            # in the snapshot: the date table also spans submission dates synced since indicators last ran
            write_dim_period(con)
            for slug in forms:
                tmp = out_dir / f".{slug}.{publish_id}.tmp"
                tmp_dirs.append(tmp)
                form_run = run_id or _last_run_id(con, slug)
                meta = {
                    "form": slug,
                    "publish_id": publish_id,
                    "run_id": form_run,
                    "published_at": published_at,
                    "format": fmt,
                    "time_zone": "UTC",
                }
                result.manifests[slug] = _export_form(con, slug, tmp, fmt, meta)
                staged.append((slug, tmp))
        # every form folder is complete before the first one is swapped in
        for slug, tmp in staged:
            result.forms[slug] = _swap_in(tmp, out_dir / slug, publish_id)
        if copy_warehouse:
            target = Path(warehouse_path) if warehouse_path else out_dir / "warehouse.duckdb"
            _replace_read_only(snap_path, target)
            result.warehouse_copy = target
        _write_json_atomic(
            out_dir / "manifest.json",
            {
                "publish_id": publish_id,
                "run_id": run_id,
                "published_at": published_at,
                "format": fmt,
                "forms": {
                    s: {"folder": s, "run_id": m["run_id"], "files": len(m["files"])}
                    for s, m in result.manifests.items()
                },
                "warehouse_copy": result.warehouse_copy.name if result.warehouse_copy else None,
            },
        )
    except duckdb.Error as exc:
        raise PublishError(f"publishing to {out_dir} failed ({type(exc).__name__})") from exc
    finally:
        for tmp in tmp_dirs:
            shutil.rmtree(tmp, ignore_errors=True)
        snap_path.unlink(missing_ok=True)
        Path(str(snap_path) + ".wal").unlink(missing_ok=True)
    return result


def _remove_leftovers(out_dir: Path) -> None:
    """Delete what killed publishes left in `out_dir` (a half-written folder, a partial warehouse copy):
    `data/exports` is synced to SharePoint, and nothing else would ever remove them.

    No other publish can be writing there: `data/exports` belongs to one warehouse, and the caller holds that
    warehouse's connection, which DuckDB's file lock gives to one process at a time.
    """
    for entry in out_dir.iterdir():
        if _LEFTOVER.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextmanager
def _snapshot(con: duckdb.DuckDBPyConnection, snap_path: Path, memory_limit: str | None) -> Iterator[None]:
    """Copy the whole warehouse to `snap_path` as one consistent snapshot and make it the connection's
    default database while the block runs.

    The snapshot is the warehouse file itself, copied right after a CHECKPOINT has written every committed
    row into it (`_copy_file`): ≈ 0.02 s and no memory at 100 000 submissions, where `COPY FROM DATABASE`
    took 1.3–1.8 s. A warehouse without a file (in memory) or whose file cannot be copied is copied with
    `COPY FROM DATABASE` (`_copy_database`). The snapshot is attached to the warehouse's own DuckDB instance,
    not opened as a second one: one buffer pool under one memory limit.
    """
    row = con.execute(
        "SELECT current_database(), current_schema(), "
        "(SELECT path FROM duckdb_databases() WHERE database_name = current_database())"
    ).fetchone()
    if row is None:  # a SELECT without FROM always returns one row; this only narrows the type
        raise PublishError("the warehouse did not report its database name")
    source, schema, path = row
    alias = f"publish_{snap_path.name.split('.')[1][:12]}"
    copied = path is not None and _copy_file(con, Path(path), snap_path)
    con.execute(f"ATTACH {quote_literal(str(snap_path))} AS {quote_ident(alias)}")
    try:
        if not copied:
            _copy_database(con, source, alias, memory_limit)
        con.execute(f"USE {quote_ident(alias)}")
        try:
            yield
        finally:
            con.execute(f"USE {quote_ident(source)}.{quote_ident(schema)}")
    finally:
        con.execute(f"DETACH {quote_ident(alias)}")


def _copy_file(con: duckdb.DuckDBPyConnection, path: Path, snap_path: Path) -> bool:
    """Checkpoint the warehouse and copy its file to `snap_path`; False when the WAL is still there after
    the checkpoint (the file alone would miss rows) or the file cannot be read (a system that locks it
    against other readers).

    After the checkpoint the file holds every committed row and the WAL is gone. Nothing writes to the file
    until the caller's next statement: the caller holds the warehouse's only connection (DuckDB's file lock
    gives it to one process) and runs nothing else on it while publishing. With uncommitted changes open on
    `con` the checkpoint raises, as a copy into the snapshot would (one transaction writes one database).
    """
    con.execute("CHECKPOINT")
    wal = Path(f"{path}.wal")
    if wal.exists() and wal.stat().st_size:
        return False
    try:
        shutil.copyfile(path, snap_path)
    except OSError:
        snap_path.unlink(missing_ok=True)
        return False
    return True


def _copy_database(
    con: duckdb.DuckDBPyConnection, source: str, target: str, memory_limit: str | None
) -> None:
    """`COPY FROM DATABASE` under half the connection's memory limit (`lowered_memory_limit`, which sets
    `memory_limit` again after), whole again under the usual limit if it does not fit in half.

    The copy needs no working memory, but DuckDB keeps the rows it has not committed yet in the buffer pool
    for as long as the pool has room (500 000 submissions: ≈ 200 MB at the warehouse's 256 MiB). A lower
    limit makes it write them out as it goes: peak −130 MB, ≈ 0.5 s slower.
    """
    copy = f"COPY FROM DATABASE {quote_ident(source)} TO {quote_ident(target)}"
    try:
        with lowered_memory_limit(con, memory_limit):
            con.execute(copy)
        return
    except (duckdb.OutOfMemoryException, duckdb.TransactionException):
        # out of memory while copying, or when committing ("could not allocate block"): the failed copy
        # was one statement, nothing of it is left, it can run again
        pass
    con.execute(copy)


def _last_run_id(con: duckdb.DuckDBPyConnection, slug: str) -> str | None:
    if not _columns(con, "ops", "sync_runs"):
        return None
    row = con.execute(
        "SELECT run_id FROM ops.sync_runs WHERE form = ? AND status IN ('success', 'warning') "
        "ORDER BY started DESC LIMIT 1",
        [slug],
    ).fetchone()
    return row[0] if row else None


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table],
    ).fetchall()


def _power_bi_column(name: str, duckdb_type: str) -> str:
    """A select item giving a type Power BI reads cleanly (no unsigned ints, microsecond UTC timestamps)."""
    ref = quote_ident(name)
    t = duckdb_type.upper()
    if t in _KEEP:
        return ref
    if t in _TO_BIGINT:
        return f"CAST({ref} AS BIGINT) AS {ref}"
    if t in _TO_DOUBLE or t.startswith("DECIMAL"):
        return f"CAST({ref} AS DOUBLE) AS {ref}"
    if t == "TIMESTAMP WITH TIME ZONE":
        # Power BI has no zone-aware Parquet type it refreshes reliably: publish the UTC wall time
        return f"timezone('UTC', {ref}) AS {ref}"
    if t in _TO_TIMESTAMP:
        return f"CAST({ref} AS TIMESTAMP) AS {ref}"
    return f"CAST({ref} AS VARCHAR) AS {ref}"  # lists, structs, enums, intervals, uuids, blobs, time tz


def _order_by(names: list[str], order: Sequence[str] = ()) -> str:
    keys = list(order) or [k for k in ("_id", "_submission_id", "_key", "_position", "choice") if k in names]
    return f" ORDER BY {', '.join(quote_ident(k) for k in keys)}" if keys else ""


def _table_select(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    where: str = "",
    order: Sequence[str] = (),
    *,
    sort: bool = True,
    extra: Sequence[str] = (),
) -> str:
    """A SELECT of the table in Power BI types (and the `extra` select items after its columns), sorted by
    `order` (default: its keys) unless `sort=False`."""
    cols = _columns(con, schema, table)
    select = ", ".join([*(_power_bi_column(n, t) for n, t in cols), *extra])
    order_by = _order_by([n for n, _ in cols], order) if sort else ""
    return f"SELECT {select} FROM {qualified(schema, table)}{where}{order_by}"


def _copy(con: duckdb.DuckDBPyConnection, select: str, path: Path, fmt: Format, meta: dict[str, Any]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        kv = (
            f"{{publish_id: {quote_literal(meta['publish_id'])}, "
            f"run_id: {quote_literal(meta['run_id'] or '')}}}"
        )
        # row groups by size, not by the default 122 880 rows: a wide table's row group is buffered per thread
        # before it is written (500 000 submissions, 63 columns: 7 s and +290 MB → 1.4 s and +160 MB)
        options = f"FORMAT parquet, ROW_GROUP_SIZE_BYTES '16MB', KV_METADATA {kv}"
    else:
        options = (
            "FORMAT csv, HEADER true, DELIMITER ',', DATEFORMAT '%Y-%m-%d', "
            "TIMESTAMPFORMAT '%Y-%m-%dT%H:%M:%S.%f'"
        )
    row = con.execute(f"COPY ({select}) TO {quote_literal(str(path))} ({options})").fetchone()
    if row is None:  # COPY ... TO always returns its row count; this only narrows the type
        raise PublishError(f"writing {path.name} reported no row count")
    return int(row[0])


def _file_entry(
    con: duckdb.DuckDBPyConnection, root: Path, path: Path, source: str, select: str, rows: int, kind: str
) -> dict[str, Any]:
    described = con.execute(f"DESCRIBE {select}").fetchall()
    return {
        "path": path.relative_to(root).as_posix(),
        "source": source,
        "kind": kind,
        "rows": rows,
        "columns": [{"name": r[0], "type": r[1]} for r in described],
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _sha256(path: Path) -> str:
    with path.open("rb") as f:  # in chunks: a form's largest file may be hundreds of MB
        return hashlib.file_digest(f, "sha256").hexdigest()


def _export_form(
    con: duckdb.DuckDBPyConnection, slug: str, tmp: Path, fmt: Format, meta: dict[str, Any]
) -> dict[str, Any]:
    """Write every file of one form into `tmp` and its manifest last."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ext = "parquet" if fmt == "parquet" else "csv"
    files: list[dict[str, Any]] = []

    def export(select: str, rel: str, source: str, kind: str) -> None:
        path = tmp / f"{rel}.{ext}"
        rows = _copy(con, select, path, fmt, meta)
        files.append(_file_entry(con, tmp, path, source, select, rows, kind))

    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? ORDER BY table_name",
            [slug],
        ).fetchall()
        if not r[0].startswith("_")
    ]
    tables.sort(key=lambda t: (t != MAIN_TABLE, t.endswith(BRIDGE_SUFFIX), t))
    levels = _admin_levels(con, slug)
    for table in tables:
        kind = (
            "submissions" if table == MAIN_TABLE else "bridge" if table.endswith(BRIDGE_SUFFIX) else "repeat"
        )
        # not sorted: sorting materialises the whole table (500 000 submissions: +4 s and ≈ +130 MB peak);
        # rows come in load order, which is nearly `_id` order, and Power BI needs none
        # the key submissions relate to dim_location on (Power BI relates on one column)
        key = [f"{_location_key(levels)} AS {LOCATION_KEY}"] if table == MAIN_TABLE and levels else []
        export(_table_select(con, slug, table, sort=False, extra=key), table, f"{slug}.{table}", kind)

    form_filter = f" WHERE form = {quote_literal(slug)}"
    for table in ("questions", "choices"):
        if _columns(con, "meta", table):
            export(
                _table_select(con, "meta", table, form_filter), f"labels/{table}", f"meta.{table}", "labels"
            )
    indicator_order = {
        "indicator_values": ("indicator_code", "period_start", "disaggregation", "disaggregation_value"),
        "dim_indicator": ("indicator_code",),
    }
    for table, order in indicator_order.items():
        if _columns(con, "marts", table):
            export(
                _table_select(con, "marts", table, form_filter, order),
                f"indicators/{table}",
                f"marts.{table}",
                "indicators",
            )
    export(
        _table_select(con, "marts", "dim_period", order=("date",)),
        "indicators/dim_period",
        "marts.dim_period",
        "indicators",
    )
    location = _dim_location_sql(con, slug, levels)
    if location:
        export(location, "indicators/dim_location", f"{slug}.submissions + meta.choices", "indicators")

    manifest = {**meta, "files": files}
    _write_json_atomic(tmp / "manifest.json", manifest)
    return manifest


def _admin_levels(con: duckdb.DuckDBPyConnection, slug: str) -> list[str]:
    """`admin1` and `admin2` when the form's submissions have them; nothing without `admin1`."""
    sub_cols = [n for n, _ in _columns(con, slug, MAIN_TABLE)]
    levels: list[str] = [c for c in ("admin1", "admin2") if c in sub_cols]
    return levels if "admin1" in levels else []


def _location_key(levels: list[str], alias: str = "") -> str:
    """`admin1`, or `admin1/admin2`: one admin2 name can occur under two admin1 (two "Central" districts)."""
    refs = [f"{alias}{quote_ident(level)}" for level in levels]
    if len(refs) == 1:
        return f"CAST({refs[0]} AS VARCHAR)"
    return f"coalesce(CAST({refs[0]} AS VARCHAR), '') || '/' || CAST({refs[1]} AS VARCHAR)"


def _dim_location_sql(con: duckdb.DuckDBPyConnection, slug: str, levels: list[str]) -> str | None:
    """admin1 (and admin2) names with their labels per language, keyed by `_location_key` (admin1/admin2)."""
    if not levels:
        return None
    choice_cols = [n for n, _ in _columns(con, "meta", "choices")]
    labels = [c for c in choice_cols if c.startswith("label")]
    q_cols = [n for n, _ in _columns(con, "meta", "questions")]
    select, joins = [f"{_location_key(levels, 's.')} AS {LOCATION_KEY}"], []
    for i, level in enumerate(reversed(levels)):
        ref = f"CAST(s.{quote_ident(level)} AS VARCHAR)"
        select.append(f"{ref} AS {quote_ident(level)}")
        if not labels:
            continue
        list_name = quote_literal(level)
        if "list_name" in q_cols and "column" in q_cols:
            list_name = (
                f"coalesce((SELECT any_value(q.list_name) FROM meta.questions q WHERE q.form = "
                f"{quote_literal(slug)} AND q.\"column\" = {quote_literal(level)}), {list_name})"
            )
        alias = f"c{i}"
        aggs = ", ".join(f"any_value({quote_ident(lab)}) AS {quote_ident(lab)}" for lab in labels)
        joins.append(
            f"LEFT JOIN (SELECT name, {aggs} FROM meta.choices WHERE form = {quote_literal(slug)} "
            f"AND list_name = {list_name} GROUP BY name) {alias} ON {alias}.name = {ref}"
        )
        select += [f"{alias}.{quote_ident(lab)} AS {quote_ident(level + '_' + lab)}" for lab in labels]
    key = quote_ident(levels[-1])
    return (
        f"SELECT DISTINCT {', '.join(select)} FROM {qualified(slug, MAIN_TABLE)} s {' '.join(joins)} "
        f"WHERE s.{key} IS NOT NULL ORDER BY {LOCATION_KEY}"
    )


def _swap_in(tmp: Path, final: Path, publish_id: str) -> Path:
    """Rename the old folder away, the new one in, then delete the old: readers see old or new, never half."""
    old = final.with_name(f".{final.name}.{publish_id}.old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _replace_read_only(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.chmod(stat.S_IRUSR | stat.S_IWUSR)  # Windows refuses to replace a read-only file
    os.replace(src, target)
    target.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
