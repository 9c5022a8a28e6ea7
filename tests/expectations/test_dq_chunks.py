"""Validation in bounded chunks (`validate_table`) gives counts, successes and failing ids of one frame."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import pytest
from dq_fixtures import GX_PLANTED, SLUG, make_db, make_schema

from expectations import ExpectationSpec, build_suite, failed_rows, validate_frame, validate_table

TABLE = f'"{SLUG}"."submissions"'
CHUNK = 7  # the fixture has 55 rows: 8 chunks


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    con = make_db(str(tmp_path_factory.mktemp("chunks") / "warehouse.duckdb"))
    # the same rows without a primary key, so duplicates can be planted
    con.execute(f'CREATE TABLE "{SLUG}".nokey AS SELECT * FROM {TABLE}')
    yield con
    con.close()


def _suite():
    suite = build_suite(make_schema(), overrides_dir=None)
    extra = [
        ExpectationSpec("unique:_uuid", "expect_column_values_to_be_unique", {"column": "_uuid"}, "warning"),
        ExpectationSpec(
            "unique:start_end", "expect_compound_columns_to_be_unique", {"column_list": ["start", "end"]}
        ),
        ExpectationSpec(
            "mostly:hh_size", "expect_column_values_to_be_between",
            {"column": "hh_size", "min_value": 2, "max_value": 8, "mostly": 0.8}, "warning",
        ),
    ]
    return replace(suite, expectations=suite.expectations + extra)


def _key(results):
    return {r.expectation: (r.element_count, r.unexpected_count, r.success, r.kind) for r in results}


@pytest.mark.parametrize("chunk_rows", [CHUNK, None])  # None: one chunk sized by the row width
@pytest.mark.parametrize("table_level", [False, True])
def test_chunked_equals_one_frame(
    db: duckdb.DuckDBPyConnection, chunk_rows: int | None, table_level: bool
) -> None:
    suite = _suite()
    if table_level:  # a check that reads no named column: every column, in `.df()`'s dtypes, in _id order
        rows = ExpectationSpec(
            "rows", "expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 100}, "warning"
        )
        suite = replace(suite, expectations=[*suite.expectations, rows])
    expected_cols = [c.name for c in make_schema().main.columns]
    whole = validate_frame(db.execute(f"SELECT * FROM {TABLE}").df(), suite, expected_columns=expected_cols)
    # validate_table reads only the checked columns, as categorical strings and float64 for integers with
    # NULLs (resp_age is NULL in submission 39): GX must still give exactly the same answers
    chunked = validate_table(db, TABLE, suite, expected_columns=expected_cols, chunk_rows=chunk_rows)
    assert [r.expectation for r in chunked] == [r.expectation for r in whole]
    assert _key(chunked) == _key(whole)
    assert [(r.unexpected_percent, r.missing_count, r.error) for r in chunked] == [
        (r.unexpected_percent, r.missing_count, r.error) for r in whole
    ]
    # the planted problems are found with the same ids
    ids = {}
    for row in failed_rows(db, TABLE, suite, chunked).to_pylist():
        ids.setdefault(row["rule"], []).append(row["submission_id"])
    for rule, planted in GX_PLANTED.items():
        assert ids[rule] == planted
    assert set(failed_rows(db, TABLE, suite, whole)["rule"].to_pylist()) == set(ids)


def test_no_frame_stays_with_gx_after_a_table(db: duckdb.DuckDBPyConnection) -> None:
    from expectations.validate import _gx

    validate_table(db, TABLE, _suite(), chunk_rows=CHUNK)
    # each validation's data source (whose engine holds the last chunk's frame) is dropped at the end
    assert [s.name for s in _gx()[2].data_sources.all().values() if s.name.startswith("kobo_etl")] == []


def test_mostly_is_judged_on_the_merged_counts(db: duckdb.DuckDBPyConnection) -> None:
    # 2 of 20 households out of range, both in the first chunk of 4: that chunk alone fails `mostly`
    # (2/4 bad), all the rows pass it (18/20 = 90 % ≥ 80 %); one NULL is left out as GX does
    db.execute(
        "CREATE OR REPLACE TABLE mostly_t AS SELECT range AS _id, "
        "CASE WHEN range < 2 THEN 99 WHEN range = 19 THEN NULL ELSE 4 END AS hh_size FROM range(21)"
    )
    spec = ExpectationSpec(
        "mostly:hh_size", "expect_column_values_to_be_between",
        {"column": "hh_size", "min_value": 2, "max_value": 8, "mostly": 0.8},
    )
    suite = replace(build_suite(make_schema(), overrides_dir=None), expectations=[spec])
    first = validate_frame(db.execute("SELECT * FROM mostly_t WHERE _id < 4").df(), suite)[0]
    whole = validate_frame(db.execute("SELECT * FROM mostly_t").df(), suite)[0]
    (merged,) = validate_table(db, "mostly_t", suite, chunk_rows=4)
    assert (first.success, whole.success) == (False, True)  # the case this test is about
    assert (merged.success, merged.element_count, merged.unexpected_count) == (True, 21, 2)
    assert merged.unexpected_percent == pytest.approx(whole.unexpected_percent) == pytest.approx(10.0)
    strict = replace(suite, expectations=[replace(spec, kwargs={**spec.kwargs, "mostly": 0.95})])
    assert validate_table(db, "mostly_t", strict, chunk_rows=4)[0].success is False


def test_ids_table_restricts_the_rows(db: duckdb.DuckDBPyConnection) -> None:
    suite = build_suite(make_schema(), overrides_dir=None)
    ids = "temp.main.some_ids"
    db.execute(f"CREATE OR REPLACE TEMP TABLE {ids} AS SELECT unnest([33, 44, 46, 1, 2, 3]) AS _id")
    frame = db.execute(f"SELECT * FROM {TABLE} WHERE _id IN (SELECT _id FROM {ids})").df()
    whole = validate_frame(frame, suite)
    chunked = validate_table(db, TABLE, suite, ids_table=ids, chunk_rows=2)
    assert _key(chunked) == _key(whole)
    failing = failed_rows(db, TABLE, suite, chunked, ids_table=ids)
    assert set(failing["submission_id"].to_pylist()) == {33, 44, 46}
    db.execute("CREATE OR REPLACE TEMP TABLE no_ids (_id BIGINT)")
    assert validate_table(db, TABLE, suite, ids_table="temp.main.no_ids") == []


def test_duplicates_in_different_chunks_are_found(db: duckdb.DuckDBPyConnection) -> None:
    table = f'"{SLUG}".nokey'
    # _id 1 twice (a second copy appended), and row 50 given row 1's _uuid: 49 rows apart, chunks of 7
    db.execute(f"INSERT INTO {table} SELECT * FROM {table} WHERE _id = 1")
    db.execute(f"UPDATE {table} SET _uuid = (SELECT _uuid FROM {TABLE} WHERE _id = 1) WHERE _id = 50")
    suite = _suite()
    chunked = {r.expectation: r for r in validate_table(db, table, suite, chunk_rows=CHUNK)}
    whole = {r.expectation: r for r in validate_frame(db.execute(f"SELECT * FROM {table}").df(), suite)}
    assert (chunked["unique:_id"].success, chunked["unique:_id"].unexpected_count) == (False, 2)
    # 30 and 31 share a _uuid in the fixture already; 1, its copy and 50 are the planted ones
    assert chunked["unique:_uuid"].unexpected_count == whole["unique:_uuid"].unexpected_count == 5
    assert chunked["unique:_uuid"].element_count == whole["unique:_uuid"].element_count == 56
    rows = failed_rows(db, table, suite, list(chunked.values())).to_pylist()
    assert sorted(r["submission_id"] for r in rows if r["rule"] == "unique:_id") == [1, 1]
    assert sorted(r["submission_id"] for r in rows if r["rule"] == "unique:_uuid") == [1, 1, 30, 31, 50]


@pytest.mark.parametrize("table_level", [False, True])
def test_token_checks_count_their_own_question(db: duckdb.DuckDBPyConnection, table_level: bool) -> None:
    """A token check counts the tokens of its question only, in both token frame layouts: side by side (one
    column per question, padded) and, when a check may read any column, one row per token with its `_id`
    (the other questions NULL)."""
    table = f'"{SLUG}".two_questions'
    # a second select_multiple question with fewer tokens than `needs`, and one unexpected token
    db.execute(
        f"CREATE OR REPLACE TABLE {table} AS SELECT *, CASE WHEN _id % 5 = 0 THEN 'a' "
        f"WHEN _id = 21 THEN 'a zz' END AS picks FROM {TABLE}"
    )
    suite = _suite()
    needs = next(e for e in suite.expectations if e.id == "tokens_in_set:needs")
    kwargs = {**needs.kwargs, "column": "picks", "value_set": ["a"]}
    picks = replace(needs, id="tokens_in_set:picks", kwargs=kwargs)
    extra = [picks]
    if table_level:
        extra.append(ExpectationSpec(
            "token_rows", "expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 10_000},
            "warning", table=needs.table,
        ))
    choices = {**suite.select_multiple, "picks": ["a"]}
    suite = replace(suite, expectations=[*suite.expectations, *extra], select_multiple=choices)
    whole = validate_frame(db.execute(f"SELECT * FROM {table}").df(), suite)
    chunked = validate_table(db, table, suite, chunk_rows=CHUNK)

    def tokens(column: str) -> int:
        return db.execute(
            f"SELECT count(*) FROM (SELECT unnest(string_split_regex(trim({column}), '\\s+')) AS t "
            f"FROM {table} WHERE {column} IS NOT NULL) WHERE t <> ''"
        ).fetchone()[0]

    for results in (whole, chunked):
        by = {r.expectation: r for r in results}
        assert (by["tokens_in_set:needs"].element_count, by["tokens_in_set:needs"].missing_count) == (
            tokens("needs"), 0
        )
        assert by["tokens_in_set:needs"].unexpected_count == 1
        assert (by["tokens_in_set:picks"].element_count, by["tokens_in_set:picks"].unexpected_count) == (
            tokens("picks"), 1
        )
    assert tokens("picks") < tokens("needs")
    assert _key(chunked) == _key(whole)


def test_many_select_multiple_questions_fit_in_the_warehouse_memory(tmp_path) -> None:
    """200 select_multiple questions, 3 000 rows, under the warehouse's DuckDB limit. One row per token with
    a column per question made 1.2 million rows of 201 columns here (in a sync of a 1 000-question form with
    200 such questions, more than DuckDB's 256 MiB); each check counts its own question's 6 000 tokens."""
    from expectations import SuiteSpec
    from expectations.suites import TOKENS_TABLE
    from warehouse.db import connect

    con = connect(tmp_path / "warehouse.duckdb")
    questions = [f"m{i:03d}" for i in range(200)]
    picks = ", ".join(f"CASE WHEN i = {i} THEN 'a zz' ELSE 'a b' END AS {q}" for i, q in enumerate(questions))
    con.execute(f"CREATE TABLE wide AS SELECT i AS _id, {picks} FROM range(3000) t(i)")
    specs = [
        ExpectationSpec(f"tokens_in_set:{q}", "expect_column_values_to_be_in_set",
                        {"column": q, "value_set": ["a", "b"]}, "error", table=TOKENS_TABLE)
        for q in questions
    ]
    suite = SuiteSpec("wide", specs, select_multiple={q: ["a", "b"] for q in questions})
    results = {r.expectation: r for r in validate_table(con, "wide", suite)}
    assert len(results) == 200
    assert {(r.element_count, r.unexpected_count) for r in results.values()} == {(6000, 1)}
    con.close()


def test_uniqueness_of_the_loaded_rows_fits_under_a_small_memory_limit(tmp_path) -> None:
    """Counting duplicate keys among the loaded rows: one query that grouped the keys while joining the rows
    to the loaded ids held both hash tables at once and ran out of memory (a 2 000 000-submission sync
    under 128 MiB; here 1 000 000 rows under 56 MiB, where it needed more than 64). Through a temp table,
    each step spills on its own."""
    from expectations import SuiteSpec

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "CREATE TABLE rows_ AS "
        "SELECT i AS _id, md5(CAST(i % 999997 AS VARCHAR)) AS _uuid FROM range(1000000) t(i)"
    )
    con.execute("CREATE TEMP TABLE loaded AS SELECT _id FROM rows_")
    con.execute("SET threads = 2")  # the hash tables' memory grows with the threads
    con.execute("SET memory_limit = '56MiB'")
    spec = ExpectationSpec("unique:_uuid", "expect_column_values_to_be_unique", {"column": "_uuid"})
    (result,) = validate_table(con, "rows_", SuiteSpec("big", [spec]), ids_table="temp.main.loaded")
    # ids 0-2 share their key with 999 997-999 999: 6 rows in duplicate groups
    assert (result.element_count, result.unexpected_count, result.success) == (1_000_000, 6, False)
    left = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_unique_keys'").fetchone()
    assert left == (0,)  # the temp table is dropped
    con.close()
