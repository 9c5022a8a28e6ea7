"""Suites generated from a hand-built FormSchema, constraint parsing and per-form YAML overrides."""

from __future__ import annotations

import pytest
from dq_fixtures import make_schema

from config.errors import FormConfigError
from expectations.suites import build_suite, load_overrides, parse_constraint, parse_range_parameters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (". >= 18 and . <= 120", (18.0, 120.0, False, False)),
        (".>=0", (0.0, None, False, False)),
        (". < 10", (None, 10.0, False, True)),
        (". > 0 AND . < 1.5", (0.0, 1.5, True, True)),
        (". >= 0 or . = -99", None),
        ("${a} > 3", None),
        ("", None),
    ],
)
def test_parse_constraint(text, expected):
    assert parse_constraint(text) == expected


def test_parse_range_parameters():
    assert parse_range_parameters("start=0 end=10 step=1") == (0.0, 10.0)
    assert parse_range_parameters("start=10 end=0") == (0.0, 10.0)
    assert parse_range_parameters(None) == (None, None)


def test_suite_from_form():
    suite = build_suite(make_schema(), overrides_dir=None)
    ids = suite.ids()
    assert ids[:3] == ["not_null:_id", "unique:_id", "end_after_start"]
    # consent is required with no relevant; admin1 has a relevant; resp_sex sits in a relevant group
    assert "not_null:consent" in ids
    assert "not_null:admin1" not in ids and "not_null:resp_sex" not in ids
    by_id = {e.id: e for e in suite.expectations}
    assert by_id["in_set:water_source"].kwargs["value_set"] == ["piped", "well", "river"]
    assert by_id["between:resp_age"].kwargs == {"column": "resp_age", "min_value": 18, "max_value": 120}
    assert by_id["between:hh_size"].kwargs == {"column": "hh_size", "min_value": 1, "max_value": None}
    assert by_id["tokens_in_set:needs"].table == "select_multiple_tokens"
    assert suite.select_multiple == {"needs": ["food", "water", "shelter", "other"]}
    assert "between:income" not in ids and any("income" in n for n in suite.notes)


def test_overrides_add_replace_disable(tmp_path):
    (tmp_path / "hh.yaml").write_text(
        """
disable: [in_set:admin1]
expectations:
  - id: between:resp_age
    type: expect_column_values_to_be_between
    kwargs: {column: resp_age, min_value: 18, max_value: 99}
    severity: warning
  - type: expect_column_values_to_be_between
    kwargs: {column: hh_size, min_value: 1, max_value: 30, mostly: 0.99}
    severity: warning
    meta: {description: Household size is plausible}
""",
        encoding="utf-8",
    )
    suite = build_suite(make_schema(), overrides_dir=tmp_path)
    by_id = {e.id: e for e in suite.expectations}
    assert "in_set:admin1" not in by_id
    assert by_id["between:resp_age"].severity == "warning"
    assert by_id["between:resp_age"].kwargs["max_value"] == 99
    assert by_id["between:resp_age"].description  # kept from the generated check
    added = by_id["column_values_to_be_between:hh_size"]
    assert (added.severity, added.description, added.kwargs["mostly"]) == (
        "warning",
        "Household size is plausible",
        0.99,
    )


def test_overrides_errors_name_the_field(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("expectations:\n  - type: expect_x\n    severity: fatal\n", encoding="utf-8")
    with pytest.raises(FormConfigError) as exc:
        load_overrides(p)
    assert "expectations[0].severity" in str(exc.value) and str(p) in str(exc.value)
    p.write_text("disable: nope\n", encoding="utf-8")
    with pytest.raises(FormConfigError, match="disable"):
        load_overrides(p)


def test_shipped_demo_overrides_are_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "expectations" / "household_survey.yaml"
    ov = load_overrides(path)
    assert ov.expectations and all(e.severity in ("error", "warning") for e in ov.expectations)
