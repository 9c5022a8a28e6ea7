"""The attachments table: keys of main and repeat files, id-only download paths, nothing personal after the
default privacy policy, and an idempotent load into DuckDB."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from transforms_golden import load_formpack, load_robotoolbox

from config.privacy import PrivacyPolicy
from config.settings import DEMO_PSEUDONYMISATION_KEY
from transforms.attachments import (
    ATTACHMENT_COLUMNS,
    ATTACHMENTS_KIND,
    attachments_table_name,
    to_attachment_table,
    with_attachment_rows,
    with_attachments_table,
)
from transforms.flatten import to_tables
from transforms.model import FormSchema
from transforms.privacy import apply_policy, apply_policy_to_schema
from transforms.schema import to_form_schema
from warehouse import connect, ensure_tables, upsert_batch

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"KoBo fixtures not found at {FIXTURES}")
KEY = DEMO_PSEUDONYMISATION_KEY.encode()
ASSET = "aAttTest9Xy"
HOST = "kf.kobotoolbox.org"
OWNER = "jane_enumerator"
ROOT = "7c9d0e2a-5b1f-4a3e-9c2d-1e0f3a4b5c6d"

CONTENT: dict[str, Any] = {
    "survey": [
        {"type": "text", "name": "hh_name"},
        {"type": "integer", "name": "hh_size"},
        {"type": "image", "name": "selfie"},
        {"type": "begin_group", "name": "grp"},
        {"type": "begin_repeat", "name": "rep"},
        {"type": "integer", "name": "age"},
        {"type": "begin_repeat", "name": "sub"},
        {"type": "image", "name": "photo"},
        {"type": "end_repeat"},
        {"type": "end_repeat"},
        {"type": "audio", "name": "voice"},
        {"type": "end_group"},
    ],
    "choices": [],
    "translations": [None],
}


def _schema(content: dict = CONTENT) -> FormSchema:
    asset = {
        "uid": ASSET,
        "name": "att",
        "content": content,
        "deployed_versions": {"results": [{"uid": "v1"}]},
    }
    return to_form_schema(asset, {"v1": content}, "att")


def _att(uid: str, xpath: str, basename: str, sub_id: int, mimetype: str = "image/jpeg", **kw) -> dict:
    """An `_attachments` entry shaped as KPI rewrites it (kobo-api.md 3.6)."""
    return {
        "uid": uid,
        "mimetype": mimetype,
        "question_xpath": xpath,
        "media_file_basename": basename,
        "filename": f"{OWNER}/attachments/formhubuuid/{ROOT}/{basename}",
        "download_url": f"https://{HOST}/api/v2/assets/{ASSET}/data/{sub_id}/attachments/{uid}/?format=json",
        "download_small_url": f"https://{HOST}/api/v2/assets/{ASSET}/data/{sub_id}/attachments/{uid}/small/",
        "is_deleted": False,
        **kw,
    }


def _submissions() -> list[dict]:
    return [
        {
            "_id": 1042,
            "__version__": "v1",
            "hh_name": "Amina Yusuf",
            "hh_size": "4",
            "selfie": "Amina Yusuf portrait.jpg",
            "grp/rep": [
                {"grp/rep/age": "31", "grp/rep/sub": [{"grp/rep/sub/photo": "p1.jpg"}]},
                {
                    "grp/rep/age": "7",
                    "grp/rep/sub": [{"grp/rep/sub/photo": "p2.jpg"}, {"grp/rep/sub/photo": "Musa_Yusuf.jpg"}],
                },
            ],
            "grp/voice": "voice_note.m4a",
            "meta/rootUuid": f"uuid:{ROOT}",
            "_attachments": [
                _att("attSelfie001", "selfie", "Amina_Yusuf_portrait.jpg", 1042),
                _att("attPhoto0001", "grp/rep[1]/sub[1]/photo", "p1.jpg", 1042),
                _att("attPhoto0003", "grp/rep[2]/sub[2]/photo", "Musa_Yusuf.jpg", 1042, is_deleted=True),
                _att("attVoice0001", "grp/voice", "voice_note.m4a", 1042, mimetype="audio/mp4"),
                _att("attUnmatched", "", "stray.jpg", 1042),
            ],
        },
        {"_id": 1043, "__version__": "v1", "hh_size": "2", "_attachments": []},
    ]


def _rows(table: pa.Table) -> dict[str, dict]:
    return {r["attachment_uid"]: r for r in table.to_pylist()}


def test_table_added_only_for_forms_with_media_and_idempotent() -> None:
    schema = _schema()
    with_table = with_attachments_table(schema)
    assert "attachments" not in schema.tables  # input not mutated
    table = with_table.tables["attachments"]
    assert (table.parent, table.xpath, table.kind, table.key) == ("submissions", "", ATTACHMENTS_KIND, "_key")
    assert [(c.name, c.duckdb_type) for c in table.columns] == [(n, t) for n, t, _ in ATTACHMENT_COLUMNS]
    assert with_attachments_table(with_table) is with_table
    no_media = {**CONTENT, "survey": [r for r in CONTENT["survey"] if r["type"] not in ("image", "audio")]}
    plain = _schema(no_media)
    assert with_attachments_table(plain) is plain
    assert attachments_table_name(plain) is None


def test_name_clash_with_a_repeat_called_attachments() -> None:
    content = {
        **CONTENT,
        "survey": [
            {"type": "begin_repeat", "name": "attachments"},
            {"type": "file", "name": "doc"},
            {"type": "end_repeat"},
        ],
    }
    schema = with_attachments_table(_schema(content))
    assert attachments_table_name(schema) == "attachments_2"
    assert schema.tables["attachments"].kind == "repeat"


def test_keys_paths_and_columns_of_main_and_repeat_files() -> None:
    schema = with_attachments_table(_schema())
    rows = _rows(to_attachment_table(_submissions(), schema))
    assert set(rows) == {"attSelfie001", "attPhoto0001", "attPhoto0003", "attVoice0001", "attUnmatched"}
    assert rows["attSelfie001"]["_key"] == "1042"
    assert rows["attPhoto0001"]["_key"] == "1042/rep[1]/sub[1]"
    assert rows["attPhoto0003"]["_key"] == "1042/rep[2]/sub[2]"
    assert rows["attVoice0001"]["_key"] == "1042"  # a group is not a row
    assert rows["attUnmatched"]["_key"] == "1042"
    assert rows["attPhoto0003"]["question_xpath"] == "grp/rep/sub/photo"
    assert rows["attPhoto0003"]["question_column"] == "photo"
    assert rows["attVoice0001"]["question_xpath"] == "grp/voice"
    assert rows["attUnmatched"]["question_xpath"] is None
    assert rows["attPhoto0003"]["is_deleted"] is True
    assert rows["attSelfie001"]["is_deleted"] is False
    assert rows["attVoice0001"]["mimetype"] == "audio/mp4"
    assert (
        rows["attPhoto0001"]["download_path"] == f"/api/v2/assets/{ASSET}/data/1042/attachments/attPhoto0001/"
    )
    assert {r["_submission_id"] for r in rows.values()} == {1042}
    # the repeat keys are exactly the `_key`s to_tables gives the repeat rows
    batch = to_tables(_submissions(), schema)
    sub_keys = set(batch.tables["sub"].column("_key").to_pylist())
    assert {rows["attPhoto0001"]["_key"], rows["attPhoto0003"]["_key"]} <= sub_keys


def test_unresolvable_repeat_paths_are_keyed_to_the_submission() -> None:
    schema = with_attachments_table(_schema())
    sub = {
        "_id": 7,
        "_attachments": [
            {"uid": "attA", "question_xpath": "grp/rep/sub[1]/photo"},  # repeat without an index
            {"uid": "attB", "question_xpath": "grp/nope[3]/photo"},  # index on an unknown repeat
            "not an object",
        ],
    }
    rows = _rows(to_attachment_table([sub, {"_id": "x", "_attachments": [{"uid": "attC"}]}], schema))
    assert {u: r["_key"] for u, r in rows.items()} == {"attA": "7", "attB": "7"}
    assert rows["attB"]["question_column"] is None


def test_default_privacy_policy_leaves_no_name_url_or_host() -> None:
    raw = with_attachments_table(_schema())
    policy = PrivacyPolicy()
    stored = apply_policy_to_schema(raw, policy)
    assert attachments_table_name(stored) == "attachments"
    result = apply_policy(_submissions(), raw, policy, KEY)
    table = to_attachment_table(result.submissions, stored)
    rows = _rows(table)
    assert len(rows) == 5
    assert all(r["basename"] is None for r in rows.values())
    # the deletion flag is kept by the default policy (a boolean, no personal data)
    assert rows["attPhoto0003"]["is_deleted"] is True
    assert rows["attSelfie001"]["is_deleted"] is False
    assert rows["attPhoto0003"]["_key"] == "1042/rep[2]/sub[2]"
    assert rows["attPhoto0003"]["question_xpath"] == "grp/rep/sub/photo"
    # media questions are withheld by default: no warehouse column to point at
    assert rows["attPhoto0003"]["question_column"] is None
    assert (
        rows["attSelfie001"]["download_path"] == f"/api/v2/assets/{ASSET}/data/1042/attachments/attSelfie001/"
    )
    text = json.dumps(table.to_pylist())
    for secret in (HOST, OWNER, ROOT, "Amina", "Musa", "portrait", "voice_note", "stray", "http", "format="):
        assert secret not in text


@needs_fixtures
def test_real_asset_with_an_audit_question_gets_the_table() -> None:
    # aEnSVDdSc82qv84mgWEcvs (kobo_form_no_choices) has an `audit` question; it has no recorded data
    asset, versions, records = load_robotoolbox("kobo_form_no_choices")
    schema = with_attachments_table(to_form_schema(asset, versions, "no_choices"))
    assert attachments_table_name(schema) == "attachments"
    batch = to_tables(records, schema)
    assert batch.tables["attachments"].num_rows == 0
    assert batch.tables["attachments"].schema == to_attachment_table([], schema).schema


@needs_fixtures
def test_real_records_without_media_get_no_table_and_no_rows() -> None:
    # aANhxwX9S6BCsiYMgQj9kV (kobo_data_dm): nested repeats, no media; its records carry `_attachments: []`
    asset, versions, records = load_robotoolbox("kobo_data_dm")
    assert records and all(r["_attachments"] == [] for r in records)
    schema = to_form_schema(asset, versions, "dm")
    assert with_attachments_table(schema) is schema
    assert to_attachment_table(records, schema).num_rows == 0
    batch = to_tables(records, schema)
    assert with_attachment_rows(batch, records, schema) is batch


@needs_fixtures
def test_formpack_legacy_attachments_after_the_default_policy() -> None:
    # formpack's media_types: image + audit questions; old-style entries (filename + download_url with host)
    asset, versions, records = load_formpack("media_types")
    raw = with_attachments_table(to_form_schema(asset, versions, "media_types"))
    assert attachments_table_name(raw) == "attachments"
    before = to_attachment_table(records, raw)
    assert before.num_rows == sum(len(r["_attachments"]) for r in records) > 0
    assert "julius.jpg" in before.column("basename").to_pylist()  # without the policy the name would stay
    policy = PrivacyPolicy()
    result = apply_policy(records, raw, policy, KEY)
    table = to_attachment_table(result.submissions, apply_policy_to_schema(raw, policy))
    assert table.num_rows == before.num_rows
    assert table.column("_key").to_pylist() == [str(i) for i in table.column("_submission_id").to_pylist()]
    for name in ("basename", "download_path", "attachment_uid", "question_xpath"):
        assert table.column(name).null_count == table.num_rows  # no uid, no xpath in the legacy shape
    text = json.dumps(table.to_pylist())
    assert "julius" not in text and "kc.kobo.org" not in text


def test_load_into_duckdb_is_idempotent(tmp_path: Path) -> None:
    raw = with_attachments_table(_schema())
    policy = PrivacyPolicy()
    stored = apply_policy_to_schema(raw, policy)
    subs = apply_policy(_submissions(), raw, policy, KEY).submissions
    batch = with_attachment_rows(to_tables(subs, stored), subs, stored)
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        ensure_tables(con, stored)
        cols = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'att' AND table_name = 'attachments' ORDER BY ordinal_position"
        ).fetchall()
        assert cols == [(n, t) for n, t, _ in ATTACHMENT_COLUMNS]
        select = "SELECT _submission_id, _key, attachment_uid, is_deleted FROM att.attachments ORDER BY 3"
        upsert_batch(con, stored, batch, run_id="r1")
        first = con.execute(select).fetchall()
        assert len(first) == 5
        assert ("1042/rep[2]/sub[2]" in [r[1] for r in first]) and {r[0] for r in first} == {1042}
        joined = con.execute("SELECT count(*) FROM att.attachments a JOIN att.sub s USING (_key)").fetchone()
        assert joined == (2,)
        counts = upsert_batch(con, stored, batch, run_id="r2")
        assert (counts.inserted, counts.updated) == (0, 2)
        assert con.execute(select).fetchall() == first
        # an edit that removes a file: the submission's rows are replaced, not appended to
        edited = copy.deepcopy(_submissions())
        edited[0]["_attachments"] = edited[0]["_attachments"][:1]
        subs2 = apply_policy(edited, raw, policy, KEY).submissions
        upsert_batch(con, stored, with_attachment_rows(to_tables(subs2, stored), subs2, stored), run_id="r3")
        assert con.execute(select).fetchall() == [(1042, "1042", "attSelfie001", False)]
    finally:
        con.close()
