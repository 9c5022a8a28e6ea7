"""Flattens KoBo submissions (wire format) into typed Arrow tables, one per form level, as the schema says.

Rows are collected per table and cast column by column at the end, so a batch costs one `pa.table` per
table. Rows whose keys are all plain text answers of their table (nearly every row KoBo sends) are read with
one `pa.array` per table and version; the others are walked answer by answer, and a page whose plain rows
hold a value that is not text is walked as a whole, so both ways give the same result. A value that cannot
be cast becomes NULL plus a `QuarantineRecord`; nothing raises.

Keys in a submission that no deployed version knows are not stored; they are counted in
`FlatBatch.unknown_keys` (KoBo's own bookkeeping keys such as `formhub/uuid`, `_attachments`, `_geolocation`,
`_tags`, `_notes`, `meta/instanceID` are expected and not counted).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from transforms.model import MAIN_TABLE, FlatBatch, FormSchema, QuarantineRecord, TableSchema
from transforms.schema import _KIND, KIND_TYPE

ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}

#: Keys KoBo adds to every record that are read as system columns or deliberately not stored.
SYSTEM_KEYS = frozenset(
    {
        "_id",
        "_uuid",
        "meta/rootUuid",
        "_submission_time",
        "__version__",
        "_validation_status",
        "_submitted_by",
        "_status",
        "formhub/uuid",
        "meta/instanceID",
        "meta/deprecatedID",
        "meta/versionID",
        "meta/instanceName",
        "_xform_id_string",
        "_xform_id",
        "_attachments",
        "_geolocation",
        "_tags",
        "_notes",
        "_supplementalDetails",
        "_version_",
        "_bamboo_dataset_id",
        "_media_count",
        "_total_media",
        "_media_all_received",
        "_date_modified",
    }
)

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUM = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_TIME = re.compile(
    r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6})[0-9]*)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?", re.ASCII
)
_INT64_MAX = 2**63 - 1
_TRUE = {"ok", "true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass
class _Cell:
    """Where one question's answer goes: its table, the column index and how to cast it."""

    table: str
    index: int
    kind: str
    xlsform_type: str
    column: str
    parts: list[int] = field(default_factory=list)  # geo part or choice flag column indexes
    choices: list[str] = field(default_factory=list)
    bridge: str | None = None


@dataclass
class _Rows:
    """Rows of one table under construction, gathered per column: `cols[i]` maps row number -> value.

    Column-wise gathering allocates no container per row, which keeps the cyclic GC (which scans every live
    container whenever enough new ones pile up) from costing as much as the flattening itself.
    """

    spec: TableSchema
    index: dict[str, int]
    cols: list[dict[int, Any]]
    sub_ids: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    parents: list[str | None] = field(default_factory=list)  # repeat tables: `_parent_key`
    positions: list[int] = field(default_factory=list)  # repeat tables: `_position`
    direct: dict[int, dict[str, int]] = field(default_factory=dict)  # id(version qmap) -> key -> column
    #: (id(version qmap), key order) -> its repeat keys if the key order is plain, else None (`plain_repeats`)
    shapes: dict[tuple[int, tuple[str, ...]], Any] = field(default_factory=dict)
    plain: dict[int, _Plain] = field(default_factory=dict)  # id(version qmap) -> this table's plain rows
    arrow: dict[int, pa.Array] = field(default_factory=dict)  # column index -> whole column, read in columns


@dataclass
class _Plain:
    """Rows whose answers are all text answers of their table (as KoBo sends nearly every row): their values
    are read with one `pa.array` per table and version instead of one Python step per answer."""

    direct: dict[str, int]  # data key -> column index, for the version these rows were filled with
    rows: list[int] = field(default_factory=list)
    objs: list[dict[str, Any]] = field(default_factory=list)


class _NotPlain(Exception):
    """A plain row holds a value that is not text (a number, a list, a lone surrogate): walk the page."""


def _plan(schema: FormSchema) -> tuple[dict[str, _Rows], dict[str, _Cell]]:
    tables = {
        name: _Rows(t, {c.name: i for i, c in enumerate(t.columns)}, [{} for _ in t.columns])
        for name, t in schema.tables.items()
    }
    cells: dict[str, _Cell] = {}
    for q in {q.xpath: q for q in schema.questions.values()}.values():
        rows = tables[q.table]
        spec = rows.spec.columns[rows.index[q.column]]
        kind = _kind_of(q.type, spec.duckdb_type)
        cell = _Cell(q.table, rows.index[q.column], kind, q.type, q.column)
        for i, c in enumerate(rows.spec.columns):
            if c.question == q.xpath and c.role in ("geo_part", "choice_flag"):
                cell.parts.append(i)
        if kind == "select_multiple":
            cell.choices = [c.name for c in schema.choices if c.list_name == q.list_name]
            cell.bridge = next(
                (n for n, t in schema.tables.items() if t.kind == "bridge" and t.xpath == q.xpath), None
            )
        cells[q.xpath] = cell
    return tables, cells


def _kind_of(xlsform_type: str, duckdb_type: str) -> str:
    kind = _KIND.get(xlsform_type, "text")
    return (
        kind
        if KIND_TYPE.get(kind) == duckdb_type
        else {"DOUBLE": "decimal", "BIGINT": "integer"}.get(
            duckdb_type, "select_multiple" if xlsform_type == "select_multiple" else "text"
        )
    )


def _scalar(value: Any) -> str | None:
    """An answer as text; None for empty. Lists and dicts are not scalars (the caller quarantines them)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_tables(submissions: list[dict], schema: FormSchema) -> FlatBatch:
    """Flatten submissions into one typed Arrow table per schema table.

    Args:
        submissions: records as `/api/v2/assets/{uid}/data/` returns them (after the privacy policy).
        schema: from `to_form_schema`.

    Returns:
        `FlatBatch` with every schema table (possibly empty), the quarantine and the submission ids.
    """
    try:
        return _to_tables(submissions, schema, columnar=True)
    except _NotPlain:
        # rare (a client sent a number or a list where text was expected): the answer-by-answer walk gives
        # each such value its own quarantine record, in submission order
        return _to_tables(submissions, schema, columnar=False)


@dataclass
class TableColumns:
    """One table's rows of a page read in columns (`transforms.columnar`): who each row is, and the text of
    each answer after the privacy policy (null = no answer)."""

    sub_ids: list[int]
    keys: list[str]
    parents: list[str | None]  # repeat rows: `_parent_key` (None under a submission)
    positions: list[int]  # repeat rows: `_position`
    answers: dict[str, pa.Array]  # question xpath -> text column


def to_tables_from_columns(
    tables: dict[str, TableColumns], system: pa.StructArray, schema: FormSchema
) -> FlatBatch:
    """Typed Arrow tables from a page read in columns, as `to_tables` gives them from the same submissions.

    Args:
        tables: the rows of each stored table the page has (a table without rows may be left out).
        system: the submissions' system fields (`SYSTEM_STRUCT`), after the privacy policy.
        schema: the stored form schema (after the privacy policy).
    """
    rows_of, cells = _plan(schema)
    main = rows_of[MAIN_TABLE]
    for name, read in tables.items():
        rows = rows_of[name]
        rows.sub_ids, rows.keys, rows.parents, rows.positions = (
            read.sub_ids, read.keys, read.parents, read.positions
        )
        for xpath, values in read.answers.items():
            cell = cells.get(xpath)
            if cell is None:  # not stored (the policy removed it)
                continue
            if cell.table != name:
                raise ValueError(f"question {xpath} belongs in table {cell.table}, not {name}")
            rows.arrow[cell.index] = pc.if_else(pc.equal(values, ""), _EMPTY_TEXT, values)  # "" = no answer
    _system_columns(main, system)
    return _assemble(rows_of, cells, [], schema, list(main.sub_ids), {})


def _to_tables(submissions: list[dict], schema: FormSchema, *, columnar: bool) -> FlatBatch:
    tables, cells = _plan(schema)
    quarantine: list[QuarantineRecord] = []
    unknown: dict[str, int] = {}
    repeat_union: dict[str, str] = {}
    for mapping in schema.version_repeats.values():
        for xp, name in mapping.items():
            repeat_union.setdefault(xp, name)
    newest = schema.versions[0] if schema.versions else ""
    main = tables[MAIN_TABLE]
    ids: list[int] = []
    version_keys: dict[tuple, list[str]] = {}
    # a column the policy removes (`_submitted_by: drop`) has no place in the table: its values go nowhere
    system_cols = [main.cols[main.index[name]] if name in main.index else {} for name in _SYSTEM_COLUMNS]
    main_objs: list[dict] = []  # read in columns by `_read_system` after the walk

    def direct_map(rows: _Rows, qmap: dict) -> dict[str, int]:
        """Data key -> column index for the answers of this version that belong in this table."""
        found = rows.direct[id(qmap)] = {
            key: cells[qx].index
            for key, qx in qmap.items()
            if qx in cells  # a question the privacy policy dropped has no cell and no key in the data
            and cells[qx].table == rows.spec.name
            and not (rows is main and (key in SYSTEM_KEYS or key.startswith("_version_")))
        }
        return found

    def plain_repeats(
        rows: _Rows, shape: tuple[str, ...], qmap: dict, rmap: dict, direct: dict[str, int]
    ) -> tuple[tuple[str, str], ...] | None:
        """The (key, repeat) pairs of a key order whose other keys are all answers of this table (one per
        column) or KoBo keys not stored here; None when a key needs the walk in `fill` (unknown, outside
        its repeat, not of this version)."""
        repeats: list[tuple[str, str]] = []
        columns: set[int] = set()
        for key in shape:
            index = direct.get(key)
            if index is not None:
                if index in columns:
                    return None
                columns.add(index)
            elif rows is main and (key in SYSTEM_KEYS or key.startswith("_version_")):
                continue
            elif qmap.get(key) is None and (rname := rmap.get(key) or repeat_union.get(key)) is not None:
                if tables[rname].spec.parent != rows.spec.name:
                    return None
                repeats.append((key, rname))
            else:
                return None
        return tuple(repeats)

    def fill(rows: _Rows, obj: dict, row: int, sub_id: int, row_key: str, qmap: dict, rmap: dict) -> None:
        direct = rows.direct.get(id(qmap)) or direct_map(rows, qmap)
        if columnar:
            shape = (id(qmap), tuple(obj))
            if shape in rows.shapes:
                repeats = rows.shapes[shape]
            else:
                repeats = rows.shapes[shape] = plain_repeats(rows, shape[1], qmap, rmap, direct)
            if repeats is not None:
                plain = rows.plain.get(id(qmap))
                if plain is None:
                    plain = rows.plain[id(qmap)] = _Plain(direct)
                plain.rows.append(row)
                plain.objs.append(obj)
                for key, repeat in repeats:
                    fill_repeat(tables[repeat], obj[key], rows, sub_id, row_key, qmap, rmap)
                return
        cols = rows.cols
        for key, value in obj.items():
            # fast path, the same as the walk below for a plain text answer of this table
            index = direct.get(key)
            if index is not None and type(value) is str:
                cols[index][row] = value or None
                continue
            if rows is main and (key in SYSTEM_KEYS or key.startswith("_version_")):
                continue
            qx = qmap.get(key)
            if qx is None:
                rname = rmap.get(key) or repeat_union.get(key)
                if rname is not None:
                    child = tables[rname]
                    if child.spec.parent != rows.spec.name:
                        unknown[key] = unknown.get(key, 0) + 1
                        continue
                    fill_repeat(child, value, rows, sub_id, row_key, qmap, rmap)
                    continue
                q = schema.questions.get(key)
                if q is None:
                    unknown[key] = unknown.get(key, 0) + 1
                    continue
                qx = q.xpath
            cell = cells[qx]
            if cell.table != rows.spec.name:
                # an answer outside the repeat it belongs to: keep the evidence, do not guess a row
                quarantine.append(
                    QuarantineRecord(
                        sub_id,
                        cell.table,
                        cell.column,
                        "answer found outside its repeat",
                        _scalar(value) if not isinstance(value, (list, dict)) else None,
                        row_key,
                    )
                )
                continue
            if isinstance(value, (list, dict)):
                quarantine.append(
                    QuarantineRecord(
                        sub_id,
                        cell.table,
                        cell.column,
                        f"not a single value (XLSForm type {cell.xlsform_type})",
                        _json_text(value),
                        row_key,
                    )
                )
                continue
            cols[cell.index][row] = _scalar(value)

    def fill_repeat(
        child: _Rows, value: Any, rows: _Rows, sub_id: int, row_key: str, qmap: dict, rmap: dict
    ) -> None:
        """The instances of one repeat of a row of `rows` become rows of `child`."""
        rname = child.spec.name
        instances = [value] if isinstance(value, dict) else value
        if not isinstance(instances, list):
            quarantine.append(
                QuarantineRecord(
                    sub_id, rname, "_key", "repeat is not a list of instances", _scalar(value), row_key
                )
            )
            return
        for pos, inst in enumerate(instances, start=1):
            if not isinstance(inst, dict):
                quarantine.append(
                    QuarantineRecord(
                        sub_id, rname, "_key", "repeat instance is not an object", _scalar(inst), row_key
                    )
                )
                continue
            key_ = f"{row_key}/{rname}[{pos}]"
            crow = len(child.keys)
            child.sub_ids.append(sub_id)
            child.keys.append(key_)
            child.parents.append(None if rows is main else row_key)
            child.positions.append(pos)
            fill(child, inst, crow, sub_id, key_, qmap, rmap)

    for sub in submissions:
        if not isinstance(sub, dict):
            quarantine.append(
                QuarantineRecord(0, MAIN_TABLE, "_id", "submission is not an object; row skipped", None)
            )
            continue
        sub_id = _to_id(sub.get("_id"))
        if sub_id is None:
            quarantine.append(
                QuarantineRecord(
                    0,
                    MAIN_TABLE,
                    "_id",
                    "submission has no integer _id; row skipped",
                    _scalar(sub.get("_id")) if not isinstance(sub.get("_id"), (list, dict)) else None,
                )
            )
            continue
        version = _row_version(sub, schema, version_keys)
        qmap = schema.version_questions.get(version) or schema.version_questions.get(newest, {})
        rmap = schema.version_repeats.get(version) or schema.version_repeats.get(newest, {})
        row = len(main.keys)
        main.sub_ids.append(sub_id)
        main.keys.append(str(sub_id))
        if columnar:
            main_objs.append(sub)
        else:
            _fill_system(system_cols, row, sub, quarantine)
        fill(main, sub, row, sub_id, str(sub_id), qmap, rmap)
        ids.append(sub_id)

    if columnar and not _read_system(main, main_objs):
        for row, sub in enumerate(main_objs):
            _fill_system(system_cols, row, sub, quarantine)

    for rows in tables.values():
        _read_plain(rows)
    return _assemble(tables, cells, quarantine, schema, ids, unknown)


def _assemble(
    tables: dict[str, _Rows],
    cells: dict[str, _Cell],
    quarantine: list[QuarantineRecord],
    schema: FormSchema,
    ids: list[int],
    unknown: dict[str, int],
) -> FlatBatch:
    """The batch from the rows gathered per table: casts, geo parts, choice flags and bridge tables."""
    out: dict[str, pa.Table] = {}
    bridges: dict[str, list[list[Any]]] = {
        n: [[], [], []] for n, t in schema.tables.items() if t.kind == "bridge"
    }
    for name, rows in tables.items():
        if rows.spec.kind == "bridge":
            continue
        out[name] = _to_arrow(rows, cells, quarantine, bridges)
    for name, (sids, keys, choices) in bridges.items():
        out[name] = pa.table(
            {
                "_submission_id": pa.array(sids, pa.int64()),
                "_key": pa.array(keys, pa.string()),
                "choice": pa.array(choices, pa.string()),
            }
        )
    ordered = {name: out[name] for name in schema.tables}
    return FlatBatch(tables=ordered, quarantine=quarantine, submission_ids=ids, unknown_keys=unknown)


_EMPTY_TEXT = pa.scalar(None, pa.string())


def _read_plain(rows: _Rows) -> None:
    """Read the answers of a table's plain rows, one `pa.array` per version: into `rows.arrow` when they are
    all the table's rows, else into `rows.cols` beside the rows walked answer by answer.

    Raises:
        _NotPlain: a plain row holds a value that is not text.
    """
    whole = len(rows.plain) == 1 and all(len(p.rows) == len(rows.keys) for p in rows.plain.values())
    for plain in rows.plain.values():
        keys_of: dict[int, list[str]] = {}
        for key, index in plain.direct.items():
            keys_of.setdefault(index, []).append(key)
        try:
            read = pa.array(plain.objs, pa.struct([(key, pa.string()) for key in plain.direct]))
        except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError) as exc:
            raise _NotPlain from exc
        for index, keys in keys_of.items():
            # a plain row has at most one key per column (`plain_repeats`), so coalescing never picks
            values = pc.coalesce(*(read.field(k) for k in keys)) if len(keys) > 1 else read.field(keys[0])
            values = pc.if_else(pc.equal(values, ""), _EMPTY_TEXT, values)  # KoBo's "" = no answer
            if whole:
                rows.arrow[index] = values
            else:
                rows.cols[index].update(zip(plain.rows, values.to_pylist(), strict=True))
    # `fill` and `fill_repeat` call each other, a reference cycle that holds the tables: without this the
    # page's rows would live on until a pass of the cyclic collector, which would then scan them all
    rows.plain.clear()


def _json_text(value: Any) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False, default=str)[:2000]
    except (TypeError, ValueError):
        return repr(value)[:2000]


def _to_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -_INT64_MAX <= value <= _INT64_MAX else None
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return _int64(value.strip())
    return None


def _row_version(sub: dict, schema: FormSchema, version_keys: dict[tuple, list[str]]) -> str:
    """The deployed version a record was filled with, as KPI infers it (section 5.3); else the newest.

    `version_keys` remembers the version keys per key order: records of one form share few key orders, and
    testing every key of every record was ≈ 10 % of the flattening time."""
    known = schema.version_questions
    shape = tuple(sub)
    keys = version_keys.get(shape)
    if keys is None:
        keys = version_keys[shape] = [k for k in shape if isinstance(k, str) and "_version_" in k]
    found = [v for v in map(sub.__getitem__, keys) if isinstance(v, str) and v in known]
    if found:
        return min(found, key=schema.versions.index) if schema.versions else found[0]
    return schema.versions[0] if schema.versions else ""


#: The main table's system columns, in the order `_fill_system` gives their values.
_SYSTEM_COLUMNS = (
    "_id",
    "_uuid",
    "_root_uuid",
    "_submission_time",
    "__version__",
    "_validation_status_uid",
    "_validation_status_label",
    "_validation_status_by",
    "_validation_status_time",
    "_submitted_by",
    "_status",
)


#: What `_read_system` reads of a submission; a value of another type makes it fall back to `_fill_system`.
SYSTEM_STRUCT = pa.struct(
    [
        ("_uuid", pa.string()),
        ("meta/rootUuid", pa.string()),
        ("_submission_time", pa.string()),
        ("__version__", pa.string()),
        (
            "_validation_status",
            pa.struct(
                [
                    ("uid", pa.string()),
                    ("label", pa.string()),
                    ("by_whom", pa.string()),
                    ("timestamp", pa.int64()),
                ]
            ),
        ),
        ("_submitted_by", pa.string()),
        ("_status", pa.string()),
    ]
)


def _read_system(main: _Rows, subs: list[dict]) -> bool:
    """The system columns of all main rows in columns, as `_fill_system` gives them row by row; False (and
    nothing read) if a value is not of the usual type (a number as `_uuid`, a list as the status, ...)."""
    try:
        read = pa.array(subs, SYSTEM_STRUCT)
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
        return False
    _system_columns(main, read)
    return True


def _system_columns(main: _Rows, read: pa.StructArray) -> None:
    """The main table's system columns from the submissions' system fields (`SYSTEM_STRUCT`)."""
    uuid, root, when, version, status, by, state = read.flatten()
    uid, label, by_whom, stamp = status.flatten()  # a status that is null gives nulls (`_fill_system`: {})
    root = pc.if_else(pc.starts_with(root, "uuid:"), pc.utf8_slice_codeunits(root, 5), root)
    texts = {
        "_uuid": uuid,
        "_root_uuid": root,
        "_submission_time": when,
        "__version__": version,
        "_validation_status_uid": uid,
        "_validation_status_label": label,
        "_validation_status_by": by_whom,
        "_submitted_by": by,
        "_status": state,
    }
    for name, values in texts.items():
        if name in main.index:  # not when the policy removes it
            main.arrow[main.index[name]] = pc.if_else(pc.equal(values, ""), _EMPTY_TEXT, values)
    main.arrow[main.index["_id"]] = pa.array(main.sub_ids, pa.int64())
    main.arrow[main.index["_validation_status_time"]] = stamp


def _fill_system(
    system_cols: list[dict[int, Any]], row: int, sub: dict, quarantine: list[QuarantineRecord]
) -> None:
    """The system columns of one submission's main row (`system_cols` in `_SYSTEM_COLUMNS` order); a
    value KoBo never sends in that shape (a list as `_uuid`, a text as the validation status) is
    quarantined, not dropped without a word."""
    sub_id = _to_id(sub.get("_id")) or 0

    def bad(column: str, reason: str, raw: Any) -> None:
        raw_text = raw if isinstance(raw, str) else None  # a list or object may hold a username
        quarantine.append(QuarantineRecord(sub_id, MAIN_TABLE, column, reason, raw_text, str(sub_id)))

    status = sub.get("_validation_status")
    if not isinstance(status, dict):
        if status not in (None, "", [], ()):
            bad("_validation_status_uid", "not a KoBo validation status (an object with uid and label)",
                status)
        status = {}
    root = sub.get("meta/rootUuid")
    if isinstance(root, str) and root.startswith("uuid:"):
        root = root[5:]
    raw = sub.get("__version__")
    values = (
        _to_id(sub.get("_id")),
        sub.get("_uuid"),
        root,
        sub.get("_submission_time"),
        raw if isinstance(raw, str) and raw else None,
        status.get("uid"),
        status.get("label"),
        status.get("by_whom"),
        status.get("timestamp"),
        sub.get("_submitted_by"),
        sub.get("_status"),
    )
    for name, col, value in zip(_SYSTEM_COLUMNS, system_cols, values, strict=True):
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            bad(name, "a list or object where KoBo sends a single value", None)
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        col[row] = value if number else _scalar(value)


# --- casting ------------------------------------------------------------------------------------------------

Caster = Callable[[str], Any]


def _int64(digits: str) -> int | None:
    """An optionally signed run of digits as an int64; None when out of range. Checked on the text first:
    Python refuses to parse more than 4 300 digits, and a form answer can hold any text."""
    significant = digits.lstrip("+-").lstrip("0") or "0"
    if len(significant) > 19:
        return None
    n = -int(significant) if digits.startswith("-") else int(significant)
    return n if -_INT64_MAX <= n <= _INT64_MAX else None


def _cast_int(s: str) -> Any:
    t = s.strip()
    if _INT.fullmatch(t):
        n = _int64(t)
        return _Bad("integer out of range") if n is None else n
    if _NUM.fullmatch(t):
        f = float(t)
        if math.isfinite(f) and f == int(f) and abs(f) <= _INT64_MAX:
            return int(f)
    return _Bad("not an integer")


def _cast_float(s: str) -> Any:
    t = s.strip()
    if _NUM.fullmatch(t):
        f = float(t)
        if math.isfinite(f):
            return f
    return _Bad("not a number")


def _cast_date(s: str) -> Any:
    try:
        return date.fromisoformat(s.strip()[:10]) if len(s.strip()) == 10 else _Bad("not a date (YYYY-MM-DD)")
    except ValueError:
        return _Bad("not a date (YYYY-MM-DD)")


def _cast_datetime(s: str) -> Any:
    try:
        value = datetime.fromisoformat(s.strip())
        # a zone-less value is taken as UTC: KoBo only omits the offset on server-side (UTC) times
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        return _Bad("not an ISO 8601 date-time")


def _cast_naive_utc(s: str) -> Any:
    try:
        value = datetime.fromisoformat(s.strip())
        return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return _Bad("not an ISO 8601 date-time")


def _cast_time(s: str) -> Any:
    m = _TIME.fullmatch(s.strip())
    if not m:
        return _Bad("not a time (HH:MM:SS)")
    hh, mm, ss, frac = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), m.group(4) or ""
    if hh > 23 or mm > 59 or ss > 59:
        return _Bad("not a time (HH:MM:SS)")
    # the device offset is dropped: TIME has no zone, and the local clock time is what the question asked
    return time(hh, mm, ss, int(frac.ljust(6, "0")) if frac else 0)


def _cast_bool(s: str) -> Any:
    t = s.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    return _Bad("not an acknowledgement (OK)")


def _points(s: str) -> list[tuple[str, str]] | None:
    """Validate lat-lon-alt-acc points separated by ';'; returns (lon, lat) text pairs or None."""
    out = []
    for chunk in s.split(";"):
        if not chunk.strip():
            continue
        parts = chunk.split()
        if not 2 <= len(parts) <= 4 or not all(_NUM.fullmatch(p) for p in parts):
            return None
        lat, lon = float(parts[0]), float(parts[1])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return None
        out.append((parts[1], parts[0]))
    return out


def _cast_geotrace(s: str) -> Any:
    pts = _points(s)
    if not pts or len(pts) < 2:
        return _Bad("not a geotrace (at least 2 'lat lon [alt acc]' points separated by ';')")
    return "LINESTRING (" + ", ".join(f"{lon} {lat}" for lon, lat in pts) + ")"


def _cast_geoshape(s: str) -> Any:
    pts = _points(s)
    if not pts or len(pts) < 3:
        return _Bad("not a geoshape (at least 3 'lat lon [alt acc]' points separated by ';')")
    if pts[0] != pts[-1]:
        pts.append(pts[0])  # KoBo closes the ring itself; old clients may not
    return "POLYGON ((" + ", ".join(f"{lon} {lat}" for lon, lat in pts) + "))"


def _cast_geopoint(s: str) -> Any:
    pts = _points(s)
    if pts is None or len(pts) != 1 or ";" in s.strip():
        return _Bad("not a geopoint ('lat lon [alt acc]')")
    return s


class _Bad:
    """A cast failure; carries the reason (never the value)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_CASTERS: dict[str, Caster] = {
    "integer": _cast_int,
    "decimal": _cast_float,
    "date": _cast_date,
    "datetime": _cast_datetime,
    "time": _cast_time,
    "acknowledge": _cast_bool,
    "geopoint": _cast_geopoint,
    "geotrace": _cast_geotrace,
    "geoshape": _cast_geoshape,
    "submission_time": _cast_naive_utc,
}
_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "decimal": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "submission_time": pa.timestamp("us"),
    "time": pa.time64("us"),
    "acknowledge": pa.bool_(),
    "geopoint": pa.string(),
    "geotrace": pa.string(),
    "geoshape": pa.string(),
}
# The plain spellings, which Arrow casts exactly as the per-value casters would. Anything else (spaces, '+5',
# '25.0', exponents, 7+ fraction digits, other separators, ...) is left to the per-value caster.
_LOCAL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
_ZONE = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_PLAIN_NUM = r"-?[0-9]{1,15}(?:\.[0-9]+)?"
_PLAIN: dict[str, str] = {
    "integer": r"^-?[0-9]{1,18}$",
    "decimal": rf"^{_PLAIN_NUM}$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "zoned": rf"^{_LOCAL}{_ZONE}$",
    "naive": rf"^{_LOCAL}$",
    "time": r"^(?P<h>[01][0-9]|2[0-3]):(?P<m>[0-5][0-9]):(?P<s>[0-5][0-9])(?:\.(?P<f>[0-9]{1,6}))?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?$",
    "geopoint": rf"^(?P<lat>{_PLAIN_NUM}) (?P<lon>{_PLAIN_NUM})"
    rf"(?: (?P<alt>{_PLAIN_NUM}))?(?: (?P<acc>{_PLAIN_NUM}))?$",
}
_ACK = {"OK": True, "ok": True, "true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# what Python (and so every consumer reading rows back) can represent: years 1..9999
_MIN_US, _MAX_US = -62135596800 * 10**6, 253402300799 * 10**6


def _where(mask: pa.Array, values: pa.Array) -> pa.Array:
    """`values` where `mask` is true, else null."""
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def _plain(raw: pa.Array, kind: str) -> pa.Array:
    return _where(pc.match_substring_regex(raw, _PLAIN[kind]), raw)


def _in_python_range(stamps: pa.Array) -> pa.Array:
    us = stamps.cast(pa.int64())
    return _where(pc.and_(pc.greater_equal(us, _MIN_US), pc.less_equal(us, _MAX_US)), stamps)


def _fast_cast(raw: pa.Array, kind: str) -> pa.Array:
    """Cast the values in their plain spelling; everything else (bad or unusual) comes back null."""
    type_ = _TYPES[kind]
    if kind in ("integer", "decimal"):
        return _plain(raw, kind).cast(type_)
    if kind == "date":
        days = _plain(raw, "date").cast(type_)
        return _where(pc.greater_equal(days, pa.scalar(date(1, 1, 1))), days)
    if kind in ("datetime", "submission_time"):
        utc = pa.timestamp("us", tz="UTC")
        zoned = _plain(raw, "zoned").cast(utc).cast(type_)
        naive = _plain(raw, "naive").cast(pa.timestamp("us")).cast(type_)
        return _in_python_range(pc.coalesce(zoned, naive))
    if kind == "time":
        parts = pc.extract_regex(_plain(raw, "time"), _PLAIN["time"])
        h, m, s = (pc.struct_field(parts, f).cast(pa.int64()) for f in "hms")
        frac = pc.utf8_rpad(pc.struct_field(parts, "f"), 6, "0").cast(pa.int64())
        return pc.add(
            pc.multiply(pc.add(pc.multiply(pc.add(pc.multiply(h, 60), m), 60), s), 10**6), frac
        ).cast(type_)
    if kind == "acknowledge":
        known = pc.is_in(raw, value_set=pa.array(list(_ACK)))
        return _where(known, pc.is_in(raw, value_set=pa.array([k for k, v in _ACK.items() if v])))
    if kind == "geopoint":
        lat, lon, _, _ = _geo_numbers(raw)
        ok = pc.and_(
            pc.and_(pc.greater_equal(lat, -90.0), pc.less_equal(lat, 90.0)),
            pc.and_(pc.greater_equal(lon, -180.0), pc.less_equal(lon, 180.0)),
        )
        return _where(ok, raw)
    return pa.nulls(len(raw), type_)


def _geo_numbers(raw: pa.Array) -> list[pa.Array]:
    """lat, lon, alt, acc of plain geopoints as float64 (null where absent or not plain)."""
    parts = pc.extract_regex(_plain(raw, "geopoint"), _PLAIN["geopoint"])
    out = []
    for name in ("lat", "lon", "alt", "acc"):
        text = pc.struct_field(parts, name)
        out.append(_where(pc.not_equal(text, ""), text).cast(pa.float64()))
    return out


def _cast_strings(
    values: list[Any] | pa.Array, kind: str, on_bad: Callable[[int, str, _Bad], None]
) -> pa.Array:
    """Cast a column of answer text (None = no answer) to `_TYPES[kind]`, as a whole.

    Arrow casts the plain spellings; the rest (non-null input the fast cast left null) goes through the
    per-value caster, which gives the value or the reason for quarantine (`on_bad(row, text, bad)`, cell
    NULL).
    """
    type_ = _TYPES[kind]
    try:
        raw = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
        cast = _fast_cast(raw, kind)
        todo = pc.and_(raw.is_valid(), cast.is_null())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, UnicodeEncodeError):
        # an impossible calendar date ('2021-02-30') fails Arrow's whole cast; a lone surrogate fails
        # `pa.array`: then every value goes through the per-value caster
        cast = pa.nulls(len(values), type_)
        todo = (
            values.is_valid()
            if isinstance(values, pa.Array)
            else pa.array([v is not None for v in values], pa.bool_())
        )
    rows = pc.indices_nonzero(todo).to_pylist()
    if not rows:
        return cast
    texts = values.take(rows).to_pylist() if isinstance(values, pa.Array) else [values[i] for i in rows]
    caster = _CASTERS[kind]
    fixed: list[Any] = []
    for i, text in zip(rows, texts, strict=True):
        value = caster(text)
        if isinstance(value, _Bad):
            on_bad(i, text, value)
            value = None
        fixed.append(value)
    return pc.replace_with_mask(cast, todo, pa.array(fixed, type_))


def _cast_column(
    values: list[Any] | pa.Array,
    kind: str,
    rows: _Rows,
    column: str,
    xlsform_type: str,
    quarantine: list[QuarantineRecord],
) -> list[Any] | pa.Array:
    """Cast one answer column; a failure becomes NULL plus a quarantine record. Text is returned as is."""
    if kind not in _CASTERS:
        return values

    def bad(i: int, text: str, cast: _Bad) -> None:
        quarantine.append(
            QuarantineRecord(
                rows.sub_ids[i],
                rows.spec.name,
                column,
                f"{cast.reason} (XLSForm type {xlsform_type})",
                text,
                rows.keys[i],
            )
        )

    return _cast_strings(values, kind, bad)


def _geo_parts(points: pa.Array) -> list[pa.Array]:
    """The four numbers of each stored geopoint; spellings the fast path skipped are split in Python."""
    parts = _geo_numbers(points)
    todo = pc.and_(points.is_valid(), parts[0].is_null())
    rows = pc.indices_nonzero(todo).to_pylist()
    if not rows:
        return parts
    texts = points.take(pa.array(rows, pa.int64())).to_pylist()
    nums = [[float(x) for x in t.split()] for t in texts]
    return [
        pc.replace_with_mask(
            parts[j], todo, pa.array([n[j] if j < len(n) else None for n in nums], pa.float64())
        )
        for j in range(4)
    ]


def _to_arrow(
    rows: _Rows,
    cells: dict[str, _Cell],
    quarantine: list[QuarantineRecord],
    bridges: dict[str, list[list[Any]]],
) -> pa.Table:
    spec = rows.spec
    numbers = range(len(rows.keys))
    columns: list[Any] = [
        rows.arrow[i] if i in rows.arrow else list(map(col.get, numbers)) if col else [None] * len(numbers)
        for i, col in enumerate(rows.cols)
    ]
    if spec.kind == "repeat":
        columns[:4] = [rows.keys, rows.sub_ids, rows.parents, rows.positions]
    if spec.kind == "main":
        _cast_system(columns, rows, quarantine)
    for cell in (c for c in cells.values() if c.table == spec.name):
        values = columns[cell.index]
        if cell.kind == "select_multiple":
            texts = values.to_pylist() if isinstance(values, pa.Array) else values
            _explode_select(texts, cell, rows, columns, bridges)
            continue
        cast = _cast_column(values, cell.kind, rows, cell.column, cell.xlsform_type, quarantine)
        columns[cell.index] = cast
        if cell.kind == "geopoint":
            for idx, part in zip(cell.parts[:4], _geo_parts(cast), strict=False):
                columns[idx] = part
    arrays = {}
    for i, col in enumerate(spec.columns):
        data, type_ = columns[i], ARROW_TYPES[col.duckdb_type]
        if isinstance(data, pa.Array) and data.type != type_:
            data = data.to_pylist()  # text read in columns for a column of another type: as if read as a list
        arrays[col.name] = (
            data if isinstance(data, pa.Array) else _safe_array(data, type_, rows, col.name, quarantine)
        )
    return pa.table(arrays)


def _safe_array(
    values: list[Any], type_: pa.DataType, rows: _Rows, column: str, quarantine: list[QuarantineRecord]
) -> pa.Array:
    """`pa.array`, except that text Arrow cannot encode (lone surrogates from JSON escapes) is quarantined."""
    try:
        return pa.array(values, type_)
    except UnicodeEncodeError:
        clean: list[Any] = []
        for i, v in enumerate(values):
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raw = v.encode("utf-8", "backslashreplace").decode("utf-8")
                    quarantine.append(
                        QuarantineRecord(
                            rows.sub_ids[i],
                            rows.spec.name,
                            column,
                            "text is not valid Unicode (lone surrogate)",
                            raw,
                            rows.keys[i],
                        )
                    )
                    v = None
            clean.append(v)
        return pa.array(clean, type_)


def _explode_select(
    values: list[Any], cell: _Cell, rows: _Rows, columns: list[Any], bridges: dict[str, list[list[Any]]]
) -> None:
    flags: list[list[bool | None]] = [[None] * len(values) for _ in cell.parts]
    bridge = bridges.get(cell.bridge or "")
    for i, v in enumerate(values):
        if v is None:
            continue
        tokens = v.split()
        chosen = set(tokens)
        for j, choice in enumerate(cell.choices[: len(cell.parts)]):
            flags[j][i] = choice in chosen
        if bridge is not None:
            for token in tokens:
                bridge[0].append(rows.sub_ids[i])
                bridge[1].append(rows.keys[i])
                bridge[2].append(token)
    for j, idx in enumerate(cell.parts):
        columns[idx] = flags[j]


def _cast_system(columns: list[Any], rows: _Rows, quarantine: list[QuarantineRecord]) -> None:
    idx = rows.index

    def bad(i: int, column: str, reason: str, raw: Any) -> None:
        quarantine.append(
            QuarantineRecord(rows.sub_ids[i], MAIN_TABLE, column, reason, _scalar(raw), rows.keys[i])
        )

    times = columns[idx["_submission_time"]]
    if not isinstance(times, pa.Array):
        times = [None if v is None else str(v) for v in times]
    columns[idx["_submission_time"]] = _cast_strings(
        times,
        "submission_time",
        lambda i, text, _: bad(
            i, "_submission_time", "not a KoBo submission time (YYYY-MM-DDTHH:MM:SS)", text
        ),
    )
    stamps = columns[idx["_validation_status_time"]]
    if isinstance(stamps, pa.Array):  # whole seconds, from `_read_system`
        low, high = (s.as_py() for s in pc.min_max(stamps).values())
        if low is None or (0 <= low and high <= _MAX_US // 10**6):
            columns[idx["_validation_status_time"]] = pc.multiply(stamps, 10**6).cast(_TYPES["datetime"])
            stamps = None
        else:
            stamps = stamps.to_pylist()  # before 1970 or after 9999: Python says which it can represent
    if stamps is not None:
        out_stamps: list[Any] = []
        for i, v in enumerate(stamps):
            if v is None:
                out_stamps.append(None)
                continue
            try:
                out_stamps.append(datetime.fromtimestamp(float(v), tz=UTC))
            except (TypeError, ValueError, OverflowError, OSError, UnicodeEncodeError):
                bad(i, "_validation_status_time", "not an epoch timestamp in seconds", v)
                out_stamps.append(None)
        columns[idx["_validation_status_time"]] = out_stamps
    for name in (
        "_uuid",
        "_root_uuid",
        "__version__",
        "_validation_status_uid",
        "_validation_status_label",
        "_validation_status_by",
        "_submitted_by",
        "_status",
    ):
        if name not in idx:  # removed by the policy
            continue
        col = columns[idx[name]]
        if not isinstance(col, pa.Array):  # read in columns, it is text already
            columns[idx[name]] = [None if v is None else str(v) for v in col]
