"""select_multiple answers inside a repeat are checked token by token against the choice list (issue 6).

Demo data: the recorded form with nested repeats the demo server serves (aANhxwX9S6BCsiYMgQj9kV):
`demo/lang_list/langs` is a select_multiple (list `lang`: 1, 2, 3, 99) in a repeat inside a repeat. Its
3 submissions answer it 4 times (`1 3`, `1 3`, `1 99`, `1 2`): 8 tokens, all valid. The test syncs the
form, checks it, then plants a bad token in one repeat row and checks again.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from config import DEMO_PSEUDONYMISATION_KEY, load_form_config, load_settings
from connectors.demo_server import DemoKoboServer
from expectations import build_suite
from pipelines.checks import LoadedIds, check_form
from pipelines.forms import add_form
from pipelines.run import make_client, run_sync
from pipelines.sync import load_form_context
from warehouse import pinned_columns

UID = "aANhxwX9S6BCsiYMgQj9kV"
RULE = "tokens_in_set:lang_list.langs"


@pytest.fixture(scope="module")
def synced(demo_server: DemoKoboServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("repeat_tokens")
    settings = load_settings(
        kobo_url=demo_server.url,
        kobo_token=demo_server.token,
        data_dir=root / "data",
        forms_dir=root / "forms",
        pseudonymisation_key=DEMO_PSEUDONYMISATION_KEY,
    )
    client = make_client(settings)
    form = load_form_config(add_form(client, settings.forms_dir, UID))
    run_sync(settings, [form.slug], checks=False, outputs=False, progress=False, alerts=False)
    con = duckdb.connect(str(settings.warehouse_path))
    ctx = load_form_context(
        client, form, settings.require_key(), settings.data_dir / "cache", pinned_columns(con, form.slug)
    )
    yield {"con": con, "form": form, "schema": ctx.schema}
    con.close()


def _check(synced: dict, run_id: str) -> tuple[tuple, list[tuple]]:
    con, slug = synced["con"], synced["form"].slug
    loaded = LoadedIds(con, slug)
    loaded.add([r[0] for r in con.execute(f'SELECT _id FROM "{slug}".submissions').fetchall()])
    check_form(con, synced["form"], synced["schema"], loaded, run_id)
    loaded.close()
    result = con.execute(
        'SELECT success, unexpected_count, unexpected_percent, "column" FROM ops.dq_results '
        "WHERE run_id = ? AND \"check\" = ?",
        [run_id, RULE],
    ).fetchone()
    rows = con.execute(
        "SELECT submission_id, row_key, severity FROM ops.dq_failed_rows WHERE run_id = ? AND rule = ? "
        "ORDER BY row_key",
        [run_id, RULE],
    ).fetchall()
    return result, rows


def test_suite_checks_select_multiple_tokens_in_a_nested_repeat(synced: dict) -> None:
    suite = build_suite(synced["schema"])
    spec = {e.id: e for e in suite.expectations}[RULE]
    assert (spec.type, spec.column, spec.kwargs["value_set"]) == (
        "expect_column_values_to_be_in_set", "langs", ["1", "2", "3", "99"]
    )
    assert "lang_list" in suite.tables()
    assert suite.for_table("lang_list").select_multiple == {"langs": ["1", "2", "3", "99"]}
    assert RULE not in suite.for_table("submissions").ids()


def test_a_bad_token_in_a_repeat_row_is_counted_and_listed(synced: dict) -> None:
    con, slug = synced["con"], synced["form"].slug
    table = f'"{slug}".lang_list'
    assert con.execute(f"SELECT count(*), count(langs) FROM {table}").fetchone() == (4, 4)

    clean, rows = _check(synced, "clean")
    assert clean == (True, 0, 0.0, "langs") and rows == []

    # the second language row of submission 17727576 ("1 99") gets an option the form does not have
    key = con.execute(
        f"SELECT _key FROM {table} WHERE _submission_id = 17727576 AND langs = '1 99'"
    ).fetchone()[0]
    con.execute(f"UPDATE {table} SET langs = '1 zz_not_a_choice 3' WHERE _key = ?", [key])
    bad, rows = _check(synced, "planted")
    assert bad[:2] == (False, 1) and bad[2] == pytest.approx(100 / 9)  # 1 of the 9 tokens
    assert rows == [(17727576, key, "error")]
    assert key.startswith("17727576/demo[") and "/lang_list[" in key
    status = con.execute(f'SELECT _dq_status FROM "{slug}".submissions WHERE _id = 17727576').fetchone()
    assert status == ("error",)

