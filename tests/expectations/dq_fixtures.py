"""A small household-survey table with planted quality problems, and its FormSchema, built by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from transforms.model import Choice, ColumnSpec, FormSchema, Question, TableSchema

SLUG = "hh"
NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
QUALITY = {
    "fieldwork_start": "2026-01-08",
    "gps_bbox": [29.0, 1.0, 35.0, 6.0],  # min_lon, min_lat, max_lon, max_lat
    "unique_columns": ["phone"],
}
# planted problems: check id -> the _ids that must be found
PLANTED = {
    "duration_too_short": [3, 25],  # 5 and 12 minutes
    "duration_too_long": [27],  # 150 minutes
    "duration_per_member": [3],  # 5 min / 4 members
    "duplicate:_uuid": [30, 31],
    "duplicate:phone": [54, 55],
    "consent_missing": [35],
    "consent_no_with_answers": [38],
    "gps_outside_bbox": [42],
    "in_future": [48],
    "more_than_one_day": [50],
    "before_fieldwork": [52],
    "outdated_version": [1, 2],
    "other_specify:needs_other": [10, 11],
    "enumerator_productivity": list(range(1, 21)),  # enum_08 does 10 a day, the others 1
}
GX_PLANTED = {
    "not_null:consent": [35],
    "between:resp_age": [33],
    "in_set:water_source": [44],
    "tokens_in_set:needs": [46],
}
PLANTED_AGE = 187
PLANTED_WATER = "secret_lake_zz"
PLANTED_TOKEN = "magic_tokenzz"
ENUM_PROLIFIC = "enum_08"

COLUMNS = [
    ("_id", "BIGINT", None, "key"),
    ("_uuid", "VARCHAR", None, "system"),
    ("_submission_time", "TIMESTAMP", None, "system"),
    ("__version__", "VARCHAR", None, "system"),
    ("_submitted_by", "VARCHAR", None, "system"),
    ("start", "TIMESTAMPTZ", "start", "answer"),
    ("end", "TIMESTAMPTZ", "end", "answer"),
    ("today", "DATE", "today", "answer"),
    ("consent", "VARCHAR", "consent", "answer"),
    ("admin1", "VARCHAR", "admin1", "answer"),
    ("resp_sex", "VARCHAR", "resp_sex", "answer"),
    ("resp_age", "BIGINT", "resp_age", "answer"),
    ("hh_size", "BIGINT", "hh_size", "answer"),
    ("water_source", "VARCHAR", "water_source", "answer"),
    ("needs", "VARCHAR", "needs", "answer"),
    ("needs__food", "BOOLEAN", "needs", "choice_flag"),
    ("needs__water", "BOOLEAN", "needs", "choice_flag"),
    ("needs_other", "VARCHAR", "needs_other", "answer"),
    ("income", "DOUBLE", "income", "answer"),
    ("gps_latitude", "DOUBLE", "gps", "geo_part"),
    ("gps_longitude", "DOUBLE", "gps", "geo_part"),
    ("phone", "VARCHAR", "phone", "answer"),
]


def make_schema() -> FormSchema:
    gated = "${consent} = 'yes'"
    qs = [
        Question("start", "start", "start", "submissions", "start"),
        Question("end", "end", "end", "submissions", "end"),
        Question("today", "today", "today", "submissions", "today"),
        Question(
            "consent",
            "consent",
            "select_one",
            "submissions",
            "consent",
            "yn",
            required=True,
            labels={"English (en)": "Do you agree?"},
        ),
        Question(
            "main/admin1",
            "admin1",
            "select_one",
            "submissions",
            "admin1",
            "admin1",
            required=True,
            relevant=gated,
            group_path="main",
        ),
        Question(
            "main/resp_sex",
            "resp_sex",
            "select_one",
            "submissions",
            "resp_sex",
            "sex",
            required=True,
            group_path="main",
        ),
        Question(
            "main/resp_age",
            "resp_age",
            "integer",
            "submissions",
            "resp_age",
            required=True,
            relevant=gated,
            constraint=". >= 18 and . <= 120",
            group_path="main",
        ),
        Question(
            "main/hh_size",
            "hh_size",
            "integer",
            "submissions",
            "hh_size",
            constraint=".>=1",
            relevant=gated,
            group_path="main",
        ),
        Question(
            "main/water_source",
            "water_source",
            "select_one",
            "submissions",
            "water_source",
            "water",
            relevant=gated,
            group_path="main",
        ),
        Question(
            "main/needs",
            "needs",
            "select_multiple",
            "submissions",
            "needs",
            "needs",
            relevant=gated,
            group_path="main",
        ),
        Question("main/needs_other", "needs_other", "text", "submissions", "needs_other", relevant=gated),
        Question(
            "main/income",
            "income",
            "decimal",
            "submissions",
            "income",
            relevant=gated,
            constraint=". >= 0 or . = -99",
        ),
        Question("main/gps", "gps", "geopoint", "submissions", "gps", relevant=gated),
        Question("main/phone", "phone", "text", "submissions", "phone", relevant=gated),
        # a group with a relevant: questions inside it are never "unconditionally required"
        Question("main", "main", "begin_group", "submissions", "main", relevant=gated),
    ]
    choices = [
        Choice("yn", "yes"),
        Choice("yn", "no"),
        Choice("admin1", "north"),
        Choice("admin1", "south"),
        Choice("sex", "female"),
        Choice("sex", "male"),
        Choice("water", "piped"),
        Choice("water", "well"),
        Choice("water", "river"),
        Choice("needs", "food"),
        Choice("needs", "water"),
        Choice("needs", "shelter"),
        Choice("needs", "other"),
    ]
    main = TableSchema("submissions", "", None, [ColumnSpec(n, t, q, r) for n, t, q, r in COLUMNS])
    return FormSchema(
        "aHH",
        SLUG,
        "Household survey",
        ["English (en)"],
        {"submissions": main},
        {q.xpath: q for q in qs},
        choices,
        ["vNEW", "vOLD"],
    )


def _rows() -> list[tuple]:
    rows = []
    base = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    plan: list[tuple[int, str, datetime]] = []
    for i in range(1, 21):  # the prolific enumerator: 20 interviews over 2 days
        plan.append((i, ENUM_PROLIFIC, base + timedelta(days=(i - 1) // 10, minutes=45 * ((i - 1) % 10))))
    for k in range(7):  # seven others: 5 interviews over 5 days
        for j in range(5):
            plan.append((21 + 5 * k + j, f"enum_0{k + 1}", base + timedelta(days=j, hours=k % 3)))
    for sid, enum, start in plan:
        minutes = {3: 5, 25: 12, 27: 150}.get(sid, 40)
        if sid == 48:
            start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        if sid == 50:
            start = datetime(2026, 1, 12, 23, 50, tzinfo=UTC)
            minutes = 45
        if sid == 52:
            start = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
        end = start + timedelta(minutes=minutes)
        consent = {35: None, 38: "no", 39: "no"}.get(sid, "yes")
        answered = sid != 39
        row = (
            sid,
            f"uuid-{sid:03d}" if sid != 31 else "uuid-030",
            end.replace(tzinfo=None),
            "vOLD" if sid in (1, 2) else "vNEW",
            enum,
            start,
            end,
            start.date(),
            consent,
            "north" if answered else None,
            ("female" if sid % 2 else "male") if answered else None,
            (PLANTED_AGE if sid == 33 else 25 + sid % 30) if answered else None,
            4 if answered else None,
            (PLANTED_WATER if sid == 44 else "well") if answered else None,
            ("food " + PLANTED_TOKEN if sid == 46 else "food water") if answered else None,
            True if answered else False,
            (sid != 46) if answered else False,
            "tarpaulins for the roof" if sid in (10, 11) else None,
            (100.0 + sid) if answered else None,
            (40.0 if sid == 42 else 2.0 + sid / 100) if answered else None,
            32.0 if answered else None,
            ("tok-shared" if sid in (54, 55) else f"tok-{sid}") if answered else None,
        )
        rows.append(row)
    return rows


def make_db(path: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    con.execute(f'CREATE SCHEMA "{SLUG}"')
    cols = ", ".join(f'"{n}" {t}' + (" PRIMARY KEY" if n == "_id" else "") for n, t, _, _ in COLUMNS)
    con.execute(f'CREATE TABLE "{SLUG}".submissions ({cols})')
    con.executemany(f'INSERT INTO "{SLUG}".submissions VALUES ({", ".join("?" * len(COLUMNS))})', _rows())
    return con
