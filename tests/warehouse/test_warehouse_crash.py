"""A process killed (SIGKILL) in the middle of an upsert leaves the warehouse as before the batch."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from wh_factory import make_batch, make_schema

from warehouse import connect, ensure_tables, get_watermark, upsert_batch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# runs in a child process: load batch [1, 2], then die by SIGKILL while inserting the members of batch [2, 3]
CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from wh_factory import make_batch, make_schema
    import warehouse.load as load
    from warehouse import connect, ensure_tables, upsert_batch

    con = connect(sys.argv[1])
    ensure_tables(con, make_schema())
    upsert_batch(con, make_schema(), make_batch([1, 2], members=3, selected={1: ["radio"]}), run_id="ok",
                 watermark=2)
    real_insert = load._insert

    def dying_insert(con, views, slug, name, rows, columns):
        if name == "members":  # the main rows of the batch are already deleted and re-inserted
            os.kill(os.getpid(), signal.SIGKILL)
        return real_insert(con, views, slug, name, rows, columns)

    load._insert = dying_insert
    upsert_batch(con, make_schema(), make_batch([2, 3], members=1, uuid_suffix="new"), run_id="dies",
                 watermark=3)
""")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX-only")
def test_sigkill_mid_batch_rolls_back(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(HERE), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    con = connect(path)
    try:
        assert con.execute("SELECT _id, _uuid FROM hh.submissions ORDER BY _id").fetchall() == [
            (1, "uuid-1-a"),
            (2, "uuid-2-a"),
        ]
        assert con.execute("SELECT count(*) FROM hh.members").fetchone()[0] == 6
        assert con.execute("SELECT count(*) FROM hh.assets__selected").fetchone()[0] == 1
        assert get_watermark(con, "hh") == 2
        # the next run finishes the job
        ensure_tables(con, make_schema())
        assert upsert_batch(
            con, make_schema(), make_batch([2, 3], members=1, uuid_suffix="new"), run_id="again", watermark=3
        ) == (1, 1)
        assert get_watermark(con, "hh") == 3
    finally:
        con.close()
