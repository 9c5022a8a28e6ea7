"""The form schema: tables, typed columns, questions, choices, labels, merged over deployed versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from transforms.errors import FormContentError
from transforms.model import MAIN_TABLE, Choice, ColumnSpec, FormSchema, Question, TableSchema
from transforms.naming import language_code, language_name, shorten, snake, unique

# System columns of the main table, in order (see docs/decisions/001).
SYSTEM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_id", "BIGINT"),
    ("_uuid", "VARCHAR"),
    ("_root_uuid", "VARCHAR"),
    ("_submission_time", "TIMESTAMP"),
    ("__version__", "VARCHAR"),
    ("_validation_status_uid", "VARCHAR"),
    ("_validation_status_label", "VARCHAR"),
    ("_validation_status_by", "VARCHAR"),
    ("_validation_status_time", "TIMESTAMPTZ"),
    ("_submitted_by", "VARCHAR"),
    ("_status", "VARCHAR"),
)
REPEAT_KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_key", "VARCHAR"),
    ("_submission_id", "BIGINT"),
    ("_parent_key", "VARCHAR"),
    ("_position", "INTEGER"),
)
BRIDGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_submission_id", "BIGINT"),
    ("_key", "VARCHAR"),
    ("choice", "VARCHAR"),
)
GEO_PARTS = ("latitude", "longitude", "altitude", "precision")

# XLSForm type -> storage kind. Kinds drive both the DuckDB type and how flatten casts a value.
_KIND: dict[str, str] = {
    "integer": "integer",
    "decimal": "decimal",
    "range": "decimal",
    "date": "date",
    "today": "date",
    "datetime": "datetime",
    "start": "datetime",
    "end": "datetime",
    "time": "time",
    "acknowledge": "acknowledge",
    "select_one": "select_one",
    "select_one_from_file": "select_one",
    "select_multiple": "select_multiple",
    "select_multiple_from_file": "select_multiple",
    "rank": "select_multiple",
    "geopoint": "geopoint",
    "start-geopoint": "geopoint",
    "background-geopoint": "geopoint",
    "geotrace": "geotrace",
    "geoshape": "geoshape",
}
KIND_TYPE: dict[str, str] = {
    "integer": "BIGINT",
    "decimal": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMPTZ",
    "time": "TIME",
    "acknowledge": "BOOLEAN",
    "select_one": "VARCHAR",
    "select_multiple": "VARCHAR",
    "geopoint": "VARCHAR",
    "geotrace": "VARCHAR",
    "geoshape": "VARCHAR",
    "text": "VARCHAR",
}
# Rows that hold no answer in the data.
_NO_DATA = {"note", "xml-external", "csv-external", "begin_group", "end_group", "begin_repeat", "end_repeat"}
# Rows KPI adds to the XForm itself; their keys are read as system fields, never as answers.
_SKIP_NAMES = {"__version__", "_version_", "instanceID", "formhub"}
_BEGIN = ("begin_group", "begin_repeat")
_TYPE_ALIASES = {
    "begin group": "begin_group",
    "end group": "end_group",
    "begin repeat": "begin_repeat",
    "end repeat": "end_repeat",
    "begin lgroup": "begin_repeat",
    "end lgroup": "end_repeat",
    "begin looped group": "begin_repeat",
    "end looped group": "end_repeat",
    "begin_lgroup": "begin_repeat",
    "end_lgroup": "end_repeat",
    "datetime": "datetime",
    "dateTime": "datetime",
    "int": "integer",
    "add date prompt": "date",
    "add time prompt": "time",
    "trigger": "acknowledge",
    "select one": "select_one",
    "select all that apply": "select_multiple",
    "select multiple": "select_multiple",
    "select_one_external": "select_one",
    "select one external": "select_one",
    "select_one_from_file": "select_one_from_file",
    "select_multiple_from_file": "select_multiple_from_file",
}
_META_XPATHS = {"audit": "meta/audit"}  # pyxform puts these under meta/ whatever the survey row says


@dataclass
class _Row:
    """One question or repeat as a single version defines it."""

    kind: str  # question | repeat
    name: str
    xpath: str
    type: str
    kuid: str | None
    parent_repeat: str  # xpath of the enclosing repeat, "" for the main level
    group_path: str  # xpath of the enclosing group or repeat ("" at the root)
    list_name: str | None = None
    or_other: bool = False
    required: bool = False
    relevant: str | None = None
    group_relevant: str | None = None
    constraint: str | None = None
    calculation: str | None = None
    parameters: str | None = None
    repeat_count: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)


@dataclass
class _Entity:
    """A question or repeat identified across versions; `rows` maps version uid -> its definition there."""

    id: int
    kind: str
    parent: int  # repeat entity id (0 = main level)
    rows: dict[str, _Row] = field(default_factory=dict)

    @property
    def newest(self) -> _Row:
        return next(iter(self.rows.values()))


def to_form_schema(
    asset: dict, versions: dict[str, dict], slug: str, pinned: Mapping[str, str] | None = None
) -> FormSchema:
    """Build the warehouse schema of a form, merged over its deployed versions.

    Args:
        asset: KPI asset detail JSON (`/api/v2/assets/{uid}/`).
        versions: version uid -> content (`{survey, choices, translations, ...}`; a full version detail with
            a `content` key is accepted too) of every deployed version. Empty: `asset["content"]` is used.
        slug: the form's warehouse schema name.
        pinned: xpath -> column name the warehouse already has (from `meta.questions`). A question keeps its
            column even when a later version would name it differently (e.g. a new question with the same
            name elsewhere), so existing columns never rename under Power BI.

    Returns:
        The merged `FormSchema`. Questions are matched across versions by `$kuid`, else by name within the
        same repeat, so a renamed group keeps one column.
    """
    uid = str(asset.get("uid") or slug)
    contents = _ordered_contents(asset, versions)
    parsed = {vuid: _parse_content(content, uid, vuid) for vuid, content in contents.items()}

    repeats: list[_Entity] = [_Entity(0, "repeat", -1)]
    questions: list[_Entity] = []
    repeat_of: dict[str, dict[str, int]] = {}  # version -> repeat xpath -> entity id
    for vuid, rows in parsed.items():
        repeat_of[vuid] = {"": 0}
        _match(vuid, [r for r in rows if r.kind == "repeat"], repeats, repeat_of[vuid])
        _match(vuid, [r for r in rows if r.kind == "question"], questions, repeat_of[vuid])

    schema = FormSchema(
        uid=uid,
        slug=slug,
        title=str(
            asset.get("name")
            or (next(iter(contents.values()), {}).get("settings") or {}).get("title")
            or slug
        ),
        languages=[t for t in _translations(next(iter(contents.values()), {})) if t],
        tables={},
        questions={},
        choices=_merge_choices(contents.values()),
        versions=list(contents),
    )
    tables_by_entity = _build_tables(schema, repeats)
    _build_columns(schema, questions, repeats, tables_by_entity, repeat_of, pinned or {})
    return schema


def _ordered_contents(asset: dict, versions: dict[str, dict]) -> dict[str, dict]:
    """Version uid -> content, newest first (asset's deployed_versions order, else the given order)."""

    def content_of(v: dict) -> dict:
        return v["content"] if "survey" not in v and isinstance(v.get("content"), dict) else v

    if not versions:
        key = str(asset.get("deployed_version_id") or asset.get("version_id") or "current")
        return {key: content_of(asset.get("content") or {})}
    listed = [
        r.get("uid")
        for r in ((asset.get("deployed_versions") or {}).get("results") or [])
        if isinstance(r, dict) and r.get("uid") in versions
    ]
    current = asset.get("deployed_version_id")
    order = ([current] if current in versions else []) + listed + list(versions)
    seen: dict[str, dict] = {}
    for vuid in order:
        if vuid not in seen:
            seen[vuid] = content_of(versions[vuid])
    return seen


def _translations(content: dict) -> list[str | None]:
    found = content.get("translations")
    return list(found) if isinstance(found, list) and found else [None]


def _normalise_type(raw: Any) -> tuple[str, str | None, bool]:
    """Dealias an XLSForm type: returns (type, list name, or_other)."""
    text = " ".join(str(raw or "").split())
    if text in _TYPE_ALIASES:
        return _TYPE_ALIASES[text], None, False
    or_other = text.endswith(" or_other")
    if or_other:
        text = text[: -len(" or_other")]
    for prefix in sorted(_TYPE_ALIASES, key=len, reverse=True):
        if text.startswith(prefix + " ") and _TYPE_ALIASES[prefix].startswith("select"):
            return _TYPE_ALIASES[prefix], text[len(prefix) + 1 :].strip() or None, or_other
    head, _, rest = text.partition(" ")
    if head.startswith("select_"):
        base = _TYPE_ALIASES.get(head, head)
        return base, rest.strip() or None, or_other
    if head.startswith("begin_") and head not in ("begin_group", "begin_repeat"):
        return "begin_group", None, False  # kobomatrix/score/rank blocks: read as groups
    if head.startswith("end_") and head not in ("end_group", "end_repeat"):
        return "end_group", None, False
    return _TYPE_ALIASES.get(head, head), None, or_other


def _translated(row: dict, column: str, translations: list[str | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    value = row.get(column)
    if isinstance(value, list):
        for lang, text in zip(translations, value, strict=False):
            if text not in (None, ""):
                out[language_name(lang)] = str(text)
    elif value not in (None, ""):
        out[language_name(translations[0] if len(translations) == 1 else None)] = str(value)
    prefix = column + "::"
    for key, text in row.items():
        if isinstance(key, str) and key.startswith(prefix) and text not in (None, ""):
            out.setdefault(key[len(prefix) :], str(text))
    return out


def _parse_content(content: dict, form: str, vuid: str) -> list[_Row]:
    """Read one version's survey into rows with xpaths rebuilt from begin/end nesting where missing."""
    survey = content.get("survey")
    if not isinstance(survey, list):
        raise FormContentError(form, vuid, "it has no survey list")
    translations = _translations(content)
    stack: list[tuple[str, str]] = []  # (name, begin_group|begin_repeat)
    stack_relevant: list[str | None] = []  # the `relevant` of each open group/repeat, aligned with stack
    rows: list[_Row] = []
    for raw in survey:
        if not isinstance(raw, dict):
            continue
        rtype, list_name, or_other = _normalise_type(raw.get("type"))
        if rtype in ("end_group", "end_repeat"):
            if stack:  # tolerate one stray end row rather than refusing the whole form
                stack.pop()
                stack_relevant.pop()
            continue
        name = str(raw.get("name") or raw.get("$autoname") or "")
        if rtype in _BEGIN:
            if not name:
                name = f"group_{raw.get('$kuid') or len(rows)}"
            stack.append((name, rtype))
            stack_relevant.append(raw.get("relevant") or None)
        if not name or rtype in ("note", "xml-external", "csv-external"):
            continue
        parents = stack[:-1] if rtype in _BEGIN else stack
        # KPI's own nodes sit at the root or in `meta`; a question of that name in a group is data
        if name in _SKIP_NAMES and [n for n, _ in parents] in ([], ["meta"]):
            continue
        path = "/".join(n for n, _ in stack) if rtype in _BEGIN else None
        if path is None:
            path = _META_XPATHS.get(rtype) if not stack else None
            path = path or "/".join([n for n, _ in stack] + [name])
        repeat_parts: list[str] = []
        parent_repeat = ""
        for n, t in parents:
            repeat_parts.append(n)
            if t == "begin_repeat":
                parent_repeat = "/".join(repeat_parts)
        if rtype == "begin_group":
            continue
        enclosing = stack_relevant[:-1] if rtype == "begin_repeat" else stack_relevant
        group_relevant = " and ".join(f"({r})" for r in enclosing if r) or None
        row = _Row(
            kind="repeat" if rtype == "begin_repeat" else "question",
            name=name,
            xpath=path,
            type=rtype,
            kuid=raw.get("$kuid"),
            parent_repeat=parent_repeat,
            group_path="/".join(n for n, _ in parents),
            list_name=list_name or raw.get("select_from_list_name") or raw.get("list_name"),
            or_other=bool(or_other or raw.get("_or_other")),
            required=raw.get("required") in (True, "true", "yes", "true()", "TRUE", "True"),
            relevant=raw.get("relevant") or None,
            group_relevant=group_relevant,
            constraint=raw.get("constraint") or None,
            calculation=str(raw["calculation"]) if raw.get("calculation") not in (None, "") else None,
            parameters=str(raw["parameters"]) if raw.get("parameters") not in (None, "") else None,
            repeat_count=str(raw["repeat_count"]) if raw.get("repeat_count") not in (None, "") else None,
            labels=_translated(raw, "label", translations),
            hints=_translated(raw, "hint", translations),
        )
        rows.append(row)
    return rows


def _match(vuid: str, rows: list[_Row], entities: list[_Entity], repeat_of: dict[str, int]) -> None:
    """Attach each row of one version to an entity: $kuid, else xpath, else name within the same repeat."""
    claimed: set[int] = set()
    by_kuid = {r.kuid: e for e in entities for r in e.rows.values() if r.kuid}
    for row in rows:
        parent = repeat_of.get(row.parent_repeat, 0)
        candidates = [by_kuid.get(row.kuid)] if row.kuid else []
        candidates.append(
            next((e for e in entities if any(r.xpath == row.xpath for r in e.rows.values())), None)
        )
        same_name = [
            e for e in entities if e.parent == parent and e.newest.name == row.name and e.id not in claimed
        ]
        if len(same_name) == 1:
            candidates.append(same_name[0])
        entity = next(
            (e for e in candidates if e is not None and e.id not in claimed and e.parent == parent), None
        )
        if entity is None:
            entity = _Entity(len(entities), row.kind, parent)
            entities.append(entity)
        entity.rows[vuid] = row
        claimed.add(entity.id)
        if row.kind == "repeat":
            repeat_of[row.xpath] = entity.id
            if row.kuid:
                by_kuid[row.kuid] = entity


def _build_tables(schema: FormSchema, repeats: list[_Entity]) -> dict[int, TableSchema]:
    main = TableSchema(MAIN_TABLE, "", None, kind="main")
    main.columns = [ColumnSpec(n, t, None, "system") for n, t in SYSTEM_COLUMNS]
    schema.tables[MAIN_TABLE] = main
    by_entity = {0: main}
    for entity in repeats[1:]:
        parent = by_entity[entity.parent]
        name = unique(snake(entity.newest.name, fallback="repeat"), set(schema.tables))
        table = TableSchema(name, entity.newest.xpath, parent.name, kind="repeat")
        table.columns = [ColumnSpec(n, t, None, "key") for n, t in REPEAT_KEY_COLUMNS]
        schema.tables[name] = table
        by_entity[entity.id] = table
        for vuid, row in entity.rows.items():
            schema.version_repeats.setdefault(vuid, {})[row.xpath] = name
    for vuid in schema.versions:
        schema.version_repeats.setdefault(vuid, {})
        schema.version_questions.setdefault(vuid, {})
    return by_entity


def _merged_kind(entity: _Entity) -> tuple[str, str | None]:
    """The storage kind holding every version's values, and a note when versions disagree."""
    kinds = {vuid: _KIND.get(r.type, "text") for vuid, r in entity.rows.items()}
    distinct = set(kinds.values())
    if len(distinct) == 1:
        return distinct.pop(), None
    if distinct == {"integer", "decimal"}:
        merged = "decimal"
    elif distinct == {"select_one", "select_multiple"}:
        merged = "select_multiple"
    else:
        merged = "text"
    seen = ", ".join(f"{entity.rows[v].type} in version {v}" for v in kinds)
    return merged, f"XLSForm type changed across versions ({seen}); stored as {KIND_TYPE[merged]}"


_META_ORDER = {"start": 0, "end": 1, "today": 2}


def _build_columns(
    schema: FormSchema,
    questions: list[_Entity],
    repeats: list[_Entity],
    tables: dict[int, TableSchema],
    repeat_of: dict[str, dict[str, int]],
    pinned: Mapping[str, str],
) -> None:
    choices_by_list: dict[str, list[str]] = {}
    for choice in schema.choices:
        choices_by_list.setdefault(choice.list_name, []).append(choice.name)
    # start/end/today right after the system columns, in that order.
    ordered = sorted(
        questions,
        key=lambda e: (
            (0, _META_ORDER[e.newest.type]) if e.parent == 0 and e.newest.type in _META_ORDER else (1, 0)
        ),
    )
    base_counts: dict[tuple[int, str], int] = {}
    for e in ordered:
        key = (e.parent, snake(e.newest.name))
        base_counts[key] = base_counts.get(key, 0) + 1
    pinned_of = {
        id(e): next((pinned[r.xpath] for r in e.rows.values() if r.xpath in pinned), None) for e in ordered
    }
    reserved: dict[int, set[str]] = {}  # per table: names pinned questions keep
    for e in ordered:
        if pinned_of[id(e)]:
            reserved.setdefault(e.parent, set()).add(str(pinned_of[id(e)]).lower())
    for entity in ordered:
        table = tables[entity.parent]
        newest = entity.newest
        taken = {c.name for c in table.columns}
        own = pinned_of[id(entity)]
        if own and own.lower() not in {t.lower() for t in taken}:
            column = own
        else:
            taken_or_reserved = taken | reserved.get(entity.parent, set())
            base = snake(newest.name)
            clash = base.lower() in {t.lower() for t in taken_or_reserved}
            if base_counts[(entity.parent, base)] > 1 or clash:
                rel_group = (
                    newest.group_path[len(table.xpath) :].strip("/") if table.xpath else newest.group_path
                )
                if rel_group:
                    base = shorten("__".join([snake(g, fallback="g") for g in rel_group.split("/")] + [base]))
            column = unique(base, taken_or_reserved)
        kind, note = _merged_kind(entity)
        if note:
            schema.type_changes.append(f"column {column!r} of table {table.name!r}: {note}")
        q = Question(
            xpath=newest.xpath,
            name=newest.name,
            type=kind if note else newest.type,
            table=table.name,
            column=column,
            list_name=newest.list_name,
            required=newest.required,
            relevant=newest.relevant,
            group_relevant=newest.group_relevant,
            constraint=newest.constraint,
            # every version's: an older one may have copied answers the newest no longer uses
            calculation="\n".join(dict.fromkeys(r.calculation for r in entity.rows.values() if r.calculation))
            or None,
            parameters=newest.parameters,
            group_path=newest.group_path,
            labels=dict(newest.labels),
            hints=dict(newest.hints),
            or_other=newest.or_other,
            xpaths=tuple(dict.fromkeys(r.xpath for r in entity.rows.values())),
        )
        _add_question(schema, q, entity.rows, kind, table, choices_by_list)
        if newest.or_other:
            other = Question(
                xpath=f"{newest.xpath}_other",
                name=f"{newest.name}_other",
                type="text",
                table=table.name,
                column=unique(shorten(f"{column}_other"), {c.name for c in table.columns}),
                group_path=newest.group_path,
                xpaths=tuple(dict.fromkeys(f"{r.xpath}_other" for r in entity.rows.values())),
            )
            rows = {v: r for v, r in entity.rows.items()}
            _add_question(schema, other, rows, "text", table, choices_by_list, suffix="_other")
    # Generated `<repeat>_count` nodes: pyxform adds one for an expression repeat_count; keep it as text.
    for entity in repeats[1:]:
        rows = {
            v: r for v, r in entity.rows.items() if r.repeat_count and not r.repeat_count.strip().isdigit()
        }
        if not rows:
            continue
        newest = next(iter(rows.values()))
        if f"{newest.xpath}_count" in schema.questions:
            continue
        parent_table = tables[entity.parent]
        q = Question(
            xpath=f"{newest.xpath}_count",
            name=f"{newest.name}_count",
            type="calculate",
            table=parent_table.name,
            column=unique(snake(f"{newest.name}_count"), {c.name for c in parent_table.columns}),
            group_path=newest.group_path,
            xpaths=tuple(dict.fromkeys(f"{r.xpath}_count" for r in rows.values())),
        )
        _add_question(schema, q, rows, "text", parent_table, choices_by_list, suffix="_count")


def _add_question(
    schema: FormSchema,
    q: Question,
    rows: dict[str, _Row],
    kind: str,
    table: TableSchema,
    choices_by_list: dict[str, list[str]],
    suffix: str = "",
) -> None:
    for xpath in q.xpaths:
        schema.questions[xpath] = q
    for vuid, row in rows.items():
        schema.version_questions.setdefault(vuid, {})[row.xpath + suffix] = q.xpath
    taken = {c.name for c in table.columns}
    table.columns.append(ColumnSpec(q.column, KIND_TYPE[kind], q.xpath, "answer"))
    taken.add(q.column)
    if kind == "geopoint":
        for part in GEO_PARTS:
            name = unique(shorten(f"{q.column}_{part}"), taken)
            taken.add(name)
            table.columns.append(ColumnSpec(name, "DOUBLE", q.xpath, "geo_part"))
    elif kind == "select_multiple":
        for choice in choices_by_list.get(q.list_name or "", []):
            name = unique(shorten(f"{q.column}__{snake(choice, fallback='c', digit_start=True)}"), taken)
            taken.add(name)
            table.columns.append(ColumnSpec(name, "BOOLEAN", q.xpath, "choice_flag"))
        bridge_name = unique(shorten(f"{q.column}__selected"), set(schema.tables))
        if bridge_name != f"{q.column}__selected" and table.kind != "main":
            bridge_name = unique(shorten(f"{table.name}__{q.column}__selected"), set(schema.tables))
        bridge = TableSchema(bridge_name, q.xpath, table.name, kind="bridge")
        bridge.columns = [
            ColumnSpec(n, t, q.xpath if n == "choice" else None, "key") for n, t in BRIDGE_COLUMNS
        ]
        schema.tables[bridge_name] = bridge


def _merge_choices(contents: Iterable[dict]) -> list[Choice]:
    """Union of every version's choices per (list, name); the newest labels win."""
    merged: dict[tuple[str, str], Choice] = {}
    for content in contents:
        translations = _translations(content)
        raw_choices = content.get("choices") or []
        if isinstance(raw_choices, dict):  # very old content: {list_name: [choices]}
            raw_choices = [dict(c, list_name=k) for k, cs in raw_choices.items() for c in cs]
        for raw in raw_choices:
            if not isinstance(raw, dict) or raw.get("name") in (None, "") or not raw.get("list_name"):
                continue
            key = (str(raw["list_name"]), str(raw["name"]))
            if key not in merged:
                merged[key] = Choice(key[0], key[1], _translated(raw, "label", translations))
    return list(merged.values())


def column_type(schema: FormSchema, table: str, column: str) -> str | None:
    """DuckDB type of a column, or None when the table or column is unknown."""
    spec = schema.tables[table].column(column) if table in schema.tables else None
    return spec.duckdb_type if spec else None


def to_label_tables(schema: FormSchema) -> dict[str, pa.Table]:
    """The form's dictionary as two Arrow tables, `questions` and `choices`, a label column per language.

    Language columns are named by a short code: "English (en)" -> `label_en`; the untranslated column
    -> `label_default`.
    """
    langs: list[str] = []
    for q in {q.xpath: q for q in schema.questions.values()}.values():
        for lang in list(q.labels) + list(q.hints):
            if lang not in langs:
                langs.append(lang)
    for c in schema.choices:
        for lang in c.labels:
            if lang not in langs:
                langs.append(lang)
    codes: dict[str, str] = {}
    for lang in langs:
        codes[lang] = unique(language_code(None if lang == "default" else lang), set(codes.values()))

    qrows: dict[str, list[Any]] = {
        k: []
        for k in (
            "form",
            "table",
            "column",
            "xpath",
            "type",
            "required",
            "relevant",
            "constraint",
            "list_name",
            "group_path",
        )
    }
    for lang in langs:
        qrows[f"label_{codes[lang]}"] = []
    for lang in langs:
        qrows[f"hint_{codes[lang]}"] = []
    for q in {q.xpath: q for q in schema.questions.values()}.values():
        for k, v in (
            ("form", schema.slug),
            ("table", q.table),
            ("column", q.column),
            ("xpath", q.xpath),
            ("type", q.type),
            ("required", q.required),
            ("relevant", q.relevant),
            ("constraint", q.constraint),
            ("list_name", q.list_name),
            ("group_path", q.group_path),
        ):
            qrows[k].append(v)
        for lang in langs:
            qrows[f"label_{codes[lang]}"].append(q.labels.get(lang))
            qrows[f"hint_{codes[lang]}"].append(q.hints.get(lang))
    crows: dict[str, list[Any]] = {"form": [], "list_name": [], "name": []}
    for lang in langs:
        crows[f"label_{codes[lang]}"] = []
    for c in schema.choices:
        crows["form"].append(schema.slug)
        crows["list_name"].append(c.list_name)
        crows["name"].append(c.name)
        for lang in langs:
            crows[f"label_{codes[lang]}"].append(c.labels.get(lang))

    def text(values: list[Any]) -> pa.Array:
        # form authors' text may carry lone surrogates from JSON escapes; keep it readable rather than fail
        return pa.array(
            [
                v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v
                for v in values
            ],
            pa.string(),
        )

    return {
        "questions": pa.table(
            {k: pa.array(v, pa.bool_()) if k == "required" else text(v) for k, v in qrows.items()}
        ),
        "choices": pa.table({k: text(v) for k, v in crows.items()}),
    }
