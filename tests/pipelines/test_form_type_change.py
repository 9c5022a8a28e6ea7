"""A new form version that changes a question's type (select_one → select_multiple, decimal → text): the
submissions already stored were flattened and typed under the old definition and are not kept as raw JSON,
so the sync downloads every submission again, and the warehouse equals a fresh full sync."""

from __future__ import annotations

from pathlib import Path

from sync_helpers import assert_same_form, dump_form, fast_client_for

from config import DEMO_PSEUDONYMISATION_KEY, load_form_configs, load_settings
from connectors import KoboClient
from connectors.demo_server import DemoKoboServer
from pipelines.forms import add_form
from pipelines.sync import sync_form
from warehouse import connect

UID, SLUG = "aTypeChangeForm0001", "type_change"
COLORS = [
    {"list_name": "colors", "name": n, "label": [n.title()], "$kuid": f"c_{n}"} for n in ("red", "blue")
]


def _content(color: str, weight: str) -> dict:
    survey = [
        {"type": "integer", "name": "age", "label": ["Age"], "$kuid": "k_age"},
        {"type": color, "name": "color", "label": ["Colour"], "select_from_list_name": "colors",
         "$kuid": "k_color"},
        {"type": weight, "name": "weight", "label": ["Weight"], "$kuid": "k_weight"},
    ]
    return {"schema": "1", "survey": survey, "choices": COLORS, "settings": {}, "translations": [None],
            "translated": ["label"]}


def _record(_id: int, version: str, color: str, weight: str) -> dict:
    uuid = f"00000000-0000-4000-8000-{_id:012d}"
    return {"_id": _id, "_uuid": uuid, "meta/instanceID": f"uuid:{uuid}", "meta/rootUuid": f"uuid:{uuid}",
            "__version__": version, "_submission_time": "2026-11-20T10:00:00", "_validation_status": {},
            "_status": "submitted_via_web", "_attachments": [], "age": "30", "color": color, "weight": weight}


def _settings(server: DemoKoboServer, root: Path, like=None):
    forms = root / "forms"
    forms.mkdir(parents=True)
    if like is None:
        add_form(KoboClient(server.url, server.token), forms, UID, slug=SLUG)
    else:  # the same reviewed privacy policy
        (forms / f"{SLUG}.yaml").write_bytes((like.forms_dir / f"{SLUG}.yaml").read_bytes())
    return load_settings(
        kobo_url=server.url, kobo_token=server.token, data_dir=root / "data", forms_dir=forms,
        indicators_file=root / "none.yaml", pseudonymisation_key=DEMO_PSEUDONYMISATION_KEY,
    )


def _sync(settings):
    (form,) = load_form_configs(settings.forms_dir, [SLUG])
    con = connect(settings.warehouse_path)
    try:
        return sync_form(settings, form, con, fast_client_for(settings), checks=False)
    finally:
        con.close()


def test_a_type_change_downloads_the_stored_submissions_again(tmp_path):
    with DemoKoboServer(households=0, include_fixtures=False) as server:
        v1 = [_record(100 + i, "v1", ["red", "blue"][i % 2], ["2.50", "70"][i % 2]) for i in range(6)]
        server.add_form(UID, "Type change", _content("select_one", "decimal"), v1, "v1")
        settings = _settings(server, tmp_path / "inc")
        first = _sync(settings)
        v2 = [_record(200 + i, "v2", "red blue", "about 3 kg") for i in range(2)]
        server.deploy_version(UID, "v2", _content("select_multiple", "text"), v2)
        second = _sync(settings)
        fresh = _settings(server, tmp_path / "fresh", like=settings)
        _sync(fresh)

    assert first.error is None and second.error is None
    assert any(c.startswith("every submission downloaded again: ") for c in second.schema_changes)
    assert (second.inserted, second.updated) == (2, 6)
    got, want = dump_form(settings.warehouse_path, SLUG), dump_form(fresh.warehouse_path, SLUG)
    assert_same_form(got, want)
    weights = sorted(r[got["submissions"][0].index("weight")] for r in got["submissions"][1])
    assert weights[:2] == ["2.50", "2.50"]  # the raw answers, not 2.5 cast to text
    assert len(got["color__selected"][1]) == 6 + 2 * 2  # a choice row for the older submissions too


def _repeat_content(repeat: str) -> dict:
    survey = [
        {"type": "integer", "name": "age", "label": ["Age"], "$kuid": "k_age"},
        {"type": "begin_repeat", "name": repeat, "label": ["Children"], "$kuid": "k_kids"},
        {"type": "integer", "name": "kid_age", "label": ["Age of the child"], "$kuid": "k_kid_age"},
        {"type": "end_repeat", "$kuid": "k_end_kids"},
    ]
    return {"schema": "1", "survey": survey, "choices": [], "settings": {}, "translations": [None],
            "translated": ["label"]}


def _with_kids(_id: int, version: str, repeat: str, ages: list[int]) -> dict:
    rec = _record(_id, version, "", "")
    del rec["color"], rec["weight"]
    rec[repeat] = [{f"{repeat}/kid_age": str(a)} for a in ages]
    return rec


def test_a_renamed_repeat_moves_its_older_instances_to_the_new_table(tmp_path):
    """Renaming a repeat in the form builder keeps its `$kuid`; its table takes the new name. The older
    submissions' instances move there, and the old table keeps no row that outlives its submission."""
    with DemoKoboServer(households=0, include_fixtures=False) as server:
        v1 = [_with_kids(100 + i, "v1", "kids", [i, i + 1]) for i in range(5)]
        server.add_form(UID, "Renamed repeat", _repeat_content("kids"), v1, "v1")
        settings = _settings(server, tmp_path / "inc")
        _sync(settings)
        renamed = [_with_kids(200, "v2", "children", [9])]
        server.deploy_version(UID, "v2", _repeat_content("children"), renamed)
        second = _sync(settings)
        server.delete_submission(UID, 101)
        third = _sync(settings)
        fresh = _settings(server, tmp_path / "fresh", like=settings)
        _sync(fresh)

    assert second.error is None and third.error is None and third.deleted == 1
    assert any(c.startswith("every submission downloaded again: new table") for c in second.schema_changes)
    got, want = dump_form(settings.warehouse_path, SLUG), dump_form(fresh.warehouse_path, SLUG)
    assert got.pop("kids")[1] == []  # the old table is left, empty
    assert_same_form(got, want)
    assert len(want["children"][1]) == 4 * 2 + 1
