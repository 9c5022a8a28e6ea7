"""The demo KoBo server speaks KPI's wire format (kobo-api.md sections 1-5), over real HTTP on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests

from connectors import demo_data as dd
from connectors.demo_server import DemoKoboServer

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
SYSTEM_KEYS = [
    "_id",
    "formhub/uuid",
    "__version__",
    "meta/instanceID",
    "_xform_id_string",
    "_uuid",
    "_attachments",
    "_status",
    "_geolocation",
    "_submission_time",
    "_validation_status",
    "_submitted_by",
    "meta/rootUuid",
]


def get(srv: DemoKoboServer, path: str, token: str | None = "default", **params: object) -> requests.Response:
    headers = (
        {} if token is None else {"Authorization": f"Token {srv.token if token == 'default' else token}"}
    )
    return requests.get(srv.url + path, headers=headers, params=params, timeout=30)


def data(srv: DemoKoboServer, uid: str | None = None, **params: object) -> dict:
    resp = get(srv, f"/api/v2/assets/{uid or srv.household_uid}/data/", **params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def all_ids(srv: DemoKoboServer) -> list[int]:
    return [r["_id"] for r in data(srv, fields='["_id"]', limit=1000, start=0)["results"]] + [
        r["_id"] for r in data(srv, fields='["_id"]', limit=1000, start=1000)["results"]
    ]


def test_default_page_is_100_with_a_next_link(demo_server):
    page = data(demo_server)
    assert page["count"] == 1500 and len(page["results"]) == 100 and page["previous"] is None
    assert (
        page["next"]
        == f"{demo_server.url}/api/v2/assets/{demo_server.household_uid}/data/?limit=100&start=100"
    )
    assert list(page) == ["count", "next", "previous", "results"]  # results last, like DRF


def test_limit_is_capped_at_1000_and_next_keeps_the_other_params(demo_server):
    page = data(demo_server, limit=5000, query='{"consent": "yes"}', format="json")
    assert len(page["results"]) == 1000
    q = parse_qs(urlsplit(page["next"]).query)
    assert q == {"limit": ["1000"], "start": ["1000"], "query": ['{"consent": "yes"}'], "format": ["json"]}
    last = requests.get(
        page["next"], headers={"Authorization": f"Token {demo_server.token}"}, timeout=30
    ).json()
    assert last["next"] is None and len(last["results"]) == page["count"] - 1000
    assert last["previous"].endswith("format=json&limit=1000&query=%7B%22consent%22%3A+%22yes%22%7D")


def test_ids_are_increasing_not_dense_and_records_are_kpi_shaped(demo_server):
    ids = all_ids(demo_server)
    assert len(ids) == 1500 and ids == sorted(set(ids)) and ids[0] >= 10_000_000
    assert ids[-1] - ids[0] > 1500  # gaps, like a server-wide sequence
    rec = data(demo_server, limit=1, start=3)["results"][0]
    assert all(k in rec for k in SYSTEM_KEYS)
    assert (
        rec["meta/instanceID"] == "uuid:" + rec["_uuid"]
        and rec["_xform_id_string"] == demo_server.household_uid
    )
    assert len(rec["_submission_time"]) == 19 and rec["_submission_time"][10] == "T"
    assert rec["start"][-6:] in ("+03:00", "+00:00")
    answers = [v for k, v in rec.items() if k not in SYSTEM_KEYS and not isinstance(v, list)]
    assert answers and all(isinstance(v, str) and v != "" for v in answers)
    member = rec["members"][0]
    assert all(k.startswith("members/") for k in member)


def test_nested_repeat_keys_are_full_paths(demo_server):
    rows = data(demo_server, limit=300)["results"]
    ill = [i for r in rows for m in r.get("members", []) for i in m.get("members/illnesses", [])]
    assert ill and set().union(*ill) <= {"members/illnesses/illness_type", "members/illnesses/illness_date"}


def test_keyset_query_and_sort(demo_server):
    ids = all_ids(demo_server)
    page = data(demo_server, query=json.dumps({"_id": {"$gt": ids[1199]}}), sort='{"_id": 1}', limit=1000)
    assert [r["_id"] for r in page["results"]] == ids[1200:] and page["count"] == 300
    desc = data(demo_server, sort='{"_id": -1}', limit=3)["results"]
    assert [r["_id"] for r in desc] == ids[::-1][:3]
    window = data(
        demo_server, query=json.dumps({"$and": [{"_id": {"$gte": ids[10]}}, {"_id": {"$lt": ids[20]}}]})
    )
    assert [r["_id"] for r in window["results"]] == ids[10:20]
    assert (
        data(demo_server, query='{"_id": {"$gt": "10000000"}}')["count"] == 0
    )  # strings under $gt never match
    picked = data(demo_server, query=json.dumps({"_id": {"$in": [ids[5], ids[7], 1]}}))
    assert [r["_id"] for r in picked["results"]] == [ids[5], ids[7]]


def test_submission_time_and_equality_filters_count_matches(demo_server):
    rows = data(demo_server, limit=1000)["results"] + data(demo_server, limit=1000, start=1000)["results"]
    cut = rows[700]["_submission_time"]
    page = data(demo_server, query=json.dumps({"_submission_time": {"$gte": cut}}), limit=1)
    assert page["count"] == sum(r["_submission_time"] >= cut for r in rows)
    by_enum = data(demo_server, query=json.dumps({"_submitted_by": "enum_ke03", "consent": "yes"}), limit=1)
    assert by_enum["count"] == sum(
        r["_submitted_by"] == "enum_ke03" and r.get("consent") == "yes" for r in rows
    )
    approved = data(demo_server, query='{"_validation_status.uid": "validation_status_approved"}', limit=1)
    assert approved["count"] == sum(
        r["_validation_status"].get("uid") == "validation_status_approved" for r in rows
    )
    assert 0 < approved["count"] < 1500
    none = data(demo_server, query='{"consent": "impossible"}')
    assert none == {"count": 0, "next": None, "previous": None, "results": []}


def test_fields_projection_adds_kpi_keys(demo_server):
    rows = data(demo_server, fields='["respondent/resp_age", "__version__"]', limit=50)["results"]
    assert set(rows[0]) <= {
        "_id",
        "respondent/resp_age",
        "__version__",
        "_uuid",
        "meta/rootUuid",
        "_validation_status",
    }
    assert {"_id", "_uuid", "meta/rootUuid", "_validation_status", "__version__"} <= set(rows[0])
    assert all(r["_validation_status"] == {} for r in rows)  # injected as {} when not asked for


def test_past_the_last_page_is_empty_with_previous(demo_server):
    page = data(demo_server, start=5000, limit=100)
    assert page["count"] == 1500 and page["results"] == [] and page["next"] is None and page["previous"]


def test_single_record_by_id_and_root_uuid(demo_server):
    rec = data(demo_server, limit=1, start=42)["results"][0]
    by_id = get(demo_server, f"/api/v2/assets/{demo_server.household_uid}/data/{rec['_id']}/").json()
    assert by_id == rec
    root = rec["meta/rootUuid"].removeprefix("uuid:")
    assert (
        get(demo_server, f"/api/v2/assets/{demo_server.household_uid}/data/{root}/").json()["_id"]
        == rec["_id"]
    )
    assert get(demo_server, f"/api/v2/assets/{demo_server.household_uid}/data/1/").status_code == 404


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"limit": "0"}, {"limit": "A positive integer is required"}),
        ({"limit": "abc"}, {"limit": "A positive integer is required"}),
        ({"start": "-1"}, {"start": "A positive integer is required"}),
        ({"query": "{not json"}, {"query": "Value must be valid JSON."}),
        ({"sort": "[1]"}, {"sort": "Value must be valid JSON."}),
        ({"fields": "_id"}, {"fields": "Value must be valid JSON."}),
    ],
)
def test_bad_parameters_give_400(demo_server, params, body):
    resp = get(demo_server, f"/api/v2/assets/{demo_server.household_uid}/data/", **params)
    assert resp.status_code == 400 and resp.json() == body


def test_auth_and_visibility_errors(demo_server):
    uid = demo_server.household_uid
    bad = get(demo_server, f"/api/v2/assets/{uid}/data/", token="wrong")
    assert bad.status_code == 401 and bad.json() == {"detail": "Invalid token."}
    assert get(demo_server, f"/api/v2/assets/{uid}/data/", token=None).status_code == 404
    unknown = get(demo_server, "/api/v2/assets/aDoesNotExist123/")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Not found."}
    assert get(demo_server, f"/api/v2/assets/{demo_server.hidden_uid}/").status_code == 404
    assert get(demo_server, f"/api/v2/assets/{demo_server.hidden_uid}/data/").status_code == 404
    draft = get(demo_server, f"/api/v2/assets/{demo_server.draft_uid}/data/")
    assert draft.status_code == 400 and draft.json() == {
        "detail": "The specified asset has not been deployed"
    }
    assert get(demo_server, "/api/v1/data/").status_code == 410


def test_asset_list_detail_and_versions(demo_server):
    # limit=1: the bundled household survey and draft make two pages even without the recorded fixtures
    listing = get(demo_server, "/api/v2/assets/", q="asset_type:survey", limit=1).json()
    assert listing["next"].endswith("limit=1&q=asset_type%3Asurvey&start=1")
    items = get(demo_server, "/api/v2/assets/", q="asset_type:survey", limit=100).json()["results"]
    uids = [a["uid"] for a in items]
    assert demo_server.household_uid in uids and demo_server.draft_uid in uids
    assert demo_server.hidden_uid not in uids
    assert all(a["asset_type"] == "survey" for a in items)
    detail = get(demo_server, f"/api/v2/assets/{demo_server.household_uid}/").json()
    assert detail["deployment__active"] is True and detail["deployment_status"] == "deployed"
    assert detail["deployment__submission_count"] == 1500 and detail["has_deployment"] is True
    assert detail["deployed_version_id"] == dd.HOUSEHOLD_V2_UID != detail["version_id"]
    assert detail["summary"]["languages"] == ["English (en)", "Français (fr)", "العربية (ar)"]
    assert detail["content"]["translations"] == detail["summary"]["languages"]
    versions = get(demo_server, f"/api/v2/assets/{demo_server.household_uid}/versions/").json()["results"]
    assert [v["uid"] for v in versions] == [dd.HOUSEHOLD_DRAFT_UID, dd.HOUSEHOLD_V2_UID, dd.HOUSEHOLD_V1_UID]
    assert versions[0]["date_deployed"] is False and all(v["date_deployed"] for v in versions[1:])
    v1 = get(
        demo_server, f"/api/v2/assets/{demo_server.household_uid}/versions/{dd.HOUSEHOLD_V1_UID}/"
    ).json()
    v2 = get(
        demo_server, f"/api/v2/assets/{demo_server.household_uid}/versions/{dd.HOUSEHOLD_V2_UID}/"
    ).json()
    xp1 = {r.get("$xpath") for r in v1["content"]["survey"]}
    xp2 = {r.get("$xpath") for r in v2["content"]["survey"]}
    assert xp2 - xp1 == {"household/income_source", "photo"}
    types1 = {r.get("$xpath"): r["type"] for r in v1["content"]["survey"]}
    types2 = {r.get("$xpath"): r["type"] for r in v2["content"]["survey"]}
    # income changes type across versions (integer -> decimal): the schema must widen it
    assert (types1["household/income"], types2["household/income"]) == ("integer", "decimal")
    assert types2["photo"] == "image"
    draft = get(demo_server, f"/api/v2/assets/{demo_server.draft_uid}/").json()
    assert draft["deployment_status"] == "draft" and draft["has_deployment"] is False


def test_versions_in_data_match_deployed_versions(demo_server):
    rows = data(demo_server, limit=1000)["results"] + data(demo_server, limit=1000, start=1000)["results"]
    v1 = [r for r in rows if r["__version__"] == dd.HOUSEHOLD_V1_UID]
    v2 = [r for r in rows if r["__version__"] == dd.HOUSEHOLD_V2_UID]
    assert v1 and v2 and len(v1) + len(v2) == 1500
    assert not any("household/income_source" in r for r in v1)
    assert sum("household/income_source" in r for r in v2) > len(v2) // 2
    # v2 added a photo question: ~30% of v2 submissions carry a photo and its KPI-shaped attachment
    assert not any("photo" in r or r["_attachments"] for r in v1)
    with_photo = [r for r in v2 if "photo" in r]
    assert 0.2 * len(v2) < len(with_photo) < 0.4 * len(v2)
    assert all(r["_attachments"] == [] for r in v2 if "photo" not in r)
    names = [r["photo"] for r in with_photo]
    assert any(n.startswith("IMG_") for n in names) and any(" " in n for n in names)
    for r in with_photo:
        (att,) = r["_attachments"]
        basename = r["photo"].replace(" ", "_")
        root = r["meta/rootUuid"].removeprefix("uuid:")
        assert att["uid"].startswith("att") and len(att["uid"]) == 25
        assert att["mimetype"] == "image/jpeg" and att["question_xpath"] == "photo"
        assert att["media_file_basename"] == basename and att["is_deleted"] is False
        assert att["filename"] == f"demo_owner/attachments/{dd.HOUSEHOLD_FORMHUB_UUID}/{root}/{basename}"
        url = f"{demo_server.url}/api/v2/assets/{dd.HOUSEHOLD_UID}/data/{r['_id']}/attachments/{att['uid']}/"
        assert att["download_url"] == url
        assert att["download_small_url"] == url + "small/"


def test_quality_problems_are_where_documented(demo_server):
    problems = demo_server.quality_problems
    assert problems == dd.QUALITY_PROBLEMS
    rows = {
        r["_id"]: r
        for r in data(demo_server, limit=1000)["results"]
        + data(demo_server, limit=1000, start=1000)["results"]
    }
    assert all(rows[i]["respondent/resp_age"] == "150" for i in problems["age_out_of_range"])
    assert all(rows[i]["household/hh_size"] == "twelve" for i in problems["bad_integer"])
    assert all(
        "consent" not in rows[i] and "respondent/resp_name" in rows[i] for i in problems["missing_consent"]
    )
    assert all(
        rows[i]["consent"] == "no" and "food/fcs_cereals" in rows[i]
        for i in problems["consent_no_with_answers"]
    )
    dup = problems["duplicate_uuid"]
    assert rows[dup[0]]["_uuid"] == rows[dup[1]]["_uuid"] and dup[0] != dup[1]
    phones = problems["duplicate_phone"]
    assert rows[phones[0]]["respondent/phone"] == rows[phones[1]]["respondent/phone"]
    for i in problems["short_interview"]:
        start, end = (rows[i][k] for k in ("start", "end"))
        assert start[:13] == end[:13] or end[11:13] > start[11:13]
    ok_ages = [
        int(r["respondent/resp_age"])
        for i, r in rows.items()
        if "respondent/resp_age" in r and i not in problems["age_out_of_range"]
    ]
    assert max(ok_ages) <= 120
    counts = {u: sum(r["_submitted_by"] == u for r in rows.values()) for u in dd.ENUMERATORS}
    others = [c for u, c in counts.items() if u != dd.PROLIFIC_ENUMERATOR]
    assert counts[dd.PROLIFIC_ENUMERATOR] > 2 * max(others)
    assert sorted(problems["prolific_enumerator"]) == sorted(
        i for i, r in rows.items() if r["_submitted_by"] == dd.PROLIFIC_ENUMERATOR
    )


def test_same_seed_gives_the_same_bytes():
    pages = []
    for seed in (3, 3, 4):
        with DemoKoboServer(households=300, seed=seed, include_fixtures=False) as srv:
            raw = get(srv, f"/api/v2/assets/{srv.household_uid}/data/", limit=300).content
            pages.append(raw.replace(srv.url.encode(), b"BASE"))
    assert pages[0] == pages[1] and pages[0] != pages[2]
    ids = [[r["_id"] for r in orjson.loads(p)["results"]] for p in pages]
    assert ids[0] == ids[2]  # ids depend on the index only, not the seed


def test_members_per_household_sets_every_household_size():
    """`members` (bench/run.py --members) gives every household that many member rows and that size; the
    answers drawn before the members are the default's."""
    pages = {}
    for members in (None, 9):
        with DemoKoboServer(households=200, seed=5, include_fixtures=False, members=members) as srv:
            pages[members] = data(srv, limit=200)["results"]
    sized = [r for r in pages[9] if "members" in r]
    assert len(sized) > 150  # every household that consented
    assert {len(r["members"]) for r in sized} == {9}
    assert {r["household/hh_size"] for r in sized} <= {"9", "twelve"}  # "twelve": the bad-integer problem
    assert {len(r["members"]) for r in pages[None] if "members" in r} != {9}
    for default, nine in zip(pages[None], pages[9], strict=True):
        assert default["_id"] == nine["_id"]
        for key in ("location/site", "respondent/resp_name", "respondent/phone"):
            assert default.get(key) == nine.get(key)
    with pytest.raises(ValueError, match="at least 1"):
        dd.HouseholdGenerator(10, 5, members=0)


def test_edit_keeps_id_and_root_uuid_and_changes_uuid(fresh_server):
    srv, uid = fresh_server, fresh_server.household_uid
    before = data(srv, limit=1, start=5)["results"][0]
    new_uuid = srv.edit_submission(uid, before["_id"], {"respondent/resp_age": "44", "comments": None})
    after = get(srv, f"/api/v2/assets/{uid}/data/{before['_id']}/").json()
    assert after["_id"] == before["_id"] and after["_uuid"] == new_uuid != before["_uuid"]
    assert after["meta/instanceID"] == "uuid:" + new_uuid
    assert after["meta/deprecatedID"] == before["meta/instanceID"]
    assert after["meta/rootUuid"] == before["meta/rootUuid"]
    assert after["_submission_time"] == before["_submission_time"]
    assert after.get("respondent/resp_age") == "44" and "comments" not in after
    assert data(srv)["count"] == 120


def test_validation_status_change_keeps_uuid(fresh_server):
    srv, uid = fresh_server, fresh_server.household_uid
    before = data(srv, limit=1)["results"][0]
    srv.set_validation_status(uid, before["_id"], "validation_status_on_hold")
    after = data(srv, limit=1)["results"][0]
    assert after["_uuid"] == before["_uuid"]
    assert after["_validation_status"]["uid"] == "validation_status_on_hold"
    assert after["_validation_status"]["label"] == "On Hold"


def test_delete_and_add(fresh_server):
    srv, uid = fresh_server, fresh_server.household_uid
    ids = [r["_id"] for r in data(srv, limit=1000)["results"]]
    srv.delete_submission(uid, ids[3])
    srv.delete_submission(uid, ids[50])
    page = data(srv, limit=1000)
    assert page["count"] == 118 and [r["_id"] for r in page["results"]] == [
        i for i in ids if i not in (ids[3], ids[50])
    ]
    assert get(srv, f"/api/v2/assets/{uid}/data/{ids[3]}/").status_code == 404
    assert data(srv, limit=10, start=3)["results"][0]["_id"] == ids[4]  # offset paging shifts on delete
    new = srv.add_submissions(uid, 4)
    assert len(new) == 4 and new == sorted(new) and new[0] > ids[-1]
    tail = data(srv, query=json.dumps({"_id": {"$gt": ids[-1]}}))
    assert [r["_id"] for r in tail["results"]] == new
    assert get(srv, f"/api/v2/assets/{uid}/").json()["deployment__submission_count"] == 122
    with pytest.raises(KeyError):
        srv.delete_submission(uid, ids[3])


def test_request_log(fresh_server):
    srv = fresh_server
    srv.clear_requests()
    data(srv, limit=7, query='{"consent": "yes"}')
    entry = srv.requests[-1]
    assert entry.method == "GET" and entry.path == f"/api/v2/assets/{srv.household_uid}/data/"
    assert (
        entry.query == {"limit": "7", "query": '{"consent": "yes"}'}
        and entry.status == 200
        and entry.nbytes > 0
    )


def test_faults_5xx_and_429(fresh_server):
    srv, path = fresh_server, f"/api/v2/assets/{fresh_server.household_uid}/data/"
    srv.set_faults(fail_every=2, fail_status=502)
    assert [get(srv, path).status_code for _ in range(4)] == [200, 502, 200, 502]
    assert get(srv, f"/api/v2/assets/{srv.household_uid}/").status_code == 200  # only data requests fail
    srv.set_faults(rate_limit_every=3, retry_after=9)
    statuses = [get(srv, path) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429] and statuses[2].headers["Retry-After"] == "9"
    srv.set_faults()
    assert get(srv, path).status_code == 200


def test_faults_truncated_and_non_json(fresh_server):
    srv, path = fresh_server, f"/api/v2/assets/{fresh_server.household_uid}/data/"
    srv.set_faults(truncate_next=1)
    with pytest.raises(requests.exceptions.RequestException):
        get(srv, path).json()
    assert get(srv, path).json()["count"] == 120  # only the next one was cut
    srv.set_faults(truncate_next=1, truncate_mode="short")
    resp = get(srv, path)
    assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == len(resp.content)
    with pytest.raises(ValueError):
        orjson.loads(resp.content)
    srv.set_faults(non_json_next=1)
    html = get(srv, path)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert html.text.lstrip().startswith("<html>")
    srv.set_faults(non_json_next=1, non_json_status=502)
    assert get(srv, path).status_code == 502
    assert get(srv, path).json()["count"] == 120


def test_keyset_on_half_a_million_does_not_scan():
    # 500 000 records: a scan would generate every record (~20 s); the keyset plan only bisects
    with DemoKoboServer(households=500_000, include_fixtures=False) as srv:
        last = dd.id_at(499_999)
        page = data(srv, query=json.dumps({"_id": {"$gt": dd.id_at(499_000)}}), sort='{"_id":1}', limit=1000)
        assert page["count"] == 999 and page["results"][-1]["_id"] == last
        deep = data(srv, start=498_000, limit=2, fields='["_id"]')
        assert [r["_id"] for r in deep["results"]] == [dd.id_at(498_000), dd.id_at(498_001)]


@pytest.fixture(scope="module")
def robo() -> Path:
    path = (FIXTURES / "robotoolbox").resolve()
    if not (path / "index.json").is_file():
        pytest.skip(f"recorded KoBo fixtures not found at {path}")
    return path


def test_recorded_assets_are_served_as_recorded(demo_server, robo):
    uid = "aYuTZn9vegi3Z49MXwKjep"
    recorded = json.loads((robo / "kobo_data" / f"01_{uid}_data_json_q.json").read_text(encoding="utf-8"))
    served = get(demo_server, f"/api/v2/assets/{uid}/data.json", limit=1000).json()
    assert served["results"] == recorded["results"] and served["count"] == 5
    detail = get(demo_server, f"/api/v2/assets/{uid}/").json()
    assert detail["url"] == f"{demo_server.url}/api/v2/assets/{uid}/"
    q = get(demo_server, f"/api/v2/assets/{uid}/data.json", limit=1, query='{"pet_yesno": "0"}').json()
    want = json.loads((robo / "kobo_data_query" / f"03_{uid}_data_json_q.json").read_text(encoding="utf-8"))
    assert q["count"] == want["count"] == 2 and q["results"] == want["results"]
    assert q["next"] == want["next"].replace("https://kobo.unhcr.org", demo_server.url)
    fields = get(
        demo_server,
        f"/api/v2/assets/{uid}/data.json",
        limit=1000,
        fields='["full_name","pet_yesno","__version__"]',
    ).json()
    want = json.loads((robo / "kobo_data_fields" / f"01_{uid}_data_json_q.json").read_text(encoding="utf-8"))
    assert fields["results"] == want["results"]


def test_recorded_versions_and_nested_repeats(demo_server, robo):
    uid = "aDMHypRASH2EuJdvKMx5Mi"
    versions = get(demo_server, f"/api/v2/assets/{uid}/versions/").json()["results"]
    assert [v["date_deployed"] is False for v in versions] == [False, False, False, True, True]
    one = get(demo_server, f"/api/v2/assets/{uid}/versions/vQMEt4Kdmnpm9ui24GKwKU/").json()
    assert one["content"]["survey"][-2]["$xpath"] == "v2/hh_sex"
    dm = get(demo_server, "/api/v2/assets/aANhxwX9S6BCsiYMgQj9kV/data/", limit=1000).json()["results"]
    assert dm[0]["demo"][0]["demo/hobbies_list"][0] == {"demo/hobbies_list/hobbies": "Basketball"}
    listing = get(demo_server, "/api/v2/assets/", q="asset_type:survey", limit=100).json()["results"]
    assert uid in {a["uid"] for a in listing}


def test_fixtures_can_be_switched_off_or_relocated(monkeypatch, tmp_path):
    monkeypatch.setenv("KOBO_ETL_FIXTURES_DIR", str(tmp_path / "absent"))
    with DemoKoboServer(households=10, include_fixtures=True) as srv:
        uids = [a["uid"] for a in get(srv, "/api/v2/assets/").json()["results"]]
    assert uids == [dd.HOUSEHOLD_UID, dd.DRAFT_UID]
