"""The KoBo (KPI v2) API client: assets, versions and submission pages as generators; one retry policy."""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import orjson
import requests

from connectors.errors import (
    BadPayload,
    InsecureUrl,
    KoboUnavailable,
    TokenRejected,
    error_for_status,
)

log = logging.getLogger("kobo_etl.http")

# URL templates kept as data (pyodk style); all paths are relative to the server's base URL.
URLS = {
    "assets": "/api/v2/assets/",
    "asset": "/api/v2/assets/{uid}/",
    "versions": "/api/v2/assets/{uid}/versions/",
    "version": "/api/v2/assets/{uid}/versions/{version_uid}/",
    "data": "/api/v2/assets/{uid}/data/",
}

MAX_PAGE_SIZE = 1000  # KPI's cap since 2.026.03; a bigger limit is silently capped
ID_BATCH = 500  # ids per `$in` re-fetch: keeps the URL well under proxy limits (~8 KB)
ASSET_PAGE_SIZE = 100
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
PAYLOAD_RETRIES = 2  # a truncated or non-JSON body is retried this many times before BadPayload
# rows a concurrent slice is sized for, as a share of a page: an overfull slice costs a second request in
# its worker (the window hides it), an underfull one costs requests for every slice (0.75: 40 requests for
# 30 pages, 2.0x; 0.9: see bench/README.md)
SLICE_FILL = 0.9
_SAFE_QUERY_KEYS = frozenset({"format", "limit", "start"})  # shown in logs; every other value is redacted


@dataclass
class SubmissionPage:
    """One page of submissions.

    Attributes:
        results: The submissions, `_id` ascending, as KoBo sent them.
        count: The server's `count` for the request that produced the page, i.e. the rows that matched
            from this page on (this page included), not the form's total.
        last_id: The last `_id` in `results` (the resume point), or None when the page is empty.
        nbytes: Size of the response body in bytes.
        raw: The response body as received (JSON bytes), for saving a page to replay it offline or to
            read it with DuckDB without building Python objects again.
    """

    results: list[dict]
    count: int
    last_id: int | None
    nbytes: int
    raw: bytes = field(default=b"", repr=False)


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
    parts = urlsplit(base_url.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise InsecureUrl(host or "<no host>")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(host):
        raise InsecureUrl(host)
    # keep a path prefix (a server mounted under /kobo/) but never a query or fragment
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


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
    ) -> tuple[Any, bytes]:
        """GET `path` and parse its JSON under the retry policy.

        Args:
            path: Path under the base URL.
            params: Query parameters (`format=json` is added).
            form: The asset uid, named in errors.
            last_id: The last good `_id` so far, named in errors.
            check: Validates the parsed body; raises _PayloadProblem for a body to retry.

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
                resp = self._session.get(url, params=query, headers=headers, timeout=self.timeout)
                status = resp.status_code
                body = resp.content  # reads the whole body: an incomplete read raises here
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                # the connection closed before Content-Length bytes arrived: a truncated body
                reason = "the response body was cut short"
                payload_problem = True
                failure: Exception = exc
                log.debug("GET %s - truncated %.0f ms", redact_url(url), (time.monotonic() - t0) * 1000)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                reason = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "connection failed"
                failure = exc
                log.debug("GET %s - %s %.0f ms", redact_url(url), reason, (time.monotonic() - t0) * 1000)
            else:
                log.debug("GET %s %d %d B %.0f ms", redact_url(resp.url), status, len(body),
                          (time.monotonic() - t0) * 1000)
                if status == 200:
                    try:
                        data = orjson.loads(body)
                        if check is not None:
                            check(data)
                        return data, body
                    except orjson.JSONDecodeError as exc:
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

    def count_submissions(self, uid: str) -> int:
        """Return the number of submissions of form `uid` the token can read (`count` of a limit=1 call)."""
        data, _ = self._get_json(
            URLS["data"].format(uid=uid),
            {"limit": 1, "fields": '["_id"]'},
            form=uid,
            check=_check_envelope,
        )
        return int(data["count"])

    def max_submission_id(self, uid: str) -> int | None:
        """Return the highest `_id` of form `uid`, or None when it has no submissions."""
        data, _ = self._get_json(
            URLS["data"].format(uid=uid),
            {"limit": 1, "fields": '["_id"]', "sort": '{"_id":-1}'},
            form=uid,
            check=_check_envelope,
        )
        results = data["results"]
        return int(results[0]["_id"]) if results else None

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
        path = URLS["data"].format(uid=uid)
        base: dict[str, Any] = {"sort": '{"_id":1}', "start": 0}
        if fields is not None:
            base["fields"] = orjson.dumps(list(fields)).decode()
        if ids is not None:
            yield from self._iter_id_batches(uid, path, base, ids)
            return

        high = after_id
        while True:
            cond: dict[str, int] = {}
            if high is not None:
                cond["$gt"] = int(high)
            if until_id is not None:
                cond["$lte"] = int(until_id)
            params = {**base, "limit": limit}
            if cond:
                params["query"] = orjson.dumps({"_id": cond}).decode()
            data, raw = self._get_json(
                path, params, form=uid, last_id=high,
                check=_page_check(high, limit, until_id),
            )
            results, count = data["results"], data["count"]
            served_limit = _served_limit(data, limit)
            if served_limit < limit:
                # an older or differently configured server caps lower than we asked: follow its size
                log.info("form %s: the server caps pages at %d rows", uid, served_limit)
                limit = served_limit
            if not results:
                return
            last_id = int(results[-1]["_id"])
            yield SubmissionPage(results=results, count=count, last_id=last_id, nbytes=len(raw), raw=raw)
            high = last_id
            # the count covers this page and everything after it under the same filter
            if count <= len(results) or (until_id is not None and last_id >= until_id):
                return

    def _iter_id_batches(
        self, uid: str, path: str, base: dict[str, Any], ids: Sequence[int]
    ) -> Iterator[SubmissionPage]:
        wanted = sorted({int(i) for i in ids})
        for start in range(0, len(wanted), ID_BATCH):
            batch = wanted[start:start + ID_BATCH]
            params = {**base, "limit": len(batch), "query": orjson.dumps({"_id": {"$in": batch}}).decode()}
            data, raw = self._get_json(path, params, form=uid, check=_batch_check(set(batch)))
            results = data["results"]
            if results:
                yield SubmissionPage(results=results, count=data["count"], last_id=int(results[-1]["_id"]),
                                     nbytes=len(raw), raw=raw)

    def iter_submission_pages_concurrent(
        self,
        uid: str,
        *,
        after_id: int | None = None,
        max_id: int | None = None,
        until_id: int | None = None,
        workers: int = 3,
        page_size: int = 1000,
        fields: list[str] | None = None,
    ) -> Iterator[SubmissionPage]:
        """Yield the same pages as `iter_submission_pages`, fetching disjoint `_id` ranges concurrently.

        The first page is fetched alone (together with the highest-`_id` probe when needed); it is yielded
        before any other request, and its `count` sizes the rest: the range above it is cut into slices of
        about `SLICE_FILL` of a page, so a slice rarely needs a second request. `workers` slices are in
        flight and up to twice that many are queued or buffered, so one slow slice does not idle the others.
        Pages are yielded in `_id` order. The last slice is open-ended (unless `until_id`), so what arrived
        meanwhile is fetched too and nothing is missed.

        Args:
            uid: The asset uid of the form.
            after_id: Resume after this `_id`; None starts at the beginning.
            max_id: Where the open-ended last slice starts; None asks the server for its highest `_id`.
            until_id: Stop at this `_id` (inclusive), as in `iter_submission_pages`; no probe is sent then.
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

        def fetch(lo: int | None, hi: int | None) -> list[SubmissionPage]:
            pages = self.iter_submission_pages(uid, after_id=lo, until_id=hi, page_size=rows, fields=fields)
            return list(pages)

        def first_page() -> SubmissionPage | None:
            pages = self.iter_submission_pages(uid, after_id=after_id, until_id=until_id, page_size=rows,
                                               fields=fields)
            try:
                return next(pages, None)  # one request
            finally:
                pages.close()

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kobo-fetch") as pool:
            # the probe goes out with the first page instead of before it: one round trip, not two
            top = pool.submit(self.max_submission_id, uid) if until_id is None and max_id is None else None
            first = first_page()
            if top is not None:
                max_id = top.result()
            if first is None:
                return
            yield first
            high = first.last_id
            end = until_id if until_id is not None else max_id
            # the count covers the first page and all after it; `high` is never None here, because
            # iter_submission_pages does not yield empty pages (the check only narrows the type)
            if first.count <= len(first.results) or high is None:
                return
            if end is None or high >= end:  # arrived after the probe, or little is left: go on sequentially
                yield from self.iter_submission_pages(uid, after_id=high, until_id=until_id, page_size=rows,
                                                      fields=fields)
                return
            # _ids are sparse (shared with other forms; deletes leave gaps): cut the rest into even slices
            # sized by its density to hold about SLICE_FILL of a page (a slice never holds more ids than
            # its width); the last one is open-ended unless bounded, so arrivals since the probe come too
            left = first.count - len(first.results)
            n = max(1, min(-(-left // max(1, int(rows * SLICE_FILL))), end - high))
            cuts = [high + (end - high) * k // n for k in range(n + 1)]
            slices: deque[tuple[int | None, int | None]] = deque(zip(cuts, cuts[1:], strict=False))
            if until_id is None:
                slices.append((slices.pop()[0], None))
            yield from self._ordered(uid, pool, fetch, slices, workers, last=high)

    @staticmethod
    def _ordered(
        uid: str,
        pool: ThreadPoolExecutor,
        fetch: Callable[[int | None, int | None], list[SubmissionPage]],
        slices: deque[tuple[int | None, int | None]],
        workers: int,
        *,
        last: int | None,
    ) -> Iterator[SubmissionPage]:
        """Fetch `slices` on `pool` and yield their pages in order, with at most 2 × `workers` slices
        submitted and not yet yielded (bounds memory; `workers` threads keep the server's load polite)."""
        pending: deque[Future[list[SubmissionPage]]] = deque()
        try:
            while slices or pending:
                while slices and len(pending) < 2 * workers:
                    pending.append(pool.submit(fetch, *slices.popleft()))
                try:
                    pages = pending.popleft().result()
                except KoboUnavailable as exc:
                    # resuming must restart after the last page the caller actually received
                    raise KoboUnavailable(exc.reason, attempts=exc.attempts, form=uid,
                                          status_code=exc.status_code, last_id=last) from exc
                except BadPayload as exc:
                    raise BadPayload(exc.reason, form=uid, status_code=exc.status_code, last_id=last) from exc
                for page in pages:
                    last = page.last_id
                    yield page
        finally:
            for fut in pending:
                fut.cancel()


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


def _page_check(high: int | None, limit: int, until_id: int | None) -> Callable[[Any], None]:
    def check(data: Any) -> None:
        _check_envelope(data)
        results, count = data["results"], data["count"]
        ids = _row_ids(results)
        if high is not None and ids and ids[0] <= high:
            raise _PayloadProblem(f"a row's _id is not above {high}")
        if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
            raise _PayloadProblem("_ids are not strictly increasing")
        if until_id is not None and ids and ids[-1] > until_id:
            raise _PayloadProblem(f"a row's _id is above {until_id}")
        if len(results) > limit:
            raise _PayloadProblem(f"{len(results)} rows for a limit of {limit}")
        if len(results) < min(_served_limit(data, limit), count):
            raise _PayloadProblem(f"{len(results)} rows where {min(limit, count)} were promised")

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
