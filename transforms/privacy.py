"""Applying a form's privacy policy to raw KoBo submissions, before anything is written anywhere.

Input is the KoBo wire format (flat slash-joined keys, repeats as lists of objects keyed by full paths,
system keys such as `_submitted_by`); output is new dicts of the same shape with every answer kept,
pseudonymised, generalised, rounded, redacted or removed as the policy (or its safe defaults) says.
Inputs are never mutated. Nothing here logs or raises with a submission value.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import hmac
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from config.privacy import METADATA_DEFAULTS, PrivacyPolicy, QuestionRule
from transforms.errors import PrivacyError
from transforms.model import MAIN_TABLE, ColumnSpec, FormSchema, Question, TableSchema
from transforms.pii import normalise, redact_text, risky_categories, tokens

MIN_KEY_BYTES = 32
TOKEN_PREFIX = "p_"
TOKEN_CHARS = 20  # base32 characters → 100 bits: collisions negligible for any survey population

#: Answers come from a fixed list or are numbers/dates: kept when the policy does not mention them.
CLOSED_TYPES = frozenset(
    {
        "select_one",
        "select_multiple",
        "select_one_from_file",
        "select_multiple_from_file",
        "rank",
        "integer",
        "decimal",
        "range",
        "date",
        "time",
        "dateTime",
        "datetime",
        "calculate",
        "acknowledge",
        "note",
        "start",
        "end",
        "today",
    }
)
#: Types whose value can carry arbitrary text; a risky name or label withholds them even if "closed".
TEXT_LIKE_TYPES = frozenset({"text", "string", "calculate", "hidden", "barcode", "xml-external"})
#: Numbers entered with a numeric keyboard are often phone or ID numbers.
NUMERIC_TYPES = frozenset({"integer", "decimal"})
NUMERIC_RISKY = frozenset({"phone", "id", "email"})
GEO_TYPES = frozenset({"geopoint", "geotrace", "geoshape", "start-geopoint"})
MEDIA_TYPES = frozenset({"image", "audio", "video", "file", "background-audio", "audit", "signature"})
DATE_TYPES = frozenset({"date", "dateTime", "datetime", "start", "end", "today"})
#: KoBo metadata question types → the key of their default in config.privacy.METADATA_DEFAULTS.
METADATA_TYPES = {
    "deviceid": "deviceid",
    "username": "username",
    "phonenumber": "phonenumber",
    "simserial": "simserial",
    "subscriberid": "subscriberid",
    "imei": "imei",
    "audit": "meta/audit",
    "start": "start",
    "end": "end",
    "today": "today",
}
#: System keys that carry no personal data and are copied as they are.
SAFE_SYSTEM_KEYS = frozenset(
    {
        "_id",
        "_uuid",
        "_submission_time",
        "_status",
        "_xform_id_string",
        "__version__",
        "formhub/uuid",
        "meta/instanceID",
        "meta/deprecatedID",
        "meta/rootUuid",
        "_bamboo_dataset_id",
        "_media_count",
        "_total_media",
        "_media_all_received",
        "_date_modified",
    }
)
#: Structure, not answers: groups and repeats are never decisions of their own.
STRUCTURE_TYPES = frozenset({"begin_group", "end_group", "group", "begin_repeat", "end_repeat", "repeat"})
_VERSION_KEY = re.compile(r"^_version_(_\d+)?$")
# is_deleted is a KoBo flag (boolean), no personal data; analysts need it to ignore removed files
_ATTACHMENT_SAFE_FIELDS = ("uid", "mimetype", "question_xpath", "is_deleted")
#: a date's start, as KoBo writes date and datetime answers: a real month, and a real day when there is one
_DATE_PREFIX = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?(?!\d)")


def _privacy_error(
    message: str, *, form: str | None = None, field: str | None = None, questions: Iterable[str] = ()
) -> PrivacyError:
    """A PrivacyError carrying `questions` (xpaths/keys, never values) for callers that list them."""
    err = PrivacyError(message, form=form, field=field)
    err.questions = list(questions)  # type: ignore[attr-defined]
    return err


@dataclass(frozen=True)
class WithheldQuestion:
    """A question whose answers were not stored because the policy has no decision for it."""

    xpath: str
    type: str
    reason: str


@dataclass
class PolicyResult:
    """Submissions after the policy, and what the operator must know about it."""

    submissions: list[dict[str, Any]]
    withheld: list[WithheldQuestion] = field(default_factory=list)
    invalid: dict[str, int] = field(default_factory=dict)  # xpath → values removed as not transformable
    unused_rules: list[str] = field(default_factory=list)  # policy keys that match no question of the form
    #: (submission `_id`, xpath, reason) of each value removed as not transformable: for the quarantine,
    #: never with the value (it may be personal)
    rejected: list[tuple[Any, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Decision:
    rule: QuestionRule | None  # None → withheld
    qtype: str
    xpath: str  # the question's newest xpath (what reports name)
    source: str  # policy | metadata | default
    reason: str = ""


# --- pseudonyms -------------------------------------------------------------------------------------------


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise _privacy_error(
            f"the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes: "
            "set KOBO_ETL_PSEUDONYMISATION_KEY (run `kobo-etl keygen`)"
        )


#: every pair of lower-case base32 characters, indexed by the 10 bits they encode (RFC 4648 alphabet)
_B32_PAIRS = [a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"]


def _token(normalised: str, key: bytes) -> str:
    # one-shot OpenSSL HMAC (the standard library's; no hand-built construction in privacy code)
    digest = hmac.digest(key, normalised.encode("utf-8"), "sha256")
    # the first 100 bits of the HMAC (13 bytes less 4 bits) as TOKEN_CHARS base32 characters, a pair per
    # 10 bits: exactly base64.b32encode(digest[:15])[:20].lower(), without that function's pure-Python loop
    n = int.from_bytes(digest[:13], "big") >> 4
    p = _B32_PAIRS  # spelled out, not joined in a loop: 0.7 µs instead of 1.1 µs per distinct value
    return (
        f"{TOKEN_PREFIX}{p[n >> 90]}{p[n >> 80 & 1023]}{p[n >> 70 & 1023]}{p[n >> 60 & 1023]}"
        f"{p[n >> 50 & 1023]}{p[n >> 40 & 1023]}{p[n >> 30 & 1023]}{p[n >> 20 & 1023]}"
        f"{p[n >> 10 & 1023]}{p[n & 1023]}"
    )


def pseudonymise_value(
    value: str, key: bytes, normalise_as: str | None = None, default_country_code: str | None = None
) -> str:
    """HMAC-SHA-256(key, normalised value) as `p_` + 20 lower-case base32 characters (100 bits).

    The same key and the same normalised value give the same token in every form and every run.
    """
    _check_key(key)
    return _token(normalise(str(value), normalise_as, default_country_code), bytes(key))


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible label of the key (to record which key produced the tokens of a run)."""
    _check_key(key)
    return hmac.new(key, b"kobo-etl key fingerprint", hashlib.sha256).hexdigest()[:8]


# --- deciding per question --------------------------------------------------------------------------------


def _rule_for(
    q: Question, key: str, policy: PrivacyPolicy, extra_names: Iterable[str] = ()
) -> QuestionRule | None:
    # an xpath entry is more specific than a name entry
    for k in (key, q.xpath, *q.xpaths):
        if k in policy.questions:
            return policy.questions[k]
    for k in (q.name, *extra_names):
        if k in policy.questions:
            return policy.questions[k]
    return None


def _default_decision(q: Question) -> _Decision:
    t = q.type
    cats = risky_categories(q.name, q.labels)
    where = ", ".join(f"{c} ({w})" for c, w in sorted(cats.items()))
    if t in TEXT_LIKE_TYPES and cats:
        return _Decision(None, t, q.xpath, "default", f"{t} question that looks like personal data: {where}")
    if t in NUMERIC_TYPES and set(cats) & NUMERIC_RISKY:
        return _Decision(None, t, q.xpath, "default", f"{t} question that looks like an identifier: {where}")
    if t in CLOSED_TYPES:
        return _Decision(QuestionRule(action="keep"), t, q.xpath, "default", f"closed type {t}")
    if t in GEO_TYPES:
        reason = f"location ({t}) has no policy entry"
    elif t in MEDIA_TYPES:
        reason = f"media/file ({t}) has no policy entry"
    elif t in ("text", "string"):
        reason = "free text has no policy entry"
    else:
        reason = f"open or unknown type {t!r} has no policy entry"
    if cats:
        reason += f"; looks like personal data: {where}"
    return _Decision(None, t, q.xpath, "default", reason)


_FITS = {
    "round_gps": lambda t: t in GEO_TYPES,
    "top_code": lambda t: t in NUMERIC_TYPES | {"range", "calculate"},
    "bottom_code": lambda t: t in NUMERIC_TYPES | {"range", "calculate"},
}


def _check_fit(rule: QuestionRule, q: Question, form: str) -> None:
    t = q.type
    ok = True
    if rule.action in _FITS:
        ok = _FITS[rule.action](t)
    elif rule.action == "generalise":
        ok = t in DATE_TYPES | {"calculate"} if rule.to else t in NUMERIC_TYPES | {"range", "calculate"}
    if not ok:
        raise _privacy_error(
            f"action {rule.action} cannot be applied to a {t} question; choose another action",
            form=form,
            field=q.xpath,
            questions=[q.xpath],
        )


def _decide(q: Question, key: str, policy: PrivacyPolicy, form: str) -> _Decision:
    rule = _rule_for(q, key, policy)
    if rule is not None:
        _check_fit(rule, q, form)
        return _Decision(rule, q.type, q.xpath, "policy")
    mkey = METADATA_TYPES.get(q.type)
    if mkey is not None:
        mrule = policy.metadata_rule(mkey)
        if mrule is not None:
            return _Decision(mrule, q.type, q.xpath, "metadata")
    return _default_decision(q)


@dataclass
class PolicyPlan:
    """A form's policy compiled once: the decision per question and one value handler per data key.

    Get it with `policy_plan(schema, policy)` (memoised per schema/policy) and reuse it for every page:
    rule lookups, type checks and metadata rules then run once per key, not once per value.
    """

    form: str
    policy: PrivacyPolicy
    by_key: dict[str, _Decision]
    repeats: set[str]
    withheld: list[WithheldQuestion]
    unlisted: list[str]
    unused_rules: list[str]
    #: repeat key (current and older xpaths) → the rule for the whole repeat, if any (`_repeat_rule`)
    repeat_rules: dict[str, QuestionRule | None] = field(default_factory=dict)
    question_names: frozenset[str] = frozenset()  # names of the form's questions (not groups or repeats)
    #: data key → _KEEP, _DROP or fn(value, ctx); compiled on first sight of the key in the data
    handlers: dict[str, Any] = field(default_factory=dict, repr=False)
    #: the keys of one dict (in order) → its (key, handler) pairs that are not _KEEP
    shapes: dict[tuple[str, ...], tuple[tuple[str, Any], ...]] = field(default_factory=dict, repr=False)

    def handler(self, key: str) -> Any:
        """The compiled handler for a data key (see `_compile_key`)."""
        h = self.handlers.get(key)
        if h is None:
            # not cached when compiling raises (a misconfigured metadata rule): every page raises alike
            h = self.handlers[key] = _compile_key(key, self)
        return h

    def steps(self, shape: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
        """What to do with a dict that has exactly these keys: the keys that are not simply kept."""
        steps = self.shapes.get(shape)
        if steps is None:
            steps = tuple((k, h) for k in shape if (h := self.handler(k)) is not _KEEP)
            # submissions share few key sets (optional questions, versions); bound it for odd data
            if len(self.shapes) < _MAX_SHAPES:
                self.shapes[shape] = steps
        return steps


def _plan(schema: FormSchema, policy: PrivacyPolicy) -> PolicyPlan:
    by_key: dict[str, _Decision] = {}
    used: set[str] = set()
    repeats = {t.xpath for t in schema.tables.values() if t.parent is not None and t.xpath}
    for key, q in schema.questions.items():
        if q.type in STRUCTURE_TYPES:
            if q.type in ("begin_repeat", "repeat"):
                repeats.update((key, q.xpath, *q.xpaths))
            continue
        by_key[key] = _decide(q, key, policy, schema.slug)
        used.update(k for k in (key, q.xpath, *q.xpaths, q.name) if k in policy.questions)
        if q.or_other:
            # legacy `or_other`: the free text sits in a sibling key `<xpath>_other`
            other = dataclasses.replace(
                q,
                xpath=q.xpath + "_other",
                name=q.name + "_other",
                type="text",
                xpaths=tuple(x + "_other" for x in q.xpaths),
                or_other=False,
            )
            by_key[key + "_other"] = _decide(other, key + "_other", policy, schema.slug)
            used.update(k for k in (other.xpath, *other.xpaths, other.name) if k in policy.questions)
    _withhold_copies(by_key, schema)
    used.update(k for k in repeats if k in policy.questions)
    used.update(k for t in schema.tables.values() for k in (t.name,) if k in policy.questions)
    seen: set[str] = set()
    withheld, unlisted = [], []
    for d in by_key.values():
        if d.xpath in seen:
            continue
        seen.add(d.xpath)
        if d.source == "default":
            unlisted.append(d.xpath)
        if d.rule is None:
            withheld.append(WithheldQuestion(d.xpath, d.qtype, d.reason))
    unused = sorted(set(policy.questions) - used)
    names = frozenset(q.name for q in schema.questions.values() if q.type not in STRUCTURE_TYPES)
    repeat_rules: dict[str, QuestionRule | None] = {}
    for t in schema.tables.values():
        if t.parent is None or not t.xpath:
            continue
        rq = schema.questions.get(t.xpath)
        keys = (t.xpath, *((rq.xpath, *rq.xpaths) if rq else ()))
        rule = _repeat_rule(policy, keys, (t.xpath.rsplit("/", 1)[-1], t.name), names)
        repeat_rules.update(dict.fromkeys(keys, rule))
    return PolicyPlan(schema.slug, policy, by_key, repeats, withheld, sorted(unlisted), unused,
                      repeat_rules=repeat_rules, question_names=names)


_REFERENCE = re.compile(r"\$\{\s*([^}\s]+)\s*\}")


def _withhold_copies(by_key: dict[str, _Decision], schema: FormSchema) -> None:
    """Withhold a question kept only by default (no rule names it) whose calculation reads an answer the
    policy does not keep as it is (withheld, dropped, pseudonymised, banded, ...): `concat(${name}, ' ',
    ${phone})` would store a copy of what the policy protects. Repeated until nothing changes, for a
    calculation that reads another calculation."""

    def name_of(key: str) -> str:
        q = schema.questions.get(key)
        return q.name if q is not None else key.rsplit("/", 1)[-1]  # `<name>_other` has no Question

    changed = True
    while changed:
        changed = False
        protected = {name_of(k) for k, d in by_key.items() if d.rule is None or d.rule.action != "keep"}
        for key, d in by_key.items():
            q = schema.questions.get(key)
            if d.source != "default" or d.rule is None or q is None or not q.calculation:
                continue
            read = sorted(set(_REFERENCE.findall(q.calculation)) & protected)
            if read:
                reason = (f"{d.qtype} calculated from {', '.join(read)}, which the policy does not keep as "
                          "it is: the calculation can copy those answers")
                by_key[key] = _Decision(None, d.qtype, d.xpath, "default", reason)
                changed = True


def _repeat_rule(
    policy: PrivacyPolicy, xpaths: Iterable[str], names: Iterable[str], question_names: frozenset[str]
) -> QuestionRule | None:
    """The rule for a whole repeat: an entry for one of its xpaths, else for its name (or table name) when no
    question of the form has that name: `visits: drop` written for a question must not also drop a repeat
    called visits, and the data and the stored tables must agree on it (both use this)."""
    for k in xpaths:
        if k in policy.questions:
            return policy.questions[k]
    for k in names:
        if k in policy.questions and k not in question_names:
            return policy.questions[k]
    return None


_PLAN_CACHE_SIZE = 8
_MAX_SHAPES = 4096
_plans: OrderedDict[tuple[int, int], tuple[FormSchema, PrivacyPolicy, tuple[Any, ...], PolicyPlan]] = (
    OrderedDict()
)
_plans_lock = threading.Lock()


def _fingerprint(schema: FormSchema, policy: PrivacyPolicy) -> tuple[Any, ...]:
    # schemas and policies are mutable (tests and tools edit them in place), so identity alone is not
    # enough; comparing this costs microseconds because unchanged Question objects compare by identity
    return (
        schema.slug,
        tuple(schema.questions.items()),
        tuple((n, t.parent, t.xpath) for n, t in schema.tables.items()),
        policy.model_dump_json(),
    )


def policy_plan(schema: FormSchema, policy: PrivacyPolicy) -> PolicyPlan:
    """The compiled plan for (schema, policy), built once and reused while neither changes.

    Raises:
        PrivacyError: an action that does not fit a question's type.
    """
    ident = (id(schema), id(policy))
    fp = _fingerprint(schema, policy)
    with _plans_lock:
        hit = _plans.get(ident)
        # the entry holds schema and policy themselves, so their ids cannot be reused by other objects
        if hit is not None and hit[0] is schema and hit[1] is policy and hit[2] == fp:
            _plans.move_to_end(ident)
            return hit[3]
    plan = _plan(schema, policy)
    with _plans_lock:
        _plans[ident] = (schema, policy, fp, plan)
        _plans.move_to_end(ident)
        while len(_plans) > _PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


def withheld_questions(schema: FormSchema, policy: PrivacyPolicy) -> list[WithheldQuestion]:
    """Questions of the form whose answers the policy (with its defaults) withholds."""
    return list(policy_plan(schema, policy).withheld)


def decided_questions(schema: FormSchema, policy: PrivacyPolicy) -> set[str]:
    """The data keys and xpaths of the form's questions the policy (with its defaults) decides: a privacy
    to-do listed under one of them is done."""
    plan = policy_plan(schema, policy)
    withheld = {w.xpath for w in plan.withheld}
    return {k for key, d in plan.by_key.items() if d.rule is not None for k in (key, d.xpath)} - withheld


def check_strict(schema: FormSchema, policy: PrivacyPolicy) -> None:
    """With `strict: true`, stop if any question has no policy entry (the error lists them, never values)."""
    if not policy.strict:
        return
    unlisted = policy_plan(schema, policy).unlisted
    if unlisted:
        raise _privacy_error(
            f"the privacy policy is strict and {len(unlisted)} question(s) have no entry: "
            f"{', '.join(unlisted)}. Add an action for each under `privacy.questions` in "
            f"config/forms/{schema.slug}.yaml (or `kobo-etl add-form` to see suggestions)",
            form=schema.slug,
            questions=unlisted,
        )


# --- transforming values ----------------------------------------------------------------------------------

_DROP = object()  # sentinel: remove the key
_KEEP = object()  # handler sentinel: copy the value as it is


class _Ctx:
    """Per-call state: the HMAC cache of this batch, invalid counts and unknown keys seen."""

    def __init__(self, policy: PrivacyPolicy, key: bytes, plan: PolicyPlan) -> None:
        self.policy = policy
        self.key = key
        self.plan = plan
        self.steps = plan.shapes
        self.cache: dict[tuple[str | None, str], str] = {}  # (normaliser, raw value) → token
        self.invalid: dict[str, int] = {}
        self.unknown: dict[str, WithheldQuestion] = {}
        self.submission_id: Any = None  # of the submission being transformed (repeat instances have none)
        self.rejected: list[tuple[Any, str, str]] = []

    def bad(self, xpath: str, reason: str) -> object:
        """A value the policy cannot transform: not stored, counted, and recorded for the quarantine."""
        self.invalid[xpath] = self.invalid.get(xpath, 0) + 1
        self.rejected.append((self.submission_id, xpath, reason))
        return _DROP


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def band_label(x: float, bands: list[float], labels: list[str] | None, integer: bool = True) -> str:
    """The band `x` falls in: bands [0, 5, 18, 60] → '0-4', '5-17', '18-59', '60+' ('<0' below the first)."""
    if x < bands[0]:
        return _below_label(bands)
    i = bisect.bisect_right(bands, x) - 1  # bands are strictly increasing (the model checks it)
    return _band_name(i, bands, labels, integer)


def _below_label(bands: list[float]) -> str:
    return f"<{_fmt(bands[0])}"


def _band_name(i: int, bands: list[float], labels: list[str] | None, integer: bool) -> str:
    if labels is not None:
        return labels[i]
    if i == len(bands) - 1:
        return f"{_fmt(bands[i])}+"
    upper = (
        _fmt(bands[i + 1] - 1) if integer and float(bands[i + 1]).is_integer() else f"<{_fmt(bands[i + 1])}"
    )
    return f"{_fmt(bands[i])}-{upper}"


def _round_point(point: str, spec: str) -> str | None:
    parts = point.split()
    if len(parts) < 2:
        return None
    lat, lon = _number(parts[0]), _number(parts[1])
    if lat is None or lon is None:
        return None
    # altitude and accuracy are dropped: altitude narrows a rounded point down again in hilly terrain
    return f"{lat:{spec}} {lon:{spec}}"


def round_gps(value: Any, decimals: int) -> Any:
    """Round a geopoint 'lat lon alt acc' (→ 'lat lon'), 'p1;p2;…' traces/shapes, or [lat, lon]."""
    if value is None:
        return None
    # a tuple of types, not `list | tuple` (a union object built on every call), and a loop, not a
    # comprehension (one more frame per call on Python 3.11): this runs for every value of every row
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            x = _number(v)
            out.append(None if x is None else round(x, decimals))
        return out
    text = str(value)
    spec = f".{decimals}f"  # built once, not per number
    if ";" not in text:  # a geopoint: the common case
        point = _round_point(text, spec)
        return _DROP if point is None else point
    points = [p for p in text.split(";") if p.strip()]
    rounded = [_round_point(p, spec) for p in points]
    if not rounded or any(r is None for r in rounded):
        return _DROP
    return ";".join(r for r in rounded if r is not None)


# --- compiling one handler per data key -------------------------------------------------------------------
# A handler is _KEEP, _DROP or fn(value, ctx) → new value or _DROP. Everything that depends only on the key
# (rule lookup, option checks, metadata defaults) is resolved here, once per plan.


def _keep_value(value: Any, ctx: _Ctx) -> Any:
    return value


def _drop_value(value: Any, ctx: _Ctx) -> object:
    return _DROP


def _as_function(h: Any) -> Any:
    """`h` as fn(value, ctx), for handlers that pick another handler per value."""
    return _keep_value if h is _KEEP else _drop_value if h is _DROP else h


def _is_date_start(text: str) -> bool:
    """`2026-03`, `2026-03-02` or a datetime from such a day: the month, and the day if given, exist."""
    m = _DATE_PREFIX.match(text)
    if m is None:
        return False
    if m.group(2) is None:
        return True
    try:
        date.fromisoformat(text[:10])
    except ValueError:  # 2026-02-30
        return False
    return True


def _rule_handler(rule: QuestionRule, xpath: str, qtype: str) -> Any:
    """The handler applying `rule` to one value; `xpath` names the question in the invalid counts."""
    a = rule.action
    if a == "keep":
        return _KEEP
    if a == "drop":
        return _DROP
    if a == "pseudonymise":
        how = rule.normalise

        def pseudonym(v: Any, ctx: _Ctx) -> Any:
            if v is None:
                return None
            if isinstance(v, (list, dict)):
                return ctx.bad(xpath, "not a single value, so it cannot be pseudonymised")
            raw = v if isinstance(v, str) else str(v)
            memo = (how, raw)
            token = ctx.cache.get(memo)
            if token is None:
                if not raw.strip():
                    return raw
                token = _token(normalise(raw, how, ctx.policy.default_country_code), ctx.key)
                ctx.cache[memo] = token
            return token

        return pseudonym
    if a == "redact":
        if rule.mode == "drop":
            return _DROP  # the stored schema has no column for it, not even for a null
        return lambda v, ctx: (
            redact_text(v) if isinstance(v, str) else None if v is None else ctx.bad(xpath, "not text")
        )
    if a == "round_gps":
        decimals = rule.gps_decimals

        def gps(v: Any, ctx: _Ctx) -> Any:
            out = round_gps(v, decimals)
            return ctx.bad(xpath, "not a GPS point (lat lon [alt acc]) to round") if out is _DROP else out

        return gps
    if a == "generalise" and rule.to is not None:
        width = 7 if rule.to == "month" else 4

        def to_period(v: Any, ctx: _Ctx) -> Any:
            if v is None:
                return None
            text = str(v)
            return text[:width] if _is_date_start(text) else ctx.bad(xpath, f"not a date (to {rule.to})")

        return to_period
    if a == "generalise":
        bands = rule.bands
        if bands is None:
            return lambda v, ctx: None if v is None else ctx.bad(xpath, "generalise has no bands for it")
        # band_label with every label made once: a value's label is then a bisect
        below = _below_label(bands)
        names = [_band_name(i, bands, rule.labels, qtype != "decimal") for i in range(len(bands))]
        lowest = bands[0]

        def band(v: Any, ctx: _Ctx) -> Any:
            if v is None:
                return None
            x = _number(v)
            if x is None:
                return ctx.bad(xpath, "not a number to put in a band")
            return below if x < lowest else names[bisect.bisect_right(bands, x) - 1]

        return band
    if a in ("top_code", "bottom_code"):
        limit = rule.max if a == "top_code" else rule.min
        top = a == "top_code"

        def code(v: Any, ctx: _Ctx) -> Any:
            if v is None:
                return None
            x = _number(v)
            if x is None:
                return ctx.bad(xpath, f"not a number to {a.replace('_', '-')}")
            if limit is not None and (x > limit if top else x < limit):
                return _fmt(limit)
            return v

        return code
    raise AssertionError(f"unhandled action {a}")  # the model's Literal makes this unreachable


def _decision_handler(d: _Decision) -> Any:
    return _DROP if d.rule is None else _rule_handler(d.rule, d.xpath, d.qtype)


def _metadata_handler(key: str, plan: PolicyPlan) -> Any:
    rule = plan.policy.metadata_rule(key)
    assert rule is not None
    if key == "_attachments":
        if rule.action == "drop":
            return _DROP

        def attachments(v: Any, ctx: _Ctx) -> Any:
            if not isinstance(v, list):
                return _DROP
            if not v:  # most submissions have no file: skip building a comprehension's frame
                return []
            # filenames and URLs embed the owner's username, the rootUuid and device filenames (often names)
            return [{f: a[f] for f in _ATTACHMENT_SAFE_FIELDS if f in a} for a in v if isinstance(a, dict)]

        return attachments
    if key in ("_notes", "_tags", "_supplementalDetails"):
        return _KEEP if rule.action == "keep" else _DROP
    if key == "_geolocation" and rule.action not in ("keep", "drop", "round_gps"):
        raise _privacy_error(f"metadata {key} accepts keep, drop or round_gps", form=plan.form, field=key)
    return _rule_handler(rule, key, "metadata")


def _validation_status_handler(plan: PolicyPlan) -> Any:
    by_whom_handler = _as_function(_metadata_handler("_validation_status.by_whom", plan))

    def status(value: Any, ctx: _Ctx) -> Any:
        if not isinstance(value, dict) or "by_whom" not in value:
            return value
        out = {k: v for k, v in value.items() if k != "by_whom"}
        by_whom = by_whom_handler(value["by_whom"], ctx)
        if by_whom is not _DROP:
            out["by_whom"] = by_whom
        return out

    return status


def _unknown_handler(key: str) -> Any:
    kind = "system" if key.startswith("_") else "unknown"

    def unknown(value: Any, ctx: _Ctx) -> object:
        if key not in ctx.unknown:
            ctx.unknown[key] = WithheldQuestion(
                key, kind, "key is not in the form definition nor a known KoBo field"
            )
        return _DROP

    return unknown


def _repeat_handler(key: str, plan: PolicyPlan) -> Any:
    """For a value that is a repeat (list of dicts): dropped by a rule on the repeat, else each item."""
    if key in plan.repeat_rules:
        rule = plan.repeat_rules[key]
    else:  # a repeat of an older version that no table stands for
        rule = _repeat_rule(plan.policy, (key,), (key.rsplit("/", 1)[-1],), plan.question_names)
    if rule is not None and rule.action == "drop":
        return _DROP
    return _levels


def _malformed_repeat_handler(key: str) -> Any:
    """A form's repeat that is not a list of objects: one object is one instance; in a list, an item that is
    not an object becomes None (flattening quarantines it, keeping the others' positions); anything else
    is not stored and quarantined without its value."""

    def malformed(value: Any, ctx: _Ctx) -> Any:
        if isinstance(value, dict):
            return _levels([value], ctx)
        if isinstance(value, list):
            return [_levels([v], ctx)[0] if isinstance(v, dict) else None for v in value]
        return None if value is None else ctx.bad(key, "the repeat is not a list of instances")

    return malformed


def _repeat_or(repeat: Any, other: Any, empty: Any) -> Any:
    """The handler of a key that holds a repeat: `repeat` for a list of dicts, `empty` for an empty list,
    `other` for any other value."""
    repeat, other, empty = _as_function(repeat), _as_function(other), _as_function(empty)

    def repeat_or(value: Any, ctx: _Ctx) -> Any:
        if isinstance(value, list):
            if not value:
                return empty(value, ctx)
            for v in value:  # a loop, not all() over a generator: this runs for every repeat of every row
                if not isinstance(v, dict):
                    return other(value, ctx)
            return repeat(value, ctx)
        return other(value, ctx)

    return repeat_or


def _compile_key(key: str, plan: PolicyPlan) -> Any:
    """The handler for one data key; the order of the checks is the policy's precedence."""
    if key in SAFE_SYSTEM_KEYS or _VERSION_KEY.match(key):
        return _KEEP
    if key == "_validation_status":
        return _validation_status_handler(plan)
    if key in METADATA_DEFAULTS and key.startswith("_"):
        # KoBo's own metadata (`_submitted_by`, `_geolocation`, ...): a question the form names the same
        # must not take it over (its `keep` would store the enumerator's username as it is)
        return _metadata_handler(key, plan)
    d = plan.by_key.get(key)
    if key in plan.repeats:
        repeat = _repeat_handler(key, plan)
        # not a list of dicts under a repeat's key: the question of that name, else dropped with the
        # repeat, else an unknown key
        if d is not None:
            other = _decision_handler(d)
        elif repeat is _DROP:
            other = _DROP
        else:
            other = _malformed_repeat_handler(key)
        return _repeat_or(repeat, other, empty=repeat)
    if d is not None:
        return _decision_handler(d)
    if key in METADATA_DEFAULTS:  # `username`, when the form has no question of that name
        return _metadata_handler(key, plan)
    if key.endswith("_count") and key[: -len("_count")] in plan.repeats:
        fallback = _KEEP  # generated repeat counts
    else:
        fallback = _unknown_handler(key)
    # a non-empty list of dicts under a key the form does not define: a repeat of an older version
    repeat = _repeat_handler(key, plan)
    return _repeat_or(repeat, fallback, empty=fallback)


def _levels(objs: list[dict[str, Any]], ctx: _Ctx) -> list[dict[str, Any]]:
    """The submissions, or the instances of one repeat, after the policy (one loop per list, not a call
    per dict: a page has several repeat instances per submission)."""
    shapes = ctx.steps
    out = []
    for obj in objs:
        # a submission's `_id`, for the quarantine of values the policy cannot transform; repeat
        # instances have none and keep their submission's
        ctx.submission_id = obj.get("_id", ctx.submission_id)
        shape = tuple(obj)
        steps = shapes.get(shape)
        if steps is None:
            steps = ctx.plan.steps(shape)
        # most keys are kept as they are: copy the dict in C (order kept, values shared, the input
        # untouched) and visit only the keys the policy changes
        new = dict(obj)
        for key, h in steps:
            value = _DROP if h is _DROP else h(obj[key], ctx)
            if value is _DROP:
                del new[key]
            else:
                new[key] = value
        out.append(new)
    return out


def apply_policy(
    submissions: list[dict[str, Any]],
    schema: FormSchema,
    policy: PrivacyPolicy,
    key: bytes,
    plan: PolicyPlan | None = None,
) -> PolicyResult:
    """Apply the policy to raw KoBo submissions; returns new dicts (inputs are never mutated).

    `plan` (from `policy_plan(schema, policy)`) skips the memo lookup; without it the memoised plan is used.

    Raises:
        PrivacyError: key shorter than 32 bytes; an action that does not fit a question's type; a strict
            policy with unlisted questions (or keys in the data that the form does not define).
    """
    _check_key(key)
    check_strict(schema, policy)
    if plan is None:
        plan = policy_plan(schema, policy)
    ctx = _Ctx(policy, bytes(key), plan)
    out = _levels(submissions, ctx)
    names = sorted(k for k, w in ctx.unknown.items() if w.type != "system")
    if policy.strict and names:
        raise _privacy_error(
            f"the privacy policy is strict and the data has field(s) the form does not define: "
            f"{', '.join(names)}",
            form=schema.slug,
            questions=names,
        )
    withheld = plan.withheld + [w for k, w in sorted(ctx.unknown.items())]
    return PolicyResult(
        out, withheld, dict(sorted(ctx.invalid.items())), list(plan.unused_rules), ctx.rejected
    )


class NotAColumn(Exception):
    """A handler gave something other than text for a text answer: the page goes row by row instead."""


class ColumnPolicy:
    """The policy applied to a page one data key (a column of answer text) at a time, for pages read in
    columns (`transforms.columnar`): each distinct value of the column goes once through the very handler
    `apply_policy` gives that key, so both ways store the same values.

    Raises (on creation) what `apply_policy` raises before it looks at a value.
    """

    def __init__(self, schema: FormSchema, policy: PrivacyPolicy, key: bytes) -> None:
        _check_key(key)
        check_strict(schema, policy)
        self.plan = policy_plan(schema, policy)
        self._ctx = _Ctx(policy, bytes(key), self.plan)

    @property
    def withheld(self) -> list[WithheldQuestion]:
        """What `PolicyResult.withheld` says for a page without keys the form does not define."""
        return list(self.plan.withheld)

    def drops_repeat(self, key: str) -> bool:
        """Whether the policy removes the repeat under `key` with all its instances."""
        return _repeat_handler(key, self.plan) is _DROP

    def column(self, key: str, values: pa.Array) -> tuple[pa.Array | None, list[tuple[int, str, str]]]:
        """The answers under `key` (text, null = no value) after the policy: None when none is stored, and
        the (row, question, reason) of each value the policy refuses (stored as null, as `apply_policy`
        removes it).

        Raises:
            NotAColumn: the handler gave something other than text or None.
        """
        handler = self.plan.handler(key)
        if handler is _KEEP:
            return values, []
        if handler is _DROP:
            return None, []
        ctx = self._ctx
        encoded = pc.dictionary_encode(values)
        out: list[str | None] = []
        refused: dict[int, tuple[str, str]] = {}  # index of a distinct value -> (question, why it is refused)
        for i, value in enumerate(encoded.dictionary.to_pylist()):
            before = len(ctx.rejected)
            new = handler(value, ctx)
            if len(ctx.rejected) > before:
                refused[i] = ctx.rejected[-1][1:]
                new = None
            elif new is _DROP:
                new = None
            elif new is not None and not isinstance(new, str):
                raise NotAColumn(key)
            out.append(new)
        ctx.rejected.clear()  # the caller reports rejections per row
        ctx.invalid.clear()
        stored = pa.array(out, pa.string()).take(encoded.indices)
        if not refused:
            return stored, []
        indices = encoded.indices
        rows = pc.indices_nonzero(pc.is_in(indices, pa.array(list(refused), indices.type))).to_pylist()
        return stored, [(row, *refused[indices[row].as_py()]) for row in rows]

    def value(self, key: str, value: Any) -> Any:
        """One value under `key` after the policy, `None` when it is not stored (for the few values that are
        not text: a submission's attachments)."""
        handler = self.plan.handler(key)
        if handler is _KEEP:
            return value
        new = None if handler is _DROP else handler(value, self._ctx)
        if self._ctx.rejected:
            raise NotAColumn(key)
        return None if new is _DROP else new


def rejected_by_policy(schema: FormSchema, policy: PrivacyPolicy, key: str, value: Any) -> bool:
    """Whether the policy refuses `value` under the data key `key` (a value it cannot transform). For
    finding, after the fact, which repeat instance a rejection came from; the result is thrown away, so
    pseudonyms are made with a throwaway key."""
    plan = policy_plan(schema, policy)
    handler = plan.handler(key)
    if handler is _KEEP or handler is _DROP:
        return False
    ctx = _Ctx(policy, bytes(MIN_KEY_BYTES), plan)
    handler(value, ctx)
    return bool(ctx.rejected)


# --- the schema after the policy --------------------------------------------------------------------------

_TO_VARCHAR = frozenset({"pseudonymise", "generalise", "redact"})
_SYSTEM_METADATA_COLUMNS = {
    "_submitted_by": "_submitted_by",
    "_validation_status_by": "_validation_status.by_whom",
    "_validation_status_by_whom": "_validation_status.by_whom",
}


def apply_policy_to_schema(schema: FormSchema, policy: PrivacyPolicy) -> FormSchema:
    """The form schema as stored after the policy: removed answers have no column; pseudonymised,
    generalised and redacted answers are VARCHAR (their geo parts / choice flags disappear)."""
    plan = policy_plan(schema, policy)
    removed: set[str] = set()
    retyped: set[str] = set()
    for key, d in plan.by_key.items():
        q = schema.questions.get(key)
        names = {key, d.xpath, *(q.xpaths if q else ())}
        if d.rule is None or d.rule.action == "drop" or (d.rule.action == "redact" and d.rule.mode == "drop"):
            removed |= names
        elif d.rule.action in _TO_VARCHAR:
            retyped |= names
    dropped_tables = {
        t.name
        for t in schema.tables.values()
        if t.parent is not None and (r := plan.repeat_rules.get(t.xpath)) is not None and r.action == "drop"
    }
    changed = True
    while changed:  # nested repeats go with their parent
        before = len(dropped_tables)
        dropped_tables |= {t.name for t in schema.tables.values() if t.parent in dropped_tables}
        changed = len(dropped_tables) != before
    # a select_multiple's bridge goes with its question (by xpath: column names repeat across tables)
    gone = removed | retyped
    dropped_tables |= {n for n, t in schema.tables.items() if t.kind == "bridge" and t.xpath in gone}

    tables: dict[str, TableSchema] = {}
    for name, t in schema.tables.items():
        if name in dropped_tables:
            continue
        cols: list[ColumnSpec] = []
        for c in t.columns:
            meta_key = _SYSTEM_METADATA_COLUMNS.get(c.name) if c.question is None else None
            if meta_key is not None:
                rule = policy.metadata_rule(meta_key)
                if rule is not None and rule.action == "drop":
                    continue
                cols.append(c)
            elif c.question in removed:
                continue
            elif c.question in retyped:
                if c.role in ("geo_part", "choice_flag"):
                    continue
                cols.append(dataclasses.replace(c, duckdb_type="VARCHAR"))
            else:
                cols.append(c)
        tables[name] = dataclasses.replace(t, columns=cols)
    questions: dict[str, Question] = {}
    for key, q in schema.questions.items():
        if key in removed or q.table in dropped_tables:
            continue
        questions[key] = (
            dataclasses.replace(q, type="text", list_name=None, constraint=None) if key in retyped else q
        )
    # the form's own definition, for the checks that can no longer run on them (and to say so)
    by_policy = {q.xpath: q for key, q in schema.questions.items() if key in retyped and key in questions}
    return dataclasses.replace(schema, tables=tables, questions=questions, retyped_by_policy=by_policy)


# --- suggesting a policy for `kobo-etl add-form` ----------------------------------------------------------

_AGE_WORDS = frozenset({"age", "ages", "edad", "idade", "عمر", "العمر"})
_BIRTH_WORDS = frozenset(
    {"dob", "birth", "birthdate", "birthday", "naissance", "nacimiento", "nascimento", "ميلاد", "الميلاد"}
)
_QI_WORDS = frozenset(
    {
        "sex",
        "gender",
        "sexe",
        "genre",
        "sexo",
        "genero",
        "admin",
        "admin1",
        "admin2",
        "admin3",
        "region",
        "district",
        "province",
        "county",
        "camp",
        "block",
        "commune",
        "village",
        "displacement",
        "displaced",
        "nationality",
        "nationalite",
        "nacionalidad",
        "ethnicity",
        "ethnie",
        "disability",
        "handicap",
    }
)
_YAML_PLAIN_KEY = re.compile(r"^[A-Za-z_][\w./-]*$")
_YAML_RESERVED = frozenset({"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"})


def _yaml_key(key: str) -> str:
    if _YAML_PLAIN_KEY.match(key) and key.lower() not in _YAML_RESERVED:
        return key
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flow(rule: dict[str, Any]) -> str:
    if list(rule) == ["action"]:
        return str(rule["action"])
    parts = []
    for k, v in rule.items():
        text = "[" + ", ".join(_fmt(x) for x in v) + "]" if isinstance(v, list) else str(v)
        parts.append(f"{k}: {text}")
    return "{" + ", ".join(parts) + "}"


def _suggest_rule(q: Question) -> tuple[dict[str, Any], str]:
    t = q.type
    cats = risky_categories(q.name, q.labels)
    words = set(tokens_of(q))
    seen = ", ".join(f"{c} in {w}" for c, w in sorted(cats.items()))
    if t in GEO_TYPES:
        return {
            "action": "round_gps",
            "decimals": 2,
        }, f"{t}: 2 decimals ≈ 1.1 km; prefer admin/camp codes and drop"
    if t in MEDIA_TYPES:
        return {"action": "drop"}, f"{t}: photos/recordings identify people; file names often contain names"
    if t in NUMERIC_TYPES and words & _AGE_WORDS:
        return (
            {"action": "generalise", "bands": [0, 5, 18, 60]},
            "age: bands keep analysis possible and hide rare exact ages; adjust the bands to the DPIA",
        )
    if t in DATE_TYPES and words & _BIRTH_WORDS:
        return {"action": "generalise", "to": "year"}, "date of birth: year only"
    if t in TEXT_LIKE_TYPES | NUMERIC_TYPES and cats:
        if "phone" in cats:
            return {
                "action": "pseudonymise",
                "normalise": "phone",
            }, f"looks like a phone number ({seen}); set default_country_code"
        if "id" in cats or t == "barcode":
            return {
                "action": "pseudonymise",
                "normalise": "id",
            }, f"looks like an ID number ({seen}): keyed pseudonym keeps linkage"
        if "email" in cats:
            return {"action": "pseudonymise", "normalise": "id"}, f"looks like an e-mail ({seen})"
        if t in NUMERIC_TYPES:
            return {"action": "keep"}, f"closed type {t} (name/label mention {seen}; check)"
        if "name" in cats:
            return (
                {"action": "drop"},
                f"looks like a person's name ({seen}); pseudonymise (normalise: name) for linkage",
            )
        return {"action": "drop"}, f"looks like an address or location ({seen}); keep admin codes instead"
    if t == "barcode":
        return {"action": "pseudonymise", "normalise": "id"}, "barcodes usually encode ID cards"
    if t in ("text", "string"):
        return (
            {"action": "drop"},
            "free text: dropped by default; `redact` masks phones/e-mails/ID numbers (names are NOT caught)",
        )
    if t in CLOSED_TYPES:
        return {"action": "keep"}, f"closed type {t}"
    return {"action": "drop"}, f"open or unknown type {t}"


def _suggestions(questions: Collection[Question]) -> dict[str, tuple[dict[str, Any], str]]:
    """`_suggest_rule` per question (by xpath), except that a question whose calculation reads an answer
    the suggestions do not keep as it is is suggested `drop` (it could store a copy of that answer)."""
    out: dict[str, tuple[dict[str, Any], str]] = {}
    protected: set[str] = set()
    for q in questions:
        if q.type in METADATA_TYPES:
            if METADATA_DEFAULTS[METADATA_TYPES[q.type]]["action"] != "keep":
                protected.add(q.name)
            continue
        out[q.xpath] = _suggest_rule(q)
        if out[q.xpath][0]["action"] != "keep":
            protected.add(q.name)
        if q.or_other:
            protected.add(q.name + "_other")
    calculated = [q for q in questions if q.xpath in out and q.calculation]
    changed = True
    while changed:
        changed = False
        for q in calculated:
            read = sorted(set(_REFERENCE.findall(q.calculation or "")) & protected)
            if read and out[q.xpath][0]["action"] == "keep":
                out[q.xpath] = ({"action": "drop"}, f"calculated from {', '.join(read)}, which this policy "
                                "does not keep as it is; keep it only if the calculation cannot copy them")
                protected.add(q.name)
                changed = True
    return out


def tokens_of(q: Question) -> list[str]:
    """Word tokens of a question's name and every label (for suggestion heuristics)."""
    out = tokens(q.name)
    for label in q.labels.values():
        out += tokens(label or "")
    return out


def suggest_policy(schema: FormSchema) -> str:
    """The body of a form's `privacy:` block, commented, for the IM officer to review (`kobo-etl add-form`).

    Every question gets a suggested action with its reason; metadata questions are listed as comments
    because their defaults already apply. Top-level keys start in column 0 (the caller indents them under
    `privacy:`); `PrivacyPolicy.model_validate(yaml.safe_load(text))` accepts it.
    """
    unique: dict[str, Question] = {}
    for q in schema.questions.values():
        if q.type not in STRUCTURE_TYPES:
            unique.setdefault(q.xpath, q)
    name_count: dict[str, int] = {}
    for q in unique.values():
        name_count[q.name] = name_count.get(q.name, 0) + 1
    lines = [
        f"# Suggested by kobo-etl for form {schema.slug!r} from its definition. Review every line with the",
        "# data protection focal point; see docs/privacy.md. Questions not listed here are kept only if",
        "# their type is closed (select, integer, decimal, date, calculate); other ones are withheld.",
        "strict: false  # true: a question without an entry stops the sync instead of being withheld",
        'default_country_code: null  # e.g. "254": 0712…, +254 712… and 254712… get one pseudonym',
        "dpia_ref: null  # the DPIA that covers this form",
        "sensitivity: null  # ISP sensitivity class, e.g. restricted",
        "k_threshold: 5  # risk report: each quasi-identifier combination shared by ≥ k records",
        "amber_k: 3",
        "global_risk_green: 0.03  # HDX practice: < 3 % global risk",
        "global_risk_amber: 0.05",
        "small_cell_threshold: 5  # indicator cells with fewer records are published empty",
    ]
    qi = [
        q.column
        for q in unique.values()
        if q.table == MAIN_TABLE
        and (
            (q.type.startswith("select_one") and set(tokens_of(q)) & _QI_WORDS)
            or (q.type in NUMERIC_TYPES and set(tokens_of(q)) & _AGE_WORDS)
        )
    ]
    hint = (
        f"  # candidates: [{', '.join(qi)}]" if qi else "  # what a neighbour or local authority could know"
    )
    lines.append("quasi_identifiers: []" + hint)
    lines.append("questions:")
    metadata_lines = []
    suggested = _suggestions(unique.values())
    for q in unique.values():
        if q.type in METADATA_TYPES:
            rule = METADATA_DEFAULTS[METADATA_TYPES[q.type]]
            metadata_lines.append(f"#   {METADATA_TYPES[q.type]}: {_flow(rule)}  (question {q.xpath})")
            continue
        key = q.name if name_count[q.name] == 1 else q.xpath
        rule, reason = suggested[q.xpath]
        lines.append(f"  {_yaml_key(key)}: {_flow(rule)}  # {reason}")
        if q.or_other:
            lines.append(f"  {_yaml_key(key + '_other')}: drop  # 'other, specify' free text")
    if len(lines) and lines[-1] == "questions:":
        lines[-1] = "questions: {}"
    lines.append("metadata: {}  # KoBo metadata defaults apply; override a key here to change one:")
    for mkey, rule in METADATA_DEFAULTS.items():
        lines.append(f"#   {mkey}: {_flow(rule)}")
    if metadata_lines:
        lines.append("# metadata questions in this form (handled by the defaults above):")
        lines += metadata_lines
    return "\n".join(lines) + "\n"
