"""Golden-file tests: every real robotoolbox asset and every formpack fixture, flattened.

Regenerate on purpose with `.venv/bin/python tests/transforms/regen_golden.py` and review the diff.
"""

from __future__ import annotations

import csv

import pytest
from transforms_golden import FIXTURES, GOLDEN, all_cases, load_case, render_case

from transforms.flatten import to_tables
from transforms.schema import to_form_schema

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"KoBo fixtures not found at {FIXTURES}")
CASES = all_cases() if FIXTURES.is_dir() else []


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_golden(case: dict[str, str]) -> None:
    folder = GOLDEN / case["case"]
    assert folder.is_dir(), f"no golden files for {case['case']}; run tests/transforms/regen_golden.py"
    rendered = render_case(case)
    expected = {p.name for p in folder.iterdir() if p.name != "input.json"}
    assert set(rendered) == expected
    for name, text in rendered.items():
        assert text == (folder / name).read_text(encoding="utf-8"), f"{case['case']}/{name} differs"


def test_golden_covers_enough_formpack_fixtures() -> None:
    assert sum(c["source"] == "formpack" for c in CASES) >= 15


def _rows(case: str, table: str) -> list[dict[str, str]]:
    with open(GOLDEN / case / f"{table}.csv", encoding="utf-8") as fh:
        return [{k.split(":")[0]: v for k, v in r.items()} for r in csv.DictReader(fh)]


def test_renamed_group_maps_to_one_column() -> None:
    asset, versions, records = load_case(
        {"source": "robotoolbox", "path": "robotoolbox/kobo_data_group_names"}
    )
    schema = to_form_schema(asset, versions, "pets")
    q = schema.questions["v0/hh_sex"]
    assert set(q.xpaths) == {"v0/hh_sex", "v1/hh_sex", "v2/hh_sex"}
    assert schema.questions["v1/hh_sex"] is q and q.column == "hh_sex"
    assert [c.name for c in schema.main.columns].count("hh_sex") == 1
    batch = to_tables(records, schema)
    sexes = batch.tables["submissions"].column("hh_sex").to_pylist()
    assert sexes == ["1", "1", "2", "1", "2", "1"]
    assert batch.unknown_keys == {} and batch.quarantine == []


def test_nested_repeat_keys_and_bridge() -> None:
    rows = _rows("robo_kobo_data_dm", "lang_list")
    assert rows[0]["_key"] == "17727380/demo[1]/lang_list[1]"
    assert rows[0]["_parent_key"] == "17727380/demo[1]" and rows[0]["_position"] == "1"
    assert rows[2]["langs"] == "1 99" and rows[2]["langs__99"] == "true" and rows[2]["langs__2"] == "false"
    bridge = _rows("robo_kobo_data_dm", "langs__selected")
    assert {"_submission_id": "17727576", "_key": "17727576/demo[2]/lang_list[1]", "choice": "99"} in bridge


def test_validation_status_and_geo_values() -> None:
    rows = _rows("robo_kobo_data_validation", "submissions")
    assert [r["_validation_status_uid"] for r in rows] == [
        "validation_status_on_hold",
        "validation_status_not_approved",
        "validation_status_approved",
    ]
    assert rows[0]["_validation_status_time"].endswith("+00:00")
    geo = _rows("robo_kobo_data_geodata", "submissions")[0]
    assert geo["point_latitude"] == "14.719783" and geo["point_longitude"] == "-17.459261"
    assert geo["line"].startswith("LINESTRING (-17.500409 14.726129, ")
    assert geo["polygon"].startswith("POLYGON ((-17.452461 14.747328,")


def test_bad_datetime_is_quarantined_without_value_in_reason() -> None:
    rows = _rows("formpack_sanitation_report", "quarantine")
    assert len(rows) == 4
    assert rows[0]["reason"] == "not an ISO 8601 date-time (XLSForm type datetime)"
    assert rows[0]["raw_value"] == "012345" and "012345" not in rows[0]["reason"]
    assert all(r["report_date"] == "" for r in _rows("formpack_sanitation_report", "submissions"))
