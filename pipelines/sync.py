"""The sync of one form, as plain functions: fetch → privacy → flatten → load, then checks and publishing.

Prefect flows (pipelines/flows.py) and the CLI both call these; nothing here imports Prefect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from config import EtlError, FormConfig, Settings
from config.privacy import PrivacyPolicy
from connectors import KoboClient, SubmissionPage
from expectations import HfcReport
from expectations.structure import check_batch_structure
from pipelines.checks import LoadedIds, check_form, previous_checks_failed
from pipelines.forms import fetch_versions
from transforms import (
    to_form_schema,
    to_label_tables,
    to_tables,
    with_attachment_rows,
    with_attachments_table,
)
from transforms.model import FormSchema
from transforms.privacy import apply_policy, apply_policy_to_schema, check_strict
from warehouse import (
    count_submissions,
    create_label_views,
    delete_submissions,
    ensure_tables,
    fail_run,
    finish_run,
    get_watermark,
    load_session,
    pinned_columns,
    read_manifest,
    start_run,
    upsert_batch,
    upsert_pending_privacy,
    write_labels,
)

log = logging.getLogger("kobo_etl.sync")

#: Ids re-fetched per `$in` request during the sweep.
REFETCH_BATCH = 500


@dataclass
class SyncSummary:
    """What one sync of one form did. Counts only: never a submission value."""

    form: str
    run_id: str = ""
    status: str = "running"
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    quarantined: int = 0
    withheld: list[str] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)
    checks_failed: int = 0
    server_count: int | None = None
    warehouse_count: int | None = None
    duration_s: float = 0.0
    requests: int = 0
    bytes: int = 0
    error: str | None = None
    tables: list[str] = field(default_factory=list)
    # for the report at the end of the run; not part of the serialised summary
    schema: FormSchema | None = field(default=None, repr=False, compare=False)
    hfc: HfcReport | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("schema", "hfc")}

    def lines(self) -> list[str]:
        """A short plain-language summary for the terminal and the flow result."""
        out = [
            f"{self.form}: {self.status} in {self.duration_s:.1f}s — {self.inserted} new, "
            f"{self.updated} updated, {self.deleted} deleted, {self.quarantined} values quarantined"
        ]
        if self.server_count is not None:
            out.append(f"  server has {self.server_count} submissions, warehouse has {self.warehouse_count}")
        for change in self.schema_changes:
            out.append(f"  schema: {change}")
        for xpath in self.withheld:
            out.append(f"  withheld (no privacy decision yet): {xpath} — add it to the form's privacy policy")
        if self.error:
            out.append(f"  error: {self.error}")
        return out


@dataclass
class FormContext:
    """What a sync needs to know about a form once per run."""

    config: FormConfig
    raw_schema: FormSchema  # the form as KoBo defines it
    schema: FormSchema  # the form as stored (after the privacy policy)
    policy: PrivacyPolicy
    key: bytes


def load_form_context(
    client: KoboClient,
    form: FormConfig,
    key: bytes,
    cache_dir: Path,
    pinned: dict[str, str] | None = None,
) -> FormContext:
    """Fetch the asset and every deployed version (cached on disk: deployed versions never change).

    `pinned` (xpath -> existing column) keeps the warehouse's column names stable across form versions.
    """
    asset = client.get_asset(form.asset_uid)
    versions = fetch_versions(client, form.asset_uid, cache_dir / form.slug / "versions")
    # the attachments table is added before the policy: media questions are withheld by default
    raw_schema = with_attachments_table(to_form_schema(asset, versions, form.slug, pinned))
    policy = form.privacy
    check_strict(raw_schema, policy)
    return FormContext(form, raw_schema, apply_policy_to_schema(raw_schema, policy), policy, key)


def load_pages(
    con: duckdb.DuckDBPyConnection,
    ctx: FormContext,
    pages: Iterable[SubmissionPage],
    summary: SyncSummary,
    *,
    advance_watermark: bool,
    loaded: LoadedIds,
    on_page: Callable[[SubmissionPage], None] | None = None,
    new_only: bool = False,
) -> None:
    """Privacy → flatten → upsert; data and watermark move together (in a `load_session`: a few pages per
    transaction). `new_only`: the pages hold only ids not stored yet (see `upsert_batch`).

    `on_page` (e.g. a `pipelines.progress.SyncProgress`) is called after each page is loaded; it then
    reports the page, so the per-page log line drops to DEBUG.

    The ids loaded go to `loaded` (a DuckDB temp table: a Python list would grow with N).
    """
    withheld: set[str] = set(summary.withheld)
    for page in pages:
        summary.requests += 1
        summary.bytes += page.nbytes
        if not page.results:
            continue
        result = apply_policy(page.results, ctx.raw_schema, ctx.policy, ctx.key)
        if result.withheld:
            upsert_pending_privacy(
                con,
                ctx.config.slug,
                [{"xpath": w.xpath, "question_type": w.type, "reason": w.reason} for w in result.withheld],
            )
            withheld.update(w.xpath for w in result.withheld)
        batch = with_attachment_rows(
            to_tables(result.submissions, ctx.schema), result.submissions, ctx.schema
        )
        # before the page is written: data that no longer matches the form stops this form's load
        structure = check_batch_structure(batch, ctx.schema)
        if structure.unknown_keys:
            log.info(
                "%s: %d answer key(s) no deployed version defines were not stored (%s)",
                ctx.config.slug, len(structure.unknown_keys), ", ".join(sorted(structure.unknown_keys)[:5]),
            )
        counts = upsert_batch(
            con,
            ctx.schema,
            batch,
            run_id=summary.run_id,
            watermark=page.last_id if advance_watermark else None,
            new_only=new_only,
        )
        summary.fetched += len(page.results)
        summary.inserted += counts.inserted
        summary.updated += counts.updated
        summary.quarantined += len(batch.quarantine)
        loaded.add(batch.submission_ids)
        log.log(
            logging.DEBUG if on_page else logging.INFO,
            "%s: loaded %d submissions (up to _id %s)", ctx.config.slug, len(page.results), page.last_id,
        )
        if on_page is not None:
            on_page(page)
    summary.withheld = sorted(withheld)


def iter_manifest(client: KoboClient, form: FormConfig, until_id: int) -> Iterator[SubmissionPage]:
    """The server's list of (_id, _uuid, validation status) up to the watermark: cheap, no answers.

    `sync.concurrency` requests at once, pages in `_id` order."""
    yield from client.iter_submission_pages_concurrent(
        form.asset_uid,
        page_size=form.sync.page_size,
        fields=["_id", "_uuid", "_validation_status"],
        until_id=until_id,
        workers=form.sync.concurrency,
    )


def sweep(
    con: duckdb.DuckDBPyConnection,
    client: KoboClient,
    ctx: FormContext,
    until_id: int,
    summary: SyncSummary,
    loaded: LoadedIds,
) -> None:
    """Find edits, late arrivals and deletions among already-synced ids and apply them."""
    manifest = read_manifest(con, ctx.config.slug)
    local = dict(
        zip(
            manifest.column("_id").to_pylist(),
            zip(
                manifest.column("_uuid").to_pylist(),
                manifest.column("_validation_status_uid").to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )
    seen: set[int] = set()
    changed: list[int] = []
    for page in iter_manifest(client, ctx.config, until_id):
        summary.requests += 1
        summary.bytes += page.nbytes
        for row in page.results:
            sid = int(row["_id"])
            seen.add(sid)
            status = (row.get("_validation_status") or {}).get("uid")
            if local.get(sid) != (row.get("_uuid"), status):
                changed.append(sid)
    deleted = sorted(set(local) - seen)
    if changed:
        pages = client.iter_submission_pages(ctx.config.asset_uid, ids=changed, page_size=REFETCH_BATCH)
        with load_session(con):
            load_pages(con, ctx, pages, summary, advance_watermark=False, loaded=loaded)
    apply_deletions(con, ctx, deleted, summary)


def sync_form(
    settings: Settings,
    form: FormConfig,
    con: duckdb.DuckDBPyConnection,
    client: KoboClient,
    *,
    full: bool = False,
    checks: bool = True,
    progress: Callable[[SubmissionPage], None] | None = None,
) -> SyncSummary:
    """Sync one form into the warehouse. Never raises for expected errors: the summary carries them.

    `progress` is called after each page of new submissions (not for the sweep's re-fetches).
    """
    started = time.monotonic()
    summary = SyncSummary(form=form.slug)
    summary.run_id = start_run(con, form.slug)
    try:
        key = settings.require_key()
        ctx = load_form_context(
            client, form, key, settings.data_dir / "cache", pinned_columns(con, form.slug)
        )
        changes = ensure_tables(con, ctx.schema)
        summary.schema_changes = [c.describe() for c in changes] + list(ctx.schema.type_changes)
        write_labels(con, ctx.schema, to_label_tables(ctx.schema))
        create_label_views(con, ctx.schema)
        watermark = None if full else get_watermark(con, form.slug)
        loaded = LoadedIds(con, form.slug)
        if watermark is not None and form.sync.sweep:
            sweep(con, client, ctx, watermark, summary, loaded)
        # in `_id` order even when fetched concurrently, so each page's last id is a correct watermark
        pages = client.iter_submission_pages_concurrent(
            form.asset_uid, after_id=watermark, page_size=form.sync.page_size, workers=form.sync.concurrency
        )
        # no stored row is above the watermark (it moves with the data), so these pages need no deletes
        new_only = watermark is not None or count_submissions(con, form.slug) == 0
        with load_session(con):
            load_pages(con, ctx, pages, summary, advance_watermark=True, loaded=loaded, on_page=progress,
                       new_only=new_only)
        if full:
            _drop_missing_after_full(con, client, ctx, summary)
        summary.server_count = client.count_submissions(form.asset_uid)
        summary.warehouse_count = count_submissions(con, form.slug)
        summary.tables = sorted(ctx.schema.tables)
        summary.schema = ctx.schema
        if checks and (len(loaded) or summary.deleted):
            summary.checks_failed, summary.hfc = check_form(con, form, ctx.schema, loaded, summary.run_id)
        elif checks:
            # nothing new, edited or deleted: the last checks still describe the data, so they stand
            summary.checks_failed = previous_checks_failed(con, form.slug)
            log.info("%s: nothing loaded or deleted; checks skipped, the previous results stand", form.slug)
        loaded.close()
        if summary.server_count != summary.warehouse_count:
            log.warning(
                "%s: the server reports %s submissions but the warehouse holds %s",
                form.slug, summary.server_count, summary.warehouse_count,
            )
    except Exception as exc:  # noqa: BLE001 — recorded in ops.sync_runs, then re-raised
        summary.status = "failed"
        summary.error = str(exc) if _is_expected(exc) else f"{type(exc).__name__}: {exc}"
        summary.duration_s = time.monotonic() - started
        fail_run(con, summary.run_id, summary.error)
        raise
    summary.duration_s = time.monotonic() - started
    summary.status = finish_run(
        con,
        summary.run_id,
        server_count=summary.server_count,
        warehouse_count=summary.warehouse_count,
        summary=summary.to_dict(),
        fetched=summary.fetched,
        inserted=summary.inserted,
        updated=summary.updated,
        deleted=summary.deleted,
        quarantined=summary.quarantined,
        withheld=len(summary.withheld),
        schema_changes=len(summary.schema_changes),
        checks_failed=summary.checks_failed,
    )
    return summary


def _drop_missing_after_full(
    con: duckdb.DuckDBPyConnection, client: KoboClient, ctx: FormContext, summary: SyncSummary
) -> None:
    """After a full re-download, ids the server no longer has are deletions."""
    local = set(read_manifest(con, ctx.config.slug).column("_id").to_pylist())
    seen: set[int] = set()
    for page in client.iter_submission_pages(ctx.config.asset_uid, fields=["_id"], page_size=1000):
        seen.update(int(r["_id"]) for r in page.results)
    apply_deletions(con, ctx, sorted(local - seen), summary)


def apply_deletions(
    con: duckdb.DuckDBPyConnection, ctx: FormContext, deleted: list[int], summary: SyncSummary
) -> None:
    """Remove (or soft-delete, per the form's config) submissions the server no longer has."""
    if not deleted:
        return
    delete_submissions(con, ctx.schema, deleted, soft=ctx.config.sync.deletions == "soft")
    summary.deleted += len(deleted)
    log.info("%s: %d submissions deleted on the server", ctx.config.slug, len(deleted))


def _is_expected(exc: BaseException) -> bool:
    return isinstance(exc, EtlError)
