"""Expectation suites generated from a form's schema, plus per-form additions in `expectations/<slug>.yaml`.

A suite here is plain data (`SuiteSpec` of `ExpectationSpec`); `expectations.validate` turns it into GX
objects only when it runs, so importing this module never pays GX's import (≈ 1.5–2 s).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from config.errors import FormConfigError
from transforms.model import MAIN_TABLE, FormSchema, Question

SEVERITIES = ("error", "warning")
#: `ExpectationSpec.table` of checks that run on the one-token-per-row frame of the main table's
#: select_multiple answers; a repeat's is `<repeat>.select_multiple_tokens` (`tokens_table`).
TOKENS_TABLE = "select_multiple_tokens"
#: Folder holding the per-form YAML files (`<slug>.yaml`) beside this module.
OVERRIDES_DIR = Path(__file__).resolve().parent

#: KoBo/ODK metadata questions: device and interview facts, never an answer about the household.
KOBO_METADATA = frozenset(
    {"start", "end", "today", "deviceid", "username", "phonenumber", "simserial", "subscriberid", "email",
     "audit"}
)
#: Question types whose column never holds an answer the enumerator typed or picked.
_NO_ANSWER_TYPES = KOBO_METADATA | {
    "note",
    "calculate",
    "begin_group",
    "end_group",
    "begin_repeat",
    "end_repeat",
    "group",
    "repeat",
    "hidden",
    "acknowledge",
    "geopoint",
    "geotrace",
    "geoshape",
    "image",
    "audio",
    "video",
    "file",
    "background-audio",
    "xml-external",
    "start-geopoint",
}
_NUMERIC_TYPES = {"integer", "decimal", "range"}
_TOKENS_SUFFIX = f".{TOKENS_TABLE}"
_TERM = re.compile(r"^\s*\.\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_PARAM = re.compile(r"(start|end)\s*=\s*(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class ExpectationSpec:
    """One check to run with GX.

    Attributes:
        id: stable id used for `disable:` and overrides, e.g. `in_set:water_source`.
        type: GX expectation type in snake case, e.g. `expect_column_values_to_be_in_set`.
        kwargs: GX keyword arguments (column, value_set, min_value, ...).
        severity: `error` (flag the rows, run shows red) or `warning` (report only).
        description: what the check means, in plain language for the report.
        table: `submissions`, a repeat table's name (e.g. `members`), or `tokens_table(<table>)` for
            the one-token-per-row frame of that table's select_multiple answers.
    """

    id: str
    type: str
    kwargs: dict[str, Any]
    severity: str = "error"
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    table: str = MAIN_TABLE

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column") or self.kwargs.get("column_A")


def tokens_table(table: str) -> str:
    """`ExpectationSpec.table` of the checks on `table`'s one-token-per-row select_multiple frame."""
    return TOKENS_TABLE if table == MAIN_TABLE else table + _TOKENS_SUFFIX


def data_table(table: str) -> str:
    """The data table an `ExpectationSpec.table` reads: a tokens table's source, else `table` itself."""
    if table == TOKENS_TABLE:
        return MAIN_TABLE
    return table.removesuffix(_TOKENS_SUFFIX) if table.endswith(_TOKENS_SUFFIX) else table


def is_tokens_table(table: str) -> bool:
    """True for the `ExpectationSpec.table` of token checks (`tokens_table` of some table)."""
    return data_table(table) != table


@dataclass
class SuiteSpec:
    """All GX checks for one form.

    `select_multiple` maps a main-table select_multiple column to its allowed choices;
    `repeat_select_multiple` does the same per repeat table (`{"members": {"member_needs": [...]}}`).
    """

    form: str
    expectations: list[ExpectationSpec]
    select_multiple: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # constraints that could not be turned into checks
    repeat_select_multiple: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def ids(self) -> list[str]:
        return [e.id for e in self.expectations]

    def tables(self) -> list[str]:
        """The data tables the checks run on (`submissions` first, then repeats; tokens count as theirs)."""
        out = [MAIN_TABLE]
        for e in self.expectations:
            if data_table(e.table) not in out:
                out.append(data_table(e.table))
        return out

    def for_table(self, table: str) -> SuiteSpec:
        """Only the checks on `table`, its select_multiple token checks included.

        The result's `select_multiple` is that table's (a repeat's comes from `repeat_select_multiple`).
        """
        keep = {table, tokens_table(table)}
        sm = self.select_multiple if table == MAIN_TABLE else self.repeat_select_multiple.get(table, {})
        return SuiteSpec(
            self.form, [e for e in self.expectations if e.table in keep], dict(sm), list(self.notes)
        )


def parse_constraint(constraint: str | None) -> tuple[float | None, float | None, bool, bool] | None:
    """Bounds from a simple XLSForm constraint such as `. >= 18 and . <= 120`.

    Returns (min, max, strict_min, strict_max), or None when the constraint is anything else (`or`,
    other fields, functions): those are left to the form itself.
    """
    if not constraint or not constraint.strip():
        return None
    lo: float | None = None
    hi: float | None = None
    strict_lo = strict_hi = False
    for term in re.split(r"\s+and\s+", constraint.strip(), flags=re.IGNORECASE):
        m = _TERM.match(term)
        if not m:
            return None
        op, num = m.group(1), float(m.group(2))
        if op in (">=", ">"):
            if lo is None or num >= lo:
                lo, strict_lo = num, op == ">"
        else:
            if hi is None or num <= hi:
                hi, strict_hi = num, op == "<"
    return lo, hi, strict_lo, strict_hi


def parse_range_parameters(parameters: str | dict[str, Any] | None) -> tuple[float | None, float | None]:
    """`start`/`end` of a range question's parameters (`start=0 end=10 step=1`, or a dict)."""
    if not parameters:
        return None, None
    if isinstance(parameters, dict):
        items = {k: parameters.get(k) for k in ("start", "end")}
    else:
        items = {k: v for k, v in _PARAM.findall(str(parameters))}
    out: list[float | None] = []
    for key in ("start", "end"):
        try:
            raw = items.get(key)
            out.append(float(raw) if raw is not None else None)
        except (TypeError, ValueError):
            out.append(None)
    lo, hi = out
    if lo is not None and hi is not None and lo > hi:  # a descending range slider
        lo, hi = hi, lo
    return lo, hi


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _label(q: Question) -> str:
    for lang, text in q.labels.items():
        if text and ("en" in lang.lower() or lang == "default"):
            return text
    return next((t for t in q.labels.values() if t), q.name)


def _group_relevant(schema: FormSchema, q: Question) -> bool:
    """True when a group around the question has a `relevant` (so the question may legitimately be empty)."""
    if getattr(q, "group_relevant", None):
        return True
    path = q.group_path.strip("/")
    while path:
        group = schema.questions.get(path)
        if group is not None and group.relevant:
            return True
        path = path.rpartition("/")[0]
    return False


def _table_questions(schema: FormSchema, table: str) -> list[Question]:
    """Unique questions that have a column in `table`, in the table's column order."""
    cols = {c.name: i for i, c in enumerate(schema.tables[table].columns)}
    seen: dict[str, Question] = {}
    for q in schema.questions.values():
        if q.table == table and q.column in cols and q.column not in seen:
            seen[q.column] = q
    return sorted(seen.values(), key=lambda q: cols[q.column])


def _main_questions(schema: FormSchema) -> list[Question]:
    """Unique questions of the main table that have a column there, in the table's column order."""
    return _table_questions(schema, MAIN_TABLE)


def _repeat_tables(schema: FormSchema) -> list[str]:
    """Names of the form's repeat tables (not bridges or attachments), in schema order."""
    return [t.name for t in schema.tables.values() if t.kind == "repeat" and t.parent is not None]


def check_id(kind: str, table: str, column: str) -> str:
    """`in_set:water_source` for the main table, `in_set:members.member_sex` for a repeat's column."""
    return f"{kind}:{column}" if table == MAIN_TABLE else f"{kind}:{table}.{column}"


def _question_specs(
    schema: FormSchema,
    q: Question,
    choices: dict[str, list[str]],
    notes: list[str],
    select_multiple: dict[str, list[str]],
) -> list[ExpectationSpec]:
    """The generated checks of one question, on the table its answer lands in.

    `select_multiple` collects the question's table's select_multiple columns: their tokens are checked on
    a one-token-per-row frame of that table.
    """
    if q.type in _NO_ANSWER_TYPES:
        return []
    specs: list[ExpectationSpec] = []
    col, label, table = q.column, _label(q), q.table
    where = "" if table == MAIN_TABLE else f" (in each “{table}” row)"
    if q.required and not q.relevant and not _group_relevant(schema, q):
        specs.append(
            ExpectationSpec(
                check_id("not_null", table, col),
                "expect_column_values_to_not_be_null",
                {"column": col},
                "error",
                f"“{label}” is required in the form, so it is never empty{where}.",
                table=table,
            )
        )
    allowed = list(choices.get(q.list_name or "", []))
    if q.or_other and "other" not in allowed:
        allowed.append("other")
    if q.type == "select_one" and allowed:
        specs.append(
            ExpectationSpec(
                check_id("in_set", table, col),
                "expect_column_values_to_be_in_set",
                {"column": col, "value_set": allowed},
                "error",
                f"“{label}” holds one of the form's choices ({len(allowed)} allowed){where}.",
                table=table,
            )
        )
    elif q.type == "select_multiple" and allowed:
        select_multiple[col] = allowed
        specs.append(
            ExpectationSpec(
                check_id("tokens_in_set", table, col),
                "expect_column_values_to_be_in_set",
                {"column": col, "value_set": allowed},
                "error",
                f"Every option ticked in “{label}” is one of the form's choices{where}.",
                table=tokens_table(table),
            )
        )
    if q.type in _NUMERIC_TYPES:
        between = _between_spec(q, table, label, notes)
        if between is not None:
            specs.append(replace(between, description=between.description.rstrip(".") + f"{where}."))
    return specs


def _between_spec(q: Question, table: str, label: str, notes: list[str]) -> ExpectationSpec | None:
    """A between-check from a range question's bounds and/or a simple numeric constraint."""
    col = q.column
    lo = hi = None
    strict_lo = strict_hi = False
    source = ""
    if q.type == "range":
        lo, hi = parse_range_parameters(q.parameters)
        source = "range"
    parsed = parse_constraint(q.constraint)
    if parsed is not None:
        c_lo, c_hi, c_slo, c_shi = parsed
        if c_lo is not None and (lo is None or c_lo >= lo):
            lo, strict_lo = c_lo, c_slo
        if c_hi is not None and (hi is None or c_hi <= hi):
            hi, strict_hi = c_hi, c_shi
        source = "constraint"
    elif q.constraint:
        name = col if table == MAIN_TABLE else f"{table}.{col}"
        notes.append(f"constraint on {name} is not a simple range; the form enforces it")
    if lo is None and hi is None:
        return None
    kw: dict[str, Any] = {
        "column": col,
        "min_value": None if lo is None else _num(lo),
        "max_value": None if hi is None else _num(hi),
    }
    if strict_lo:
        kw["strict_min"] = True
    if strict_hi:
        kw["strict_max"] = True
    bounds = _bounds_text(lo, hi, strict_lo, strict_hi)
    return ExpectationSpec(
        check_id("between", table, col),
        "expect_column_values_to_be_between",
        kw,
        "error",
        f"“{label}” is {bounds} (from the form's {source}).",
        table=table,
    )


def build_suite(schema: FormSchema, overrides_dir: Path | None = OVERRIDES_DIR) -> SuiteSpec:
    """The GX checks for a form's main and repeat tables, with `<overrides_dir>/<slug>.yaml` applied.

    A repeat table's checks carry `table=<repeat name>` and ids such as `in_set:members.member_sex`;
    `SuiteSpec.for_table` picks one table's checks.

    Args:
        schema: the merged form schema.
        overrides_dir: folder of per-form YAML files; None to skip them.
    """
    specs: list[ExpectationSpec] = []
    notes: list[str] = []
    main_cols = {c.name for c in schema.main.columns}
    choices: dict[str, list[str]] = {}
    for c in schema.choices:
        choices.setdefault(c.list_name, []).append(c.name)

    specs.append(
        ExpectationSpec(
            "not_null:_id",
            "expect_column_values_to_not_be_null",
            {"column": "_id"},
            "error",
            "Every submission has a KoBo id (_id).",
        )
    )
    specs.append(
        ExpectationSpec(
            "unique:_id",
            "expect_column_values_to_be_unique",
            {"column": "_id"},
            "error",
            "No two submissions share a KoBo id (_id).",
        )
    )
    if {"start", "end"} <= main_cols:
        specs.append(
            ExpectationSpec(
                "end_after_start",
                "expect_column_pair_values_a_to_be_greater_than_b",
                {
                    "column_A": "end",
                    "column_B": "start",
                    "or_equal": True,
                    "ignore_row_if": "either_value_is_missing",
                },
                "error",
                "The interview ends after it starts (the device clock was not changed mid-interview).",
            )
        )

    sm: dict[str, list[str]] = {}
    for q in _main_questions(schema):
        specs.extend(_question_specs(schema, q, choices, notes, sm))
    repeat_sm: dict[str, dict[str, list[str]]] = {}
    for table in _repeat_tables(schema):
        for q in _table_questions(schema, table):
            specs.extend(_question_specs(schema, q, choices, notes, repeat_sm.setdefault(table, {})))
    suite = SuiteSpec(schema.slug, specs, sm, notes, {t: c for t, c in repeat_sm.items() if c})
    if overrides_dir is not None:
        path = overrides_dir / f"{schema.slug}.yaml"
        if path.is_file():
            suite = apply_overrides(suite, load_overrides(path))
    return suite


def _bounds_text(lo: float | None, hi: float | None, slo: bool, shi: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'more than' if slo else 'at least'} {_num(lo)}")
    if hi is not None:
        parts.append(f"{'less than' if shi else 'at most'} {_num(hi)}")
    return " and ".join(parts)


@dataclass
class Overrides:
    """The content of `expectations/<slug>.yaml`: checks to add or replace, and ids to switch off."""

    expectations: list[ExpectationSpec] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)


def load_overrides(path: Path) -> Overrides:
    """Read and validate a per-form YAML file (`expectations:` list and `disable:` list of ids).

    Raises:
        FormConfigError: naming the file and the field when something is not as expected.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise FormConfigError(str(path), "(file)", f"not valid YAML: {exc}") from None
    if isinstance(data, list):
        data = {"expectations": data}
    if not isinstance(data, dict):
        raise FormConfigError(str(path), "(file)", "a mapping with `expectations:` and/or `disable:`")
    unknown = set(data) - {"expectations", "disable"}
    if unknown:
        raise FormConfigError(str(path), sorted(unknown)[0], "only `expectations` and `disable` are allowed")
    disable = data.get("disable") or []
    if not isinstance(disable, list) or not all(isinstance(x, str) for x in disable):
        raise FormConfigError(str(path), "disable", "a list of check ids, e.g. [not_null:phone]")
    items = data.get("expectations") or []
    if not isinstance(items, list):
        raise FormConfigError(str(path), "expectations", "a list of {type, kwargs, severity, meta}")
    specs = []
    for i, item in enumerate(items):
        where = f"expectations[{i}]"
        if not isinstance(item, dict):
            raise FormConfigError(str(path), where, "a mapping with type, kwargs, severity")
        typ = item.get("type")
        if not isinstance(typ, str) or not re.fullmatch(r"expect_[a-z0-9_]+", typ):
            raise FormConfigError(
                str(path), f"{where}.type", "a GX type such as expect_column_values_to_be_between"
            )
        kwargs = item.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise FormConfigError(str(path), f"{where}.kwargs", "a mapping of GX arguments")
        severity = item.get("severity", "error")
        if severity not in SEVERITIES:
            raise FormConfigError(str(path), f"{where}.severity", "error or warning")
        meta = item.get("meta") or {}
        if not isinstance(meta, dict):
            raise FormConfigError(str(path), f"{where}.meta", "a mapping")
        col = kwargs.get("column") or kwargs.get("column_A") or ""
        spec_id = item.get("id") or meta.get("id") or f"{typ.removeprefix('expect_')}:{col}".rstrip(":")
        description = item.get("description") or meta.get("description") or ""
        table = item.get("table", MAIN_TABLE)
        if not isinstance(table, str) or not table:
            raise FormConfigError(str(path), f"{where}.table", "a table name: submissions or a repeat's name")
        specs.append(
            ExpectationSpec(
                str(spec_id), typ, dict(kwargs), severity, str(description), dict(meta), table=table
            )
        )
    return Overrides(specs, list(disable))


def apply_overrides(suite: SuiteSpec, overrides: Overrides) -> SuiteSpec:
    """A copy of `suite` without the disabled ids; an added check with an existing id replaces it."""
    disabled = set(overrides.disable)
    by_id = {e.id: e for e in suite.expectations if e.id not in disabled}
    for spec in overrides.expectations:
        if spec.id in disabled:
            continue
        old = by_id.get(spec.id)
        if old is not None and not spec.description:
            spec = replace(spec, description=old.description, table=old.table)
        elif old is not None:
            spec = replace(spec, table=old.table)
        by_id[spec.id] = spec
    return replace(suite, expectations=list(by_id.values()))


def suite_for_columns(suite: SuiteSpec, columns: Iterable[str]) -> SuiteSpec:
    """Drop checks whose columns are not in `columns`; each dropped check becomes a note, never a crash."""
    have = set(columns)
    keep, notes = [], list(suite.notes)
    for e in suite.expectations:
        cols = [e.kwargs.get(k) for k in ("column", "column_A", "column_B") if e.kwargs.get(k)]
        cols += list(e.kwargs.get("column_list") or [])
        if all(c in have for c in cols):
            keep.append(e)
        else:
            notes.append(f"{e.id} skipped: column not in the data")
    return replace(suite, expectations=keep, notes=notes)


TEXT_COLUMN_NOTE = "the column is stored as text (e.g. bands from the privacy policy)"


def suite_for_stored_types(suite: SuiteSpec, types: dict[str, dict[str, str]]) -> SuiteSpec:
    """Drop range checks on columns the warehouse stores as text (`types`: table → column → DuckDB type).

    A question the privacy policy bands (`18-59`), or one whose column widened to text after such a rule
    was lifted, cannot be compared with the form's numeric bounds: the comparison would fail the whole
    run. Each dropped check becomes a note in the report.
    """
    keep, notes = [], list(suite.notes)
    for e in suite.expectations:
        stored = types.get(data_table(e.table), {}).get(e.column or "", "")
        if e.type == "expect_column_values_to_be_between" and stored.upper() in ("VARCHAR", "TEXT"):
            notes.append(f"{e.id} skipped: {TEXT_COLUMN_NOTE}")
        else:
            keep.append(e)
    return replace(suite, expectations=keep, notes=notes)
