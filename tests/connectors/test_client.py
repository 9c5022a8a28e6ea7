"""KoboClient against the demo KoBo server on loopback; `responses` only for faults it cannot make."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests
import responses

from config.errors import EtlError, Transient
from connectors import (
    BadPayload,
    BadRequest,
    FormNotDeployed,
    FormNotFound,
    InsecureUrl,
    KoboClient,
    KoboUnavailable,
    PermissionDenied,
    TokenRejected,
    error_for_status,
    redact_url,
)
from connectors.demo_server import DemoKoboServer
from connectors.errors import BadServerUrl

TOKEN = "demo-token-s3cr3t-value"
HOUSEHOLDS = 1500


class Sleeps(list):
    """Records backoff delays instead of sleeping, so fault tests run fast and assert on the policy."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def server() -> Iterator[DemoKoboServer]:
    with DemoKoboServer(households=HOUSEHOLDS, seed=7, token=TOKEN, include_fixtures=True, port=0) as srv:
        yield srv


@pytest.fixture
def srv(server: DemoKoboServer) -> Iterator[DemoKoboServer]:
    """The shared server with its faults cleared before and after each test."""
    server.set_faults()
    yield server
    server.set_faults()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(srv: DemoKoboServer, sleeps: Sleeps) -> KoboClient:
    return KoboClient(srv.url, srv.token, timeout=10, max_retry_s=60, max_attempts=5, backoff_s=0.05,
                      sleep=sleeps)


def all_ids(pages) -> list[int]:
    return [row["_id"] for page in pages for row in page.results]


def data_requests(srv: DemoKoboServer, since: int, uid: str, expect: int = 1) -> list[tuple]:
    """The data requests logged since `since`, waiting (up to 5 s) until `expect` of them are in.

    The demo server appends to its log after it has written the response, so the client can be a
    step ahead of the log; this waits for the log, it asserts nothing about time.
    """
    for _ in range(100):
        found = [r for r in srv.requests[since:] if r[1].rstrip("/").endswith(f"{uid}/data")]
        if len(found) >= expect:
            return found
        time.sleep(0.05)
    return found


def query_of(entry: tuple) -> dict:
    """The query dict of a request-log entry, whatever shape (dict of str or of lists) the server logs."""
    q = entry[2]
    if isinstance(q, str):
        q = parse_qs(q)
    return {k: (v[0] if isinstance(v, list) else v) for k, v in q.items()}


@pytest.fixture(scope="module")
def truth(server: DemoKoboServer) -> list[int]:
    """The server's own `_id`s, read with small pages (a different path through paging than the tests)."""
    c = KoboClient(server.url, server.token)
    ids = all_ids(c.iter_submission_pages(server.household_uid, page_size=137, fields=["_id"]))
    assert len(ids) == HOUSEHOLDS
    return ids


# ---------------------------------------------------------------------------- paging


def test_all_submissions_arrive_through_the_1000_cap(srv, client, truth):
    before = len(srv.requests)
    pages = list(client.iter_submission_pages(srv.household_uid))
    ids = all_ids(pages)
    assert ids == truth  # same ids, same order: no gaps, no duplicates
    assert len(set(ids)) == HOUSEHOLDS
    assert [len(p.results) for p in pages] == [1000, 500]
    assert [p.last_id for p in pages] == [truth[999], truth[-1]]
    assert pages[0].count == HOUSEHOLDS and pages[1].count == 500
    assert all(p.nbytes == len(p.raw) > 1000 for p in pages)
    assert orjson.loads(pages[1].raw)["results"] == pages[1].results  # the raw page replays the same rows
    reqs = data_requests(srv, before, srv.household_uid, expect=2)
    assert len(reqs) == 2  # the count on the last page says nothing remains: no extra empty request
    for entry in reqs:
        q = query_of(entry)
        assert q["limit"] == "1000" and q["start"] == "0" and q["format"] == "json"
        assert orjson.loads(q["sort"]) == {"_id": 1}
    assert "query" not in query_of(reqs[0])
    assert orjson.loads(query_of(reqs[1])["query"]) == {"_id": {"$gt": truth[999]}}


def test_small_pages_and_count(client, srv, truth):
    pages = list(client.iter_submission_pages(srv.household_uid, page_size=400))
    assert [len(p.results) for p in pages] == [400, 400, 400, 300]
    assert all_ids(pages) == truth
    assert client.count_submissions(srv.household_uid) == HOUSEHOLDS
    assert client.count_submissions(srv.household_uid, until_id=truth[399]) == 400  # the end-of-run count


def test_page_size_is_capped_at_1000(client, srv):
    before = len(srv.requests)
    first = next(client.iter_submission_pages(srv.household_uid, page_size=5000))
    assert len(first.results) == 1000
    assert query_of(data_requests(srv, before, srv.household_uid)[0])["limit"] == "1000"


def test_after_id_resumes_and_until_id_stops(client, srv, truth):
    resumed = all_ids(client.iter_submission_pages(srv.household_uid, after_id=truth[1099]))
    assert resumed == truth[1100:]
    window = all_ids(client.iter_submission_pages(srv.household_uid, after_id=truth[9], until_id=truth[29],
                                                  page_size=7))
    assert window == truth[10:30]
    assert list(client.iter_submission_pages(srv.household_uid, after_id=truth[-1])) == []


def test_fields_projection(client, srv, truth):
    pages = list(client.iter_submission_pages(srv.household_uid, fields=["_id", "_submission_time"]))
    rows = [row for p in pages for row in p.results]
    assert [r["_id"] for r in rows] == truth
    assert all("_submission_time" in r for r in rows)
    # KoBo adds _uuid, meta/rootUuid and _validation_status; nothing else comes back
    allowed = {"_id", "_submission_time", "_uuid", "meta/rootUuid", "_validation_status"}
    assert set().union(*(r.keys() for r in rows)) <= allowed


def test_ids_refetch_in_batches_of_500(client, srv, truth):
    wanted = [truth[5], truth[1200], truth[3], 10**12]  # unsorted, one id that does not exist
    pages = list(client.iter_submission_pages(srv.household_uid, ids=wanted))
    assert all_ids(pages) == sorted([truth[3], truth[5], truth[1200]])

    before = len(srv.requests)
    pages = list(client.iter_submission_pages(srv.household_uid, ids=truth[:1200], fields=["_id"]))
    assert all_ids(pages) == truth[:1200]
    assert [len(p.results) for p in pages] == [500, 500, 200]
    reqs = data_requests(srv, before, srv.household_uid, expect=3)
    assert [len(orjson.loads(query_of(r)["query"])["_id"]["$in"]) for r in reqs] == [500, 500, 200]


def test_keyset_is_stable_when_rows_are_deleted_and_added_mid_sync():
    with DemoKoboServer(households=1200, seed=11, token=TOKEN, port=0) as srv:
        client = KoboClient(srv.url, srv.token)
        uid = srv.household_uid
        before = [r["_id"] for p in client.iter_submission_pages(uid, fields=["_id"]) for r in p.results]
        pages = client.iter_submission_pages(uid, page_size=500, fields=["_id"])
        first = next(pages)
        srv.delete_submission(uid, before[10])  # behind the cursor: offset paging would skip a row
        srv.delete_submission(uid, before[700])  # ahead of the cursor
        srv.add_submissions(uid, 3)
        rest = all_ids(pages)
        got = all_ids([first]) + rest
        assert len(got) == len(set(got))
        assert got[:500] == before[:500]
        expected_tail = [i for i in before[500:] if i != before[700]]
        assert got[500:500 + len(expected_tail)] == expected_tail
        assert len(got) == 1200 - 1 + 3  # the row deleted behind the cursor was already received
        assert client.count_submissions(uid) == 1200 - 2 + 3


def test_concurrent_pages_match_sequential(client, srv, truth):
    pages = list(client.iter_submission_pages_concurrent(srv.household_uid, workers=3, page_size=250,
                                                         fields=["_id"]))
    assert all_ids(pages) == truth
    resumed = all_ids(client.iter_submission_pages_concurrent(srv.household_uid, after_id=truth[999],
                                                              workers=2, page_size=100))
    assert resumed == truth[1000:]


def test_concurrent_failure_names_the_last_page_the_caller_received(client, srv, truth):
    received = []
    with pytest.raises(KoboUnavailable) as info:
        for page in client.iter_submission_pages_concurrent(srv.household_uid, workers=3, page_size=200,
                                                            fields=["_id"]):
            received.append(page)
            if len(received) == 1:
                srv.set_faults(fail_every=1)  # slices already fetched still arrive, then the error
    assert received and info.value.last_id == received[-1].last_id
    srv.set_faults()
    rest = all_ids(client.iter_submission_pages(srv.household_uid, after_id=info.value.last_id))
    assert all_ids(received) + rest == truth


# ---------------------------------------------------------------------------- assets and versions


def test_assets_versions_and_asset_detail(client, srv):
    assets = list(client.iter_assets())
    uids = [a["uid"] for a in assets]
    assert srv.household_uid in uids
    assert len(uids) == len(set(uids))
    assert all(a.get("asset_type", "survey") == "survey" for a in assets)

    asset = client.get_asset(srv.household_uid)
    assert asset["uid"] == srv.household_uid
    versions = list(client.iter_deployed_versions(srv.household_uid))
    assert versions and all(v["date_deployed"] for v in versions)
    version = client.get_version(srv.household_uid, versions[0]["uid"])
    assert isinstance(version["content"]["survey"], list) and version["content"]["survey"]


# ---------------------------------------------------------------------------- errors the server gives


def test_bad_token_is_rejected(srv):
    client = KoboClient(srv.url, "not-the-token")
    with pytest.raises(TokenRejected) as info:
        client.count_submissions(srv.household_uid)
    assert info.value.status_code == 401
    assert info.value.form == srv.household_uid
    assert "KOBO_TOKEN" in str(info.value)
    with pytest.raises(TokenRejected):
        list(client.iter_assets())


def test_unknown_uid_is_form_not_found(client):
    with pytest.raises(FormNotFound) as info:
        list(client.iter_submission_pages("aDoesNotExist123"))
    assert info.value.status_code == 404 and info.value.form == "aDoesNotExist123"
    assert "cannot see it" in str(info.value)
    with pytest.raises(FormNotFound):
        client.get_asset("aDoesNotExist123")


def test_hidden_form_is_form_not_found(client, srv):
    assert srv.hidden_uid not in {a["uid"] for a in client.iter_assets()}
    with pytest.raises(FormNotFound) as info:
        client.count_submissions(srv.hidden_uid)
    assert info.value.form == srv.hidden_uid


def test_draft_form_is_not_deployed(client, srv):
    draft = srv.draft_uid
    listed = {a["uid"]: a for a in client.iter_assets()}
    assert listed[draft]["deployment_status"] == "draft"
    with pytest.raises(FormNotDeployed) as info:
        list(client.iter_submission_pages(draft))
    assert info.value.status_code == 400 and info.value.form == draft
    with pytest.raises(FormNotDeployed):
        client.count_submissions(draft)


def test_error_for_status_maps_each_status():
    assert isinstance(error_for_status(401, "Invalid token."), TokenRejected)
    assert isinstance(error_for_status(403, "You do not have permission"), PermissionDenied)
    assert isinstance(error_for_status(404, "Not found.", form="aX"), FormNotFound)
    # the form list is the only request about no form: its 404 means KOBO_URL is wrong, not the uid
    assert isinstance(error_for_status(404, "Not found."), BadServerUrl)
    assert isinstance(error_for_status(400, "The specified asset has not been deployed"), FormNotDeployed)
    err = error_for_status(400, "query: Value must be valid JSON.", form="aX")
    assert isinstance(err, BadRequest) and err.detail == "query: Value must be valid JSON."
    assert "Value must be valid JSON" in str(err) and "aX" in str(err)
    gone = error_for_status(410, "")
    assert isinstance(gone, BadRequest) and gone.status_code == 410


def test_http_to_a_non_loopback_host_is_refused():
    for url in ("http://kf.kobotoolbox.org", "http://10.0.0.7:8000/", "http://kobo.example.org/kobo"):
        with pytest.raises(InsecureUrl) as info:
            KoboClient(url, TOKEN)
        assert TOKEN not in str(info.value)
    with pytest.raises(BadServerUrl):
        KoboClient("ftp://kobo.example.org", TOKEN)
    assert KoboClient("http://kobo.example.org/", TOKEN, allow_insecure_http=True).base_url == (
        "http://kobo.example.org")
    for url in ("http://127.0.0.1:8000", "http://127.9.9.9", "http://localhost:5000/", "http://[::1]:8000"):
        assert KoboClient(url, TOKEN).base_url == url.rstrip("/")
    assert KoboClient("https://kf.kobotoolbox.org/", TOKEN).base_url == "https://kf.kobotoolbox.org"


def test_empty_token_is_refused_before_any_request():
    with pytest.raises(TokenRejected):
        KoboClient("https://kf.kobotoolbox.org", "  ")


# ---------------------------------------------------------------------------- faults the server injects


def test_5xx_every_third_request_is_retried_and_nothing_is_lost(client, srv, truth, sleeps):
    srv.set_faults(fail_every=3, fail_status=503)
    before = len(srv.requests)
    ids = all_ids(client.iter_submission_pages(srv.household_uid, page_size=300))
    assert ids == truth
    statuses = [r[3] for r in data_requests(srv, before, srv.household_uid, expect=7)]
    assert statuses.count(503) == 2 and statuses.count(200) == 5  # requests 3 and 6 failed
    assert len(sleeps) == statuses.count(503)
    assert all(0 < s <= 0.05 for s in sleeps)  # first-attempt backoff: half fixed, half jitter


def test_500_and_502_are_retried(client, srv, truth):
    for status in (500, 502, 504):
        srv.set_faults(fail_every=2, fail_status=status)
        assert all_ids(client.iter_submission_pages(srv.household_uid, page_size=1000)) == truth


def test_429_honours_retry_after(client, srv, truth, sleeps):
    srv.set_faults(rate_limit_every=2, retry_after=7)
    before = len(srv.requests)
    ids = all_ids(client.iter_submission_pages(srv.household_uid, page_size=500))
    assert ids == truth
    # 3 pages of 500 take 5 requests: the 2nd and 4th are throttled
    limited = [r for r in data_requests(srv, before, srv.household_uid, expect=5) if r[3] == 429]
    assert len(limited) == 2 and sleeps == [7.0, 7.0]


def test_truncated_body_is_retried(client, srv, truth, sleeps):
    srv.set_faults(truncate_next=1)
    assert all_ids(client.iter_submission_pages(srv.household_uid)) == truth
    assert len(sleeps) == 1


def test_short_body_with_matching_length_is_retried(client, srv, truth, sleeps):
    srv.set_faults(truncate_next=2, truncate_mode="short")  # complete-looking but invalid JSON
    assert all_ids(client.iter_submission_pages(srv.household_uid)) == truth
    assert len(sleeps) == 2


def test_non_json_body_is_retried(client, srv, truth, sleeps):
    srv.set_faults(non_json_next=2)
    assert all_ids(client.iter_submission_pages(srv.household_uid)) == truth
    assert len(sleeps) == 2


def test_truncated_bodies_that_persist_raise_bad_payload_with_the_last_good_id(client, srv, truth):
    pages = client.iter_submission_pages(srv.household_uid, page_size=500)
    first = next(pages)
    srv.set_faults(truncate_next=10)
    with pytest.raises(BadPayload) as info:
        next(pages)
    err = info.value
    assert err.form == srv.household_uid and err.last_id == first.last_id == truth[499]
    assert f"last good _id={truth[499]}" in str(err) and "re-run" in str(err)


def test_retries_exhausted_raise_kobo_unavailable(client, srv, truth, sleeps):
    pages = client.iter_submission_pages(srv.household_uid, page_size=1000)
    first = next(pages)
    srv.set_faults(fail_every=1, fail_status=503)
    with pytest.raises(KoboUnavailable) as info:
        next(pages)
    err = info.value
    assert err.form == srv.household_uid and err.last_id == first.last_id == truth[999]
    assert err.status_code == 503 and err.attempts == 5 and len(sleeps) == 4
    assert sleeps == sorted(sleeps) and max(sleeps) <= 0.05 * 2**3  # exponential with jitter
    msg = str(err)
    assert srv.household_uid in msg and f"_id={truth[999]}" in msg and "re-run" in msg
    # resuming from the error's last_id once the server recovers gives exactly the rest
    srv.set_faults()
    rest = all_ids(client.iter_submission_pages(srv.household_uid, after_id=err.last_id))
    assert all_ids([first]) + rest == truth


def test_retry_time_budget_bounds_retries(srv, sleeps):
    client = KoboClient(srv.url, srv.token, max_attempts=50, max_retry_s=1, backoff_s=0.4, sleep=sleeps)
    srv.set_faults(rate_limit_every=1, retry_after=30)
    with pytest.raises(KoboUnavailable) as info:
        client.count_submissions(srv.household_uid)
    assert info.value.attempts == 1 and sleeps == []  # waiting 30 s would break the 1 s budget
    assert "budget" in str(info.value) and isinstance(info.value, Transient)


# ---------------------------------------------------------------------------- secrets stay out


def test_token_never_in_logs_or_errors(srv, caplog, sleeps):
    caplog.set_level(logging.DEBUG)
    client = KoboClient(srv.url, srv.token, max_attempts=2, backoff_s=0.01, sleep=sleeps)
    errors: list[Exception] = []
    list(client.iter_submission_pages(srv.household_uid, after_id=100, fields=["_id"]))
    srv.set_faults(fail_every=1)
    try:
        client.count_submissions(srv.household_uid)
    except KoboUnavailable as exc:
        errors.append(exc)
    srv.set_faults(truncate_next=5)
    try:
        client.count_submissions(srv.household_uid)
    except (BadPayload, KoboUnavailable) as exc:
        errors.append(exc)
    srv.set_faults()
    for bad in (KoboClient(srv.url, TOKEN + "x"), client):
        try:
            list(bad.iter_submission_pages("aDoesNotExist123"))
        except (TokenRejected, FormNotFound) as exc:
            errors.append(exc)
    assert len(errors) == 4
    http_lines = [r.getMessage() for r in caplog.records if r.name == "kobo_etl.http"]
    assert any(f"/api/v2/assets/{srv.household_uid}/data/" in line and " 200 " in line for line in http_lines)
    assert all("$gt" not in line for line in http_lines)  # query strings are redacted
    assert TOKEN not in caplog.text
    for exc in errors:
        assert TOKEN not in str(exc) and TOKEN not in repr(exc)
        assert "$gt" not in str(exc) and "query=" not in str(exc)
    assert TOKEN not in repr(client)


def test_redact_url():
    url = "https://user:pw@kf.kobotoolbox.org/api/v2/assets/aX/data/?format=json&limit=1000&query=%7B%7D&token=t"
    assert redact_url(url) == (
        "https://kf.kobotoolbox.org/api/v2/assets/aX/data/?format=json&limit=1000&query=***&token=***")
    assert redact_url("http://127.0.0.1:8000/api/v2/assets/") == "http://127.0.0.1:8000/api/v2/assets/"


# ------------------------------------------------------------------ faults only `responses` can make

BASE = "https://kobo.test"
DATA = f"{BASE}/api/v2/assets/aX/data/"


def _page(ids: list[int], count: int, nxt: str | None = None) -> dict:
    return {"count": count, "next": nxt, "previous": None, "results": [{"_id": i} for i in ids]}


@pytest.fixture
def mocked(sleeps: Sleeps) -> Iterator[tuple[responses.RequestsMock, KoboClient]]:
    with responses.RequestsMock() as rsps:
        client = KoboClient(BASE, TOKEN, max_attempts=3, backoff_s=0.01, timeout=2, sleep=sleeps)
        yield rsps, client


def test_connection_reset_then_success(mocked, sleeps):
    rsps, client = mocked
    rsps.get(DATA, body=requests.exceptions.ConnectionError("Connection reset by peer"))
    rsps.get(DATA, json=_page([1, 2, 3], 3))
    pages = list(client.iter_submission_pages("aX"))
    assert all_ids(pages) == [1, 2, 3] and len(sleeps) == 1
    sent = rsps.calls[-1].request
    assert sent.headers["Authorization"] == f"Token {TOKEN}"
    assert sent.headers["Accept"] == "application/json"


def test_cut_connection_mid_body_becomes_bad_payload(mocked, sleeps):
    rsps, client = mocked
    for _ in range(3):
        rsps.get(DATA, body=requests.exceptions.ChunkedEncodingError("IncompleteRead(100 bytes read)"))
    with pytest.raises(BadPayload) as info:
        client.count_submissions("aX")
    assert "cut short" in str(info.value) and len(sleeps) == 2
    assert isinstance(info.value, EtlError) and not isinstance(info.value, Transient)


def test_timeouts_exhaust_into_kobo_unavailable(mocked):
    rsps, client = mocked
    for _ in range(3):
        rsps.get(DATA, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(KoboUnavailable) as info:
        list(client.iter_submission_pages("aX", after_id=41))
    err = info.value
    assert err.attempts == 3 and err.last_id == 41 and err.form == "aX" and "timed out" in str(err)
    assert isinstance(err.__cause__, requests.exceptions.ReadTimeout)


def test_short_page_is_bad_payload(mocked):
    rsps, client = mocked
    for _ in range(3):  # the server promises 5 rows but sends 3, every time
        rsps.get(DATA, json=_page([11, 12, 13], 5))
    with pytest.raises(BadPayload) as info:
        list(client.iter_submission_pages("aX", after_id=10))
    assert info.value.last_id == 10 and "3 rows where 5 were promised" in str(info.value)


def test_rows_out_of_order_or_behind_the_cursor_are_bad_payload(mocked):
    rsps, client = mocked
    for _ in range(3):
        rsps.get(DATA, json=_page([12, 11], 2))
    with pytest.raises(BadPayload, match="strictly increasing"):
        list(client.iter_submission_pages("aX", after_id=10))
    for _ in range(3):
        rsps.get(DATA, json=_page([9, 12], 2))
    with pytest.raises(BadPayload, match="not above 10"):
        list(client.iter_submission_pages("aX", after_id=10))
    for _ in range(3):
        rsps.get(DATA, json={"count": 1, "results": {"_id": 1}})
    with pytest.raises(BadPayload, match="not a list"):
        list(client.iter_submission_pages("aX"))


def test_server_with_a_lower_page_cap_is_followed(mocked):
    rsps, client = mocked
    rows = list(range(1, 8))

    def capped(request):  # an old/odd server: capped at 3 rows, says so in `next`
        q = parse_qs(urlsplit(request.url).query)
        after = orjson.loads(q["query"][0])["_id"]["$gt"] if "query" in q else 0
        rest = [i for i in rows if i > after]
        nxt = f"{DATA}?limit=3&start=3" if len(rest) > 3 else None
        return 200, {}, orjson.dumps(_page(rest[:3], len(rest), nxt))

    rsps.add_callback(responses.GET, DATA, callback=capped)
    pages = list(client.iter_submission_pages("aX"))
    assert [[r["_id"] for r in p.results] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]


def test_bad_request_shows_the_server_detail_not_the_query(mocked):
    rsps, client = mocked
    rsps.get(DATA, status=400, json={"query": "Value must be valid JSON."})
    with pytest.raises(BadRequest) as info:
        list(client.iter_submission_pages("aX", after_id=5))
    assert "Value must be valid JSON." in str(info.value)
    assert "$gt" not in str(info.value) and "query=" not in str(info.value)


def test_asset_list_is_paged_by_offset_and_versions_filtered(mocked):
    rsps, client = mocked
    assets = [{"uid": f"a{i:03d}", "asset_type": "survey"} for i in range(130)]

    def asset_page(request):
        q = parse_qs(urlsplit(request.url).query)
        assert q["q"] == ["asset_type:survey"] and q["limit"] == ["100"]
        start = int(q["start"][0])
        nxt = f"{BASE}/api/v2/assets/?limit=100&start={start + 100}" if start + 100 < 130 else None
        return 200, {}, orjson.dumps({"count": 130, "next": nxt, "results": assets[start:start + 100]})

    rsps.add_callback(responses.GET, f"{BASE}/api/v2/assets/", callback=asset_page)
    assert [a["uid"] for a in client.iter_assets()] == [a["uid"] for a in assets]
    rsps.get(f"{BASE}/api/v2/assets/aX/versions/", json={"count": 3, "next": None, "results": [
        {"uid": "v3", "date_deployed": False}, {"uid": "v2", "date_deployed": "2026-05-01T10:00:00Z"},
        {"uid": "v1", "date_deployed": "2026-01-01T10:00:00Z"}]})
    assert [v["uid"] for v in client.iter_deployed_versions("aX")] == ["v2", "v1"]


def test_a_page_body_is_read_whole_on_a_kept_alive_connection(srv, sleeps):
    """Bodies are read in one call (not `Response.content`'s 10 KiB pieces) and the connection goes back to
    the pool for the next page: one connection for every page of a sequential download."""
    session = requests.Session()
    client = KoboClient(srv.url, srv.token, timeout=10, backoff_s=0.05, sleep=sleeps, session=session)
    pages = list(client.iter_submission_pages(srv.household_uid, page_size=500))
    assert len(pages) == 3 and sum(len(p.results) for p in pages) == HOUSEHOLDS
    assert [orjson.loads(p.raw)["results"] == p.results for p in pages] == [True] * 3
    manager = session.get_adapter(srv.url).poolmanager
    pools = [manager.pools[key] for key in manager.pools.keys()]
    assert len(pools) == 1 and pools[0].num_connections == 1
    assert pools[0].num_requests >= 3


def test_a_body_cut_short_raises_requests_own_error(srv):
    """A body that ends before its Content-Length raises what `Response.content` would raise, so the client
    retries it as a truncated body (not as a connection failure)."""
    from connectors.client import _whole_body

    srv.set_faults(truncate_next=1)
    resp = requests.get(f"{srv.url}/api/v2/assets/{srv.household_uid}/data/?format=json",
                        headers={"Authorization": f"Token {srv.token}"}, stream=True, timeout=10)
    assert resp.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _whole_body(resp)
