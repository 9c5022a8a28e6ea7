"""Spotting personal data: risky question names/labels, value normalisers and free-text redaction patterns.

Pure functions without policy knowledge; `transforms.privacy` decides what to do with the answers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

# Keyword categories, matched against *tokens* of a question's name and of its label in every form language
# (accent-stripped, case-folded). Token matching, not substring matching, so `hidden`/`did`/`valid` never
# match "id". English, French, Spanish, Portuguese and Arabic, as the organisation's forms use them.
RISKY_KEYWORDS: dict[str, frozenset[str]] = {
    "name": frozenset(
        {
            "name",
            "names",
            "firstname",
            "lastname",
            "surname",
            "fullname",
            "forename",
            "nickname",
            "nom",
            "noms",
            "prenom",
            "prenoms",
            "surnom",
            "nombre",
            "nombres",
            "apellido",
            "apellidos",
            "nome",
            "nomes",
            "sobrenome",
            "apelido",
        }
    ),
    "phone": frozenset(
        {
            "phone",
            "telephone",
            "tel",
            "mobile",
            "cell",
            "cellphone",
            "whatsapp",
            "msisdn",
            "phonenumber",
            "contact",  # "Contact number" on an integer question is a phone number
            "contacts",
            "contacto",
            "contato",
            "telefono",
            "telefone",
            "celular",
            "movil",
            "portable",
        }
    ),
    "email": frozenset({"email", "mail", "courriel", "correo"}),
    "id": frozenset(
        {
            "id",
            "ids",
            "identifier",
            "identity",
            "identification",
            "identifiant",
            "identite",
            "identidad",
            "identidade",
            "passport",
            "passeport",
            "pasaporte",
            "passaporte",
            "cni",
            "nin",
            "ssn",
            "dni",
            "cedula",
            "unhcr",
        }
    ),
    "address": frozenset(
        {"address", "adresse", "direccion", "domicilio", "endereco", "morada", "street", "rue"}
    ),
    "gps": frozenset(
        {
            "gps",
            "location",
            "geolocation",
            "coordinates",
            "coordinate",
            "coordonnees",
            "coordonnee",
            "coordenadas",
            "latitude",
            "longitude",
            "lat",
            "lon",
            "lng",
            "localisation",
            "localizacion",
            "ubicacion",
            "localizacao",
        }
    ),
}

# Arabic words take the article ال and attached pronouns (اسمك "your name"), so match a token prefix.
_ARABIC_PREFIXES: dict[str, tuple[str, ...]] = {
    "name": ("اسم", "الاسم"),
    "phone": ("هاتف", "الهاتف", "جوال", "الجوال", "موبايل"),
    "id": ("رقم", "هوية", "الهوية", "بطاقة", "البطاقة"),
    "address": ("عنوان", "العنوان"),
    "gps": ("موقع", "الموقع", "احداثيات", "الاحداثيات"),
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def strip_accents(text: str) -> str:
    """Remove combining marks (é → e, Arabic harakat, أ → ا)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokens(text: str) -> list[str]:
    """Lower-case, accent-free word tokens; split at _, camelCase, punctuation, digits."""
    text = _CAMEL.sub(" ", text)
    text = strip_accents(text).casefold()
    return [t for t in re.split(r"[\W_\d]+", text) if t]


def _token_category(token: str) -> str | None:
    for category, words in RISKY_KEYWORDS.items():
        if token in words:
            return category
    # compounds people write without separators: respondentname, hhname, mobilephone
    if token.endswith("name") and len(token) > 4:
        return "name"
    if token.endswith("phone") and len(token) > 5:
        return "phone"
    for category, prefixes in _ARABIC_PREFIXES.items():
        if token.startswith(prefixes):
            return category
    return None


def risky_categories(name: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """Which personal-data categories a question's name or labels suggest.

    Returns category → where it was seen (e.g. ``{"phone": "label 'Français (fr)'"}``); empty when none.
    The value says where, never the label text, so it can go into logs and error messages.
    """
    found: dict[str, str] = {}
    for token in tokens(name):
        category = _token_category(token)
        if category and category not in found:
            found[category] = "name"
    for language, label in (labels or {}).items():
        for token in tokens(label or ""):
            category = _token_category(token)
            if category and category not in found:
                found[category] = f"label {language!r}" if language else "label"
    return found


# --- normalisation before hashing -------------------------------------------------------------------------

_NON_DIGIT = re.compile(r"\D")
_ARABIC_FOLD = str.maketrans({"ى": "ي", "ة": "ه", "ـ": None})


def normalise_phone(value: str, default_country_code: str | None) -> str:
    """Digits in international form without '+', so '+254 712…', '0712…' and '254712…' agree.

    '+' or '00' → already international; a leading trunk '0' → replaced by the default country code;
    digits already starting with the country code are taken as international; other digits get the code.
    Without a default country code, leading zeros are stripped (national and international forms then
    differ: set `default_country_code`).
    """
    raw = value.strip()
    digits = _NON_DIGIT.sub("", raw)
    if not digits:
        return raw.casefold()  # "n/a", "none": hash as text rather than collapse every such value to ""
    if raw.startswith("+"):
        return digits
    if digits.startswith("00"):
        return digits[2:]
    cc = default_country_code
    if cc is None:
        return digits.lstrip("0")
    if digits.startswith("0"):
        return cc + digits.lstrip("0")
    if digits.startswith(cc):
        return digits
    return cc + digits


def normalise_name(value: str) -> str:
    """Case-folded, accent-free, punctuation as spaces, spaces collapsed.

    'José-María  DIAZ' → 'jose maria diaz'.

    Accents are stripped because the same enumerator types them or not depending on the keyboard; two
    different people whose names differ only by an accent then share a token (acceptable for linkage).
    Arabic: harakat and hamza seats removed, ى → ي, ة → ه, tatweel removed. Word order is kept.
    """
    text = strip_accents(unicodedata.normalize("NFKC", value)).casefold().translate(_ARABIC_FOLD)
    return " ".join(_NON_WORD.sub(" ", text).split())


def normalise_id(value: str) -> str:
    """Upper-case letters and digits only: 'ab-123 456' → 'AB123456'."""
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", value)).upper()


def normalise(value: str, how: str | None, default_country_code: str | None = None) -> str:
    """Apply a named normaliser (phone | name | id | none/None = strip surrounding spaces)."""
    if how == "phone":
        return normalise_phone(value, default_country_code)
    if how == "name":
        return normalise_name(value)
    if how == "id":
        return normalise_id(value)
    return value.strip()


# --- free-text redaction ---------------------------------------------------------------------------------

#: Applied in order; e-mails first so their digits are not taken for phone numbers. Crude by design: names
#: are NOT caught, which is why the suggested action for free text is `drop`.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
#: digits with the separators people type between them: spaces, dots, brackets, hyphens and dashes, slashes
#: and underscores (`0712–345–678`, `0723/456/789`, `0734_567_890`)
_PHONE_LIKE = re.compile(r"(?<!\w)\+?\d[\d\s()./_\u2010-\u2015-]{6,}\d(?!\w)")
_DATE = re.compile(r"\d{1,4}([-/.])\d{1,2}\1\d{1,4}")  # 2026-03-15, 15/03/2026, 15.03.2026
_ID_LIKE = re.compile(r"(?<!\w)[A-Za-z]{0,3}[-/]?\d{5,}(?!\w)")


def _phone_or_id(match: re.Match[str]) -> str:
    # a '+' or 9+ digits reads as a phone number; a shorter digit run is more likely a card/case number
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if text.startswith("+") or digits >= 9:
        return "[PHONE]"
    if _DATE.fullmatch(text.strip()):
        return text
    return "[ID]" if digits >= 5 else text


def redact_text(text: str) -> str:
    """Replace e-mail addresses ([EMAIL]), phone numbers ([PHONE]) and ID-like runs of 5+ digits ([ID])."""
    text = _EMAIL.sub("[EMAIL]", text)
    text = _PHONE_LIKE.sub(_phone_or_id, text)
    return _ID_LIKE.sub("[ID]", text)


def first_match(words: Iterable[str], vocabulary: Iterable[str]) -> str | None:
    """The first word that is in `vocabulary` (helper for suggestion heuristics)."""
    vocab = set(vocabulary)
    return next((w for w in words if w in vocab), None)
