"""The typed shapes that flow between layers: a form's schema and a flattened batch of submissions.

These are the contract between transforms (which builds them), warehouse (which stores them) and
expectations (which checks them). Keep them plain dataclasses: no behaviour that needs another layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

MAIN_TABLE = "submissions"


@dataclass(frozen=True)
class ColumnSpec:
    """One warehouse column. `question` is the xpath of the question it comes from (None for system
    columns)."""

    name: str
    duckdb_type: str  # BIGINT, DOUBLE, VARCHAR, BOOLEAN, DATE, TIME, TIMESTAMP, TIMESTAMPTZ
    question: str | None = None
    role: str = "answer"  # answer | system | key | geo_part | choice_flag


@dataclass
class TableSchema:
    """A warehouse table for the main submission level or one repeat.

    The main table is keyed by `_id`; repeat tables by `_key` with `_submission_id`, `_parent_key`,
    `_position`. `parent` is the parent table name (None for the main table); `xpath` is the repeat's xpath
    ('' for main).
    """

    name: str
    xpath: str
    parent: str | None
    columns: list[ColumnSpec] = field(default_factory=list)
    # main | repeat | bridge (select_multiple: _submission_id, _key, choice) | attachments
    kind: str = "repeat"

    @property
    def key(self) -> str:
        return "_id" if self.parent is None else "_key"

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Question:
    """A question as the warehouse knows it, merged across versions (the newest definition wins)."""

    xpath: str  # newest-version xpath, e.g. "household/members/age"
    name: str  # XLSForm name
    type: str  # XLSForm type, dealiased: integer, decimal, select_one, select_multiple, text, ...
    table: str  # table the answer lands in ("submissions" or a repeat name)
    column: str  # base column name in that table
    list_name: str | None = None
    required: bool = False
    relevant: str | None = None
    group_relevant: str | None = None  # `relevant` of the enclosing groups/repeats, joined with "and"
    constraint: str | None = None
    calculation: str | None = None  # the XLSForm calculation (every version's, one per line)
    parameters: str | None = None  # e.g. a range question's "start=0 end=10 step=1"
    group_path: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # language -> label
    hints: dict[str, str] = field(default_factory=dict)
    or_other: bool = False
    xpaths: tuple[str, ...] = ()  # every xpath this question had in any version (group renames)


@dataclass(frozen=True)
class Choice:
    list_name: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class FormSchema:
    """Everything the pipeline knows about one form, merged over its deployed versions."""

    uid: str
    slug: str
    title: str
    # e.g. ["English (en)", "Français (fr)", "العربية (ar)"]; [] for an untranslated form
    languages: list[str]
    tables: dict[str, TableSchema]
    questions: dict[str, Question]  # keyed by xpath (every historical xpath maps to the merged question)
    choices: list[Choice]
    versions: list[str]  # deployed version uids, newest first
    type_changes: list[str] = field(default_factory=list)  # plain-language notes on widened types
    # version uid -> {data xpath in that version -> key of `questions`}; how a row of that version is read
    version_questions: dict[str, dict[str, str]] = field(default_factory=dict)
    # version uid -> {repeat xpath in that version -> table name}
    version_repeats: dict[str, dict[str, str]] = field(default_factory=dict)
    # questions the privacy policy turned into text (bands, months, pseudonyms): xpath -> the form's question
    retyped_by_policy: dict[str, Question] = field(default_factory=dict)

    @property
    def main(self) -> TableSchema:
        return self.tables["submissions"]


@dataclass(frozen=True)
class QuarantineRecord:
    """A value that could not be stored as typed. The row still loads with NULL in that column."""

    submission_id: int
    table: str
    column: str
    reason: str
    raw_value: str | None  # already passed through the privacy policy
    row_key: str | None = None  # `_id` as text for the main table, the repeat row's `_key` otherwise


@dataclass
class FlatBatch:
    """Submissions flattened to typed tables, ready to upsert."""

    tables: dict[str, pa.Table]
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    submission_ids: list[int] = field(default_factory=list)
    unknown_keys: dict[str, int] = field(default_factory=dict)  # data keys no deployed version knows -> count

    @classmethod
    def concat(cls, batches: Sequence[FlatBatch]) -> FlatBatch:
        """One batch with the rows of `batches`, in their order (tables of the same name concatenated)."""
        if len(batches) == 1:
            return batches[0]
        names = dict.fromkeys(name for b in batches for name in b.tables)
        tables = {
            name: pa.concat_tables([b.tables[name] for b in batches if name in b.tables],
                                   promote_options="permissive")
            for name in names
        }
        unknown: dict[str, int] = {}
        for b in batches:
            for key, n in b.unknown_keys.items():
                unknown[key] = unknown.get(key, 0) + n
        return cls(
            tables,
            [q for b in batches for q in b.quarantine],
            [i for b in batches for i in b.submission_ids],
            unknown,
        )
