"""`kobo-etl forms` with a wrong KOBO_URL or behind an untrusted certificate: one line naming the real
cause and the fix (the audit's four cases), no traceback, never the token. Real loopback servers."""

from __future__ import annotations

import time

import pytest

from pipelines import cli
from tests.connectors.tls_server import self_signed_server

TOKEN = "demo-token"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env of the project's
    monkeypatch.setenv("KOBO_TOKEN", TOKEN)
    monkeypatch.setenv("KOBO_ETL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KOBO_ETL_MAX_RETRY_SECONDS", "20")  # bounds the test should retries ever come back
    return monkeypatch


def forms(env, url: str, capsys) -> tuple[int, str]:
    env.setenv("KOBO_URL", url)
    code = cli.main(["forms"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and TOKEN not in out + err
    return code, out + err


def test_a_url_without_scheme_needs_https(env, capsys):
    code, text = forms(env, "kf.kobotoolbox.org", capsys)
    assert code == cli.EXIT_RED
    assert "error: the KoBo server URL 'kf.kobotoolbox.org' is not valid: it needs to start with https://" \
        in text
    assert "plain http" not in text


def test_plain_http_to_a_remote_host_names_the_env_setting(env, capsys):
    code, text = forms(env, "http://kobo.example.org", capsys)
    assert code == cli.EXIT_RED and "KOBO_ETL_ALLOW_INSECURE_HTTP=true" in text


def test_a_url_ending_in_api_v2_lists_the_forms(env, capsys, demo_server):
    code, text = forms(env, demo_server.url + "/api/v2", capsys)
    assert code == cli.EXIT_OK and demo_server.household_uid in text and "form uid" not in text


def test_a_wrong_folder_in_the_url_says_check_kobo_url(env, capsys, demo_server):
    code, text = forms(env, demo_server.url + "/kobo", capsys)
    assert code == cli.EXIT_RED and "HTTP 404: no KoBo form list at this server URL" in text
    assert "set KOBO_URL" in text and "form uid" not in text


def test_a_self_signed_certificate_is_named_at_once(env, capsys, tmp_path):
    with self_signed_server(tmp_path) as tls:
        started = time.monotonic()
        code, text = forms(env, tls.url, capsys)
    assert time.monotonic() - started < 10
    assert code == cli.EXIT_RED and "could not be verified (self-signed certificate)" in text
    assert "REQUESTS_CA_BUNDLE" in text and "unavailable" not in text and "re-run" not in text
