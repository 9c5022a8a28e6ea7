"""Hand-built form schemas and raw KoBo submissions for the privacy tests (no transforms.schema)."""

from __future__ import annotations

import copy
from typing import Any

from config.settings import DEMO_PSEUDONYMISATION_KEY
from transforms.model import ColumnSpec, FormSchema, Question, TableSchema

KEY = DEMO_PSEUDONYMISATION_KEY.encode()
OTHER_KEY = b"another-key-of-at-least-32-bytes-for-tests-only!!"


def q(
    xpath: str, type_: str, table: str = "submissions", labels: dict[str, str] | None = None, **kw: Any
) -> Question:
    name = xpath.rsplit("/", 1)[-1]
    return Question(
        xpath=xpath,
        name=name,
        type=type_,
        table=table,
        column=name,
        labels=labels or {},
        xpaths=kw.pop("xpaths", (xpath,)),
        **kw,
    )


def make_schema(questions: list[Question], slug: str = "hh") -> FormSchema:
    tables: dict[str, TableSchema] = {
        "submissions": TableSchema(
            "submissions",
            "",
            None,
            [
                ColumnSpec("_id", "BIGINT", None, "key"),
                ColumnSpec("_submitted_by", "VARCHAR", None, "system"),
                ColumnSpec("_validation_status_by", "VARCHAR", None, "system"),
            ],
        ),
    }
    duck = {
        "integer": "BIGINT",
        "decimal": "DOUBLE",
        "date": "DATE",
        "select_one": "VARCHAR",
        "text": "VARCHAR",
    }
    for qu in questions:
        if qu.type == "begin_repeat":
            tables[qu.name] = TableSchema(
                qu.name, qu.xpath, "submissions", [ColumnSpec("_key", "VARCHAR", None, "key")]
            )
    for qu in questions:
        if qu.type == "begin_repeat":
            continue
        t = tables[qu.table]
        if qu.type == "geopoint":
            for part, typ in (("latitude", "DOUBLE"), ("longitude", "DOUBLE")):
                t.columns.append(ColumnSpec(f"{qu.name}_{part}", typ, qu.xpath, "geo_part"))
            t.columns.append(ColumnSpec(qu.name, "VARCHAR", qu.xpath, "answer"))
        else:
            t.columns.append(ColumnSpec(qu.column, duck.get(qu.type, "VARCHAR"), qu.xpath, "answer"))
    qs = {x: qu for qu in questions for x in qu.xpaths}
    return FormSchema(
        uid="aFormUid",
        slug=slug,
        title="Household survey",
        languages=["English (en)", "Français (fr)"],
        tables=tables,
        questions=qs,
        choices=[],
        versions=["v1"],
    )


def household_questions() -> list[Question]:
    return [
        q("start", "start"),
        q("end", "end"),
        q("today", "today"),
        q("deviceid", "deviceid"),
        q("username", "username"),
        q(
            "hh/respondent_name",
            "text",
            labels={"English (en)": "Respondent's name", "Français (fr)": "Nom du répondant"},
        ),
        q("hh/phone", "text", labels={"English (en)": "Phone number"}),
        q("hh/size", "integer"),
        q("hh/head_age", "integer"),
        q("hh/head_sex", "select_one", list_name="sex"),
        q("hh/interview_date", "date"),
        q("hh/income", "decimal"),
        q("hh/location", "geopoint"),
        q("hh/comments", "text"),
        q("photo", "image"),
        q("members", "begin_repeat"),
        q("members/m_name", "text", table="members"),
        q("members/m_age", "integer", table="members"),
    ]


POLICY = {
    "default_country_code": "254",
    "quasi_identifiers": ["head_sex", "head_age"],
    "questions": {
        "respondent_name": {"action": "pseudonymise", "normalise": "name"},
        "phone": {"action": "pseudonymise", "normalise": "phone"},
        "head_age": {"action": "generalise", "bands": [0, 5, 18, 60]},
        "interview_date": {"action": "generalise", "to": "month"},
        "hh/income": {"action": "top_code", "max": 1000},
        "location": {"action": "round_gps", "decimals": 2},
        "comments": "redact",
        "members/m_name": "drop",
        "m_age": {"action": "top_code", "max": 80},
    },
}

RAW_VALUES = [
    "Amina Wanjiru",
    "+254 712 345 678",
    "0712345678",
    "Juma Otieno",
    "enum_kamau",
    "supervisor_njeri",
    "amina@example.org",
    "A1234567",
    "Call me on 0722 111 222",
    "IMG_Amina.jpg",
    "kamau-phone-imei",
    "-1.292066 36.821946 1700.5 4.0",
    "Nairobi, Kibera block 4, near the church",
]


def household_submission(_id: int = 1, phone: str = "+254 712 345 678") -> dict[str, Any]:
    return {
        "_id": _id,
        "formhub/uuid": "3c1f0c7e9a2b4d1e8f00aa11bb22cc33",
        "start": "2026-03-02T09:14:05.120+03:00",
        "end": "2026-03-02T09:21:40.004+03:00",
        "today": "2026-03-02",
        "deviceid": "kamau-phone-imei",
        "username": "enum_kamau",
        "hh/respondent_name": "Amina Wanjiru",
        "hh/phone": phone,
        "hh/size": "6",
        "hh/head_age": "34",
        "hh/head_sex": "female",
        "hh/interview_date": "2026-03-02",
        "hh/income": "2500",
        "hh/location": "-1.292066 36.821946 1700.5 4.0",
        "hh/comments": "Call me on 0722 111 222 or amina@example.org, card A1234567",
        "members": [
            {"members/m_name": "Amina Wanjiru", "members/m_age": "34"},
            {"members/m_name": "Juma Otieno", "members/m_age": "91"},
        ],
        "photo": "IMG_Amina.jpg",
        "meta/instanceName": "Nairobi, Kibera block 4, near the church",
        "__version__": "v1",
        "meta/instanceID": "uuid:9b2e",
        "meta/rootUuid": "uuid:41c7",
        "_uuid": "9b2e",
        "_attachments": [
            {
                "uid": "attQ1w2E3r4T5y6U7i8O9p0A",
                "mimetype": "image/jpeg",
                "question_xpath": "photo",
                "filename": "supervisor_njeri/attachments/3c1f/41c7/IMG_Amina.jpg",
                "media_file_basename": "IMG_Amina.jpg",
                "download_url": "https://kf.example.org/api/v2/assets/a/data/1/attachments/att/?u=supervisor_njeri",
            }
        ],
        "_status": "submitted_via_web",
        "_geolocation": [-1.292066, 36.821946],
        "_submission_time": "2026-03-02T06:21:52",
        "_validation_status": {
            "timestamp": 1700000000,
            "uid": "validation_status_approved",
            "by_whom": "supervisor_njeri",
            "label": "Approved",
        },
        "_submitted_by": "enum_kamau",
        "_notes": [{"note": "Amina Wanjiru asked to be called back", "date_created": "2026-03-03"}],
        "_tags": ["Amina"],
        "_supplementalDetails": {"hh/comments": {"transcript": "Amina Wanjiru"}},
    }


def policy_dict() -> dict[str, Any]:
    return copy.deepcopy(POLICY)
