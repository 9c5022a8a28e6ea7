"""A small fixed household survey in a real DuckDB file, with hand-computed indicator values.

Six consenting households (plus one refusal, excluded by every indicator) and fifteen members
(plus one in the refusing household). Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

FORM = "household_survey"

# _id, today, consent, admin1, admin2, head_sex,
# fcs days (cereals, pulses, veg, fruit, meat, dairy, sugar, oil),
# rcsi days (less_preferred, borrow, limit_portion, restrict_adults, reduce_meals), water_source
HOUSEHOLDS = [
    # FCS 14+9+2+0+4+0+1.5+3.5 = 34 (borderline); rCSI 2+2+3+0+1 = 8; improved
    (
        1,
        "2024-03-04",
        "yes",
        "turkana",
        "turkana_west",
        "female",
        (7, 3, 2, 0, 1, 0, 3, 7),
        (2, 1, 3, 0, 1),
        "piped",
    ),
    # FCS 14+0+1+0+0+0+0+1 = 16 (poor); rCSI 3+4+2+3+2 = 14; unimproved
    (
        2,
        "2024-03-05",
        "yes",
        "turkana",
        "turkana_west",
        "male",
        (7, 0, 1, 0, 0, 0, 0, 2),
        (3, 2, 2, 1, 2),
        "surface_water",
    ),
    # cereals 9 capped at 7: FCS 14+21+7+7+28+28+3.5+3.5 = 112 (acceptable); rCSI 0; improved
    (
        3,
        "2024-03-11",
        "yes",
        "garissa",
        "dadaab",
        "female",
        (9, 7, 7, 7, 7, 7, 7, 7),
        (0, 0, 0, 0, 0),
        "borehole",
    ),
    # FCS 12+6+3+1+4+4+2+2.5 = 34.5 (borderline); rCSI 1+0+1+6+0 = 8; unimproved
    (
        4,
        "2024-03-12",
        "yes",
        "garissa",
        "dadaab",
        "male",
        (6, 2, 3, 1, 1, 1, 4, 5),
        (1, 0, 1, 2, 0),
        "unprotected_well",
    ),
    # FCS 10+3+2+0+4+4+1+1.5 = 25.5 (borderline); rCSI 4+6+2+6+3 = 21; improved (JMP: delivered water)
    (
        5,
        "2024-03-20",
        "yes",
        "turkana",
        "turkana_central",
        "female",
        (5, 1, 2, 0, 1, 1, 2, 3),
        (4, 3, 2, 2, 3),
        "water_truck",
    ),
    # FCS 14+6+0+0+0+0+0.5+0.5 = 21 (poor: the boundary is inclusive); rCSI 2+4+2+6+2 = 16; improved
    (
        6,
        "2024-03-28",
        "yes",
        "garissa",
        "fafi",
        "female",
        (7, 2, 0, 0, 0, 0, 1, 1),
        (2, 2, 2, 2, 2),
        "protected_well",
    ),
    # refused: no answers
    (7, "2024-03-29", "no", None, None, None, (None,) * 8, (None,) * 5, None),
]

# (_submission_id, position, sex, age)
MEMBERS = [
    (1, 1, "female", 34),
    (1, 2, "male", 36),
    (1, 3, "female", 4),
    (1, 4, "male", 10),
    (2, 1, "male", 45),
    (2, 2, "female", 2),
    (3, 1, "female", 70),
    (3, 2, "female", 30),
    (3, 3, "male", 17),
    (4, 1, "male", 25),
    (4, 2, "female", 0),
    (5, 1, "female", 60),
    (5, 2, "male", 5),
    (6, 1, "female", 59),
    (6, 2, "male", 18),
    (7, 1, "female", 40),  # in the refusing household: not reached
]

# (member key, position, type, date)
ILLNESSES = [
    ("1/members[3]", 1, "malaria", "2024-02-20"),
    ("1/members[3]", 2, "diarrhoea", "2024-02-27"),
    ("3/members[1]", 1, "respiratory", "2024-03-01"),
]

EXPECTED_FCS = {1: 34.0, 2: 16.0, 3: 112.0, 4: 34.5, 5: 25.5, 6: 21.0}
EXPECTED_RCSI = {1: 8.0, 2: 14.0, 3: 0.0, 4: 8.0, 5: 21.0, 6: 16.0}

FCS = ["fcs_cereals", "fcs_pulses", "fcs_veg", "fcs_fruit", "fcs_meat", "fcs_dairy", "fcs_sugar", "fcs_oil"]
RCSI = [
    "rcsi_less_preferred",
    "rcsi_borrow",
    "rcsi_limit_portion",
    "rcsi_restrict_adults",
    "rcsi_reduce_meals",
]


def build_household_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    """Create the warehouse tables exactly as the contract names them and fill them; returns the
    connection."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    for schema in (FORM, "meta", "marts", "ops"):
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    fcs_cols = ", ".join(f"{c} BIGINT" for c in FCS)
    rcsi_cols = ", ".join(f"{c} BIGINT" for c in RCSI)
    con.execute(
        f"""CREATE TABLE {FORM}.submissions (_id BIGINT PRIMARY KEY, _uuid VARCHAR,
        _submission_time TIMESTAMP,
        today DATE, "start" TIMESTAMPTZ, "end" TIMESTAMPTZ, consent VARCHAR, admin1 VARCHAR, admin2 VARCHAR,
        site VARCHAR, head_sex VARCHAR, head_age BIGINT, hh_size BIGINT, displaced VARCHAR, {fcs_cols},
        {rcsi_cols}, water_source VARCHAR, income DECIMAL(10,2), visits UTINYINT, _dq_status VARCHAR)"""
    )
    for _id, today, consent, a1, a2, sex, fcs, rcsi, water in HOUSEHOLDS:
        size = sum(1 for m in MEMBERS if m[0] == _id)
        con.execute(
            f"INSERT INTO {FORM}.submissions VALUES (?, ?, CAST(? AS TIMESTAMP) + INTERVAL 10 HOUR, ?, "
            "CAST(? || ' 08:15:00+03' AS TIMESTAMPTZ), CAST(? || ' 08:45:00+03' AS TIMESTAMPTZ), "
            "?, ?, ?, NULL, ?, "
            f"40, ?, 'no', {', '.join('?' * 8)}, {', '.join('?' * 5)}, ?, 12.5, 1, 'ok')",
            [_id, f"uuid-{_id}", today, today, today, today, consent, a1, a2, sex, size, *fcs, *rcsi, water],
        )
    con.execute(
        f"""CREATE TABLE {FORM}.members (_key VARCHAR PRIMARY KEY, _submission_id BIGINT,
        _parent_key VARCHAR,
        _position INTEGER, member_sex VARCHAR, member_age BIGINT, member_disability VARCHAR)"""
    )
    for sid, pos, sex, age in MEMBERS:
        con.execute(
            f"INSERT INTO {FORM}.members VALUES (?, ?, NULL, ?, ?, ?, 'no_difficulty')",
            [f"{sid}/members[{pos}]", sid, pos, sex, age],
        )
    con.execute(
        f"""CREATE TABLE {FORM}.illnesses (_key VARCHAR PRIMARY KEY, _submission_id BIGINT,
        _parent_key VARCHAR,
        _position INTEGER, illness_type VARCHAR, illness_date DATE)"""
    )
    for parent, pos, kind, date in ILLNESSES:
        con.execute(
            f"INSERT INTO {FORM}.illnesses VALUES (?, ?, ?, ?, ?, ?)",
            [f"{parent}/illnesses[{pos}]", int(parent.split("/")[0]), parent, pos, kind, date],
        )
    con.execute(f"CREATE TABLE {FORM}.needs__selected (_submission_id BIGINT, _key VARCHAR, choice VARCHAR)")
    con.execute(
        f"INSERT INTO {FORM}.needs__selected VALUES (1, NULL, 'food'), (1, NULL, 'water'), "
        "(3, NULL, 'shelter'), (5, NULL, 'food')"
    )
    con.execute(
        # the shape `transforms.schema.to_label_tables` gives it (only the columns the tests read)
        """CREATE TABLE meta.questions (form VARCHAR, "table" VARCHAR, "column" VARCHAR, xpath VARCHAR,
        type VARCHAR, list_name VARCHAR, label_en VARCHAR, label_fr VARCHAR, label_ar VARCHAR)"""
    )
    con.execute(
        """INSERT INTO meta.questions VALUES
        ('household_survey', 'submissions', 'admin1', 'location/admin1', 'select_one', 'admin1',
         'County', 'Comté', 'المقاطعة'),
        ('household_survey', 'submissions', 'admin2', 'location/admin2', 'select_one', 'admin2',
         'Sub-county', 'Sous-comté', 'المقاطعة الفرعية'),
        ('household_survey', 'members', 'member_sex', 'members/member_sex', 'select_one', 'sex',
         'Sex', 'Sexe', 'الجنس'),
        ('other_form', 'submissions', 'q1', 'q1', 'text', NULL, 'Other', 'Autre', 'آخر')"""
    )
    con.execute(
        """CREATE TABLE meta.choices (form VARCHAR, list_name VARCHAR, name VARCHAR, label_en VARCHAR,
        label_fr VARCHAR, label_ar VARCHAR)"""
    )
    con.execute(
        """INSERT INTO meta.choices VALUES
        ('household_survey', 'admin1', 'turkana', 'Turkana', 'Turkana', 'توركانا'),
        ('household_survey', 'admin1', 'garissa', 'Garissa', 'Garissa', 'غاريسا'),
        ('household_survey', 'admin2', 'turkana_west', 'Turkana West', 'Turkana Ouest', 'غرب توركانا'),
        ('household_survey', 'admin2', 'turkana_central', 'Turkana Central', 'Turkana Centre', 'وسط توركانا'),
        ('household_survey', 'admin2', 'dadaab', 'Dadaab', 'Dadaab', 'داداب'),
        ('household_survey', 'admin2', 'fafi', 'Fafi', 'Fafi', 'فافي'),
        ('household_survey', 'sex', 'female', 'Female', 'Femme', 'أنثى'),
        ('household_survey', 'sex', 'male', 'Male', 'Homme', 'ذكر'),
        ('other_form', 'yes_no', 'yes', 'Yes', 'Oui', 'نعم')"""
    )
    con.execute("CREATE TABLE ops.quarantine (form VARCHAR, submission_id BIGINT, raw_value VARCHAR)")
    return con
