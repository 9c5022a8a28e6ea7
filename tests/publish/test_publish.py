"""Exports for Power BI: every file read back with pyarrow and DuckDB, types, counts, keys, manifest,
atomicity."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "indicators"))
from household_data import FORM, build_household_warehouse  # noqa: E402

from config.indicators import load_indicators  # noqa: E402
from warehouse.db import apply_settings  # noqa: E402
from warehouse.indicators import compute_indicators  # noqa: E402
from warehouse.publish import PublishError, publish  # noqa: E402


@pytest.fixture()
def con(tmp_path: Path):
    con = build_household_warehouse(tmp_path / "warehouse.duckdb")
    apply_settings(con)  # as every warehouse connection has them (warehouse.db.connect)
    compute_indicators(con, load_indicators(), small_cell_threshold=3, run_id="run-7")
    yield con
    con.close()


def test_parquet_files_types_counts_keys_manifest(con, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    result = publish(con, out, [FORM], run_id="run-7")
    folder = out / FORM
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run_id"] == "run-7" and manifest["form"] == FORM and manifest["format"] == "parquet"
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")}
    assert (
        listed
        == on_disk
        == {
            "submissions.parquet",
            "members.parquet",
            "illnesses.parquet",
            "needs__selected.parquet",
            "labels/questions.parquet",
            "labels/choices.parquet",
            "indicators/indicator_values.parquet",
            "indicators/dim_indicator.parquet",
            "indicators/dim_period.parquet",
            "indicators/dim_location.parquet",
        }
    )
    expected_rows = {
        "submissions.parquet": 7,
        "members.parquet": 16,
        "illnesses.parquet": 3,
        "needs__selected.parquet": 4,
        "labels/questions.parquet": 3,
        "labels/choices.parquet": 8,
        "indicators/indicator_values.parquet": 44,
        "indicators/dim_indicator.parquet": 8,
        "indicators/dim_period.parquet": 366,
        "indicators/dim_location.parquet": 4,
    }
    reader = duckdb.connect()
    for entry in manifest["files"]:
        path = folder / entry["path"]
        table = pq.read_table(path)
        assert table.num_rows == entry["rows"] == expected_rows[entry["path"]]
        assert [c["name"] for c in entry["columns"]] == table.column_names
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert pq.ParquetFile(path).schema_arrow.metadata[b"run_id"] == b"run-7"
        for f in table.schema:
            assert not pa.types.is_unsigned_integer(f.type), (entry["path"], f.name)
            assert not pa.types.is_decimal(f.type) and not pa.types.is_float32(f.type)
            if pa.types.is_timestamp(f.type):
                assert f.type.unit == "us" and f.type.tz is None, (entry["path"], f.name)
        assert reader.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0] == entry["rows"]
    for table in ("submissions", "members", "illnesses", "needs__selected"):
        assert (
            con.execute(f"SELECT count(*) FROM {FORM}.{table}").fetchone()[0]
            == expected_rows[f"{table}.parquet"]
        )
    # data files are not sorted (decision 004) but hold exactly the warehouse's rows
    for table, key in (("submissions", "_id"), ("members", "_key"), ("needs__selected", "_submission_id")):
        exported = sorted(pq.read_table(folder / f"{table}.parquet").column(key).to_pylist())
        stored = [r[0] for r in con.execute(f"SELECT {key} FROM {FORM}.{table} ORDER BY {key}").fetchall()]
        assert exported == stored, table
    sub = pq.read_table(folder / "submissions.parquet").schema
    assert sub.field("_id").type == pa.int64() and sub.field("income").type == pa.float64()
    assert sub.field("visits").type == pa.int64()  # UTINYINT in the warehouse
    # TIMESTAMPTZ 08:15+03 is published as the UTC wall time 05:15
    start = reader.execute(
        f"SELECT start FROM read_parquet('{folder}/submissions.parquet') WHERE _id = 1"
    ).fetchone()
    assert str(start[0]) == "2024-03-04 05:15:00"
    # keys: identical names and types across tables, every child has its parent
    members = pq.read_table(folder / "members.parquet").schema
    assert members.field("_submission_id").type == sub.field("_id").type == pa.int64()
    p = f"'{folder}/%s.parquet'"
    orphans = reader.execute(
        f"SELECT (SELECT count(*) FROM read_parquet({p % 'members'}) WHERE _submission_id NOT IN "
        f"(SELECT _id FROM read_parquet({p % 'submissions'}))), "
        f"(SELECT count(*) FROM read_parquet({p % 'illnesses'}) WHERE _parent_key NOT IN "
        f"(SELECT _key FROM read_parquet({p % 'members'}))), "
        f"(SELECT count(*) FROM read_parquet({p % 'illnesses'}) WHERE _submission_id NOT IN "
        f"(SELECT _id FROM read_parquet({p % 'submissions'}))), "
        f"(SELECT count(*) FROM read_parquet({p % 'needs__selected'}) WHERE _submission_id NOT IN "
        f"(SELECT _id FROM read_parquet({p % 'submissions'})))"
    ).fetchone()
    assert orphans == (0, 0, 0, 0)
    # labels are filtered to the form; indicators relate to the date table
    assert set(pq.read_table(folder / "labels/choices.parquet").column("form").to_pylist()) == {FORM}
    assert reader.execute(
        f"SELECT count(*) FROM read_parquet('{folder}/indicators/indicator_values.parquet') v "
        f"WHERE v.period_start NOT IN "
        f"(SELECT date FROM read_parquet('{folder}/indicators/dim_period.parquet'))"
    ).fetchone() == (0,)
    loc = pq.read_table(folder / "indicators/dim_location.parquet").to_pylist()
    assert {
        "_location_key": "garissa/dadaab",
        "admin2": "dadaab",
        "admin2_label_en": "Dadaab",
        "admin2_label_fr": "Dadaab",
        "admin2_label_ar": "داداب",
        "admin1": "garissa",
        "admin1_label_en": "Garissa",
        "admin1_label_fr": "Garissa",
        "admin1_label_ar": "غاريسا",
    } in loc
    top = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert top["forms"][FORM]["files"] == 10 and top["warehouse_copy"] == "warehouse.duckdb"
    assert result.warehouse_copy == out / "warehouse.duckdb"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_read_only_warehouse_copy(con, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    con.execute(f"INSERT INTO {FORM}.needs__selected VALUES (2, NULL, 'cash')")  # after the snapshot
    copy = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    assert copy.execute(f"SELECT count(*) FROM {FORM}.needs__selected").fetchone() == (4,)
    assert copy.execute("SELECT count(*) FROM marts.indicator_values").fetchone() == (44,)
    copy.close()
    assert not (out / "warehouse.duckdb").stat().st_mode & 0o222  # no write bit
    publish(con, out, [FORM])  # replacing the read-only copy works
    copy = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    assert copy.execute(f"SELECT count(*) FROM {FORM}.needs__selected").fetchone() == (5,)
    copy.close()


def test_csv_variant(con, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    publish(con, out, [FORM], fmt="csv", run_id="run-7")
    folder = out / FORM
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "csv" and len(manifest["files"]) == 10
    for entry in manifest["files"]:
        path = folder / entry["path"]
        assert path.suffix == ".csv"
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == [c["name"] for c in entry["columns"]] and len(rows) - 1 == entry["rows"]
        counted = (
            duckdb.connect().execute(f"SELECT count(*) FROM read_csv('{path}', header = true)").fetchone()
        )
        assert counted[0] == entry["rows"]
    with (folder / "submissions.csv").open(encoding="utf-8", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert first["today"] == "2024-03-04" and first["start"] == "2024-03-04T05:15:00.000000"
    with (folder / "labels/choices.csv").open(encoding="utf-8", newline="") as fh:
        assert "توركانا" in fh.read()


def test_concurrent_reader_never_sees_a_partial_publish(con, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    folder = out / FORM
    stop = threading.Event()
    seen: list[str] = []
    broken: list[str] = []

    def read_once() -> None:
        try:
            before = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            for entry in before["files"]:
                path = folder / entry["path"]
                data = path.read_bytes()
                # parsed from the bytes read: opening the path again (pyarrow opens it more than once) could
                # mix the footer of one publish with the pages of the next
                table = pq.read_table(pa.BufferReader(data))
                if hashlib.sha256(data).hexdigest() != entry["sha256"] or table.num_rows != entry["rows"]:
                    raise AssertionError("changed under the reader")
            after = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, AssertionError):
            return  # the folder was swapped mid-read: a reader retries; it never got a half-written file
        except Exception as exc:  # an unreadable (partial) Parquet or JSON file
            broken.append(f"{type(exc).__name__}: {exc}")
            return
        if after["publish_id"] == before["publish_id"]:
            seen.append(before["publish_id"])

    def reader() -> None:
        while not stop.is_set():
            read_once()

    thread = threading.Thread(target=reader)
    thread.start()
    ids = []
    try:
        for i in range(6):
            con.execute(f"INSERT INTO {FORM}.needs__selected VALUES ({(i % 6) + 1}, NULL, 'food')")
            ids.append(publish(con, out, [FORM], copy_warehouse=False).publish_id)
    finally:
        stop.set()
        thread.join()
    read_once()
    assert broken == []
    assert seen and set(seen) <= set(ids) | {seen[0]}
    final = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert final["publish_id"] == ids[-1]
    assert next(f["rows"] for f in final["files"] if f["path"] == "needs__selected.parquet") == 10


def test_publish_leaves_the_connection_as_it_was(con, tmp_path: Path) -> None:
    """The snapshot is attached to the warehouse's own connection (one DuckDB memory limit for both), made
    the default while exporting, then detached: the caller's connection must be as before, also after a
    failed publish."""

    def state() -> tuple[object, ...]:
        current = con.execute(
            "SELECT current_database(), current_schema(), current_setting('memory_limit')"
        ).fetchone()
        attached = con.execute("SELECT database_name FROM duckdb_databases() ORDER BY 1").fetchall()
        return current, attached

    before = state()
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    assert state() == before
    with pytest.raises(PublishError, match="no_such_form"):
        publish(con, out, [FORM, "no_such_form"])
    assert state() == before
    # an unqualified name still reads the warehouse
    assert con.execute(f"SELECT count(*) FROM {FORM}.submissions").fetchone() == (7,)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_snapshot_is_the_checkpointed_warehouse_file(con, tmp_path: Path) -> None:
    """The snapshot is a copy of the warehouse file made right after a checkpoint: rows committed just
    before, still in the WAL, are in it, and the WAL is gone."""
    wal = tmp_path / "warehouse.duckdb.wal"
    con.execute(f"INSERT INTO {FORM}.needs__selected VALUES (2, NULL, 'cash')")
    assert wal.exists() and wal.stat().st_size > 0  # the row is in the WAL, not yet in the file
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    assert not wal.exists()
    assert copy_rows(out, f"{FORM}.needs__selected", "marts.indicator_values") == [5, 44]


def test_snapshot_falls_back_to_the_usual_memory_limit(con, tmp_path: Path, monkeypatch) -> None:
    """A warehouse file the system will not let us copy (Windows may lock it) is copied with COPY FROM
    DATABASE under a lower memory limit; when the copy does not fit in it (1 MiB), it runs again under the
    warehouse's limit, whole, and that limit is back after."""
    import warehouse.db as db
    import warehouse.publish as publishing

    def locked(*args: object, **kwargs: object) -> None:
        raise PermissionError("the process cannot access the file because it is being used")

    limit_before = con.execute("SELECT current_setting('memory_limit')").fetchone()
    monkeypatch.setattr(publishing.shutil, "copyfile", locked)
    monkeypatch.setattr(db, "part_of_memory_limit", lambda shown, part: "1MiB")
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    assert con.execute("SELECT current_setting('memory_limit')").fetchone() == limit_before
    assert copy_rows(out, f"{FORM}.members", "marts.indicator_values") == [16, 44]


def copy_rows(out: Path, *tables: str) -> list[int]:
    """The row counts of `tables` in the published read-only warehouse copy."""
    copy = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        return [copy.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]
    finally:
        copy.close()


def test_location_labels_come_from_the_question_choice_list_whatever_its_name(con, tmp_path: Path) -> None:
    """admin1 answered from a list called `county`: the labels are found through meta.questions, not by
    assuming the list is named like the column."""
    con.execute(
        """UPDATE meta.questions SET list_name = 'county' WHERE form = ? AND "column" = 'admin1'""", [FORM]
    )
    con.execute("UPDATE meta.choices SET list_name = 'county' WHERE form = ? AND list_name = 'admin1'",
                [FORM])
    publish(con, tmp_path / "exports", [FORM], run_id="run-7")
    loc = pq.read_table(tmp_path / "exports" / FORM / "indicators/dim_location.parquet").to_pylist()
    garissa = [r for r in loc if r["admin1"] == "garissa"]
    assert garissa and {r["admin1_label_en"] for r in garissa} == {"Garissa"}
