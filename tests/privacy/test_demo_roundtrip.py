"""The policy on what the demo KoBo server really sends: nothing personal survives, flattening works."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import yaml

from config import DEMO_PSEUDONYMISATION_KEY
from config.privacy import PrivacyPolicy
from connectors.client import KoboClient
from connectors.demo_server import DemoKoboServer
from transforms.flatten import to_tables
from transforms.privacy import apply_policy, apply_policy_to_schema, pseudonymise_value, suggest_policy
from transforms.schema import to_form_schema

PERSONAL = ("respondent/resp_name", "respondent/phone", "comments", "needs_other", "username", "deviceid")


@pytest.fixture(scope="module")
def demo():
    with DemoKoboServer(households=40, seed=7) as srv:
        client = KoboClient(srv.url, srv.token, allow_insecure_http=True)
        uid = srv.household_uid
        asset = client.get_asset(uid)
        versions = {
            v["uid"]: client.get_version(uid, v["uid"])["content"] for v in client.iter_deployed_versions(uid)
        }
        schema = to_form_schema(asset, versions, "household_survey")
        raw = [s for page in client.iter_submission_pages(uid, page_size=100) for s in page.results]
        yield schema, raw


def _raw_personal_values(raw: list[dict]) -> set[str]:
    values: set[str] = set()
    for s in raw:
        values.update(str(s[k]) for k in PERSONAL if s.get(k))
        values.update(m["members/member_name"] for m in s.get("members", []) if m.get("members/member_name"))
        if s.get("_submitted_by"):
            values.add(s["_submitted_by"])
        if s.get("location/gps"):
            values.add(s["location/gps"].split()[0])  # the exact latitude
    # short first names also occur inside ordinary words; the byte search is about the values as written
    return {v for v in values if len(v) >= 4}


def test_suggested_policy_on_demo_data_leaks_nothing_and_flattens(demo) -> None:
    schema, raw = demo
    policy = PrivacyPolicy.model_validate(
        yaml.safe_load(suggest_policy(schema)) | {"default_country_code": "254"}
    )
    result = apply_policy(raw, schema, policy, DEMO_PSEUDONYMISATION_KEY.encode())
    blob = json.dumps(result.submissions, ensure_ascii=False)
    personal = _raw_personal_values(raw)
    assert len(personal) > 40
    leaked = sorted(v for v in personal if v in blob)
    assert leaked == []
    assert result.withheld == []

    first = next(s for s in raw if s.get("respondent/phone"))
    out = next(s for s in result.submissions if s["_id"] == first["_id"])
    assert out["respondent/phone"] == pseudonymise_value(
        first["respondent/phone"], DEMO_PSEUDONYMISATION_KEY.encode(), "phone", "254"
    )

    stored = apply_policy_to_schema(schema, policy)
    batch = to_tables(result.submissions, stored)
    main = batch.tables["submissions"]
    assert main.num_rows == len(raw)
    assert "resp_name" not in main.column_names
    assert main.schema.field("head_age").type == pa.string()
    assert set(main.column("head_age").to_pylist()) <= {"0-4", "5-17", "18-59", "60+", None}
    assert all(r.column != "head_age" for r in batch.quarantine)
