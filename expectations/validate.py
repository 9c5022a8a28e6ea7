"""Run a form's GX suite on a pseudonymised pandas frame; find the failing submission ids with DuckDB SQL.

GX runs on pandas because its SQL path on DuckDB is broken in 1.24.1. Results are kept as counts only
(`SUMMARY` with `partial_unexpected_count: 0`): GX's default formats copy failing values into the
results, and those values may be personal data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expectations.suites import ExpectationSpec, SuiteSpec, suite_for_columns

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
TOKENS_TABLE = "select_multiple_tokens"
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


@dataclass(frozen=True)
class FailedRow:
    """A submission that failed a check: ids and the enumerator's pseudonym, never the failing value."""

    form: str
    submission_id: int
    rule: str
    column: str | None
    enumerator: str | None
    severity: str = "error"


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
    df: pd.DataFrame, suite: SuiteSpec, *, expected_columns: Iterable[str] | None = None
) -> list[CheckResult]:
    """Run the suite on a pseudonymised frame of submissions and return one result per check.

    Args:
        df: the rows to check (e.g. `con.execute('SELECT * FROM "slug".submissions WHERE ...').df()`).
        suite: from `build_suite`.
        expected_columns: the form's main-table columns; any missing from `df` gives a failed
            `structural` result (the data no longer matches the form), and checks on it are skipped.
    """
    results: list[CheckResult] = []
    if expected_columns is not None:
        for col in expected_columns:
            if col not in df.columns:
                results.append(
                    CheckResult(
                        f"column_exists:{col}",
                        col,
                        "error",
                        False,
                        len(df),
                        len(df),
                        100.0 if len(df) else 0.0,
                        kind="structural",
                        type="expect_column_to_exist",
                        description=f"The form has a column {col} but the data does not.",
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
    enumerator_column: str | None = "_submitted_by",
) -> list[FailedRow]:
    """The submissions that fail each failed check, computed in DuckDB (ids only, never values).

    Args:
        con: an open DuckDB connection.
        table: the qualified, already-quoted table name, e.g. `"household_survey"."submissions"`.
        suite: the suite that produced `results`.
        results: from `validate_frame`.
        ids: restrict to these `_id`s (the rows validated in this sync); None = the whole table.
        enumerator_column: column holding the enumerator's pseudonym; None or missing = no enumerator.
    """
    cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()}
    enum = _q(enumerator_column) if enumerator_column and enumerator_column in cols else "NULL"
    by_id = {e.id: e for e in suite.expectations}
    scope = f"SELECT * FROM {table}"
    params_scope: list[Any] = []
    if ids is not None:
        scope += " WHERE list_contains(?::BIGINT[], _id)"
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
        sql = (
            f"WITH scope AS ({scope}) SELECT _id, CAST({enum} AS VARCHAR) FROM scope "
            f"WHERE {where} ORDER BY _id"
        )
        for sid, who in con.execute(sql, params_scope + params).fetchall():
            if sid is not None:
                out.append(FailedRow(suite.form, int(sid), spec.id, spec.column, who, spec.severity))
    return out


def time_validation(df: pd.DataFrame, suite: SuiteSpec) -> float:
    """Seconds to validate `df` (GX import excluded), for the benchmark."""
    _gx()
    t0 = time.perf_counter()
    validate_frame(df, suite)
    return time.perf_counter() - t0
