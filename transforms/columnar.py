"""A page of submissions through the privacy policy and flattening in Arrow columns, without Python objects
per answer: the fast way for pages in the shape KoBo sends nearly always.

The response body is read by Arrow's JSON reader against the form's own layout (every key of every deployed
version at its level, text answers as text, repeats as lists of objects, KoBo's system keys with their
types). The privacy policy then runs per data key on each distinct value, through the same handlers as
`transforms.privacy.apply_policy`, and flattening reads the repeats' rows from the lists' offsets.

Anything out of the usual shape makes `transform_page_columns` return None, and the caller takes the
row-by-row path (`PageTransform`), which says what is wrong with each value: a key the form does not define,
a number or a list where text is expected, a repeat sent as null or as one object, a value the policy refuses
inside a repeat, invalid Unicode. Both ways give the same tables, quarantine and withheld questions
(tests/transforms/test_columnar.py compares them).
See docs/decisions/010-columnar-pages.md.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from transforms.attachments import with_attachment_rows
from transforms.flatten import SYSTEM_KEYS, SYSTEM_STRUCT, TableColumns, to_tables_from_columns
from transforms.model import MAIN_TABLE, FormSchema
from transforms.privacy import STRUCTURE_TYPES, ColumnPolicy, NotAColumn

if TYPE_CHECKING:
    from transforms.page import PageTransform, TransformedPage

_TEXT = pa.string()
#: KoBo's own keys of a submission that this path reads, with the type KoBo sends them in. Each is one the
#: privacy policy knows (kept as it is, or a metadata rule): any other key sends the page row by row, where
#: `apply_policy` withholds it and says so.
_SYSTEM_TYPES: dict[str, pa.DataType] = {
    "_id": pa.int64(),
    "_uuid": _TEXT,
    "meta/rootUuid": _TEXT,
    "meta/instanceID": _TEXT,
    "meta/deprecatedID": _TEXT,
    "meta/instanceName": _TEXT,
    "formhub/uuid": _TEXT,
    "_submission_time": _TEXT,
    "_date_modified": _TEXT,
    "__version__": _TEXT,
    "_xform_id_string": _TEXT,
    "_bamboo_dataset_id": _TEXT,
    "_status": _TEXT,
    "_submitted_by": _TEXT,
    "_media_count": pa.int64(),
    "_total_media": pa.int64(),
    "_media_all_received": pa.bool_(),
    "_validation_status": pa.struct(
        [("timestamp", pa.int64()), ("uid", _TEXT), ("by_whom", _TEXT), ("label", _TEXT), ("color", _TEXT)]
    ),
    "_attachments": pa.list_(
        pa.struct(
            [
                *((name, _TEXT) for name in (
                    "download_url", "download_large_url", "download_medium_url", "download_small_url",
                    "mimetype", "filename", "media_file_basename", "uid", "question_xpath",
                )),
                ("is_deleted", pa.bool_()),
            ]
        )
    ),
    "_geolocation": pa.list_(pa.float64()),
    "_tags": pa.list_(_TEXT),
    "_notes": pa.list_(_TEXT),
}
#: ... the text ones not read by `_system_fields` (those not text are either not stored, and their handlers
#: cannot refuse a list: keep, drop or round_gps; or read on their own: `_attachments`, `_validation_status`)
_OTHER_TEXT = tuple(k for k, t in _SYSTEM_TYPES.items() if t == _TEXT and k != "_submitted_by")
_INT64_MIN = -(2**63)


@dataclass
class _Level:
    """One level of the form's data: the submission, or the instances of one repeat."""

    table: str  # the table of the raw schema it fills
    answers: dict[str, str] = field(default_factory=dict)  # data key -> question xpath
    repeats: dict[str, _Level] = field(default_factory=dict)  # data key -> the repeat's level

    def arrow_type(self, system: bool) -> pa.StructType:
        fields = [(key, _TEXT) for key in self.answers]
        fields += [(key, pa.list_(child.arrow_type(False))) for key, child in self.repeats.items()]
        if system:
            fields += list(_SYSTEM_TYPES.items())
        return pa.struct(fields)


@dataclass
class PageLayout:
    """How a form's pages are read in columns (built once per form by `page_layout`)."""

    main: _Level
    body_schema: pa.Schema = field(repr=False)
    #: a repeat sent as null, which Arrow reads as a repeat not sent, and the row path quarantines
    null_repeat: re.Pattern[bytes] | None = field(default=None, repr=False)


def page_layout(raw_schema: FormSchema) -> PageLayout | None:
    """The layout of the form's submissions across its deployed versions; None when a key would mean two
    things (two questions in different versions, a question and a repeat, a question named like a KoBo
    system key): such forms always go row by row."""
    levels = {name: _Level(name) for name in raw_schema.tables}
    seen: dict[str, tuple[str, str]] = {}  # data key -> (table, what it is)

    def place(key: str, table: str, what: str) -> bool:
        if seen.setdefault(key, (table, what)) != (table, what) or key in _SYSTEM_TYPES or key in SYSTEM_KEYS:
            return False
        return key.split("/")[-1] != "" and not key.startswith("_version_")

    for version in raw_schema.version_questions:
        for key, xpath in raw_schema.version_questions[version].items():
            q = raw_schema.questions.get(xpath)
            if q is None or q.type in STRUCTURE_TYPES:
                continue
            if q.table not in levels or not place(key, q.table, "answer:" + q.xpath):
                return None
            levels[q.table].answers[key] = q.xpath
        for key, name in raw_schema.version_repeats.get(version, {}).items():
            parent = raw_schema.tables[name].parent if name in raw_schema.tables else None
            if parent not in levels or not place(key, str(parent), "repeat:" + name):
                return None
            levels[str(parent)].repeats[key] = levels[name]
    repeat_keys = sorted({key for level in levels.values() for key in level.repeats})
    if not all(key.isascii() for key in repeat_keys):
        return None  # `null_repeat` could miss a key sent \u-escaped
    null_repeat = (
        re.compile(rb'"(?:' + b"|".join(re.escape(k.encode()) for k in repeat_keys) + rb')"\s*:\s*null')
        if repeat_keys else None
    )
    main = levels[MAIN_TABLE]
    envelope = [("count", pa.int64()), ("next", _TEXT), ("previous", _TEXT)]
    body = pa.schema([*envelope, ("results", pa.list_(main.arrow_type(True)))])
    return PageLayout(main, body, null_repeat)


class _NotColumnar(Exception):
    """This page is not in the usual shape: take the row-by-row path."""


def transform_page_columns(body: bytes, transform: PageTransform) -> TransformedPage | None:
    """The page in `body` (a response of `/api/v2/assets/{uid}/data/`) as `transform` would give it from
    the parsed submissions; None when the page is not in the usual shape (the caller then parses it and
    calls `transform`)."""
    from transforms.page import TransformedPage

    layout = transform.layout
    if layout is None:
        return None
    policy = ColumnPolicy(transform.raw_schema, transform.policy, transform.key)  # raises as apply_policy
    try:
        submissions = _read_body(body, layout)
        tables: dict[str, TableColumns] = {}
        refused: list[tuple[int, str, str]] = []  # (row, question, reason) of values the policy refuses
        ids = submissions.field("_id")
        sub_ids = ids.to_pylist()
        keys = [str(i) for i in sub_ids]
        _read_level(layout.main, submissions, (sub_ids, keys, [None] * len(keys), [0] * len(keys)),
                    policy, transform.schema, tables, refused)
        system = _system_fields(submissions, policy, refused)
        for key in _OTHER_TEXT:  # not stored, but a value the policy refuses is quarantined all the same
            refused += policy.column(key, submissions.field(key))[1]
        if len({row for row, _, _ in refused}) != len(refused):
            raise _NotColumnar  # two refusals in one submission: their order is the submission's key order
        batch = to_tables_from_columns(tables, system, transform.schema)
        attachments = _attachments(submissions, policy)
    except (_NotColumnar, NotAColumn):
        return None
    rejected = [(sub_ids[row], xpath, reason) for row, xpath, reason in sorted(refused)]
    batch.quarantine[:0] = transform.rejected_records(rejected, [])  # main-table values only
    return TransformedPage(with_attachment_rows(batch, attachments, transform.schema), policy.withheld)


def _read_body(body: bytes, layout: PageLayout) -> pa.StructArray:
    """The submissions of a page body as one struct array; `_NotColumnar` if the body is not a page envelope
    of the layout's keys and types."""
    if layout.null_repeat is not None and layout.null_repeat.search(body):
        raise _NotColumnar
    try:
        table = pj.read_json(
            io.BytesIO(body),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(body) + 1),
            parse_options=pj.ParseOptions(
                explicit_schema=layout.body_schema, unexpected_field_behavior="error"
            ),
        )
        table.validate(full=True)  # Arrow's reader lets invalid UTF-8 through; the JSON parser refuses it
    except pa.ArrowInvalid as exc:
        raise _NotColumnar from exc
    results = table.column("results")
    if table.num_rows != 1 or results.null_count:
        raise _NotColumnar
    submissions = results.combine_chunks().flatten()
    ids = submissions.field("_id")
    if submissions.null_count or ids.null_count or (len(ids) and pc.min(ids).as_py() == _INT64_MIN):
        raise _NotColumnar  # each becomes a quarantine record row by row
    return submissions


_Who = tuple[list[int], list[str], list[str | None], list[int]]  # sub_ids, keys, parents, positions


def _read_level(
    level: _Level,
    rows: pa.StructArray,
    who: _Who,
    policy: ColumnPolicy,
    schema: FormSchema,
    tables: dict[str, TableColumns],
    refused: list[tuple[int, str, str]],
) -> None:
    """The answers of `rows` (one level) after the policy, into `tables`, then their repeats'."""
    answers: dict[str, pa.Array] = {}
    for key, xpath in level.answers.items():
        values, bad = policy.column(key, rows.field(key))
        if bad and level.table != MAIN_TABLE:
            raise _NotColumnar  # the quarantine names the refusing instance, found by walking the submission
        refused += bad
        if values is None:
            continue
        if xpath in answers:  # the question under its key of another version: one of them per row
            both = pc.and_(pc.is_valid(answers[xpath]), pc.is_valid(values))
            if pc.any(both).as_py():
                raise _NotColumnar
            values = pc.coalesce(answers[xpath], values)
        answers[xpath] = values
    if level.table in schema.tables:
        tables[level.table] = TableColumns(*who, answers)
    by_table: dict[str, list[str]] = {}  # a repeat renamed in a later version has a key per version
    for key, child in level.repeats.items():
        by_table.setdefault(child.table, []).append(key)
    for table, repeat_keys in by_table.items():
        stored = table in schema.tables
        dropped = {policy.drops_repeat(key) for key in repeat_keys}
        if dropped != {not stored}:
            raise _NotColumnar  # the policy and the stored schema disagree: never store it
        if not stored:
            continue
        lists = _one_list_per_row([rows.field(key) for key in repeat_keys])
        instances = pc.list_flatten(lists)
        if instances.null_count:
            raise _NotColumnar  # an instance that is not an object is quarantined row by row
        counts = pc.fill_null(pc.list_value_length(lists), 0).to_pylist()
        parent = [row for row, n in enumerate(counts) for _ in range(n)]
        positions = [p for n in counts for p in range(1, n + 1)]
        sub_ids, keys, _, _ = who
        parent_keys: list[str | None] = [keys[i] for i in parent]
        child_who: _Who = (
            [sub_ids[i] for i in parent],
            [f"{keys[i]}/{table}[{p}]" for i, p in zip(parent, positions, strict=True)],
            [None] * len(parent) if level.table == MAIN_TABLE else parent_keys,
            positions,
        )
        _read_level(level.repeats[repeat_keys[0]], instances, child_who, policy, schema, tables, refused)


def _one_list_per_row(lists: list[pa.Array]) -> pa.Array:
    """The instances of a repeat sent under any of its keys; `_NotColumnar` if a row has them under two (the
    row-by-row path then keeps the order of the submission's keys)."""
    if len(lists) == 1:
        return lists[0]
    has = [pc.fill_null(pc.greater(pc.list_value_length(a), 0), False) for a in lists]
    count = pc.cast(has[0], pa.int8())
    for present in has[1:]:
        count = pc.add(count, pc.cast(present, pa.int8()))
    if (pc.max(count).as_py() or 0) > 1:
        raise _NotColumnar
    out = lists[-1]
    for values, present in zip(lists[-2::-1], has[-2::-1], strict=True):
        out = pc.if_else(present, values, out)
    return out


def _system_fields(
    submissions: pa.StructArray, policy: ColumnPolicy, refused: list[tuple[int, str, str]]
) -> pa.StructArray:
    """The system fields flattening stores (`SYSTEM_STRUCT`), after the policy."""
    status = submissions.field("_validation_status")
    by_whom, bad = policy.column("_validation_status.by_whom", status.field("by_whom"))
    refused += bad
    submitted_by, bad = policy.column("_submitted_by", submissions.field("_submitted_by"))
    refused += bad
    nothing = pa.nulls(len(submissions), _TEXT)
    fields = {
        "_uuid": submissions.field("_uuid"),
        "meta/rootUuid": submissions.field("meta/rootUuid"),
        "_submission_time": submissions.field("_submission_time"),
        "__version__": submissions.field("__version__"),
        "_validation_status": pa.StructArray.from_arrays(
            [status.field("uid"), status.field("label"), nothing if by_whom is None else by_whom,
             status.field("timestamp")],
            fields=list(SYSTEM_STRUCT.field("_validation_status").type),
        ),
        "_submitted_by": nothing if submitted_by is None else submitted_by,
        "_status": submissions.field("_status"),
    }
    return pa.StructArray.from_arrays(list(fields.values()), fields=list(SYSTEM_STRUCT))


def _attachments(submissions: pa.StructArray, policy: ColumnPolicy) -> list[dict[str, Any]]:
    """The submissions that have files, as `to_attachment_table` reads them after the policy."""
    files = submissions.field("_attachments")
    rows = pc.indices_nonzero(pc.fill_null(pc.greater(pc.list_value_length(files), 0), False))
    if not len(rows):
        return []
    out = []
    for sub_id, version, entries in zip(
        submissions.field("_id").take(rows).to_pylist(),
        submissions.field("__version__").take(rows).to_pylist(),
        files.take(rows).to_pylist(),
        strict=True,
    ):
        kept = policy.value("_attachments", [{k: v for k, v in e.items() if v is not None} for e in entries])
        if kept is not None:
            out.append({"_id": sub_id, "__version__": version, "_attachments": kept})
    return out
