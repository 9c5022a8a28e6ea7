"""Indicator definitions (`config/indicators.yaml`) loaded into typed models, reviewed by MEAL leads.

The file has two lists: `expressions` (named per-row SQL, e.g. the Food Consumption Score, reusable by
several indicators) and `indicators`. Every SQL fragment is a DuckDB expression over the typed columns
of the indicator's population table (for a repeat table, the submission's columns are joined in).
`warehouse.indicators.compute_indicators` runs them; nothing here touches a database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import FormConfigError
from config.forms import SLUG_RE

#: The bundled definitions for the demo household survey.
BUNDLED_INDICATORS = Path(__file__).with_name("indicators.yaml")

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")

Unit = Literal["count", "percent", "mean", "sum"]
Grain = Literal["day", "week", "month", "quarter"]


class IndicatorConfigError(FormConfigError):
    """`indicators.yaml` is invalid; names the file, the field (with the indicator code) and what is
    expected."""


def _ident(v: str, what: str) -> str:
    if not IDENT_RE.match(v):
        raise ValueError(f"{what} must be letters, digits and _, starting with a letter or _ (got {v!r})")
    return v


def one_expression(sql: str | None) -> str | None:
    """`sql` if it is one SQL expression: no `;`, no comment, and no `)` that closes more than it opened
    (outside quoted text). Each fragment is pasted into a query as a value or a condition; these would end
    that query early, start another statement, or comment the rest out."""
    if sql is None:
        return None
    depth, i = 0, 0
    while i < len(sql):
        ch = sql[i]
        if ch in "'\"":  # quoted text or a quoted name: a doubled quote stays inside
            end = i + 1
            while (end := sql.find(ch, end)) != -1 and sql[end + 1:end + 2] == ch:
                end += 2
            if end == -1:
                raise ValueError(f"a {ch} is not closed")
            i = end + 1
            continue
        if ch == ";" or sql.startswith(("--", "/*"), i):
            raise ValueError("write one SQL expression: ';' and comments (--, /*) are not allowed")
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            raise ValueError("a ')' closes more than was opened: write one SQL expression")
        i += 1
    if depth:
        raise ValueError("a '(' is not closed")
    return sql


class Expression(BaseModel):
    """A named per-row SQL expression, added as a column to `table` of `form` before indicators run."""

    model_config = ConfigDict(extra="forbid")
    name: str
    form: str
    table: str = "submissions"
    sql: str = Field(min_length=1)
    description: str = ""

    @field_validator("name", "table")
    @classmethod
    def _names(cls, v: str) -> str:
        return _ident(v, "a name")

    _sql = field_validator("sql")(one_expression)

    @field_validator("form")
    @classmethod
    def _form(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("a form slug: lower-case letters, digits and _, starting with a letter")
        return v


class Disaggregation(BaseModel):
    """One disaggregation dimension: a column (or named expression), or a named SQL expression."""

    model_config = ConfigDict(extra="forbid")
    name: str
    sql: str | None = None  # None: the column called `name`

    _sql = field_validator("sql")(one_expression)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == "total":
            raise ValueError("'total' is reserved for the row without disaggregation")
        return _ident(v, "a disaggregation name")


class Period(BaseModel):
    """The reporting period: a date column or expression, truncated to `grain` (weeks start on Monday)."""

    model_config = ConfigDict(extra="forbid")
    grain: Grain = "month"
    date: str = Field("today", min_length=1)

    _sql = field_validator("date")(one_expression)


class Indicator(BaseModel):
    """One indicator. Which of numerator/denominator/value is required depends on `unit`.

    * count: number of population rows; with `value`, the number of distinct non-null values.
    * sum / mean: SUM / AVG of `value` over the rows where it is not NULL.
    * percent: 100 x sum(numerator) / sum(denominator); booleans count as 1/0; the numerator only
      counts on rows where the denominator is non-zero.
    """

    model_config = ConfigDict(extra="forbid")
    code: str
    name: str = Field(min_length=1)
    form: str
    unit: Unit
    population: str = "submissions"
    filter: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    value: str | None = None
    disaggregations: list[Disaggregation] = Field(default_factory=list)
    period: Period = Period()
    reference: str | None = None
    description: str = ""

    _sql = field_validator("filter", "numerator", "denominator", "value")(one_expression)

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not CODE_RE.match(v):
            raise ValueError("a code: letters, digits, '_', '.', '-', starting with a letter (max 64)")
        return v

    @field_validator("form")
    @classmethod
    def _form(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("a form slug: lower-case letters, digits and _, starting with a letter")
        return v

    @field_validator("population")
    @classmethod
    def _population(cls, v: str) -> str:
        return _ident(v, "the population ('submissions' or a repeat table name)")

    @field_validator("disaggregations", mode="before")
    @classmethod
    def _plain_names(cls, v: Any) -> Any:
        # MEAL leads mostly list column names; a mapping {name, sql} defines a computed dimension
        if isinstance(v, list):
            return [{"name": d} if isinstance(d, str) else d for d in v]
        return v

    @model_validator(mode="after")
    def _unit_fields(self) -> Indicator:
        if self.unit == "percent":
            if not self.numerator or not self.denominator:
                raise ValueError("unit 'percent' needs both 'numerator' and 'denominator' (SQL expressions)")
            if self.value:
                raise ValueError("unit 'percent' uses numerator/denominator, not 'value'")
        else:
            if self.numerator or self.denominator:
                raise ValueError(f"unit {self.unit!r} uses 'value', not numerator/denominator")
            if self.unit in ("sum", "mean") and not self.value:
                raise ValueError(f"unit {self.unit!r} needs 'value' (a SQL expression)")
        names = [d.name for d in self.disaggregations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"disaggregation listed twice: {', '.join(dupes)}")
        return self

    def sql_fields(self) -> dict[str, str]:
        """Every SQL fragment of the definition by field name (to say which one holds a bad column)."""
        out = {"period.date": self.period.date}
        for key in ("filter", "numerator", "denominator", "value"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for d in self.disaggregations:
            out[f"disaggregations.{d.name}"] = d.sql or d.name
        return out


class IndicatorSet(BaseModel):
    """The whole file: named expressions and indicators."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    expressions: list[Expression] = Field(default_factory=list)
    indicators: list[Indicator] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> IndicatorSet:
        codes = [i.code for i in self.indicators]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"indicator code used twice: {', '.join(dupes)}")
        keys = [(e.form, e.table, e.name) for e in self.expressions]
        dupe_keys = sorted({k for k in keys if keys.count(k) > 1})
        if dupe_keys:
            raise ValueError("expression defined twice: " + ", ".join(".".join(k) for k in dupe_keys))
        return self

    def for_forms(self, forms: list[str]) -> IndicatorSet:
        """Only the definitions of the given forms."""
        return IndicatorSet(
            version=self.version,
            expressions=[e for e in self.expressions if e.form in forms],
            indicators=[i for i in self.indicators if i.form in forms],
        )

    def expressions_for(self, form: str, table: str) -> list[Expression]:
        return [e for e in self.expressions if e.form == form and e.table == table]


def _field_path(data: Any, loc: tuple[Any, ...]) -> str:
    """`indicators[2] (FCS_MEAN).unit` from a pydantic location."""
    parts: list[str] = []
    node = data
    for p in loc:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
            if isinstance(node, list) and 0 <= p < len(node):
                node = node[p]
                if isinstance(node, dict) and isinstance(node.get("code") or node.get("name"), str):
                    parts[-1] += f" ({node.get('code') or node.get('name')})"
            else:
                node = None
        else:
            parts.append(str(p))
            node = node.get(p) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"


def load_indicators(path: Path = BUNDLED_INDICATORS) -> IndicatorSet:
    """Load and validate an indicators file; errors name the file, the field and what is expected."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IndicatorConfigError(str(path), "(file)", f"cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise IndicatorConfigError(str(path), "(file)", f"not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise IndicatorConfigError(
            str(path), "(file)", "expected a mapping with 'expressions' and 'indicators'"
        )
    try:
        return IndicatorSet.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # tagged-union locations from `mode="before"` validators can carry a type tag; keep the data path
        raise IndicatorConfigError(str(path), _field_path(data, tuple(err["loc"])), err["msg"]) from None


def check_forms(definitions: IndicatorSet, forms: Iterable[str], path: Path) -> None:
    """Raise IndicatorConfigError for the first indicator or expression whose `form` is not configured.

    A typo in `form:` would otherwise make the definition vanish without a word (only forms of the run
    are computed).
    """
    configured = set(forms)
    listed = ", ".join(sorted(configured)) or "none"
    named = [("indicators", i, d.code, d.form) for i, d in enumerate(definitions.indicators)]
    named += [("expressions", i, e.name, e.form) for i, e in enumerate(definitions.expressions)]
    for key, i, name, form in named:
        if form not in configured:
            raise IndicatorConfigError(
                str(path), f"{key}[{i}] ({name}).form",
                f"unknown form {form!r}: not a configured form (configured: {listed})",
            )
