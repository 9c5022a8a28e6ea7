"""After the load: data-quality checks and disclosure risk per form; indicators, exports and the report per run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import duckdb

from config import FormConfig, Settings
from config.indicators import IndicatorSet, load_indicators
from expectations import HfcReport, build_suite, failed_rows, run_hfc, validate_frame, write_report
from transforms.model import FormSchema
from warehouse.sql import qualified
from warehouse.indicators import compute_indicators
from warehouse.publish import publish
from warehouse.quality import failed_ids_by_severity, flag_rows, write_dq_run
from warehouse.risk import disclosure_risk, write_disclosure_risk

log = logging.getLogger("kobo_etl.checks")


def check_form(
    con: duckdb.DuckDBPyConnection,
    form: FormConfig,
    schema: FormSchema,
    loaded_ids: Sequence[int],
    run_id: str,
) -> tuple[int, HfcReport]:
    """GX on the rows this sync loaded, HFCs on the whole form, risk report; returns failed error checks."""
    slug = form.slug
    table = qualified(slug, "submissions")
    suite = build_suite(schema)
    results = []
    rows = []
    if loaded_ids:
        ids = sorted(set(loaded_ids))
        frame = con.execute(f"SELECT * FROM {table} WHERE _id IN (SELECT unnest(?::BIGINT[]))", [ids]).df()
        expected = [c.name for c in schema.main.columns]
        results = validate_frame(frame, suite, expected_columns=expected)
        rows = failed_rows(con, table, suite, results, ids=list(loaded_ids))
    hfc = run_hfc(con, slug, schema=schema, quality=form.quality)
    all_rows = rows + hfc.failed_rows()
    run = write_dq_run(
        con, slug, results + hfc.check_results(), all_rows, rows_checked=len(loaded_ids), run_id=run_id
    )
    flag_rows(con, slug, failed_ids_by_severity(all_rows))
    risk = disclosure_risk(con, slug, "submissions", form.privacy.quasi_identifiers, form.privacy)
    write_disclosure_risk(con, run_id, slug, risk)
    log.info(
        "%s: %s error and %s warning checks failed; disclosure risk %s",
        slug, run["errors_failed"], run["warnings_failed"], risk.light,
    )
    return int(run["errors_failed"]), hfc


def indicators_for(definitions: IndicatorSet, slugs: set[str]) -> IndicatorSet:
    """Only the indicators (and named expressions) of forms in this warehouse."""
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
    errors: list[str] = []
    if settings.indicators_file.exists():
        definitions = indicators_for(load_indicators(settings.indicators_file), set(slugs))
        if definitions.indicators:
            thresholds = {f.slug: f.privacy.small_cell_threshold for f in forms}
            result = compute_indicators(con, definitions, small_cell_threshold=thresholds, run_id=run_id)
            errors = [str(e) for e in result.errors]
            for error in errors:
                log.error("indicator failed: %s", error)
    publish(con, settings.data_dir / "exports", slugs, run_id=run_id)
    report = write_report(con, settings.data_dir / "reports", list(forms), hfc=hfc, schemas=schemas)
    log.info("published %d form(s) to %s; report %s", len(slugs), settings.data_dir / "exports", report)
    return errors


def report_path(settings: Settings) -> Path:
    return settings.data_dir / "reports" / "index.html"
