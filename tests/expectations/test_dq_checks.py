"""GX suites and high-frequency checks find every planted problem, with the right counts and ids."""

from __future__ import annotations

import json
from dataclasses import asdict

import duckdb
import pyarrow as pa
import pytest
from dq_fixtures import (
    ENUM_PROLIFIC,
    GX_PLANTED,
    NOW,
    PLANTED,
    PLANTED_AGE,
    PLANTED_TOKEN,
    PLANTED_WATER,
    QUALITY,
    SLUG,
    make_db,
    make_schema,
)

from expectations import FAILED_ROWS_SCHEMA, build_suite, failed_rows, run_hfc, validate_frame
from warehouse.quality import flag_rows, write_dq_run

TABLE = f'"{SLUG}"."submissions"'


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    con = make_db(str(tmp_path_factory.mktemp("dq") / "warehouse.duckdb"))
    yield con
    con.close()


@pytest.fixture(scope="module")
def gx_run(db):
    schema = make_schema()
    suite = build_suite(schema, overrides_dir=None)
    df = db.execute(f"SELECT * FROM {TABLE}").df()
    results = validate_frame(df, suite, expected_columns=[c.name for c in schema.main.columns])
    return suite, results, failed_rows(db, TABLE, suite, results)


@pytest.fixture(scope="module")
def hfc(db):
    return run_hfc(db, SLUG, schema=make_schema(), quality=QUALITY, now=NOW)


def test_gx_finds_planted_problems_with_ids(gx_run):
    _, results, rows = gx_run
    failing = {r.expectation: r.unexpected_count for r in results if not r.success}
    assert failing == {k: len(v) for k, v in GX_PLANTED.items()}
    assert rows.schema == FAILED_ROWS_SCHEMA
    got: dict[str, list[int]] = {}
    for r in rows.to_pylist():
        got.setdefault(r["rule"], []).append(r["submission_id"])
    assert got == GX_PLANTED
    age = {r["rule"]: r for r in rows.to_pylist()}["between:resp_age"]
    assert (age["enumerator"], age["column"], age["row_key"]) == ("enum_03", "resp_age", None)
    assert set(rows["severity"].to_pylist()) == {"error"}
    ok = {r.expectation for r in results if r.success}
    assert {"unique:_id", "not_null:_id", "end_after_start", "in_set:consent", "between:hh_size"} <= ok


def test_gx_results_hold_no_values(gx_run):
    _, results, rows = gx_run
    text = json.dumps([asdict(r) for r in results] + rows.to_pylist(), default=str)
    for planted in (str(PLANTED_AGE), PLANTED_WATER, PLANTED_TOKEN, "tok-shared", "uuid-030"):
        assert planted not in text


def test_gx_missing_column_is_structural_not_a_crash(db):
    schema = make_schema()
    suite = build_suite(schema, overrides_dir=None)
    df = db.execute(f"SELECT * EXCLUDE (water_source) FROM {TABLE} WHERE _id <= 5").df()
    results = validate_frame(df, suite, expected_columns=["_id", "water_source"])
    structural = [r for r in results if r.kind == "structural"]
    assert [(r.expectation, r.success, r.severity) for r in structural] == [
        ("column_exists:water_source", False, "error")
    ]
    assert "in_set:water_source" not in {r.expectation for r in results}
    assert all(r.success for r in results if r.kind == "gx")


def test_hfc_finds_each_planted_problem(hfc):
    by = {r.check: r for r in hfc.results}
    for check, ids in PLANTED.items():
        assert by[check].ids == ids, check
        assert by[check].count == len(ids), check
    assert by["duplicate:_id"].success and by["outlier:income"].success
    assert by["outlier:resp_age"].ids == [33]
    assert by["consent_no_with_answers"].ids == [38]  # 39 said no and has no answers: clean
    assert by["enumerator_productivity"].rows["enumerator"][0].as_py() == ENUM_PROLIFIC
    assert by["duplicate:_uuid"].severity == "error" and by["duplicate:phone"].severity == "warning"


def test_hfc_clean_rows_pass(hfc):
    flagged = {i for r in hfc.results if r.severity in ("error", "warning") for i in r.ids}
    planted = {i for ids in PLANTED.values() for i in ids} | {33}
    assert flagged == planted  # (10, 11 are also enum_08 rows; other-specify alone is info)
    clean = set(range(21, 56)) - planted
    assert clean and not (clean & flagged)


def test_enumerator_dashboard(hfc):
    table = {r["enumerator"]: r for r in hfc.enumerators}
    assert len(table) == 8
    p = table[ENUM_PROLIFIC]
    assert (p["submissions"], p["days"], p["per_day"], p["productivity_outlier"]) == (20, 2, 10.0, True)
    assert p["productivity_z"] == pytest.approx(2.4749, abs=1e-3)
    assert table["enum_04"]["consent_rate"] == pytest.approx(0.6)  # ids 35 (missing) and 38/39 (no)
    assert table["enum_03"]["outlier_share"] == pytest.approx(0.2)  # id 33's age
    assert table["enum_01"]["median_duration"] == pytest.approx(40.0)


def test_hfc_aggregates(hfc):
    assert hfc.rows == 55
    assert {v["version"]: v["submissions"] for v in hfc.versions} == {"vNEW": 53, "vOLD": 2}
    assert sum(n for _, n in hfc.per_day) == 55
    assert sum(hfc.durations.counts) == 55 and hfc.durations.low == pytest.approx(5.0)
    miss = {m["column"]: m["missing"] for m in hfc.missingness}
    assert miss["consent"] == 1 and miss["needs_other"] == 53
    assert "needs__food" not in miss and "_uuid" not in miss


def test_hfc_skips_checks_on_missing_columns(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    con.execute('CREATE SCHEMA bare; CREATE TABLE bare.submissions (_id BIGINT, q1 VARCHAR, "x y" BIGINT)')
    con.execute("INSERT INTO bare.submissions VALUES (1, 'a', 3), (2, NULL, 4)")
    rep = run_hfc(con, "bare", quality={"gps_bbox": [0, 0, 1, 1]})
    by = {r.check: r for r in rep.results}
    for check in (
        "duration_too_short",
        "in_future",
        "consent_missing",
        "gps_outside_bbox",
        "duplicate:_uuid",
        "outdated_version",
        "enumerator_productivity",
    ):
        assert by[check].skipped and by[check].success and by[check].note, check
    assert not by["duplicate:_id"].skipped and by["duplicate:_id"].success
    assert {m["column"]: m["missing"] for m in rep.missingness} == {"q1": 1, "x y": 0}


def test_results_land_in_warehouse_and_flag_rows(db, gx_run, hfc):
    suite, results, rows = gx_run
    all_results = results + hfc.check_results()
    hfc_rows = hfc.failed_rows()
    assert hfc_rows.schema == FAILED_ROWS_SCHEMA
    assert hfc_rows.num_rows == sum(r.count for r in hfc.results)
    all_rows = pa.concat_tables([rows, hfc_rows])
    run = write_dq_run(db, SLUG, all_results, all_rows, rows_checked=55)
    assert run["success"] is False
    assert run["errors_failed"] == 4 + 7  # HFC: short, future, before fieldwork, dup _uuid, consent x2, gps
    got = dict(
        db.execute(
            "SELECT rule, list(submission_id ORDER BY submission_id) FROM ops.dq_failed_rows "
            "WHERE run_id = ? "
            "GROUP BY rule",
            [run["run_id"]],
        ).fetchall()
    )
    assert got["duplicate:_uuid"] == [30, 31] and got["not_null:consent"] == [35]
    n_results = db.execute(
        "SELECT count(*) FROM ops.dq_results WHERE run_id = ?", [run["run_id"]]
    ).fetchone()[0]
    assert n_results == len(all_results)
    counts = flag_rows(db, SLUG, run["run_id"])
    status = dict(db.execute(f"SELECT _id, _dq_status FROM {TABLE}").fetchall())
    assert status[33] == "error" and status[27] == "warning" and status[22] == "ok"
    assert status[10] == "warning" and status[3] == "error"  # enum_08's rows; 3 is also too short
    assert run["warnings_failed"] == 7
    assert sum(counts.values()) == 55


def test_enumerator_dashboard_on_a_wide_form(tmp_path):
    """200 questions under the warehouse's DuckDB memory limit (the dashboard once made three expressions
    per question and ran out of memory from about 100), with exact don't-know and refusal rates; questions
    named like the query's own names (`answers`, `a`) are answers like any other."""
    from warehouse.db import connect

    con = connect(tmp_path / "warehouse.duckdb")  # the warehouse's settings, 256 MiB included
    names = ["answers", "a"] + [f"q{i:03d}" for i in range(198)]
    con.execute("CREATE SCHEMA wide")
    con.execute(
        "CREATE TABLE wide.submissions (_id BIGINT, _submitted_by VARCHAR, "
        + ", ".join(f'"{n}" VARCHAR' for n in names)
        + ")"
    )
    # enum_a: each submission has 2 "dk" and 1 "refused" among 200 answers and 10 unanswered (NULL);
    # enum_b: none of either and every question answered
    values = ", ".join(
        "CASE WHEN i % 2 = 0 THEN "
        + ("'dk'" if j in (0, 1) else "'refused'" if j == 150 else "NULL" if 190 <= j else "'x'")
        + " ELSE 'yes' END"
        for j in range(len(names))
    )
    con.execute(
        "INSERT INTO wide.submissions "
        f"SELECT i, CASE WHEN i % 2 = 0 THEN 'enum_a' ELSE 'enum_b' END, {values} FROM range(4000) t(i)"
    )
    rep = run_hfc(con, "wide")
    table = {r["enumerator"]: r for r in rep.enumerators}
    assert table["enum_a"]["submissions"] == table["enum_b"]["submissions"] == 2000
    assert table["enum_a"]["dont_know_rate"] == pytest.approx(2 / 190)
    assert table["enum_a"]["refuse_rate"] == pytest.approx(1 / 190)
    assert table["enum_b"]["dont_know_rate"] == 0 and table["enum_b"]["refuse_rate"] == 0
    con.close()


def test_dont_know_and_refuse_codes_count_in_decimal_questions_too() -> None:
    """-99 in a decimal question reads `-99.0` as text; it is still the don't-know code."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA f")
    con.execute(
        "CREATE TABLE f.submissions AS SELECT * FROM (VALUES "
        "(1, 'e1', 'yes', -99.0::DOUBLE, -99::BIGINT, 'dont_know'), (2, 'e1', 'yes', -98.0, -98, 'refuse'), "
        "(3, 'e1', 'yes', 5.5, 3, 'a'), (4, 'e1', 'yes', 7.0, 2, 'b')) "
        "t(_id, _submitted_by, consent, income, hh_size, water)"
    )
    (row,) = run_hfc(con, "f").enumerators
    # 3 questions × 4 submissions = 12 answers (consent aside): 3 don't know, 3 refused
    assert (row["dont_know_rate"], row["refuse_rate"]) == (0.25, 0.25)


def test_duration_histogram_counts_each_interview_in_its_bin(db, hfc):
    """DuckDB bins the durations as the report's chart draws them: each bin from `low` by equal steps, the
    longest interview in the last bin (compared with the same binning done in Python)."""
    minutes = [
        float(v)
        for (v,) in db.execute(
            f"SELECT (epoch(\"end\") - epoch(start)) / 60.0 FROM {TABLE} WHERE \"end\" >= start"
        ).fetchall()
    ]
    low, high = min(minutes), max(minutes)
    step = (high - low) / 20
    expected = [0] * 20
    for v in minutes:
        expected[min(int((v - low) / step), 19)] += 1
    got = hfc.durations
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert got.counts == expected and expected[-1] >= 1 and len(set(expected)) > 2


def test_a_report_keeps_only_examples_of_the_failing_rows_once_they_are_written(hfc):
    """Once `ops.dq_failed_rows` has them, a run keeps a few ids per check for the report, and counts."""
    by = {r.check: r for r in hfc.results}
    short = hfc.with_examples_only(2)
    for r in short.results:
        assert r.count == by[r.check].count
        assert r.ids == by[r.check].ids[:2]
    assert any(r.count > 2 for r in short.results)
    assert short.check_results() == hfc.check_results()
    with pytest.raises(ValueError, match="dropped after writing"):
        list(short.iter_failed_rows())
    assert sum(t.num_rows for t in hfc.iter_failed_rows()) == sum(r.count for r in hfc.results)
