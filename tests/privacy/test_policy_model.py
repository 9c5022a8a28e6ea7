"""The policy as users write it in YAML."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from config.privacy import PrivacyPolicy

YAML = """
strict: false
default_country_code: "+254"
dpia_ref: DPIA-2026-003
sensitivity: restricted
quasi_identifiers: [admin2, head_sex, head_age]
questions:
  respondent_name: drop
  phone: {action: pseudonymise, normalise: phone}
  head_age: {action: generalise, bands: [0, 5, 18, 60], labels: [child, school age, adult, elder]}
  interview_date: {action: generalise, to: year}
  members/m_age: {action: top_code, max: 80}
  location: {action: round_gps, decimals: 3}
  comments: {action: redact, mode: drop}
  ration_card: hmac
metadata:
  _notes: keep
"""


def test_yaml_policy_loads_with_shorthands_and_aliases() -> None:
    p = PrivacyPolicy.model_validate(yaml.safe_load(YAML))
    assert p.default_country_code == "254"
    assert p.questions["respondent_name"].action == "drop"
    assert p.questions["ration_card"].action == "pseudonymise"
    assert p.questions["head_age"].bands == [0, 5, 18, 60]
    assert p.questions["location"].gps_decimals == 3
    assert p.questions["comments"].mode == "drop"
    assert p.metadata_rule("_notes").action == "keep"
    assert p.metadata_rule("_submitted_by").action == "pseudonymise"
    assert p.metadata_rule("not_metadata") is None
    assert (p.k_threshold, p.amber_k, p.global_risk_green, p.small_cell_threshold) == (5, 3, 0.03, 5)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"action": "generalise"}, "either `to"),
        ({"action": "generalise", "bands": [5, 5]}, "strictly increasing"),
        ({"action": "generalise", "bands": [0, 18], "labels": ["a"]}, "one label per band"),
        ({"action": "top_code"}, "needs `max`"),
        ({"action": "keep", "normalise": "phone"}, "`normalise` only applies"),
        ({"action": "shred"}, "action"),
    ],
)
def test_invalid_rules_say_what_is_expected(rule: dict, expected: str) -> None:
    with pytest.raises(ValidationError) as exc:
        PrivacyPolicy.model_validate({"questions": {"q": rule}})
    assert expected in str(exc.value)


def test_unknown_metadata_key_and_typos_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown metadata"):
        PrivacyPolicy.model_validate({"metadata": {"respondent_name": "keep"}})
    with pytest.raises(ValidationError):
        PrivacyPolicy.model_validate({"questoins": {}})
    with pytest.raises(ValidationError, match="amber_k"):
        PrivacyPolicy.model_validate({"k_threshold": 3, "amber_k": 4})
