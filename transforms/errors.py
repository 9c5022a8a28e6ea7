"""Errors of the transforms layer.

    EtlError (config/errors.py)
    ├── TransformError        the form content or data no longer matches what the schema expects
    │   └── FormContentError  a form version's content cannot be read (unbalanced groups, no survey)
    └── PrivacyError          a privacy policy cannot be applied safely

Casting problems with single values never raise: they become `QuarantineRecord`s.
"""

from __future__ import annotations

from config.errors import EtlError


class TransformError(EtlError):
    """The data no longer matches the form."""


class FormContentError(TransformError):
    """A form version's content is unusable; names the form and version, never a value."""

    def __init__(self, form: str, version: str, problem: str) -> None:
        self.version = version
        super().__init__(
            f"content of version {version!r} cannot be read: {problem}; re-deploy the form or report it",
            form=form,
        )


class PrivacyError(EtlError):
    """A privacy policy cannot be applied safely."""
