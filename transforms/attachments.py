"""The `attachments` table: one row per file KoBo holds for a submission, metadata only (no download).

Built from `_attachments` *after* the privacy policy, so it carries ids, not names: the download path is
rebuilt from the asset uid, `_id` and the attachment uid (KoBo's `download_url` and `filename` embed the
host, the owner's username, the rootUuid and device filenames, which are often people's names).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from transforms.model import MAIN_TABLE, ColumnSpec, FlatBatch, FormSchema, TableSchema
from transforms.naming import unique
from transforms.privacy import MEDIA_TYPES

ATTACHMENTS_TABLE = "attachments"
#: `TableSchema.kind` of the attachments table: a child of `submissions` keyed by `_submission_id` + `_key`
#: (like a bridge table), so upserts and deletions replace its rows with the submission's.
ATTACHMENTS_KIND = "attachments"
ATTACHMENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("_submission_id", "BIGINT", "key"),
    ("_key", "VARCHAR", "key"),
    ("question_xpath", "VARCHAR", "system"),
    ("question_column", "VARCHAR", "system"),
    ("attachment_uid", "VARCHAR", "system"),
    ("mimetype", "VARCHAR", "system"),
    ("basename", "VARCHAR", "system"),
    ("download_path", "VARCHAR", "system"),
    ("is_deleted", "BOOLEAN", "system"),
)
_ARROW = {"BIGINT": pa.int64(), "VARCHAR": pa.string(), "BOOLEAN": pa.bool_()}
ATTACHMENTS_ARROW_SCHEMA = pa.schema([(n, _ARROW[t]) for n, t, _ in ATTACHMENT_COLUMNS])
# KPI's question_xpath marks each repeat instance with a 1-based index: "grp/rep[1]/sub[2]/photo"
_SEGMENT = re.compile(r"^(.*?)\[([0-9]+)\]$")
# xlsform types that produce files even if privacy.MEDIA_TYPES does not list them
_EXTRA_MEDIA = frozenset({"background-video", "image-map"})


def has_media_questions(schema: FormSchema) -> bool:
    """Whether any question of the form (in any deployed version) answers with a file."""
    return any(q.type in MEDIA_TYPES or q.type in _EXTRA_MEDIA for q in schema.questions.values())


def attachments_table_name(schema: FormSchema) -> str | None:
    """The name of the form's attachments table, or None when the schema has none."""
    return next((n for n, t in schema.tables.items() if t.kind == ATTACHMENTS_KIND), None)


def with_attachments_table(schema: FormSchema) -> FormSchema:
    """The schema plus the `attachments` table when the form has media questions (else unchanged).

    Apply it to the schema as KoBo defines it (before `apply_policy_to_schema`): the default policy
    withholds media questions, and the table must exist even when their answers are not stored. The
    table is named `attachments` (`attachments_2` if a repeat already has that name). Idempotent; the
    input is not mutated.
    """
    if attachments_table_name(schema) is not None or not has_media_questions(schema):
        return schema
    name = unique(ATTACHMENTS_TABLE, set(schema.tables))
    table = TableSchema(
        name,
        xpath="",
        parent=MAIN_TABLE,
        columns=[ColumnSpec(n, t, None, role) for n, t, role in ATTACHMENT_COLUMNS],
        kind=ATTACHMENTS_KIND,
    )
    return dataclasses.replace(schema, tables={**schema.tables, name: table})


def _repeat_names(schema: FormSchema) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Per version and across versions (newest first wins): repeat xpath → table name."""
    union: dict[str, str] = {}
    for vuid in [*schema.versions, *(v for v in schema.version_repeats if v not in schema.versions)]:
        for xp, name in schema.version_repeats.get(vuid, {}).items():
            union.setdefault(xp, name)
    return schema.version_repeats, union


def _row_key(sub_id: int, indexed: str, repeats: Mapping[str, str], fallback: Mapping[str, str]) -> str:
    """The `_key` of the row a file answers, as `to_tables` builds it: `<_id>/<repeat>[<n>]/...`.

    A path that cannot be resolved to repeat rows (an index on an unknown repeat, a known repeat without
    an index) is keyed to the submission: never a guessed repeat row.
    """
    key = str(sub_id)
    path: list[str] = []
    for segment in indexed.split("/")[:-1]:
        m = _SEGMENT.match(segment)
        path.append(m.group(1) if m else segment)
        xpath = "/".join(path)
        name = repeats.get(xpath) or fallback.get(xpath)
        if m is None and name is None:
            continue  # a plain group
        if m is None or name is None:
            return str(sub_id)
        key = f"{key}/{name}[{int(m.group(2))}]"
    return key


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _sub_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def to_attachment_table(submissions: list[dict], schema: FormSchema) -> pa.Table:
    """One row per `_attachments` entry of the (already privacy-filtered) submissions.

    Args:
        submissions: records after `apply_policy` (whatever `_attachments` fields the policy kept).
        schema: the stored form schema (after the policy): `question_column` is NULL when the question has
            no column there (e.g. a media question withheld by the policy).

    Returns:
        A table with the columns of `ATTACHMENT_COLUMNS`; `basename` is NULL unless the policy kept
        `media_file_basename`/`filename`, and `download_path` is NULL for an entry without a uid.
    """
    per_version, union = _repeat_names(schema)
    cols: dict[str, list[Any]] = {n: [] for n, _, _ in ATTACHMENT_COLUMNS}
    for sub in submissions:
        if not isinstance(sub, dict):
            continue
        sub_id = _sub_id(sub.get("_id"))
        entries = sub.get("_attachments")
        if sub_id is None or not isinstance(entries, list):
            continue
        version = sub.get("__version__")
        repeats = per_version.get(version, {}) if isinstance(version, str) else {}
        for att in entries:
            if not isinstance(att, dict):
                continue
            indexed = _text(att.get("question_xpath"))
            xpath = re.sub(r"\[[0-9]+\]", "", indexed) if indexed else None
            question = schema.questions.get(xpath) if xpath else None
            stored = (
                question is not None
                and question.table in schema.tables
                and schema.tables[question.table].column(question.column) is not None
            )
            uid = _text(att.get("uid"))
            basename = _text(att.get("media_file_basename"))
            if basename is None and _text(att.get("filename")):
                basename = str(att["filename"]).rsplit("/", 1)[-1] or None
            deleted = att.get("is_deleted")
            cols["_submission_id"].append(sub_id)
            cols["_key"].append(_row_key(sub_id, indexed, repeats, union) if indexed else str(sub_id))
            cols["question_xpath"].append(xpath)
            cols["question_column"].append(question.column if stored and question else None)
            cols["attachment_uid"].append(uid)
            cols["mimetype"].append(_text(att.get("mimetype")))
            cols["basename"].append(basename)
            # ids only: no host (the warehouse may move servers), no filename (personal data)
            cols["download_path"].append(
                f"/api/v2/assets/{schema.uid}/data/{sub_id}/attachments/{uid}/" if uid else None
            )
            cols["is_deleted"].append(deleted if isinstance(deleted, bool) else None)
    return pa.table(cols, schema=ATTACHMENTS_ARROW_SCHEMA)


def with_attachment_rows(batch: FlatBatch, submissions: list[dict], schema: FormSchema) -> FlatBatch:
    """The batch plus the attachments table when the schema has one (else the batch unchanged).

    `upsert_batch` then replaces the submissions' attachment rows with the batch's, like repeat rows.
    """
    name = attachments_table_name(schema)
    if name is None:
        return batch
    return dataclasses.replace(batch, tables={**batch.tables, name: to_attachment_table(submissions, schema)})
