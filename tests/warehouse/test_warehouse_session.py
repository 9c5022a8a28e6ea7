"""Batches loaded in a `load_session` and `new_only` upserts: the same rows as without a session, the
watermark only ever where the committed data ends, a failed batch rolls back itself and nothing before it."""

import pyarrow as pa
import pytest
from wh_factory import SLUG, make_batch, make_schema

from warehouse import WarehouseError, connect, ensure_tables, get_watermark, upsert_batch
from warehouse.load import load_session


@pytest.fixture
def con(tmp_path):
    c = connect(tmp_path / "warehouse.duckdb")
    ensure_tables(c, make_schema())
    yield c
    c.close()


def rows(con) -> list[tuple]:
    return con.execute(f'SELECT _id, _uuid FROM "{SLUG}".submissions ORDER BY _id').fetchall()


def test_session_loads_the_same_rows_as_single_transactions(tmp_path, con):
    other = connect(tmp_path / "single.duckdb")
    ensure_tables(other, make_schema())
    with load_session(con):
        for k in range(7):
            ids = [3 * k + 1, 3 * k + 2, 3 * k + 3]
            batch = make_batch(ids, members=2)
            counts = upsert_batch(con, make_schema(), batch, run_id="r", watermark=ids[-1], new_only=True)
            assert counts == (3, 0)
            upsert_batch(other, make_schema(), make_batch(ids, members=2), run_id="r", watermark=ids[-1])
    assert rows(con) == rows(other) and len(rows(con)) == 21
    members = f'SELECT * FROM "{SLUG}".members ORDER BY _key'
    assert con.execute(members).fetchall() == other.execute(members).fetchall()
    assert get_watermark(con, SLUG) == get_watermark(other, SLUG) == 21
    other.close()


def test_failed_batch_rolls_back_itself_only(con):
    with pytest.raises(WarehouseError) as info, load_session(con):
        upsert_batch(con, make_schema(), make_batch([1]), run_id="r", watermark=1)
        upsert_batch(con, make_schema(), make_batch([2]), run_id="r", watermark=2)
        bad = make_batch([3], members=1)
        bad.tables["members"] = bad.tables["members"].set_column(
            4, "age", pa.array(["secret-value"], pa.string())
        )
        upsert_batch(con, make_schema(), bad, run_id="r", watermark=3)
    assert "secret-value" not in str(info.value) and "unchanged" in str(info.value)
    assert [r[0] for r in rows(con)] == [1, 2]
    assert get_watermark(con, SLUG) == 2
    # the connection is usable afterwards
    assert upsert_batch(con, make_schema(), make_batch([3]), run_id="r2", watermark=3) == (1, 0)


def test_whole_batches_are_kept_when_the_block_fails_between_batches(con):
    with pytest.raises(RuntimeError), load_session(con):
        for sid in (1, 2, 3):
            upsert_batch(con, make_schema(), make_batch([sid]), run_id="r", watermark=sid)
        raise RuntimeError("the next page could not be fetched")
    assert [r[0] for r in rows(con)] == [1, 2, 3]
    assert get_watermark(con, SLUG) == 3


def test_new_only_skips_deletes_but_never_duplicates(con):
    upsert_batch(con, make_schema(), make_batch([1, 2]), run_id="r", watermark=2)
    with pytest.raises(WarehouseError):
        upsert_batch(con, make_schema(), make_batch([2, 3], uuid_suffix="b"), run_id="r", new_only=True)
    assert [r[0] for r in rows(con)] == [1, 2]
    # without the promise the same batch replaces id 2
    assert upsert_batch(con, make_schema(), make_batch([2, 3], uuid_suffix="b"), run_id="r") == (1, 1)
    assert [r[0] for r in rows(con)] == [1, 2, 3]


def test_a_session_loads_on_one_duckdb_thread_and_gives_the_others_back(con):
    def threads() -> int:
        return con.execute("SELECT current_setting('threads')").fetchone()[0]

    con.execute("SET threads = 3")
    with load_session(con):
        assert threads() == 1  # the cores are the transform's (workers or this process)
        with load_session(con):  # nested: the outer session decides
            assert threads() == 1
        assert threads() == 1
    assert threads() == 3  # the checks and exports after the load run in parallel again
    with pytest.raises(RuntimeError), load_session(con):
        raise RuntimeError("a page could not be fetched")
    assert threads() == 3


def test_a_download_loads_under_three_quarters_of_the_memory_limit(tmp_path):
    """What DuckDB keeps grows to its limit while a big download writes; the configured limit is set again
    afterwards, and a session without it changes nothing."""
    def limit(c) -> str:
        return c.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    with connect(tmp_path / "w.duckdb", memory_limit="256MiB") as c:
        ensure_tables(c, make_schema())
        with load_session(c, "256MiB"):
            assert limit(c) == "192.0 MiB"
            assert upsert_batch(c, make_schema(), make_batch([1, 2]), run_id="r", watermark=2) == (2, 0)
            with load_session(c, "256MiB"):  # nested: the outer session decides
                assert limit(c) == "192.0 MiB"
        assert limit(c) == "256.0 MiB"
        with load_session(c):
            assert limit(c) == "256.0 MiB"
    with connect(tmp_path / "x.duckdb", memory_limit="1.5GB") as c:
        shown = limit(c)
        with load_session(c, "1.5GB"):
            assert limit(c) == "998.3 MiB"  # 3/4 of DuckDB's 1.3 GiB for 1.5 GB
        assert limit(c) == shown
