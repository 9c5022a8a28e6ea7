"""KoBo API client (pages as generators), its errors, and the KoBo-compatible demo server."""

from connectors.client import KoboClient, SubmissionPage, redact_url
from connectors.demo_server import DemoKoboServer
from connectors.errors import (
    BadPayload,
    BadRequest,
    BadServerUrl,
    FormNotDeployed,
    FormNotFound,
    InsecureUrl,
    KoboError,
    KoboUnavailable,
    PermissionDenied,
    TokenRejected,
    UntrustedCertificate,
    error_for_status,
)

__all__ = [
    "KoboClient", "SubmissionPage", "redact_url",
    "KoboError", "TokenRejected", "PermissionDenied", "FormNotFound", "FormNotDeployed", "BadRequest",
    "BadPayload", "InsecureUrl", "BadServerUrl", "UntrustedCertificate", "KoboUnavailable",
    "error_for_status",
    "DemoKoboServer",
]
