"""A wrong KOBO_URL or an untrusted TLS certificate: the error names the real cause and the fix, at once,
and never the token. Real loopback servers: the demo KoBo server, and an https:// one with a self-signed
certificate made at test time (tls_server.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_server import TlsServer, self_signed_server

from config.errors import Transient
from connectors import InsecureUrl, KoboClient, KoboUnavailable
from connectors.demo_server import DemoKoboServer
from connectors.errors import BadServerUrl, UntrustedCertificate

TOKEN = "demo-token-s3cr3t-value"


@pytest.fixture(scope="module")
def srv() -> Iterator[DemoKoboServer]:
    with DemoKoboServer(households=20, seed=7, token=TOKEN, include_fixtures=False, port=0) as server:
        yield server


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsServer]:
    with self_signed_server(tmp_path) as server:
        yield server


def test_an_untrusted_certificate_fails_at_once_and_says_what_to_do(tls, monkeypatch):
    sleeps: list[float] = []
    client = KoboClient(tls.url, TOKEN, max_retry_s=300, sleep=sleeps.append)
    started = time.monotonic()
    with pytest.raises(UntrustedCertificate) as info:
        list(client.iter_assets())
    err = info.value
    assert sleeps == [] and time.monotonic() - started < 10  # not retried for the 300 s budget
    assert not isinstance(err, (Transient, KoboUnavailable))
    text = str(err)
    assert "TLS certificate of the KoBo server '127.0.0.1' could not be verified" in text
    assert "(self-signed certificate)" in text
    assert "REQUESTS_CA_BUNDLE" in text and "re-run" not in text
    assert TOKEN not in text and tls.requests == []  # the handshake failed: no request, no token sent
    with pytest.raises(UntrustedCertificate) as info:
        client.get_asset("aForm1")
    assert info.value.form == "aForm1"

    # the advice works: trusting the server's certificate is all it takes
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert_file))
    assert list(KoboClient(tls.url, TOKEN).iter_assets()) == []
    assert tls.requests and tls.requests[0].startswith("/api/v2/assets/")


@pytest.mark.parametrize("url", ["kf.kobotoolbox.org", "kf.kobotoolbox.org/api/v2", "https://", "ftp://kobo.org"])
def test_a_url_without_https_says_so_not_plain_http(url):
    with pytest.raises(BadServerUrl) as info:
        KoboClient(url, TOKEN)
    text = str(info.value)
    assert f"the KoBo server URL {url!r} is not valid: it needs to start with https://" in text
    assert "KOBO_URL" in text and "plain http" not in text and "<no host>" not in text


def test_a_wrong_url_with_credentials_is_not_echoed():
    with pytest.raises(BadServerUrl) as info:
        KoboClient("admin:hunter22@kf.kobotoolbox.org", TOKEN)
    assert "hunter22" not in str(info.value) and "is not valid" in str(info.value)


def test_plain_http_names_the_setting_that_allows_it():
    with pytest.raises(InsecureUrl) as info:
        KoboClient("http://kobo.example.org", TOKEN)
    text = str(info.value)
    assert "over plain http to 'kobo.example.org'" in text and "KOBO_ETL_ALLOW_INSECURE_HTTP=true" in text
    assert "allow_insecure_http=True" not in text


@pytest.mark.parametrize("suffix", ["/api/v2", "/api/v2/", "/api/v2/assets/"])
def test_an_api_url_is_read_as_the_server_url(srv, suffix):
    client = KoboClient(srv.url + suffix, TOKEN)
    assert client.base_url == srv.url
    assert srv.household_uid in {a["uid"] for a in client.iter_assets()}
    # a server mounted under a folder keeps it; a look-alike folder is not cut
    assert KoboClient("https://example.org/kobo/api/v2/", TOKEN).base_url == "https://example.org/kobo"
    assert KoboClient("https://example.org/api/v2x", TOKEN).base_url == "https://example.org/api/v2x"


def test_no_form_list_at_the_url_says_check_kobo_url(srv):
    client = KoboClient(srv.url + "/kobo", TOKEN)  # a folder the server is not under
    with pytest.raises(BadServerUrl) as info:
        list(client.iter_assets())
    text = str(info.value)
    assert info.value.status_code == 404 and "no KoBo form list at this server URL" in text
    assert "set KOBO_URL" in text and "form uid" not in text


def test_a_url_with_a_user_and_password_is_refused_without_showing_them():
    """requests would sign in with them (Basic) instead of the token, and every call would be refused."""
    with pytest.raises(BadServerUrl) as info:
        KoboClient("https://admin:hunter22@kf.kobotoolbox.org", TOKEN)
    assert "hunter22" not in str(info.value) and "user name or password" in str(info.value)
