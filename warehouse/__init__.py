"""DuckDB warehouse: form tables from the schema, idempotent upserts, ops and meta tables, label views."""

from warehouse.db import connect, lowered_memory_limit
from warehouse.errors import WarehouseError, WarehouseLocked, WarehouseOutOfMemory
from warehouse.load import (
    LOAD_MEMORY_PART,
    SchemaChange,
    SyncState,
    UpsertCounts,
    count_submissions,
    delete_submissions,
    ensure_tables,
    get_sync_state,
    get_watermark,
    ids_by_root_uuid,
    load_session,
    read_manifest,
    set_history_refused,
    set_sync_state,
    set_watermark,
    stored_versions,
    upsert_batch,
    widest_type,
)
from warehouse.meta import (
    create_label_views,
    language_codes,
    pinned_columns,
    write_labels,
)
from warehouse.ops import fail_run, finish_run, remove_pending_privacy, start_run, upsert_pending_privacy
from warehouse.sql import quote_ident, quote_literal

__all__ = [
    "connect", "lowered_memory_limit", "WarehouseError", "WarehouseLocked", "WarehouseOutOfMemory",
    "SchemaChange", "UpsertCounts",
    "count_submissions",
    "delete_submissions", "ensure_tables", "get_watermark", "SyncState", "get_sync_state", "set_sync_state",
    "set_history_refused", "ids_by_root_uuid",
    "LOAD_MEMORY_PART", "load_session", "read_manifest", "set_watermark", "stored_versions", "upsert_batch",
    "widest_type", "create_label_views", "language_codes", "pinned_columns",
    "write_labels", "fail_run", "finish_run", "start_run", "upsert_pending_privacy", "remove_pending_privacy",
    "quote_ident",
    "quote_literal",
]
