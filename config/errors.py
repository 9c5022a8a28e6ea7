"""The root of kobo-etl's error hierarchy.

    EtlError                      every error kobo-etl raises on purpose; message says what, where, what to do
    ├── ConfigError               settings or a per-form YAML file is wrong          (config/)
    │   └── FormConfigError       names the file, the field and what is expected
    ├── KoboError                 the KoBo server said no or sent something unusable  (connectors/errors.py)
    │   ├── TokenRejected, FormNotFound, FormNotDeployed, InsecureUrl, BadServerUrl, UntrustedCertificate,
    │   │   BadPayload
    │   └── KoboUnavailable (+Transient)  5xx/429/connection errors, after retries ran out
    ├── TransformError            the data no longer matches the form                  (transforms/errors.py)
    ├── PrivacyError              a policy cannot be applied safely                    (transforms/errors.py)
    └── WarehouseError            DuckDB file locked, schema conflict                  (warehouse/errors.py)

`Transient` is a marker: an error carrying it may succeed if retried later (the scheduler may retry a run).
Structured attributes (`form`, `submission_id`, `field`) let callers report without parsing messages.
Messages never contain a token, a query string or a submission value.
"""

from __future__ import annotations


class EtlError(Exception):
    """Base class for every error kobo-etl raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        form: str | None = None,
        submission_id: int | None = None,
        field: str | None = None,
    ) -> None:
        self.form = form
        self.submission_id = submission_id
        self.field = field
        where = []
        if form:
            where.append(f"form {form!r}")
        if submission_id is not None:
            where.append(f"submission _id={submission_id}")
        if field:
            where.append(f"field {field!r}")
        self.message = message
        super().__init__(f"{message} ({', '.join(where)})" if where else message)

    def __reduce__(self) -> tuple:
        # errors cross process boundaries (transform workers): rebuild without a subclass's own __init__
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[EtlError], args: tuple, state: dict) -> EtlError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class Transient:
    """Marker mixin: the same call may succeed later (network, server overload)."""


class ConfigError(EtlError):
    """Settings or configuration files are missing or invalid."""


class FormConfigError(ConfigError):
    """A per-form YAML file is invalid; names the file, the field and what is expected."""

    def __init__(self, path: str, field: str, expected: str) -> None:
        self.path = path
        super().__init__(f"{path}: field {field!r}: {expected}", field=field)
        # the message already names the field; keep the attribute without repeating it
        self.args = (f"{path}: field {field!r}: {expected}",)

    def __str__(self) -> str:
        return str(self.args[0])
