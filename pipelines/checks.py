"""After the load: data-quality checks and disclosure risk per form; indicators, exports, report per run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from config import FormConfig, Settings
from config.forms import configured_slugs
from config.indicators import IndicatorConfigError, IndicatorSet, check_forms, load_indicators
from expectations import (
    FAILED_ROWS_SCHEMA,
    CheckResult,
    HfcReport,
    HfcResult,
    SuiteSpec,
    build_suite,
    failed_rows,
    run_hfc,
    suite_for_stored_types,
    validate_table,
    write_report,
)
from expectations.report import MAX_IDS
from expectations.suites import TEXT_COLUMN_NOTE, check_id, data_table
from expectations.validate import preload_gx
from transforms.model import FormSchema
from warehouse.db import lowered_memory_limit
from warehouse.indicators import compute_indicators
from warehouse.load import existing_columns
from warehouse.publish import publish
from warehouse.quality import FailedRows, earlier_failures, ensure_quality_tables, flag_rows, write_dq_run
from warehouse.risk import disclosure_risk, write_disclosure_risk
from warehouse.sql import qualified, quote_ident

log = logging.getLogger("kobo_etl.checks")


class LoadedIds:
    """The `_id`s one sync loaded, kept in a DuckDB temp table so that Python memory does not grow with N."""

    def __init__(self, con: duckdb.DuckDBPyConnection, slug: str) -> None:
        self._con = con
        self.table = "temp.main." + quote_ident(f"_loaded_ids_{slug}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {self.table} (_id BIGINT)")
        self.added = 0

    def add(self, ids: Sequence[int]) -> None:
        """Record one page's ids (inside the load transaction when one is open: a rollback drops them too)."""
        if ids:
            self._con.execute(f"INSERT INTO {self.table} SELECT unnest(?::BIGINT[])", [list(ids)])
            self.added += len(ids)

    def __len__(self) -> int:
        return self.added

    def count(self) -> int:
        """Distinct ids loaded (an id loaded twice in one sync counts once)."""
        row = self._con.execute(f"SELECT count(DISTINCT _id) FROM {self.table}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._con.execute(f"DROP TABLE IF EXISTS {self.table}")


def check_form(
    con: duckdb.DuckDBPyConnection,
    form: FormConfig,
    schema: FormSchema,
    loaded: LoadedIds,
    run_id: str,
    *,
    chunk_rows: int | None = None,
) -> tuple[int, HfcReport]:
    """GX on the rows this sync loaded (chunked), HFCs on the whole form, risk; returns failed errors.

    Repeat tables are checked on their rows that belong to the loaded submissions; their failing rows
    carry the submission `_id` (flagged like any other) and the repeat row's `_key`.
    """
    if len(loaded):
        preload_gx()  # ≈ 2 s of import, overlapped with the HFCs' DuckDB queries below
    hfc = run_hfc(con, form.slug, schema=schema, quality=form.quality)
    failing = FailedRows(con, form.slug)
    try:
        for part in hfc.iter_failed_rows():
            failing.add(part)
        # the rows are in DuckDB now: while GX runs the report keeps examples and counts, nothing per
        # submission (the report reads its ids from ops.dq_failed_rows anyway)
        hfc = hfc.with_examples_only(MAX_IDS)
        errors = _run_checks(con, form, schema, loaded, run_id, hfc, failing, chunk_rows)
    finally:
        failing.close()
    return errors, hfc


def _run_checks(
    con: duckdb.DuckDBPyConnection,
    form: FormConfig,
    schema: FormSchema,
    loaded: LoadedIds,
    run_id: str,
    hfc: HfcReport,
    failing: FailedRows,
    chunk_rows: int | None,
) -> int:
    """GX on the loaded rows and the form's earlier failures; records the run (with the HFCs' results and
    the failing rows in `failing`), flags the rows, scores the disclosure risk; returns the failed errors."""
    slug = form.slug
    table = qualified(slug, "submissions")
    form_suite = build_suite(schema)
    suite = suite_for_stored_types(form_suite, existing_columns(con, slug))
    kept = set(suite.ids())
    for spec in form_suite.expectations:  # listed under "Checks not run" in the report
        if spec.id not in kept:
            hfc.results.append(HfcResult(spec.id, spec.description, spec.severity, spec.column, 0,
                                         skipped=True, note=TEXT_COLUMN_NOTE))
    listed = {spec.id for spec in form_suite.expectations}
    for q in schema.retyped_by_policy.values():
        # a number the policy bands is not stored as a number: no range or outlier check; the report says so
        check, title = check_id("between", q.table, q.column), f"Range and unusual values of {q.column}"
        if q.type in ("integer", "decimal", "range") and check not in listed:
            hfc.results.append(HfcResult(check, title, "error", q.column, 0, skipped=True,
                                         note=f"{q.column}: {TEXT_COLUMN_NOTE}"))
    results: list[CheckResult] = []
    if len(loaded):
        expected = [c.name for c in schema.main.columns]
        results = validate_table(
            con, table, suite, ids_table=loaded.table, expected_columns=expected, chunk_rows=chunk_rows
        )
        failing.add(failed_rows(con, table, suite, results, ids_table=loaded.table))
        for name in suite.tables()[1:]:
            if name not in schema.tables:
                continue  # a check from the per-form YAML on a table the form does not have
            rep_table = qualified(slug, name)
            rep_results = validate_table(
                con, rep_table, suite, ids_table=loaded.table, chunk_rows=chunk_rows, repeat=name,
                expected_columns=[c.name for c in schema.tables[name].columns],
            )
            results += rep_results
            failing.add(failed_rows(
                con, rep_table, suite, rep_results, ids_table=loaded.table, repeat=name,
                submissions_table=table,
            ))
    # the form's rules ran on this sync's rows only: failures found earlier on rows not loaded again stand
    results, carried = _with_earlier_failures(con, slug, suite, results, loaded)
    failing.add(carried)
    del carried
    run = write_dq_run(
        con, slug, results + hfc.check_results(), rows_checked=loaded.count(), run_id=run_id,
        failed_rows_table=failing.table,
    )
    flag_rows(con, slug, run["run_id"])
    risk = disclosure_risk(con, slug, "submissions", form.privacy.quasi_identifiers, form.privacy)
    write_disclosure_risk(con, run_id, slug, risk)
    log.info(
        "%s: %s error and %s warning checks failed; disclosure risk %s",
        slug, run["errors_failed"], run["warnings_failed"], risk.light,
    )
    return int(run["errors_failed"])


def _with_earlier_failures(
    con: duckdb.DuckDBPyConnection, slug: str, suite: SuiteSpec, results: list[CheckResult],
    loaded: LoadedIds,
) -> tuple[list[CheckResult], pa.Table]:
    """This run's results of the form's rules with the failures the latest run found on submissions this
    sync did not load again (still stored), and those failing rows. A check they add to is counted over its
    table's rows: its share is of all rows, not of the rows this sync checked."""
    carried = earlier_failures(con, slug, suite.ids(), loaded.table).cast(FAILED_ROWS_SCHEMA)
    per_check = _count_by(carried, "rule")
    ran = {r.expectation: r for r in results}
    rules = set(suite.ids())
    out = [r for r in results if r.expectation not in rules]
    for spec in suite.expectations:
        result, extra = ran.get(spec.id), per_check.get(spec.id, 0)
        if result is not None and not extra:
            out.append(result)
            continue
        count = (result.unexpected_count if result is not None else 0) + extra
        rows = _table_rows(con, slug, data_table(spec.table))
        share = 100.0 * count / rows if rows else 0.0
        out.append(CheckResult(spec.id, spec.column, spec.severity, count == 0, rows, count, share, kind="gx",
                               type=spec.type, description=spec.description))
    return out, carried


def _count_by(table: pa.Table, column: str) -> dict[str, int]:
    grouped = table.group_by(column).aggregate([(column, "count")])
    return dict(zip(grouped[column].to_pylist(), grouped[f"{column}_count"].to_pylist(), strict=True))


def _table_rows(con: duckdb.DuckDBPyConnection, slug: str, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {qualified(slug, table)}").fetchone()
    return int(row[0]) if row else 0


def previous_checks_failed(con: duckdb.DuckDBPyConnection, slug: str) -> int:
    """Failed `error` checks of the form's latest checked run (0 if never checked): they still stand."""
    ensure_quality_tables(con)
    row = con.execute(
        "SELECT errors_failed FROM ops.dq_runs WHERE form = ? ORDER BY started DESC LIMIT 1", [slug]
    ).fetchone()
    return int(row[0]) if row else 0


def indicators_for(definitions: IndicatorSet, slugs: set[str]) -> IndicatorSet:
    """Only the indicators (and named expressions) of the forms in `slugs` (this run's)."""
    return definitions.model_copy(
        update={
            "indicators": [i for i in definitions.indicators if i.form in slugs],
            "expressions": [e for e in definitions.expressions if e.form in slugs],
        }
    )


def publish_outputs(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    forms: Sequence[FormConfig],
    *,
    hfc: dict[str, HfcReport] | None = None,
    schemas: dict[str, FormSchema] | None = None,
    run_id: str | None = None,
) -> list[str]:
    """Indicators, Power BI exports and the HTML report for the given forms; returns indicator errors."""
    slugs = [f.slug for f in forms]
    # all three read the whole warehouse: under a smaller DuckDB cache their memory stays flat in N
    with lowered_memory_limit(con, settings.duckdb_memory_limit) as memory_limit:
        errors = _compute_indicators(con, settings, forms, run_id)
        publish(con, settings.data_dir / "exports", slugs, fmt=settings.export_format, run_id=run_id,
                memory_limit=memory_limit)
        report = write_report(con, settings.data_dir / "reports", list(forms), hfc=hfc, schemas=schemas)
    log.info("published %d form(s) to %s; report %s", len(slugs), settings.data_dir / "exports", report)
    return errors


def _compute_indicators(
    con: duckdb.DuckDBPyConnection, settings: Settings, forms: Sequence[FormConfig], run_id: str | None
) -> list[str]:
    """The forms' indicators into marts (those of other forms stay); returns what failed."""
    slugs = [f.slug for f in forms]
    if not settings.indicators_file.exists():
        # a path someone set that is not there is a mistake to show; the default missing is a choice
        explicit = "indicators_file" in settings.model_fields_set
        log.log(logging.WARNING if explicit else logging.INFO,
                "no indicators file at %s (KOBO_ETL_INDICATORS_FILE): no indicators computed",
                settings.indicators_file)
        return []
    try:
        loaded = load_indicators(settings.indicators_file)
        # a form that is configured but not in this run is fine; one that is not configured is a typo
        configured = configured_slugs(settings.forms_dir) | set(slugs)
        check_forms(loaded, configured, settings.indicators_file)
    except IndicatorConfigError as exc:
        # a typo in the indicators file must not keep the exports and the report from the data
        log.error("indicators not computed (the previous values stay in marts): %s", exc)
        return [f"no indicators computed: {exc}"]
    thresholds = {f.slug: f.privacy.small_cell_threshold for f in forms}
    # every form of the run is replaced, also one without definitions: its indicators were removed
    result = compute_indicators(
        con, indicators_for(loaded, set(slugs)), small_cell_threshold=thresholds, run_id=run_id, forms=slugs,
        source=settings.indicators_file,
    )
    errors = [str(e) for e in result.errors]
    for error in errors:
        log.error("indicator failed: %s", error)
    return errors


def report_path(settings: Settings) -> Path:
    return settings.data_dir / "reports" / "index.html"
