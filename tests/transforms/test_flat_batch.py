"""`FlatBatch.concat`: several pages' batches as one, for one insert per table."""

from __future__ import annotations

import pyarrow as pa

from transforms.model import FlatBatch, QuarantineRecord


def _batch(ids: list[int], bridge: bool, unknown: dict[str, int]) -> FlatBatch:
    tables = {"submissions": pa.table({"_id": pa.array(ids, pa.int64()), "age": pa.array([None] * len(ids),
                                                                                          pa.int64())})}
    if bridge:
        tables["colours__selected"] = pa.table({"_submission_id": pa.array(ids[:1], pa.int64()),
                                                "_key": pa.array([str(ids[0])]), "choice": pa.array(["red"])})
    quarantine = [QuarantineRecord(ids[0], "submissions", "age", "not an integer", "x", str(ids[0]))]
    return FlatBatch(tables, quarantine, ids, unknown)


def test_concat_keeps_the_order_of_rows_tables_quarantine_and_counts() -> None:
    merged = FlatBatch.concat([_batch([1, 2], False, {"old_q": 2}), _batch([3], True, {"old_q": 1, "x": 1})])
    assert merged.tables["submissions"].column("_id").to_pylist() == [1, 2, 3]
    assert merged.tables["colours__selected"].column("_submission_id").to_pylist() == [3]
    assert list(merged.tables) == ["submissions", "colours__selected"]
    assert merged.submission_ids == [1, 2, 3]
    assert [q.submission_id for q in merged.quarantine] == [1, 3]
    assert merged.unknown_keys == {"old_q": 3, "x": 1}


def test_concat_of_one_batch_is_that_batch() -> None:
    one = _batch([7], True, {})
    assert FlatBatch.concat([one]) is one
