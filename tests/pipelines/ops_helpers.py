"""Shared helpers for the operations tests: demo settings, the demo's raw personal data, loopback sinks."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from config import DEMO_PSEUDONYMISATION_KEY, load_settings
from config.settings import Settings
from connectors import KoboClient
from connectors.demo_server import DemoKoboServer
from pipelines.demo import DEMO_FORM_CONFIG

PII_KEYS = ("resp_name", "member_name", "phone", "comments", "needs_other")


def write_household_form(server: DemoKoboServer, forms_dir: Path, cron: str | None = None) -> Path:
    """Only the demo household survey's reviewed config (fast: no fixture forms)."""
    forms_dir.mkdir(parents=True, exist_ok=True)
    text = DEMO_FORM_CONFIG.read_text(encoding="utf-8").replace("{{ASSET_UID}}", server.household_uid)
    if cron:
        text = text.replace('cron: "0 */6 * * *"', f'cron: "{cron}"')
    path = forms_dir / "household_survey.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def demo_settings(server: DemoKoboServer, tmp_path: Path, **overrides: Any) -> Settings:
    forms_dir = tmp_path / "forms"
    if not forms_dir.exists():
        write_household_form(server, forms_dir)
    values: dict[str, Any] = {
        "kobo_url": server.url,
        "kobo_token": server.token,
        "data_dir": tmp_path / "data",
        "forms_dir": forms_dir,
        "indicators_file": tmp_path / "no-indicators.yaml",
        "pseudonymisation_key": DEMO_PSEUDONYMISATION_KEY,
    }
    values.update(overrides)
    return load_settings(**values)


def demo_env(server: DemoKoboServer, tmp_path: Path) -> dict[str, str]:
    """The same settings as environment variables, for the CLI."""
    forms_dir = tmp_path / "forms"
    if not forms_dir.exists():
        write_household_form(server, forms_dir)
    return {
        "KOBO_URL": server.url,
        "KOBO_TOKEN": server.token,
        "KOBO_ETL_DATA_DIR": str(tmp_path / "data"),
        "KOBO_ETL_FORMS_DIR": str(forms_dir),
        "KOBO_ETL_INDICATORS_FILE": str(tmp_path / "no-indicators.yaml"),
        "KOBO_ETL_PSEUDONYMISATION_KEY": DEMO_PSEUDONYMISATION_KEY,
    }


def raw_personal_values(server: DemoKoboServer) -> set[str]:
    """Every raw name, phone and free text the demo server holds for the household survey (len >= 4)."""
    client = KoboClient(server.url, server.token)
    found: set[str] = set()

    def walk(obj: Any, key: str = "") -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, key)
        elif isinstance(obj, str) and key.rsplit("/", 1)[-1] in PII_KEYS and len(obj.strip()) >= 4:
            found.add(obj.strip())

    for page in client.iter_submission_pages(server.household_uid):
        walk(page.results)
    return found


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A local HTTP server on 127.0.0.1 that records every POST body; yields (url, bodies)."""
    bodies: list[bytes] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hooks/T000/SECRETPART", bodies
    finally:
        httpd.shutdown()
        httpd.server_close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib.send_message without STARTTLS or AUTH."""

    messages: list[bytes]

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 sink ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self._say("250 sink")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 end with .")
                data = []
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b".\n", b""):
                        break
                    data.append(chunk)
                self.messages.append(b"".join(data))
                self._say("250 queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not implemented")


@contextmanager
def smtp_sink() -> Iterator[tuple[str, int, list[bytes]]]:
    """A local SMTP server on 127.0.0.1 that records every message; yields (host, port, messages)."""
    messages: list[bytes] = []
    handler = type("Smtp", (_SmtpHandler,), {"messages": messages})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1], messages
    finally:
        server.shutdown()
        server.server_close()
