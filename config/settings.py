"""Settings from the environment and `.env`: where KoBo is, the token, the data folder, the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.errors import ConfigError

#: DuckDB's memory cap as DuckDB reads it: a size (256MiB, 1GB, 0.5GiB) or a share of the RAM (50%)
_MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*([kmgt]i?b|b|%)", re.IGNORECASE)

#: Clearly labelled, public key used only by `kobo-etl demo` and the tests. Never use it for real data.
DEMO_PSEUDONYMISATION_KEY = "DEMO-KEY-not-secret-do-not-use-for-real-data-0123456789"


class Settings(BaseSettings):
    """Runtime settings. Token and key are SecretStr: printing the settings never shows them."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
        # `KOBO_ETL_PSEUDONYMISATION_KEY=` as copied from .env.example means "not set", not an empty key
        env_ignore_empty=True,
    )

    kobo_url: str = Field("https://kf.kobotoolbox.org", validation_alias="KOBO_URL")
    kobo_token: SecretStr | None = Field(None, validation_alias="KOBO_TOKEN")
    data_dir: Path = Field(Path("data"), validation_alias="KOBO_ETL_DATA_DIR")
    forms_dir: Path = Field(Path("config/forms"), validation_alias="KOBO_ETL_FORMS_DIR")
    export_format: Literal["parquet", "csv"] = Field("parquet", validation_alias="KOBO_ETL_EXPORT_FORMAT")
    indicators_file: Path = Field(Path("config/indicators.yaml"), validation_alias="KOBO_ETL_INDICATORS_FILE")
    pseudonymisation_key: SecretStr | None = Field(None, validation_alias="KOBO_ETL_PSEUDONYMISATION_KEY")
    allow_insecure_http: bool = Field(False, validation_alias="KOBO_ETL_ALLOW_INSECURE_HTTP")
    request_timeout_s: float = Field(60.0, validation_alias="KOBO_ETL_REQUEST_TIMEOUT")
    max_retry_s: float = Field(300.0, validation_alias="KOBO_ETL_MAX_RETRY_SECONDS")
    page_size: int = Field(1000, ge=1, le=1000, validation_alias="KOBO_ETL_PAGE_SIZE")
    # DuckDB's share of RAM per warehouse connection (docs/operations.md §7, "Memory and disk")
    duckdb_memory_limit: str = Field("256MiB", validation_alias="KOBO_ETL_DUCKDB_MEMORY_LIMIT")
    # alerts on a failed or red run (pipelines/alerts.py); the webhook URL embeds a secret, hence SecretStr
    alert_webhook_url: SecretStr | None = Field(None, validation_alias="KOBO_ETL_ALERT_WEBHOOK_URL")
    smtp_host: str | None = Field(None, validation_alias="KOBO_ETL_SMTP_HOST")
    smtp_port: int = Field(587, validation_alias="KOBO_ETL_SMTP_PORT")
    smtp_user: str | None = Field(None, validation_alias="KOBO_ETL_SMTP_USER")
    smtp_password: SecretStr | None = Field(None, validation_alias="KOBO_ETL_SMTP_PASSWORD")
    smtp_from: str | None = Field(None, validation_alias="KOBO_ETL_SMTP_FROM")
    smtp_to: str | None = Field(None, validation_alias="KOBO_ETL_SMTP_TO")  # comma-separated addresses
    smtp_starttls: bool = Field(True, validation_alias="KOBO_ETL_SMTP_STARTTLS")

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_limit(cls, value: str) -> str:
        if not _MEMORY_LIMIT.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a size: write e.g. 256MiB, 1GB or 50% (of the RAM)")
        return value.strip()

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    def require_token(self) -> str:
        if self.kobo_token is None or not self.kobo_token.get_secret_value():
            raise ConfigError("KOBO_TOKEN is not set: copy .env.example to .env and set your KoBo API token")
        return self.kobo_token.get_secret_value()

    def require_key(self) -> bytes:
        """The pseudonymisation key as bytes; at least 32 bytes."""
        if self.pseudonymisation_key is None or not self.pseudonymisation_key.get_secret_value():
            raise ConfigError(
                "KOBO_ETL_PSEUDONYMISATION_KEY is not set: run `kobo-etl keygen` and put the key in .env"
            )
        key = self.pseudonymisation_key.get_secret_value().encode()
        if len(key) < 32:
            raise ConfigError("KOBO_ETL_PSEUDONYMISATION_KEY is too short: it needs at least 32 bytes")
        return key


def load_settings(**overrides: object) -> Settings:
    """Read settings from env/.env; overrides (by field name) win. Errors name the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting {name}: {first['msg']}") from None
