"""Indicators computed in DuckDB from their YAML definitions into `marts.indicator_values` and its dimensions.

Layout (star schema, long format; see docs/indicators.md):

* `marts.indicator_values`: one row per indicator x period x (one disaggregation dimension and value),
  plus a `total` row per period (`disaggregation = 'total'`, `disaggregation_value` NULL). A NULL
  dimension value is reported as '(missing)'. Cells with n below the small-cell threshold have value,
  numerator, denominator and n NULL and `suppressed = true` (for a count, n *is* the value).
* `marts.dim_indicator`: one row per indicator with its definition and last status.
* `marts.dim_period`: a contiguous date table (whole calendar years) covering every period and every form's
  submission dates (`today`, `_submission_time`), so submissions relate to it too.

Soft-deleted submissions (`_deleted_at` set, `sync.deletions: soft`) and their repeat rows are left out.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from config.indicators import Expression, Indicator, IndicatorSet
from warehouse.errors import WarehouseError
from warehouse.load import DELETED_AT
from warehouse.sql import qualified, quote_ident, quote_literal

MISSING = "(missing)"
#: where definitions are read from unless the caller says otherwise (`KOBO_ETL_INDICATORS_FILE`)
DEFAULT_SOURCE = "config/indicators.yaml"

VALUES_DDL = """CREATE TABLE IF NOT EXISTS marts.indicator_values (
    indicator_code VARCHAR NOT NULL, form VARCHAR NOT NULL, period_start DATE NOT NULL,
    period_end DATE NOT NULL,
    period_grain VARCHAR NOT NULL, disaggregation VARCHAR NOT NULL, disaggregation_value VARCHAR,
    numerator DOUBLE, denominator DOUBLE, value DOUBLE, n BIGINT, suppressed BOOLEAN NOT NULL,
    run_id VARCHAR, computed_at TIMESTAMP)"""

DIM_INDICATOR_DDL = """CREATE TABLE IF NOT EXISTS marts.dim_indicator (
    indicator_code VARCHAR PRIMARY KEY, name VARCHAR, form VARCHAR, unit VARCHAR, population VARCHAR,
    period_grain VARCHAR, period_date VARCHAR, disaggregations VARCHAR, filter_sql VARCHAR,
    numerator_sql VARCHAR, denominator_sql VARCHAR, value_sql VARCHAR, reference VARCHAR, description VARCHAR,
    status VARCHAR, error VARCHAR, run_id VARCHAR, computed_at TIMESTAMP)"""

DIM_PERIOD_SQL = """CREATE OR REPLACE TABLE marts.dim_period AS
SELECT CAST(d AS DATE) AS date, year(d)::BIGINT AS year, quarter(d)::BIGINT AS quarter,
       month(d)::BIGINT AS month,
       monthname(d) AS month_name, strftime(d, '%Y-%m') AS year_month,
       'Q' || quarter(d) || ' ' || year(d) AS year_quarter, isoyear(d)::BIGINT AS iso_year,
       week(d)::BIGINT AS week, isodow(d)::BIGINT AS day_of_week, dayname(d) AS day_name,
       CAST(date_trunc('week', d) AS DATE) AS week_start, CAST(date_trunc('month', d) AS DATE) AS month_start,
       CAST(date_trunc('quarter', d) AS DATE) AS quarter_start,
       CAST(date_trunc('year', d) AS DATE) AS year_start
FROM (SELECT unnest(generate_series(CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), INTERVAL 1 DAY)) AS d)
ORDER BY date"""

_GRAIN_INTERVAL = {"day": "1 DAY", "week": "7 DAY", "month": "1 MONTH", "quarter": "3 MONTH"}
_COLUMN_PATTERNS = (
    re.compile(r'Referenced column "([^"]+)" not found'),
    re.compile(r'does not have a column named "([^"]+)"'),
    re.compile(r'column "([^"]+)" (?:must appear|not found)'),
)
_TABLE_PATTERN = re.compile(r'Table with name "?([^" ]+?)"? does not exist')
# error kinds whose text only quotes the SQL of the definition, never a data value
_SAFE_KINDS = ("BinderException", "CatalogException", "ParserException")


class IndicatorError(WarehouseError):
    """One indicator could not be computed. `field` (= `part`) is the definition field at fault when it is
    known (`value`, `disaggregations.admin1`, `expression fcs`); `column` the unknown column DuckDB named."""

    def __init__(
        self,
        indicator: str,
        form: str,
        problem: str,
        *,
        column: str | None = None,
        part: str | None = None,
        source: str | Path = DEFAULT_SOURCE,
    ) -> None:
        self.indicator = indicator
        self.problem = problem
        self.column = column
        self.part = part
        self.source = str(source)
        super().__init__(f"indicator {indicator!r} failed: {problem}; fix {source}", form=form, field=part)

    def in_file(self, source: str | Path) -> IndicatorError:
        """The same error, telling to fix `source` (the file the definitions came from)."""
        return IndicatorError(
            self.indicator, self.form or "", self.problem, column=self.column, part=self.part, source=source
        )


@dataclass
class IndicatorRun:
    """What one `compute_indicators` call did."""

    run_id: str
    computed_at: datetime
    computed: list[str] = field(default_factory=list)
    errors: list[IndicatorError] = field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def ensure_mart_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create `marts.indicator_values`, `marts.dim_indicator` and an empty `marts.dim_period` if missing."""
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(VALUES_DDL)
    con.execute(DIM_INDICATOR_DDL)
    if not _table_columns(con, "marts", "dim_period"):
        con.execute(DIM_PERIOD_SQL + " LIMIT 0", ["2000-01-01", "2000-01-01"])


def compute_indicators(
    con: duckdb.DuckDBPyConnection,
    definitions: IndicatorSet | Sequence[Indicator],
    *,
    small_cell_threshold: int | Mapping[str, int] = 5,
    run_id: str | None = None,
    forms: Iterable[str] | None = None,
    source: str | Path = DEFAULT_SOURCE,
) -> IndicatorRun:
    """Compute every indicator and replace the rows of their forms in the marts.

    A failing definition (unknown column, SQL error) is reported in `IndicatorRun.errors` and has no
    rows; every other indicator is still written. Rows of the definitions' forms are replaced in one
    transaction, so a reader sees the old or the new set, never a mix.

    Args:
        con: an open warehouse connection.
        definitions: the loaded `config/indicators.yaml` (or a list of indicators without named expressions).
        small_cell_threshold: the privacy policy's minimum cell size (one value, or per form slug).
        run_id: the sync run id to stamp on the rows (a new id when None).
        forms: the forms whose rows are replaced (default: the definitions' forms). A form listed here
            without definitions loses its rows: its indicators were removed from the file.
        source: the definitions' file, named in error messages.
    """
    defs = (
        definitions if isinstance(definitions, IndicatorSet) else IndicatorSet(indicators=list(definitions))
    )
    run = IndicatorRun(run_id=run_id or uuid.uuid4().hex, computed_at=datetime.now(UTC).replace(tzinfo=None))
    ensure_mart_tables(con)
    stage = f"_indicator_stage_{uuid.uuid4().hex[:8]}"
    con.execute(
        f"CREATE TEMP TABLE {stage} AS SELECT * EXCLUDE (run_id, computed_at) "
        "FROM marts.indicator_values LIMIT 0"
    )
    try:
        for ind in defs.indicators:
            threshold = (
                small_cell_threshold.get(ind.form, 5)
                if isinstance(small_cell_threshold, Mapping)
                else small_cell_threshold
            )
            try:
                sql = _indicator_sql(con, defs, ind, threshold)
                con.execute(f"INSERT INTO {stage} {sql}")
                run.computed.append(ind.code)
            except IndicatorError as err:
                run.errors.append(err.in_file(source))
            except duckdb.Error as exc:
                run.errors.append(_explain(con, exc, defs, ind).in_file(source))
        replaced = {i.form for i in defs.indicators} | set(forms or ())
        _write_marts(con, defs, run, stage, sorted(replaced))
    finally:
        con.execute(f"DROP TABLE IF EXISTS {stage}")
    return run


def _write_marts(
    con: duckdb.DuckDBPyConnection, defs: IndicatorSet, run: IndicatorRun, stage: str, forms: list[str]
) -> None:
    failed = {e.indicator: e for e in run.errors}
    form_list = ", ".join(quote_literal(f) for f in forms) or "NULL"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM marts.indicator_values WHERE form IN ({form_list})")
        con.execute(
            f"INSERT INTO marts.indicator_values SELECT *, ?, ? FROM {stage}", [run.run_id, run.computed_at]
        )
        con.execute(f"DELETE FROM marts.dim_indicator WHERE form IN ({form_list})")
        for ind in defs.indicators:
            err = failed.get(ind.code)
            con.execute(
                "INSERT INTO marts.dim_indicator VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ind.code,
                    ind.name,
                    ind.form,
                    ind.unit,
                    ind.population,
                    ind.period.grain,
                    ind.period.date,
                    ", ".join(d.name for d in ind.disaggregations),
                    ind.filter,
                    ind.numerator,
                    ind.denominator,
                    ind.value,
                    ind.reference,
                    ind.description.strip(),
                    "failed" if err else "ok",
                    str(err) if err else None,
                    run.run_id,
                    run.computed_at,
                ],
            )
        write_dim_period(con)
        counted = con.execute(f"SELECT count(*) FROM {stage}").fetchone()
        run.rows = int(counted[0]) if counted else 0
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def write_dim_period(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)build `marts.dim_period`: whole calendar years covering every indicator period and every form's
    submission dates (`today`, `_submission_time`), so `submissions[today]` relates to it as well."""
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    dates = []
    if _table_columns(con, "marts", "indicator_values"):
        dates.append("SELECT min(period_start) AS lo, max(period_end) AS hi FROM marts.indicator_values")
    forms = con.execute(
        "SELECT schema_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND table_name = 'submissions' ORDER BY 1"
    ).fetchall()
    for (form,) in forms:
        columns = _table_columns(con, form, "submissions")
        for col in ("today", "_submission_time"):
            if col in columns:
                # TRY_CAST: a `today` banded or stored as text must not stop the indicators
                d = f"TRY_CAST({quote_ident(col)} AS DATE)"
                dates.append(f"SELECT min({d}) AS lo, max({d}) AS hi FROM {qualified(form, 'submissions')}")
    lo: date | None = None
    hi: date | None = None
    if dates:
        # an aggregate without GROUP BY always returns one row; min/max are NULL when there are no rows
        row = con.execute(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(dates)})").fetchone()
        lo, hi = row if row is not None else (None, None)
    if lo is None or hi is None:
        con.execute(DIM_PERIOD_SQL + " LIMIT 0", ["2000-01-01", "2000-01-01"])
    else:
        # whole calendar years: Power BI's "mark as date table" wants contiguous dates
        con.execute(DIM_PERIOD_SQL, [lo.replace(month=1, day=1), hi.replace(month=12, day=31)])


def _table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def _mentions(sql: str, name: str) -> bool:
    return (
        re.search(rf'(?<![\w."]){re.escape(name)}(?![\w"])|"{re.escape(name)}"', sql, re.IGNORECASE)
        is not None
    )


def _used_expressions(pool: list[Expression], texts: list[str]) -> list[Expression]:
    """The named expressions a definition mentions, directly or through another expression, in file order."""
    used: set[str] = set()
    frontier = list(texts)
    while frontier:
        text = frontier.pop()
        for e in pool:
            if e.name not in used and _mentions(text, e.name):
                used.add(e.name)
                frontier.append(e.sql)
    return [e for e in pool if e.name in used]


def _with_expressions(source: str, exprs: list[Expression], columns: list[str], ind: Indicator) -> str:
    """`source` with each expression added as a column, one layer each so later ones can use earlier ones."""
    for e in exprs:
        if e.name in columns:
            raise IndicatorError(
                ind.code,
                ind.form,
                f"expression {e.name!r} has the name of an existing column",
                column=e.name,
                part=f"expression {e.name}",
            )
        source = f"(SELECT *, ({e.sql}) AS {quote_ident(e.name)} FROM {source})"
        columns = [*columns, e.name]
    return source


def _population_sql(con: duckdb.DuckDBPyConnection, defs: IndicatorSet, ind: Indicator) -> str:
    """The population rows with named expressions; a repeat gets its submission's columns joined in."""
    texts = list(ind.sql_fields().values())
    sub_cols = _table_columns(con, ind.form, "submissions")
    if not sub_cols:
        raise IndicatorError(
            ind.code, ind.form, f"form {ind.form!r} has no submissions table in the warehouse", part="form"
        )
    sub_exprs = _used_expressions(defs.expressions_for(ind.form, "submissions"), texts)
    subs = qualified(ind.form, "submissions")
    if DELETED_AT in sub_cols:
        # soft-deleted submissions are kept for the record but were deleted in KoBo: they count nowhere, nor
        # do their repeat rows (only the submission carries the mark; repeats are joined to it below)
        subs = f"(SELECT * FROM {subs} WHERE {DELETED_AT} IS NULL)"
    subs = _with_expressions(subs, sub_exprs, sub_cols, ind)
    if ind.population == "submissions":
        return subs
    pop_cols = _table_columns(con, ind.form, ind.population)
    if not pop_cols:
        raise IndicatorError(
            ind.code,
            ind.form,
            f"population table {ind.population!r} does not exist",
            column=ind.population,
            part="population",
        )
    joined = [c for c in [*sub_cols, *(e.name for e in sub_exprs)] if c not in pop_cols]
    select = ", ".join(["r.*", *(f"s.{quote_ident(c)}" for c in joined)])
    source = (
        f"(SELECT {select} FROM {qualified(ind.form, ind.population)} r "
        f'JOIN {subs} s ON s."_id" = r."_submission_id")'
    )
    pop_exprs = _used_expressions(defs.expressions_for(ind.form, ind.population), texts)
    return _with_expressions(source, pop_exprs, [*pop_cols, *joined], ind)


def _measures(ind: Indicator) -> tuple[str, list[str]]:
    """Per-row measure columns and the aggregates (numerator, denominator, value, n) over them."""
    if ind.unit == "percent":
        row = f"CAST(({ind.numerator}) AS DOUBLE) AS _num, CAST(({ind.denominator}) AS DOUBLE) AS _den"
        # the numerator only counts where the denominator does: a row outside the denominator cannot be in it
        num = "sum(CASE WHEN _den <> 0 THEN coalesce(_num, 0) END)"
        den = "sum(CASE WHEN _den <> 0 THEN _den END)"
        return row, [num, den, f"100.0 * {num} / nullif({den}, 0)", "count(*) FILTER (WHERE _den <> 0)"]
    if ind.unit == "count":
        if ind.value:
            cnt = "CAST(count(DISTINCT _v) AS DOUBLE)"
            # n is the rows behind the cell (the small-cell rule), not the distinct values counted
            return f"({ind.value}) AS _v", [cnt, "NULL", cnt, "count(_v)"]
        return "1 AS _v", ["CAST(count(*) AS DOUBLE)", "NULL", "CAST(count(*) AS DOUBLE)", "count(*)"]
    row = f"CAST(({ind.value}) AS DOUBLE) AS _v"
    if ind.unit == "sum":
        return row, ["sum(_v)", "NULL", "sum(_v)", "count(_v)"]
    return row, ["sum(_v)", "CAST(count(_v) AS DOUBLE)", "avg(_v)", "count(_v)"]


def _indicator_sql(con: duckdb.DuckDBPyConnection, defs: IndicatorSet, ind: Indicator, threshold: int) -> str:
    """One SELECT producing the indicator's rows in the stage table's column order."""
    population = _population_sql(con, defs, ind)
    where = f"WHERE ({ind.filter})" if ind.filter else ""
    grain = ind.period.grain
    dims = "".join(
        f", ({d.sql or quote_ident(d.name)}) AS {quote_ident('_d_' + d.name)}" for d in ind.disaggregations
    )
    row, (num, den, value, n) = _measures(ind)
    base = (
        f"SELECT CAST(date_trunc({quote_literal(grain)}, CAST(({ind.period.date}) AS DATE)) AS DATE) "
        f"AS _period, {row}{dims} FROM {population} {where}"
    )
    sets = [("'total'", "CAST(NULL AS VARCHAR)", "")]
    for d in ind.disaggregations:
        col = quote_ident("_d_" + d.name)
        sets.append(
            (quote_literal(d.name), f"coalesce(CAST({col} AS VARCHAR), {quote_literal(MISSING)})", f", {col}")
        )
    parts = [
        f"SELECT _period, {label} AS disaggregation, {val} AS disaggregation_value, "
        f"{num} AS numerator, {den} AS denominator, {value} AS value, {n} AS n "
        f"FROM _base WHERE _period IS NOT NULL GROUP BY _period{group}"
        for label, val, group in sets
    ]
    small = f"a.n < {int(threshold)}"
    return (
        f"WITH _base AS ({base}), _agg AS ({' UNION ALL '.join(parts)}) "
        f"SELECT {quote_literal(ind.code)}, {quote_literal(ind.form)}, a._period, "
        f"CAST(a._period + INTERVAL {_GRAIN_INTERVAL[grain]} - INTERVAL 1 DAY AS DATE), "
        f"{quote_literal(grain)}, "
        f"a.disaggregation, a.disaggregation_value, "
        f"CASE WHEN {small} THEN NULL ELSE CAST(a.numerator AS DOUBLE) END, "
        f"CASE WHEN {small} THEN NULL ELSE CAST(a.denominator AS DOUBLE) END, "
        f"CASE WHEN {small} THEN NULL ELSE CAST(a.value AS DOUBLE) END, "
        f"CASE WHEN {small} THEN NULL ELSE CAST(a.n AS BIGINT) END, {small} "
        f"FROM _agg a"
    )


def _explain(
    con: duckdb.DuckDBPyConnection, exc: duckdb.Error, defs: IndicatorSet, ind: Indicator
) -> IndicatorError:
    """Turn DuckDB's error into one naming the indicator, the column and the definition field holding it."""
    text = str(exc)
    kind = type(exc).__name__
    column = next((m.group(1) for p in _COLUMN_PATTERNS if (m := p.search(text))), None)
    if column:
        fields = ind.sql_fields()
        fields.update({f"expression {e.name}": e.sql for e in defs.expressions if e.form == ind.form})
        part = next((k for k, sql in fields.items() if _mentions(sql, column)), None)
        problem = f"unknown column {column!r} (not in {ind.form}.{ind.population})"
        return IndicatorError(ind.code, ind.form, problem, column=column, part=part)
    if (m := _TABLE_PATTERN.search(text)) is not None:
        return IndicatorError(ind.code, ind.form, f"table {m.group(1)!r} does not exist")
    if kind in _SAFE_KINDS:
        # binder/parser text quotes the definition's SQL, never a submission value
        problem = f"SQL error ({text.splitlines()[0]})"
        return IndicatorError(ind.code, ind.form, problem, part=_failing_field(con, defs, ind))
    # conversion errors quote the offending value: name the kind only
    return IndicatorError(
        ind.code, ind.form, f"{kind} while evaluating the definition (a cast or type mismatch)"
    )


def _failing_field(con: duckdb.DuckDBPyConnection, defs: IndicatorSet, ind: Indicator) -> str | None:
    """The first definition field that fails on its own (a type error such as `admin1 > 5` names no column).

    `LIMIT 0` binds each expression against the population without reading a row.
    """
    try:
        population = _population_sql(con, defs, ind)
    except (IndicatorError, duckdb.Error):
        return None
    for name, sql in ind.sql_fields().items():
        try:
            con.execute(f"SELECT ({sql}) FROM {population} LIMIT 0")
        except duckdb.Error:
            return name
    return None
