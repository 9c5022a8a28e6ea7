"""Deterministic demo submissions for the bundled household survey (what the demo KoBo server serves).

Submission ``i`` (0-based) is a pure function of ``(seed, i)``: any page can be generated on demand, so
500 000 households are served without holding them in memory. The *skeleton* of a record (``_id``,
``_submission_time``, enumerator, form version) depends on ``i`` only, so ids and the known quality
problems (``quality_problems``) do not change with the seed.
"""

from __future__ import annotations

import json
import math
import random
import re
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

FORMS_DIR = Path(__file__).resolve().parent / "demo_forms"

HOUSEHOLD_UID = "aHouseholdDemoSurvey26"
HOUSEHOLD_NAME = "Household Survey 2026 (demo)"
HOUSEHOLD_FORMHUB_UUID = "6f1c2b0e9d8a4c7b8e3f5a2d1c0b9a87"
HOUSEHOLD_V1_UID = "vHhDemoV1deployedSep26"
HOUSEHOLD_V2_UID = "vHhDemoV2deployedOct26"
HOUSEHOLD_DRAFT_UID = "vHhDemoV3draftSavedNov"
DRAFT_UID = "aDistribMonitorDraft26"
DRAFT_VERSION_UID = "vDistribMonitorDraftV1"
HIDDEN_UID = "aProtectionCasesHidden"
HIDDEN_VERSION_UID = "vProtectionCasesHidV01"

FIRST_ID = 10_000_000
ID_STRIDE = 4  # _id(i) = FIRST_ID + 4*i + (0..2): strictly increasing, never dense (server-wide sequence)
PERIOD_START = datetime(2026, 9, 15, tzinfo=UTC)
PERIOD_DAYS = 60
V2_FROM_DAY = 24  # v2 (adds income_source and photo) was deployed on day 24 of the collection period
PHOTO_SHARE = 0.3  # share of v2 submissions (with consent) that carry a photo of the shelter
DEMO_OWNER = "demo_owner"  # the asset owner's username, as it appears in attachment filenames
WORKDAY_START_S = 5 * 3600  # 08:00 at +03:00
WORKDAY_LEN_S = 10 * 3600

ENUMERATORS = [f"enum_ke{n:02d}" for n in range(1, 13)]
PROLIFIC_ENUMERATOR = "enum_ke07"
_PROLIFIC_SLOTS = 3  # the prolific enumerator takes 3 of 14 slots, every other one 1: ~3x the daily count
_DEVICE = {u: f"collect:{(n * 2654435761) % 16**16:016x}" for n, u in enumerate(ENUMERATORS, 1)}
SUPERVISOR = "supervisor_ke01"

VALIDATION_LABELS = {
    "validation_status_approved": "Approved",
    "validation_status_not_approved": "Not Approved",
    "validation_status_on_hold": "On Hold",
}

# Problem name -> offset inside each block; duplicates also use offset + 10 for the second record.
_PROBLEM_OFFSETS = {
    "short_interview": 0,
    "duplicate_uuid": 1,
    "duplicate_phone": 2,
    "age_out_of_range": 3,
    "missing_consent": 4,
    "consent_no_with_answers": 5,
    "bad_integer": 6,
    "bad_date": 7,
    "gps_outside_country": 8,
}
_PAIRED = {"duplicate_uuid", "duplicate_phone"}

# Kenya's bounding box, roughly; used to place GPS points inside and the deliberate outlier outside.
COUNTRY_BBOX = {"lat_min": -4.72, "lat_max": 5.03, "lon_min": 33.9, "lon_max": 41.91}

_SITES: dict[str, tuple[str, str, float, float]] = {
    # site -> (admin1, admin2, lat, lon)
    "kakuma_1": ("turkana", "turkana_west", 3.7283, 34.8600),
    "kakuma_4": ("turkana", "turkana_west", 3.7462, 34.8330),
    "kalobeyei": ("turkana", "turkana_west", 3.8140, 34.7850),
    "lodwar_town": ("turkana", "turkana_central", 3.1191, 35.5973),
    "dagahaley": ("garissa", "dadaab", 0.1890, 40.2950),
    "hagadera": ("garissa", "dadaab", 0.0050, 40.3700),
    "ifo": ("garissa", "dadaab", 0.1160, 40.3140),
    "fafi_host": ("garissa", "fafi", -0.6480, 40.1250),
    "kibra_laini_saba": ("nairobi", "kibra", -1.3140, 36.7840),
    "embakasi_kayole": ("nairobi", "embakasi", -1.2760, 36.9120),
    "moyale_town": ("marsabit", "moyale", 3.5260, 39.0560),
    "saku_marsabit": ("marsabit", "saku", 2.3280, 37.9890),
}
_SITE_NAMES = list(_SITES)
_SITE_WEIGHTS = [14, 10, 9, 4, 12, 11, 10, 3, 6, 5, 3, 3]

_FIRST_F = [
    "فاطمة",
    "عائشة",
    "مريم",
    "Amina",
    "Halima",
    "Fadumo",
    "Hodan",
    "Aline",
    "Marie-Claire",
    "Esther",
    "Grace",
    "Wanjiru",
    "Akinyi",
    "Nyabol",
    "Achol",
    "Furaha",
    "Josiane",
    "Zainab",
    "Hawa",
    "Sarah",
]
_FIRST_M = [
    "أحمد",
    "محمد",
    "عبدالله",
    "Abdi",
    "Mohamed",
    "Hassan",
    "Jean-Pierre",
    "Emmanuel",
    "Olivier",
    "Deng",
    "Garang",
    "John",
    "Peter",
    "Otieno",
    "Kamau",
    "Ibrahim",
    "Yusuf",
    "Innocent",
    "Patrick",
    "Omar",
]
_LAST = [
    "Hassan",
    "Abdullahi",
    "Mohamud",
    "Nkurunziza",
    "Habimana",
    "Mugisha",
    "Deng",
    "Akol",
    "Lokol",
    "Ekiru",
    "Ochieng",
    "Mwangi",
    "Njoroge",
    "Ali",
    "Ahmed",
    "Osman",
    "علي",
    "حسن",
    "Ndayishimiye",
    "Niyonzima",
    "Kiplagat",
    "Ewoi",
    "Lopeyok",
    "Dupont",
]
_NEEDS = ["food", "water", "shelter", "health", "education", "cash", "protection"]
_NEEDS_OTHER = [
    "Solar lamp",
    "Mosquito nets",
    "Soap",
    "Documentation / ID",
    "School uniforms",
    "Transport to hospital",
    "Livelihood training",
]
_COMMENTS = [
    "Respondent was busy, interview was short.",
    "Household recently relocated within the camp.",
    "Rain interrupted the interview.",
    "Translator used (Somali).",
    "Head of household absent.",
    "Le chef de ménage était absent.",
    "المستجيب طلب إعادة الزيارة",
]
_INCOME_SRC = [
    "agriculture",
    "livestock",
    "casual_labour",
    "trade",
    "salaried",
    "assistance",
    "remittances",
    "none",
]
_WATER = ["piped", "borehole", "protected_well", "water_truck", "unprotected_well", "surface_water"]
_WATER_W = [20, 25, 15, 15, 15, 10]
_ILLNESS = ["malaria", "diarrhoea", "respiratory", "measles", "other"]
_DISABILITY = ["no_difficulty", "some_difficulty", "a_lot", "cannot"]
_DISABILITY_W = [85, 9, 4, 2]
_MASK64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, seed-free hash of an index (for the record skeleton)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def load_form_content(name: str) -> dict[str, Any]:
    """Return a bundled KPI asset content (``demo_forms/<name>.json``) as a fresh dict."""
    return json.loads(_read_form_text(name))


@lru_cache(maxsize=16)
def _read_form_text(name: str) -> str:
    return (FORMS_DIR / f"{name}.json").read_text(encoding="utf-8")


def id_at(i: int) -> int:
    """The ``_id`` of submission ``i``; strictly increasing with gaps of 2 to 6."""
    return FIRST_ID + ID_STRIDE * i + _mix(i) % 3


def day_of(i: int, households: int) -> int:
    """Day (0-based) of the collection period on which submission ``i`` arrived."""
    return i * PERIOD_DAYS // max(households, 1)


def _first_of_day(day: int, households: int) -> int:
    return -(-day * households // PERIOD_DAYS)


def submission_epoch_at(i: int, households: int) -> int:
    """UTC epoch seconds of ``_submission_time`` for submission ``i``; non-decreasing in ``i``."""
    day = day_of(i, households)
    first = _first_of_day(day, households)
    per_day = max(_first_of_day(day + 1, households) - first, 1)
    frac = (_mix(i ^ 0x5BD1E995) % 1000) / 1000
    secs = int((i - first + frac) * WORKDAY_LEN_S / per_day)
    return int(PERIOD_START.timestamp()) + day * 86400 + WORKDAY_START_S + secs


def submission_time_at(i: int, households: int) -> str:
    """``_submission_time`` string (UTC, ``YYYY-MM-DDTHH:MM:SS``) of submission ``i``."""
    return _fmt_utc(submission_epoch_at(i, households))


def enumerator_at(i: int) -> str:
    """Username of the enumerator who collected submission ``i``."""
    slot = _mix(i ^ 0x2545F491) % (len(ENUMERATORS) - 1 + _PROLIFIC_SLOTS)
    if slot < _PROLIFIC_SLOTS:
        return PROLIFIC_ENUMERATOR
    others = [u for u in ENUMERATORS if u != PROLIFIC_ENUMERATOR]
    return others[slot - _PROLIFIC_SLOTS]


def version_at(i: int, households: int) -> str:
    """The deployed version uid (``__version__``) submission ``i`` was collected with."""
    return HOUSEHOLD_V1_UID if day_of(i, households) < V2_FROM_DAY else HOUSEHOLD_V2_UID


@lru_cache(maxsize=8192)
def _date_str(epoch_day: int) -> str:
    return (_EPOCH + timedelta(days=epoch_day)).strftime("%Y-%m-%d")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _fmt_utc(epoch: int) -> str:
    day, sod = divmod(epoch, 86400)
    return f"{_date_str(day)}T{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}"


def _fmt_local(epoch_ms: int, offset_h: int) -> str:
    secs, ms = divmod(epoch_ms + offset_h * 3_600_000, 1000)
    day, sod = divmod(secs, 86400)
    sign = "+" if offset_h >= 0 else "-"
    return (
        f"{_date_str(day)}T{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}.{ms:03d}"
        f"{sign}{abs(offset_h):02d}:00"
    )


def _cum(weights: list[int]) -> list[float]:
    total, acc, out = sum(weights), 0, []
    for w in weights:
        acc += w
        out.append(acc / total)
    return out


def _pick(r: float, items: list[str], cum: list[float]) -> str:
    return items[bisect_right(cum, r)] if r < cum[-1] else items[-1]


def _uuid_from(bits: int) -> str:
    """Format 128 random bits as a version-4 UUID string."""
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid_at(seed: int, i: int) -> str:
    """The original instance UUID of submission ``i``."""
    # integer hashing instead of seeding a Random: this runs once per generated record
    a = _mix((seed * 0x9E3779B1) ^ (i << 1))
    return _uuid_from((a << 64) | _mix(a ^ i))


def _phone(h: int) -> str:
    digits = ("7" if h % 10 < 8 else "1") + f"{(h >> 8) % 100_000_000:08d}"
    style = (h >> 40) % 3
    if style == 0:
        return f"+254 {digits[:3]} {digits[3:6]} {digits[6:]}"
    if style == 1:
        return "0" + digits
    return "254" + digits


def phone_at(seed: int, i: int) -> str:
    """The phone number a normal submission ``i`` carries."""
    return _phone(_mix((seed * 0x85EBCA6B) ^ (i << 2) ^ 0x1234567))


_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def photo_name_at(seed: int, i: int, first_name: str, start_ms: int) -> str | None:
    """The device filename of the shelter photo of a v2 submission ``i``, or None (about 70%).

    Drawn from its own hash of ``(seed, i)``. Some names hold the respondent's first name, as phones
    and enumerators often write them: the reason the privacy policy must not keep filenames.
    """
    h = _mix((seed * 0xC2B2AE35) ^ (i << 3) ^ 0x7F4A7C15)
    if h % 1000 >= PHOTO_SHARE * 1000:
        return None
    secs = start_ms // 1000 + 3 * 3600 + 60 + (h >> 10) % 1200  # taken during the interview, local time
    day, sod = divmod(secs, 86400)
    ymd = _date_str(day).replace("-", "")
    hms = f"{sod // 3600:02d}{sod // 60 % 60:02d}{sod % 60:02d}"
    style = (h >> 24) % 4
    if style == 0:
        return f"IMG_{ymd}_{hms}.jpg"
    if style == 1:
        return f"IMG_{ymd}_{first_name}.jpg"
    if style == 2:
        return f"{secs * 1000 + (h >> 32) % 1000}.jpg"
    return f"shelter {first_name} {1 + (h >> 40) % 9}.jpg"  # Django stores spaces as underscores


def attachment_uid_at(seed: int, i: int) -> str:
    """The KPI attachment uid (``att`` + 22 letters/digits) of submission ``i``'s photo."""
    h = (_mix((seed * 0x27D4EB2F) ^ (i << 4) ^ 0x165667B1) << 64) | _mix(i ^ 0x3C6EF372)
    out = []
    for _ in range(22):
        h, r = divmod(h, len(_ALNUM))
        out.append(_ALNUM[r])
    return "att" + "".join(out)


def _valid_filename(name: str) -> str:
    """Django's ``get_valid_filename``: how KoBo stores a device filename (spaces become underscores)."""
    return re.sub(r"(?u)[^-\w.]", "", name.strip().replace(" ", "_"))


def quality_problems(households: int) -> dict[str, list[int]]:
    """Problem name -> the ``_id``s that carry it, for a server generating ``households`` submissions.

    Besides the per-record problems, ``prolific_enumerator`` lists every ``_id`` collected by
    ``PROLIFIC_ENUMERATOR`` (about 3x the daily count of each other enumerator).
    """
    out: dict[str, list[int]] = {name: [] for name in _PROBLEM_OFFSETS}
    for idx, (name, _partner) in sorted(_problem_index(households).items()):
        out[name].append(id_at(idx))
    out["prolific_enumerator"] = [
        id_at(i) for i in range(households) if enumerator_at(i) == PROLIFIC_ENUMERATOR
    ]
    return out


@lru_cache(maxsize=32)
def _problem_index(households: int) -> dict[int, tuple[str, int | None]]:
    """Index -> (problem, partner index for duplicates). Blocks spread evenly over the ids."""
    blocks = max(1, min(5, households // 300))
    out: dict[int, tuple[str, int | None]] = {}
    for j in range(blocks):
        base = max(0, households * (2 * j + 1) // (2 * blocks) - 6)
        for name, off in _PROBLEM_OFFSETS.items():
            a = base + off
            if name in _PAIRED:
                b = a + 10
                if b < households:
                    out[a] = (name, None)
                    out[b] = (name, a)
            elif a < households:
                out[a] = (name, None)
    return out


class HouseholdGenerator:
    """Generates household-survey submissions on demand; record ``i`` depends on ``(seed, i)`` only."""

    def __init__(self, households: int, seed: int, base_url: str = "", members: int | None = None) -> None:
        if members is not None and members < 1:
            raise ValueError(f"members per household must be at least 1, not {members}")
        self.households = households
        self.seed = seed
        self.members = members  # every household this size; None: 1-14, about 4.3 on average
        self.base_url = base_url  # the server's url, for the attachments' download urls
        self._problems = _problem_index(households)

    def id_at(self, i: int) -> int:
        """``_id`` of submission ``i``."""
        return id_at(i)

    def time_at(self, i: int) -> str:
        """``_submission_time`` of submission ``i``."""
        return submission_time_at(i, self.households)

    def record_at(self, i: int) -> dict[str, Any]:
        """The full submission JSON (as KPI serves it) of submission ``i``."""
        seed = self.seed
        rnd = random.Random((seed << 40) ^ i).random  # one float stream per record: ~4x faster than randint
        problem, partner = self._problems.get(i, (None, None))
        n = self.households
        sub_epoch = submission_epoch_at(i, n)
        enum = enumerator_at(i)
        version = version_at(i, n)
        uid = uuid_at(seed, partner if problem == "duplicate_uuid" and partner is not None else i)

        duration_s = (240 + int(rnd() * 300)) if problem == "short_interview" else (1080 + int(rnd() * 2220))
        end_ms = (sub_epoch - 20 - int(rnd() * 1800)) * 1000 + int(rnd() * 1000)
        start_ms = end_ms - duration_s * 1000 - int(rnd() * 1000)
        offset_h = 3 if rnd() > 0.04 else 0  # a few devices run on UTC
        start = _fmt_local(start_ms, offset_h)
        rec: dict[str, Any] = {
            "_id": id_at(i),
            "formhub/uuid": HOUSEHOLD_FORMHUB_UUID,
            "start": start,
            "end": _fmt_local(end_ms, offset_h),
            "today": start[:10],
            "username": enum,
            "deviceid": _DEVICE[enum],
        }
        consent = "no" if rnd() < 0.03 else "yes"
        if problem == "consent_no_with_answers":
            consent = "no"
        if problem != "missing_consent":
            rec["consent"] = consent
        if consent == "yes" or problem in ("consent_no_with_answers", "missing_consent"):
            self._answers(rec, rnd, i, problem, partner, version, start_ms)
        rec["__version__"] = version
        rec["meta/instanceID"] = "uuid:" + uid
        rec["_xform_id_string"] = HOUSEHOLD_UID
        rec["_uuid"] = uid
        photo = rec.get("photo")
        rec["_attachments"] = [self._attachment(i, rec["_id"], uid, photo)] if photo else []
        rec["_status"] = "submitted_via_web"
        gps = rec.get("location/gps")
        if gps:
            lat, lon = gps.split(" ")[:2]
            rec["_geolocation"] = [float(lat), float(lon)]
        else:
            rec["_geolocation"] = [None, None]
        rec["_submission_time"] = _fmt_utc(sub_epoch)
        rec["_validation_status"] = self._validation(rnd, sub_epoch)
        rec["_submitted_by"] = enum
        rec["meta/rootUuid"] = "uuid:" + uid
        return rec

    def _attachment(self, i: int, _id: int, uid: str, photo: str) -> dict[str, Any]:
        """The `_attachments` entry of a photo, shaped as KPI serves it (kobo-api.md 3.6)."""
        att = attachment_uid_at(self.seed, i)
        basename = _valid_filename(photo)
        url = f"{self.base_url}/api/v2/assets/{HOUSEHOLD_UID}/data/{_id}/attachments/{att}/"
        return {
            "download_url": url,
            "download_large_url": f"{url}large/",
            "download_medium_url": f"{url}medium/",
            "download_small_url": f"{url}small/",
            "mimetype": "image/jpeg",
            "filename": f"{DEMO_OWNER}/attachments/{HOUSEHOLD_FORMHUB_UUID}/{uid}/{basename}",
            "uid": att,
            "question_xpath": "photo",
            "is_deleted": False,
            "media_file_basename": basename,
        }

    @staticmethod
    def _validation(rnd: Callable[[], float], sub_epoch: int) -> dict[str, Any]:
        r = rnd()
        if r >= 0.10:
            return {}
        status = (
            "validation_status_approved"
            if r < 0.06
            else "validation_status_not_approved"
            if r < 0.08
            else "validation_status_on_hold"
        )
        return {
            "timestamp": sub_epoch + 3600 + int(rnd() * 3 * 86400),
            "uid": status,
            "by_whom": SUPERVISOR,
            "label": VALIDATION_LABELS[status],
        }

    def _answers(
        self,
        rec: dict[str, Any],
        rnd: Callable[[], float],
        i: int,
        problem: str | None,
        partner: int | None,
        version: str,
        start_ms: int,
    ) -> None:
        def pick(items: list[str]) -> str:
            return items[int(rnd() * len(items))]

        site = _pick(rnd(), _SITE_NAMES, _SITE_CUM)
        a1, a2, lat, lon = _SITES[site]
        rec["location/admin1"] = a1
        rec["location/admin2"] = a2
        rec["location/site"] = site
        if rnd() > 0.05:  # some devices never got a fix
            if problem == "gps_outside_country":
                glat, glon = (lon, lat) if rnd() < 0.5 else (0.0, 0.0)  # swapped lat/lon or "null island"
                rec["location/gps"] = f"{glat:.6f} {glon:.6f} 0 0"
            else:
                rec["location/gps"] = (
                    f"{lat + (rnd() - 0.5) * 0.04:.6f} {lon + (rnd() - 0.5) * 0.04:.6f} "
                    f"{300 + int(rnd() * 1400)}.0 {pick(_ACCURACY)}"
                )
        female = rnd() < 0.58
        first = pick(_FIRST_F if female else _FIRST_M)
        rec["respondent/resp_name"] = f"{first} {pick(_LAST)}"
        if problem == "duplicate_phone" and partner is not None:
            rec["respondent/phone"] = phone_at(self.seed, partner)
        elif rnd() < 0.85 or problem == "duplicate_phone":
            rec["respondent/phone"] = phone_at(self.seed, i)
        rec["respondent/resp_sex"] = "female" if female else "male"
        resp_age = "150" if problem == "age_out_of_range" else str(18 + int(rnd() * 58))
        rec["respondent/resp_age"] = resp_age
        hh_size = min(1 + int(-4.0 * math.log(1.0 - rnd())), 14)
        if self.members is not None:  # after the draw: the answers before the members stay the same
            hh_size = self.members
        rec["household/hh_size"] = "twelve" if problem == "bad_integer" else str(hh_size)
        rec["household/head_sex"] = "female" if rnd() < 0.45 else "male"
        rec["household/head_age"] = str(18 + int(rnd() * 63))
        displaced = rnd() < 0.7
        rec["household/displaced"] = "yes" if displaced else "no"
        start_day = start_ms // 86_400_000
        if displaced:
            if problem == "bad_date":
                rec["household/arrival_date"] = "2026-02-30"
            else:
                rec["household/arrival_date"] = _date_str(start_day - 20 - int(rnd() * 2980))
        if rnd() < 0.8:
            # distributions happen in daytime, 08:00-16:00 local, on a whole minute
            dist_ms = (start_day - 1 - int(rnd() * 45)) * 86_400_000 + (5 * 60 + int(rnd() * 480)) * 60_000
            rec["household/last_distribution"] = _fmt_local(dist_ms, 3)
        if version == HOUSEHOLD_V2_UID and rnd() < 0.95:
            rec["household/income_source"] = pick(_INCOME_SRC)
        if rnd() < 0.9:
            rec["household/income"] = "0" if rnd() < 0.2 else str((5 + int(rnd() * 396)) * 100)
        members = []
        for m in range(hh_size):
            m_female = female if m == 0 else rnd() < 0.52
            member: dict[str, Any] = {
                "members/member_name": first if m == 0 else pick(_FIRST_F if m_female else _FIRST_M),
                "members/member_sex": "female" if m_female else "male",
                "members/member_age": resp_age if m == 0 else str(int(rnd() * 71)),
                "members/member_disability": _pick(rnd(), _DISABILITY, _DISABILITY_CUM),
            }
            if rnd() < 0.18:
                member["members/illnesses"] = [
                    {
                        "members/illnesses/illness_type": pick(_ILLNESS),
                        "members/illnesses/illness_date": _date_str(start_day - 1 - int(rnd() * 30)),
                    }
                    for _ in range(1 if rnd() < 0.8 else 2)
                ]
            members.append(member)
        rec["members"] = members
        fcs = [
            5 + int(rnd() * 3),
            int(rnd() * 7),
            int(rnd() * 8),
            int(rnd() * 4),
            int(rnd() * 5),
            int(rnd() * 6),
            int(rnd() * 8),
            2 + int(rnd() * 6),
        ]
        for name, v in zip(_FCS_KEYS, fcs, strict=True):
            rec[name] = str(v)
        for name in _RCSI_KEYS:
            rec[name] = str(min(7, int(-2.2 * math.log(1.0 - rnd()))))
        score = (
            fcs[0] * 2 + fcs[1] * 3 + fcs[2] + fcs[3] + fcs[4] * 4 + fcs[5] * 4 + fcs[6] * 0.5 + fcs[7] * 0.5
        )
        rec["food/fcs_score"] = f"{score:g}"
        rec["water_source"] = _pick(rnd(), _WATER, _WATER_CUM)
        if version == HOUSEHOLD_V2_UID:
            # from a separate hash, not rnd(): every other answer stays what it was before v2 had photos
            photo = photo_name_at(self.seed, i, first, start_ms)
            if photo is not None:
                rec["photo"] = photo
        needs = [x for x in _NEEDS if rnd() < 0.3] or [pick(_NEEDS)]
        if rnd() < 0.1:
            needs.append("other")
            rec["needs"] = " ".join(needs)
            rec["needs_other"] = pick(_NEEDS_OTHER)
        else:
            rec["needs"] = " ".join(needs)
        rec["safety_score"] = str(2 + int(rnd() * 9))
        if rnd() < 0.12:
            rec["comments"] = pick(_COMMENTS)
        rec["ack_end"] = "OK"


_SITE_CUM = _cum(_SITE_WEIGHTS)
_WATER_CUM = _cum(_WATER_W)
_DISABILITY_CUM = _cum(_DISABILITY_W)
_ACCURACY = ["3.9", "4.8", "5.0", "8.5", "12.0"]
_FCS_KEYS = [f"food/fcs_{n}" for n in ("cereals", "pulses", "veg", "fruit", "meat", "dairy", "sugar", "oil")]
_RCSI_KEYS = [
    f"food/rcsi_{n}" for n in ("less_preferred", "borrow", "limit_portion", "restrict_adults", "reduce_meals")
]

QUALITY_PROBLEMS: dict[str, list[int]] = quality_problems(1500)
"""Quality problems of the default demo server (1 500 households); else call ``quality_problems(n)``."""
