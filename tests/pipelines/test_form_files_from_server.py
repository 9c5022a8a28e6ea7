"""What the KoBo server names (a form's name, a version's uid) cannot shape the files kobo-etl writes."""

from __future__ import annotations

from pathlib import Path

import yaml

from config import load_form_config
from connectors import KoboClient
from connectors.demo_server import DemoKoboServer
from pipelines.forms import fetch_versions, render_form_yaml

SURVEY = {"schema": "1", "survey": [{"type": "integer", "name": "age", "label": ["Age"], "$kuid": "k1"}],
          "choices": [], "settings": {}, "translations": [None], "translated": ["label"]}


def test_a_form_name_cannot_add_settings_or_break_the_file(tmp_path: Path) -> None:
    for name in ("Survey\nquality: {injected: true}", "Survey\r\nquality: {injected: true}",
                 "Survey\u2028quality: {injected: true}", 'Survey C:\\data\\2024 "final"'):
        path = tmp_path / "f.yaml"
        path.write_text(render_form_yaml({"uid": "aForm1", "name": name}, "f", "questions: {}"),
                        encoding="utf-8")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert data["name"] == name and "quality" not in data
        assert load_form_config(path).name == name


def test_a_version_uid_cannot_write_outside_the_cache(tmp_path: Path) -> None:
    uid, cache = "aTraversal0001", tmp_path / "data" / "cache"
    record = {"_id": 1, "_uuid": "u1", "__version__": "v1", "age": "3"}
    with DemoKoboServer(households=0, include_fixtures=False) as server:
        server.add_form(uid, "Traversal", SURVEY, [record], "v1")
        server.deploy_version(uid, "../../outside", SURVEY, [])
        versions = fetch_versions(KoboClient(server.url, server.token), uid, cache)
    assert "v1" in versions  # the odd one is not readable (the client normalises the URL) nor cached
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert written == ["data/cache/v1.json"]


def test_labels_cannot_run_in_the_codebook(tmp_path: Path) -> None:
    """A label is text from the form: in codebook.csv a formula stays text for Excel, in codebook.md HTML is
    shown, not rendered, and a carriage return does not split the table row."""
    from config import DEMO_PSEUDONYMISATION_KEY, load_form_configs, load_settings
    from pipelines.dictionary import write_codebook
    from pipelines.forms import add_form
    from pipelines.sync import sync_form
    from warehouse import connect

    label = '=HYPERLINK("http://evil.example","x") <script>alert(1)</script>\rnext'
    content = {**SURVEY, "survey": [{"type": "integer", "name": "age", "label": [label], "$kuid": "k1"}]}
    uid, forms = "aLabels0001", tmp_path / "forms"
    with DemoKoboServer(households=0, include_fixtures=False) as server:
        server.add_form(uid, "Labels", content, [{"_id": 1, "_uuid": "u1", "__version__": "v1", "age": "3"}],
                        "v1")
        client = KoboClient(server.url, server.token)
        forms.mkdir()
        add_form(client, forms, uid, slug="labels")
        settings = load_settings(kobo_url=server.url, kobo_token=server.token, data_dir=tmp_path / "data",
                                 forms_dir=forms, pseudonymisation_key=DEMO_PSEUDONYMISATION_KEY,
                                 indicators_file=tmp_path / "none.yaml")
        (form,) = load_form_configs(forms)
        with connect(settings.warehouse_path) as con:
            assert sync_form(settings, form, con, client, checks=False).error is None
            csv_path, md_path = write_codebook(con, "labels", tmp_path / "cb")
    import csv

    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    cells = [v for r in rows for v in r.values() if v and "HYPERLINK" in v]
    assert cells and all(v.startswith("'=") for v in cells)
    md = md_path.read_text(encoding="utf-8")
    assert "<script>" not in md and "&lt;script&gt;" in md and "\r" not in md
