"""Turns names that come from forms into stable, valid, lower-case snake_case identifiers."""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_IDENT = 63  # PostgreSQL's limit; DuckDB has none, but Power BI and exports stay readable below it

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_UNDERSCORES = re.compile(r"_+")
_LANG_CODE = re.compile(r"\(([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)?)\)\s*$")


def snake(name: str, *, fallback: str = "q", digit_start: bool = False) -> str:
    """Return `name` as a snake_case identifier: word characters only, single underscores, no leading digit.

    Runs of underscores collapse to one so that `__` stays free as our separator (group prefix, choice flag).
    """
    text = unicodedata.normalize("NFKC", _CAMEL.sub("_", str(name))).lower()
    # keep only characters valid inside a Python/SQL identifier (\w also admits e.g. superscript digits)
    text = "".join(ch if ("a" + ch).isidentifier() else "_" for ch in unicodedata.normalize("NFKC", text))
    text = _UNDERSCORES.sub("_", text).strip("_")
    if not text:
        text = fallback
    if not text.isidentifier() and not digit_start:  # digit_start: the name follows a prefix (choice flags)
        text = f"{fallback}_{text}"
    return shorten(text)


def shorten(ident: str, limit: int = MAX_IDENT) -> str:
    """Cut an identifier to `limit` characters, keeping it unique with a short hash of the full text."""
    if len(ident) <= limit:
        return ident
    digest = hashlib.sha1(ident.encode("utf-8")).hexdigest()[:8]
    return f"{ident[: limit - 9].rstrip('_')}_{digest}"


def unique(name: str, taken: set[str]) -> str:
    """Return `name`, or `name_2`, `name_3`... whichever is not in `taken` (compared case-insensitively)."""
    lowered = {t.lower() for t in taken}
    if name.lower() not in lowered:
        return name
    n = 2
    while True:
        candidate = shorten(f"{name}_{n}")
        if candidate.lower() not in lowered:
            return candidate
        n += 1


def language_code(language: str | None) -> str:
    """Short code for a translation name: "English (en)" -> "en"; None -> "default"; else snake-case."""
    if language is None:
        return "default"
    match = _LANG_CODE.search(language)
    if match:
        return match.group(1).lower().replace("-", "_")
    return snake(language, fallback="lang")


def language_name(language: str | None) -> str:
    """The key used in `labels`/`hints` dicts: the translation name, or "default" if untranslated."""
    return "default" if language is None else language
