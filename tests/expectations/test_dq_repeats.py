"""Checks on repeat tables (scoped to the loaded submissions, failing rows with `_id` and `_key`), and the
pre-load structural check that stops a form whose data no longer matches it."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from expectations import StructuralError, build_suite, check_batch_structure, failed_rows, validate_table
from transforms.errors import TransformError
from transforms.model import Choice, ColumnSpec, FlatBatch, FormSchema, Question, TableSchema
from warehouse.quality import write_dq_run

SUB = '"hh"."submissions"'
MEM = '"hh"."members"'
IDS = "temp.main.loaded"


def make_schema(gate_repeat: bool = False) -> FormSchema:
    main = TableSchema("submissions", "", None, [
        ColumnSpec("_id", "BIGINT", None, "key"), ColumnSpec("_submitted_by", "VARCHAR", None, "system"),
        ColumnSpec("hh_size", "BIGINT", "hh_size"),
    ], kind="main")
    members = TableSchema("members", "members", "submissions", [
        ColumnSpec("_key", "VARCHAR", None, "key"), ColumnSpec("_submission_id", "BIGINT", None, "key"),
        ColumnSpec("_parent_key", "VARCHAR", None, "key"), ColumnSpec("_position", "INTEGER", None, "key"),
        ColumnSpec("member_name", "VARCHAR", "members/member_name"),
        ColumnSpec("member_sex", "VARCHAR", "members/member_sex"),
        ColumnSpec("member_age", "BIGINT", "members/member_age"),
        ColumnSpec("member_aid", "VARCHAR", "members/member_aid"),
    ])
    gate = "${hh_size} > 0" if gate_repeat else None
    qs = [
        Question("hh_size", "hh_size", "integer", "submissions", "hh_size", required=True,
                 constraint=". >= 1 and . <= 30"),
        Question("members/member_name", "member_name", "text", "members", "member_name", required=True,
                 group_relevant=gate, group_path="members"),
        Question("members/member_sex", "member_sex", "select_one", "members", "member_sex", list_name="sex",
                 group_path="members", group_relevant=gate),
        Question("members/member_age", "member_age", "integer", "members", "member_age",
                 constraint=". >= 0 and . <= 120", group_path="members", group_relevant=gate),
        Question("members/member_aid", "member_aid", "select_multiple", "members", "member_aid",
                 list_name="aid", group_path="members", group_relevant=gate),
    ]
    return FormSchema(
        "aX", "hh", "HH", [], {"submissions": main, "members": members}, {q.xpath: q for q in qs},
        [Choice("sex", "female"), Choice("sex", "male"), Choice("aid", "food"), Choice("aid", "cash")],
        ["v1"],
    )


def test_suite_has_repeat_checks_with_table_ids():
    suite = build_suite(make_schema(), overrides_dir=None)
    by_id = {e.id: e for e in suite.expectations}
    age = by_id["between:members.member_age"]
    assert (age.table, age.column) == ("members", "member_age")
    assert (age.kwargs["min_value"], age.kwargs["max_value"]) == (0, 120)
    assert by_id["in_set:members.member_sex"].kwargs["value_set"] == ["female", "male"]
    assert by_id["not_null:members.member_name"].table == "members"
    assert by_id["between:hh_size"].table == "submissions"
    assert suite.tables() == ["submissions", "members"]
    assert {e.id for e in suite.for_table("members").expectations} == {
        "between:members.member_age", "in_set:members.member_sex", "not_null:members.member_name",
        "tokens_in_set:members.member_aid",
    }
    tokens = by_id["tokens_in_set:members.member_aid"]
    assert (tokens.table, tokens.column, tokens.kwargs["value_set"]) == (
        "members.select_multiple_tokens", "member_aid", ["food", "cash"]
    )
    assert suite.repeat_select_multiple == {"members": {"member_aid": ["food", "cash"]}}
    assert suite.for_table("members").select_multiple == {"member_aid": ["food", "cash"]}
    assert suite.select_multiple == {} and suite.for_table("submissions").select_multiple == {}
    # a relevant on the repeat makes its required questions legitimately empty
    gated = build_suite(make_schema(gate_repeat=True), overrides_dir=None)
    assert "not_null:members.member_name" not in gated.ids()
    assert "between:members.member_age" in gated.ids()


@pytest.fixture()
def db(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA hh")
    con.execute(f"CREATE TABLE {SUB} (_id BIGINT, _submitted_by VARCHAR, hh_size BIGINT)")
    con.execute(f"INSERT INTO {SUB} VALUES (1, 'enum_a', 2), (2, 'enum_b', 3), (3, 'enum_c', 1)")
    con.execute(
        f"CREATE TABLE {MEM} (_key VARCHAR, _submission_id BIGINT, _parent_key VARCHAR, _position INTEGER, "
        "member_name VARCHAR, member_sex VARCHAR, member_age BIGINT, member_aid VARCHAR)"
    )
    rows = [
        ("1/members[1]", 1, None, 1, "n", "female", 30, "food cash"),
        ("1/members[2]", 1, None, 2, "n", "male", 4, "cash zz_tok"),
        ("2/members[1]", 2, None, 1, "n", "male", 40, None),
        ("2/members[2]", 2, None, 2, "n", "zz_bad", 187, "food"),
        ("2/members[3]", 2, None, 3, None, "female", 9, " food  zz_tok "),
        # not loaded in this sync: must not be reported
        ("3/members[1]", 3, None, 1, None, "zz_bad", 500, "zz_tok"),
    ]
    con.executemany(f"INSERT INTO {MEM} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("CREATE TEMP TABLE loaded (_id BIGINT)")
    con.execute("INSERT INTO loaded VALUES (1), (2)")
    yield con
    con.close()


@pytest.mark.parametrize("chunk_rows", [20_000, 2])
def test_repeat_rows_of_loaded_submissions_are_checked(db, chunk_rows):
    schema = make_schema()
    suite = build_suite(schema, overrides_dir=None)
    results = validate_table(
        db, MEM, suite, ids_table=IDS, repeat="members", chunk_rows=chunk_rows,
        expected_columns=[c.name for c in schema.tables["members"].columns],
    )
    by_id = {r.expectation: r for r in results}
    assert set(by_id) == {
        "between:members.member_age", "in_set:members.member_sex", "not_null:members.member_name",
        "tokens_in_set:members.member_aid",
    }
    # 7 tokens in the loaded rows (food cash | cash zz_tok | food | food zz_tok), 2 of them not choices
    aid = by_id["tokens_in_set:members.member_aid"]
    assert (aid.success, aid.element_count, aid.unexpected_count, aid.missing_count) == (False, 7, 2, 0)
    age = by_id["between:members.member_age"]
    assert (age.success, age.unexpected_count) == (False, 1)
    assert by_id["in_set:members.member_sex"].unexpected_count == 1
    assert by_id["not_null:members.member_name"].unexpected_count == 1
    assert by_id["between:members.member_age"].element_count == 5  # 5 rows of the 2 loaded submissions

    rows = failed_rows(db, MEM, suite, results, ids_table=IDS, repeat="members", submissions_table=SUB)
    got = sorted((r["rule"], r["submission_id"], r["row_key"], r["enumerator"]) for r in rows.to_pylist())
    assert got == [
        ("between:members.member_age", 2, "2/members[2]", "enum_b"),
        ("in_set:members.member_sex", 2, "2/members[2]", "enum_b"),
        ("not_null:members.member_name", 2, "2/members[3]", "enum_b"),
        ("tokens_in_set:members.member_aid", 1, "1/members[2]", "enum_a"),
        ("tokens_in_set:members.member_aid", 2, "2/members[3]", "enum_b"),
    ]
    # the main table's checks never see repeat checks, and vice versa
    main = validate_table(db, SUB, suite, ids_table=IDS, chunk_rows=chunk_rows)
    assert {r.expectation for r in main} == {
        "not_null:_id", "unique:_id", "not_null:hh_size", "between:hh_size"
    }

    run = write_dq_run(db, "hh", results, rows, rows_checked=2, run_id="r1")
    assert run["errors_failed"] == 4
    stored = db.execute(
        "SELECT rule, submission_id, row_key FROM ops.dq_failed_rows WHERE run_id = 'r1' ORDER BY ALL"
    ).fetchall()
    assert stored == [(r, s, k) for r, s, k, _ in got]


def test_row_key_column_is_added_to_an_older_failed_rows_table(db):
    db.execute("CREATE SCHEMA ops")
    db.execute(
        "CREATE TABLE ops.dq_failed_rows (run_id VARCHAR NOT NULL, form VARCHAR NOT NULL, "
        'submission_id BIGINT NOT NULL, rule VARCHAR NOT NULL, "column" VARCHAR, severity VARCHAR NOT NULL, '
        "enumerator VARCHAR)"
    )
    row = {"submission_id": 7, "rule": "not_null:_id", "column": "_id", "severity": "error"}
    write_dq_run(db, "hh", [], pa.Table.from_pylist([row]), run_id="old")
    assert db.execute("SELECT submission_id, row_key FROM ops.dq_failed_rows").fetchall() == [(7, None)]


def test_failed_rows_can_come_from_a_table_and_a_failure_writes_nothing(db):
    """`write_dq_run` copies the rows of a table the checks filled (a sync's temp table) within DuckDB, beside
    the ones given as Arrow, all in the run's one transaction."""
    db.execute('CREATE TEMP TABLE found (submission_id BIGINT, rule VARCHAR, "column" VARCHAR, '
               "severity VARCHAR, enumerator VARCHAR, row_key VARCHAR)")
    db.execute("INSERT INTO found VALUES (1, 'hfc:a', NULL, 'warning', 'e1', NULL), "
               "(2, 'between:members.age', 'age', 'error', NULL, '2/members[1]')")
    extra = pa.table({"submission_id": [3], "rule": ["not_null:_id"], "severity": ["error"]})
    run = write_dq_run(db, "hh", [], extra, run_id="r1", failed_rows_table="found")
    assert run["run_id"] == "r1"
    assert db.execute(
        "SELECT rule, submission_id, row_key, \"column\", enumerator FROM ops.dq_failed_rows "
        "WHERE run_id = 'r1' ORDER BY ALL"
    ).fetchall() == [("between:members.age", 2, "2/members[1]", "age", None), ("hfc:a", 1, None, None, "e1"),
                     ("not_null:_id", 3, None, None, None)]
    db.execute("INSERT INTO found VALUES (NULL, 'hfc:b', NULL, 'warning', NULL, NULL)")  # no submission
    with pytest.raises(duckdb.ConstraintException):
        write_dq_run(db, "hh", [], extra, run_id="r2", failed_rows_table="found")
    assert db.execute("SELECT count(*) FROM ops.dq_runs WHERE run_id = 'r2'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM ops.dq_failed_rows WHERE run_id = 'r2'").fetchone() == (0,)


def _batch(n: int, unknown: dict[str, int], tables: dict[str, pa.Table] | None = None) -> FlatBatch:
    return FlatBatch(tables=tables or {}, submission_ids=list(range(1, n + 1)), unknown_keys=unknown)


def test_a_handful_of_unknown_keys_does_not_stop_the_load():
    schema = make_schema()
    # two keys everywhere (below the 3-key bar) and many keys in a few submissions: tolerated, reported
    found = check_batch_structure(_batch(100, {"a/x": 100, "a/y": 100, "z1": 2, "z2": 1, "z3": 3}), schema)
    assert found.widespread == ["a/x", "a/y"]
    assert found.unknown_keys["z3"] == 3
    # a tiny batch (a single edited record) never stops a form
    assert check_batch_structure(_batch(1, {"p": 1, "q": 1, "r": 1}), schema).widespread == ["p", "q", "r"]
    ok = pa.table({"_id": [1], "_submitted_by": ["e"], "hh_size": [2]})
    assert check_batch_structure(_batch(1, {}, {"submissions": ok}), schema).extra_columns == []


def test_widespread_unknown_answers_stop_the_load_with_a_clear_message():
    schema = make_schema()
    with pytest.raises(StructuralError) as info:
        check_batch_structure(_batch(40, {"g/new1": 40, "g/new2": 39, "g/new3": 30, "odd": 1}), schema)
    err = info.value
    assert isinstance(err, TransformError) and err.form == "hh"
    assert "kobo-etl sync --full" in str(err) and "deployed versions" in str(err)
    assert "3 answers" in str(err) and "g/new1, g/new2, g/new3" in str(err)
    assert "odd" not in str(err)


def test_a_column_or_table_the_stored_schema_lacks_stops_the_load():
    schema = make_schema()
    extra = pa.table({"_id": [1], "hh_size": [2], "renamed_q": ["v"]})
    with pytest.raises(StructuralError, match=r"submissions\.renamed_q"):
        check_batch_structure(_batch(1, {}, {"submissions": extra}), schema)
    with pytest.raises(StructuralError, match="visits"):
        check_batch_structure(_batch(1, {}, {"visits": pa.table({"_key": ["1/visits[1]"]})}), schema)
