"""Keyed pseudonyms: normalisation, linkage across forms, and why a plain hash is not used."""

from __future__ import annotations

import hashlib
import re

import pytest
from privacy_fixtures import KEY, OTHER_KEY, make_schema, q

from config.privacy import PrivacyPolicy
from transforms.pii import normalise_id, normalise_name, normalise_phone
from transforms.privacy import PrivacyError, apply_policy, pseudonymise_value

PHONES = ["+254 712 345 678", "0712345678", "254712345678"]


def test_phone_normalisation_variants() -> None:
    assert {normalise_phone(p, "254") for p in PHONES} == {"254712345678"}
    assert normalise_phone("00254-712-345-678", "254") == "254712345678"
    assert normalise_phone("712345678", "254") == "254712345678"
    assert normalise_phone("+33 6 12 34 56 78", "254") == "33612345678"  # explicit + wins over the default
    assert normalise_phone("0712345678", None) == "712345678"


def test_name_and_id_normalisation() -> None:
    assert normalise_name("  José-María   DÍAZ ") == "jose maria diaz"
    assert normalise_name("Amina  wanjiru") == normalise_name("AMINA WANJIRU")
    assert normalise_name("أمينة") == normalise_name("امينه")
    assert normalise_id("ab-123 456") == "AB123456"


def test_same_phone_three_ways_in_two_forms_gives_one_token() -> None:
    policy = PrivacyPolicy.model_validate(
        {
            "default_country_code": "254",
            "questions": {"phone": {"action": "pseudonymise", "normalise": "phone"}},
        }
    )
    form_a = make_schema([q("hh/phone", "text")], slug="registration")
    form_b = make_schema([q("contact/phone", "text")], slug="distribution")
    subs_a = [{"_id": i, "hh/phone": p} for i, p in enumerate(PHONES)]
    subs_b = [{"_id": 10 + i, "contact/phone": p} for i, p in enumerate(PHONES)]
    tokens_a = {s["hh/phone"] for s in apply_policy(subs_a, form_a, policy, KEY).submissions}
    tokens_b = {s["contact/phone"] for s in apply_policy(subs_b, form_b, policy, KEY).submissions}
    assert len(tokens_a) == 1
    assert tokens_a == tokens_b
    token = tokens_a.pop()
    assert re.fullmatch(r"p_[a-z2-7]{20}", token)
    assert token == pseudonymise_value("+254712345678", KEY, "phone", "254")


def test_different_key_gives_different_token() -> None:
    a = pseudonymise_value("0712345678", KEY, "phone", "254")
    b = pseudonymise_value("0712345678", OTHER_KEY, "phone", "254")
    assert a != b and a.startswith("p_") and b.startswith("p_")


def test_token_is_not_a_plain_hash_of_the_number() -> None:
    token = pseudonymise_value("0712345678", KEY, "phone", "254")
    body = token.removeprefix("p_")
    for candidate in ("0712345678", "254712345678", "+254712345678", "+254 712 345 678"):
        for h in (hashlib.sha256, hashlib.sha1, hashlib.md5):
            digest = h(candidate.encode()).hexdigest()
            assert body not in digest and digest[:20] != body
    # and the token is what HMAC with the key gives, not something reproducible without it
    import base64
    import hmac

    expected = base64.b32encode(hmac.new(KEY, b"254712345678", hashlib.sha256).digest()).decode()[:20].lower()
    assert body == expected


def test_short_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(PrivacyError) as exc:
        pseudonymise_value("x", b"short-key", None, None)
    assert "short-key" not in str(exc.value)
    assert "KOBO_ETL_PSEUDONYMISATION_KEY" in str(exc.value)
