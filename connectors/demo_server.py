"""A KoBo (KPI) compatible HTTP server on loopback, for tests, benchmarks and the demo.

It reproduces the wire format of `/work/shared/kobo-api.md` sections 1-5: token auth (401/404 rules), the
asset list, asset detail, versions, and the data endpoint with `limit/start/query/sort/fields` and DRF-style
`next`/`previous` links, and the project history (`/history/`, 4.3 and 6.3) with the entries the test hooks
and data reads leave. Submissions of the bundled household survey are generated per page on demand
(`connectors.demo_data`); added/edited/deleted records are kept as small overlays. Recorded real assets from
`shared/fixtures/robotoolbox` are served as recorded when present. Faults (latency, 5xx, 429, truncated
bodies, HTML instead of JSON) are injected with `set_faults`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import orjson

from connectors import demo_data as dd

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_RECORDED_HOSTS = ("https://kobo.unhcr.org", "https://kobo-trn.unhcr.org")
_NOT_FOUND = {"detail": "Not found."}
_MISSING = object()


class RequestLogEntry(NamedTuple):
    """One request the server answered (the token is never logged)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    nbytes: int


@dataclass
class _Faults:
    latency_ms: int = 0
    fail_every: int = 0
    fail_status: int = 503
    rate_limit_every: int = 0
    retry_after: int = 1
    truncate_next: int = 0
    truncate_mode: str = "drop"
    non_json_next: int = 0
    non_json_status: int = 200


class _BadParam(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(param)
        self.body = {param: message}


# --------------------------------------------------------------------------------------------------------
# Mongo-like filtering (the subset KPI clients use), evaluated on the served JSON documents.

_WHITELIST = {
    "$or",
    "$and",
    "$in",
    "$nin",
    "$not",
    "$exists",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$regex",
    "$options",
    "$all",
    "$elemMatch",
    "$ne",
    "$expr",
    "$ifNull",
}


def _encode_record(rec: dict[str, Any]) -> bytes:
    """A submission as KPI writes it. orjson refuses what Python's json writes as valid JSON (an unpaired
    surrogate as a `\\udXXX` escape, an integer beyond 64 bits); such a record, put in by a test through
    `edit_submission`, is written the standard library's way, as KPI would."""
    try:
        return orjson.dumps(rec)
    except orjson.JSONEncodeError:
        return json.dumps(rec, separators=(",", ":")).encode()


def _comparable(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, num) and isinstance(b, num)) or (isinstance(a, str) and isinstance(b, str))


def _lookup(doc: dict[str, Any], key: str) -> Any:
    if key in doc:
        return doc[key]
    # KPI passes dotted paths through only below _validation_status; other dots are escaped (never match)
    if key.startswith("_validation_status."):
        cur: Any = doc.get("_validation_status", _MISSING)
        for part in key.split(".")[1:]:
            cur = cur.get(part, _MISSING) if isinstance(cur, dict) else _MISSING
        return cur
    return _MISSING


def _cond_matches(value: Any, cond: Any) -> bool:
    if isinstance(cond, dict) and cond and all(isinstance(k, str) and k.startswith("$") for k in cond):
        return all(_op_matches(value, op, arg, cond) for op, arg in cond.items())
    if value is _MISSING:
        return cond is None
    if isinstance(value, list) and not isinstance(cond, list):
        return cond in value
    return value == cond


def _op_matches(value: Any, op: str, arg: Any, cond: dict[str, Any]) -> bool:
    if op not in _WHITELIST:
        return False  # KPI base64-escapes unknown operators into field names: they never match
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if value is _MISSING or not _comparable(value, arg):
            return False
        return {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]
    if op == "$in":
        if not isinstance(arg, list):
            raise _BadParam("query", "$in needs an array")
        return value is not _MISSING and (
            value in arg or (isinstance(value, list) and any(v in arg for v in value))
        )
    if op == "$nin":
        return not _op_matches(value, "$in", arg, cond)
    if op == "$ne":
        return not _cond_matches(value, arg)
    if op == "$exists":
        return (value is not _MISSING) == bool(arg)
    if op == "$not":
        return not _cond_matches(value, arg)
    if op == "$regex":
        flags = re.IGNORECASE if "i" in str(cond.get("$options", "")) else 0
        return isinstance(value, str) and re.search(str(arg), value, flags) is not None
    if op == "$options":
        return True
    if op == "$all":
        if not isinstance(arg, list):
            raise _BadParam("query", "$all needs an array")
        return isinstance(value, list) and all(a in value for a in arg)
    if op == "$elemMatch":
        return isinstance(value, list) and any(isinstance(v, dict) and _matches(v, arg) for v in value)
    return False  # $expr / $ifNull: accepted by KPI, not emulated here


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, cond in query.items():
        if key == "$and":
            if not all(_matches(doc, q) for q in cond):
                return False
        elif key == "$or":
            if not any(_matches(doc, q) for q in cond):
                return False
        elif key.startswith("$"):
            return False
        else:
            if key == "_id" and isinstance(cond, str) and cond.isdigit():
                cond = int(cond)  # KPI converts a top-level scalar _id to int (not values under operators)
            if not _cond_matches(_lookup(doc, key), cond):
                return False
    return True


# --------------------------------------------------------------------------------------------------------
# Collections: a virtual, _id-sorted sequence of submissions plus overlays.


class _Collection:
    """Submissions of one asset: base records addressed by index, sorted by `_id`, plus overlays."""

    def __init__(
        self,
        id_at: Callable[[int], int],
        record_at: Callable[[int], dict[str, Any]],
        size: int,
        time_at: Callable[[int], str] | None,
    ) -> None:
        self._id_at = id_at
        self._record_at = record_at
        self.size = size
        self._time_at = time_at  # set only when _submission_time is non-decreasing with the index
        self.edited: dict[int, dict[str, Any]] = {}
        self.deleted_idx: list[int] = []  # sorted base indices
        self._deleted_set: set[int] = set()
        self._roots: dict[Any, list[int]] = {}  # base `meta/rootUuid` → `_id`s, built on first use
        self._rooted = 0  # base records indexed so far
        self._encoded: list[bytes] = []  # base records as orjson bytes by index, once `prerender` ran

    # -- addressing
    def index_of(self, _id: int) -> int | None:
        i = self._lower_bound(lambda k: self._id_at(k) >= _id)
        return i if i < self.size and self._id_at(i) == _id and i not in self._deleted_set else None

    def _lower_bound(self, pred: Callable[[int], bool], lo: int = 0, hi: int | None = None) -> int:
        hi = self.size if hi is None else hi
        while lo < hi:
            mid = (lo + hi) // 2
            if pred(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def record(self, i: int) -> dict[str, Any]:
        _id = self._id_at(i)
        rec = self.edited.get(_id)
        return rec if rec is not None else self._record_at(i)

    def prerender(self) -> None:
        """Encode every base record once, so plain range pages join bytes instead of generating rows."""
        self._encoded = [_encode_record(self._record_at(i)) for i in range(self.size)]

    def encoded(self, i: int) -> bytes:
        """`record(i)` as orjson bytes: edits win over the cache; records appended later are encoded here."""
        rec = self.edited.get(self._id_at(i))
        if rec is None and i < len(self._encoded):
            return self._encoded[i]
        return _encode_record(rec if rec is not None else self._record_at(i))

    def alive_between(self, a: int, b: int) -> int:
        return (b - a) - (bisect_left(self.deleted_idx, b) - bisect_left(self.deleted_idx, a))

    def nth_alive(self, a: int, p: int) -> int:
        """Index of the p-th (0-based) non-deleted record at or after index a."""
        idx = a + p
        while True:
            d = bisect_right(self.deleted_idx, idx) - bisect_left(self.deleted_idx, a)
            nxt = a + p + d
            if nxt == idx and idx not in self._deleted_set:
                return idx
            idx = nxt if nxt != idx else idx + 1

    def delete(self, i: int) -> None:
        if i not in self._deleted_set:
            self._deleted_set.add(i)
            insort(self.deleted_idx, i)

    def undelete(self, i: int) -> None:
        if i in self._deleted_set:
            self._deleted_set.discard(i)
            self.deleted_idx.remove(i)

    def ids_with_roots(self, roots: set[Any]) -> set[int]:
        """`_id`s whose record has one of `roots` as `meta/rootUuid`, deleted ones included (the history
        re-fetch asks for ~100 at a time: an index, extended after appends, beats generating every record)."""
        while self._rooted < self.size:
            root = self._record_at(self._rooted).get("meta/rootUuid")
            self._roots.setdefault(root, []).append(self._id_at(self._rooted))
            self._rooted += 1
        ids = {i for r in roots for i in self._roots.get(r, ())}
        return ids | {i for i, rec in self.edited.items() if rec.get("meta/rootUuid") in roots}

    # -- querying
    def select(
        self, query: dict[str, Any], sort: list[tuple[str, int]], start: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """Return (count of matches, the page of records) like KPI's Mongo query."""
        plan = self._plan(query)
        page = self._range_page(plan, sort, start, limit)
        if page is not None:
            return page[0], [self.record(i) for i in page[1]]
        a, b, residual, id_set = plan
        if id_set is not None:
            idxs = sorted(i for i in (self.index_of(x) for x in id_set) if i is not None and a <= i < b)
        else:  # a residual filter or a sort the index does not follow: match and sort every row
            idxs = [i for i in range(a, b) if i not in self._deleted_set]
        rows = [r for r in (self.record(i) for i in idxs) if _matches(r, residual)]
        return self._sorted_page(rows, sort, start, limit)

    def select_encoded(
        self, query: dict[str, Any], sort: list[tuple[str, int]], start: int, limit: int
    ) -> tuple[int, list[bytes]] | None:
        """`select` with the records as orjson bytes, when the collection is prerendered and the query is
        a plain range (else None: `select` serves it, generating the rows)."""
        if not self._encoded:
            return None
        page = self._range_page(self._plan(query), sort, start, limit)
        return None if page is None else (page[0], [self.encoded(i) for i in page[1]])

    def _range_page(
        self, plan: tuple[int, int, dict[str, Any], set[int] | None], sort: list[tuple[str, int]],
        start: int, limit: int,
    ) -> tuple[int, list[int]] | None:
        """(count, the page's base indices) when the planned query is an index range and the sort follows
        the index (`_id`, or `_submission_time` when it grows with it); None when rows must be matched."""
        a, b, residual, id_set = plan
        fast_sort = not sort or (sort[0][0] == "_id" or (sort[0][0] == "_submission_time" and self._time_at))
        if id_set is not None or residual or not fast_sort:
            return None
        desc = bool(sort) and sort[0][1] < 0
        count = self.alive_between(a, b)
        return count, [self.nth_alive(a, count - 1 - q if desc else q)
                       for q in range(start, min(start + limit, count))]

    @staticmethod
    def _sorted_page(
        rows: list[dict[str, Any]], sort: list[tuple[str, int]], start: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        for key, direction in reversed(sort):
            present = [r for r in rows if key in r]
            absent = [r for r in rows if key not in r]
            present.sort(key=_sort_key(key), reverse=direction < 0)
            rows = absent + present if direction > 0 else present + absent  # Mongo: missing sorts lowest
        return len(rows), rows[start : start + limit]

    def _plan(self, query: dict[str, Any]) -> tuple[int, int, dict[str, Any], set[int] | None]:
        """Turn `_id`/`_submission_time` range terms into an index range; return the rest as residual."""
        terms: list[tuple[str, Any]] = []

        def flatten(q: dict[str, Any]) -> None:
            for k, v in q.items():
                if k == "$and" and isinstance(v, list) and all(isinstance(x, dict) for x in v):
                    for x in v:
                        flatten(x)
                else:
                    terms.append((k, v))

        flatten(query)
        a, b = 0, self.size
        residual: dict[str, Any] = {}
        extra: list[dict[str, Any]] = []
        id_set: set[int] | None = None
        for key, cond in terms:
            handled = False
            if key == "_id":
                if isinstance(cond, int | str) and not isinstance(cond, bool):
                    try:
                        v = int(cond)
                    except ValueError:
                        v = None
                    if v is not None:
                        id_set = {v} if id_set is None else id_set & {v}
                        handled = True
                elif isinstance(cond, dict) and cond and set(cond) <= {"$gt", "$gte", "$lt", "$lte", "$in"}:
                    handled = True
                    for op, arg in cond.items():
                        if op == "$in":
                            if not isinstance(arg, list):
                                raise _BadParam("query", "$in needs an array")
                            ints = {x for x in arg if isinstance(x, int) and not isinstance(x, bool)}
                            id_set = ints if id_set is None else id_set & ints
                        elif not isinstance(arg, int | float) or isinstance(arg, bool):
                            a, b = 0, 0  # KPI does not convert values under operators: "100" never matches
                        else:
                            a, b = self._narrow(a, b, op, arg, self._id_at)
            elif key == "meta/rootUuid" and (
                isinstance(cond, str) or (isinstance(cond, dict) and set(cond) == {"$in"})
            ):
                # narrowed by the index; the term stays in the residual, which checks each row found
                roots = {cond} if isinstance(cond, str) else cond["$in"]
                if not isinstance(roots, list | set):
                    raise _BadParam("query", "$in needs an array")
                found = self.ids_with_roots({r for r in roots if isinstance(r, str)})
                id_set = found if id_set is None else id_set & found
            elif (
                key == "_submission_time"
                and self._time_at is not None
                and isinstance(cond, dict)
                and cond
                and set(cond) <= {"$gt", "$gte", "$lt", "$lte"}
            ):
                handled = True
                for op, arg in cond.items():
                    if not isinstance(arg, str):
                        a, b = 0, 0
                    else:
                        a, b = self._narrow(a, b, op, arg, self._time_at)
            if not handled:
                if key in residual:
                    extra.append({key: cond})
                else:
                    residual[key] = cond
        if extra:
            residual = {"$and": [residual, *extra]}
        return a, max(a, b), residual, id_set

    def _narrow(self, a: int, b: int, op: str, arg: Any, key_at: Callable[[int], Any]) -> tuple[int, int]:
        if a >= b:
            return a, b
        if op == "$gt":
            return max(a, self._lower_bound(lambda k: key_at(k) > arg, a, b)), b
        if op == "$gte":
            return max(a, self._lower_bound(lambda k: key_at(k) >= arg, a, b)), b
        if op == "$lt":
            return a, min(b, self._lower_bound(lambda k: key_at(k) >= arg, a, b))
        return a, min(b, self._lower_bound(lambda k: key_at(k) > arg, a, b))  # $lte


class _ListCollection(_Collection):
    """A collection over an in-memory list of records (recorded fixtures, appended clones)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = sorted(records, key=lambda r: r["_id"])
        super().__init__(lambda i: self.records[i]["_id"], lambda i: self.records[i], len(self.records), None)

    def append(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        self.size = len(self.records)


# --------------------------------------------------------------------------------------------------------
# Assets


@dataclass
class _Asset:
    uid: str
    detail: dict[str, Any]
    versions: list[dict[str, Any]]  # newest first, each with "content"
    collection: _Collection | None  # None: not deployed
    visible: bool = True
    generated: dict[str, Any] = field(default_factory=dict)  # extra info for generated assets

    def list_item(self) -> dict[str, Any]:
        keys = [
            "url",
            "date_created",
            "date_modified",
            "date_deployed",
            "owner",
            "summary",
            "owner__username",
            "parent",
            "uid",
            "tag_string",
            "settings",
            "kind",
            "name",
            "asset_type",
            "version_id",
            "has_deployment",
            "deployed_version_id",
            "deployment__active",
            "deployment__submission_count",
            "deployment__last_submission_time",
            "deployment__encrypted",
            "deployment__uuid",
            "deployment_status",
            "permissions",
            "export_settings",
            "downloads",
            "data",
            "status",
        ]
        return {k: self.detail[k] for k in keys if k in self.detail}


def _version_item(base: str, asset_uid: str, v: dict[str, Any], with_content: bool) -> dict[str, Any]:
    item = {
        "uid": v["uid"],
        "url": f"{base}/api/v2/assets/{asset_uid}/versions/{v['uid']}/",
        "content_hash": v["content_hash"],
        "date_deployed": v["date_deployed"],
        "date_modified": v["date_modified"],
    }
    if with_content:
        item["content"] = v["content"]
    return item


def _content_hash(content: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha1(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _generated_detail(
    base: str,
    uid: str,
    name: str,
    versions: list[dict[str, Any]],
    *,
    deployed: bool,
    formhub_uuid: str | None,
    submission_count: int,
    last_submission: str | None,
    date_created: str,
) -> dict[str, Any]:
    current = versions[0]
    deployed_versions = [v for v in versions if v["date_deployed"]]
    content = current["content"]
    languages = [t for t in content.get("translations", []) if t]
    a_url = f"{base}/api/v2/assets/{uid}/"
    return {
        "url": a_url,
        "owner": f"{base}/api/v2/users/demo_owner/",
        "owner__username": "demo_owner",
        "parent": None,
        "settings": {
            "sector": {"label": "Food Security", "value": "Food Security"},
            "country": [{"label": "Kenya", "value": "KEN"}],
            "description": "Demo data generated by kobo-etl",
            "organization": "kobo-etl demo",
            "country_codes": ["KEN"],
        },
        "asset_type": "survey",
        "files": [],
        "summary": {
            "geo": any(r.get("type") == "geopoint" for r in content["survey"]),
            "labels": [r["label"][0] for r in content["survey"] if r.get("label")][:5],
            "columns": ["name", "type", "label", "required", "relevant", "constraint"],
            "lock_all": False,
            "lock_any": False,
            "languages": languages or [None],
            "row_count": len(content["survey"]),
            "default_translation": languages[0] if languages else None,
        },
        "date_created": date_created,
        "date_modified": current["date_modified"],
        "date_deployed": deployed_versions[0]["date_deployed"] if deployed_versions else None,
        "version_id": current["uid"],
        "version__content_hash": current["content_hash"],
        "version_count": len(versions),
        "has_deployment": deployed,
        "deployed_version_id": deployed_versions[0]["uid"] if deployed_versions else None,
        "deployed_versions": {
            "count": len(deployed_versions),
            "next": None,
            "previous": None,
            "results": [_version_item(base, uid, v, False) for v in deployed_versions],
        },
        "deployment__links": {},
        "deployment__active": deployed,
        "deployment__data_download_links": {},
        "deployment__submission_count": submission_count if deployed else 0,
        "deployment__last_submission_time": last_submission,
        "deployment__encrypted": False,
        "deployment__uuid": formhub_uuid,
        "deployment_status": "deployed" if deployed else "draft",
        "content": content,
        "downloads": [
            {"format": "xls", "url": f"{base}/api/v2/assets/{uid}.xls"},
            {"format": "xml", "url": f"{base}/api/v2/assets/{uid}.xml"},
        ],
        "xform_link": f"{a_url}xform/",
        "xls_link": f"{a_url}xls/",
        "tag_string": "",
        "uid": uid,
        "kind": "asset",
        "name": name,
        "permissions": [],
        "export_settings": [],
        "data": f"{a_url}data/",
        "status": "private",
        "advanced_features": {},
    }


def fixtures_dir() -> Path:
    """Where the recorded KoBo fixtures live (env `KOBO_ETL_FIXTURES_DIR` overrides)."""
    env = os.environ.get("KOBO_ETL_FIXTURES_DIR")
    if env:
        return Path(env)
    import connectors

    return Path(connectors.__file__).resolve().parents[1].parent / "shared" / "fixtures"


def _load_fixture_assets(base: str, root: Path) -> dict[str, _Asset]:
    """Load recorded assets from `<root>/robotoolbox`, rewriting the recorded host to `base`."""
    rob = root / "robotoolbox"
    index_path = rob / "index.json"
    if not index_path.is_file():
        return {}
    index = json.loads(index_path.read_text(encoding="utf-8"))

    def load(cassette: str, fname: str) -> Any:
        text = (rob / cassette.removesuffix(".yml") / fname).read_text(encoding="utf-8")
        for host in _RECORDED_HOSTS:
            text = text.replace(host, base)
        return json.loads(text)

    details: dict[str, dict[str, Any]] = {}
    version_lists: dict[str, list[dict[str, Any]]] = {}
    version_contents: dict[str, dict[str, dict[str, Any]]] = {}
    data: dict[str, list[dict[str, Any]]] = {}
    pat = re.compile(r"/api/v2/assets/(?P<uid>a\w+?)(?P<rest>/.*)?$")
    for cassette, entries in index.items():
        for e in entries:
            if not e.get("file") or e.get("status") != 200 or e.get("method") != "GET":
                continue
            parts = urlsplit(e["uri"])
            m = pat.match(parts.path)
            if not m:
                continue
            uid, rest = m.group("uid"), (m.group("rest") or "").rstrip("/")
            try:
                body = load(cassette, e["file"])
            except (OSError, ValueError):
                continue
            if rest == "":
                details[uid] = body
            elif rest == "/versions":
                version_lists[uid] = body["results"]
            elif rest.startswith("/versions/"):
                version_contents.setdefault(uid, {})[rest.split("/")[2]] = body
            elif rest in ("/data", "/data.json"):
                q = parse_qs(parts.query)
                if "query" in q or "fields" in q:
                    continue  # keep the unfiltered recording only
                rows = body.get("results", [])
                if len(rows) >= len(data.get(uid, [])):
                    data[uid] = rows
    assets: dict[str, _Asset] = {}
    for uid, detail in details.items():
        detail.setdefault("data", f"{base}/api/v2/assets/{uid}/data/")
        versions = []
        for item in version_lists.get(uid, []):
            full = version_contents.get(uid, {}).get(item["uid"])
            v = dict(item)
            if full is not None and "content" in full:
                v["content"] = full["content"]
            elif item["uid"] == detail.get("version_id") and "content" in detail:
                v["content"] = detail["content"]
            versions.append(v)
        deployed = bool(detail.get("has_deployment")) and detail.get("asset_type") == "survey"
        coll = _ListCollection([copy.deepcopy(r) for r in data.get(uid, [])]) if deployed else None
        assets[uid] = _Asset(uid=uid, detail=detail, versions=versions, collection=coll)
    return assets


# --------------------------------------------------------------------------------------------------------
# The server


class DemoKoboServer:
    """KoBo-compatible HTTP server in a background thread on 127.0.0.1.

    Use as a context manager (or call `start()`/`stop()`); `url`, `token` and `household_uid` are ready
    once started.
    """

    def __init__(
        self,
        households: int = 1500,
        seed: int = 7,
        token: str = "demo-token",
        include_fixtures: bool = True,
        port: int = 0,
        manage_asset: bool = True,
        members: int | None = None,
    ) -> None:
        self.households = households
        self.members = members  # members per household of the generated survey; None: 1-14 (≈ 4.3)
        self.seed = seed
        self.token = token
        self.include_fixtures = include_fixtures
        self.household_uid = dd.HOUSEHOLD_UID
        self.draft_uid = dd.DRAFT_UID
        self.hidden_uid = dd.HIDDEN_UID
        self.url = ""
        self._port = port
        self._lock = threading.RLock()
        self._log: list[RequestLogEntry] = []
        self._faults = _Faults()
        self._data_requests = 0
        self._assets: dict[str, _Asset] = {}
        self._edit_counter = 0
        # the token's owner may manage the projects: False makes `/history/` answer 403, like KPI
        self.manage_asset = manage_asset
        # a 5xx status for every `/history/` request (a proxy timing out on a slow history query), or None
        self.history_fault: int | None = None
        # the most rows a page holds, whatever the limit asked: lower it to act as a server configured so
        self.page_cap = MAX_PAGE_SIZE
        # asset uid → project history entries, oldest first
        self._history: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
        self._held: dict[tuple[str, int], int] = {}  # (asset uid, _id) → index of an upload still in flight
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def __enter__(self) -> DemoKoboServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind, build the assets and serve in a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._assets = self._build_assets()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="demo-kobo", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self.url.rsplit(":", 1)[1])

    # -- assets
    def _build_assets(self) -> dict[str, _Asset]:
        base = self.url
        gen = dd.HouseholdGenerator(self.households, self.seed, base, self.members)
        n = self.households

        def version(uid: str, content_name: str, deployed: str | None, modified: str) -> dict[str, Any]:
            content = dd.load_form_content(content_name)
            return {
                "uid": uid,
                "content": content,
                "content_hash": _content_hash(content),
                "date_deployed": deployed or False,
                "date_modified": modified,
            }

        hh_versions = [
            version(dd.HOUSEHOLD_DRAFT_UID, "household_survey_v3_draft", None, "2026-11-20T09:12:44.118273Z"),
            version(
                dd.HOUSEHOLD_V2_UID,
                "household_survey_v2",
                "2026-10-09T04:30:00.000000Z",
                "2026-10-09T04:30:00.000000Z",
            ),
            version(
                dd.HOUSEHOLD_V1_UID,
                "household_survey_v1",
                "2026-09-11T06:00:00.000000Z",
                "2026-09-11T06:00:00.000000Z",
            ),
        ]
        hh_coll = _Collection(gen.id_at, gen.record_at, n, gen.time_at)
        assets = {
            dd.HOUSEHOLD_UID: _Asset(dd.HOUSEHOLD_UID, {}, hh_versions, hh_coll, generated={"gen": gen}),
            dd.DRAFT_UID: _Asset(
                dd.DRAFT_UID,
                {},
                [
                    version(
                        dd.DRAFT_VERSION_UID,
                        "distribution_monitoring_draft",
                        None,
                        "2026-11-02T10:00:00.000000Z",
                    )
                ],
                None,
            ),
            dd.HIDDEN_UID: _Asset(
                dd.HIDDEN_UID,
                {},
                [
                    version(
                        dd.HIDDEN_VERSION_UID,
                        "protection_cases_hidden",
                        "2026-08-01T08:00:00.000000Z",
                        "2026-08-01T08:00:00.000000Z",
                    )
                ],
                _ListCollection([]),
                visible=False,
            ),
        }
        names = {
            dd.HOUSEHOLD_UID: dd.HOUSEHOLD_NAME,
            dd.DRAFT_UID: "Distribution monitoring (draft)",
            dd.HIDDEN_UID: "Protection cases (restricted)",
        }
        for uid, asset in assets.items():
            asset.detail = _generated_detail(
                base,
                uid,
                names[uid],
                asset.versions,
                deployed=asset.collection is not None,
                formhub_uuid=dd.HOUSEHOLD_FORMHUB_UUID if uid == dd.HOUSEHOLD_UID else None,
                submission_count=0,
                last_submission=None,
                date_created="2026-08-20T07:45:10.000000Z",
            )
        if self.include_fixtures:
            root = fixtures_dir()
            if root.is_dir():
                for uid, asset in _load_fixture_assets(base, root).items():
                    assets.setdefault(uid, asset)
        return assets

    def _refresh_counts(self, asset: _Asset) -> None:
        """Keep the generated asset's submission counters in step with the overlays."""
        if asset.generated and asset.collection is not None:
            coll = asset.collection
            asset.detail["deployment__submission_count"] = coll.alive_between(0, coll.size)
            if coll.size:
                last = coll.record(coll.size - 1)["_submission_time"]
                asset.detail["deployment__last_submission_time"] = last + ".000000Z"

    def _asset(self, uid: str) -> _Asset:
        asset = self._assets.get(uid)
        if asset is None or asset.collection is None:
            raise KeyError(f"no deployed asset {uid}")
        return asset

    # -- test hooks
    def add_form(
        self, uid: str, name: str, content: dict[str, Any], records: list[dict[str, Any]], version_uid: str
    ) -> None:
        """Serve one more deployed form: its content (`survey`, `choices`, `settings`, as KPI stores it) as
        its only version, and its submissions as recorded (each with `_id` and `__version__`)."""
        version = {
            "uid": version_uid,
            "content": content,
            "content_hash": _content_hash(content),
            "date_deployed": "2026-11-01T08:00:00.000000Z",
            "date_modified": "2026-11-01T08:00:00.000000Z",
        }
        with self._lock:
            asset = _Asset(uid, {}, [version], _ListCollection(copy.deepcopy(records)))
            asset.detail = _generated_detail(
                self.url,
                uid,
                name,
                asset.versions,
                deployed=True,
                formhub_uuid=None,
                submission_count=len(records),
                last_submission=None,
                date_created="2026-11-01T07:00:00.000000Z",
            )
            self._assets[uid] = asset

    def deploy_version(
        self, uid: str, version_uid: str, content: dict[str, Any], records: list[dict[str, Any]], *,
        name: str = "Form",
    ) -> None:
        """Deploy a new version of a form made with `add_form`, and record submissions made with it (each with
        its `_id`, above the earlier ones, and `__version__`), as the project history would see them."""
        version = {
            "uid": version_uid,
            "content": content,
            "content_hash": _content_hash(content),
            "date_deployed": "2026-12-01T08:00:00.000000Z",
            "date_modified": "2026-12-01T08:00:00.000000Z",
        }
        with self._lock:
            asset = self._asset(uid)
            assert isinstance(asset.collection, _ListCollection), "only forms made with add_form"
            asset.versions.insert(0, version)
            asset.detail = _generated_detail(
                self.url, uid, name, asset.versions, deployed=True, formhub_uuid=None,
                submission_count=len(asset.collection.records) + len(records), last_submission=None,
                date_created="2026-11-01T07:00:00.000000Z",
            )
            for rec in copy.deepcopy(records):
                asset.collection.append(rec)
                self._record_history(uid, "add-submission", rec)

    def add_submissions(self, uid: str, n: int) -> list[int]:
        """Append n new submissions (new `_id`s above every earlier one); return their `_id`s."""
        with self._lock:
            asset = self._asset(uid)
            coll = asset.collection
            assert coll is not None
            new_ids: list[int] = []
            if isinstance(coll, _ListCollection):
                top = max((r["_id"] for r in coll.records), default=1_000_000)
                for k in range(n):
                    src = copy.deepcopy(coll.records[k % len(coll.records)]) if coll.records else {}
                    self._edit_counter += 1
                    new_uuid = dd.uuid_at(self.seed + 1_000_003, self._edit_counter)
                    src.update(
                        {
                            "_id": top + 3 + 2 * k,
                            "_uuid": new_uuid,
                            "meta/instanceID": "uuid:" + new_uuid,
                            "meta/rootUuid": "uuid:" + new_uuid,
                            "_validation_status": {},
                        }
                    )
                    src.pop("meta/deprecatedID", None)
                    coll.append(src)
                    new_ids.append(src["_id"])
            else:
                first = coll.size
                coll.size += n  # generated records beyond N continue the same deterministic sequence
                new_ids = [coll._id_at(i) for i in range(first, first + n)]
            self._refresh_counts(asset)
            for _id in new_ids:
                idx = coll.index_of(_id)
                assert idx is not None
                self._record_history(uid, "add-submission", coll.record(idx))
            return new_ids

    def _locate(self, uid: str, _id: int) -> tuple[_Asset, _Collection, int]:
        asset = self._asset(uid)
        coll = asset.collection
        assert coll is not None
        idx = coll.index_of(_id)
        if idx is None:
            raise KeyError(f"no submission {_id} in {uid}")
        return asset, coll, idx

    def edit_submission(self, uid: str, _id: int, changes: dict[str, Any]) -> str:
        """Edit a submission like Enketo: same `_id`, new `_uuid`; a value of None removes the key.

        Returns the new `_uuid`. `meta/deprecatedID` is the previous instanceID; `meta/rootUuid` is kept.
        """
        with self._lock:
            _asset, coll, idx = self._locate(uid, _id)
            rec = copy.deepcopy(coll.record(idx))
            self._edit_counter += 1
            new_uuid = dd.uuid_at(self.seed + 7_000_001, self._edit_counter)
            old_instance = rec.get("meta/instanceID", "uuid:" + rec.get("_uuid", ""))
            for k, v in changes.items():
                if v is None:
                    rec.pop(k, None)
                else:
                    rec[k] = v
            rebuilt: dict[str, Any] = {}
            for k, v in rec.items():
                if k == "meta/deprecatedID":
                    continue
                rebuilt[k] = v
                if k == "meta/instanceID":
                    rebuilt[k] = "uuid:" + new_uuid
                    rebuilt["meta/deprecatedID"] = old_instance
            rebuilt["_uuid"] = new_uuid
            rebuilt.setdefault("meta/rootUuid", old_instance)
            coll.edited[_id] = rebuilt
            self._record_history(uid, "modify-submission", rebuilt)
            return new_uuid

    def delete_submission(self, uid: str, _id: int) -> None:
        """Hard-delete a submission (no tombstone, like KPI)."""
        with self._lock:
            asset, coll, idx = self._locate(uid, _id)
            self._record_history(uid, "delete-submission", coll.record(idx))
            coll.delete(idx)
            coll.edited.pop(_id, None)
            self._refresh_counts(asset)

    def set_validation_status(self, uid: str, _id: int, status_uid: str | None) -> None:
        """Set (or with None/"" clear) `_validation_status`; `_uuid` does not change."""
        with self._lock:
            _asset, coll, idx = self._locate(uid, _id)
            rec = copy.deepcopy(coll.record(idx))
            if status_uid:
                if status_uid not in dd.VALIDATION_LABELS:
                    raise ValueError(f"unknown validation status {status_uid!r}")
                rec["_validation_status"] = {
                    "timestamp": int(time.time()),
                    "uid": status_uid,
                    "by_whom": dd.SUPERVISOR,
                    "label": dd.VALIDATION_LABELS[status_uid],
                }
            else:
                rec["_validation_status"] = {}
            coll.edited[_id] = rec
            label = dd.VALIDATION_LABELS[status_uid] if status_uid else None
            self._record_history(uid, "modify-submission", rec, status=label)

    def hold_submission(self, uid: str, _id: int) -> None:
        """Make a submission unreadable, as while its upload is still in flight: KPI allocates `_id` before
        the record is readable, so it can appear behind a higher `_id` (kobo-api.md 4.4)."""
        with self._lock:
            asset, coll, idx = self._locate(uid, _id)
            coll.delete(idx)
            self._held[(uid, _id)] = idx
            self._refresh_counts(asset)

    def release_submission(self, uid: str, _id: int) -> None:
        """Finish a held upload: the submission becomes readable and gets its `add-submission` entry."""
        with self._lock:
            idx = self._held.pop((uid, _id))
            asset = self._asset(uid)
            assert asset.collection is not None
            asset.collection.undelete(idx)
            self._refresh_counts(asset)
            self._record_history(uid, "add-submission", asset.collection.record(idx))

    def _record_history(self, uid: str, action: str, rec: dict[str, Any] | None = None, **extra: Any) -> None:
        """Append one project-history entry shaped like KPI's (kobo-api.md 4.3; audit_log/models.py)."""
        metadata: dict[str, Any] = {
            "asset_uid": uid, "log_subtype": "project", "ip_address": "127.0.0.1", "source": "kobo-etl demo",
        }
        if rec is not None:
            root = str(rec.get("meta/rootUuid") or "").removeprefix("uuid:")
            metadata["submission"] = {"root_uuid": root, "submitted_by": rec.get("_submitted_by"), **extra}
        at = datetime.now(UTC)
        entry = {
            "user": f"{self.url}/api/v2/users/{_HISTORY_USER}/",
            "user_uid": "uDemoOwner1234567890",
            "username": _HISTORY_USER,
            "action": action,
            "metadata": metadata,
            "date_created": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }
        with self._lock:
            self._history.setdefault(uid, []).append((at, entry))

    def set_faults(
        self,
        latency_ms: int = 0,
        fail_every: int = 0,
        fail_status: int = 503,
        rate_limit_every: int = 0,
        retry_after: int = 1,
        truncate_next: int = 0,
        non_json_next: int = 0,
        *,
        truncate_mode: str = "drop",
        non_json_status: int = 200,
    ) -> None:
        """Replace the fault settings (all off by default) and restart the data-request counter.

        Args:
            latency_ms: sleep before answering every request.
            fail_every: every K-th data request answers `fail_status` with an HTML proxy page.
            fail_status: the 5xx status for `fail_every`.
            rate_limit_every: every K-th data request answers 429 with `Retry-After: retry_after`.
            retry_after: seconds for the `Retry-After` header.
            truncate_next: the next n successful data responses send only half the body. Mode "drop"
                (default, what a proxy does when the upstream dies mid-body): full Content-Length,
                half the bytes, then the connection is closed. Mode "short": Content-Length of what
                is sent, so the client receives complete-looking but invalid JSON.
            non_json_next: the next n data responses are an HTML error page with `non_json_status`.
        """
        if truncate_mode not in ("drop", "short"):
            raise ValueError("truncate_mode must be 'drop' or 'short'")
        with self._lock:
            self._faults = _Faults(
                latency_ms,
                fail_every,
                fail_status,
                rate_limit_every,
                retry_after,
                truncate_next,
                truncate_mode,
                non_json_next,
                non_json_status,
            )
            self._data_requests = 0

    @property
    def requests(self) -> list[RequestLogEntry]:
        """A copy of the request log."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log.clear()

    @property
    def quality_problems(self) -> dict[str, list[int]]:
        """Known quality problems of the household survey: problem -> `_id`s (see demo_data)."""
        return dd.quality_problems(self.households)

    def prerender(self) -> None:
        """Encode every submission of every collection once, after `start()`, so that full-record pages
        are cached bytes joined, as a KPI serves stored JSON, not rows generated in this process (a
        benchmark's concurrent requests would queue for its GIL). ≈ 2.25 KB per household submission, so
        only on request. Edits and deletions still apply; `fields`, `$in` and other filters are served
        as before."""
        if self._httpd is None:
            raise RuntimeError("prerender() needs a started server: the assets are built by start()")
        with self._lock:
            for asset in self._assets.values():
                if asset.collection is not None:
                    asset.collection.prerender()

    # -- request handling (called from handler threads)
    def _record(self, entry: RequestLogEntry) -> None:
        with self._lock:
            self._log.append(entry)

    def _data_fault(self) -> tuple[str, int] | None:
        """Decide this data request's fault: (fail|rate|html|truncate-drop|truncate-short, status) or None."""
        with self._lock:
            f = self._faults
            self._data_requests += 1
            n = self._data_requests
            if f.fail_every and n % f.fail_every == 0:
                return "fail", f.fail_status
            if f.rate_limit_every and n % f.rate_limit_every == 0:
                return "rate", 429
            if f.non_json_next > 0:
                f.non_json_next -= 1
                return "html", f.non_json_status
            if f.truncate_next > 0:
                f.truncate_next -= 1
                return "truncate-" + f.truncate_mode, 200
            return None

    def handle(self, method: str, raw_path: str, auth: str | None) -> tuple[int, bytes, dict[str, str], str]:
        """Route one request; return (status, body, extra headers, fault kind or "")."""
        parts = urlsplit(raw_path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if self._faults.latency_ms:
            time.sleep(self._faults.latency_ms / 1000)
        if method != "GET":
            return 405, orjson.dumps({"detail": f'Method "{method}" not allowed.'}), {}, ""
        if path.startswith("/api/v1/"):
            return 410, orjson.dumps({"detail": "This endpoint is gone. Use /api/v2/."}), {}, ""
        if auth is not None:
            kind, _, key = auth.partition(" ")
            if kind.lower() != "token" or key.strip() != self.token:
                return 401, orjson.dumps({"detail": "Invalid token."}), {}, ""
        authed = auth is not None
        segs = [s for s in path.split("/") if s]
        if segs[:3] != ["api", "v2", "assets"]:
            return 404, orjson.dumps(_NOT_FOUND), {}, ""
        rest = segs[3:]
        if not rest:
            return 200, self._asset_list(parts.path, query, authed), {}, ""
        uid = rest[0].removesuffix(".json")
        asset = self._assets.get(uid)
        if asset is None or not asset.visible or not authed:
            # KPI answers 404 (not 401/403) so a private project's existence is not revealed
            return 404, orjson.dumps(_NOT_FOUND), {}, ""
        tail = rest[1:]
        if not tail:
            with self._lock:
                self._refresh_counts(asset)
                return 200, orjson.dumps(asset.detail), {}, ""
        if tail[0] == "versions":
            return self._versions(asset, tail[1:], query)
        if tail[0] in ("data", "data.json"):
            return self._data(asset, parts.path, query, tail[1:])
        if tail[0] == "history":
            return self._history_page(asset, parts.path, query, tail[1:])
        return 404, orjson.dumps(_NOT_FOUND), {}, ""

    def _asset_list(self, path: str, query: dict[str, str], authed: bool) -> bytes:
        items = [a for a in self._assets.values() if a.visible and authed]
        q = query.get("q", "").strip()
        if q:
            for term in q.split(" AND "):
                name, _, value = term.partition(":")
                if name == "asset_type":
                    items = [a for a in items if a.detail.get("asset_type") == value.strip('"')]
                elif name == "uid":
                    items = [a for a in items if a.uid == value.strip('"')]
                else:
                    items = []  # KPI silently returns an empty list for a query it cannot use
        offset_param = "offset" if "offset" in query else "start"
        limit, start = self._limit_start(query, offset_param, strict=False)
        with self._lock:
            for a in items:
                self._refresh_counts(a)
            page = [a.list_item() for a in items[start : start + limit]]
        return self._envelope(path, query, len(items), start, limit, page, offset_param)

    def _versions(
        self, asset: _Asset, tail: list[str], query: dict[str, str]
    ) -> tuple[int, bytes, dict, str]:
        base = self.url
        if not tail:
            items = [_version_item(base, asset.uid, v, False) for v in asset.versions]
            return (
                200,
                orjson.dumps({"count": len(items), "next": None, "previous": None, "results": items}),
                {},
                "",
            )
        for v in asset.versions:
            if v["uid"] == tail[0]:
                if "content" not in v:
                    return 404, orjson.dumps(_NOT_FOUND), {}, ""
                return 200, orjson.dumps(_version_item(base, asset.uid, v, True)), {}, ""
        return 404, orjson.dumps(_NOT_FOUND), {}, ""

    def _limit_start(
        self, query: dict[str, str], offset_param: str = "start", strict: bool = True
    ) -> tuple[int, int]:
        limit = DEFAULT_PAGE_SIZE
        if "limit" in query:
            try:
                limit = int(query["limit"])
                if limit <= 0:
                    raise ValueError
            except ValueError:
                if strict:
                    raise _BadParam("limit", "A positive integer is required") from None
                limit = DEFAULT_PAGE_SIZE
        limit = min(limit, self.page_cap)  # KPI caps silently
        start = 0
        if offset_param in query:
            try:
                start = int(query[offset_param])
                if start < 0:
                    raise ValueError
            except ValueError:
                if strict:
                    raise _BadParam(offset_param, "A positive integer is required") from None
                start = 0
        return limit, start

    def _data(
        self, asset: _Asset, path: str, query: dict[str, str], tail: list[str]
    ) -> tuple[int, bytes, dict[str, str], str]:
        if asset.collection is None:
            return 400, orjson.dumps({"detail": "The specified asset has not been deployed"}), {}, ""
        fault = self._data_fault()
        if fault is not None and fault[0] in ("fail", "rate", "html"):
            return self._fault_response(fault)
        try:
            if tail:
                body = self._one_submission(asset, tail[0])
                status = 200 if body is not None else 404
                out = body if body is not None else orjson.dumps(_NOT_FOUND)
            else:
                status, out = 200, self._data_page(asset, path, query)
        except _BadParam as exc:
            return 400, orjson.dumps(exc.body), {}, ""
        if status == 200:  # KPI logs every read of the data in the project history
            self._record_history(asset.uid, "view-data")
        kind = fault[0] if fault is not None and status == 200 else ""  # truncate-drop / truncate-short
        return status, out, {}, kind

    def _history_page(
        self, asset: _Asset, path: str, query: dict[str, str], tail: list[str]
    ) -> tuple[int, bytes, dict[str, str], str]:
        """`/history/` (newest first, `q`, limit/start) and `/history/actions/`; 403 without manage_asset."""
        if not self.manage_asset:
            return 403, orjson.dumps({"detail": "You do not have permission to perform this action."}), {}, ""
        if self.history_fault is not None:
            return self._fault_response(("fail", self.history_fault))
        with self._lock:
            entries = list(self._history.get(asset.uid, []))
        if tail == ["actions"]:
            return 200, orjson.dumps({"actions": sorted({e["action"] for _, e in entries})}), {}, ""
        if tail:
            return 404, orjson.dumps(_NOT_FOUND), {}, ""
        keep = _history_filter(query.get("q", ""))
        matched = [e for at, e in reversed(entries) if keep(at, e)]
        limit, start = self._limit_start(query, "start", strict=False)
        return 200, self._envelope(path, query, len(matched), start, limit, matched[start:start + limit],
                                   "start"), {}, ""

    def _fault_response(self, fault: tuple[str, int]) -> tuple[int, bytes, dict[str, str], str]:
        kind, status = fault
        if kind == "rate":
            retry = str(self._faults.retry_after)
            body = orjson.dumps({"detail": f"Request was throttled. Expected available in {retry} seconds."})
            return 429, body, {"Retry-After": retry}, ""
        title = {
            502: "502 Bad Gateway",
            503: "503 Service Temporarily Unavailable",
            504: "504 Gateway Time-out",
            200: "Maintenance",
        }.get(status, f"{status} Error")
        html = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>"
            f"\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        ).encode()
        return status, html, {"Content-Type": "text/html"}, ""

    def _one_submission(self, asset: _Asset, ident: str) -> bytes | None:
        coll = asset.collection
        assert coll is not None
        with self._lock:
            if ident.isdigit():
                idx = coll.index_of(int(ident))
                return _encode_record(coll.record(idx)) if idx is not None else None
            count, rows = coll.select({"meta/rootUuid": "uuid:" + ident.removeprefix("uuid:")}, [], 0, 1)
            return _encode_record(rows[0]) if rows else None

    def _data_page(self, asset: _Asset, path: str, query: dict[str, str]) -> bytes:
        if "count" in query:
            raise _BadParam("count", "This parameter is not supported. Use the `count` property instead")
        limit, start = self._limit_start(query)
        mongo_query = self._json_param(query, "query", dict, {})
        sort_raw = self._json_param(query, "sort", dict, {"_id": 1})
        sort: list[tuple[str, int]] = []
        for k, v in sort_raw.items():
            if v not in (1, -1):
                raise _BadParam("sort", "Value must be valid JSON.")
            sort.append((k, v))
        fields = self._json_param(query, "fields", list, None)
        if fields is not None and not all(isinstance(f, str) for f in fields):
            raise _BadParam("fields", "Value must be valid JSON.")
        coll = asset.collection
        assert coll is not None
        with self._lock:
            encoded = coll.select_encoded(mongo_query, sort, start, limit) if fields is None else None
            if encoded is None:
                count, rows = coll.select(mongo_query, sort, start, limit)
        if encoded is not None:  # the same bytes orjson would write for the rows
            count, parts = encoded
            return self._envelope(path, query, count, start, limit,
                                  orjson.Fragment(b"[" + b",".join(parts) + b"]"), "start")
        if fields is not None:
            rows = [_project(r, fields) for r in rows]
        return self._envelope(path, query, count, start, limit, rows, "start")

    @staticmethod
    def _json_param(query: dict[str, str], name: str, typ: type, default: Any) -> Any:
        if name not in query:
            return default
        try:
            value = json.loads(query[name])
        except ValueError:
            raise _BadParam(name, "Value must be valid JSON.") from None
        if not isinstance(value, typ):
            raise _BadParam(name, "Value must be valid JSON.")
        return value

    def _envelope(
        self,
        path: str,
        query: dict[str, str],
        count: int,
        start: int,
        limit: int,
        results: list[dict[str, Any]] | orjson.Fragment,
        offset_param: str,
    ) -> bytes:
        """DRF LimitOffsetPagination envelope; links keep every other parameter, sorted like DRF."""
        base_q = dict(query)
        base_q["limit"] = str(limit)

        def link(offset: int | None) -> str:
            q = dict(base_q)
            q.pop(offset_param, None)
            if offset is not None:
                q[offset_param] = str(offset)
            return f"{self.url}{path}?{urlencode(sorted(q.items()))}"

        nxt = link(start + limit) if start + limit < count else None
        if start <= 0:
            prev = None
        elif start - limit <= 0:
            prev = link(None)
        else:
            prev = link(min(start, count) - limit if start > count else start - limit)
        if isinstance(results, list):
            results = orjson.Fragment(b"[" + b",".join(map(_encode_record, results)) + b"]")
        # results last: DRF writes it last, and clients may slice it out without parsing the envelope
        return orjson.dumps({"count": count, "next": nxt, "previous": prev, "results": results})


# --------------------------------------------------------------------------------------------------------
# The project history's `q`: KPI's Boolean query grammar (kpi/utils/query_parser/grammar.peg) — `field:value`
# terms (value a word or a quoted string), AND / OR / NOT in capitals, parentheses, AND implied between terms.

_HISTORY_USER = "demo_owner"
_Q_TOKEN = re.compile(
    r'\s*(?:(?P<paren>[()])|(?P<op>AND|OR|NOT)(?=[\s()]|$)'
    r'|(?P<field>[A-Za-z_][\w\-]*):(?:"(?P<quoted>(?:\\.|[^"\\])*)"|(?P<word>[^\s():"]+))|(?P<bad>\S))'
)
_HISTORY_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "action": lambda e: e["action"],
    "user_uid": lambda e: e["user_uid"],
    "user__username": lambda e: e["username"],
    "metadata__asset_uid": lambda e: e["metadata"].get("asset_uid"),
    "metadata__submission__root_uuid": lambda e: e["metadata"].get("submission", {}).get("root_uuid"),
    "metadata__submission__submitted_by": lambda e: e["metadata"].get("submission", {}).get("submitted_by"),
}
_DATE_LOOKUPS: dict[str, Callable[[datetime, datetime], bool]] = {
    "": lambda a, b: a == b, "__gt": lambda a, b: a > b, "__gte": lambda a, b: a >= b,
    "__lt": lambda a, b: a < b, "__lte": lambda a, b: a <= b,
}
_HistoryPredicate = Callable[[datetime, dict[str, Any]], bool]


def _history_filter(q: str) -> _HistoryPredicate:
    """The entries `q` selects. KPI's SearchFilter answers a `q` it cannot parse, an unknown field or a bad
    value with an empty list (not a 400), so those match nothing here too."""
    if not q.strip():
        return lambda at, e: True
    tokens: list[tuple[str, Any]] = []
    for m in _Q_TOKEN.finditer(q):
        if m["bad"] is not None:
            return lambda at, e: False
        if m["paren"] or m["op"]:
            tokens.append(("sym", m["paren"] or m["op"]))
        elif m["field"]:
            value = m["quoted"] if m["quoted"] is not None else m["word"]
            tokens.append(("term", (m["field"], value)))
    try:
        predicate, end = _q_or(tokens, 0)
    except (ValueError, IndexError):
        return lambda at, e: False
    return predicate if end == len(tokens) else (lambda at, e: False)


def _q_or(tokens: list[tuple[str, Any]], i: int) -> tuple[_HistoryPredicate, int]:
    parts = []
    part, i = _q_and(tokens, i)
    parts.append(part)
    while i < len(tokens) and tokens[i] == ("sym", "OR"):
        part, i = _q_and(tokens, i + 1)
        parts.append(part)
    return (lambda at, e: any(p(at, e) for p in parts)), i


def _q_and(tokens: list[tuple[str, Any]], i: int) -> tuple[_HistoryPredicate, int]:
    parts = []
    part, i = _q_group(tokens, i)
    parts.append(part)
    while i < len(tokens) and tokens[i] not in (("sym", "OR"), ("sym", ")")):
        if tokens[i] == ("sym", "AND"):
            i += 1
        part, i = _q_group(tokens, i)
        parts.append(part)
    return (lambda at, e: all(p(at, e) for p in parts)), i


def _q_group(tokens: list[tuple[str, Any]], i: int) -> tuple[_HistoryPredicate, int]:
    kind, value = tokens[i]
    if (kind, value) == ("sym", "("):
        inner, i = _q_or(tokens, i + 1)
        if tokens[i] != ("sym", ")"):
            raise ValueError("unbalanced parentheses")
        return inner, i + 1
    if (kind, value) == ("sym", "NOT"):
        inner, i = _q_group(tokens, i + 1)
        return (lambda at, e: not inner(at, e)), i
    if kind != "term":
        raise ValueError(f"unexpected {value}")
    return _q_term(*value), i + 1


def _q_term(field: str, value: str) -> _HistoryPredicate:
    if field.startswith("date_created") and field.removeprefix("date_created") in _DATE_LOOKUPS:
        compare = _DATE_LOOKUPS[field.removeprefix("date_created")]
        when = datetime.fromisoformat(value)  # a bad date: ValueError, i.e. nothing matches
        when = when if when.tzinfo else when.replace(tzinfo=UTC)  # KPI's TIME_ZONE is UTC
        return lambda at, e: compare(at, when)
    get = _HISTORY_FIELDS.get(field)
    if get is None:
        raise ValueError(f"unknown field {field}")
    return lambda at, e: get(e) == value


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[str, Any]]:
    """Sort by type name first so mixed types never compare (Mongo orders by type bracket too)."""

    def by(rec: dict[str, Any]) -> tuple[str, Any]:
        v = rec[key]
        return ("", "") if isinstance(v, dict | list) else (type(v).__name__, v)

    return by


def _project(rec: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """KPI `fields=` projection: `_id`, `_uuid`, `meta/rootUuid` always; `_validation_status` {} if absent."""
    keep = set(fields) | {"_id", "_uuid", "meta/rootUuid"}
    out = {k: v for k, v in rec.items() if k in keep}
    if not out.get("_validation_status"):
        out["_validation_status"] = {}
    return out


class _Handler(BaseHTTPRequestHandler):
    server_ref: DemoKoboServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection across pages
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # requests are logged in `DemoKoboServer.requests`, never to stderr (URLs can carry queries)

    def _serve(self, method: str) -> None:
        srv = self.server_ref
        status, body, headers, fault = srv.handle(method, self.path, self.headers.get("Authorization"))
        sent = body[: len(body) // 2] if fault.startswith("truncate") else body
        parts = urlsplit(self.path)
        # log before writing: a client may inspect the log as soon as it has read the body
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        srv._record(RequestLogEntry(method, parts.path, query, status, len(sent)))
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        # "drop": announce the full length, send half, close (an upstream dying behind a proxy)
        self.send_header("Content-Length", str(len(body) if fault == "truncate-drop" else len(sent)))
        self.send_header("Vary", "Accept, Authorization")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(sent)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if fault == "truncate-drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")


def serve_forever(
    port: int = 8000,
    households: int = 1500,
    seed: int = 7,
    token: str = "demo-token",
    include_fixtures: bool = True,
) -> None:
    """Run the demo server in the foreground until Ctrl-C, printing its url and token."""
    with DemoKoboServer(
        households=households, seed=seed, token=token, include_fixtures=include_fixtures, port=port
    ) as srv:
        print(f"Demo KoBo server at {srv.url}")
        print(f"  token: {srv.token}   (send 'Authorization: Token {srv.token}')")
        data_url = f"{srv.url}/api/v2/assets/{srv.household_uid}/data/"
        print(f"  household survey: {data_url} ({households} submissions)")
        print("Press Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("Stopped.")


def run_demo_server(port: int, households: int) -> None:
    """CLI entry point for `kobo-etl demo-server --port P`: blocks until Ctrl-C."""
    serve_forever(port=port, households=households)


__all__ = ["DemoKoboServer", "RequestLogEntry", "fixtures_dir", "run_demo_server", "serve_forever"]
