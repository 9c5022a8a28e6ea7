"""The compiled policy plan: built once per (schema, policy), rebuilt when either changes, same results."""

from __future__ import annotations

import copy
import gc

import pytest
from privacy_fixtures import KEY, household_questions, household_submission, make_schema, policy_dict, q

from config.privacy import PrivacyPolicy, QuestionRule
from transforms.page import cyclic_gc_paused
from transforms.privacy import PrivacyError, apply_policy, policy_plan, pseudonymise_value, round_gps


def _setup():
    return make_schema(household_questions()), PrivacyPolicy.model_validate(policy_dict())


def test_plan_is_reused_while_schema_and_policy_are_unchanged() -> None:
    schema, pol = _setup()
    plan = policy_plan(schema, pol)
    assert policy_plan(schema, pol) is plan
    first = apply_policy([household_submission(1)], schema, pol, KEY)
    second = apply_policy([household_submission(2)], schema, pol, KEY)
    assert policy_plan(schema, pol) is plan
    assert first.submissions[0]["hh/head_age"] == second.submissions[0]["hh/head_age"] == "18-59"
    assert second.submissions[0]["_id"] == 2
    # an equal but distinct policy object gets its own plan (identity, not equality, is the memo key)
    other = PrivacyPolicy.model_validate(policy_dict())
    assert policy_plan(schema, other) is not plan


def test_policy_edited_in_place_gets_a_new_plan() -> None:
    schema, pol = _setup()
    before = apply_policy([household_submission()], schema, pol, KEY)
    assert before.submissions[0]["hh/head_age"] == "18-59"
    plan = policy_plan(schema, pol)
    pol.questions["head_age"] = QuestionRule(action="drop")
    assert policy_plan(schema, pol) is not plan
    after = apply_policy([household_submission()], schema, pol, KEY)
    assert "hh/head_age" not in after.submissions[0]
    pol.questions["head_age"].action = "keep"  # a rule changed in place, too
    assert apply_policy([household_submission()], schema, pol, KEY).submissions[0]["hh/head_age"] == "34"


def test_schema_edited_in_place_gets_a_new_plan() -> None:
    schema, pol = _setup()
    sub = household_submission() | {"hh/nickname": "Mama Amina"}
    first = apply_policy([sub], schema, pol, KEY)
    assert {w.xpath: w.type for w in first.withheld}["hh/nickname"] == "unknown"
    schema.questions["hh/nickname"] = q("hh/nickname", "text")
    second = apply_policy([sub], schema, pol, KEY)
    assert {w.xpath: w.type for w in second.withheld}["hh/nickname"] == "text"
    assert "hh/nickname" not in second.submissions[0]


def test_prepared_plan_gives_the_same_result() -> None:
    schema, pol = _setup()
    subs = [household_submission(i, phone=f"07{i:08d}") for i in range(3)]
    with_plan = apply_policy(subs, schema, pol, KEY, plan=policy_plan(schema, pol))
    without = apply_policy(subs, schema, pol, KEY)
    assert with_plan.submissions == without.submissions
    assert with_plan.withheld == without.withheld and with_plan.invalid == without.invalid


def test_different_key_sets_in_one_page_keep_order_and_rules() -> None:
    schema, pol = _setup()
    full = household_submission(1)
    short = {k: v for k, v in household_submission(2).items() if k not in ("hh/phone", "members")}
    reordered = dict(reversed(list(household_submission(3).items())))
    extra = household_submission(4) | {"surprise/free_text": "Amina", "hh/head_age": "thirty"}
    subs = [full, short, reordered, extra, copy.deepcopy(full)]
    before = copy.deepcopy(subs)
    result = apply_policy(subs, schema, pol, KEY)
    assert subs == before  # inputs untouched
    alone = [apply_policy([s], schema, pol, KEY).submissions[0] for s in subs]
    assert result.submissions == alone
    for raw, out in zip(subs, result.submissions, strict=True):
        assert list(out) == [k for k in raw if k in out]  # input order, minus removed keys
    assert "hh/phone" not in result.submissions[1] and "members" not in result.submissions[1]
    assert result.submissions[2]["hh/phone"] == pseudonymise_value("+254 712 345 678", KEY, "phone", "254")
    assert "surprise/free_text" not in result.submissions[3] and "hh/head_age" not in result.submissions[3]
    assert result.invalid == {"hh/head_age": 1}
    assert result.submissions[4] == result.submissions[0]
    assert result.submissions[0]["members"] is not subs[0]["members"]


def test_unknown_keys_are_reported_on_every_page() -> None:
    schema, pol = _setup()
    sub = household_submission() | {"surprise/free_text": "Amina"}
    for _ in range(2):  # the second page reuses the compiled plan and its key sets
        result = apply_policy([sub], schema, pol, KEY)
        assert "surprise/free_text" in {w.xpath for w in result.withheld}


@pytest.mark.parametrize("enabled", [True, False])
def test_cyclic_gc_state_is_restored(enabled: bool) -> None:
    schema, pol = _setup()
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with cyclic_gc_paused():  # as a page's transform runs (transforms.page)
            apply_policy([household_submission()], schema, pol, KEY)
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        bad = PrivacyPolicy.model_validate(policy_dict() | {"metadata": {"_geolocation": "pseudonymise"}})
        with pytest.raises(PrivacyError, match="_geolocation accepts keep, drop or round_gps"), \
                cyclic_gc_paused():
            apply_policy([household_submission()], schema, bad, KEY)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_round_gps_points_traces_and_blanks() -> None:
    assert round_gps("-1.292066 36.821946 1700.5 4.0", 2) == "-1.29 36.82"
    assert round_gps("1 2 0 0;3.14159 4.5 0 0; ", 1) == "1.0 2.0;3.1 4.5"
    assert round_gps([-1.292066, 36.821946], 3) == [-1.292, 36.822]
    schema, pol = _setup()
    for blank in ("   ", "north"):
        result = apply_policy([household_submission() | {"hh/location": blank}], schema, pol, KEY)
        assert "hh/location" not in result.submissions[0]
        assert result.invalid == {"hh/location": 1}
