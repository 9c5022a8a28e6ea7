import logging
import subprocess
import sys
import textwrap

import pytest

from warehouse import WarehouseLocked, connect
from warehouse.errors import WarehouseError

OPS_TABLES = {
    "sync_runs",
    "quarantine",
    "schema_changes",
    "watermarks",
    "deletions",
    "pending_privacy_decisions",
}

HOLDER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # hold the file until the test closes our stdin
""")


@pytest.fixture
def holder(tmp_path):
    """A second process holding the warehouse file open for writing."""
    path = tmp_path / "data" / "warehouse.duckdb"
    connect(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    yield path, proc
    if not proc.stdin.closed:
        proc.stdin.close()
    proc.wait(timeout=30)


def test_connect_creates_folder_schemas_and_ops_tables(tmp_path):
    path = tmp_path / "nested" / "dir" / "warehouse.duckdb"
    con = connect(path)
    assert path.exists()
    schemas = {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()}
    assert {"ops", "meta", "marts"} <= schemas
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name='ops'").fetchall()
    }
    assert OPS_TABLES <= tables
    assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0] is False
    assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"
    # DuckDB's memory is capped (bench/README.md, Memory); a second connection to the file shares it
    limits = "SELECT current_setting('memory_limit'), current_setting('checkpoint_threshold')"
    assert con.execute(limits).fetchone() == ("256.0 MiB", "64.0 MiB")
    assert con.cursor().execute(limits).fetchone() == ("256.0 MiB", "64.0 MiB")
    con.close()
    # reopening is idempotent and read-only works on an unlocked file
    connect(path).close()
    ro = connect(path, read_only=True)
    assert ro.execute("SELECT count(*) FROM ops.sync_runs").fetchone()[0] == 0
    ro.close()


def test_locked_file_gives_clear_message_with_pid(holder):
    path, proc = holder
    with pytest.raises(WarehouseLocked) as info:
        connect(path)
    err = info.value
    assert err.pid == proc.pid
    assert str(err) == (
        f"the warehouse {path} is open in another program (pid {proc.pid}); "
        f"close it or use the read-only copy {path.parent / 'exports' / 'warehouse.duckdb'}"
    )
    assert err.__cause__ is None and err.__suppress_context__  # no DuckDB stack trace behind it
    with pytest.raises(WarehouseLocked):
        connect(path, read_only=True)


def test_wait_succeeds_once_the_other_program_closes(holder):
    path, proc = holder
    messages = []

    class ReleaseOnWait(logging.Handler):
        """The holder lets go only after connect() said it is waiting: no timing involved."""

        def emit(self, record):
            messages.append(record.getMessage())
            if not proc.stdin.closed:
                proc.stdin.close()
                proc.wait(timeout=30)

    handler = ReleaseOnWait(level=logging.WARNING)
    logger = logging.getLogger("warehouse.db")
    logger.addHandler(handler)
    try:
        con = connect(path, wait_s=120)
    finally:
        logger.removeHandler(handler)
    assert con.execute("SELECT count(*) FROM ops.watermarks").fetchone()[0] == 0
    con.close()
    assert len(messages) == 1
    assert "waiting up to 120 s" in messages[0] and f"pid {proc.pid}" in messages[0]


def test_not_a_duckdb_file_is_a_warehouse_error(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    path.write_text("this is not a database")
    with pytest.raises(WarehouseError) as info:
        connect(path)
    assert not isinstance(info.value, WarehouseLocked)
    assert str(path) in str(info.value)
