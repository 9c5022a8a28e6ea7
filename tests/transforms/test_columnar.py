"""Pages read in columns (transforms/columnar.py) give what the row-by-row path gives from the same body:
the same tables, quarantine and withheld questions, on the demo server's pages, on every real KoBo fixture
with two policies, and for every shape that sends a page row by row."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import orjson
import pyarrow as pa
import pytest
import yaml
from transforms_golden import all_cases, load_case

from config import DEMO_PSEUDONYMISATION_KEY
from config.privacy import PrivacyPolicy
from connectors.client import KoboClient
from connectors.demo_server import DemoKoboServer
from pipelines.demo import DEMO_FORM_CONFIG
from transforms import FormSchema, to_form_schema, with_attachments_table
from transforms.columnar import page_layout, transform_page_columns
from transforms.page import PageTransform, TransformedPage, page_results
from transforms.privacy import DATE_TYPES, GEO_TYPES, NUMERIC_TYPES, STRUCTURE_TYPES, apply_policy_to_schema

KEY = DEMO_PSEUDONYMISATION_KEY.encode()
DEMO_POLICY = PrivacyPolicy.model_validate(
    yaml.safe_load(DEMO_FORM_CONFIG.read_text(encoding="utf-8"))["privacy"]
)


def _transform(raw: FormSchema, policy: PrivacyPolicy) -> PageTransform:
    return PageTransform(raw, apply_policy_to_schema(raw, policy), policy, KEY)


def _body(records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"count": len(records), "next": None, "previous": None, "results": records})


def assert_same_page(columns: TransformedPage, rows: TransformedPage) -> None:
    assert columns.batch.submission_ids == rows.batch.submission_ids
    assert list(columns.batch.tables) == list(rows.batch.tables)
    for name, table in rows.batch.tables.items():
        assert columns.batch.tables[name].schema == table.schema, name
        for column in table.column_names:
            assert columns.batch.tables[name].column(column).equals(table.column(column)), (name, column)
    assert columns.batch.quarantine == rows.batch.quarantine
    assert columns.batch.unknown_keys == rows.batch.unknown_keys
    assert columns.withheld == rows.withheld


def _both(transform: PageTransform, body: bytes) -> tuple[TransformedPage | None, TransformedPage]:
    """The page read in columns (None if it went row by row) and the row-by-row result."""
    columns = transform_page_columns(body, transform)
    rows = transform(page_results(body))
    if columns is not None:
        assert_same_page(columns, rows)
    assert_same_page(transform.body(body), rows)  # what a sync calls, whichever way it goes
    return columns, rows


def _bytes_of(page: TransformedPage) -> bytes:
    out = pa.BufferOutputStream()
    for table in page.batch.tables.values():
        with pa.ipc.new_stream(out, table.schema) as writer:
            writer.write_table(table)
    return out.getvalue().to_pybytes() + repr(page.batch.quarantine).encode()


# --- the demo server's pages -----------------------------------------------------------------------------


DemoPages = tuple[PageTransform, list[bytes]]


@pytest.fixture(scope="module")
def demo_pages() -> DemoPages:
    """The household survey's pages (100 submissions each) from a demo server with its planted problems."""
    with DemoKoboServer(households=1200, seed=23, include_fixtures=False) as server:
        client = KoboClient(server.url, server.token, timeout=10)
        uid = server.household_uid
        versions = {
            v["uid"]: client.get_version(uid, v["uid"])["content"] for v in client.iter_deployed_versions(uid)
        }
        raw = with_attachments_table(to_form_schema(client.get_asset(uid), versions, "household_survey"))
        bodies = [page.raw for page in client.iter_submission_pages(uid, page_size=100)]
    return _transform(raw, DEMO_POLICY), bodies


def test_demo_pages_read_in_columns_equal_the_row_path(demo_pages: DemoPages) -> None:
    transform, bodies = demo_pages
    results = [_both(transform, body) for body in bodies]
    columnar = [columns for columns, _ in results if columns is not None]
    assert len(bodies) == 12 and len(columnar) >= 10  # the usual page is read in columns
    # the comparison covered both versions of the form, repeats in repeats, files, casts that fail and a
    # value the policy refuses (quarantined without it)
    versions = {v for p in columnar for v in p.batch.tables["submissions"].column("__version__").to_pylist()}
    assert versions == set(transform.raw_schema.versions)
    assert sum(page.batch.tables["illnesses"].num_rows for page in columnar) > 0
    assert sum(page.batch.tables["attachments"].num_rows for page in columnar) > 0
    reasons = [q.reason for page in columnar for q in page.batch.quarantine]
    assert any("XLSForm type" in r for r in reasons)
    assert any(r.endswith("not stored (privacy policy)") for r in reasons)


def test_no_raw_personal_value_in_a_page_read_in_columns(demo_pages: DemoPages) -> None:
    transform, bodies = demo_pages
    raw_values: set[str] = set()
    for record in page_results(bodies[0]):
        raw_values.update(record[k] for k in ("respondent/resp_name", "respondent/phone") if k in record)
        raw_values.update(m["members/member_name"] for m in record.get("members", []))
        raw_values.update(a["filename"] for a in record.get("_attachments", []))
        raw_values.add(record["_submitted_by"])
    page = transform_page_columns(bodies[0], transform)
    assert page is not None
    stored = _bytes_of(page)
    assert len(raw_values) > 100
    assert [v for v in raw_values if v.encode() in stored] == []
    # the protected columns hold tokens and months, not nothing
    main = page.batch.tables["submissions"]
    assert all(v is None or v.startswith("p_") for v in main.column("phone").to_pylist())
    assert any(v is not None for v in main.column("phone").to_pylist())


# --- real KoBo data ----------------------------------------------------------------------------------------


def _every_action(raw: FormSchema) -> PrivacyPolicy:
    """A policy giving each question an action that fits its type, cycling through them, plus metadata
    overrides: every handler runs on real data."""
    rules: dict[str, Any] = {}
    text = [{"action": "pseudonymise"}, {"action": "redact"}, {"action": "keep"},
            {"action": "redact", "mode": "drop"}]
    numbers = [{"action": "generalise", "bands": [0, 5, 18, 60]}, {"action": "top_code", "max": 10},
               {"action": "bottom_code", "min": 2}, {"action": "keep"}]
    dates = [{"action": "generalise", "to": "month"}, {"action": "generalise", "to": "year"},
             {"action": "keep"}]
    for i, q in enumerate(dict.fromkeys(q.xpath for q in raw.questions.values())):
        question = raw.questions[q]
        if question.type in STRUCTURE_TYPES:
            continue
        if question.type in ("text", "barcode"):
            rules[q] = text[i % len(text)]
        elif question.type in NUMERIC_TYPES:
            rules[q] = numbers[i % len(numbers)]
        elif question.type in DATE_TYPES:
            rules[q] = dates[i % len(dates)]
        elif question.type in GEO_TYPES:
            rules[q] = {"action": "round_gps", "decimals": 1 + i % 3}
    return PrivacyPolicy.model_validate({
        "questions": rules,
        "metadata": {"_validation_status.by_whom": {"action": "drop"}, "_submitted_by": {"action": "drop"}},
    })


CASES = [c for c in all_cases() if load_case(c)[2]]


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
@pytest.mark.parametrize("policy", ["default", "every action"])
def test_real_kobo_pages_read_in_columns_equal_the_row_path(case: dict[str, str], policy: str) -> None:
    asset, versions, records = load_case(case)
    raw = with_attachments_table(to_form_schema(asset, versions, case["case"]))
    _both(_transform(raw, PrivacyPolicy() if policy == "default" else _every_action(raw)), _body(records))


def test_most_real_kobo_pages_are_read_in_columns() -> None:
    """Those that are not carry keys the form does not define (`meta/versionID`, `_supplementalDetails`),
    which the row-by-row path withholds and names."""
    columnar = []
    for case in CASES:
        asset, versions, records = load_case(case)
        raw = with_attachments_table(to_form_schema(asset, versions, case["case"]))
        if transform_page_columns(_body(records), _transform(raw, PrivacyPolicy())) is not None:
            columnar.append(case["case"])
    assert len(columnar) >= 25
    assert "robo_kobo_data_validation" in columnar and "formpack_all_geo_types" in columnar


# --- shapes that go row by row ------------------------------------------------------------------------------


def _edited(records: list[dict[str, Any]], edit: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(records)
    edit(out)
    return out


def _member(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in records if r.get("members"))


EDITS = {
    "a key the form does not define": lambda rs: rs[3].update({"secret_note": "Amina Yusuf"}),
    "a number where text is expected": lambda rs: rs[2].update({"household/hh_size": 4}),
    "an _id sent as text": lambda rs: rs[1].update({"_id": str(rs[1]["_id"])}),
    "no _id": lambda rs: rs[1].pop("_id"),
    "a repeat sent as one object": lambda rs: _member(rs).update({"members": _member(rs)["members"][0]}),
    "a repeat instance that is not an object": lambda rs: _member(rs)["members"].append("Juma"),
    "a repeat sent as null": lambda rs: rs[2].update({"members": None}),
    "a repeat in a repeat sent as null": lambda rs: _member(rs)["members"][0].update(
        {"members/illnesses": None}),
    "a value the policy refuses inside a repeat": lambda rs: _member(rs)["members"][0].update(
        {"members/illnesses": [{"members/illnesses/illness_type": "malaria",
                                "members/illnesses/illness_date": "not a date"}]}),
    "two refused values in one submission": lambda rs: rs[4].update(
        {"household/head_age": "old", "household/arrival_date": "last year"}),
    "an older version's key beside the newer one": lambda rs: rs[5].update({"members_count": "2"}),
    "a validation status as text": lambda rs: rs[0].update({"_validation_status": "approved"}),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_an_unusual_page_goes_row_by_row_with_the_same_result(
    demo_pages: DemoPages, edit: str
) -> None:
    transform, bodies = demo_pages
    # an illness date is refused by a policy that keeps only its month
    policy = transform.policy.model_copy(deep=True)
    policy.questions["illness_date"] = policy.questions["arrival_date"]
    transform = _transform(transform.raw_schema, policy)
    records = page_results(bodies[0])
    assert transform_page_columns(_body(records), transform) is not None
    body = _body(_edited(records, EDITS[edit]))
    columns, rows = _both(transform, body)
    assert columns is None


def test_one_refused_value_per_submission_stays_in_columns(demo_pages: DemoPages) -> None:
    transform, bodies = demo_pages
    records = _edited(page_results(bodies[0]),
                      lambda rs: [r.update({"household/head_age": "old"}) for r in rs[:3]])
    columns, rows = _both(transform, _body(records))
    assert columns is not None
    refused = [q for q in columns.batch.quarantine if q.column == "head_age"]
    assert [q.submission_id for q in refused] == [r["_id"] for r in records[:3]]
    assert all(q.raw_value is None for q in refused)


@pytest.mark.parametrize("bad", [b'"y\xffs"', b'"\\ud800"'], ids=["invalid UTF-8", "a lone surrogate"])
def test_text_json_cannot_hold_goes_row_by_row(demo_pages: DemoPages, bad: bytes) -> None:
    """Arrow's JSON reader lets invalid UTF-8 through; the row path's JSON parser refuses the page, as
    before."""
    transform, bodies = demo_pages
    body = bodies[0].replace(b'"consent":"yes"', b'"consent":' + bad, 1)
    assert body != bodies[0]
    assert transform_page_columns(body, transform) is None
    with pytest.raises(orjson.JSONDecodeError):
        transform.body(body)


def test_a_question_named_like_a_kobo_system_key_sends_the_form_row_by_row() -> None:
    survey = [{"type": "text", "name": "_uuid", "$kuid": "a"}, {"type": "integer", "name": "n", "$kuid": "b"}]
    raw = to_form_schema({"uid": "aSys", "content": {"survey": survey, "choices": []}}, {}, "sys")
    assert page_layout(raw) is None
    plain = [{"type": "integer", "name": "n", "$kuid": "b"}]
    assert page_layout(to_form_schema({"uid": "aOk", "content": {"survey": plain, "choices": []}}, {}, "ok"))


def test_a_repeat_and_question_sharing_names_read_in_columns() -> None:
    """tests/privacy/test_same_names.py's form: a rule for the question must not reach the repeat."""
    survey = [
        {"type": "text", "name": "visits"},
        {"type": "begin_group", "name": "hh"},
        {"type": "begin_repeat", "name": "visits"},
        {"type": "integer", "name": "v_days"},
        {"type": "end_repeat"},
        {"type": "end_group"},
    ]
    rows = [dict(r, **{"$kuid": f"k{i}"}) for i, r in enumerate(survey)]
    asset = {"uid": "aSame", "content": {"survey": rows, "choices": []}}
    raw = to_form_schema(asset, {}, "same_names")
    subs = [{"_id": 1, "visits": "Amina's house",
             "hh/visits": [{"hh/visits/v_days": "3"}, {"hh/visits/v_days": "4"}]}]
    for rules in ({"visits": "drop", "v_days": "keep"}, {"visits": "keep", "hh/visits": "drop"}):
        columns, _ = _both(_transform(raw, PrivacyPolicy.model_validate({"questions": rules})), _body(subs))
        assert columns is not None


# --- many small variations of real pages -------------------------------------------------------------------

ODD_TEXT = ["", "   ", " 12 ", "1e3", "-0", "007", "2026-02-30", "2026-13-01", "OK", "0712 345 678",
            "+254 712 345 678", "Ñandú 😀", "a\nb", "9223372036854775808", "1.5", "12:30", "1 2 3 4",
            "-1.29 36.82 1700 5;1 2", "x" * 300]


def _vary(records: list[dict[str, Any]], rng: random.Random, versions: list[str]) -> None:
    """Change a few values the way field data and old servers do (text only: other types go row by row)."""
    for _ in range(rng.randint(1, 4)):
        record = rng.choice(records)
        target = record
        if record.get("members") and rng.random() < 0.4:
            target = rng.choice(record["members"])
        key = rng.choice(sorted(target))
        roll = rng.random()
        if key == "members" or key == "members/illnesses":
            target[key] = [] if roll < 0.5 else target[key][:1]
        elif key == "__version__":
            target[key] = rng.choice([*versions, "vUnknown", None])
        elif key == "_validation_status":
            target[key] = rng.choice([{}, {"uid": "validation_status_on_hold", "label": "On hold",
                                           "timestamp": 1, "by_whom": "amina", "color": "#0000ff"}])
        elif key == "_attachments":
            entry = {"uid": "attX", "question_xpath": "photo", "mimetype": "image/png"}
            target[key] = [] if roll < 0.5 else [entry]
        elif key in ("_id", "_geolocation"):
            continue
        elif roll < 0.15:
            del target[key]
        elif roll < 0.3:
            target[key] = None
        elif roll < 0.5:
            target[key] = rng.choice([v for v in target.values() if isinstance(v, str)])
        else:
            target[key] = rng.choice(ODD_TEXT)


def test_varied_pages_read_in_columns_equal_the_row_path(demo_pages: DemoPages) -> None:
    demo, bodies = demo_pages
    transforms = [demo, _transform(demo.raw_schema, _every_action(demo.raw_schema))]
    rng = random.Random(20261205)
    columnar = 0
    for i in range(200):
        records = page_results(bodies[i % len(bodies)])[rng.randrange(80):][:20]
        _vary(records, rng, demo.raw_schema.versions)
        columns, _ = _both(transforms[i % 2], _body(records))
        columnar += columns is not None
    assert columnar >= 150


@pytest.mark.parametrize("indent", [None, 1], ids=["escaped", "escaped and indented"])
def test_a_page_sent_ascii_escaped_reads_in_columns(demo_pages: DemoPages, indent: int | None) -> None:
    """Python's json (`ensure_ascii`, spaces, optionally one key per line) instead of KPI's compact UTF-8."""
    transform, bodies = demo_pages
    records = page_results(bodies[0])[:30]
    records[0]["needs_other"] = 'Ñandú 😀 "quoted" / back\\slash \t tab'
    member = _member(records)["members"][0]
    member["members/member_name"] = "Zoë 😀"
    page = {"count": 30, "next": None, "previous": None, "results": records}
    body = json.dumps(page, indent=indent).encode()
    assert b"\\u00d1" in body and b"\\ud83d\\ude00" in body
    columns, _ = _both(transform, body)
    assert columns is not None
