"""Errors the KoBo API client raises, and the one function that maps an HTTP status to them.

    EtlError                                 (config/errors.py)
    └── KoboError                            the KoBo server said no or sent something unusable
        ├── TokenRejected                    401: the API token is wrong or expired
        ├── PermissionDenied                 403: the token sees the form but may not read its data
        ├── FormNotFound                     404: no such form, or the token cannot see it
        ├── FormNotDeployed                  400 "not been deployed": a draft has no data endpoint
        ├── BadRequest                       other 4xx: the server refused the request (its detail shown)
        ├── BadPayload                       200 but the body is truncated, not JSON, or breaks paging rules
        ├── InsecureUrl                      http:// to a non-loopback host without the opt-in
        ├── BadServerUrl                     KOBO_URL is not an https:// URL, or no KoBo API answers there
        ├── UntrustedCertificate             the server's TLS certificate could not be verified
        └── KoboUnavailable (+Transient)     5xx / 429 / connection errors / timeouts, after retries ran out

Every error carries `form` (asset uid or None), `status_code` (or None) and `last_id` (the last `_id`
received intact before the failure, or None). Messages say what happened and what to do; they never
contain the token, a query string or a submission value.
"""

from __future__ import annotations

from config.errors import EtlError, Transient

_DETAIL_MAX = 200


class KoboError(EtlError):
    """Base class: the KoBo server refused a request or answered with something unusable."""

    def __init__(
        self,
        message: str,
        *,
        form: str | None = None,
        status_code: int | None = None,
        last_id: int | None = None,
        advice: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.last_id = last_id
        if status_code is not None and f"HTTP {status_code}" not in message:
            message = f"HTTP {status_code}: {message}"
        if last_id is not None:
            message = f"{message}; last good _id={last_id}"
        if advice:
            message = f"{message}; {advice}"
        super().__init__(message, form=form)


class TokenRejected(KoboError):
    """401: the server does not accept the API token."""

    def __init__(self, *, form: str | None = None, status_code: int | None = 401) -> None:
        super().__init__(
            "the KoBo server rejected the API token; check KOBO_TOKEN", form=form, status_code=status_code
        )


class PermissionDenied(KoboError):
    """403: the token can see the form but lacks the permission for this request (e.g. view_submissions)."""

    def __init__(self, *, form: str | None = None, status_code: int | None = 403) -> None:
        super().__init__(
            "the token's account may not read this; ask the form owner to share it with "
            "'View submissions'",
            form=form,
            status_code=status_code,
        )


class FormNotFound(KoboError):
    """404: KoBo answers 404 both for unknown uids and for private forms the token cannot see."""

    def __init__(self, *, form: str | None = None, status_code: int | None = 404) -> None:
        super().__init__(
            "form not found or the token cannot see it; check the form uid and that the form is "
            "shared with the token's account",
            form=form,
            status_code=status_code,
        )


class FormNotDeployed(KoboError):
    """400 "has not been deployed": the form is a draft, so it has no submissions endpoint."""

    def __init__(self, *, form: str | None = None, status_code: int | None = 400) -> None:
        super().__init__(
            "the form has not been deployed; deploy it in KoBo or remove it from the sync",
            form=form,
            status_code=status_code,
        )


class BadRequest(KoboError):
    """Another 4xx: the server refused the request; `detail` is the server's own explanation."""

    def __init__(self, detail: str, *, form: str | None = None, status_code: int | None = 400) -> None:
        self.detail = detail[:_DETAIL_MAX]
        super().__init__(
            f"the KoBo server refused the request: {self.detail}", form=form, status_code=status_code
        )


class BadPayload(KoboError):
    """The server answered 200 but the body is unusable (truncated, not JSON, rows missing or unordered)."""

    def __init__(
        self,
        reason: str,
        *,
        form: str | None = None,
        status_code: int | None = None,
        last_id: int | None = None,
    ) -> None:
        self.reason = reason
        super().__init__(
            f"unusable response from the KoBo server ({reason})",
            form=form,
            status_code=status_code,
            last_id=last_id,
            advice=("re-run: the sync resumes from there" if last_id is not None else "re-run")
            + "; if it persists, try a smaller page size",
        )


class InsecureUrl(KoboError):
    """The base URL would send the token in clear text (http:// to a host that is not loopback)."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"refusing to send the API token over plain http to {host!r}; use https:// in KOBO_URL "
            "(only for a trusted internal server: KOBO_ETL_ALLOW_INSECURE_HTTP=true)"
        )


class BadServerUrl(KoboError):
    """KOBO_URL is not the address of a KoBo server: not http(s)://host, or the form list is not there."""

    def __init__(self, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(
            reason,
            status_code=status_code,
            advice="set KOBO_URL to the KoBo server's address, e.g. https://kf.kobotoolbox.org "
            "(the KPI server, not kc.*; nothing after the host but the folder the server is under)",
        )


class UntrustedCertificate(KoboError):
    """The server's TLS certificate failed verification: retrying cannot help, and the token is not sent."""

    def __init__(self, host: str, reason: str, *, form: str | None = None) -> None:
        self.host = host
        super().__init__(
            f"the TLS certificate of the KoBo server {host!r} could not be verified ({reason}); "
            "nothing was sent",
            form=form,
            advice="have the server's certificate fixed (expired, self-signed or for another name), or, "
            "if your organisation signs it with its own CA, set REQUESTS_CA_BUNDLE to a CA bundle file "
            "that includes that CA",
        )


class KoboUnavailable(KoboError, Transient):
    """The server stayed unreachable or overloaded (5xx, 429, connection errors, timeouts) after retries."""

    def __init__(
        self,
        reason: str,
        *,
        attempts: int,
        form: str | None = None,
        status_code: int | None = None,
        last_id: int | None = None,
    ) -> None:
        self.reason = reason
        self.attempts = attempts
        super().__init__(
            f"the KoBo server is unavailable ({reason}; {attempts} attempts)",
            form=form,
            status_code=status_code,
            last_id=last_id,
            advice="re-run later: the sync resumes from there" if last_id is not None else "re-run later",
        )


def error_for_status(status_code: int, detail: str, *, form: str | None = None) -> KoboError:
    """Map a non-retryable HTTP status to the domain error (the single place that does so).

    Args:
        status_code: The HTTP status of the response (4xx, or a 5xx that retries could not cure).
        detail: The server's explanation (DRF `detail` or the raw body text), used for 400s.
        form: The asset uid the request was about; None for the form list (a 404 there means the base
            URL is wrong).

    Returns:
        The error to raise; an HTTP error is never turned into an empty result.
    """
    if status_code == 401:
        return TokenRejected(form=form)
    if status_code == 403:
        return PermissionDenied(form=form)
    if status_code == 404:
        # the only request about no form is the form list: a KoBo server always has it
        if form is None:
            return BadServerUrl("no KoBo form list at this server URL", status_code=404)
        return FormNotFound(form=form)
    if status_code == 400 and "not been deployed" in detail:
        return FormNotDeployed(form=form)
    if status_code == 410:
        # /api/v1 is gone since KPI 2.026.23; a 410 means the base URL points at a legacy endpoint
        return BadRequest("endpoint gone; use the KPI server URL (not kc.*) and /api/v2", form=form,
                          status_code=410)
    if 500 <= status_code < 600 or status_code == 429:
        return KoboUnavailable(f"HTTP {status_code}", attempts=1, form=form, status_code=status_code)
    return BadRequest(detail or "no detail given", form=form, status_code=status_code)
