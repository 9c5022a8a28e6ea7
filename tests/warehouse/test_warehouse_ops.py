import orjson
import pytest

from warehouse import connect, fail_run, finish_run, start_run, upsert_pending_privacy


@pytest.fixture
def con(tmp_path):
    c = connect(tmp_path / "warehouse.duckdb")
    yield c
    c.close()


def run(con, run_id):
    cur = con.execute("SELECT * FROM ops.sync_runs WHERE run_id = ?", [run_id])
    return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))


def test_run_lifecycle_success(con):
    run_id = start_run(con, "hh")
    assert run(con, run_id)["status"] == "running"
    status = finish_run(
        con,
        run_id,
        fetched=10,
        inserted=7,
        updated=3,
        quarantined=1,
        server_count=10,
        warehouse_count=10,
        summary={"schema_changes": ["new column hh.x (VARCHAR)"]},
    )
    row = run(con, run_id)
    assert status == row["status"] == "success"
    assert (row["fetched"], row["inserted"], row["updated"], row["deleted"], row["quarantined"]) == (
        10,
        7,
        3,
        0,
        1,
    )
    assert row["finished"] >= row["started"] and row["duration_s"] >= 0
    assert orjson.loads(row["summary"]) == {"schema_changes": ["new column hh.x (VARCHAR)"]}


def test_run_warning_on_failed_checks_or_count_mismatch(con):
    a, b, c = start_run(con, "hh"), start_run(con, "hh"), start_run(con, "hh")
    assert finish_run(con, a, checks_failed=2) == "warning"
    assert finish_run(con, b, server_count=10, warehouse_count=9) == "warning"
    assert finish_run(con, c, status="success", checks_failed=1) == "success"
    assert run(con, b)["warehouse_count"] == 9


def test_run_failed_and_bad_arguments(con):
    run_id = start_run(con, "hh")
    fail_run(con, run_id, "KoBo unavailable after retries (form 'hh')")
    row = run(con, run_id)
    assert (row["status"], row["error"]) == ("failed", "KoBo unavailable after retries (form 'hh')")
    with pytest.raises(TypeError, match="insrted"):
        finish_run(con, run_id, insrted=1)
    with pytest.raises(ValueError):
        finish_run(con, run_id, status="done")


def test_pending_privacy_upsert_keeps_first_seen(con):
    assert (
        upsert_pending_privacy(
            con,
            "hh",
            [
                {"xpath": "resp/phone", "question_type": "text", "reason": "looks like a phone number"},
                {"xpath": "resp/name", "question_type": "text", "reason": "name-like question"},
            ],
        )
        == 2
    )
    first = dict(con.execute("SELECT xpath, first_seen FROM ops.pending_privacy_decisions").fetchall())
    upsert_pending_privacy(con, "hh", [{"xpath": "resp/phone", "question_type": "integer", "reason": "r2"}])
    rows = con.execute(
        "SELECT xpath, question_type, reason, first_seen, last_seen >= first_seen "
        "FROM ops.pending_privacy_decisions ORDER BY xpath"
    ).fetchall()
    assert rows == [
        ("resp/name", "text", "name-like question", first["resp/name"], True),
        ("resp/phone", "integer", "r2", first["resp/phone"], True),
    ]
    assert upsert_pending_privacy(con, "hh", []) == 0


def test_a_run_left_running_by_a_killed_process_is_closed_by_the_next(con):
    killed = start_run(con, "hh")  # never finished: the process was killed
    other_form = start_run(con, "other")
    nxt = start_run(con, "hh")
    assert run(con, killed)["status"] == "failed"
    assert run(con, killed)["error"].startswith("interrupted")
    assert run(con, killed)["finished"] is not None
    assert run(con, nxt)["status"] == "running"
    assert run(con, other_form)["status"] == "running"  # another form's run is not touched
