import pyarrow as pa
import pytest
from wh_factory import SLUG, make_batch, make_schema

from transforms.model import ColumnSpec, FlatBatch, FormSchema, QuarantineRecord, TableSchema
from warehouse import (
    WarehouseError,
    connect,
    count_submissions,
    delete_submissions,
    ensure_tables,
    get_watermark,
    read_manifest,
    upsert_batch,
)


@pytest.fixture
def con(tmp_path):
    c = connect(tmp_path / "warehouse.duckdb")
    ensure_tables(c, make_schema())
    yield c
    c.close()


def rows(con, table, order="_id"):
    return con.execute(f'SELECT * FROM "{SLUG}"."{table}" ORDER BY {order}').fetchall()


def snapshot(con):
    """Every form table and the ops tables a load touches, in a stable order."""
    return {
        "main": rows(con, "submissions"),
        "members": rows(con, "members", "_key"),
        "bridge": rows(con, "assets__selected", "_submission_id, choice")
        if con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'assets__selected'"
        ).fetchone()[0]
        else None,
        "quarantine": con.execute(
            "SELECT form, submission_id, table_name, column_name, reason, raw_value "
            "FROM ops.quarantine ORDER BY ALL"
        ).fetchall(),
        "watermark": get_watermark(con, SLUG),
    }


def test_insert_then_update_counts(con):
    assert upsert_batch(con, make_schema(), make_batch([1, 2, 3]), run_id="r1") == (3, 0)
    counts = upsert_batch(con, make_schema(), make_batch([3, 4], uuid_suffix="b"), run_id="r2")
    assert (counts.inserted, counts.updated) == (1, 1)
    assert [(r[0], r[1]) for r in rows(con, "submissions")] == [
        (1, "uuid-1-a"),
        (2, "uuid-2-a"),
        (3, "uuid-3-b"),
        (4, "uuid-4-b"),
    ]
    assert count_submissions(con, SLUG) == 4


def test_same_batch_twice_changes_nothing(con):
    batch = make_batch(
        [1, 2],
        selected={1: ["radio", "bike"], 2: ["bike"]},
        quarantine=[QuarantineRecord(2, "submissions", "hh_size", "not an integer", "x")],
    )
    upsert_batch(con, make_schema(), batch, run_id="r1", watermark=2)
    first = snapshot(con)
    assert upsert_batch(con, make_schema(), batch, run_id="r2", watermark=2) == (0, 2)
    assert snapshot(con) == first
    assert len(first["members"]) == 6 and len(first["bridge"]) == 3 and len(first["quarantine"]) == 1


def test_child_and_bridge_rows_replaced_with_their_parent(con):
    upsert_batch(
        con, make_schema(), make_batch([1, 2], members=3, selected={1: ["radio", "bike"]}), run_id="r1"
    )
    # submission 1 is edited: 2 members now and no assets selected; submission 2 untouched
    upsert_batch(con, make_schema(), make_batch([1], members=2, uuid_suffix="b"), run_id="r2")
    assert [r[0] for r in rows(con, "members", "_key")] == [
        "1/members[1]",
        "1/members[2]",
        "2/members[1]",
        "2/members[2]",
        "2/members[3]",
    ]
    assert rows(con, "assets__selected", "choice") == []
    assert rows(con, "submissions")[0][5] == 2  # hh_size of the new version


def test_bridge_table_created_on_first_sight_and_logged(con):
    upsert_batch(con, make_schema(), make_batch([7], selected={7: ["radio"]}), run_id="r1")
    assert con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'assets__selected' "
        "ORDER BY column_index"
    ).fetchall() == [("_submission_id", "BIGINT"), ("_key", "VARCHAR"), ("choice", "VARCHAR")]
    assert rows(con, "assets__selected", "choice") == [(7, "7", "radio")]
    assert con.execute(
        "SELECT change FROM ops.schema_changes WHERE table_name = 'assets__selected'"
    ).fetchall() == [("new_table",)]


def test_columns_missing_from_the_batch_load_as_null(con):
    batch = make_batch([5])
    batch.tables["submissions"] = batch.tables["submissions"].drop_columns(["hh_size", "region"])
    upsert_batch(con, make_schema(), batch, run_id="r1")
    assert con.execute(f'SELECT region, hh_size FROM "{SLUG}".submissions').fetchall() == [(None, None)]


def test_quarantine_and_watermark_recorded(con):
    q = [QuarantineRecord(1, "members", "age", "not an integer", "ten", row_key="1/members[2]")]
    upsert_batch(con, make_schema(), make_batch([1, 2], quarantine=q), run_id="run-9", watermark=2)
    assert con.execute(
        "SELECT run_id, form, submission_id, table_name, column_name, reason, raw_value, row_key "
        "FROM ops.quarantine"
    ).fetchall() == [("run-9", SLUG, 1, "members", "age", "not an integer", "ten", "1/members[2]")]
    assert get_watermark(con, SLUG) == 2
    # a clean re-load of submission 1 clears its quarantine row
    upsert_batch(con, make_schema(), make_batch([1]), run_id="run-10", watermark=5)
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchone()[0] == 0
    assert get_watermark(con, SLUG) == 5


def test_failure_mid_transaction_leaves_warehouse_and_watermark_unchanged(con):
    upsert_batch(con, make_schema(), make_batch([1, 2], selected={1: ["radio"]}), run_id="r1", watermark=2)
    before = snapshot(con)
    bad = make_batch(
        [2, 3],
        members=1,
        uuid_suffix="bad",
        selected={2: ["bike"]},
        quarantine=[QuarantineRecord(3, "submissions", "hh_size", "x", "y")],
    )
    # members come after the main table, so the main rows are already replaced when this fails
    bad.tables["members"] = bad.tables["members"].set_column(
        4, "age", pa.array(["secret-value"] * 2, pa.string())
    )
    with pytest.raises(WarehouseError) as info:
        upsert_batch(con, make_schema(), bad, run_id="r2", watermark=3)
    assert "secret-value" not in str(info.value)
    assert f"{SLUG}.members" in str(info.value) and "unchanged" in str(info.value)
    assert info.value.form == SLUG
    assert snapshot(con) == before
    # the connection is usable afterwards and the same ids load once fixed
    assert upsert_batch(con, make_schema(), make_batch([2, 3]), run_id="r3", watermark=3) == (1, 1)


def test_new_bridge_table_rolled_back_with_a_failed_batch(con):
    bad = make_batch([1], selected={1: ["radio"]})
    bad.tables["submissions"] = bad.tables["submissions"].set_column(
        5, "hh_size", pa.array(["many"], pa.string())
    )
    with pytest.raises(WarehouseError):
        upsert_batch(con, make_schema(), bad, run_id="r1")
    assert (
        con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'assets__selected'").fetchone()[
            0
        ]
        == 0
    )
    assert (
        con.execute(
            "SELECT count(*) FROM ops.schema_changes WHERE table_name = 'assets__selected'"
        ).fetchone()[0]
        == 0
    )


def test_unknown_column_or_table_is_a_clear_error(con):
    batch = make_batch([1])
    batch.tables["submissions"] = batch.tables["submissions"].append_column("surprise", pa.array([1]))
    with pytest.raises(WarehouseError, match="no column 'surprise'"):
        upsert_batch(con, make_schema(), batch, run_id="r1")
    batch = make_batch([1])
    batch.tables["visits"] = batch.tables["members"]
    with pytest.raises(WarehouseError, match="hh.visits does not exist"):
        upsert_batch(con, make_schema(), batch, run_id="r1")
    assert rows(con, "submissions") == []


def test_hard_delete_removes_children_and_records(con):
    quarantine = [QuarantineRecord(i, "submissions", "hh_size", "not an integer", "twelve") for i in (2, 3)]
    batch = make_batch([1, 2, 3], selected={2: ["radio"]}, quarantine=quarantine)
    upsert_batch(con, make_schema(), batch, run_id="r1")
    assert delete_submissions(con, make_schema(), [2, 99], soft=False) == 1
    assert con.execute("SELECT submission_id FROM ops.quarantine").fetchall() == [(3,)]  # 2's went with it
    assert [r[0] for r in rows(con, "submissions")] == [1, 3]
    assert {r[1] for r in rows(con, "members", "_key")} == {1, 3}
    assert rows(con, "assets__selected", "choice") == []
    assert con.execute("SELECT form, submission_id FROM ops.deletions").fetchall() == [(SLUG, 2)]
    assert delete_submissions(con, make_schema(), [2], soft=False) == 0  # repeat: nothing more recorded
    assert con.execute("SELECT count(*) FROM ops.deletions").fetchone()[0] == 1


def test_soft_delete_marks_and_hides_from_manifest(con):
    quarantine = [QuarantineRecord(1, "submissions", "hh_size", "not an integer", "twelve")]
    upsert_batch(con, make_schema(), make_batch([1, 2], quarantine=quarantine), run_id="r1")
    assert delete_submissions(con, make_schema(), [1], soft=True) == 1
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchone()[0] == 1  # the row stays, so does it
    assert delete_submissions(con, make_schema(), [1], soft=True) == 0
    marked = con.execute(
        f'SELECT _id, _deleted_at IS NOT NULL FROM "{SLUG}".submissions ORDER BY _id'
    ).fetchall()
    assert marked == [(1, True), (2, False)]
    assert len(rows(con, "members", "_key")) == 6  # soft delete keeps the history
    assert read_manifest(con, SLUG).column("_id").to_pylist() == [2]
    assert count_submissions(con, SLUG) == 1
    # a re-appearing submission loads as a live row again
    upsert_batch(con, make_schema(), make_batch([1]), run_id="r2")
    assert count_submissions(con, SLUG) == 2


def test_manifest_and_watermark_of_unknown_form(con, tmp_path):
    manifest = read_manifest(con, "nope")
    assert manifest.num_rows == 0 and manifest.column_names == ["_id", "_uuid", "_validation_status_uid"]
    assert get_watermark(con, "nope") is None
    upsert_batch(con, make_schema(), make_batch([3, 1]), run_id="r1")
    assert read_manifest(con, SLUG).to_pylist() == [
        {"_id": 1, "_uuid": "uuid-1-a", "_validation_status_uid": None},
        {"_id": 3, "_uuid": "uuid-3-a", "_validation_status_uid": None},
    ]


HOSTILE = ['x"); DROP TABLE ops.sync_runs; --', "select", "prénom_نام", "a'b", "Order By"]


def test_hostile_identifiers_everywhere(tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    slug = 'form"; --'
    repeat = 'rep"eat'
    main = TableSchema(
        "submissions",
        "",
        None,
        [ColumnSpec("_id", "BIGINT", role="key")] + [ColumnSpec(n, "VARCHAR", n) for n in HOSTILE],
    )
    child = TableSchema(
        repeat,
        repeat,
        "submissions",
        [
            ColumnSpec("_key", "VARCHAR"),
            ColumnSpec("_submission_id", "BIGINT"),
            ColumnSpec("group", "BIGINT"),
        ],
    )
    schema = FormSchema(
        uid="u",
        slug=slug,
        title="t",
        languages=[],
        tables={"submissions": main, repeat: child},
        questions={},
        choices=[],
        versions=["v1"],
    )
    ensure_tables(con, schema)
    batch = FlatBatch(
        tables={
            "submissions": pa.table({"_id": [1], **{n: [f"value of {n}"] for n in HOSTILE}}),
            repeat: pa.table({"_key": ["1/r[1]"], "_submission_id": [1], "group": [5]}),
            'sel"ect__selected': pa.table({"_submission_id": [1], "_key": ["1"], "choice": ["a'b"]}),
        },
        submission_ids=[1],
    )
    assert upsert_batch(con, schema, batch, run_id="r", watermark=1) == (1, 0)
    assert upsert_batch(con, schema, batch, run_id="r", watermark=1) == (0, 1)
    got = con.execute('SELECT * FROM "form""; --".submissions').fetchall()
    assert got == [(1, *[f"value of {n}" for n in HOSTILE])]
    assert con.execute('SELECT "group" FROM "form""; --"."rep""eat"').fetchall() == [(5,)]
    assert con.execute('SELECT choice FROM "form""; --"."sel""ect__selected"').fetchall() == [("a'b",)]
    assert con.execute("SELECT count(*) FROM ops.sync_runs").fetchone()[0] == 0  # table still exists
    assert delete_submissions(con, schema, [1], soft=False) == 1
    assert con.execute('SELECT count(*) FROM "form""; --"."rep""eat"').fetchone()[0] == 0
    assert get_watermark(con, slug) == 1
    con.close()
