"""Settings from env and .env: what .env.example leaves empty counts as not set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from config import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_env_example_copied_as_is_leaves_the_secrets_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cp .env.example .env` then `make demo` must use the demo key, not fail on an empty one."""
    for name in ("KOBO_TOKEN", "KOBO_ETL_PSEUDONYMISATION_KEY", "KOBO_URL", "KOBO_ETL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    assert "\nKOBO_ETL_PSEUDONYMISATION_KEY=\n" in (tmp_path / ".env").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.pseudonymisation_key is None and settings.kobo_token is None
    assert settings.kobo_url == "https://kf.kobotoolbox.org"  # a value that is there is still read

    monkeypatch.setenv("KOBO_ETL_PSEUDONYMISATION_KEY", "")
    assert load_settings().pseudonymisation_key is None
