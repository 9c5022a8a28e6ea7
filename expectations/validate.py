"""Run a form's GX suite on a pseudonymised pandas frame; find the failing submission ids with DuckDB SQL.

GX runs on pandas because its SQL path on DuckDB is broken in 1.24.1. Results are kept as counts only
(`SUMMARY` with `partial_unexpected_count: 0`): GX's default formats copy failing values into the
results, and those values may be personal data.

Repeat tables (`members`, ...) are checked the same way with `repeat=<name>`: their rows are scoped to the
loaded submissions through `_submission_id`, which stands in for `_id` (chunks, ordering), and failing rows
carry the submission `_id` plus the repeat row's `_key`.

`validate_table` bounds memory: GX sees at most `CHUNK_ROWS` rows at a time (chunks are `_id` ranges),
the per-chunk counts are summed and success is recomputed from them; uniqueness checks, which a chunk
cannot judge, are counted by DuckDB over the whole scope (docs/decisions/006-performance.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from expectations.suites import TOKENS_TABLE, ExpectationSpec, SuiteSpec, suite_for_columns
from transforms.model import MAIN_TABLE

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
#: Rows per GX chunk in `validate_table`: ≈ 50–100 MB of pandas per chunk on the demo form; each GX run has a
#: fixed cost of its own, so fewer, larger chunks are faster (see bench/README.md).
CHUNK_ROWS = 50_000
#: Checks a chunk cannot judge (a duplicate may sit in another chunk): counted in DuckDB instead.
_UNIQUE_TYPES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
_GX: dict[str, Any] = {}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: counts only, never a value.

    `unexpected_percent` is a percentage (0–100) of the non-missing values, as GX reports it.
    `kind` is `gx`, `structural` (a column the form has is missing from the data) or `hfc`.
    """

    expectation: str
    column: str | None
    severity: str
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float
    kind: str = "gx"
    type: str = ""
    description: str = ""
    error: str | None = None  # set when GX could not evaluate the check (no values, just why)
    #: rows GX left out of the check (NULLs); None for checks without row counts (table-level ones)
    missing_count: int | None = None


@dataclass(frozen=True)
class FailedRow:
    """A submission that failed a check: ids and the enumerator's pseudonym, never the failing value.

    `row_key` is the repeat row's `_key` (e.g. `1042/members[2]`) for a check on a repeat table, else None.
    """

    form: str
    submission_id: int
    rule: str
    column: str | None
    enumerator: str | None
    severity: str = "error"
    row_key: str | None = None


def _gx() -> tuple[Any, Any, Any]:
    """GX's module, expectations module and a cached ephemeral context (imported on first use: ~3 s)."""
    if not _GX:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # ephemeral: nothing is written; no Data Docs are built, so no temp folder with results either
        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        _GX.update(gx=gx, gxe=gxe, ctx=ctx, n=0)
    return _GX["gx"], _GX["gxe"], _GX["ctx"]


def _expectation(gxe: Any, spec: ExpectationSpec) -> Any:
    cls_name = "".join(p.capitalize() for p in spec.type.split("_"))
    cls = getattr(gxe, cls_name, None)
    if cls is None:
        raise ValueError(f"unknown GX expectation type {spec.type}")
    severity = "critical" if spec.severity == "error" else "warning"
    return cls(**spec.kwargs, meta={**spec.meta, "check_id": spec.id}, severity=severity)


def to_token_frame(df: pd.DataFrame, select_multiple: dict[str, list[str]]) -> pd.DataFrame:
    """One row per ticked option: `_id` plus one column per select_multiple question (NULL elsewhere).

    GX map expectations ignore NULLs, so one frame serves every question's in-set check.
    """
    import pandas as pd

    parts = []
    for col in select_multiple:
        if col not in df.columns:
            continue
        s = df[col].dropna().astype(str).str.split().explode().dropna()
        s = s[s != ""]
        parts.append(pd.DataFrame({"_id": df.loc[s.index, "_id"].to_numpy(), col: s.to_numpy()}))
    if not parts:
        return pd.DataFrame({"_id": pd.Series([], dtype="Int64")})
    return pd.concat(parts, ignore_index=True)


def validate_frame(
    df: pd.DataFrame,
    suite: SuiteSpec,
    *,
    expected_columns: Iterable[str] | None = None,
    table: str = MAIN_TABLE,
) -> list[CheckResult]:
    """Run the suite's checks on `table` on a pseudonymised frame of its rows; one result per check.

    Args:
        df: the rows to check (e.g. `con.execute('SELECT * FROM "slug".submissions WHERE ...').df()`).
        suite: from `build_suite` (checks on other tables are left out).
        expected_columns: the table's columns in the form; any missing from `df` gives a failed
            `structural` result (the data no longer matches the form), and checks on it are skipped.
        table: `submissions` or a repeat table's name.
    """
    suite = suite.for_table(table)
    prefix = "" if table == MAIN_TABLE else f"{table}."
    results: list[CheckResult] = []
    if expected_columns is not None:
        for col in expected_columns:
            if col not in df.columns:
                results.append(
                    CheckResult(
                        f"column_exists:{prefix}{col}",
                        col,
                        "error",
                        False,
                        len(df),
                        len(df),
                        100.0 if len(df) else 0.0,
                        kind="structural",
                        type="expect_column_to_exist",
                        description=f"The form has a column {prefix}{col} but the data does not.",
                    )
                )
    main = suite_for_columns(
        SuiteSpec(suite.form, [e for e in suite.expectations if e.table != TOKENS_TABLE], {}, []), df.columns
    )
    tokens_df = to_token_frame(df, suite.select_multiple)
    tokens = suite_for_columns(
        SuiteSpec(suite.form, [e for e in suite.expectations if e.table == TOKENS_TABLE], {}, []),
        tokens_df.columns,
    )
    for sub, frame in ((main, df), (tokens, tokens_df)):
        if sub.expectations:
            results.extend(_run(sub, frame))
    return results


def validate_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    suite: SuiteSpec,
    *,
    ids_table: str | None = None,
    expected_columns: Iterable[str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    repeat: str | None = None,
) -> list[CheckResult]:
    """Run the suite on a table's rows with GX, at most `chunk_rows` rows (an `_id` range) at a time.

    The results are those of one `validate_frame` on all the rows: counts are summed over the chunks and
    `unexpected_percent` and `success` recomputed from the sums and the check's `mostly` (as GX does: NULLs
    left out, no rows to consider = success). Table-level checks (no row counts) succeed only if every
    chunk does. Uniqueness checks are counted by DuckDB over all the rows, since a duplicate may sit in
    another chunk.

    Args:
        con: an open DuckDB connection.
        table: the qualified, already-quoted table name, e.g. `"household_survey"."submissions"`.
        suite: from `build_suite`.
        ids_table: a qualified, quoted table with an `_id` column: only those rows are checked; None = all.
            For a repeat, the rows whose `_submission_id` is in it.
        expected_columns: the table's columns in the form (see `validate_frame`).
        chunk_rows: the most rows GX holds in memory at once.
        repeat: the repeat table's name when `table` is a repeat table (e.g. `members`); None = main.

    Returns:
        One result per check; empty when there are no rows to check.
    """
    frame_table = repeat or MAIN_TABLE
    suite = suite.for_table(frame_table)
    if not suite.expectations and expected_columns is None:
        return []
    scope = _scope_sql(table, ids_table, repeat=repeat is not None)
    starts = [
        r[0]
        for r in con.execute(
            f"SELECT _id FROM (SELECT _id, row_number() OVER (ORDER BY _id) - 1 AS rn FROM ({scope}) "
            "WHERE _id IS NOT NULL) WHERE rn % ? = 0 ORDER BY _id",
            [max(1, chunk_rows)],
        ).fetchall()
    ]
    # a NULL _id is a failed check, not a reason to drop the row: the last chunk takes them
    chunks: list[tuple[str, list[Any]]] = [
        ("_id >= ? AND _id < ?", [a, b]) for a, b in zip(starts, starts[1:], strict=False)
    ]
    chunks.append(("_id >= ? OR _id IS NULL", [starts[-1]]) if starts else ("_id IS NULL", []))
    unique = [e for e in suite.expectations if e.type in _UNIQUE_TYPES and e.table != TOKENS_TABLE]
    per_chunk = SuiteSpec(
        suite.form, [e for e in suite.expectations if e not in unique], dict(suite.select_multiple),
        list(suite.notes),
    )
    parts: dict[str, list[CheckResult]] = {}
    for where, params in chunks:
        frame = con.execute(f"SELECT * FROM ({scope}) WHERE {where} ORDER BY _id", params).df()
        if frame.empty:
            continue
        for r in validate_frame(frame, per_chunk, expected_columns=expected_columns, table=frame_table):
            parts.setdefault(r.expectation, []).append(r)
        del frame  # the next chunk's frame must not coexist with this one
    if not parts:
        return []
    by_id = {e.id: e for e in suite.expectations}
    results = [_merge(rs, by_id.get(k)) for k, rs in parts.items()]
    results += _unique_results(con, scope, unique)
    order = {e.id: i for i, e in enumerate(suite.expectations)}
    return sorted(
        results,
        key=lambda c: (c.kind != "structural", by_id[c.expectation].table == TOKENS_TABLE
                       if c.expectation in by_id else False, order.get(c.expectation, 0)),
    )


def _scope_sql(table: str, ids_table: str | None, *, repeat: bool = False) -> str:
    """The rows to check; a repeat table's `_submission_id` is exposed as `_id` (chunks, scope, ids)."""
    if repeat:
        rows = f"SELECT *, _submission_id AS _id FROM {table}"
        if ids_table is None:
            return rows
        return f"{rows} WHERE _submission_id IN (SELECT _id FROM {ids_table})"
    if ids_table is None:
        return f"SELECT * FROM {table}"
    return f"SELECT * FROM {table} WHERE _id IN (SELECT _id FROM {ids_table})"


def _merge(parts: list[CheckResult], spec: ExpectationSpec | None) -> CheckResult:
    """One check's chunk results as one: counts summed, percent and success recomputed (`validate_table`)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    element = sum(p.element_count for p in parts)
    unexpected = sum(p.unexpected_count for p in parts)
    error = next((p.error for p in parts if p.error), None)
    if any(p.missing_count is None for p in parts):  # table-level or structural: nothing to add up
        percent = 100.0 * unexpected / element if element else 0.0
        return replace(first, success=all(p.success for p in parts), element_count=element,
                       unexpected_count=unexpected, unexpected_percent=percent, error=error)
    missing = sum(p.missing_count or 0 for p in parts)
    considered = element - missing
    percent = 100.0 * unexpected / considered if considered else 0.0
    mostly = float((spec.kwargs if spec else {}).get("mostly", 1.0))
    ok = considered == 0 or (considered - unexpected) / considered >= mostly
    return replace(first, success=ok and error is None, element_count=element, unexpected_count=unexpected,
                   unexpected_percent=percent, error=error, missing_count=missing)


def _unique_results(
    con: duckdb.DuckDBPyConnection, scope: str, specs: Sequence[ExpectationSpec]
) -> list[CheckResult]:
    """Uniqueness over every row of `scope`, counted as GX does (NULL rows are missing, not duplicates)."""
    have = {r[0] for r in con.execute(f"DESCRIBE {scope}").fetchall()}
    out = []
    for spec in specs:
        cols = list(spec.kwargs.get("column_list") or [spec.kwargs.get("column")])
        if not cols or not all(c in have for c in cols):
            continue  # as `suite_for_columns`: a check on a column the data lacks is skipped
        quoted = ", ".join(_q(c) for c in cols)
        # GX's defaults: a single column ignores NULLs; a compound key ignores rows where all are NULL
        any_missing = spec.kwargs.get("ignore_row_if") == "any_value_is_missing"
        missing = " OR ".join(f"{_q(c)} IS NULL" for c in cols) if any_missing or len(cols) == 1 else (
            " AND ".join(f"{_q(c)} IS NULL" for c in cols)
        )
        row = con.execute(
            f"WITH s AS ({scope}), k AS (SELECT {quoted} FROM s WHERE NOT ({missing})) "
            f"SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM s WHERE {missing}), "
            f"(SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM k GROUP BY {quoted}) WHERE n > 1)"
        ).fetchone()
        element, missed, unexpected = (int(x) for x in row) if row else (0, 0, 0)
        considered = element - missed
        mostly = float(spec.kwargs.get("mostly", 1.0))
        out.append(
            CheckResult(
                spec.id, spec.column, spec.severity,
                considered == 0 or (considered - unexpected) / considered >= mostly,
                element, unexpected, 100.0 * unexpected / considered if considered else 0.0,
                kind="gx", type=spec.type, description=spec.description, missing_count=missed,
            )
        )
    return out


def _run(suite: SuiteSpec, frame: pd.DataFrame) -> list[CheckResult]:
    gx, gxe, ctx = _gx()
    _GX["n"] += 1
    name = f"{suite.form}_{_GX['n']}"
    ds = ctx.data_sources.add_or_update_pandas(name="kobo_etl")
    asset = ds.add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe("rows").get_batch(
        batch_parameters={"dataframe": frame}
    )
    by_id = {e.id: e for e in suite.expectations}
    gx_suite = gx.ExpectationSuite(name=name, expectations=[_expectation(gxe, e) for e in suite.expectations])
    try:
        outcome = batch.validate(gx_suite, result_format=RESULT_FORMAT)
    finally:
        ds.delete_asset(name)  # the frame must not stay referenced by the cached context
    out = []
    for r in outcome.results:
        spec = by_id.get((r.expectation_config.meta or {}).get("check_id", ""))
        if spec is None:
            continue
        res = r.result or {}
        exc = r.exception_info or {}
        raised = any(v.get("raised_exception") for v in exc.values() if isinstance(v, dict)) or bool(
            exc.get("raised_exception")
        )
        row_level = "unexpected_count" in res
        out.append(
            CheckResult(
                spec.id,
                spec.column,
                spec.severity,
                bool(r.success),
                int(res.get("element_count") or len(frame)),
                int(res.get("unexpected_count") or 0),
                float(res.get("unexpected_percent") or 0.0),
                kind="gx",
                type=spec.type,
                description=spec.description,
                error="GX could not evaluate this check" if raised else None,
                missing_count=int(res.get("missing_count") or 0) if row_level else None,
            )
        )
    order = {e.id: i for i, e in enumerate(suite.expectations)}
    return sorted(out, key=lambda c: order.get(c.expectation, 0))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _failing_predicate(spec: ExpectationSpec) -> tuple[str, list[Any]] | None:
    """A SQL condition true for the rows that fail `spec`, or None when the type has no row-level form."""
    kw, t = spec.kwargs, spec.type
    col = kw.get("column")
    c = _q(col) if col else ""
    if spec.table == TOKENS_TABLE and t == "expect_column_values_to_be_in_set":
        return (
            f"EXISTS (SELECT 1 FROM (SELECT unnest(string_split_regex(trim(CAST({c} AS VARCHAR)), '\\s+')) "
            "AS tok) WHERE tok <> '' AND NOT list_contains(?::VARCHAR[], tok))",
            [[str(v) for v in kw["value_set"]]],
        )
    if t == "expect_column_values_to_not_be_null":
        return f"{c} IS NULL", []
    if t == "expect_column_values_to_be_null":
        return f"{c} IS NOT NULL", []
    if t == "expect_column_values_to_be_unique":
        return f"{c} IN (SELECT {c} FROM scope GROUP BY 1 HAVING count(*) > 1)", []
    if t in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        neg = "NOT " if t.endswith("_be_in_set") and "not_be" not in t else ""
        return (
            f"{c} IS NOT NULL AND {neg}list_contains(?::VARCHAR[], CAST({c} AS VARCHAR))",
            [[str(v) for v in kw.get("value_set") or []]],
        )
    if t == "expect_column_values_to_be_between":
        conds, params = [], []
        if kw.get("min_value") is not None:
            conds.append(f"{c} {'<=' if kw.get('strict_min') else '<'} ?")
            params.append(kw["min_value"])
        if kw.get("max_value") is not None:
            conds.append(f"{c} {'>=' if kw.get('strict_max') else '>'} ?")
            params.append(kw["max_value"])
        return (f"{c} IS NOT NULL AND ({' OR '.join(conds)})", params) if conds else None
    if t == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = _q(kw["column_A"]), _q(kw["column_B"])
        op = "<" if kw.get("or_equal") else "<="
        return f"{a} IS NOT NULL AND {b} IS NOT NULL AND {a} {op} {b}", []
    if t == "expect_compound_columns_to_be_unique":
        cols = ", ".join(_q(x) for x in kw["column_list"])
        return f"({cols}) IN (SELECT ({cols}) FROM scope GROUP BY ALL HAVING count(*) > 1)", []
    return None


def failed_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    suite: SuiteSpec,
    results: Sequence[CheckResult],
    *,
    ids: Sequence[int] | None = None,
    ids_table: str | None = None,
    enumerator_column: str | None = "_submitted_by",
    repeat: str | None = None,
    submissions_table: str | None = None,
) -> list[FailedRow]:
    """The submissions that fail each failed check, computed in DuckDB (ids only, never values).

    Args:
        con: an open DuckDB connection.
        table: the qualified, already-quoted table name, e.g. `"household_survey"."submissions"`.
        suite: the suite that produced `results`.
        results: from `validate_frame`.
        ids: restrict to these `_id`s (the rows validated in this sync); None = the whole table.
        ids_table: the same as a qualified, quoted table with an `_id` column (keeps Python memory flat).
        enumerator_column: column holding the enumerator's pseudonym; None or missing = no enumerator.
        repeat: the repeat table's name when `table` is a repeat table: rows then carry its `_key`, and
            `ids`/`ids_table` select by `_submission_id`.
        submissions_table: for a repeat, the qualified, quoted main table the enumerator is read from.
    """
    suite = suite.for_table(repeat or MAIN_TABLE)
    enum = "NULL"
    if enumerator_column:
        source = submissions_table if repeat else table
        cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()} if source else set()
        if enumerator_column in cols and repeat:
            enum = f"(SELECT e.{_q(enumerator_column)} FROM {source} e WHERE e._id = scope._id)"
        elif enumerator_column in cols:
            enum = _q(enumerator_column)
    by_id = {e.id: e for e in suite.expectations}
    scope = _scope_sql(table, ids_table, repeat=repeat is not None)
    params_scope: list[Any] = []
    if ids is not None:  # a repeat's scope exposes `_submission_id` as `_id`
        scope += f" {'AND' if ids_table else 'WHERE'} list_contains(?::BIGINT[], _id)"
        params_scope = [list(ids)]
    out: list[FailedRow] = []
    for r in results:
        spec = by_id.get(r.expectation)
        if r.success or spec is None or r.kind != "gx":
            continue
        pred = _failing_predicate(spec)
        if pred is None:
            continue
        where, params = pred
        key = "_key" if repeat else "NULL"
        sql = (
            f"WITH scope AS ({scope}) SELECT _id, CAST({enum} AS VARCHAR), CAST({key} AS VARCHAR) "
            f"FROM scope WHERE {where} ORDER BY {'_id, _key' if repeat else '_id'}"
        )
        for sid, who, row_key in con.execute(sql, params_scope + params).fetchall():
            if sid is not None:
                out.append(FailedRow(suite.form, int(sid), spec.id, spec.column, who, spec.severity, row_key))
    return out


def time_validation(df: pd.DataFrame, suite: SuiteSpec) -> float:
    """Seconds to validate `df` (GX import excluded), for the benchmark."""
    _gx()
    t0 = time.perf_counter()
    validate_frame(df, suite)
    return time.perf_counter() - t0
