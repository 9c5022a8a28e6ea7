"""The offline HTML report: self-contained, values-free, shows the failing checks; opened in Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading

import pyarrow as pa
import pytest
from dq_fixtures import NOW, PLANTED_AGE, PLANTED_WATER, QUALITY, SLUG, make_db, make_schema

from expectations import build_suite, failed_rows, run_hfc, validate_frame, write_report
from warehouse.quality import write_dq_run

TABLE = f'"{SLUG}"."submissions"'


class _Form:
    slug, name, quality = SLUG, "Household survey <demo>", QUALITY


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    con = make_db(str(base / "wh.duckdb"))
    schema = make_schema()
    suite = build_suite(schema, overrides_dir=None)
    hfc = run_hfc(con, SLUG, schema=schema, quality=QUALITY, now=NOW)
    # a first run with only the HFCs, then the full run: the page says what changed
    write_dq_run(con, SLUG, hfc.check_results()[:3], rows_checked=50)
    results = validate_frame(con.execute(f"SELECT * FROM {TABLE}").df(), suite)
    rows = failed_rows(con, TABLE, suite, results)
    all_rows = pa.concat_tables([rows, hfc.failed_rows()])
    write_dq_run(con, SLUG, results + hfc.check_results(), all_rows, rows_checked=55)
    con.execute(
        "CREATE TABLE ops.disclosure_risk (form VARCHAR, computed_at TIMESTAMPTZ, k_min BIGINT, "
        "global_risk DOUBLE, smallest_class VARCHAR)"
    )
    con.execute("INSERT INTO ops.disclosure_risk VALUES ('hh', now(), 2, 0.04, 'north|female|secretqi')")
    con.execute("CREATE TABLE ops.sync_runs (form VARCHAR, started TIMESTAMPTZ, server_count BIGINT)")
    con.execute("INSERT INTO ops.sync_runs VALUES ('hh', now(), 57)")
    out = base / "reports"
    write_report(con, out, [_Form()], hfc={SLUG: hfc}, schemas={SLUG: schema})
    con.close()
    return out


def test_report_pages_are_self_contained(report_dir):
    assert sorted(p.name for p in report_dir.iterdir()) == ["hh.html", "index.html"]
    for page in report_dir.iterdir():
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I), page.name
        assert "http://" not in text and "https://" not in text
        assert "<script" not in text.lower() and "@import" not in text and "url(" not in text
        assert "<style>" in text


def test_report_shows_failing_checks_ids_and_no_values(report_dir):
    text = (report_dir / "hh.html").read_text(encoding="utf-8")
    assert "Household survey &lt;demo&gt;" in text  # escaped
    assert "Interview shorter than 25 minutes" in text
    assert "Submissions sharing the same _uuid" in text
    row = re.search(r'<span class="note">between:resp_age</span>.*?</tr>', text, re.S).group(0)
    assert '<div class="ids">33</div>' in row
    row = re.search(r'<span class="note">duplicate:_uuid</span>.*?</tr>', text, re.S).group(0)
    assert '<div class="ids">30, 31</div>' in row
    assert "Errors to fix" in text
    assert "Completeness: 55 of 57 submissions" in text
    assert "Disclosure risk: smallest group 2" in text
    assert "newly failing: between:resp_age (1)" in text
    for value in (str(PLANTED_AGE), PLANTED_WATER, "secretqi", "tok-shared", "uuid-030", "tarpaulins"):
        assert value not in text, value
    assert text.count("<svg") == 2 and "enum_08" in text and "unusual productivity" in text


def test_index_lists_forms(report_dir):
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="hh.html"' in text and "errors" in text


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, fmt, *args):  # record instead of printing
        type(self).requests.append(self.path)


def test_report_in_headless_chromium(report_dir, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium); .ci/run installs it")
    _LoggingHandler.requests = []
    handler = functools.partial(_LoggingHandler, directory=str(report_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hh.html"
    common = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2000",
        # any request to another host would fail fast and show up in the net log
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--log-net-log={tmp_path / 'net.json'}",
    ]
    try:
        shot = tmp_path / "hh.png"
        subprocess.run([*common, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
        dom = subprocess.run(
            [*common, "--dump-dom", url], check=True, capture_output=True, timeout=120, text=True
        ).stdout
    finally:
        server.shutdown()
        server.server_close()
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Interview shorter than 25 minutes" in dom and "between:resp_age" in dom
    # the page asked our server for itself (and maybe a favicon), nothing else
    assert (
        set(_LoggingHandler.requests) <= {"/hh.html", "/favicon.ico"}
        and "/hh.html" in _LoggingHandler.requests
    )
    # Chromium's own background calls (updates, accounts) carry no origin; anything the page asks for does
    events = json.loads((tmp_path / "net.json").read_text(encoding="utf-8"))["events"]
    page_urls = [
        ev["params"]["url"]
        for ev in events
        if "url" in ev.get("params", {}) and ev["params"].get("initiator", "not an origin") != "not an origin"
    ]
    assert all(u.startswith("http://127.0.0.1:") for u in page_urls), page_urls
