"""High-frequency checks (HFC) as DuckDB SQL over a form's warehouse table: counts and failing `_id`s.

The checks follow what MEAL teams run during fieldwork (IPA ipacheck, UNHCR HighFrequencyChecks,
IMPACT cleaningtools). Thresholds come from `FormConfig.quality` with the defaults in `DEFAULTS`
(documented in docs/data-quality.md). A check whose columns are missing is skipped with a note.
Only ids, pseudonyms and counts leave this module, never an answer.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from expectations.suites import KOBO_METADATA, TEXT_COLUMN_NOTE
from expectations.validate import FAILED_ROWS_SCHEMA, CheckResult, query_arrow, to_failed_rows
from transforms.model import MAIN_TABLE, FormSchema

if TYPE_CHECKING:
    import duckdb

#: Defaults; every key can be set per form under `quality:` in config/forms/<slug>.yaml.
DEFAULTS: dict[str, Any] = {
    # IMPACT cleaningtools check_duration: < 25 or > 90 minutes (UNHCR HFC uses 30 as the minimum)
    "duration_min_minutes": 25,
    "duration_max_minutes": 90,
    "duration_min_per_member_minutes": 3,  # UNHCR isInterviewTooShortForTheHouseholdSize
    "household_size_column": "hh_size",
    "fieldwork_start": None,  # a date, e.g. 2026-03-01; without it the check is skipped
    "future_tolerance_minutes": 60,  # device clocks drift; an hour ahead is not "in the future"
    "timezone": "UTC",  # for "interview on more than one day" and per-day counts
    "unique_columns": [],  # e.g. [phone] or [[admin2, hh_id]]: pseudonymised values that must be unique
    "consent_column": "consent",
    "consent_yes": "yes",
    "consent_no": "no",
    "consent_answer_columns": None,  # default: every answer column after consent in the form
    "outlier_columns": None,  # default: every integer/decimal/range question
    "outlier_method": "iqr",  # iqr | sd | both
    "outlier_iqr_k": 1.5,  # IPA ipacheckoutliers default multiplier
    "outlier_sd": 3.0,  # cleaninginspectoR / cleaningtools
    "outlier_log": False,  # also test log(x+1) (skewed values such as income)
    "outlier_min_n": 10,  # fewer values than this: no outlier test
    "enumerator_column": None,  # default: _submitted_by, else username
    "productivity_z": 2.0,  # UNHCR enumeratorProductivityOutliers sdval default
    "dont_know_values": ["dont_know", "do_not_know", "dk", "-99", "-999"],
    "refuse_values": ["refuse", "refused", "prefer_not_to_say", "prefer_not_to_answer", "-98", "-88"],
    "gps_bbox": None,  # {min_lat, max_lat, min_lon, max_lon} or [min_lon, min_lat, max_lon, max_lat]
    "gps_columns": None,  # [lat, lon]; default: the first <x>_latitude / <x>_longitude pair
    "severity": {},  # check id (or its prefix before ':') -> error | warning
}

SEVERITY: dict[str, str] = {
    "duplicate": "error",
    "consent_missing": "error",
    "consent_no_with_answers": "error",
    "duration_too_short": "error",
    "duration_too_long": "warning",
    "duration_per_member": "warning",
    "more_than_one_day": "warning",
    "in_future": "error",
    "before_fieldwork": "error",
    "gps_outside_bbox": "error",
    "outlier": "warning",
    "enumerator_productivity": "warning",
    "outdated_version": "warning",
    "other_specify": "info",
}

_META_COLUMNS = KOBO_METADATA | {"instanceID", "instanceName", "_dq_status"}
_META_TYPES = KOBO_METADATA | {
    "note",
    "calculate",
    "hidden",
    "begin_group",
    "end_group",
    "begin_repeat",
    "end_repeat",
}


#: The failing submissions of one check: `_id` and the enumerator's pseudonym, straight from DuckDB as Arrow
#: columns (a check such as `outdated_version` can fail most of the rows of a big form).
HFC_ROWS_SCHEMA = pa.schema([("_id", pa.int64()), ("enumerator", pa.string())])


@dataclass(frozen=True)
class HfcResult:
    """One high-frequency check: how many submissions fail it and which (`rows`, as `HFC_ROWS_SCHEMA`)."""

    check: str
    title: str
    severity: str
    column: str | None
    checked: int
    rows: pa.Table = field(default_factory=HFC_ROWS_SCHEMA.empty_table)
    skipped: bool = False
    note: str = ""
    #: how many fail when `rows` holds only the first of them (`HfcReport.with_examples_only`)
    total: int | None = None

    @property
    def count(self) -> int:
        return int(self.rows.num_rows) if self.total is None else self.total

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.rows["_id"].to_pylist()]

    @property
    def success(self) -> bool:
        return self.skipped or self.count == 0


#: bins of the report's interview-duration histogram
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class Histogram:
    """How many values fall in each of `len(counts)` equal bins from `low` to `high`."""

    low: float
    high: float
    counts: list[int]


@dataclass
class HfcReport:
    """Everything the HFCs found for one form, plus the aggregates the report draws."""

    form: str
    rows: int
    results: list[HfcResult] = field(default_factory=list)
    enumerators: list[dict[str, Any]] = field(default_factory=list)
    missingness: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    #: interview durations for the report's histogram, counted per bin by DuckDB (nothing per submission)
    durations: Histogram | None = None
    per_day: list[tuple[date, int]] = field(default_factory=list)

    def check_results(self) -> list[CheckResult]:
        """The checks as `CheckResult(kind='hfc')`, for `ops.dq_results` (skipped checks included)."""
        out = []
        for r in self.results:
            pct = 100.0 * r.count / r.checked if r.checked else 0.0
            out.append(
                CheckResult(
                    r.check,
                    r.column,
                    r.severity,
                    r.success,
                    r.checked,
                    r.count,
                    pct,
                    kind="hfc",
                    type="hfc",
                    description=r.title + (f" ({r.note})" if r.note else ""),
                )
            )
        return out

    def failed_rows(self) -> pa.Table:
        """Every failing submission of every check, as `expectations.validate.FAILED_ROWS_SCHEMA` rows."""
        return pa.concat_tables([FAILED_ROWS_SCHEMA.empty_table(), *self.iter_failed_rows()])

    def iter_failed_rows(self) -> Iterator[pa.Table]:
        """The same, one check at a time, each made only when asked for (a sync puts each into its
        `warehouse.quality.FailedRows` table): the rows of every check with their rule and column are never
        in memory at once."""
        for r in self.results:
            if r.total is not None and r.total != r.rows.num_rows:
                raise ValueError(f"{self.form}: the failing rows of {r.check} were dropped after writing")
            if r.count:
                yield to_failed_rows(r.rows, r.check, r.column, r.severity)

    def with_examples_only(self, examples: int) -> HfcReport:
        """The same report keeping the first `examples` failing submissions of each check and their count:
        once the rows are written (a sync's `FailedRows` table, then `ops.dq_failed_rows`, where the report
        reads them), holding them all until the run's report would grow with the number of submissions
        (≈ 40 bytes per failing one)."""
        results = [
            replace(r, rows=r.rows.slice(0, examples), total=r.count) if r.count > examples else r
            for r in self.results
        ]
        return replace(self, results=results)


_NUMBER_TYPES = ("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "DECIMAL", "SMALLINT", "HUGEINT", "REAL", "TINYINT",
                 "UBIGINT", "UINTEGER")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Ctx:
    """The table, its column types, thresholds and the helpers every check shares."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        opts: dict[str, Any],
        schema: FormSchema | None,
        now: datetime,
    ):
        self.con, self.table, self.opts, self.schema, self.now = con, table, opts, schema, now
        desc = con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()
        self.types: dict[str, str] = {r[0]: str(r[1]).upper() for r in desc}
        self.order = [r[0] for r in desc]
        self.n = int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
        enum = opts.get("enumerator_column")
        if not enum:
            enum = next((c for c in ("_submitted_by", "username") if c in self.types), None)
        self.enum = enum if enum in self.types else None
        self.enum_sql = f"CAST({_q(self.enum)} AS VARCHAR)" if self.enum else "CAST(NULL AS VARCHAR)"
        self.tz = str(opts.get("timezone") or "UTC")

    def has(self, *cols: str) -> bool:
        return all(c in self.types for c in cols)

    def ts(self, col: str) -> str:
        """`col` as TIMESTAMPTZ whatever its stored type (naive timestamps are UTC in the warehouse)."""
        t, c = self.types[col], _q(col)
        if "WITH TIME ZONE" in t or t == "TIMESTAMPTZ":
            return c
        if t.startswith("TIMESTAMP") or t == "DATE":
            return f"timezone('UTC', CAST({c} AS TIMESTAMP))"
        return f"TRY_CAST({c} AS TIMESTAMPTZ)"

    def local_date(self, col: str) -> str:
        return f"CAST(timezone('{self.tz.replace(chr(39), '')}', {self.ts(col)}) AS DATE)"

    def duration(self) -> str | None:
        if not self.has("start", "end"):
            return None
        return f"((epoch({self.ts('end')}) - epoch({self.ts('start')})) / 60.0)"

    def severity(self, check: str) -> str:
        sev = self.opts.get("severity") or {}
        return str(
            sev.get(check) or sev.get(check.split(":")[0]) or SEVERITY.get(check.split(":")[0], "warning")
        )

    def flag(
        self,
        check: str,
        title: str,
        where: str,
        params: Sequence[Any] = (),
        column: str | None = None,
        note: str = "",
    ) -> HfcResult:
        sql = (
            f"SELECT CAST(_id AS BIGINT) AS _id, {self.enum_sql} AS enumerator FROM {self.table} "
            f"WHERE ({where}) AND _id IS NOT NULL ORDER BY _id"
        )
        rows = query_arrow(self.con, sql, params).cast(HFC_ROWS_SCHEMA)
        return HfcResult(check, title, self.severity(check), column, self.n, rows, note=note)

    def skip(self, check: str, title: str, note: str, column: str | None = None) -> HfcResult:
        return HfcResult(check, title, self.severity(check), column, self.n, skipped=True, note=note)

    def answer_columns(self) -> list[str]:
        """Answer columns in form order (no system, metadata, calculate or choice-flag columns)."""
        if self.schema is not None:
            qtype = {q.column: q.type for q in self.schema.questions.values() if q.table == MAIN_TABLE}
            cols = [
                c.name
                for c in self.schema.main.columns
                if c.role in ("answer", "geo_part") and qtype.get(c.name, "") not in _META_TYPES
            ]
            return [c for c in cols if c in self.types and c not in _META_COLUMNS]
        return [c for c in self.order if not c.startswith("_") and "__" not in c and c not in _META_COLUMNS]

    def is_number(self, col: str) -> bool:
        """Stored as a number (a question the privacy policy bands is text, `18-59`, whatever its type)."""
        return col in self.types and self.types[col].startswith(_NUMBER_TYPES)

    def numeric_questions(self) -> list[str]:
        if self.opts.get("outlier_columns"):
            return [c for c in self.opts["outlier_columns"] if self.is_number(c)]
        if self.schema is not None:
            cols = [
                q.column
                for q in self.schema.questions.values()
                if q.table == MAIN_TABLE and q.type in ("integer", "decimal", "range")
            ]
            return [c for c in dict.fromkeys(cols) if self.is_number(c)]
        return [
            c
            for c in self.answer_columns()
            if self.is_number(c) and not c.endswith(("_latitude", "_longitude", "_altitude", "_precision"))
        ]


def run_hfc(
    con: duckdb.DuckDBPyConnection,
    slug: str,
    *,
    schema: FormSchema | None = None,
    quality: Mapping[str, Any] | None = None,
    table: str = MAIN_TABLE,
    now: datetime | None = None,
) -> HfcReport:
    """Run every high-frequency check on `"<slug>"."<table>"` (the whole table: duplicates and trends
    need the earlier syncs too).

    Args:
        con: an open DuckDB connection (the warehouse).
        slug: the form's schema name.
        schema: the form schema (better answer-column and numeric-question detection); optional.
        quality: `FormConfig.quality`; unknown keys are ignored, missing keys take `DEFAULTS`.
        now: the reference time for "in the future" (default: the current UTC time).
    """
    opts = {**DEFAULTS, **dict(quality or {})}
    now = now or datetime.now(UTC)
    cx = _Ctx(con, f"{_q(slug)}.{_q(table)}", opts, schema, now)
    rep = HfcReport(slug, cx.n)
    res = rep.results
    res += _duration_checks(cx)
    res += _date_checks(cx)
    res += _duplicate_checks(cx)
    res += _consent_checks(cx)
    res += _gps_check(cx)
    outliers = _outlier_checks(cx)
    res += outliers
    res += _version_check(cx, rep)
    res += _other_specify(cx)
    rep.missingness = _missingness(cx)
    rep.enumerators, prod = _enumerator_dashboard(cx, outliers)
    res.append(prod)
    dur = cx.duration()
    if dur is not None:
        rep.durations = _histogram(con, f"SELECT CAST({dur} AS DOUBLE) AS v FROM {cx.table} WHERE {dur} >= 0")
    day = (
        cx.local_date("start")
        if cx.has("start")
        else (cx.local_date("_submission_time") if cx.has("_submission_time") else None)
    )
    if day is not None:
        rep.per_day = [
            (r[0], int(r[1]))
            for r in con.execute(
                f"SELECT {day} AS d, count(*) FROM {cx.table} WHERE d IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
        ]
    return rep


def _histogram(
    con: duckdb.DuckDBPyConnection, values_sql: str, bins: int = HISTOGRAM_BINS
) -> Histogram | None:
    """Counts of `values_sql`'s column `v` in `bins` equal bins from its lowest to its highest value (a
    single value: one bin wide); None when it has no rows."""
    low_high = con.execute(f"SELECT min(v), max(v) FROM ({values_sql})").fetchone()
    if low_high is None or low_high[0] is None:
        return None
    low, high = float(low_high[0]), float(low_high[1])
    high = high if high > low else low + 1
    step = (high - low) / bins
    counts = [0] * bins
    for b, n in con.execute(
        f"SELECT least(CAST(floor((v - ?) / ?) AS BIGINT), ?) AS b, count(*) FROM ({values_sql}) GROUP BY b",
        [low, step, bins - 1],
    ).fetchall():
        counts[int(b)] = int(n)
    return Histogram(low, high, counts)


def _duration_checks(cx: _Ctx) -> list[HfcResult]:
    dur = cx.duration()
    titles = {
        "duration_too_short": f"Interview shorter than {cx.opts['duration_min_minutes']} minutes",
        "duration_too_long": f"Interview longer than {cx.opts['duration_max_minutes']} minutes",
        "duration_per_member": (
            f"Interview shorter than {cx.opts['duration_min_per_member_minutes']} "
            "minutes per household member"
        ),
    }
    if dur is None:
        return [cx.skip(k, t, "the form has no start/end times") for k, t in titles.items()]
    out = [
        cx.flag(
            "duration_too_short",
            titles["duration_too_short"],
            f"{dur} >= 0 AND {dur} < ?",
            [cx.opts["duration_min_minutes"]],
            "end",
        ),
        cx.flag(
            "duration_too_long",
            titles["duration_too_long"],
            f"{dur} > ?",
            [cx.opts["duration_max_minutes"]],
            "end",
        ),
    ]
    hh = str(cx.opts.get("household_size_column") or "")
    if hh and cx.has(hh) and not cx.is_number(hh):
        out.append(cx.skip("duration_per_member", titles["duration_per_member"],
                           f"{hh}: {TEXT_COLUMN_NOTE}", hh))
    elif hh and cx.has(hh):
        out.append(
            cx.flag(
                "duration_per_member",
                titles["duration_per_member"],
                f"{_q(hh)} > 0 AND {dur} >= 0 AND {dur} / {_q(hh)} < ?",
                [cx.opts["duration_min_per_member_minutes"]],
                hh,
            )
        )
    else:
        out.append(cx.skip("duration_per_member", titles["duration_per_member"], "no household-size column"))
    return out


def _date_checks(cx: _Ctx) -> list[HfcResult]:
    out = []
    t_multi, t_future, t_before = (
        "Interview spread over more than one day",
        "Interview dated in the future",
        "Interview before fieldwork started",
    )
    if cx.has("start", "end"):
        out.append(
            cx.flag(
                "more_than_one_day", t_multi, f"{cx.local_date('start')} <> {cx.local_date('end')}", (), "end"
            )
        )
    else:
        out.append(cx.skip("more_than_one_day", t_multi, "the form has no start/end times"))
    times = [c for c in ("start", "end") if cx.has(c)]
    if times:
        cond = " OR ".join(f"{cx.ts(c)} > ?::TIMESTAMPTZ + INTERVAL (?) MINUTE" for c in times)
        params: list[Any] = []
        for _ in times:
            params += [cx.now, int(cx.opts["future_tolerance_minutes"])]
        out.append(cx.flag("in_future", t_future, cond, params, times[0]))
    else:
        out.append(cx.skip("in_future", t_future, "the form has no start/end times"))
    fs = cx.opts.get("fieldwork_start")
    if not fs:
        out.append(cx.skip("before_fieldwork", t_before, "no fieldwork_start in the form's quality settings"))
    elif not times:
        out.append(cx.skip("before_fieldwork", t_before, "the form has no start/end times"))
    else:
        fs_date = fs if isinstance(fs, date) else date.fromisoformat(str(fs))
        out.append(
            cx.flag(
                "before_fieldwork",
                f"{t_before} ({fs_date.isoformat()})",
                f"{cx.local_date(times[0])} < ?::DATE",
                [fs_date],
                times[0],
            )
        )
    return out


def _duplicate_checks(cx: _Ctx) -> list[HfcResult]:
    out = []
    groups: list[list[str]] = [["_id"], ["_uuid"]]
    for u in cx.opts.get("unique_columns") or []:
        groups.append([u] if isinstance(u, str) else list(u))
    for cols in groups:
        name = "+".join(cols)
        check = f"duplicate:{name}"
        sev_key = "duplicate" if cols[0] in ("_id", "_uuid") else "duplicate_unique_field"
        title = f"Submissions sharing the same {' and '.join(cols)}"
        if not cx.has(*cols):
            out.append(cx.skip(check, title, "column not in the data", name))
            continue
        tup = ", ".join(_q(c) for c in cols)
        notnull = " AND ".join(f"{_q(c)} IS NOT NULL" for c in cols)
        r = cx.flag(
            check,
            title,
            f"({tup}) IN (SELECT ({tup}) FROM {cx.table} WHERE {notnull} GROUP BY ALL HAVING count(*) > 1)",
            (),
            name,
        )
        sev = cx.opts.get("severity", {}).get(check) or ("error" if sev_key == "duplicate" else "warning")
        out.append(HfcResult(r.check, r.title, sev, r.column, r.checked, r.rows))
    return out


def _consent_checks(cx: _Ctx) -> list[HfcResult]:
    col = str(cx.opts.get("consent_column") or "consent")
    t_missing, t_no = "Consent not recorded", "Consent refused but answers were recorded"
    if not cx.has(col):
        return [
            cx.skip("consent_missing", t_missing, "the form has no consent question", col),
            cx.skip("consent_no_with_answers", t_no, "the form has no consent question", col),
        ]
    out = [cx.flag("consent_missing", t_missing, f"{_q(col)} IS NULL", (), col)]
    answers = cx.opts.get("consent_answer_columns")
    if answers is None:
        cols = cx.answer_columns()
        answers = cols[cols.index(col) + 1 :] if col in cols else []
    answers = [a for a in answers if cx.has(a) and a != col]
    if not answers:
        out.append(cx.skip("consent_no_with_answers", t_no, "no answer columns after consent", col))
    else:
        any_answer = " OR ".join(f"{_q(a)} IS NOT NULL" for a in answers)
        out.append(
            cx.flag(
                "consent_no_with_answers",
                t_no,
                f"CAST({_q(col)} AS VARCHAR) = ? AND ({any_answer})",
                [str(cx.opts["consent_no"])],
                col,
            )
        )
    return out


def _bbox(raw: Any) -> tuple[float, float, float, float] | None:
    """(min_lat, max_lat, min_lon, max_lon) from a dict or a GeoJSON-order list."""
    if isinstance(raw, Mapping):
        return (float(raw["min_lat"]), float(raw["max_lat"]), float(raw["min_lon"]), float(raw["max_lon"]))
    if isinstance(raw, Sequence) and len(raw) == 4:
        min_lon, min_lat, max_lon, max_lat = (float(x) for x in raw)
        return min_lat, max_lat, min_lon, max_lon
    return None


def _gps_check(cx: _Ctx) -> list[HfcResult]:
    title = "GPS point outside the survey area"
    box = _bbox(cx.opts.get("gps_bbox"))
    if box is None:
        return [cx.skip("gps_outside_bbox", title, "no gps_bbox in the form's quality settings")]
    cols = cx.opts.get("gps_columns")
    if not cols:
        lat = next((c for c in cx.order if c.endswith("_latitude")), None)
        cols = [lat, lat[: -len("_latitude")] + "_longitude"] if lat else []
    if len(cols) != 2 or not cx.has(*cols):
        return [cx.skip("gps_outside_bbox", title, "no GPS columns in the data (dropped or never asked)")]
    la, lo = _q(cols[0]), _q(cols[1])
    return [
        cx.flag(
            "gps_outside_bbox",
            title,
            f"{la} IS NOT NULL AND {lo} IS NOT NULL AND NOT ({la} BETWEEN ? AND ? AND {lo} BETWEEN ? AND ?)",
            list(box),
            cols[0],
        )
    ]


def _outlier_checks(cx: _Ctx) -> list[HfcResult]:
    out = []
    method = str(cx.opts.get("outlier_method") or "iqr")
    k, sd = float(cx.opts["outlier_iqr_k"]), float(cx.opts["outlier_sd"])
    scales = [("raw", "CAST({c} AS DOUBLE)")]
    if cx.opts.get("outlier_log"):
        scales.append(("log", "CASE WHEN {c} >= 0 THEN ln(CAST({c} AS DOUBLE) + 1) END"))
    if cx.schema is not None and not cx.opts.get("outlier_columns"):
        for q in cx.schema.questions.values():
            if q.table == MAIN_TABLE and q.type in ("integer", "decimal", "range") and q.column in cx.types \
                    and not cx.is_number(q.column):
                out.append(cx.skip(f"outlier:{q.column}", f"Unusual value of {q.column}", TEXT_COLUMN_NOTE,
                                   q.column))
    for col in cx.numeric_questions():
        conds: list[str] = []
        params: list[float] = []
        for _, tmpl in scales:
            v = tmpl.format(c=_q(col))
            n, q1, q3, mean, std = cx.con.execute(
                f"SELECT count({v}), quantile_cont({v}, 0.25), quantile_cont({v}, 0.75), avg({v}), "
                f"stddev_samp({v}) FROM {cx.table}"
            ).fetchone()  # type: ignore[misc]
            if not n or n < int(cx.opts["outlier_min_n"]):
                continue
            if method in ("iqr", "both") and q3 is not None and q3 > q1:
                conds.append(f"({v} < ? OR {v} > ?)")
                params += [q1 - k * (q3 - q1), q3 + k * (q3 - q1)]
            if method in ("sd", "both") and std and not math.isnan(std):
                conds.append(f"abs({v} - ?) > ?")
                params += [mean, sd * std]
        if conds:
            label = {"iqr": f"{k}×IQR", "sd": f"{sd} SD", "both": f"{k}×IQR or {sd} SD"}.get(method, method)
            note = "raw and log scale" if len(scales) > 1 else ""
            out.append(
                cx.flag(
                    f"outlier:{col}",
                    f"Unusual value of {col} (beyond {label})",
                    " OR ".join(conds),
                    params,
                    col,
                    note,
                )
            )
    return out


def _version_check(cx: _Ctx, rep: HfcReport) -> list[HfcResult]:
    title = "Submitted with an older version of the form"
    if not cx.has("__version__"):
        return [cx.skip("outdated_version", title, "no __version__ column")]
    time_col = "_submission_time" if cx.has("_submission_time") else None
    last = f"max({_q(time_col)})" if time_col else "NULL"
    rep.versions = [
        {"version": v, "submissions": int(n), "last_submission": t}
        for v, n, t in cx.con.execute(
            f"SELECT CAST(__version__ AS VARCHAR), count(*), {last} FROM {cx.table} "
            "GROUP BY 1 ORDER BY 3 DESC NULLS LAST"
        ).fetchall()
    ]
    known = list(cx.schema.versions) if cx.schema is not None else []
    if not known:
        return [cx.skip("outdated_version", title, "the form's deployed versions are not known here")]
    if not any(v["version"] in known for v in rep.versions):
        return [
            cx.skip("outdated_version", title, "version ids in the data do not match the form's versions")
        ]
    return [
        cx.flag(
            "outdated_version",
            title,
            "CAST(__version__ AS VARCHAR) IS DISTINCT FROM ?",
            [known[0]],
            "__version__",
        )
    ]


def _other_specify(cx: _Ctx) -> list[HfcResult]:
    cols = [c for c in cx.order if c.endswith("_other") and "__" not in c and not c.startswith("_")]
    out = []
    for c in cols:
        cond = f"{_q(c)} IS NOT NULL AND trim(CAST({_q(c)} AS VARCHAR)) <> ''"
        out.append(cx.flag(f"other_specify:{c}", f"“Other, specify” answers to recode in {c}", cond, (), c))
    return out


def _missingness(cx: _Ctx) -> list[dict[str, Any]]:
    cols = cx.answer_columns()
    if not cols or not cx.n:
        return []
    counts = (
        cx.con.execute(
            "SELECT " + ", ".join(f"count({_q(c)})" for c in cols) + f" FROM {cx.table}"
        ).fetchone()
        or ()
    )
    return [
        {"column": c, "missing": cx.n - int(k), "missing_percent": 100.0 * (cx.n - int(k)) / cx.n}
        for c, k in zip(cols, counts, strict=True)
    ]


def _as_code(col: str, dtype: str) -> str:
    """An answer as text to compare with the don't-know/refuse codes: a decimal -99 is `-99`, not `-99.0`."""
    c = _q(col)
    if dtype.startswith(("DOUBLE", "FLOAT", "REAL", "DECIMAL")):
        return (f"CASE WHEN {c} = trunc({c}) AND abs({c}) < 1e15 THEN CAST(CAST({c} AS BIGINT) AS VARCHAR) "
                f"ELSE CAST({c} AS VARCHAR) END")
    return f"CAST({c} AS VARCHAR)"


def _enumerator_dashboard(cx: _Ctx, outliers: list[HfcResult]) -> tuple[list[dict[str, Any]], HfcResult]:
    title = (
        "Enumerator submits far more or fewer interviews per day than the others "
        f"(|z| > {cx.opts['productivity_z']})"
    )
    if cx.enum is None:
        return [], cx.skip("enumerator_productivity", title, "no enumerator column")
    day_col = "start" if cx.has("start") else ("_submission_time" if cx.has("_submission_time") else None)
    day = cx.local_date(day_col) if day_col else "CAST(NULL AS DATE)"
    dur = cx.duration() or "CAST(NULL AS DOUBLE)"
    ccol = str(cx.opts.get("consent_column") or "consent")
    consent = f"CAST(CAST({_q(ccol)} AS VARCHAR) = ? AS INTEGER)" if cx.has(ccol) else "CAST(NULL AS INTEGER)"
    cols = [c for c in cx.answer_columns() if c != ccol]
    dk = [str(v) for v in cx.opts.get("dont_know_values") or []]
    rf = [str(v) for v in cx.opts.get("refuse_values") or []]

    # a submission's answers as one list, read by three expressions; three expressions per question made
    # DuckDB's memory grow with the form's width (100 questions needed more than the warehouse's 256 MiB)
    answers = f"list_value({', '.join(_as_code(c, cx.types[c]) for c in cols)})" if cols else "[]"

    def cells(values: list[str]) -> str:
        if not cols or not values:
            return "0"
        return "len(list_filter(answers, lambda a: list_contains(?::VARCHAR[], a)))"

    # the ids with an unusual value go in as an Arrow table, not as a list parameter that grows with the form
    outlier_ids = f"__kobo_etl_outliers_{uuid.uuid4().hex}"
    params: list[Any] = []
    if cx.has(ccol):
        params.append(str(cx.opts["consent_yes"]))
    params += ([dk] if cols and dk else []) + ([rf] if cols and rf else [])
    sql = f"""
        WITH answered AS (
            SELECT {cx.enum_sql} AS enumerator, {day} AS day, {dur} AS duration, {consent} AS consent_yes,
                   CAST({answers} AS VARCHAR[]) AS answers, _id IN (SELECT _id FROM {outlier_ids}) AS outlier
            FROM {cx.table}),
        base AS (
            SELECT enumerator, day, duration, consent_yes, {cells(dk)} AS dk, {cells(rf)} AS rf,
                   len(list_filter(answers, lambda a: a IS NOT NULL)) AS answered, outlier
            FROM answered),
        e AS (
            SELECT enumerator, count(*) AS submissions, count(DISTINCT day) AS days,
                   count(*) / nullif(count(DISTINCT day), 0) AS per_day, min(day) AS first_day,
                   max(day) AS last_day, median(duration) FILTER (WHERE duration >= 0) AS median_duration,
                   avg(consent_yes) AS consent_rate, sum(dk) / nullif(sum(answered), 0) AS dont_know_rate,
                   sum(rf) / nullif(sum(answered), 0) AS refuse_rate,
                   avg(CAST(outlier AS INTEGER)) AS outlier_share
            FROM base GROUP BY 1)
        SELECT *, (per_day - avg(per_day) OVER ()) / nullif(stddev_samp(per_day) OVER (), 0) AS productivity_z
        FROM e ORDER BY submissions DESC, enumerator"""
    flagged = pa.concat_tables([HFC_ROWS_SCHEMA.empty_table(), *(r.rows for r in outliers)])
    cx.con.complete()  # DuckDB 2 registers nothing while a `fetchone()` result is unread (`query_arrow`)
    cx.con.register(outlier_ids, flagged)
    try:
        cur = cx.con.execute(sql, params)
        names = [d[0] for d in cur.description]
        table = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        cx.con.unregister(outlier_ids)
    z = float(cx.opts["productivity_z"])
    outliers_enum = [
        r["enumerator"]
        for r in table
        if r["productivity_z"] is not None and abs(r["productivity_z"]) > z and r["enumerator"]
    ]
    for r in table:
        r["productivity_outlier"] = r["enumerator"] in outliers_enum
    if len(table) < 3:
        return table, cx.skip("enumerator_productivity", title, "fewer than 3 enumerators")
    prod = cx.flag(
        "enumerator_productivity",
        title,
        f"list_contains(?::VARCHAR[], {cx.enum_sql})",
        [outliers_enum],
        cx.enum,
        f"{len(outliers_enum)} enumerator(s)" if outliers_enum else "",
    )
    return table, prod
