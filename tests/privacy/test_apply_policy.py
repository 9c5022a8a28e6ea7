"""The policy on raw KoBo submissions: actions, safe defaults, metadata, strict mode, and a byte search."""

from __future__ import annotations

import copy
import json

import pytest
from privacy_fixtures import (
    KEY,
    RAW_VALUES,
    household_questions,
    household_submission,
    make_schema,
    policy_dict,
    q,
)

from config.privacy import PrivacyPolicy
from transforms.pii import redact_text
from transforms.privacy import (
    PrivacyError,
    apply_policy,
    apply_policy_to_schema,
    band_label,
    check_strict,
    pseudonymise_value,
)


def _run(subs=None, questions=None, policy=None):
    schema = make_schema(questions or household_questions())
    pol = PrivacyPolicy.model_validate(policy if policy is not None else policy_dict())
    return apply_policy(subs if subs is not None else [household_submission()], schema, pol, KEY)


def test_actions_on_answers() -> None:
    out = _run().submissions[0]
    assert out["hh/respondent_name"] == pseudonymise_value("amina wanjiru", KEY, "name", None)
    assert out["hh/phone"] == pseudonymise_value("0712345678", KEY, "phone", "254")
    assert out["hh/head_age"] == "18-59"
    assert out["hh/interview_date"] == "2026-03"
    assert out["hh/income"] == "1000"
    assert out["hh/size"] == "6" and out["hh/head_sex"] == "female"
    assert out["hh/location"] == "-1.29 36.82"
    assert out["hh/comments"] == "Call me on [PHONE] or [EMAIL], card [ID]"
    assert out["members"] == [{"members/m_age": "34"}, {"members/m_age": "80"}]
    assert out["start"] == "2026-03-02T09:14:05.120+03:00" and out["today"] == "2026-03-02"


def test_metadata_defaults() -> None:
    out = _run().submissions[0]
    assert out["_submitted_by"] == pseudonymise_value("enum_kamau", KEY, None, None)
    assert (
        out["username"] == out["_submitted_by"]
    )  # same enumerator, same token: per-enumerator HFCs still work
    assert out["_validation_status"] == {
        "timestamp": 1700000000,
        "uid": "validation_status_approved",
        "label": "Approved",
        "by_whom": pseudonymise_value("supervisor_njeri", KEY, None, None),
    }
    assert out["_geolocation"] == [-1.29, 36.82]
    assert out["_attachments"] == [
        {"uid": "attQ1w2E3r4T5y6U7i8O9p0A", "mimetype": "image/jpeg", "question_xpath": "photo"}
    ]
    for gone in ("_notes", "_tags", "_supplementalDetails", "deviceid", "meta/instanceName", "photo"):
        assert gone not in out
    for kept in (
        "_id",
        "_uuid",
        "__version__",
        "meta/rootUuid",
        "_submission_time",
        "_status",
        "formhub/uuid",
    ):
        assert out[kept] == household_submission()[kept]


def test_metadata_can_be_kept_explicitly() -> None:
    pol = policy_dict() | {"metadata": {"_notes": "keep", "_geolocation": "drop", "_submitted_by": "keep"}}
    out = _run(policy=pol).submissions[0]
    assert out["_notes"] == household_submission()["_notes"]
    assert "_geolocation" not in out
    assert out["_submitted_by"] == "enum_kamau"


def test_inputs_are_not_mutated() -> None:
    subs = [household_submission(1), household_submission(2, phone="0712345678")]
    before = copy.deepcopy(subs)
    result = _run(subs)
    assert subs == before
    assert result.submissions[0] is not subs[0]
    assert result.submissions[0]["hh/phone"] == result.submissions[1]["hh/phone"]


def test_byte_search_finds_no_raw_personal_value() -> None:
    subs = [household_submission(i) for i in range(1, 4)]
    result = _run(subs)
    blob = json.dumps(result.submissions, ensure_ascii=False) + json.dumps(
        [w.__dict__ for w in result.withheld], ensure_ascii=False
    )
    for raw in RAW_VALUES + [
        "712345678",
        "722111222",
        "0722 111 222",
        "Amina",
        "Juma",
        "Wanjiru",
        "kamau",
        "njeri",
        "1700.5",
        "36.821946",
        "IMG_",
    ]:
        assert raw.lower() not in blob.lower(), raw


def test_unlisted_risky_questions_are_withheld_and_reported() -> None:
    questions = household_questions() + [
        q("hh/mother_name", "text"),
        q("hh/chef", "text", labels={"Français (fr)": "Nom du chef"}),
        q("hh/hh_code", "calculate", labels={"English (en)": "Household ID"}),
        q("hh/contact", "integer", labels={"English (en)": "Phone number of the head"}),
        q("hh/gps2", "geopoint"),
        q("hh/reach", "integer", labels={"English (en)": "Contact number"}),
    ]
    sub = household_submission() | {
        "hh/reach": "722654321",
        "hh/mother_name": "Mama Amina",
        "hh/chef": "Baraka",
        "hh/hh_code": "HH-0042",
        "hh/contact": "712999888",
        "hh/gps2": "1 2 3 4",
    }
    result = _run([sub], questions)
    out = result.submissions[0]
    withheld = {w.xpath: w for w in result.withheld}
    for xp in ("hh/mother_name", "hh/chef", "hh/hh_code", "hh/contact", "hh/gps2", "hh/reach", "photo"):
        assert xp not in out
        assert xp in withheld
    assert withheld["hh/mother_name"].type == "text"
    assert "name (name)" in withheld["hh/mother_name"].reason
    assert "label 'Français (fr)'" in withheld["hh/chef"].reason
    assert withheld["hh/contact"].type == "integer"
    assert "Baraka" not in json.dumps([w.__dict__ for w in result.withheld])
    assert "hh/respondent_name" not in withheld  # it has a policy entry


def test_new_closed_question_flows_through() -> None:
    questions = household_questions() + [
        q("hh/water_source", "select_one"),
        q("hh/rooms", "integer"),
        q("hh/id_type", "select_one"),
        q("hh/nombre_personnes", "integer", labels={"Français (fr)": "Nombre de personnes"}),
    ]
    sub = household_submission() | {
        "hh/water_source": "borehole",
        "hh/rooms": "3",
        "hh/id_type": "national",
        "hh/nombre_personnes": "7",
    }
    result = _run([sub], questions)
    out = result.submissions[0]
    assert (out["hh/water_source"], out["hh/rooms"], out["hh/id_type"], out["hh/nombre_personnes"]) == (
        "borehole",
        "3",
        "national",
        "7",
    )
    assert not {"hh/water_source", "hh/rooms", "hh/id_type", "hh/nombre_personnes"} & {
        w.xpath for w in result.withheld
    }


def test_keys_unknown_to_the_form_are_withheld() -> None:
    sub = household_submission() | {
        "surprise/free_text": "Amina",
        "_new_system_field": "x",
        "members_count": "2",
    }
    result = _run([sub])
    out = result.submissions[0]
    assert "surprise/free_text" not in out and "_new_system_field" not in out
    assert out["members_count"] == "2"
    kinds = {w.xpath: w.type for w in result.withheld}
    assert kinds["surprise/free_text"] == "unknown" and kinds["_new_system_field"] == "system"


def test_strict_stops_naming_questions_not_values() -> None:
    questions = household_questions() + [q("hh/mother_name", "text")]
    pol = PrivacyPolicy.model_validate(policy_dict() | {"strict": True})
    schema = make_schema(questions)
    with pytest.raises(PrivacyError) as exc:
        check_strict(schema, pol)
    msg = str(exc.value)
    assert "hh/mother_name" in msg and "hh/size" in msg and "strict" in msg
    assert "start" not in exc.value.questions  # metadata has defaults
    assert "hh/respondent_name" not in exc.value.questions
    assert exc.value.form == "hh"
    sub = household_submission() | {"hh/mother_name": "Mama Amina"}
    with pytest.raises(PrivacyError) as exc2:
        apply_policy([sub], schema, pol, KEY)
    assert "Amina" not in str(exc2.value) and "Wanjiru" not in str(exc2.value)


def test_strict_passes_when_everything_is_listed() -> None:
    pol = policy_dict()
    pol["strict"] = True
    pol["questions"] |= {"size": "keep", "head_sex": "keep", "photo": "drop"}
    result = _run(policy=pol)
    assert result.withheld == []
    assert result.submissions[0]["hh/size"] == "6"


def test_rules_on_repeats_by_name_and_xpath_and_dropping_a_repeat() -> None:
    pol = policy_dict()
    pol["questions"]["members"] = "drop"
    out = _run(policy=pol).submissions[0]
    assert "members" not in out
    schema = apply_policy_to_schema(make_schema(household_questions()), PrivacyPolicy.model_validate(pol))
    assert "members" not in schema.tables


def test_action_that_does_not_fit_the_type_is_refused() -> None:
    pol = policy_dict()
    pol["questions"]["head_sex"] = {"action": "round_gps"}
    with pytest.raises(PrivacyError, match="round_gps cannot be applied to a select_one") as exc:
        _run(policy=pol)
    assert exc.value.field == "hh/head_sex"


def test_untransformable_values_are_removed_and_counted() -> None:
    sub = household_submission() | {"hh/head_age": "thirty", "hh/interview_date": "yesterday"}
    result = _run([sub])
    out = result.submissions[0]
    assert "hh/head_age" not in out and "hh/interview_date" not in out
    assert result.invalid == {"hh/head_age": 1, "hh/interview_date": 1}


def test_old_xpath_of_a_renamed_group_gets_the_same_rule() -> None:
    questions = household_questions()
    questions = [
        qq if qq.xpath != "hh/phone" else q("hh/phone", "text", xpaths=("hh/phone", "v1/phone"))
        for qq in questions
    ]
    sub = household_submission()
    sub["v1/phone"] = sub.pop("hh/phone")
    out = _run([sub], questions).submissions[0]
    assert out["v1/phone"] == pseudonymise_value("0712345678", KEY, "phone", "254")


def test_or_other_free_text_is_withheld_unless_listed() -> None:
    questions = household_questions() + [q("hh/shelter", "select_one", or_other=True)]
    sub = household_submission() | {"hh/shelter": "other", "hh/shelter_other": "living with Amina's cousin"}
    result = _run([sub], questions)
    assert result.submissions[0]["hh/shelter"] == "other"
    assert "hh/shelter_other" not in result.submissions[0]
    assert "hh/shelter_other" in {w.xpath for w in result.withheld}
    pol = policy_dict()
    pol["questions"]["shelter_other"] = "redact"
    assert _run([sub], questions, pol).submissions[0]["hh/shelter_other"] == "living with Amina's cousin"


def test_geotrace_rounding_and_redaction_patterns() -> None:
    from transforms.privacy import round_gps

    assert (
        round_gps("14.726129 -17.500409 0 0;14.726253 -17.498993 0 0", 3) == "14.726 -17.500;14.726 -17.499"
    )
    assert round_gps([None, None], 2) == [None, None]
    assert redact_text("Tel +33 6 12 34 56 78 / ID 12345678 / x@y.org / 3 kids") == (
        "Tel [PHONE] / ID [ID] / [EMAIL] / 3 kids"
    )
    # the separators people type: dashes, slashes, underscores; dates stay
    assert redact_text("Call 0712\u2013345\u2013678, 0723/456/789 or 0734_567_890 on 15/03/2026") == (
        "Call [PHONE], [PHONE] or [PHONE] on 15/03/2026"
    )
    assert redact_text("born 1990.03.15, seen 2026-03-15; case AB/12345") == (
        "born 1990.03.15, seen 2026-03-15; case [ID]"
    )
    assert band_label(4, [0, 5, 18, 60], None) == "0-4"
    assert band_label(60, [0, 5, 18, 60], None) == "60+"
    assert band_label(-1, [0, 5], None) == "<0"
    assert band_label(7, [0, 5, 18], ["child", "school", "adult"]) == "school"


def test_schema_after_policy() -> None:
    schema = make_schema(household_questions())
    pol = PrivacyPolicy.model_validate(policy_dict())
    after = apply_policy_to_schema(schema, pol)
    main = {c.name: c.duckdb_type for c in after.main.columns}
    assert main["head_age"] == "VARCHAR"  # banded
    assert main["interview_date"] == "VARCHAR"  # month
    assert main["income"] == "DOUBLE" and main["size"] == "BIGINT"
    assert main["location_latitude"] == "DOUBLE"  # rounded, type unchanged
    for gone in ("deviceid", "photo"):
        assert gone not in main
    assert main["_submitted_by"] == "VARCHAR"
    assert [c.name for c in after.tables["members"].columns] == ["_key", "m_age"]
    assert after.questions["hh/head_age"].type == "text"
    assert "photo" not in after.questions and "members/m_name" not in after.questions
    # the input schema is untouched
    assert {c.name: c.duckdb_type for c in schema.main.columns}["head_age"] == "BIGINT"
    assert "photo" in schema.questions


def test_generalising_a_date_needs_a_real_month_and_day() -> None:
    texts = ["2026-03-02", "2026-03", "2026-03-02T10:15:00.000+03:00", "2026-13-45", "2026-02-30",
             "2026-99-01T10:00", "2026-031", "yesterday"]
    subs = [{"_id": i, "hh/interview_date": t} for i, t in enumerate(texts)]
    result = _run(subs=subs)
    got = [s.get("hh/interview_date", "<not stored>") for s in result.submissions]
    assert got == ["2026-03", "2026-03", "2026-03"] + ["<not stored>"] * 5
    assert [(i, x) for i, x, _ in result.rejected] == [(i, "hh/interview_date") for i in range(3, 8)]
    assert result.invalid == {"hh/interview_date": 5}


def test_redact_with_mode_drop_removes_a_null_answer_too() -> None:
    """Its question has no column after the policy: a null answer left under its key stopped flattening with
    a KeyError (tests/transforms/test_columnar.py's varied pages found it)."""
    pol = policy_dict()
    pol["questions"]["comments"] = {"action": "redact", "mode": "drop"}
    subs = [household_submission(1) | {"hh/comments": None}, household_submission(2)]
    out = _run(subs, policy=pol).submissions
    assert subs[0]["hh/comments"] is None and subs[1]["hh/comments"]
    assert ["hh/comments" in s for s in out] == [False, False]
    stored = apply_policy_to_schema(make_schema(household_questions()), PrivacyPolicy.model_validate(pol))
    assert "comments" not in [c.name for c in stored.tables["submissions"].columns]
