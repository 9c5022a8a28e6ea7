"""Per-form YAML files (`config/forms/<slug>.yaml`) loaded into typed models."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator

from config.errors import ConfigError, FormConfigError
from config.privacy import PrivacyPolicy

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Schema names the warehouse uses itself, or that DuckDB confuses with a catalog (the file is
# warehouse.duckdb).
RESERVED_SLUGS = {"ops", "meta", "marts", "main", "warehouse", "memory", "system", "temp",
                  "information_schema", "pg_catalog"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Schedule(BaseModel):
    """When the scheduled sync runs (Prefect cron syntax, evaluated in `timezone`)."""

    model_config = ConfigDict(extra="forbid")
    cron: str = "0 */6 * * *"
    timezone: str = "UTC"
    active: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != 5:
            raise ValueError("a cron expression has five fields, e.g. '0 */6 * * *'")
        for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
            parts = text.lower().split(",")
            # `?` ("any day") stands alone; nth weekdays (`mon#2`) mix with `*` only, never with plain days
            ok = (text == "?" and name in _CRON_EXTRAS) or (
                all(_cron_part_ok(part, name, low, high, names) for part in parts)
                and (all("#" not in p for p in parts) or all(p == "*" or "#" in p for p in parts))
            )
            if not ok:
                allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
                raise ValueError(f"{text!r} is not a valid {name} field ({allowed}, *, */n, a-b, a,b"
                                 f"{_CRON_EXTRAS.get(name, '')})")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        # Prefect's rule (CronSchedule): one of the IANA names. ZoneInfo alone also opens files of the tz
        # database that are not zone names (`posixrules`, `right/UTC`, `posix/...`), which Prefect refuses
        if v not in _time_zones():
            raise ValueError(f"{v!r} is not a time zone name such as 'UTC' or 'Africa/Nairobi'")
        return v


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, lowest, highest, names from the lowest on) of the five cron fields, as Prefect reads them
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS),
)
#: what the day fields also take, for the message
_CRON_EXTRAS = {"day-of-month": ", L, ?", "day-of-week": ", ?, or nth weekdays only: mon#2,fri#1"}
_CRON_PART = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def _cron_part_ok(part: str, field: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    """One comma-separated part of a cron field: `*`, `n`, `a-b`, each optionally `/step`; names for
    months and days (jan, mon)."""
    part = part.lower()
    # day fields, as Prefect reads them: the last day of the month (`L`), the nth weekday (`mon#2`: one
    # day, checked below like any other)
    if part == "l" and field == "day-of-month":
        return True
    if field == "day-of-week" and (nth := re.fullmatch(r"([0-9a-z]+)#[1-5]", part)):
        part = nth.group(1)
    m = _CRON_PART.match(part)
    if m is None or (m.group(2) is not None and int(m.group(2)) == 0):
        return False
    if m.group(1) == "*":
        return True

    def value(token: str) -> int | None:
        if token.isdigit():
            return int(token)
        return names.index(token) + low if token in names else None

    # a range may wrap around (`fri-mon`, `22-2`), as Prefect allows
    return all((b := value(t)) is not None and low <= b <= high for t in m.group(1).split("-"))


class SyncOptions(BaseModel):
    """How a form is synced."""

    model_config = ConfigDict(extra="forbid")
    page_size: int = Field(1000, ge=1, le=1000)
    deletions: Literal["delete", "soft"] = "delete"
    sweep: bool = True  # find edits, deletions, late arrivals below the watermark (false: only new ones)
    # find them in KoBo's project history between full manifest sweeps: a few KB per run instead of the
    # whole id list. Needs 'Manage project' on the form; without it every run sweeps (pipelines/sync.py)
    history: bool = True
    # the full manifest sweep still runs this often: the safety net (history lookback limits, clock skew)
    full_sweep_every: timedelta = Field(timedelta(hours=24), gt=timedelta(0))
    # each history poll starts this long before the previous one began (clock skew between us and KoBo);
    # what is found twice is re-fetched twice, which changes nothing
    history_overlap: timedelta = Field(timedelta(minutes=15), ge=timedelta(0))
    # requests in flight at once for new submissions and the manifest sweep; 1 = sequential. Kept low: the
    # KoBo server is shared (kf.kobotoolbox.org throttles with 429, which the client honours)
    concurrency: int = Field(3, ge=1, le=8)
    # processes that parse, pseudonymise and flatten pages beside the load; 0 = in the sync's own process;
    # unset = decided per sync (pipelines/workers.py `worker_count`: by the sync's size and the cores)
    transform_workers: int | None = Field(None, ge=0, le=16)

    @field_validator("full_sweep_every", "history_overlap", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        """Also "24h", "15m", "2d", "90s" (pydantic itself takes seconds, "24:00:00" and ISO 8601 "PT24H")."""
        if isinstance(v, str) and (m := _DURATION.match(v)):
            return timedelta(**{_DURATION_UNITS[m[2]]: float(m[1])})
        return v

    @field_serializer("full_sweep_every", "history_overlap", when_used="json")
    def _compact_duration(self, v: timedelta) -> str:
        seconds = v.total_seconds()
        for unit, size in (("h", 3600), ("m", 60)):
            if seconds and seconds % size == 0:
                return f"{seconds // size:g}{unit}"
        return f"{seconds:g}s"


class FormConfig(BaseModel):
    """One KoBo form the pipeline syncs."""

    model_config = ConfigDict(extra="forbid")
    slug: str
    asset_uid: str
    name: str = ""
    schedule: Schedule = Field(default_factory=Schedule)
    sync: SyncOptions = Field(default_factory=SyncOptions)
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    quality: dict[str, Any] = Field(default_factory=dict)

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("lower-case letters, digits and _, starting with a letter (max 63)")
        if v in RESERVED_SLUGS:
            raise ValueError(f"{v!r} is reserved by the warehouse; choose another slug")
        return v


def load_form_config(path: Path) -> FormConfig:
    """Load and validate one YAML file; errors name the file, the field and what is expected."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FormConfigError(str(path), "(file)", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FormConfigError(str(path), "(file)", "expected a mapping of settings at the top level")
    data.setdefault("slug", path.stem)
    try:
        return FormConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(file)"
        raise FormConfigError(str(path), field, err["msg"]) from None


def load_form_configs(forms_dir: Path, only: Iterable[str] | None = None) -> list[FormConfig]:
    """All forms in `forms_dir`, sorted by slug; `only` restricts to the given slugs."""
    if not forms_dir.is_dir():
        return []
    paths = sorted(forms_dir.glob("*.yaml"))
    wanted = None if only is None else set(only)
    if wanted is not None:
        # a broken file of another form must not stop these forms' syncs (that form's own run reports it)
        paths = [p for p in paths if (_slug_in(p) or p.stem) in wanted]
    forms = [load_form_config(p) for p in paths]
    by_slug: dict[str, Path] = {}
    for form, path in zip(forms, paths, strict=True):
        if form.slug in by_slug:
            taken = f"{form.slug!r} is the slug of {by_slug[form.slug]} too (one per form)"
            raise FormConfigError(str(path), "slug", taken)
        by_slug[form.slug] = path
    if wanted is not None:
        unknown = wanted - {f.slug for f in forms}
        if unknown:
            raise ConfigError(
                f"no form config for {', '.join(sorted(unknown))} in {forms_dir}; "
                "run `kobo-etl add-form <asset_uid>` first"
            )
        forms = [f for f in forms if f.slug in wanted]
    return forms


def configured_slugs(forms_dir: Path) -> set[str]:
    """The slugs of every form file in `forms_dir`, read without checking the files (see `load_form_configs`
    for that): a mistake in one form's file must not stop another form's outputs."""
    if not forms_dir.is_dir():
        return set()
    return {_slug_in(p) or p.stem for p in forms_dir.glob("*.yaml")}


def _slug_in(path: Path) -> str | None:
    """The `slug:` a form file declares, read without checking the rest (None if it cannot be read)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    slug = data.get("slug") if isinstance(data, dict) else None
    return slug if isinstance(slug, str) else None


def write_form_config(forms_dir: Path, form: FormConfig, header: str = "") -> Path:
    """Write a form's YAML (used by `kobo-etl add-form`)."""
    forms_dir.mkdir(parents=True, exist_ok=True)
    path = forms_dir / f"{form.slug}.yaml"
    body = yaml.safe_dump(form.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    return path


def slugify(name: str) -> str:
    """A form name as a schema-safe slug."""
    s = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "form"
    if not s[0].isalpha() or s in RESERVED_SLUGS:
        s = "f_" + s
    return s[:63]
