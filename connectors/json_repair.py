"""Valid JSON that the fast parsers refuse: an unpaired surrogate escape (`"\\ud800"`) in a text, or an
integer beyond 64 bits. JSON allows both; simdjson and orjson do not (and UTF-8, which Arrow and DuckDB
store, has no unpaired surrogates). Without a repair, one such answer would make its page fail on every
run, so the form would load nothing from there on.

The repair happens once, on the rare body that needs it: the standard library parses it, each unpaired
surrogate becomes U+FFFD and each integer beyond 64 bits its decimal text (flattening then stores it as
text, or quarantines it from an integer column as out of range), and the body is encoded again. Each
repair is logged with the form, the submission `_id` and the field, never the value.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson

log = logging.getLogger("kobo_etl.http")

_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64 = 2**63 - 1
_LOGGED_REPAIRS = 5  # per body; the rest are counted


def repaired_body(body: bytes, *, form: str | None) -> bytes:
    """`body` encoded again with its unpaired surrogates and huge integers repaired.

    Raises:
        ValueError: the body is not JSON at all (truncated, an HTML page, nested too deep).
    """
    try:
        data = json.loads(body)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deep") from exc
    repairs: list[tuple[Any, str, str]] = []  # (submission _id, field, what was repaired)
    results = data.get("results") if isinstance(data, dict) else data
    if isinstance(results, list):
        rows = [_repair(r, "", r.get("_id") if isinstance(r, dict) else None, repairs) for r in results]
        data = {**data, "results": rows} if isinstance(data, dict) else rows
    else:
        data = _repair(data, "", None, repairs)
    for sid, where, what in repairs[:_LOGGED_REPAIRS]:
        log.warning("form %s: submission _id %s, field %s: %s", form or "?", sid, where or "(top)", what)
    if len(repairs) > _LOGGED_REPAIRS:
        log.warning("form %s: %d more values repaired in the same page", form or "?",
                    len(repairs) - _LOGGED_REPAIRS)
    return orjson.dumps(data)


def _repair(value: Any, field: str, sid: Any, repairs: list[tuple[Any, str, str]]) -> Any:
    """`value` repaired; `field` is the key it sits under (KoBo's keys are whole xpaths, also in repeats)."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        repairs.append((sid, field, "a text with an unpaired surrogate escape; stored with U+FFFD"))
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, bool) or not isinstance(value, (int, list, dict)):
        return value
    if isinstance(value, int):
        if -_INT64 - 1 <= value <= 2**64 - 1:  # orjson reads up to unsigned 64 bits
            return value
        repairs.append((sid, field, "an integer beyond 64 bits; kept as its decimal text"))
        return str(value)
    if isinstance(value, list):
        return [_repair(v, field, sid, repairs) for v in value]
    out = {}
    for key, v in value.items():
        fixed_key = _repair(key, field, sid, repairs)
        out[fixed_key] = _repair(v, fixed_key, sid, repairs)
    return out
