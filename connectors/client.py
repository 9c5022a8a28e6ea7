"""The KoBo (KPI v2) API client: assets, versions and submission pages as generators; one retry policy."""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import math
import random
import ssl
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import orjson
import requests
import simdjson
import urllib3

from connectors.errors import (
    BadPayload,
    BadServerUrl,
    InsecureUrl,
    KoboUnavailable,
    TokenRejected,
    UntrustedCertificate,
    error_for_status,
)
from connectors.json_repair import repaired_body

log = logging.getLogger("kobo_etl.http")

# URL templates kept as data (pyodk style); all paths are relative to the server's base URL.
URLS = {
    "assets": "/api/v2/assets/",
    "asset": "/api/v2/assets/{uid}/",
    "versions": "/api/v2/assets/{uid}/versions/",
    "version": "/api/v2/assets/{uid}/versions/{version_uid}/",
    "data": "/api/v2/assets/{uid}/data/",
    "history": "/api/v2/assets/{uid}/history/",
}

MAX_PAGE_SIZE = 1000  # KPI's cap since 2.026.03; a bigger limit is silently capped
ID_BATCH = 500  # ids per `$in` re-fetch: keeps the URL well under proxy limits (~8 KB)
ROOT_BATCH = 100  # root uuids per `$in` re-fetch: ~50 URL-encoded characters each, so ~5 KB of URL
HISTORY_PAGE_SIZE = 1000
ASSET_PAGE_SIZE = 100
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
PAYLOAD_RETRIES = 2  # a truncated or non-JSON body is retried this many times before BadPayload
# a concurrent slice of the `_id` range is sized this many standard deviations of its row count below a
# page (`_slice_fill`): too full, it needs a second request; too empty, every slice costs a request more
SLICE_SPREAD = 2.0
_SAFE_QUERY_KEYS = frozenset({"format", "limit", "start"})  # shown in logs; every other value is redacted


@dataclass
class SubmissionPage:
    """One page of submissions.

    Attributes:
        results: The submissions, `_id` ascending, as KoBo sent them (parsed from `raw` on first use: the
            client itself reads only each row's `_id`, and transform workers parse `raw` themselves).
        count: The server's `count` for the request that produced the page, i.e. the rows that matched
            from this page on (this page included), not the form's total.
        last_id: The last `_id` in `results` (the resume point), or None when the page is empty.
        nbytes: Size of the response body in bytes.
        raw: The response body as received (JSON bytes), for saving a page to replay it offline or to
            read it with DuckDB without building Python objects again; re-encoded from `results` for a
            page the concurrent iterator fetched highest `_id` first or trimmed.
        size: The number of submissions in the page.
    """

    count: int
    last_id: int | None
    nbytes: int
    raw: bytes = field(default=b"", repr=False)
    size: int = 0
    rows: list[dict] | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls, results: list[dict], count: int, last_id: int | None, nbytes: int, raw: bytes = b""
    ) -> SubmissionPage:
        """A page whose rows are already parsed."""
        return cls(count=count, last_id=last_id, nbytes=nbytes, raw=raw, size=len(results), rows=results)

    @property
    def results(self) -> list[dict]:
        if self.rows is None:
            self.rows = _rows_of(self.raw)
        return self.rows

    def parse_results(self) -> list[dict]:
        """The submissions, parsed from `raw` without keeping them on the page, for a reader that needs
        them once: a page waiting to be loaded then holds its bytes, not ≈ 10× as much in Python objects
        that every pass of the cyclic garbage collector would scan."""
        return self.rows if self.rows is not None else _rows_of(self.raw)


class _PayloadProblem(Exception):
    """Internal: a 200 response whose body cannot be used; retried, then turned into BadPayload."""


def redact_url(url: str) -> str:
    """Return `url` safe for logs: no credentials, query values redacted except format/limit/start.

    Args:
        url: Any URL, possibly with user:password@ or a query string (filters, tokens).

    Returns:
        The URL with userinfo dropped and every query value other than format/limit/start shown as `***`.
    """
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = ""
    if parts.query:
        pairs = parse_qs(parts.query, keep_blank_values=True)
        query = "&".join(
            f"{key}={values[0] if key in _SAFE_QUERY_KEYS else '***'}" for key, values in pairs.items()
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str, allow_insecure_http: bool) -> str:
    text = base_url.strip()
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        # shown to spot the typo, but never with credentials (user:password@) or a query
        shown = "" if "@" in text else " " + repr(text.split("?")[0].split("#")[0])
        raise BadServerUrl(f"the KoBo server URL{shown} is not valid: it needs to start with https:// "
                           "followed by the server's name")
    if parts.username is not None or parts.password is not None:
        # requests would send them as Basic auth instead of the token (every call: 401), and they would
        # show wherever the URL does
        raise BadServerUrl("the KoBo server URL holds a user name or password (user:password@): remove it; "
                           "kobo-etl signs in with KOBO_TOKEN")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(host):
        raise InsecureUrl(host)
    # keep a path prefix (a server mounted under /kobo/) but never a query or fragment; an API URL copied
    # from the browser (…/api/v2/…) would double the prefix the client adds, and every request would 404
    path = parts.path.rstrip("/")
    head, api, rest = path.partition("/api/v2")
    if api and (not rest or rest.startswith("/")):
        path = head
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _certificate_rejected(exc: BaseException) -> str | None:
    """Why the server's TLS certificate failed verification, or None for another TLS error (a handshake
    cut short may be a passing network fault). requests wraps ssl's error in urllib3's, two or three deep."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or "certificate verify failed")
        inner = getattr(seen, "reason", None)  # urllib3's MaxRetryError
        if not isinstance(inner, BaseException):
            inner = next((a for a in seen.args if isinstance(a, BaseException)), None)
        seen = inner or seen.__cause__ or seen.__context__
    return None


def _retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _whole_body(resp: requests.Response) -> bytes:
    """The body of a response requested with `stream=True`, read in one call.

    `Response.content` reads it in 10 KiB pieces: twice the CPU for a 2.4 MB page of 1 000 submissions, in
    the threads that fetch concurrently (bench/README.md). A body cut short or that cannot be decoded
    raises the errors `content` raises (`ChunkedEncodingError`, `ContentDecodingError`, ...).
    """
    try:
        body: bytes = resp.raw.read(decode_content=True)
    except urllib3.exceptions.HTTPError as exc:
        resp.close()
        for raised, as_requests in _BODY_READ_ERRORS:
            if isinstance(exc, raised):
                raise as_requests(exc) from exc
        raise
    return body


#: urllib3's errors while reading a body, as `Response.content` turns them into requests' own
_BODY_READ_ERRORS: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError),  # closed before the end
    (urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError),
    (urllib3.exceptions.ReadTimeoutError, requests.exceptions.ConnectionError),
    (urllib3.exceptions.SSLError, requests.exceptions.SSLError),
)


def _detail(body: bytes) -> str:
    """The server's explanation of an error, from DRF's JSON (`detail` or field messages) or the text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return "" if text.lstrip().startswith("<") else text  # an HTML error page says nothing useful
    if isinstance(data, dict):
        if "detail" in data:
            return str(data["detail"])
        return "; ".join(f"{k}: {v}" for k, v in data.items())
    if isinstance(data, list):
        return "; ".join(str(v) for v in data)
    return str(data)


class KoboClient:
    """A client for one KoBo server and one API token.

    Every request asks for JSON, carries `Authorization: Token ...` and a timeout, and goes through one
    retry policy: connection errors, timeouts, 429 (honouring Retry-After) and 500/502/503/504 are
    retried with jittered exponential backoff, bounded by `max_attempts` and `max_retry_s`; a truncated
    or non-JSON body is retried twice. Other HTTP errors become domain errors at once
    (`connectors.errors.error_for_status`); an HTTP error is never turned into an empty result.

    Args:
        base_url: The KPI server, e.g. `https://kf.kobotoolbox.org` (not the legacy kc.* host).
        token: The API token (a str, or a pydantic SecretStr).
        timeout: Seconds to wait for the server on each request (connect and read).
        max_retry_s: Total seconds one request may spend retrying before KoboUnavailable.
        max_attempts: Attempts per request, the first included.
        allow_insecure_http: Allow http:// to a non-loopback host (the token then travels in clear).
        session: A requests.Session to use (proxies, custom CA); the client never changes its headers.
        backoff_s: The first backoff delay; it doubles per attempt, capped at `backoff_max_s`.
        backoff_max_s: The longest single backoff delay.
        sleep: Waits between retries; tests pass a recorder to assert on the delays without waiting.
    """

    def __init__(
        self,
        base_url: str,
        token: Any,
        *,
        timeout: float = 60,
        max_retry_s: float = 300,
        max_attempts: int = 8,
        allow_insecure_http: bool = False,
        session: requests.Session | None = None,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = _check_base_url(base_url, allow_insecure_http)
        secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token
        secret = (secret or "").strip()
        if not secret:
            raise TokenRejected(status_code=None)
        self._auth_header = f"Token {secret}"
        self.timeout = timeout
        self.max_retry_s = max_retry_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._session = session or requests.Session()
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the token
        return f"KoboClient({self.base_url!r})"

    # ------------------------------------------------------------------ requests and retries

    def _backoff(self, attempt: int) -> float:
        """Equal-jitter exponential backoff: half fixed, half random, so clients do not retry in step."""
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def _get_json(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        form: str | None = None,
        last_id: int | None = None,
        check: Callable[[Any], None] | None = None,
        parse: Callable[[bytes], Any] = orjson.loads,
    ) -> tuple[Any, bytes]:
        """GET `path` and parse its JSON under the retry policy.

        Args:
            path: Path under the base URL.
            params: Query parameters (`format=json` is added).
            form: The asset uid, named in errors.
            last_id: The last good `_id` so far, named in errors.
            check: Validates the parsed body; raises _PayloadProblem for a body to retry.
            parse: Turns the body into what `check` and the caller read (`_ids_only` for data pages).

        Returns:
            The parsed JSON and the raw body.
        """
        url = self.base_url + path
        query = {"format": "json", **(params or {})}
        headers = {"Authorization": self._auth_header, "Accept": "application/json"}
        started = time.monotonic()
        attempt = 0
        payload_failures = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            status: int | None = None
            payload_problem = False
            t0 = time.monotonic()
            try:
                resp = self._session.get(
                    url, params=query, headers=headers, timeout=self.timeout, stream=True
                )
                status = resp.status_code
                body = _whole_body(resp)  # an incomplete read raises here
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                # the connection closed before Content-Length bytes arrived: a truncated body
                reason = "the response body was cut short"
                payload_problem = True
                failure: Exception = exc
                log.debug("GET %s - truncated %.0f ms", redact_url(url), (time.monotonic() - t0) * 1000)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if isinstance(exc, requests.exceptions.SSLError) and (why := _certificate_rejected(exc)):
                    # not an outage: every retry would fail the same way for the whole retry budget
                    raise UntrustedCertificate(urlsplit(url).hostname or "", why, form=form) from exc
                reason = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "connection failed"
                failure = exc
                log.debug("GET %s - %s %.0f ms", redact_url(url), reason, (time.monotonic() - t0) * 1000)
            else:
                log.debug("GET %s %d %d B %.0f ms", redact_url(resp.url), status, len(body),
                          (time.monotonic() - t0) * 1000)
                if status == 200:
                    try:
                        try:
                            data = parse(body)
                        except (ValueError, RuntimeError):  # simdjson: RuntimeError for a huge integer
                            # JSON the fast parsers refuse (an unpaired surrogate escape, a huge integer)
                            # would fail on every run: repaired once, here, for every reader of the body
                            body = repaired_body(body, form=form)
                            data = parse(body)
                        if check is not None:
                            check(data)
                        return data, body
                    except ValueError as exc:  # orjson's and simdjson's errors for a body that is not JSON
                        reason = "the response body is not JSON (truncated or an HTML page)"
                        payload_problem = True
                        failure = exc
                    except _PayloadProblem as exc:
                        reason = str(exc)
                        payload_problem = True
                        failure = exc
                elif status in RETRY_STATUSES:
                    reason = f"HTTP {status}"
                    failure = requests.HTTPError(reason)
                    if status == 429 or status == 503:
                        retry_after = _retry_after_seconds(resp.headers.get("Retry-After"))
                else:
                    raise error_for_status(status, _detail(body), form=form)

            if payload_problem:
                payload_failures += 1
                if payload_failures > PAYLOAD_RETRIES or attempt >= self.max_attempts:
                    raise BadPayload(reason, form=form, last_id=last_id) from failure
            if attempt >= self.max_attempts:
                raise KoboUnavailable(reason, attempts=attempt, form=form,
                                      status_code=status if status != 200 else None,
                                      last_id=last_id) from failure
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if time.monotonic() - started + delay > self.max_retry_s:
                if payload_problem:
                    raise BadPayload(reason, form=form, last_id=last_id) from failure
                raise KoboUnavailable(f"{reason}; retry time budget of {self.max_retry_s:g} s used up",
                                      attempts=attempt, form=form,
                                      status_code=status if status != 200 else None,
                                      last_id=last_id) from failure
            log.warning("GET %s: %s; retry %d/%d in %.1f s", redact_url(url), reason, attempt,
                        self.max_attempts - 1, delay)
            self._sleep(delay)

    def _iter_offset_pages(self, path: str, params: dict[str, Any], *, form: str | None) -> Iterator[dict]:
        """Items of a DRF limit/start paginated list (assets, versions); `next` links are not followed
        because behind a misconfigured proxy they point at an internal http:// host."""
        start = 0
        while True:
            data, _ = self._get_json(path, {**params, "limit": ASSET_PAGE_SIZE, "start": start}, form=form)
            if isinstance(data, list):  # an unpaginated list
                yield from data
                return
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise BadPayload("the list has no 'results' array", form=form)
            yield from results
            start += len(results)
            count = data.get("count")
            if not results or not data.get("next") or (isinstance(count, int) and start >= count):
                return

    # ------------------------------------------------------------------ assets and versions

    def iter_assets(self) -> Iterator[dict]:
        """Yield the survey assets the token can see (asset-list items), paged."""
        yield from self._iter_offset_pages(URLS["assets"], {"q": "asset_type:survey"}, form=None)

    def get_asset(self, uid: str) -> dict:
        """Return the asset detail of form `uid` (its `content` is the latest *saved* content)."""
        data, _ = self._get_json(URLS["asset"].format(uid=uid), form=uid)
        if not isinstance(data, dict):
            raise BadPayload("the asset is not a JSON object", form=uid)
        return data

    def iter_deployed_versions(self, uid: str) -> Iterator[dict]:
        """Yield the version-list items of form `uid` that were deployed (newest first, as listed)."""
        for item in self._iter_offset_pages(URLS["versions"].format(uid=uid), {}, form=uid):
            # date_deployed is `false` for versions saved but never deployed
            if isinstance(item, dict) and item.get("date_deployed"):
                yield item

    def get_version(self, uid: str, version_uid: str) -> dict:
        """Return one version of form `uid`, with its `content`."""
        data, _ = self._get_json(URLS["version"].format(uid=uid, version_uid=version_uid), form=uid)
        if not isinstance(data, dict):
            raise BadPayload("the version is not a JSON object", form=uid)
        return data

    # ------------------------------------------------------------------ submissions

    def count_submissions(self, uid: str, *, until_id: int | None = None) -> int:
        """Return the number of submissions of form `uid` the token can read (`count` of a limit=1 call),
        those up to `until_id` (inclusive) only when it is given."""
        params: dict[str, Any] = {"limit": 1, "fields": '["_id"]'}
        if until_id is not None:
            params["query"] = orjson.dumps({"_id": {"$lte": int(until_id)}}).decode()
        data, _ = self._get_json(URLS["data"].format(uid=uid), params, form=uid, check=_check_envelope)
        return int(data["count"])

    def iter_history_pages(
        self, uid: str, *, actions: Sequence[str], since: datetime
    ) -> Iterator[SubmissionPage]:
        """Yield pages of form `uid`'s project history entries with one of `actions`, created at or after
        `since`, newest first (`results` holds the entries, `last_id` is None; an empty first page is
        yielded too, so its bytes are counted).

        KPI filters with `q` (its Boolean query grammar) and pages with `limit`/`start`. It answers an
        unparseable `q` or an unknown field with an empty list, not an error, so the query is built here
        only. Needs `manage_asset` on the form (kobo-api.md 4.3, 6.3).

        Raises:
            PermissionDenied: 403, the token lacks 'Manage project'. FormNotFound: 404 (also a server
                without the endpoint). KoboUnavailable, BadPayload: as for submissions.
        """
        when = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        q = "(" + " OR ".join(f"action:{a}" for a in actions) + f') AND date_created__gte:"{when}"'
        path = URLS["history"].format(uid=uid)
        start = 0
        while True:
            params = {"q": q, "limit": HISTORY_PAGE_SIZE, "start": start}
            data, raw = self._get_json(path, params, form=uid, check=_check_envelope)
            results = data["results"]
            yield SubmissionPage.of(results, count=data["count"], last_id=None, nbytes=len(raw), raw=raw)
            # newest first: entries written meanwhile push older ones down, so a page may repeat an entry
            # (harmless: the caller collects root uuids) but none is skipped
            start += len(results)
            if not results or not data.get("next") or start >= data["count"]:
                return

    def iter_submissions_by_root_uuid(
        self, uid: str, root_uuids: Sequence[str], *, until_id: int | None = None
    ) -> Iterator[SubmissionPage]:
        """Re-fetch the submissions of form `uid` whose `meta/rootUuid` is one of `root_uuids` (with or
        without the `uuid:` prefix), `_id` ascending per batch of `ROOT_BATCH`; `until_id` keeps only
        `_id`s up to it. Deleted ones are simply absent; a root uuid may match several submissions
        (legacy duplicates). Empty pages are not yielded.
        """
        path = URLS["data"].format(uid=uid)
        # the submission JSON carries the prefix (kobo-api.md 3.4); the history's root_uuid may not
        roots = sorted({"uuid:" + str(r).removeprefix("uuid:") for r in root_uuids})
        for first in range(0, len(roots), ROOT_BATCH):
            high: int | None = None
            while True:  # one request per batch, unless a server caps pages below what matched
                ids = {op: v for op, v in (("$gt", high), ("$lte", until_id)) if v is not None}
                query: dict[str, Any] = {"meta/rootUuid": {"$in": roots[first:first + ROOT_BATCH]}}
                if ids:
                    query["_id"] = ids
                params = {"sort": '{"_id":1}', "start": 0, "limit": MAX_PAGE_SIZE,
                          "query": orjson.dumps(query).decode()}
                data, raw = self._get_json(path, params, form=uid, last_id=high,
                                           check=_page_check(high, MAX_PAGE_SIZE, until_id), parse=_ids_only)
                results = data["results"]
                if not results:
                    break
                page = _lazy_page(raw, data)
                high = page.last_id
                yield page
                if len(results) >= data["count"]:
                    break

    def iter_submission_pages(
        self,
        uid: str,
        *,
        after_id: int | None = None,
        page_size: int = 1000,
        fields: list[str] | None = None,
        ids: Sequence[int] | None = None,
        until_id: int | None = None,
    ) -> Generator[SubmissionPage, None, None]:
        """Yield the submissions of form `uid` in pages, `_id` ascending, by keyset on `_id`.

        Each request is `query={"_id":{"$gt":H}}` (and `$lte` until_id), `sort={"_id":1}`, an explicit
        `limit` and `start=0`; H moves to the page's last `_id`, so deletions during the crawl shift
        nothing. Empty pages are not yielded.

        Args:
            uid: The asset uid of the form.
            after_id: Resume after this `_id` (the watermark); None starts at the beginning.
            page_size: Rows per request, at most 1000 (KoBo's cap; the server default is never trusted).
            fields: Top-level keys to fetch (KoBo always adds `_id`, `_uuid`, `meta/rootUuid`).
            ids: Re-fetch exactly these `_id`s (in batches of 500) instead of paging; deleted ids are
                simply absent. `after_id`/`until_id` are ignored then.
            until_id: Stop at this `_id` (inclusive).

        Raises:
            KoboUnavailable: the server stayed unreachable; `last_id` says where to resume.
            BadPayload: a page was truncated, not JSON, short or out of order; `last_id` as above.
        """
        limit = max(1, min(int(page_size), MAX_PAGE_SIZE))
        fields_json = None if fields is None else orjson.dumps(list(fields)).decode()
        if ids is not None:
            base: dict[str, Any] = {"sort": '{"_id":1}', "start": 0}
            if fields_json is not None:
                base["fields"] = fields_json
            yield from self._iter_id_batches(uid, URLS["data"].format(uid=uid), base, ids)
            return

        high = after_id
        while True:
            page, served_limit = self._keyset_page(uid, fields_json, after=high, until=until_id, limit=limit)
            if served_limit < limit:
                # an older or differently configured server caps lower than we asked: follow its size
                log.info("form %s: the server caps pages at %d rows", uid, served_limit)
                limit = served_limit
            if page is None:
                return
            yield page
            high = page.last_id
            assert high is not None  # a page with rows has a last `_id`
            # the count covers this page and everything after it under the same filter
            if page.count <= page.size or (until_id is not None and high >= until_id):
                return

    def _keyset_page(
        self,
        uid: str,
        fields_json: str | None,
        *,
        after: int | None,
        until: int | None,
        limit: int,
        descending: bool = False,
        start: int = 0,
    ) -> tuple[SubmissionPage | None, int]:
        """One keyset request: the submissions with `after` < `_id` <= `until` (None: unbounded), `limit`
        at most, the lowest `_id`s or with `descending` the highest (`sort={"_id":-1}`; that page stays as
        sent, highest first, until `_rows_after` turns it round where it is yielded: parsing and
        re-encoding it here would delay the concurrent iterator's first round), skipping `start` of them
        (only the concurrent iterator's second page: offsets shift with deletions, see its docstring).

        Returns:
            The page (None when nothing matched) and the page size the server really applied.
        """
        cond: dict[str, int] = {}
        if after is not None:
            cond["$gt"] = int(after)
        if until is not None:
            cond["$lte"] = int(until)
        sort = '{"_id":-1}' if descending else '{"_id":1}'
        params: dict[str, Any] = {"sort": sort, "start": start, "limit": limit}
        if fields_json is not None:
            params["fields"] = fields_json
        if cond:
            params["query"] = orjson.dumps({"_id": cond}).decode()
        data, raw = self._get_json(URLS["data"].format(uid=uid), params, form=uid, last_id=after,
                                   check=_page_check(after, limit, until, descending=descending, start=start),
                                   parse=_ids_only)
        served_limit = _served_limit(data, limit)
        if not data["results"]:
            return None, served_limit
        return _lazy_page(raw, data), served_limit

    def _iter_id_batches(
        self, uid: str, path: str, base: dict[str, Any], ids: Sequence[int]
    ) -> Iterator[SubmissionPage]:
        wanted = sorted({int(i) for i in ids})
        for start in range(0, len(wanted), ID_BATCH):
            batch = wanted[start:start + ID_BATCH]
            params = {**base, "limit": len(batch), "query": orjson.dumps({"_id": {"$in": batch}}).decode()}
            data, raw = self._get_json(path, params, form=uid, check=_batch_check(set(batch)),
                                       parse=_ids_only)
            if data["results"]:
                yield _lazy_page(raw, data)

    def iter_submission_pages_concurrent(
        self,
        uid: str,
        *,
        after_id: int | None = None,
        until_id: int | None = None,
        workers: int = 3,
        page_size: int = 1000,
        fields: list[str] | None = None,
    ) -> Iterator[SubmissionPage]:
        """Yield the same pages as `iter_submission_pages`, fetching disjoint `_id` ranges concurrently.

        The first round fetches three pages at once: the first page, the second by offset (`start` one
        row short of a page, so that it overlaps the first by a row: a gap between them, left by a
        deletion meanwhile or a server that serves smaller pages, is seen and fetched) and the top page
        (the highest `_id`s, sorted descending). The range left between them is then known. It is cut
        into slices expected to hold just under a page each (`_slice_fill`, from the gaps between the
        `_id`s seen), which `workers` threads fetch (see `_Crawl`: a slice that held more than a page
        leaves its rest to the other workers; at most 2 × `workers` pages wait for the caller). Pages
        are yielded in `_id` order. The crawl takes the submissions that were there when it started, up
        to the top page: what arrives meanwhile has higher `_id`s, so the next run, resuming after the
        last `_id` received, finds it. A range that fits in one page costs the first round's requests.
        With fewer than 3 workers the first round is the first and the top page.

        Resuming (`after_id` set) for whole submissions (`fields` None), the top page is asked for the
        `_id`s only and its rows are fetched as slices like the rest: an incremental run's few new
        submissions, which the first and the top page would both hold, then cross the network once (at
        the cost of at most one more round when much is new). From the start, the top page brings its rows.

        A yielded page's `count` is the first page's count less the rows yielded before it (what a
        progress display needs), not the server's count for the slice it came from.

        Args:
            uid: The asset uid of the form.
            after_id: Resume after this `_id`; None starts at the beginning.
            until_id: Stop at this `_id` (inclusive), as in `iter_submission_pages`.
            workers: Concurrent requests (1 to 8); 1 is the sequential iterator.
            page_size: Rows per request, at most 1000.
            fields: As in `iter_submission_pages`.

        Raises:
            KoboUnavailable, BadPayload: as `iter_submission_pages`; `last_id` is the last page the caller
                received, so resuming from it misses nothing.
        """
        workers = max(1, min(int(workers), 8))
        rows = max(1, min(int(page_size), MAX_PAGE_SIZE))
        if workers == 1:
            yield from self.iter_submission_pages(uid, after_id=after_id, page_size=rows, fields=fields,
                                                  until_id=until_id)
            return
        fields_json = None if fields is None else orjson.dumps(list(fields)).decode()
        top_has_rows = after_id is None or fields is not None

        def fetch(
            after: int | None, until: int | None, descending: bool = False, start: int = 0,
            fields_json: str | None = fields_json,
        ) -> SubmissionPage | None:
            return self._keyset_page(uid, fields_json, after=after, until=until, limit=rows,
                                     descending=descending, start=start)[0]

        # the second page by offset overlaps the first by a row: it proves that nothing lies between them
        offset = rows - 1 if workers >= 3 and rows > 1 else 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kobo-fetch") as pool:
            top_fields = fields_json if top_has_rows else '["_id"]'
            top_job = pool.submit(fetch, after_id, until_id, True, 0, top_fields)
            second_job = pool.submit(fetch, after_id, until_id, False, offset) if offset else None
            first = fetch(after_id, until_id)
            top = top_job.result()
            second = second_job.result() if second_job is not None else None
            del top_job, second_job  # they would hold their pages to the end
            if first is None:
                return
            # all in one page; or no top page: what was above the first page went meanwhile
            if first.count <= first.size or top is None:
                yield first
                return
            # the first page is full, so its length is the page size the server really applies; the
            # `_id`s are read again with simdjson, as parsing the rows here would hold up every worker
            first_ids, top_ids = _page_ids(first), _page_ids(top)[::-1]
            second_ids = _page_ids(second) if second is not None else []
            fill = _slice_fill([first_ids, second_ids, top_ids], first.size)
            # only the crawl holds the slices: a list kept here would keep every page until the end
            crawl = _Crawl(_plan(first, (second, second_ids, offset), (top, top_ids, top_has_rows), fill),
                           fetch, window=2 * workers, fill=fill)
            for _ in range(workers):
                pool.submit(crawl.work)
            left, last = first.count, after_id
            pages = chain([first], crawl.pages())
            del first, second, top  # the crawl holds the pages until their turn, not this frame
            try:
                for page in pages:
                    yield replace(page, count=max(page.size, left))
                    left -= page.size
                    last = page.last_id
            except KoboUnavailable as exc:
                # resuming must restart after the last page the caller actually received
                raise KoboUnavailable(exc.reason, attempts=exc.attempts, form=uid,
                                      status_code=exc.status_code, last_id=last) from exc
            except BadPayload as exc:
                raise BadPayload(exc.reason, form=uid, status_code=exc.status_code, last_id=last) from exc
            finally:
                crawl.close()


# ---------------------------------------------------------------------- the concurrent crawl


@dataclass(eq=False)  # a slice is found in the crawl by identity
class _Slice:
    """The submissions with `after` < `_id` <= `until`, fetched with one request."""

    after: int
    until: int
    page: SubmissionPage | None = None
    error: BaseException | None = None
    state: str = "todo"  # todo → fetching → done
    # a first-round page as sent: `_rows_after` cuts it to the rows above `after` (and turns the top
    # page, sent highest first, round) when it is yielded, not in the first round, where all wait for it
    trim: bool = False
    descending: bool = False


class _Crawl:
    """Slices of an `_id` range fetched by worker threads and yielded in `_id` order.

    A worker takes the lowest slice nobody has taken among the first `window` not yet yielded, so at
    most `window` pages wait for the caller and no worker idles while one of those is left. A slice that
    held more rows than a page leaves the rest (after its last `_id`, as many rows as the server counted
    there) right behind it, cut into new slices by `fill`: the next free workers fetch them in parallel.
    """

    def __init__(
        self,
        slices: list[_Slice],
        fetch: Callable[[int, int], SubmissionPage | None],
        *,
        window: int,
        fill: float,
    ) -> None:
        self._slices = deque(slices)  # not yet yielded, in `_id` order
        self._fetch = fetch
        self._window = window
        self._fill = fill
        self._todo = sum(s.state == "todo" for s in slices)
        self._fetching = 0
        self._closed = False
        self._cond = threading.Condition()

    def work(self) -> None:
        """One worker thread: fetch slices until none is left or the caller stopped."""
        while (todo := self._take()) is not None:
            page: SubmissionPage | None = None
            error: BaseException | None = None
            try:
                page = self._fetch(todo.after, todo.until)
            except BaseException as exc:  # the caller gets it in `_id` order, after the pages before it
                error = exc
            with self._cond:
                todo.page, todo.error, todo.state = page, error, "done"
                self._fetching -= 1
                if page is not None and page.last_id is not None and page.count > page.size:
                    rest = _cut(page.last_id, todo.until, page.count - page.size, page.size * self._fill)
                    at = self._slices.index(todo) + 1
                    for piece in reversed(rest):
                        self._slices.insert(at, piece)
                    self._todo += len(rest)
                self._cond.notify_all()
            # waiting in `_take` for the window to move, this thread must not keep the page it handed over
            # (nor its slice, which holds it): the caller may be done with it long before
            del todo, page, error

    def _take(self) -> _Slice | None:
        with self._cond:
            # a slice being fetched may still leave a rest to fetch
            while not self._closed and (self._todo or self._fetching):
                todo = next((s for s in islice(self._slices, self._window) if s.state == "todo"), None)
                if todo is not None:
                    todo.state = "fetching"
                    self._todo -= 1
                    self._fetching += 1
                    return todo
                self._cond.wait()
            return None

    def pages(self) -> Iterator[SubmissionPage]:
        """The pages in `_id` order; a slice's error is raised in its place."""
        while True:
            with self._cond:
                while self._slices and self._slices[0].state != "done":
                    self._cond.wait()
                if not self._slices:
                    return
                head = self._slices.popleft()
                self._cond.notify_all()  # the window moved on: a worker may take the next slice
            if head.error is not None:
                raise head.error
            if head.page is not None:
                yield _rows_after(head.page, head.after, head.descending) if head.trim else head.page

    def close(self) -> None:
        """Let the workers stop after their current request."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _plan(
    first: SubmissionPage,
    second: tuple[SubmissionPage | None, list[int], int],
    top: tuple[SubmissionPage, list[int], bool],
    fill: float,
) -> list[_Slice]:
    """The slices after the first page: the second page (`second`: the page, its `_id`s and the offset
    it was asked at; a slice for the gap before it if it does not reach back to the first page), the
    range up to the top page cut by `_cut`, and the top page (`top`: the page, its `_id`s ascending and
    whether it holds the rows; fetched highest first, its rows above the pages before it only). A top
    page of `_id`s only ends the range, which is cut up to its highest `_id`."""
    high = first.last_id
    assert high is not None  # a page with rows
    covered = first.size  # the rows up to `high`, as the server counted them
    slices: list[_Slice] = []
    page, ids, offset = second
    if page is not None and ids[-1] > high:
        if ids[0] - 1 > high:  # a gap: ids may lie between the two pages
            slices.append(_Slice(high, ids[0] - 1))
        slices.append(_Slice(max(high, ids[0] - 1), ids[-1], page=page, state="done", trim=ids[0] <= high))
        high, covered = ids[-1], offset + len(ids)
    page, ids, has_rows = top
    bottom, top_id = ids[0], ids[-1]
    if not has_rows:
        if top_id > high:
            slices += _cut(high, top_id, first.count - covered, first.size * fill)
        return slices
    if bottom - 1 > high:  # not all above the pages before it fitted in the top page
        between = first.count - covered - page.size
        slices += _cut(high, bottom - 1, between, first.size * fill)
    if top_id > high:
        slices.append(_Slice(high, top_id, page=page, state="done", trim=True, descending=True))
    return slices


def _cut(after: int, until: int, rows: int, per_slice: float) -> list[_Slice]:
    """(after, until] as even `_id` ranges expected to hold `per_slice` of its `rows` each (never more
    slices than ids)."""
    n = max(1, min(math.ceil(rows / max(per_slice, 1.0)), until - after))
    cuts = [after + (until - after) * k // n for k in range(n + 1)]
    return [_Slice(a, b) for a, b in zip(cuts, cuts[1:], strict=False)]


def _slice_fill(id_runs: Sequence[Sequence[int]], rows: int) -> float:
    """The share of a page of `rows` to size slices for, from the gaps between consecutive `_id`s seen.

    `_id`s are a server-wide sequence, so a form's are sparse. A range expected to hold m of them holds
    about m ± cv·√m, cv being the gaps' coefficient of variation (for independent gaps); sized
    SLICE_SPREAD such deviations below a page, a slice rarely needs a second request. That is ≈ 0.98 of
    a page for evenly spread `_id`s (a form alone on its server; the demo's), ≈ 0.94 for a form whose
    submissions interleave at random with other forms' (cv ≈ 1), less for bursty ones.
    """
    gaps = [b - a for ids in id_runs for a, b in zip(ids, ids[1:], strict=False)]
    if len(gaps) < 2:
        return 0.9
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    return min(0.99, max(0.5, 1 - SLICE_SPREAD * cv / math.sqrt(rows)))


def _page_of(results: list[dict], count: int, *, nbytes: int) -> SubmissionPage:
    """A page of rows in `_id` order whose body is re-encoded from them (workers and replays read `raw`)."""
    raw = orjson.dumps({"count": count, "next": None, "previous": None, "results": results})
    return SubmissionPage.of(results, count=count, last_id=int(results[-1]["_id"]), nbytes=nbytes, raw=raw)


def _rows_after(page: SubmissionPage, after: int, descending: bool) -> SubmissionPage:
    """A first-round page without its rows up to `after`, in ascending `_id` order (`descending`: it was
    sent highest first)."""
    rows = _rows_of(page.raw)
    if descending:
        rows.reverse()
    return _page_of([row for row in rows if row["_id"] > after], page.count, nbytes=page.nbytes)


def _page_ids(page: SubmissionPage) -> list[int]:
    """A page's `_id`s in the order of its body (checked integers: the page passed `_page_check`)."""
    return [int(row["_id"]) for row in _ids_only(page.raw)["results"]]


def _lazy_page(raw: bytes, data: dict) -> SubmissionPage:
    """A page from a body `_ids_only` read: its rows are parsed from `raw` only if someone reads them."""
    ids = data["results"]
    return SubmissionPage(count=data["count"], last_id=int(ids[-1]["_id"]), nbytes=len(raw), raw=raw,
                          size=len(ids))


def _rows_of(raw: bytes) -> list[dict]:
    data = orjson.loads(raw)
    return data["results"] if isinstance(data, dict) else data


def _ids_only(body: bytes) -> dict[str, Any]:
    """A data page's envelope with each row reduced to its `_id`, for the page checks and keyset paging.

    simdjson reads the body without building the rows as Python objects (≈ 4 ms against ≈ 35 ms for
    `orjson.loads` on a 1 000-row page); the rows are built later, once, where they are used.
    """
    doc = simdjson.Parser().parse(body)
    if not isinstance(doc, simdjson.Object):
        return {}
    results = doc.get("results")
    rows: Any = results
    if isinstance(results, simdjson.Array):
        rows = [{"_id": row.get("_id")} if isinstance(row, simdjson.Object) else None for row in results]
    return {"count": doc.get("count"), "next": doc.get("next"), "results": rows}


# ---------------------------------------------------------------------- page checks


def _check_envelope(data: Any) -> None:
    if not isinstance(data, dict):
        raise _PayloadProblem("the response is not a JSON object")
    if not isinstance(data.get("results"), list):
        raise _PayloadProblem("'results' is not a list")
    count = data.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise _PayloadProblem("'count' is not a non-negative integer")


def _row_ids(results: list[Any]) -> list[int]:
    ids = []
    for row in results:
        rid = row.get("_id") if isinstance(row, dict) else None
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise _PayloadProblem("a row has no integer _id")
        ids.append(rid)
    return ids


def _served_limit(data: dict, asked: int) -> int:
    """The page size the server really applied, read from its `next` link (DRF echoes the capped limit)."""
    nxt = data.get("next")
    if not isinstance(nxt, str):
        return asked
    try:
        served = int(parse_qs(urlsplit(nxt).query).get("limit", [asked])[0])
    except (TypeError, ValueError):
        return asked
    return served if 0 < served < asked else asked


def _page_check(
    high: int | None, limit: int, until_id: int | None, *, descending: bool = False, start: int = 0
) -> Callable[[Any], None]:
    def check(data: Any) -> None:
        _check_envelope(data)
        results, count = data["results"], data["count"]
        ids = _row_ids(results)
        if descending:
            ids.reverse()
        if high is not None and ids and ids[0] <= high:
            raise _PayloadProblem(f"a row's _id is not above {high}")
        if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
            raise _PayloadProblem(f"_ids are not strictly {'decreasing' if descending else 'increasing'}")
        if until_id is not None and ids and ids[-1] > until_id:
            raise _PayloadProblem(f"a row's _id is above {until_id}")
        if len(results) > limit:
            raise _PayloadProblem(f"{len(results)} rows for a limit of {limit}")
        promised = min(_served_limit(data, limit), max(0, count - start))
        if len(results) < promised:
            raise _PayloadProblem(f"{len(results)} rows where {promised} were promised")

    return check


def _batch_check(batch: set[int]) -> Callable[[Any], None]:
    def check(data: Any) -> None:
        _check_envelope(data)
        ids = _row_ids(data["results"])
        if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
            raise _PayloadProblem("_ids are not strictly increasing")
        if not set(ids) <= batch:
            raise _PayloadProblem("rows for _ids that were not asked for")
        if len(ids) < data["count"]:
            raise _PayloadProblem(f"{len(ids)} rows where {data['count']} were promised")

    return check


__all__ = ["KoboClient", "SubmissionPage", "redact_url", "URLS"]
