"""The privacy policy's per-value shortcuts give what the plain definitions give: tokens are HMAC-SHA-256 in
base32 for any key length, band labels are `band_label`, repeat keys keep their precedence, and every level
of a submission comes out as a new dict."""

from __future__ import annotations

import base64
import copy
import hmac
from typing import Any

import pytest

from config.privacy import PrivacyPolicy
from config.settings import DEMO_PSEUDONYMISATION_KEY
from transforms.model import ColumnSpec, FormSchema, Question, TableSchema
from transforms.privacy import apply_policy, band_label, pseudonymise_value, round_gps

KEY = DEMO_PSEUDONYMISATION_KEY.encode()


def _q(xpath: str, type_: str, table: str = "submissions") -> Question:
    name = xpath.rsplit("/", 1)[-1]
    return Question(xpath=xpath, name=name, type=type_, table=table, column=name, xpaths=(xpath,))


def _schema() -> FormSchema:
    questions = [
        _q("age", "integer"),
        _q("weight", "decimal"),
        _q("phone", "text"),
        _q("members", "begin_repeat"),
        _q("members/m_name", "text", "members"),
        _q("members/m_age", "integer", "members"),
    ]
    main = TableSchema("submissions", "", None, [ColumnSpec("_id", "BIGINT", None, "key")])
    members = TableSchema("members", "members", "submissions", [ColumnSpec("_key", "VARCHAR", None, "key")])
    return FormSchema(
        uid="aFastPath",
        slug="fastpath",
        title="Fast path",
        languages=[],
        tables={"submissions": main, "members": members},
        questions={q.xpath: q for q in questions},
        choices=[],
        versions=["v1"],
    )


def _policy(**questions: Any) -> PrivacyPolicy:
    return PrivacyPolicy.model_validate(
        {
            "default_country_code": "254",
            "questions": {
                "phone": {"action": "pseudonymise", "normalise": "phone"},
                "m_name": "drop",
                "age": {"action": "generalise", "bands": [0, 5, 18, 60]},
                "weight": {"action": "generalise", "bands": [0, 2.5, 10]},
                **questions,
            },
        }
    )


def _reference_token(text: str, key: bytes) -> str:
    digest = hmac.digest(key, text.encode("utf-8"), "sha256")
    return "p_" + base64.b32encode(digest[:15]).decode("ascii")[:20].lower()


@pytest.mark.parametrize("length", [32, 40, 63, 64, 65, 100, 200])
def test_tokens_are_hmac_sha256_in_base32_for_any_key_length(length: int) -> None:
    key = bytes((i * 37 + length) % 256 for i in range(length))
    values = ["0712345678", "Amina Wanjiru", "é ü 中文 ٠١٢", "", "x" * 300]
    values += [f"value {i}" for i in range(300)]  # every base32 character, at every position
    for value in values:
        assert pseudonymise_value(value, key) == _reference_token(value, key)


def test_tokens_in_a_page_are_the_reference_tokens() -> None:
    subs = [{"_id": i, "phone": f"07{i:08d}"} for i in range(200)] + [{"_id": 999, "phone": "   "}]
    out = apply_policy(subs, _schema(), _policy(), KEY).submissions
    assert [s["phone"] for s in out[:200]] == [_reference_token(f"2547{i:08d}", KEY) for i in range(200)]
    assert out[200]["phone"] == "   "  # blank answers stay blank, not a token of ""


def test_band_labels_are_band_label() -> None:
    ages: list[Any] = ["-1", "0", "4", "4.9", "5", "17", "18", "59.5", "60", "1000", 7, 17.0]
    weights: list[Any] = ["-0.1", "0", "2.49", "2.5", "9.99", "10", "250"]
    subs = [{"_id": i, "age": a} for i, a in enumerate(ages)]
    subs += [{"_id": 100 + i, "weight": w} for i, w in enumerate(weights)]
    subs += [{"_id": 200, "age": "abc"}, {"_id": 201, "age": "nan"}, {"_id": 202, "age": None}]
    result = apply_policy(subs, _schema(), _policy(), KEY)
    got = [s.get("age", s.get("weight", "<removed>")) for s in result.submissions]
    expected = [band_label(float(a), [0, 5, 18, 60], None) for a in ages]
    expected += [band_label(float(w), [0, 2.5, 10], None, integer=False) for w in weights]
    assert got == expected + ["<removed>", "<removed>", None]
    assert got[:3] == ["<0", "0-4", "0-4"] and got[8] == "60+" and got[13] == "0-<2.5"
    assert result.invalid == {"age": 2}


def test_band_labels_with_names() -> None:
    named = {"action": "generalise", "bands": [0, 18, 60], "labels": ["child", "adult", "older"]}
    policy = _policy(age=named)
    subs = [{"_id": i, "age": a} for i, a in enumerate(["-3", "0", "17", "18", "59", "60", "99"])]
    out = apply_policy(subs, _schema(), policy, KEY).submissions
    assert [s["age"] for s in out] == ["<0", "child", "child", "adult", "adult", "older", "older"]


def test_repeat_keys_keep_their_precedence() -> None:
    subs = [
        {"_id": 1, "members": [{"members/m_name": "Amina", "members/m_age": "34"}, {"members/m_age": "2"}]},
        {"_id": 2, "members": []},
        {"_id": 3, "members": [{"members/m_age": "34"}, "not a dict"]},
        {"_id": 4, "members": "text under a repeat's key"},
        {"_id": 5, "members_count": "2", "old/repeat": [{"old/repeat/x": "1"}]},
        {"_id": 6, "old/repeat": []},
    ]
    result = apply_policy(subs, _schema(), _policy(), KEY)
    out = result.submissions
    assert out[0]["members"] == [{"members/m_age": "34"}, {"members/m_age": "2"}]
    assert out[1]["members"] == [] and out[1]["members"] is not subs[1]["members"]
    # the form's repeat, not a list of objects: an item that is not one becomes None (flattening quarantines
    # it, the others keep their positions); a value that is no list at all is not stored, and quarantined
    assert out[2] == {"_id": 3, "members": [{"members/m_age": "34"}, None]} and out[3] == {"_id": 4}
    assert result.rejected == [(4, "members", "the repeat is not a list of instances")]
    assert out[4] == {"_id": 5, "members_count": "2", "old/repeat": [{}]}  # an older version's repeat
    assert out[5] == {"_id": 6}
    unknown = {w.xpath: w.type for w in result.withheld if w.type == "unknown"}
    assert unknown == {"old/repeat/x": "unknown", "old/repeat": "unknown"}


def test_a_dropped_repeat_goes_whatever_its_value() -> None:
    policy = _policy(members="drop")
    subs = [{"_id": 1, "members": [{"members/m_age": "3"}]}, {"_id": 2, "members": []}]
    subs.append({"_id": 3, "members": "x"})
    out = apply_policy(subs, _schema(), policy, KEY).submissions
    assert out == [{"_id": 1}, {"_id": 2}, {"_id": 3}]


def test_gps_lists_points_and_traces() -> None:
    mixed = [1.23456, "2.34567", None, "x", float("nan"), True]
    assert round_gps(mixed, 2) == [1.23, 2.35, None, None, None, 1.0]
    assert round_gps((-0.004, 12.5), 2) == [-0.0, 12.5]
    assert round_gps("1.23456 2.34567 100 5", 2) == "1.23 2.35"
    assert round_gps("  -1.2345   36.8219  ", 3) == "-1.234 36.822"
    assert round_gps("1.2 3.4 0 0;5.6 7.8 0 0", 0) == "1 3;6 8"


def test_every_level_is_a_new_dict_and_inputs_are_untouched() -> None:
    subs: list[dict[str, Any]] = [
        {"_id": 1, "members": [{"members/m_name": "A", "members/m_age": "3"}], "_attachments": []},
        {"_id": 2, "members": [{"members/m_age": "40"}]},
    ]
    before = copy.deepcopy(subs)
    out = apply_policy(subs, _schema(), _policy(), KEY).submissions
    assert subs == before
    for new, old in zip(out, subs, strict=True):
        assert new is not old and new["members"] is not old["members"]
        assert all(a is not b for a, b in zip(new["members"], old["members"], strict=True))
    assert out[0]["_attachments"] == [] and out[0]["_attachments"] is not subs[0]["_attachments"]
    assert out[1]["members"] == [{"members/m_age": "40"}]
