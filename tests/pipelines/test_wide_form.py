"""A wide form end to end: 300 questions (text, integers, select_one, select_multiple) and a repeat of 30
more, synced, checked, published and reported under the warehouse's DuckDB memory limit.

Real humanitarian forms often have hundreds of questions; the demo household form has about 60. A check
query that made three expressions per question once ran out of DuckDB's 256 MiB from about 100 questions.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from ops_helpers import demo_settings

from config import load_form_config
from connectors.demo_server import DemoKoboServer
from pipelines.forms import add_form
from pipelines.run import make_client, run_sync

UID = "aWideDemoForm300Questions"
VERSION = "vWide1"
SUBMISSIONS = 400
TEXTS, INTEGERS, ONES, MULTIPLES, REPEATED = 100, 60, 100, 40, 30
CHOICES = ["a", "b", "c", "d", "dk", "refused", "e", "f"]


def _row(kind: str, name: str, xpath: str, **extra: Any) -> dict[str, Any]:
    row = {"type": kind, "name": name, "$xpath": xpath, "$autoname": name, "label": [f"Question {name}"]}
    return {**row, **extra}


def wide_content() -> dict[str, Any]:
    survey = [_row("start", "start", "start"), _row("end", "end", "end")]
    survey += [_row("text", f"t{i:03d}", f"t{i:03d}") for i in range(TEXTS)]
    survey += [_row("integer", f"n{i:03d}", f"n{i:03d}") for i in range(INTEGERS)]
    survey += [
        _row("select_one", f"s{i:03d}", f"s{i:03d}", select_from_list_name="opts") for i in range(ONES)
    ]
    survey += [
        _row("select_multiple", f"m{i:03d}", f"m{i:03d}", select_from_list_name="opts")
        for i in range(MULTIPLES)
    ]
    survey += [
        {
            "type": "begin_repeat",
            "name": "people",
            "$xpath": "people",
            "$autoname": "people",
            "label": ["People"],
        }
    ]
    survey += [_row("text", f"p{i:02d}", f"people/p{i:02d}") for i in range(REPEATED)]
    survey += [{"type": "end_repeat"}]
    choices = [{"list_name": "opts", "name": c, "$autovalue": c, "label": [c.upper()]} for c in CHOICES]
    settings = {"version": "1", "id_string": "wide_form", "default_language": "None"}
    return {
        "schema": "1",
        "survey": survey,
        "choices": choices,
        "settings": settings,
        "translated": ["label"],
        "translations": [None],
    }


def wide_records() -> list[dict[str, Any]]:
    rnd = random.Random(5)
    records = []
    for k in range(SUBMISSIONS):
        uuid = f"00000000-0000-4000-8000-{k:012d}"
        rec: dict[str, Any] = {
            "_id": 500_000 + k,
            "start": "2026-11-10T08:00:00.000+03:00",
            "end": f"2026-11-10T08:{20 + k % 30:02d}:00.000+03:00",
            "_submission_time": f"2026-11-10T{6 + k % 10:02d}:30:00",
            "_submitted_by": f"enum_{k % 5}",
            "_uuid": uuid,
            "meta/instanceID": f"uuid:{uuid}",
            "__version__": VERSION,
            "_status": "submitted_via_web",
            "_validation_status": {},
            "_attachments": [],
            "_xform_id_string": "wide_form",
        }
        rec.update({f"t{i:03d}": f"text {rnd.randint(0, 50)}" for i in range(TEXTS)})
        rec.update({f"n{i:03d}": str(rnd.randint(0, 20)) for i in range(INTEGERS)})
        # enum_0 answers "dk" to every select_one; the others never
        rec.update({f"s{i:03d}": "dk" if k % 5 == 0 else rnd.choice("abcdef") for i in range(ONES)})
        rec.update({f"m{i:03d}": " ".join(sorted(rnd.sample("abcdef", 2))) for i in range(MULTIPLES)})
        rec["people"] = [
            {f"people/p{i:02d}": f"person {j} {i}" for i in range(REPEATED)} for j in range(1 + k % 3)
        ]
        records.append(rec)
    return records


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root: Path = tmp_path_factory.mktemp("wide")
    with DemoKoboServer(households=20, seed=3, token="wide-token", include_fixtures=False) as srv:
        srv.add_form(UID, "Wide form", wide_content(), wide_records(), VERSION)
        settings = demo_settings(srv, root)  # (it also writes the household form, which is not synced here)
        form = load_form_config(add_form(make_client(settings), settings.forms_dir, UID))
        result = run_sync(settings, [form.slug], progress=False, alerts=False)
    return {"settings": settings, "slug": form.slug, "result": result}


def test_a_wide_form_syncs_checks_and_publishes(synced: dict[str, Any]) -> None:
    result, slug, settings = synced["result"], synced["slug"], synced["settings"]
    assert result.errors == [] and result.failures == {}
    (summary,) = result.summaries
    assert summary.inserted == SUBMISSIONS and summary.quarantined == 0
    assert summary.withheld == []  # add-form's suggested policy names every question
    # the enumerator dashboard over 200 answer columns: enum_0 answered "dk" to all 100 select_one questions
    # (enumerators are pseudonymised, so the rates are compared without their names)
    rates = sorted(r["dont_know_rate"] for r in summary.hfc.enumerators)
    assert rates == [0, 0, 0, 0, pytest.approx(100 / 200)]
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        columns = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM duckdb_columns() "
                "WHERE schema_name = ? AND table_name = 'submissions'",
                [slug],
            ).fetchall()
        }
        assert {f"n{i:03d}" for i in range(INTEGERS)} | {f"s{i:03d}" for i in range(ONES)} <= columns
        # free text is dropped by the suggested policy (do no harm), however many questions there are
        assert not {f"t{i:03d}" for i in range(TEXTS)} & columns
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [slug]
            ).fetchall()
        }
        assert {f"m{i:03d}__selected" for i in range(MULTIPLES)} <= tables and "people" in tables
        people = con.execute(f'SELECT count(*) FROM "{slug}".people').fetchone()
        assert people == (sum(1 + k % 3 for k in range(SUBMISSIONS)),)
        picked = con.execute(f'SELECT count(*) FROM "{slug}"."m000__selected"').fetchone()
        assert picked == (2 * SUBMISSIONS,)
        rows = con.execute(
            'SELECT "check", success FROM ops.dq_results WHERE form = ? AND "check" = ?',
            [slug, "enumerator_productivity"],
        ).fetchall()
        assert len(rows) == 1
    finally:
        con.close()
    manifest = json.loads(
        (settings.data_dir / "exports" / slug / "manifest.json").read_text(encoding="utf-8")
    )
    files = {f["path"]: f for f in manifest["files"]}
    assert files["submissions.parquet"]["rows"] == SUBMISSIONS
    exported = pq.read_table(settings.data_dir / "exports" / slug / "submissions.parquet")
    assert {f"s{i:03d}" for i in range(ONES)} <= set(exported.column_names)
    report = (settings.data_dir / "reports" / f"{slug}.html").read_text(encoding="utf-8")
    assert "enum_0" not in report and "Enumerator" in report
