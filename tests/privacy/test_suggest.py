"""`suggest_policy`: commented YAML that loads as a PrivacyPolicy and makes safe suggestions."""

from __future__ import annotations

import yaml
from privacy_fixtures import KEY, household_questions, household_submission, make_schema, q

from config.privacy import PrivacyPolicy
from transforms.privacy import apply_policy, suggest_policy


def _suggested(questions):
    schema = make_schema(questions)
    text = suggest_policy(schema)
    return schema, text, PrivacyPolicy.model_validate(yaml.safe_load(text))


def test_suggestion_is_valid_yaml_with_reasons() -> None:
    questions = household_questions() + [
        q("hh/dob", "date"),
        q("hh/id_card", "barcode"),
        q("hh/shelter", "select_one", or_other=True),
        q("hh/tel", "integer", labels={"العربية (ar)": "رقم الهاتف"}),
        q("yes", "select_one"),
    ]
    _, text, policy = _suggested(questions)
    rules = policy.questions
    assert rules["respondent_name"].action == "drop"
    assert (rules["phone"].action, rules["phone"].normalise) == ("pseudonymise", "phone")
    assert rules["tel"].normalise == "phone"
    assert rules["head_age"].bands == [0, 5, 18, 60]
    assert rules["location"].action == "round_gps" and rules["location"].gps_decimals == 2
    assert rules["comments"].action == "drop" and rules["photo"].action == "drop"
    assert rules["m_name"].action == "drop"
    assert rules["dob"].to == "year"
    assert rules["id_card"].normalise == "id"
    assert rules["shelter"].action == "keep" and rules["shelter_other"].action == "drop"
    assert rules["size"].action == "keep" and rules["yes"].action == "keep"
    assert "deviceid" not in rules and "start" not in rules  # metadata defaults apply
    assert policy.strict is False and policy.quasi_identifiers == []
    assert "candidates: [head_age, head_sex]" in text
    for line in text.splitlines():
        if line.startswith("  ") and not line.lstrip().startswith("#"):
            assert "  # " in line, line  # every question suggestion carries its reason


def test_suggestion_fits_under_privacy_in_the_form_yaml() -> None:
    # how `kobo-etl add-form` embeds it: indented under `privacy:`
    _, text, _ = _suggested(household_questions())
    indented = "\n".join(("  " + line) if line.strip() else "" for line in text.splitlines())
    doc = yaml.safe_load("slug: hh\nasset_uid: aFormUid\nprivacy:\n" + indented + "\n")
    assert PrivacyPolicy.model_validate(doc["privacy"]).questions["phone"].normalise == "phone"


def test_suggested_policy_as_strict_covers_the_form() -> None:
    schema, text, policy = _suggested(household_questions())
    strict = policy.model_copy(update={"strict": True})
    result = apply_policy([household_submission()], schema, strict, KEY)
    assert result.withheld == []
    assert "hh/respondent_name" not in result.submissions[0]
