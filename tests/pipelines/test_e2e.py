"""End to end: the demo KoBo server → the real Prefect flow → DuckDB, exports, report, logs.

One module-scoped run (the Prefect test harness costs ~15 s); the tests then read its outputs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import requests

from config import DEMO_PSEUDONYMISATION_KEY, load_settings
from connectors.demo_server import DemoKoboServer, fixtures_dir
from pipelines import cli
from pipelines.demo import prepare_demo_forms
from pipelines.flows import RedRun
from pipelines.run import run_sync

HOUSEHOLDS = 1500  # more than one 1 000-row page: the cap must not truncate anything


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Run the sync-all flow once against a private demo server; yield where everything went."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL
    from prefect.testing.utilities import prefect_test_harness

    root = tmp_path_factory.mktemp("e2e")
    data_dir, forms_dir, prefect_home = root / "data", root / "forms", root / "prefect-home"
    saved = dict(os.environ)
    with DemoKoboServer(households=HOUSEHOLDS, seed=7, include_fixtures=True) as server:
        os.environ.update(
            {
                "KOBO_URL": server.url,
                "KOBO_TOKEN": server.token,
                "KOBO_ETL_DATA_DIR": str(data_dir),
                "KOBO_ETL_FORMS_DIR": str(forms_dir),
                "KOBO_ETL_PSEUDONYMISATION_KEY": DEMO_PSEUDONYMISATION_KEY,
                "PREFECT_HOME": str(prefect_home),
            }
        )
        try:
            prepare_demo_forms(server, forms_dir)
            with prefect_test_harness():
                from pipelines.flows import sync_all

                state = sync_all(return_state=True)
                # `kobo-etl sync a b` with Prefect: only the forms named (two of the recorded real forms)
                named = sorted(p.stem for p in forms_dir.glob("*.yaml") if p.stem != "household_survey")[:2]
                named_state = sync_all(forms=named, return_state=True)
                prefect_db = PREFECT_API_DATABASE_CONNECTION_URL.value().split("///", 1)[-1]
                prefect_db_bytes = Path(prefect_db).read_bytes() if Path(prefect_db).exists() else b""
            raw = fetch_raw_submissions(server)
            yield {
                "server": server,
                "state": state,
                "data_dir": data_dir,
                "forms_dir": forms_dir,
                "prefect_home": prefect_home,
                "prefect_db_bytes": prefect_db_bytes,
                "raw": raw,
                "named": named,
                "named_state": named_state,
            }
        finally:
            os.environ.clear()
            os.environ.update(saved)


def fetch_raw_submissions(server: DemoKoboServer) -> list[dict]:
    """What the server sent for the household survey, fetched directly (the test's ground truth)."""
    out: list[dict] = []
    after = 0
    while True:
        r = requests.get(
            f"{server.url}/api/v2/assets/{server.household_uid}/data/",
            params={
                "format": "json",
                "limit": 1000,
                "sort": '{"_id":1}',
                "query": json.dumps({"_id": {"$gt": after}}),
            },
            headers={"Authorization": f"Token {server.token}"},
            timeout=30,
        )
        r.raise_for_status()
        page = r.json()["results"]
        if not page:
            return out
        out += page
        after = page[-1]["_id"]


def warehouse(run: dict) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(run["data_dir"] / "warehouse.duckdb"), read_only=True)


def test_flow_syncs_every_submission_through_the_page_cap(pipeline_run: dict) -> None:
    server: DemoKoboServer = pipeline_run["server"]
    with warehouse(pipeline_run) as con:
        ids = [
            r[0] for r in con.execute("SELECT _id FROM household_survey.submissions ORDER BY _id").fetchall()
        ]
        members = con.execute("SELECT count(*) FROM household_survey.members").fetchone()[0]
    assert ids == [s["_id"] for s in pipeline_run["raw"]]
    assert len(ids) == HOUSEHOLDS
    expected_members = sum(len(s.get("members", [])) for s in pipeline_run["raw"])
    assert members == expected_members > HOUSEHOLDS
    data_requests = [
        e
        for e in server.requests
        if e.path.endswith(f"{server.household_uid}/data/") and "fields" not in e.query
    ]
    assert all(int(e.query["limit"]) <= 1000 for e in data_requests)
    assert len(data_requests) >= 2  # 1 500 rows cannot come in one capped page


def test_flow_result_is_counts_only_and_red_when_error_checks_fail(pipeline_run: dict) -> None:
    state = pipeline_run["state"]
    # the demo data carries deliberate quality problems, so the run is red (Failed) by design
    assert state.is_failed()
    red = state.result(raise_on_failure=False)
    assert isinstance(red, RedRun)  # a Failed state's data is an exception (Prefect re-raises it)
    payload = red.summaries
    household = next(p for p in payload if p["form"] == "household_survey")
    assert household["inserted"] == HOUSEHOLDS
    assert household["checks_failed"] > 0
    assert household["server_count"] == household["warehouse_count"] == HOUSEHOLDS
    assert "error checks failed" in (state.message or "")


def test_sync_all_with_forms_named_syncs_only_those(pipeline_run: dict) -> None:
    named = pipeline_run["named"]
    assert len(named) == 2 and len(list(pipeline_run["forms_dir"].glob("*.yaml"))) > 3
    data = pipeline_run["named_state"].result(raise_on_failure=False)
    summaries = data.summaries if isinstance(data, RedRun) else data
    assert sorted(s["form"] for s in summaries) == named


def test_second_sync_adds_and_changes_nothing(pipeline_run: dict) -> None:
    data_dir = pipeline_run["data_dir"]
    before = table_fingerprints(data_dir / "warehouse.duckdb", "household_survey")
    result = run_sync(load_settings(**settings_for(pipeline_run)), ["household_survey"], outputs=False)
    summary = result.summaries[0]
    assert (summary.inserted, summary.updated, summary.deleted) == (0, 0, 0)
    assert table_fingerprints(data_dir / "warehouse.duckdb", "household_survey") == before


def settings_for(run: dict) -> dict:
    server = run["server"]
    return {
        "kobo_url": server.url,
        "kobo_token": server.token,
        "data_dir": run["data_dir"],
        "forms_dir": run["forms_dir"],
        "pseudonymisation_key": DEMO_PSEUDONYMISATION_KEY,
    }


def table_fingerprints(path: Path, slug: str) -> dict[str, tuple]:
    """Row count and an order-independent hash of every table of a form (run-specific columns left out)."""
    out = {}
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
            "AND table_type = 'BASE TABLE'",
            [slug]).fetchall()]
        for t in sorted(tables):
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [slug, t]).fetchall() if r[0] != "_dq_status"]
            select = ", ".join(f'"{c}"' for c in cols)
            out[t] = con.execute(
                f'SELECT count(*), sum(hash({select})) FROM (SELECT {select} FROM "{slug}"."{t}")'
            ).fetchone()
    return out


def test_recorded_real_forms_sync_into_typed_tables(pipeline_run: dict) -> None:
    if not fixtures_dir().is_dir():
        pytest.skip(f"the recorded KoBo fixtures are not beside the repository ({fixtures_dir()})")
    with warehouse(pipeline_run) as con:
        # aDMHypRASH2EuJdvKMx5Mi renamed a group across versions (v1/hh_sex → v0/hh_sex): one column, all rows
        slug = con.execute("SELECT form FROM meta.forms WHERE uid = 'aDMHypRASH2EuJdvKMx5Mi'").fetchone()[0]
        cols = {r[0]: r[1] for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = 'submissions'", [slug]).fetchall()}
        assert "hh_sex" in cols
        assert not any(c.startswith("hh_sex_") and c != "hh_sex" for c in cols if "__" not in c)
        assert cols["_id"] == "BIGINT" and cols["_submission_time"] == "TIMESTAMP"
        assert con.execute(f'SELECT count(*), count(hh_sex) FROM "{slug}".submissions').fetchone() == (6, 6)
        # nested repeats of aANhxwX9S6BCsiYMgQj9kV become linked tables with deterministic keys
        dm = con.execute("SELECT form FROM meta.forms WHERE uid = 'aANhxwX9S6BCsiYMgQj9kV'").fetchone()[0]
        keys = con.execute(f'SELECT _key, _parent_key FROM "{dm}".hobbies_list ORDER BY _key').fetchall()
        assert keys[0][0].startswith("17727380/demo[1]/hobbies_list[")
        assert all(parent and key.startswith(parent + "/") for key, parent in keys)


def test_cli_errors_are_clear_and_exit_non_zero(
    pipeline_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    server: DemoKoboServer = pipeline_run["server"]
    cases = {
        "wrong_token": (server.household_uid, "not-the-token", "rejected the API token"),
        "unknown_form": ("aNoSuchAssetUid000000", server.token, "not found or the token cannot see it"),
        "hidden_form": (server.hidden_uid, server.token, "not found or the token cannot see it"),
        "draft_form": (server.draft_uid, server.token, "not been deployed"),
    }
    for slug, (uid, token, message) in cases.items():
        forms = tmp_path / slug / "forms"
        forms.mkdir(parents=True)
        (forms / f"{slug}.yaml").write_text(f"slug: {slug}\nasset_uid: {uid}\n", encoding="utf-8")
        monkeypatch.setenv("KOBO_URL", server.url)
        monkeypatch.setenv("KOBO_TOKEN", token)
        monkeypatch.setenv("KOBO_ETL_FORMS_DIR", str(forms))
        monkeypatch.setenv("KOBO_ETL_DATA_DIR", str(tmp_path / slug / "data"))
        monkeypatch.setenv("KOBO_ETL_PSEUDONYMISATION_KEY", DEMO_PSEUDONYMISATION_KEY)
        code = cli.main(["sync"])
        err = capsys.readouterr().err
        assert code != 0, slug
        assert message in err, (slug, err)
        assert "Traceback" not in err
        assert token not in err or token == server.token


def test_sync_stops_before_fetching_when_the_key_is_missing(
    pipeline_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    server: DemoKoboServer = pipeline_run["server"]
    server.clear_requests()
    monkeypatch.setenv("KOBO_URL", server.url)
    monkeypatch.setenv("KOBO_TOKEN", server.token)
    monkeypatch.setenv("KOBO_ETL_FORMS_DIR", str(pipeline_run["forms_dir"]))
    monkeypatch.setenv("KOBO_ETL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KOBO_ETL_PSEUDONYMISATION_KEY", "")
    assert cli.main(["sync"]) == cli.EXIT_USAGE
    assert "KOBO_ETL_PSEUDONYMISATION_KEY" in capsys.readouterr().err
    assert server.requests == []


# ------------------------------------------------------------------------------------------ privacy


def raw_pii(raw: list[dict]) -> dict[str, set[str]]:
    """Every raw name, phone number, username, device id and dropped free text the server sent."""
    found: dict[str, set[str]] = {"names": set(), "phones": set(), "people": set(), "text": set()}
    for s in raw:
        if s.get("respondent/resp_name"):
            found["names"].add(s["respondent/resp_name"])
        if s.get("respondent/phone"):
            phone = s["respondent/phone"]
            found["phones"].add(phone)
            found["phones"].add(re.sub(r"\D", "", phone))
        for key in ("username", "deviceid", "_submitted_by"):
            if s.get(key):
                found["people"].add(s[key])
        if s.get("comments"):
            found["text"].add(s["comments"])
        for m in s.get("members", []):
            name = m.get("members/member_name", "")
            if len(name) >= 5 and name.isascii():  # short or non-Latin first names match label words
                found["names"].add(name)
    return found


def output_texts(run: dict) -> dict[str, bytes]:
    """The bytes of every output: files as written, plus decoded table dumps (DuckDB/Parquet compress)."""
    texts: dict[str, bytes] = {}
    for root in (run["data_dir"], run["prefect_home"]):
        for path in root.rglob("*"):
            if path.is_file():
                texts[str(path)] = path.read_bytes()
    texts["prefect-api-database"] = run["prefect_db_bytes"]
    for db in [run["data_dir"] / "warehouse.duckdb", run["data_dir"] / "exports" / "warehouse.duckdb"]:
        with duckdb.connect(str(db), read_only=True) as con:
            for schema, table in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE'"
            ).fetchall():
                rows = con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
                texts[f"{db}:{schema}.{table}"] = repr(rows).encode("utf-8")
    for parquet in (run["data_dir"] / "exports").rglob("*.parquet"):
        texts[f"{parquet}:decoded"] = repr(pq.read_table(parquet).to_pylist()).encode("utf-8")
    return texts


def contains_word(blob: bytes, needle: bytes) -> bool:
    """`needle` in `blob` not inside a longer word or number (fast: memmem first, boundaries after)."""
    start = blob.find(needle)
    while start != -1:
        before = blob[start - 1 : start]
        after = blob[start + len(needle) : start + len(needle) + 1]
        if not (before.isalnum() or after.isalnum()):
            return True
        start = blob.find(needle, start + 1)
    return False


def test_no_raw_personal_data_in_any_output(pipeline_run: dict) -> None:
    pii = raw_pii(pipeline_run["raw"])
    assert len(pii["names"]) > 100 and len(pii["phones"]) > 100 and pii["people"] and pii["text"]
    texts = output_texts(pipeline_run)
    # the search must be able to find things: stored, non-personal values are there in decoded form
    assert any(b"kalobeyei" in blob for blob in texts.values())
    leaks = []
    for kind, values in pii.items():
        for value in values:
            needle = value.encode("utf-8")
            for where, blob in texts.items():
                if contains_word(blob, needle):
                    leaks.append((kind, where))
    assert leaks == []


def test_outputs_exist_where_the_readme_says(pipeline_run: dict) -> None:
    data_dir: Path = pipeline_run["data_dir"]
    assert (data_dir / "reports" / "index.html").stat().st_size > 1000
    assert (data_dir / "exports" / "household_survey" / "manifest.json").exists()
    assert (data_dir / "exports" / "warehouse.duckdb").exists()
    assert any((data_dir / "logs").iterdir())
    with warehouse(pipeline_run) as con:
        runs = con.execute("SELECT count(*) FROM ops.sync_runs WHERE form = 'household_survey'").fetchone()[0]
        indicators = con.execute(
            "SELECT count(DISTINCT indicator_code) FROM marts.indicator_values"
        ).fetchone()[0]
    assert runs >= 1 and indicators >= 5


def test_photos_land_as_attachment_rows_and_income_is_widened(pipeline_run: dict) -> None:
    raw = [r for r in pipeline_run["raw"] if r["_attachments"]]
    assert raw and all(r.get("photo") for r in raw)
    with warehouse(pipeline_run) as con:
        rows = con.execute(
            "SELECT _submission_id, question_xpath, attachment_uid, mimetype, basename, download_path,"
            " is_deleted FROM household_survey.attachments ORDER BY _submission_id"
        ).fetchall()
        cols = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'household_survey' AND table_name = 'submissions'"
            ).fetchall()
        )
        summaries = [
            json.loads(s)
            for (s,) in con.execute(
                "SELECT summary FROM ops.sync_runs WHERE form = 'household_survey'"
            ).fetchall()
            if s
        ]
    uid = pipeline_run["server"].household_uid
    expected = {
        r["_id"]: f"/api/v2/assets/{uid}/data/{r['_id']}/attachments/{r['_attachments'][0]['uid']}/"
        for r in raw
    }
    assert {r[0]: r[5] for r in rows} == expected and len(rows) == len(raw)
    # the policy drops the photo question, so filenames (often people's names) never reach the warehouse
    assert all(r[1] == "photo" and r[3] == "image/jpeg" and r[4] is None and r[6] is False for r in rows)
    assert "photo" not in cols
    # income is integer in v1 and decimal in v2: widened to DOUBLE and reported in the sync summary
    assert cols["income"] == "DOUBLE"
    changes = [c for s in summaries for c in s.get("schema_changes", [])]
    assert any("income" in c for c in changes), changes
