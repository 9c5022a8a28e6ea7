"""The sync of one form, as plain functions: fetch → privacy → flatten → load, then checks and publishing.

Prefect flows (pipelines/flows.py) and the CLI both call these; nothing here imports Prefect.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from config import EtlError, FormConfig, Settings, SyncOptions
from config.privacy import PrivacyPolicy
from connectors import (
    BadPayload,
    BadRequest,
    FormNotFound,
    KoboClient,
    KoboUnavailable,
    PermissionDenied,
    SubmissionPage,
)
from expectations import HfcReport
from expectations.structure import check_batch_structure
from expectations.validate import preload_gx
from pipelines.checks import LoadedIds, check_form, previous_checks_failed
from pipelines.forms import fetch_versions
from pipelines.workers import start_early, transform_pages
from transforms import to_form_schema, to_label_tables, with_attachments_table
from transforms.model import FlatBatch, FormSchema
from transforms.page import PageTransform
from transforms.privacy import apply_policy_to_schema, check_strict, decided_questions, withheld_questions
from warehouse import (
    LOAD_MEMORY_PART,
    SchemaChange,
    SyncState,
    WarehouseOutOfMemory,
    count_submissions,
    create_label_views,
    delete_submissions,
    ensure_tables,
    fail_run,
    finish_run,
    get_sync_state,
    get_watermark,
    ids_by_root_uuid,
    load_session,
    lowered_memory_limit,
    pinned_columns,
    read_manifest,
    remove_pending_privacy,
    set_history_refused,
    set_sync_state,
    start_run,
    stored_versions,
    upsert_batch,
    upsert_pending_privacy,
    write_labels,
)

log = logging.getLogger("kobo_etl.sync")

#: Ids re-fetched per `$in` request during the sweep.
REFETCH_BATCH = 500
#: Pages loaded with one INSERT per table: DuckDB's per-statement cost made one page at a time ≈ 2.5×
#: slower to load (bench/README.md, fourth round); the pages of a load commit together.
PAGES_PER_LOAD = 8
#: Project-history actions that change the submissions (kobo-api.md 4.3); `view-data`, which every read of
#: the data writes, and the project-level actions are left out by the query itself.
HISTORY_ACTIONS = ("add-submission", "modify-submission", "delete-submission")
_REFUSED = "the project history is refused; it is asked again after sync.full_sweep_every"
#: the steps that run under a part of DuckDB's memory cap, as an out-of-memory error names it
_MEMORY_PART = {"load": LOAD_MEMORY_PART, "checks": 0.5}  # the checks: `lowered_memory_limit`'s default


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
    key: bytes = field(repr=False)

    @property
    def transform(self) -> PageTransform:
        """Privacy → flatten for one page of this form (what transform workers run)."""
        return PageTransform(self.raw_schema, self.schema, self.policy, self.key)


def load_form_context(
    client: KoboClient,
    form: FormConfig,
    key: bytes,
    cache_dir: Path,
    pinned: dict[str, str] | None = None,
    asset: dict | None = None,
) -> FormContext:
    """Fetch the asset (unless given) and every deployed version (cached on disk: deployed versions never
    change).

    `pinned` (xpath -> existing column) keeps the warehouse's column names stable across form versions.
    """
    if asset is None:
        asset = client.get_asset(form.asset_uid)
    versions = fetch_versions(client, form.asset_uid, cache_dir / form.slug / "versions")
    # the attachments table is added before the policy: media questions are withheld by default
    raw_schema = with_attachments_table(to_form_schema(asset, versions, form.slug, pinned))
    policy = form.privacy
    check_strict(raw_schema, policy)
    return FormContext(form, raw_schema, apply_policy_to_schema(raw_schema, policy), policy, key)


def asset_submission_count(asset: dict) -> int:
    """The server's submission count in an asset; 0 when the account may not see it (KoBo sends None)."""
    count = asset.get("deployment__submission_count")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def update_privacy_todo(con: duckdb.DuckDBPyConnection, ctx: FormContext) -> None:
    """Bring `ops.pending_privacy_decisions` up to date with the form's policy before any page: questions it
    withholds are listed (also when no new submission arrives), questions it now decides are taken off.
    Keys seen only in the data (not in the form) stay listed until a form version defines them."""
    slug = ctx.config.slug
    upsert_pending_privacy(
        con, slug,
        [{"xpath": w.xpath, "question_type": w.type, "reason": w.reason}
         for w in withheld_questions(ctx.raw_schema, ctx.policy)],
    )
    done = remove_pending_privacy(con, slug, decided_questions(ctx.raw_schema, ctx.policy))
    if done:
        log.info("%s: %d question(s) decided in the privacy policy taken off the to-do list", slug, done)


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
    on_transformed: Callable[[], None] | None = None,
) -> None:
    """Privacy → flatten → upsert; data and watermark move together (in a `load_session`: a few pages per
    transaction). `new_only`: the pages hold only ids not stored yet (see `upsert_batch`).

    `on_page` (e.g. a `pipelines.progress.SyncProgress`) is called after each page is loaded; it then
    reports the page, so the per-page log line drops to DEBUG. `on_transformed` is called once the last page
    is transformed, before the last pages are written, if any page held submissions.

    The ids loaded go to `loaded` (a DuckDB temp table: a Python list would grow with N).
    """
    withheld: set[str] = set(summary.withheld)
    group: list[tuple[SubmissionPage, FlatBatch]] = []  # transformed, not loaded yet

    def load_group() -> None:
        items = group[:]
        group.clear()
        ids = [i for _, batch in items for i in batch.submission_ids]
        # an `_id` in two pages (never from keyset pages): page by page, so that the later one wins
        runs = [items] if len(set(ids)) == len(ids) else [[item] for item in items]
        for run in runs:
            batch = FlatBatch.concat([b for _, b in run])
            counts = upsert_batch(
                con,
                ctx.schema,
                batch,
                run_id=summary.run_id,
                watermark=run[-1][0].last_id if advance_watermark else None,
                new_only=new_only,
            )
            summary.inserted += counts.inserted
            summary.updated += counts.updated
            summary.quarantined += len(batch.quarantine)
            loaded.add(batch.submission_ids)
            for page, _ in run:
                summary.fetched += page.size
                log.log(
                    logging.DEBUG if on_page else logging.INFO,
                    "%s: loaded %d submissions (up to _id %s)", ctx.config.slug, page.size, page.last_id,
                )
                if on_page is not None:
                    on_page(page)

    first = True  # the first page loads alone: an early kill already leaves a resume point
    try:
        for page, done in transform_pages(
            pages, ctx.transform, ctx.config.sync.transform_workers, ahead=PAGES_PER_LOAD
        ):
            summary.requests += 1
            summary.bytes += page.nbytes
            if done is None:
                continue
            if done.withheld:
                upsert_pending_privacy(
                    con,
                    ctx.config.slug,
                    [{"xpath": w.xpath, "question_type": w.type, "reason": w.reason} for w in done.withheld],
                )
                withheld.update(w.xpath for w in done.withheld)
            # before the page is written: data that no longer matches the form stops this form's load
            structure = check_batch_structure(done.batch, ctx.schema)
            if structure.unknown_keys:
                log.info(
                    "%s: %d answer key(s) no deployed version defines were not stored (%s)",
                    ctx.config.slug, len(structure.unknown_keys),
                    ", ".join(sorted(structure.unknown_keys)[:5]),
                )
            group.append((page, done.batch))
            if first or len(group) >= PAGES_PER_LOAD:
                load_group()
                first = False
        if on_transformed is not None and (group or summary.fetched):
            on_transformed()
    finally:
        # a failed fetch or a page that stopped the load: the whole pages before it are kept
        if group:
            load_group()
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


def catch_up(
    con: duckdb.DuckDBPyConnection,
    client: KoboClient,
    ctx: FormContext,
    until_id: int,
    summary: SyncSummary,
    loaded: LoadedIds,
    as_of: datetime,
) -> None:
    """Apply the edits, validation changes, late arrivals and deletions below the watermark.

    From the project history when it can be used (a few KB when little changed), else by the manifest
    sweep (every id). The sweep still runs when `sync.history` is off, when no earlier poll or sweep is
    recorded, every `sync.full_sweep_every` (the safety net: the history's lookback is limited and clocks
    drift), and when the history is refused (403 without 'Manage project'; 404 on servers without it). A
    refusal is recorded and logged once; the history is asked again after `sync.full_sweep_every` (one
    request), so a permission granted later takes effect. `as_of` was taken before anything was read: the
    changes are in the warehouse up to that instant when this returns.
    """
    slug, opts = ctx.config.slug, ctx.config.sync
    state = get_sync_state(con, slug)
    reason = _sweep_reason(opts, state, as_of)
    if reason is None and state.history_polled_at is not None:
        since = state.history_polled_at - opts.history_overlap
        try:
            named = poll_history(client, ctx, since, summary)
        except (PermissionDenied, FormNotFound, BadRequest) as exc:
            if state.history_refused_at is None:
                log.warning(
                    "%s: the project history cannot be read (HTTP %s): every sync sweeps the whole id list "
                    "instead. Give the token's account 'Manage project' on the form to make syncs cheaper, "
                    "or set sync.history: false", slug, exc.status_code,
                )
            set_history_refused(con, slug, as_of)
            reason = _REFUSED
        except (KoboUnavailable, BadPayload) as exc:
            # the history is a shortcut: when only it fails (a proxy timing out on a slow history query),
            # the sweep still finds the changes; if the whole server is down the sweep fails in its turn
            log.warning("%s: the project history did not answer (%s): this run sweeps the whole id list",
                        slug, exc)
            reason = "the project history did not answer"
        else:
            if state.history_refused_at is not None:
                set_history_refused(con, slug, None)
                log.info("%s: the project history can be read again", slug)
            apply_history(con, client, ctx, until_id, named, summary, loaded, as_of)
            return
    # the refusal itself was logged once, when it was first met
    log.log(logging.DEBUG if reason == _REFUSED else logging.INFO, "%s: manifest sweep (%s)", slug, reason)
    sweep(con, client, ctx, until_id, summary, loaded, as_of)


def _sweep_reason(opts: SyncOptions, state: SyncState, now: datetime) -> str | None:
    """Why this run must sweep the manifest, or None when the project history may be used instead."""
    if not opts.history:
        return "sync.history is off"
    if state.history_polled_at is None or state.swept_at is None:
        return "no earlier poll or sweep is recorded"
    if now < state.history_polled_at:
        return "this computer's clock is behind the last poll"
    if now - state.swept_at >= opts.full_sweep_every:
        return "the periodic full sweep is due (sync.full_sweep_every)"
    if state.history_refused_at is not None and now - state.history_refused_at < opts.full_sweep_every:
        return _REFUSED
    return None


def poll_history(
    client: KoboClient, ctx: FormContext, since: datetime, summary: SyncSummary
) -> dict[str, set[str]]:
    """Action → root uuids (without `uuid:`) the form's project history names since `since`.

    The entries also carry who submitted and who changed (personal data): only the root uuid is kept.
    """
    named: dict[str, set[str]] = {action: set() for action in HISTORY_ACTIONS}
    for page in client.iter_history_pages(ctx.config.asset_uid, actions=HISTORY_ACTIONS, since=since):
        summary.requests += 1
        summary.bytes += page.nbytes
        for entry in page.results:
            submission = (entry.get("metadata") or {}).get("submission") or {}
            root = str(submission.get("root_uuid") or "").removeprefix("uuid:")
            if root and entry.get("action") in named:
                named[entry["action"]].add(root)
    return named


def apply_history(
    con: duckdb.DuckDBPyConnection,
    client: KoboClient,
    ctx: FormContext,
    until_id: int,
    named: dict[str, set[str]],
    summary: SyncSummary,
    loaded: LoadedIds,
    as_of: datetime,
) -> None:
    """Re-fetch the submissions the history names up to the watermark (edits, validation changes, late
    arrivals) and drop the deleted ones; above the watermark the keyset pass loads the current state."""
    slug, uid = ctx.config.slug, ctx.config.asset_uid
    deleted = named["delete-submission"]
    stored = ids_by_root_uuid(con, slug, deleted | named["add-submission"])
    # an added submission already stored is old news (the last run loaded it); one not stored is late
    late = {root for root in named["add-submission"] if root not in stored}
    refetch = (named["modify-submission"] | late) - deleted
    # deletions first, so the poll time is recorded after every change it covers. A root uuid can come back
    # (submitted again, or a legacy duplicate): the ids the server still has are not deleted
    gone = sorted(root for root in deleted if root in stored)
    still_there = list(client.iter_submissions_by_root_uuid(uid, gone, until_id=until_id))
    kept = {int(row["_id"]) for page in still_there for row in page.results}
    apply_deletions(con, ctx, sorted({i for r in gone for i in stored[r]} - kept), summary)
    pages = itertools.chain(still_there,
                            client.iter_submissions_by_root_uuid(uid, sorted(refetch), until_id=until_id))
    with load_session(con):
        load_pages(con, ctx, pages, summary, advance_watermark=False, loaded=loaded)
        set_sync_state(con, slug, polled_at=as_of)
    log.info("%s: project history since the last run: %d submissions re-fetched, %d named as deleted",
             slug, len(refetch) + len(gone), len(deleted))


def sweep(
    con: duckdb.DuckDBPyConnection,
    client: KoboClient,
    ctx: FormContext,
    until_id: int,
    summary: SyncSummary,
    loaded: LoadedIds,
    as_of: datetime,
) -> None:
    """Find edits, late arrivals and deletions among already-synced ids and apply them; record the sweep."""
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
    # deletions first, so the sweep's time commits with its last re-fetched page
    apply_deletions(con, ctx, sorted(set(local) - seen), summary)
    pages = client.iter_submission_pages(ctx.config.asset_uid, ids=changed, page_size=REFETCH_BATCH)
    with load_session(con):
        load_pages(con, ctx, pages, summary, advance_watermark=False, loaded=loaded)
        set_sync_state(con, ctx.config.slug, polled_at=as_of, swept_at=as_of)


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
    step = "setup of the form's tables and labels"  # for an out-of-memory error's message
    try:
        key = settings.require_key()
        asset = client.get_asset(form.asset_uid)
        stored_up_to = get_watermark(con, form.slug)  # nothing before the load moves it
        if full or stored_up_to is None:  # every submission is downloaded
            start_early(form.sync.transform_workers, asset_submission_count(asset))
        ctx = load_form_context(
            client, form, key, settings.data_dir / "cache", pinned_columns(con, form.slug), asset
        )
        update_privacy_todo(con, ctx)
        changes = ensure_tables(con, ctx.schema)
        summary.schema_changes = [c.describe() for c in changes] + list(ctx.schema.type_changes)
        rederive = None if full else _stored_rows_outdated(con, ctx.schema, changes)
        if rederive is not None:
            # stored rows were typed and flattened under the old definition; they are not kept as raw JSON
            # (privacy), so the only way to give them the new column or type is to download them again
            log.warning("%s: %s; every submission is downloaded again so that older ones have it too",
                        form.slug, rederive)
            summary.schema_changes.append(f"every submission downloaded again: {rederive}")
            full = True
        write_labels(con, ctx.schema, to_label_tables(ctx.schema))
        create_label_views(con, ctx.schema)
        step = "load"
        as_of = datetime.now(UTC)  # what changes after this instant is left to the next run's history poll
        watermark = None if full else stored_up_to
        loaded = LoadedIds(con, form.slug)
        if watermark is not None and form.sync.sweep:
            catch_up(con, client, ctx, watermark, summary, loaded, as_of)
        # in `_id` order even when fetched concurrently, so each page's last id is a correct watermark
        pages = client.iter_submission_pages_concurrent(
            form.asset_uid, after_id=watermark, page_size=form.sync.page_size, workers=form.sync.concurrency
        )
        # no stored row is above the watermark (it moves with the data), so these pages need no deletes
        new_only = watermark is not None or count_submissions(con, form.slug) == 0
        with load_session(con, settings.duckdb_memory_limit):
            # GX's import (≈ 2 s of CPU) starts when the transform no longer needs the cores, so that it
            # overlaps the last inserts and the end-of-run count, not only the HFCs
            load_pages(con, ctx, pages, summary, advance_watermark=True, loaded=loaded, on_page=progress,
                       new_only=new_only, on_transformed=preload_gx if checks else None)
            if watermark is None and not full:
                # a first load reads every submission, as a sweep does: the next run may use the history
                set_sync_state(con, form.slug, polled_at=as_of, swept_at=as_of)
        if full:
            _drop_missing_after_full(con, client, ctx, summary)
            set_sync_state(con, form.slug, polled_at=as_of, swept_at=as_of)
        # up to the last `_id` loaded: submissions that arrived during the run are the next run's, not a gap
        last_loaded = get_watermark(con, form.slug)
        summary.server_count = client.count_submissions(form.asset_uid, until_id=last_loaded)
        summary.warehouse_count = count_submissions(con, form.slug)
        summary.tables = sorted(ctx.schema.tables)
        summary.schema = ctx.schema
        if checks and (len(loaded) or summary.deleted):
            step = "checks"
            # they read the whole form: under a smaller DuckDB cache their memory stays flat in N
            with lowered_memory_limit(con, settings.duckdb_memory_limit):
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
        error: Exception = exc
        if isinstance(exc, duckdb.OutOfMemoryException):
            # to be expected on a small machine or a very wide form: name the step and the setting that helps
            error = WarehouseOutOfMemory(step, settings.duckdb_memory_limit, part=_MEMORY_PART.get(step))
        elif isinstance(exc, EtlError) and isinstance(exc.__cause__, duckdb.OutOfMemoryException):
            error = WarehouseOutOfMemory(step, settings.duckdb_memory_limit, detail=str(exc),
                                         part=_MEMORY_PART.get(step))
        summary.status = "failed"
        # a bug's message may quote a value (even a raw one, from the privacy step): the class only here;
        # run_sync logs where it happened
        summary.error = str(error) if _is_expected(error) else unexpected_error_text(error)
        summary.duration_s = time.monotonic() - started
        fail_run(con, summary.run_id, summary.error)
        if error is not exc:
            raise error from exc
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


def _stored_rows_outdated(
    con: duckdb.DuckDBPyConnection, schema: FormSchema, changes: list[SchemaChange]
) -> str | None:
    """Why the submissions already stored no longer match the form's tables, or None.

    A widened column holds values cast from the old type (`2.50` stored as 2.5, now the text `2.5`), and a
    new column for a question that stored submissions did answer (a select_one that became a
    select_multiple gets choice columns; a question the privacy policy now keeps) is empty for them. So is
    the new table of a repeat renamed in the form builder (same `$kuid`): older instances belong in it. A new
    question of a new version needs nothing: older submissions never had it.
    """
    if not changes or count_submissions(con, schema.slug) == 0:
        return None
    newest = schema.versions[0] if schema.versions else ""
    answered: set[str] = set()  # questions (xpaths) and repeats (table names) stored submissions have
    for v in stored_versions(con, schema.slug):  # an unknown version reads as the newest, as in flattening
        for by_version in (schema.version_questions, schema.version_repeats):
            answered.update((by_version.get(v or "") or by_version.get(newest, {})).values())
    for c in changes:
        if c.change == "type_widened":
            return c.describe()
        table = schema.tables.get(c.table)
        spec = table.column(c.column) if table is not None and c.column else None
        if c.change == "new_column" and spec is not None and spec.question in answered:
            return c.describe()
        # a repeat renamed in the form builder gets a new table; its instances sit in the old one
        if c.change == "new_table" and c.table in answered:
            return c.describe()
    return None


def unexpected_error_text(exc: BaseException) -> str:
    """What a run records and shows of an error that is a bug: its class, never its message."""
    return f"unexpected error {type(exc).__name__}; where it happened is in data/logs/kobo-etl.log"


def _is_expected(exc: BaseException) -> bool:
    return isinstance(exc, EtlError)
