"""Errors the warehouse layer raises on purpose.

    EtlError (config.errors)
    └── WarehouseError            a load, a schema change or the DuckDB file itself failed
        ├── WarehouseLocked       another process holds the file (+Transient: retry later)
        └── WarehouseOutOfMemory  a step needed more than DuckDB's memory cap

Messages name the warehouse file, the form and the table; never a submission value (DuckDB's own
conversion errors quote the offending value, so they are chained with `from exc`, not copied).
"""

from __future__ import annotations

from pathlib import Path

from config.errors import EtlError, Transient


class WarehouseError(EtlError):
    """The warehouse could not be opened, changed or loaded."""


class WarehouseLocked(WarehouseError, Transient):
    """Another process (a sync, or an analyst's DuckDB/Power BI session) holds the warehouse file."""

    def __init__(self, path: Path | str, pid: int | None = None) -> None:
        self.path = Path(path)
        self.pid = pid
        copy = self.path.parent / "exports" / self.path.name
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"the warehouse {self.path} is open in another program ({who}); "
            f"close it or use the read-only copy {copy}"
        )


_PART_WORDS = {0.5: "half", 0.75: "three quarters"}


class WarehouseOutOfMemory(WarehouseError):
    """DuckDB needed more memory than its cap for a step that cannot spill to disk."""

    def __init__(
        self, step: str, limit: str, detail: str | None = None, *, part: float | None = None
    ) -> None:
        self.step = step
        self.limit = limit
        # the load and the checks run under a part of the cap (`warehouse.db.lowered_memory_limit`); raising
        # it still helps
        share = f"; this step runs under {_PART_WORDS.get(part, f'{part:.0%}')} of it" if part else ""
        what = f"DuckDB ran out of memory in the {step} (its cap is {limit}{share})"
        super().__init__(
            f"{what}{': ' + detail if detail else ''}; set KOBO_ETL_DUCKDB_MEMORY_LIMIT higher in .env (e.g. "
            "512MiB or 1GB; docs/operations.md, \"Memory and disk\") and run the sync again: what was loaded "
            "before stays loaded"
        )
