"""Plain rows are read in columns (`pa.array` per table); the result is the answer-by-answer walk's, exactly.

`_to_tables(..., columnar=False)` is the walk alone: every case here flattens both ways and compares tables,
quarantine (in order), submission ids and unknown keys.
"""

from __future__ import annotations

import copy
import gc
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from test_transforms_properties import cases
from transforms_golden import all_cases, load_case

from connectors.client import KoboClient
from connectors.demo_server import DemoKoboServer
from transforms.flatten import _to_tables, to_tables
from transforms.model import FlatBatch, FormSchema
from transforms.schema import to_form_schema


def _same(subs: list[Any], schema: FormSchema) -> FlatBatch:
    columnar = to_tables(subs, schema)
    walked = _to_tables(subs, schema, columnar=False)
    assert list(columnar.tables) == list(walked.tables)
    for name, table in walked.tables.items():
        assert columnar.tables[name].schema == table.schema, name
        assert columnar.tables[name].to_pylist() == table.to_pylist(), name
    assert columnar.quarantine == walked.quarantine
    assert columnar.submission_ids == walked.submission_ids
    assert columnar.unknown_keys == walked.unknown_keys
    return columnar


@pytest.fixture(scope="module")
def household() -> tuple[FormSchema, list[dict]]:
    """The demo household survey (3 versions, repeats in repeats, planted data problems), as served."""
    with DemoKoboServer(households=1200, seed=7, include_fixtures=False) as srv:
        client = KoboClient(srv.url, srv.token, allow_insecure_http=True)
        uid = srv.household_uid
        versions = {
            v["uid"]: client.get_version(uid, v["uid"])["content"] for v in client.iter_deployed_versions(uid)
        }
        schema = to_form_schema(client.get_asset(uid), versions, "household_survey")
        raw = [s for page in client.iter_submission_pages(uid, page_size=1000) for s in page.results]
    return schema, raw


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: c["case"])
def test_recorded_kobo_data_flattens_the_same_in_columns(case: dict[str, str]) -> None:
    asset, versions, records = load_case(case)
    _same(records, to_form_schema(asset, versions, "golden"))


def test_demo_pages_flatten_the_same_in_columns(household) -> None:
    schema, raw = household
    batch = _same(raw, schema)
    assert batch.tables["submissions"].num_rows == 1200
    assert batch.tables["members"].num_rows > 3000
    assert len({s.get("__version__") for s in raw}) > 1  # several versions in the pages


def test_a_number_or_a_list_among_plain_rows_is_quarantined_as_the_walk_does(household) -> None:
    schema, raw = household
    subs = copy.deepcopy(raw[:50])
    subs[3]["household/hh_size"] = 5  # a number where KoBo sends text
    subs[7]["members"][0]["members/member_age"] = ["12"]  # a list in a repeat's answer
    subs[9]["household/head_sex"] = "\ud800"  # a lone surrogate from a JSON escape
    batch = _same(subs, schema)
    main = batch.tables["submissions"].to_pylist()
    assert main[3]["hh_size"] == 5
    reasons = {(q.submission_id, q.column): q.reason for q in batch.quarantine}
    assert reasons[(subs[7]["_id"], "member_age")].startswith("not a single value")
    assert reasons[(subs[9]["_id"], "head_sex")] == "text is not valid Unicode (lone surrogate)"


def test_rows_walked_and_rows_read_in_columns_mix_in_one_page(household) -> None:
    schema, raw = household
    subs = copy.deepcopy(raw[:50])
    subs[4]["not_in_the_form"] = "x"  # an unknown key: this row is walked, the others are read in columns
    subs[5]["members"][1]["household/hh_size"] = "4"  # an answer outside its repeat
    subs[6]["household/income"] = ""  # KoBo's empty answer
    # in one repeat: an item that is not an object, then instances of key orders already seen plain
    many = next(s for s in subs[8:] if len(s.get("members", [])) >= 2)
    many["members"].insert(1, "not an instance")
    batch = _same(subs, schema)
    rows = [r for r in batch.tables["members"].to_pylist() if r["_submission_id"] == many["_id"]]
    assert [r["_position"] for r in rows] == [1, *range(3, len(many["members"]) + 1)]
    assert rows[-1]["_key"] == f"{many['_id']}/members[{len(many['members'])}]"
    assert batch.unknown_keys == {"not_in_the_form": 1}
    assert [q.reason for q in batch.quarantine if q.submission_id == subs[5]["_id"]] == [
        "answer found outside its repeat"
    ]
    main = batch.tables["submissions"].to_pylist()
    assert main[6]["income"] is None
    assert main[4]["hh_size"] == int(subs[4]["household/hh_size"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(cases())
def test_random_forms_and_answers_flatten_the_same_in_columns(
    case: tuple[dict, dict[str, dict], list[dict]],
) -> None:
    asset, versions, subs = case
    _same(subs, to_form_schema(asset, versions, "hyp"))


ODD_SYSTEM_VALUES = [
    {},  # as served: read in columns
    {"meta/rootUuid": "uuid:"},
    {"meta/rootUuid": ""},
    {"_submitted_by": None, "_status": ""},
    {"_validation_status": None},
    {"_validation_status": {"uid": "validation_status_approved", "timestamp": -5}},
    {"_validation_status": {"timestamp": 10**15}},
    {"_validation_status": {"timestamp": "1700000000"}},  # text: the row-by-row reading
    {"_validation_status": ["approved"]},
    {"_uuid": 12345},
    {"__version__": 3},
    {"_submission_time": "not a time"},
]


@pytest.mark.parametrize("odd", ODD_SYSTEM_VALUES, ids=repr)
def test_system_columns_read_in_columns_are_those_read_row_by_row(household, odd: dict[str, Any]) -> None:
    schema, raw = household
    subs = copy.deepcopy(raw[:20])
    subs[2].update(odd)
    batch = _same(subs, schema)
    row = batch.tables["submissions"].to_pylist()[2]
    if "meta/rootUuid" in odd:
        assert row["_root_uuid"] is None
    if odd.get("_validation_status") is None and "_validation_status" in odd:
        assert row["_validation_status_uid"] is None and row["_validation_status_time"] is None



@pytest.mark.parametrize(
    ("odd", "column", "raw_value"),
    [
        ({"_validation_status": "validation_status_approved"}, "_validation_status_uid",
         "validation_status_approved"),
        ({"_validation_status": [{"uid": "x", "by_whom": "enumerator7"}]}, "_validation_status_uid", None),
        ({"_validation_status": {"uid": "x", "by_whom": ["enumerator7"]}}, "_validation_status_by", None),
        ({"_uuid": ["a", "b"]}, "_uuid", None),
    ],
    ids=repr,
)
def test_a_system_value_of_an_unexpected_shape_is_quarantined(
    household, odd: dict[str, Any], column: str, raw_value: str | None
) -> None:
    """Not stored as typed, so in the quarantine with the `_id` and the column (the row still loads); a
    list or object keeps no value there, as it may hold a username."""
    schema, raw = household
    subs = copy.deepcopy(raw[:5])
    subs[3].update(odd)
    batch = _same(subs, schema)
    sid = subs[3]["_id"]
    assert [(q.submission_id, q.table, q.column, q.raw_value, q.row_key) for q in batch.quarantine] == [
        (sid, "submissions", column, raw_value, str(sid))
    ]
    assert batch.tables["submissions"].to_pylist()[3][column] is None
    assert batch.submission_ids == [s["_id"] for s in subs]

def test_flattening_keeps_no_reference_to_the_rows(household) -> None:
    """The walk's functions form a reference cycle; rows kept on it would wait for the cyclic collector,
    which then scans every one of them (≈ 4 ms per 1 000-row page)."""
    schema, raw = household
    subs = copy.deepcopy(raw[:30])
    held = [sys.getrefcount(s) for s in subs]
    gc.disable()  # a cycle holding the rows would otherwise be freed before we look
    try:
        batch = to_tables(subs, schema)
        assert [sys.getrefcount(s) for s in subs] == held
    finally:
        gc.enable()
    assert batch.tables["submissions"].num_rows == 30
