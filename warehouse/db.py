"""Opening the DuckDB warehouse file: one writer at a time, a clear message when someone else holds it."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from warehouse.errors import WarehouseError, WarehouseLocked
from warehouse.ops import ensure_ops_tables

log = logging.getLogger(__name__)

_POLL_S = 0.25
# DuckDB: 'Could not set lock on file "…": Conflicting lock is held in /usr/bin/python3 (PID 4468)'
_LOCK_MARKERS = ("could not set lock", "conflicting lock")
_PID = re.compile(r"\(PID (\d+)\)", re.IGNORECASE)


def _lock_holder(exc: duckdb.Error) -> tuple[bool, int | None]:
    """Whether `exc` is DuckDB's file-lock error, and the holder's pid if DuckDB named it."""
    text = str(exc)
    if not any(marker in text.lower() for marker in _LOCK_MARKERS):
        return False, None
    match = _PID.search(text)
    return True, int(match.group(1)) if match else None


#: DuckDB settings of every warehouse connection. They hold for the whole database instance, so another
#: connection to the same file inherits them; a second instance (a snapshot file) needs `apply_settings`.
SETTINGS: dict[str, str | bool] = {
    # order is restored by ORDER BY where it matters; dropping it lets DuckDB load Arrow in parallel
    "preserve_insertion_order": False,
    # TIMESTAMP (naive, UTC by contract) ↔ TIMESTAMPTZ conversions must not depend on the host's zone
    "TimeZone": "UTC",
    # without a limit DuckDB may take 80 % of RAM (cached blocks, sorts, checkpoints); capped, it evicts and
    # spills to `<warehouse>.tmp`, so a sync's memory stops growing with the warehouse (500 000 submissions:
    # load peak 593 MB, 800 MB without a limit; 512 MiB peaked 220 MB higher in checks/exports, no faster)
    "memory_limit": "256MiB",
    # each checkpoint rewrites the tables' open row groups: the default 16 MiB checkpoints every ~16 pages of
    # a load, 64 MiB every ~64 (500 000 submissions: commits 26 → 14 s of a 62 → 46 s load)
    "checkpoint_threshold": "64MiB",
}


#: the units DuckDB shows its memory limit in (`current_setting('memory_limit')`: "256.0 MiB", "1.3 GiB")
_UNITS = {"bytes": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}


def part_of_memory_limit(shown: str, part: float = 0.5) -> str | None:
    """`part` of a memory limit as DuckDB shows it (`current_setting('memory_limit')`, e.g. "256.0 MiB"), in
    DuckDB's syntax ("131072KiB" for half); None if it cannot be read."""
    number, _, unit = shown.strip().partition(" ")
    try:
        size = float(number) * _UNITS[unit.strip().lower()]
    except (ValueError, KeyError):
        return None
    return f"{int(size * part / 1024)}KiB"


@contextmanager
def lowered_memory_limit(
    con: duckdb.DuckDBPyConnection, configured: str | None = None, part: float = 0.5
) -> Iterator[str]:
    """Run a block under `part` (default half) of the connection's memory limit, then set its limit again:
    `configured` (`KOBO_ETL_DUCKDB_MEMORY_LIMIT`) when given, else the one DuckDB reports (it rounds down:
    1.5GB shows as 1.3 GiB). Yields the limit in force, for code inside that lowers it again for a moment.

    DuckDB's limit is also how much of what it has read or written it keeps: the checks and the outputs,
    which scan the whole warehouse, would fill it with the warehouse itself (500 000 submissions: ≈ 250 MB
    in the HFCs, 160 MB more than at 50 000), and a snapshot copy with the rows it has not committed yet.
    A block read again comes from the system's file cache, no slower (bench/README.md). If the lower limit
    cannot be set (more than that is in use), the block runs under the usual one.
    """
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    shown = str(row[0]) if row else ""
    usual = configured or shown
    lower = part_of_memory_limit(shown, part)
    if lower is not None:
        try:
            con.execute("SET memory_limit = ?", [lower])
        except duckdb.Error:  # more than that is pinned: nothing was changed
            lower = None
    if lower is None:
        yield usual
        return
    try:
        yield lower
    finally:
        con.execute("SET memory_limit = ?", [usual])


def apply_settings(con: duckdb.DuckDBPyConnection, *, memory_limit: str | None = None) -> None:
    """Apply `SETTINGS` to a DuckDB connection (warehouse connections get them from `connect`), with
    `memory_limit` (DuckDB's syntax: 256MiB, 1GB, 50%) instead of the default one when given."""
    for name, value in SETTINGS.items():
        if name == "memory_limit" and memory_limit is not None:
            value = memory_limit
        con.execute(f"SET {name} = ?", [value])


def connect(
    path: Path, *, read_only: bool = False, wait_s: float = 0, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, creating its folder and the `ops`, `meta`, `marts` schemas on first use.

    Args:
        path: the DuckDB file, e.g. `data/warehouse.duckdb`.
        read_only: open without write access (no schema is created).
        wait_s: when another process holds the file, keep trying this many seconds before giving up.
        memory_limit: DuckDB's memory cap (`KOBO_ETL_DUCKDB_MEMORY_LIMIT`); default `SETTINGS`' 256 MiB.

    Raises:
        WarehouseLocked: another process holds the file (after waiting `wait_s`).
        WarehouseError: the file cannot be opened for another reason (not a DuckDB file, no permission).
    """
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(wait_s, 0)
    told = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as exc:
            locked, pid = _lock_holder(exc)
            if not locked:
                raise WarehouseError(f"cannot open the warehouse {path}: {type(exc).__name__}") from exc
            if time.monotonic() >= deadline:
                raise WarehouseLocked(path, pid) from None
            if not told:
                who = f"pid {pid}" if pid is not None else "another program"
                log.warning("the warehouse %s is in use by %s; waiting up to %.0f s", path, who, wait_s)
                told = True
            time.sleep(_POLL_S)
    try:
        apply_settings(con, memory_limit=memory_limit)
        if not read_only:
            con.execute("CREATE SCHEMA IF NOT EXISTS meta")
            con.execute("CREATE SCHEMA IF NOT EXISTS marts")
            ensure_ops_tables(con)
    except BaseException:
        con.close()
        raise
    return con
