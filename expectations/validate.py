"""Run a form's GX suite on a pseudonymised pandas frame; find the failing submission ids with DuckDB SQL.

GX runs on pandas because its SQL path on DuckDB is broken in 1.24.1. Results are kept as counts only
(`BASIC` with `partial_unexpected_count: 0`): richer formats copy failing values (or row indexes) into the
results, and those values may be personal data.

Repeat tables (`members`, ...) are checked the same way with `repeat=<name>`: their rows are scoped to the
loaded submissions through `_submission_id`, which stands in for `_id` (chunks, ordering), and failing rows
carry the submission `_id` plus the repeat row's `_key`. select_multiple answers, in the main table or a
repeat, are checked token by token on a one-token-per-row frame.

`validate_table` bounds memory: GX sees at most one chunk of rows at a time (chunks are `_id` ranges sized by
the width of the columns the checks read), the per-chunk counts are summed and success is recomputed from
them; uniqueness checks, which a chunk cannot judge, are counted by DuckDB over the whole scope
(docs/decisions/006-performance.md). GX's pandas engine filters the whole frame for every check, so a chunk
holds only the columns its checks read, in dtypes that give GX the same answers faster (`_read_frame`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from expectations.suites import ExpectationSpec, SuiteSpec, is_tokens_table, suite_for_columns
from transforms.model import MAIN_TABLE

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

log = logging.getLogger("kobo_etl.expectations")

RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
#: Bytes one `validate_table` chunk may take, estimated from the checked columns' types (`_row_bytes`;
#: ≈ 120 000 rows of the demo form's main table). GX copies the frame for each check it filters, so the
#: real peak is a few times this; each GX run also has a fixed cost (≈ 0.2 s for 30 checks), so chunks
#: should not be much smaller (bench/README.md).
CHUNK_BYTES = 40 * 2**20
#: Checks a chunk cannot judge (a duplicate may sit in another chunk): counted in DuckDB instead.
_UNIQUE_TYPES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
#: Checks that only ask whether a value is null or equal to a listed value: a string column read only by
#: these gives the same answers as a categorical, whose rows are far cheaper to filter.
_EQUALITY_TYPES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
    }
)
#: ... or compare values by order: a nullable integer column read only by these gives the same answers as
#: float64 (exact up to 2**53), which GX compares vectorised instead of one Python value at a time.
_VALUE_TYPES = _EQUALITY_TYPES | {
    "expect_column_values_to_be_between",
    "expect_column_pair_values_a_to_be_greater_than_b",
}
_FLOAT_EXACT = 2**53
_GX: dict[str, Any] = {}
_GX_LOCK = threading.Lock()


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


#: The rows that fail the checks, one per (row, check): ids and the enumerator's pseudonym, never the failing
#: value; `row_key` is the repeat row's `_key` (e.g. `1042/members[2]`) for a check on a repeat table. Kept
#: as Arrow columns from the DuckDB query to `ops.dq_failed_rows`: at 500 000 submissions the checks fail
#: ≈ 400 000 rows, which as Python objects cost hundreds of MB (bench/README.md, memory).
FAILED_ROWS_SCHEMA = pa.schema(
    [
        ("submission_id", pa.int64()),
        ("rule", pa.string()),
        ("column", pa.string()),
        ("severity", pa.string()),
        ("enumerator", pa.string()),
        ("row_key", pa.string()),
    ]
)


def to_failed_rows(rows: pa.Table, rule: str, column: str | None, severity: str) -> pa.Table:
    """One check's failing rows (`_id`, `enumerator` and, for a repeat, `row_key`) as `FAILED_ROWS_SCHEMA`."""
    n = rows.num_rows

    def text(name: str) -> Any:
        return rows[name].cast(pa.string()) if name in rows.column_names else pa.nulls(n, pa.string())

    def same(value: str | None) -> pa.Array:
        return pa.nulls(n, pa.string()) if value is None else pa.repeat(pa.scalar(value, pa.string()), n)

    return pa.Table.from_arrays(
        [rows["_id"].cast(pa.int64()), same(rule), same(column), same(severity), text("enumerator"),
         text("row_key")],
        schema=FAILED_ROWS_SCHEMA,
    )


def query_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> pa.Table:
    """`sql`'s rows as an Arrow table, without a Python object per row.

    DuckDB 2 refuses `con.sql` while an earlier `execute()` result is unread (a `fetchone()` leaves one, here
    or in the caller): that result is run to its end first.
    """
    con.complete()
    return con.sql(sql, params=list(params)).to_arrow_table()


def _gx() -> tuple[Any, Any, Any]:
    """GX's module, expectations module and a cached ephemeral context (imported on first use: ≈ 2 s)."""
    with _GX_LOCK:  # `preload_gx` may be importing it in the background right now
        if not _GX:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            for name in _IMPORTED_ON_FIRST_USE:
                _import_on_first_use(name)
            with _not_installed_for_this_thread(_LEFT_OUT_OF_GX):
                import great_expectations as gx
                import great_expectations.expectations as gxe
                from great_expectations.data_context.types.base import ProgressBarsConfig

            # ephemeral: no results are stored and no Data Docs are built (GX still makes an empty temp folder
            # for its docs site; nothing is written into it)
            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            _GX.update(gx=gx, gxe=gxe, ctx=ctx, n=0)
    return _GX["gx"], _GX["gxe"], _GX["ctx"]


#: Modules GX imports with itself that our checks never use: ≈ 0.9 of its import's ≈ 2.9 s of CPU were
#: `scipy.stats`, which three expectations we do not run (KL divergence, KS tests) import at module level.
#: (Before Python 3.12.3 two threads reading a lazy module's first attribute at once could fail; nothing of
#: ours reads it, and a check from a per-form YAML that does, a KL divergence, runs in one thread.)
_IMPORTED_ON_FIRST_USE = ("scipy.stats",)


def _import_on_first_use(name: str) -> None:
    """Put a module in `sys.modules` that is imported when one of its attributes is first read (the standard
    library's `importlib.util.LazyLoader`); nothing if it is imported already or not installed."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # `from scipy import stats` reads the attribute first


#: Optional dependencies of GX that our checks never use; GX imports them when they are installed, and leaves
#: out what needs them when they are not (`great_expectations.compatibility`). SQLAlchemy (a fixed dependency
#: that no code of ours imports) serves GX's SQL data sources: ≈ 0.15–0.2 of its import's ≈ 1.4–2 s of CPU.
_LEFT_OUT_OF_GX = ("sqlalchemy",)


class _NotInstalled(importlib.abc.MetaPathFinder):
    """An import finder that reports `names` (and their submodules) as not installed, to one thread only."""

    def __init__(self, names: Sequence[str], thread: threading.Thread) -> None:
        self._names, self._thread = frozenset(names), thread

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self._names and threading.current_thread() is self._thread:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@contextmanager
def _not_installed_for_this_thread(names: Sequence[str]) -> Iterator[None]:
    """Within the block, `import` of `names` fails in this thread as if they were not installed; other threads
    (the sync's own work goes on during GX's import) import them as usual. Names imported already stay."""
    finder = _NotInstalled([n for n in names if n not in sys.modules], threading.current_thread())
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def preload_gx() -> None:
    """Start importing GX (≈ 2 s of CPU) in a background thread, to overlap DuckDB work done meanwhile.

    Call it as soon as a sync knows it will validate; the first `validate_*` call waits for the import.
    A second call while the import runs starts nothing (a sync calls it after its load and in its checks).
    """
    if not _GX and not _GX_LOCK.locked():
        threading.Thread(target=_preload, name="gx-import", daemon=True).start()


def _preload() -> None:
    try:
        _gx()
    except Exception:  # noqa: BLE001 — the caller's own `_gx()` raises it again, where it is handled
        log.debug("background GX import failed", exc_info=True)


def _expectation(gxe: Any, spec: ExpectationSpec) -> Any:
    cls_name = "".join(p.capitalize() for p in spec.type.split("_"))
    cls = getattr(gxe, cls_name, None)
    if cls is None:
        raise ValueError(f"unknown GX expectation type {spec.type}")
    severity = "critical" if spec.severity == "error" else "warning"
    return cls(**spec.kwargs, meta={**spec.meta, "check_id": spec.id}, severity=severity)


class _GxSession:
    """One pandas data source for the frames of one validation; each list of checks becomes one GX suite."""

    def __init__(self) -> None:
        self._gx, self._gxe, self._ctx = _gx()
        with _GX_LOCK:
            _GX["n"] += 1
            self.name = f"kobo_etl_{_GX['n']}"
        source = self._ctx.data_sources.add_pandas(name=self.name)
        self._rows = source.add_dataframe_asset(name="rows").add_batch_definition_whole_dataframe("rows")
        self._suites: dict[tuple[str, ...], Any] = {}

    def __enter__(self) -> _GxSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # the data source's execution engine holds the last frame: dropping it frees that memory
        self._ctx.data_sources.delete(self.name)

    def run(self, specs: Sequence[ExpectationSpec], frame: pd.DataFrame) -> list[CheckResult]:
        """One result per check in `specs`, in their order, from one GX validation of `frame`."""
        key = tuple(e.id for e in specs)
        gx_suite = self._suites.get(key)
        if gx_suite is None:
            gx_suite = self._gx.ExpectationSuite(
                name=f"{self.name}_{len(self._suites)}",
                expectations=[_expectation(self._gxe, e) for e in specs],
            )
            self._suites[key] = gx_suite
        batch = self._rows.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(gx_suite, result_format=RESULT_FORMAT)
        by_id = {e.id: e for e in specs}
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
        order = {e.id: i for i, e in enumerate(specs)}
        return sorted(out, key=lambda c: order.get(c.expectation, 0))


def to_token_frame(df: pd.DataFrame, select_multiple: dict[str, list[str]]) -> pd.DataFrame:
    """One row per ticked option: `_id` plus one column per select_multiple question (NULL elsewhere).

    GX map expectations ignore NULLs, so one frame serves every question's in-set check. Answers are split
    on the whitespace DuckDB's `\\s` matches, as `validate_table` and `failed_rows` split them.
    """
    import pandas as pd

    parts = []
    for col in select_multiple:
        if col not in df.columns:
            continue
        s = df[col].dropna().astype(str).str.split(r"[ \t\n\r\f]+", regex=True).explode().dropna()
        s = s[s != ""]
        parts.append(pd.DataFrame({"_id": df.loc[s.index, "_id"].to_numpy(), col: s.to_numpy()}))
    if not parts:
        return pd.DataFrame({"_id": pd.Series([], dtype="Int64")})
    return pd.concat(parts, ignore_index=True)


def _missing_columns(
    expected_columns: Iterable[str] | None, have: Iterable[str], rows: int, prefix: str
) -> list[CheckResult]:
    """A failed `structural` result for each column of the form the data lacks."""
    present = set(have)
    return [
        CheckResult(
            f"column_exists:{prefix}{col}",
            col,
            "error",
            False,
            rows,
            rows,
            100.0 if rows else 0.0,
            kind="structural",
            type="expect_column_to_exist",
            description=f"The form has a column {prefix}{col} but the data does not.",
        )
        for col in expected_columns or ()
        if col not in present
    ]


def _split(suite: SuiteSpec, *, unique: bool) -> tuple[list[ExpectationSpec], list[ExpectationSpec]]:
    """A table's checks on its rows and on its select_multiple tokens (uniqueness kept only if `unique`)."""
    rows = [e for e in suite.expectations if not is_tokens_table(e.table)]
    if not unique:
        rows = [e for e in rows if e.type not in _UNIQUE_TYPES]
    return rows, [e for e in suite.expectations if is_tokens_table(e.table)]


def _for_columns(
    suite: SuiteSpec, specs: list[ExpectationSpec], cols: Iterable[str]
) -> list[ExpectationSpec]:
    """`specs` without the checks on columns not in `cols` (as `suite_for_columns`)."""
    return suite_for_columns(SuiteSpec(suite.form, specs), cols).expectations


def validate_frame(
    df: pd.DataFrame,
    suite: SuiteSpec,
    *,
    expected_columns: Iterable[str] | None = None,
    table: str = MAIN_TABLE,
) -> list[CheckResult]:
    """Run the suite's checks on `table` on a pseudonymised frame of its rows; one result per check.

    GX sees `df` as it is (no column or dtype changes): this is the reference `validate_table` must match.

    Args:
        df: the rows to check (e.g. `con.execute('SELECT * FROM "slug".submissions WHERE ...').df()`).
        suite: from `build_suite` (checks on other tables are left out).
        expected_columns: the table's columns in the form; any missing from `df` gives a failed
            `structural` result (the data no longer matches the form), and checks on it are skipped.
        table: `submissions` or a repeat table's name.
    """
    suite = suite.for_table(table)
    prefix = "" if table == MAIN_TABLE else f"{table}."
    results = _missing_columns(expected_columns, df.columns, len(df), prefix)
    row_specs, token_specs = _split(suite, unique=True)
    row_specs = _for_columns(suite, row_specs, df.columns)
    tokens_df = to_token_frame(df, suite.select_multiple)
    token_specs = _for_columns(suite, token_specs, tokens_df.columns)
    if row_specs or token_specs:
        with _GxSession() as gx:
            if row_specs:
                results.extend(gx.run(row_specs, df))
            if token_specs:
                results.extend(_own_tokens(r) for r in gx.run(token_specs, tokens_df))
    return results


def validate_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    suite: SuiteSpec,
    *,
    ids_table: str | None = None,
    expected_columns: Iterable[str] | None = None,
    chunk_rows: int | None = None,
    repeat: str | None = None,
) -> list[CheckResult]:
    """Run the suite on a table's rows with GX, one chunk of rows (an `_id` range) at a time.

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
        chunk_rows: the most rows GX holds in memory at once; None = as many as fit in `CHUNK_BYTES`.
        repeat: the repeat table's name when `table` is a repeat table (e.g. `members`); None = main.

    Returns:
        One result per check; empty when there are no rows to check.
    """
    frame_table = repeat or MAIN_TABLE
    suite = suite.for_table(frame_table)
    if not suite.expectations and expected_columns is None:
        return []
    scope = _scope_sql(table, ids_table, repeat=repeat is not None)
    types = {str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE {scope}").fetchall()}
    total_row = con.execute(f"SELECT count(*) FROM ({scope})").fetchone()
    total = int(total_row[0]) if total_row else 0
    if total == 0:
        return []
    prefix = "" if frame_table == MAIN_TABLE else f"{frame_table}."
    results = _missing_columns(expected_columns, types, total, prefix)
    row_specs, token_specs = _split(suite, unique=False)
    unique = [e for e in suite.expectations if e.type in _UNIQUE_TYPES and not is_tokens_table(e.table)]
    row_specs = _for_columns(suite, row_specs, types)
    # the token frame has a column per select_multiple question (plus `_id`), as `to_token_frame`
    sm_columns = [c for c in suite.select_multiple if c in types]
    token_specs = _for_columns(suite, token_specs, [*sm_columns, "_id"])
    row_columns = _columns_read(row_specs, list(types))
    # tokens: a few short strings per answer (≈ 32 bytes a row for each select_multiple column)
    width = _row_bytes(row_specs, row_columns, types) + (32 * len(sm_columns) if token_specs else 0)
    size = chunk_rows or max(1, CHUNK_BYTES // width)
    # as many chunks as needed, of even size: no last chunk of a few rows paying a whole GX run, and the
    # largest chunk (GX's peak memory) as small as that number of chunks allows
    size = -(-total // -(-total // size))
    parts: dict[str, list[CheckResult]] = {}
    if row_specs or token_specs:
        select = ", ".join(_q(c) for c in row_columns)
        # row order matters only to checks other than simple value checks (GX's `..._increasing`, ...)
        simple = bool(_readers(row_specs)) and all(e.type in _VALUE_TYPES for e in row_specs)
        order_by = "" if simple else " ORDER BY _id"
        with _GxSession() as gx:
            for where, params in _chunks(con, scope, size):
                if row_specs:
                    sql = f"SELECT {select} FROM ({scope}) WHERE {where}{order_by}"
                    frame = _read_frame(con, sql, params, row_specs)
                    for r in gx.run(row_specs, frame):
                        parts.setdefault(r.expectation, []).append(r)
                    del frame  # the next chunk's frame must not coexist with this one
                if token_specs:
                    tokens = _token_frame(con, scope, where, params, sm_columns, token_specs)
                    for r in gx.run(token_specs, tokens):
                        parts.setdefault(r.expectation, []).append(_own_tokens(r))
                    del tokens
    by_id = {e.id: e for e in suite.expectations}
    results += [_merge(rs, by_id.get(k)) for k, rs in parts.items()]
    results += _unique_results(con, scope, unique)
    order = {e.id: i for i, e in enumerate(suite.expectations)}
    return sorted(
        results,
        key=lambda c: (
            c.kind != "structural",
            is_tokens_table(by_id[c.expectation].table) if c.expectation in by_id else False,
            order.get(c.expectation, 0),
        ),
    )


def _chunks(con: duckdb.DuckDBPyConnection, scope: str, size: int) -> list[tuple[str, list[Any]]]:
    """`_id` ranges of about `size` rows each (a repeat's submission is never split), as SQL conditions."""
    starts = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT _id FROM (SELECT _id, row_number() OVER (ORDER BY _id) - 1 AS rn "
            f"FROM ({scope}) WHERE _id IS NOT NULL) WHERE rn % ? = 0 ORDER BY _id",
            [max(1, size)],
        ).fetchall()
    ]
    chunks: list[tuple[str, list[Any]]] = [
        ("_id >= ? AND _id < ?", [a, b]) for a, b in zip(starts, starts[1:], strict=False)
    ]
    # a NULL _id is a failed check, not a reason to drop the row: the last chunk takes them
    chunks.append(("_id >= ? OR _id IS NULL", [starts[-1]]) if starts else ("_id IS NULL", []))
    return chunks


def _spec_columns(spec: ExpectationSpec) -> set[str] | None:
    """The columns a check reads; None when it may read others (a row condition, a table-level check)."""
    if spec.kwargs.get("row_condition"):
        return None
    cols = {str(spec.kwargs[k]) for k in ("column", "column_A", "column_B") if spec.kwargs.get(k)}
    cols |= {str(c) for c in spec.kwargs.get("column_list") or ()}
    return cols or None


def _columns_read(specs: Sequence[ExpectationSpec], columns: list[str]) -> list[str]:
    """The columns of `columns` the checks read (all of them if one check may read any)."""
    wanted: set[str] = set()
    for spec in specs:
        cols = _spec_columns(spec)
        if cols is None:
            return columns
        wanted |= cols
    return [c for c in columns if c in wanted]


def _row_bytes(specs: Sequence[ExpectationSpec], columns: list[str], types: dict[str, str]) -> int:
    """Rough bytes per row of `columns` while a chunk is read (`_read_frame`): 8 per number or date, 16 per
    string read as a categorical (its Arrow form), 64 per string read by `.df()`."""
    readers = _readers(specs)
    width = 0
    for col in columns:
        if not types.get(col, "").startswith("VARCHAR"):
            width += 8
        else:
            width += 16 if readers.get(col, {"?"}) <= _EQUALITY_TYPES else 64
    return max(width, 8)


def _readers(specs: Sequence[ExpectationSpec]) -> dict[str, set[str]]:
    """Column -> the types of the checks that read it; empty when a check may read any column."""
    out: dict[str, set[str]] = {}
    for spec in specs:
        cols = _spec_columns(spec)
        if cols is None:
            return {}
        for col in cols:
            out.setdefault(col, set()).add(spec.type)
    return out


def _read_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], specs: Sequence[ExpectationSpec]
) -> pd.DataFrame:
    """A chunk's rows for GX, in the dtypes DuckDB's `.df()` gives, except where GX provably answers the same.

    A string column read only by null/in-set checks comes as a categorical (through an Arrow dictionary:
    about a tenth of `.df()`'s memory, and GX copies the whole frame for each check it filters). An integer
    column read only by those or by order comparisons comes as int64, or as float64 when it has NULLs and
    every value is exact as a float (GX's between check is vectorised on these, but runs Python per value
    on the nullable integers `.df()` gives). If a check may read any column (a row condition, a table-level
    check), every column keeps `.df()`'s dtype.
    """
    return _arrow_frame(con, con.sql(sql, params=params).to_arrow_table(), specs)


def _arrow_frame(
    con: duckdb.DuckDBPyConnection, table: pa.Table, specs: Sequence[ExpectationSpec]
) -> pd.DataFrame:
    """`table` as `_read_frame` gives a query's rows to GX."""
    import pandas as pd
    import pyarrow.compute as pc

    readers = _readers(specs)
    cheap: dict[str, Any] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        kinds = readers.get(name)
        if not kinds:
            continue
        if _is_text(col.type) and kinds <= _EQUALITY_TYPES:
            cheap[name] = pc.dictionary_encode(col).to_pandas()
        elif pa.types.is_signed_integer(col.type) and kinds <= _VALUE_TYPES:
            bounds = pc.min_max(col).as_py()
            if bounds["min"] is None or -_FLOAT_EXACT <= bounds["min"] <= bounds["max"] <= _FLOAT_EXACT:
                cheap[name] = col.cast(pa.int64()).to_pandas()  # int64, or float64 with NaN for NULLs
    rest = [n for n in table.column_names if n not in cheap]
    if not cheap:
        return con.from_arrow(table).df()
    plain = con.from_arrow(table.select(rest)).df() if rest else pd.DataFrame()
    return pd.DataFrame({n: cheap[n] if n in cheap else plain[n] for n in table.column_names})


def _is_text(arrow_type: Any) -> bool:
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
                or pa.types.is_string_view(arrow_type))


def _token_frame(
    con: duckdb.DuckDBPyConnection,
    scope: str,
    where: str,
    params: list[Any],
    sm_columns: Sequence[str],
    specs: Sequence[ExpectationSpec],
) -> pd.DataFrame:
    """The tokens of one chunk's select_multiple answers, split in DuckDB, for the checks in `specs`.

    Each question's tokens fill its own column, side by side, padded with NULLs to the longest (GX's value
    checks leave NULLs out, and `_own_tokens` counts each question's tokens only). One row per token with
    the other questions NULL, as `to_token_frame`, would grow with tokens × questions: 200 select_multiple
    questions made a frame DuckDB could not hold. That layout stays for checks that may read any column
    (they need each token's `_id`).
    """
    keep = _columns_read(specs, [*sm_columns, "_id"])
    if "_id" in keep and sm_columns:  # every question's rows, as `to_token_frame`: `_id` checks count all
        parts = [
            f"SELECT _id, tok AS {_q(col)} FROM (SELECT _id, unnest({_tokens_sql(_q(col))}) AS tok "
            f"FROM ({scope}) WHERE ({where}) AND {_q(col)} IS NOT NULL) WHERE tok <> ''"
            for col in sm_columns
        ]
        sql = f"SELECT {', '.join(_q(c) for c in keep)} FROM ({' UNION ALL BY NAME '.join(parts)})"
        return _read_frame(con, sql, params * len(parts), specs)
    columns = [c for c in sm_columns if c in keep]
    if not columns:
        import pandas as pd

        return pd.DataFrame({c: pd.Series([], dtype="object") for c in keep})
    lists = ", ".join(
        f"flatten(list(list_filter({_tokens_sql(_q(c))}, lambda t: t <> '')) "
        f"FILTER (WHERE {_q(c)} IS NOT NULL)) AS {_q(c)}"
        for c in columns
    )
    row = con.sql(f"SELECT {lists} FROM ({scope}) WHERE ({where})", params=params).to_arrow_table()
    tokens = {c: row.column(c)[0].values or pa.array([], pa.string()) for c in columns}
    longest = max((len(v) for v in tokens.values()), default=0)
    padded = {c: pa.concat_arrays([v, pa.nulls(longest - len(v), pa.string())]) for c, v in tokens.items()}
    return _arrow_frame(con, pa.table(padded), specs)


def _own_tokens(result: CheckResult) -> CheckResult:
    """A token check's counts over its own question's tokens: the NULLs of a token frame are other questions'
    rows (or padding), not missing answers."""
    if result.missing_count is None:
        return result
    return replace(result, element_count=result.element_count - result.missing_count, missing_count=0)


def _tokens_sql(column: str) -> str:
    """The tokens of a select_multiple answer as a list (with an empty string for an empty answer)."""
    return f"string_split_regex(trim(CAST({column} AS VARCHAR)), '\\s+')"


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
    percent = unexpected / considered * 100 if considered else 0.0  # GX's arithmetic, to the last bit
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
        counts = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {missing}) FROM ({scope})").fetchone()
        element, missed = (int(x) for x in counts) if counts else (0, 0)
        # the keys go through a temp table: grouping them while `scope` joins the loaded ids needs both hash
        # tables at once (≈ 60 bytes a row each, not spilled), out of memory at 2 000 000 submissions under
        # 128 MiB; one at a time, each spills
        keys = "temp.main._unique_keys"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _unique_keys AS "
            f"SELECT {quoted} FROM ({scope}) WHERE NOT ({missing})"
        )
        try:
            dup = con.execute(
                f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {keys} GROUP BY {quoted} "
                "HAVING count(*) > 1)"
            ).fetchone()
        finally:
            con.execute(f"DROP TABLE IF EXISTS {keys}")
        unexpected = int(dup[0]) if dup else 0
        considered = element - missed
        mostly = float(spec.kwargs.get("mostly", 1.0))
        out.append(
            CheckResult(
                spec.id, spec.column, spec.severity,
                considered == 0 or (considered - unexpected) / considered >= mostly,
                element, unexpected, unexpected / considered * 100 if considered else 0.0,
                kind="gx", type=spec.type, description=spec.description, missing_count=missed,
            )
        )
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _failing_predicate(spec: ExpectationSpec) -> tuple[str, list[Any]] | None:
    """A SQL condition true for the rows that fail `spec`, or None when the type has no row-level form."""
    kw, t = spec.kwargs, spec.type
    col = kw.get("column")
    c = _q(col) if col else ""
    if is_tokens_table(spec.table) and t == "expect_column_values_to_be_in_set":
        return (
            f"EXISTS (SELECT 1 FROM (SELECT unnest({_tokens_sql(c)}) AS tok) "
            "WHERE tok <> '' AND NOT list_contains(?::VARCHAR[], tok))",
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
) -> pa.Table:
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

    Returns:
        A `FAILED_ROWS_SCHEMA` table, by check and then by `_id` (and `_key`); rows with a NULL `_id` are left
        out (no submission to follow up).
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
    out = [FAILED_ROWS_SCHEMA.empty_table()]
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
            f"WITH scope AS ({scope}) SELECT _id, CAST({enum} AS VARCHAR) AS enumerator, "
            f"CAST({key} AS VARCHAR) AS row_key FROM scope WHERE ({where}) AND _id IS NOT NULL "
            f"ORDER BY {'_id, _key' if repeat else '_id'}"
        )
        rows = query_arrow(con, sql, params_scope + params)
        out.append(to_failed_rows(rows, spec.id, spec.column, spec.severity))
    return pa.concat_tables(out)
