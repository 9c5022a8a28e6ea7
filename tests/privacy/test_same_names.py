"""A question and a repeat (or a select_multiple's bridge) that share a name: a rule written for one must not
reach the other, and the stored tables must agree with the data that reaches them."""

from __future__ import annotations

from config import DEMO_PSEUDONYMISATION_KEY
from config.privacy import PrivacyPolicy
from transforms.page import PageTransform
from transforms.privacy import apply_policy_to_schema
from transforms.schema import to_form_schema

CHOICES = [{"list_name": "yn", "name": n, "label": [n]} for n in ("yes", "no")]


def _form(survey: list[dict]) -> dict:
    rows = [dict(r, **{"$kuid": f"k{i}"}) for i, r in enumerate(survey)]
    return {"uid": "aSame", "content": {"survey": rows, "choices": CHOICES}}


def _transform(survey: list[dict], rules: dict[str, str], submissions: list[dict]):
    raw = to_form_schema(_form(survey), {}, "same_names")
    policy = PrivacyPolicy.model_validate({"questions": rules})
    schema = apply_policy_to_schema(raw, policy)
    page = PageTransform(raw, schema, policy, DEMO_PSEUDONYMISATION_KEY.encode())(submissions)
    return schema, page.batch


def test_a_rule_for_a_question_leaves_the_repeat_of_that_name() -> None:
    survey = [
        {"type": "text", "name": "visits"},
        {"type": "begin_repeat", "name": "visits_made"},
        {"type": "begin_group", "name": "hh"},
        {"type": "end_group"},
        {"type": "end_repeat"},
        {"type": "begin_group", "name": "hh"},
        {"type": "begin_repeat", "name": "visits"},
        {"type": "integer", "name": "v_days"},
        {"type": "end_repeat"},
        {"type": "end_group"},
    ]
    subs = [{"_id": 1, "visits": "Amina's house", "hh/visits": [{"hh/visits/v_days": "3"}]}]
    schema, batch = _transform(survey, {"visits": "drop", "v_days": "keep"}, subs)
    assert "visits" in schema.tables and batch.tables["visits"].column("v_days").to_pylist() == [3]
    assert "visits" not in batch.tables["submissions"].column_names
    # the repeat's xpath still drops the whole repeat
    schema, batch = _transform(survey, {"visits": "keep", "hh/visits": "drop"}, subs)
    assert "visits" not in schema.tables and "visits" not in batch.tables
    assert batch.tables["submissions"].column("visits").to_pylist() == ["Amina's house"]


def test_a_question_named_like_a_repeats_table_is_not_a_crash() -> None:
    """`hh-members` is stored as table hh_members; `hh_members: drop` is add-form's suggestion for the text
    question of that name, and used to drop the table while the repeat's data still came: a KeyError."""
    survey = [
        {"type": "text", "name": "hh_members"},
        {"type": "begin_repeat", "name": "hh-members"},
        {"type": "integer", "name": "m_count"},
        {"type": "end_repeat"},
    ]
    subs = [{"_id": 1, "hh_members": "Juma, Amina", "hh-members": [{"hh-members/m_count": "2"}]}]
    schema, batch = _transform(survey, {"hh_members": "drop", "m_count": "keep"}, subs)
    assert batch.tables["hh_members"].column("m_count").to_pylist() == [2]
    assert "hh_members" not in batch.tables["submissions"].column_names


def test_a_kept_select_multiple_keeps_its_bridge_when_a_question_of_the_same_column_is_dropped() -> None:
    survey = [
        {"type": "text", "name": "items"},
        {"type": "begin_repeat", "name": "members"},
        {"type": "select_multiple yn", "name": "items", "select_from_list_name": "yn"},
        {"type": "end_repeat"},
    ]
    subs = [{"_id": 1, "items": "a radio from Amina", "members": [{"members/items": "yes no"}]}]
    schema, batch = _transform(survey, {"items": "drop", "members/items": "keep"}, subs)
    assert "items__selected" in schema.tables
    assert batch.tables["items__selected"].column("choice").to_pylist() == ["yes", "no"]
    assert "items" not in batch.tables["submissions"].column_names


def test_a_value_refused_inside_a_repeat_is_quarantined_with_its_row_key() -> None:
    """The policy works on the raw JSON and knows no row keys; the quarantine row still names the instance
    (`1/members[3]`, nested `1/members[2]/visits[2]`), so an analyst can find it."""
    survey = [
        {"type": "begin_repeat", "name": "members"},
        {"type": "integer", "name": "member_age"},
        {"type": "begin_repeat", "name": "visits"},
        {"type": "date", "name": "visit_date"},
        {"type": "end_repeat"},
        {"type": "end_repeat"},
    ]
    rules = {"member_age": {"action": "generalise", "bands": [0, 18, 60]},
             "visit_date": {"action": "generalise", "to": "month"}}
    visits = [{"members/visits/visit_date": "2026-01-02"}, {"members/visits/visit_date": "yesterday"}]
    subs = [
        {"_id": 1, "members": [
            {"members/member_age": "about forty"},
            {"members/member_age": "30", "members/visits": visits},
            {"members/member_age": "34,5"},
        ]},
        {"_id": 2, "members": [{"members/member_age": "7"}]},
    ]
    schema, batch = _transform(survey, rules, subs)  # type: ignore[arg-type]
    assert [(q.submission_id, q.table, q.column, q.row_key, q.raw_value) for q in batch.quarantine] == [
        (1, "members", "member_age", "1/members[1]", None),
        (1, "visits", "visit_date", "1/members[2]/visits[2]", None),
        (1, "members", "member_age", "1/members[3]", None),
    ]
    assert batch.tables["members"].column("_key").to_pylist() == [
        "1/members[1]", "1/members[2]", "1/members[3]", "2/members[1]"
    ]


def test_a_question_named_like_kobo_metadata_does_not_take_over_its_rule() -> None:
    """KoBo's `_submitted_by` (the enumerator's account) is always pseudonymised; a form question of the same
    name kept by the policy must not store the username as it is."""
    survey = [{"type": "text", "name": "_submitted_by"}, {"type": "text", "name": "note_text"}]
    subs = [{"_id": 1, "_submitted_by": "alice", "note_text": "fine"}]
    schema, batch = _transform(survey, {"_submitted_by": "keep", "note_text": "keep"}, subs)
    stored = batch.tables["submissions"].to_pylist()[0]
    assert "alice" not in repr(stored)
    assert [v for k, v in stored.items() if k.startswith("_submitted_by")][0].startswith("p_")
