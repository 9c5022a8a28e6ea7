"""Existing columns never rename when a later form version adds a question with the same name."""

from __future__ import annotations

from pathlib import Path

from transforms import to_form_schema, to_label_tables
from warehouse import connect, ensure_tables, pinned_columns, write_labels


def content(*rows: dict) -> dict:
    return {"survey": list(rows), "choices": [], "translations": [None]}


V1 = content(
    {"type": "begin_group", "name": "grp", "$kuid": "g1"},
    {"type": "integer", "name": "q", "$kuid": "k1", "$xpath": "grp/q"},
    {"type": "end_group", "$kuid": "g1e"},
)
# v2 adds another question named `q`, at the root: unpinned, the merge would give the root one the bare name
V2 = content(
    {"type": "text", "name": "q", "$kuid": "k2", "$xpath": "q"},
    {"type": "begin_group", "name": "grp", "$kuid": "g1"},
    {"type": "integer", "name": "q", "$kuid": "k1", "$xpath": "grp/q"},
    {"type": "end_group", "$kuid": "g1e"},
)
ASSET = {"uid": "aPinnedForm", "name": "Pinned"}


def column_of(schema, xpath: str) -> str:  # noqa: ANN001
    return schema.questions[xpath].column


def test_a_question_keeps_its_column_when_a_later_version_adds_a_namesake(tmp_path: Path) -> None:
    v1 = to_form_schema(ASSET, {"v1": V1}, "pinned")
    assert column_of(v1, "grp/q") == "q"
    with connect(tmp_path / "w.duckdb") as con:
        ensure_tables(con, v1)
        write_labels(con, v1, to_label_tables(v1))
        pinned = pinned_columns(con, "pinned")
    assert pinned == {"grp/q": "q"}

    unpinned = to_form_schema(ASSET, {"v2": V2, "v1": V1}, "pinned")
    assert column_of(unpinned, "grp/q") != "q"  # what would happen without the warehouse's names

    v2 = to_form_schema(ASSET, {"v2": V2, "v1": V1}, "pinned", pinned)
    assert column_of(v2, "grp/q") == "q"
    assert column_of(v2, "q") not in ("q", "")
    assert len({column_of(v2, "q"), column_of(v2, "grp/q")}) == 2


def test_pinned_columns_is_empty_before_the_first_sync(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as con:
        assert pinned_columns(con, "never_synced") == {}
