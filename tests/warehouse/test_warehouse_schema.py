import pytest
from wh_factory import SLUG, make_batch, make_schema

from transforms.model import ColumnSpec
from warehouse import connect, ensure_tables, upsert_batch, widest_type


@pytest.fixture
def con(tmp_path):
    c = connect(tmp_path / "warehouse.duckdb")
    yield c
    c.close()


def columns(con, table):
    return dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [SLUG, table],
        ).fetchall()
    )


def changes(con):
    return con.execute(
        "SELECT version, table_name, column_name, change, detail FROM ops.schema_changes "
        "ORDER BY changed_at, table_name, column_name"
    ).fetchall()


@pytest.mark.parametrize(
    ("a", "b", "wide"),
    [
        ("BIGINT", "DOUBLE", "DOUBLE"),
        ("DOUBLE", "BIGINT", "DOUBLE"),
        ("INTEGER", "BIGINT", "BIGINT"),
        ("DATE", "TIMESTAMP", "TIMESTAMP"),
        ("TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMPTZ"),
        ("TIMESTAMP WITH TIME ZONE", "DATE", "TIMESTAMPTZ"),
        ("BIGINT", "DATE", "VARCHAR"),
        ("BOOLEAN", "BIGINT", "VARCHAR"),
        ("TIME", "VARCHAR", "VARCHAR"),
        ("text", "VARCHAR", "VARCHAR"),
    ],
)
def test_widest_type(a, b, wide):
    assert widest_type(a, b) == wide


def test_create_then_nothing_to_do(con):
    created = ensure_tables(con, make_schema())
    assert [(c.table, c.change) for c in created] == [("submissions", "new_table"), ("members", "new_table")]
    assert list(columns(con, "submissions")) == [
        "_id",
        "_uuid",
        "_submission_time",
        "_validation_status_uid",
        "region",
        "hh_size",
    ]
    assert columns(con, "members")["_position"] == "INTEGER"
    pk = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? "
        "AND table_name = 'submissions' AND constraint_type = 'PRIMARY KEY'",
        [SLUG],
    ).fetchall()
    assert pk == [(["_id"],)]
    assert ensure_tables(con, make_schema()) == []
    assert len(changes(con)) == 2


def test_evolution_adds_widens_never_narrows_keeps_removed(con):
    ensure_tables(
        con, make_schema([ColumnSpec("score", "BIGINT", "score"), ColumnSpec("visit", "DATE", "visit")])
    )
    upsert_batch(con, make_schema(), make_batch([1, 2]), run_id="r1")

    v2 = make_schema(
        [
            ColumnSpec("score", "DOUBLE", "score"),
            ColumnSpec("visit", "TIMESTAMP", "visit"),
            ColumnSpec("income_source", "VARCHAR", "income_source"),
        ],
        [ColumnSpec("school", "BOOLEAN", "members/school")],
        version="vXYZ",
        drop=("hh_size",),
    )
    evolved = ensure_tables(con, v2)
    assert sorted(c.describe() for c in evolved) == sorted(
        [
            "column hh.score widened BIGINT → DOUBLE from version vXYZ",
            "column hh.visit widened DATE → TIMESTAMP from version vXYZ",
            "new column hh.income_source (VARCHAR) from version vXYZ",
            "new column hh.members.school (BOOLEAN) from version vXYZ",
        ]
    )
    cols = columns(con, "submissions")
    assert cols["score"] == "DOUBLE" and cols["visit"] == "TIMESTAMP" and cols["income_source"] == "VARCHAR"
    assert cols["hh_size"] == "BIGINT"  # the removed question keeps its column and its data
    assert con.execute(f'SELECT sum(hh_size) FROM "{SLUG}".submissions').fetchone()[0] == 6
    assert ("vXYZ", "members", "school", "new_column", "BOOLEAN") in changes(con)
    assert ("vXYZ", "submissions", "score", "type_widened", "BIGINT → DOUBLE") in changes(con)

    # an older version's narrower type never narrows the column back
    narrow = make_schema(
        [ColumnSpec("score", "BIGINT", "score"), ColumnSpec("visit", "DATE", "visit")], version="v1"
    )
    assert ensure_tables(con, narrow) == []
    assert columns(con, "submissions")["score"] == "DOUBLE"
    # a type from another family widens to text
    text = make_schema([ColumnSpec("score", "DATE", "score")], version="v3")
    assert [c.detail for c in ensure_tables(con, text)] == ["DOUBLE → VARCHAR"]
    assert columns(con, "submissions")["score"] == "VARCHAR"
    assert len(changes(con)) == 2 + 4 + 1


def test_column_names_match_case_insensitively(con):
    ensure_tables(con, make_schema([ColumnSpec("Income", "BIGINT", "Income")]))
    # DuckDB treats "income" and "Income" as one column; no duplicate ADD COLUMN
    assert ensure_tables(con, make_schema([ColumnSpec("income", "BIGINT", "income")])) == []
