"""Hand-built FormSchema / FlatBatch objects for warehouse tests: the transforms contract, no transforms."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from transforms.model import (
    Choice,
    ColumnSpec,
    FlatBatch,
    FormSchema,
    QuarantineRecord,
    Question,
    TableSchema,
)

SLUG = "hh"


def main_columns(extra: list[ColumnSpec] | None = None) -> list[ColumnSpec]:
    return [
        ColumnSpec("_id", "BIGINT", role="key"),
        ColumnSpec("_uuid", "VARCHAR", role="system"),
        ColumnSpec("_submission_time", "TIMESTAMP", role="system"),
        ColumnSpec("_validation_status_uid", "VARCHAR", role="system"),
        ColumnSpec("region", "VARCHAR", "region"),
        ColumnSpec("hh_size", "BIGINT", "hh_size"),
        *(extra or []),
    ]


def member_columns(extra: list[ColumnSpec] | None = None) -> list[ColumnSpec]:
    return [
        ColumnSpec("_key", "VARCHAR", role="key"),
        ColumnSpec("_submission_id", "BIGINT", role="key"),
        ColumnSpec("_parent_key", "VARCHAR", role="key"),
        ColumnSpec("_position", "INTEGER", role="key"),
        ColumnSpec("age", "BIGINT", "members/age"),
        ColumnSpec("sex", "VARCHAR", "members/sex"),
        *(extra or []),
    ]


QUESTIONS = {
    "region": Question(
        "region",
        "region",
        "select_one",
        "submissions",
        "region",
        list_name="regions",
        labels={"English (en)": "Region", "Français (fr)": "Région"},
    ),
    "hh_size": Question(
        "hh_size",
        "hh_size",
        "integer",
        "submissions",
        "hh_size",
        labels={"English (en)": "Household size", "Français (fr)": "Taille du ménage"},
    ),
    "members/age": Question("members/age", "age", "integer", "members", "age"),
    "members/sex": Question(
        "members/sex",
        "sex",
        "select_one",
        "members",
        "sex",
        list_name="sexes",
        labels={"English (en)": "Sex", "Français (fr)": "Sexe"},
    ),
    "assets": Question("assets", "assets", "select_multiple", "submissions", "assets", list_name="assets"),
}

CHOICES = [
    Choice("regions", "north", {"English (en)": "North", "Français (fr)": "Nord"}),
    Choice("regions", "south", {"English (en)": "South", "Français (fr)": "Sud"}),
    Choice("sexes", "f", {"English (en)": "Female", "Français (fr)": "Femme"}),
    Choice("sexes", "m", {"English (en)": "Male", "Français (fr)": "Homme"}),
    Choice("assets", "radio", {"English (en)": "Radio", "Français (fr)": "Radio FM"}),
    Choice("assets", "bike", {"English (en)": "Bicycle", "Français (fr)": "Vélo"}),
]


def make_schema(
    main_extra: list[ColumnSpec] | None = None,
    member_extra: list[ColumnSpec] | None = None,
    *,
    slug: str = SLUG,
    version: str = "v1",
    drop: tuple[str, ...] = (),
) -> FormSchema:
    main = TableSchema("submissions", "", None, [c for c in main_columns(main_extra) if c.name not in drop])
    members = TableSchema("members", "members", "submissions", member_columns(member_extra))
    return FormSchema(
        uid="aHouseholdUid",
        slug=slug,
        title="Household survey",
        languages=["English (en)", "Français (fr)"],
        tables={"submissions": main, "members": members},
        questions=dict(QUESTIONS),
        choices=list(CHOICES),
        versions=[version],
    )


T0 = dt.datetime(2026, 1, 2, 3, 4, 5)


def main_rows(ids: list[int], *, uuid_suffix: str = "a", size: int = 3) -> pa.Table:
    return pa.table(
        {
            "_id": pa.array(ids, pa.int64()),
            "_uuid": [f"uuid-{i}-{uuid_suffix}" for i in ids],
            "_submission_time": pa.array([T0 + dt.timedelta(minutes=i) for i in ids], pa.timestamp("us")),
            "_validation_status_uid": pa.array([None] * len(ids), pa.string()),
            "region": ["north" if i % 2 else "south" for i in ids],
            "hh_size": pa.array([size] * len(ids), pa.int64()),
        }
    )


def member_rows(counts: dict[int, int]) -> pa.Table:
    keys, subs, pos, ages, sexes = [], [], [], [], []
    for sid, n in counts.items():
        for p in range(1, n + 1):
            keys.append(f"{sid}/members[{p}]")
            subs.append(sid)
            pos.append(p)
            ages.append(20 + p)
            sexes.append("f" if p % 2 else "m")
    return pa.table(
        {
            "_key": keys,
            "_submission_id": pa.array(subs, pa.int64()),
            "_parent_key": pa.array([None] * len(keys), pa.string()),
            "_position": pa.array(pos, pa.int32()),
            "age": pa.array(ages, pa.int64()),
            "sex": sexes,
        }
    )


def bridge_rows(selected: dict[int, list[str]]) -> pa.Table:
    subs = [s for s, cs in selected.items() for _ in cs]
    return pa.table(
        {
            "_submission_id": pa.array(subs, pa.int64()),
            "_key": [str(s) for s in subs],
            "choice": [c for cs in selected.values() for c in cs],
        }
    )


def make_batch(
    ids: list[int],
    *,
    members: int = 3,
    uuid_suffix: str = "a",
    selected: dict[int, list[str]] | None = None,
    quarantine: list[QuarantineRecord] | None = None,
) -> FlatBatch:
    tables = {
        "submissions": main_rows(ids, uuid_suffix=uuid_suffix, size=members),
        "members": member_rows({i: members for i in ids}),
    }
    if selected is not None:
        tables["assets__selected"] = bridge_rows(selected)
    return FlatBatch(tables=tables, quarantine=quarantine or [], submission_ids=list(ids))
