"""A calculation can copy answers the policy protects (`concat(${name}, ' ', ${phone})`): a question kept only
because its type is closed is withheld when its calculation reads such an answer, and `add-form` suggests
dropping it."""

from __future__ import annotations

import yaml

from config import DEMO_PSEUDONYMISATION_KEY
from config.privacy import PrivacyPolicy
from transforms.page import PageTransform
from transforms.privacy import apply_policy_to_schema, suggest_policy, withheld_questions
from transforms.schema import to_form_schema

NAME, PHONE = "Zawadi Chebet Onyango", "0799123456"

SURVEY = [
    {"type": "text", "name": "caregiver_name", "label": ["Caregiver's name"]},
    {"type": "text", "name": "caregiver_phone", "label": ["Caregiver's phone"]},
    {"type": "integer", "name": "hh_size", "label": ["Household size"]},
    {"type": "calculate", "name": "summary_calc", "label": ["Summary"],
     "calculation": "concat(${caregiver_name}, ' ', ${ caregiver_phone })"},
    {"type": "calculate", "name": "summary_upper", "calculation": "upper-case(${summary_calc})"},
    {"type": "calculate", "name": "adults", "calculation": "${hh_size} - 1"},
    {"type": "calculate", "name": "constant", "calculation": "'v2'"},
]
SUBMISSION = {
    "_id": 1, "caregiver_name": NAME, "caregiver_phone": PHONE, "hh_size": "5",
    "summary_calc": f"{NAME} {PHONE}", "summary_upper": f"{NAME.upper()} {PHONE}", "adults": "4",
    "constant": "v2",
}


def _schema():
    survey = [dict(r, **{"$kuid": f"k{i}"}) for i, r in enumerate(SURVEY)]
    asset = {"uid": "aCalc", "content": {"survey": survey, "choices": []}}
    return to_form_schema(asset, {}, "intake")


def _stored(rules: dict) -> dict:
    raw = _schema()
    policy = PrivacyPolicy.model_validate({"questions": rules})
    schema = apply_policy_to_schema(raw, policy)
    page = PageTransform(raw, schema, policy, DEMO_PSEUDONYMISATION_KEY.encode())([dict(SUBMISSION)])
    return page.batch.tables["submissions"].to_pylist()[0]


def test_a_calculation_that_copies_withheld_answers_is_withheld_too() -> None:
    row = _stored({})
    assert "summary_calc" not in row and "summary_upper" not in row  # the chain is followed
    assert (row["adults"], row["constant"], row["hh_size"]) == ("4", "v2", 5)
    assert NAME not in repr(row) and PHONE not in repr(row)
    reasons = {w.xpath: w.reason for w in withheld_questions(_schema(), PrivacyPolicy())}
    assert reasons["summary_calc"] == (
        "calculate calculated from caregiver_name, caregiver_phone, which the policy does not keep as it is: "
        "the calculation can copy those answers"
    )
    assert reasons["summary_upper"].startswith("calculate calculated from summary_calc")
    assert "adults" not in reasons and "constant" not in reasons


def test_a_rule_decides_and_a_kept_source_keeps_the_calculation() -> None:
    # pseudonymised or dropped sources still make a copy: withheld
    phone_rule = {"action": "pseudonymise", "normalise": "phone"}
    row = _stored({"caregiver_name": "drop", "caregiver_phone": phone_rule})
    assert "summary_calc" not in row
    # the sources kept as they are: nothing to protect in the copy
    row = _stored({"caregiver_name": "keep", "caregiver_phone": "keep"})
    assert row["summary_calc"] == f"{NAME} {PHONE}"
    # someone decided: the rule wins
    row = _stored({"summary_calc": "keep", "summary_upper": "drop"})
    assert row["summary_calc"] == f"{NAME} {PHONE}" and "summary_upper" not in row


def test_add_form_suggests_dropping_a_calculation_that_copies_protected_answers() -> None:
    questions = yaml.safe_load(suggest_policy(_schema()))["questions"]
    assert (questions["summary_calc"], questions["summary_upper"]) == ("drop", "drop")
    assert (questions["adults"], questions["constant"]) == ("keep", "keep")
    text = suggest_policy(_schema())
    assert "summary_calc: drop  # calculated from caregiver_name, caregiver_phone" in text
