"""A prerendered demo server (`DemoKoboServer.prerender`) serves byte-for-byte the pages it served before."""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
import pytest
import requests

from connectors.demo_server import DemoKoboServer

HOUSEHOLDS = 300


def body(srv: DemoKoboServer, **params: object) -> bytes:
    """A data page's raw body, the server's own address blanked (links and attachment URLs carry it)."""
    resp = requests.get(f"{srv.url}/api/v2/assets/{srv.household_uid}/data/", params=params,
                        headers={"Authorization": f"Token {srv.token}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.content.replace(srv.url.encode(), b"http://demo")


def keyset(after: int) -> str:
    return json.dumps({"_id": {"$gt": after}})


@pytest.fixture
def servers() -> Iterator[tuple[DemoKoboServer, DemoKoboServer]]:
    """The same small server twice: as generated, and prerendered."""
    with DemoKoboServer(households=HOUSEHOLDS, seed=7, include_fixtures=False) as plain, \
            DemoKoboServer(households=HOUSEHOLDS, seed=7, include_fixtures=False) as fast:
        fast.prerender()
        yield plain, fast


def queries(srv: DemoKoboServer) -> list[dict[str, object]]:
    coll = srv._assets[srv.household_uid].collection
    assert coll is not None
    mid = coll._id_at(HOUSEHOLDS // 3)
    return [
        {"limit": 1000, "start": 0, "sort": '{"_id":1}'},
        {"limit": 100, "start": 0, "sort": '{"_id":1}', "query": keyset(mid)},
        {"limit": 100, "start": 50, "sort": '{"_id":1}', "query": keyset(mid)},
        {"limit": 120, "start": 0, "sort": '{"_id":-1}', "query": keyset(mid)},
        {"limit": 120, "start": 0, "sort": '{"_id":-1}',
         "query": json.dumps({"_id": {"$gt": mid, "$lte": coll._id_at(HOUSEHOLDS - 40)}})},
        {"limit": 50, "start": 10, "sort": '{"_submission_time":-1}'},
        {"limit": 100, "start": 0, "fields": '["_id","_submission_time"]', "query": keyset(mid)},
        {"limit": 100, "query": json.dumps({"_id": {"$in": [coll._id_at(3), coll._id_at(5)]}})},
        {"limit": 100, "query": json.dumps({"_validation_status.uid": {"$exists": False}})},
    ]


def test_prerendered_pages_equal_generated_ones_also_after_edits_and_deletes(servers):
    plain, fast = servers
    for q in queries(plain):
        assert body(fast, **q) == body(plain, **q), q
    coll = fast._assets[fast.household_uid].collection
    assert coll is not None
    edited, deleted = coll._id_at(150), coll._id_at(151)
    for srv in servers:
        new_uuid = srv.edit_submission(srv.household_uid, edited, {"consent": "no"})
        srv.delete_submission(srv.household_uid, deleted)
        srv.add_submissions(srv.household_uid, 2)  # beyond the prerendered records
    for q in queries(plain):
        assert body(fast, **q) == body(plain, **q), q
    rows = orjson.loads(body(fast, limit=1000, start=0))["results"]
    assert len(rows) == HOUSEHOLDS + 1
    ids = [r["_id"] for r in rows]
    assert deleted not in ids
    assert rows[ids.index(edited)]["_uuid"] == new_uuid and rows[ids.index(edited)]["consent"] == "no"


def test_only_plain_ranges_of_a_prerendered_collection_take_the_cached_path(servers):
    plain, fast = servers
    coll = fast._assets[fast.household_uid].collection
    plain_coll = plain._assets[plain.household_uid].collection
    assert coll is not None and plain_coll is not None
    mid = coll._id_at(100)
    assert coll.select_encoded({"_id": {"$gt": mid}}, [("_id", -1)], 0, 10) is not None
    assert coll.select_encoded({"_id": {"$in": [mid]}}, [("_id", 1)], 0, 10) is None
    assert coll.select_encoded({"consent": "yes"}, [("_id", 1)], 0, 10) is None
    assert plain_coll.select_encoded({}, [("_id", 1)], 0, 10) is None  # never without prerender()
    count, parts = coll.select_encoded({"_id": {"$gt": mid}}, [("_id", 1)], 0, 5) or (0, [])
    assert count == HOUSEHOLDS - 101
    assert [orjson.loads(p)["_id"] for p in parts] == [coll._id_at(i) for i in range(101, 106)]


def test_prerender_needs_a_started_server():
    with pytest.raises(RuntimeError, match="started"):
        DemoKoboServer(households=10, include_fixtures=False).prerender()
